//! Conformance with the Cloud Controller's source (cloud_controller_ng at CC API 3.228, commit 3bbba906) for apps,
//! processes, packages, builds, droplets, manifests, metadata and discovery: each test names the upstream files
//! whose rules it pins.

use serde_json::{Value, json};

use crate::common::{Api, Response, app_zip, test_config};
use cf_sim::config::CcApiVersion;
use cf_sim::{Sim, SimConfig};

fn detail(response: &Response) -> String {
    response.json()["errors"][0]["detail"].as_str().unwrap_or("").to_string()
}

/// A 422 CF-UnprocessableEntity with exactly this detail.
fn assert_unprocessable(response: &Response, expected: &str) {
    assert_eq!(
        (response.status, response.cf_error()),
        (422, (10008, "CF-UnprocessableEntity".into())),
        "{}",
        response.text()
    );
    assert_eq!(detail(response), expected);
}

async fn create_app_with(api: &Api, extra: Value) -> Response {
    let space = api.space_guid().await;
    let mut body = json!({"name": "meta", "relationships": {"space": {"data": {"guid": space}}}});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    api.post("/v3/apps", body).await
}

/// Posts a manifest to the default space.
async fn apply_manifest(api: &Api, yaml: &str) -> Response {
    let space = api.space_guid().await;
    api.raw(
        "POST",
        &format!("/v3/spaces/{space}/actions/apply_manifest"),
        "application/x-yaml",
        yaml.as_bytes().to_vec(),
    )
    .await
}

/// Applies a manifest the request accepts and returns the finished job.
async fn applied_job(api: &Api, yaml: &str) -> Value {
    let response = apply_manifest(api, yaml).await;
    assert_eq!(response.status, 202, "{}", response.text());
    api.wait_job(&response.header("location").unwrap()).await
}

async fn sim_at(version: &str) -> (Sim, Api) {
    let config = SimConfig { cc_api_version: CcApiVersion::parse(version).unwrap(), ..test_config() };
    let sim = Sim::start(config).unwrap();
    let api = Api::login(&sim).await;
    (sim, api)
}

/// app/messages/validators/metadata_validator.rb, app/messages/metadata_validator_helper.rb and
/// lib/cloud_controller/domain_decorator.rb: a prefix must be a DNS name with a dot, label keys are checked even
/// for a removal, annotation keys only with a value; every endpoint that takes metadata answers the same 422; a
/// `label_selector` is checked the same way (label_selector_requirement_validator.rb), as a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_follows_ccs_metadata_validator_on_every_endpoint() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let dotless = create_app_with(&api, json!({"metadata": {"labels": {"blue-green/lock": "held"}}})).await;
    assert_unprocessable(&dotless, "Metadata label key error: prefix 'blue-green' must be in valid dns format");
    let ours = json!({"labels": {"cf-blue-green-resource.concourse/lock": "held"}, "annotations": {"cf-blue-green-resource.concourse/journal": "{\"v\":1}"}});
    let created = create_app_with(&api, json!({"metadata": ours})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let app = created.json()["guid"].as_str().unwrap().to_string();

    let selected = api.get("/v3/apps?label_selector=cf-blue-green-resource.concourse/lock=held").await.json();
    assert_eq!(selected["pagination"]["total_results"], 1, "{selected}");
    let dotless = api.get("/v3/apps?label_selector=blue-green/lock").await;
    assert_eq!((dotless.status, dotless.cf_error().0), (400, 10005));
    assert_eq!(detail(&dotless), "The query parameter is invalid: prefix 'blue-green' must be in valid dns format");
    let removal =
        api.patch(&format!("/v3/apps/{app}"), json!({"metadata": {"labels": {"blue-green/lock": null}}})).await;
    assert_unprocessable(&removal, "Metadata label key error: prefix 'blue-green' must be in valid dns format");
    let annotation_removal =
        api.patch(&format!("/v3/apps/{app}"), json!({"metadata": {"annotations": {"blue-green/journal": null}}})).await;
    assert_eq!(annotation_removal.status, 200, "an annotation removal's key is not checked");
    let null = api.patch(&format!("/v3/apps/{app}"), json!({"metadata": null})).await;
    assert_unprocessable(&null, "Metadata must be an object");
    let extra = api.patch(&format!("/v3/apps/{app}"), json!({"metadata": {"tags": {}}})).await;
    assert_unprocessable(&extra, "Metadata has unexpected field(s): 'tags'");
    let reserved =
        api.patch(&format!("/v3/apps/{app}"), json!({"metadata": {"labels": {"cloudfoundry.org/x": "y"}}})).await;
    assert_unprocessable(&reserved, "Metadata label key error: prefix 'cloudfoundry.org' is reserved");
    let long_value = "v".repeat(5001);
    let long = api
        .patch(&format!("/v3/apps/{app}"), json!({"metadata": {"annotations": {"example.com/note": long_value}}}))
        .await;
    assert_unprocessable(&long, "Metadata annotation value error: 'vvvvvvvv...' is greater than 5000 characters");

    let bad = json!({"metadata": {"labels": {"blue-green/x": "y"}}});
    let web = api.first_guid(&format!("/v3/apps/{app}/processes")).await;
    let package = api.upload_package(&app, app_zip()).await;
    let build = api.stage(&package).await;
    let droplet = build["droplet"]["guid"].as_str().unwrap().to_string();
    let image = api.patch(&format!("/v3/droplets/{droplet}"), json!({"image": "i"})).await;
    assert_unprocessable(&image, "Images can only be updated for docker droplets");
    let credentials = api.patch(&format!("/v3/packages/{package}"), json!({"username": "u"})).await;
    assert_eq!(credentials.status, 422);
    assert!(detail(&credentials).contains("does not model field(s): 'username'"), "{}", credentials.text());
    let build_state =
        api.patch(&format!("/v3/builds/{}", build["guid"].as_str().unwrap()), json!({"state": "STAGED"})).await;
    assert_eq!(build_state.status, 422);
    assert!(detail(&build_state).contains("does not model field(s): 'state'"), "{}", build_state.text());
    let no_package = api.post("/v3/builds", json!({})).await;
    assert_unprocessable(
        &no_package,
        "Package guid can't be blank, Package guid must be a string, Package guid must be between 1 and 200 characters",
    );
    let unknown_package = api.post("/v3/builds", json!({"package": {"guid": "nope"}})).await;
    assert_unprocessable(
        &unknown_package,
        "Unable to use package. Ensure that the package exists and you have access to it.",
    );
    let staging = api.post("/v3/builds", json!({"package": {"guid": package}, "staging_memory_in_mb": 0})).await;
    assert_unprocessable(&staging, "Staging memory in mb must be greater than 0");
    let build_env = api.post("/v3/builds", json!({"package": {"guid": package}, "environment_variables": {}})).await;
    assert_eq!(build_env.status, 422);
    assert!(detail(&build_env).contains("does not model field(s): 'environment_variables'"), "{}", build_env.text());
    for path in [
        format!("/v3/processes/{web}"),
        format!("/v3/packages/{package}"),
        format!("/v3/builds/{}", build["guid"].as_str().unwrap()),
        format!("/v3/droplets/{droplet}"),
    ] {
        let response = api.patch(&path, bad.clone()).await;
        assert_unprocessable(&response, "Metadata label key error: prefix 'blue-green' must be in valid dns format");
    }
    sim.stop();
}

