//! `params` of the put step (`out`) and of the get step (`in`, also `get_params` after a put).
//!
//! Only the shape is checked here (types, unknown keys, combinations that cannot work); whether files exist,
//! manifests parse and vars resolve is checked by the deploy's local validation phase, still before any
//! network call.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::duration;
use super::statuses::ErrorStatuses;
use super::strict::parse_section;
use crate::manifest::megabytes;
use crate::redact;

/// What to do with a candidate that failed before the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnFailure {
    /// Delete it (its recent logs are printed first).
    #[default]
    Delete,
    /// Keep it stopped as `<app>-failed` for debugging.
    Keep,
}

/// CF health-check types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HealthCheckType {
    Port,
    Process,
    Http,
}

impl HealthCheckType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HealthCheckType::Port => "port",
            HealthCheckType::Process => "process",
            HealthCheckType::Http => "http",
        }
    }
}

/// `params.health_check`: overrides the manifest's health check for the candidate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheck {
    #[serde(rename = "type")]
    pub(crate) check_type: Option<HealthCheckType>,
    pub(crate) endpoint: Option<String>,
    /// Seconds the app may take to become healthy.
    pub(crate) timeout: Option<u32>,
    /// Seconds each check may take.
    pub(crate) invocation_timeout: Option<u32>,
}

/// `params.green_route`: where the candidate's temporary route lives (default `<app>-green.<domain of the first
/// production route>`), e.g. an internal or test-only domain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GreenRoute {
    pub(crate) host: Option<String>,
    pub(crate) domain: Option<String>,
}

/// The statuses an HTTP check accepts: one code or a list; absent means any 2xx.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ExpectedStatus {
    One(u16),
    Any(Vec<u16>),
}

impl ExpectedStatus {
    pub(crate) fn accepts(&self, status: u16) -> bool {
        match self {
            ExpectedStatus::One(code) => *code == status,
            ExpectedStatus::Any(codes) => codes.contains(&status),
        }
    }
}

/// One entry of `params.verify`: a request to the candidate's temporary route and what the answer must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpCheck {
    #[serde(default = "default_check_path")]
    pub(crate) path: String,
    #[serde(default = "default_method")]
    pub(crate) method: String,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    pub(crate) body: Option<String>,
    pub(crate) status: Option<ExpectedStatus>,
    /// The response body must contain this text.
    pub(crate) body_contains: Option<String>,
    /// The response body must match this regular expression.
    pub(crate) body_matches: Option<String>,
}

fn default_check_path() -> String {
    "/".into()
}

fn default_method() -> String {
    "GET".into()
}

/// `params.smoke_test`: a command from the put inputs, run against the candidate before it gets traffic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SmokeTest {
    /// Path of the executable, relative to the put directory.
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default, deserialize_with = "duration::optional")]
    pub(crate) timeout: Option<Duration>,
}

/// `params.kpi`: a bounded load probe against the candidate (and production, for the relative gate), and the
/// gates the post-swap watch applies to production.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Kpi {
    #[serde(default = "default_kpi_requests")]
    pub(crate) requests: u32,
    #[serde(default = "default_kpi_concurrency")]
    pub(crate) concurrency: u32,
    #[serde(default = "default_kpi_paths")]
    pub(crate) paths: Vec<KpiRequest>,
    /// The answers that count as errors (default 5xx); no answer at all always does.
    #[serde(default)]
    pub(crate) error_statuses: ErrorStatuses,
    /// Requests sent to each app before measuring, not judged.
    #[serde(default = "default_kpi_warmup")]
    pub(crate) warmup: u32,
    /// Fewer requests than this and a gate does not judge a window; see [`Kpi::min_requests`].
    pub(crate) min_requests: Option<u32>,
    /// Highest acceptable fraction of failed requests, 0.0–1.0.
    pub(crate) max_error_rate: Option<f64>,
    /// Highest acceptable 95th percentile latency in milliseconds.
    pub(crate) max_p95_ms: Option<u64>,
    /// Highest acceptable ratio of the candidate's p95 to production's, measured in the same run.
    pub(crate) max_p95_ratio: Option<f64>,
}

fn default_kpi_requests() -> u32 {
    DEFAULT_KPI_REQUESTS
}

fn default_kpi_concurrency() -> u32 {
    DEFAULT_KPI_CONCURRENCY
}

fn default_kpi_paths() -> Vec<KpiRequest> {
    vec![KpiRequest::get("/")]
}

fn default_kpi_warmup() -> u32 {
    DEFAULT_KPI_WARMUP
}

impl Kpi {
    /// The fewest requests a gate judges: as given, or [`DEFAULT_KPI_MIN_REQUESTS`] but never more than the
    /// probe's `requests` (a probe must be able to fail).
    pub(crate) fn min_requests(&self) -> u32 {
        self.min_requests.unwrap_or(DEFAULT_KPI_MIN_REQUESTS.min(self.requests))
    }
}

/// What the canary does when it has too little real traffic to judge (fewer than `min_requests` requests, or no
/// timers at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OnNoData {
    /// The deploy fails before the swap.
    #[default]
    Fail,
    /// The swap goes ahead, the log saying the canary did not judge.
    Pass,
}

/// `params.canary`: after the pre-swap gates, the candidate (with `instances` instances) serves its share of
/// production's real traffic beside blue for `duration`, judged from Log Cache against these gates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Canary {
    #[serde(default = "default_canary_instances")]
    pub(crate) instances: u32,
    /// How long it serves beside blue; see [`Canary::duration`].
    #[serde(default, rename = "duration", deserialize_with = "duration::optional")]
    given_duration: Option<Duration>,
    /// Highest acceptable share of the candidate's requests answered with an error status, 0.0–1.0.
    pub(crate) max_error_rate: Option<f64>,
    pub(crate) max_p95_ms: Option<u64>,
    /// Highest acceptable ratio of the candidate's p95 to blue's over the same window.
    pub(crate) max_p95_ratio: Option<f64>,
    #[serde(default = "default_canary_min_requests")]
    pub(crate) min_requests: u32,
    /// Regular expressions; a candidate log line matching one fails the canary at once.
    #[serde(default)]
    pub(crate) log_patterns: Vec<String>,
    #[serde(default)]
    pub(crate) on_no_data: OnNoData,
}

fn default_canary_instances() -> u32 {
    DEFAULT_CANARY_INSTANCES
}

impl Canary {
    /// How long the candidate serves beside blue: as given, or [`DEFAULT_CANARY_DURATION`].
    pub(crate) fn duration(&self) -> Duration {
        self.given_duration.unwrap_or(DEFAULT_CANARY_DURATION)
    }
}

fn default_canary_min_requests() -> u32 {
    DEFAULT_CANARY_MIN_REQUESTS
}

/// One entry of `params.kpi.paths`: a path (sent as a GET) or a request like a `verify` check's, `{path, method,
/// headers, body}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KpiRequest {
    pub(crate) path: String,
    pub(crate) method: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Option<String>,
}

impl KpiRequest {
    pub(crate) fn get(path: &str) -> KpiRequest {
        KpiRequest { path: path.to_owned(), method: default_method(), headers: BTreeMap::new(), body: None }
    }

    /// `/orders` for a GET, `POST /orders` otherwise.
    pub(crate) fn display(&self) -> String {
        if self.method == "GET" { self.path.clone() } else { format!("{} {}", self.method, self.path) }
    }
}

