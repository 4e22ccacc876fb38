//! The one-command demo: a blue-green deploy on the embedded local Cloud Foundry, while traffic flows.
//!
//! `cargo run --release -p cf-sim --bin demo` builds the resource's `out` and the sample app, starts cf-sim (with
//! gorouter-like route propagation delay), deploys the sample app v1 through the real `out` binary fed
//! Concourse-style JSON, then deploys v2 blue-green while a load generator sends requests to production through
//! the router, and reports phases, requests served, failures, and the apps and routes left. Exits 0 when not one
//! request failed; every process it started is gone when it exits.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cf_sim::load::{self, LoadConfig};
use cf_sim::{Sim, SimConfig};
use serde_json::{Value, json};

const APP: &str = "myapp";

fn main() {
    if let Err(err) = run() {
        eprintln!("demo failed: {err:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let bins = build()?;
    say("Starting the local Cloud Foundry (CC v3 API, UAA, router with 1 s route propagation, Log Cache)");
    let sim = Sim::start(SimConfig {
        route_propagation_delay_ms: 1000,
        staging_delay_ms: 1500,
        stop_grace_ms: 5000,
        ..SimConfig::default()
    })?;
    let info = sim.info().clone();
    println!("  API {}  router {}  domain {}", info.api, info.router, info.domain);

    let put = tempfile::Builder::new().prefix("demo-put-").tempdir()?;
    assemble_inputs(put.path(), &bins.sample_app, &info.domain)?;
    let source = json!({
        "api": info.api, "username": info.username, "password": info.password,
        "organization": info.organization, "space": info.space, "app": APP,
        "route_scheme": "http", "router_address": info.router.trim_start_matches("http://"),
    });
    let params = |version: &str| {
        json!({
            "path": "app", "manifest": "ci/manifest.yml", "drain": "3s",
            "environment_variables": {"APP_VERSION": version},
            "verify": [{"path": "/version", "body_contains": version}],
            "kpi": {"requests": 100, "concurrency": 5, "paths": ["/version"], "max_error_rate": 0.0},
        })
    };

    say("Deploying v1 (the first deploy)");
    put_step(&bins.out, put.path(), &source, params("v1"))?;
    let host = format!("{APP}.{}", info.domain);
    wait_until_serving(&info.router, &host, "v1")?;

    let rate = 100;
    say(&format!(
        "Sending {rate} requests/s to http://{host} (every 10th a 1 s request, every 3rd on a new connection)"
    ));
    let traffic = load::start(LoadConfig {
        max_duration: Duration::from_secs(600),
        ..LoadConfig::heavy(&info.router, &host, rate)
    });
    std::thread::sleep(Duration::from_secs(2));

    say("Deploying v2 blue-green through the real `out` binary");
    let answer = put_step(&bins.out, put.path(), &source, params("v2"))?;
    std::thread::sleep(Duration::from_secs(2));
    let report = traffic.stop();

    say("Report");
    let metadata = answer["metadata"].as_array().cloned().unwrap_or_default();
    let field = |name: &str| {
        metadata.iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_str()).unwrap_or("").to_owned()
    };
    let phases: Vec<String> = metadata
        .iter()
        .filter_map(|m| Some(format!("{} {}", m["name"].as_str()?.strip_prefix("duration_")?, m["value"].as_str()?)))
        .collect();
    println!("  phases of the v2 deploy: {}", phases.join(", "));
    println!("  verification: {}", field("verification"));
    println!("  traffic: {}", report.describe());
    if let Some(at) = report.first_answer_by("v2") {
        println!("  v2 answered first {:.1} s into the traffic", at.as_secs_f64());
    }
    let state = sim.state_dump();
    for app in state["apps"].as_array().into_iter().flatten() {
        println!("  app {:<16} {}", app["name"].as_str().unwrap_or(""), app["state"].as_str().unwrap_or(""));
    }
    for route in state["routes"].as_array().into_iter().flatten() {
        println!("  route http://{}", route["name"].as_str().unwrap_or(""));
    }
    let failed = report.failures().len();
    if failed > 0 {
        bail!("{failed} of {} requests failed during the deploy:\n{}", report.total(), report.describe_failures());
    }
    ensure!(report.versions() == ["v1", "v2"], "responses did not switch from v1 to v2: {:?}", report.versions());
    println!("\nzero downtime: 0 failed of {} requests; production moved from v1 to v2", report.total());
    sim.stop();
    Ok(())
}

fn say(text: &str) {
    println!("\n==> {text}");
}

struct Binaries {
    out: PathBuf,
    sample_app: PathBuf,
}

/// Builds `out` and the sample app in this binary's profile, next to it.
fn build() -> Result<Binaries> {
    say("Building the resource's out binary and the sample app");
    let dir = std::env::current_exe()?.parent().context("the binary's directory")?.to_owned();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.args([
        "build",
        "--quiet",
        "-p",
        "cf-blue-green-resource",
        "--bin",
        "out",
        "-p",
        "sample-app",
        "--bin",
        "sample-app",
        "--manifest-path",
    ]);
    cargo.arg(&workspace);
    if dir.file_name().is_some_and(|name| name == "release") {
        cargo.arg("--release");
    }
    ensure!(cargo.status().context("running cargo")?.success(), "building out and the sample app failed");
    Ok(Binaries { out: dir.join("out"), sample_app: dir.join("sample-app") })
}

/// The put step's inputs: `app/` (the sample app and its Procfile) and `ci/manifest.yml`.
fn assemble_inputs(put: &Path, sample_app: &Path, domain: &str) -> Result<()> {
    std::fs::create_dir_all(put.join("app"))?;
    std::fs::create_dir_all(put.join("ci"))?;
    std::fs::copy(sample_app, put.join("app/sample-app")).context("copying the sample app")?;
    std::fs::write(put.join("app/Procfile"), "web: ./sample-app\n")?;
    std::fs::write(
        put.join("ci/manifest.yml"),
        format!(
            "applications:\n- name: {APP}\n  instances: 2\n  memory: 64M\n  health-check-type: http\n  health-check-http-endpoint: /healthcheck\n  routes:\n  - route: {APP}.{domain}\n"
        ),
    )?;
    Ok(())
}

/// Runs `out` as Concourse's put step would: the request on stdin, the build's env, its log streamed to our
/// terminal; returns its JSON answer.
fn put_step(out: &Path, put: &Path, source: &Value, params: Value) -> Result<Value> {
    let mut child = Command::new(out)
        .arg(put)
        .env("BUILD_TEAM_NAME", "main")
        .env("BUILD_PIPELINE_NAME", "demo")
        .env("BUILD_JOB_NAME", "deploy")
        .env("BUILD_NAME", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting out")?;
    let request = json!({"source": source, "params": params}).to_string();
    child.stdin.take().context("out's stdin")?.write_all(request.as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "out failed ({})", output.status);
    serde_json::from_slice(&output.stdout).context("out's answer is not JSON")
}

/// Waits (at most 10 s) until the route answers `version` through the router.
fn wait_until_serving(router: &str, host: &str, version: &str) -> Result<()> {
    let mut check = LoadConfig::new(router, host);
    check.requests_per_second = 20;
    for _ in 0..20 {
        let probe = load::start(LoadConfig { max_requests: 1, ..check.clone() });
        std::thread::sleep(Duration::from_millis(200));
        if probe.stop().versions() == [version] {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    bail!("{host} never served {version}")
}
