//! What the proof matrices share: the seeded random source, the full/subset switch, a lock that keeps the heavy
//! tests of this binary from competing for the two cores, and a [`Lane`]: a cf-sim with `myapp` in production,
//! a probe load on its production route for as long as the lane lives, and the assertions every case ends with
//! (a clean outcome, the expected apps and routes and nothing else, not one failed probe).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cf_sim::{Sim, SimConfig};
use serde_json::{Value, json};

use crate::util::deploy::{
    BUILD_ENV, PutDir, app_named, assert_settled, journal_keys, manifest, wait_for, wait_until_serving,
};
use crate::util::sim::{out_request, source, start_sim_with};
use crate::util::summary;
use crate::util::{Background, LineHook, Run, run_resource, spawn_resource};
use cf_sim::load::{self, LoadConfig, LoadHandle, LoadReport};

/// `PROOF_FULL=1`: run every case of the slow matrices, not the seeded subset.
pub fn full() -> bool {
    std::env::var("PROOF_FULL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Heavy tests take this so that two of them never share the two cores (cargo runs a binary's tests in
/// parallel).
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small seeded random source (SplitMix64): the seed is printed, and `PROOF_SEED` replays a run.
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn seeded(what: &str) -> Rng {
        let seed = std::env::var("PROOF_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        });
        eprintln!("{what}: seed {seed} (PROOF_SEED={seed} replays it)");
        summary::record("seed", json!({"what": what, "seed": seed.to_string()}));
        Rng { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `count` distinct items of `items`, in their original order.
    pub fn sample<T: Clone>(&mut self, items: &[T], count: usize) -> Vec<T> {
        let mut indices: Vec<usize> = (0..items.len()).collect();
        for i in (1..indices.len()).rev() {
            indices.swap(i, self.below(i as u64 + 1) as usize);
        }
        let mut chosen: Vec<usize> = indices.into_iter().take(count).collect();
        chosen.sort_unstable();
        chosen.into_iter().map(|i| items[i].clone()).collect()
    }
}

/// 16 hex digits that differ from run to run (for secrets, not for anything that must replay).
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    format!("{:016x}", hasher.finish())
}

/// A hook for [`Lane::spawn_out`] that SIGKILLs `out` the moment it writes a stderr line matching `kill_on`, and
/// the flag saying whether it did.
pub fn kill_on(kill_on: impl Fn(&str) -> bool + Send + 'static) -> (LineHook, Arc<AtomicBool>) {
    let killed = Arc::new(AtomicBool::new(false));
    let flag = killed.clone();
    let hook = move |line: &str, pid: u32| {
        if kill_on(line) && !flag.swap(true, Ordering::SeqCst) {
            // SAFETY: kill(2) on our own child, which has not been waited for (its stderr is still open).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    };
    (Box::new(hook), killed)
}

/// Waits (at most 30 s) until `running` has written a stderr line satisfying `wanted`; fails the test, naming
/// `what`, if it exits first.
pub fn wait_for_line(running: &mut Background, what: &str, wanted: impl Fn(&str) -> bool) {
    wait_for(what, Duration::from_secs(30), || {
        let exited = running.exited();
        let seen = running.stderr().lines().any(&wanted);
        assert!(seen || !exited, "out ended before {what}:\n{}", running.stderr());
        seen.then_some(())
    });
}

/// How a run of a resource binary ended, once it is known to have ended cleanly.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded,
    /// The error line (without `error: `).
    Failed(String),
}

/// A run either succeeded (exit 0, one JSON document on stdout) or failed cleanly: exit 1, stdout empty, and
/// exactly one error line, the last, that is no internal error.
pub fn assert_clean_outcome(run: &Run, context: &str) -> Outcome {
    if run.status == 0 {
        let answer: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("{context}: exit 0 but stdout is not JSON ({e}): {:?}", run.stdout));
        assert!(answer["version"].is_object(), "{context}: no version in {answer}");
        return Outcome::Succeeded;
    }
    assert_eq!(run.status, 1, "{context}: exit status (1 for a failure); stderr:\n{}", run.stderr);
    assert_eq!(run.stdout, "", "{context}: stdout must stay empty on failure");
    let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{context}: exactly one error line; stderr:\n{}", run.stderr);
    let last = run.last_line();
    assert!(last.starts_with("error: "), "{context}: the error line must be the last; stderr:\n{}", run.stderr);
    for bad in ["internal error", "panicked", "RUST_BACKTRACE"] {
        assert!(!run.stderr.contains(bad), "{context}: {bad} in stderr:\n{}", run.stderr);
    }
    Outcome::Failed(last.trim_start_matches("error: ").to_owned())
}

/// How a lane's sim and deploys are set up.
#[derive(Clone, Debug)]
pub struct LaneConfig {
    pub instances: u32,
    pub propagation_ms: u64,
    /// The probe load's rate on the production route.
    pub probe_rate: u32,
    pub lock_lease: &'static str,
    pub drain: &'static str,
}

impl Default for LaneConfig {
    fn default() -> Self {
        LaneConfig { instances: 1, propagation_ms: 200, probe_rate: 20, lock_lease: "4s", drain: "400ms" }
    }
}

/// A cf-sim with `myapp` in production and a probe load on its route.
pub struct Lane {
    pub sim: Sim,
    pub put: PutDir,
    pub config: LaneConfig,
    pub load: Option<LoadHandle>,
    secret: String,
    versions: u32,
    /// How long the last successful deploy of this lane took.
    pub last_deploy: Duration,
}

pub const APP: &str = "myapp";

impl Lane {
    /// Starts the sim, deploys `v0` with `out` (over a first version), and starts the probe load once the
    /// router serves it.
    pub fn new(config: LaneConfig) -> Lane {
        let sim = start_sim_with(|c: &mut SimConfig| {
            c.route_propagation_delay_ms = config.propagation_ms;
            c.stop_grace_ms = 3000;
        });
        let put = PutDir::with_sample_app();
        put.write("ci/manifest.yml", &manifest(&sim, APP, config.instances, &[APP], &[]));
        let secret = format!("proof-secret-{}", random_hex());
        let mut lane = Lane { sim, put, config, load: None, secret, versions: 0, last_deploy: Duration::ZERO };
        // A first deploy, then an upgrade, so that production has a previous version as after any deploy.
        for version in ["v0-first", "v0"] {
            let started = Instant::now();
            let run = lane.out(version, &[]);
            assert_eq!(run.status, 0, "deploying {version} to start the lane: {}", run.stderr);
            lane.last_deploy = started.elapsed();
        }
        lane.wait_serving("v0");
        // Production may reach itself over the container network: every deploy carries the policy.
        let production = app_named(&lane.sim, APP).unwrap()["guid"].clone();
        let policy = json!({"policies": [{"source": {"id": production}, "destination": {"id": production,
            "protocol": "tcp", "ports": {"start": 8080, "end": 8080}}}]});
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cf = runtime.block_on(crate::util::sim::connect(&lane.sim));
        let _: Value = runtime.block_on(cf.post("/networking/v1/external/policies", &policy)).unwrap();
        // Production and its previous version may call the production route over mTLS (its domain enforces route
        // policies): every deploy carries production's route policy, and a version deleted takes its own along.
        let enforce = json!({"enforce_route_policies": true, "route_policies_scope": "any"});
        let domain = format!("/_sim/domains/{}", lane.sim.info().domain);
        let _: Value = runtime.block_on(cf.patch(&domain, &enforce)).unwrap();
        let route = lane.production_route();
        for app in [APP.to_owned(), format!("{APP}-previous")] {
            let source = format!("cf:app:{}", app_named(&lane.sim, &app).unwrap()["guid"].as_str().unwrap());
            let policy = json!({"source": source, "relationships": {"route": {"data": {"guid": route}}}});
            let _: Value = runtime.block_on(cf.post("/v3/route_policies", &policy)).unwrap();
        }
        let mut probe = LoadConfig::new(&lane.sim.info().router, &lane.host());
        probe.requests_per_second = lane.config.probe_rate;
        probe.slow_every = 10;
        probe.new_connection_every = 3;
        lane.load = Some(load::start(probe));
        lane
    }

    pub fn host(&self) -> String {
        format!("{APP}.{}", self.sim.info().domain)
    }

    /// The guid of the production route.
    fn production_route(&self) -> Value {
        let state = self.sim.state_dump();
        let route = state["routes"].as_array().unwrap().iter().find(|r| r["name"] == self.host()).cloned();
        route.expect("the production route")["guid"].clone()
    }

    /// A fresh version name, `<tag>-<n>`.
    pub fn next_version(&mut self, tag: &str) -> String {
        self.versions += 1;
        format!("{tag}-{}", self.versions)
    }

    /// The put params deploying `version` (its `APP_VERSION`), with a secret env value to look for in output.
    pub fn params(&self, version: &str) -> Value {
        json!({
            "path": "app",
            "manifest": "ci/manifest.yml",
            "environment_variables": {"APP_VERSION": version},
            "secret_environment_variables": {"PROOF_API_KEY": self.secret},
            "drain": self.config.drain,
            "lock_lease": self.config.lock_lease,
            "lock_timeout": "2m",
        })
    }

    fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        // Retries wait milliseconds instead of seconds (the budget of tries is the production one).
        let mut env: Vec<(&str, &str)> = BUILD_ENV.to_vec();
        env.push(("CF_BG_RETRY_DELAY", "20ms"));
        env.extend_from_slice(extra);
        env
    }

    pub fn request(&self, params: Value) -> String {
        out_request(&source(&self.sim, APP), Some(params))
    }

    /// Runs `out` deploying `version`.
    pub fn out(&self, version: &str, env: &[(&str, &str)]) -> Run {
        self.out_with(self.params(version), env)
    }

    pub fn out_with(&self, params: Value, env: &[(&str, &str)]) -> Run {
        run_resource("out", &[self.put.path().to_str().unwrap()], &self.request(params), &Self::env(env))
    }

    /// Starts `out` deploying `version` without waiting for it; `on_line` sees its stderr lines.
    pub fn spawn_out(&self, version: &str, env: &[(&str, &str)], on_line: Option<LineHook>) -> Background {
        self.spawn_out_with(self.params(version), env, on_line)
    }

    /// [`spawn_out`](Self::spawn_out) with these `params`.
    pub fn spawn_out_with(&self, params: Value, env: &[(&str, &str)], on_line: Option<LineHook>) -> Background {
        spawn_resource("out", &[self.put.path().to_str().unwrap()], &self.request(params), &Self::env(env), on_line)
    }

    /// How long any one put may take here before the test gives up on it.
    pub const PUT_LIMIT: Duration = Duration::from_secs(180);

    /// Runs `out` with `params` and asserts it succeeds.
    pub fn deploy_with(&mut self, params: Value) -> Value {
        let started = Instant::now();
        let run = self.out_with(params, &[]);
        if let Outcome::Failed(line) = assert_clean_outcome(&run, "a deploy") {
            panic!("the deploy failed: {line}\n{}", run.stderr);
        }
        self.last_deploy = started.elapsed();
        serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone()
    }

    /// Waits (bounded) until the router serves `version` on the production route.
    pub fn wait_serving(&self, version: &str) {
        wait_until_serving(&self.sim, APP, version);
    }

    /// A point in the probe's timeline.
    pub fn mark(&self) -> Duration {
        self.load.as_ref().map(LoadHandle::elapsed).unwrap_or_default()
    }

    /// The probe requests sent since `mark` that have answered (the rest are checked when the lane finishes).
    pub fn probe_since(&self, mark: Duration) -> LoadReport {
        let Some(load) = &self.load else { return LoadReport::default() };
        load.report_so_far().since(mark)
    }

    /// Not one probe request failed since `mark`.
    pub fn assert_served_since(&self, mark: Duration, context: &str) -> LoadReport {
        let report = self.probe_since(mark);
        assert!(
            report.failures().is_empty(),
            "{context}: production failed {} of {} probe requests:\n{}",
            report.failures().len(),
            report.total(),
            report.describe_failures()
        );
        report
    }

    /// Exactly `myapp` (started, serving `version` on its one route) and `myapp-previous` (stopped) exist;
    /// the production route is the only route and reaches only `myapp`; no app carries a deploy journal.
    pub fn assert_settled(&self, version: &str, context: &str) {
        self.assert_only_production(context);
        let state = self.sim.state_dump();
        let production = state["apps"].as_array().unwrap().iter().find(|a| a["name"] == APP).unwrap();
        assert_eq!(
            production["environment_variables"]["APP_VERSION"],
            json!(version),
            "{context}: production runs the version deployed last"
        );
        let own = json!({"source": production["guid"], "destination": production["guid"], "protocol": "tcp",
            "ports": [8080, 8080]});
        let policies = state["network_policies"].as_array().unwrap();
        assert!(policies.contains(&own), "{context}: production keeps its network policy: {policies:?}");
        let route = self.production_route();
        let mut routed: Vec<Value> =
            state["route_policies"].as_array().unwrap().iter().map(|p| json!([p["source"], p["route"]])).collect();
        routed.sort_by_key(Value::to_string);
        let mut kept: Vec<Value> = [APP.to_owned(), format!("{APP}-previous")]
            .iter()
            .map(|name| app_named(&self.sim, name).unwrap()["guid"].as_str().unwrap().to_owned())
            .map(|guid| json!([format!("cf:app:{guid}"), route]))
            .collect();
        kept.sort_by_key(Value::to_string);
        assert_eq!(
            routed, kept,
            "{context}: production and its previous version keep their route policies, no other app has one"
        );
        self.wait_serving(version);
    }

    /// `myapp` (started) and `myapp-previous` (stopped) and nothing else; only the production route, to
    /// `myapp` only; no deploy journal or candidate label left on any app.
    pub fn assert_only_production(&self, context: &str) {
        self.check_only_production(context, false);
    }

    /// Like [`Lane::assert_only_production`], except that `myapp` may carry deploy journal keys that a journal
    /// write processed after its client gave up on it put there once the deploy had finished (they are never
    /// read on production, and the next deploy clears them). Returns whether it does.
    pub fn assert_only_production_but_late_journal(&self, context: &str) -> bool {
        self.check_only_production(context, true)
    }

    fn check_only_production(&self, context: &str, late_journal_on_production: bool) -> bool {
        assert_settled(&self.sim, APP, late_journal_on_production, context);
        late_journal_on_production && app_named(&self.sim, APP).is_some_and(|app| !journal_keys(&app).is_empty())
    }

    /// Stops the probe and returns everything it saw.
    pub fn finish(mut self) -> LoadReport {
        self.load.take().map(LoadHandle::stop).unwrap_or_default()
    }
}

/// Runs `cases` on `lanes` lanes in parallel (case i on lane i mod lanes), each lane in its own thread with
/// its own sim and probe. A failing case is recorded (in the proof summary as `failed_case`) and its lane
/// replaced by a fresh one (whatever the
/// failure left behind must not fail the next case); at the end every failure is reported at once, and every
/// probe request of every lane must have succeeded.
pub fn run_on_lanes<C: Sync + std::fmt::Debug>(
    what: &str,
    failed_case: (&str, Value),
    cases: &[C],
    lanes: usize,
    first: Option<Lane>,
    run: impl Fn(&mut Lane, &C) -> String + Sync,
) {
    let started = Instant::now();
    // Every lane is set up as the first one given, so each case runs against the same kind of production.
    let config = first.as_ref().map(|lane| lane.config.clone()).unwrap_or_default();
    let mut first = first;
    let results: Vec<(usize, Vec<String>, LoadReport)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..lanes)
            .map(|n| {
                let mine: Vec<&C> = cases.iter().skip(n).step_by(lanes).collect();
                let given = if n == 0 { first.take() } else { None };
                let (run, failed_case, config) = (&run, &failed_case, &config);
                scope.spawn(move || {
                    let mut lane = given.unwrap_or_else(|| Lane::new(config.clone()));
                    let mut failed = Vec::new();
                    for case in &mine {
                        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut lane, case))) {
                            Ok(line) => eprintln!("[{what} lane {n}] {line}"),
                            Err(panic) => {
                                let message = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                    .unwrap_or_default();
                                eprintln!("[{what} lane {n}] FAILED {case:?}: {message}");
                                let (kind, mut fields) = failed_case.clone();
                                fields["case"] = json!(format!("{case:?}"));
                                summary::record(kind, fields);
                                failed.push(format!("{case:?}: {message}"));
                                lane.finish();
                                lane = Lane::new(LaneConfig::default());
                            }
                        }
                    }
                    (mine.len(), failed, lane.finish())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    let mut failures = Vec::new();
    for (n, (count, failed, report)) in results.into_iter().enumerate() {
        eprintln!("{what} lane {n}: {count} cases, {} failed; probe: {}", failed.len(), report.describe());
        failures.extend(failed);
        summary::record(
            "zero-downtime",
            json!({"test": format!("{what} probe"), "requests": report.total(), "failed": report.failures().len()}),
        );
        assert!(report.failures().is_empty(), "{what} lane {n}: probe failures:\n{}", report.describe_failures());
    }
    eprintln!("{what}: {} cases on {lanes} lane(s) in {:.0}s", cases.len(), started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} {what} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
