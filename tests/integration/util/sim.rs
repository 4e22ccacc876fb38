//! A local Cloud Foundry for the resource's tests: start a cf-sim, build the Concourse requests that point at it,
//! push the sample app (or any app directory) to it through the client as `cf push` would, restage an app, and
//! count the requests a run of a resource binary made. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cf_blue_green_resource::cf::apps::AppState;
use cf_blue_green_resource::cf::builds::NewBuild;
use cf_blue_green_resource::cf::spaces::Space;
use cf_blue_green_resource::cf::{CfClient, Credentials, Poll, ProxySettings, RetryPolicy, Settings, Wait};
use cf_sim::load::{self, LoadConfig, LoadHandle, LoadReport};
use cf_sim::{RequestRecord, Sim, SimConfig};
use serde_json::{Value, json};

/// The longest any one wait for the sim (staging, starting, a job) may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// A sim with fast staging and jobs; `adjust` changes anything else.
pub fn start_sim_with(adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig { staging_delay_ms: 20, job_delay_ms: 10, ..SimConfig::default() };
    adjust(&mut config);
    Sim::start(config).expect("cf-sim starts")
}

pub fn start_sim() -> Sim {
    start_sim_with(|_| {})
}

/// A resource `source` for the sim's org and space and the app `app`. App routes are reached over plain HTTP
/// through the sim's router.
pub fn source(sim: &Sim, app: &str) -> Value {
    let info = sim.info();
    let mut source = json!({
        "api": info.api,
        "username": info.username,
        "password": info.password,
        "organization": info.organization,
        "space": info.space,
        "app": app,
        "route_scheme": "http",
        "router_address": info.router.trim_start_matches("http://"),
    });
    if let Some(ca) = &info.ca_cert_path {
        source["ca_cert"] = json!(std::fs::read_to_string(ca).expect("the sim's CA certificate"));
    }
    source
}

/// The JSON Concourse sends to `check`; `version` is the last version it knows, if any.
pub fn check_request(source: &Value, version: Option<&Value>) -> String {
    let mut request = json!({"source": source});
    if let Some(version) = version {
        request["version"] = version.clone();
    }
    request.to_string()
}

/// The JSON Concourse sends to `in` (for a get, or the implicit get after a put with `get_params`).
pub fn in_request(source: &Value, version: &Value, params: Option<Value>) -> String {
    let mut request = json!({"source": source, "version": version});
    if let Some(params) = params {
        request["params"] = params;
    }
    request.to_string()
}

/// The JSON Concourse sends to `out`.
pub fn out_request(source: &Value, params: Option<Value>) -> String {
    let mut request = json!({"source": source});
    if let Some(params) = params {
        request["params"] = params;
    }
    request.to_string()
}

/// The requests a resource binary sent to the sim's API and UAA since the last
/// [`reset_request_log`](Sim::reset_request_log): discovery and token included, the sim's admin API not.
pub fn resource_requests(sim: &Sim) -> Vec<RequestRecord> {
    sim.request_log()
        .into_iter()
        .filter(|r| matches!(r.listener, "api" | "uaa") && !r.path.starts_with("/_sim"))
        .collect()
}

/// The requests that changed a route's destinations (map: POST, unmap: DELETE, replace: PATCH).
pub fn destination_changes(sim: &Sim) -> Vec<RequestRecord> {
    sim.request_log()
        .into_iter()
        .filter(|r| r.listener == "api" && r.path.contains("/destinations") && r.method != "GET" && r.status < 300)
        .collect()
}

/// `GET /v3/apps → 200` lines, for assertion messages.
pub fn describe_requests(records: &[RequestRecord]) -> String {
    records
        .iter()
        .map(|r| {
            let query = r.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
            format!("{} {}{} → {}", r.method, r.path, query, r.status)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Client settings for the sim (fast retries, no proxy, 30 s per request).
pub fn settings(sim: &Sim) -> Settings {
    let info = sim.info();
    let mut settings = Settings::new(
        &info.api,
        Credentials::Password { username: info.username.clone(), password: info.password.clone() },
    );
    settings.retry = RetryPolicy::fast();
    settings.proxy = ProxySettings::none();
    settings.timeouts.request = Duration::from_secs(30);
    settings.timeouts.idle = Duration::from_secs(30);
    settings.timeouts.job = WAIT;
    if let Some(ca) = &info.ca_cert_path {
        settings.ca_cert = Some(std::fs::read_to_string(ca).unwrap());
    }
    settings
}

pub async fn connect(sim: &Sim) -> CfClient {
    CfClient::connect(settings(sim)).await.expect("the client connects to the sim")
}

/// The sim's own org and space (the one [`source`] names).
pub async fn home_space(cf: &CfClient, sim: &Sim) -> Space {
    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    cf.spaces().require_by_name(&org.guid, &sim.info().space).await.unwrap()
}

/// The sample app binary (`tests/sample-app`), built once per test run. `SAMPLE_APP_BIN` overrides it (e.g.
/// where there is no cargo, as inside the image).
pub fn sample_app_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SAMPLE_APP_BIN") {
            return PathBuf::from(bin);
        }
        // Next to the resource binaries cargo built for this run: target/<profile>/.
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_check")).parent().expect("the binaries' directory").to_owned();
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command
            .args(["build", "--quiet", "-p", "sample-app", "--bin", "sample-app", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if bin_dir.file_name().is_some_and(|name| name == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cargo runs to build the sample app");
        assert!(status.success(), "building the sample app failed: {status}");
        let bin = bin_dir.join("sample-app");
        assert!(bin.is_file(), "the sample app was built but is not at {}", bin.display());
        stripped(&bin).unwrap_or(bin)
    })
    .clone()
}

/// A copy of `bin` without debug info when `strip` is installed: a tenth of the size, so uploading and staging
/// it (the sim gzips the droplet) take a fraction of the time.
fn stripped(bin: &Path) -> Option<PathBuf> {
    let dest = bin.with_file_name("sample-app-stripped");
    let partial = bin.with_file_name(format!("sample-app-stripped.{}", std::process::id()));
    let status = Command::new("strip").arg("-o").arg(&partial).arg(bin).status().ok()?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        return None;
    }
    std::fs::rename(&partial, &dest).ok()?;
    Some(dest)
}

/// A directory to push: the sample app binary and the `Procfile` that runs it.
pub fn sample_app_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("sample-app-").tempdir().unwrap();
    std::fs::copy(sample_app_bin(), dir.path().join("sample-app")).unwrap();
    std::fs::write(dir.path().join("Procfile"), "web: ./sample-app\n").unwrap();
    dir
}