/// app/presenters/v3/app_presenter.rb and spec/request/apps_spec.rb: from 3.175.0 (commit d543a66688) every app
/// has `relationships.current_droplet`, `{"data": {"guid": null}}` without a droplet, the POST answer included;
/// apps_controller.rb#current_droplet_relationship answers 404 without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_droplet_renders_a_null_guid_without_a_droplet() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let created = create_app_with(&api, json!({})).await;
    assert_eq!(created.json()["relationships"]["current_droplet"], json!({"data": {"guid": null}}));
    let app = created.json()["guid"].as_str().unwrap().to_string();
    let fetched = api.get(&format!("/v3/apps/{app}")).await.json();
    assert_eq!(fetched["relationships"]["current_droplet"], json!({"data": {"guid": null}}));
    let listed = api.get("/v3/apps").await.json();
    assert_eq!(listed["resources"][0]["relationships"]["current_droplet"], json!({"data": {"guid": null}}));
    let removal = api.patch(&format!("/v3/apps/{app}/relationships/current_droplet"), json!({"data": null})).await;
    assert_unprocessable(&removal, "Current droplet cannot be removed. Replace it with a preferable droplet.");
    let relationship = api.get(&format!("/v3/apps/{app}/relationships/current_droplet")).await;
    assert_eq!((relationship.status, relationship.cf_error().0), (404, 10010));
    assert_eq!(detail(&relationship), "Droplet not found");

    let pushed = api.push("with-droplet", app_zip()).await;
    let app = api.get(&format!("/v3/apps/{pushed}")).await.json();
    assert!(app["relationships"]["current_droplet"]["data"]["guid"].is_string(), "{app}");
    sim.stop();
}

