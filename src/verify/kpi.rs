//! The KPI probe: a bounded burst of requests (count, concurrency and paths from `params.kpi`) measuring the
//! error rate and latency percentiles of a route, and the gates a candidate must pass — absolute ones, and a
//! relative one comparing the candidate with production measured in the same run. Redirects count the way the
//! HTTP checks see them: followed on the route's host, a failure when they lead elsewhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::route_client::{RouteClient, RouteRequest, https_expected, shown_url};
use crate::config::Kpi;

/// What one probe measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeStats {
    pub(crate) requests: u32,
    /// Requests that got no response, a redirect to another host, or (after redirects on the route's host) a
    /// status outside 2xx/3xx.
    pub(crate) errors: u32,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    /// One example of what went wrong, when anything did.
    first_error: Option<String>,
}

impl ProbeStats {
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

/// Sends `kpi.requests` GETs to `route`, `kpi.concurrency` at a time, cycling through `kpi.paths`.
pub(crate) async fn probe(client: &RouteClient, route: &str, kpi: &Kpi) -> ProbeStats {
    probe_urls(
        client,
        &kpi.paths.iter().map(|p| client.url(route, p)).collect::<Vec<_>>(),
        kpi.requests,
        kpi.concurrency,
    )
    .await
}

/// The load loop behind [`probe`]: a fixed number of requests, so it always ends.
pub(crate) async fn probe_urls(client: &RouteClient, urls: &[String], requests: u32, concurrency: u32) -> ProbeStats {
    if urls.is_empty() {
        return Samples::default().stats();
    }
    let next = Arc::new(AtomicU32::new(0));
    let samples = Arc::new(Mutex::new(Samples::default()));
    let urls: Arc<[String]> = urls.into();
    let workers: Vec<_> = (0..concurrency.min(requests).max(1))
        .map(|_| {
            let (client, next, samples, urls) = (client.clone(), next.clone(), samples.clone(), urls.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= requests {
                        break;
                    }
                    let url = &urls[n as usize % urls.len()];
                    let started = Instant::now();
                    let outcome = match client.send(RouteRequest::get(url)).await {
                        Ok(response) if response.status().is_success() || response.status().is_redirection() => {
                            // Reading the body is part of the latency a user sees.
                            let final_url = response.url().clone();
                            response.bytes().await.map(|_| ()).map_err(|e| client.describe_error(&final_url, &e))
                        }
                        Ok(response) => {
                            let (final_url, status) = (response.url().clone(), response.status());
                            let body = response.text().await.unwrap_or_default();
                            Err(https_expected(&final_url, status, &body)
                                .unwrap_or_else(|| format!("{} answered {}", shown_url(&final_url), status.as_u16())))
                        }
                        Err(why) => Err(why),
                    };
                    samples.lock().await.record(started.elapsed(), outcome.err());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("probe worker does not panic");
    }
    let samples = Arc::try_unwrap(samples).expect("workers are done").into_inner();
    samples.stats()
}

#[derive(Debug, Default)]
struct Samples {
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

    fn stats(mut self) -> ProbeStats {
        self.latencies.sort();
        ProbeStats {
            requests: self.latencies.len() as u32,
            errors: self.errors,
            p50_ms: percentile_ms(&self.latencies, 50.0),
            p95_ms: percentile_ms(&self.latencies, 95.0),
            p99_ms: percentile_ms(&self.latencies, 99.0),
            first_error: self.first_error,
        }
    }
}

/// Nearest-rank percentile of sorted samples, in milliseconds.
fn percentile_ms(sorted: &[Duration], percentile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Checks `candidate` against the gates of `kpi`; `production` (measured in the same run) is needed for the
/// relative gate. Returns why it fails, naming the gate and both figures.
pub(crate) fn evaluate(kpi: &Kpi, candidate: &ProbeStats, production: Option<&ProbeStats>) -> Result<(), String> {
    let mut failures = Vec::new();
    if let Some(max) = kpi.max_error_rate
        && candidate.error_rate() > max
    {
        let example = candidate.first_error.as_deref().map(|e| format!(", e.g. {e}")).unwrap_or_default();
        failures.push(format!(
            "error rate {:.1}% is above max_error_rate {:.1}%{example}",
            candidate.error_rate() * 100.0,
            max * 100.0
        ));
    }
    if let Some(max) = kpi.max_p95_ms
        && candidate.p95_ms > max as f64
    {
        failures.push(format!("p95 latency {:.1} ms is above max_p95_ms {max} ms", candidate.p95_ms));
    }
    if let (Some(ratio), Some(production)) = (kpi.max_p95_ratio, production) {
        // A floor keeps a sub-millisecond production p95 from making ordinary jitter look like a regression.
        let baseline = production.p95_ms.max(1.0);
        if candidate.p95_ms > baseline * ratio {
            failures.push(format!(
                "p95 latency {:.1} ms is {:.1}× production's {:.1} ms, above max_p95_ratio {ratio}",
                candidate.p95_ms,
                candidate.p95_ms / baseline,
                production.p95_ms
            ));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteScheme;
    use crate::verify::route_client::test_support::plain_tls;
    use crate::verify::test_server::{Reply, TestServer};

    fn kpi() -> Kpi {
        Kpi {
            requests: 100,
            concurrency: 8,
            paths: vec!["/".into(), "/version".into()],
            max_error_rate: None,
            max_p95_ms: None,
            max_p95_ratio: None,
        }
    }

    async fn client(server: &TestServer) -> RouteClient {
        RouteClient::new(RouteScheme::Http, Some(&server.address()), plain_tls(), Duration::from_secs(5)).await.unwrap()
    }

    #[tokio::test]
    async fn probe_sends_exactly_the_requested_count_and_counts_errors() {
        let count = Arc::new(AtomicU32::new(0));
        let seen = count.clone();
        let server = TestServer::start(move |_| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            if n.is_multiple_of(20) { (500, String::new()) } else { (200, "ok".into()) }
        })
        .await;
        let stats = probe(&client(&server).await, "a.example.com", &kpi()).await;
        assert_eq!(stats.requests, 100);
        assert_eq!(server.served(), 100);
        assert_eq!(stats.errors, 5);
        assert!((stats.error_rate() - 0.05).abs() < 1e-9);
        assert!(stats.first_error.unwrap().ends_with("answered 500"));
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

    fn stats(errors: u32, p95_ms: f64) -> ProbeStats {
        ProbeStats { requests: 100, errors, p50_ms: p95_ms / 2.0, p95_ms, p99_ms: p95_ms, first_error: None }
    }

    #[test]
    fn gates() {
        let gated = Kpi { max_error_rate: Some(0.01), max_p95_ms: Some(300), max_p95_ratio: Some(1.5), ..kpi() };
        assert_eq!(evaluate(&gated, &stats(1, 100.0), Some(&stats(0, 90.0))), Ok(()));
        let err = evaluate(&gated, &stats(5, 100.0), Some(&stats(0, 90.0))).unwrap_err();
        assert!(err.starts_with("error rate 5.0% is above max_error_rate 1.0%"), "{err}");
        let err = evaluate(&gated, &stats(0, 301.0), Some(&stats(0, 290.0))).unwrap_err();
        assert_eq!(err, "p95 latency 301.0 ms is above max_p95_ms 300 ms");
        let err = evaluate(&gated, &stats(0, 150.0), Some(&stats(0, 50.0))).unwrap_err();
        assert_eq!(err, "p95 latency 150.0 ms is 3.0× production's 50.0 ms, above max_p95_ratio 1.5");
        assert_eq!(evaluate(&kpi(), &stats(50, 9999.0), None), Ok(()), "no gates, nothing fails");
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
