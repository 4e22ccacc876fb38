//! Phase 7: the renames, with no moment where two apps share a name — blue is stopped and becomes
//! `<app>-previous` (replacing an older one) or is deleted, then the candidate becomes `<app>`, its journal
//! cleared and the audit trail written in the same request. Every step checks first, so recovery can run it
//! again after a crash half-way.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use super::carry;
use super::context::JOB_TIMEOUT;
use crate::cf::CfClient;
use crate::cf::apps::{App, AppState};
use crate::config::AppNames;
use crate::log;
use crate::record;
use crate::record::Audit;

/// What happens to the version that was in production.
pub(crate) struct Retire<'a> {
    pub(crate) blue: &'a App,
    /// The `<app>-previous` that exists now, if any (replaced when blue is kept).
    pub(crate) previous: Option<&'a App>,
    pub(crate) keep: bool,
}

/// Stops blue and keeps it as `<app>-previous`, or deletes it. Blue serves nothing any more (unmapped, drained),
/// so stopping it and making room for it under `<app>-previous` go side by side; both are done before
/// [`promote`] releases the lock.
pub(crate) async fn retire(cf: &CfClient, names: &AppNames, retire: Retire<'_>) -> Result<()> {
    let blue = retire.blue;
    let stop = async {
        if blue.state != AppState::Stopped {
            cf.apps().stop(&blue.guid).await.with_context(|| format!("stopping {}", blue.name))?;
            log::detail(format_args!("stopped {}", blue.name));
        }
        anyhow::Ok(())
    };
    if !retire.keep {
        stop.await?;
        carry::forget(cf, blue).await?;
        cf.apps().delete_within(&blue.guid, JOB_TIMEOUT).await.with_context(|| format!("deleting {}", blue.name))?;
        log::detail(format_args!("deleted {}", blue.name));
        return Ok(());
    }
    let previous_name = names.previous();
    let rename = async {
        if let Some(older) = retire.previous.filter(|p| p.guid != blue.guid) {
            carry::forget(cf, older).await?;
            cf.apps()
                .delete_within(&older.guid, JOB_TIMEOUT)
                .await
                .with_context(|| format!("deleting the older {previous_name}"))?;
            log::detail(format_args!("deleted the older {previous_name} ({})", older.guid));
        }
        if blue.name != previous_name {
            // Also drops any journal keys a journal write that CF processed after the client gave up on it left
            // on the app (it was the candidate of the deploy before): a kept version carries no journal.
            cf.apps()
                .update(&blue.guid, &record::release(&previous_name, BTreeMap::new()))
                .await
                .with_context(|| format!("renaming {} to {previous_name}", blue.name))?;
            log::detail(format_args!("renamed {} to {previous_name} (kept stopped for rollback)", blue.name));
        }
        anyhow::Ok(())
    };
    tokio::try_join!(stop, rename)?;
    Ok(())
}

/// Renames the candidate to the production name, clears its journal and candidate label, and records `audit`.
pub(crate) async fn promote(cf: &CfClient, names: &AppNames, candidate: &App, audit: &Audit) -> Result<App> {
    let app = cf
        .apps()
        .update(&candidate.guid, &record::release(&names.production, audit.to_annotations()))
        .await
        .with_context(|| format!("renaming {} to {}", candidate.name, names.production))?;
    log::detail(format_args!("renamed {} to {}", candidate.name, names.production));
    Ok(app)
}