/// `--cc-api-version`: app/controllers/runtime/root_controller.rb shows the version at `GET /` (and v2's,
/// `config/version_v2`, with `temporary_enable_v2`); before 3.175.0 an app has no `current_droplet` relationship.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_cc_api_version_presents_that_versions_shapes() {
    let (sim, api) = sim_at("3.174.0").await;
    let root = api.get("/").await.json();
    assert_eq!(root["links"]["cloud_controller_v3"]["meta"]["version"], "3.174.0");
    assert!(root["links"].get("cloud_controller_v2").is_none(), "v2's version is known only for 3.228.0: {root}");
    let created = create_app_with(&api, json!({})).await.json();
    assert_eq!(created["relationships"], json!({"space": {"data": {"guid": api.space_guid().await}}}));
    sim.stop();
    let (sim, api) = sim_at("3.228.0").await;
    let root = api.get("/").await.json();
    assert_eq!(root["links"]["cloud_controller_v3"]["meta"]["version"], "3.228.0");
    assert_eq!(root["links"]["cloud_controller_v2"]["meta"]["version"], "2.293.0", "config/version_v2");
    assert!(root["links"].get("bits_service").is_none(), "removed in c2b19637c7: {root}");
    let app = api.create_app("new").await;
    let process = api.get(&format!("/v3/apps/{app}/processes/web")).await.json();
    for field in ["user", "readiness_health_check", "log_rate_limit_in_bytes_per_second"] {
        assert!(process.get(field).is_some(), "{field}: {process}");
    }
    sim.stop();
}

/// app/presenters/v3/process_presenter.rb and process_update_message.rb / process_scale_message.rb over time:
/// `log_rate_limit_in_bytes_per_second` from 3.126.0 (6f115cdf6c), `readiness_health_check` from 3.145.0
/// (89eb910c6d), `user` from 3.198.0 (384b017c2e); before, the field is neither rendered nor accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_have_the_fields_of_their_cc_api_version() {
    // (field, method, path after the process, a value the request would set)
    let fields = [
        ("user", "PATCH", "", json!("vcap")),
        ("readiness_health_check", "PATCH", "", json!({"type": "process"})),
        ("log_rate_limit_in_bytes_per_second", "POST", "/actions/scale", json!(-1)),
    ];
    for (version, newest_absent) in [("3.197.0", 1), ("3.144.0", 2), ("3.125.0", 3)] {
        let (sim, api) = sim_at(version).await;
        let app = api.create_app("old").await;
        let web = format!("/v3/apps/{app}/processes/web");
        let process = api.get(&web).await.json();
        for (i, (field, method, suffix, value)) in fields.iter().enumerate() {
            if i >= newest_absent {
                assert!(process.get(field).is_some(), "{version} {field}: {process}");
                continue;
            }
            assert!(process.get(field).is_none(), "{version} {field}: {process}");
            let refused = api.call(method, &format!("{web}{suffix}"), Some(json!({ *field: value }))).await;
            assert_unprocessable(&refused, &format!("Unknown field(s): '{field}'"));
        }
        sim.stop();
    }
}

/// app/messages/droplet_create_message.rb (relationships and process_types only: metadata is an unknown field),
/// droplet_update_message.rb (metadata, image) and app/actions/droplet_update.rb, droplets_controller.rb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droplet_create_takes_no_metadata_and_update_does() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("drops").await;
    let relationships = json!({"app": {"data": {"guid": app}}});
    let labelled = api
        .post("/v3/droplets", json!({"relationships": relationships, "metadata": {"labels": {"example.com/a": "b"}}}))
        .await;
    assert_unprocessable(&labelled, "Unknown field(s): 'metadata'");
    let bad_types =
        api.post("/v3/droplets", json!({"relationships": relationships, "process_types": {"web": 1}})).await;
    assert_unprocessable(&bad_types, "Process types value must be a string");
    let missing = api.post("/v3/droplets", json!({"relationships": {"app": {"data": {"guid": "nope"}}}})).await;
    assert_unprocessable(&missing, "App with guid \"nope\" does not exist, or you do not have access to it.");
    let created =
        api.post("/v3/droplets", json!({"relationships": relationships, "process_types": {"web": "run"}})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let droplet = created.json()["guid"].as_str().unwrap().to_string();
    let patched =
        api.patch(&format!("/v3/droplets/{droplet}"), json!({"metadata": {"labels": {"example.com/a": "b"}}})).await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(patched.json()["metadata"]["labels"]["example.com/a"], "b");
    let image = api.patch(&format!("/v3/droplets/{droplet}"), json!({"image": "x"})).await;
    assert_unprocessable(&image, "Droplet image can only be updated on staged droplets");
    let unknown = api.patch(&format!("/v3/droplets/{droplet}"), json!({"process_types": {}})).await;
    assert_unprocessable(&unknown, "Unknown field(s): 'process_types'");
    sim.stop();
}

