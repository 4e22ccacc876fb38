//! Contract tests: for every upstream example payload in tests/fixtures/cf-api/ whose endpoint the sim implements,
//! the sim's real response has every key path of the fixture with a compatible JSON type (values and array lengths
//! aside; `null` in the fixture is compatible with anything; the elements of a fixture array are merged into one
//! shape). Upstream quirks are tolerated by name below.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::{Api, app_zip, password_token, poll, send, test_config, zip_of};
use cf_sim::{Sim, SimConfig};

/// Objects whose keys are data (env var names, labels, …), not schema.
const OPEN_MAPS: &[&str] = &["var", "labels", "annotations", "process_types", "custom", "credentials"];

/// Fixtures whose endpoint the sim does not implement.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("deployment.json", "deployments are not simulated"),
    (
        "manifest_diff.json",
        "upstream quirk: its three ops merge into one shape no op has (json-diff: a remove has no value, an add no was); see integration::manifest_diff",
    ),
    ("warnings.json", "the sim's jobs never carry warnings"),
];

/// Key paths the sim lacks on purpose, with the reason.
const TOLERATED: &[(&str, &str, &str)] = &[
    (
        "apps_list.json",
        "resources[].relationships.droplet",
        "upstream quirk: the second app says droplet for current_droplet",
    ),
    (
        "droplet_copy.json",
        "links.package",
        "upstream quirk: the example names a package, but droplet_copy.rb clones no package_guid into a copy",
    ),
    ("route.json", "port", "upstream quirk: the example is a tcp route; http routes have port null"),
    ("route.json", "options.loadbalancing", "a route created without options has options {} (route_create.rb)"),
    ("routes_list.json", "resources[].options.loadbalancing", "routes created without options have options {}"),
    ("domains_list.json", "resources[].links.router_group", "tcp domains only; the sim has http domains"),
    ("process.json", "relationships.revision.data", "the sim does not implement revisions, so data is null"),
    ("processes_list.json", "resources[].relationships.revision.data", "the sim does not implement revisions"),
    ("job_failed.json", "links.app", "the failed job here is space.apply_manifest, whose resource link is space"),
    ("job_failed.json", "warnings", "the sim's jobs carry no warnings"),
    (
        "domains_list.json",
        "resources[].enforce_route_policies",
        "only a domain that enforces route policies has the key (domain_presenter.rb); the sim's list has none",
    ),
    ("domains_list.json", "resources[].route_policies_scope", "likewise (domain_presenter.rb)"),
    ("spaces_list.json", "resources[].links.quota", "only spaces with a space quota link one"),
    (
        "roles_list.json",
        "resources[].links.space",
        "a role links its space or its org (role_presenter.rb): the example has one of each",
    ),
    ("roles_list.json", "resources[].links.organization", "likewise"),
    (
        "space_usage_summary.json",
        "links.organization",
        "upstream quirk: the example names the space link organization; space_usage_summary_presenter.rb says space",
    ),
];

/// Quota limits the sim does not model: unlimited, which the quota presenters render as `null` (CC's -1).
const UNMODELLED_QUOTA_LIMITS: &[&str] = &[
    "apps.per_process_memory_in_mb",
    "apps.total_instances",
    "apps.per_app_tasks",
    "apps.log_rate_limit_in_bytes_per_second",
    "services.total_service_instances",
    "services.total_service_keys",
    "routes.total_routes",
    "routes.total_reserved_ports",
    "domains.total_domains",
];

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/cf-api")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The shape of several array elements: keys of all; `null` anywhere makes that subtree unconstrained.
fn merge(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => Value::Null,
        (Value::Object(x), Value::Object(y)) => {
            let mut merged = x.clone();
            for (key, value) in y {
                let combined = match x.get(key) {
                    Some(existing) => merge(existing, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), combined);
            }
            Value::Object(merged)
        }
        (Value::Array(x), Value::Array(y)) => Value::Array(x.iter().chain(y).cloned().collect()),
        _ => a.clone(),
    }
}

