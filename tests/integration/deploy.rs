//! `out` end to end against cf-sim with the real binary, Concourse-style stdin and env, and the sample app:
//! a first deploy; v1 → v2 under load with route propagation delay and not one failed request; every failure
//! before the swap leaving production serving; routes, workers, vars, inherited scale, services and
//! `keep_previous`; a temporary route on another domain; a docker image; and the check → in round trip of what
//! was deployed.

use std::time::Duration;

use crate::util::deploy::{
    BUILD_ENV, PutDir, app_named, apps, deploy, get, manifest, out, route_destinations, routes, wait_until_serving,
};
use crate::util::run_resource;
use crate::util::sim::{
    check_request, connect, home_space, in_request, out_request, resource_requests, source, start_sim_with,
};
use cf_blue_green_resource::cf::root::MIN_CC_API_VERSION;
use cf_sim::Sim;
use cf_sim::config::CcApiVersion;
use cf_sim::load::{self, LoadConfig};
use serde_json::{Value, json};

fn sim_with_delay(propagation_ms: u64) -> Sim {
    start_sim_with(|c| {
        c.route_propagation_delay_ms = propagation_ms;
        c.stop_grace_ms = 3000;
    })
}

fn params(version: &str) -> Value {
    json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": {"APP_VERSION": version}, "drain": "2s"})
}

fn app_names(sim: &Sim) -> Vec<String> {
    apps(sim).into_iter().map(|(name, _)| name).collect()
}

/// A redeploy finds its space among the apps it lists (`include=space.organization`) and asks for no space; a first
/// deploy (no app there yet) and one naming its organization and space in another case than CF look the space up.
#[test]
fn a_redeploy_takes_its_space_from_the_apps_listed_and_only_otherwise_looks_it_up() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let space_lookups = || sim.request_log().iter().filter(|r| r.method == "GET" && r.path == "/v3/spaces").count();
    deploy(&sim, &put, "myapp", params("v1"));
    assert_eq!(space_lookups(), 1, "a first deploy");
    sim.reset_request_log();
    deploy(&sim, &put, "myapp", params("v2"));
    assert_eq!(space_lookups(), 0, "a redeploy");
    wait_until_serving(&sim, "myapp", "v2");
    sim.reset_request_log();
    let mut shouting = source(&sim, "myapp");
    shouting["organization"] = json!("SIM-ORG");
    shouting["space"] = json!("Sim-Space");
    let request = out_request(&shouting, Some(params("v3")));
    let run = run_resource("out", &[put.path().to_str().unwrap()], &request, BUILD_ENV);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_eq!(space_lookups(), 1, "names in another case than CF's");
    wait_until_serving(&sim, "myapp", "v3");
    assert_eq!(app_names(&sim), ["myapp", "myapp-previous"]);
}

/// With nothing to drain (a first deploy, or `drain: 0s` and no watch) the journal write after the swap says
/// `housekeeping` at once; with a drain it says `swapped`, and `housekeeping` once the drain is over: one write more.
#[test]
fn the_journal_is_written_once_after_the_swap_when_there_is_nothing_to_drain() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    // The candidate's PATCHes: its journal writes, then the rename to production.
    let writes = |version: &str, drain: &str| {
        sim.reset_request_log();
        let mut params = params(version);
        params["drain"] = json!(drain);
        deploy(&sim, &put, "myapp", params);
        let candidate = format!("/v3/apps/{}", app_named(&sim, "myapp").unwrap()["guid"].as_str().unwrap());
        sim.request_log().iter().filter(|r| r.method == "PATCH" && r.path == candidate).count()
    };
    let first = writes("v1", "1s");
    let drained = writes("v2", "1s");
    let undrained = writes("v3", "0s");
    assert_eq!(drained, undrained + 1, "swapped, then housekeeping after the drain");
    assert_eq!(first, undrained, "a first deploy has nothing to drain");
    wait_until_serving(&sim, "myapp", "v3");
}

#[test]
fn first_deploy_then_v1_to_v2_under_load_without_a_failed_request() {
    deploy_v1_then_v2_under_load(CcApiVersion::LATEST);
}

/// The same on the oldest Cloud Controller the resource supports, with that version's answer shapes.
#[test]
fn the_same_deploy_on_the_oldest_supported_cloud_controller() {
    let oldest = MIN_CC_API_VERSION;
    deploy_v1_then_v2_under_load(CcApiVersion(oldest.major, oldest.minor, oldest.patch));
}