/// app/messages/app_create_message.rb and app_update_message.rb (name a string of at most 255 characters, no
/// other keys), app/actions/app_create.rb (a taken name: v3 CF-UniquenessError 10016) and app_update.rb (a
/// taken name: CF-UnprocessableEntity; the lifecycle type cannot change), app/messages/validators.rb
/// (RelationshipValidator, LifecycleValidator), buildpack_lifecycle_data_message.rb,
/// empty_lifecycle_data_message.rb and lib/cloud_controller/diego/lifecycles/buildpack_lifecycle_data_validator.rb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_names_and_renames_follow_app_create_and_app_update() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let relationships = json!({"space": {"data": {"guid": space}}});
    let too_long = api.post("/v3/apps", json!({"name": "a".repeat(256), "relationships": relationships})).await;
    assert_unprocessable(&too_long, "Name is too long (maximum is 255 characters)");
    let longest = api.post("/v3/apps", json!({"name": "a".repeat(255), "relationships": relationships})).await;
    assert_eq!(longest.status, 201, "{}", longest.text());
    let not_string = api.post("/v3/apps", json!({"name": 5, "relationships": relationships})).await;
    assert_unprocessable(&not_string, "Name must be a string");
    let no_space = api.post("/v3/apps", json!({"name": "x"})).await;
    assert_unprocessable(&no_space, "Relationships 'relationships' is not an object");
    let org = api.post("/v3/apps", json!({"name": "x", "relationships": {"org": {"data": {"guid": space}}}})).await;
    assert_unprocessable(
        &org,
        "Relationships Unknown field(s): 'org', Relationships Space can't be blank, \
         Relationships Space must be structured like this: \"space: {\"data\": {\"guid\": \"valid-guid\"}}\"",
    );
    let nowhere =
        api.post("/v3/apps", json!({"name": "x", "relationships": {"space": {"data": {"guid": "nope"}}}})).await;
    assert_unprocessable(&nowhere, "Invalid space. Ensure that the space exists and you have access to it.");
    let vcap = api
        .post(
            "/v3/apps",
            json!({"name": "x", "relationships": relationships, "environment_variables": {"VCAP_A": "1"}}),
        )
        .await;
    assert_unprocessable(&vcap, "environment_variables cannot start with VCAP_");
    let combined = api.post("/v3/apps", json!({"name": 5, "relationships": relationships, "bogus": 1})).await;
    assert_unprocessable(&combined, "Unknown field(s): 'bogus', Name must be a string");

    for (lifecycle, expected) in [
        (json!({"type": "java", "data": {}}), "Lifecycle type is not included in the list: buildpack, docker, cnb"),
        (json!({"type": "buildpack"}), "Lifecycle data must be an object"),
        (json!({"type": "buildpack", "data": {"buildpacks": [1]}}), "Lifecycle Buildpacks can only contain strings"),
        (json!({"type": "buildpack", "data": {"stack": "windows"}}), "Stack must be an existing stack"),
        (json!({"type": "docker", "data": {"image": "x"}}), "Lifecycle Unknown field(s): 'image'"),
    ] {
        let response =
            api.post("/v3/apps", json!({"name": "lc", "relationships": relationships, "lifecycle": lifecycle})).await;
        assert_unprocessable(&response, expected);
    }

    let first = api.create_app("taken").await;
    let duplicate = api.post("/v3/apps", json!({"name": "taken", "relationships": relationships})).await;
    assert_eq!((duplicate.status, duplicate.cf_error()), (422, (10016, "CF-UniquenessError".into())));
    assert_eq!(detail(&duplicate), "App with the name 'taken' already exists.");
    let other = api.create_app("other").await;
    let rename = api.patch(&format!("/v3/apps/{other}"), json!({"name": "taken"})).await;
    assert_unprocessable(&rename, "App with the name 'taken' already exists.");
    let rename_long = api.patch(&format!("/v3/apps/{other}"), json!({"name": "b".repeat(256)})).await;
    assert_unprocessable(&rename_long, "Name is too long (maximum is 255 characters)");
    let blank = api.patch(&format!("/v3/apps/{other}"), json!({"name": "  "})).await;
    assert_unprocessable(&blank, "name is not present");
    let control = api.patch(&format!("/v3/apps/{other}"), json!({"name": "a\u{7}b"})).await;
    assert_unprocessable(&control, "name is invalid");
    let stripped = api.patch(&format!("/v3/apps/{other}"), json!({"name": "  spaced  "})).await;
    assert_eq!(stripped.json()["name"], "spaced", "AppModel strips the name");
    let docker = api.patch(&format!("/v3/apps/{first}"), json!({"lifecycle": {"type": "docker", "data": {}}})).await;
    assert_unprocessable(&docker, "Lifecycle type cannot be changed from buildpack to docker");
    let unknown = api.patch(&format!("/v3/apps/{first}"), json!({"environment_variables": {}})).await;
    assert_unprocessable(&unknown, "Unknown field(s): 'environment_variables'");
    let query = api.get("/v3/apps?colour=blue").await;
    assert_eq!((query.status, query.cf_error()), (400, (10005, "CF-BadQueryParameter".into())));
    assert!(detail(&query).starts_with("The query parameter is invalid: Unknown query parameter(s): 'colour'"));
    sim.stop();
}

