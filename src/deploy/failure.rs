//! A candidate that failed before the swap: production was never touched, so the candidate's recent logs are
//! shown (they would be lost with it), its temporary route goes, and it is deleted or kept stopped as
//! `<app>-failed` (`on_failure`) — or, for a rollback, named `<app>-previous` again.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::config::{AppNames, OnFailure};
use crate::log;
use crate::record;

/// How many of the candidate's log lines a failure shows.
const RECENT_LINES: u32 = 50;

/// Prints the candidate's recent logs (staging and runtime), if Log Cache has them.
pub async fn show_recent_logs(cf: &CfClient, app: &App) {
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

/// Removes the failed candidate's temporary route and deletes it or keeps it stopped as `<app>-failed`; a
/// rolled-back `<app>-previous` is stopped and renamed back instead.
pub async fn abandon(
    cf: &CfClient,
    names: &AppNames,
    candidate: &App,
    temp_route_guid: Option<&str>,
    on_failure: OnFailure,
    rollback: bool,
    job_timeout: Duration,
) -> Result<()> {
    if let Some(route) = temp_route_guid {
        cf.routes().delete_within(route, job_timeout).await.context("deleting the temporary route")?;
    }
    if rollback {
        cf.apps().stop(&candidate.guid).await.with_context(|| format!("stopping {}", candidate.name))?;
        rename_clearing_journal(cf, candidate, &names.previous()).await?;
        log::info(format_args!("renamed {} back to {} (stopped)", candidate.name, names.previous()));
        return Ok(());
    }
    match on_failure {
        OnFailure::Delete => {
            cf.apps()
                .delete_within(&candidate.guid, job_timeout)
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
                cf.apps()
                    .delete_within(&older.guid, job_timeout)
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
