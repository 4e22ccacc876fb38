//! Deploy benchmarks against cf-sim with the real (release) `out`, `check` and `in` binaries:
//!
//! - overhead: `out`'s wall time minus what cf-sim is configured to spend (staging, app start, drain) for a
//!   10 MB app — target < 1 s;
//! - API requests per deploy (polls excluded), per check, per in — targets ≤ 30, ≤ 3, ≤ 5;
//! - a redeploy of a 200 MB app with one changed file: bytes uploaded — target < 1 % of the app;
//! - scale: 20 routes, 50 instances, 2000 apps in the space — requests grow with routes, not apps;
//! - peak RSS of `out` during a 1 GB upload — target < 64 MB;
//! - latency: the 10 MB redeploy, `check` and `in` with cf-sim answering every API request after 0, 50 and
//!   150 ms — overhead, requests and sequential round trips per phase, how soon each wait is seen to end —
//!   targets at 150 ms: overhead ≤ 3 s, waits detected within 0.3 s on average;
//! - article: our `out` beside the article's procedure run by the cf CLI v8 (one process per command, its 3 s
//!   polls), under the same load, route propagation delay and latency (0 and 150 ms).
//!
//! `cargo bench --bench deploy` (all), or name sections: `cargo bench --bench deploy -- overhead requests`.
//! `cargo bench --bench deploy -- latency --list-requests` lists the requests of each phase of the redeploys.

#[path = "cf_cli.rs"]
mod cf_cli;
#[path = "critical_path.rs"]
mod critical_path;
#[path = "measure.rs"]
mod measure;
#[path = "../tests/integration/util/mod.rs"]
pub mod util;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use cf_sim::load::{self, LoadConfig};
use cf_sim::{RequestRecord, Sim, SimConfig};
use critical_path::{Timed, is_poll};
use serde_json::{Value, json};
use util::deploy::{BUILD_ENV, PutDir, manifest, wait_until_serving};
use util::sim::{check_request, in_request, out_request, resource_requests, source};

const STAGING_MS: u64 = 500;
const APP_START_MS: u64 = 500;
const DRAIN_MS: u64 = 1000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(cf_cli::COMMAND_ARG) {
        if let Err(error) = cf_cli::command(&args[1..]) {
            eprintln!("{error:#}");
            std::process::exit(1);
        }
        return;
    }
    let sections: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    println!("machine: {} cores, {}", cores(), cpu_model());
    if wanted("overhead") {
        overhead();
    }
    if wanted("requests") {
        requests();
    }
    if wanted("redeploy") {
        redeploy_one_changed_file();
    }
    if wanted("scale") {
        scale();
    }
    if wanted("rss") {
        upload_rss();
    }
    if wanted("latency") {
        latency();
    }
    if wanted("article") {
        article();
    }
}

fn sim(adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig { staging_delay_ms: 20, job_delay_ms: 10, stop_grace_ms: 2000, ..SimConfig::default() };
    adjust(&mut config);
    Sim::start(config).expect("cf-sim starts")
}

/// Runs `out` measured; panics with its log if it fails.
fn out(sim: &Sim, put: &PutDir, app: &str, params: Value) -> measure::Measured {
    let mut command = Command::new(env!("CARGO_BIN_EXE_out"));
    command.arg(put.path()).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("NO_COLOR", "1");
    for (k, v) in BUILD_ENV {
        command.env(k, v);
    }
    let run = measure::run(&mut command, &out_request(&source(sim, app), Some(params)));
    assert_eq!(run.exit_code, 0, "out failed:\n{}", run.stderr);
    run
}

fn version(run: &measure::Measured) -> Value {
    serde_json::from_str::<Value>(&run.stdout).expect("out prints JSON")["version"].clone()
}

