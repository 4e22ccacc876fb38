//! gorouter's `http` timers in Log Cache and the PromQL endpoints that read them, as gorouter
//! (`handlers/httpstartstop.go`, `proxy/round_tripper/dropsonde_round_tripper.go`), loggregator's
//! `conversion/tov2.go` and log-cache-release (`internal/promql/promql.go`, `internal/auth/cf_auth_middleware.go`,
//! `internal/gateway/gateway.go`, `pkg/marshaler/marshaler.go`) have them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Api, Response, app_zip, poll, send, test_config, via_router};
use cf_sim::{Sim, SimConfig};

/// A pushed, running app with a route `host`; its guid.
async fn routed_app(api: &Api, name: &str, host: &str) -> String {
    let app = api.push(name, app_zip()).await;
    api.map_route(&app, host).await;
    api.wait_running(&app, 1).await;
    app
}

async fn log_cache(sim: &Sim, api: &Api, path: &str, params: &[(&str, &str)]) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let url = format!("{}{path}?{query}", sim.info().log_cache);
    let bearer = format!("bearer {}", api.token);
    send("GET", &url, &[("authorization", bearer.as_str())], Vec::new(), None).await.unwrap()
}

fn host(sim: &Sim, name: &str) -> String {
    format!("{name}.{}", sim.info().domain)
}

/// One Server and one Client timer per request (gorouter's defaults `send_http_start_stop_server_event` and
/// `send_http_start_stop_client_event`), named `http`, with source id the app's guid, the tags of
/// `convertHTTPStartStop` and, on the Server one, the route-emitter's metric tags; read with
/// `envelope_types=TIMER`, int64s as strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_requests_leave_a_server_and_a_client_http_timer() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = routed_app(&api, "timed", "timed").await;
    let host = host(&sim, "timed");
    let url = format!("{}/some/path?q=1", sim.info().router);
    let answer =
        send("GET", &url, &[("host", host.as_str()), ("user-agent", "probe/1")], Vec::new(), None).await.unwrap();
    assert_eq!(answer.status, 200);
    let timers = poll(Duration::from_secs(5), || async {
        let timers = sim.http_timers(&app);
        (timers.len() == 2).then_some(timers)
    })
    .await;
    let server = timers.iter().find(|t| t.tags["peer_type"] == "Server").expect("a Server timer");
    let client = timers.iter().find(|t| t.tags["peer_type"] == "Client").expect("a Client timer");
    assert_eq!(server.tags["request_id"], client.tags["request_id"]);
    assert_eq!(answer.header("x-vcap-request-id").as_deref(), Some(server.tags["request_id"].as_str()));
    for timer in [server, client] {
        assert_eq!((timer.name.as_str(), timer.source_id.as_str()), ("http", app.as_str()));
        assert_eq!(timer.tags["status_code"], "200");
        assert_eq!(timer.tags["method"], "GET");
        assert_eq!(timer.tags["uri"], format!("http://{host}/some/path"), "no query, as dropsonde's factories");
        assert_eq!(timer.tags["user_agent"], "probe/1");
        assert!(timer.stop > timer.start);
    }
    assert!(server.start <= client.start && server.stop >= client.stop, "the Server timer spans the Client one");
    assert_eq!(server.tags["app_id"], app);
    assert_eq!(server.tags["app_name"], "timed");
    assert_eq!(server.tags["process_type"], "web");
    assert_eq!(server.tags["instance_id"], "0");
    assert!(!server.tags.contains_key("source_id"), "tov2 moves source_id out of the tags");
    assert_eq!(server.tags["content_length"], answer.body.len().to_string());
    assert_eq!((client.instance_id.as_str(), client.tags.get("app_name")), ("0", None));
    assert!(!client.tags["routing_instance_id"].is_empty());

    let read = log_cache(&sim, &api, &format!("/api/v1/read/{app}"), &[("envelope_types", "TIMER")]).await.json();
    let batch = read["envelopes"]["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2, "{read}");
    assert!(batch[0]["timer"]["start"].is_string() && batch[0]["timestamp"].is_string(), "{read}");
    assert_eq!(batch[0]["timer"]["name"], "http");
    let logs = log_cache(&sim, &api, &format!("/api/v1/read/{app}"), &[("envelope_types", "LOG")]).await.json();
    assert!(logs["envelopes"]["batch"].as_array().unwrap().iter().all(|e| e.get("log").is_some()), "{logs}");
    let every = log_cache(&sim, &api, &format!("/api/v1/read/{app}"), &[("limit", "1000")]).await.json();
    let kinds: Vec<bool> =
        every["envelopes"]["batch"].as_array().unwrap().iter().map(|e| e.get("timer").is_some()).collect();
    assert!(kinds.contains(&true) && kinds.contains(&false), "no envelope_types reads every type: {every}");

    // A request to an unknown route names no app: no timer.
    assert_eq!(via_router(&sim, &self::host(&sim, "nobody"), "/").await.status, 404);
    sim.stop();
}

