//! Managed service instances of the built-in broker: service_instance_presenter.rb's managed form, app bindings
//! created with `parameters` (service_credential_bindings_controller.rb#create, 202 with a job; app_apply_manifest.rb
//! `create_service_bindings`) and read back by `GET /v3/service_credential_bindings/:guid/parameters`
//! (`#parameters`, ServiceBindingRead: `ServiceFetchBindingParametersNotSupported` unless the instance is managed
//! and its offering `bindings_retrievable`).

use serde_json::{Value, json};

use crate::common::{Api, test_config};
use cf_sim::Sim;

/// Seeds a managed instance in the default space; returns its guid.
async fn managed(api: &Api, name: &str, bindings_retrievable: bool) -> String {
    let space = api.space_guid().await;
    let seeded = api
        .post(
            "/_sim/managed_service_instances",
            json!({"name": name, "space_guid": space, "bindings_retrievable": bindings_retrievable}),
        )
        .await;
    assert_eq!(seeded.status, 201, "{}", seeded.text());
    seeded.json()["guid"].as_str().unwrap().to_string()
}

fn binding_body(app: &str, instance: &str, extra: Value) -> Value {
    let mut body = json!({"type": "app", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance}}}});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// The binding of `app` to `instance`, as listed.
async fn listed_binding(api: &Api, app: &str, instance: &str) -> Value {
    let listed =
        api.get(&format!("/v3/service_credential_bindings?app_guids={app}&service_instance_guids={instance}")).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json()["resources"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_instance_is_presented_as_cc_presents_one() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let guid = managed(&api, "db", true).await;
    let si = api.get(&format!("/v3/service_instances/{guid}")).await.json();
    assert_eq!(si["type"], "managed");
    assert_eq!(
        (&si["maintenance_info"], &si["upgrade_available"], &si["dashboard_url"]),
        (&json!({}), &json!(false), &Value::Null)
    );
    let plan = si["relationships"]["service_plan"]["data"]["guid"].as_str().expect("a plan");
    assert!(si["links"]["service_plan"]["href"].as_str().unwrap().ends_with(&format!("/v3/service_plans/{plan}")));
    assert!(
        si["links"]["parameters"]["href"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v3/service_instances/{guid}/parameters"))
    );
    for absent in ["syslog_drain_url", "route_service_url"] {
        assert!(si.get(absent).is_none(), "{absent} is user-provided only: {si}");
    }
    assert!(si["links"].get("credentials").is_none(), "{si}");
    let managed = api.get("/v3/service_instances?type=managed").await.json();
    assert_eq!(managed["resources"].as_array().unwrap().len(), 1, "{managed}");
    let provided = api.get("/v3/service_instances?type=user-provided").await.json();
    assert!(provided["resources"].as_array().unwrap().iter().all(|s| s["guid"] != guid.as_str()), "{provided}");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_binding_keeps_its_parameters_and_answers_them() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("web").await;
    let instance = managed(&api, "db", true).await;
    let parameters = json!({"pool": 5, "password": "s3cret"});
    let created = api
        .post(
            "/v3/service_credential_bindings",
            binding_body(&app, &instance, json!({"name": "primary", "parameters": parameters})),
        )
        .await;
    assert_eq!(created.status, 202, "a managed binding is created by a job: {}", created.text());
    let job = api.wait_job(&created.header("location").unwrap()).await;
    assert_eq!((&job["state"], &job["operation"]), (&json!("COMPLETE"), &json!("service_bindings.create")));
    let binding = listed_binding(&api, &app, &instance).await;
    assert_eq!(binding["name"], "primary");
    let read =
        api.get(&format!("/v3/service_credential_bindings/{}/parameters", binding["guid"].as_str().unwrap())).await;
    assert_eq!((read.status, read.json()), (200, parameters));

    let bare = api.create_app("bare").await;
    let created = api.post("/v3/service_credential_bindings", binding_body(&bare, &instance, json!({}))).await;
    api.wait_job(&created.header("location").unwrap()).await;
    let binding = listed_binding(&api, &bare, &instance).await;
    let read =
        api.get(&format!("/v3/service_credential_bindings/{}/parameters", binding["guid"].as_str().unwrap())).await;
    assert_eq!((read.status, read.json()), (200, json!({})), "the broker's parameters default to {{}}");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_refused_unless_managed_and_retrievable() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let app = api.create_app("web").await;
    let provided = api
        .post(
            "/v3/service_instances",
            json!({"type": "user-provided", "name": "ups", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await
        .json()["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let bound = api.post("/v3/service_credential_bindings", binding_body(&app, &provided, json!({}))).await;
    assert_eq!(bound.status, 201, "{}", bound.text());
    let hidden = managed(&api, "hidden", false).await;
    let created =
        api.post("/v3/service_credential_bindings", binding_body(&app, &hidden, json!({"parameters": {"a": 1}}))).await;
    api.wait_job(&created.header("location").unwrap()).await;
    for instance in [provided, hidden] {
        let binding = listed_binding(&api, &app, &instance).await;
        let read =
            api.get(&format!("/v3/service_credential_bindings/{}/parameters", binding["guid"].as_str().unwrap())).await;
        assert_eq!(
            (read.status, read.cf_error()),
            (400, (90007, "CF-ServiceFetchBindingParametersNotSupported".into()))
        );
        assert_eq!(
            read.json()["errors"][0]["detail"],
            "This service does not support fetching service binding parameters."
        );
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manifest_binds_a_managed_instance_with_its_name_and_parameters() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let instance = managed(&api, "db", true).await;
    let yaml = "applications:\n- name: web\n  services:\n  - name: db\n    binding_name: primary\n    parameters:\n      pool: 5\n";
    let applied = api
        .raw(
            "POST",
            &format!("/v3/spaces/{space}/actions/apply_manifest"),
            "application/x-yaml",
            yaml.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(applied.status, 202, "{}", applied.text());
    let job = api.wait_job(&applied.header("location").unwrap()).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let app = api.first_guid("/v3/apps?names=web").await;
    let binding = listed_binding(&api, &app, &instance).await;
    assert_eq!(binding["name"], "primary");
    let read =
        api.get(&format!("/v3/service_credential_bindings/{}/parameters", binding["guid"].as_str().unwrap())).await;
    assert_eq!((read.status, read.json()), (200, json!({"pool": 5})));
    sim.stop();
}
