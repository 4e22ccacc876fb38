//! The KPI probe: bounded bursts of requests (count, concurrency and requests — paths, or methods with headers and
//! bodies — from `params.kpi`) measuring the error rate and latency percentiles of routes, and the gates a window
//! of them must pass: absolute ones, and a relative one comparing the candidate with production.
//!
//! The gates judge fairly: an error is no answer at all or a status in `error_statuses` (5xx by default; a 404
//! is the app's answer, not an outage); a rate judges a window only once it holds `min_requests` requests, and
//! every verdict names how many it rests on; the candidate and production are warmed up first and then measured
//! interleaved over the same period, so a cold candidate is not judged against a warm production. Redirects count
//! the way the HTTP checks see them: followed on the route's host, a failure when they lead elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use tokio::sync::Mutex;

use super::route_client::{RouteClient, RouteRequest, https_expected, shown_url};
use crate::config::{ErrorStatuses, Kpi, KpiRequest};

/// What a window of requests measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeStats {
    pub(crate) requests: u32,
    /// Requests that got no answer, a redirect to another host, or (after redirects on the route's host) a
    /// status in `error_statuses`.
    pub(crate) errors: u32,
    p50_ms: f64,
    pub(crate) p95_ms: f64,
    p99_ms: f64,
    /// One example of what went wrong, when anything did.
    first_error: Option<String>,
}

impl ProbeStats {
    /// Figures measured elsewhere (e.g. real traffic): the p50, p95 and p99 in ms, and an example of an error.
    pub(crate) fn new(requests: u32, errors: u32, [p50_ms, p95_ms, p99_ms]: [f64; 3], example: Option<String>) -> Self {
        ProbeStats { requests, errors, p50_ms, p95_ms, p99_ms, first_error: example }
    }

    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { f64::from(self.errors) / f64::from(self.requests) }
    }

    /// `200 requests, 0.0% errors, p50 3.1 ms, p95 7.9 ms, p99 12.0 ms`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "{} requests, {:.1}% errors, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            self.requests,
            self.error_rate() * 100.0,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms
        )
    }
}

/// The outcomes of a window of requests; windows add up (the post-swap watch judges all its rounds at once).
#[derive(Debug, Default, Clone)]
pub(crate) struct Samples {
    latencies: Vec<Duration>,
    errors: u32,
    first_error: Option<String>,
}

impl Samples {
    fn record(&mut self, latency: Duration, error: Option<String>) {
        self.latencies.push(latency);
        if let Some(error) = error {
            self.errors += 1;
            self.first_error.get_or_insert(error);
        }
    }

    /// Adds another window's outcomes to this one.
    pub(crate) fn extend(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub(crate) fn stats(&self) -> ProbeStats {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        ProbeStats {
            requests: sorted.len() as u32,
            errors: self.errors,
            p50_ms: percentile_ms(&sorted, 50.0),
            p95_ms: percentile_ms(&sorted, 95.0),
            p99_ms: percentile_ms(&sorted, 99.0),
            first_error: self.first_error.clone(),
        }
    }
}

/// The candidate and, for the relative gate, production, measured in the same run.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) candidate: ProbeStats,
    pub(crate) production: Option<ProbeStats>,
}

/// Warms `candidate` (and `production`, when given) up with `kpi.warmup` requests each, then sends `kpi.requests`
/// to each, interleaved (candidate, production, candidate, …) over `kpi.concurrency` connections, so both are
/// measured over the same period.
pub(crate) async fn measure(client: &RouteClient, candidate: &str, production: Option<&str>, kpi: &Kpi) -> Measured {
    let routes: Vec<&str> = std::iter::once(candidate).chain(production).collect();
    if kpi.warmup > 0 {
        run(client, &plan(client, &routes, &kpi.paths, kpi.warmup), kpi.concurrency, &kpi.error_statuses).await;
    }
    let mut windows =
        run(client, &plan(client, &routes, &kpi.paths, kpi.requests), kpi.concurrency, &kpi.error_statuses).await;
    let production = (windows.len() > 1).then(|| windows.pop().expect("two windows").stats());
    Measured { candidate: windows.pop().expect("the candidate's window").stats(), production }
}

