//! The canary (`params.canary`): the verified candidate serves its share of production's real traffic beside blue,
//! judged from the `http` timers cf-sim's router leaves in Log Cache, with the real `out` binary and a bounded
//! population of users through the router. A good candidate is swapped in without a failed request; a bad one
//! (errors, slowness, a log line) is unmapped again with production never off blue; no timers is "no data",
//! decided by `on_no_data`; a put killed during the canary is recovered by the next one.

use std::time::{Duration, Instant};

use cf_blue_green_resource::record::journal::PHASE;
use cf_sim::Sim;
use cf_sim::load::{self, LoadConfig, LoadHandle};
use serde_json::{Value, json};

use crate::util::deploy::{
    PutDir, annotation, app_named, apps, deploy, manifest, out, route_destinations, sample_params, spawn_out, wait_for,
    wait_until_serving,
};
use crate::util::sim::start_sim_with;

fn params(version: &str, env: &[(&str, &str)]) -> Value {
    let mut params = sample_params(version, "1s", json!({}));
    for (key, value) in env {
        params["environment_variables"][*key] = json!(value);
    }
    params
}

/// A sim with `myapp` v1 (`instances` instances, `env`) in production; its guid.
fn production_v1(sim: &Sim, put: &PutDir, instances: u32, env: &[(&str, &str)]) -> String {
    put.write("ci/manifest.yml", &manifest(sim, "myapp", instances, &["myapp"], &[]));
    let v1 = deploy(sim, put, "myapp", params("v1", env));
    wait_until_serving(sim, "myapp", "v1");
    v1["app_guid"].as_str().unwrap().to_owned()
}

/// Users on `/version` at 60 requests/s, for at most two minutes (stopped when the put is done).
fn users(sim: &Sim) -> LoadHandle {
    let host = format!("myapp.{}", sim.info().domain);
    load::start(LoadConfig::population(&sim.info().router, &host, 60, 10, &[("/version", 1)], Duration::from_secs(120)))
}

/// The put's params with `canary`.
fn with_canary(mut params: Value, canary: Value) -> Value {
    params["canary"] = canary;
    params
}

/// The candidate's requests in the canary's last progress line (`canary 4s/4.0s: candidate 123 req (48%), …`).
fn candidate_requests(stderr: &str) -> u32 {
    let line = stderr.lines().rev().find(|l| l.contains("canary ") && l.contains(": candidate "));
    let line = line.unwrap_or_else(|| panic!("no canary progress line:\n{stderr}"));
    let after = &line[line.find(": candidate ").unwrap() + ": candidate ".len()..];
    after.split(' ').next().unwrap().replace(',', "").parse().unwrap()
}

/// Production is `blue` alone: one app, the production route reaching only it.
fn assert_production_on(sim: &Sim, blue: &str) {
    assert_eq!(apps(sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone");
    assert_eq!(app_named(sim, "myapp").unwrap()["guid"], json!(blue), "production is blue");
    assert_eq!(route_destinations(sim), [(format!("myapp.{}", sim.info().domain), vec![blue.to_owned()])]);
}

/// A good candidate, scaled to one instance for the canary: the canary passes on real traffic, the candidate is
/// scaled back to full size, the swap completes, and no user request fails; the metadata has both apps' figures.
#[test]
fn a_good_candidate_passes_the_canary_and_is_swapped_in_without_a_failed_request() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    production_v1(&sim, &put, 2, &[]);
    let load = users(&sim);
    let canary = json!({"duration": "4s", "max_error_rate": 0.01, "max_p95_ms": 2000, "min_requests": 20});
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[]), canary));
    std::thread::sleep(Duration::from_secs(1));
    let report = load.stop();
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert_eq!(report.failures().len(), 0, "{}", report.describe_failures());
    assert!(report.answers_by("v2") > 0 && report.answers_by("v1") > 0, "{}", report.describe());
    assert!(run.stderr.contains("scaled myapp-green to 1 instance(s) for the canary (of 2)"), "{}", run.stderr);
    assert!(run.stderr.contains("myapp-green is at full size: 2 instance(s)"), "{}", run.stderr);
    assert!(run.stderr.contains("canary: myapp-green passed on "), "{}", run.stderr);
    assert!(candidate_requests(&run.stderr) >= 20, "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let metadata = |name: &str| {
        answer["metadata"].as_array().unwrap().iter().find(|m| m["name"] == name).map(|m| m["value"].clone())
    };
    for key in ["canary", "canary_candidate", "canary_blue"] {
        assert!(metadata(key).is_some(), "metadata {key}: {answer}");
    }
    assert!(metadata("canary_blue").unwrap().as_str().unwrap().contains(" req, 0.0% errors"), "{answer}");
    wait_until_serving(&sim, "myapp", "v2");
}

