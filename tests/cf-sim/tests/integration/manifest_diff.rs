//! `POST /v3/spaces/:guid/manifest_diff` against cloud_controller_ng's space_manifests_controller.rb,
//! space_diff_manifest.rb and the json-diff gem 0.4.1 (spec/request/space_manifests_spec.rb and
//! spec/unit/actions/space_diff_manifest_spec.rb for the expected answers).

use serde_json::{Value, json};

use crate::common::{Api, Response, test_config};
use cf_sim::config::CcApiVersion;
use cf_sim::{Sim, SimConfig};

async fn post_yaml(api: &Api, action: &str, content_type: &str, yaml: &str) -> Response {
    let space = api.space_guid().await;
    api.raw("POST", &format!("/v3/spaces/{space}/{action}"), content_type, yaml.as_bytes().to_vec()).await
}

/// Applies a manifest and waits for its job to complete.
async fn apply(api: &Api, yaml: &str) {
    let response = post_yaml(api, "actions/apply_manifest", "application/x-yaml", yaml).await;
    assert_eq!(response.status, 202, "{}", response.text());
    let job = api.wait_job(&response.header("location").unwrap()).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
}

/// The `diff` of a 201 answer.
async fn diff(api: &Api, yaml: &str) -> Value {
    let response = post_yaml(api, "manifest_diff", "application/x-yaml", yaml).await;
    assert_eq!(response.status, 201, "{}", response.text());
    assert!(response.header("content-type").unwrap().starts_with("application/json"));
    response.json()["diff"].clone()
}

fn assert_error(response: &Response, status: u16, code: u64, title: &str, detail: &str) {
    assert_eq!((response.status, response.cf_error()), (status, (code, title.into())), "{}", response.text());
    assert_eq!(response.json()["errors"][0]["detail"], detail);
}

/// The manifest the app was pushed with, with a web process given under `processes`.
fn manifest(domain: &str, web: &str, extra: &str) -> String {
    format!(
        "applications:\n- name: diff-app\n  env:\n    GREETING: hello\n  routes:\n  - route: diff-app.{domain}\n\
         {extra}  processes:\n  - type: web\n{web}"
    )
}

const WEB: &str = "    instances: 2\n    memory: 1024M\n    disk_quota: 512M\n    health-check-type: port\n";

/// An unchanged manifest has no changes (with `1G` for `1024M`, app-level memory and disk ignored); changed
/// process fields are replaces with `was`, a new env var an add, an unknown app all adds.
#[tokio::test]
async fn changes_are_json_diff_ops_against_the_generated_manifest() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let domain = sim.info().domain.clone();
    apply(&api, &manifest(&domain, WEB, "")).await;

    assert_eq!(diff(&api, &manifest(&domain, WEB, "")).await, json!([]));
    let in_gigabytes = WEB.replace("1024M", "1G");
    let app_level = "  memory: 4G\n  disk_quota: 4G\n  disk-quota: 4G\n";
    assert_eq!(diff(&api, &manifest(&domain, &in_gigabytes, app_level)).await, json!([]), "normalised, or ignored");

    let scaled = WEB.replace("instances: 2", "instances: 3").replace("1024M", "2G");
    assert_eq!(
        diff(&api, &manifest(&domain, &scaled, "")).await,
        json!([
            {"op": "replace", "path": "/applications/0/processes/0/instances", "was": 2, "value": 3},
            {"op": "replace", "path": "/applications/0/processes/0/memory", "was": "1024M", "value": "2048M"},
        ])
    );
    let env = manifest(&domain, WEB, "").replace("GREETING: hello\n", "GREETING: hello\n    COLOR: blue\n");
    assert_eq!(diff(&api, &env).await, json!([{"op": "add", "path": "/applications/0/env/COLOR", "value": "blue"}]));
    // The app level is compared with the web process merged into it; an env value is compared as sent.
    let top = "applications:\n- name: diff-app\n  instances: 5\n  health-check-type: port\n  env:\n    GREETING: 1\n";
    assert_eq!(
        diff(&api, top).await,
        json!([
            {"op": "replace", "path": "/applications/0/instances", "was": 2, "value": 5},
            {"op": "replace", "path": "/applications/0/env/GREETING", "was": "hello", "value": 1},
        ])
    );
    // An unlimited log rate is the integer -1 in the generated manifest and the string "-1" once normalised.
    let unlimited = "applications:\n- name: diff-app\n  log-rate-limit-per-second: -1\n";
    assert_eq!(
        diff(&api, unlimited).await,
        json!([{"op": "replace", "path": "/applications/0/log-rate-limit-per-second", "was": -1, "value": "-1"}])
    );
    // Only the texts -1 and 0 are kept as they are: `-1B` (-1 bytes, unlimited too) is written back as -1B.
    let in_bytes = "applications:\n- name: diff-app\n  log-rate-limit-per-second: -1B\n";
    assert_eq!(
        diff(&api, in_bytes).await,
        json!([{"op": "replace", "path": "/applications/0/log-rate-limit-per-second", "was": -1, "value": "-1B"}])
    );
    // Names are matched exactly: another case is a new app, every key an add but memory.
    let other = "applications:\n- name: Diff-App\n  memory: 1G\n  instances: 2\n  stack: cflinuxfs4\n";
    assert_eq!(
        diff(&api, other).await,
        json!([
            {"op": "add", "path": "/applications/0/name", "value": "Diff-App"},
            {"op": "add", "path": "/applications/0/instances", "value": 2},
            {"op": "add", "path": "/applications/0/stack", "value": "cflinuxfs4"},
        ])
    );
}