fn deploy_v1_then_v2_under_load(version: CcApiVersion) {
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = 600;
        c.stop_grace_ms = 3000;
        c.cc_api_version = version;
    });
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 2, &["myapp"], &[]));

    let v1 = deploy(&sim, &put, "myapp", params("v1"));
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())]);
    wait_until_serving(&sim, "myapp", "v1");

    let mut config = LoadConfig::new(&sim.info().router, &format!("myapp.{}", sim.info().domain));
    config.requests_per_second = 60;
    config.slow_every = 10;
    config.new_connection_every = 3;
    let load = load::start(config);
    std::thread::sleep(Duration::from_secs(1));
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop();

    eprintln!("load: {} requests, versions {:?}", report.total(), report.versions());
    assert!(report.total() > 200, "the load ran ({} requests)", report.total());
    assert!(report.failures().is_empty(), "failed requests during the deploy:\n{}", report.describe_failures());
    assert_eq!(report.versions(), ["v1", "v2"], "responses switch from v1 to v2");

    assert_ne!(v1["app_guid"], v2["app_guid"]);
    assert_eq!(
        apps(&sim),
        [("myapp".to_owned(), "STARTED".to_owned()), ("myapp-previous".to_owned(), "STOPPED".to_owned())]
    );
    let domain = &sim.info().domain;
    assert_eq!(routes(&sim), [format!("myapp.{domain}")], "the temporary route is gone");

    // check reports what out emitted, and in (the implicit get after the put) fetches it.
    let check = run_resource("check", &[], &check_request(&source(&sim, "myapp"), None), &[]);
    assert_eq!(serde_json::from_str::<Value>(&check.stdout).unwrap(), json!([v2]), "{}", check.stderr);
    let get_dir = tempfile::tempdir().unwrap();
    let fetched =
        run_resource("in", &[get_dir.path().to_str().unwrap()], &in_request(&source(&sim, "myapp"), &v2, None), &[]);
    assert_eq!(fetched.status, 0, "{}", fetched.stderr);
    let metadata: Value =
        serde_json::from_str(&std::fs::read_to_string(get_dir.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata["build"]["pipeline"], json!("shop"), "in reads back the build that deployed: {metadata:#}");
    assert_eq!(std::fs::read_to_string(get_dir.path().join("app_guid")).unwrap(), v2["app_guid"].as_str().unwrap());
}

/// Runs `out` expecting a failure before the swap; production must keep serving v1 throughout.
fn assert_fails_before_swap(sim: &Sim, put: &PutDir, params: Value, expected: &str) -> String {
    let mut config = LoadConfig::new(&sim.info().router, &format!("myapp.{}", sim.info().domain));
    config.requests_per_second = 30;
    let load = load::start(config);
    let run = out(sim, put, "myapp", params);
    let report = load.stop();
    run.assert_clean_failure(expected);
    assert!(report.failures().is_empty(), "production dropped requests:\n{}", report.describe_failures());
    assert_eq!(report.versions(), ["v1"], "production stayed on v1");
    assert!(run.stderr.contains("production is untouched"), "{}", run.stderr);
    run.stderr
}

