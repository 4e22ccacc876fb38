//! The safety features of `out` end to end, with the real binary against cf-sim: the lock's time limit naming
//! its holder, recovery after a put was SIGKILLed where the proof suite's kill matrix does not look (two puts
//! finding the same dead lock, a swap half done, a housekeeping rename landing late, a killed rollback),
//! one-step rollback, the KPI gate before
//! the swap, the watch after it, the dry run, and a `<app>-green` this resource did not make. Production
//! serves every request of a load loop wherever a deploy promises it. Also what Concourse users rely on: every
//! swap a new version, an older build's put named as such, and an aborted build (SIGTERM) cleaning up after
//! itself so that the next put need not wait for a lease.

use std::time::{Duration, Instant, SystemTime};

use crate::util::deploy::{
    BUILD_ENV, PutDir, annotation, app_named, apps, build_url, deploy, logged, manifest, out, out_as,
    route_destinations, routes, sample_params, spawn_out, wait_for, wait_until_serving,
};
use crate::util::sim::{
    assert_no_failures, check_request, connect, destination_changes, home_space, in_request, out_request, source,
    start_load, start_sim_with,
};
use crate::util::{self, Run, run_resource};
use cf_blue_green_resource::cf::CfClient;
use cf_blue_green_resource::cf::apps::NewApp;
use cf_blue_green_resource::protocol::BuildEnv;
use cf_blue_green_resource::record::candidate_metadata;
use cf_blue_green_resource::record::journal::{DEPLOY_ID, PHASE};
use cf_blue_green_resource::record::{Journal, Phase};
use cf_sim::{Fault, FaultAction, RequestRecord, Sim};
use serde_json::{Value, json};

const DRAIN: &str = "1500ms";
/// The longest one put may take here.
const PUT_LIMIT: Duration = Duration::from_secs(120);

/// A sim whose router learns route changes 300 ms late, as real routers do.
fn sim() -> Sim {
    start_sim_with(|c| {
        c.route_propagation_delay_ms = 300;
        c.stop_grace_ms = 3000;
    })
}

/// Put params deploying the sample app as `version`, with a short lease (a killed put's lock is taken over
/// after 3 s) and a drain just long enough for the router to learn of a swap and the load's 1 s requests to
/// finish.
fn params(version: &str) -> Value {
    sample_params(version, DRAIN, json!({"lock_lease": "3s"}))
}

fn with_env(mut params: Value, name: &str, value: &str) -> Value {
    params["environment_variables"][name] = json!(value);
    params
}

/// A sim with `myapp` v1 in production (one instance, route `myapp.<domain>`).
fn production_v1() -> (Sim, PutDir, Value) {
    let sim = sim();
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let v1 = deploy(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    (sim, put, v1)
}

fn guid(version: &Value) -> String {
    version["app_guid"].as_str().unwrap().to_owned()
}

/// A version's app and droplet, without the deploy that made them production.
fn pair(version: &Value) -> (&Value, &Value) {
    (&version["app_guid"], &version["droplet_guid"])
}

fn run_async<T>(work: impl AsyncFnOnce(CfClient) -> T, sim: &Sim) -> T {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(sim).await;
        work(cf).await
    })
}

/// Production is `production`, the version before it is kept stopped as `myapp-previous`, and nothing else is
/// left (see [`util::deploy::assert_settled`]).
fn assert_settled(sim: &Sim, production: &Value, previous: &str) {
    let settled = util::deploy::assert_settled(sim, "myapp", false, "after the deploys");
    assert_eq!((settled.production, settled.previous.as_str()), (guid(production), previous), "the apps left");
}

fn timestamp(record: &RequestRecord) -> SystemTime {
    humantime::parse_rfc3339(&record.timestamp).unwrap()
}

// ---------------------------------------------------------------------------------------------------------
// The lock

#[test]
fn a_put_gives_up_after_its_lock_timeout_naming_the_holder() {
    let (sim, put, v1) = production_v1();
    // Build 10 holds the lock for a while: a lease long enough that a busy machine never makes it look dead,
    // and a long drain.
    let mut slow = params("v2");
    slow["lock_lease"] = json!("8s");
    slow["drain"] = json!("5s");
    let ten = spawn_out(&sim, &put, "myapp", slow, "10");
    wait_for("build 10 to hold the lock", PUT_LIMIT, || {
        app_named(&sim, "myapp-green").filter(|g| annotation(g, DEPLOY_ID) == Some(&build_url("10")))
    });
    // With the default lease of 2 minutes the lock is polled every 5 s; the timeout still holds.
    let mut impatient = params("v3");
    impatient.as_object_mut().unwrap().remove("lock_lease");
    impatient["lock_timeout"] = json!("2s");
    let started = Instant::now();
    let eleven = out_as(&sim, &put, "myapp", impatient, "11");
    let waited = started.elapsed();
    eleven.assert_clean_failure(&format!(
        "waiting for the deploy lock on myapp-green, held by main/shop/deploy #10 ({})",
        build_url("10")
    ));
    assert!(eleven.last_line().contains("timed out after 2"), "{}", eleven.last_line());
    assert!(waited < Duration::from_secs(5), "lock_timeout 2s is kept (gave up after {waited:?})");
    let ten = logged("out build 10", ten.wait(PUT_LIMIT));
    assert_eq!(ten.status, 0, "{}", ten.last_line());
    let v2: Value = serde_json::from_str::<Value>(&ten.stdout).unwrap()["version"].clone();
    wait_until_serving(&sim, "myapp", "v2");
    assert_settled(&sim, &v2, &guid(&v1));
}