/// One round of `requests` requests spread over `routes` and `kpi.paths` (the post-swap watch's), as one window.
pub(crate) async fn round(client: &RouteClient, routes: &[&str], kpi: &Kpi, requests: u32) -> Samples {
    let mut planned = plan(client, routes, &kpi.paths, requests.div_ceil(routes.len().max(1) as u32));
    planned.truncate(requests as usize);
    let windows = run(client, &planned, kpi.concurrency.min(requests), &kpi.error_statuses).await;
    windows.into_iter().fold(Samples::default(), |mut all, window| {
        all.extend(window);
        all
    })
}

/// One request to send: which route's window it counts in, its URL and what to send.
struct Planned<'a> {
    route: usize,
    url: String,
    request: &'a KpiRequest,
}

/// `per_route` requests to each route, interleaved across routes, each route cycling through `requests`.
fn plan<'a>(client: &RouteClient, routes: &[&str], requests: &'a [KpiRequest], per_route: u32) -> Vec<Planned<'a>> {
    if requests.is_empty() {
        return Vec::new();
    }
    (0..per_route as usize)
        .flat_map(|n| {
            let request = &requests[n % requests.len()];
            routes.iter().enumerate().map(move |(route, host)| Planned {
                route,
                url: client.url(host, &request.path),
                request,
            })
        })
        .collect()
}

