//! What a new version carries from production that no manifest holds: network policies. A frontend calls a
//! backend over its internal route (`backend.apps.internal`), allowed by a policy; under load on both public
//! routes (every frontend request is also an internal call), the backend is deployed blue-green, then the
//! frontend, then the backend is rolled back: not one failed call. An identity that may not manage policies
//! fails before the lock, saying which permission it lacks; the dry run lists what would be carried. User
//! labels and annotations, app features (SSH) and binding names set on production follow it to the new version.

use std::time::Duration;

use serde_json::{Value, json};

use crate::util::deploy::{
    BUILD_ENV, PutDir, app_named, deploy, get, journal_keys, logged, out, out_as, spawn_out, wait_for,
};
use crate::util::run_resource;
use crate::util::sim::{connect, out_request, source, start_sim_with};
use cf_blue_green_resource::cf::CfClient;
use cf_blue_green_resource::cf::bindings::NewBinding;
use cf_sim::load::{self, LoadConfig};
use cf_sim::{Fault, FaultAction, Sim};

const INTERNAL_DOMAIN: &str = "apps.internal";

/// A manifest for `name` with a public route, and (when `internal`) a route on the internal domain.
fn manifest(sim: &Sim, name: &str, internal: bool, env: &[(&str, &str)]) -> String {
    let mut routes = vec![json!({"route": format!("{name}.{}", sim.info().domain)})];
    if internal {
        routes.push(json!({"route": format!("{name}.{INTERNAL_DOMAIN}")}));
    }
    let env: serde_json::Map<String, Value> = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let app = json!({
        "name": name, "instances": 2, "memory": "64M", "disk_quota": "256M", "routes": routes, "env": env,
        "health-check-type": "http", "health-check-http-endpoint": "/healthcheck",
    });
    serde_norway::to_string(&json!({"applications": [app]})).unwrap()
}

fn params(manifest: &str, version: &str) -> Value {
    json!({"path": "app", "manifest": manifest, "environment_variables": {"APP_VERSION": version}, "drain": "2s"})
}

/// The policy server's `path` (`…/networking/v1/external{path}`) with the deploying user's token.
async fn policy_server(cf: &CfClient, sim: &Sim, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let token = cf.access_token().await.unwrap();
    let url = format!("{}/networking/v1/external{path}", sim.info().api);
    let mut request = crate::util::http_client().build().unwrap().request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every policy, as (source app name, destination app name, port).
fn policies(sim: &Sim, runtime: &tokio::runtime::Runtime, cf: &CfClient) -> Vec<(String, String, u64)> {
    let listed = runtime.block_on(policy_server(cf, sim, reqwest::Method::GET, "/policies", None));
    let name = |guid: &Value| {
        let apps = sim.state_dump()["apps"].as_array().unwrap().clone();
        apps.iter().find(|a| &a["guid"] == guid).map_or("(deleted)".into(), |a| a["name"].as_str().unwrap().into())
    };
    let mut found: Vec<(String, String, u64)> = listed["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                name(&p["source"]["id"]),
                name(&p["destination"]["id"]),
                p["destination"]["ports"]["start"].as_u64().unwrap(),
            )
        })
        .collect();
    found.sort();
    found
}

/// A runtime and a client logged in to `sim`, for what the tests read and arrange beside the binary.
fn connected(sim: &Sim) -> (tokio::runtime::Runtime, CfClient) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cf = runtime.block_on(connect(sim));
    (runtime, cf)
}

/// A default sim, with [`connected`]'s runtime and client.
fn connected_sim() -> (Sim, tokio::runtime::Runtime, CfClient) {
    let sim = start_sim_with(|_| {});
    let (runtime, cf) = connected(&sim);
    (sim, runtime, cf)
}

fn guid(sim: &Sim, name: &str) -> String {
    app_named(sim, name).unwrap_or_else(|| panic!("no app {name}"))["guid"].as_str().unwrap().to_owned()
}

/// A fault: CC answers every `method path` request with `status` and its error `code` (title and detail CC's own).
fn cc_refuses(method: Option<&str>, path: &str, status: u16, code: u32) -> Fault {
    Fault {
        method: method.map(str::to_owned),
        path: path.into(),
        nth: 1,
        times: 0,
        action: FaultAction::Status { status, code: Some(code), title: None, detail: None },
    }
}