/// app/presenters/v3/app_manifest_presenter.rb and app_manifest_presenters/*: CC's key order, `lifecycle`
/// (lifecycle_presenter.rb, 3.169.0 on) and `features` (features_presenter.rb, 3.197.0 on), services by name only
/// (services_properties_presenter.rb), no `routes` and never `no-route` for a route-less app
/// (route_properties_presenter.rb), -1 as an integer log rate (process_properties_presenter.rb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_manifests_are_ccs_form_for_each_version() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let app = api.create_app("plain").await;
    let instance = api
        .post(
            "/v3/service_instances",
            json!({"type": "user-provided", "name": "Db", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await;
    assert_eq!(instance.status, 201, "{}", instance.text());
    let bound = api
        .post("/v3/service_credential_bindings", json!({"type": "app", "name": "primary", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance.json()["guid"]}}}}))
        .await;
    assert!(bound.status == 201 || bound.status == 202, "{}", bound.text());
    api.patch(&format!("/v3/apps/{app}"), json!({"metadata": {"labels": {"example.com/tier": "web"}}})).await;
    let manifest = api.get(&format!("/v3/apps/{app}/manifest")).await.text();
    let keys: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("- ").or_else(|| l.strip_prefix("  ").filter(|r| !r.starts_with([' ', '-']))))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(keys, ["name", "lifecycle", "stack", "features", "services", "metadata", "processes"], "{manifest}");
    let document: Value = serde_norway::from_str(&manifest).unwrap();
    let entry = &document["applications"][0];
    assert_eq!(entry["lifecycle"], "buildpack");
    assert_eq!(
        entry["features"],
        json!({"ssh": true, "revisions": true, "service-binding-k8s": false, "file-based-vcap-services": false})
    );
    assert_eq!(entry["services"], json!(["Db"]), "names only, no binding_name");
    assert!(entry.get("routes").is_none() && entry.get("no-route").is_none(), "{manifest}");
    assert_eq!(entry["processes"][0]["log-rate-limit-per-second"], json!(-1));
    api.map_route(&app, "plain").await;
    let manifest: Value = serde_norway::from_str(&api.get(&format!("/v3/apps/{app}/manifest")).await.text()).unwrap();
    let route = &manifest["applications"][0]["routes"][0];
    assert_eq!((&route["route"], &route["protocol"]), (&json!("plain.apps.sim.internal"), &json!("http1")));
    sim.stop();

    for (version, lifecycle, features) in [("3.168.0", false, false), ("3.196.0", true, false)] {
        let (sim, api) = sim_at(version).await;
        let app = api.create_app("old").await;
        let manifest: Value =
            serde_norway::from_str(&api.get(&format!("/v3/apps/{app}/manifest")).await.text()).unwrap();
        let entry = &manifest["applications"][0];
        assert_eq!(
            (entry.get("lifecycle").is_some(), entry.get("features").is_some()),
            (lifecycle, features),
            "{version}"
        );
        sim.stop();
    }
}