/// remove_default_missing_fields deletes the existing processes and routes the manifest does not name while it
/// iterates them, so the one after each deleted one is kept, and only that one shows as removed; reordered
/// processes are a move whose `from` CC leaves relative to the key.
#[tokio::test]
async fn processes_and_routes_are_pruned_as_space_diff_manifest_does() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let domain = sim.info().domain.clone();
    let routes = |hosts: &[&str]| hosts.iter().map(|h| format!("  - route: {h}.{domain}\n")).collect::<String>();
    let app = |routes: &str, processes: &str| {
        format!("applications:\n- name: routed\n  routes:\n{routes}  processes:\n{processes}")
    };
    let both = "  - type: web\n    instances: 1\n  - type: worker\n    instances: 1\n";
    apply(&api, &app(&routes(&["a", "b", "c"]), both)).await;

    assert_eq!(diff(&api, &app(&routes(&["a", "b", "c"]), both)).await, json!([]));
    assert_eq!(
        diff(&api, &app(&routes(&["c"]), both)).await,
        json!([{
            "op": "remove",
            "path": "/applications/0/routes/0",
            "was": {"route": format!("b.{domain}"), "protocol": "http1", "options": {}},
        }]),
        "a is deleted, b skipped and left, c kept"
    );
    assert_eq!(diff(&api, &app(&routes(&["a", "b"]), both)).await, json!([]), "c is deleted");
    let full_c = json!({"route": format!("c.{domain}"), "protocol": "http1", "options": {}});
    assert_eq!(
        diff(&api, &app(&routes(&["a", "c"]), both)).await,
        json!([
            {"op": "remove", "path": "/applications/0/routes/1", "was": full_c},
            {"op": "add", "path": "/applications/0/routes/1", "value": {"route": format!("c.{domain}")}},
        ]),
        "b is deleted and c skipped: unpruned, it is too unlike the manifest's c to pair"
    );
    let http2 = app(&format!("  - route: a.{domain}\n    protocol: http2\n{}", routes(&["b", "c"])), both);
    assert_eq!(
        diff(&api, &http2).await,
        json!([{"op": "replace", "path": "/applications/0/routes/0/protocol", "was": "http1", "value": "http2"}])
    );

    let web_only = "  - type: web\n    instances: 1\n";
    assert_eq!(diff(&api, &app(&routes(&["a", "b", "c"]), web_only)).await, json!([]));
    let reordered = "  - type: worker\n    instances: 1\n  - type: web\n    instances: 1\n";
    assert_eq!(
        diff(&api, &app(&routes(&["a", "b", "c"]), reordered)).await,
        json!([{"op": "move", "from": "/0", "path": "/applications/0/processes/1"}])
    );
}

