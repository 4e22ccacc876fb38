//! The Concourse resource protocol: one JSON request on stdin, one JSON answer on stdout, logs on stderr.
//!
//! Each binary's `main` hands its action to [`run_check`], [`run_in`] or [`run_out`], which read and validate
//! the whole request before the action runs, print exactly one JSON document (plus newline) on stdout at the
//! very end on success, and otherwise print one error line on stderr and exit 1 with stdout empty. Panics are
//! turned into the same one-line failure.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cf::apps::App;
use crate::config::{InParams, OutParams, Source};
use crate::log;
use crate::record::Audit;

/// A version of this resource: the production app, the droplet it runs and the deploy that made them production.
/// Renames keep guids, so the version `out` emits is the one `check` reports and the one `in` can fetch. Every
/// swap writes a new deploy into the audit annotations, so every swap — a rollback to an app and droplet that
/// ran before too — is a version Concourse has not seen, and moves to "latest".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    pub(crate) app_guid: String,
    pub(crate) droplet_guid: String,
    /// The deploy's id (its build URL) and when it swapped, from the audit annotations; absent for a droplet put
    /// in production some other way (a push or restage by hand) and in versions of earlier releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deploy_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deployed_at: Option<String>,
}

impl Version {
    /// `app` running `droplet_guid`, with the deploy the app's audit annotations record for that droplet.
    pub(crate) fn of(app: &App, droplet_guid: &str) -> Version {
        let audit = Audit::from_annotations(&app.metadata.annotations).filter(|audit| audit.describes(droplet_guid));
        Version {
            app_guid: app.guid.clone(),
            droplet_guid: droplet_guid.to_owned(),
            deploy_id: audit.as_ref().and_then(|audit| audit.deploy_id.clone()),
            deployed_at: audit.as_ref().and_then(Audit::deployed_at_text),
        }
    }
}

/// One `{name, value}` pair shown on the build page. Values are strings, as Concourse requires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct MetadataField {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl MetadataField {
    pub(crate) fn new(name: impl Into<String>, value: impl ToString) -> Self {
        MetadataField { name: name.into(), value: value.to_string() }
    }
}

/// The answer of `in` and `out`. `metadata` is always printed, possibly as `[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionResult {
    pub(crate) version: Version,
    pub(crate) metadata: Vec<MetadataField>,
}

/// The Concourse build that runs this step (all optional: one-off builds and `check` have none of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildEnv {
    pub id: Option<String>,
    pub name: Option<String>,
    pub job_name: Option<String>,
    pub pipeline_name: Option<String>,
    pub pipeline_instance_vars: Option<String>,
    pub team_name: Option<String>,
    pub url: Option<String>,
    pub atc_external_url: Option<String>,
    /// `BUILD_STATUS`: the build's status so far, set in a step hook (`failed` in `on_failure`).
    pub status: Option<String>,
}

impl BuildEnv {
    pub(crate) fn from_env() -> BuildEnv {
        BuildEnv::from_vars(|name| std::env::var(name).ok())
    }

    /// The build's env as `var` gives it. `url` is Concourse 8's `BUILD_URL` when set, else the URL Concourse 7
    /// would show for the build (see [`build_url`]).
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<String>) -> BuildEnv {
        let var = |name: &str| var(name).filter(|v| !v.is_empty());
        let mut build = BuildEnv {
            id: var("BUILD_ID"),
            name: var("BUILD_NAME"),
            job_name: var("BUILD_JOB_NAME"),
            pipeline_name: var("BUILD_PIPELINE_NAME"),
            pipeline_instance_vars: var("BUILD_PIPELINE_INSTANCE_VARS"),
            team_name: var("BUILD_TEAM_NAME"),
            url: var("BUILD_URL"),
            atc_external_url: var("ATC_EXTERNAL_URL"),
            status: var("BUILD_STATUS"),
        };
        build.url = build.url.take().or_else(|| build_url(&build));
        build
    }
}

impl BuildEnv {
    /// `job 'deploy' build 7`, `build 7` or `this build`, for log lines.
    pub(crate) fn describe(&self) -> String {
        match (&self.job_name, &self.name) {
            (Some(job), Some(name)) => format!("job '{job}' build {name}"),
            (None, Some(name)) => format!("build {name}"),
            _ => "this build".into(),
        }
    }
}