/// app/messages/app_manifest_message.rb (buildpack(s) with docker, buildpack with buildpacks, a `web` process entry
/// replacing the app-level attributes),
/// space_manifests_controller.rb (docker for a buildpack app), space_apply_manifest_action_job.rb with
/// app_update.rb (a lifecycle change fails the job) and base_health_check_policy.rb with config/cloud_controller.yml
/// (`maximum_health_check_timeout: 180`, enforced in the job); keys cf-sim does not model are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manifest_refuses_what_cc_refuses() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let both = apply_manifest(
        &api,
        "applications:\n- name: both\n  docker:\n    image: busybox\n  buildpacks: [go_buildpack]\n",
    )
    .await;
    assert_unprocessable(&both, "For application 'both': Cannot specify both buildpack(s) and docker keys");
    let two = apply_manifest(&api, "applications:\n- name: two\n  buildpack: a\n  buildpacks: [b]\n").await;
    assert_unprocessable(&two, "For application 'two': Buildpack and Buildpacks fields cannot be used together.");
    let sidecars = apply_manifest(&api, "applications:\n- name: side\n  sidecars:\n  - name: s\n").await;
    assert_eq!(sidecars.status, 422);
    assert!(detail(&sidecars).contains("does not model the manifest key(s) 'sidecars'"), "{}", sidecars.text());
    let features = apply_manifest(&api, "applications:\n- name: f\n  features:\n    ssh: maybe\n").await;
    assert_eq!(features.status, 422, "{}", features.text());
    let message = "Features must be a map of valid feature names to booleans";
    assert!(detail(&features).contains(message), "{}", features.text());
    let services = apply_manifest(&api, "applications:\n- name: s\n  services:\n  - name: db\n    plan: small\n").await;
    assert_unprocessable(&services, "For application 's': Services must be a list of service instances");
    let job = applied_job(&api, "applications:\n- name: s\n  services:\n  - missing\n").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["errors"][0]["code"], 10010, "AppApplyManifest raises a NotFound: {job}");
    assert_eq!(job["errors"][0]["detail"], "For application 's': Service instance 'missing' not found");
    // AppManifestMessage has no NoAdditionalKeysValidator: a key CC does not know is ignored, as CC ignores it.
    let typo = applied_job(&api, "applications:\n- name: typo\n  instance: 2\n").await;
    assert_eq!(typo["state"], "COMPLETE", "{typo}");
    let none = apply_manifest(&api, "version: 1\n").await;
    assert_unprocessable(&none, "Cannot parse manifest with no 'applications' field.");

    api.create_app("buildpack-app").await;
    let docker = apply_manifest(&api, "applications:\n- name: buildpack-app\n  docker:\n    image: busybox\n").await;
    assert_unprocessable(
        &docker,
        "For application 'buildpack-app': Docker cannot be configured for a buildpack lifecycle app.",
    );
    let space = api.space_guid().await;
    let docker_app = api
        .post("/v3/apps", json!({"name": "docker-app", "lifecycle": {"type": "docker", "data": {}}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await;
    assert_eq!(docker_app.status, 201, "{}", docker_app.text());
    let buildpacks = apply_manifest(&api, "applications:\n- name: docker-app\n  buildpacks: [go_buildpack]\n").await;
    assert_unprocessable(
        &buildpacks,
        "For application 'docker-app': Buildpacks cannot be configured for a docker lifecycle app.",
    );
    let job = applied_job(&api, "applications:\n- name: docker-app\n  lifecycle: buildpack\n").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(
        job["errors"][0]["detail"],
        "For application 'docker-app': Lifecycle type cannot be changed from docker to buildpack"
    );

    let job = applied_job(&api, "applications:\n- name: slow\n  timeout: 181\n").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["errors"][0]["detail"], "For application 'slow': health_check_timeout Maximum exceeded: max 180s");
    let job =
        applied_job(&api, "applications:\n- name: slow\n  timeout: 180\n  log-rate-limit-per-second: 16K\n").await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let web = api.get("/v3/apps?names=slow").await.json()["resources"][0]["guid"].as_str().unwrap().to_string();
    let process = api.get(&format!("/v3/apps/{web}/processes/web")).await.json();
    assert_eq!(process["log_rate_limit_in_bytes_per_second"], 16384);

    // AppManifestMessage#process_attributes: a `web` entry under `processes` replaces the app-level attributes.
    let job = applied_job(
        &api,
        "applications:\n- name: layered\n  instances: 3\n  processes:\n  - type: web\n    memory: 128M\n",
    )
    .await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let app = api.get("/v3/apps?names=layered").await.json()["resources"][0]["guid"].as_str().unwrap().to_string();
    let process = api.get(&format!("/v3/apps/{app}/processes/web")).await.json();
    assert_eq!((process["instances"].as_u64(), process["memory_in_mb"].as_u64()), (Some(1), Some(128)), "{process}");
    sim.stop();
}

/// app/messages/process_update_message.rb, process_scale_message.rb and base_health_check_policy.rb
/// (`maximum_health_check_timeout`, `--maximum-health-check-timeout` in cf-sim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_updates_follow_ccs_messages_and_policy() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("procs").await;
    let web = format!("/v3/apps/{app}/processes/web");
    let over = api.patch(&web, json!({"health_check": {"type": "port", "data": {"timeout": 181}}})).await;
    assert_unprocessable(&over, "health_check_timeout Maximum exceeded: max 180s");
    let max = api.patch(&web, json!({"health_check": {"type": "port", "data": {"timeout": 180}}})).await;
    assert_eq!(max.status, 200, "{}", max.text());
    let zero = api.patch(&web, json!({"health_check": {"data": {"interval": 0}}})).await;
    assert_unprocessable(&zero, "Health check interval must be greater than or equal to 1");
    let endpoint = format!("/{}", "e".repeat(255));
    let long = api.patch(&web, json!({"health_check": {"type": "http", "data": {"endpoint": endpoint}}})).await;
    assert_unprocessable(&long, "Health check endpoint is too long (maximum is 255 characters)");
    let user = api.patch(&web, json!({"user": "root"})).await;
    assert_eq!(user.status, 422);
    assert!(detail(&user).contains("does not model field(s): 'user'"), "{}", user.text());
    let unknown = api.patch(&web, json!({"instances": 2})).await;
    assert_unprocessable(&unknown, "Unknown field(s): 'instances'");
    let scale = format!("{web}/actions/scale");
    let negative = api.post(&scale, json!({"instances": -1, "memory_in_mb": 0})).await;
    assert_unprocessable(
        &negative,
        "Instances must be greater than or equal to 0, Memory in mb must be greater than 0",
    );
    let float = api.post(&scale, json!({"disk_in_mb": 1.5})).await;
    assert_unprocessable(&float, "Disk in mb must be an integer");
    sim.stop();

    let config = SimConfig { maximum_health_check_timeout: 600, ..test_config() };
    let sim = Sim::start(config).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("procs").await;
    let raised =
        api.patch(&format!("/v3/apps/{app}/processes/web"), json!({"health_check": {"data": {"timeout": 600}}})).await;
    assert_eq!(raised.status, 200, "{}", raised.text());
    sim.stop();
}