/// Sends every planned request, `concurrency` at a time, in order; the outcomes per route. A fixed list, so it
/// always ends.
async fn run(client: &RouteClient, planned: &[Planned<'_>], concurrency: u32, errors: &ErrorStatuses) -> Vec<Samples> {
    let routes = planned.iter().map(|p| p.route + 1).max().unwrap_or(0);
    let windows = Arc::new(Mutex::new(vec![Samples::default(); routes]));
    let next = AtomicUsize::new(0);
    let workers = (0..concurrency.max(1).min(planned.len() as u32)).map(|_| async {
        loop {
            let n = next.fetch_add(1, Ordering::SeqCst);
            let Some(planned) = planned.get(n) else { break };
            let started = Instant::now();
            let outcome = send(client, planned, errors).await;
            windows.lock().await[planned.route].record(started.elapsed(), outcome.err());
        }
    });
    futures_util::future::join_all(workers).await;
    Arc::try_unwrap(windows).expect("the workers are done").into_inner()
}

/// One request; `Err` says why it counts as an error.
async fn send(client: &RouteClient, planned: &Planned<'_>, errors: &ErrorStatuses) -> Result<(), String> {
    let request = planned.request;
    let method = Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET);
    let response = client
        .send(RouteRequest {
            method,
            url: &planned.url,
            headers: &request.headers,
            body: request.body.as_deref(),
            follow_redirects: true,
        })
        .await?;
    let (final_url, status) = (response.url().clone(), response.status());
    if errors.contains(status.as_u16()) {
        let body = response.text().await.unwrap_or_default();
        return Err(https_expected(&final_url, status, &body)
            .unwrap_or_else(|| format!("{} answered {}", shown_url(&final_url), status.as_u16())));
    }
    // Reading the body is part of the latency a user sees.
    response.bytes().await.map(|_| ()).map_err(|e| client.describe_error(&final_url, &e))
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
pub(crate) fn percentile_ms(sorted: &[Duration], percentile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// A gate's judgement of a window, each naming the requests it rests on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Pass(String),
    Fail(String),
    /// Fewer requests than `min_requests`: the rates do not judge yet.
    TooFew(String),
}

/// Checks `candidate` against the gates of `kpi`; `production` (measured in the same run) is needed for the
/// relative gate. A window of fewer than `kpi.min_requests` requests is not judged.
pub(crate) fn evaluate(kpi: &Kpi, candidate: &ProbeStats, production: Option<&ProbeStats>) -> Verdict {
    let on = |stats: &ProbeStats| format!("{} request(s)", stats.requests);
    if candidate.requests < kpi.min_requests() {
        return Verdict::TooFew(format!(
            "{} is fewer than min_requests {}: the gates do not judge it",
            on(candidate),
            kpi.min_requests()
        ));
    }
    let mut failures = Vec::new();
    if let Some(max) = kpi.max_error_rate
        && candidate.error_rate() > max
    {
        let example = candidate.first_error.as_deref().map(|e| format!(", e.g. {e}")).unwrap_or_default();
        failures.push(format!(
            "error rate {:.1}% is above max_error_rate {:.1}% ({} got {} or no answer{example})",
            candidate.error_rate() * 100.0,
            max * 100.0,
            candidate.errors,
            kpi.error_statuses
        ));
    }
    if let Some(max) = kpi.max_p95_ms
        && candidate.p95_ms > max as f64
    {
        failures.push(format!("p95 latency {:.1} ms is above max_p95_ms {max} ms", candidate.p95_ms));
    }
    if let (Some(ratio), Some(production)) = (kpi.max_p95_ratio, production)
        && production.requests >= kpi.min_requests()
    {
        // A floor keeps a sub-millisecond production p95 from making ordinary jitter look like a regression.
        let baseline = production.p95_ms.max(1.0);
        if candidate.p95_ms > baseline * ratio {
            failures.push(format!(
                "p95 latency {:.1} ms is {:.1}× production's {:.1} ms (on {}), above max_p95_ratio {ratio}",
                candidate.p95_ms,
                candidate.p95_ms / baseline,
                production.p95_ms,
                on(production)
            ));
        }
    }
    if failures.is_empty() {
        Verdict::Pass(format!("passed on {}: {}", on(candidate), candidate.summary()))
    } else {
        Verdict::Fail(format!("{} (on {})", failures.join("; "), on(candidate)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::config::RouteScheme;
    use crate::verify::route_client::test_support::plain_tls;
    use crate::verify::test_server::{Reply, TestServer};

    fn kpi() -> Kpi {
        Kpi {
            requests: 100,
            concurrency: 8,
            paths: vec![KpiRequest::get("/"), KpiRequest::get("/version")],
            error_statuses: ErrorStatuses::default(),
            warmup: 0,
            min_requests: Some(1),
            max_error_rate: None,
            max_p95_ms: None,
            max_p95_ratio: None,
        }
    }

    async fn client(server: &TestServer) -> RouteClient {
        RouteClient::new(RouteScheme::Http, Some(&server.address()), plain_tls(), Duration::from_secs(5)).await.unwrap()
    }

    async fn probe(client: &RouteClient, route: &str, kpi: &Kpi) -> ProbeStats {
        measure(client, route, None, kpi).await.candidate
    }

    #[tokio::test]
    async fn probe_sends_exactly_the_requested_count_and_counts_5xx_as_errors() {
        let count = Arc::new(AtomicU32::new(0));
        let seen = count.clone();
        let server = TestServer::start(move |_| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n.is_multiple_of(20) {
                (500, String::new())
            } else if n % 20 == 1 {
                (404, String::new())
            } else {
                (200, "ok".into())
            }
        })
        .await;
        let stats = probe(&client(&server).await, "a.example.com", &kpi()).await;
        assert_eq!(stats.requests, 100);
        assert_eq!(server.served(), 100);
        assert_eq!(stats.errors, 5, "the 404s are answers, not errors");
        assert!((stats.error_rate() - 0.05).abs() < 1e-9);
        assert!(stats.first_error.unwrap().ends_with("answered 500"));
    }

    #[tokio::test]
    async fn error_statuses_say_what_counts() {
        let server = TestServer::start(|_| (404, String::new())).await;
        let statuses: ErrorStatuses = serde_json::from_value(serde_json::json!(["4xx"])).unwrap();
        let gated = Kpi { requests: 4, error_statuses: statuses, ..kpi() };
        assert_eq!(probe(&client(&server).await, "a.example.com", &gated).await.errors, 4);
    }

    #[tokio::test]
    async fn requests_carry_their_method_headers_and_body() {
        let server = TestServer::start(|r| {
            let probe_header = r.headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("x-probe") && v == "yes");
            let ok = r.method == "POST" && r.body == "{\"n\":1}" && probe_header;
            if ok { (201, String::new()) } else { (500, format!("{} {}", r.method, r.body)) }
        })
        .await;
        let post = KpiRequest {
            path: "/orders".into(),
            method: "POST".into(),
            headers: [("X-Probe".to_string(), "yes".to_string())].into(),
            body: Some("{\"n\":1}".into()),
        };
        let stats =
            probe(&client(&server).await, "a.example.com", &Kpi { requests: 6, paths: vec![post], ..kpi() }).await;
        assert_eq!((stats.requests, stats.errors), (6, 0), "{stats:?}");
    }

    #[tokio::test]
    async fn warm_up_requests_go_first_and_are_not_judged() {
        let count = Arc::new(AtomicU32::new(0));
        let seen = count.clone();
        // A cold start: the first 10 answers are errors.
        let server = TestServer::start(move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) < 10 { (503, String::new()) } else { (200, "ok".into()) }
        })
        .await;
        let warm = Kpi { requests: 20, concurrency: 1, warmup: 10, ..kpi() };
        let stats = probe(&client(&server).await, "a.example.com", &warm).await;
        assert_eq!(server.served(), 30);
        assert_eq!((stats.requests, stats.errors), (20, 0));
    }

    #[tokio::test]
    async fn candidate_and_production_are_measured_interleaved() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = order.clone();
        let server = TestServer::start(move |r| {
            seen.lock().unwrap().push(r.host.clone());
            (200, "ok".into())
        })
        .await;
        let both = Kpi { requests: 3, concurrency: 1, warmup: 1, ..kpi() };
        let measured = measure(&client(&server).await, "green.example.com", Some("app.example.com"), &both).await;
        let hosts: Vec<String> =
            order.lock().unwrap().iter().map(|h| h.split(':').next().unwrap().to_string()).collect();
        let expected =
            ["green", "app", "green", "app", "green", "app", "green", "app"].map(|h| format!("{h}.example.com"));
        assert_eq!(hosts, expected, "one warm-up each, then alternating");
        assert_eq!((measured.candidate.requests, measured.production.unwrap().requests), (3, 3));
    }

    #[tokio::test]
    async fn probe_measures_latency() {
        let server = TestServer::start_with_delay(Duration::from_millis(40), |_| (200, "ok".into())).await;
        let stats = probe(&client(&server).await, "a.example.com", &Kpi { requests: 16, ..kpi() }).await;
        assert!(stats.p50_ms >= 40.0, "{stats:?}");
        assert!(stats.p95_ms >= stats.p50_ms && stats.p99_ms >= stats.p95_ms);
    }

    #[tokio::test]
    async fn connection_failures_are_errors() {
        let server = TestServer::start(|_| (200, String::new())).await;
        let client = client(&server).await;
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = probe(&client, "a.example.com", &Kpi { requests: 4, ..kpi() }).await;
        assert_eq!(stats.errors, 4);
    }

    fn redirect(location: &str) -> Reply {
        Reply { status: 302, headers: vec![("Location".into(), location.into())], body: String::new() }
    }

    #[tokio::test]
    async fn redirects_on_the_route_host_are_followed_and_the_app_answer_counts() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/" | "/version" => redirect("/app"),
            _ => Reply::from((500, String::new())),
        })
        .await;
        let stats = probe(&client(&server).await, "a.example.com", &Kpi { requests: 10, ..kpi() }).await;
        assert_eq!(server.served(), 20);
        assert_eq!(stats.errors, 10, "the app's 500 behind the redirect is what counts");
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_an_error_naming_its_location() {
        let server = TestServer::start(|_| redirect("https://sso.example.org/login")).await;
        let stats = probe(&client(&server).await, "a.example.com", &Kpi { requests: 4, ..kpi() }).await;
        assert_eq!(stats.errors, 4);
        let first = stats.first_error.unwrap();
        assert!(first.contains("to another host: Location https://sso.example.org/login"), "{first}");
    }

    #[tokio::test]
    async fn a_round_spreads_its_requests_over_routes_and_paths() {
        let server = TestServer::start(|_| (200, "ok".into())).await;
        let samples = round(&client(&server).await, &["a.example.com", "b.example.com"], &kpi(), 5).await;
        assert_eq!((samples.stats().requests, server.served()), (5, 5));
    }

    fn stats(requests: u32, errors: u32, p95_ms: f64) -> ProbeStats {
        ProbeStats { requests, errors, p50_ms: p95_ms / 2.0, p95_ms, p99_ms: p95_ms, first_error: None }
    }

    #[test]
    fn gates_name_the_requests_they_rest_on() {
        let gated = Kpi { max_error_rate: Some(0.01), max_p95_ms: Some(300), max_p95_ratio: Some(1.5), ..kpi() };
        let pass = evaluate(&gated, &stats(100, 1, 100.0), Some(&stats(100, 0, 90.0)));
        assert!(matches!(&pass, Verdict::Pass(text) if text.starts_with("passed on 100 request(s)")), "{pass:?}");
        let Verdict::Fail(err) = evaluate(&gated, &stats(100, 5, 100.0), Some(&stats(100, 0, 90.0))) else { panic!() };
        assert_eq!(err, "error rate 5.0% is above max_error_rate 1.0% (5 got 5xx or no answer) (on 100 request(s))");
        let Verdict::Fail(err) = evaluate(&gated, &stats(100, 0, 301.0), Some(&stats(100, 0, 290.0))) else { panic!() };
        assert_eq!(err, "p95 latency 301.0 ms is above max_p95_ms 300 ms (on 100 request(s))");
        let Verdict::Fail(err) = evaluate(&gated, &stats(100, 0, 150.0), Some(&stats(100, 0, 50.0))) else { panic!() };
        assert_eq!(
            err,
            "p95 latency 150.0 ms is 3.0× production's 50.0 ms (on 100 request(s)), above max_p95_ratio 1.5 \
             (on 100 request(s))"
        );
        assert!(matches!(evaluate(&kpi(), &stats(100, 50, 9999.0), None), Verdict::Pass(_)), "no gates, nothing fails");
    }

    #[test]
    fn a_window_below_min_requests_is_not_judged() {
        let gated = Kpi { max_error_rate: Some(0.01), min_requests: Some(100), ..kpi() };
        // One transient error in a 40-request round is 2.5%: not enough requests to fail a 1% gate.
        let verdict = evaluate(&gated, &stats(40, 1, 10.0), None);
        assert_eq!(
            verdict,
            Verdict::TooFew("40 request(s) is fewer than min_requests 100: the gates do not judge it".into())
        );
        assert!(matches!(evaluate(&gated, &stats(120, 1, 10.0), None), Verdict::Pass(_)));
        assert!(matches!(evaluate(&gated, &stats(120, 2, 10.0), None), Verdict::Fail(_)));
        let ratio = Kpi { max_p95_ratio: Some(1.5), min_requests: Some(100), ..kpi() };
        assert!(
            matches!(evaluate(&ratio, &stats(100, 0, 150.0), Some(&stats(10, 0, 50.0))), Verdict::Pass(_)),
            "production's window is too small to compare with"
        );
    }

    #[test]
    fn windows_add_up() {
        let mut all = Samples::default();
        let mut one = Samples::default();
        one.record(Duration::from_millis(10), Some("boom".into()));
        let mut two = Samples::default();
        two.record(Duration::from_millis(30), None);
        all.extend(one);
        all.extend(two);
        let stats = all.stats();
        assert_eq!((stats.requests, stats.errors, stats.first_error.as_deref()), (2, 1, Some("boom")));
        assert_eq!(stats.p95_ms, 30.0);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&samples, 50.0), 50.0);
        assert_eq!(percentile_ms(&samples, 95.0), 95.0);
        assert_eq!(percentile_ms(&samples, 99.0), 99.0);
        assert_eq!(percentile_ms(&[], 95.0), 0.0);
    }
}