impl<'de> Deserialize<'de> for KpiRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            path: String,
            #[serde(default = "default_method")]
            method: String,
            #[serde(default)]
            headers: BTreeMap<String, String>,
            body: Option<String>,
        }
        match Value::deserialize(d)? {
            Value::String(path) => Ok(KpiRequest::get(&path)),
            value @ Value::Object(_) => {
                let raw: Raw = serde_json::from_value(value).map_err(serde::de::Error::custom)?;
                Ok(KpiRequest { path: raw.path, method: raw.method, headers: raw.headers, body: raw.body })
            }
            other => Err(serde::de::Error::custom(format!("a path or {{path, method, headers, body}}, got {other}"))),
        }
    }
}

/// `params.task` as given: a command run as a Cloud Foundry task on the candidate's droplet, after staging and
/// before the candidate starts (database migrations).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    command: Option<String>,
    name: Option<String>,
    /// A size as in a manifest (`512M`, `1G`).
    memory: Option<String>,
    disk: Option<String>,
    #[serde(default, deserialize_with = "duration::optional")]
    timeout: Option<Duration>,
}

/// The validated `params.task`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskParams {
    pub(crate) command: String,
    /// Names the task; its output is labelled `APP/TASK/<name>`.
    pub(crate) name: String,
    /// Megabytes; `None`: the candidate's web process's.
    pub(crate) memory_mb: Option<u64>,
    pub(crate) disk_mb: Option<u64>,
    /// A task still running after this is cancelled and fails the put.
    pub(crate) timeout: Duration,
}

