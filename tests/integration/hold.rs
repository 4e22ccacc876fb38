//! `hold`, `promote` and `abort` end to end, with the real `out` binary against cf-sim under load: a held
//! candidate answers on its temporary route while production keeps its version, keeps the lock past any lease
//! (no later put recovers or takes it over; they fail naming the holder), and is then promoted without a failed
//! request or aborted leaving nothing behind. Promote and abort with nothing held are refused.

use std::time::Duration;

use crate::util::deploy::{
    PutDir, annotation, app_named, apps, build_url, deploy, get, journal_keys, manifest, out, out_as,
    route_destinations, sample_params, spawn_out, wait_until_serving,
};
use crate::util::sim::{assert_no_failures, start_load, start_sim_with};
use cf_blue_green_resource::record::journal::{DEPLOY_ID, PHASE};
use cf_sim::Sim;
use cf_sim::load::{self, LoadConfig};
use serde_json::{Value, json};

const DRAIN: &str = "1500ms";
/// A lease this short would let any other deploy take over a lock within seconds, were it not held.
const LEASE: &str = "2s";

/// Put params deploying the sample app as `version`, with a short lease and a drain just long enough for the
/// router (300 ms late) to learn of a swap and the load's requests to finish.
fn params(version: &str) -> Value {
    sample_params(
        version,
        DRAIN,
        json!({"lock_lease": LEASE, "verify": [{"path": "/version", "body_contains": version}]}),
    )
}

fn held(version: &str) -> Value {
    let mut params = params(version);
    params["hold"] = json!(true);
    params
}

fn acting(on_held: &str) -> Value {
    json!({on_held: true, "drain": DRAIN, "lock_lease": LEASE})
}

/// A sim with `myapp` v1 in production (one instance, route `myapp.<domain>`); its version.
fn production_v1() -> (Sim, PutDir, Value) {
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = 300;
        c.stop_grace_ms = 3000;
    });
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let v1 = deploy(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    (sim, put, v1)
}

/// A successful put's answer.
fn answer(run: &crate::util::Run) -> Value {
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    serde_json::from_str(&run.stdout).expect("out prints JSON")
}

fn metadata<'a>(answer: &'a Value, name: &str) -> Option<&'a str> {
    answer["metadata"].as_array().unwrap().iter().find(|m| m["name"] == name).and_then(|m| m["value"].as_str())
}

fn pair(version: &Value) -> (&Value, &Value) {
    (&version["app_guid"], &version["droplet_guid"])
}

/// Holds v2 as build 20 and checks the held state: production's version answered, the candidate serving v2 on
/// its temporary route, its journal saying `held` by build 20. Returns the candidate's guid.
fn hold_v2(sim: &Sim, put: &PutDir, v1: &Value) -> String {
    let hold = answer(&out_as(sim, put, "myapp", held("v2"), "20"));
    assert_eq!(pair(&hold["version"]), pair(v1), "a held put answers production's version, unchanged");
    let url = metadata(&hold, "held_url").expect("the held put names the candidate's temporary route");
    let host = url.trim_start_matches("http://").trim_end_matches(&format!(".{}", sim.info().domain));
    assert_eq!(get(sim, host, "/version"), (200, "v2".to_owned()), "the candidate answers on {url}");
    assert_eq!(get(sim, "myapp", "/version"), (200, "v1".to_owned()), "production is unchanged");
    let green = app_named(sim, "myapp-green").expect("the held candidate");
    assert_eq!(annotation(&green, PHASE), Some("held"));
    assert_eq!(annotation(&green, DEPLOY_ID), Some(build_url("20").as_str()));
    assert_eq!(green["state"], "STARTED");
    assert!(metadata(&hold, "held").unwrap().starts_with("myapp-green"), "{hold}");
    green["guid"].as_str().unwrap().to_owned()
}

