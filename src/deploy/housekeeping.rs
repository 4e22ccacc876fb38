//! Phase 7: the renames, with no moment where two apps share a name — blue is stopped and becomes
//! `<app>-previous`, the versions kept before it moving down to `<app>-previous-2`, … (the oldest beyond
//! `keep_previous` deleted), or blue is deleted; then the candidate becomes `<app>`, its journal cleared and the
//! audit trail written in the same request. Every step checks first, so recovery can run it
//! again after a crash half-way.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};

use super::carry;
use super::context::JOB_TIMEOUT;
use super::plan::Kept;
use crate::cf::CfClient;
use crate::cf::apps::{App, AppState};
use crate::config::AppNames;
use crate::log;
use crate::record;
use crate::record::Audit;

/// What happens to the version that was in production.
pub(crate) struct Retire<'a> {
    pub(crate) blue: &'a App,
    /// The kept versions there are now, the most recent first (a rollback's candidate is no longer among them).
    pub(crate) kept: &'a [Kept],
    /// How many versions stay kept, blue the most recent of them ([`keep_count`]); 0 deletes blue.
    pub(crate) keep: u32,
}

/// How many versions a put keeps: `keep_previous`, or for a rollback at least as many as there were (the candidate
/// was one of them, and the version it replaces takes its place), so rolling back never deletes a version.
pub(crate) fn keep_count(keep_previous: u32, rollback: bool, kept_now: &[Kept]) -> u32 {
    let there_were = u32::try_from(kept_now.len() + 1).unwrap_or(u32::MAX);
    if rollback { keep_previous.max(there_were) } else { keep_previous }
}

/// Stops blue and keeps it as `<app>-previous`, the kept versions moved one place down the list
/// (`<app>-previous` → `<app>-previous-2` …), those beyond [`Retire::keep`] deleted; with `keep: 0` blue is
/// deleted too. Blue serves nothing any more (unmapped, drained), so stopping it and making room for it go side by
/// side; both are done before [`promote`] releases the lock.
pub(crate) async fn retire(cf: &CfClient, names: &AppNames, retire: Retire<'_>) -> Result<()> {
    let blue = retire.blue;
    let stop = async {
        if blue.state != AppState::Stopped {
            cf.apps().stop(&blue.guid).await.with_context(|| format!("stopping {}", blue.name))?;
            log::detail(format_args!("stopped {}", blue.name));
        }
        anyhow::Ok(())
    };
    let older = retire.kept.iter().map(|k| &k.app).filter(|app| app.guid != blue.guid);
    let order: Vec<&App> = std::iter::once(blue).chain(older).collect();
    let keep = usize::try_from(retire.keep).unwrap_or(usize::MAX).min(order.len());
    let (kept, beyond) = order.split_at(keep);
    let (blue_deleted, beyond) = match kept.is_empty() {
        true => (true, &beyond[1..]),
        false => (false, beyond),
    };
    let make_room = async {
        futures_util::future::try_join_all(beyond.iter().map(|app| delete(cf, app, "the older "))).await?;
        shift(cf, names, kept).await
    };
    tokio::try_join!(stop, make_room)?;
    if blue_deleted {
        delete(cf, blue, "").await?;
    }
    Ok(())
}

/// Deletes `app` with its network policies; the log says `deleted <which><name> (<guid>)`.
async fn delete(cf: &CfClient, app: &App, which: &str) -> Result<()> {
    carry::forget(cf, app).await?;
    cf.apps().delete_within(&app.guid, JOB_TIMEOUT).await.with_context(|| format!("deleting {}", app.name))?;
    log::detail(format_args!("deleted {which}{} ({})", app.name, app.guid));
    Ok(())
}