/// A scalar environment value; numbers and booleans are written as YAML/JSON would print them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum EnvValue {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl EnvValue {
    fn into_string(self) -> String {
        match self {
            EnvValue::Text(text) => text,
            EnvValue::Number(number) => number.to_string(),
            EnvValue::Flag(flag) => flag.to_string(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutParams {
    path: Option<String>,
    droplet: Option<String>,
    docker_image: Option<String>,
    docker_username: Option<String>,
    docker_password: Option<String>,
    manifest: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Value>,
    #[serde(default)]
    vars_files: Vec<String>,
    #[serde(default)]
    environment_variables: BTreeMap<String, EnvValue>,
    /// Strings only: a secret is masked wherever it appears in the output, and a `1` or `true` would mask every
    /// such character sequence in the build log.
    #[serde(default)]
    secret_environment_variables: BTreeMap<String, String>,
    health_check: Option<HealthCheck>,
    green_route: Option<GreenRoute>,
    #[serde(default)]
    verify: Vec<HttpCheck>,
    smoke_test: Option<SmokeTest>,
    kpi: Option<Kpi>,
    canary: Option<Canary>,
    #[serde(default, deserialize_with = "duration::optional")]
    watch: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    staging_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    startup_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    verify_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    drain: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    lock_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration::optional")]
    lock_lease: Option<Duration>,
    keep_previous: Option<Value>,
    on_failure: Option<OnFailure>,
    #[serde(default)]
    rollback: bool,
    rollback_to: Option<Value>,
    #[serde(default)]
    dry_run: bool,
    task: Option<RawTask>,
    #[serde(default)]
    restage: bool,
    #[serde(default)]
    hold: bool,
    #[serde(default)]
    promote: bool,
    #[serde(default)]
    abort: bool,
    #[serde(default)]
    skip_unchanged: bool,
}

/// Where the candidate's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppSource {
    /// `params.path`: a directory, archive or glob relative to the put directory; uploaded and staged.
    Bits(String),
    /// `params.droplet`: a droplet tarball from a previous `get` (build once, deploy many); no staging.
    Droplet(String),
    /// `params.docker_image`, with optional registry credentials.
    Docker { image: String, username: Option<String>, password: Option<String> },
    /// None given: production's current droplet is deployed again, or for a rollback the previous app is used
    /// as is.
    Unspecified,
    /// `params.restage`: production's current package, staged again with today's buildpacks and stack.
    Restage,
}

/// The kept version a rollback goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RollbackTo {
    /// The Nth kept version: 1 is `<app>-previous`, 2 is `<app>-previous-2`, …
    Nth(u32),
    /// The kept version whose current droplet has this guid (as `check` and `get` report versions).
    Droplet(String),
}

/// Whether `text` can be a droplet guid: it goes into a comparison with guids, and into the log.
fn is_guid(text: &str) -> bool {
    text.len() >= 8 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Timeouts of the phases of a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timeouts {
    pub(crate) staging: Duration,
    pub(crate) startup: Duration,
    pub(crate) verify: Duration,
    /// The whole put; phases stop early when it runs out.
    pub(crate) overall: Duration,
    /// How long to wait for another deploy's lock.
    pub(crate) lock: Duration,
}

/// Validated put `params`.
#[derive(Debug, Clone)]
pub struct OutParams {
    pub(crate) source: AppSource,
    pub(crate) manifest: Option<String>,
    pub(crate) vars: BTreeMap<String, Value>,
    pub(crate) vars_files: Vec<String>,
    /// Env for the candidate; values of `secret_environment_variables` are included and redacted in output.
    pub(crate) environment_variables: BTreeMap<String, String>,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) green_route: GreenRoute,
    pub(crate) verify: Vec<HttpCheck>,
    pub(crate) smoke_test: Option<SmokeTest>,
    pub(crate) kpi: Option<Kpi>,
    pub(crate) canary: Option<Canary>,
    pub(crate) watch: Option<Duration>,
    pub(crate) timeouts: Timeouts,
    pub(crate) drain: Duration,
    /// A lock not renewed for this long belongs to a dead deploy and may be taken over.
    pub(crate) lock_lease: Duration,
    /// How many earlier versions stay stopped as `<app>-previous`, `<app>-previous-2`, …
    pub(crate) keep_previous: u32,
    pub(crate) on_failure: OnFailure,
    /// `rollback` or `rollback_to`: the candidate is a kept version.
    pub(crate) rollback: bool,
    /// Which kept version a rollback goes to (`<app>-previous` unless `rollback_to` names another).
    pub(crate) rollback_to: RollbackTo,
    pub(crate) dry_run: bool,
    pub(crate) task: Option<TaskParams>,
    /// Stop once the candidate is verified, before any production traffic, until a put with `promote` or `abort`.
    pub(crate) hold: bool,
    /// Verify the held candidate again and swap it in.
    pub(crate) promote: bool,
    /// Remove the held candidate.
    pub(crate) abort: bool,
    /// Do nothing when the bits, the manifest and the env are what production runs.
    pub(crate) skip_unchanged: bool,
}

/// The defaults of the put params README.md's `out` table states (a test reads them there).
const DEFAULT_STAGING_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(2 * 60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_LOCK_LEASE: Duration = Duration::from_secs(2 * 60);
const DEFAULT_DRAIN: Duration = Duration::from_secs(10);
const DEFAULT_KEEP_PREVIOUS: u32 = 1;
/// The most versions `keep_previous` may keep (each is a stopped app in the space, and one name in every lookup).
pub(crate) const MAX_KEEP_PREVIOUS: u32 = 10;
const DEFAULT_KPI_REQUESTS: u32 = 200;
const DEFAULT_KPI_CONCURRENCY: u32 = 10;
const DEFAULT_KPI_WARMUP: u32 = 20;
const DEFAULT_KPI_MIN_REQUESTS: u32 = 100;
const DEFAULT_CANARY_INSTANCES: u32 = 1;
const DEFAULT_CANARY_DURATION: Duration = Duration::from_secs(5 * 60);
const DEFAULT_CANARY_MIN_REQUESTS: u32 = 50;
const DEFAULT_TASK_NAME: &str = "migrate";
const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(15 * 60);

impl OutParams {
    /// Parses and validates the put's `params` (null: all defaults), every problem reported at once.
    pub fn parse(value: Value) -> Result<OutParams> {
        register_secrets_in(&value);
        let raw: RawOutParams = parse_section("params", value)?;
        let problems = raw.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(raw.into_params())
    }
}

impl RawOutParams {
    /// The keys naming where the code comes from that are given (at most one may be).
    fn sources_given(&self) -> Vec<&'static str> {
        [
            self.path.as_ref().map(|_| "path"),
            self.droplet.as_ref().map(|_| "droplet"),
            self.docker_image.as_ref().map(|_| "docker_image"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// Every combination that cannot work and every invalid value, all reported at once.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let given = self.sources_given();
        if given.len() > 1 {
            problems.push(format!("params.{} cannot be combined; give one of them", given.join(" and params.")));
        }
        if let Err(problem) = self.keep_previous() {
            problems.push(problem);
        }
        if let Err(problem) = self.rollback_to() {
            problems.push(problem);
        }
        if self.rollback || self.rollback_to.is_some() {
            self.rollback_problems(&given, &mut problems);
        }
        self.approval_problems(&given, &mut problems);
        if self.restage {
            for key in &given {
                problems.push(format!(
                    "params.restage rebuilds production's current package; params.{key} cannot be used with it"
                ));
            }
        }
        if let Some(task) = &self.task {
            validate_task(task, &mut problems);
        }
        if self.docker_image.is_none() && (self.docker_username.is_some() || self.docker_password.is_some()) {
            problems.push("params.docker_username and params.docker_password need params.docker_image".into());
        }
        if self.docker_password.is_some() && self.docker_username.is_none() {
            problems.push("params.docker_password needs params.docker_username".into());
        }
        if let Some(check) = &self.health_check {
            validate_health_check(check, &mut problems);
        }
        for (i, check) in self.verify.iter().enumerate() {
            validate_http_check(i, check, &mut problems);
        }
        if let Some(kpi) = &self.kpi {
            validate_kpi(kpi, &mut problems);
        }
        if let Some(canary) = &self.canary {
            validate_canary(canary, &mut problems);
        }
        if self.watch.is_some()
            && self.kpi.as_ref().is_none_or(|k| k.max_error_rate.is_none() && k.max_p95_ms.is_none())
        {
            problems
                .push("params.watch needs a gate to watch: params.kpi.max_error_rate or params.kpi.max_p95_ms".into());
        }
        for name in self.environment_variables.keys().chain(self.secret_environment_variables.keys()) {
            if name.is_empty() || name.starts_with("VCAP_") || name == "PORT" {
                problems.push(format!(
                    "params.environment_variables: '{name}' cannot be set (CF reserves VCAP_* and PORT)"
                ));
            }
        }
        problems
    }

    /// The keys that configure a new version (manifest, vars, env, health check), each with whether it is given:
    /// what neither a rollback nor a promote or abort of a held candidate can use.
    fn configuration_given(&self) -> impl Iterator<Item = (&'static str, bool)> {
        [
            ("manifest", self.manifest.is_some()),
            ("vars", !self.vars.is_empty()),
            ("vars_files", !self.vars_files.is_empty()),
            ("environment_variables", !self.environment_variables.is_empty()),
            ("secret_environment_variables", !self.secret_environment_variables.is_empty()),
            ("health_check", self.health_check.is_some()),
        ]
        .into_iter()
    }

    /// A rollback restarts the previous version exactly as it ran: nothing that builds or configures a new one
    /// applies, and it always keeps the version it replaces (a second rollback rolls forward again).
    fn rollback_problems(&self, sources_given: &[&str], problems: &mut Vec<String>) {
        let others = [
            ("keep_previous", self.keep_previous() == Ok(Some(0))),
            ("dry_run", self.dry_run),
            ("task", self.task.is_some()),
            ("restage", self.restage),
            ("canary", self.canary.is_some()),
            ("skip_unchanged", self.skip_unchanged),
        ];
        let unused = self.configuration_given().chain(others).filter(|(_, set)| *set).map(|(key, _)| key);
        let (asked, what) = match self.rollback_to {
            Some(_) => ("rollback_to", "a kept version"),
            None => ("rollback", "the previous app"),
        };
        for key in sources_given.iter().copied().chain(unused) {
            problems.push(format!("params.{asked} redeploys {what}; params.{key} cannot be used with it"));
        }
    }

    /// `keep_previous`: `true` (1), `false` (0) or a count up to [`MAX_KEEP_PREVIOUS`]; `None` when not given.
    fn keep_previous(&self) -> Result<Option<u32>, String> {
        let count = match &self.keep_previous {
            None => return Ok(None),
            Some(Value::Bool(keep)) => Some(u32::from(*keep)),
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n <= MAX_KEEP_PREVIOUS)
            }
            Some(_) => None,
        };
        count.map(Some).ok_or_else(|| {
            format!(
                "params.keep_previous must be true, false or a number of versions from 0 to {MAX_KEEP_PREVIOUS}, not {}",
                self.keep_previous.as_ref().map(Value::to_string).unwrap_or_default()
            )
        })
    }

    /// `rollback_to`: the Nth kept version (1 to [`MAX_KEEP_PREVIOUS`]) or the guid of a kept version's droplet.
    fn rollback_to(&self) -> Result<RollbackTo, String> {
        let target = match &self.rollback_to {
            None => Some(RollbackTo::Nth(1)),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_KEEP_PREVIOUS).contains(n))
                .map(RollbackTo::Nth),
            Some(Value::String(guid)) if is_guid(guid) => Some(RollbackTo::Droplet(guid.clone())),
            Some(_) => None,
        };
        target.ok_or_else(|| {
            format!(
                "params.rollback_to must be the number of a kept version (1 = <app>-previous, up to \
                 {MAX_KEEP_PREVIOUS}) or the guid of its droplet (check and get name it), not {}",
                self.rollback_to.as_ref().map(Value::to_string).unwrap_or_default()
            )
        })
    }

    /// `hold` leaves a new candidate waiting for approval; `promote` and `abort` act on the one waiting, so
    /// nothing that builds or configures a candidate applies to them, and each excludes the other two.
    fn approval_problems(&self, sources_given: &[&str], problems: &mut Vec<String>) {
        if self.hold && self.rollback {
            problems
                .push("params.hold holds a new candidate for approval; params.rollback cannot be used with it".into());
        }
        if self.hold && self.skip_unchanged {
            problems.push(
                "params.hold holds a new candidate for approval; params.skip_unchanged cannot be used with it".into(),
            );
        }
        // The gates that judge the candidate on production's traffic run at the promote, with its params: given to a
        // hold they would be skipped unseen.
        let on_production = [("canary", self.canary.is_some()), ("watch", self.watch.is_some())];
        for (key, _) in on_production.into_iter().filter(|(_, given)| self.hold && *given) {
            problems.push(format!(
                "params.hold stops before production moves; params.{key} applies to the promote: give it to the put \
                 with params.promote: true"
            ));
        }
        if self.promote && self.abort {
            problems.push("params.promote and params.abort cannot be combined; give one of them".into());
        }
        let acting = [
            ("promote", self.promote, "swaps in the held candidate"),
            ("abort", self.abort, "removes the held candidate"),
        ];
        let Some((key, _, does)) = acting.into_iter().find(|(_, given, _)| *given) else { return };
        let others = [
            ("task", self.task.is_some()),
            ("restage", self.restage),
            ("rollback", self.rollback),
            ("dry_run", self.dry_run),
            ("hold", self.hold),
            ("skip_unchanged", self.skip_unchanged),
        ];
        let unused = self.configuration_given().chain(others).filter(|(_, set)| *set).map(|(other, _)| other);
        for other in sources_given.iter().copied().chain(unused) {
            problems.push(format!("params.{key} {does}; params.{other} cannot be used with it"));
        }
    }

    /// The validated params, defaults filled in; secret env values are registered for redaction.
    fn into_params(self) -> OutParams {
        let keep_previous = self.keep_previous().ok().flatten().unwrap_or(DEFAULT_KEEP_PREVIOUS);
        let rollback_to = self.rollback_to().unwrap_or(RollbackTo::Nth(1));
        let source = match (self.path, self.droplet, self.docker_image) {
            (Some(path), _, _) => AppSource::Bits(path),
            (_, Some(droplet), _) => AppSource::Droplet(droplet),
            (_, _, Some(image)) => {
                AppSource::Docker { image, username: self.docker_username, password: self.docker_password }
            }
            _ if self.restage => AppSource::Restage,
            _ => AppSource::Unspecified,
        };
        let mut environment_variables: BTreeMap<String, String> =
            self.environment_variables.into_iter().map(|(k, v)| (k, v.into_string())).collect();
        for (name, value) in self.secret_environment_variables {
            redact::register(&value);
            environment_variables.insert(name, value);
        }
        OutParams {
            source,
            manifest: self.manifest,
            vars: self.vars,
            vars_files: self.vars_files,
            environment_variables,
            health_check: self.health_check,
            green_route: self.green_route.unwrap_or_default(),
            verify: self.verify,
            smoke_test: self.smoke_test,
            kpi: self.kpi,
            canary: self.canary,
            watch: self.watch,
            timeouts: Timeouts {
                staging: self.staging_timeout.unwrap_or(DEFAULT_STAGING_TIMEOUT),
                startup: self.startup_timeout.unwrap_or(DEFAULT_STARTUP_TIMEOUT),
                verify: self.verify_timeout.unwrap_or(DEFAULT_VERIFY_TIMEOUT),
                overall: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                lock: self.lock_timeout.unwrap_or(DEFAULT_LOCK_TIMEOUT),
            },
            drain: self.drain.unwrap_or(DEFAULT_DRAIN),
            lock_lease: self.lock_lease.unwrap_or(DEFAULT_LOCK_LEASE),
            keep_previous,
            on_failure: self.on_failure.unwrap_or_default(),
            rollback: self.rollback || self.rollback_to.is_some(),
            rollback_to,
            dry_run: self.dry_run,
            task: self.task.map(|task| TaskParams {
                command: task.command.unwrap_or_default(),
                name: task.name.unwrap_or_else(|| DEFAULT_TASK_NAME.to_owned()),
                memory_mb: task.memory.as_deref().and_then(megabytes),
                disk_mb: task.disk.as_deref().and_then(megabytes),
                timeout: task.timeout.unwrap_or(DEFAULT_TASK_TIMEOUT),
            }),
            hold: self.hold,
            promote: self.promote,
            abort: self.abort,
            skip_unchanged: self.skip_unchanged,
        }
    }
}