#[test]
fn a_held_candidate_is_tried_on_its_route_then_promoted_without_a_failed_request() {
    let (sim, put, v1) = production_v1();
    let load = start_load(&sim);
    let candidate = hold_v2(&sim, &put, &v1);

    // Long past the lease: nothing took the held candidate for a dead deploy.
    std::thread::sleep(Duration::from_secs(4));
    let held_by = format!("myapp-green is held for approval by main/shop/deploy #20 ({})", build_url("20"));
    let before = sim.state_dump();
    let blocked = out_as(&sim, &put, "myapp", params("v3"), "21");
    blocked.assert_clean_failure(&held_by);
    assert!(blocked.last_line().contains("params.promote: true") && blocked.last_line().contains("params.abort: true"));
    out_as(&sim, &put, "myapp", json!({"rollback": true, "lock_lease": LEASE}), "21").assert_clean_failure(&held_by);
    assert_eq!(sim.state_dump(), before, "the refused deploy and rollback changed nothing");
    let green = app_named(&sim, "myapp-green").expect("still held");
    assert_eq!((green["guid"].as_str(), annotation(&green, PHASE)), (Some(candidate.as_str()), Some("held")));

    let promoted = answer(&out_as(&sim, &put, "myapp", acting("promote"), "22"));
    assert_eq!(promoted["version"]["app_guid"], json!(candidate), "the held candidate is production now");
    assert_eq!(metadata(&promoted, "instances"), Some("web: 1"), "{promoted}");
    wait_until_serving(&sim, "myapp", "v2");
    assert_no_failures(&load.stop());
    let settled = crate::util::deploy::assert_settled(&sim, "myapp", false, "after the promote");
    assert_eq!((settled.production, settled.previous), (candidate, v1["app_guid"].as_str().unwrap().to_owned()));
}

#[test]
fn an_aborted_hold_leaves_nothing_and_production_untouched() {
    let (sim, put, v1) = production_v1();
    let before = (apps(&sim), route_destinations(&sim));
    let load = start_load(&sim);
    hold_v2(&sim, &put, &v1);
    let mut dry = params("v3");
    dry["dry_run"] = json!(true);
    let dry = out(&sim, &put, "myapp", dry);
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(
        dry.stderr.contains("myapp-green is held for approval by main/shop/deploy #20")
            && dry.stderr.contains("; a real deploy would fail"),
        "the dry run says a deploy would fail on the held candidate:\n{}",
        dry.stderr
    );
    let aborted = answer(&out_as(&sim, &put, "myapp", acting("abort"), "23"));
    assert_eq!(pair(&aborted["version"]), pair(&v1), "production's version, untouched");
    assert_no_failures(&load.stop());
    assert_eq!((apps(&sim), route_destinations(&sim)), before, "no candidate, no temporary route left");
    for app in sim.state_dump()["apps"].as_array().unwrap() {
        assert!(journal_keys(app).is_empty(), "{} carries deploy journal keys", app["name"]);
    }
    // The lock is free: the next deploy runs at once.
    deploy(&sim, &put, "myapp", params("v3"));
    wait_until_serving(&sim, "myapp", "v3");
}

#[test]
fn promote_and_abort_with_nothing_held_are_refused_and_change_nothing() {
    let (sim, put, _v1) = production_v1();
    let before = sim.state_dump();
    for what in ["promote", "abort"] {
        out(&sim, &put, "myapp", acting(what)).assert_clean_failure(&format!(
            "params.{what}: nothing is held: there is no myapp-green waiting for approval (a put with params.hold: \
             true leaves one)"
        ));
    }
    assert_eq!(sim.state_dump(), before, "nothing changed");
}

#[test]
fn a_first_deploy_held_answers_the_candidates_version_which_the_promote_makes_production() {
    let sim = start_sim_with(|c| c.route_propagation_delay_ms = 300);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let hold = answer(&out_as(&sim, &put, "myapp", held("v1"), "20"));
    let candidate = app_named(&sim, "myapp-green").expect("the held candidate");
    assert_eq!(hold["version"]["app_guid"], candidate["guid"], "nothing in production: the candidate's version");
    assert_eq!(get(&sim, "myapp", "/version").0, 404, "the production route serves nothing yet");
    let promoted = answer(&out_as(&sim, &put, "myapp", acting("promote"), "22"));
    assert_eq!(pair(&promoted["version"]), pair(&hold["version"]), "the version the held put answered");
    wait_until_serving(&sim, "myapp", "v1");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())]);
    assert_eq!(
        route_destinations(&sim),
        [(format!("myapp.{}", sim.info().domain), vec![hold["version"]["app_guid"].as_str().unwrap().to_owned()])]
    );
}

