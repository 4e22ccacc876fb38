//! Contract tests: every upstream example payload in `tests/fixtures/cf-api/` deserializes into the client's
//! type for it, with real values checked (not just "it parsed").

use std::path::PathBuf;

use cf_blue_green_resource::cf::apps::{App, AppState, CurrentDropletRelationship, EnvironmentVariables};
use cf_blue_green_resource::cf::auth::{TokenClaims, TokenResponse, decode_jwt_claims};
use cf_blue_green_resource::cf::bindings::ServiceCredentialBinding;
use cf_blue_green_resource::cf::builds::{Build, BuildState};
use cf_blue_green_resource::cf::domains::Domain;
use cf_blue_green_resource::cf::droplets::{Droplet, DropletState};
use cf_blue_green_resource::cf::error::ErrorBody;
use cf_blue_green_resource::cf::jobs::{Job, JobState};
use cf_blue_green_resource::cf::manifests::ManifestDiff;
use cf_blue_green_resource::cf::orgs::Organization;
use cf_blue_green_resource::cf::packages::{Package, PackageState};
use cf_blue_green_resource::cf::paginate::Page;
use cf_blue_green_resource::cf::processes::{InstanceState, Process, ProcessStats};
use cf_blue_green_resource::cf::quotas::{Quota, UsageSummary};
use cf_blue_green_resource::cf::resource_matches::ResourceList;
use cf_blue_green_resource::cf::roles::Role;
use cf_blue_green_resource::cf::root::{Info, Root, V3Root};
use cf_blue_green_resource::cf::routes::{Destinations, Route};
use cf_blue_green_resource::cf::spaces::Space;
use cf_blue_green_resource::cf::types::Warnings;
use cf_blue_green_resource::cf::{CfError, FileResource};
use serde::de::DeserializeOwned;

fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).unwrap_or_else(|e| panic!("{name}: at {}: {}", e.path(), e.inner()))
}

#[test]
fn app() {
    let app: App = fixture("app.json");
    assert_eq!(app.guid, "1cb006ee-fb05-47e1-b541-c34179ddc446");
    assert_eq!(app.name, "my_app");
    assert_eq!(app.state, AppState::Stopped);
    let lifecycle = app.lifecycle.as_ref().unwrap();
    assert_eq!(lifecycle.kind, "buildpack");
    assert_eq!(lifecycle.data.buildpacks.as_deref(), Some(&["java_buildpack".to_owned()][..]));
    assert_eq!(lifecycle.data.stack.as_deref(), Some("cflinuxfs4"));
    assert_eq!(app.space_guid(), Some("2f35885d-0c9d-4423-83ad-fd05066f8576"));
    assert_eq!(app.current_droplet_guid(), Some("585bc3c1-3743-497d-88b0-403ad6b56d16"));
    assert_eq!(app.links["start"].as_ref().unwrap().method.as_deref(), Some("POST"));
}

/// CC ≥ 3.175 renders an app without a droplet as `current_droplet: {"data": {"guid": null}}`
/// (`app/presenters/v3/app_presenter.rb`, also the `POST /v3/apps` answer); older CCs `{"data": null}` or no
/// relationship at all. Every form reads as "no droplet", and a space relationship likewise.
#[test]
fn a_relationship_pointing_at_nothing_reads_as_none_in_every_form_cc_sends() {
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api/app.json"))
            .unwrap();
    let original: serde_json::Value = serde_json::from_str(&text).unwrap();
    let forms = [
        Some(serde_json::json!({"data": {"guid": null}})),
        Some(serde_json::json!({"data": null})),
        Some(serde_json::json!({"data": {}})),
        Some(serde_json::json!({})),
        Some(serde_json::Value::Null),
        None,
    ];
    for form in forms {
        let mut doc = original.clone();
        let relationships = doc["relationships"].as_object_mut().unwrap();
        match &form {
            Some(value) => relationships.insert("current_droplet".into(), value.clone()),
            None => relationships.remove("current_droplet"),
        };
        let app: App = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{form:?}: {e}"));
        assert_eq!(app.current_droplet_guid(), None, "{form:?}");
        assert_eq!(app.space_guid(), Some("2f35885d-0c9d-4423-83ad-fd05066f8576"));
        if let Some(value) = form {
            doc["relationships"]["space"] = value;
            let app: App = serde_json::from_value(doc).unwrap();
            assert_eq!(app.space_guid(), None);
        }
    }
    let rel: CurrentDropletRelationship =
        serde_json::from_value(serde_json::json!({"data": {"guid": null}, "links": {}})).unwrap();
    assert!(rel.data.is_none());
    let mut build: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api/build.json"))
            .unwrap(),
    )
    .unwrap();
    build["droplet"] = serde_json::json!({"guid": null});
    assert_eq!(serde_json::from_value::<Build>(build).unwrap().droplet_guid(), None);
}