/// A candidate answering 5% of its requests with 500s fails the canary and is unmapped: the only failed requests
/// users saw were its own injected errors during the canary — about 5% of its share of the traffic, not of all
/// of it — none after, and production stayed on blue.
#[test]
fn a_candidate_answering_errors_fails_the_canary_and_only_its_share_of_users_saw_them() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    let blue = production_v1(&sim, &put, 1, &[]);
    let load = users(&sim);
    let canary = json!({"duration": "5s", "max_error_rate": 0.01, "min_requests": 40});
    let started = load.elapsed();
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[("ERROR_RATE", "0.05")]), canary));
    let ended = load.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop();
    run.assert_clean_failure("canary failed: error rate");
    assert!(run.last_line().contains("from real traffic (Log Cache)"), "{}", run.last_line());
    assert!(run.stderr.contains("unmapped myapp-green from production: its share of the traffic returns to myapp"));
    assert_production_on(&sim, &blue);

    let failures = report.failures();
    assert!(!failures.is_empty(), "users met some of the candidate's errors: {}", report.describe());
    for failure in &failures {
        let why = failure.outcome.as_ref().unwrap_err();
        assert!(why.contains("injected failure: ERROR_RATE"), "only the candidate's injected errors: {why}");
        assert!(failure.sent_at >= started && failure.sent_at < ended, "during the put only: {failure:?}");
    }
    let during = report.samples.iter().filter(|s| s.sent_at >= started && s.sent_at < ended).count();
    let candidate = candidate_requests(&run.stderr) as usize;
    assert!(candidate < during, "the candidate had a share of the traffic, not all of it");
    // Every 20th of the candidate's requests failed (a few more left before its last progress line was read).
    let expected = candidate / 20;
    assert!(
        failures.len() + 1 >= expected && failures.len() <= expected + 3,
        "{} failed of the candidate's {candidate} (of {during} during the put)",
        failures.len()
    );
    assert!(failures.len() * 25 < during, "far below 5% of all traffic: {} of {during}", failures.len());
}

/// A candidate twice as slow as blue fails `max_p95_ratio`, compared over the same window (the ratio is below 2:
/// both p95s include the router's and the machine's own latency).
#[test]
fn a_candidate_twice_as_slow_as_blue_fails_the_p95_ratio() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    let blue = production_v1(&sim, &put, 1, &[("LATENCY_MS", "100")]);
    let load = users(&sim);
    let canary = json!({"duration": "4s", "max_p95_ratio": 1.25, "min_requests": 20});
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[("LATENCY_MS", "200")]), canary));
    let report = load.stop();
    run.assert_clean_failure("above max_p95_ratio 1.25");
    assert!(run.last_line().contains("canary failed: p95 latency"), "{}", run.last_line());
    assert_eq!(report.failures().len(), 0, "slow, not failing: {}", report.describe_failures());
    assert_production_on(&sim, &blue);
}

/// A candidate log line matching `log_patterns` fails the canary within seconds, not at the end of its duration.
#[test]
fn a_candidate_logging_a_matching_line_fails_the_canary_at_once() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    let blue = production_v1(&sim, &put, 1, &[]);
    let load = users(&sim);
    let canary = json!({"duration": "10m", "log_patterns": ["OutOfMemoryError", "^GET /version 200"]});
    let started = Instant::now();
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[("LOG_REQUESTS", "true")]), canary));
    let took = started.elapsed();
    load.stop();
    run.assert_clean_failure("canary failed: the candidate logged a line matching log_patterns '^GET /version 200'");
    assert!(took < Duration::from_secs(90), "within seconds of users reaching it, not after 10m: {took:?}");
    assert_production_on(&sim, &blue);
}