/// The controller's refusals: content type, space, body, version, applications, and the message's errors; what
/// cf-sim does not model is refused by name.
#[tokio::test]
async fn bad_requests_are_refused_as_cc_refuses_them() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let valid = "applications:\n- name: new-app\n";

    let json_body = post_yaml(&api, "manifest_diff", "application/json", valid).await;
    assert_error(&json_body, 400, 1004, "CF-BadRequest", "Bad request: Content-Type must be yaml");
    let charset = post_yaml(&api, "manifest_diff", "application/x-yaml; charset=utf-8", valid).await;
    assert_eq!(charset.status, 201, "{}", charset.text());
    assert_eq!(post_yaml(&api, "manifest_diff", "text/yaml", valid).await.status, 201);

    let missing = api.raw("POST", "/v3/spaces/no-such-space/manifest_diff", "application/x-yaml", valid.into()).await;
    assert_error(&missing, 404, 10010, "CF-ResourceNotFound", "Space not found");

    let version = post_yaml(&api, "manifest_diff", "application/x-yaml", &format!("version: 2\n{valid}")).await;
    let unsupported = "Unsupported manifest schema version. Currently supported versions: [1].";
    assert_error(&version, 422, 10008, "CF-UnprocessableEntity", unsupported);
    let as_string = post_yaml(&api, "manifest_diff", "application/x-yaml", &format!("version: '1'\n{valid}")).await;
    assert_error(&as_string, 422, 10008, "CF-UnprocessableEntity", unsupported);
    assert_eq!(
        diff(&api, &format!("version: 1\n{valid}")).await,
        json!([{"op": "add", "path": "/applications/0/name", "value": "new-app"}])
    );

    let none = post_yaml(&api, "manifest_diff", "application/x-yaml", "applications: []\n").await;
    assert_error(&none, 422, 10008, "CF-UnprocessableEntity", "Cannot parse manifest with no 'applications' field.");
    let scalar = post_yaml(&api, "manifest_diff", "application/x-yaml", "just a string\n").await;
    assert_error(
        &scalar,
        400,
        1001,
        "CF-MessageParseError",
        "Request invalid due to parse error: invalid request body",
    );
    let twice = post_yaml(&api, "manifest_diff", "application/x-yaml", "applications: []\napplications: []\n").await;
    assert_eq!(twice.status, 422, "{}", twice.text());
    assert!(twice.text().contains("does not model a manifest with a duplicate key"), "{}", twice.text());
    let broken = post_yaml(&api, "manifest_diff", "application/x-yaml", "applications: [\n").await;
    assert_error(&broken, 500, 10001, "UnknownError", "An unknown error occurred.");

    let anchors = "applications:\n- name: blah\n  processes:\n  - type: web\n    memory: &default_value 321M\n    disk_quota: *default_value\n";
    let aliased = post_yaml(&api, "manifest_diff", "application/x-yaml", anchors).await;
    assert_error(&aliased, 400, 1004, "CF-BadRequest", "Bad request: Manifest does not support Anchors and Aliases");
    let large = format!("{valid}# {}\n", "x".repeat(1024 * 1024));
    let too_large = post_yaml(&api, "manifest_diff", "application/x-yaml", &large).await;
    let size = "Bad request: Manifest size is too large. The maximum supported size is 1MB.";
    assert_error(&too_large, 400, 1004, "CF-BadRequest", size);
    let nameless = post_yaml(&api, "manifest_diff", "application/x-yaml", "applications:\n- instances: 1\n").await;
    let unnamed = "For application at index 0: Name must not be empty";
    assert_error(&nameless, 422, 10008, "CF-UnprocessableEntity", unnamed);

    let invalid = post_yaml(
        &api,
        "manifest_diff",
        "application/x-yaml",
        "applications:\n- name: x\n  buildpack: a\n  buildpacks: [b]\n",
    )
    .await;
    assert_error(
        &invalid,
        422,
        10008,
        "CF-UnprocessableEntity",
        "For application 'x': Buildpack and Buildpacks fields cannot be used together.",
    );
    let two_apps = "applications:\n- name: x\n  buildpack: a\n  buildpacks: [b]\n- name: y\n- name: '  '\n- name: 5\n";
    let both = post_yaml(&api, "manifest_diff", "application/x-yaml", two_apps).await;
    assert_eq!(both.status, 422, "{}", both.text());
    let details: Vec<Value> = both.json()["errors"].as_array().unwrap().iter().map(|e| e["detail"].clone()).collect();
    assert_eq!(
        details,
        [
            "For application 'x': Buildpack and Buildpacks fields cannot be used together.",
            "For application at index 2: Name must not be empty",
            "For application '5': Name must be a string",
        ],
        "one CompoundError"
    );
    let sidecars =
        post_yaml(&api, "manifest_diff", "application/x-yaml", "applications:\n- name: x\n  sidecars:\n  - name: s\n")
            .await;
    assert_eq!(sidecars.status, 422, "{}", sidecars.text());
    assert!(sidecars.text().contains("does not model the manifest key(s) 'sidecars'"), "{}", sidecars.text());
}

