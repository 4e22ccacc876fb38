//! The deploy lifecycle parameters end to end with the real `out` binary against cf-sim: `task` (a migration run
//! as a Cloud Foundry task on the candidate's droplet before it starts; a failing one leaves production
//! untouched; a put killed while it runs has its task cancelled by the next put) and `restage` (production's
//! current package staged again into a new droplet and swapped in).

use std::time::Duration;

use cf_blue_green_resource::record::journal::{DEPLOY_ID, PHASE, TASK};
use cf_sim::Sim;
use serde_json::{Value, json};

use crate::util::deploy::{
    PutDir, annotation, app_named, apps, assert_settled, build_url, deploy, logged, manifest, out, out_as,
    sample_params, spawn_out, wait_for, wait_until_serving,
};
use crate::util::run_resource;
use crate::util::sim::{in_request, source, start_sim_with};

fn params(version: &str) -> Value {
    sample_params(version, "1s", json!({"lock_lease": "3s"}))
}

fn with_task(mut params: Value, task: Value) -> Value {
    params["task"] = task;
    params
}

/// A sim and a put directory with the sample app and its manifest (`myapp`, one instance, route `myapp`).
fn sim_and_put() -> (Sim, PutDir) {
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = 200;
        c.stop_grace_ms = 2000;
    });
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    (sim, put)
}

/// A sim with `myapp` v1 in production.
fn production_v1() -> (Sim, PutDir, Value) {
    let (sim, put) = sim_and_put();
    let v1 = deploy(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    (sim, put, v1)
}

/// Whether the process exists and has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).is_some_and(|state| state != "Z")
}

/// One entry of an `out` answer's metadata.
fn metadata(answer: &Value, name: &str) -> Value {
    let fields = answer["metadata"].as_array().expect("out answers metadata");
    fields.iter().find(|f| f["name"] == name).map(|f| f["value"].clone()).unwrap_or(Value::Null)
}

#[test]
fn a_failing_migration_task_leaves_production_untouched_and_its_output_in_the_log() {
    let (sim, put, v1) = production_v1();
    let command = "echo \"migrating to $APP_VERSION with $MEMORY_LIMIT\"; echo 'relation users is locked' >&2; exit 4";
    let task = json!({"command": command});
    let run = out(&sim, &put, "myapp", with_task(params("v2"), task));

    run.assert_clean_failure("the task 'migrate' failed: APP/TASK/migrate: Exited with status 4");
    assert!(run.stderr.contains("migrating to v2"), "the task's output is in the log, with the candidate's env");
    assert!(run.stderr.contains("with 64m"), "without a memory of its own the task gets the web process's (64M)");
    assert!(run.stderr.contains("relation users is locked"), "its stderr too");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone");
    assert_eq!(app_named(&sim, "myapp").unwrap()["guid"], v1["app_guid"]);
    wait_until_serving(&sim, "myapp", "v1");
}

#[test]
fn a_succeeding_task_runs_on_the_new_droplet_before_the_candidate_serves() {
    let (sim, put, _) = production_v1();
    sim.reset_request_log();
    let task = json!({"command": "echo \"migrating to $APP_VERSION\"; test -x sample-app && echo on the new droplet", "memory": "64M"});
    let v2 = deploy(&sim, &put, "myapp", with_task(params("v2"), task));
    wait_until_serving(&sim, "myapp", "v2");
    let candidate = v2["app_guid"].as_str().unwrap();

    // Log Cache keeps one ordered buffer per app: every line of the task precedes the first of the web process.
    let logs = sim.app_logs(candidate);
    let task_lines: Vec<&cf_sim::Envelope> = logs.iter().filter(|e| e.source_type == "APP/TASK/migrate").collect();
    let messages: Vec<&str> = task_lines.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["migrating to v2", "on the new droplet"]);
    let last_task_line = task_lines.last().unwrap().timestamp;
    let first_web_line = logs.iter().find(|e| e.source_type == "APP/PROC/WEB").expect("the app logged").timestamp;
    assert!(last_task_line < first_web_line, "the task ran to its end before the candidate's web process started");

    // And the requests: the task is created, and the candidate started only after it.
    let requests = sim.request_log();
    let position = |method: &str, path: &str| {
        requests.iter().position(|r| r.method == method && r.path == path).unwrap_or_else(|| panic!("{method} {path}"))
    };
    let created = position("POST", &format!("/v3/apps/{candidate}/tasks"));
    let started = position("POST", &format!("/v3/apps/{candidate}/actions/start"));
    assert!(created < started, "the task is created before the candidate is started");
    let polled = requests[created..started].iter().filter(|r| r.method == "GET" && r.path.starts_with("/v3/tasks/"));
    assert!(polled.count() >= 1, "the task is waited for before the start");
}