#[test]
fn every_failure_before_the_swap_leaves_production_serving() {
    let sim = sim_with_delay(200);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    let prod_only = ["myapp".to_owned()];

    // Staging fails: an app directory nothing can run.
    put.write("broken/readme.txt", "no Procfile here");
    let stderr = assert_fails_before_swap(
        &sim,
        &put,
        json!({"path": "broken", "manifest": "ci/manifest.yml"}),
        "deploy failed in phase push: staging myapp-green failed",
    );
    assert!(stderr.contains("NoAppDetectedError"), "the staging error is shown: {stderr}");
    assert_eq!(app_names(&sim), prod_only);

    // Crash on start: its logs are shown before it is deleted.
    let mut crash = params("v2");
    crash["environment_variables"]["CRASH_ON_START"] = json!("true");
    let stderr = assert_fails_before_swap(&sim, &put, crash, "myapp-green did not start: every instance crashed");
    assert!(stderr.contains("crashing on start as configured"), "the app's own output is shown: {stderr}");
    assert_eq!(app_names(&sim), prod_only);

    // A health check that never passes: kept stopped as myapp-failed for debugging.
    let mut unhealthy = params("v2");
    unhealthy["environment_variables"]["HEALTHY"] = json!("false");
    unhealthy["health_check"] = json!({"type": "http", "endpoint": "/healthcheck", "timeout": 2});
    unhealthy["startup_timeout"] = json!("20s");
    unhealthy["on_failure"] = json!("keep");
    assert_fails_before_swap(&sim, &put, unhealthy, "deploy failed in phase push");
    assert_eq!(
        apps(&sim),
        [("myapp".to_owned(), "STARTED".to_owned()), ("myapp-failed".to_owned(), "STOPPED".to_owned())]
    );

    // An HTTP check that fails.
    let mut checked = params("v2");
    checked["verify"] = json!([{"path": "/version", "body_contains": "v9"}]);
    checked["verify_timeout"] = json!("2s");
    assert_fails_before_swap(&sim, &put, checked, "deploy failed in phase verify: HTTP check GET /version");

    // A smoke test that fails, with its output streamed.
    put.script("ci/smoke.sh", "echo \"smoking $GREEN_URL\"; exit 3");
    let mut smoked = params("v2");
    smoked["smoke_test"] = json!({"path": "ci/smoke.sh"});
    let stderr = assert_fails_before_swap(&sim, &put, smoked, "failed with exit status 3");
    let smoked = stderr.lines().find_map(|l| l.split("smoking http://").nth(1)).unwrap_or_default();
    assert!(smoked.starts_with("myapp-green-") && smoked.contains(&sim.info().domain), "{stderr}");

    let domain = &sim.info().domain;
    assert_eq!(routes(&sim), [format!("myapp.{domain}")], "no temporary route is left over");
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v1".to_owned()));
}

#[test]
fn routes_with_several_hosts_and_a_path_all_move_to_the_new_version() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    let routes_v1 = ["myapp", "www-myapp"];
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &routes_v1, &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp", "www-myapp", "myapp/api"], &[]));
    let v2 = deploy(&sim, &put, "myapp", params("v2"));
    for host in ["myapp", "www-myapp"] {
        assert_eq!(get(&sim, host, "/version"), (200, "v2".to_owned()), "{host}");
    }
    let domain = &sim.info().domain;
    let production = [v2["app_guid"].as_str().unwrap().to_owned()];
    assert_eq!(
        route_destinations(&sim),
        [
            (format!("myapp.{domain}"), production.to_vec()),
            (format!("myapp.{domain}/api"), production.to_vec()),
            (format!("www-myapp.{domain}"), production.to_vec()),
        ],
        "every production route reaches only the new version"
    );
}

/// Production's destinations on its routes: (route URL, protocol, port).
fn production_destinations(sim: &Sim, runtime: &tokio::runtime::Runtime) -> Vec<(String, Option<String>, Option<u32>)> {
    runtime.block_on(async {
        let cf = connect(sim).await;
        let space = home_space(&cf, sim).await;
        let app = cf.apps().by_name(&space.guid, "myapp").await.unwrap().unwrap();
        let mut found = Vec::new();
        for route in cf.routes().for_app(&app.guid).await.unwrap() {
            for d in cf.routes().destinations(&route.guid).await.unwrap().into_iter().filter(|d| d.app.guid == app.guid)
            {
                found.push((route.url.clone(), d.protocol, d.port));
            }
        }
        found.sort();
        found
    })
}