#[test]
fn a_green_app_made_by_hand_is_refused_and_left_alone() {
    let (sim, put, _v1) = production_v1();
    let green = run_async(
        async |cf| {
            let space = home_space(&cf, &sim).await;
            let app = NewApp { name: "myapp-green".into(), space_guid: space.guid, ..NewApp::default() };
            cf.apps().create(&app).await.unwrap()
        },
        &sim,
    );
    let before = sim.state_dump();
    let run = out(&sim, &put, "myapp", params("v2"));
    run.assert_clean_failure(
        "myapp-green exists but was not created by this resource (it has no deploy journal); rename or delete it",
    );
    let dry = out(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml", "dry_run": true}));
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(
        dry.stderr.contains("myapp-green exists without a deploy journal: a real deploy would refuse to touch it"),
        "{}",
        dry.stderr
    );
    assert_eq!(sim.state_dump(), before, "nothing changed");
    assert_eq!(app_named(&sim, "myapp-green").unwrap()["guid"], json!(green.guid));
}

// ---------------------------------------------------------------------------------------------------------
// Recovery after a put was killed

/// Starts a put as build `build` and SIGKILLs it once its candidate's journal says `phase` and `ready` (given
/// the sim and the candidate) agrees. Returns the candidate as it was.
fn kill_in(
    sim: &Sim,
    put: &PutDir,
    params: Value,
    build: &str,
    phase: &str,
    mut ready: impl FnMut(&Sim, &Value) -> bool,
) -> Value {
    let mut running = spawn_out(sim, put, "myapp", params, build);
    let candidate = wait_for(&format!("build {build} to reach phase {phase}"), PUT_LIMIT, || {
        assert!(!running.exited(), "build {build} ended before phase {phase}:\n{}", running.stderr());
        app_named(sim, "myapp-green")
            .filter(|g| annotation(g, DEPLOY_ID) == Some(&build_url(build)) && annotation(g, PHASE) == Some(phase))
            .filter(|g| ready(sim, g))
    });
    logged(&format!("out build {build}, killed in phase {phase}"), running.kill());
    candidate
}

/// The next put (build `build`) takes over the dead put's lock, recovers as `action` says, and deploys.
fn recover_and_deploy(sim: &Sim, put: &PutDir, params: Value, build: &str, phase: &str, action: &str) -> Value {
    let run = out_as(sim, put, "myapp", params, build);
    assert_eq!(run.status, 0, "{}", run.last_line());
    let died = format!("that deploy died; recovering from its {phase} phase");
    assert!(run.stderr.contains(&died), "the log says {died:?}:\n{}", run.stderr);
    assert!(run.stderr.contains(&format!("recovery: {action}")), "the log says what recovery did:\n{}", run.stderr);
    assert!(run.stderr.contains("recovered: the foundation is consistent again"), "{}", run.stderr);
    serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone()
}

fn state_of(sim: &Sim, guid: &str) -> Option<String> {
    sim.state_dump()["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["guid"] == guid)
        .map(|a| a["state"].as_str().unwrap().to_owned())
}

#[test]
fn of_two_puts_waiting_on_a_dead_lock_only_one_recovers_it_then_both_deploy_in_turn() {
    let (sim, put, _v1) = production_v1();
    let load = start_load(&sim);
    put.script("ci/slow-smoke.sh", "sleep 5");
    let mut smoked = params("v2");
    smoked["smoke_test"] = json!({"path": "ci/slow-smoke.sh"});
    kill_in(&sim, &put, smoked, "8", "verifying", |_, _| true);
    // Both look after the dead deploy's 3 s lease has run out, so both find it stale at once.
    std::thread::sleep(Duration::from_secs(4));
    let nine = spawn_out(&sim, &put, "myapp", params("v3"), "9");
    let ten = spawn_out(&sim, &put, "myapp", params("v4"), "10");
    let runs = [logged("out build 9", nine.wait(PUT_LIMIT)), logged("out build 10", ten.wait(PUT_LIMIT))];
    for run in &runs {
        assert_eq!(run.status, 0, "{}", run.last_line());
    }
    let recovered: Vec<&Run> =
        runs.iter().filter(|r| r.stderr.contains("recovered: the foundation is consistent again")).collect();
    assert_eq!(recovered.len(), 1, "exactly one of the two recovers the dead deploy");
    let recoveries = runs.iter().map(|r| r.stderr.matches("recovery: ").count()).sum::<usize>();
    assert_eq!(recoveries, 1, "the other never starts a recovery of its own");

    let report = load.stop();
    assert_no_failures(&report);
    let last = report.versions().last().cloned().unwrap();
    assert!(last == "v3" || last == "v4", "{:?}", report.versions());
    let production: Value = runs
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.stdout).unwrap()["version"].clone())
        .find(|v| app_named(&sim, "myapp").is_some_and(|a| a["guid"] == v["app_guid"]))
        .expect("one of the two is production");
    let previous = app_named(&sim, "myapp-previous").unwrap()["guid"].as_str().unwrap().to_owned();
    assert_settled(&sim, &production, &previous);
}

