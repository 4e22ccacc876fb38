//! Phases 5–7, shared by a deploy and a rollback once the candidate is verified: the swap (every production
//! route to the candidate before blue is unmapped; a failure half-way gives production back), the drain and
//! watch (the temporary route is deleted meanwhile), the housekeeping, and the put's answer.

use anyhow::Result;

use super::abort;
use super::candidate::Candidate;
use super::context::{Context, JOB_TIMEOUT};
use super::drain;
use super::failure::{self, after_swap};
use super::gate::GateReport;
use super::housekeeping::{self, Retire};
use super::plan::Kept;
use super::push::Pushed;
use super::report::Outcome;
use super::routes::{self, RouteTarget};
use super::swap;
use crate::cf::apps::App;
use crate::log;
use crate::protocol::VersionResult;
use crate::record::{Audit, Phase};

/// A candidate that passed verification, and what production looks like.
pub(crate) struct Verified {
    pub(crate) candidate: Candidate,
    /// The app production runs on now (`None` on a first deploy).
    pub(crate) blue: Option<App>,
    /// The versions kept now, the most recent first: blue goes before them.
    pub(crate) kept: Vec<Kept>,
    pub(crate) prod_routes: Vec<RouteTarget>,
    pub(crate) pushed: Pushed,
    pub(crate) gate: GateReport,
}

pub(crate) async fn swap_in(ctx: &mut Context, verified: Verified) -> Result<VersionResult> {
    let Verified { candidate, blue, kept, mut prod_routes, mut pushed, gate } = verified;
    let (lock, blue) = (&candidate.lock, blue.as_ref());
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
    candidate.or_release(ctx, swapping.await).await?;
    // What production had before the swap, and is given back should it fail half-way: a route the swap creates
    // never served the previous version.
    let existing_routes = routes::existing_guids(&prod_routes);
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
        Err(e) => return Err(failure::during_swap(ctx, &candidate, blue, &existing_routes, e).await),
    };
    log::success(format_args!("production routes now reach {}", lock.app.name));
    // Written while blue drains: recovery finishes a swap that is complete just as it finishes its housekeeping,
    // and drains blue from the journal's last renewal, which is later than the swap either way. Polled first, the
    // write holds the journal before anything else (a failed watch) can write it. With nothing to drain (a first
    // deploy, or neither `drain` nor `watch`) the swap is followed by the housekeeping at once, and the journal
    // says so in this one write: recovery then has no drain to wait for either way.
    let drained = blue.is_none() || drain::hold_for(ctx).is_zero();
    let record_swapped = lock.record(|j| {
        j.prod_routes = route_guids.clone();
        j.phase = if drained { Phase::Housekeeping } else { Phase::Swapped };
    });
    let remove_temporary_route = async {
        match &candidate.temp_route_guid {
            Some(route) => swap::remove_temporary_route(&ctx.cf, route, JOB_TIMEOUT).await,
            None => Ok(()),
        }
    };
    match blue {
        Some(blue) => {
            ctx.phases.start("drain", &format!("Draining {}", blue.name));
            let ctx = &*ctx;
            let (recorded, removed, watched) = tokio::join!(
                record_swapped,
                remove_temporary_route,
                abort::cut_short(drain::drain_and_watch(ctx, blue, &prod_routes, &route_guids, lock))
            );
            watched?;
            recorded.map_err(|e| after_swap(ctx, e))?;
            removed.map_err(|e| after_swap(ctx, e))?;
        }
        None => {
            let (recorded, removed) = tokio::join!(record_swapped, remove_temporary_route);
            recorded.map_err(|e| after_swap(ctx, e))?;
            removed.map_err(|e| after_swap(ctx, e))?;
        }
    }

    ctx.phases.start("housekeeping", "Housekeeping");
    // A rollback always keeps the version it replaced (rolling back again returns to it).
    let keep = housekeeping::keep_count(ctx.params.keep_previous, ctx.params.rollback, &kept);
    // Recovery tells `housekeeping` from `swapped` only by the drain, which is over: the journal says so beside
    // blue's retirement, unless the swap's write said it already.
    let retired = async {
        match blue {
            Some(blue) => {
                let retire = Retire { blue, kept: &kept, keep };
                housekeeping::retire(&ctx.cf, &names, retire).await
            }
            None => Ok(()),
        }
    };
    let recorded = async {
        match drained {
            true => Ok(()),
            false => lock.record(|j| j.phase = Phase::Housekeeping).await,
        }
    };
    let (recorded, retired) = tokio::join!(recorded, retired);
    recorded.map_err(|e| after_swap(ctx, e))?;
    retired.map_err(|e| after_swap(ctx, e))?;
    lock.stop_renewing().await;
    let journal = lock.journal().await;
    let mut audit = Audit::new(&ctx.build, &journal.deploy_id, &pushed.droplet_guid, pushed.package_checksum.clone());
    match ctx.fingerprint.as_ref().filter(|_| !ctx.params.rollback) {
        Some(fingerprint) => fingerprint.record(&mut audit, blue),
        // A promoted candidate: the digests the put that held it recorded (none for a rollback).
        None => (audit.bits_digest, audit.manifest_digest) = (journal.bits_digest, journal.manifest_digest),
    }
    let production = housekeeping::promote(&ctx.cf, &names, &lock.app, &audit).await.map_err(|e| after_swap(ctx, e))?;
    ctx.phases.finish();
    if let Some(droplet) = production.current_droplet_guid() {
        pushed.droplet_guid = droplet.to_owned();
    }

    let previous_name = names.previous();
    let outcome = Outcome {
        production: &production,
        pushed: &pushed,
        prod_routes: prod_routes.iter().map(|r| r.url.clone()).collect(),
        scheme: ctx.source.route_scheme,
        gate: &gate,
        phases: &ctx.phases,
        build: &ctx.build,
        previous: blue.map(|_| match (ctx.params.rollback, keep) {
            (true, _) => format!("kept stopped as {previous_name} (roll back again to return to it)"),
            (false, 0) => "deleted".into(),
            (false, _) => format!("kept stopped as {previous_name}"),
        }),
    };
    outcome.print_summary();
    Ok(outcome.result())
}
