//! The deploy lock: `<app>-green` exists only while a deploy runs, and app names are unique per space, so
//! whoever creates it (or renames `<app>-previous` to it, for a rollback) holds the lock. Its journal
//! annotations say who holds it; the holder renews its lease while it works. Another deploy waits, naming the
//! holder, until the lock is released, its lease goes stale (then the stale deploy is recovered first), or
//! `lock_timeout` runs out.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::hold;
use crate::cf::apps::{App, AppUpdate, NewApp};
use crate::cf::types::MetadataPatch;
use crate::cf::{CfClient, Error};
use crate::log;
use crate::record::{Journal, Phase, candidate_metadata};

/// A held lock: the candidate app, its journal, and the task renewing the lease.
pub(crate) struct Lock {
    cf: CfClient,
    pub(crate) app: App,
    journal: Arc<Mutex<Journal>>,
    renewer: JoinHandle<()>,
    /// A journal write [`Lock::record_behind`] started and nobody has waited for yet.
    behind: std::sync::Mutex<Option<JoinHandle<Result<()>>>>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl Lock {
    /// Changes the journal and writes it to the candidate at once (renewing the lease too). The journal stays
    /// locked until the write is done, so a renewal can never write an older phase over a newer one.
    /// A change whose write fails is not kept, so no later renewal can publish it.
    pub(crate) async fn record(&self, change: impl FnOnce(&mut Journal)) -> Result<()> {
        self.catch_up().await?;
        let mut journal = self.journal.lock().await;
        let mut changed = journal.clone();
        change(&mut changed);
        *journal = renew(&self.cf, &self.app.guid, &changed).await?;
        Ok(())
    }

    /// [`Lock::record`] without waiting for the write: it holds the journal until it is done, so every later
    /// write (and renewal) comes after it, and the next [`Lock::record`] or [`Lock::ensure_held`] fails with its
    /// error. For a phase recovery treats like the one before, written while the work it names goes on.
    pub(crate) async fn record_behind(&self, change: impl FnOnce(&mut Journal)) -> Result<()> {
        self.catch_up().await?;
        let mut journal = self.journal.clone().lock_owned().await;
        let mut changed = journal.clone();
        change(&mut changed);
        let (cf, guid) = (self.cf.clone(), self.app.guid.clone());
        let write = tokio::spawn(async move {
            *journal = renew(&cf, &guid, &changed).await?;
            Ok(())
        });
        *self.behind.lock().expect("never poisoned") = Some(write);
        Ok(())
    }

    /// Waits for the write [`Lock::record_behind`] started, if any, and answers its outcome.
    async fn catch_up(&self) -> Result<()> {
        let behind = self.behind.lock().expect("never poisoned").take();
        match behind {
            Some(write) => write.await.context("writing the deploy journal")?,
            None => Ok(()),
        }
    }

    pub(crate) async fn journal(&self) -> Journal {
        self.journal.lock().await.clone()
    }

    /// Fails when the lease was last renewed longer ago than it lasts (the API was out of reach): another deploy
    /// may have taken this one for dead and be recovering it, so this one must not move production.
    pub(crate) async fn ensure_held(&self) -> Result<()> {
        self.catch_up().await?;
        let journal = self.journal.lock().await;
        if journal.is_stale(SystemTime::now()) {
            bail!(
                "the deploy lock's lease ({}) ran out while Cloud Foundry could not be reached; another deploy may be recovering this one",
                log::human_duration(journal.lease)
            );
        }
        Ok(())
    }

    /// Stops renewing, waiting for a renewal in flight, so nothing rewrites the journal afterwards: the lock
    /// then goes with the candidate's name (renamed to production, deleted, or kept as failed).
    pub(crate) async fn stop_renewing(&self) {
        let _no_write_in_flight = self.journal.lock().await;
        self.renewer.abort();
    }
}

/// Writes `journal` to the candidate `guid` with its lease renewed, and returns what was written: the caller
/// keeps it only when the write succeeded.
async fn renew(cf: &CfClient, guid: &str, journal: &Journal) -> Result<Journal> {
    let renewed = Journal { renewed_at: SystemTime::now(), ..journal.clone() };
    let patch = MetadataPatch { labels: BTreeMap::new(), annotations: renewed.to_annotations() };
    cf.apps().update_metadata(guid, &patch).await.context("writing the deploy journal")?;
    Ok(renewed)
}

/// How a deploy takes the lock.
pub(crate) enum Take {
    /// A deploy: create the candidate app.
    Create(NewApp),
    /// A rollback: rename the app called `previous_name` in `space_guid` to the candidate's name. It is looked
    /// up at every attempt: a deploy the rollback waited for replaces `<app>-previous`.
    Rename { space_guid: String, previous_name: String },
}

/// How long a deploy that claimed a dead deploy's lock waits before reading the claim back: another waiter
/// that saw the lock stale at the same time has written its own claim by then, and the last one written wins.
const CLAIM_SETTLE: Duration = Duration::from_secs(2);

/// Takes the lock, waiting for (or recovering from) another deploy that holds it. `recover` is called with the
/// lock of a deploy whose lease went stale, claimed by this one (so no other waiter recovers it too), and must
/// leave no `<app>-green` behind.
pub(crate) async fn acquire<R, F>(
    cf: &CfClient,
    space_guid: &str,
    green_name: &str,
    mut journal: Journal,
    take: Take,
    lock_timeout: Duration,
    mut recover: R,
) -> Result<Lock>
where
    R: FnMut(Lock) -> F,
    F: Future<Output = Result<()>>,
{
    let started = Instant::now();
    let mut last_notice: Option<Instant> = None;
    let poll = (journal.lease / 4).clamp(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        // The lease starts when the lock is taken, not when this deploy started waiting for it: a journal
        // written after a long wait must not look abandoned to the deploys still waiting.
        journal.renewed_at = SystemTime::now();
        if let Some(app) = try_take(cf, green_name, &journal, &take).await? {
            log::detail(format_args!("holding the deploy lock: {} ({})", app.name, app.guid));
            return Ok(start_renewing(cf, app, journal));
        }
        let Some(holder) = cf.apps().by_name(space_guid, green_name).await? else {
            continue;
        };
        let theirs = match Journal::from_annotations(&holder.metadata.annotations) {
            None => bail!(
                "{green_name} exists but was not created by this resource (it has no deploy journal); rename or delete it, then run the deploy again"
            ),
            Some(parsed) => parsed.with_context(|| format!("{green_name} has a damaged deploy journal"))?,
        };
        // A held candidate waits for approval, not for its holder: waiting would never end.
        if theirs.phase == Phase::Held {
            bail!("{}", hold::refusal(green_name, &theirs));
        }
        if theirs.is_stale(SystemTime::now()) {
            log::warn(format_args!(
                "the deploy lock held by {} was last renewed {} ago (lease {}): that deploy died; recovering from its {} phase",
                theirs.describe_holder(),
                log::human_duration(SystemTime::now().duration_since(theirs.renewed_at).unwrap_or_default()),
                log::human_duration(theirs.lease),
                theirs.phase
            ));
            match claim(cf, holder, theirs, &journal.deploy_id).await? {
                Some(claimed) => recover(claimed).await?,
                None => log::info("another deploy claimed it first and is recovering it; waiting for that"),
            }
            continue;
        }
        if started.elapsed() >= lock_timeout {
            bail!(
                "timed out after {} waiting for the deploy lock on {green_name}, held by {} (phase {})",
                log::human_duration(started.elapsed()),
                theirs.describe_holder(),
                theirs.phase
            );
        }
        if last_notice.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            let recovering = theirs.recovered_by.as_ref().map(|by| format!(", being recovered by {by}"));
            log::info(format_args!(
                "waiting for the deploy lock: {green_name} is held by {} (phase {}{}, waited {})",
                theirs.describe_holder(),
                theirs.phase,
                recovering.unwrap_or_default(),
                log::human_duration(started.elapsed())
            ));
            last_notice = Some(Instant::now());
        }
        // Never sleep past the timeout: `lock_timeout: 2s` gives up after 2 s, not after the next poll.
        tokio::time::sleep(poll.min(lock_timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// Claims the lock of the dead deploy whose candidate is `holder`: writes `ours` into its journal as the
/// recoverer (renewing its lease, so deploys that look now see it held), waits [`CLAIM_SETTLE`] and reads it
/// back. Of several waiters that saw it stale together, only the last to write finds its own id: it alone
/// recovers, renewing the lease while it does.
pub(crate) async fn claim(cf: &CfClient, holder: App, theirs: Journal, ours: &str) -> Result<Option<Lock>> {
    let theirs = Journal { recovered_by: Some(ours.to_owned()), ..theirs };
    match renew(cf, &holder.guid, &theirs).await {
        Ok(_) => {}
        // Removed by whoever recovered it meanwhile.
        Err(_) if cf.apps().find(&holder.guid).await?.is_none() => return Ok(None),
        Err(e) => return Err(e),
    }
    tokio::time::sleep(CLAIM_SETTLE).await;
    let Some(now) = cf.apps().find(&holder.guid).await? else {
        return Ok(None);
    };
    let journal = Journal::from_annotations(&now.metadata.annotations).and_then(Result::ok);
    Ok(journal.filter(|j| j.recovered_by.as_deref() == Some(ours)).map(|journal| start_renewing(cf, now, journal)))
}

/// One attempt: `Some(app)` when we now hold the lock, `None` when someone else does.
async fn try_take(cf: &CfClient, green_name: &str, journal: &Journal, take: &Take) -> Result<Option<App>> {
    let outcome = match take {
        Take::Create(new_app) => {
            let new_app =
                NewApp { name: green_name.to_owned(), metadata: candidate_metadata(journal), ..new_app.clone() };
            cf.apps().create(&new_app).await
        }
        Take::Rename { space_guid, previous_name } => {
            let Some(previous) = cf.apps().by_name(space_guid, previous_name).await? else {
                // Whoever holds the lock may give it back (a rollback that died is renamed back to it): wait.
                if cf.apps().by_name(space_guid, green_name).await?.is_some() {
                    return Ok(None);
                }
                bail!("rollback: there is no {previous_name} to roll back to any more");
            };
            let update = AppUpdate {
                name: Some(green_name.to_owned()),
                metadata: Some(candidate_metadata(journal)),
                ..AppUpdate::default()
            };
            match cf.apps().update(&previous.guid, &update).await {
                // Deleted since the lookup (by a deploy finishing its housekeeping): look again.
                Err(Error::Cf(e)) if e.status == Some(404) => return Ok(None),
                outcome => outcome,
            }
        }
    };
    match outcome {
        // After a lost answer the client finds the app by name: it is ours only if it carries our journal.
        Ok(app)
            if Journal::from_annotations(&app.metadata.annotations)
                .and_then(Result::ok)
                .is_some_and(|j| j.deploy_id == journal.deploy_id) =>
        {
            Ok(Some(app))
        }
        Ok(_) => Ok(None),
        // Taken: CF-UniquenessError for a create (`app_create.rb`), CF-UnprocessableEntity "already exists" for a
        // rename (`app_update.rb`); either way another deploy holds the lock.
        Err(Error::Cf(e)) if e.is_name_taken() => Ok(None),
        Err(e) => Err(e).with_context(|| format!("creating {green_name} (the deploy lock)")),
    }
}

fn start_renewing(cf: &CfClient, app: App, journal: Journal) -> Lock {
    let every = (journal.lease / 4).max(Duration::from_millis(250));
    let journal = Arc::new(Mutex::new(journal));
    let renewer = {
        let (cf, guid, journal) = (cf.clone(), app.guid.clone(), journal.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut journal = journal.lock().await;
                match renew(&cf, &guid, &journal).await {
                    Ok(renewed) => *journal = renewed,
                    Err(e) => log::warn(format_args!("could not renew the deploy lock's lease: {e:#}")),
                }
            }
        })
    };
    Lock { cf: cf.clone(), app, journal, renewer, behind: std::sync::Mutex::new(None) }
}
