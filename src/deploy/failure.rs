//! When a put fails. Before the swap production was never touched: the candidate's recent logs are shown (they
//! would be lost with it), its temporary route goes, and it is deleted or kept stopped as `<app>-failed`
//! (`on_failure`) — or, for a rollback, named `<app>-previous` again. Half-way through the swap, or when the
//! watch fails, production is given back to blue first. After the swap nothing is undone: the error says that
//! the next deploy finishes the housekeeping.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};

use super::candidate::Candidate;
use super::carry;
use super::context::{Context, JOB_TIMEOUT};
use super::drain;
use super::lock::Lock;
use super::swap;
use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::config::OnFailure;
use crate::log;
use crate::record::{self, Phase};

/// How many of the candidate's log lines a failure shows.
const RECENT_LINES: u32 = 50;

/// A failure before the swap: production was never touched. Shows the candidate's logs, removes it (or keeps it
/// as `<app>-failed`), and returns the error naming the phase.
pub(crate) async fn before_swap(ctx: &Context, candidate: &Candidate, error: anyhow::Error) -> anyhow::Error {
    let phase = ctx.phases.current().unwrap_or("deploy");
    log::warn(format_args!("{phase} failed; production is untouched"));
    let lock = &candidate.lock;
    show_recent_logs(&ctx.cf, &lock.app).await;
    if let Err(cleanup_error) = release(ctx, lock, candidate.temp_route_guid.as_deref(), ctx.params.rollback).await {
        log::warn(format_args!(
            "could not clean up {} ({cleanup_error:#}); the next deploy will, once its lease ({}) has run out",
            lock.app.name,
            log::human_duration(ctx.params.lock_lease)
        ));
    }
    error.context(format!("{} failed in phase {phase}", ctx.what()))
}

/// A failure half-way through the swap: blue gets back the routes it had before the swap (`existing_routes`), and
/// once routers have caught up (`drain`), the candidate is cleaned up like any failure before the swap.
pub(crate) async fn during_swap(
    ctx: &Context,
    candidate: &Candidate,
    blue: Option<&App>,
    existing_routes: &[String],
    error: anyhow::Error,
) -> anyhow::Error {
    let restored = match blue {
        Some(blue) => give_back(ctx, &candidate.lock, blue, existing_routes).await,
        // Should this process die half-way, recovery must give production back too, not finish the swap.
        None => candidate.lock.record(|j| j.verified = false).await,
    };
    match restored {
        Ok(()) => before_swap(ctx, candidate, error).await,
        Err(restore_error) => {
            log::warn(format_args!(
                "could not give production back to the previous version ({restore_error:#}); the next deploy recovers it from the journal"
            ));
            error.context(format!("{} failed in phase swap", ctx.what()))
        }
    }
}

/// A failure once production runs on the candidate: nothing is undone (production is healthy on the new
/// version); the journal lets the next deploy finish the housekeeping. The error says so.
pub(crate) fn after_swap(ctx: &Context, error: anyhow::Error) -> anyhow::Error {
    let phase = ctx.phases.current().unwrap_or("swap");
    let what = ctx.what();
    error.context(format!(
        "{what} failed in phase {phase} after the swap: production already runs {}, and the next deploy finishes \
         the housekeeping once this {what}'s lock lease ({}) has run out",
        ctx.source.names.green(),
        log::human_duration(ctx.params.lock_lease)
    ))
}

/// A watch round failed after the swap: production goes back to blue (still running), the candidate is removed,
/// and the put fails.
pub(crate) async fn after_watch(
    ctx: &Context,
    lock: &Lock,
    blue: &App,
    route_guids: &[String],
    why: &str,
) -> Result<()> {
    give_back(ctx, lock, blue, route_guids).await?;
    show_recent_logs(&ctx.cf, &lock.app).await;
    release(ctx, lock, None, ctx.params.rollback).await?;
    bail!("watch failed after the swap: {why}; production was swapped back to {}", blue.name)
}