/// app/messages/apps_list_message.rb (with IncludeParamValidator), processes_list_message.rb,
/// droplets_list_message.rb and packages_list_message.rb: filters CC honours are applied, never accepted and
/// ignored; an unknown `include` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_cc_honours_are_applied() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("listed").await;
    let package = api.upload_package(&app, app_zip()).await;
    assert_eq!(api.stage(&package).await["state"], "STAGED");
    let space = api.space_guid().await;
    let org = api.first_guid("/v3/organizations").await;
    let total = |path: String| {
        let api = &api;
        async move {
            let response = api.get(&path).await;
            assert_eq!(response.status, 200, "{path}: {}", response.text());
            response.json()["pagination"]["total_results"].as_u64().unwrap()
        }
    };
    assert_eq!(total("/v3/apps?stacks=cflinuxfs4".into()).await, 1);
    assert_eq!(total("/v3/apps?stacks=cflinuxfs3".into()).await, 0);
    assert_eq!(total("/v3/apps?include=space,space.organization".into()).await, 1);
    for path in ["/v3/apps?include=routes".to_string(), format!("/v3/apps/{app}?include=routes")] {
        let response = api.get(&path).await;
        assert_eq!((response.status, response.cf_error().0), (400, 10005), "{path}");
        assert!(detail(&response).contains("Invalid included resource: 'routes'"), "{}", response.text());
    }
    for collection in ["apps", "processes", "packages", "droplets"] {
        assert_eq!(total(format!("/v3/{collection}?space_guids={space}&organization_guids={org}")).await, 1);
        assert_eq!(total(format!("/v3/{collection}?space_guids=elsewhere")).await, 0, "{collection}");
        assert_eq!(total(format!("/v3/{collection}?organization_guids=elsewhere")).await, 0, "{collection}");
    }
    sim.stop();
}

/// app/messages/update_environment_variables_message.rb with EnvironmentVariablesStringValuesValidator
/// (app/messages/validators.rb): names may not be empty, start with VCAP_ or VMC, or be PORT; values are strings
/// or null; app_manifest_message.rb turns manifest values into strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_follow_ccs_validators() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("envs").await;
    let path = format!("/v3/apps/{app}/environment_variables");
    let names = api.patch(&path, json!({"var": {"VCAP_X": "1", "vmc_y": "2", "port": "3"}})).await;
    assert_unprocessable(&names, "Var cannot start with VCAP_, Var cannot set PORT, Var cannot start with VMC_");
    let number = api.patch(&path, json!({"var": {"N": 5}})).await;
    assert_unprocessable(&number, "Non-string value in environment variable for key 'N', value '5'");
    assert_unprocessable(&api.patch(&path, json!({})).await, "Var must be an object");
    let set = api.patch(&path, json!({"var": {"A": "1", "B": "2"}})).await;
    assert_eq!(set.status, 200, "{}", set.text());
    let removed = api.patch(&path, json!({"var": {"B": null}})).await.json();
    assert_eq!(removed["var"], json!({"A": "1"}));

    let job = applied_job(&api, "applications:\n- name: envs\n  env:\n    COUNT: 3\n    FLAG: true\n").await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let env = api.get(&path).await.json();
    assert_eq!(env["var"], json!({"A": "1", "COUNT": "3", "FLAG": "true"}));
    let bad = apply_manifest(&api, "applications:\n- name: envs\n  env:\n    VCAP_SERVICES: x\n").await;
    assert_unprocessable(&bad, "For application 'envs': Env cannot start with VCAP_");
    sim.stop();
}