fn check(fixture: &Value, actual: &Value, path: &str, tolerated: &[&str], failures: &mut Vec<String>) {
    if tolerated.contains(&path) {
        return;
    }
    match fixture {
        Value::Null => {}
        Value::Object(expected) => {
            let Some(actual) = actual.as_object() else {
                failures.push(format!("{path}: expected an object, got {}", type_name(actual)));
                return;
            };
            let last = path.rsplit('.').next().unwrap_or("");
            if OPEN_MAPS.contains(&last) {
                return;
            }
            for (key, value) in expected {
                let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match actual.get(key) {
                    None if !tolerated.contains(&child.as_str()) => failures.push(format!("{child}: missing")),
                    None => {}
                    Some(actual) => check(value, actual, &child, tolerated, failures),
                }
            }
        }
        Value::Array(items) => {
            let Some(actual) = actual.as_array() else {
                failures.push(format!("{path}: expected an array, got {}", type_name(actual)));
                return;
            };
            let Some(first) = items.first() else { return };
            let shape = items.iter().skip(1).fold(first.clone(), |shape, item| merge(&shape, item));
            if actual.is_empty() && !shape.is_null() {
                failures.push(format!("{path}: empty, so its element shape cannot be checked"));
            }
            for item in actual {
                check(&shape, item, &format!("{path}[]"), tolerated, failures);
            }
        }
        _ => {
            if type_name(fixture) != type_name(actual) {
                failures.push(format!("{path}: expected {}, got {}", type_name(fixture), type_name(actual)));
            }
        }
    }
}

