//! Phases 5–7, shared by a deploy and a rollback once the candidate is verified: the swap (every production
//! route to the candidate before blue is unmapped; a failure half-way gives production back), the drain and
//! watch (the temporary route is deleted meanwhile), the housekeeping, and the put's answer.

use anyhow::Result;

use super::gate::GateReport;
use super::housekeeping::{self, Retire};
use super::lock::Lock;
use super::push::Pushed;
use super::report::Outcome;
use super::routes::RouteTarget;
use super::{Context, JOB_TIMEOUT, fail_before_swap, swap, undo_partial_swap, watch};
use crate::cf::apps::App;
use crate::log;
use crate::protocol::VersionResult;
use crate::record::Audit;
use crate::record::Phase;

/// A candidate that passed verification, and what production looks like.
pub struct Verified<'a> {
    pub lock: &'a Lock,
    /// The app production runs on now (`None` on a first deploy).
    pub blue: Option<&'a App>,
    pub prod_routes: Vec<RouteTarget>,
    pub temp_route_guid: Option<String>,
    pub pushed: Pushed,
    pub gate: GateReport,
}

/// What housekeeping does with blue.
pub struct Retirement<'a> {
    /// The `<app>-previous` there is now, replaced when blue is kept.
    pub older_previous: Option<&'a App>,
    pub keep: bool,
    /// For the summary: `kept stopped as myapp-previous`.
    pub summary: String,
}

pub async fn swap_in(ctx: &mut Context, verified: Verified<'_>, retirement: Retirement<'_>) -> Result<VersionResult> {
    let Verified { lock, blue, mut prod_routes, temp_route_guid, mut pushed, gate } = verified;
    let names = ctx.source.names.clone();
    ctx.phases.start("swap", "Swapping production routes");
    let swapping = async {
        lock.ensure_held().await?;
        lock.record(|j| {
            j.phase = Phase::Swapping;
            j.verified = true;
        })
        .await
    };
    if let Err(e) = swapping.await {
        return Err(fail_before_swap(ctx, lock, temp_route_guid.as_deref(), e).await);
    }
    // What production had before the swap, and is given back should it fail half-way: a route the swap creates
    // never served the previous version.
    let existing_routes: Vec<String> =
        prod_routes.iter().filter_map(|r| r.route.as_ref().map(|r| r.guid.clone())).collect();
    let taken = swap::take_over(
        &ctx.cf,
        &ctx.target.space.guid,
        &lock.app.guid,
        blue.map(|b| b.guid.as_str()),
        &mut prod_routes,
    )
    .await;
    let route_guids = match taken {
        Ok(guids) => guids,
        Err(e) => {
            return Err(undo_partial_swap(ctx, lock, blue, &existing_routes, temp_route_guid.as_deref(), e).await);
        }
    };
    log::success(format_args!("production routes now reach {}", lock.app.name));
    lock.record(|j| {
        j.prod_routes = route_guids.clone();
        j.phase = Phase::Swapped;
    })
    .await
    .map_err(|e| after_swap(ctx, e))?;

    let remove_temporary_route = async {
        match &temp_route_guid {
            Some(route) => swap::remove_temporary_route(&ctx.cf, route, JOB_TIMEOUT).await,
            None => Ok(()),
        }
    };
    match blue {
        Some(blue) => {
            ctx.phases.start("drain", &format!("Draining {}", blue.name));
            let ctx = &*ctx;
            let (removed, watched) = tokio::join!(
                remove_temporary_route,
                watch::drain_and_watch(ctx, blue, &prod_routes, &route_guids, lock)
            );
            watched?;
            removed.map_err(|e| after_swap(ctx, e))?;
        }
        None => remove_temporary_route.await.map_err(|e| after_swap(ctx, e))?,
    }

    ctx.phases.start("housekeeping", "Housekeeping");
    lock.record(|j| j.phase = Phase::Housekeeping).await.map_err(|e| after_swap(ctx, e))?;
    if let Some(blue) = blue {
        let retire = Retire { blue, previous: retirement.older_previous, keep: retirement.keep };
        housekeeping::retire(&ctx.cf, &names, retire, JOB_TIMEOUT).await.map_err(|e| after_swap(ctx, e))?;
    }
    lock.stop_renewing().await;
    let deploy_id = lock.journal().await.deploy_id;
    let audit = Audit::new(&ctx.build, &deploy_id, &pushed.droplet_guid, pushed.package_checksum.clone());
    let production = housekeeping::promote(&ctx.cf, &names, &lock.app, &audit).await.map_err(|e| after_swap(ctx, e))?;
    ctx.phases.finish();
    if let Some(droplet) = production.current_droplet_guid() {
        pushed.droplet_guid = droplet.to_owned();
    }

    let outcome = Outcome {
        production: &production,
        pushed: &pushed,
        prod_routes: prod_routes.iter().map(|r| r.url.clone()).collect(),
        scheme: ctx.source.route_scheme,
        gate: &gate,
        phases: &ctx.phases,
        build: &ctx.build,
        previous: blue.map(|_| retirement.summary),
    };
    outcome.print_summary();
    Ok(outcome.result())
}

/// A failure once production runs on the candidate: nothing is undone (production is healthy on the new
/// version); the journal lets the next deploy finish the housekeeping. The error says so.
fn after_swap(ctx: &Context, error: anyhow::Error) -> anyhow::Error {
    let phase = ctx.phases.current().unwrap_or("swap");
    let what = if ctx.params.rollback { "rollback" } else { "deploy" };
    error.context(format!(
        "{what} failed in phase {phase} after the swap: production already runs {}, and the next deploy finishes \
         the housekeeping once this {what}'s lock lease ({}) has run out",
        ctx.source.names.green(),
        log::human_duration(ctx.params.lock_lease)
    ))
}