#[test]
fn destinations_keep_their_protocol_and_port_through_the_swap() {
    let sim = sim_with_delay(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let put = PutDir::with_sample_app();
    let domain = sim.info().domain.clone();
    let routes = format!("  routes:\n  - route: myapp.{domain}\n    protocol: http2\n  - route: www-myapp.{domain}\n");
    put.write("ci/manifest.yml", &format!("applications:\n- name: myapp\n  memory: 64M\n{routes}"));
    deploy(&sim, &put, "myapp", params("v1"));
    let http2 = Some("http2".to_owned());
    let first = production_destinations(&sim, &runtime);
    assert_eq!(first[0].0, format!("myapp.{domain}"));
    assert_eq!(first[0].1, http2, "the manifest's protocol is used on a first deploy: {first:?}");

    // Production mapped by hand to port 8080 with HTTP/2 on its second route too: the new version is mapped the
    // same way, not with CC's defaults (http1; `update_route_destinations.rb`).
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let app = cf.apps().by_name(&space.guid, "myapp").await.unwrap().unwrap();
        let route = cf.routes().for_app(&app.guid).await.unwrap().into_iter().find(|r| r.host == "www-myapp").unwrap();
        let old = cf.routes().destinations(&route.guid).await.unwrap().remove(0);
        let mut again = cf_blue_green_resource::cf::routes::NewDestination::app(&app.guid);
        again.protocol = http2.clone();
        again.port = Some(8080);
        // CC refuses a second destination of the same process with another protocol: unmap first.
        cf.routes().remove_destination(&route.guid, &old.guid).await.unwrap();
        cf.routes().insert_destinations(&route.guid, &[again]).await.unwrap();
    });
    put.write("ci/manifest.yml", "applications:\n- name: myapp\n  memory: 64M\n");
    deploy(&sim, &put, "myapp", params("v2"));
    let after = production_destinations(&sim, &runtime);
    assert_eq!(
        after,
        [
            (format!("myapp.{domain}"), http2.clone(), Some(8080)),
            (format!("www-myapp.{domain}"), http2.clone(), Some(8080))
        ],
        "v2 is reached as v1 was"
    );
    assert_eq!(get(&sim, "www-myapp", "/version"), (200, "v2".to_owned()));
}

#[test]
fn a_candidate_the_memory_quota_cannot_hold_beside_production_fails_before_it_is_pushed() {
    // 2 × 64M in production, 2 × 64M more for the candidate: 256 MB, and the space quota allows 200.
    let sim = start_sim_with(|c| c.space_memory_limit_mb = Some(200));
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 2, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    sim.reset_request_log();
    let run = out(&sim, &put, "myapp", params("v2"));
    assert_eq!(run.status, 1, "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("myapp-green cannot run beside production: the space quota")
            && last.contains("allows 200 MB of memory, 128 MB are in use and 128 MB more are needed (56 MB short)"),
        "{}",
        run.stderr
    );
    // The bits package is created with the candidate, beside the plan's reads, and deleted with it: no bits went
    // into it and nothing was staged.
    assert!(
        !resource_requests(&sim).iter().any(|r| r.path.ends_with("/upload") || r.path.contains("/builds")),
        "nothing was pushed"
    );
    assert_eq!(app_names(&sim), ["myapp"]);
}

#[test]
fn the_bits_package_is_created_beside_the_plan_so_the_upload_goes_out_with_the_manifest() {
    let latency = Duration::from_millis(100);
    let sim = start_sim_with(|c| c.api_latency_ms = latency.as_millis() as u64);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    sim.reset_request_log();
    deploy(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml"}));
    let requests = resource_requests(&sim);
    let arrived = |method: &str, path_end: &str| {
        let request = requests.iter().find(|r| r.method == method && r.path.ends_with(path_end));
        let request = request.unwrap_or_else(|| panic!("no {method} …{path_end}"));
        humantime::parse_rfc3339(&request.timestamp).unwrap()
    };
    let (package, applied, upload) =
        (arrived("POST", "/v3/packages"), arrived("POST", "/actions/apply_manifest"), arrived("POST", "/upload"));
    // Created a round trip before the manifest's application (made only once the push started, it would arrive
    // with it), so the upload leaves before the application's answer is back.
    assert!(applied.duration_since(package).unwrap() >= latency, "{package:?} {applied:?}");
    assert!(upload < applied + latency, "{applied:?} {upload:?}");
}

#[test]
fn an_internal_domain_never_carries_the_temporary_route() {
    let sim = sim_with_delay(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let body = json!({"name": "apps.internal", "internal": true});
        let _: Value = cf.post("/v3/domains", &body).await.unwrap();
    });
    let put = PutDir::with_sample_app();
    let domain = sim.info().domain.clone();
    put.write(
        "ci/manifest.yml",
        &format!("applications:\n- name: myapp\n  memory: 64M\n  routes:\n  - route: myapp.apps.internal\n  - route: myapp.{domain}\n"),
    );
    // Asked for: refused before anything changes.
    let mut asked = params("v1");
    asked["green_route"] = json!({"domain": "apps.internal"});
    sim.reset_request_log();
    let run = out(&sim, &put, "myapp", asked);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.trim_end().ends_with(
            "params.green_route.domain 'apps.internal' cannot carry the temporary route: it is internal: reached only from app containers"
        ),
        "{}",
        run.stderr
    );
    assert!(
        resource_requests(&sim).iter().filter(|r| r.listener == "api").all(|r| r.method == "GET"),
        "nothing changed"
    );

    // By default the first production route a worker reaches gives the domain: the internal one is passed over.
    deploy(&sim, &put, "myapp", params("v1"));
    let run = out(&sim, &put, "myapp", params("v2"));
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("on its temporary route myapp-green-"), "{}", run.stderr);
    let temp = run.stderr.lines().find_map(|l| l.split("on its temporary route ").nth(1)).unwrap_or_default();
    assert!(temp.trim().ends_with(&domain), "{temp}");

    // Only internal routes: nothing a worker can verify through, so the put stops before it pushes.
    put.write(
        "ci/manifest.yml",
        "applications:\n- name: myapp\n  memory: 64M\n  routes:\n  - route: myapp.apps.internal\n",
    );
    let mut only = params("v3");
    only["manifest"] = json!("ci/manifest.yml");
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let app = cf.apps().by_name(&space.guid, "myapp").await.unwrap().unwrap();
        for route in
            cf.routes().for_app(&app.guid).await.unwrap().into_iter().filter(|r| r.url != "myapp.apps.internal")
        {
            cf.routes().unmap_app(&route.guid, &app.guid).await.unwrap();
        }
    });
    let run = out(&sim, &put, "myapp", only);
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("production's routes are only on domains a Concourse worker cannot reach for verification: apps.internal (internal"),
        "{}",
        run.stderr
    );
    assert_eq!(app_names(&sim), ["myapp", "myapp-previous"]);
}