fn register_secrets_in(value: &Value) {
    if let Some(password) = value.get("docker_password").and_then(Value::as_str) {
        redact::register(password);
    }
    if let Some(secrets) = value.get("secret_environment_variables").and_then(Value::as_object) {
        for secret in secrets.values().filter_map(Value::as_str) {
            redact::register(secret);
        }
    }
    // Credentials the HTTP checks send (`Authorization: Bearer …`, an API key, a cookie).
    let checks = value.get("verify").and_then(Value::as_array).into_iter().flatten();
    for headers in checks.filter_map(|check| check.get("headers").and_then(Value::as_object)) {
        for (name, header_value) in headers {
            let name = name.to_ascii_lowercase();
            let credential = ["auth", "token", "key", "secret", "password", "cookie"].iter().any(|k| name.contains(k));
            if let (true, Some(text)) = (credential, header_value.as_str()) {
                let (_scheme, bare) = text.split_once(' ').unwrap_or(("", text));
                // A value this short is no credential, and masking it would garble the log.
                for value in [text, bare.trim()].into_iter().filter(|v| v.len() >= 4) {
                    redact::register(value);
                }
            }
        }
    }
}

/// The longest health-check timeout the Cloud Controller accepts unless its operator raised it
/// (`maximum_health_check_timeout: 180` in `config/cloud_controller.yml`, enforced by
/// `base_health_check_policy.rb`). Checked before the lock, so it fails before anything changes.
pub(crate) const MAX_HEALTH_CHECK_TIMEOUT: u32 = 180;

fn validate_health_check(check: &HealthCheck, problems: &mut Vec<String>) {
    if let Some(endpoint) = &check.endpoint {
        if check.check_type.is_some_and(|t| t != HealthCheckType::Http) {
            problems.push("params.health_check.endpoint only applies to type http".into());
        }
        if !endpoint.starts_with('/') {
            problems.push(format!("params.health_check.endpoint '{endpoint}' must start with /"));
        }
    }
    match check.timeout {
        Some(0) => problems.push("params.health_check.timeout must be at least 1 second".into()),
        Some(t) if t > MAX_HEALTH_CHECK_TIMEOUT => problems.push(format!(
            "params.health_check.timeout {t} is above {MAX_HEALTH_CHECK_TIMEOUT} seconds, the most Cloud Foundry allows by default"
        )),
        _ => {}
    }
    if check.invocation_timeout == Some(0) {
        problems.push("params.health_check.invocation_timeout must be at least 1 second".into());
    }
}

fn validate_task(task: &RawTask, problems: &mut Vec<String>) {
    if task.command.as_deref().is_none_or(|c| c.trim().is_empty()) {
        problems.push("params.task needs a command (e.g. command: bin/migrate)".into());
    }
    if let Some(name) = &task.name
        && (name.trim().is_empty() || name.chars().any(char::is_control))
    {
        problems.push("params.task.name must be printable text, not empty".into());
    }
    for (key, size) in [("memory", &task.memory), ("disk", &task.disk)] {
        if let Some(size) = size
            && megabytes(size).is_none_or(|mb| mb == 0)
        {
            problems.push(format!("params.task.{key} '{size}' is not a size (e.g. 512M or 1G)"));
        }
    }
    if task.timeout == Some(Duration::ZERO) {
        problems.push("params.task.timeout must be at least 1 second".into());
    }
}