#[test]
fn a_put_killed_mid_swap_is_finished_or_given_back_by_the_next_one() {
    let (sim, put, v1) = production_v1();
    let load = start_load(&sim);
    // Unmapping the old version hangs, so the put is killed with both versions on the production route.
    let hang_unmap = || {
        sim.add_fault(Fault {
            method: Some("DELETE".into()),
            path: "/v3/routes/*/destinations/*".into(),
            nth: 1,
            times: 1,
            action: FaultAction::Delay { ms: 60_000 },
        })
    };
    let on_production_route = |sim: &Sim, green: &Value| {
        let domain = &sim.info().domain;
        route_destinations(sim).iter().any(|(route, apps)| {
            *route == format!("myapp.{domain}") && apps.contains(&green["guid"].as_str().unwrap().to_owned())
        })
    };

    // Verified and healthy: recovery finishes the swap, drains the old version, then housekeeping.
    let fault = hang_unmap();
    let green = kill_in(&sim, &put, params("v2"), "8", "swapping", on_production_route);
    sim.remove_fault(fault);
    sim.reset_request_log();
    let v3 = recover_and_deploy(
        &sim,
        &put,
        params("v3"),
        "9",
        "swapping",
        "finish moving production to the verified, healthy candidate, then the housekeeping",
    );
    wait_until_serving(&sim, "myapp", "v3");
    assert_settled(&sim, &v3, green["guid"].as_str().unwrap());
    let log = sim.request_log();
    let unmapped = log
        .iter()
        .find(|r| r.method == "DELETE" && r.path.contains("/destinations/") && r.status < 300)
        .expect("recovery unmapped v1");
    let stopped = log
        .iter()
        .find(|r| r.method == "POST" && r.path == format!("/v3/apps/{}/actions/stop", guid(&v1)))
        .expect("recovery stopped v1");
    let drained = timestamp(stopped).duration_since(timestamp(unmapped)).unwrap_or_default();
    assert!(drained >= Duration::from_millis(1450), "v1 was stopped {drained:?} after it was unmapped (drain {DRAIN})");

    // Not healthy any more (stopped by hand after the put died): recovery gives production back.
    let fault = hang_unmap();
    let green = kill_in(&sim, &put, params("v4"), "10", "swapping", on_production_route);
    sim.remove_fault(fault);
    let green_guid = green["guid"].as_str().unwrap().to_owned();
    run_async(async |cf| cf.apps().stop(&green_guid).await.unwrap(), &sim);
    sim.reset_request_log();
    let v5 = recover_and_deploy(
        &sim,
        &put,
        params("v5"),
        "11",
        "swapping",
        "give every production route back to the previous version and remove the candidate",
    );
    wait_until_serving(&sim, "myapp", "v5");
    assert_settled(&sim, &v5, &guid(&v3));
    assert_eq!(state_of(&sim, &green_guid), None, "the candidate that was given back is deleted");
    let log = sim.request_log();
    let unmapped = log
        .iter()
        .find(|r| r.method == "DELETE" && r.path.contains("/destinations/") && r.status < 300)
        .expect("recovery unmapped the candidate");
    let deleted = log
        .iter()
        .find(|r| r.method == "DELETE" && r.path == format!("/v3/apps/{green_guid}"))
        .expect("recovery deleted the candidate");
    let drained = timestamp(deleted).duration_since(timestamp(unmapped)).unwrap_or_default();
    assert!(drained >= Duration::from_millis(1450), "the candidate was deleted {drained:?} after it was unmapped");

    let report = load.stop();
    assert_no_failures(&report);
    assert_eq!(report.versions().first().map(String::as_str), Some("v1"));
    assert_eq!(report.samples.iter().max_by_key(|s| s.sent_at).unwrap().outcome.as_deref(), Ok("v5"));
}

#[test]
fn a_put_killed_after_the_swap_is_finished_by_the_next_one() {
    let (sim, put, _v1) = production_v1();
    let load = start_load(&sim);

    // Killed while draining the old version: production already runs the candidate.
    let mut draining = params("v2");
    draining["drain"] = json!("30s");
    let v2_green = kill_in(&sim, &put, draining, "8", "swapped", |_, _| true);
    let v3 = recover_and_deploy(
        &sim,
        &put,
        params("v3"),
        "9",
        "swapped",
        "finish the housekeeping: production already runs on the candidate",
    );
    wait_until_serving(&sim, "myapp", "v3");
    assert_settled(&sim, &v3, v2_green["guid"].as_str().unwrap());

    // Killed in housekeeping while renaming the old version, and that rename lands after all: no app is
    // called myapp for a while.
    let fault = sim.add_fault(Fault {
        method: Some("PATCH".into()),
        path: format!("/v3/apps/{}", guid(&v3)),
        nth: 1,
        times: 1,
        action: FaultAction::Delay { ms: 60_000 },
    });
    let v4_green = kill_in(&sim, &put, params("v4"), "10", "housekeeping", |sim, _| {
        state_of(sim, &guid(&v3)).as_deref() == Some("STOPPED")
            && state_of(sim, v2_green["guid"].as_str().unwrap()).is_none()
    });
    sim.remove_fault(fault);
    let v3_guid = guid(&v3);
    run_async(async |cf| cf.apps().rename(&v3_guid, "myapp-previous").await.unwrap(), &sim);
    assert!(app_named(&sim, "myapp").is_none());

    // check reports the candidate that was swapped in, never a missing app.
    let check = run_resource("check", &[], &check_request(&source(&sim, "myapp"), None), &[]);
    let reported: Value = serde_json::from_str(&check.stdout).unwrap_or_else(|_| panic!("{}", check.stderr));
    assert_eq!(reported[0]["app_guid"], v4_green["guid"], "{}", check.stderr);

    let v5 = recover_and_deploy(
        &sim,
        &put,
        params("v5"),
        "11",
        "housekeeping",
        "finish the housekeeping: production already runs on the candidate",
    );
    wait_until_serving(&sim, "myapp", "v5");
    assert_settled(&sim, &v5, v4_green["guid"].as_str().unwrap());

    let report = load.stop();
    assert_no_failures(&report);
    assert_eq!(report.versions(), ["v1", "v2", "v3", "v4", "v5"]);
}

