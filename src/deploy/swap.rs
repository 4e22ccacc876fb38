//! Phase 5: production routes move to the candidate in an order that never leaves one without a healthy
//! backend — the candidate is mapped to every production route first, only then is blue unmapped — and the
//! temporary route goes. `give_back` is the same move in reverse (a failed watch, or recovery).

use std::time::Duration;

use anyhow::{Context, Result};

use super::routes::RouteTarget;
use crate::cf::CfClient;
use crate::log;

/// Maps `green_guid` to every production route (creating missing ones), then unmaps `blue_guid` from them.
/// Returns the routes' guids, in order.
pub async fn take_over(
    cf: &CfClient,
    space_guid: &str,
    green_guid: &str,
    blue_guid: Option<&str>,
    prod_routes: &mut [RouteTarget],
) -> Result<Vec<String>> {
    let mut blue_destinations = Vec::new();
    let mut guids = Vec::new();
    for target in prod_routes.iter_mut() {
        let route_guid = target.ensure(cf, space_guid).await?;
        let destinations =
            cf.routes().map_app(&route_guid, green_guid).await.with_context(|| format!("mapping {}", target.url))?;
        log::detail(format_args!("mapped {} to the candidate", target.url));
        if let Some(blue) = blue_guid {
            blue_destinations.extend(
                destinations
                    .into_iter()
                    .filter(|d| d.app.guid == blue)
                    .map(|d| (route_guid.clone(), d.guid, target.url.clone())),
            );
        }
        guids.push(route_guid);
    }
    for (route_guid, destination_guid, url) in blue_destinations {
        cf.routes()
            .remove_destination(&route_guid, &destination_guid)
            .await
            .with_context(|| format!("unmapping production's previous version from {url}"))?;
        log::detail(format_args!("unmapped the previous version from {url}"));
    }
    Ok(guids)
}

/// Moves the given routes from `from_guid` back to `to_guid`: map first, then unmap.
pub async fn give_back(cf: &CfClient, route_guids: &[String], from_guid: &str, to_guid: &str) -> Result<()> {
    for route in route_guids {
        cf.routes().map_app(route, to_guid).await.with_context(|| format!("mapping route {route} back"))?;
    }
    for route in route_guids {
        cf.routes().unmap_app(route, from_guid).await.with_context(|| format!("unmapping route {route}"))?;
    }
    Ok(())
}

/// Deletes the candidate's temporary route (a job); already gone is fine.
pub async fn remove_temporary_route(cf: &CfClient, route_guid: &str, timeout: Duration) -> Result<()> {
    cf.routes().delete_within(route_guid, timeout).await.context("deleting the temporary route")?;
    log::detail("deleted the temporary route");
    Ok(())
}