#[test]
fn a_promote_runs_its_own_gates_again_and_a_failing_one_removes_the_candidate() {
    let (sim, put, v1) = production_v1();
    hold_v2(&sim, &put, &v1);
    let mut promote = acting("promote");
    promote["verify"] = json!([{"path": "/version", "body_contains": "v3"}]);
    promote["verify_timeout"] = json!("3s");
    let run = out_as(&sim, &put, "myapp", promote, "22");
    run.assert_clean_failure("deploy failed in phase verify");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone");
    assert_eq!(app_named(&sim, "myapp").unwrap()["guid"], v1["app_guid"], "production never moved");
    assert_eq!(
        route_destinations(&sim),
        [(format!("myapp.{}", sim.info().domain), vec![v1["app_guid"].as_str().unwrap().to_owned()])]
    );
    wait_until_serving(&sim, "myapp", "v1");
}

#[test]
fn a_promote_with_a_canary_runs_it_beside_production_before_the_swap() {
    let (sim, put, v1) = production_v1();
    hold_v2(&sim, &put, &v1);
    let host = format!("myapp.{}", sim.info().domain);
    let users = load::start(LoadConfig::population(
        &sim.info().router,
        &host,
        60,
        10,
        &[("/version", 1)],
        Duration::from_secs(120),
    ));
    let mut promote = acting("promote");
    promote["canary"] = json!({"duration": "4s", "max_error_rate": 0.01, "max_p95_ms": 2000, "min_requests": 20});
    let run = out_as(&sim, &put, "myapp", promote, "22");
    std::thread::sleep(Duration::from_secs(1));
    let report = users.stop();
    answer(&run);
    assert!(run.stderr.contains("canary: myapp-green passed on "), "{}", run.stderr);
    assert_eq!(report.failures().len(), 0, "{}", report.describe_failures());
    assert!(report.answers_by("v2") > 0 && report.answers_by("v1") > 0, "{}", report.describe());
    wait_until_serving(&sim, "myapp", "v2");
}

#[test]
fn an_abort_with_on_failure_keep_keeps_the_candidate_stopped_as_failed() {
    let (sim, put, v1) = production_v1();
    let candidate = hold_v2(&sim, &put, &v1);
    let mut abort = acting("abort");
    abort["on_failure"] = json!("keep");
    answer(&out_as(&sim, &put, "myapp", abort, "23"));
    let kept = app_named(&sim, "myapp-failed").expect("kept as myapp-failed");
    assert_eq!((kept["guid"].as_str(), kept["state"].as_str()), (Some(candidate.as_str()), Some("STOPPED")));
    assert!(journal_keys(&kept).is_empty(), "it no longer holds the lock");
    assert_eq!(
        route_destinations(&sim),
        [(format!("myapp.{}", sim.info().domain), vec![v1["app_guid"].as_str().unwrap().to_owned()])]
    );
}

#[test]
fn of_two_promotes_at_once_one_swaps_the_candidate_in_and_the_other_fails_cleanly() {
    let (sim, put, v1) = production_v1();
    let candidate = hold_v2(&sim, &put, &v1);
    let first = spawn_out(&sim, &put, "myapp", acting("promote"), "22");
    let second = spawn_out(&sim, &put, "myapp", acting("promote"), "23");
    let runs = [first.wait(Duration::from_secs(120)), second.wait(Duration::from_secs(120))];
    for run in &runs {
        eprintln!("---- a promote exited {}\n{}", run.status, run.stderr);
    }
    let (won, lost): (Vec<_>, Vec<_>) = runs.iter().partition(|run| run.status == 0);
    assert_eq!((won.len(), lost.len()), (1, 1), "exactly one promote swaps the candidate in");
    assert_eq!(answer(won[0])["version"]["app_guid"], json!(candidate));
    let line = lost[0].last_line();
    assert!(
        line.contains("another put took myapp-green over first") || line.contains("params.promote: nothing is held"),
        "{line}"
    );
    assert_eq!(lost[0].stdout, "", "nothing on stdout");
    let settled = crate::util::deploy::assert_settled(&sim, "myapp", false, "after the promotes");
    assert_eq!(settled.production, candidate);
    wait_until_serving(&sim, "myapp", "v2");
}
