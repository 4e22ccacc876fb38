//! When to try a request again, and how long to wait first.
//!
//! Idempotent requests (GET, PATCH/PUT that set a value, DELETE, and POST actions that are safe to repeat) are
//! retried on connection errors, 5xx and 429, with capped exponential backoff and jitter, honouring
//! `Retry-After`. Creates are never blindly replayed: [`CfClient::create_or_find`] looks the object up after an
//! ambiguous failure and creates again only if it is absent.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use crate::cf::client::CfClient;
use crate::cf::error::{Error, Result};
use crate::log;

/// The retry budget. Tests use [`RetryPolicy::fast`] so they don't sleep for seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in total, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// The wait before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// The longest backoff wait.
    pub max_delay: Duration,
    /// The longest wait a `Retry-After` header can ask for; longer requests are cut to this.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// A policy for tests: the same number of tries, millisecond waits.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
        }
    }

    /// The wait before try number `attempt + 1` (after `attempt` failures): exponential, capped, with jitter in
    /// the upper half so concurrent clients spread out. Always within `[cap/2, cap]`.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        let cap = self.base_delay.saturating_mul(1u32 << exp).min(self.max_delay);
        let half = cap / 2;
        half + jitter(cap - half)
    }

    /// The wait a `Retry-After` value asks for, bounded by `max_retry_after`.
    pub(crate) fn retry_after(&self, header: &str) -> Option<Duration> {
        parse_retry_after(header, SystemTime::now()).map(|d| d.min(self.max_retry_after))
    }

    /// The error for a 429 whose `Retry-After` asks for a longer wait than `max_retry_after`: CC's rate limiter
    /// (`middleware/base_rate_limiter.rb`) sends the seconds until its counter resets, which can be most of
    /// `reset_interval_in_minutes` (an hour by default); waiting that long helps nobody, so the run stops at once.
    /// `None` when the wait fits the budget (or there is no usable header) and the request is tried again.
    pub(crate) fn rate_limited(&self, method: &str, path: &str, retry_after: Option<&str>) -> Option<Error> {
        let value = retry_after?;
        let now = SystemTime::now();
        let wait = parse_retry_after(value, now)?;
        (wait > self.max_retry_after).then(|| Error::RateLimited {
            method: method.to_owned(),
            path: path.to_owned(),
            until: now + wait,
            retry_after: value.trim().to_owned(),
        })
    }
}

/// Statuses worth retrying for an idempotent request: 429 and 5xx except "not implemented" and "version not
/// supported".
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 429 || ((500..600).contains(&status) && status != 501 && status != 505)
}

/// Parses `Retry-After`: delta seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`). A date in the
/// past means "now".
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    let nanos = max.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    Duration::from_nanos(hasher.finish() % (nanos + 1))
}

impl CfClient {
    /// Creates something with a non-idempotent request without ever creating it twice.
    ///
    /// `create` runs once; if it fails ambiguously (the connection dropped after sending, a timeout, a 5xx) the
    /// object may exist, so `find` looks for it (by name within the space, or by a label the create set) and
    /// only if it is absent does `create` run again, within the retry budget. Clear failures (4xx) are returned
    /// at once.
    pub(crate) async fn create_or_find<T, C, CFut, F, FFut>(&self, what: &str, create: C, find: F) -> Result<T>
    where
        C: Fn() -> CFut,
        CFut: Future<Output = Result<T>>,
        F: Fn() -> FFut,
        FFut: Future<Output = Result<Option<T>>>,
    {
        let doubt =
            |err: &Error| format!("creating {what} may not have completed ({err}); checking before trying again");
        let found = self.act_or_check(doubt, create, find).await?;
        if let Done::Checked(_) = &found {
            log::detail(format_args!("{what} was created after all"));
        }
        Ok(found.into_inner())
    }

    /// Runs `act` until it succeeds or fails clearly. After an ambiguous failure it may have taken effect
    /// anyway, so `check` looks (`doubt` words the log line): what it finds is returned, and only if it finds
    /// nothing is `act` run again, within the retry budget.
    pub(crate) async fn act_or_check<T, C, A, AFut, F, FFut>(
        &self,
        doubt: impl Fn(&Error) -> String,
        act: A,
        check: F,
    ) -> Result<Done<T, C>>
    where
        A: Fn() -> AFut,
        AFut: Future<Output = Result<T>>,
        F: Fn() -> FFut,
        FFut: Future<Output = Result<Option<C>>>,
    {
        let policy = self.retry_policy();
        let mut attempt = 1;
        loop {
            let err = match act().await {
                Ok(done) => return Ok(Done::Acted(done)),
                Err(err) if err.is_ambiguous() => err,
                Err(err) => return Err(err),
            };
            log::detail(doubt(&err));
            if let Some(found) = check().await? {
                return Ok(Done::Checked(found));
            }
            if attempt >= policy.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(policy.backoff(attempt)).await;
            attempt += 1;
        }
    }
}

/// How [`CfClient::act_or_check`] ended: with `act`'s answer, or with what `check` found after a lost one.
pub(crate) enum Done<T, C> {
    Acted(T),
    Checked(C),
}

impl<T> Done<T, T> {
    fn into_inner(self) -> T {
        match self {
            Done::Acted(value) | Done::Checked(value) => value,
        }
    }
}

/// A short random token for labels that make a create findable again (`bg-create-id`).
pub(crate) fn create_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let a = hasher.finish();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(a ^ u64::from(std::process::id()));
    format!("{a:016x}{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn retry_after_is_capped_by_the_policy() {
        let policy = RetryPolicy { max_retry_after: Duration::from_secs(5), ..RetryPolicy::default() };
        assert_eq!(policy.retry_after("3600"), Some(Duration::from_secs(5)));
        assert_eq!(policy.retry_after("2"), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_retry_after_beyond_the_budget_is_an_error_naming_the_time() {
        let policy = RetryPolicy { max_retry_after: Duration::from_secs(60), ..RetryPolicy::default() };
        assert!(policy.rate_limited("GET", "/v3/apps", Some("60")).is_none());
        assert!(policy.rate_limited("GET", "/v3/apps", Some("soon")).is_none());
        assert!(policy.rate_limited("GET", "/v3/apps", None).is_none());
        let err = policy.rate_limited("GET", "/v3/apps", Some("3600")).unwrap();
        let Error::RateLimited { until, .. } = &err else { panic!("{err:?}") };
        let secs = until.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let clock = format!("{:02}:{:02} UTC", secs % 86_400 / 3600, secs % 3600 / 60);
        assert_eq!(
            err.to_string(),
            format!("GET /v3/apps: rate limited by Cloud Controller until {clock} (Retry-After: 3600)")
        );
    }

    #[test]
    fn backoff_grows_exponentially_within_bounds() {
        let policy = RetryPolicy::default();
        for _ in 0..200 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500), "{first:?}");
            let third = policy.backoff(3);
            assert!(third >= Duration::from_secs(1) && third <= Duration::from_secs(2), "{third:?}");
            let late = policy.backoff(30);
            assert!(late >= Duration::from_millis(7500) && late <= Duration::from_secs(15), "{late:?}");
        }
        assert_eq!(RetryPolicy { base_delay: Duration::ZERO, ..policy }.backoff(3), Duration::ZERO);
    }

    #[test]
    fn jitter_spreads() {
        let policy = RetryPolicy::default();
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(4)).collect();
        assert!(distinct.len() > 10);
    }

    #[test]
    fn retryable_statuses() {
        for s in [429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 422, 501, 505] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }

    #[test]
    fn create_ids_are_distinct_label_values() {
        let a = create_id();
        let b = create_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