/// The endpoint arrived in 3.88.0 (080a393846); its rules are modelled from 3.197.0 (`features`, d04c8c7a41), and
/// until 3.217.0 (ff9ac83b1a) a new app's `features` raised NoMethodError.
#[tokio::test]
async fn older_ccs_answer_as_their_version_or_are_refused_by_name() {
    let at = |version: &str| {
        Sim::start(SimConfig { cc_api_version: CcApiVersion::parse(version).unwrap(), ..test_config() })
    };
    let features = "applications:\n- name: featured\n  features:\n    ssh: true\n";

    let sim = at("3.87.0").unwrap();
    let api = Api::login(&sim).await;
    let none = post_yaml(&api, "manifest_diff", "application/x-yaml", features).await;
    assert_error(&none, 404, 10000, "CF-NotFound", "Unknown request");

    let sim = at("3.196.0").unwrap();
    let api = Api::login(&sim).await;
    let older = post_yaml(&api, "manifest_diff", "application/x-yaml", features).await;
    assert_eq!(older.status, 422, "{}", older.text());
    assert!(older.text().contains("cf-sim does not model manifest_diff before CC API 3.197.0"), "{}", older.text());

    let sim = at("3.216.0").unwrap();
    let api = Api::login(&sim).await;
    let new_app = post_yaml(&api, "manifest_diff", "application/x-yaml", features).await;
    assert_error(&new_app, 500, 10001, "UnknownError", "An unknown error occurred.");
    apply(&api, "applications:\n- name: featured\n").await;
    assert_eq!(diff(&api, features).await, json!([]));

    let sim = at("3.217.0").unwrap();
    let api = Api::login(&sim).await;
    assert_eq!(
        diff(&api, features).await,
        json!([
            {"op": "add", "path": "/applications/0/name", "value": "featured"},
            {"op": "add", "path": "/applications/0/features", "value": {"ssh": true}},
        ])
    );
}

/// The keys a resource compares: sent as CC presents them they show nothing; other forms of the same settings
/// are changes (`buildpack` is never presented, services are names, labels a whole hash).
#[tokio::test]
async fn only_the_presented_form_of_a_setting_compares_equal() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let domain = sim.info().domain.clone();
    let space = api.space_guid().await;
    let db = json!({"type": "user-provided", "name": "db", "relationships": {"space": {"data": {"guid": space}}}});
    assert_eq!(api.post("/v3/service_instances", db).await.status, 201);
    let full = format!(
        "applications:\n- name: full\n  buildpacks: [binary_buildpack]\n  stack: cflinuxfs4\n  services: [db]\n  \
         metadata:\n    labels:\n      team: a\n      tier: web\n  routes:\n  - route: full.{domain}\n  processes:\n  \
         - type: web\n    instances: 1\n    memory: 256M\n"
    );
    apply(&api, &full).await;
    assert_eq!(diff(&api, &full).await, json!([]));

    let singular = full.replace("buildpacks: [binary_buildpack]", "buildpack: binary_buildpack");
    assert_eq!(
        diff(&api, &singular).await,
        json!([{"op": "add", "path": "/applications/0/buildpack", "value": "binary_buildpack"}])
    );
    let object = full.replace("services: [db]", "services:\n  - name: db");
    assert_eq!(
        diff(&api, &object).await,
        json!([
            {"op": "remove", "path": "/applications/0/services/0", "was": "db"},
            {"op": "add", "path": "/applications/0/services/0", "value": {"name": "db"}},
        ])
    );
    let fewer_labels = full.replace("      tier: web\n", "");
    assert_eq!(
        diff(&api, &fewer_labels).await,
        json!([{"op": "remove", "path": "/applications/0/metadata/labels/tier", "was": "web"}])
    );
    let random = full.replace("  stack: cflinuxfs4\n", "  stack: cflinuxfs4\n  random-route: true\n");
    assert_eq!(
        diff(&api, &random).await,
        json!([{"op": "add", "path": "/applications/0/random-route", "value": true}])
    );
}