/// The build's URL as Concourse forms `BUILD_URL` (`atc/exec/step_metadata.go`): `<external url>/teams/<team>/
/// pipelines/<pipeline>/jobs/<job>/builds/<name>`, the instance vars as query parameters (`atc/pipeline.go`,
/// `PipelineRef.QueryParams`), or `<external url>/builds/<id>` for a build of no job.
fn build_url(build: &BuildEnv) -> Option<String> {
    let external = build.atc_external_url.as_deref()?.trim_end_matches('/');
    let id = build.id.as_deref()?;
    let (Some(team), Some(pipeline), Some(job), Some(name)) =
        (&build.team_name, &build.pipeline_name, &build.job_name, &build.name)
    else {
        return Some(format!("{external}/builds/{id}"));
    };
    let mut url = format!("{external}/teams/{team}/pipelines/{pipeline}/jobs/{job}/builds/{name}");
    let query = build.pipeline_instance_vars.as_deref().map(instance_vars_query).unwrap_or_default();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }
    Some(url)
}

/// `BUILD_PIPELINE_INSTANCE_VARS` (a JSON object) as Concourse's query: every leaf as `vars.<dotted path>` =
/// its JSON, keys sorted, each part escaped as Go's `url.QueryEscape` does. Unparsable vars give no query.
fn instance_vars_query(json: &str) -> String {
    let Ok(Value::Object(vars)) = serde_json::from_str::<Value>(json) else {
        return String::new();
    };
    let mut pairs = Vec::new();
    for (name, value) in &vars {
        flatten_instance_var(vec![name.as_str()], value, &mut pairs);
    }
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{}={}", query_escape(key), query_escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The leaves of one instance var, as (`vars.a.b`, Go's JSON of the value).
fn flatten_instance_var<'a>(path: Vec<&'a str>, value: &'a Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(fields) => {
            for (field, inner) in fields {
                let mut path = path.clone();
                path.push(field);
                flatten_instance_var(path, inner, out);
            }
        }
        leaf => {
            // A segment with one of `,.:/ ` is quoted (`vars.Reference.String`).
            let segments: Vec<String> = path
                .iter()
                .map(|s| if s.contains([',', '.', ':', '/', ' ']) { format!("{s:?}") } else { (*s).to_owned() })
                .collect();
            out.push((format!("vars.{}", segments.join(".")), go_json(leaf)));
        }
    }
}

/// JSON as Go's `json.Marshal` writes it: like serde_json, with `<`, `>` and `&` escaped for HTML.
fn go_json(value: &Value) -> String {
    value.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` stay, a space becomes `+`, every other byte `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(byte as char),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `check`'s request. The version Concourse passes is not needed to answer (we report what runs now), and
/// may be anything a user gave `fly check-resource --from`, so it is only checked to be a map of strings.
#[derive(Debug)]
pub struct CheckRequest {
    pub(crate) source: Source,
}

/// `in`'s request (also the implicit get after a put).
#[derive(Debug)]
pub struct InRequest {
    pub(crate) source: Source,
    pub(crate) params: InParams,
    pub(crate) version: Version,
    /// The destination directory (argv[1]); created if missing.
    pub(crate) dir: PathBuf,
}

/// `out`'s request.
#[derive(Debug)]
pub struct OutRequest {
    pub(crate) source: Source,
    pub(crate) params: OutParams,
    /// The put directory holding the build's inputs (argv[1]).
    pub(crate) dir: PathBuf,
    pub(crate) build: BuildEnv,
}

/// Runs `check`: prints the versions as a JSON array.
pub fn run_check<F, Fut>(action: F) -> !
where
    F: FnOnce(CheckRequest) -> Fut,
    Fut: Future<Output = Result<Vec<Version>>>,
{
    finish(run("check", |raw| {
        let mut request = Request::parse(raw, &["source", "version"])?;
        let source = Source::parse(request.take("source"));
        let version = parse_check_version(request.take("version"));
        let (source, _version) = both(source, version)?;
        block_on(action(CheckRequest { source }))
    }))
}

/// Runs `in` with the destination directory from argv[1]: prints `{version, metadata}`.
pub fn run_in<F, Fut>(action: F) -> !
where
    F: FnOnce(InRequest) -> Fut,
    Fut: Future<Output = Result<VersionResult>>,
{
    finish(run("in", |raw| {
        let dir = directory_argument("in", "destination")?;
        let mut request = Request::parse(raw, &["source", "params", "version"])?;
        let source = Source::parse(request.take("source"));
        let params = InParams::parse(request.take("params"));
        let version = parse_in_version(request.take("version"));
        let (source, (params, version)) = both(source, both(params, version))?;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create destination {}", dir.display()))?;
        block_on(action(InRequest { source, params, version, dir }))
    }))
}

/// Runs `out` with the put directory from argv[1]: prints `{version, metadata}`.
pub fn run_out<F, Fut>(action: F) -> !
where
    F: FnOnce(OutRequest) -> Fut,
    Fut: Future<Output = Result<VersionResult>>,
{
    finish(run("out", |raw| {
        let dir = directory_argument("out", "sources")?;
        let mut request = Request::parse(raw, &["source", "params"])?;
        let source = Source::parse(request.take("source"));
        let params = OutParams::parse(request.take("params"));
        let (source, params) = both(source, params)?;
        if !dir.is_dir() {
            bail!("the put directory {} does not exist or is not a directory", dir.display());
        }
        let build = BuildEnv::from_env();
        block_on(action(OutRequest { source, params, dir, build }))
    }))
}

/// The common frame: start the clock, install the panic hook, read stdin, run `body` on it.
fn run<T: Serialize>(command: &str, body: impl FnOnce(String) -> Result<T>) -> Result<Value> {
    log::start();
    install_panic_hook();
    force_panic_for_tests(command);
    let mut stdin = String::new();
    std::io::stdin().read_to_string(&mut stdin).context("cannot read the request from stdin")?;
    let answer = body(stdin)?;
    Ok(serde_json::to_value(answer)?)
}

/// Prints the answer (or the error) and exits with the protocol's status.
fn finish(outcome: Result<Value>) -> ! {
    let code = match outcome.and_then(print_answer) {
        Ok(()) => 0,
        Err(err) => {
            log::error(format!("{err:#}"));
            1
        }
    };
    std::process::exit(code)
}

fn print_answer(answer: Value) -> Result<()> {
    let mut text = serde_json::to_string(&answer)?;
    text.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).context("cannot write the answer to stdout")
}

fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Both results, or one error holding every problem found, so a user sees all of them at once.
fn both<A, B>(a: Result<A>, b: Result<B>) -> Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(a), Err(b)) => Err(anyhow!("{a:#}; {b:#}")),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// The top-level JSON object of a request, with its keys checked against the ones the action takes.
struct Request(serde_json::Map<String, Value>);

impl Request {
    fn parse(raw: String, allowed: &[&str]) -> Result<Request> {
        if raw.trim().is_empty() {
            bail!("no request on stdin: expected a JSON object like {{\"source\": {{...}}}} from Concourse");
        }
        let value: Value = serde_json::from_str(&raw).context("the request on stdin is not valid JSON")?;
        let Value::Object(map) = value else {
            bail!("the request on stdin must be a JSON object, not {}", crate::config::json_kind(&value));
        };
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            bail!("the request has an unknown top-level key '{key}'; this step takes {}", allowed.join(", "));
        }
        Ok(Request(map))
    }

    /// The value of `key`, `null` when absent.
    fn take(&mut self, key: &str) -> Value {
        self.0.remove(key).unwrap_or(Value::Null)
    }
}

fn parse_check_version(value: Value) -> Result<Option<BTreeMap<String, String>>> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value).map(Some).map_err(|_| anyhow!("version must be an object of string values"))
}

fn parse_in_version(value: Value) -> Result<Version> {
    if value.is_null() {
        bail!("version is missing: in needs the version to fetch ({{\"app_guid\": ..., \"droplet_guid\": ...}})");
    }
    let version: Version = serde_path_to_error::deserialize(value).map_err(|err| {
        anyhow!(
            "version is not one of this resource's versions ({{\"app_guid\", \"droplet_guid\"}}): {}: {}",
            err.path(),
            err.inner()
        )
    })?;
    if version.app_guid.is_empty() || version.droplet_guid.is_empty() {
        bail!("version has an empty app_guid or droplet_guid");
    }
    Ok(version)
}

fn directory_argument(command: &str, what: &str) -> Result<PathBuf> {
    match std::env::args_os().nth(1) {
        Some(dir) if !dir.is_empty() => Ok(absolute(Path::new(&dir))),
        _ => bail!("missing directory argument: usage: {command} <{what} directory> (Concourse passes it)"),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        log::error(format!("internal error: {message}{place}; this is a bug, please report it"));
        std::process::exit(1);
    }));
}