/// Gives `route_guids` back from the candidate to `blue`, and lets the candidate drain: it served production
/// until just now.
async fn give_back(ctx: &Context, lock: &Lock, blue: &App, route_guids: &[String]) -> Result<()> {
    // If this process dies half-way, recovery must give production back too, not finish the promotion.
    lock.record(|j| {
        j.phase = Phase::Swapping;
        j.verified = false;
    })
    .await?;
    swap::give_back(&ctx.cf, route_guids, &lock.app.guid, &blue.guid).await?;
    log::info(format_args!("production is back on {}", blue.name));
    drain::wait(ctx, &lock.app.name, None).await;
    Ok(())
}

/// Prints the candidate's recent logs (staging and runtime), if Log Cache has them.
pub(crate) async fn show_recent_logs(cf: &CfClient, app: &App) {
    match cf.logs().recent(&app.guid, RECENT_LINES).await {
        Ok(lines) if lines.is_empty() => log::detail(format_args!("{} wrote no logs", app.name)),
        Ok(lines) => {
            log::info(format_args!("last {} log lines of {}:", lines.len(), app.name));
            for line in &lines {
                log::output(&line.display());
            }
        }
        Err(e) => log::warn(format_args!("cannot read the logs of {}: {e}", app.name)),
    }
}

/// Gives the lock up with the candidate: stops renewing it (no renewal may write the journal back onto the app
/// once it is renamed), removes the temporary route, and deletes the candidate (with the policies it was given)
/// or keeps it stopped as `<app>-failed`; the candidate of a `rollback` is stopped and named `<app>-previous`
/// again instead.
pub(crate) async fn release(ctx: &Context, lock: &Lock, temp_route_guid: Option<&str>, rollback: bool) -> Result<()> {
    lock.stop_renewing().await;
    let (cf, names, candidate) = (&ctx.cf, &ctx.source.names, &lock.app);
    if let Some(route) = temp_route_guid {
        cf.routes().delete_within(route, JOB_TIMEOUT).await.context("deleting the temporary route")?;
    }
    if rollback {
        cf.apps().stop(&candidate.guid).await.with_context(|| format!("stopping {}", candidate.name))?;
        let kept_as = lock.journal().await.rollback_from.unwrap_or_else(|| names.previous());
        rename_clearing_journal(cf, candidate, &kept_as).await?;
        log::info(format_args!("renamed {} back to {kept_as} (stopped)", candidate.name));
        return Ok(());
    }
    match ctx.params.on_failure {
        OnFailure::Delete => {
            carry::forget(cf, candidate).await?;
            cf.apps()
                .delete_within(&candidate.guid, JOB_TIMEOUT)
                .await
                .with_context(|| format!("deleting {}", candidate.name))?;
            log::info(format_args!("deleted {} (on_failure: delete)", candidate.name));
        }
        OnFailure::Keep => {
            cf.apps().stop(&candidate.guid).await.with_context(|| format!("stopping {}", candidate.name))?;
            let failed = names.failed();
            let older = cf.apps().by_name(candidate.space_guid().unwrap_or_default(), &failed).await?;
            // Already renamed by an earlier attempt at this same cleanup: that is the candidate itself.
            if let Some(older) = older.filter(|older| older.guid != candidate.guid) {
                carry::forget(cf, &older).await?;
                cf.apps()
                    .delete_within(&older.guid, JOB_TIMEOUT)
                    .await
                    .with_context(|| format!("deleting the older {failed}"))?;
            }
            rename_clearing_journal(cf, candidate, &failed).await?;
            log::info(format_args!("kept the candidate stopped as {failed} for debugging (on_failure: keep)"));
        }
    }
    Ok(())
}

/// Renames the candidate, dropping its journal and candidate label: it no longer holds the lock.
async fn rename_clearing_journal(cf: &CfClient, candidate: &App, name: &str) -> Result<()> {
    cf.apps()
        .update(&candidate.guid, &record::release(name, BTreeMap::new()))
        .await
        .with_context(|| format!("renaming {} to {name}", candidate.name))?;
    Ok(())
}