// ---------------------------------------------------------------------------------------------------------
// Versions, order and aborted builds

/// Runs `in` for `version` and returns its log (asserting success).
fn fetch(sim: &Sim, version: &Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let run =
        run_resource("in", &[dir.path().to_str().unwrap()], &in_request(&source(sim, "myapp"), version, None), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    run.stderr
}

#[test]
fn every_swap_is_a_version_concourse_has_not_seen_and_in_warns_once_it_is_replaced() {
    let (sim, put, v1) = production_v1();
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    assert!(v2["deploy_id"].is_string() && v2["deployed_at"].is_string(), "{v2}");

    // A rollback in the deploy job's on_failure hook, where Concourse sets BUILD_STATUS.
    let env = [BUILD_ENV, &[("BUILD_STATUS", "failed")]].concat();
    let request = out_request(&source(&sim, "myapp"), Some(json!({"rollback": true, "drain": "0s"})));
    let run = logged("rollback", run_resource("out", &[put.path().to_str().unwrap()], &request, &env));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(
        run.stderr.contains("rolling back because job 'deploy' build 7 failed (BUILD_STATUS=failed)"),
        "{}",
        run.stderr
    );
    let back: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone();
    assert_eq!(pair(&back), pair(&v1), "production runs v1's app and droplet again");
    assert_ne!(back, v1, "but as a version Concourse has not seen, so that it becomes the latest");

    let checked = run_resource("check", &[], &check_request(&source(&sim, "myapp"), Some(&v2)), &[]);
    assert_eq!(serde_json::from_str::<Value>(&checked.stdout).unwrap(), json!([back]), "{}", checked.stderr);

    assert!(!fetch(&sim, &back).contains("no longer production"));
    let log = fetch(&sim, &v1);
    assert!(log.contains("is no longer production: 'myapp' has been deployed again since, at "), "{log}");
    let log = fetch(&sim, &v2);
    assert!(log.contains("is no longer production: its app is now 'myapp-previous'"), "{log}");
}

#[test]
fn a_put_of_an_older_build_of_the_job_says_so_and_deploys() {
    let (sim, put, _) = production_v1();
    let newer = out_as(&sim, &put, "myapp", params("v2"), "9");
    assert_eq!(newer.status, 0, "{}", newer.last_line());
    let older = out_as(&sim, &put, "myapp", params("v3"), "8");
    assert_eq!(older.status, 0, "a warning, not a refusal: {}", older.last_line());
    assert!(
        older.stderr.contains("production runs build 9 of this job, newer than this build 8: this put replaces it"),
        "{}",
        older.stderr
    );
    wait_until_serving(&sim, "myapp", "v3");
    let later = out_as(&sim, &put, "myapp", params("v4"), "10");
    assert_eq!(later.status, 0, "{}", later.last_line());
    assert!(!later.stderr.contains("newer than this build"), "{}", later.stderr);
}

/// Concourse aborts a build by sending its running step SIGTERM, and SIGKILL 10 s later.
const ABORT_GRACE: Duration = Duration::from_secs(10);

#[test]
fn an_aborted_put_cleans_up_before_it_is_killed_so_the_next_put_does_not_wait() {
    let (sim, put, v1) = production_v1();
    // Long leases: a lock left behind would hold the next put for minutes, past its lock_timeout.
    let with_lease = |mut params: Value| {
        params["lock_lease"] = json!("5m");
        params["lock_timeout"] = json!("5s");
        params
    };

    // Before the swap (the smoke test runs): the candidate goes and the lock is released at once.
    put.script("ci/slow-smoke-test.sh", "exec sleep 60");
    let mut slow = with_lease(params("v2"));
    slow["smoke_test"] = json!({"path": "ci/slow-smoke-test.sh"});
    let aborted = spawn_out(&sim, &put, "myapp", slow, "8");
    wait_for("build 8 to verify its candidate", PUT_LIMIT, || {
        app_named(&sim, "myapp-green").filter(|green| annotation(green, PHASE) == Some("verifying"))
    });
    // A put waiting for the lock meanwhile stops waiting at once, and leaves the holder alone.
    let mut patient = params("v2");
    patient["lock_timeout"] = json!("2m");
    let waiting = spawn_out(&sim, &put, "myapp", patient, "7");
    wait_for("build 7 to wait for the lock", PUT_LIMIT, || {
        waiting.stderr().contains("waiting for the deploy lock").then_some(())
    });
    waiting.terminate();
    let run = logged("out build 7, aborted while waiting", waiting.wait(ABORT_GRACE));
    run.assert_clean_failure("the build was aborted (SIGTERM)");
    assert_eq!(annotation(&app_named(&sim, "myapp-green").unwrap(), DEPLOY_ID), Some(build_url("8").as_str()));
    aborted.terminate();
    let run = logged("out build 8, aborted", aborted.wait(ABORT_GRACE));
    assert!(run.stderr.contains("SIGTERM: the build was aborted"), "{}", run.stderr);
    run.assert_clean_failure("the build was aborted (SIGTERM)");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone, the lock free");
    assert_eq!(routes(&sim), [format!("myapp.{}", sim.info().domain)], "no temporary route is left");

    // After the swap (the old version drains): the drain is cut short and the housekeeping finished.
    let mut long_drain = with_lease(params("v2"));
    long_drain["drain"] = json!("60s");
    let aborted = spawn_out(&sim, &put, "myapp", long_drain, "9");
    wait_for("build 9 to drain", PUT_LIMIT, || {
        app_named(&sim, "myapp-green").filter(|green| annotation(green, PHASE) == Some("swapped"))
    });
    let sent = Instant::now();
    aborted.terminate();
    let run = logged("out build 9, aborted while draining", aborted.wait(ABORT_GRACE));
    assert!(sent.elapsed() < ABORT_GRACE, "done {:?} after SIGTERM", sent.elapsed());
    assert_eq!(run.status, 0, "the swap was done: the put finishes it ({})", run.last_line());
    assert!(run.stderr.contains("SIGTERM: the drain is cut short, to clean up before"), "{}", run.stderr);
    let v2: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone();
    wait_until_serving(&sim, "myapp", "v2");
    assert_settled(&sim, &v2, &guid(&v1));

    // During the swap (unmapping the old version answers 3 s late): the swap is finished, then the housekeeping.
    let slow_unmap = sim.add_fault(Fault {
        method: Some("DELETE".into()),
        path: "/v3/routes/*/destinations/*".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Delay { ms: 3000 },
    });
    let mut long_drain = with_lease(params("v3"));
    long_drain["drain"] = json!("60s");
    let aborted = spawn_out(&sim, &put, "myapp", long_drain, "10");
    wait_for("build 10 to swap", PUT_LIMIT, || {
        app_named(&sim, "myapp-green").filter(|green| annotation(green, PHASE) == Some("swapping"))
    });
    let sent = Instant::now();
    aborted.terminate();
    let run = logged("out build 10, aborted while swapping", aborted.wait(ABORT_GRACE));
    sim.remove_fault(slow_unmap);
    assert!(sent.elapsed() < ABORT_GRACE, "done {:?} after SIGTERM", sent.elapsed());
    assert_eq!(run.status, 0, "the swap had begun: the put finishes it ({})", run.last_line());
    let v3: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone();
    wait_until_serving(&sim, "myapp", "v3");
    assert_settled(&sim, &v3, &guid(&v2));

    let next = out_as(&sim, &put, "myapp", with_lease(params("v4")), "11");
    assert_eq!(next.status, 0, "{}", next.last_line());
    assert!(!next.stderr.contains("waiting for the deploy lock"), "{}", next.stderr);
}

#[test]
fn an_aborted_put_giving_production_back_cuts_the_drain_and_releases_the_lock() {
    let (sim, put, v1) = production_v1();
    // Mapping the production route to the candidate is refused: the put gives production back, then lets the
    // candidate drain for a minute before removing it; an abort cuts that short.
    let refuse_mapping = sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v3/routes/*/destinations".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Status {
            status: 422,
            code: Some(10008),
            title: Some("CF-UnprocessableEntity".into()),
            detail: Some("refused for the test".into()),
        },
    });
    let mut long_drain = params("v2");
    long_drain["drain"] = json!("60s");
    long_drain["lock_lease"] = json!("5m");
    let failing = spawn_out(&sim, &put, "myapp", long_drain, "8");
    wait_for("build 8 to give production back", PUT_LIMIT, || {
        failing.stderr().contains("production is back on myapp").then_some(())
    });
    sim.remove_fault(refuse_mapping);
    let sent = Instant::now();
    failing.terminate();
    let run = logged("out build 8, aborted while giving back", failing.wait(ABORT_GRACE));
    assert!(sent.elapsed() < ABORT_GRACE, "done {:?} after SIGTERM", sent.elapsed());
    run.assert_clean_failure("deploy failed in phase swap");
    assert!(run.stderr.contains("SIGTERM: the drain is cut short"), "{}", run.stderr);
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone, the lock free");
    assert_eq!(route_destinations(&sim), [(format!("myapp.{}", sim.info().domain), vec![guid(&v1)])]);

    let mut next = params("v2");
    next["lock_timeout"] = json!("5s");
    let next = out_as(&sim, &put, "myapp", next, "9");
    assert_eq!(next.status, 0, "{}", next.last_line());
    assert!(!next.stderr.contains("waiting for the deploy lock"), "{}", next.stderr);
}

// ---------------------------------------------------------------------------------------------------------
// Rollback

#[test]
fn rollback_brings_the_previous_version_back_in_seconds_and_again_rolls_forward() {
    let (sim, put, v1) = production_v1();
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    let load = start_load(&sim);

    let started = Instant::now();
    let back = deploy(&sim, &put, "myapp", json!({"rollback": true, "drain": DRAIN}));
    let took = started.elapsed();
    assert_eq!(pair(&back), pair(&v1), "production is v1's app and droplet again");
    assert!(took < Duration::from_secs(20), "a rollback takes seconds, not a deploy ({took:?})");
    wait_until_serving(&sim, "myapp", "v1");
    assert_settled(&sim, &v1, &guid(&v2));

    let forward = deploy(&sim, &put, "myapp", json!({"rollback": true, "drain": DRAIN}));
    assert_eq!(pair(&forward), pair(&v2), "a second rollback rolls forward");
    wait_until_serving(&sim, "myapp", "v2");
    assert_settled(&sim, &v2, &guid(&v1));

    // A rollback started while a deploy of v3 runs waits for it, then rolls back from v3 to v2 (the
    // myapp-previous it saw first, v1, is deleted by that deploy's housekeeping).
    let mut v3_params = params("v3");
    v3_params["drain"] = json!("3s");
    let deploying = spawn_out(&sim, &put, "myapp", v3_params, "8");
    wait_for("build 8 to hold the lock", PUT_LIMIT, || {
        app_named(&sim, "myapp-green").filter(|g| annotation(g, DEPLOY_ID) == Some(&build_url("8")))
    });
    let rollback = out_as(&sim, &put, "myapp", json!({"rollback": true, "drain": DRAIN}), "9");
    let deployed = logged("out build 8", deploying.wait(PUT_LIMIT));
    assert_eq!(deployed.status, 0, "{}", deployed.last_line());
    let v3: Value = serde_json::from_str::<Value>(&deployed.stdout).unwrap()["version"].clone();
    assert_eq!(rollback.status, 0, "{}", rollback.last_line());
    assert!(rollback.stderr.contains("waiting for the deploy lock"), "{}", rollback.stderr);
    let back: Value = serde_json::from_str::<Value>(&rollback.stdout).unwrap()["version"].clone();
    assert_eq!(pair(&back), pair(&v2), "rolled back from v3 to v2");
    wait_until_serving(&sim, "myapp", "v2");
    assert_settled(&sim, &v2, &guid(&v3));

    // The swap fails half-way (mapping the production route is refused): production stays on v2 and v3 is
    // myapp-previous again, stopped.
    let refuse_mapping = sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v3/routes/*/destinations".into(),
        nth: 2, // the first maps the temporary route
        times: 1,
        action: FaultAction::Status {
            status: 422,
            code: Some(10008),
            title: Some("CF-UnprocessableEntity".into()),
            detail: Some("refused for the test".into()),
        },
    });
    let run = out(&sim, &put, "myapp", json!({"rollback": true, "drain": DRAIN}));
    sim.remove_fault(refuse_mapping);
    run.assert_clean_failure("rollback failed in phase swap: mapping myapp.");
    assert_settled(&sim, &v2, &guid(&v3));
    assert_eq!(routes(&sim), [format!("myapp.{}", sim.info().domain)], "no temporary route is left");

    let report = load.stop();
    assert_no_failures(&report);
    assert_eq!(report.versions(), ["v2", "v1", "v3"], "v2, then v1, then v2 again, v3, and v2 once more");
    let last = report.samples.iter().max_by_key(|s| s.sent_at).unwrap();
    assert_eq!(last.outcome.as_deref(), Ok("v2"));

    // An app that was deployed once has nothing to roll back to.
    put.write("ci/solo.yml", &manifest(&sim, "solo", 1, &["solo"], &[]));
    deploy(&sim, &put, "solo", json!({"path": "app", "manifest": "ci/solo.yml", "drain": "0s"}));
    let before = sim.state_dump();
    let run = out(&sim, &put, "solo", json!({"rollback": true}));
    run.assert_clean_failure("rollback: there is no solo-previous to roll back to");
    assert_eq!(run.stderr.lines().filter(|l| l.starts_with("error")).count(), 1, "one error line");
    assert_eq!(sim.state_dump(), before, "nothing changed");
}

