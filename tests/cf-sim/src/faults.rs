//! Fault injection: make the Nth request matching a method and path pattern (`*` within a segment, `**` across
//! segments, `:name` for one whole segment) answer with a status, wait first, or lose its connection before or
//! after it is processed.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::cc::error::ApiError;
use crate::server::DropConnection;
use crate::shared::Ctx;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Fault {
    /// HTTP method to match; `None` or `*` matches any.
    #[serde(default)]
    pub method: Option<String>,
    /// Path pattern, e.g. `/v3/apps/:guid/actions/start` or `/v3/apps/*`.
    pub path: String,
    /// Fire from the Nth matching request on (counting from 1).
    #[serde(default = "one")]
    pub nth: u64,
    /// How many times to fire; 0 means every matching request from the Nth on.
    #[serde(default = "one")]
    pub times: u64,
    pub action: FaultAction,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status and a CF error body (defaults by status when code/title/detail are absent).
    Status {
        status: u16,
        #[serde(default)]
        code: Option<u32>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        detail: Option<String>,
    },
    /// Wait, then process the request normally.
    Delay { ms: u64 },
    /// Refuse the request as CC's rate limiters do (see [`rate_limited`]).
    RateLimited {
        /// Seconds until the user's window resets: `Retry-After`, and `X-RateLimit-Reset` is now plus this. CC's
        /// window is `reset_interval_in_minutes` (60 by default), so up to an hour.
        retry_after_secs: u64,
        #[serde(default)]
        limiter: Limiter,
        /// The global limit reported in `X-RateLimit-Limit` (CC's default `global_general_limit` is 20000).
        #[serde(default = "default_global_limit")]
        limit: u64,
    },
    /// Close the connection without processing the request.
    DropBefore,
    /// Process the request (state changes), then close the connection without answering.
    DropAfter,
}

/// Which of CC's rate limiters refuses the request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Limiter {
    /// `middleware/rate_limiter.rb` for a user token: 10013 CF-RateLimitExceeded.
    #[default]
    General,
    /// The same limiter for a request without a user token: 10014 CF-IPBasedRateLimitExceeded.
    Unauthenticated,
    /// `middleware/service_broker_rate_limiter.rb` (v3: `GET …/parameters` of service instances and bindings):
    /// 10016 CF-ServiceBrokerRateLimitExceeded, `Retry-After` only.
    ServiceBroker,
}

fn default_global_limit() -> u64 {
    20_000
}

/// A 429 as CC's `too_many_requests!` builds it (`middleware/base_rate_limiter.rb`, `service_broker_rate_limiter.rb`):
/// `Retry-After` in seconds, the `X-RateLimit-Limit/Reset/Remaining` headers (general limiter only; remaining is 0
/// once the limit is exceeded), `Content-Type: text/plain; charset=utf-8` and the v3 error body as its text.
pub(crate) fn rate_limited(limiter: Limiter, retry_after_secs: u64, limit: u64) -> Response {
    let error = match limiter {
        Limiter::General => ApiError::new(429, 10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"),
        Limiter::Unauthenticated => ApiError::new(
            429,
            10014,
            "CF-IPBasedRateLimitExceeded",
            "Rate Limit Exceeded: Unauthenticated requests from this IP address have exceeded the limit. Please log in.",
        ),
        Limiter::ServiceBroker => ApiError::new(
            429,
            10016,
            "CF-ServiceBrokerRateLimitExceeded",
            "Service broker concurrent request limit exceeded",
        ),
    };
    let body = json!({"errors": [error.to_json()]}).to_string();
    let mut headers =
        vec![("retry-after", retry_after_secs.to_string()), ("content-type", "text/plain; charset=utf-8".to_string())];
    if limiter != Limiter::ServiceBroker {
        let reset = crate::clock::unix_seconds() + retry_after_secs;
        headers.push(("x-ratelimit-limit", limit.to_string()));
        headers.push(("x-ratelimit-reset", reset.to_string()));
        headers.push(("x-ratelimit-remaining", "0".to_string()));
    }
    let mut response = (StatusCode::TOO_MANY_REQUESTS, body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().expect("a header value"));
    }
    response
}

impl FaultAction {
    fn label(&self) -> String {
        match self {
            FaultAction::Status { status, .. } => format!("status {status}"),
            FaultAction::RateLimited { retry_after_secs, .. } => format!("rate_limited {retry_after_secs}s"),
            FaultAction::Delay { ms } => format!("delay {ms}ms"),
            FaultAction::DropBefore => "drop_before".into(),
            FaultAction::DropAfter => "drop_after".into(),
        }
    }
}

/// Marks a response whose request a fault was injected into (for the request log).
#[derive(Debug, Clone)]
pub struct FaultApplied(pub String);

#[derive(Debug, Clone, Serialize)]
pub struct FaultEntry {
    pub id: u64,
    #[serde(flatten)]
    pub fault: Fault,
    pub matched: u64,
    pub fired: u64,
}

#[derive(Default)]
pub struct Faults {
    inner: Mutex<(u64, Vec<FaultEntry>)>,
}