/// Responses of a sim set up so every implemented endpoint has something to show.
async fn responses(sim: &Sim) -> BTreeMap<&'static str, Value> {
    let api = Api::login(sim).await;
    let info = sim.info().clone();
    let space = api.space_guid().await;
    let org = api.first_guid("/v3/organizations").await;
    let mut out = BTreeMap::new();

    // Lists are read with per_page=1 (apps with 2) over at least one more item, so `next` is an object.
    let zip = zip_of(&[
        ("server.py", crate::common::SERVER_PY.as_bytes(), 0o644),
        ("Procfile", b"web: python3 server.py\nworker: python3 server.py\n", 0o644),
    ]);
    let app = api.push("contract-app", zip.clone()).await;
    api.patch(&format!("/v3/apps/{app}/environment_variables"), json!({"var": {"RAILS_ENV": "production"}})).await;
    let second = api.create_app("contract-second").await;
    let third = api.create_app("contract-third").await;
    let buildpack = json!({"lifecycle": {"type": "buildpack", "data": {"buildpacks": ["binary_buildpack"]}}});
    for guid in [&app, &second, &third] {
        assert_eq!(api.patch(&format!("/v3/apps/{guid}"), buildpack.clone()).await.status, 200);
    }
    let route = api.map_route(&app, "contract").await;
    api.map_route(&second, "contract-2").await;
    let web = api.get(&format!("/v3/apps/{app}/processes/web")).await.json()["guid"].as_str().unwrap().to_string();
    let droplet = api.get(&format!("/v3/apps/{app}/droplets/current")).await.json();
    let droplet_guid = droplet["guid"].as_str().unwrap().to_string();
    for guid in [&second, &third] {
        let copy = api
            .post(
                &format!("/v3/droplets?source_guid={droplet_guid}"),
                json!({"relationships": {"app": {"data": {"guid": guid}}}}),
            )
            .await
            .json();
        let copy = copy["guid"].as_str().unwrap().to_string();
        poll(std::time::Duration::from_secs(10), || async {
            (api.get(&format!("/v3/droplets/{copy}")).await.json()["state"] == "STAGED").then_some(())
        })
        .await;
        api.patch(&format!("/v3/apps/{guid}/relationships/current_droplet"), json!({"data": {"guid": copy}})).await;
    }
    let package = api.upload_package(&app, zip).await;
    let build = api.stage(&package).await["guid"].as_str().unwrap().to_string();
    let other_org = api.post("/v3/organizations", json!({"name": "contract-other-org"})).await.json()["guid"]
        .as_str()
        .unwrap()
        .to_string();

    out.insert("app.json", api.get(&format!("/v3/apps/{app}")).await.json());
    out.insert("app_started.json", api.post(&format!("/v3/apps/{app}/actions/start"), json!({})).await.json());
    out.insert("apps_list.json", api.get("/v3/apps?per_page=2").await.json());
    out.insert(
        "app_current_droplet_relationship.json",
        api.get(&format!("/v3/apps/{app}/relationships/current_droplet")).await.json(),
    );
    out.insert("environment_variables.json", api.get(&format!("/v3/apps/{app}/environment_variables")).await.json());
    out.insert("package.json", api.get(&format!("/v3/packages/{package}")).await.json());
    out.insert(
        "package_created.json",
        api.post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": second}}}}))
            .await
            .json(),
    );
    let docker_app = api
        .post("/v3/apps", json!({"name": "contract-docker", "lifecycle": {"type": "docker", "data": {}}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await
        .json()["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let docker = api
        .post("/v3/packages", json!({"type": "docker", "data": {"image": "registry/image:latest", "username": "u", "password": "p"}, "relationships": {"app": {"data": {"guid": docker_app}}}}))
        .await
        .json();
    out.insert(
        "package_copy.json",
        api.post(
            &format!("/v3/packages?source_guid={}", docker["guid"].as_str().unwrap()),
            json!({"relationships": {"app": {"data": {"guid": docker_app}}}}),
        )
        .await
        .json(),
    );
    out.insert("package_docker.json", docker);
    let cached = b"contents that the cache keeps";
    let upload_app = api.create_app("contract-cache").await;
    api.upload_package(&upload_app, zip_of(&[("cached.txt", cached, 0o644), ("Procfile", b"web: true", 0o644)])).await;
    use sha1::Digest;
    let sha1: String = sha1::Sha1::digest(cached).iter().map(|b| format!("{b:02x}")).collect();
    out.insert(
        "resource_matches.json",
        api.post("/v3/resource_matches", json!({"resources": [{"checksum": {"value": sha1}, "size_in_bytes": cached.len(), "path": "cached.txt", "mode": "644"}]}))
            .await
            .json(),
    );
    out.insert("build.json", api.get(&format!("/v3/builds/{build}")).await.json());
    let staging_package = api.upload_package(&second, app_zip()).await;
    out.insert(
        "build_staging.json",
        api.post("/v3/builds", json!({"package": {"guid": staging_package}})).await.json(),
    );
    out.insert("droplet.json", droplet);
    out.insert(
        "droplet_copy.json",
        api.post(
            &format!("/v3/droplets?source_guid={droplet_guid}"),
            json!({"relationships": {"app": {"data": {"guid": upload_app}}}}),
        )
        .await
        .json(),
    );
    out.insert("process.json", api.get(&format!("/v3/processes/{web}")).await.json());
    api.patch(
        &format!("/v3/processes/{web}"),
        json!({"readiness_health_check": {"type": "http", "data": {"endpoint": "/ready"}}}),
    )
    .await;
    out.insert("processes_list.json", api.get(&format!("/v3/apps/{app}/processes?per_page=1")).await.json());
    out.insert("process_stats.json", api.get(&format!("/v3/processes/{web}/stats")).await.json());
    out.insert("route.json", api.get(&format!("/v3/routes/{route}")).await.json());
    out.insert("routes_list.json", api.get("/v3/routes?per_page=1").await.json());
    out.insert("route_destinations.json", api.get(&format!("/v3/routes/{route}/destinations")).await.json());
    let private = api
        .post("/v3/domains", json!({"name": "private.example.org", "relationships": {"organization": {"data": {"guid": org}}, "shared_organizations": {"data": [{"guid": other_org}]}}}))
        .await
        .json();
    out.insert("domain.json", api.get(&format!("/v3/domains/{}", private["guid"].as_str().unwrap())).await.json());
    out.insert("domains_list.json", api.get("/v3/domains?per_page=1").await.json());
    out.insert("organization.json", api.get(&format!("/v3/organizations/{org}")).await.json());
    out.insert("organizations_list.json", api.get("/v3/organizations?per_page=1").await.json());
    out.insert("space.json", api.get(&format!("/v3/spaces/{space}")).await.json());
    out.insert("spaces_list.json", api.get("/v3/spaces?per_page=1").await.json());
    out.insert("roles_list.json", api.get("/v3/roles?per_page=2").await.json());
    let org_quota =
        api.get(&format!("/v3/organizations/{org}")).await.json()["relationships"]["quota"]["data"]["guid"].clone();
    out.insert(
        "organization_quota.json",
        api.get(&format!("/v3/organization_quotas/{}", org_quota.as_str().unwrap())).await.json(),
    );
    let space_quota =
        api.get(&format!("/v3/spaces/{space}")).await.json()["relationships"]["quota"]["data"]["guid"].clone();
    out.insert(
        "space_quota.json",
        api.get(&format!("/v3/space_quotas/{}", space_quota.as_str().unwrap())).await.json(),
    );
    out.insert(
        "organization_usage_summary.json",
        api.get(&format!("/v3/organizations/{org}/usage_summary")).await.json(),
    );
    out.insert("space_usage_summary.json", api.get(&format!("/v3/spaces/{space}/usage_summary")).await.json());
    let deleted = api.delete(&format!("/v3/apps/{upload_app}")).await;
    out.insert("job.json", api.wait_job(&deleted.header("location").unwrap()).await);
    let failed = api
        .raw(
            "POST",
            &format!("/v3/spaces/{space}/actions/apply_manifest"),
            "application/x-yaml",
            b"applications:\n- name: contract-app\n  services: [missing]\n".to_vec(),
        )
        .await;
    out.insert("job_failed.json", api.wait_job(&failed.header("location").unwrap()).await);
    let instance = api
        .post("/v3/service_instances", json!({"type": "user-provided", "name": "contract-db", "credentials": {"uri": "x"}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await
        .json();
    let binding = api
        .post("/v3/service_credential_bindings", json!({"type": "app", "name": "db", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance["guid"]}}}, "metadata": {"labels": {"baz": "qux"}}}))
        .await
        .json();
    out.insert(
        "service_credential_binding.json",
        api.get(&format!("/v3/service_credential_bindings/{}", binding["guid"].as_str().unwrap())).await.json(),
    );
    api.post("/v3/service_credential_bindings", json!({"type": "app", "relationships": {"app": {"data": {"guid": second}}, "service_instance": {"data": {"guid": instance["guid"]}}}}))
        .await;
    out.insert(
        "service_credential_bindings_list.json",
        api.get("/v3/service_credential_bindings?per_page=1").await.json(),
    );
    out.insert("root.json", send("GET", &format!("{}/", info.api), &[], Vec::new(), None).await.unwrap().json());
    out.insert("v3_root.json", send("GET", &format!("{}/v3", info.api), &[], Vec::new(), None).await.unwrap().json());
    out.insert("info.json", send("GET", &format!("{}/v3/info", info.api), &[], Vec::new(), None).await.unwrap().json());
    out.insert("error.json", api.get("/v3/apps/no-such-app").await.json());

    let token = password_token(&info.uaa, &info.username, &info.password, None).await.json();
    let claims = token["access_token"].as_str().unwrap().split('.').nth(1).unwrap().to_string();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
    out.insert("uaa_token_claims.json", serde_json::from_slice(&claims).unwrap());
    let refresh = send(
        "POST",
        &format!("{}/oauth/token", info.uaa),
        &[("authorization", "Basic Y2Y6"), ("content-type", "application/x-www-form-urlencoded")],
        format!("grant_type=refresh_token&refresh_token={}", token["refresh_token"].as_str().unwrap()).into_bytes(),
        None,
    )
    .await
    .unwrap()
    .json();
    out.insert("uaa_token_refresh.json", refresh);
    let client = send(
        "POST",
        &format!("{}/oauth/token", info.uaa),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("grant_type=client_credentials&client_id={}&client_secret={}", info.client_id, info.client_secret)
            .into_bytes(),
        None,
    )
    .await
    .unwrap()
    .json();
    out.insert("uaa_token_minimal.json", client);
    out.insert("uaa_token.json", token);
    // The staging build started above must finish before the sim stops.
    poll(std::time::Duration::from_secs(20), || async {
        (api.get("/v3/builds?states=STAGING").await.json()["resources"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_implemented_fixture_matches_the_sims_response() {
    let sim = Sim::start(SimConfig {
        resource_min_size: 1,
        extra_spaces: vec!["sim-org/contract-space-2".into()],
        org_memory_limit_mb: Some(1_024_000),
        space_memory_limit_mb: Some(102_400),
        ..test_config()
    })
    .unwrap();
    let responses = responses(&sim).await;
    let mut failures = Vec::new();
    let mut files: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "fixtures not found in {:?}", fixtures_dir());
    for file in &files {
        if NOT_IMPLEMENTED.iter().any(|(f, _)| f == file) {
            continue;
        }
        let Some(actual) = responses.get(file.as_str()) else {
            failures.push(format!("{file}: no request of the sim is compared with it"));
            continue;
        };
        let fixture: Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join(file)).unwrap()).unwrap();
        let mut tolerated: Vec<&str> =
            TOLERATED.iter().filter(|(f, _, _)| f == file).map(|(_, path, _)| *path).collect();
        if file.ends_with("_quota.json") {
            tolerated.extend(UNMODELLED_QUOTA_LIMITS);
        }
        let mut problems = Vec::new();
        check(&fixture, actual, "", &tolerated, &mut problems);
        failures.extend(problems.into_iter().map(|p| format!("{file}: {p}")));
    }
    sim.stop();
    assert!(failures.is_empty(), "contract mismatches:\n{}", failures.join("\n"));
}

#[test]
fn the_shape_check_reports_missing_paths_and_type_mismatches() {
    let fixture = json!({"a": {"b": 1, "c": [{"d": "x"}, {"e": null}]}, "n": null});
    let mut failures = Vec::new();
    check(&fixture, &json!({"a": {"b": "1", "c": [{"e": 5}]}}), "", &[], &mut failures);
    assert_eq!(failures, ["a.b: expected number, got string", "a.c[].d: missing", "n: missing"]);
    let mut none = Vec::new();
    check(&fixture, &json!({"a": {"b": 2, "c": [{"d": "y", "e": {}}]}, "n": [1]}), "", &[], &mut none);
    assert!(none.is_empty(), "{none:?}");
}