#[test]
fn a_rollback_killed_before_the_swap_is_given_back_by_the_next_rollback_which_runs_its_smoke_test() {
    let (sim, put, v1) = production_v1();
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    let load = start_load(&sim);

    // Killed while verifying (its smoke test takes 5 s): myapp-previous is the rollback's candidate now.
    put.script("ci/slow-smoke.sh", "sleep 5");
    let slow =
        json!({"rollback": true, "drain": DRAIN, "lock_lease": "3s", "smoke_test": {"path": "ci/slow-smoke.sh"}});
    kill_in(&sim, &put, slow, "8", "verifying", |_, _| true);
    assert!(app_named(&sim, "myapp-previous").is_none(), "the killed rollback holds v1 as myapp-green");

    put.script("ci/smoke.sh", "echo \"smoking $GREEN_URL\"");
    let again = json!({"rollback": true, "drain": DRAIN, "smoke_test": {"path": "ci/smoke.sh"}});
    let run = out_as(&sim, &put, "myapp", again, "9");
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("that deploy died; recovering from its verifying phase"), "{}", run.stderr);
    assert!(run.stderr.contains("smoking http://myapp-green-"), "the rollback ran its smoke test:\n{}", run.stderr);
    let back: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone();
    assert_eq!(pair(&back), pair(&v1));
    wait_until_serving(&sim, "myapp", "v1");
    assert_settled(&sim, &v1, &guid(&v2));

    let report = load.stop();
    assert_no_failures(&report);
    assert_eq!(report.versions(), ["v2", "v1"]);
}

