//! An app's real traffic over a window, from the `http` timers gorouter leaves in Log Cache for every request it
//! routes to the app: how many requests, what share of them were errors (statuses in `error_statuses`, 5xx by
//! default), and latency percentiles as users saw them.
//!
//! gorouter sends two timers per request by default (`peer_type` `Server` for the whole request, `Client` for each
//! backend attempt) with the same `request_id`; operators may turn either off. A request counts once: its
//! `Server` timer when there is one, else its last `Client` attempt (no answer, status 0, is an error); timers
//! without a request id count on their own. A timer without a status counts as a request of unknown outcome, not
//! as an error. The resource's own requests (its probe and checks, by their `User-Agent`) are not users' and are
//! only counted aside.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cf::client::USER_AGENT;
use crate::cf::logs::{HttpTimer, Logs, TimerFollower};
use crate::config::ErrorStatuses;
use crate::verify::kpi::ProbeStats;

/// What an app's traffic in a window was.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Traffic {
    pub(crate) requests: u32,
    pub(crate) errors: u32,
    /// Requests whose timer carried no status.
    pub(crate) unknown_status: u32,
    /// The resource's own requests in the window, not counted in the figures.
    pub(crate) own_requests: u32,
    pub(crate) by_status: BTreeMap<u16, u32>,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    /// False when Log Cache held more of the window than one read takes: the figures rest on its first part.
    pub(crate) complete: bool,
}

impl Traffic {
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { f64::from(self.errors) / f64::from(self.requests) }
    }

    /// `412 req, 0.2% errors, p95 84 ms (40 of the resource's own not counted)`.
    pub(crate) fn summary(&self) -> String {
        let partial = if self.complete { "" } else { " (the window's first part only)" };
        let own = if self.own_requests > 0 {
            format!(" ({} of the resource's own not counted)", self.own_requests)
        } else {
            String::new()
        };
        let unknown = if self.unknown_status > 0 {
            format!(" ({} without a status)", self.unknown_status)
        } else {
            String::new()
        };
        let (requests, errors, p95) = (self.requests, self.error_rate() * 100.0, self.p95_ms);
        format!("{requests} req, {errors:.1}% errors, p95 {p95:.0} ms{unknown}{own}{partial}")
    }
}

impl From<&Traffic> for ProbeStats {
    /// The figures the KPI gates judge.
    fn from(traffic: &Traffic) -> ProbeStats {
        let statuses: Vec<String> = traffic.by_status.iter().map(|(s, n)| format!("{n}× {s}")).collect();
        let example = (traffic.errors > 0).then(|| format!("answers {}", statuses.join(", ")));
        ProbeStats::new(traffic.requests, traffic.errors, [traffic.p50_ms, traffic.p95_ms, traffic.p99_ms], example)
    }
}

/// An app's traffic from a start time on, read from Log Cache as it arrives: each update reads only the timers
/// that are new and judges the whole window.
pub(crate) struct TrafficWindow {
    follower: TimerFollower,
    timers: Vec<HttpTimer>,
    /// False once a read could not take everything Log Cache held.
    complete: bool,
}

impl TrafficWindow {
    /// The traffic of `app_guid` from `start_ns` (nanoseconds since the epoch) on.
    pub(crate) fn since(logs: &Logs, app_guid: &str, start_ns: i64) -> TrafficWindow {
        TrafficWindow { follower: logs.follow_timers(app_guid, start_ns), timers: Vec::new(), complete: true }
    }

    /// The window's traffic until `end_ns`.
    pub(crate) async fn until(&mut self, end_ns: i64, error_statuses: &ErrorStatuses) -> crate::cf::Result<Traffic> {
        let read = self.follower.poll(end_ns).await?;
        self.timers.extend(read.timers);
        self.complete &= read.complete;
        Ok(Traffic { complete: self.complete, ..analyse(&self.timers, error_statuses) })
    }
}