/// A manifest for the sample app: one route `<name>.<domain>`, small instances, and `env`.
pub fn sample_manifest(sim: &Sim, name: &str, instances: u32, env: &[(&str, &str)]) -> String {
    let mut app = json!({
        "name": name,
        "instances": instances,
        "memory": "64M",
        "disk_quota": "256M",
        "routes": [{"route": format!("{name}.{}", sim.info().domain)}],
    });
    if !env.is_empty() {
        app["env"] = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    }
    serde_norway::to_string(&json!({"applications": [app]})).unwrap()
}

/// What [`push`] made.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub app_guid: String,
    pub package_guid: String,
    pub droplet_guid: String,
}

impl Pushed {
    /// The resource version of this app and droplet.
    pub fn version(&self) -> Value {
        json!({"app_guid": self.app_guid, "droplet_guid": self.droplet_guid})
    }
}

/// `cf push` of `dir` with `manifest` (one application) into `space`: apply the manifest, upload the bits,
/// stage, make the droplet current, start (or restart) and wait until every web instance runs.
pub async fn push(cf: &CfClient, space: &Space, manifest: &str, dir: &Path) -> Pushed {
    let parsed: Value = serde_norway::from_str(manifest).expect("the manifest is YAML");
    let name = parsed["applications"][0]["name"].as_str().expect("the manifest names its application").to_owned();
    cf.manifests().apply(&space.guid, manifest, WAIT).await.expect("the manifest applies");
    let app = cf.apps().by_name(&space.guid, &name).await.unwrap().expect("the manifest created the app");

    let zip = tempfile::Builder::new().suffix(".zip").tempfile().unwrap();
    super::archive::zip_dir(dir, zip.path());
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    cf.packages().upload(&package.guid, Some(zip.path()), &[]).await.unwrap();
    cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();
    let droplet_guid = stage_and_run(cf, &app.guid, &package.guid, app.state == AppState::Started).await;
    Pushed { app_guid: app.guid, package_guid: package.guid, droplet_guid }
}

/// `cf restage`: stages the app's newest package again, makes the new droplet current and restarts the app.
/// Returns the new droplet's guid.
pub async fn restage(cf: &CfClient, app_guid: &str) -> String {
    let package = cf.packages().for_app(app_guid).await.unwrap().into_iter().next().expect("the app has a package");
    stage_and_run(cf, app_guid, &package.guid, true).await
}

async fn stage_and_run(cf: &CfClient, app_guid: &str, package_guid: &str, running: bool) -> String {
    let build = cf.builds().create(package_guid, &NewBuild::default()).await.unwrap();
    let build = cf.builds().wait_staged(&build.guid, WAIT, |_, _| {}).await.expect("the app stages");
    let droplet = build.droplet_guid().expect("a staged build has a droplet").to_owned();
    cf.apps().set_current_droplet(app_guid, &droplet).await.unwrap();
    if running {
        cf.apps().restart(app_guid).await.unwrap();
    } else {
        cf.apps().start(app_guid).await.unwrap();
    }
    wait_running(cf, app_guid).await;
    droplet
}

/// Waits until every instance of the app's web process runs.
pub async fn wait_running(cf: &CfClient, app_guid: &str) {
    let web = cf.processes().of_app(app_guid, "web").await.unwrap();
    let processes = cf.processes();
    Wait::new(format!("the web instances of {app_guid} to run"), WAIT)
        .until(|| async {
            let stats = processes.stats(&web.guid).await?;
            Ok(if stats.all_ready(web.instances) { Poll::Ready(()) } else { Poll::Pending })
        })
        .await
        .expect("the app's instances run");
}

/// A load loop of 30 requests a second (every 15th slow) on `myapp.<domain>` through the sim's router, given
/// half a second to begin.
pub fn start_load(sim: &Sim) -> LoadHandle {
    let mut config = LoadConfig::new(&sim.info().router, &format!("myapp.{}", sim.info().domain));
    config.requests_per_second = 30;
    config.slow_every = 15;
    let load = load::start(config);
    std::thread::sleep(Duration::from_millis(500));
    load
}

/// Fails unless the load of [`start_load`] ran and production answered every one of its requests.
pub fn assert_no_failures(report: &LoadReport) {
    eprintln!("load: {} requests, versions {:?}", report.total(), report.versions());
    assert!(report.total() > 30, "the load ran ({} requests)", report.total());
    assert!(report.failures().is_empty(), "production dropped requests:\n{}", report.describe_failures());
}
