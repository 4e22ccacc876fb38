//! Zero downtime under heavy load: at least 200 requests/s to the production route through the router for the
//! whole deploy — every 10th a slow one (1 s), every 3rd on a new connection, the rest on kept-alive ones —
//! with a route propagation delay of 1 s. Not one request may fail (any non-2xx or connection error counts);
//! responses switch from v1 to v2 once, and the moment they switch is reported. With 2 and with 4 instances,
//! and once at a real foundation's API latency (every CC, UAA and Log Cache answer 150 ms late), where the deploy
//! sends requests side by side.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness;
// The benchmark's reading of cf-sim's request log as a client sees it; these tests need its round trips, and check
// its reading of a wait with polls in flight side by side.
#[allow(dead_code)]
#[path = "../../benches/critical_path.rs"]
mod critical_path;
use crate::util::deploy::{PutDir, apps, deploy, manifest, wait_until_serving};
use crate::util::sim::start_sim_with;
use crate::util::summary;
use cf_sim::load::{self, LoadConfig};

const RATE: u32 = 200;
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long the load may run at most, whatever happens to the deploy.
const LOAD_BOUND: Duration = Duration::from_secs(120);

fn params(version: &str) -> Value {
    // Blue keeps running, unrouted, for longer than the router takes to learn the swap plus a slow request.
    json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": {"APP_VERSION": version}, "drain": "3s"})
}

fn deploy_under_load(instances: u32, api_latency_ms: u64) {
    let _heavy = harness::heavy();
    let sim = start_sim_with(|c| {
        c.route_propagation_delay_ms = PROPAGATION.as_millis() as u64;
        c.stop_grace_ms = 5000;
        c.api_latency_ms = api_latency_ms;
    });
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", instances, &["myapp"], &[]));
    deploy(&sim, &put, "myapp", params("v1"));
    wait_until_serving(&sim, "myapp", "v1");

    let host = format!("myapp.{}", sim.info().domain);
    let load =
        load::start(LoadConfig { max_duration: LOAD_BOUND, ..LoadConfig::heavy(&sim.info().router, &host, RATE) });
    std::thread::sleep(Duration::from_secs(2));
    let deploy_started = load.elapsed();
    sim.reset_request_log();
    deploy(&sim, &put, "myapp", params("v2"));
    let deploy_finished = load.elapsed();
    let requests = critical_path::timed(&sim.request_log(), Duration::from_millis(api_latency_ms));
    // Until every slow request sent during the deploy has answered, and a little beyond.
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop();

    let first_v2 = report.first_answer_by("v2");
    let last_v1 = report.last_answer_by("v1");
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    eprintln!("{instances} instances, API latency {api_latency_ms} ms: {}", report.describe());
    eprintln!(
        "deploy from +{:.2}s to +{:.2}s; first v2 answer at +{:.2}s, last v1 answer at +{:.2}s",
        deploy_started.as_secs_f64(),
        deploy_finished.as_secs_f64(),
        secs(first_v2),
        secs(last_v1)
    );
    summary::record(
        "zero-downtime",
        json!({"test": format!("{RATE} req/s during a deploy, {instances} instances{}", latency_note(api_latency_ms)),
               "requests": report.total(),
               "failed": report.failures().len(), "rate": report.rate(), "slow": report.slow(),
               "new_connections": report.new_connections(), "deploy_from": deploy_started.as_secs_f64(),
               "deploy_to": deploy_finished.as_secs_f64(), "first_v2": secs(first_v2), "last_v1": secs(last_v1),
               "v1_answers": report.answers_by("v1"), "v2_answers": report.answers_by("v2")}),
    );

    assert!(report.failures().is_empty(), "failed requests during the deploy:\n{}", report.describe_failures());
    assert!(report.rate() >= f64::from(RATE) * 0.95, "the load kept {RATE} requests/s: {}", report.describe());
    assert!(report.slow() > 0 && report.new_connections() > 0, "{}", report.describe());
    assert_eq!(report.versions(), ["v1", "v2"], "responses switch from v1 to v2");
    let (first_v2, last_v1) = (first_v2.unwrap(), last_v1.unwrap());
    assert!(first_v2 > deploy_started && first_v2 < deploy_finished, "v2 answered first during the deploy");
    assert!(last_v1 < deploy_finished + Duration::from_secs(1), "v1 stopped answering by the end of the deploy");
    assert_eq!(
        apps(&sim),
        [("myapp".to_owned(), "STARTED".to_owned()), ("myapp-previous".to_owned(), "STOPPED".to_owned())]
    );
    if api_latency_ms > 0 {
        assert_side_by_side_in_order(&requests);
    }
}