#[test]
fn app_started() {
    let app: App = fixture("app_started.json");
    assert_eq!(app.state, AppState::Started);
    assert_eq!(app.name, "my_app");
}

#[test]
fn apps_list() {
    let page: Page<App> = fixture("apps_list.json");
    let pagination = page.pagination.unwrap();
    assert_eq!(pagination.total_results, Some(3));
    assert_eq!(pagination.next.unwrap().href, "https://api.example.org/v3/apps?page=2&per_page=2");
    assert!(pagination.previous.is_none());
    assert_eq!(page.resources.len(), 2);
    assert_eq!(page.resources[0].state, AppState::Started);
    assert_eq!(page.resources[1].name, "my_app2");
    // Upstream quirk: the second app has `relationships.droplet`, not `current_droplet`.
    assert_eq!(page.resources[1].current_droplet_guid(), None);
    assert_eq!(page.resources[1].lifecycle.as_ref().unwrap().data.buildpacks.as_ref().unwrap()[0], "ruby_buildpack");
}

#[test]
fn app_current_droplet_relationship() {
    let rel: CurrentDropletRelationship = fixture("app_current_droplet_relationship.json");
    assert_eq!(rel.data.unwrap().guid, "9d8e007c-ce52-4ea7-8a57-f2825d2c6b39");
    assert!(rel.links.contains_key("related"));
}

#[test]
fn environment_variables() {
    let env: EnvironmentVariables = fixture("environment_variables.json");
    assert_eq!(env.var.get("RAILS_ENV").map(String::as_str), Some("production"));
    assert_eq!(env.var.len(), 1);
}

#[test]
fn package() {
    let package: Package = fixture("package.json");
    assert_eq!(package.guid, "44f7c078-0934-470f-9883-4fcddc5b8f13");
    assert_eq!(package.kind, "bits");
    assert_eq!(package.state, PackageState::ProcessingUpload);
    let checksum = package.data.checksum.clone().unwrap();
    assert_eq!(checksum.kind.as_deref(), Some("sha256"));
    assert_eq!(checksum.value, None);
    assert_eq!(package.data.error, None);
    assert_eq!(package.app_guid(), Some("1d3bf0ec-5806-43c4-b64e-8364dba1086a"));
}

#[test]
fn package_created() {
    let package: Package = fixture("package_created.json");
    assert_eq!(package.state, PackageState::AwaitingUpload);
    assert!(package.links["upload"].as_ref().unwrap().href.ends_with("/upload"));
}

#[test]
fn package_docker() {
    let package: Package = fixture("package_docker.json");
    assert_eq!(package.kind, "docker");
    assert_eq!(package.state, PackageState::Ready);
    assert_eq!(package.data.image.as_deref(), Some("registry/image:latest"));
    assert_eq!(package.data.username.as_deref(), Some("username"));
    assert_eq!(package.data.password.as_deref(), Some("***"));
}