fn validate_http_check(index: usize, check: &HttpCheck, problems: &mut Vec<String>) {
    let at = format!("params.verify[{index}]");
    if !check.path.starts_with('/') {
        problems.push(format!("{at}.path '{}' must start with /", check.path));
    }
    validate_request(&at, &check.method, &check.headers, problems);
    let codes: &[u16] = match &check.status {
        Some(ExpectedStatus::One(code)) => std::slice::from_ref(code),
        Some(ExpectedStatus::Any(codes)) => codes,
        None => &[],
    };
    if let Some(bad) = codes.iter().find(|c| !(100..=599).contains(*c)) {
        problems.push(format!("{at}.status {bad} is not an HTTP status code"));
    }
    if let Some(pattern) = &check.body_matches
        && let Err(err) = regex::Regex::new(pattern)
    {
        let first_line = err.to_string().lines().last().unwrap_or_default().trim().to_owned();
        problems.push(format!("{at}.body_matches is not a valid regular expression: {first_line}"));
    }
}

/// The method and headers of a request the resource sends to a route (`verify` checks, KPI requests).
fn validate_request(at: &str, method: &str, headers: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if !METHODS.contains(&method) {
        problems.push(format!("{at}.method '{method}' is not one of {}", METHODS.join(", ")));
    }
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("{at}.headers: '{name}' is not a valid HTTP header name"));
        } else if reqwest::header::HeaderValue::from_str(value).is_err() {
            problems.push(format!(
                "{at}.headers.{name} is not a valid HTTP header value (no line breaks or control characters)"
            ));
        }
    }
}

fn validate_kpi(kpi: &Kpi, problems: &mut Vec<String>) {
    if kpi.requests == 0 || kpi.requests > 100_000 {
        problems.push("params.kpi.requests must be between 1 and 100000".into());
    }
    if kpi.concurrency == 0 || kpi.concurrency > 256 {
        problems.push("params.kpi.concurrency must be between 1 and 256".into());
    }
    if kpi.paths.is_empty() || kpi.paths.iter().any(|p| !p.path.starts_with('/')) {
        problems.push("params.kpi.paths must be a non-empty list of paths starting with /".into());
    }
    for (i, request) in kpi.paths.iter().enumerate() {
        validate_request(&format!("params.kpi.paths[{i}]"), &request.method, &request.headers, problems);
    }
    if kpi.warmup > 10_000 {
        problems.push("params.kpi.warmup must be at most 10000".into());
    }
    match kpi.min_requests {
        Some(0) => problems.push("params.kpi.min_requests must be at least 1".into()),
        Some(min) if min > kpi.requests => problems.push(format!(
            "params.kpi.min_requests ({min}) is more than params.kpi.requests ({}): the probe's gates could never \
             judge",
            kpi.requests
        )),
        _ => {}
    }
    if kpi.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        problems.push("params.kpi.max_error_rate is a fraction between 0.0 and 1.0 (0.01 = 1%)".into());
    }
    if kpi.max_p95_ratio.is_some_and(|r| r < 1.0) {
        problems.push("params.kpi.max_p95_ratio must be at least 1.0 (e.g. 1.5 = 50% slower than production)".into());
    }
}