#[test]
fn policies_follow_the_new_version_and_internal_calls_never_fail() {
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = 300;
        c.stop_grace_ms = 3000;
    });
    let (runtime, cf) = connected(&sim);
    let created: Value =
        runtime.block_on(cf.post("/v3/domains", &json!({"name": INTERNAL_DOMAIN, "internal": true}))).unwrap();
    assert_eq!(created["internal"], true);
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", true, &[]));
    let backend_url = format!("http://backend.{INTERNAL_DOMAIN}:8080/version");
    put.write("ci/frontend.yml", &manifest(&sim, "frontend", false, &[("BACKEND_URL", &backend_url)]));

    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    deploy(&sim, &put, "frontend", params("ci/frontend.yml", "f1"));
    // No policy yet: the backend cannot be reached (once the new frontend route has reached the router).
    let refused = wait_for("the frontend route", Duration::from_secs(10), || {
        Some(get(&sim, "frontend", "/backend")).filter(|(status, _)| *status != 404)
    });
    assert_eq!(refused.0, 502, "{}", refused.1);
    // What `cf add-network-policy frontend backend` does.
    let allow = json!({"policies": [{"source": {"id": guid(&sim, "frontend")}, "destination": {"id": guid(&sim, "backend"), "protocol": "tcp", "ports": {"start": 8080, "end": 8080}}}]});
    runtime.block_on(policy_server(&cf, &sim, reqwest::Method::POST, "/policies", Some(allow)));
    wait_for("the frontend to reach the backend", Duration::from_secs(10), || {
        (get(&sim, "frontend", "/backend") == (200, "b1".to_owned())).then_some(())
    });

    let dry = out(&sim, &put, "backend", json!({"dry_run": true, "path": "app", "manifest": "ci/backend.yml"}));
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    let expected = format!("carry network policy {} → backend-green tcp 8080", guid(&sim, "frontend"));
    assert!(dry.stderr.contains(&expected), "the dry run lists what is carried: {}", dry.stderr);

    let internal_load = |host: &str, path: &str| {
        let mut config = LoadConfig::new(&sim.info().router, &format!("{host}.{}", sim.info().domain));
        config.requests_per_second = 40;
        config.new_connection_every = 3;
        config.paths = vec![(path.to_owned(), 1)];
        load::start(config)
    };
    // User metadata set on production (not in the manifest) goes to the new version.
    // So do its features (SSH off) and a binding with its own name, made with the API rather than the manifest.
    let backend = guid(&sim, "backend");
    let metadata = json!({"metadata": {"labels": {"team": "payments"}, "annotations": {"owner": "ops"}}});
    let _: Value = runtime.block_on(cf.patch(&format!("/v3/apps/{backend}"), &metadata)).unwrap();
    let ssh_off = json!({"enabled": false});
    let _: Value = runtime.block_on(cf.patch(&format!("/v3/apps/{backend}/features/ssh"), &ssh_off)).unwrap();
    let space = app_named(&sim, "backend").unwrap()["space"].clone();
    let db = json!({"type": "user-provided", "name": "db", "credentials": {"uri": "postgres://db"},
        "relationships": {"space": {"data": {"guid": space}}}});
    let db: Value = runtime.block_on(cf.post("/v3/service_instances", &db)).unwrap();
    let binding = json!({"type": "app", "name": "primary-db", "relationships": {"app": {"data": {"guid": backend}},
        "service_instance": {"data": {"guid": db["guid"]}}}});
    let _: Value = runtime.block_on(cf.post("/v3/service_credential_bindings", &binding)).unwrap();

    let through_frontend = internal_load("frontend", "/backend");
    let backend_public = internal_load("backend", "/version");
    std::thread::sleep(Duration::from_secs(1));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    deploy(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    let rolled_back = deploy(&sim, &put, "backend", json!({"rollback": true}));
    std::thread::sleep(Duration::from_secs(2));
    let (internal, public) = (through_frontend.stop(), backend_public.stop());

    for (what, report) in [("frontend → backend", &internal), ("backend", &public)] {
        eprintln!("{what}: {} requests, versions {:?}", report.total(), report.versions());
        assert!(report.total() > 100, "{what}: the load ran ({} requests)", report.total());
        assert!(report.failures().is_empty(), "{what}: failed calls:\n{}", report.describe_failures());
    }
    assert_eq!(internal.versions(), ["b1", "b2"], "internal calls reach the new backend, then the one rolled back to");
    assert_eq!(get(&sim, "frontend", "/backend"), (200, "b1".to_owned()));
    let previous = app_named(&sim, "backend-previous").unwrap();
    assert_eq!(previous["metadata"]["labels"]["team"], "payments", "b2 was given production's labels: {previous}");
    assert_eq!(previous["metadata"]["annotations"]["owner"], "ops");
    let b2 = previous["guid"].as_str().unwrap().to_owned();
    let ssh: Value = runtime.block_on(cf.get(&format!("/v3/apps/{b2}/ssh_enabled"))).unwrap();
    assert_eq!(ssh["enabled"], false, "b2 was given production's features: {ssh}");
    let bindings: Value = runtime.block_on(cf.get(&format!("/v3/service_credential_bindings?app_guids={b2}"))).unwrap();
    assert_eq!(bindings["resources"][0]["name"], "primary-db", "and its binding's name: {bindings}");
    assert_eq!(rolled_back["app_guid"].as_str(), Some(guid(&sim, "backend").as_str()));

    // Production is allowed as before; each kept version keeps what it had (and was given on the rollback).
    let expected: Vec<(String, String, u64)> = [
        ("frontend", "backend"),
        ("frontend", "backend-previous"),
        ("frontend-previous", "backend"),
        ("frontend-previous", "backend-previous"),
    ]
    .iter()
    .map(|(s, d)| ((*s).to_owned(), (*d).to_owned(), 8080))
    .collect();
    assert_eq!(policies(&sim, &runtime, &cf), expected);

    // Versions deleted by the housekeeping (keeping none: blue and the one kept before it) take theirs with them.
    let blue = guid(&sim, "frontend");
    let mut no_keep = params("ci/frontend.yml", "f3");
    no_keep["keep_previous"] = json!(false);
    deploy(&sim, &put, "frontend", no_keep);
    assert!(sim.state_dump()["apps"].as_array().unwrap().iter().all(|a| a["guid"] != blue.as_str()), "deleted");
    let left = policies(&sim, &runtime, &cf);
    assert!(left.iter().all(|(s, d, _)| s != "(deleted)" && d != "(deleted)"), "{left:?}");
    assert_eq!(left, frontend_to(&["backend", "backend-previous"]), "the new frontend has the deleted one's");
    assert_eq!(get(&sim, "frontend", "/backend"), (200, "b1".to_owned()));
}

