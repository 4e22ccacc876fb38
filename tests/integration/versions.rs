//! `keep_previous: N` and `rollback_to`, end to end with the real `out` and `in` binaries against cf-sim: the last
//! N versions stay stopped as `<app>-previous`, `<app>-previous-2`, … (the oldest beyond N deleted); a rollback to
//! the Nth (by number or by its droplet's guid) swaps it in and moves the others so the list stays in order, most
//! recent first; a rollback forward again returns; `in` lists the kept versions. Names and droplets are checked
//! at every step.

use crate::util::deploy::{PutDir, app_named, apps, deploy, manifest, out, sample_params, wait_until_serving};
use crate::util::run_resource;
use crate::util::sim::{in_request, source, start_sim};
use cf_sim::{Fault, FaultAction, Sim};
use serde_json::{Value, json};

fn params(version: &str) -> Value {
    sample_params(
        version,
        "0s",
        json!({"keep_previous": 3, "verify": [{"path": "/version", "body_contains": version}]}),
    )
}

fn rollback(to: Value) -> Value {
    json!({"rollback_to": to, "drain": "0s", "keep_previous": 3})
}

/// The app guid and droplet guid of a version `out` answered.
fn guids(version: &Value) -> (String, String) {
    (version["app_guid"].as_str().unwrap().to_owned(), version["droplet_guid"].as_str().unwrap().to_owned())
}

/// Asserts that `name` is the app of `version`, running (or not) its droplet.
fn assert_is(sim: &Sim, name: &str, version: &Value, state: &str) {
    let app = app_named(sim, name).unwrap_or_else(|| panic!("no app {name}: {:?}", apps(sim)));
    let (app_guid, droplet) = guids(version);
    assert_eq!(app["guid"], app_guid.as_str(), "{name} is the app of {version}");
    assert_eq!(app["current_droplet"], droplet.as_str(), "{name} runs the droplet of {version}");
    assert_eq!(app["state"], state, "{name}");
}

/// Production and the kept versions, most recent first, are exactly `list` (nothing else called `myapp*`).
fn assert_versions(sim: &Sim, production: &Value, kept: &[&Value]) {
    assert_is(sim, "myapp", production, "STARTED");
    let mut names = vec!["myapp".to_owned()];
    for (nth, version) in (1..).zip(kept) {
        let name = if nth == 1 { "myapp-previous".to_owned() } else { format!("myapp-previous-{nth}") };
        assert_is(sim, &name, version, "STOPPED");
        names.push(name);
    }
    let mut there: Vec<String> = apps(sim).into_iter().map(|(name, _)| name).collect();
    names.sort();
    there.sort();
    assert_eq!(there, names, "the apps in the space");
}

fn production_with(sim: &Sim, put: &PutDir, versions: &[&str]) -> Vec<Value> {
    put.write("ci/manifest.yml", &manifest(sim, "myapp", 1, &["myapp"], &[]));
    versions.iter().map(|v| deploy(sim, put, "myapp", params(v))).collect()
}

