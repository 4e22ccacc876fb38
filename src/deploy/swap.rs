//! Phase 5: production routes move to the candidate in an order that never leaves one without a healthy
//! backend — the candidate is mapped to every production route first, only then is blue unmapped — and the
//! temporary route goes. `give_back` is the same move in reverse (a failed watch, or recovery).

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::routes::RouteTarget;
use crate::cf::CfClient;
use crate::cf::routes::{Destination, NewDestination};
use crate::log;

/// How many routes are mapped (or unmapped) at once.
const ROUTES_IN_FLIGHT: usize = 8;

/// Maps `green_guid` to every production route (creating missing ones), then — once every route has it — unmaps
/// `blue_guid` from them. The routes are mapped side by side, and then unmapped side by side. Returns the routes'
/// guids, in order.
pub(crate) async fn take_over(
    cf: &CfClient,
    space_guid: &str,
    green_guid: &str,
    blue_guid: Option<&str>,
    prod_routes: &mut [RouteTarget],
) -> Result<Vec<String>> {
    let mapped: Vec<(String, Vec<Destination>)> = stream::iter(prod_routes.iter_mut().map(|target| async move {
        let route_guid = target.ensure(cf, space_guid).await?;
        let destinations = cf
            .routes()
            .insert_destinations(&route_guid, &candidate_destinations(target, green_guid, blue_guid))
            .await
            .with_context(|| format!("mapping {}", target.url))?;
        log::detail(format_args!("mapped {} to the candidate", target.url));
        anyhow::Ok((route_guid, destinations))
    }))
    .buffered(ROUTES_IN_FLIGHT)
    .try_collect()
    .await?;
    let blue_destinations = mapped.iter().zip(prod_routes.iter()).flat_map(|((route_guid, destinations), target)| {
        destinations
            .iter()
            .filter(|d| Some(d.app.guid.as_str()) == blue_guid)
            .map(move |d| (route_guid, &d.guid, &target.url))
    });
    stream::iter(blue_destinations.map(|(route_guid, destination_guid, url)| async move {
        cf.routes()
            .remove_destination(route_guid, destination_guid)
            .await
            .with_context(|| format!("unmapping production's previous version from {url}"))?;
        log::detail(format_args!("unmapped the previous version from {url}"));
        anyhow::Ok(())
    }))
    .buffered(ROUTES_IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(mapped.into_iter().map(|(guid, _)| guid).collect())
}

/// How the candidate is mapped to a production route: the way blue is mapped there, else with the protocol the
/// manifest gives the route, else CC's defaults.
pub(crate) fn candidate_destinations(
    target: &RouteTarget,
    green_guid: &str,
    blue_guid: Option<&str>,
) -> Vec<NewDestination> {
    let blue_destinations = target.route.iter().flat_map(|r| &r.destinations);
    let fallback = NewDestination { protocol: target.protocol.clone(), ..NewDestination::app(green_guid) };
    mapped_like(blue_destinations, blue_guid, green_guid, fallback)
}

/// `to_guid` mapped the way `from_guid` is among `destinations` — the same process type, port and protocol (e.g.
/// `http2` for gRPC, or a port other than 8080: CC would otherwise default to `http1` and 8080,
/// `update_route_destinations.rb`), each once, as CC refuses duplicates in one request — else `fallback`.
fn mapped_like<'a>(
    destinations: impl IntoIterator<Item = &'a Destination>,
    from_guid: Option<&str>,
    to_guid: &str,
    fallback: NewDestination,
) -> Vec<NewDestination> {
    let mut like: Vec<NewDestination> = Vec::new();
    for destination in destinations.into_iter().filter(|d| Some(d.app.guid.as_str()) == from_guid) {
        let destination = NewDestination::like(to_guid, destination);
        if !like.contains(&destination) {
            like.push(destination);
        }
    }
    if like.is_empty() {
        like.push(fallback);
    }
    like
}

/// Moves the given routes from `from_guid` back to `to_guid`: map first (the way `from_guid` is mapped), then
/// unmap.
pub(crate) async fn give_back(cf: &CfClient, route_guids: &[String], from_guid: &str, to_guid: &str) -> Result<()> {
    for route in route_guids {
        let destinations = cf.routes().destinations(route).await?;
        let back = mapped_like(&destinations, Some(from_guid), to_guid, NewDestination::app(to_guid));
        cf.routes().insert_destinations(route, &back).await.with_context(|| format!("mapping route {route} back"))?;
    }
    for route in route_guids {
        cf.routes().unmap_app(route, from_guid).await.with_context(|| format!("unmapping route {route}"))?;
    }
    Ok(())
}

/// Deletes the candidate's temporary route (a job); already gone is fine.
pub(crate) async fn remove_temporary_route(cf: &CfClient, route_guid: &str, timeout: Duration) -> Result<()> {
    cf.routes().delete_within(route_guid, timeout).await.context("deleting the temporary route")?;
    log::detail("deleted the temporary route");
    Ok(())
}
