//! The deploy journal: annotations on `<app>-green` saying who is deploying, how far they got and what they
//! touched, so a second deploy can wait for the first and the next deploy after a crash can finish or undo it.
//!
//! `<app>-green` existing *is* the lock (app names are unique per space); the journal makes it readable. A
//! `<app>-green` without a journal was not made by this resource and is never touched.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};

use crate::protocol::BuildEnv;
use crate::record::prefix;

/// The deploy id: the key whose presence makes an app's annotations a journal.
pub const DEPLOY_ID: &str = concat!(prefix!(), "deploy-id");
const HOLDER: &str = concat!(prefix!(), "holder");
const BUILD_URL: &str = concat!(prefix!(), "build-url");
/// How far the deploy got ([`Phase`]).
pub const PHASE: &str = concat!(prefix!(), "phase");
const VERIFIED: &str = concat!(prefix!(), "verified");
const RENEWED_AT: &str = concat!(prefix!(), "renewed-at");
const LEASE: &str = concat!(prefix!(), "lease-seconds");
const BLUE: &str = concat!(prefix!(), "blue-app");
const PROD_ROUTES: &str = concat!(prefix!(), "prod-routes");
const TEMP_ROUTE: &str = concat!(prefix!(), "temp-route");
const ROLLBACK: &str = concat!(prefix!(), "rollback");
const ROLLBACK_FROM: &str = concat!(prefix!(), "rollback-from");
const RECOVERED_BY: &str = concat!(prefix!(), "recovered-by");
/// The guid of the task `params.task` started (phase `task`).
pub const TASK: &str = concat!(prefix!(), "task");
/// The digests of a held candidate's bits and manifest, for the audit its promotion writes.
const BITS_DIGEST: &str = concat!(prefix!(), "candidate-bits-digest");
const MANIFEST_DIGEST: &str = concat!(prefix!(), "candidate-manifest-digest");

/// Every key of a journal.
pub const KEYS: &[&str] = &[
    DEPLOY_ID,
    HOLDER,
    BUILD_URL,
    PHASE,
    VERIFIED,
    RENEWED_AT,
    LEASE,
    BLUE,
    PROD_ROUTES,
    TEMP_ROUTE,
    ROLLBACK,
    ROLLBACK_FROM,
    RECOVERED_BY,
    TASK,
    BITS_DIGEST,
    MANIFEST_DIGEST,
];