#[test]
fn a_worker_without_routes_is_swapped_by_instance_health() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "worker", 1, &[], &[]));
    deploy(&sim, &put, "worker", params("v1"));
    deploy(&sim, &put, "worker", params("v2"));
    assert_eq!(
        apps(&sim),
        [("worker".to_owned(), "STARTED".to_owned()), ("worker-previous".to_owned(), "STOPPED".to_owned())]
    );
    assert!(routes(&sim).is_empty(), "{:?}", routes(&sim));
    // Without a manifest, production's own is the base, and CC's generated manifest never says `no-route`: a
    // worker stays a worker, with neither a default route nor a temporary one.
    deploy(&sim, &put, "worker", json!({"path": "app", "environment_variables": {"APP_VERSION": "v3"}}));
    assert!(routes(&sim).is_empty(), "{:?}", routes(&sim));
}

#[test]
fn one_crashed_instance_among_several_is_waited_out_while_diego_restarts_it() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 3, &["myapp"], &[]));
    let marker = tempfile::tempdir().unwrap();
    let mut p = params("v1");
    p["environment_variables"]["CRASH_ONCE_MARKER"] = json!(marker.path().join("crashed"));
    let run = out(&sim, &put, "myapp", p);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("crashed") && run.stderr.contains("Cloud Foundry restarts it"), "{}", run.stderr);
    assert_eq!(app_names(&sim), ["myapp"]);
}

#[test]
fn vars_files_and_vars_fill_the_manifest_and_scale_is_inherited() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    let domain = sim.info().domain.clone();
    put.write(
        "ci/manifest.yml",
        &format!(
            "applications:\n- name: myapp\n  instances: ((instances))\n  memory: 64M\n  routes:\n  - route: ((host)).{domain}\n  env:\n    APP_VERSION: ((version))\n"
        ),
    );
    put.write("ci/vars.yml", "host: myapp\nversion: from-vars-file\n");
    let first = json!({"path": "app", "manifest": "ci/manifest.yml", "vars_files": ["ci/vars.yml"],
                       "vars": {"instances": 3}, "drain": "1s"});
    deploy(&sim, &put, "myapp", first);
    assert_eq!(get(&sim, "myapp", "/version"), (200, "from-vars-file".to_owned()));

    // The next manifest leaves instances unset: production's 3 carry over.
    put.write(
        "ci/manifest.yml",
        &format!("applications:\n- name: myapp\n  memory: 64M\n  routes:\n  - route: myapp.{domain}\n"),
    );
    let version = deploy(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "1s"}));
    let state = sim.state_dump();
    let app = state["apps"].as_array().unwrap().iter().find(|a| a["guid"] == version["app_guid"]).unwrap();
    assert_eq!(app["processes"][0]["instances"], json!(3), "{app:#}");
    assert_eq!(
        app["environment_variables"]["APP_VERSION"],
        json!("from-vars-file"),
        "env set by hand or manifest before survives"
    );

    let run = out(&sim, &put, "myapp", json!({"path": "app", "vars": {"unused": 1}}));
    run.assert_clean_failure("params.vars and params.vars_files fill in a manifest");
    put.write("ci/manifest.yml", "applications:\n- name: myapp\n  instances: ((count))\n  memory: ((mem))\n");
    let run = out(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml"}));
    run.assert_clean_failure("manifest ci/manifest.yml uses vars that have no value: count, mem");
}