/// Writes `bytes` of pseudo-random (incompressible) data to `path`.
fn random_file(path: &Path, bytes: u64, seed: u64) {
    let mut state = seed | 1;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; 1 << 16];
    let mut written = 0;
    while written < bytes {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let n = (bytes - written).min(block.len() as u64) as usize;
        file.write_all(&block[..n]).unwrap();
        written += n as u64;
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn overhead() {
    println!("\n== Deploy overhead: a 10 MB app ==");
    let sim = sim(|c| c.staging_delay_ms = STAGING_MS);
    let (put, params) = ten_mb_app_deployed(&sim);
    let mut walls = Vec::new();
    for round in 0..3 {
        // New bits every time, so each redeploy really uploads and stages them.
        random_file(&put.path().join("app/assets.bin"), 9_000_000, 100 + round);
        walls.push(out(&sim, &put, "myapp", params.clone()).wall.as_secs_f64());
    }
    let configured = (STAGING_MS + APP_START_MS + DRAIN_MS) as f64 / 1000.0;
    let wall = median(walls.clone());
    let overhead = wall - configured;
    println!(
        "app {:.1} MB; cf-sim staging {STAGING_MS} ms, app start {APP_START_MS} ms, drain {DRAIN_MS} ms",
        walk_size(&put.path().join("app")) as f64 / 1e6
    );
    println!(
        "out wall time (median of {:?}): {wall:.2} s; overhead {overhead:.2} s — target < 1 s: {}",
        walls,
        verdict(overhead < 1.0)
    );
}

/// The overhead benchmark's app (the sample app and 9 MB of incompressible assets, starting in
/// [`APP_START_MS`], drained for [`DRAIN_MS`]) deployed once; returns its put directory and `out` params.
fn ten_mb_app_deployed(sim: &Sim) -> (PutDir, Value) {
    let put = PutDir::with_sample_app();
    put.write(
        "ci/manifest.yml",
        &manifest(sim, "myapp", 1, &["myapp"], &[("STARTUP_DELAY_MS", &APP_START_MS.to_string())]),
    );
    let params = json!({"path": "app", "manifest": "ci/manifest.yml", "drain": format!("{DRAIN_MS}ms")});
    random_file(&put.path().join("app/assets.bin"), 9_000_000, 1);
    out(sim, &put, "myapp", params.clone());
    (put, params)
}

fn count(records: &[RequestRecord]) -> (usize, usize) {
    (records.len(), records.iter().filter(|r| !is_poll(r)).count())
}

fn requests() {
    println!("\n== API requests ==");
    let sim = sim(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 2, &["myapp"], &[]));
    let params = json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s"});
    sim.reset_request_log();
    out(&sim, &put, "myapp", params.clone());
    let (first_total, first) = count(&all_requests(&sim));
    sim.reset_request_log();
    std::fs::write(put.path().join("app/changed.txt"), "a change").unwrap();
    let run = out(&sim, &put, "myapp", params);
    let redeploy_records = all_requests(&sim);
    let (redeploy_total, redeploy) = count(&redeploy_records);
    println!("first deploy: {first} requests ({first_total} with polls)");
    println!(
        "redeploy:     {redeploy} requests ({redeploy_total} with polls) — target ≤ 30: {}",
        verdict(redeploy <= 30)
    );
    for r in redeploy_records.iter().filter(|r| !is_poll(r)) {
        println!("    {} {}", r.method, cf_sim::request_log::path_template(&r.path));
    }

    let version = version(&run);
    sim.reset_request_log();
    let check = measure::run(
        Command::new(env!("CARGO_BIN_EXE_check")).env("NO_COLOR", "1"),
        &check_request(&source(&sim, "myapp"), None),
    );
    assert_eq!(check.exit_code, 0, "{}", check.stderr);
    let checks = resource_requests(&sim).len();
    sim.reset_request_log();
    let dir = tempfile::tempdir().unwrap();
    let fetched = measure::run(
        Command::new(env!("CARGO_BIN_EXE_in")).arg(dir.path()).env("NO_COLOR", "1"),
        &in_request(&source(&sim, "myapp"), &version, None),
    );
    assert_eq!(fetched.exit_code, 0, "{}", fetched.stderr);
    let ins = resource_requests(&sim).len();
    println!("check: {checks} requests — target ≤ 3: {}", verdict(checks <= 3));
    println!("in:    {ins} requests — target ≤ 5: {}", verdict(ins <= 5));
}

/// The requests a deploy sent to CC (discovery `GET /` included), UAA and Log Cache; not the sim's admin API.
fn all_requests(sim: &Sim) -> Vec<RequestRecord> {
    sim.request_log().into_iter().filter(|r| !r.path.starts_with("/_sim")).collect()
}

