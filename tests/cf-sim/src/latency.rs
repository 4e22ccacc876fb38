//! The latency of a real foundation: every answer of the CC API, UAA and Log Cache waits `--api-latency-ms` plus a
//! uniformly random `0..=--api-latency-jitter-ms` before it is sent (the round trip and processing time a real
//! Cloud Controller adds, 50–300 ms). The request is processed first and the wait happens after the handler has
//! returned, so no state lock is held while sleeping and concurrent requests wait side by side. The admin API
//! (`/_sim/…`) and the router (app traffic) answer at once.

use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;

use crate::config::SimConfig;
use crate::server::Handler;

/// The wait added to each answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Latency {
    base_ms: u64,
    jitter_ms: u64,
}

impl Latency {
    /// The configured latency, or `None` when it is zero (the handler is then left as it is).
    pub(crate) fn from_config(config: &SimConfig) -> Option<Latency> {
        let latency = Latency { base_ms: config.api_latency_ms, jitter_ms: config.api_latency_jitter_ms };
        (latency.base_ms + latency.jitter_ms > 0).then_some(latency)
    }

    /// One answer's wait: the base plus a uniform draw from `0..=jitter`.
    fn draw(self) -> Duration {
        let jitter = match self.jitter_ms {
            0 => 0,
            jitter => (uuid::Uuid::new_v4().as_u128() % u128::from(jitter + 1)) as u64,
        };
        Duration::from_millis(self.base_ms + jitter)
    }
}

/// Wraps a listener's handler so each answer but the admin API's is sent only after the configured latency.
pub(crate) fn delay_answers(handler: Handler, config: &SimConfig) -> Handler {
    let Some(latency) = Latency::from_config(config) else { return handler };
    Arc::new(move |request: Request<Incoming>| {
        let handler = handler.clone();
        Box::pin(async move {
            let admin = request.uri().path().starts_with("/_sim");
            let response = handler(request).await;
            if !admin {
                tokio::time::sleep(latency.draw()).await;
            }
            response
        })
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use super::*;
    use crate::Sim;

    /// Sends `GET path` over a new connection and returns how long the full answer took.
    fn timed_get(base: &str, path: &str) -> Duration {
        let address = base.trim_start_matches("http://");
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "GET {path}: {answer}");
        started.elapsed()
    }

    #[test]
    fn cc_uaa_and_log_cache_answers_take_the_latency_and_at_most_its_jitter_more() {
        let sim =
            Sim::start(SimConfig { api_latency_ms: 150, api_latency_jitter_ms: 50, ..SimConfig::default() }).unwrap();
        let info = sim.info().clone();
        let (least, most) = (Duration::from_millis(150), Duration::from_millis(150 + 50 + 100));
        for (base, path) in [(&info.api, "/v3/info"), (&info.uaa, "/login"), (&info.log_cache, "/api/v1/info")] {
            for _ in 0..4 {
                let took = timed_get(base, path);
                assert!(took >= least && took < most, "GET {path} took {took:?}, outside {least:?}..{most:?}");
            }
        }
        assert!(timed_get(&info.api, "/_sim/counters") < least, "the admin API answers at once");
    }

    #[test]
    fn concurrent_requests_wait_side_by_side() {
        let sim = Sim::start(SimConfig { api_latency_ms: 300, ..SimConfig::default() }).unwrap();
        let api = sim.info().api.clone();
        let started = Instant::now();
        let requests: Vec<_> = (0..6)
            .map(|_| {
                let api = api.clone();
                std::thread::spawn(move || timed_get(&api, "/v3/info"))
            })
            .collect();
        for request in requests {
            assert!(request.join().unwrap() >= Duration::from_millis(300));
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(550), "6 concurrent requests took {took:?}, not about one latency");
    }

    #[test]
    fn no_latency_leaves_the_handler_alone() {
        assert_eq!(Latency::from_config(&SimConfig::default()), None);
        let config = SimConfig::default();
        let handler: Handler = Arc::new(|_| Box::pin(async { hyper::Response::new(axum::body::Body::empty()) }));
        assert!(Arc::ptr_eq(&delay_answers(handler.clone(), &config), &handler));
    }
}