#[test]
fn package_copy() {
    let package: Package = fixture("package_copy.json");
    assert_eq!(package.guid, "fec72fc1-e453-4463-a86d-5df426f337a3");
    assert_eq!(package.state, PackageState::Copying);
    assert_eq!(package.app_guid(), Some("36208a68-562d-4f51-94ea-28bd8553a271"));
}

#[test]
fn resource_matches() {
    let list: ResourceList = fixture("resource_matches.json");
    assert_eq!(
        list.resources,
        vec![FileResource::new("path/to/file", "a9993e364706816aba3e25717850c26c9cd0d89d", 1, 0o644)]
    );
    // And it serializes back to the shape the reference documents.
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api/resource_matches.json"),
    )
    .unwrap();
    let original: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_value(&list).unwrap(), original);
}

#[test]
fn build() {
    let build: Build = fixture("build.json");
    assert_eq!(build.guid, "585bc3c1-3743-497d-88b0-403ad6b56d16");
    assert_eq!(build.state, BuildState::Staged);
    assert_eq!(build.droplet_guid(), Some("1e1186e7-d803-4c46-b9d6-5c81e50fe55a"));
    assert_eq!(build.package.unwrap().guid, "8e4da443-f255-499c-8b47-b3729b5b7432");
    assert_eq!(build.created_by.unwrap().name.as_deref(), Some("bill"));
    assert_eq!(build.staging_memory_in_mb, Some(1024));
}

#[test]
fn build_staging() {
    let build: Build = fixture("build_staging.json");
    assert_eq!(build.state, BuildState::Staging);
    assert_eq!(build.droplet_guid(), None);
    assert_eq!(build.error, None);
}