/// How far a deploy got. The order is the order of the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Pushing,
    /// `params.task` runs on the candidate's droplet, before the candidate starts.
    Task,
    Verifying,
    /// `params.hold`: verified, running on its temporary route, waiting for a put with `promote` or `abort`. Its
    /// lease never runs out and recovery never touches it.
    Held,
    /// The verified candidate serves its share of production beside blue (mapped to blue's production routes,
    /// written to the journal before the first is mapped).
    Canary,
    Swapping,
    Swapped,
    Housekeeping,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pushing => "pushing",
            Phase::Task => "task",
            Phase::Verifying => "verifying",
            Phase::Held => "held",
            Phase::Canary => "canary",
            Phase::Swapping => "swapping",
            Phase::Swapped => "swapped",
            Phase::Housekeeping => "housekeeping",
        }
    }

    fn parse(text: &str) -> Option<Phase> {
        [
            Phase::Pushing,
            Phase::Task,
            Phase::Verifying,
            Phase::Held,
            Phase::Canary,
            Phase::Swapping,
            Phase::Swapped,
            Phase::Housekeeping,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// Whether production may already be (partly) on the candidate.
    pub fn production_may_be_on_candidate(self) -> bool {
        self >= Phase::Canary
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The journal of one deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub deploy_id: String,
    /// `team/pipeline/job #build`, or what is known of it.
    pub holder: String,
    pub build_url: Option<String>,
    pub phase: Phase,
    /// The candidate passed verification (HTTP checks, smoke test, KPI gates).
    pub verified: bool,
    pub renewed_at: SystemTime,
    /// How long the holder may go without renewing before its lock counts as abandoned.
    pub lease: Duration,
    /// Production when the deploy started (`None` on a first deploy).
    pub blue_guid: Option<String>,
    /// Guids of the production routes.
    pub prod_routes: Vec<String>,
    pub temp_route: Option<String>,
    /// The candidate is `<app>-previous` being rolled back to: undoing means renaming it back, never deleting.
    pub rollback: bool,
    /// The name the rollback's candidate had as a kept version (`<app>-previous-2` …), given back to it when the
    /// rollback is undone; `None`: `<app>-previous`.
    pub rollback_from: Option<String>,
    /// The deploy that claimed this dead deploy's lock to recover it (it renews the lease meanwhile).
    pub recovered_by: Option<String>,
    /// The guid of the task `params.task` started on the candidate (phase `task`), once CF named it.
    pub task: Option<String>,
    /// A held candidate's bits and manifest digests (phase `held`): what `skip_unchanged` compares, recorded in
    /// the audit when a later put promotes it.
    pub bits_digest: Option<String>,
    pub manifest_digest: Option<String>,
}

impl Journal {
    /// A fresh journal for a deploy run by `build`.
    pub fn new(build: &BuildEnv, lease: Duration) -> Journal {
        Journal {
            deploy_id: build.url.clone().unwrap_or_else(random_id),
            holder: holder(build),
            build_url: build.url.clone(),
            phase: Phase::Pushing,
            verified: false,
            renewed_at: SystemTime::now(),
            lease,
            blue_guid: None,
            prod_routes: Vec::new(),
            temp_route: None,
            rollback: false,
            rollback_from: None,
            recovered_by: None,
            task: None,
            bits_digest: None,
            manifest_digest: None,
        }
    }

    /// Reads the journal from an app's annotations; `None` when the app has none (not ours).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Result<Journal>> {
        let deploy_id = annotations.get(DEPLOY_ID)?;
        Some(Journal::parse(deploy_id, annotations))
    }

    fn parse(deploy_id: &str, annotations: &BTreeMap<String, String>) -> Result<Journal> {
        let get = |key: &str| annotations.get(key).filter(|v| !v.is_empty());
        let phase_text = get(PHASE).ok_or_else(|| anyhow!("the deploy journal has no {PHASE}"))?;
        let phase =
            Phase::parse(phase_text).ok_or_else(|| anyhow!("the deploy journal's phase '{phase_text}' is unknown"))?;
        let renewed_at = get(RENEWED_AT)
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .ok_or_else(|| anyhow!("the deploy journal has no valid {RENEWED_AT}"))?;
        let lease = get(LEASE)
            .and_then(|s| s.parse().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| anyhow!("the deploy journal has no valid {LEASE}"))?;
        Ok(Journal {
            deploy_id: deploy_id.to_owned(),
            holder: get(HOLDER).cloned().unwrap_or_else(|| "an unknown deploy".into()),
            build_url: get(BUILD_URL).cloned(),
            phase,
            verified: get(VERIFIED).is_some_and(|v| v == "true"),
            renewed_at,
            lease,
            blue_guid: get(BLUE).cloned(),
            prod_routes: get(PROD_ROUTES).map(|r| r.split(',').map(str::to_owned).collect()).unwrap_or_default(),
            temp_route: get(TEMP_ROUTE).cloned(),
            rollback: get(ROLLBACK).is_some_and(|v| v == "true"),
            rollback_from: get(ROLLBACK_FROM).cloned(),
            recovered_by: get(RECOVERED_BY).cloned(),
            task: get(TASK).cloned(),
            bits_digest: get(BITS_DIGEST).cloned(),
            manifest_digest: get(MANIFEST_DIGEST).cloned(),
        })
    }

    /// The annotations that record this journal (absent fields are removed with `None`).
    pub fn to_annotations(&self) -> BTreeMap<String, Option<String>> {
        let secs = self.lease.as_secs().max(1);
        BTreeMap::from([
            (DEPLOY_ID.into(), Some(self.deploy_id.clone())),
            (HOLDER.into(), Some(self.holder.clone())),
            (BUILD_URL.into(), self.build_url.clone()),
            (PHASE.into(), Some(self.phase.as_str().into())),
            (VERIFIED.into(), Some(self.verified.to_string())),
            (RENEWED_AT.into(), Some(humantime::format_rfc3339_seconds(self.renewed_at).to_string())),
            (LEASE.into(), Some(secs.to_string())),
            (BLUE.into(), self.blue_guid.clone()),
            (PROD_ROUTES.into(), (!self.prod_routes.is_empty()).then(|| self.prod_routes.join(","))),
            (TEMP_ROUTE.into(), self.temp_route.clone()),
            (ROLLBACK.into(), self.rollback.then(|| "true".to_owned())),
            (ROLLBACK_FROM.into(), self.rollback_from.clone()),
            (RECOVERED_BY.into(), self.recovered_by.clone()),
            (TASK.into(), self.task.clone()),
            (BITS_DIGEST.into(), self.bits_digest.clone()),
            (MANIFEST_DIGEST.into(), self.manifest_digest.clone()),
        ])
    }

    /// Whether the holder has stopped renewing: it crashed or was killed. A held candidate is never stale: no
    /// put renews it while it waits for approval.
    pub fn is_stale(&self, now: SystemTime) -> bool {
        self.phase != Phase::Held && now.duration_since(self.renewed_at).is_ok_and(|age| age > self.lease)
    }

    /// `team/pipeline/job #12 (https://ci/…)`, for "waiting for …" lines.
    pub fn describe_holder(&self) -> String {
        match &self.build_url {
            Some(url) => format!("{} ({url})", self.holder),
            None => self.holder.clone(),
        }
    }
}

/// Annotations that remove the whole journal (when the candidate becomes production).
pub fn cleared() -> BTreeMap<String, Option<String>> {
    KEYS.iter().map(|k| ((*k).to_owned(), None)).collect()
}

fn holder(build: &BuildEnv) -> String {
    let parts: Vec<&str> =
        [&build.team_name, &build.pipeline_name, &build.job_name].into_iter().filter_map(|p| p.as_deref()).collect();
    let path = if parts.is_empty() { "a one-off build".to_owned() } else { parts.join("/") };
    match &build.name {
        Some(name) => format!("{path} #{name}"),
        None => path,
    }
}

/// 16 random hex digits, for deploys that have no build URL to name them by.
pub fn random_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> BuildEnv {
        BuildEnv {
            team_name: Some("main".into()),
            pipeline_name: Some("shop".into()),
            job_name: Some("deploy".into()),
            name: Some("42".into()),
            url: Some("https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/42".into()),
            ..Default::default()
        }
    }

    fn written(journal: &Journal) -> BTreeMap<String, String> {
        journal.to_annotations().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
    }

    #[test]
    fn round_trips_through_annotations() {
        let mut journal = Journal::new(&build(), Duration::from_secs(120));
        journal.phase = Phase::Swapping;
        journal.verified = true;
        journal.blue_guid = Some("blue-guid".into());
        journal.prod_routes = vec!["r1".into(), "r2".into()];
        journal.temp_route = Some("t1".into());
        journal.rollback = true;
        journal.task = Some("task-guid".into());
        journal.renewed_at = humantime::parse_rfc3339("2026-11-26T10:00:00Z").unwrap();
        let back = Journal::from_annotations(&written(&journal)).unwrap().unwrap();
        assert_eq!(back, journal);
        assert_eq!(back.holder, "main/shop/deploy #42");
        assert!(
            back.describe_holder()
                .ends_with("(https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/42)")
        );
    }

    #[test]
    fn an_app_without_journal_is_not_ours() {
        let annotations = BTreeMap::from([("other/key".to_owned(), "x".to_owned())]);
        assert!(Journal::from_annotations(&annotations).is_none());
    }

    #[test]
    fn damaged_journal_is_an_error() {
        let mut annotations = written(&Journal::new(&BuildEnv::default(), Duration::from_secs(60)));
        annotations.insert(PHASE.into(), "exploding".into());
        let err = Journal::from_annotations(&annotations).unwrap().unwrap_err();
        assert_eq!(err.to_string(), "the deploy journal's phase 'exploding' is unknown");
    }

    #[test]
    fn staleness_follows_the_holders_lease() {
        let mut journal = Journal::new(&BuildEnv::default(), Duration::from_secs(60));
        journal.renewed_at = SystemTime::now() - Duration::from_secs(30);
        assert!(!journal.is_stale(SystemTime::now()));
        journal.renewed_at = SystemTime::now() - Duration::from_secs(61);
        assert!(journal.is_stale(SystemTime::now()));
    }

    #[test]
    fn one_off_builds_get_a_random_id_and_a_plain_holder() {
        let journal = Journal::new(&BuildEnv::default(), Duration::from_secs(60));
        assert_eq!(journal.holder, "a one-off build");
        assert_eq!(journal.deploy_id.len(), 16);
        assert_ne!(journal.deploy_id, Journal::new(&BuildEnv::default(), Duration::from_secs(60)).deploy_id);
    }

    #[test]
    fn cleared_removes_every_journal_key() {
        let cleared = cleared();
        assert!(written(&Journal::new(&build(), Duration::from_secs(1))).keys().all(|k| cleared.get(k) == Some(&None)));
    }

    #[test]
    fn the_task_phase_comes_between_pushing_and_verifying_and_round_trips() {
        assert!(Phase::Pushing < Phase::Task && Phase::Task < Phase::Verifying);
        assert!(!Phase::Task.production_may_be_on_candidate());
        let mut journal = Journal::new(&build(), Duration::from_secs(60));
        journal.phase = Phase::Task;
        let annotations = written(&journal);
        assert_eq!(annotations[PHASE], "task");
        assert!(!annotations.contains_key(TASK), "no task guid until CF names one");
        assert_eq!(Journal::from_annotations(&annotations).unwrap().unwrap().phase, Phase::Task);
    }

    #[test]
    fn the_canary_phase_comes_between_verifying_and_swapping_and_round_trips() {
        assert!(Phase::Verifying < Phase::Canary && Phase::Canary < Phase::Swapping);
        assert!(Phase::Canary.production_may_be_on_candidate(), "the candidate serves beside blue");
        let mut journal = Journal::new(&build(), Duration::from_secs(60));
        journal.phase = Phase::Canary;
        journal.prod_routes = vec!["r1".into()];
        let annotations = written(&journal);
        assert_eq!(annotations[PHASE], "canary");
        let back = Journal::from_annotations(&annotations).unwrap().unwrap();
        assert_eq!((back.phase, back.prod_routes), (Phase::Canary, journal.prod_routes));
    }

    #[test]
    fn a_held_candidate_never_goes_stale_and_round_trips() {
        let mut journal = Journal::new(&build(), Duration::from_secs(1));
        journal.phase = Phase::Held;
        journal.renewed_at = SystemTime::now() - Duration::from_secs(3600);
        assert!(!journal.is_stale(SystemTime::now()), "held: no lease runs out");
        assert!(Phase::Verifying < Phase::Held && !Phase::Held.production_may_be_on_candidate());
        let annotations = written(&journal);
        assert_eq!(annotations[PHASE], "held");
        assert_eq!(Journal::from_annotations(&annotations).unwrap().unwrap().phase, Phase::Held);
        journal.phase = Phase::Verifying;
        assert!(journal.is_stale(SystemTime::now()), "any other phase goes stale");
    }

    #[test]
    fn phases_are_ordered() {
        assert!(!Phase::Verifying.production_may_be_on_candidate());
        assert!(Phase::Swapping.production_may_be_on_candidate());
        assert!(Phase::Housekeeping > Phase::Swapped);
    }
}