#[test]
fn a_user_who_may_not_manage_policies_fails_before_the_lock_saying_so() {
    let sim = start_sim_with(|c| c.no_network_scopes = true);
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    let refused = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("network.write"), "{}", refused.stderr);
    assert!(refused.stderr.contains("do not include allowed scopes"), "the policy server's reason: {}", refused.stderr);
    assert!(app_named(&sim, "backend-green").is_none(), "the lock was never taken");
}

#[test]
fn a_foundation_without_container_networking_is_deployed_to_without_policies() {
    let sim = start_sim_with(|_| {});
    // No policy server: its path on the API's host is CC's unknown request.
    sim.add_fault(cc_refuses(None, "/networking/v1/external/*", 404, 10000));
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    let run = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("network policies"), "{}", run.stderr);
    assert_eq!(sim.faults()[0].fired, 1, "asked once, before the lock: production did not change under it");
}

#[test]
fn a_redeploy_lists_production_s_policies_once_and_looks_production_up_once() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    backend_with_a_caller(&sim, &runtime, &cf, &put);
    sim.reset_request_log();
    let run = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    let log = sim.request_log();
    let lists = log.iter().filter(|r| r.method == "GET" && r.path == "/networking/v1/external/policies").count();
    assert_eq!(lists, 1, "the list read before the lock is what the candidate is given");
    let lookups = log.iter().filter(|r| r.method == "GET" && r.path == "/v3/apps").count();
    assert_eq!(lookups, 2, "the apps with their space, and again under the lock: {log:#?}");
    assert!(!log.iter().any(|r| r.path == "/v3/spaces"), "the space came with the apps: {log:#?}");
    assert_eq!(policies(&sim, &runtime, &cf), frontend_to(&["backend", "backend-previous"]), "carried");
}

/// A managed instance of the sim's built-in broker in `space`, whose bindings' parameters can be read or not.
fn managed_instance(
    runtime: &tokio::runtime::Runtime,
    cf: &CfClient,
    space: &Value,
    name: &str,
    readable: bool,
) -> String {
    let seed = json!({"name": name, "space_guid": space, "bindings_retrievable": readable});
    let seeded: Value = runtime.block_on(cf.post("/_sim/managed_service_instances", &seed)).unwrap();
    seeded["guid"].as_str().unwrap().to_owned()
}

/// The (name, parameters) of `app`'s binding to `instance`; parameters `None` where the service refuses them.
fn binding_of(runtime: &tokio::runtime::Runtime, cf: &CfClient, app: &str, instance: &str) -> (Value, Option<Value>) {
    let path = format!("/v3/service_credential_bindings?app_guids={app}&service_instance_guids={instance}");
    let listed: Value = runtime.block_on(cf.get(&path)).unwrap();
    let binding = &listed["resources"][0];
    let path = format!("/v3/service_credential_bindings/{}/parameters", binding["guid"].as_str().unwrap());
    (binding["name"].clone(), runtime.block_on(cf.get::<Value>(&path)).ok())
}