#[test]
fn a_user_provided_service_from_the_manifest_is_bound_to_the_new_version() {
    let sim = sim_with_delay(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let credentials = [("uri".to_owned(), json!("mysql://db.example.com/shop"))].into();
        cf.service_instances().create_user_provided(&space.guid, "shop-db", &credentials).await.unwrap();
    });
    let put = PutDir::with_sample_app();
    let domain = sim.info().domain.clone();
    put.write(
        "ci/manifest.yml",
        &format!("applications:\n- name: myapp\n  memory: 64M\n  routes:\n  - route: myapp.{domain}\n  services:\n  - shop-db\n"),
    );
    deploy(&sim, &put, "myapp", params("v1"));
    let (status, body) = get(&sim, "myapp", "/env");
    assert_eq!(status, 200);
    let env: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(env["services"], json!(["shop-db"]), "{env}");
    assert!(!body.contains("db.example.com"), "the app lists names, never credentials");

    // Bound under a name of its own, then redeployed without a manifest: CC's generated manifest lists the
    // instance only, the binding name is carried from production's binding.
    put.write(
        "ci/named.yml",
        &format!("applications:\n- name: myapp\n  memory: 64M\n  routes:\n  - route: myapp.{domain}\n  services:\n  - name: shop-db\n    binding_name: primary\n"),
    );
    deploy(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/named.yml", "drain": "1s"}));
    deploy(&sim, &put, "myapp", json!({"path": "app", "drain": "1s"}));
    let names = runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let app = cf.apps().by_name(&space.guid, "myapp").await.unwrap().unwrap();
        let (bindings, _) = cf.bindings().for_app(&app.guid).await.unwrap();
        bindings.into_iter().map(|b| b.name).collect::<Vec<_>>()
    });
    assert_eq!(names, [Some("primary".to_owned())]);
}

#[test]
fn keep_previous_false_deletes_the_old_version() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    let mut second = params("v2");
    second["keep_previous"] = json!(false);
    deploy(&sim, &put, "myapp", second);
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())]);
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v2".to_owned()));
}

#[test]
fn a_droplet_from_one_foundation_deploys_to_another_without_staging() {
    let staging = sim_with_delay(0);
    let production = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&staging, "myapp", 1, &["myapp"], &[]));
    let version = deploy(&staging, &put, "myapp", params("v7"));

    // get with download_droplet into the put directory, as a pipeline's get step would.
    let fetched = put.path().join("staged");
    let run = run_resource(
        "in",
        &[fetched.to_str().unwrap()],
        &in_request(&source(&staging, "myapp"), &version, Some(json!({"download_droplet": true}))),
        &[],
    );
    assert_eq!(run.status, 0, "{}", run.stderr);

    put.write("ci/prod-manifest.yml", &manifest(&production, "myapp", 1, &["myapp"], &[("APP_VERSION", "v7")]));
    production.reset_request_log();
    deploy(&production, &put, "myapp", json!({"droplet": "staged/droplet.tgz", "manifest": "ci/prod-manifest.yml"}));
    let staged: Vec<_> = production.request_log().into_iter().filter(|r| r.path == "/v3/builds").collect();
    assert!(staged.is_empty(), "no staging on the second foundation");
    assert_eq!(get(&production, "myapp", "/version"), (200, "v7".to_owned()));
}

