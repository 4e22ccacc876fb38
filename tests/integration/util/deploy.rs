//! Deploying with the real `out` binary against a cf-sim: a put directory holding the sample app and a
//! manifest (as a pipeline's inputs would), Concourse-style requests and env, and looks at the result through
//! the sim's router and state.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cf_blue_green_resource::record::{ROLE_LABEL, journal};
use cf_sim::Sim;
use serde_json::{Value, json};

use super::sim::{out_request, sample_app_bin, source};
use super::{Background, Run, run_resource, spawn_resource};

/// The env Concourse gives a put step.
pub const BUILD_ENV: &[(&str, &str)] = &[
    ("BUILD_ID", "101"),
    ("BUILD_NAME", "7"),
    ("BUILD_JOB_NAME", "deploy"),
    ("BUILD_PIPELINE_NAME", "shop"),
    ("BUILD_TEAM_NAME", "main"),
    ("ATC_EXTERNAL_URL", "https://ci.example.com"),
    ("BUILD_URL", "https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/7"),
];

/// A put directory: `app/` (the sample app and its Procfile) and `ci/manifest.yml`.
pub struct PutDir {
    pub dir: tempfile::TempDir,
}

impl PutDir {
    pub fn with_sample_app() -> PutDir {
        let dir = tempfile::Builder::new().prefix("put-").tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::copy(sample_app_bin(), app.join("sample-app")).unwrap();
        std::fs::write(app.join("Procfile"), "web: ./sample-app\n").unwrap();
        PutDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `text` to `rel` inside the put directory (making parents), returning the path.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes an executable script to `rel`.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.write(rel, &format!("#!/bin/sh\n{body}\n"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// The manifest of the sample app `name` with `instances`, an HTTP health check on `/healthcheck`, one route
/// per entry of `routes` (`host` or `host/path` on the sim's domain, or `no-route` when empty), and `env`.
pub fn manifest(sim: &Sim, name: &str, instances: u32, routes: &[&str], env: &[(&str, &str)]) -> String {
    let domain = &sim.info().domain;
    let mut app = json!({
        "name": name,
        "instances": instances,
        "memory": "64M",
        "disk_quota": "256M",
        "health-check-type": "http",
        "health-check-http-endpoint": "/healthcheck",
    });
    if routes.is_empty() {
        app["no-route"] = json!(true);
    } else {
        app["routes"] = routes
            .iter()
            .map(|r| match r.split_once('/') {
                Some((host, path)) => json!({"route": format!("{host}.{domain}/{path}")}),
                None => json!({"route": format!("{r}.{domain}")}),
            })
            .collect();
    }
    if !env.is_empty() {
        app["env"] = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    }
    serde_norway::to_string(&json!({"applications": [app]})).unwrap()
}

/// Runs `out` for `app` with `params` on the put directory, with the build env of a Concourse put.
pub fn out(sim: &Sim, put: &PutDir, app: &str, params: Value) -> Run {
    let run =
        run_resource("out", &[put.path().to_str().unwrap()], &out_request(&source(sim, app), Some(params)), BUILD_ENV);
    eprintln!("---- out ({}) exited {}\n{}", app, run.status, run.stderr);
    run
}

/// The env of a put by build `build` of the same job as [`BUILD_ENV`]: its own build name and URL, so
/// concurrent puts name distinct lock holders.
pub fn build_env(build: &str) -> Vec<(&'static str, String)> {
    BUILD_ENV
        .iter()
        .map(|(key, value)| match *key {
            "BUILD_NAME" => (*key, build.to_owned()),
            "BUILD_ID" => (*key, format!("10{build}")),
            "BUILD_URL" => (*key, build_url(build)),
            _ => (*key, (*value).to_owned()),
        })
        .collect()
}

/// The build URL of build `build` in [`build_env`].
pub fn build_url(build: &str) -> String {
    format!("https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/{build}")
}

/// Runs `out` as build `build` (see [`build_env`]).
pub fn out_as(sim: &Sim, put: &PutDir, app: &str, params: Value, build: &str) -> Run {
    let env = build_env(build);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = run_resource("out", &[put.path().to_str().unwrap()], &out_request(&source(sim, app), Some(params)), &env);
    eprintln!("---- out ({app}, build {build}) exited {}\n{}", run.status, run.stderr);
    run
}

/// Starts `out` as build `build` in the background.
pub fn spawn_out(sim: &Sim, put: &PutDir, app: &str, params: Value, build: &str) -> Background {
    let env = build_env(build);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_resource("out", &[put.path().to_str().unwrap()], &out_request(&source(sim, app), Some(params)), &env, None)
}

/// Prints a finished background run's log (shown when a test fails) and returns it.
pub fn logged(what: &str, run: Run) -> Run {
    eprintln!("---- {what} exited {}\n{}", run.status, run.stderr);
    run
}

/// The app called `name` in the sim's state dump, if any.
pub fn app_named(sim: &Sim, name: &str) -> Option<Value> {
    sim.state_dump()["apps"].as_array().unwrap().iter().find(|a| a["name"] == name).cloned()
}

/// One of an app's annotations (from the state dump).
pub fn annotation<'a>(app: &'a Value, key: &str) -> Option<&'a str> {
    app["metadata"]["annotations"][key].as_str()
}

/// Polls `ready` every 50 ms until it returns `Some`, for at most `limit`; panics naming `what` otherwise.
pub fn wait_for<T>(what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Put params deploying the put directory's sample app with its manifest as `version` (its `APP_VERSION`),
/// draining for `drain`, with the keys of `extra` added or replacing these.
pub fn sample_params(version: &str, drain: &str, extra: Value) -> Value {
    let mut params = json!({
        "path": "app",
        "manifest": "ci/manifest.yml",
        "environment_variables": {"APP_VERSION": version},
        "drain": drain,
    });
    if let (Some(params), Value::Object(extra)) = (params.as_object_mut(), extra) {
        params.extend(extra);
    }
    params
}

/// Runs `out` and asserts it succeeded; returns the version it printed.
pub fn deploy(sim: &Sim, put: &PutDir, app: &str, params: Value) -> Value {
    let run = out(sim, put, app, params);
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    let answer: Value = serde_json::from_str(&run.stdout).expect("out prints JSON");
    answer["version"].clone()
}

/// `GET http://<host>.<domain><path>` through the sim's router: (status, body).
pub fn get(sim: &Sim, host: &str, path: &str) -> (u16, String) {
    let router = sim.info().router.trim_start_matches("http://").to_owned();
    let host = format!("{host}.{}", sim.info().domain);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = super::http_client()
            .resolve(&host, router.parse().unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        match client.get(format!("http://{host}{path}")).send().await {
            Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
}

/// Waits (at most 10 s) until `host` answers `/version` with `version` through the router: a new route reaches
/// the router only after the sim's propagation delay.
pub fn wait_until_serving(sim: &Sim, host: &str, version: &str) {
    wait_for(&format!("{host} to serve {version}"), Duration::from_secs(10), || {
        (get(sim, host, "/version") == (200, version.to_owned())).then_some(())
    });
}

/// What [`assert_settled`] found.
pub struct Settled {
    /// The guids of `<app>` and `<app>-previous`.
    pub production: String,
    pub previous: String,
}

/// The deploy journal keys among an app's annotations (an app from the state dump).
pub fn journal_keys(app: &Value) -> Vec<&String> {
    app["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, _)| key)
        .filter(|key| journal::KEYS.contains(&key.as_str()))
        .collect()
}

/// Asserts that deploys of `app` left it settled: `app` (started) and `<app>-previous` (stopped) and no other
/// app; `<app>.<domain>` the only route, reaching `app` alone; no deploy journal key or candidate label on any
/// app. With `late_journal`, `app` may carry journal keys that a journal write processed after its client gave
/// up on it put there once the deploy had finished (never read on production; the next deploy clears them).
pub fn assert_settled(sim: &Sim, app: &str, late_journal: bool, context: &str) -> Settled {
    let previous_name = format!("{app}-previous");
    assert_eq!(
        apps(sim),
        [(app.to_owned(), "STARTED".to_owned()), (previous_name.clone(), "STOPPED".to_owned())],
        "{context}: the apps"
    );
    let state = sim.state_dump();
    let all = state["apps"].as_array().unwrap();
    let guid_of = |name: &str| all.iter().find(|a| a["name"] == name).unwrap()["guid"].as_str().unwrap().to_owned();
    let settled = Settled { production: guid_of(app), previous: guid_of(&previous_name) };
    assert_eq!(
        route_destinations(sim),
        [(format!("{app}.{}", sim.info().domain), vec![settled.production.clone()])],
        "{context}: the routes (only the production route, only to {app})"
    );
    for each in all {
        let journal = journal_keys(each);
        assert!(
            journal.is_empty() || (late_journal && each["name"] == app),
            "{context}: {} still carries deploy journal keys {journal:?}",
            each["name"]
        );
        assert!(
            each["metadata"]["labels"].get(ROLE_LABEL).is_none_or(Value::is_null),
            "{context}: {} is still labelled a candidate",
            each["name"]
        );
    }
    settled
}

/// The apps in the sim: name → (state, guid), sorted by name.
pub fn apps(sim: &Sim) -> Vec<(String, String)> {
    let state = sim.state_dump();
    let mut apps: Vec<(String, String)> = state["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a["state"].as_str().unwrap().to_owned()))
        .collect();
    apps.sort();
    apps
}

/// The URLs of every route in the sim, sorted.
pub fn routes(sim: &Sim) -> Vec<String> {
    let state = sim.state_dump();
    let mut routes: Vec<String> =
        state["routes"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap_or_default().to_owned()).collect();
    routes.sort();
    routes
}

/// Every route in the sim with the guids of the apps it is mapped to, sorted.
pub fn route_destinations(sim: &Sim) -> Vec<(String, Vec<String>)> {
    let state = sim.state_dump();
    let mut routes: Vec<(String, Vec<String>)> = state["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut apps: Vec<String> =
                r["destinations"].as_array().unwrap().iter().map(|d| d["app"].as_str().unwrap().to_owned()).collect();
            apps.sort();
            (r["name"].as_str().unwrap_or_default().to_owned(), apps)
        })
        .collect();
    routes.sort();
    routes
}