#[test]
fn a_task_that_outlives_its_timeout_is_cancelled_and_fails_the_put_before_the_swap() {
    let (sim, put, v1) = production_v1();
    let mut params = with_task(params("v2"), json!({"command": "sleep 60", "timeout": "2s"}));
    params["on_failure"] = json!("keep");
    let run = out(&sim, &put, "myapp", params);
    run.assert_clean_failure("the task 'migrate' did not finish within 2.0s and was cancelled");
    let kept = [("myapp".to_owned(), "STARTED".to_owned()), ("myapp-failed".to_owned(), "STOPPED".to_owned())];
    assert_eq!(apps(&sim), kept);
    assert_eq!(app_named(&sim, "myapp").unwrap()["guid"], v1["app_guid"]);
    // The kept candidate still exists, so only the cancel can have ended its task's container.
    let failed = app_named(&sim, "myapp-failed").unwrap()["guid"].as_str().unwrap().to_owned();
    wait_for("the task's container to be destroyed", Duration::from_secs(10), || {
        let logs = sim.app_logs(&failed);
        logs.iter()
            .any(|e| e.source_type == "CELL" && e.message.contains("successfully destroyed container"))
            .then_some(())
    });
}

#[test]
fn a_put_killed_while_its_task_runs_has_the_task_cancelled_by_the_next_put() {
    let (sim, put, v1) = production_v1();
    let pid_file = put.path().join("task.pid");
    let task = json!({"command": format!("echo $$ > {}; sleep 60", pid_file.display())});
    let mut running = spawn_out(&sim, &put, "myapp", with_task(params("v2"), task), "8");
    let green = wait_for("the put to run its task", Duration::from_secs(60), || {
        assert!(!running.exited(), "the put ended before its task ran:\n{}", running.stderr());
        app_named(&sim, "myapp-green").filter(|g| {
            annotation(g, DEPLOY_ID) == Some(&build_url("8"))
                && annotation(g, PHASE) == Some("task")
                && annotation(g, TASK).is_some()
        })
    });
    let pid: u32 = wait_for("the task's process", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    logged("out build 8, killed while its task runs", running.kill());
    assert!(alive(pid), "the task outlives the put that started it");

    let next = with_task(params("v3"), json!({"command": "echo migrated v3"}));
    let run = out_as(&sim, &put, "myapp", next, "9");
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("that deploy died; recovering from its task phase"), "{}", run.stderr);
    let task_guid = annotation(&green, TASK).unwrap();
    assert!(
        run.stderr.contains(&format!("cancelled the dead deploy's task 'migrate' ({task_guid})")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("migrated v3"), "the next put runs its own task");
    wait_for("the dead put's task to be killed", Duration::from_secs(10), || (!alive(pid)).then_some(()));
    wait_until_serving(&sim, "myapp", "v3");
    let settled = assert_settled(&sim, "myapp", false, "after recovering a put killed in its task");
    assert_eq!(settled.previous, v1["app_guid"].as_str().unwrap());
}

#[test]
fn restage_builds_a_new_droplet_from_productions_package_and_swaps_it_in() {
    let (sim, put) = sim_and_put();
    let first = out(&sim, &put, "myapp", params("v1"));
    assert_eq!(first.status, 0, "{}", first.last_line());
    let before: Value = serde_json::from_str(&first.stdout).unwrap();
    let mut restage = params("v1");
    restage.as_object_mut().unwrap().remove("path");
    restage["restage"] = json!(true);
    let run = out(&sim, &put, "myapp", restage);
    assert_eq!(run.status, 0, "{}", run.last_line());
    let after: Value = serde_json::from_str(&run.stdout).unwrap();

    assert!(run.stderr.contains("restaging myapp's package"), "{}", run.stderr);
    assert!(run.stderr.contains("staging myapp-green"), "the package is staged again: {}", run.stderr);
    assert_ne!(after["version"]["droplet_guid"], before["version"]["droplet_guid"], "a new droplet");
    assert_ne!(after["version"]["app_guid"], before["version"]["app_guid"], "swapped in blue-green");
    let checksum = metadata(&before, "package_checksum");
    assert!(checksum.is_string(), "{before}");
    assert_eq!(metadata(&after, "package_checksum"), checksum, "from the same package");
    wait_until_serving(&sim, "myapp", "v1");
    assert_settled(&sim, "myapp", false, "after a restage");
}

#[test]
fn a_dry_run_plans_the_task_and_the_restage_and_changes_nothing() {
    let (sim, put, _) = production_v1();
    let before = sim.state_dump();
    let mut params = with_task(params("v2"), json!({"command": "bin/migrate"}));
    params.as_object_mut().unwrap().remove("path");
    params["restage"] = json!(true);
    params["dry_run"] = json!(true);
    let run = out(&sim, &put, "myapp", params);
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("create myapp-green from production's current package, restaged"), "{}", run.stderr);
    assert!(run.stderr.contains("run the task 'migrate' on myapp-green's droplet before it starts: bin/migrate"));
    assert_eq!(sim.state_dump(), before, "a dry run changes nothing");
}