/// `--no-http-timers` (and `Sim::set_http_timers(false)`): the router sends none, Log Cache has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_timers_log_cache_has_no_traffic() {
    let sim = Sim::start(SimConfig { no_http_timers: true, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = routed_app(&api, "quiet", "quiet").await;
    let host = host(&sim, "quiet");
    assert_eq!(via_router(&sim, &host, "/").await.status, 200);
    sim.set_http_timers(true);
    assert_eq!(via_router(&sim, &host, "/").await.status, 200);
    poll(Duration::from_secs(5), || async { (sim.http_timers(&app).len() == 2).then_some(()) }).await;
    sim.set_http_timers(false);
    assert_eq!(via_router(&sim, &host, "/").await.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.http_timers(&app).len(), 2, "only the request sent while timers were on left any");
    sim.stop();
}

fn result(response: &Response) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["status"], "success", "{body}");
    body["data"].clone()
}

/// The PromQL endpoints over timers: counts by status, a latency quantile in nanoseconds, equality-only label
/// matching, the answer and error shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_counts_and_quantiles_timers_as_log_cache() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = routed_app(&api, "measured", "measured").await;
    let host = host(&sim, "measured");
    for _ in 0..5 {
        assert_eq!(via_router(&sim, &host, "/").await.status, 200);
    }
    poll(Duration::from_secs(5), || async { (sim.http_timers(&app).len() == 10).then_some(()) }).await;
    // Samples sit at their envelope's second; ask a second later so all of them are in the window.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let query = |q: String| {
        let (sim, api) = (&sim, &api);
        async move { log_cache(sim, api, "/api/v1/query", &[("query", q.as_str())]).await }
    };
    let by_status = result(
        &query(format!(r#"sum by (status_code) (count_over_time(http{{source_id="{app}",peer_type="Server"}}[1m]))"#))
            .await,
    );
    assert_eq!(by_status["resultType"], "vector");
    assert_eq!(by_status["result"][0]["metric"], json!({"status_code": "200"}));
    assert_eq!(by_status["result"][0]["value"][1], "5");
    assert!(by_status["result"][0]["value"][0].is_number());
    let both_peers = result(&query(format!(r#"sum(count_over_time(http{{source_id="{app}"}}[1m]))"#)).await);
    assert_eq!(both_peers["result"][0]["value"][1], "10", "Server and Client timers both count");
    let p95 = result(
        &query(format!(r#"quantile(0.95, max_over_time(http{{source_id="{app}",peer_type="Server"}}[1m]))"#)).await,
    );
    let nanos: f64 = p95["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(nanos > 10_000.0 && nanos < 5e9, "nanoseconds: {nanos}");
    let regex = result(&query(format!(r#"count_over_time(http{{source_id="{app}",status_code=~"2.."}}[1m])"#)).await);
    assert_eq!(regex["result"], json!([]), "log-cache compares every other matcher for equality");

    // Every sample is at or before the last timer's second: each step from there on counts all five.
    let last = sim.http_timers(&app).iter().map(|t| t.timestamp / 1_000_000_000).max().unwrap();
    let (start, end) = (last.to_string(), (last + 2).to_string());
    let server_count = format!(r#"sum(count_over_time(http{{source_id="{app}",peer_type="Server"}}[1m]))"#);
    let params = [("query", server_count.as_str()), ("start", &start), ("end", &end), ("step", "1s")];
    let range = log_cache(&sim, &api, "/api/v1/query_range", &params).await;
    let range = result(&range);
    assert_eq!(range["resultType"], "matrix");
    let values = range["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 3, "{range}");
    assert!(values.iter().all(|v| v[1] == "5"), "{range}");
    assert_eq!(values[0][0], json!(last as f64), "{range}");

    let no_source = query("sum(http)".into()).await;
    assert_eq!(
        (no_source.status, no_source.json()),
        (400, json!({"status": "error", "errorType": "bad_data", "error": "query does not request any source_ids"}))
    );
    let unmodelled = query(format!(r#"rate(http{{source_id="{app}"}}[1m])"#)).await;
    assert_eq!((unmodelled.status, unmodelled.json()["errorType"].clone()), (400, json!("bad_data")));
    assert!(unmodelled.json()["error"].as_str().unwrap().contains("cf-sim does not evaluate the function rate"));
    let bad_time = log_cache(
        &sim,
        &api,
        "/api/v1/query",
        &[("query", &format!(r#"http{{source_id="{app}"}}"#)), ("time", "soon")],
    )
    .await;
    assert_eq!((bad_time.status, bad_time.json()["errorType"].clone()), (500, json!("internal")));
    let url = format!("{}/api/v1/query?query=http", sim.info().log_cache);
    let anonymous = send("GET", &url, &[], Vec::new(), None).await.unwrap();
    assert_eq!((anonymous.status, anonymous.body.len()), (404, 0));
    let empty = result(&query(r#"sum(count_over_time(http{source_id="no-such-app"}[1m]))"#.into()).await);
    assert_eq!(empty["result"], json!([]));
    sim.stop();
}

/// A population of users over a mix of paths, through the router: each request leaves its Server timer with the
/// user's agent and the path's uri, so Log Cache sees the traffic the load sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_population_of_users_leaves_one_server_timer_per_request() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = routed_app(&api, "browsed", "browsed").await;
    let host = host(&sim, "browsed");
    let config = cf_sim::load::LoadConfig::population(
        &sim.info().router,
        &host,
        40,
        4,
        &[("/", 3), ("/cart", 1)],
        Duration::from_secs(2),
    );
    // The request budget ends it, however busy the machine.
    let config = cf_sim::load::LoadConfig { max_duration: Duration::from_secs(30), ..config };
    let report = tokio::task::spawn_blocking(move || cf_sim::load::start(config).finish()).await.unwrap();
    assert_eq!(report.total(), 80, "{}", report.describe());
    assert!(report.failures().is_empty(), "{}", report.describe_failures());
    assert_eq!(report.users(), 4);
    assert_eq!(report.by_path().into_iter().collect::<Vec<_>>(), [("/".to_string(), 60), ("/cart".to_string(), 20)]);
    let servers = poll(Duration::from_secs(5), || async {
        let servers: Vec<_> = sim.http_timers(&app).into_iter().filter(|t| t.tags["peer_type"] == "Server").collect();
        (servers.len() == 80).then_some(servers)
    })
    .await;
    let agents: std::collections::BTreeSet<&str> = servers.iter().map(|t| t.tags["user_agent"].as_str()).collect();
    assert_eq!(
        agents.into_iter().collect::<Vec<_>>(),
        ["cf-sim-load/0", "cf-sim-load/1", "cf-sim-load/2", "cf-sim-load/3"]
    );
    let carts = servers.iter().filter(|t| t.tags["uri"].ends_with("/cart")).count();
    assert_eq!(carts, 20);
    sim.stop();
}

/// A backend that closes the connection without answering: the attempt's Client timer has status 0 and content
/// length 0 (dropsonde's instrumented round tripper on an error), the Server timer the router's 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_leaves_a_client_timer_without_status() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = routed_app(&api, "dying", "dying").await;
    assert_eq!(via_router(&sim, &host(&sim, "dying"), "/exit").await.status, 502);
    let timers = poll(Duration::from_secs(5), || async {
        let timers = sim.http_timers(&app);
        (timers.len() == 2).then_some(timers)
    })
    .await;
    let tag = |peer: &str, key: &str| {
        timers.iter().find(|t| t.tags["peer_type"] == peer).map(|t| t.tags[key].clone()).unwrap()
    };
    assert_eq!((tag("Client", "status_code"), tag("Client", "content_length")), ("0".into(), "0".into()));
    assert_eq!(tag("Server", "status_code"), "502");
    sim.stop();
}