// ---------------------------------------------------------------------------------------------------------
// KPI gate and watch

#[test]
fn a_candidate_failing_after_the_swap_is_swapped_back_by_the_watch() {
    let (sim, put, v1) = production_v1();

    for on_failure in ["delete", "keep"] {
        let load = start_load(&sim);
        // Time enough to pass the gate and be swapped in, even on a busy machine.
        let mut failing = with_env(params("v2"), "FAIL_AFTER_SECS", "8");
        failing["kpi"] = json!({"requests": 40, "concurrency": 4, "paths": ["/version"], "max_error_rate": 0.05});
        failing["watch"] = json!("30s");
        failing["on_failure"] = json!(on_failure);
        let started = Instant::now();
        sim.reset_request_log();
        let run = out(&sim, &put, "myapp", failing);
        run.assert_clean_failure("watch failed after the swap: error rate");
        assert!(run.last_line().contains("production was swapped back to myapp"), "{}", run.last_line());
        assert!(started.elapsed() < Duration::from_secs(50), "the watch stops at the first failed round");
        let back_at = load.elapsed();
        wait_until_serving(&sim, "myapp", "v1");
        std::thread::sleep(Duration::from_secs(1));
        let report = load.stop();
        // The candidate served production until the watch caught it; from the swap back on, v1 serves all.
        let after: Vec<_> =
            report.samples.iter().filter(|s| s.sent_at > back_at + Duration::from_millis(600)).collect();
        assert!(!after.is_empty());
        assert!(after.iter().all(|s| s.outcome.as_deref() == Ok("v1")), "after the swap back: {after:?}");
        assert!(report.versions().contains(&"v2".to_owned()), "v2 was in production for a while");

        let domain = &sim.info().domain;
        assert_eq!(route_destinations(&sim), [(format!("myapp.{domain}"), vec![guid(&v1)])]);
        let expected = match on_failure {
            "delete" => vec![("myapp".to_owned(), "STARTED".to_owned())],
            _ => vec![("myapp".to_owned(), "STARTED".to_owned()), ("myapp-failed".to_owned(), "STOPPED".to_owned())],
        };
        assert_eq!(apps(&sim), expected, "on_failure: {on_failure}");
        assert!(app_named(&sim, "myapp").is_some_and(|a| a["guid"] == json!(guid(&v1))));

        // The candidate served production: it goes only once `drain` has passed since it was unmapped.
        let log = sim.request_log();
        let unmapped = destination_changes(&sim).into_iter().rfind(|r| r.method == "DELETE").unwrap();
        let removed = log
            .iter()
            .find(|r| match on_failure {
                "delete" => r.method == "DELETE" && r.path.starts_with("/v3/apps/"),
                _ => r.method == "POST" && r.path.ends_with("/actions/stop"),
            })
            .expect("the candidate was removed");
        let drained = timestamp(removed).duration_since(timestamp(&unmapped)).unwrap_or_default();
        assert!(drained >= Duration::from_millis(1450), "the candidate went {drained:?} after it was unmapped");
    }
}