fn uploaded_bytes(sim: &Sim) -> u64 {
    sim.request_log().iter().filter(|r| r.path.ends_with("/upload")).filter_map(|r| r.request_bytes).sum()
}

fn redeploy_one_changed_file() {
    println!("\n== Redeploy of a 200 MB app with one changed file ==");
    let sim = sim(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let data = put.path().join("app/data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..2000u64 {
        random_file(&data.join(format!("file-{i:04}.bin")), 70_000 + (i * 37) % 30_000, i + 7);
    }
    for i in 0..4u64 {
        random_file(&data.join(format!("large-{i}.bin")), 12_500_000, 9000 + i);
    }
    let app_bytes: u64 = walk_size(&put.path().join("app"));
    let params = json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s"});
    sim.reset_request_log();
    out(&sim, &put, "myapp", params.clone());
    let first = uploaded_bytes(&sim);
    random_file(&data.join("file-0042.bin"), 80_000, 424242);
    sim.reset_request_log();
    out(&sim, &put, "myapp", params);
    let second = uploaded_bytes(&sim);
    let share = second as f64 / app_bytes as f64 * 100.0;
    println!(
        "app {:.1} MB; first upload {:.1} MB; redeploy upload {:.1} KB = {share:.3}% of the app — target < 1%: {}",
        app_bytes as f64 / 1e6,
        first as f64 / 1e6,
        second as f64 / 1e3,
        verdict(share < 1.0)
    );
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() { walk_size(&e.path()) } else { e.metadata().unwrap().len() }
        })
        .sum()
}

fn scale() {
    println!("\n== Scale: requests per redeploy as routes, instances and apps in the space grow ==");
    let cases: [(&str, usize, u32, usize); 4] = [
        ("baseline: 1 route, 1 instance", 1, 1, 0),
        ("20 routes", 20, 1, 0),
        ("50 instances", 1, 50, 0),
        ("2000 apps in the space", 1, 1, 2000),
    ];
    let mut counts = Vec::new();
    for (label, routes, instances, other_apps) in cases {
        let sim = sim(|_| {});
        if other_apps > 0 {
            fill_space(&sim, other_apps);
        }
        let put = PutDir::with_sample_app();
        let hosts: Vec<String> =
            (0..routes).map(|i| if i == 0 { "myapp".into() } else { format!("myapp-{i}") }).collect();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        put.write("ci/manifest.yml", &manifest(&sim, "myapp", instances, &hosts, &[]));
        let params = json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s", "startup_timeout": "5m"});
        out(&sim, &put, "myapp", params.clone());
        sim.reset_request_log();
        let run = out(&sim, &put, "myapp", params);
        let (total, without_polls) = count(&all_requests(&sim));
        println!("{label:<32} {without_polls:>3} requests ({total} with polls), {:.1} s", run.wall.as_secs_f64());
        counts.push(without_polls);
    }
    let [baseline, routes, instances, apps] = counts[..] else { unreachable!("four cases") };
    let per_route = (routes as f64 - baseline as f64) / 19.0;
    println!(
        "each extra route adds {per_route:.1} requests; 50 instances add {}; 2000 apps in the space add {}",
        instances as i64 - baseline as i64,
        apps as i64 - baseline as i64
    );
    println!(
        "requests grow with routes, not with instances or apps in the space: {}",
        verdict(instances == baseline && apps == baseline && routes > baseline)
    );
}

/// Creates `n` stopped apps in the sim's space, straight through its API.
fn fill_space(sim: &Sim, n: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = util::sim::connect(sim).await;
        let space = util::sim::home_space(&cf, sim).await;
        for i in 0..n {
            let app = cf_blue_green_resource::cf::apps::NewApp {
                name: format!("other-{i:04}"),
                space_guid: space.guid.clone(),
                ..Default::default()
            };
            cf.apps().create(&app).await.unwrap();
        }
    });
}