#[test]
fn droplet() {
    let droplet: Droplet = fixture("droplet.json");
    assert_eq!(droplet.state, DropletState::Staged);
    assert_eq!(droplet.process_types.get("web").map(String::as_str), Some("bundle exec rackup config.ru -p $PORT"));
    assert_eq!(
        droplet.checksum.as_ref().unwrap().value.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    let buildpacks = droplet.buildpacks.clone().unwrap();
    assert_eq!(buildpacks[0].version.as_deref(), Some("1.1.1."));
    assert_eq!(droplet.stack.as_deref(), Some("cflinuxfs4"));
    assert_eq!(droplet.app_guid(), Some("7b34f1cf-7e73-428a-bb5a-8a17a8058396"));
}

#[test]
fn droplet_copy() {
    let droplet: Droplet = fixture("droplet_copy.json");
    assert_eq!(droplet.state, DropletState::Copying);
    assert!(droplet.process_types.is_empty());
    assert!(droplet.checksum.is_none());
    assert!(droplet.buildpacks.is_none());
}

#[test]
fn process() {
    let process: Process = fixture("process.json");
    assert_eq!(process.guid, "6a901b7c-9417-4dc1-8189-d3234aa0ab82");
    assert_eq!(process.kind, "web");
    assert_eq!(process.command.as_deref(), Some("rackup"));
    assert_eq!(process.instances, 5);
    assert_eq!(process.memory_in_mb, Some(256));
    assert_eq!(process.health_check.as_ref().unwrap().kind, "port");
    assert_eq!(process.health_check.unwrap().data.timeout, None);
    assert_eq!(process.readiness_health_check.unwrap().kind, "process");
    assert_eq!(process.version.as_deref(), Some("e9df685c-0464-4aa7-b5f0-8ed843077c13"));
}

#[test]
fn processes_list() {
    let page: Page<Process> = fixture("processes_list.json");
    assert!(!page.resources.is_empty());
    assert!(page.resources.iter().any(|p| p.kind == "web"));
    assert!(page.resources.iter().all(|p| !p.guid.is_empty()));
}

#[test]
fn process_stats() {
    let stats: ProcessStats = fixture("process_stats.json");
    assert_eq!(stats.resources.len(), 2);
    let first = &stats.resources[0];
    assert_eq!(first.state, InstanceState::Running);
    assert_eq!(first.routable, Some(true));
    assert_eq!(first.uptime, Some(9042));
    assert_eq!(first.instance_ports.as_ref().unwrap()[0].external, Some(64546));
    assert!(first.is_ready());
    let second = &stats.resources[1];
    assert_eq!(second.index, 1);
    assert_eq!(second.state, InstanceState::Starting);
    assert_eq!(second.mem_quota, None);
    assert!(second.instance_ports.is_none());
    assert_eq!(second.host.as_deref(), Some(""));
    assert!(!stats.all_ready(2));
    assert!(!stats.any_crashed());
}

#[test]
fn route() {
    let route: Route = fixture("route.json");
    assert_eq!(route.guid, "cbad697f-cac1-48f4-9017-ac08f39dfb31");
    assert_eq!(route.host, "a-hostname");
    assert_eq!(route.path, "/some_path");
    assert_eq!(route.port, Some(6666));
    assert_eq!(route.url, "a-hostname.a-domain.com/some_path");
    assert_eq!(route.destinations.len(), 2);
    assert_eq!(route.destinations[0].guid, "385bf117-17f5-4689-8c5c-08c6cc821fed");
    assert_eq!(route.destinations_of("0a6636b5-7fc4-44d8-8752-0db3e40b35a5").count(), 1);
    assert_eq!(route.domain_guid(), Some("0b5f3633-194c-42d2-9408-972366617e0e"));
    assert_eq!(route.options.unwrap().loadbalancing.as_deref(), Some("round-robin"));
}

#[test]
fn routes_list() {
    let page: Page<Route> = fixture("routes_list.json");
    assert!(!page.resources.is_empty());
    assert!(page.resources.iter().all(|r| !r.guid.is_empty() && r.space_guid().is_some()));
}

#[test]
fn route_destinations() {
    let d: Destinations = fixture("route_destinations.json");
    assert_eq!(d.destinations.len(), 2);
    assert_eq!(d.destinations[0].protocol.as_deref(), Some("http2"));
    assert_eq!(d.destinations[1].app.process.as_ref().unwrap().kind, "api");
    assert_eq!(d.destinations[1].port, Some(9000));
}

#[test]
fn domain() {
    let domain: Domain = fixture("domain.json");
    assert_eq!(domain.name, "test-domain.com");
    assert!(!domain.internal);
    assert!(!domain.is_shared());
    assert!(!domain.is_tcp());
    assert_eq!(domain.relationships.shared_organizations.data.len(), 2);
    assert_eq!(domain.supported_protocols, ["http"]);
}

#[test]
fn domains_list() {
    let page: Page<Domain> = fixture("domains_list.json");
    assert!(!page.resources.is_empty());
    assert!(page.resources.iter().all(|d| !d.name.is_empty()));
}

#[test]
fn organization() {
    let org: Organization = fixture("organization.json");
    assert_eq!(org.guid, "24637893-3b77-489d-bb79-8466f0d88b52");
    assert_eq!(org.name, "my-organization");
    assert_eq!(org.suspended, Some(false));
}

#[test]
fn organizations_list() {
    let page: Page<Organization> = fixture("organizations_list.json");
    assert!(page.resources.len() >= 2);
    assert!(page.pagination.unwrap().total_results.unwrap() >= 2);
}

#[test]
fn space() {
    let space: Space = fixture("space.json");
    assert_eq!(space.name, "my-space");
    assert_eq!(space.org_guid(), Some("e00705b9-7b42-4561-ae97-2520399d2133"));
    assert_eq!(space.relationships.quota.data, None);
}

#[test]
fn spaces_list() {
    let page: Page<Space> = fixture("spaces_list.json");
    assert!(!page.resources.is_empty());
    assert!(page.resources.iter().all(|s| s.org_guid().is_some()));
}

#[test]
fn job() {
    let job: Job = fixture("job.json");
    assert_eq!(job.state, JobState::Complete);
    assert!(job.errors.is_empty());
    assert!(!job.operation.is_empty());
}

#[test]
fn job_failed() {
    let job: Job = fixture("job_failed.json");
    assert_eq!(job.guid, "b19ae525-cbd3-4155-b156-dc0c2a431b4c");
    assert_eq!(job.operation, "app.delete");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.errors[0].code, 10008);
    assert_eq!(job.warnings[0].detail, "warning! warning!");
    let err = CfError::from_job("DELETE", "/v3/apps/x", &job.errors);
    assert_eq!(err.to_string(), "DELETE /v3/apps/x: job failed: CF-UnprocessableEntity (10008): something went wrong");
}