#[test]
fn a_watched_rollback_of_a_worker_without_routes_goes_by_instance_health() {
    let sim = sim();
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "worker", 1, &[], &[]));
    deploy(&sim, &put, "worker", params("v1"));
    let v2 = deploy(&sim, &put, "worker", params("v2"));
    // A deploy refuses a KPI probe for a no-route manifest; a rollback has no manifest to tell.
    let watched =
        json!({"rollback": true, "drain": "1s", "kpi": {"requests": 20, "max_error_rate": 0.01}, "watch": "2s"});
    let run = out(&sim, &put, "worker", watched);
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("nothing to watch: production has no routes"), "{}", run.stderr);
    let previous = app_named(&sim, "worker-previous").unwrap();
    assert_eq!((previous["guid"].as_str(), previous["state"].as_str()), (Some(guid(&v2).as_str()), Some("STOPPED")));
    assert_eq!(app_named(&sim, "worker").unwrap()["state"], "STARTED");
}

#[test]
fn the_kpi_gate_rejects_errors_and_slowness_and_passes_a_healthy_candidate() {
    let sim = sim();
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", with_env(params("v1"), "LATENCY_MS", "100"));
    wait_until_serving(&sim, "myapp", "v1");
    let load = start_load(&sim);

    // 5% errors against a 1% gate.
    let mut erring = with_env(with_env(params("v2"), "ERROR_RATE", "0.05"), "LATENCY_MS", "100");
    erring["kpi"] = json!({"requests": 100, "concurrency": 10, "max_error_rate": 0.01});
    let run = out(&sim, &put, "myapp", erring);
    run.assert_clean_failure(
        "deploy failed in phase verify: KPI gate failed: error rate 5.0% is above max_error_rate 1.0%",
    );
    assert!(run.stderr.contains("100 requests, 5.0% errors"), "the probe's figures are logged:\n{}", run.stderr);

    // Three times production's latency against a ratio of 2.
    // (Production's p95 would have to be 50 ms off to hide it.)
    let mut slow = with_env(params("v2"), "LATENCY_MS", "300");
    slow["kpi"] = json!({"requests": 60, "concurrency": 6, "paths": ["/version"], "max_p95_ratio": 2});
    let run = out(&sim, &put, "myapp", slow);
    run.assert_clean_failure("KPI gate failed: p95 latency");
    assert!(run.last_line().contains("above max_p95_ratio 2"), "{}", run.last_line());
    assert!(run.stderr.contains("production (myapp."), "production was measured in the same run:\n{}", run.stderr);
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the rejected candidates are gone");

    // A healthy candidate passes every gate; its figures and production's are in the metadata.
    let mut healthy = with_env(params("v2"), "LATENCY_MS", "100");
    healthy["kpi"] =
        json!({"requests": 60, "concurrency": 6, "max_error_rate": 0.01, "max_p95_ratio": 2, "max_p95_ms": 2000});
    let run = out(&sim, &put, "myapp", healthy);
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("KPI gates passed"), "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let metadata: Vec<(String, String)> = answer["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["value"].as_str().unwrap().to_owned()))
        .collect();
    let field = |name: &str| metadata.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let candidate = field("kpi_candidate").unwrap_or_else(|| panic!("no kpi_candidate in {metadata:?}"));
    assert!(candidate.starts_with("60 requests, 0.0% errors, p50 "), "{candidate}");
    let production = field("kpi_production").unwrap_or_else(|| panic!("no kpi_production in {metadata:?}"));
    assert!(production.starts_with("60 requests, 0.0% errors, p50 "), "{production}");

    let report = load.stop();
    assert_no_failures(&report);
    assert_eq!(report.versions(), ["v1", "v2"], "production stayed on v1 until the healthy candidate");
}