impl Faults {
    pub fn add(&self, fault: Fault) -> u64 {
        let mut inner = self.inner.lock().unwrap();
        inner.0 += 1;
        let id = inner.0;
        inner.1.push(FaultEntry { id, fault, matched: 0, fired: 0 });
        id
    }

    pub fn list(&self) -> Vec<FaultEntry> {
        self.inner.lock().unwrap().1.clone()
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut inner = self.inner.lock().unwrap();
        let before = inner.1.len();
        inner.1.retain(|f| f.id != id);
        inner.1.len() != before
    }

    pub fn clear(&self) {
        self.inner.lock().unwrap().1.clear();
    }

    /// Counts the request against every matching fault and returns the action of the first one that fires.
    pub fn check(&self, method: &str, path: &str) -> Option<FaultAction> {
        let mut inner = self.inner.lock().unwrap();
        let mut action = None;
        for entry in inner.1.iter_mut() {
            let fault = &entry.fault;
            let method_matches = fault.method.as_deref().is_none_or(|m| m == "*" || m.eq_ignore_ascii_case(method));
            if !method_matches || !path_matches(&fault.path, path) {
                continue;
            }
            entry.matched += 1;
            let due = entry.matched >= fault.nth && (fault.times == 0 || entry.fired < fault.times);
            if due && action.is_none() {
                entry.fired += 1;
                action = Some(fault.action.clone());
            }
        }
        action
    }
}

/// Matches a path against a pattern: `:x` or `*` is one whole segment, `*` inside a segment is any characters,
/// `**` is any number of segments.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    segments_match(&pattern, &path)
}

fn segments_match(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(&"**"), _) => (0..=path.len()).any(|skip| segments_match(&pattern[1..], &path[skip..])),
        (Some(p), Some(s)) => segment_matches(p, s) && segments_match(&pattern[1..], &path[1..]),
        _ => false,
    }
}

fn segment_matches(pattern: &str, segment: &str) -> bool {
    if pattern.starts_with(':') {
        return !segment.is_empty();
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == segment;
    }
    let mut rest = segment;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else { return false };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// Middleware applying faults to a listener's requests (never to the admin API).
pub async fn inject(State((ctx, listener)): State<(Ctx, &'static str)>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/_sim") {
        return next.run(request).await;
    }
    let Some(action) = ctx.faults.check(request.method().as_str(), &path) else {
        return next.run(request).await;
    };
    let label = FaultApplied(action.label());
    let mut response = match action {
        FaultAction::Status { status, code, title, detail } => {
            let http = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let injected = || "Injected fault".to_owned();
            if listener == "uaa" {
                let error = title.unwrap_or_else(|| "server_error".into());
                (http, axum::Json(json!({"error": error, "error_description": detail.unwrap_or_else(injected)})))
                    .into_response()
            } else if path.starts_with("/networking/") && code.is_none() {
                // The policy server answers its errors as `{"error": "<description>"}` (cf-networking-helpers,
                // `httperror/error_response.go`, vendored in cf-networking-release). A fault with a CC error code
                // is CC answering the path itself, as where no policy server stands behind the API's host.
                (http, axum::Json(json!({"error": detail.unwrap_or_else(injected)}))).into_response()
            } else {
                let default = ApiError::for_status(status);
                ApiError::new(
                    status,
                    code.unwrap_or(default.code),
                    title.as_deref().unwrap_or(&default.title),
                    detail.unwrap_or(default.detail),
                )
                .into_response()
            }
        }
        FaultAction::RateLimited { retry_after_secs, limiter, limit } => rate_limited(limiter, retry_after_secs, limit),
        FaultAction::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        FaultAction::DropBefore => {
            let mut response = StatusCode::SERVICE_UNAVAILABLE.into_response();
            response.extensions_mut().insert(DropConnection);
            response
        }
        FaultAction::DropAfter => {
            let mut response = next.run(request).await;
            response.extensions_mut().insert(DropConnection);
            response
        }
    };
    response.extensions_mut().insert(label);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_and_globs() {
        assert!(path_matches("/v3/apps/:guid/actions/start", "/v3/apps/abc/actions/start"));
        assert!(!path_matches("/v3/apps/:guid", "/v3/apps/abc/actions/start"));
        assert!(path_matches("/v3/apps/*", "/v3/apps/abc"));
        assert!(path_matches("/v3/**", "/v3/apps/abc/actions/start"));
        assert!(path_matches("/v3/packages/*/upl*", "/v3/packages/x/upload"));
        assert!(!path_matches("/v3/apps", "/v3/apps/x"));
    }

    #[test]
    fn nth_and_times_are_honoured() {
        let faults = Faults::default();
        faults.add(Fault {
            method: Some("GET".into()),
            path: "/v3/apps".into(),
            nth: 2,
            times: 2,
            action: FaultAction::DropBefore,
        });
        let fired: Vec<bool> = (0..5).map(|_| faults.check("GET", "/v3/apps").is_some()).collect();
        assert_eq!(fired, [false, true, true, false, false]);
        assert!(faults.check("POST", "/v3/apps").is_none());
        assert_eq!(faults.list()[0].matched, 5);
    }
}
