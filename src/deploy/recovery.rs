//! Recovering a deploy that died holding the lock, from its journal, so the foundation is consistent before
//! the next deploy starts (the recovery table of the deploy design):
//!
//! - pushing / task / verifying: production is only on blue → remove the candidate and its temporary route (a
//!   task the dead deploy left running is cancelled first);
//! - canary: the candidate served beside blue, which never stopped → unmap the candidate from the production
//!   routes (blue keeps them), let it drain, remove it;
//! - swapping, verified and healthy: finish the swap, then housekeeping;
//! - swapping, with blue there but no longer running (a recovery before got as far as stopping it): finish the
//!   swap, as the candidate is all that can serve production;
//! - swapping otherwise: give every production route back to blue, remove the candidate;
//! - swapped / housekeeping: production is on the candidate → finish housekeeping (renames are idempotent).
//!
//! Throughout, every production route keeps a healthy destination: routes are mapped before anything is
//! unmapped, and an app that served production is stopped or deleted only once another serves all its routes
//! and `drain` has passed since it was unmapped (routers learn of the unmapping late; requests in flight
//! finish).

use anyhow::{Context as _, Result};

use super::context::{Context, JOB_TIMEOUT};
use super::drain;
use super::failure;
use super::hold;
use super::housekeeping::{self, Retire};
use super::lock::Lock;
use super::plan::Apps;
use super::swap;
use super::task;
use crate::cf::CfClient;
use crate::cf::apps::{App, AppState};
use crate::cf::processes::ProcessStats;
use crate::log;
use crate::record::Audit;
use crate::record::{Journal, Phase};

/// What recovery will do with a dead deploy's candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    RemoveCandidate,
    FinishSwap,
    GiveBack,
    FinishHousekeeping,
    /// A held candidate waits for a put with `promote` or `abort`: it is never recovered.
    LeaveHeld,
}

/// The version the dead deploy was replacing, as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlueNow {
    /// A first deploy: there was none.
    None,
    Running,
    /// It exists but is stopped: production can no longer be given back to it.
    NotRunning,
}

impl Action {
    pub(crate) fn decide(journal: &Journal, candidate_healthy: bool, blue: BlueNow) -> Action {
        match journal.phase {
            Phase::Pushing | Phase::Task | Phase::Verifying => Action::RemoveCandidate,
            Phase::Held => Action::LeaveHeld,
            Phase::Canary => Action::GiveBack,
            Phase::Swapping if journal.verified && candidate_healthy => Action::FinishSwap,
            Phase::Swapping if blue == BlueNow::NotRunning => Action::FinishSwap,
            Phase::Swapping => Action::GiveBack,
            Phase::Swapped | Phase::Housekeeping => Action::FinishHousekeeping,
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Action::RemoveCandidate => {
                "remove the unfinished candidate and its temporary route (production was never touched)"
            }
            Action::FinishSwap => "finish moving production to the verified, healthy candidate, then the housekeeping",
            Action::GiveBack => "give every production route back to the previous version and remove the candidate",
            Action::FinishHousekeeping => "finish the housekeeping: production already runs on the candidate",
            Action::LeaveHeld => "leave the held candidate as it is (a put with promote or abort decides)",
        }
    }
}