// ---------------------------------------------------------------------------------------------------------
// Dry run

/// Requests of a run that could have changed anything (all but reads and getting a token).
fn writes(sim: &Sim) -> Vec<String> {
    sim.request_log()
        .into_iter()
        .filter(|r| !r.admin && r.method != "GET" && !(r.listener == "uaa" && r.path == "/oauth/token"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn a_dry_run_changes_nothing_prints_the_plan_and_what_recovery_would_do() {
    let sim = sim();
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 2, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    // The next manifest leaves the scale to production and adds a route.
    let domain = sim.info().domain.clone();
    put.write(
        "ci/next.yml",
        &format!("applications:\n- name: myapp\n  routes:\n  - route: myapp.{domain}\n  - route: shop.{domain}\n"),
    );
    let dry = || {
        let mut params = params("v3");
        params["manifest"] = json!("ci/next.yml");
        params["dry_run"] = json!(true);
        out(&sim, &put, "myapp", params)
    };

    let before = sim.state_dump();
    let pids = sim.instance_pids();
    sim.reset_request_log();
    let run = dry();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["version"], v2, "the version in production now");
    for line in [
        "Dry run: nothing is changed".to_owned(),
        format!("production: myapp ({})", guid(&v2)),
        "create myapp-green from".to_owned(),
        "scale: web 2 instance(s) of 64M, inherited from production".to_owned(),
        "verify myapp-green on its temporary route myapp-green-".to_owned(),
        format!("map myapp.{domain} to myapp-green"),
        format!("map shop.{domain} (new route) to myapp-green"),
        "unmap myapp from those routes, then let it drain".to_owned(),
        "stop myapp and keep it as myapp-previous".to_owned(),
        "delete the older myapp-previous".to_owned(),
        "delete the temporary route myapp-green-".to_owned(),
        "rename myapp-green to myapp".to_owned(),
    ] {
        assert!(run.stderr.contains(&line), "the plan says {line:?}:\n{}", run.stderr);
    }
    assert_eq!(writes(&sim), Vec::<String>::new(), "a dry run only reads");
    assert_eq!(sim.state_dump(), before, "nothing changed");
    // (The old version's instance may still be on its way out.)
    let started: Vec<u32> = sim.instance_pids().into_iter().filter(|p| !pids.contains(p)).collect();
    assert!(started.is_empty(), "no instance was started or restarted: {started:?}");

    // A deploy died mid-swap and left its journal: the dry run says what recovery would do.
    let mut journal = Journal::new(
        &BuildEnv {
            team_name: Some("main".into()),
            pipeline_name: Some("shop".into()),
            job_name: Some("deploy".into()),
            name: Some("5".into()),
            url: Some(build_url("5")),
            ..BuildEnv::default()
        },
        Duration::from_secs(60),
    );
    journal.phase = Phase::Swapping;
    journal.verified = true;
    journal.blue_guid = Some(guid(&v2));
    journal.renewed_at = SystemTime::now() - Duration::from_secs(600);
    run_async(
        async |cf| {
            let space = home_space(&cf, &sim).await;
            let app = NewApp {
                name: "myapp-green".into(),
                space_guid: space.guid,
                metadata: candidate_metadata(&journal),
                ..NewApp::default()
            };
            cf.apps().create(&app).await.unwrap();
        },
        &sim,
    );
    let before = sim.state_dump();
    sim.reset_request_log();
    let run = dry();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let expected = format!(
        "a deploy by main/shop/deploy #5 ({}) died in its swapping phase; recovery would give every production route back to the previous version and remove the candidate",
        build_url("5")
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert_eq!(writes(&sim), Vec::<String>::new(), "a dry run only reads");
    assert_eq!(sim.state_dump(), before, "nothing changed");
}
