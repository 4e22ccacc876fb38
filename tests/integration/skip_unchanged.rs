//! `skip_unchanged` end to end with the real `out` binary against cf-sim: a redeploy of what production runs makes
//! no write at all and answers production's version (the one `check` reports) with `skipped: unchanged`; a
//! changed file, a changed manifest key, a removed env key and a changed env value each deploy, as do a scale and
//! an env var changed on the foundation by hand (only `manifest_diff` and production's env can see those); a dry
//! run prints the diff and what changed, never an env value; values Cloud Foundry presents in another form than a
//! manifest writes them (route order, units, an unlimited log rate, `health-check-type: none`) are no change.

use std::collections::BTreeMap;

use cf_blue_green_resource::cf::processes::Scale;
use cf_sim::Sim;
use cf_sim::config::CcApiVersion;
use serde_json::{Value, json};

use crate::util::deploy::{PutDir, app_named, deploy, manifest, out, sample_params};
use crate::util::run_resource;
use crate::util::sim::{
    check_request, connect, describe_requests, resource_requests, source, start_sim, start_sim_with,
};

/// A secret env value that must never be printed.
const SECRET: &str = "hunter2-skip-unchanged";

fn params(version: &str) -> Value {
    sample_params(
        version,
        "1s",
        json!({"secret_environment_variables": {"DB_PASSWORD": SECRET}, "skip_unchanged": true}),
    )
}

/// The manifest of `myapp` with `instances` and `env`.
fn write_manifest(sim: &Sim, put: &PutDir, instances: u32, env: &[(&str, &str)]) {
    put.write("ci/manifest.yml", &manifest(sim, "myapp", instances, &["myapp"], env));
}

/// A sim with `myapp` v1 in production, deployed with `skip_unchanged` (nothing to compare with: it deploys).
fn production_v1() -> (Sim, PutDir, Value) {
    let sim = start_sim();
    let put = PutDir::with_sample_app();
    write_manifest(&sim, &put, 1, &[("TIER", "web")]);
    let v1 = deploy(&sim, &put, "myapp", params("v1"));
    (sim, put, v1)
}

/// One entry of an `out` answer's metadata.
fn metadata(answer: &Value, name: &str) -> Value {
    let fields = answer["metadata"].as_array().expect("out answers metadata");
    fields.iter().find(|f| f["name"] == name).map(|f| f["value"].clone()).unwrap_or(Value::Null)
}

/// The requests of the last run that could change the foundation: every CC call but reads and the diff (a
/// POST that changes nothing).
fn writes(sim: &Sim) -> Vec<cf_sim::RequestRecord> {
    resource_requests(sim)
        .into_iter()
        .filter(|r| r.listener == "api" && r.method != "GET" && !r.path.ends_with("/manifest_diff"))
        .collect()
}

/// Runs `out` and returns its answer, asserting it succeeded.
fn put(sim: &Sim, put: &PutDir, params: Value) -> (Value, String) {
    sim.reset_request_log();
    let run = out(sim, put, "myapp", params);
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    (serde_json::from_str(&run.stdout).expect("out prints JSON"), run.stderr)
}

/// Asserts `params` make a put that skips: no write, production's version as `check` reports it.
fn assert_skips(sim: &Sim, dir: &PutDir, params: Value) {
    let (answer, log) = put(sim, dir, params);
    let writes = writes(sim);
    assert!(writes.is_empty(), "an unchanged put wrote:\n{}", describe_requests(&writes));
    assert_eq!(metadata(&answer, "skipped"), "unchanged", "{answer}");
    assert!(log.contains("unchanged: the bits, the manifest and the env are what myapp runs"), "{log}");
    let checked = run_resource("check", &[], &check_request(&source(sim, "myapp"), None), &[]);
    let versions: Vec<Value> = serde_json::from_str(&checked.stdout).expect("check prints JSON");
    assert_eq!(Some(&answer["version"]), versions.last(), "the version check reports for production");
    let diffs = resource_requests(sim).iter().filter(|r| r.path.ends_with("/manifest_diff")).count();
    assert_eq!(diffs, 1, "the manifest was compared by Cloud Foundry");
}

/// Asserts `params` make a put that deploys a new version, saying what changed.
fn assert_deploys(sim: &Sim, dir: &PutDir, params: Value, changed: &str) -> Value {
    let before = app_named(sim, "myapp").unwrap()["guid"].clone();
    let (answer, log) = put(sim, dir, params);
    assert_eq!(metadata(&answer, "skipped"), Value::Null, "{answer}");
    assert_ne!(answer["version"]["app_guid"], before, "a new version is in production");
    assert!(log.contains(&format!("skip_unchanged: {changed} changed; deploying")), "{log}");
    answer["version"].clone()
}

#[test]
fn an_unchanged_redeploy_writes_nothing_and_answers_production_s_version() {
    let (sim, put, v1) = production_v1();
    assert_skips(&sim, &put, params("v1"));
    assert_eq!(app_named(&sim, "myapp").unwrap()["guid"], v1["app_guid"]);
    assert!(app_named(&sim, "myapp-green").is_none(), "no lock was taken");
}

