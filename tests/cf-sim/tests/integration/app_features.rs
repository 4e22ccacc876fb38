//! App features (app_features_controller.rb, app_feature_update_message.rb, manifest_features_update_message.rb,
//! actions/app_feature_update.rb, the feature presenters): listed, read and changed one by one, set by a manifest's
//! `features:` and rendered in the generated manifest as the app has them.

use serde_json::{Value, json};

use crate::common::{Api, test_config};
use cf_sim::Sim;

fn enabled(features: &Value) -> Vec<(String, bool)> {
    features["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f["enabled"].as_bool().unwrap()))
        .collect()
}

fn pairs(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(n, on)| ((*n).to_owned(), *on)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_features_are_read_changed_and_carried_by_manifests_as_cc_does() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("f").await;
    let features = api.get(&format!("/v3/apps/{app}/features")).await.json();
    let defaults =
        [("ssh", true), ("revisions", true), ("service-binding-k8s", false), ("file-based-vcap-services", false)];
    assert_eq!(enabled(&features), pairs(&defaults));
    assert_eq!(features["pagination"]["total_results"], 4);
    assert_eq!(features["resources"][0]["description"], "Enable SSHing into the app.");

    let unknown = api.get(&format!("/v3/apps/{app}/features/teleport")).await;
    assert_eq!((unknown.status, unknown.cf_error().1.as_str()), (404, "CF-ResourceNotFound"));
    assert_eq!(unknown.json()["errors"][0]["detail"], "Feature not found");
    let not_bool = api.patch(&format!("/v3/apps/{app}/features/ssh"), json!({"enabled": "no"})).await;
    assert_eq!(not_bool.status, 422);
    assert_eq!(not_bool.json()["errors"][0]["detail"], "Enabled must be a boolean");
    let off = api.patch(&format!("/v3/apps/{app}/features/ssh"), json!({"enabled": false})).await;
    assert_eq!(off.json(), json!({"name": "ssh", "description": "Enable SSHing into the app.", "enabled": false}));
    let ssh = api.get(&format!("/v3/apps/{app}/ssh_enabled")).await.json();
    assert_eq!(ssh, json!({"enabled": false, "reason": "ssh is disabled for app"}));
    assert_eq!(
        api.patch(&format!("/v3/apps/{app}/features/file-based-vcap-services"), json!({"enabled": true})).await.status,
        200
    );
    let both = api.patch(&format!("/v3/apps/{app}/features/service-binding-k8s"), json!({"enabled": true})).await;
    assert_eq!(both.status, 422);
    assert_eq!(
        both.json()["errors"][0]["detail"],
        "'file-based-vcap-services' and 'service-binding-k8s' features cannot be enabled at the same time."
    );

    let generated = api.get(&format!("/v3/apps/{app}/manifest")).await.text();
    assert!(generated.contains("ssh: false") && generated.contains("file-based-vcap-services: true"), "{generated}");
    let space = api.space_guid().await;
    let yaml = "applications:\n- name: f\n  features:\n    ssh: true\n    revisions: false\n";
    let applied =
        api.raw("POST", &format!("/v3/spaces/{space}/actions/apply_manifest"), "application/x-yaml", yaml.into()).await;
    assert_eq!(applied.status, 202, "{}", applied.text());
    let job = api.wait_job(&applied.header("location").unwrap()).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let features = api.get(&format!("/v3/apps/{app}/features")).await.json();
    let now = [("ssh", true), ("revisions", false), ("service-binding-k8s", false), ("file-based-vcap-services", true)];
    assert_eq!(enabled(&features), pairs(&now), "a manifest changes only the features it names");
    sim.stop();
}