/// The figures of a set of timers, one request per request id.
pub(crate) fn analyse(timers: &[HttpTimer], error_statuses: &ErrorStatuses) -> Traffic {
    let mut requests: BTreeMap<&str, &HttpTimer> = BTreeMap::new();
    let mut anonymous: Vec<&HttpTimer> = Vec::new();
    let own = |t: &HttpTimer| t.user_agent.as_deref() == Some(USER_AGENT);
    for timer in timers {
        let Some(id) = timer.request_id.as_deref() else {
            anonymous.push(timer);
            continue;
        };
        let server = |t: &HttpTimer| t.peer_type.as_deref() == Some("Server");
        let keep = match requests.get(id) {
            None => true,
            Some(kept) => !server(kept) && (server(timer) || timer.timestamp >= kept.timestamp),
        };
        if keep {
            requests.insert(id, timer);
        }
    }
    let mut traffic = Traffic {
        requests: 0,
        errors: 0,
        unknown_status: 0,
        own_requests: 0,
        by_status: BTreeMap::new(),
        p50_ms: 0.0,
        p95_ms: 0.0,
        p99_ms: 0.0,
        complete: true,
    };
    let mut latencies: Vec<Duration> = Vec::new();
    for timer in requests.into_values().chain(anonymous) {
        if own(timer) {
            traffic.own_requests += 1;
            continue;
        }
        traffic.requests += 1;
        match timer.status {
            None => traffic.unknown_status += 1,
            Some(status) => {
                *traffic.by_status.entry(status).or_default() += 1;
                if status == 0 || error_statuses.contains(status) {
                    traffic.errors += 1;
                }
            }
        }
        if let Some(ns) = timer.duration_ns {
            latencies.push(Duration::from_nanos(ns as u64));
        }
    }
    latencies.sort();
    traffic.p50_ms = super::kpi::percentile_ms(&latencies, 50.0);
    traffic.p95_ms = super::kpi::percentile_ms(&latencies, 95.0);
    traffic.p99_ms = super::kpi::percentile_ms(&latencies, 99.0);
    traffic
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(id: Option<&str>, peer: Option<&str>, status: Option<u16>, ms: i64, at: i64) -> HttpTimer {
        HttpTimer {
            timestamp: at,
            peer_type: peer.map(str::to_string),
            status,
            duration_ns: Some(ms * 1_000_000),
            request_id: id.map(str::to_string),
            user_agent: Some("browser/1".into()),
            instance: "0".into(),
        }
    }

    #[test]
    fn a_request_counts_once_by_its_server_timer() {
        let timers = [
            timer(Some("a"), Some("Client"), Some(500), 5, 1),
            timer(Some("a"), Some("Server"), Some(502), 9, 2),
            timer(Some("b"), Some("Server"), Some(200), 20, 3),
            timer(Some("b"), Some("Client"), Some(200), 18, 2),
        ];
        let traffic = analyse(&timers, &ErrorStatuses::default());
        assert_eq!((traffic.requests, traffic.errors), (2, 1));
        assert_eq!(traffic.by_status, BTreeMap::from([(200, 1), (502, 1)]));
        assert_eq!(traffic.p95_ms, 20.0, "the Server timers' latencies");
    }

    #[test]
    fn without_server_timers_the_last_client_attempt_counts() {
        let timers = [
            timer(Some("a"), Some("Client"), Some(0), 5, 1),
            timer(Some("a"), Some("Client"), Some(200), 7, 2),
            timer(Some("b"), Some("Client"), Some(0), 5000, 3),
        ];
        let traffic = analyse(&timers, &ErrorStatuses::default());
        assert_eq!((traffic.requests, traffic.errors), (2, 1), "a retried request answered; one got no answer");
    }

    #[test]
    fn errors_follow_error_statuses_and_missing_parts_are_tolerated() {
        let timers = [
            timer(None, None, Some(404), 10, 1),
            timer(None, None, Some(429), 10, 2),
            timer(None, None, None, 10, 3),
            HttpTimer { duration_ns: None, ..timer(None, Some("Server"), Some(200), 0, 4) },
        ];
        let default = analyse(&timers, &ErrorStatuses::default());
        assert_eq!((default.requests, default.errors, default.unknown_status), (4, 0, 1), "4xx are answers");
        assert!(
            default.summary().contains("4 req, 0.0% errors, p95 10 ms (1 without a status)"),
            "{}",
            default.summary()
        );
        let strict: ErrorStatuses = serde_json::from_value(serde_json::json!(["5xx", 429])).unwrap();
        assert_eq!(analyse(&timers, &strict).errors, 1);
        assert_eq!(default.p95_ms, 10.0, "a timer without times has no latency");
        let empty = analyse(&[], &ErrorStatuses::default());
        assert_eq!((empty.requests, empty.error_rate(), empty.p95_ms), (0, 0.0, 0.0));
        assert_eq!(empty.summary(), "0 req, 0.0% errors, p95 0 ms");
    }

    #[test]
    fn the_resources_own_requests_are_counted_aside() {
        let probe =
            |id| HttpTimer { user_agent: Some(USER_AGENT.into()), ..timer(Some(id), Some("Server"), Some(200), 1, 1) };
        let timers = [probe("p1"), probe("p2"), timer(Some("u1"), Some("Server"), Some(500), 90, 2)];
        let traffic = analyse(&timers, &ErrorStatuses::default());
        assert_eq!((traffic.requests, traffic.errors, traffic.own_requests), (1, 1, 2));
        assert_eq!(traffic.p95_ms, 90.0);
        assert_eq!(traffic.summary(), "1 req, 100.0% errors, p95 90 ms (2 of the resource's own not counted)");
    }
}