#[test]
fn production_s_managed_bindings_keep_their_names_and_parameters_which_are_never_shown() {
    const SECRET: &str = "pw-9f3e1c-never-printed";
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    let (backend, space) = (guid(&sim, "backend"), app_named(&sim, "backend").unwrap()["space"].clone());
    let (db, audit) =
        (managed_instance(&runtime, &cf, &space, "db", true), managed_instance(&runtime, &cf, &space, "audit", false));
    let parameters = json!({"pool": 5, "password": SECRET});
    for (instance, name, given) in [(&db, "primary-db", &parameters), (&audit, "audit", &json!({"level": "all"}))] {
        let binding = NewBinding {
            app_guid: backend.clone(),
            service_instance_guid: instance.clone(),
            name: Some(name.to_owned()),
            parameters: Some(serde_json::from_value(given.clone()).unwrap()),
            ..NewBinding::default()
        };
        runtime.block_on(cf.bindings().create(&binding, Duration::from_secs(10))).unwrap();
    }

    let dry = out(&sim, &put, "backend", json!({"dry_run": true, "path": "app", "manifest": "ci/backend.yml"}));
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(dry.stderr.contains("the parameters of the binding to db (password, pool)"), "keys only: {}", dry.stderr);
    sim.reset_request_log();
    let run = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    let reads = sim.request_log().iter().filter(|r| r.method == "GET" && r.path.ends_with("/parameters")).count();
    assert_eq!(reads, 2, "one read per managed binding");
    assert!(run.stderr.contains("cannot be read (the service does not allow it)"), "said once: {}", run.stderr);
    for shown in [&dry.stdout, &dry.stderr, &run.stdout, &run.stderr] {
        assert!(!shown.contains(SECRET), "a parameter's value is never shown: {shown}");
    }

    let b2 = guid(&sim, "backend");
    assert_ne!(b2, backend, "a new production");
    assert_eq!(binding_of(&runtime, &cf, &b2, &db), (json!("primary-db"), Some(parameters)));
    assert_eq!(binding_of(&runtime, &cf, &b2, &audit), (json!("audit"), None), "bound, without what cannot be read");
}

#[test]
fn a_failure_to_read_a_binding_s_parameters_fails_before_the_lock() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    let space = app_named(&sim, "backend").unwrap()["space"].clone();
    let db = managed_instance(&runtime, &cf, &space, "db", true);
    let binding = NewBinding { app_guid: guid(&sim, "backend"), service_instance_guid: db, ..NewBinding::default() };
    runtime.block_on(cf.bindings().create(&binding, Duration::from_secs(10))).unwrap();
    sim.add_fault(cc_refuses(Some("GET"), "/v3/service_credential_bindings/:guid/parameters", 403, 10003));
    let refused = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_ne!(refused.status, 0);
    assert!(refused.stderr.contains("reading the parameters of backend's binding to db"), "{}", refused.stderr);
    assert!(app_named(&sim, "backend-green").is_none(), "the lock was never taken");
}

/// `backend` deployed (b1) and `frontend`, with a policy frontend → backend.
fn backend_with_a_caller(sim: &Sim, runtime: &tokio::runtime::Runtime, cf: &CfClient, put: &PutDir) {
    put.write("ci/backend.yml", &manifest(sim, "backend", false, &[]));
    put.write("ci/frontend.yml", &manifest(sim, "frontend", false, &[]));
    deploy(sim, put, "backend", params("ci/backend.yml", "b1"));
    deploy(sim, put, "frontend", params("ci/frontend.yml", "f1"));
    let allow = json!({"policies": [{"source": {"id": guid(sim, "frontend")}, "destination": {"id": guid(sim, "backend"), "protocol": "tcp", "ports": {"start": 8080, "end": 8080}}}]});
    runtime.block_on(policy_server(cf, sim, reqwest::Method::POST, "/policies", Some(allow)));
}

fn frontend_to(destinations: &[&str]) -> Vec<(String, String, u64)> {
    destinations.iter().map(|d| ("frontend".to_owned(), (*d).to_owned(), 8080)).collect()
}