#[test]
fn service_credential_binding() {
    let binding: ServiceCredentialBinding = fixture("service_credential_binding.json");
    assert_eq!(binding.guid, "dde5ad2a-d8f4-44dc-a56f-0452d744f1c3");
    assert_eq!(binding.name.as_deref(), Some("some-name"));
    assert_eq!(binding.kind, "app");
    // Upstream quirk: not a valid UUID; guids are not validated.
    assert_eq!(binding.app_guid(), Some("74f7c078-0934-470f-9883-4fddss5b8f13"));
    assert_eq!(binding.service_instance_guid(), Some("8bfe4c1b-9e18-45b1-83be-124163f31f9e"));
    assert_eq!(binding.last_operation.unwrap().state.as_deref(), Some("succeeded"));
    assert_eq!(binding.metadata.labels.get("baz").map(String::as_str), Some("qux"));
}

#[test]
fn service_credential_bindings_list() {
    let page: Page<ServiceCredentialBinding> = fixture("service_credential_bindings_list.json");
    assert!(!page.resources.is_empty());
    assert!(page.resources.iter().all(|b| b.service_instance_guid().is_some()));
}

#[test]
fn manifest_diff() {
    let diff: ManifestDiff = fixture("manifest_diff.json");
    assert_eq!(diff.diff.len(), 3);
    assert_eq!(diff.diff[0].op, "remove");
    assert_eq!(diff.diff[2].path, "/applications/2/processes/1/memory");
    assert_eq!(diff.diff[2].value, Some(serde_json::json!("512M")));
    // json-diff's `move` (a reordered array) names where the element came from and carries no value.
    let moved: ManifestDiff =
        serde_json::from_str(r#"{"diff":[{"op":"move","path":"/applications/0/routes/0","from":"/1"}]}"#).unwrap();
    assert_eq!(moved.diff[0].from.as_deref(), Some("/1"));
    assert_eq!(moved.diff[0].value, None);
    // A key the manifest sets to null is a replace to null; a removed null is a remove without `was`
    // (json-diff's `replace`/`remove` with `include_was`).
    let nulls: ManifestDiff = serde_json::from_str(
        r#"{"diff":[{"op":"replace","path":"/applications/0/command","was":"run","value":null},
                    {"op":"remove","path":"/applications/0/processes/1/command"}]}"#,
    )
    .unwrap();
    assert_eq!((&nulls.diff[0].was, &nulls.diff[0].value), (&Some(serde_json::json!("run")), &None));
    assert_eq!((&nulls.diff[1].was, &nulls.diff[1].value), (&None, &None));
}

#[test]
fn root() {
    let root: Root = fixture("root.json");
    assert_eq!(root.link("login").unwrap().href, "https://login.example.org");
    assert_eq!(root.link("log_cache").unwrap().href, "https://log-cache.example.org");
    assert!(root.link("credhub").is_none());
    assert_eq!(root.v3_version().as_deref(), Some("3.90.0"));
}

#[test]
fn v3_root() {
    let root: V3Root = fixture("v3_root.json");
    assert!(root.links.get("apps").and_then(Option::as_ref).unwrap().href.ends_with("/v3/apps"));
}