/// app/messages/manifest_routes_update_message.rb (protocol, options) and app/actions/manifest_route_update.rb
/// (every route found or created before any is mapped; a new mapping takes the protocol, a changed protocol
/// replaces the route's destinations; "No domains exist for route …"), with update_route_destinations.rb.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_routes_keep_protocol_and_options() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let bad = apply_manifest(
        &api,
        "applications:\n- name: grpc\n  routes:\n  - route: grpc.apps.sim.internal\n    protocol: h2\n",
    )
    .await;
    assert_unprocessable(&bad, "For application 'grpc': Route protocol must be 'http1', 'http2' or 'tcp'.");
    let option = apply_manifest(&api, "applications:\n- name: grpc\n  routes:\n  - route: grpc.apps.sim.internal\n    options:\n      loadbalancing: random\n").await;
    assert_unprocessable(
        &option,
        "For application 'grpc': Cannot use loadbalancing value 'random' for Route 'grpc.apps.sim.internal'; \
         Valid values are: 'round-robin, least-connection'",
    );
    let manifest = "applications:\n- name: grpc\n  routes:\n  - route: grpc.apps.sim.internal\n    protocol: http2\n    options:\n      loadbalancing: least-connection\n";
    assert_eq!(applied_job(&api, manifest).await["state"], "COMPLETE");
    let route = api.get("/v3/routes?hosts=grpc").await.json()["resources"][0].clone();
    assert_eq!(route["destinations"][0]["protocol"], "http2", "{route}");
    assert_eq!(route["options"]["loadbalancing"], "least-connection", "{route}");
    let app = api.get("/v3/apps?names=grpc").await.json()["resources"][0]["guid"].as_str().unwrap().to_string();
    let generated: Value = serde_norway::from_str(&api.get(&format!("/v3/apps/{app}/manifest")).await.text()).unwrap();
    assert_eq!(
        generated["applications"][0]["routes"],
        json!([{"route": "grpc.apps.sim.internal", "protocol": "http2", "options": {"loadbalancing": "least-connection"}}])
    );
    let http1 = "applications:\n- name: grpc\n  routes:\n  - route: grpc.apps.sim.internal\n    protocol: http1\n";
    assert_eq!(applied_job(&api, http1).await["state"], "COMPLETE");
    let route = api.get("/v3/routes?hosts=grpc").await.json()["resources"][0].clone();
    assert_eq!(route["destinations"].as_array().unwrap().len(), 1, "{route}");
    assert_eq!(route["destinations"][0]["protocol"], "http1", "{route}");

    let job = applied_job(
        &api,
        "applications:\n- name: grpc\n  routes:\n  - route: new.apps.sim.internal\n  - route: x.nowhere.example\n",
    )
    .await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["errors"][0]["detail"], "For application 'grpc': No domains exist for route x.nowhere.example");
    let created = api.get("/v3/routes?hosts=new").await.json();
    assert_eq!(created["pagination"]["total_results"], 1, "routes before the failing one are found or created");
    assert_eq!(created["resources"][0]["destinations"], json!([]), "but none is mapped: {created}");
    sim.stop();

    let config = SimConfig { extra_spaces: vec!["sim-org/other".into()], ..test_config() };
    let sim = Sim::start(config).unwrap();
    let api = Api::login(&sim).await;
    let other = api.first_guid("/v3/spaces?names=other").await;
    let domain = api.first_guid("/v3/domains").await;
    let foreign = api
        .post("/v3/routes", json!({"host": "theirs", "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": other}}}}))
        .await;
    assert_eq!(foreign.status, 201, "{}", foreign.text());
    let job = applied_job(&api, "applications:\n- name: mine\n  routes:\n  - route: theirs.apps.sim.internal\n").await;
    assert_eq!(
        job["errors"][0]["detail"],
        "For application 'mine': Routes cannot be mapped to destinations in different spaces"
    );
    sim.stop();
}

/// app/controllers/v3/space_manifests_controller.rb with app/actions/app_find_or_create_skeleton.rb: the apps of a
/// manifest exist when apply_manifest answers 202, before its job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manifest_creates_the_apps_before_its_job() {
    let sim = Sim::start(SimConfig { job_delay_ms: 5000, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let response = apply_manifest(&api, "applications:\n- name: skeleton\n  docker:\n    image: busybox\n").await;
    assert_eq!(response.status, 202, "{}", response.text());
    let job = api.get(&response.header("location").unwrap()).await.json();
    assert_eq!(job["state"], "PROCESSING");
    let apps = api.get("/v3/apps?names=skeleton").await.json();
    assert_eq!(apps["resources"][0]["lifecycle"]["type"], "docker", "{apps}");
    sim.stop();
}

/// app/presenters/v3/app_presenter.rb (`clear_buildpack_cache` link from 3.171.0, adb73ec2e9) and
/// build_presenter.rb / build_create_message.rb (`staging_log_rate_limit_bytes_per_second` from 3.126.0,
/// 6d3e2e8fe1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_and_builds_have_the_fields_of_their_cc_api_version() {
    for (version, link, log_rate) in [("3.170.0", false, true), ("3.171.0", true, true), ("3.125.0", false, false)] {
        let (sim, api) = sim_at(version).await;
        let app = create_app_with(&api, json!({})).await.json();
        assert_eq!(app["links"].get("clear_buildpack_cache").is_some(), link, "{version}: {app}");
        let package = api.upload_package(app["guid"].as_str().unwrap(), app_zip()).await;
        let build = api
            .post("/v3/builds", json!({"package": {"guid": package}, "staging_log_rate_limit_bytes_per_second": -1}))
            .await;
        if log_rate {
            assert_eq!(build.status, 201, "{version}: {}", build.text());
            assert_eq!(build.json()["staging_log_rate_limit_bytes_per_second"], -1);
        } else {
            assert_unprocessable(&build, "Unknown field(s): 'staging_log_rate_limit_bytes_per_second'");
            let build = api.post("/v3/builds", json!({"package": {"guid": package}})).await.json();
            assert!(build.get("staging_log_rate_limit_bytes_per_second").is_none(), "{version}: {build}");
        }
        sim.stop();
    }
}

/// The binary's `--cc-api-version`: a version that is not a v3 `X.Y.Z` is refused before anything starts.
#[test]
fn the_binary_refuses_a_malformed_cc_api_version() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args(["--cc-api-version", "2.293.0"])
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("a CC API version looks like 3.228.0, got \"2.293.0\""), "{stderr}");
}