#[test]
fn a_failed_candidate_is_deleted_with_the_policies_it_was_given() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    backend_with_a_caller(&sim, &runtime, &cf, &put);

    // Its verify fails: the candidate had been given frontend → it, and is deleted.
    let mut failing = params("ci/backend.yml", "b2");
    failing["verify"] = json!([{"path": "/version", "body_contains": "b9"}]);
    failing["verify_timeout"] = json!("2s");
    let failed = out(&sim, &put, "backend", failing.clone());
    assert_ne!(failed.status, 0);
    assert!(failed.stderr.contains("carrying 1 network policies of production to backend-green"), "{}", failed.stderr);
    assert!(failed.stderr.contains("deleted backend-green (on_failure: delete)"), "{}", failed.stderr);
    assert_eq!(policies(&sim, &runtime, &cf), frontend_to(&["backend"]), "nothing names the deleted candidate");

    // Killed while it verifies: the next put removes the candidate and what it was given, then deploys.
    failing["verify_timeout"] = json!("60s");
    failing["lock_lease"] = json!("2s");
    let running = spawn_out(&sim, &put, "backend", failing, "8");
    let green = wait_for("the candidate to be given the policy", Duration::from_secs(30), || {
        let green = app_named(&sim, "backend-green")?["guid"].as_str()?.to_owned();
        policies(&sim, &runtime, &cf).contains(&("frontend".into(), "backend-green".into(), 8080)).then_some(green)
    });
    logged("out build 8, killed while it verifies", running.kill());
    let next = out_as(&sim, &put, "backend", params("ci/backend.yml", "b3"), "9");
    assert_eq!(next.status, 0, "{}", next.stderr);
    assert!(next.stderr.contains("recovering"), "{}", next.stderr);
    assert!(app_named(&sim, "backend-failed").is_none() && !sim.state_dump().to_string().contains(&green));
    assert_eq!(policies(&sim, &runtime, &cf), frontend_to(&["backend", "backend-previous"]));
}