#[test]
fn info() {
    let info: Info = fixture("info.json");
    assert_eq!(info.name.as_deref(), Some("Cloud Foundry"));
    assert_eq!(info.version, Some(serde_json::json!(123)));
    let limits = info.rate_limits.unwrap();
    assert!(limits.enabled);
    assert_eq!(limits.general_limit, Some(2000));
    assert_eq!(info.cli_version.unwrap().minimum.as_deref(), Some("6.22.0"));
}

#[test]
fn error() {
    let body: ErrorBody = fixture("error.json");
    assert_eq!(body.errors[0].code, 10008);
    let text = serde_json::to_vec(&body).unwrap();
    let err = CfError::from_response("POST", "/v3/apps", 422, None, &text);
    assert_eq!(err.to_string(), "POST /v3/apps: 422 CF-UnprocessableEntity (10008): something went wrong");
}

#[test]
fn warnings() {
    let w: Warnings = fixture("warnings.json");
    assert_eq!(w.warnings[0].detail, "something went wrong");
}

#[test]
fn uaa_token() {
    let token: TokenResponse = fixture("uaa_token.json");
    assert_eq!(token.token_type.as_deref(), Some("bearer"));
    assert_eq!(token.expires_in, Some(43199));
    assert!(token.refresh_token.is_some());
    let claims = decode_jwt_claims(&token.access_token).unwrap();
    assert_eq!(claims.exp, Some(1406612135));
    assert_eq!(claims.user_name.as_deref(), Some("marissa"));
}

#[test]
fn uaa_token_claims() {
    let claims: TokenClaims = fixture("uaa_token_claims.json");
    assert_eq!(claims.exp, Some(1406612135));
    assert_eq!(claims.iat, Some(1406568935));
    assert_eq!(claims.grant_type.as_deref(), Some("password"));
    assert!(claims.scope.iter().any(|s| s == "cloud_controller.write"));
    assert!(claims.aud.iter().any(|a| a == "cloud_controller"));
}

#[test]
fn uaa_token_minimal() {
    let token: TokenResponse = fixture("uaa_token_minimal.json");
    assert_eq!(token.access_token, "2YotnFZFEjr1zCsicMWpAA");
    assert_eq!(token.expires_in, Some(3600));
    assert!(token.refresh_token.is_none());
    assert!(decode_jwt_claims(&token.access_token).is_none());
}

#[test]
fn uaa_token_refresh() {
    let token: TokenResponse = fixture("uaa_token_refresh.json");
    assert_eq!(token.access_token, "I-ACCESS-TOKEN");
    assert_eq!(token.refresh_token.as_deref(), Some("I-R-NEW-REFRESH-TOKEN"));
    assert_eq!(token.expires_in, Some(599));
}

#[test]
fn roles_list() {
    let page: Page<Role> = fixture("roles_list.json");
    let spaces: Vec<Option<&str>> = page.resources.iter().map(Role::space_guid).collect();
    // An org role first (its space `data: null`), then a space role.
    assert_eq!(spaces, [None, Some("47c5da3b-6cbc-421c-87c3-20bb3c41ab7c")]);
}

#[test]
fn every_fixture_has_a_test() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api");
    let this = include_str!("cf_fixtures.rs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(this.contains(&format!("fixture(\"{name}\")")), "no test reads {name}");
        }
    }
}

#[test]
fn organization_quota() {
    let quota: Quota = fixture("organization_quota.json");
    assert_eq!(quota.name.as_deref(), Some("don-quixote"));
    assert_eq!(quota.apps.total_memory_in_mb, Some(5120));
    assert_eq!(quota.apps.per_process_memory_in_mb, Some(1024));
}

#[test]
fn space_quota() {
    let quota: Quota = fixture("space_quota.json");
    assert_eq!(quota.guid, "f919ef8a-e333-472a-8172-baaf2c30d301");
    assert_eq!(quota.apps.total_memory_in_mb, Some(5120));
    // The presenters render CC's unlimited (-1) as null.
    let unlimited: Quota = serde_json::from_value(serde_json::json!({
        "guid": "q", "name": "default", "apps": {"total_memory_in_mb": null, "per_process_memory_in_mb": null}
    }))
    .unwrap();
    assert_eq!(unlimited.apps.total_memory_in_mb, None);
}