/// Without timers in Log Cache the canary has no data: `on_no_data: fail` fails the put saying so, `pass` deploys
/// saying it did not judge.
#[test]
fn without_timers_on_no_data_decides_and_says_so() {
    let sim = start_sim_with(|c| c.no_http_timers = true);
    let put = PutDir::with_sample_app();
    let blue = production_v1(&sim, &put, 1, &[]);
    let canary = json!({"duration": "2s", "max_error_rate": 0.01});
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[]), canary.clone()));
    run.assert_clean_failure("canary failed: no data to judge myapp-green by: Log Cache holds no http timers");
    assert!(run.last_line().contains("on_no_data: fail"), "{}", run.last_line());
    assert_production_on(&sim, &blue);

    let mut passing = canary;
    passing["on_no_data"] = json!("pass");
    let run = out(&sim, &put, "myapp", with_canary(params("v3", &[]), passing));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(
        run.stderr.contains("the canary could not judge myapp-green: Log Cache holds no http timers")
            && run.stderr.contains("on_no_data: pass, so the deploy goes on without a verdict"),
        "{}",
        run.stderr
    );
    wait_until_serving(&sim, "myapp", "v3");
}

/// Waits until `myapp-green`'s journal says `canary` and it is mapped to the production route beside blue.
fn wait_for_the_canary(sim: &Sim) {
    let domain = sim.info().domain.clone();
    wait_for("the candidate serving beside blue", Duration::from_secs(120), || {
        let green = app_named(sim, "myapp-green").filter(|g| annotation(g, PHASE) == Some("canary"))?;
        let guid = green["guid"].as_str()?.to_owned();
        let routes = route_destinations(sim);
        routes.iter().any(|(route, apps)| *route == format!("myapp.{domain}") && apps.contains(&guid)).then_some(())
    });
}

/// An aborted build (SIGTERM) during the canary: the candidate is unmapped and removed, and the lock released,
/// within Concourse's 10 seconds; production is on blue.
#[test]
fn an_aborted_put_during_the_canary_gives_production_back_to_blue_at_once() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    let blue = production_v1(&sim, &put, 1, &[]);
    let canary = json!({"duration": "10m", "max_error_rate": 0.01});
    let running = spawn_out(&sim, &put, "myapp", with_canary(params("v2", &[]), canary), "8");
    wait_for_the_canary(&sim);
    running.terminate();
    let run = running.wait(Duration::from_secs(10));
    assert_ne!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("unmapped myapp-green from production"), "{}", run.stderr);
    assert_production_on(&sim, &blue);
}

/// `out` killed while its candidate serves beside blue: the next put finds the journal in phase `canary`, unmaps
/// the candidate from production, removes it, and deploys; nothing of the killed put is left.
#[test]
fn a_put_killed_during_the_canary_is_recovered_by_the_next() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    production_v1(&sim, &put, 1, &[]);
    let mut killed = params("v2", &[]);
    killed["lock_lease"] = json!("2s");
    let canary = json!({"duration": "10m", "max_error_rate": 0.01});
    let running = spawn_out(&sim, &put, "myapp", with_canary(killed, canary), "7");
    wait_for_the_canary(&sim);
    let killed = running.kill();
    assert!(killed.stderr.contains("Canary: myapp-green beside myapp"), "{}", killed.stderr);

    std::thread::sleep(Duration::from_secs(3));
    let run = out(&sim, &put, "myapp", params("v3", &[]));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(
        run.stderr
            .contains("recovery: give every production route back to the previous version and remove the candidate"),
        "{}",
        run.stderr
    );
    wait_until_serving(&sim, "myapp", "v3");
    let settled = crate::util::deploy::assert_settled(&sim, "myapp", false, "after the recovery");
    assert_ne!(settled.production, settled.previous);
}

/// A `no-route` app has no users' traffic to judge a canary by: that is no data too, and `on_no_data` decides.
#[test]
fn a_canary_of_an_app_without_routes_has_no_data() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &[], &[]));
    deploy(&sim, &put, "myapp", params("v1", &[]));
    let canary = json!({"duration": "2s", "max_error_rate": 0.01});
    let run = out(&sim, &put, "myapp", with_canary(params("v2", &[]), canary));
    run.assert_clean_failure("no data to judge myapp-green by: production has no routes");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone");
}

/// A first deploy has no production to serve beside: the canary is skipped, said in its own numbered phase, so
/// the phases after it keep the numbers the first header's total gave them.
#[test]
fn a_first_deploy_skips_the_canary_in_a_phase_of_its_own() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let canary = json!({"duration": "4s", "max_error_rate": 0.01});
    let run = out(&sim, &put, "myapp", with_canary(params("v1", &[]), canary));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("[5/8] Canary: skipped"), "{}", run.stderr);
    assert!(run.stderr.contains("canary: this is the first deploy"), "{}", run.stderr);
    assert!(run.stderr.contains("[6/8] Swapping production routes"), "{}", run.stderr);
    wait_until_serving(&sim, "myapp", "v1");
}
