//! Injected failures: the error rate, the failure after a set uptime and the
//! failing health check that the deploy tests provoke on purpose.
//!
//! Everything here is deterministic so a test can assert exact counts instead
//! of tolerating randomness.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A fraction of requests to fail, kept in parts per million so that the
/// schedule is exact integer arithmetic: with floats, 100 × 0.29 is
/// 28.999…, and a run of 100 requests would fail 28 times instead of 29.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRate {
    parts_per_million: u64,
}

const MILLION: u128 = 1_000_000;

impl ErrorRate {
    pub const NEVER: ErrorRate = ErrorRate { parts_per_million: 0 };

    /// Accepts a number from 0.0 to 1.0 inclusive.
    pub fn parse(value: &str) -> Option<ErrorRate> {
        let rate = value.parse::<f64>().ok()?;
        (0.0..=1.0).contains(&rate).then(|| ErrorRate { parts_per_million: (rate * MILLION as f64).round() as u64 })
    }

    /// Whether the `k`-th request (counting from 1) fails: exactly when
    /// floor(k·rate) steps up, which spreads the failures evenly, e.g. 0.05
    /// fails requests 20, 40, 60, … and so exactly 5 of every 100.
    pub fn fails(self, k: u64) -> bool {
        let ppm = u128::from(self.parts_per_million);
        let k = u128::from(k);
        k * ppm / MILLION > k.saturating_sub(1) * ppm / MILLION
    }
}

/// Why a request was made to fail; it is told in the 500's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    ErrorRate,
    FailAfter,
}

impl Failure {
    pub fn message(self) -> &'static str {
        match self {
            Failure::ErrorRate => "injected failure: ERROR_RATE\n",
            Failure::FailAfter => "injected failure: FAIL_AFTER_SECS has passed\n",
        }
    }
}

/// The failure settings plus the state they need: the request counter for
/// the error rate and the moment the app started serving.
#[derive(Debug)]
pub struct Faults {
    error_rate: ErrorRate,
    requests_seen: AtomicU64,
    fail_after: Option<Duration>,
    fail_health_too: bool,
    healthy: bool,
    serving_since: Instant,
}

impl Faults {
    /// `serving_since` is when the port was bound, so FAIL_AFTER_SECS counts
    /// from the moment the app could first be reached, whatever the
    /// STARTUP_DELAY_MS.
    pub fn new(
        error_rate: ErrorRate,
        fail_after: Option<Duration>,
        fail_health_too: bool,
        healthy: bool,
        serving_since: Instant,
    ) -> Faults {
        Faults { error_rate, requests_seen: AtomicU64::new(0), fail_after, fail_health_too, healthy, serving_since }
    }

    /// Counts one ordinary (non-health) request and tells whether it fails.
    pub fn check_request(&self) -> Option<Failure> {
        let k = self.requests_seen.fetch_add(1, Ordering::Relaxed) + 1;
        if self.past_fail_after() {
            Some(Failure::FailAfter)
        } else if self.error_rate.fails(k) {
            Some(Failure::ErrorRate)
        } else {
            None
        }
    }

    /// Whether the health check should pass. It never counts as a request.
    pub fn is_healthy(&self) -> bool {
        self.healthy && !(self.fail_health_too && self.past_fail_after())
    }

    fn past_fail_after(&self) -> bool {
        self.fail_after.is_some_and(|after| self.serving_since.elapsed() >= after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures_in_first(rate: &str, n: u64) -> Vec<u64> {
        let rate = ErrorRate::parse(rate).unwrap();
        (1..=n).filter(|&k| rate.fails(k)).collect()
    }

    #[test]
    fn five_percent_fails_every_twentieth_request() {
        assert_eq!(failures_in_first("0.05", 100), vec![20, 40, 60, 80, 100]);
    }

    #[test]
    fn rates_that_floats_get_wrong_are_exact() {
        for (rate, expected) in [("0.29", 29), ("0.07", 7), ("0.57", 57), ("0.333", 33)] {
            assert_eq!(failures_in_first(rate, 100).len(), expected, "{rate}");
        }
    }

    #[test]
    fn zero_never_fails_and_one_always_fails() {
        assert!(failures_in_first("0", 1000).is_empty());
        assert_eq!(failures_in_first("1.0", 50).len(), 50);
    }

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        for value in ["-0.1", "1.01", "NaN", "half"] {
            assert_eq!(ErrorRate::parse(value), None, "{value}");
        }
    }

    #[test]
    fn fail_after_fails_requests_and_optionally_health() {
        let long_ago = Instant::now() - Duration::from_secs(10);
        let faults = Faults::new(ErrorRate::NEVER, Some(Duration::from_secs(5)), false, true, long_ago);
        assert_eq!(faults.check_request(), Some(Failure::FailAfter));
        assert!(faults.is_healthy());

        let faults = Faults::new(ErrorRate::NEVER, Some(Duration::from_secs(5)), true, true, long_ago);
        assert!(!faults.is_healthy());
    }

    #[test]
    fn nothing_fails_before_fail_after() {
        let faults = Faults::new(ErrorRate::NEVER, Some(Duration::from_secs(60)), true, true, Instant::now());
        assert_eq!(faults.check_request(), None);
        assert!(faults.is_healthy());
    }
}