/// Whether every instance of every scaled process of `app` is running and routable, right now.
async fn is_healthy(cf: &CfClient, app: &App) -> Result<bool> {
    for process in cf.processes().for_app(&app.guid).await?.iter().filter(|p| p.instances > 0) {
        let stats: ProcessStats = cf.processes().stats(&process.guid).await?;
        if !stats.all_ready(process.instances) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What recovery would do with `candidate` now, and the version its deploy was replacing (if it still exists).
pub(crate) async fn assess(cf: &CfClient, candidate: &App, journal: &Journal) -> Result<(Action, Option<App>)> {
    let healthy = journal.phase == Phase::Swapping && is_healthy(cf, candidate).await?;
    let blue = match &journal.blue_guid {
        Some(guid) => cf.apps().find(guid).await?,
        None => None,
    };
    let blue_now = match &blue {
        None => BlueNow::None,
        Some(app) if app.state == AppState::Started => BlueNow::Running,
        Some(_) => BlueNow::NotRunning,
    };
    Ok((Action::decide(journal, healthy, blue_now), blue))
}

/// Brings the foundation back to a consistent state after a deploy died; `claimed` is its lock, now held (and
/// renewed) by this put, with the dead deploy's journal.
pub(crate) async fn recover(ctx: &Context, claimed: Lock) -> Result<()> {
    let cf = &ctx.cf;
    let candidate = claimed.app.clone();
    let journal = claimed.journal().await;
    let (action, blue) = assess(cf, &candidate, &journal).await?;
    log::info(format_args!("recovery: {}", action.describe()));
    let names = &ctx.source.names;
    let apps = Apps::read(cf, &ctx.target.space.guid, names).await?;
    match action {
        Action::RemoveCandidate => {
            task::cancel_left_running(cf, &candidate.guid, &journal).await?;
            failure::show_recent_logs(cf, &candidate).await;
            remove(ctx, &claimed, &journal).await?;
        }
        Action::GiveBack => {
            let routes = journal.prod_routes.len();
            if let Some(blue) = &blue {
                swap::give_back(cf, &journal.prod_routes, &candidate.guid, &blue.guid).await?;
                log::detail(format_args!("mapped {} back to the {routes} production route(s)", blue.name));
            } else {
                for route in &journal.prod_routes {
                    cf.routes().unmap_app(route, &candidate.guid).await?;
                }
            }
            log::detail(format_args!("unmapped {} from the {routes} production route(s)", candidate.name));
            // The candidate may have served production until just now.
            drain::wait(ctx, &candidate.name, None).await;
            remove(ctx, &claimed, &journal).await?;
        }
        Action::FinishSwap => {
            let routes = journal.prod_routes.len();
            for route in &journal.prod_routes {
                cf.routes().map_app(route, &candidate.guid).await?;
            }
            log::detail(format_args!("mapped {} to the {routes} production route(s)", candidate.name));
            if let Some(blue) = &blue {
                for route in &journal.prod_routes {
                    cf.routes().unmap_app(route, &blue.guid).await?;
                }
                log::detail(format_args!("unmapped {} from them", blue.name));
            }
            // Should this put die too, the next one finishes from here instead of deciding again.
            claimed.record(|j| j.phase = Phase::Swapped).await?;
            if let Some(blue) = &blue {
                drain::wait(ctx, &blue.name, None).await;
            }
            finish_housekeeping(ctx, &claimed, blue.as_ref(), &apps).await?;
        }
        Action::FinishHousekeeping => {
            // Swapped: blue was unmapped before the journal's last renewal by the dead deploy; drain what is left
            // of `drain` since then. Housekeeping: the dead deploy had drained blue already.
            if let Some(blue) = blue.as_ref().filter(|_| journal.phase == Phase::Swapped) {
                drain::wait(ctx, &blue.name, Some(journal.renewed_at)).await;
            }
            finish_housekeeping(ctx, &claimed, blue.as_ref(), &apps).await?
        }
        Action::LeaveHeld => anyhow::bail!("{}", hold::refusal(&candidate.name, &journal)),
    }
    log::success("recovered: the foundation is consistent again");
    Ok(())
}

/// Removes the dead deploy's candidate and its temporary route (or keeps it as `<app>-failed`).
async fn remove(ctx: &Context, claimed: &Lock, journal: &Journal) -> Result<()> {
    failure::release(ctx, claimed, journal.temp_route.as_deref(), journal.rollback)
        .await
        .context("removing the dead deploy's candidate")
}

async fn finish_housekeeping(ctx: &Context, claimed: &Lock, blue: Option<&App>, apps: &Apps) -> Result<()> {
    let cf = &ctx.cf;
    claimed.record(|j| j.phase = Phase::Housekeeping).await?;
    let journal = claimed.journal().await;
    let candidate = &claimed.app;
    if let Some(route) = &journal.temp_route {
        swap::remove_temporary_route(cf, route, JOB_TIMEOUT).await?;
    }
    let names = &ctx.source.names;
    if let Some(blue) = blue {
        // A rollback always keeps the version it replaced (rolling back again returns to it).
        let keep = housekeeping::keep_count(ctx.params.keep_previous, journal.rollback, &apps.kept);
        let retire = Retire { blue, kept: &apps.kept, keep };
        housekeeping::retire(cf, names, retire).await?;
    }
    claimed.stop_renewing().await;
    let candidate = &cf.apps().with_current_droplet(candidate.clone()).await?;
    let droplet = candidate.current_droplet_guid().unwrap_or_default().to_owned();
    let audit = Audit {
        deployed_at: Some(std::time::SystemTime::now()),
        deploy_id: Some(journal.deploy_id.clone()),
        build_url: journal.build_url.clone(),
        droplet_guid: Some(droplet),
        ..Audit::default()
    };
    housekeeping::promote(cf, names, candidate, &audit).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::protocol::BuildEnv;

    fn journal(phase: Phase, verified: bool) -> Journal {
        let mut journal = Journal::new(&BuildEnv::default(), Duration::from_secs(60));
        journal.phase = phase;
        journal.verified = verified;
        journal
    }

    #[test]
    fn decisions_follow_the_recovery_table() {
        use BlueNow::Running;
        let decide = Action::decide;
        assert_eq!(decide(&journal(Phase::Pushing, false), false, Running), Action::RemoveCandidate);
        assert_eq!(decide(&journal(Phase::Task, false), false, Running), Action::RemoveCandidate);
        assert_eq!(decide(&journal(Phase::Verifying, false), true, Running), Action::RemoveCandidate);
        assert_eq!(decide(&journal(Phase::Canary, true), true, Running), Action::GiveBack, "a canary never swaps");
        assert_eq!(decide(&journal(Phase::Swapping, true), true, Running), Action::FinishSwap);
        assert_eq!(decide(&journal(Phase::Swapping, true), false, Running), Action::GiveBack);
        assert_eq!(decide(&journal(Phase::Swapping, false), true, Running), Action::GiveBack);
        assert_eq!(decide(&journal(Phase::Swapping, false), false, BlueNow::None), Action::GiveBack);
        assert_eq!(decide(&journal(Phase::Swapped, true), false, Running), Action::FinishHousekeeping);
        assert_eq!(decide(&journal(Phase::Housekeeping, true), true, Running), Action::FinishHousekeeping);
        for (verified, healthy, blue) in [(true, true, Running), (false, false, BlueNow::NotRunning)] {
            assert_eq!(decide(&journal(Phase::Held, verified), healthy, blue), Action::LeaveHeld, "never recovered");
        }
    }

    #[test]
    fn production_is_never_given_back_to_a_version_that_no_longer_runs() {
        for verified in [true, false] {
            for healthy in [true, false] {
                let action = Action::decide(&journal(Phase::Swapping, verified), healthy, BlueNow::NotRunning);
                assert_eq!(action, Action::FinishSwap, "verified {verified}, healthy {healthy}");
            }
        }
    }
}