fn upload_rss() {
    println!("\n== Peak RSS of out during a 1 GB upload ==");
    let sim = sim(|c| c.max_package_size = 2 << 30);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    for i in 0..4u64 {
        random_file(&put.path().join(format!("app/blob-{i}.bin")), 250_000_000, 77 + i);
    }
    let app_bytes = walk_size(&put.path().join("app"));
    sim.reset_request_log();
    let run = out(
        &sim,
        &put,
        "myapp",
        json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s", "staging_timeout": "30m"}),
    );
    let uploaded = uploaded_bytes(&sim);
    let rss_mb = run.max_rss_kb as f64 / 1024.0;
    println!(
        "app {:.2} GB, uploaded {:.2} GB in a {:.1} s deploy; out peak RSS {rss_mb:.1} MB — target < 64 MB: {}",
        app_bytes as f64 / 1e9,
        uploaded as f64 / 1e9,
        run.wall.as_secs_f64(),
        verdict(rss_mb < 64.0)
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The API latencies of the latency benchmark, in ms.
const LATENCIES_MS: [u64; 3] = [0, 50, 150];
/// The latency the targets are set at.
const TARGET_LATENCY_MS: u64 = 150;

/// With this argument, the latency section lists every request of each phase: when it left and when its answer
/// was back (seconds into the phase), method and path.
const LIST_REQUESTS_ARG: &str = "--list-requests";

/// Requests and sequential round trips of `requests`, as `12 requests, 9 round trips`.
fn requests_and_rounds(requests: &[&Timed]) -> String {
    format!("{} requests, {} round trips", requests.len(), critical_path::rounds(requests))
}

fn latency() {
    println!("\n== Deploy at real API latency: a redeploy of the 10 MB app, check and in ==");
    println!(
        "(round trips: the longest chain of requests each sent after the previous answer came back; requests in \
         flight together count once)"
    );
    let configured = (STAGING_MS + APP_START_MS + DRAIN_MS) as f64 / 1000.0;
    let list_requests = std::env::args().any(|a| a == LIST_REQUESTS_ARG);
    let mut at_target = (f64::NAN, f64::NAN, (f64::NAN, usize::MAX));
    for latency_ms in LATENCIES_MS {
        let sim = sim(|c| {
            c.staging_delay_ms = STAGING_MS;
            c.api_latency_ms = latency_ms;
        });
        let latency = Duration::from_millis(latency_ms);
        let (put, params) = ten_mb_app_deployed(&sim);
        random_file(&put.path().join("app/assets.bin"), 9_000_000, 500 + latency_ms);
        sim.reset_request_log();
        let started = SystemTime::now();
        let run = out(&sim, &put, "myapp", params);
        let timed = critical_path::timed(&all_requests(&sim), latency);
        let all: Vec<&Timed> = timed.iter().collect();
        let overhead = run.wall.as_secs_f64() - configured;
        let polls = timed.iter().filter(|t| is_poll(&t.record)).count();
        println!(
            "\n{latency_ms} ms: out {:.2} s, overhead {overhead:.2} s; {} ({polls} of them polls)",
            run.wall.as_secs_f64(),
            requests_and_rounds(&all)
        );
        let answer: Value = serde_json::from_str(&run.stdout).expect("out prints JSON");
        let phases = critical_path::phase_windows(&answer["metadata"], started);
        for (i, (phase, from, to)) in phases.iter().enumerate() {
            let in_phase: Vec<&Timed> = timed
                .iter()
                .filter(|t| (i == 0 || t.start >= *from) && (i + 1 == phases.len() || t.start < *to))
                .collect();
            println!("    {phase:<13} {:>5.2} s  {}", to - from, requests_and_rounds(&in_phase));
            if list_requests {
                for t in &in_phase {
                    let what = cf_sim::request_log::path_template(&t.record.path);
                    println!("        {:>6.3} → {:>6.3}  {} {what}", t.start - from, t.end - from, t.record.method);
                }
            }
        }
        let waits = critical_path::waits(&timed);
        for wait in &waits {
            println!(
                "    wait {:<28} {} poll(s), seen done {:.2} s after CF finished it (at most {:.2} s)",
                wait.what, wait.polls, wait.lag, wait.bound
            );
        }
        let mean =
            |value: fn(&critical_path::Wait) -> f64| waits.iter().map(value).sum::<f64>() / waits.len().max(1) as f64;
        let mean_lag = mean(|w| w.lag);
        println!("    mean wait detection lag {mean_lag:.2} s (of the upper bounds {:.2} s)", mean(|w| w.bound));
        if latency_ms == TARGET_LATENCY_MS {
            at_target = (overhead, mean_lag, check_and_in_at_latency(&sim, &version(&run), latency));
        }
    }
    let (overhead, lag, (check_wall, check_requests)) = at_target;
    println!("\nat {TARGET_LATENCY_MS} ms: overhead {overhead:.2} s — target ≤ 3 s: {}", verdict(overhead <= 3.0));
    println!(
        "at {TARGET_LATENCY_MS} ms: waits seen done {lag:.2} s after CF finished them on average — target ≤ 0.3 s: {}",
        verdict(lag <= 0.3)
    );
    println!(
        "at {TARGET_LATENCY_MS} ms: check {check_requests} requests in {check_wall:.2} s — target ≤ 3 requests and \
         < 1 s: {}",
        verdict(check_requests <= 3 && check_wall < 1.0)
    );
}

/// `check` and `in` against a sim answering after `latency`: wall time, requests, round trips. Answers check's
/// wall time (seconds) and requests.
fn check_and_in_at_latency(sim: &Sim, version: &Value, latency: Duration) -> (f64, usize) {
    let measure = |name: &str, command: &mut Command, stdin: String| {
        sim.reset_request_log();
        let run = measure::run(command.env("NO_COLOR", "1"), &stdin);
        assert_eq!(run.exit_code, 0, "{name} failed: {}", run.stderr);
        let timed = critical_path::timed(&all_requests(sim), latency);
        let all: Vec<&Timed> = timed.iter().collect();
        println!("    {name:<5} {:.2} s; {}", run.wall.as_secs_f64(), requests_and_rounds(&all));
        (run.wall.as_secs_f64(), all.len())
    };
    let dir = tempfile::tempdir().unwrap();
    let check = measure(
        "check",
        &mut Command::new(env!("CARGO_BIN_EXE_check")),
        check_request(&source(sim, "myapp"), Some(version)),
    );
    measure(
        "in",
        Command::new(env!("CARGO_BIN_EXE_in")).arg(dir.path()),
        in_request(&source(sim, "myapp"), version, None),
    );
    check
}

/// Requests per second the side-by-side load sends (the proof suite's heavy mix).
const LOAD_RATE: u32 = 100;
/// How long the router takes to learn a route change in the side-by-side runs.
const PROPAGATION_MS: u64 = 1000;

/// One contender's row of the side-by-side table.
struct Race {
    contender: &'static str,
    latency_ms: u64,
    wall: f64,
    api_requests: usize,
    log_reads: usize,
    unanswered: usize,
    rounds: usize,
    failed: usize,
    sent: usize,
    left_behind: String,
}

fn article() {
    println!("\n== Side by side: out against the article's procedure with the cf CLI v8 ==");
    println!(
        "(the 10 MB app with new bits; staging {STAGING_MS} ms; route propagation {PROPAGATION_MS} ms; {LOAD_RATE} \
         requests/s to the production route, every 10th slow (1 s), every 3rd on a new connection)"
    );
    let mut races = Vec::new();
    for latency_ms in [0, TARGET_LATENCY_MS] {
        for contender in ["out", "cf CLI"] {
            races.push(race(contender, latency_ms));
        }
    }
    println!(
        "\n| contender | API latency | wall time | CC+UAA requests | Log Cache reads | round trips | failed user \
         requests | left behind |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|---|");
    for r in &races {
        let unanswered = match r.unanswered {
            0 => String::new(),
            n => format!(" ({n} answered 404: endpoints cf-sim lacks)"),
        };
        println!(
            "| {} | {} ms | {:.1} s | {}{unanswered} | {} | {} | {} of {} | {} |",
            r.contender, r.latency_ms, r.wall, r.api_requests, r.log_reads, r.rounds, r.failed, r.sent, r.left_behind
        );
    }
    for latency_ms in [0, TARGET_LATENCY_MS] {
        let [ours, theirs] = [0, 1].map(|i| races.iter().filter(|r| r.latency_ms == latency_ms).nth(i).unwrap());
        println!(
            "at {latency_ms} ms: out is faster than the cf CLI procedure ({:.1} s against {:.1} s): {}; out drops no \
             user request ({} failed): {}",
            ours.wall,
            theirs.wall,
            verdict(ours.wall < theirs.wall),
            ours.failed,
            verdict(ours.failed == 0)
        );
    }
}

/// Deploys the app once with `out`, then redeploys it with new bits by `contender` under load.
fn race(contender: &'static str, latency_ms: u64) -> Race {
    let sim = sim(|c| {
        c.staging_delay_ms = STAGING_MS;
        c.api_latency_ms = latency_ms;
        c.route_propagation_delay_ms = PROPAGATION_MS;
        c.stop_grace_ms = 5000;
    });
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let params = |version: &str| {
        json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "3s",
               "environment_variables": {"APP_VERSION": version}})
    };
    random_file(&put.path().join("app/assets.bin"), 9_000_000, 1);
    out(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    random_file(&put.path().join("app/assets.bin"), 9_000_000, 2);

    let host = format!("myapp.{}", sim.info().domain);
    let load = load::start(LoadConfig {
        max_requests: u64::from(LOAD_RATE) * 240,
        max_duration: Duration::from_secs(240),
        ..LoadConfig::heavy(&sim.info().router, &host, LOAD_RATE)
    });
    std::thread::sleep(Duration::from_secs(1));
    sim.reset_request_log();
    let deploy_started = load.elapsed();
    let started = Instant::now();
    if contender == "out" {
        out(&sim, &put, "myapp", params("v2"));
    } else {
        cf_cli_procedure(&sim, &put.path().join("app"));
    }
    let wall = started.elapsed().as_secs_f64();
    // Until every slow request sent during the deploy has answered, and the router has caught up.
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop().since(deploy_started);
    let records = all_requests(&sim);
    let timed = critical_path::timed(&records, Duration::from_millis(latency_ms));
    let all: Vec<&Timed> = timed.iter().collect();
    let log_reads = records.iter().filter(|r| r.listener == "log_cache").count();
    let race = Race {
        contender,
        latency_ms,
        wall,
        api_requests: records.len() - log_reads,
        log_reads,
        unanswered: records.iter().filter(|r| r.status == 404).count(),
        rounds: critical_path::rounds(&all),
        failed: report.failures().len(),
        sent: report.total(),
        left_behind: left_behind(&sim),
    };
    println!("{contender} at {latency_ms} ms: {wall:.1} s; {}; {}", requests_and_rounds(&all), report.describe());
    if race.failed > 0 {
        println!("{}", report.describe_failures());
    }
    race
}

/// The article's procedure, each command its own process: login, push the green app, map the production
/// route to it, unmap its own route and the old app's, swap the names, delete the old app with its routes.
fn cf_cli_procedure(sim: &Sim, app_dir: &Path) {
    let home = tempfile::tempdir().unwrap();
    let info = sim.info();
    let domain = info.domain.as_str();
    let app_dir = app_dir.to_str().unwrap();
    let commands: [&[&str]; 8] = [
        &["login", &info.api, &info.username, &info.password],
        &["push", "myapp-green", app_dir],
        &["map-route", "myapp-green", domain, "myapp"],
        &["unmap-route", "myapp-green", domain, "myapp-green"],
        &["unmap-route", "myapp", domain, "myapp"],
        &["rename", "myapp", "myapp-tmp"],
        &["rename", "myapp-green", "myapp"],
        &["delete", "myapp-tmp"],
    ];
    for args in commands {
        cf_cli::cf(home.path(), args);
    }
}

/// The apps (with their state) and the routes mapped to no app that a deploy leaves in the space.
fn left_behind(sim: &Sim) -> String {
    let state = sim.state_dump();
    let list = |key: &str| state[key].as_array().cloned().unwrap_or_default();
    let mut apps: Vec<String> =
        list("apps").iter().map(|a| format!("{} {}", a["name"].as_str().unwrap_or("?"), a["state"])).collect();
    apps.sort();
    let orphans: Vec<String> = list("routes")
        .iter()
        .filter(|r| r["destinations"].as_array().is_none_or(Vec::is_empty))
        .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    let orphans = if orphans.is_empty() { "none".to_owned() } else { orphans.join(", ") };
    format!("apps: {}; unmapped routes: {orphans}", apps.join(", ").replace('"', ""))
}