#[test]
fn keep_three_keeps_three_a_rollback_to_the_second_keeps_the_order_and_a_rollback_returns() {
    let sim = start_sim();
    let put = PutDir::with_sample_app();
    let v = production_with(&sim, &put, &["v1", "v2", "v3", "v4", "v5"]);
    // v1 was the 4th previous: deleted when v5 came.
    assert_versions(&sim, &v[4], &[&v[3], &v[2], &v[1]]);

    let run = out(&sim, &put, "myapp", rollback(json!(2)));
    assert_eq!(run.status, 0, "{}", run.last_line());
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(guids(&answer["version"]), guids(&v[2]), "production is the 2nd previous (v3) again");
    wait_until_serving(&sim, "myapp", "v3");
    // The version it replaced is the most recent kept one; the one rolled back to leaves its place to the next.
    assert_versions(&sim, &v[2], &[&v[4], &v[3], &v[1]]);

    // Forward again: `rollback: true` is the 1st previous, the version production had.
    let run = out(&sim, &put, "myapp", json!({"rollback": true, "drain": "0s", "keep_previous": 3}));
    assert_eq!(run.status, 0, "{}", run.last_line());
    wait_until_serving(&sim, "myapp", "v5");
    assert_versions(&sim, &v[4], &[&v[2], &v[3], &v[1]]);

    // By droplet guid: the oldest kept (v2), as check reported it once.
    let (_, v2_droplet) = guids(&v[1]);
    let run = out(&sim, &put, "myapp", rollback(json!(v2_droplet)));
    assert_eq!(run.status, 0, "{}", run.last_line());
    wait_until_serving(&sim, "myapp", "v2");
    assert_versions(&sim, &v[1], &[&v[4], &v[2], &v[3]]);

    // `in` lists the kept versions with the droplets `rollback_to` takes.
    let dir = tempfile::tempdir().unwrap();
    let request = in_request(&source(&sim, "myapp"), &v[1], None);
    let run = run_resource("in", &[dir.path().to_str().unwrap()], &request, &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let kept = answer["metadata"].as_array().unwrap().iter().find(|m| m["name"] == "kept").expect("kept metadata");
    let expected: Vec<String> =
        [(1, "myapp-previous", &v[4]), (2, "myapp-previous-2", &v[2]), (3, "myapp-previous-3", &v[3])]
            .iter()
            .map(|(nth, name, version)| format!("{nth}: {name} droplet {}", guids(version).1))
            .collect();
    assert_eq!(kept["value"], expected.join(", "));
}

#[test]
fn fewer_kept_deletes_the_oldest_and_a_rollback_to_what_is_not_kept_changes_nothing() {
    let sim = start_sim();
    let put = PutDir::with_sample_app();
    let v = production_with(&sim, &put, &["v1", "v2", "v3"]);
    assert_versions(&sim, &v[2], &[&v[1], &v[0]]);

    // The dry run says what the housekeeping of keep_previous: 3 would do, in its order.
    let mut dry = params("v4");
    dry["dry_run"] = json!(true);
    let run = out(&sim, &put, "myapp", dry);
    assert_eq!(run.status, 0, "{}", run.last_line());
    let planned: Vec<&str> = run
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("rename myapp-previous") || l.starts_with("stop myapp and keep"))
        .collect();
    assert_eq!(
        planned,
        [
            "rename myapp-previous-2 to myapp-previous-3",
            "rename myapp-previous to myapp-previous-2",
            "stop myapp and keep it as myapp-previous"
        ],
        "{}",
        run.stderr
    );

    // A rollback to the 2nd whose gate fails gives it back its own place, not `myapp-previous`'s.
    let mut failing = rollback(json!(2));
    failing["verify"] = json!([{"path": "/version", "body_contains": "not-this-version"}]);
    failing["verify_timeout"] = json!("2s");
    let run = out(&sim, &put, "myapp", failing);
    assert_ne!(run.status, 0, "the gate failed");
    assert!(run.stderr.contains("renamed myapp-green back to myapp-previous-2 (stopped)"), "{}", run.stderr);
    assert_versions(&sim, &v[2], &[&v[1], &v[0]]);

    let before = sim.state_dump();
    let run = out(&sim, &put, "myapp", rollback(json!(3)));
    run.assert_clean_failure("rollback: there is no myapp-previous-3 to roll back to");
    let run = out(&sim, &put, "myapp", rollback(json!("0000-not-kept-droplet")));
    run.assert_clean_failure("rollback_to: no kept version runs droplet 0000-not-kept-droplet; kept: myapp-previous");
    assert_eq!(sim.state_dump()["apps"], before["apps"], "a refused rollback changes nothing");

    // keep_previous: 1 now: the version production had is kept, the older one deleted.
    let mut one = params("v4");
    one["keep_previous"] = json!(1);
    let v4 = deploy(&sim, &put, "myapp", one);
    assert_versions(&sim, &v4, &[&v[2]]);
    let mut none = params("v5");
    none["keep_previous"] = json!(false);
    let v5 = deploy(&sim, &put, "myapp", none);
    assert_versions(&sim, &v5, &[]);
}

#[test]
fn a_put_that_dies_between_two_renames_leaves_the_list_in_order_and_the_next_put_finishes_it() {
    let sim = start_sim();
    let put = PutDir::with_sample_app();
    let with_lease = |version: &str| {
        let mut params = params(version);
        params["lock_lease"] = json!("2s");
        params
    };
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let v: Vec<Value> = ["v1", "v2", "v3", "v4"].iter().map(|n| deploy(&sim, &put, "myapp", with_lease(n))).collect();
    assert_versions(&sim, &v[3], &[&v[2], &v[1], &v[0]]);

    // Renaming v3 (`myapp-previous`) to `myapp-previous-2` fails: v1 is deleted and v2 moved to `-3` by then.
    let (v3_app, _) = guids(&v[2]);
    let fault = sim.add_fault(Fault {
        method: Some("PATCH".into()),
        path: format!("/v3/apps/{v3_app}"),
        nth: 1,
        times: 0,
        action: FaultAction::Status { status: 500, code: None, title: None, detail: None },
    });
    let run = out(&sim, &put, "myapp", with_lease("v5"));
    assert_ne!(run.status, 0, "the put died in its housekeeping");
    sim.remove_fault(fault);
    let mut names: Vec<String> = apps(&sim).into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["myapp", "myapp-green", "myapp-previous", "myapp-previous-3"], "a gap, every name its own");
    assert_is(&sim, "myapp-previous", &v[2], "STOPPED");
    assert_is(&sim, "myapp-previous-3", &v[1], "STOPPED");

    // The next put recovers the dead one (v5 to production, every kept version one place down), then deploys.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let run = out(&sim, &put, "myapp", with_lease("v6"));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("recovered: the foundation is consistent again"), "{}", run.stderr);
    let v6: Value = serde_json::from_str::<Value>(&run.stdout).unwrap()["version"].clone();
    wait_until_serving(&sim, "myapp", "v6");
    let v5 = app_named(&sim, "myapp-previous").expect("v5 is kept");
    assert_eq!(v5["metadata"]["annotations"].as_object().map(|a| a.keys().any(|k| k.ends_with("phase"))), Some(false));
    let v5 = json!({"app_guid": v5["guid"], "droplet_guid": v5["current_droplet"]});
    assert_versions(&sim, &v6, &[&v5, &v[3], &v[2]]);
}