fn validate_canary(canary: &Canary, problems: &mut Vec<String>) {
    if canary.instances == 0 {
        problems.push("params.canary.instances must be at least 1".into());
    }
    if canary.duration() < Duration::from_secs(1) {
        problems.push("params.canary.duration must be at least 1 second".into());
    }
    if canary.min_requests == 0 {
        problems.push("params.canary.min_requests must be at least 1".into());
    }
    if canary.max_error_rate.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
        problems.push("params.canary.max_error_rate is a fraction between 0.0 and 1.0 (0.01 = 1%)".into());
    }
    if canary.max_p95_ratio.is_some_and(|r| r < 1.0) {
        problems.push("params.canary.max_p95_ratio must be at least 1.0 (e.g. 1.5 = 50% slower than blue)".into());
    }
    for (i, pattern) in canary.log_patterns.iter().enumerate() {
        if let Err(err) = regex::Regex::new(pattern) {
            let last_line = err.to_string().lines().last().unwrap_or_default().trim().to_owned();
            problems.push(format!("params.canary.log_patterns[{i}] is not a valid regular expression: {last_line}"));
        }
    }
    if canary.max_error_rate.is_none()
        && canary.max_p95_ms.is_none()
        && canary.max_p95_ratio.is_none()
        && canary.log_patterns.is_empty()
    {
        problems.push("params.canary needs a gate: max_error_rate, max_p95_ms, max_p95_ratio or log_patterns".into());
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInParams {
    #[serde(default)]
    download_droplet: bool,
}

/// Validated get `params`.
#[derive(Debug, Clone, Default)]
pub struct InParams {
    /// Stream the version's droplet to `droplet.tgz` in the destination directory.
    pub(crate) download_droplet: bool,
}

impl InParams {
    pub fn parse(value: Value) -> Result<InParams> {
        let raw: RawInParams = parse_section("params", value)?;
        Ok(InParams { download_droplet: raw.download_droplet })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(value: Value) -> String {
        OutParams::parse(value).unwrap_err().to_string()
    }

    #[test]
    fn empty_params_get_defaults() {
        let params = OutParams::parse(Value::Null).unwrap();
        assert_eq!(params.source, AppSource::Unspecified);
        assert_eq!(params.drain, Duration::from_secs(10));
        assert_eq!(params.keep_previous, 1);
        assert_eq!(params.on_failure, OnFailure::Delete);
        assert_eq!(params.timeouts.staging, Duration::from_secs(900));
    }

    #[test]
    fn full_params_parse() {
        let params = OutParams::parse(json!({
            "path": "build/app-*.jar", "manifest": "repo/manifest.yml",
            "vars": {"instances": 2}, "vars_files": ["repo/vars.yml"],
            "environment_variables": {"LEVEL": "info", "WORKERS": 4, "DEBUG": false},
            "health_check": {"type": "http", "endpoint": "/healthcheck", "timeout": 60},
            "green_route": {"domain": "apps.internal"},
            "verify": [{"path": "/version", "status": [200, 204], "body_matches": "^v\\d+"}],
            "smoke_test": {"path": "repo/ci/smoke.sh", "args": ["--quick"], "timeout": "2m"},
            "kpi": {"max_error_rate": 0.01, "max_p95_ms": 300, "max_p95_ratio": 1.5},
            "watch": "30s", "drain": 5, "keep_previous": false, "on_failure": "keep"
        }))
        .unwrap();
        assert_eq!(params.source, AppSource::Bits("build/app-*.jar".into()));
        assert_eq!(params.environment_variables["WORKERS"], "4");
        assert_eq!(params.environment_variables["DEBUG"], "false");
        assert_eq!(params.smoke_test.unwrap().timeout, Some(Duration::from_secs(120)));
        assert_eq!(params.watch, Some(Duration::from_secs(30)));
        assert_eq!(params.on_failure, OnFailure::Keep);
        assert!(params.verify[0].status.as_ref().unwrap().accepts(204));
    }

    #[test]
    fn unknown_key_gets_suggestion() {
        assert_eq!(err(json!({"manfest": "m.yml"})), "params.manfest is not a known key; did you mean manifest?");
    }

    #[test]
    fn conflicting_sources_rejected() {
        let message = err(json!({"path": "a", "droplet": "b"}));
        assert_eq!(message, "params.path and params.droplet cannot be combined; give one of them");
    }

    #[test]
    fn rollback_excludes_new_bits() {
        let message = err(json!({"rollback": true, "path": "a"}));
        assert!(
            message.contains("params.rollback redeploys the previous app; params.path cannot be used"),
            "{message}"
        );
    }

    #[test]
    fn rollback_excludes_what_builds_or_configures_a_new_version_and_a_dry_run() {
        let message = err(json!({"rollback": true, "dry_run": true, "environment_variables": {"A": "b"}}));
        assert!(message.contains("params.dry_run cannot be used with it"), "{message}");
        assert!(message.contains("params.environment_variables cannot be used with it"), "{message}");
        let rollback =
            OutParams::parse(json!({"rollback": true, "smoke_test": {"path": "ci/smoke.sh"}, "keep_previous": true}))
                .unwrap();
        assert!(rollback.rollback && rollback.smoke_test.is_some());
    }

    #[test]
    fn http_check_headers_must_be_valid_and_credentials_in_them_are_masked() {
        let message = err(json!({"verify": [{"headers": {"X Token": "a", "X-Ok": "line\nbreak"}}]}));
        assert!(message.contains("params.verify[0].headers: 'X Token' is not a valid HTTP header name"), "{message}");
        assert!(message.contains("params.verify[0].headers.X-Ok is not a valid HTTP header value"), "{message}");
        OutParams::parse(json!({"verify": [{"headers": {"Authorization": "Bearer hdr-credential-77"}}]})).unwrap();
        assert_eq!(redact::redact("sent Bearer hdr-credential-77"), format!("sent {}", redact::MASK));
        assert_eq!(redact::redact("token hdr-credential-77"), format!("token {}", redact::MASK));
    }

    #[test]
    fn secret_env_values_are_strings_and_a_wrong_one_is_not_shown() {
        let message = err(json!({"secret_environment_variables": {"PIN": 4711}}));
        assert!(message.contains("params.secret_environment_variables.PIN"), "{message}");
        assert!(!message.contains("4711"), "{message}");
    }

    #[test]
    fn invalid_health_check_and_regex_reported_together() {
        let message = err(json!({
            "health_check": {"type": "port", "endpoint": "health"},
            "verify": [{"path": "/", "body_matches": "(unclosed"}]
        }));
        assert!(message.contains("params.health_check.endpoint only applies to type http"), "{message}");
        assert!(message.contains("must start with /"), "{message}");
        assert!(message.contains("params.verify[0].body_matches is not a valid regular expression"), "{message}");
    }

    #[test]
    fn a_health_check_timeout_above_the_cloud_controllers_maximum_is_refused_locally() {
        let message = err(json!({"health_check": {"type": "http", "endpoint": "/h", "timeout": 181}}));
        assert!(message.contains("params.health_check.timeout 181 is above 180 seconds"), "{message}");
        assert!(OutParams::parse(json!({"health_check": {"type": "port", "timeout": 180}})).is_ok());
    }

    #[test]
    fn unknown_health_check_type_is_a_type_error_naming_the_path() {
        let message = err(json!({"health_check": {"type": "tcp"}}));
        assert!(message.starts_with("params.health_check.type: unknown variant `tcp`"), "{message}");
    }

    #[test]
    fn reserved_env_names_rejected() {
        let message = err(json!({"environment_variables": {"PORT": "1"}}));
        assert!(message.contains("'PORT' cannot be set"), "{message}");
    }

    #[test]
    fn secret_env_values_are_registered_for_redaction() {
        let params =
            OutParams::parse(json!({"secret_environment_variables": {"API_KEY": "k-very-secret-99"}})).unwrap();
        assert_eq!(params.environment_variables["API_KEY"], "k-very-secret-99");
        assert_eq!(redact::redact("key=k-very-secret-99"), format!("key={}", redact::MASK));
    }

    #[test]
    fn a_canary_gets_named_defaults_and_every_bad_value_is_named() {
        let canary = OutParams::parse(json!({"canary": {"max_error_rate": 0.01}})).unwrap().canary.unwrap();
        assert_eq!((canary.instances, canary.duration()), (DEFAULT_CANARY_INSTANCES, DEFAULT_CANARY_DURATION));
        assert_eq!((canary.min_requests, canary.on_no_data), (DEFAULT_CANARY_MIN_REQUESTS, OnNoData::Fail));
        assert_eq!((DEFAULT_CANARY_INSTANCES, DEFAULT_CANARY_MIN_REQUESTS), (1, 50));
        let full = OutParams::parse(json!({"canary": {
            "instances": 2, "duration": "90s", "max_p95_ms": 300, "max_p95_ratio": 1.5, "min_requests": 10,
            "log_patterns": ["OutOfMemoryError"], "on_no_data": "pass"
        }}))
        .unwrap()
        .canary
        .unwrap();
        assert_eq!((full.instances, full.duration(), full.min_requests), (2, Duration::from_secs(90), 10));
        assert_eq!((full.max_p95_ratio, full.on_no_data), (Some(1.5), OnNoData::Pass));
        let message = err(json!({"canary": {
            "instances": 0, "duration": "0s", "min_requests": 0, "max_error_rate": 5, "max_p95_ratio": 0.5,
            "log_patterns": ["(unclosed"]
        }}));
        for expected in [
            "params.canary.instances must be at least 1",
            "params.canary.duration must be at least 1 second",
            "params.canary.min_requests must be at least 1",
            "params.canary.max_error_rate is a fraction between 0.0 and 1.0",
            "params.canary.max_p95_ratio must be at least 1.0",
            "params.canary.log_patterns[0] is not a valid regular expression",
        ] {
            assert!(message.contains(expected), "{expected}: {message}");
        }
        assert!(!message.contains('\n'), "one line: {message}");
        assert_eq!(
            err(json!({"canary": {"duration": "1m"}})),
            "params.canary needs a gate: max_error_rate, max_p95_ms, max_p95_ratio or log_patterns"
        );
        assert!(
            err(json!({"canary": {"max_error_rate": 0.1, "on_no_data": "skip"}})).contains("params.canary.on_no_data")
        );
        assert!(err(json!({"canary": {"max_error_rate": 0.1, "instancs": 2}})).contains("did you mean instances?"));
        let rollback = err(json!({"rollback": true, "canary": {"max_error_rate": 0.1}}));
        assert!(rollback.contains("params.canary cannot be used with it"), "{rollback}");
    }

    #[test]
    fn watch_needs_a_gate() {
        assert!(err(json!({"watch": 30})).contains("params.watch needs a gate"));
    }

    /// The `out` parameters table of README.md: each row's keys and the cell stating their defaults.
    fn readme_out_rows() -> Vec<(Vec<String>, String, String)> {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("### `out`").expect("README has an `out` section")..];
        let table = &section[section.find("#### Parameters").expect("`out` has a parameters table")..];
        table
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .map(|row| {
                let cells: Vec<String> =
                    row.replace("\\|", "/").split('|').map(|cell| cell.trim().to_owned()).collect();
                let keys = cells[1].split(" / ").map(|key| key.trim_matches('`').to_owned()).collect();
                (keys, cells[2].clone(), cells[3].clone())
            })
            .collect()
    }

    #[test]
    fn the_defaults_readme_states_are_the_ones_the_code_uses() {
        let mut checked = Vec::new();
        for (keys, optional, meaning) in readme_out_rows() {
            if keys == ["kpi"] {
                let stated = format!(
                    "defaults {DEFAULT_KPI_REQUESTS} requests, {DEFAULT_KPI_CONCURRENCY} at a time, after \
                     {DEFAULT_KPI_WARMUP} warm-up requests"
                );
                assert!(meaning.contains(&stated), "README's kpi row must say {stated}: {meaning}");
                let stated = format!("`min_requests` (default {DEFAULT_KPI_MIN_REQUESTS}, or `requests` when fewer)");
                assert!(meaning.contains(&stated), "README's kpi row must say {stated}: {meaning}");
                checked.push("kpi".into());
            }
            if keys == ["canary"] {
                let minutes = DEFAULT_CANARY_DURATION.as_secs() / 60;
                for stated in [
                    format!("`instances` instances (default {DEFAULT_CANARY_INSTANCES})"),
                    format!("`duration` (default `{minutes}m`)"),
                    format!("`min_requests` (default {DEFAULT_CANARY_MIN_REQUESTS})"),
                    "`on_no_data` (default `fail`".to_owned(),
                ] {
                    assert!(meaning.contains(&stated), "README's canary row must say {stated}: {meaning}");
                }
                assert_eq!(OnNoData::default(), OnNoData::Fail);
                checked.push("canary".into());
            }
            if keys == ["task"] {
                let timeout = DEFAULT_TASK_TIMEOUT.as_secs() / 60;
                let stated = format!("`name` defaults to `{DEFAULT_TASK_NAME}`");
                assert!(meaning.contains(&stated), "README's task row must say {stated}: {meaning}");
                assert!(meaning.contains(&format!("`timeout` to `{timeout}m`")), "README's task timeout: {meaning}");
                checked.push("task".into());
            }
            let Some(stated) = optional.split_once("Default").map(|(_, rest)| rest) else { continue };
            let stated = stated.trim_start_matches('s').trim().trim_end_matches('.');
            let values: Vec<&str> = stated.split(" / ").map(|v| v.trim_matches('`')).collect();
            assert_eq!(keys.len(), values.len(), "README: {keys:?} with defaults {stated}");
            for (key, text) in keys.iter().zip(values) {
                let duration = |code: Duration| duration::parse(text) == Ok(code);
                let agrees = match key.as_str() {
                    "staging_timeout" => duration(DEFAULT_STAGING_TIMEOUT),
                    "startup_timeout" => duration(DEFAULT_STARTUP_TIMEOUT),
                    "verify_timeout" => duration(DEFAULT_VERIFY_TIMEOUT),
                    "timeout" => duration(DEFAULT_TIMEOUT),
                    "drain" => duration(DEFAULT_DRAIN),
                    "lock_timeout" => duration(DEFAULT_LOCK_TIMEOUT),
                    "lock_lease" => duration(DEFAULT_LOCK_LEASE),
                    "keep_previous" => text.parse() == Ok(DEFAULT_KEEP_PREVIOUS),
                    "on_failure" => serde_json::from_value::<OnFailure>(json!(text)).ok() == Some(OnFailure::default()),
                    other => panic!("README states default {text} for params.{other}, which this test does not check"),
                };
                assert!(agrees, "README says params.{key} defaults to {text}; the code differs");
                checked.push(key.clone());
            }
        }
        checked.sort();
        let every = [
            "canary",
            "drain",
            "keep_previous",
            "kpi",
            "lock_lease",
            "lock_timeout",
            "on_failure",
            "staging_timeout",
            "startup_timeout",
            "task",
            "timeout",
            "verify_timeout",
        ];
        assert_eq!(checked, every, "README states each default once");
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let params = OutParams::parse(Value::Null).unwrap();
        let timeouts = Timeouts {
            staging: DEFAULT_STAGING_TIMEOUT,
            startup: DEFAULT_STARTUP_TIMEOUT,
            verify: DEFAULT_VERIFY_TIMEOUT,
            overall: DEFAULT_TIMEOUT,
            lock: DEFAULT_LOCK_TIMEOUT,
        };
        assert_eq!(params.timeouts, timeouts);
        assert_eq!((params.drain, params.lock_lease), (DEFAULT_DRAIN, DEFAULT_LOCK_LEASE));
        assert_eq!(params.keep_previous, DEFAULT_KEEP_PREVIOUS);
        let kpi = OutParams::parse(json!({"kpi": {}})).unwrap().kpi.unwrap();
        assert_eq!((kpi.requests, kpi.concurrency), (DEFAULT_KPI_REQUESTS, DEFAULT_KPI_CONCURRENCY));
        assert_eq!((kpi.warmup, kpi.min_requests()), (DEFAULT_KPI_WARMUP, DEFAULT_KPI_MIN_REQUESTS));
        let few = OutParams::parse(json!({"kpi": {"requests": 40}})).unwrap().kpi.unwrap();
        assert_eq!(few.min_requests(), 40, "never more than the probe sends");
        assert_eq!((kpi.paths, kpi.error_statuses), (vec![KpiRequest::get("/")], ErrorStatuses::default()));
    }

    #[test]
    fn kpi_requests_take_methods_headers_and_bodies_and_error_statuses() {
        let kpi = OutParams::parse(json!({"kpi": {
            "paths": ["/", {"path": "/orders", "method": "POST", "headers": {"Content-Type": "application/json"},
                            "body": "{}"}],
            "error_statuses": ["5xx", 429], "warmup": 0, "min_requests": 50
        }}))
        .unwrap()
        .kpi
        .unwrap();
        assert_eq!(kpi.paths[0], KpiRequest::get("/"));
        assert_eq!((kpi.paths[1].method.as_str(), kpi.paths[1].body.as_deref()), ("POST", Some("{}")));
        assert_eq!(kpi.paths[1].display(), "POST /orders");
        assert!(kpi.error_statuses.contains(429) && !kpi.error_statuses.contains(404));
        assert_eq!((kpi.warmup, kpi.min_requests()), (0, 50));
        let message = err(json!({"kpi": {"paths": [{"path": "/", "method": "FETCH", "headers": {"a b": "c"}}]}}));
        assert!(message.contains("params.kpi.paths[0].method 'FETCH' is not one of GET"), "{message}");
        assert!(message.contains("params.kpi.paths[0].headers: 'a b' is not a valid HTTP header name"), "{message}");
        assert!(err(json!({"kpi": {"paths": [{"path": "/", "verb": "GET"}]}})).contains("verb"));
        assert!(err(json!({"kpi": {"error_statuses": ["oops"]}})).contains("is not an HTTP status or class"));
        assert!(err(json!({"kpi": {"min_requests": 0}})).contains("params.kpi.min_requests must be at least 1"));
        let never = err(json!({"kpi": {"requests": 50, "min_requests": 100}}));
        assert!(never.contains("the probe's gates could never judge"), "{never}");
    }

    #[test]
    fn a_task_needs_a_command_and_gets_named_defaults() {
        let task = OutParams::parse(json!({"task": {"command": "bin/migrate"}})).unwrap().task.unwrap();
        let expected = TaskParams {
            command: "bin/migrate".into(),
            name: DEFAULT_TASK_NAME.into(),
            memory_mb: None,
            disk_mb: None,
            timeout: DEFAULT_TASK_TIMEOUT,
        };
        assert_eq!(task, expected);
        let sized =
            OutParams::parse(json!({"task": {"command": "m", "memory": "1G", "disk": "512M", "timeout": "90s"}}))
                .unwrap()
                .task
                .unwrap();
        assert_eq!((sized.memory_mb, sized.disk_mb, sized.timeout), (Some(1024), Some(512), Duration::from_secs(90)));
        assert_eq!(err(json!({"task": {"name": "db"}})), "params.task needs a command (e.g. command: bin/migrate)");
        let message = err(json!({"task": {"command": "m", "memory": "lots", "timeout": 0, "name": ""}}));
        assert!(message.contains("params.task.memory 'lots' is not a size (e.g. 512M or 1G)"), "{message}");
        assert!(message.contains("params.task.timeout must be at least 1 second"), "{message}");
        assert!(message.contains("params.task.name must be printable text, not empty"), "{message}");
        assert_eq!(
            err(json!({"task": {"command": "m", "memry": "1G"}})),
            "params.task.memry is not a known key; did you mean memory?"
        );
    }

    #[test]
    fn restage_builds_from_production_and_takes_no_bits() {
        assert_eq!(OutParams::parse(json!({"restage": true})).unwrap().source, AppSource::Restage);
        assert_eq!(OutParams::parse(json!({"restage": false})).unwrap().source, AppSource::Unspecified);
        assert_eq!(
            err(json!({"restage": true, "path": "app"})),
            "params.restage rebuilds production's current package; params.path cannot be used with it"
        );
        assert!(err(json!({"restage": true, "docker_image": "nginx"})).contains("params.docker_image cannot"));
        let rollback = err(json!({"rollback": true, "restage": true, "task": {"command": "m"}}));
        assert!(rollback.contains("params.restage cannot be used with it"), "{rollback}");
        assert!(rollback.contains("params.task cannot be used with it"), "{rollback}");
    }

    #[test]
    fn keep_previous_is_a_count_and_rollback_to_names_a_kept_version() {
        let keep = |value: Value| OutParams::parse(json!({ "keep_previous": value })).map(|p| p.keep_previous);
        assert_eq!(keep(json!(true)).unwrap(), 1);
        assert_eq!(keep(json!(false)).unwrap(), 0);
        assert_eq!(keep(json!(3)).unwrap(), 3);
        for bad in [json!(-1), json!(MAX_KEEP_PREVIOUS + 1), json!(1.5), json!("3")] {
            let message = keep(bad.clone()).unwrap_err().to_string();
            assert!(message.contains("params.keep_previous must be true, false or a number of versions from 0 to 10"));
            assert!(message.contains(&bad.to_string()), "{message}");
        }
        let to = |value: Value| OutParams::parse(json!({ "rollback_to": value }));
        let second = to(json!(2)).unwrap();
        assert!(second.rollback, "rollback_to is a rollback");
        assert_eq!(second.rollback_to, RollbackTo::Nth(2));
        let droplet = "6f9a1c2e-0b3d-4e5f-8a7b-9c0d1e2f3a4b";
        assert_eq!(to(json!(droplet)).unwrap().rollback_to, RollbackTo::Droplet(droplet.into()));
        assert_eq!(OutParams::parse(json!({"rollback": true})).unwrap().rollback_to, RollbackTo::Nth(1));
        for bad in [json!(0), json!(11), json!("x/y"), json!(true)] {
            assert!(
                to(bad).unwrap_err().to_string().contains("params.rollback_to must be the number of a kept version")
            );
        }
        assert_eq!(
            err(json!({"rollback_to": 2, "path": "a"})),
            "params.rollback_to redeploys a kept version; params.path cannot be used with it"
        );
        assert!(err(json!({"rollback_to": 2, "keep_previous": 0})).contains("params.keep_previous cannot be used"));
        assert!(OutParams::parse(json!({"rollback_to": 2, "keep_previous": 3})).is_ok());
    }

    #[test]
    fn skip_unchanged_is_refused_beside_what_deploys_no_new_version() {
        assert!(OutParams::parse(json!({"skip_unchanged": true, "path": "app"})).unwrap().skip_unchanged);
        assert!(!OutParams::parse(json!({})).unwrap().skip_unchanged);
        let refusals = [
            (json!({"rollback": true}), "params.rollback redeploys the previous app"),
            (json!({"rollback_to": 2}), "params.rollback_to redeploys a kept version"),
            (json!({"promote": true}), "params.promote swaps in the held candidate"),
            (json!({"abort": true}), "params.abort removes the held candidate"),
            (json!({"hold": true}), "params.hold holds a new candidate for approval"),
        ];
        for (mut params, does) in refusals {
            params["skip_unchanged"] = json!(true);
            assert_eq!(err(params), format!("{does}; params.skip_unchanged cannot be used with it"));
        }
    }

    #[test]
    fn hold_promote_and_abort_exclude_what_does_not_apply_to_them() {
        let hold = OutParams::parse(json!({"hold": true, "path": "app"})).unwrap();
        assert!(hold.hold && !hold.promote && !hold.abort);
        let promote = OutParams::parse(json!({"promote": true, "smoke_test": {"path": "ci/smoke.sh"}})).unwrap();
        assert!(promote.promote && promote.smoke_test.is_some());
        assert!(OutParams::parse(json!({"abort": true, "on_failure": "keep"})).unwrap().abort);
        assert_eq!(
            err(json!({"hold": true, "rollback": true})),
            "params.hold holds a new candidate for approval; params.rollback cannot be used with it"
        );
        assert_eq!(
            err(json!({"promote": true, "path": "app"})),
            "params.promote swaps in the held candidate; params.path cannot be used with it"
        );
        for key in ["droplet", "restage", "task", "hold"] {
            let value = match key {
                "droplet" => json!("d.tgz"),
                "task" => json!({"command": "bin/migrate"}),
                _ => json!(true),
            };
            let message = err(json!({"promote": true, key: value}));
            assert_eq!(
                message,
                format!("params.promote swaps in the held candidate; params.{key} cannot be used with it")
            );
        }
        assert_eq!(
            err(json!({"abort": true, "hold": true})),
            "params.abort removes the held candidate; params.hold cannot be used with it"
        );
        assert_eq!(
            err(json!({"promote": true, "abort": true})),
            "params.promote and params.abort cannot be combined; give one of them"
        );
        assert_eq!(
            err(json!({"hold": true, "watch": "1m", "kpi": {"max_error_rate": 0.01}})),
            "params.hold stops before production moves; params.watch applies to the promote: give it to the put with \
             params.promote: true"
        );
        let message = err(json!({"hold": true, "canary": {"max_error_rate": 0.01}}));
        assert!(message.contains("params.canary applies to the promote"), "{message}");
        assert!(OutParams::parse(json!({"promote": true, "canary": {"max_error_rate": 0.01}, "drain": "30s"})).is_ok());
    }

    #[test]
    fn in_params_strict() {
        assert!(InParams::parse(json!({"download_droplet": true})).unwrap().download_droplet);
        assert_eq!(
            InParams::parse(json!({"download_dropplet": true})).unwrap_err().to_string(),
            "params.download_dropplet is not a known key; did you mean download_droplet?"
        );
    }
}