#[test]
fn restage_after_a_no_bits_redeploy_stages_the_package_copied_beside_productions_droplet() {
    let (sim, put) = sim_and_put();
    let first = out(&sim, &put, "myapp", params("v1"));
    assert_eq!(first.status, 0, "{}", first.last_line());
    let first: Value = serde_json::from_str(&first.stdout).unwrap();
    let mut redeploy = params("v1");
    redeploy.as_object_mut().unwrap().remove("path");
    redeploy["environment_variables"]["FEATURE"] = json!("on");
    let copied = deploy(&sim, &put, "myapp", redeploy.clone());
    redeploy["restage"] = json!(true);
    let run = out(&sim, &put, "myapp", redeploy);
    assert_eq!(run.status, 0, "{}", run.last_line());
    let after: Value = serde_json::from_str(&run.stdout).unwrap();

    assert!(run.stderr.contains("restaging myapp's package"), "{}", run.stderr);
    assert_ne!(after["version"]["droplet_guid"], copied["droplet_guid"], "a new droplet");
    let checksum = metadata(&first, "package_checksum");
    assert!(checksum.is_string(), "{first}");
    assert_eq!(metadata(&after, "package_checksum"), checksum, "from the package of the first deploy");
    wait_until_serving(&sim, "myapp", "v1");
    assert_settled(&sim, "myapp", false, "after a restage of a redeployed production");
}

#[test]
fn restage_refuses_a_production_pushed_from_an_uploaded_droplet_and_leaves_it_serving() {
    let (sim, put, v1) = production_v1();
    let fetched = put.path().join("staged");
    let download = json!({"download_droplet": true});
    let run =
        run_resource("in", &[fetched.to_str().unwrap()], &in_request(&source(&sim, "myapp"), &v1, Some(download)), &[]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let other = start_sim_with(|_| {});
    put.write("ci/manifest.yml", &manifest(&other, "myapp", 1, &["myapp"], &[]));
    let mut uploaded = params("v1");
    uploaded.as_object_mut().unwrap().remove("path");
    uploaded["droplet"] = json!("staged/droplet.tgz");
    let production = deploy(&other, &put, "myapp", uploaded.clone());
    uploaded.as_object_mut().unwrap().remove("droplet");
    uploaded["restage"] = json!(true);
    let run = out(&other, &put, "myapp", uploaded);
    run.assert_clean_failure("params.restage: myapp has no package to restage (its droplet");
    assert_eq!(app_named(&other, "myapp").unwrap()["guid"], production["app_guid"]);
    wait_until_serving(&other, "myapp", "v1");
}