/// Debug builds panic on purpose when `CF_BG_FORCE_PANIC` names this command, so tests can prove that a panic
/// becomes one clean error line and exit 1.
fn force_panic_for_tests(command: &str) {
    if cfg!(debug_assertions) && std::env::var("CF_BG_FORCE_PANIC").is_ok_and(|v| v == command) {
        panic!("forced panic in {command} (CF_BG_FORCE_PANIC)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_serializes_as_string_map() {
        let result = VersionResult {
            version: Version { app_guid: "a".into(), droplet_guid: "d".into(), deploy_id: None, deployed_at: None },
            metadata: vec![MetadataField::new("instances", 4)],
        };
        assert_eq!(
            serde_json::to_value(result).unwrap(),
            json!({"version": {"app_guid": "a", "droplet_guid": "d"}, "metadata": [{"name": "instances", "value": "4"}]})
        );
    }

    fn build_env(vars: &[(&str, &str)]) -> BuildEnv {
        BuildEnv::from_vars(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    const CONCOURSE_7: &[(&str, &str)] = &[
        ("BUILD_ID", "1"),
        ("BUILD_NAME", "42"),
        ("BUILD_TEAM_NAME", "some-team"),
        ("BUILD_JOB_NAME", "some-job-name"),
        ("BUILD_PIPELINE_NAME", "some-pipeline-name"),
        ("ATC_EXTERNAL_URL", "https://www.example.com"),
    ];

    #[test]
    fn build_url_is_concourse_8s_when_set() {
        let given = "https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/7";
        let build = build_env(&[CONCOURSE_7, &[("BUILD_URL", given)]].concat());
        assert_eq!(build.url.as_deref(), Some(given));
    }

    /// The URLs of `atc/exec/step_metadata_test.go`, made from the env Concourse 7 gives.
    #[test]
    fn build_url_on_concourse_7_is_made_as_concourse_makes_it() {
        assert_eq!(
            build_env(CONCOURSE_7).url.as_deref(),
            Some("https://www.example.com/teams/some-team/pipelines/some-pipeline-name/jobs/some-job-name/builds/42")
        );
        let instance_vars = ("BUILD_PIPELINE_INSTANCE_VARS", r#"{"branch":"main","env":"prod","num":9000}"#);
        assert_eq!(
            build_env(&[CONCOURSE_7, &[instance_vars]].concat()).url.as_deref(),
            Some(
                "https://www.example.com/teams/some-team/pipelines/some-pipeline-name/jobs/some-job-name/builds/42\
                 ?vars.branch=%22main%22&vars.env=%22prod%22&vars.num=9000"
            )
        );
        let nested = ("BUILD_PIPELINE_INSTANCE_VARS", r#"{"a":{"b c":"x/y","d":[1]},"e":"<&>"}"#);
        assert!(
            build_env(&[CONCOURSE_7, &[nested]].concat())
                .url
                .unwrap()
                .ends_with("?vars.a.%22b+c%22=%22x%2Fy%22&vars.a.d=%5B1%5D&vars.e=%22%5Cu003c%5Cu0026%5Cu003e%22")
        );
        let one_off = build_env(&[("BUILD_ID", "9"), ("ATC_EXTERNAL_URL", "https://www.example.com/")]);
        assert_eq!(one_off.url.as_deref(), Some("https://www.example.com/builds/9"));
        assert_eq!(build_env(&[("BUILD_ID", "9")]).url, None);
    }

    #[test]
    fn request_rejects_unknown_top_level_keys() {
        let err = Request::parse(r#"{"source": {}, "sauce": 1}"#.into(), &["source", "params"]).err().unwrap();
        assert_eq!(err.to_string(), "the request has an unknown top-level key 'sauce'; this step takes source, params");
    }

    #[test]
    fn in_version_must_have_both_guids() {
        let err = parse_in_version(json!({"app_guid": "a"})).unwrap_err().to_string();
        assert!(err.contains("droplet_guid"), "{err}");
        assert!(parse_in_version(json!({"timestamp": "x"})).is_err());
    }

    #[test]
    fn check_version_is_optional_and_free_form() {
        assert_eq!(parse_check_version(Value::Null).unwrap(), None);
        assert!(parse_check_version(json!({"ref": "x"})).unwrap().is_some());
        assert!(parse_check_version(json!({"n": 1})).is_err());
    }
}