#[test]
fn the_overall_timeout_bounds_the_whole_put() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    let mut slow = params("v2");
    slow["environment_variables"]["STARTUP_DELAY_MS"] = json!("60000");
    slow["timeout"] = json!("4s");
    let started = std::time::Instant::now();
    let run = out(&sim, &put, "myapp", slow);
    run.assert_clean_failure("deploy failed in phase push");
    assert!(run.last_line().contains("timed out"), "{}", run.last_line());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the put gave up at its timeout, not the 5 minute startup timeout"
    );
    assert_eq!(app_names(&sim), ["myapp"], "the candidate is cleaned up");
}

#[test]
fn a_dry_run_never_prints_the_env_values_production_has() {
    let sim = sim_with_delay(0);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let mut first = params("v1");
    first["secret_environment_variables"] = json!({"API_KEY": "set-once-7c1f9e"});
    deploy(&sim, &put, "myapp", first);
    // This put knows nothing of the value: the candidate inherits it from production's env.
    let run = out(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml", "dry_run": true}));
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("API_KEY"), "the plan shows the variable: {}", run.stderr);
    assert!(!run.stderr.contains("set-once-7c1f9e"), "but never its value: {}", run.stderr);
}

#[test]
fn green_route_puts_the_candidate_on_the_host_and_domain_given() {
    let sim = start_sim_with(|c| c.extra_domains = vec!["test.sim.internal".into()]);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));

    let mut unknown = params("v2");
    unknown["green_route"] = json!({"domain": "nowhere.internal"});
    let before = (apps(&sim), route_destinations(&sim));
    out(&sim, &put, "myapp", unknown)
        .assert_clean_failure("params.green_route.domain 'nowhere.internal' is not a domain of this Cloud Foundry");
    assert_eq!((apps(&sim), route_destinations(&sim)), before, "an unknown domain changes nothing");

    let mut candidate_route = params("v2");
    candidate_route["green_route"] = json!({"host": "myapp-candidate", "domain": "test.sim.internal"});
    // The check can only pass on the candidate's own route: production still answers v1.
    candidate_route["verify"] = json!([{"path": "/version", "body_contains": "v2"}]);
    let run = out(&sim, &put, "myapp", candidate_route);
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains("temporary route myapp-candidate.test.sim.internal"), "{}", run.stderr);
    assert!(run.stderr.contains("HTTP checks on myapp-candidate.test.sim.internal"), "{}", run.stderr);
    assert_eq!(routes(&sim), [format!("myapp.{}", sim.info().domain)], "the temporary route is gone");
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v2".to_owned()));
}

#[test]
fn a_docker_image_deploys_blue_green_and_its_password_is_never_printed() {
    let image_dir = tempfile::tempdir().unwrap();
    std::fs::copy(crate::util::sim::sample_app_bin(), image_dir.path().join("sample-app")).unwrap();
    std::fs::write(image_dir.path().join("Procfile"), "web: ./sample-app\n").unwrap();
    let image = "registry.example.com/shop/myapp:2.0";
    let sim = start_sim_with(|c| c.docker_images = vec![format!("{image}={}", image_dir.path().display())]);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let password = "docker-registry-password-4711";
    let docker = |version: &str| {
        let mut params = params(version);
        params.as_object_mut().unwrap().remove("path");
        params["docker_image"] = json!(image);
        params["docker_username"] = json!("shop-ci");
        params["docker_password"] = json!(password);
        params
    };
    deploy(&sim, &put, "myapp", docker("v1"));
    wait_until_serving(&sim, "myapp", "v1");
    let run = out(&sim, &put, "myapp", docker("v2"));
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(run.stderr.contains(&format!("using docker image {image}")), "{}", run.stderr);
    for output in [&run.stdout, &run.stderr] {
        assert!(!output.contains(password), "the docker password was printed:\n{output}");
    }
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v2".to_owned()));

    let production = app_named(&sim, "myapp").unwrap()["guid"].clone();
    let state = sim.state_dump();
    let packages: Vec<&Value> =
        state["packages"].as_array().unwrap().iter().filter(|p| p["app"] == production).collect();
    assert_eq!(packages.len(), 1, "{state:#}");
    assert_eq!(packages[0]["type"], "docker", "the new version runs from a docker package: {state:#}");
    assert_eq!(
        apps(&sim),
        [("myapp".to_owned(), "STARTED".to_owned()), ("myapp-previous".to_owned(), "STOPPED".to_owned())]
    );
}