/// Every route policy, as (source app name, route host, `team` label).
fn route_policies(sim: &Sim, runtime: &tokio::runtime::Runtime, cf: &CfClient) -> Vec<(String, String, String)> {
    let listed: Value = runtime.block_on(cf.get("/v3/route_policies?include=route")).unwrap();
    let routes = listed["included"]["routes"].as_array().cloned().unwrap_or_default();
    let apps = sim.state_dump()["apps"].as_array().unwrap().clone();
    let mut found: Vec<(String, String, String)> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let app = p["relationships"]["app"]["data"]["guid"].clone();
            let app_name = apps.iter().find(|a| a["guid"] == app).map_or("(deleted)", |a| a["name"].as_str().unwrap());
            let name = if app.is_null() { "(not an app)" } else { app_name };
            let route = &p["relationships"]["route"]["data"]["guid"];
            let host = routes.iter().find(|r| &r["guid"] == route).map_or("", |r| r["host"].as_str().unwrap());
            (name.to_owned(), host.to_owned(), p["metadata"]["labels"]["team"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    found.sort();
    found
}

/// `backend` (b1) with a route on a domain that enforces route policies, and `frontend` (f1), which may call
/// that route (a route policy labelled `team: payments`), as may anything in the space; answers the route's guid.
fn frontend_calling_backend_over_mtls(
    sim: &Sim,
    runtime: &tokio::runtime::Runtime,
    cf: &CfClient,
    put: &PutDir,
) -> Value {
    let mtls = json!({"name": "mtls.example.com", "enforce_route_policies": true, "route_policies_scope": "any"});
    let _: Value = runtime.block_on(cf.post("/v3/domains", &mtls)).unwrap();
    let mut backend: Value = serde_norway::from_str(&manifest(sim, "backend", false, &[])).unwrap();
    backend["applications"][0]["routes"].as_array_mut().unwrap().push(json!({"route": "backend.mtls.example.com"}));
    put.write("ci/backend.yml", &serde_norway::to_string(&backend).unwrap());
    put.write("ci/frontend.yml", &manifest(sim, "frontend", false, &[]));
    deploy(sim, put, "backend", params("ci/backend.yml", "b1"));
    deploy(sim, put, "frontend", params("ci/frontend.yml", "f1"));
    // The frontend may call the backend's mTLS route; so may anything in the space (not the frontend's to carry).
    let routes: Value = runtime.block_on(cf.get("/v3/routes?hosts=backend")).unwrap();
    let route = routes["resources"].as_array().unwrap().iter().find(|r| r["url"] == "backend.mtls.example.com");
    let route = route.unwrap()["guid"].clone();
    let space = app_named(sim, "frontend").unwrap()["space"].as_str().unwrap().to_owned();
    for source in [format!("cf:app:{}", guid(sim, "frontend")), format!("cf:space:{space}")] {
        let policy = json!({"source": source, "relationships": {"route": {"data": {"guid": route}}},
            "metadata": {"labels": {"team": "payments"}}});
        let _: Value = runtime.block_on(cf.post("/v3/route_policies", &policy)).unwrap();
    }
    route
}

/// A route policy of `app` on the backend's mTLS route, as [`route_policies`] lists it.
fn payments_policy(app: &str) -> (String, String, String) {
    (app.to_owned(), "backend".to_owned(), "payments".to_owned())
}

#[test]
fn route_policies_of_production_follow_the_new_version_and_go_with_a_deleted_one() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    let route = frontend_calling_backend_over_mtls(&sim, &runtime, &cf, &put);
    let before = route_policies(&sim, &runtime, &cf);

    let dry = out(&sim, &put, "frontend", json!({"dry_run": true, "path": "app", "manifest": "ci/frontend.yml"}));
    assert!(
        dry.stderr.contains(&format!("carry route policy frontend-green → route {}", route.as_str().unwrap())),
        "{}",
        dry.stderr
    );

    // A candidate that fails is deleted with the route policy it was given.
    let mut failing = params("ci/frontend.yml", "f9");
    failing["verify"] = json!([{"path": "/version", "body_contains": "f0"}]);
    failing["verify_timeout"] = json!("2s");
    let failed = out(&sim, &put, "frontend", failing);
    assert!(failed.stderr.contains("carrying 1 route policies of production to frontend-green"), "{}", failed.stderr);
    assert_eq!(route_policies(&sim, &runtime, &cf), before, "none names the deleted candidate");

    // The new version gets production's (same route, same labels); the kept one keeps its own.
    deploy(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    let policy = payments_policy;
    let carried = route_policies(&sim, &runtime, &cf);
    assert!(carried.contains(&policy("frontend")) && carried.contains(&policy("frontend-previous")), "{carried:?}");
    assert_eq!(carried.len(), 3, "and the space's, untouched: {carried:?}");

    // Versions the housekeeping deletes take theirs with them.
    let mut no_keep = params("ci/frontend.yml", "f3");
    no_keep["keep_previous"] = json!(false);
    deploy(&sim, &put, "frontend", no_keep);
    let left = route_policies(&sim, &runtime, &cf);
    assert!(left.iter().all(|(app, _, _)| app != "(deleted)"), "{left:?}");
    assert!(left.contains(&policy("frontend")) && left.len() == 2, "{left:?}");
}

/// At CC API 3.224.0 (cloud_controller_ng merged route policies at that version) CC's 404 says there are none;
/// an older foundation's version says so, and they are not asked for.
#[test]
fn a_foundation_without_route_policies_is_deployed_to_without_them_said_once() {
    for (minor, asked) in [(224, 1), (223, 0)] {
        let sim = start_sim_with(|c| c.cc_api_version = cf_sim::config::CcApiVersion(3, minor, 0));
        let put = PutDir::with_sample_app();
        put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
        deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
        sim.reset_request_log();
        let run = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
        assert_eq!(run.status, 0, "{}", run.stderr);
        assert_eq!(run.stderr.matches("this foundation has no route policies").count(), 1, "{}", run.stderr);
        let sent = sim.request_log().iter().filter(|r| r.path.starts_with("/v3/route_policies")).count();
        assert_eq!(sent, asked, "CC API 3.{minor}.0");
    }
}

#[test]
fn a_production_without_route_policies_costs_one_request_for_them() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    sim.reset_request_log();
    let run = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    let asked = sim.request_log().iter().filter(|r| r.path.starts_with("/v3/route_policies")).count();
    assert_eq!(asked, 1);
    assert!(!sim.request_log().iter().any(|r| r.path == "/v3/roles"), "no roles to ask for");
    assert!(!run.stderr.contains("route polic"), "{}", run.stderr);
}

#[test]
fn production_s_route_policies_are_listed_once_before_the_lock() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    frontend_calling_backend_over_mtls(&sim, &runtime, &cf, &put);
    let production = guid(&sim, "frontend");
    sim.reset_request_log();
    let run = out(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    let log = sim.request_log();
    let listed: Vec<usize> = (0..log.len())
        .filter(|&i| log[i].method == "GET" && log[i].path == "/v3/route_policies")
        .filter(|&i| log[i].query.as_deref().is_some_and(|q| q.contains(&production)))
        .collect();
    assert_eq!(listed.len(), 1, "production's route policies are listed once: {log:#?}");
    let lock = log.iter().position(|r| r.method == "POST" && r.path == "/v3/apps").expect("the candidate, the lock");
    assert!(listed[0] < lock, "listed before the lock is taken: {log:#?}");
    let asked: Vec<usize> = (0..log.len()).filter(|&i| log[i].method == "GET" && log[i].path == "/v3/roles").collect();
    assert_eq!(asked.len(), 1, "the deploying user's developer roles, asked once for the routes' spaces: {log:#?}");
    assert!(asked[0] < lock && log[asked[0]].query.as_deref().is_some_and(|q| q.contains("space_developer")));
    let carried = route_policies(&sim, &runtime, &cf);
    assert!(carried.contains(&payments_policy("frontend")), "the new version was given it: {carried:?}");
    assert!(carried.contains(&payments_policy("frontend-previous")), "{carried:?}");

    // A dry run lists each kind once too, and says what it would carry from that list.
    sim.reset_request_log();
    let dry = out(&sim, &put, "frontend", json!({"dry_run": true, "path": "app", "manifest": "ci/frontend.yml"}));
    assert_eq!(dry.status, 0, "{}", dry.stderr);
    assert!(dry.stderr.contains("carry route policy frontend-green → route"), "{}", dry.stderr);
    let log = sim.request_log();
    for path in ["/v3/route_policies", "/networking/v1/external/policies"] {
        let listed = log.iter().filter(|r| r.method == "GET" && r.path == path).count();
        assert_eq!(listed, 1, "a dry run lists {path} once: {log:#?}");
    }
}

#[test]
fn a_user_who_may_not_read_route_policies_fails_before_the_lock_saying_so() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/backend.yml", &manifest(&sim, "backend", false, &[]));
    deploy(&sim, &put, "backend", params("ci/backend.yml", "b1"));
    // CC's answer to a token that may not read (ApplicationController#check_read_permissions!): 403, 10003.
    sim.add_fault(cc_refuses(Some("GET"), "/v3/route_policies", 403, 10003));
    sim.reset_request_log();
    let refused = out(&sim, &put, "backend", params("ci/backend.yml", "b2"));
    assert_eq!((refused.status, refused.stdout.as_str()), (1, ""), "{}", refused.stderr);
    assert_eq!(refused.stderr.matches("error:").count(), 1, "one line: {}", refused.stderr);
    assert_eq!(
        refused.last_line(),
        "error: route policies: Cloud Controller refused to list backend's route policies (CF-NotAuthorized): the \
         deploying user needs the cloud_controller.read scope to read them, and space developer rights in their \
         routes' spaces to give them to the new version"
    );
    let written: Vec<String> = sim
        .request_log()
        .iter()
        .filter(|r| r.path.starts_with("/v3/apps") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(written, Vec::<String>::new(), "no lock taken, no journal written");
    assert!(app_named(&sim, "backend-green").is_none(), "no candidate");
    let production = app_named(&sim, "backend").unwrap();
    assert!(journal_keys(&production).is_empty(), "{production}");
}

#[test]
fn a_user_who_may_not_give_route_policies_fails_saying_so_and_the_candidate_goes() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    frontend_calling_backend_over_mtls(&sim, &runtime, &cf, &put);
    let before = route_policies(&sim, &runtime, &cf);
    // CC's answer to a space auditor, manager or supporter of the route's space (route_policies_spec.rb).
    sim.add_fault(cc_refuses(Some("POST"), "/v3/route_policies", 403, 10003));
    let refused = out(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    refused.assert_clean_failure(
        "route policies: Cloud Controller refused to give frontend-green production's route policies \
         (CF-NotAuthorized): the deploying user needs space developer rights in the spaces of their routes",
    );
    assert_eq!(refused.stderr.matches("error:").count(), 1, "one line: {}", refused.stderr);
    assert!(app_named(&sim, "frontend-green").is_none(), "the candidate is deleted");
    assert_eq!(route_policies(&sim, &runtime, &cf), before, "production keeps its own, nothing else was given");
}

/// Leaves the deploying user a space auditor of `space`, no longer its developer (through cf-sim's admin API): it
/// may still read the space's routes and their policies, not give them to another app.
fn only_an_auditor_in(sim: &Sim, runtime: &tokio::runtime::Runtime, cf: &CfClient, space: &str) {
    let developers: Value =
        runtime.block_on(cf.get(&format!("/v3/roles?types=space_developer&space_guids={space}"))).unwrap();
    for role in developers["resources"].as_array().unwrap() {
        runtime.block_on(cf.delete(&format!("/_sim/roles/{}", role["guid"].as_str().unwrap()))).unwrap();
    }
    let auditor = json!({"type": "space_auditor", "username": sim.info().username, "space_guid": space});
    let _: Value = runtime.block_on(cf.post("/_sim/roles", &auditor)).unwrap();
}

#[test]
fn a_user_who_is_no_developer_in_a_route_policy_s_space_fails_before_the_lock_saying_so() {
    let (sim, runtime, cf) = connected_sim();
    let put = PutDir::with_sample_app();
    frontend_calling_backend_over_mtls(&sim, &runtime, &cf, &put);
    let before = route_policies(&sim, &runtime, &cf);
    let space = app_named(&sim, "frontend").unwrap()["space"].as_str().unwrap().to_owned();
    only_an_auditor_in(&sim, &runtime, &cf, &space);
    sim.reset_request_log();
    let refused = out(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    assert_eq!((refused.status, refused.stdout.as_str()), (1, ""), "{}", refused.stderr);
    assert_eq!(refused.stderr.matches("error:").count(), 1, "one line: {}", refused.stderr);
    assert_eq!(
        refused.last_line(),
        format!(
            "error: route policies: the deploying user {} is not a space developer in space {}, where production's \
             route policies' routes are: giving them to the new version needs the Space Developer role there (or \
             the cloud_controller.admin scope)",
            sim.info().username,
            sim.info().space
        )
    );
    let log = sim.request_log();
    assert_eq!(log.iter().filter(|r| r.path == "/v3/roles").count(), 1, "{log:#?}");
    let written: Vec<String> = log
        .iter()
        .filter(|r| r.path.starts_with("/v3/apps") && r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(written, Vec::<String>::new(), "no lock taken, no journal written");
    assert!(journal_keys(&app_named(&sim, "frontend").unwrap()).is_empty());
    assert_eq!(route_policies(&sim, &runtime, &cf), before);

    // An admin (the CI client's cloud_controller.admin) needs no role, and is not asked for one.
    let mut admin = source(&sim, "frontend");
    let info = sim.info();
    admin.as_object_mut().unwrap().retain(|key, _| key != "username" && key != "password");
    (admin["client_id"], admin["client_secret"]) = (json!(info.client_id), json!(info.client_secret));
    sim.reset_request_log();
    let request = out_request(&admin, Some(params("ci/frontend.yml", "f2")));
    let run = run_resource("out", &[put.path().to_str().unwrap()], &request, BUILD_ENV);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!sim.request_log().iter().any(|r| r.path == "/v3/roles"));
    assert!(route_policies(&sim, &runtime, &cf).contains(&payments_policy("frontend")));
}

#[test]
fn the_roles_of_every_route_policy_s_space_are_asked_at_once_and_the_line_names_those_lacking() {
    let sim = start_sim_with(|c| c.extra_spaces = vec![format!("{}/other", c.organization)]);
    let (runtime, cf) = connected(&sim);
    let put = PutDir::with_sample_app();
    frontend_calling_backend_over_mtls(&sim, &runtime, &cf, &put);
    // The frontend may also call a route of another space, where its deploying user is only an auditor.
    let first = |path: &str| {
        let listed: Value = runtime.block_on(cf.get(path)).unwrap();
        listed["resources"][0]["guid"].as_str().unwrap().to_owned()
    };
    let (other, mtls) = (first("/v3/spaces?names=other"), first("/v3/domains?names=mtls.example.com"));
    let relationships = json!({"domain": {"data": {"guid": mtls}}, "space": {"data": {"guid": other}}});
    let route: Value =
        runtime.block_on(cf.post("/v3/routes", &json!({"host": "ledger", "relationships": relationships}))).unwrap();
    let source = format!("cf:app:{}", guid(&sim, "frontend"));
    let policy = json!({"source": source, "relationships": {"route": {"data": {"guid": route["guid"]}}}});
    let _: Value = runtime.block_on(cf.post("/v3/route_policies", &policy)).unwrap();
    only_an_auditor_in(&sim, &runtime, &cf, &other);

    sim.reset_request_log();
    let refused = out(&sim, &put, "frontend", params("ci/frontend.yml", "f2"));
    refused.assert_clean_failure(&format!(
        "the deploying user {} is not a space developer in space other, where",
        sim.info().username
    ));
    let log = sim.request_log();
    let asked: Vec<&str> = log.iter().filter(|r| r.path == "/v3/roles").filter_map(|r| r.query.as_deref()).collect();
    assert_eq!(asked.len(), 1, "one request for both spaces: {log:#?}");
    let home = app_named(&sim, "frontend").unwrap()["space"].as_str().unwrap().to_owned();
    assert!(asked[0].contains(&home) && asked[0].contains(&other), "{}", asked[0]);
    assert!(!log.iter().any(|r| r.method == "POST" && r.path == "/v3/apps"), "no lock taken");
}
