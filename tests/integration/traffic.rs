//! Real traffic from Log Cache: the client reading gorouter's `http` timers of an app over a window, page by page,
//! and the post-swap watch judging production by the traffic its users sent, beside its own probe — with the real
//! binaries, cf-sim's router and Log Cache, and a population of users from its load generator.

use std::time::Duration;

use cf_blue_green_resource::cf::logs::now_ns;
use cf_sim::Sim;
use cf_sim::load::{self, LoadConfig};
use serde_json::{Value, json};

use crate::util::deploy::{PutDir, app_named, deploy, manifest, out, sample_params, wait_until_serving};
use crate::util::sim::{connect, start_sim_with};

fn params(version: &str) -> Value {
    sample_params(version, "1s", json!({}))
}

/// A sim with `myapp` v1 in production; its guid.
fn production_v1(sim: &Sim, put: &PutDir) -> String {
    put.write("ci/manifest.yml", &manifest(sim, "myapp", 1, &["myapp"], &[]));
    let v1 = deploy(sim, put, "myapp", params("v1"));
    wait_until_serving(sim, "myapp", "v1");
    v1["app_guid"].as_str().unwrap().to_owned()
}

/// More timers than one page holds (each request leaves a Server and a Client timer), all read, each once, in one
/// read or followed in several.
#[test]
fn the_timers_of_a_window_are_read_page_by_page() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    let app = production_v1(&sim, &put);
    let before = now_ns();
    let host = format!("myapp.{}", sim.info().domain);
    let config = LoadConfig::population(&sim.info().router, &host, 200, 8, &[("/version", 1)], Duration::from_secs(3));
    // The request budget ends it, however busy the machine.
    let report = load::start(LoadConfig { max_duration: Duration::from_secs(30), ..config }).finish();
    assert_eq!((report.total(), report.failures().len()), (600, 0), "{}", report.describe());
    std::thread::sleep(Duration::from_millis(200));
    let after = now_ns();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let window = runtime.block_on(async { connect(&sim).await.logs().http_timers(&app, before, after).await.unwrap() });
    assert!(window.complete);
    let server = window.timers.iter().filter(|t| t.peer_type.as_deref() == Some("Server")).count();
    let client = window.timers.iter().filter(|t| t.peer_type.as_deref() == Some("Client")).count();
    assert_eq!((server, client), (600, 600));
    assert!(window.timers.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "oldest first");
    assert!(window.timers.iter().all(|t| t.status == Some(200) && t.duration_ns.is_some_and(|ns| ns > 0)));
    // Followed in two polls, the same timers, each once.
    let middle = window.timers[700].timestamp;
    let (first, second) = runtime.block_on(async {
        let mut follower = connect(&sim).await.logs().follow_timers(&app, before);
        (follower.poll(middle).await.unwrap(), follower.poll(after).await.unwrap())
    });
    assert_eq!((first.timers.len(), second.timers.len()), (700, 500));
    assert_eq!([first.timers, second.timers].concat(), window.timers);
    let empty =
        runtime.block_on(async { connect(&sim).await.logs().http_timers(&app, after, now_ns()).await.unwrap() });
    assert_eq!((empty.timers.len(), empty.complete), (0, true));
}

/// Users get 500s on a path the probe never sends: the probe alone would pass, the real traffic Log Cache
/// recorded fails the watch, and production is swapped back — the log naming the source of each figure.
#[test]
fn the_watch_judges_production_by_its_real_traffic() {
    let sim = start_sim_with(|c| c.route_propagation_delay_ms = 200);
    let put = PutDir::with_sample_app();
    let v1 = production_v1(&sim, &put);
    let host = format!("myapp.{}", sim.info().domain);
    // `/backend` answers 500 without a BACKEND_URL: one request in five.
    let users = LoadConfig::population(
        &sim.info().router,
        &host,
        40,
        10,
        &[("/version", 4), ("/backend", 1)],
        Duration::from_secs(90),
    );
    let load = load::start(users);
    let mut watched = params("v2");
    watched["kpi"] = json!({"requests": 40, "paths": ["/version"], "max_error_rate": 0.05, "warmup": 5});
    watched["watch"] = json!("20s");
    let run = out(&sim, &put, "myapp", watched);
    let report = load.stop();
    run.assert_clean_failure("watch failed after the swap: error rate");
    assert!(run.last_line().contains("from real traffic (Log Cache)"), "{}", run.last_line());
    assert!(run.last_line().contains("production was swapped back to myapp"), "{}", run.last_line());
    assert!(run.stderr.contains("real traffic (Log Cache) "), "each round names both sources:\n{}", run.stderr);
    assert!(run.stderr.contains("probe "), "{}", run.stderr);
    assert!(run.stderr.contains("of the resource's own not counted"), "the probe is not users:\n{}", run.stderr);
    assert!(report.by_path()["/backend"] > 0, "{}", report.describe());
    assert_eq!(app_named(&sim, "myapp").unwrap()["guid"], json!(v1), "production is blue again");
}

/// Without timers in Log Cache (the router sends none) the watch says it could not judge real traffic, and
/// judges by its probe.
#[test]
fn without_timers_the_watch_says_real_traffic_could_not_be_judged() {
    let sim = start_sim_with(|c| c.no_http_timers = true);
    let put = PutDir::with_sample_app();
    production_v1(&sim, &put);
    let mut watched = params("v2");
    watched["kpi"] = json!({"requests": 40, "paths": ["/version"], "max_error_rate": 0.05, "warmup": 0});
    watched["watch"] = json!("4s");
    let run = out(&sim, &put, "myapp", watched);
    assert_eq!(run.status, 0, "{}", run.last_line());
    assert!(
        run.stderr.contains(
            "the watch could not judge production from real traffic (Log Cache): Log Cache holds no http timers of \
             it for the watch"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("production passed the watch (the probe): passed on"), "{}", run.stderr);
}