/// At API latency the deploy has requests in flight together (fewer round trips one after another than
/// requests), and still the candidate's mapping to the production route was answered before blue's unmapping
/// was sent.
fn assert_side_by_side_in_order(requests: &[critical_path::Timed]) {
    let all: Vec<&critical_path::Timed> = requests.iter().collect();
    let rounds = critical_path::rounds(&all);
    eprintln!("the deploy: {} requests in {rounds} round trips", all.len());
    assert!(
        rounds < all.len(),
        "some requests of the deploy go side by side: {rounds} round trips, {} requests",
        all.len()
    );
    let destinations = |method: &str| {
        requests.iter().find(|r| {
            r.record.method == method && cf_sim::request_log::path_template(&r.record.path).contains("/destinations")
        })
    };
    let (mapped, unmapped) = (destinations("POST").expect("a mapping"), destinations("DELETE").expect("an unmapping"));
    assert!(mapped.end <= unmapped.start, "the candidate was mapped before blue was unmapped");
}

fn latency_note(api_latency_ms: u64) -> String {
    if api_latency_ms == 0 { String::new() } else { format!(", API answers {api_latency_ms} ms late") }
}

#[test]
fn two_hundred_requests_a_second_through_a_deploy_with_two_instances() {
    deploy_under_load(2, 0);
}

#[test]
fn two_hundred_requests_a_second_through_a_deploy_with_four_instances() {
    deploy_under_load(4, 0);
}

#[test]
fn two_hundred_requests_a_second_through_a_deploy_at_150_ms_api_latency() {
    deploy_under_load(2, 150);
}

/// Polls of one build at 150 ms latency, arriving at `at_ms` past 10:00:00 (no processing time).
fn polls(at_ms: &[u64]) -> Vec<critical_path::Timed> {
    let record = |ms: &u64| cf_sim::RequestRecord {
        seq: 0,
        timestamp: format!("2026-12-05T10:00:{:02}.{:03}000000Z", ms / 1000, ms % 1000),
        listener: "api",
        method: "GET".into(),
        path: "/v3/builds/b".into(),
        query: None,
        status: 200,
        ms: 0,
        admin: false,
        fault: None,
        dropped: false,
        request_bytes: None,
    };
    let records: Vec<cf_sim::RequestRecord> = at_ms.iter().map(record).collect();
    critical_path::timed(&records, Duration::from_millis(150))
}

fn lag_and_bound(at_ms: &[u64]) -> (u64, u64) {
    let wait = &critical_path::waits(&polls(at_ms))[0];
    assert_eq!(wait.polls, at_ms.len());
    ((wait.lag * 1000.0).round() as u64, (wait.bound * 1000.0).round() as u64)
}

#[test]
fn a_wait_is_seen_done_by_the_first_answer_back_after_the_last_poll_left() {
    // One poll at a time: the last one saw it done (CF finished between 300 and 500 ms, known at 650 ms).
    assert_eq!(lag_and_bound(&[0, 150, 300, 500]), (250, 350));
    // Two in flight: the poll that left at 300 ms was answered at 450 ms, after the last one left (380 ms), so
    // it saw the build done (CF finished between 200 and 300 ms) and the last poll went unread.
    assert_eq!(lag_and_bound(&[0, 100, 200, 300, 380]), (200, 250));
    // Done by the first poll, one more already on its way: that poll's round trip.
    assert_eq!(lag_and_bound(&[0, 100]), (150, 150));
}
