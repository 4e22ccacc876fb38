//! Running apps: a zip with a Procfile pushed, staged, started and served through the router; round-robin;
//! gorouter's errors; route propagation delay; crash and restart; health check failures; logs; no orphans.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use crate::common::{Api, app_zip, poll, send, test_config, via_router, zip_of};
use cf_sim::{Sim, SimConfig};

use crate::common::{alive, group_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_zip_is_served_through_the_router_round_robin() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let app = api.push("web", app_zip()).await;
    api.patch(&format!("/v3/apps/{app}/environment_variables"), json!({"var": {"VERSION": "v1"}})).await;
    let instance = api
        .post("/v3/service_instances", json!({"type": "user-provided", "name": "db", "credentials": {"uri": "postgres://x"}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await
        .json();
    api.post("/v3/service_credential_bindings", json!({"type": "app", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance["guid"]}}}}))
        .await;
    api.post(&format!("/v3/apps/{app}/actions/restart"), json!({})).await;
    let scaled = api.post(&format!("/v3/apps/{app}/processes/web/actions/scale"), json!({"instances": 2})).await;
    assert_eq!(scaled.status, 202);
    let stats = api.wait_running(&app, 2).await;
    let first = &stats["resources"][0];
    assert_eq!((first["routable"].clone(), first["host"].clone()), (json!(true), json!("127.0.0.1")));
    assert!(first["instance_ports"][0]["external"].as_u64().unwrap() > 0);
    api.map_route(&app, "web").await;
    let host = format!("web.{}", sim.info().domain);

    let mut indexes = BTreeSet::new();
    for _ in 0..4 {
        let response = via_router(&sim, &format!("{host}:80"), "/hello").await;
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        assert_eq!(body["version"], "v1");
        assert_eq!(body["path"], "/hello");
        assert_eq!(body["headers"]["x-cf-applicationid"], app.as_str());
        assert!(body["headers"]["x-vcap-request-id"].is_string());
        assert_eq!(body["headers"]["x-forwarded-proto"], "http");
        assert_eq!(body["vcap_services"]["user-provided"][0]["credentials"]["uri"], "postgres://x");
        assert_eq!(body["vcap_application"]["application_name"], "web");
        assert!(response.header("x-vcap-request-id").is_some());
        indexes.insert(body["index"].as_str().unwrap().to_string());
    }
    assert_eq!(indexes.into_iter().collect::<Vec<_>>(), ["0", "1"], "round-robin over both instances");

    let unknown = via_router(&sim, "nope.example.com", "/").await;
    assert_eq!((unknown.status, unknown.header("x-cf-routererror").as_deref()), (404, Some("unknown_route")));
    assert!(unknown.text().contains("Requested route ('nope.example.com') does not exist."));
    api.post(&format!("/v3/apps/{app}/actions/stop"), json!({})).await;
    let stopped = poll(Duration::from_secs(10), || async {
        let r = via_router(&sim, &host, "/").await;
        (r.status == 503).then_some(r)
    })
    .await;
    assert_eq!(stopped.header("x-cf-routererror").as_deref(), Some("no_endpoints"));
    let down = api.get(&format!("/v3/apps/{app}/processes/web/stats")).await.json();
    let states: Vec<&str> =
        down["resources"].as_array().unwrap().iter().map(|i| i["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["DOWN", "DOWN"], "a stopped app's instances are reported DOWN");

    let logs = sim.app_logs(&app);
    assert!(logs.iter().any(|e| e.source_type == "APP/PROC/WEB" && e.message.starts_with("listening on")));
    assert!(logs.iter().any(|e| e.source_type == "APP/PROC/WEB" && e.stream == cf_sim::Stream::Err));
    let read = send(
        "GET",
        &format!("{}/api/v1/read/{app}?limit=5&descending=true&envelope_types=LOG", sim.info().log_cache),
        &[("authorization", &format!("bearer {}", api.token))],
        Vec::new(),
        None,
    )
    .await
    .unwrap()
    .json();
    let batch = read["envelopes"]["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 5);
    let newest: i64 = batch[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let older: i64 = batch[4]["timestamp"].as_str().unwrap().parse().unwrap();
    assert!(newest > older, "descending order");
    assert!(base64::engine::general_purpose::STANDARD.decode(batch[0]["log"]["payload"].as_str().unwrap()).is_ok());
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_reach_the_router_only_after_the_propagation_delay() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("late", app_zip()).await;
    sim.set_route_propagation_delay(Duration::from_millis(800));
    let mapped_at = Instant::now();
    api.map_route(&app, "late").await;
    let host = format!("late.{}", sim.info().domain);
    let early = via_router(&sim, &host, "/").await;
    assert_eq!(early.status, 404, "a new route is unknown until the router learns it");
    let served = poll(Duration::from_secs(5), || async {
        (via_router(&sim, &host, "/").await.status == 200).then_some(Instant::now())
    })
    .await;
    assert!(served - mapped_at >= Duration::from_millis(800));

    // Unmapping and stopping at once: the router still sends traffic to the stopped app until it learns.
    let destination =
        api.get("/v3/routes").await.json()["resources"][0]["destinations"][0]["guid"].as_str().unwrap().to_string();
    let route = api.get("/v3/routes").await.json()["resources"][0]["guid"].as_str().unwrap().to_string();
    assert_eq!(api.delete(&format!("/v3/routes/{route}/destinations/{destination}")).await.status, 204);
    api.post(&format!("/v3/apps/{app}/actions/stop"), json!({})).await;
    let dropped = poll(Duration::from_secs(5), || async {
        let r = via_router(&sim, &host, "/").await;
        (r.status == 502).then_some(r)
    })
    .await;
    assert_eq!(dropped.header("x-cf-routererror").as_deref(), Some("endpoint_failure"));
    poll(Duration::from_secs(5), || async { (via_router(&sim, &host, "/").await.status == 503).then_some(()) }).await;
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_and_killed_instances_are_restarted() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("crashy", app_zip()).await;
    api.map_route(&app, "crashy").await;
    let host = format!("crashy.{}", sim.info().domain);
    let pid_before = sim.instance_pids();
    let _ = via_router(&sim, &host, "/exit").await;
    let crashed = poll(Duration::from_secs(10), || async {
        let stats = api.get(&format!("/v3/apps/{app}/processes/web/stats")).await.json();
        (stats["resources"][0]["state"] == "CRASHED").then_some(stats)
    })
    .await;
    assert_eq!(crashed["resources"][0]["details"], "APP/PROC/WEB: Exited with status 3");
    assert_eq!(crashed["resources"][0]["routable"], false);
    api.wait_running(&app, 1).await;
    assert_ne!(sim.instance_pids(), pid_before, "a new process runs the instance");
    assert!(sim.app_logs(&app).iter().any(|e| e.message.contains("\"reason\"=>\"CRASHED\"")));

    let before_kill = sim.instance_pids();
    sim.kill_instance("crashy", 0).unwrap();
    poll(Duration::from_secs(10), || async {
        (!sim.instance_pids().is_empty() && sim.instance_pids() != before_kill).then_some(())
    })
    .await;
    api.wait_running(&app, 1).await;
    assert_eq!(via_router(&sim, &host, "/").await.status, 200);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_crash_instances_like_diego() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("sickly", app_zip()).await;
    let web = api.get(&format!("/v3/apps/{app}/processes/web")).await.json()["guid"].as_str().unwrap().to_string();
    let patched = api
        .patch(
            &format!("/v3/processes/{web}"),
            json!({"health_check": {"type": "http", "data": {"endpoint": "/", "timeout": 1, "invocation_timeout": 1}}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    api.post(&format!("/v3/apps/{app}/actions/restart"), json!({})).await;
    api.wait_running(&app, 1).await;

    sim.set_app_health("sickly", false).unwrap();
    let crashed = poll(Duration::from_secs(10), || async {
        let stats = api.get(&format!("/v3/processes/{web}/stats")).await.json();
        (stats["resources"][0]["state"] == "CRASHED").then_some(stats)
    })
    .await;
    let details = crashed["resources"][0]["details"].as_str().unwrap().to_string();
    assert!(details.contains("received status code 500"), "{details}");
    // Restarted, it never becomes healthy: it crashes again once the 1 s timeout passes.
    let never_healthy = poll(Duration::from_secs(15), || async {
        let stats = api.get(&format!("/v3/processes/{web}/stats")).await.json();
        let details = stats["resources"][0]["details"].as_str().unwrap_or("").to_string();
        details.starts_with("Instance never healthy after 1s").then_some(details)
    })
    .await;
    assert!(never_healthy.contains("/"), "{never_healthy}");
    sim.set_app_health("sickly", true).unwrap();
    api.wait_running(&app, 1).await;
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_handles_many_concurrent_slow_requests() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("busy", app_zip()).await;
    api.map_route(&app, "busy").await;
    let host = format!("busy.{}", sim.info().domain);
    let router = sim.info().router.clone();
    let started = Instant::now();
    let requests: Vec<_> = (0..500)
        .map(|_| {
            let (router, host) = (router.clone(), host.clone());
            tokio::spawn(async move {
                send("GET", &format!("{router}/slow"), &[("host", &host)], Vec::new(), None).await.map(|r| r.status)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for request in requests {
        match request.await.unwrap() {
            Ok(200) => {}
            other => failures.push(format!("{other:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of 500 failed: {:?}", failures.len(), failures.first());
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    sim.stop();
}

/// An app that, on SIGTERM, stops accepting connections and finishes the requests in flight before exiting.
const GRACEFUL_PY: &str = r#"import signal, threading, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
import os

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        body = b"done"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.daemon_threads = False
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
print("finished the requests in flight", flush=True)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_instance_finishes_its_requests_in_flight_within_the_grace_period() {
    let sim = Sim::start(SimConfig { stop_grace_ms: 5000, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    // `sh -c` runs the start command as Diego does; the shell exits at once on SIGTERM, the app does not.
    let zip = zip_of(&[("server.py", GRACEFUL_PY.as_bytes(), 0o644), ("Procfile", b"web: python3 server.py\n", 0o644)]);
    let app = api.push("graceful", zip).await;
    api.map_route(&app, "graceful").await;
    let host = format!("graceful.{}", sim.info().domain);
    poll(Duration::from_secs(10), || async { (via_router(&sim, &host, "/").await.status == 200).then_some(()) }).await;
    let pids = sim.instance_pids();
    let slow = {
        let (router, host) = (sim.info().router.clone(), host.clone());
        tokio::spawn(async move { send("GET", &format!("{router}/slow"), &[("host", &host)], Vec::new(), None).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stopped = Instant::now();
    api.post(&format!("/v3/apps/{app}/actions/stop"), json!({})).await;
    let answer = slow.await.unwrap().expect("the request in flight is answered");
    assert_eq!((answer.status, answer.text()), (200, "done".to_owned()), "it finished after SIGTERM");
    poll(Duration::from_secs(10), || async { pids.iter().all(|&pid| group_members(pid).is_empty()).then_some(()) })
        .await;
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "the container went once the app exited, not at the grace period's end"
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_instance_outlives_the_sim() {
    let sim = Sim::start(SimConfig { stop_grace_ms: 1000, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("mortal", app_zip()).await;
    api.post(&format!("/v3/apps/{app}/processes/web/actions/scale"), json!({"instances": 3})).await;
    api.wait_running(&app, 3).await;
    let pids = sim.instance_pids();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&pid| alive(pid)));
    drop(sim);
    for pid in pids {
        assert!(!alive(pid), "instance process {pid} survived the sim");
        assert_eq!(group_members(pid), Vec::<u32>::new(), "processes of instance group {pid} survived the sim");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_apps_run_from_a_mapped_image_directory() {
    let image_dir = tempfile::tempdir().unwrap();
    std::fs::write(image_dir.path().join("server.py"), crate::common::SERVER_PY).unwrap();
    std::fs::write(image_dir.path().join("Procfile"), "web: python3 server.py\n").unwrap();
    let mapping = format!("example/web:1={}", image_dir.path().display());
    let sim = Sim::start(SimConfig { docker_images: vec![mapping], ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let app = api
        .post("/v3/apps", json!({"name": "docked", "lifecycle": {"type": "docker", "data": {}}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await
        .json()["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let bits =
        api.post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}})).await;
    assert_eq!(bits.status, 422, "docker apps take docker packages only");
    let package = api.post("/v3/packages", json!({"type": "docker", "data": {"image": "example/web:1"}, "relationships": {"app": {"data": {"guid": app}}}})).await.json();
    assert_eq!(package["state"], "READY");
    let build = api.stage(package["guid"].as_str().unwrap()).await;
    assert_eq!(build["state"], "STAGED", "{build}");
    let droplet = api.get(&format!("/v3/droplets/{}", build["droplet"]["guid"].as_str().unwrap())).await.json();
    assert_eq!(droplet["image"], "example/web:1");
    api.patch(&format!("/v3/apps/{app}/relationships/current_droplet"), json!({"data": {"guid": droplet["guid"]}}))
        .await;
    api.post(&format!("/v3/apps/{app}/actions/start"), json!({})).await;
    api.wait_running(&app, 1).await;
    api.map_route(&app, "docked").await;
    assert_eq!(via_router(&sim, &format!("docked.{}", sim.info().domain), "/").await.status, 200);

    let unknown = api.post("/v3/packages", json!({"type": "docker", "data": {"image": "missing/image"}, "relationships": {"app": {"data": {"guid": app}}}})).await.json();
    let failed = api.stage(unknown["guid"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "FAILED");
    sim.stop();
}