/// Names `order[i]` `<app>-previous-(i+1)`, one rename at a time and each only to a name no app of `order` has
/// then: CC refuses a name taken in the space (422). Every app has a name of its own at every moment and the list
/// keeps its order, so a put that dies between two renames leaves kept versions with gaps that the next put's
/// recovery closes by running this again (an app already named right is not renamed).
async fn shift(cf: &CfClient, names: &AppNames, order: &[&App]) -> Result<()> {
    let mut now: Vec<String> = order.iter().map(|app| app.name.clone()).collect();
    let targets: Vec<String> = (1..).zip(order).map(|(nth, _)| names.kept(nth)).collect();
    while let Some(i) = next_rename(&now, &targets)? {
        let (app, target) = (order[i], &targets[i]);
        // Also drops any journal keys a journal write that CF processed after the client gave up on it left on
        // the app (it was the candidate of a deploy before): a kept version carries no journal.
        cf.apps()
            .update(&app.guid, &record::release(target, BTreeMap::new()))
            .await
            .with_context(|| format!("renaming {} to {target}", now[i]))?;
        log::detail(format_args!("renamed {} to {target} (kept stopped for rollback)", now[i]));
        now[i] = target.clone();
    }
    Ok(())
}

/// Which app to rename next (`now[i]` to `targets[i]`): the first not named right whose target no other app has.
/// `None` when all are named right.
fn next_rename(now: &[String], targets: &[String]) -> Result<Option<usize>> {
    let free = |i: usize| !now.iter().enumerate().any(|(j, name)| j != i && name.eq_ignore_ascii_case(&targets[i]));
    let pending: Vec<usize> = (0..now.len()).filter(|i| !now[*i].eq_ignore_ascii_case(&targets[*i])).collect();
    match pending.iter().copied().find(|i| free(*i)) {
        Some(i) => Ok(Some(i)),
        None if pending.is_empty() => Ok(None),
        // Never, by the order of the list: each would wait for another's name.
        None => anyhow::bail!("the kept versions cannot be renamed in order: {now:?}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the renames [`shift`] makes, stopping after `die_after` of them (a put that died), and answers the
    /// names then.
    fn renames(mut now: Vec<String>, targets: &[String], die_after: usize) -> Vec<String> {
        for _ in 0..die_after {
            let Some(i) = next_rename(&now, targets).unwrap() else { break };
            assert!(!now.iter().any(|n| n == &targets[i]), "{} is taken: CC would answer 422", targets[i]);
            now[i] = targets[i].clone();
        }
        now
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_shift_renames_the_oldest_first_and_a_shift_cut_short_is_finished_by_running_it_again() {
        let targets = names(&["a-previous", "a-previous-2", "a-previous-3"]);
        let before = names(&["a", "a-previous", "a-previous-2"]);
        assert_eq!(renames(before.clone(), &targets, 99), targets);
        assert_eq!(renames(before.clone(), &targets, 1), names(&["a", "a-previous", "a-previous-3"]));
        for died in 0..3 {
            // Recovery reads the names as the dead put left them and shifts again: same order, nothing renamed twice.
            let left = renames(before.clone(), &targets, died);
            assert_eq!(renames(left, &targets, 99), targets, "died after {died} renames");
        }
    }

    #[test]
    fn gaps_close_downwards_and_a_rolled_back_version_leaves_its_place_to_the_others() {
        let targets = names(&["a-previous", "a-previous-2", "a-previous-3"]);
        // The 2nd was rolled back to (renamed to the candidate): production takes the 1st place, the 3rd stays.
        assert_eq!(renames(names(&["a", "a-previous", "a-previous-3"]), &targets, 99), targets);
        // Only later places are taken (the 1st was rolled back to): everything moves up.
        assert_eq!(renames(names(&["a", "a-previous-3", "a-previous-5"]), &targets, 99), targets);
        assert_eq!(next_rename(&targets, &targets).unwrap(), None, "nothing to do");
    }

    #[test]
    fn a_rollback_keeps_at_least_the_versions_there_were() {
        let app = |name: &str| -> App {
            serde_json::from_value(serde_json::json!({"guid": name, "name": name, "state": "STOPPED"})).unwrap()
        };
        let kept = [Kept { nth: 2, app: app("a-previous-2") }, Kept { nth: 3, app: app("a-previous-3") }];
        assert_eq!(keep_count(1, true, &kept), 3, "the candidate was one of 3: production takes its place");
        assert_eq!(keep_count(1, false, &kept), 1);
        assert_eq!(keep_count(5, true, &kept), 5);
    }
}
