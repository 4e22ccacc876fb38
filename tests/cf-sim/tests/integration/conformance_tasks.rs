//! Tasks as the Cloud Controller creates, presents, cancels and completes them (`tasks_controller.rb`,
//! `task_create_message.rb`, `task_create.rb`, `task_model.rb`, `task_cancel.rb`, `task_presenter.rb`), run by the
//! runtime on the app's droplet with its env, and restaging: a package staged again into a new droplet.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Api, alive, app_zip, poll, test_config};
use cf_sim::{Sim, SimConfig};

/// Polls the task until it has ended.
async fn ended(api: &Api, guid: &str) -> Value {
    poll(Duration::from_secs(20), || async {
        let task = api.get(&format!("/v3/tasks/{guid}")).await.json();
        (task["state"] == "SUCCEEDED" || task["state"] == "FAILED").then_some(task)
    })
    .await
}

async fn create_task(api: &Api, app: &str, body: Value) -> Value {
    let created = api.post(&format!("/v3/apps/{app}/tasks"), body).await;
    assert_eq!(created.status, 202, "{}", created.text());
    created.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_the_droplet_with_the_apps_env_and_services_and_logs_as_app_task() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let app = api.push("worker", app_zip()).await;
    api.patch(&format!("/v3/apps/{app}/environment_variables"), json!({"var": {"VERSION": "v7"}})).await;
    let instance = api
        .post("/v3/service_instances", json!({"type": "user-provided", "name": "db", "credentials": {"uri": "postgres://db"}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await
        .json();
    let bound = api
        .post("/v3/service_credential_bindings", json!({"type": "app", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance["guid"]}}}}))
        .await;
    assert!(bound.status < 300, "{}", bound.text());

    let command = r#"echo "version $VERSION"; echo "$VCAP_SERVICES" | grep -o 'postgres://db'; echo "mem $MEMORY_LIMIT"; test -f server.py && echo droplet; echo oops >&2"#;
    let task = create_task(&api, &app, json!({"command": command, "name": "migrate", "memory_in_mb": 256})).await;
    assert_eq!(task["state"], "RUNNING", "CC marks a task RUNNING once Diego has it, before it answers");
    assert_eq!((task["name"].clone(), task["sequence_id"].clone()), (json!("migrate"), json!(1)));
    assert_eq!((task["memory_in_mb"].clone(), task["disk_in_mb"].clone()), (json!(256), json!(1024)));
    assert_eq!(task["command"], command);
    assert_eq!(task["user"], "vcap");
    assert_eq!(task["log_rate_limit_in_bytes_per_second"], -1);
    assert_eq!(task["result"], json!({"failure_reason": null}));
    let current = api.get(&format!("/v3/apps/{app}/relationships/current_droplet")).await.json();
    assert_eq!(task["droplet_guid"], current["data"]["guid"]);
    assert_eq!(task["relationships"]["app"]["data"]["guid"], app.as_str());
    let guid = task["guid"].as_str().unwrap().to_string();
    assert!(task["links"]["cancel"]["href"].as_str().unwrap().ends_with(&format!("/v3/tasks/{guid}/actions/cancel")));
    assert_eq!(task["links"]["cancel"]["method"], "POST");

    let done = ended(&api, &guid).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let lines: Vec<(String, String, bool)> = sim
        .app_logs(&app)
        .into_iter()
        .filter(|e| e.source_type == "APP/TASK/migrate")
        .map(|e| (e.message, e.instance_id, e.stream == cf_sim::Stream::Err))
        .collect();
    let out: Vec<&str> = lines.iter().filter(|l| !l.2).map(|l| l.0.as_str()).collect();
    assert_eq!(out, ["version v7", "postgres://db", "mem 256m", "droplet"]);
    assert!(lines.iter().any(|l| l.0 == "oops" && l.2), "stderr is logged as ERR: {lines:?}");
    assert!(lines.iter().all(|l| l.1 == "0"), "a task logs as instance 0");

    let second = create_task(&api, &app, json!({"command": "exit 3"})).await;
    assert_eq!(second["sequence_id"], 2);
    let name = second["name"].as_str().unwrap();
    assert!(
        name.len() == 8 && name.chars().all(|c| c.is_ascii_hexdigit()),
        "a generated name is 4 bytes in hex: {name}"
    );
    let failed = ended(&api, second["guid"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["result"]["failure_reason"], format!("APP/TASK/{name}: Exited with status 3"));

    let listed = api.get(&format!("/v3/apps/{app}/tasks?states=FAILED")).await.json();
    let names: Vec<&str> =
        listed["resources"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, [name]);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_create_validates_the_message_the_droplet_and_the_disk_as_cc() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("web", app_zip()).await;
    let create = |body: Value| {
        let api = &api;
        let app = app.clone();
        async move { api.post(&format!("/v3/apps/{app}/tasks"), body).await }
    };
    let detail =
        |response: &crate::common::Response| response.json()["errors"][0]["detail"].as_str().unwrap().to_string();

    let missing = create(json!({"name": "x"})).await;
    assert_eq!((missing.status, detail(&missing)), (422, "Command No command or template provided".into()));
    let sizes = create(json!({"command": "true", "memory_in_mb": 0, "disk_in_mb": 1.5, "foo": 1})).await;
    assert_eq!(sizes.status, 422);
    assert_eq!(
        detail(&sizes),
        "Unknown field(s): 'foo', Disk in mb must be an integer, Memory in mb must be greater than 0"
    );
    let disk = create(json!({"command": "true", "disk_in_mb": 4096})).await;
    assert_eq!((disk.status, detail(&disk)), (422, "Cannot request disk_in_mb greater than 2048".into()));
    let droplet = create(json!({"command": "true", "droplet_guid": "not-a-droplet-of-this-app"})).await;
    assert_eq!((droplet.status, detail(&droplet)), (404, "Droplet not found".into()));
    let no_app = api.post("/v3/apps/no-such-app/tasks", json!({"command": "true"})).await;
    assert_eq!((no_app.status, detail(&no_app)), (404, "App not found".into()));
    // TaskCreateFetcher asks the missing app for the droplet (a NoMethodError on nil), and a requested droplet
    // guid, null included, must be one of the app's droplets.
    let no_app = api.post("/v3/apps/no-such-app/tasks", json!({"command": "true", "droplet_guid": "d"})).await;
    assert_eq!((no_app.status, no_app.cf_error()), (500, (10001, "UnknownError".into())));
    let null_droplet = create(json!({"command": "true", "droplet_guid": null})).await;
    assert_eq!((null_droplet.status, detail(&null_droplet)), (404, "Droplet not found".into()));
    // A requested name is the task's, null too (use_requested_name_or_generate_name), and TaskModel refuses it.
    let null_name = create(json!({"command": "true", "name": null})).await;
    assert_eq!((null_name.status, detail(&null_name)), (422, "name is invalid, name is not present".into()));
    let template = create(json!({"template": {"process": {"guid": "p"}}})).await;
    assert!(template.status == 422 && detail(&template).contains("cf-sim does not model"), "{}", template.text());

    let bare = api.create_app("bare").await;
    let no_droplet = api.post(&format!("/v3/apps/{bare}/tasks"), json!({"command": "true"})).await;
    assert_eq!(
        (no_droplet.status, detail(&no_droplet)),
        (422, "Task must have a droplet. Specify droplet or assign current droplet to app.".into())
    );
    let unknown = api.get("/v3/tasks/no-such-task").await;
    assert_eq!((unknown.status, detail(&unknown)), (404, "Task not found".into()));
    sim.stop();
}

/// TaskCreateMessage's log rate (`numericality: { only_integer: true, greater_than: -2 }`), TasksListMessage
/// under an app (`invalid_param!`): its keys in CC's order, `order_by` created_at or updated_at, and the filters
/// across apps refused as `app_nested_request` words it; and the user TaskPresenter shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_rate_the_apps_task_list_and_the_presented_user_follow_task_create_tasks_list_and_the_presenter() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("web", app_zip()).await;
    let rates = [
        (json!(-5), "Log rate limit in bytes per second must be greater than -2"),
        (json!(1.5), "Log rate limit in bytes per second must be an integer"),
        (json!("lots"), "Log rate limit in bytes per second is not a number"),
    ];
    for (rate, detail) in rates {
        let body = json!({"command": "true", "log_rate_limit_in_bytes_per_second": rate});
        let refused = api.post(&format!("/v3/apps/{app}/tasks"), body).await;
        assert_eq!((refused.status, refused.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())), "{rate}");
        assert_eq!(refused.json()["errors"][0]["detail"], detail, "{rate}");
    }
    let unlimited = json!({"command": "true", "log_rate_limit_in_bytes_per_second": -1});
    assert_eq!(api.post(&format!("/v3/apps/{app}/tasks"), unlimited).await.status, 202);

    let invalid = "The query parameter is invalid: ";
    let queries = [
        (
            "foo=1",
            format!(
                "{invalid}Unknown query parameter(s): 'foo'. Valid parameters are: 'page', 'per_page', 'order_by', \
                 'created_ats', 'updated_ats', 'guids', 'names', 'states', 'app_guids', 'organization_guids', \
                 'space_guids', 'app_guid', 'sequence_ids', 'label_selector'"
            ),
        ),
        ("app_guids=a&space_guids=s", format!("{invalid}Unknown query parameter(s): 'space_guids', 'app_guids'")),
        ("order_by=name", format!("{invalid}Order by can only be: 'created_at', 'updated_at'")),
    ];
    for (query, detail) in queries {
        let refused = api.get(&format!("/v3/apps/{app}/tasks?{query}")).await;
        assert_eq!((refused.status, refused.cf_error()), (400, (10005, "CF-BadQueryParameter".into())), "{query}");
        assert_eq!(refused.json()["errors"][0]["detail"], detail.as_str(), "{query}");
    }
    // TaskPresenter's `presented_user`: the droplet's run action user, the task's own (none) once it is deleted.
    let task = api.get(&format!("/v3/apps/{app}/tasks")).await.json()["resources"][0].clone();
    assert_eq!(task["user"], "vcap");
    let deleted = api.delete(&format!("/v3/droplets/{}", task["droplet_guid"].as_str().unwrap())).await;
    assert_eq!(api.wait_job(&deleted.header("location").unwrap()).await["state"], "COMPLETE");
    let shown = api.get(&format!("/v3/tasks/{}", task["guid"].as_str().unwrap())).await.json();
    assert_eq!((&shown["user"], &shown["droplet_guid"]), (&Value::Null, &task["droplet_guid"]));
    let newest = api.get(&format!("/v3/apps/{app}/tasks?order_by=-created_at&sequence_ids=1")).await;
    assert_eq!(newest.status, 200, "{}", newest.text());
    assert_eq!(newest.json()["resources"][0]["sequence_id"], 1);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_is_killed_and_fails_and_an_ended_one_cannot_be_cancelled() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("web", app_zip()).await;
    let pid_file = std::env::temp_dir().join(format!("cf-sim-task-{}-{}", std::process::id(), app));
    let command = format!("echo $$ > {}; sleep 30; echo done", pid_file.display());
    let task = create_task(&api, &app, json!({"command": command, "name": "long"})).await;
    let guid = task["guid"].as_str().unwrap().to_string();
    let pid: u32 = poll(Duration::from_secs(10), || async {
        std::fs::read_to_string(&pid_file).ok().and_then(|text| text.trim().parse().ok())
    })
    .await;
    assert!(alive(pid));
    let cancelled = api.post(&format!("/v3/tasks/{guid}/actions/cancel"), json!({})).await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.text());
    assert_eq!(cancelled.json()["state"], "CANCELING");
    let done = ended(&api, &guid).await;
    assert_eq!(
        (done["state"].clone(), done["result"]["failure_reason"].clone()),
        (json!("FAILED"), json!("task was cancelled"))
    );
    let again = api.post(&format!("/v3/tasks/{guid}/actions/cancel"), json!({})).await;
    assert_eq!(again.status, 422);
    assert_eq!(again.json()["errors"][0]["detail"], "Task state is FAILED and therefore cannot be canceled");
    assert!(!alive(pid), "the task's process is killed");
    assert!(sim.app_logs(&app).iter().all(|e| e.source_type != "APP/TASK/long" || e.message != "done"));
    let _ = std::fs::remove_file(&pid_file);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_memory_counts_against_the_quotas_and_a_deleted_apps_tasks_go_with_it() {
    let sim = Sim::start(SimConfig { org_memory_limit_mb: Some(2048), ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let org = api.first_guid("/v3/organizations").await;
    let app = api.push("web", app_zip()).await;
    let over = api.post(&format!("/v3/apps/{app}/tasks"), json!({"command": "true", "memory_in_mb": 1536})).await;
    assert_eq!(over.status, 422);
    assert_eq!(over.json()["errors"][0]["detail"], "memory_in_mb exceeds organization memory quota");
    let task = create_task(&api, &app, json!({"command": "sleep 30", "memory_in_mb": 512})).await;
    let usage = api.get(&format!("/v3/organizations/{org}/usage_summary")).await.json();
    assert_eq!(usage["usage_summary"]["memory_in_mb"], 1024 + 512, "running tasks count in memory_used");
    assert_eq!(usage["usage_summary"]["per_app_tasks"], 1);
    let full = api.post(&format!("/v3/apps/{app}/tasks"), json!({"command": "true", "memory_in_mb": 1024})).await;
    assert_eq!(full.status, 422, "{}", full.text());

    let deleted = api.delete(&format!("/v3/apps/{app}")).await;
    assert!(deleted.status < 300, "{}", deleted.text());
    let guid = task["guid"].as_str().unwrap().to_string();
    poll(Duration::from_secs(10), || async {
        (api.get(&format!("/v3/tasks/{guid}")).await.status == 404).then_some(())
    })
    .await;
    let usage = api.get(&format!("/v3/organizations/{org}/usage_summary")).await.json();
    assert_eq!(usage["usage_summary"]["memory_in_mb"], 0);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_stages_again_into_a_new_droplet_here_and_copied_into_another_app() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("blue").await;
    let package = api.upload_package(&app, app_zip()).await;
    let first = api.stage(&package).await;
    let again = api.stage(&package).await;
    assert_eq!((first["state"].clone(), again["state"].clone()), (json!("STAGED"), json!("STAGED")));
    assert_ne!(first["droplet"]["guid"], again["droplet"]["guid"], "every build makes a new droplet");
    let droplet = api.get(&format!("/v3/droplets/{}", again["droplet"]["guid"].as_str().unwrap())).await.json();
    assert!(droplet["links"]["package"]["href"].as_str().unwrap().ends_with(&format!("/v3/packages/{package}")));

    let green = api.create_app("green").await;
    let copy = api
        .post(
            &format!("/v3/packages?source_guid={package}"),
            json!({"relationships": {"app": {"data": {"guid": green}}}}),
        )
        .await;
    assert_eq!(copy.status, 201, "{}", copy.text());
    let copy = copy.json()["guid"].as_str().unwrap().to_string();
    poll(Duration::from_secs(10), || async {
        (api.get(&format!("/v3/packages/{copy}")).await.json()["state"] == "READY").then_some(())
    })
    .await;
    let staged = api.stage(&copy).await;
    assert_eq!(staged["state"], "STAGED", "{staged}");
    let droplet = api.get(&format!("/v3/droplets/{}", staged["droplet"]["guid"].as_str().unwrap())).await.json();
    assert_eq!(droplet["relationships"]["app"]["data"]["guid"], green.as_str());
    assert_eq!(droplet["process_types"]["web"], "python3 server.py");

    let copy = api
        .post(
            &format!("/v3/droplets?source_guid={}", droplet["guid"].as_str().unwrap()),
            json!({"relationships": {"app": {"data": {"guid": app}}}}),
        )
        .await;
    assert_eq!(copy.status, 201, "{}", copy.text());
    assert_eq!(copy.json()["links"].get("package"), None, "a copied droplet was staged from no package");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_packages_list_newest_first_by_created_at_and_filter_by_state() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("blue").await;
    let older = api.upload_package(&app, app_zip()).await;
    let newer = api.upload_package(&app, app_zip()).await;
    let awaiting = api
        .post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}))
        .await
        .json()["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let guids = |path: String| {
        let api = &api;
        async move {
            let page = api.get(&path).await.json();
            page["resources"].as_array().unwrap().iter().map(|p| p["guid"].as_str().unwrap().to_string()).collect()
        }
    };
    let newest: Vec<String> = guids(format!("/v3/apps/{app}/packages?order_by=-created_at&per_page=1")).await;
    assert_eq!(newest, [awaiting]);
    let ready = format!("/v3/packages?app_guids={app}&states=READY&order_by=-created_at&per_page=1");
    assert_eq!(guids(ready).await, std::slice::from_ref(&newer), "the newest READY package");
    let oldest_first = format!("/v3/apps/{app}/packages?states=READY&order_by=created_at");
    assert_eq!(guids(oldest_first).await, [older, newer]);
    sim.stop();
}