#[test]
fn usage_summaries() {
    let org: UsageSummary = fixture("organization_usage_summary.json");
    assert_eq!(org.usage_summary.memory_in_mb, Some(50));
    assert_eq!(org.usage_summary.started_instances, Some(3));
    let space: UsageSummary = fixture("space_usage_summary.json");
    assert_eq!(space.usage_summary.memory_in_mb, Some(3072));
}

#[test]
fn organization_and_space_name_their_quotas() {
    let org: Organization = fixture("organization.json");
    assert!(org.relationships.quota.guid().is_some());
    let space: Space = fixture("space.json");
    assert_eq!(space.relationships.quota.guid(), None);
}

/// One way CC may vary a payload: a field set to `null` or left out.
struct Variant {
    /// Where, e.g. `resources[0].relationships.space.data`.
    at: String,
    key: String,
    doc: serde_json::Value,
}

/// Every payload with each object key (recursively, array elements included) first set to `null`, then removed.
fn variants(doc: &serde_json::Value) -> Vec<Variant> {
    fn walk(root: &serde_json::Value, node: &serde_json::Value, pointer: &str, at: &str, out: &mut Vec<Variant>) {
        match node {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let child_pointer = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
                    let child_at = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                    if !child.is_null() {
                        let mut nulled = root.clone();
                        *nulled.pointer_mut(&child_pointer).unwrap() = serde_json::Value::Null;
                        out.push(Variant { at: child_at.clone(), key: key.clone(), doc: nulled });
                    }
                    let mut removed = root.clone();
                    removed.pointer_mut(pointer).unwrap().as_object_mut().unwrap().remove(key);
                    out.push(Variant { at: format!("{child_at} (removed)"), key: key.clone(), doc: removed });
                    walk(root, child, &child_pointer, &child_at, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(root, child, &format!("{pointer}/{i}"), &format!("{at}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(doc, doc, "", "", &mut out);
    out
}

/// Decodes every variant of the fixture as `T`; returns the variants that fail, with the error, and panics if an
/// error does not name the field that was changed.
fn strict_fields<T: DeserializeOwned>(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cf-api").join(name);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut strict = Vec::new();
    for variant in variants(&doc) {
        if let Err(e) = serde_path_to_error::deserialize::<_, T>(variant.doc) {
            let error = format!("at `{}`: {}", e.path(), e.inner());
            assert!(error.contains(&variant.key), "{name}: {}: the error does not name the field: {error}", variant.at);
            strict.push(format!("{name}: {}", variant.at));
        }
    }
    strict
}

/// CC varies its payloads by version and by state: fields appear in later versions, some are `null` until set.
/// Every payload the client decodes, with each field nulled and then removed in turn, either decodes or fails
/// naming that field; and only the fields without which the object means nothing (its guid, a state, a name, an
/// app a destination points at, an error's body…) may fail.
#[test]
fn decoding_tolerates_every_optional_field_nulled_or_absent() {
    let mut strict = Vec::new();
    strict.extend(strict_fields::<App>("app.json"));
    strict.extend(strict_fields::<App>("app_started.json"));
    strict.extend(strict_fields::<Page<App>>("apps_list.json"));
    strict.extend(strict_fields::<CurrentDropletRelationship>("app_current_droplet_relationship.json"));
    strict.extend(strict_fields::<EnvironmentVariables>("environment_variables.json"));
    for package in ["package.json", "package_created.json", "package_docker.json", "package_copy.json"] {
        strict.extend(strict_fields::<Package>(package));
    }
    strict.extend(strict_fields::<ResourceList>("resource_matches.json"));
    strict.extend(strict_fields::<Build>("build.json"));
    strict.extend(strict_fields::<Build>("build_staging.json"));
    strict.extend(strict_fields::<Droplet>("droplet.json"));
    strict.extend(strict_fields::<Droplet>("droplet_copy.json"));
    strict.extend(strict_fields::<Process>("process.json"));
    strict.extend(strict_fields::<Page<Process>>("processes_list.json"));
    strict.extend(strict_fields::<ProcessStats>("process_stats.json"));
    strict.extend(strict_fields::<Route>("route.json"));
    strict.extend(strict_fields::<Page<Route>>("routes_list.json"));
    strict.extend(strict_fields::<Destinations>("route_destinations.json"));
    strict.extend(strict_fields::<Domain>("domain.json"));
    strict.extend(strict_fields::<Page<Domain>>("domains_list.json"));
    strict.extend(strict_fields::<Organization>("organization.json"));
    strict.extend(strict_fields::<Page<Organization>>("organizations_list.json"));
    strict.extend(strict_fields::<Space>("space.json"));
    strict.extend(strict_fields::<Page<Space>>("spaces_list.json"));
    strict.extend(strict_fields::<Job>("job.json"));
    strict.extend(strict_fields::<Job>("job_failed.json"));
    strict.extend(strict_fields::<ServiceCredentialBinding>("service_credential_binding.json"));
    strict.extend(strict_fields::<Page<ServiceCredentialBinding>>("service_credential_bindings_list.json"));
    strict.extend(strict_fields::<ManifestDiff>("manifest_diff.json"));
    strict.extend(strict_fields::<Root>("root.json"));
    strict.extend(strict_fields::<V3Root>("v3_root.json"));
    strict.extend(strict_fields::<Info>("info.json"));
    strict.extend(strict_fields::<ErrorBody>("error.json"));
    strict.extend(strict_fields::<Warnings>("warnings.json"));
    for token in ["uaa_token.json", "uaa_token_minimal.json", "uaa_token_refresh.json"] {
        strict.extend(strict_fields::<TokenResponse>(token));
    }
    strict.extend(strict_fields::<TokenClaims>("uaa_token_claims.json"));
    strict.extend(strict_fields::<Quota>("organization_quota.json"));
    strict.extend(strict_fields::<Quota>("space_quota.json"));
    strict.extend(strict_fields::<UsageSummary>("organization_usage_summary.json"));
    strict.extend(strict_fields::<UsageSummary>("space_usage_summary.json"));
    // What CC always renders, without which the object means nothing; every other field may be null or absent.
    const REQUIRED: [&str; 19] = [
        "guid",
        "name",
        "state",
        // The kind of a package, a process, a stats entry, a health check and a lifecycle.
        "type",
        "health_check.type",
        "readiness_health_check.type",
        "lifecycle.type",
        "instances",
        // A stats entry's instance index.
        "index",
        "destinations[].app",
        "destinations[].app.guid",
        "relationships.shared_organizations.data[].guid",
        // A resource match: which file, how big, with what checksum.
        "path",
        "size_in_bytes",
        "checksum",
        "checksum.value",
        // A manifest diff entry: which operation, where.
        "diff[].op",
        "diff[].path",
        "access_token",
    ];
    let too_strict: Vec<_> = strict
        .iter()
        .filter(|line| {
            let at = line.split_once(": ").map_or("", |(_, at)| at).trim_end_matches(" (removed)");
            let mut field = String::new();
            let mut rest = at;
            while let Some(open) = rest.find('[') {
                let close = rest[open..].find(']').map_or(rest.len(), |c| open + c + 1);
                field.push_str(&rest[..open]);
                field.push_str("[]");
                rest = &rest[close..];
            }
            field.push_str(rest);
            let field = field.strip_prefix("resources[].").unwrap_or(&field);
            !REQUIRED.contains(&field)
        })
        .collect();
    assert!(
        too_strict.is_empty(),
        "decoding refuses forms CC can send:\n{}",
        too_strict.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n")
    );
}