#[test]
fn a_changed_file_manifest_key_env_value_or_removed_env_key_deploys_and_the_next_put_skips() {
    let (sim, dir, _) = production_v1();

    dir.write("app/public/robots.txt", "User-agent: *\n");
    assert_deploys(&sim, &dir, params("v1"), "the bits");
    assert_skips(&sim, &dir, params("v1"));

    write_manifest(&sim, &dir, 2, &[("TIER", "web")]);
    assert_deploys(&sim, &dir, params("v1"), "the manifest (since the last deploy)");
    assert_skips(&sim, &dir, params("v1"));

    assert_deploys(&sim, &dir, params("v2"), "the env");
    assert_skips(&sim, &dir, params("v2"));

    write_manifest(&sim, &dir, 2, &[]);
    assert_deploys(&sim, &dir, params("v2"), "the manifest (since the last deploy)");
    assert_skips(&sim, &dir, params("v2"));
}

#[test]
fn a_scale_or_an_env_var_changed_by_hand_is_seen_and_deployed_over() {
    let (sim, dir, v1) = production_v1();
    let guid = v1["app_guid"].as_str().unwrap().to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cf = runtime.block_on(connect(&sim));

    let web = runtime.block_on(cf.processes().of_app(&guid, "web")).unwrap();
    let scale = Scale { instances: Some(3), ..Scale::default() };
    runtime.block_on(cf.processes().scale(&web.guid, &scale)).unwrap();
    let v2 = assert_deploys(&sim, &dir, params("v1"), "the manifest (as Cloud Foundry sees it)");
    assert_skips(&sim, &dir, params("v1"));

    let by_hand = BTreeMap::from([("APP_VERSION".to_owned(), Some("hotfix".to_owned()))]);
    runtime.block_on(cf.apps().update_env_vars(v2["app_guid"].as_str().unwrap(), &by_hand)).unwrap();
    assert_deploys(&sim, &dir, params("v1"), "the env");
    assert_skips(&sim, &dir, params("v1"));
}

#[test]
fn a_dry_run_prints_the_manifest_diff_and_what_changed_but_no_env_value() {
    let (sim, dir, v1) = production_v1();
    write_manifest(&sim, &dir, 2, &[("TIER", "web")]);
    let mut dry = params("v1");
    dry["dry_run"] = json!(true);
    dry["secret_environment_variables"]["DB_PASSWORD"] = json!("hunter3-skip-unchanged");
    let (answer, log) = put(&sim, &dir, dry);

    assert!(writes(&sim).is_empty(), "a dry run wrote");
    assert_eq!(answer["version"], v1);
    assert!(log.contains("skip_unchanged: bits unchanged"), "{log}");
    assert!(log.contains("skip_unchanged: manifest since the last deploy changed"), "{log}");
    assert!(log.contains("manifest diff from Cloud Foundry: 1 change(s)"), "{log}");
    assert!(log.contains("replace /applications/0/processes/0/instances: 1 → 2"), "{log}");
    assert!(log.contains("skip_unchanged: env changed: DB_PASSWORD (values not shown)"), "{log}");
    assert!(log.contains("skip_unchanged: a real put would deploy"), "{log}");
    assert!(!log.contains("hunter3") && !log.contains(SECRET), "an env value was printed");
}

#[test]
fn values_cf_presents_in_another_form_are_no_change() {
    let sim = start_sim();
    let dir = PutDir::with_sample_app();
    let domain = &sim.info().domain;
    // Routes out of CC's alphabetical order, memory in MB, disk with a hyphen, an unlimited log rate and the
    // deprecated health-check type `none`: each would be a false change if sent as written.
    dir.write(
        "ci/manifest.yml",
        &format!(
            "applications:\n- name: myapp\n  instances: 1\n  memory: 64MB\n  disk-quota: 256M\n  \
             log-rate-limit-per-second: -1\n  health-check-type: none\n  routes:\n  - route: zz-myapp.{domain}\n  \
             - route: myapp.{domain}\n"
        ),
    );
    let mut params = params("v1");
    params["verify"] = json!([]);
    deploy(&sim, &dir, "myapp", params.clone());
    assert_skips(&sim, &dir, params);
}

#[test]
fn a_cloud_controller_without_manifest_diff_makes_the_put_deploy_saying_why() {
    // manifest_diff came with CC API 3.88.0; the resource runs against 3.86.0 on.
    let sim = start_sim_with(|c| c.cc_api_version = CcApiVersion(3, 87, 0));
    let dir = PutDir::with_sample_app();
    write_manifest(&sim, &dir, 1, &[]);
    deploy(&sim, &dir, "myapp", params("v1"));
    let (answer, log) = put(&sim, &dir, params("v1"));
    assert_eq!(metadata(&answer, "skipped"), Value::Null, "{answer}");
    assert!(
        log.contains("skip_unchanged: Cloud Foundry's manifest diff failed, so the manifest counts as changed"),
        "{log}"
    );
    assert!(log.contains("skip_unchanged: the manifest (as Cloud Foundry sees it) changed; deploying"), "{log}");
}

#[test]
fn a_held_then_promoted_version_is_recorded_like_a_deployed_one() {
    let (sim, dir, _) = production_v1();
    dir.write("app/public/robots.txt", "User-agent: *\n");
    // The same put, held (skip_unchanged cannot go with hold).
    let mut held_params = params("v1");
    held_params["hold"] = json!(true);
    held_params.as_object_mut().unwrap().remove("skip_unchanged");
    let (held, _) = put(&sim, &dir, held_params);
    assert_ne!(metadata(&held, "held"), Value::Null, "{held}");
    let (promoted, _) = put(&sim, &dir, json!({"promote": true, "drain": "1s"}));
    assert_eq!(metadata(&promoted, "skipped"), Value::Null, "{promoted}");
    // What the held put deployed is what production runs now: the same put with skip_unchanged changes nothing.
    assert_skips(&sim, &dir, params("v1"));
}
