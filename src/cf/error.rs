//! The client's errors: CF's error bodies as a typed [`CfError`], and transport, TLS, auth, decode and timeout
//! failures with messages a pipeline user can act on. No message ever carries a secret or a request body.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::cf::types::null_as_default;
use crate::log::human_duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One entry of CF's `errors[]` (`{"code":10008,"title":"CF-UnprocessableEntity","detail":"…"}`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ApiError {
    #[serde(default, deserialize_with = "null_as_default")]
    pub code: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub detail: String,
}

/// A CF error body: `{"errors":[…]}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ApiError>,
}

/// An error CF (or UAA, or Log Cache) answered with, tied to the request that caused it.
///
/// Displays as `POST /v3/apps: 422 CF-UniquenessError (10016): App with the name 'x' already exists.`; a failed
/// async job as `DELETE /v3/apps/<guid>: job failed: CF-UnprocessableEntity (10008): something went wrong`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CfError {
    /// The HTTP status; `None` when the error came from a FAILED job.
    pub status: Option<u16>,
    /// CF's numeric code (`errors[0].code`), when the body had one.
    pub code: Option<i64>,
    /// `CF-…` title, an OAuth error (`invalid_token`) for UAA, or the HTTP reason when the body was not JSON.
    pub title: String,
    pub detail: String,
    pub method: String,
    /// The request path, without the query string.
    pub path: String,
    /// `X-Vcap-Request-Id`, for CF operators.
    pub(crate) request_id: Option<String>,
    /// Any further entries of `errors[]`.
    pub more: Vec<ApiError>,
}

impl CfError {
    /// Builds the error from an HTTP error response body (CF `errors[]`, an OAuth error, or anything else).
    pub fn from_response(method: &str, path: &str, status: u16, request_id: Option<String>, body: &[u8]) -> Self {
        let mut err = CfError {
            status: Some(status),
            code: None,
            title: String::new(),
            detail: String::new(),
            method: method.to_owned(),
            path: path.to_owned(),
            request_id,
            more: Vec::new(),
        };
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body)
            && let Some((first, rest)) = parsed.errors.split_first()
        {
            err.code = Some(first.code);
            err.title = first.title.clone();
            err.detail = first.detail.clone();
            err.more = rest.to_vec();
            return err;
        }
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
            #[serde(default)]
            error_description: String,
        }
        if let Ok(oauth) = serde_json::from_slice::<OAuthError>(body) {
            err.title = oauth.error;
            err.detail = oauth.error_description;
            return err;
        }
        err.title =
            reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_owned();
        // Masked before it is folded and cut, which could hide a secret from the mask.
        let text = String::from_utf8_lossy(body);
        let text = crate::redact::redact(&text).split_whitespace().collect::<Vec<_>>().join(" ");
        err.detail = truncate(&text, 300);
        err
    }

    /// The error of a FAILED job: its first `errors[]` entry, tied to the request that started the job.
    pub fn from_job(method: &str, path: &str, errors: &[ApiError]) -> Self {
        let (first, rest) = match errors.split_first() {
            Some((first, rest)) => (first.clone(), rest.to_vec()),
            None => {
                (ApiError { code: 0, title: String::new(), detail: "the job failed without saying why".into() }, vec![])
            }
        };
        CfError {
            status: None,
            code: (first.code != 0).then_some(first.code),
            title: first.title,
            detail: first.detail,
            method: method.to_owned(),
            path: path.to_owned(),
            request_id: None,
            more: rest,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The token expired or was rejected, so refreshing may help: CC's 401 `CF-InvalidAuthToken` (1000), or the
    /// policy server's 401 `{"error": "failed to verify token with uaa"}` (cf-networking-release,
    /// `policy-server/handlers/auth_middleware.go`: UAA's check_token refused it).
    pub(crate) fn is_invalid_auth_token(&self) -> bool {
        self.status == Some(401)
            && (self.code == Some(1000)
                || self.title == "CF-InvalidAuthToken"
                || (self.code.is_none() && self.title == "failed to verify token with uaa"))
    }

    /// A name (app, route host/path/port, label) is already taken, in every form CC answers it with:
    /// - 422 `CF-UniquenessError` (v3 code 10016 in `errors/v3.yml`; `app/actions/app_create.rb` for a new app);
    /// - 422 `CF-UnprocessableEntity` (10008) "App with the name '…' already exists." for a rename
    ///   (`app/actions/app_update.rb` → `apps_controller.rb`), "Route already exists with host '…' for domain
    ///   '…'." for a route (`app/actions/route_create.rb`), or a "must be unique" validation;
    /// - the v2 forms (400 `CF-AppNameTaken`, `CF-RouteHostTaken`, `CF-RoutePathTaken`, `CF-RoutePortTaken`).
    ///
    /// Code 10016 alone is not enough: in v2's codes it is `ServiceBrokerRateLimitExceeded`, a 429.
    pub fn is_name_taken(&self) -> bool {
        const V2_TAKEN: [&str; 4] = ["CF-AppNameTaken", "CF-RouteHostTaken", "CF-RoutePathTaken", "CF-RoutePortTaken"];
        match self.status {
            Some(422) => {
                self.title == "CF-UniquenessError"
                    || self.detail.contains("already exists")
                    || self.detail.contains("must be unique")
            }
            Some(400) => V2_TAKEN.contains(&self.title.as_str()),
            _ => false,
        }
    }

    /// 422 "Destinations cannot be inserted when there are weighted destinations already configured." or
    /// "Weighted destinations cannot be deleted individually." (`app/actions/update_route_destinations.rb`): the
    /// route's traffic is split by weights, which only a replacement of all its destinations can change.
    pub fn is_weighted_destinations(&self) -> bool {
        self.status == Some(422) && self.detail.contains("eighted destinations")
    }
}

impl fmt::Display for CfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.method, self.path)?;
        match self.status {
            Some(status) => write!(f, "{status} ")?,
            None => write!(f, "job failed: ")?,
        }
        if !self.title.is_empty() {
            write!(f, "{}", self.title)?;
        }
        if let Some(code) = self.code {
            write!(f, " ({code})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        for more in &self.more {
            write!(f, "; {} ({}): {}", more.title, more.code, more.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for CfError {}

/// Everything the client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// CF answered with an error status (or a job FAILED).
    #[error("{0}")]
    Cf(Box<CfError>),
    /// The request did not get an HTTP answer: connection refused, TLS, timeout, dropped connection.
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
        /// True when the request may have reached the server (so a create may have happened).
        ambiguous: bool,
    },
    /// Logging in or refreshing the token failed.
    #[error("{0}")]
    Auth(String),
    /// The response was not what the client expected (path into the JSON included).
    #[error("{method} {path}: unexpected response: {message}")]
    Decode { method: String, path: String, message: String },
    /// CC's rate limiter answered 429 with a `Retry-After` beyond the retry budget.
    #[error("{method} {path}: rate limited by Cloud Controller until {} (Retry-After: {retry_after})", utc_clock(*until))]
    RateLimited { method: String, path: String, until: SystemTime, retry_after: String },
    /// A wait ran into its deadline.
    #[error("timed out after {} waiting for {what}", human_duration(*after))]
    Timeout { what: String, after: Duration },
    /// CF reported a terminal failure state (package FAILED, build FAILED, droplet EXPIRED, …).
    #[error("{0}")]
    Failed(String),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The settings cannot work (bad URL, unreadable CA certificate, bad proxy URL).
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The CF error, if this is one.
    pub fn cf(&self) -> Option<&CfError> {
        match self {
            Error::Cf(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status CF answered with, if any.
    pub fn status(&self) -> Option<u16> {
        self.cf().and_then(|e| e.status)
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.cf().is_some_and(CfError::is_not_found)
    }

    /// True when a non-idempotent request may or may not have been carried out: the connection broke after the
    /// request was sent, it timed out, or the server answered 5xx. Callers look before they create again.
    pub(crate) fn is_ambiguous(&self) -> bool {
        match self {
            Error::Transport { ambiguous, .. } => *ambiguous,
            Error::Cf(e) => e.status.is_some_and(|s| s >= 500),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

impl From<CfError> for Error {
    fn from(e: CfError) -> Self {
        Error::Cf(Box::new(e))
    }
}

/// `14:05 UTC`, or the full HTTP date when `at` is more than a day away.
fn utc_clock(at: SystemTime) -> String {
    let now = SystemTime::now();
    if at.duration_since(now).unwrap_or_default() > Duration::from_secs(86_400) {
        return httpdate::fmt_http_date(at);
    }
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    format!("{:02}:{:02} UTC", secs % 86_400 / 3600, secs % 3600 / 60)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_error_reads_like_one_line_of_the_cli() {
        let body = br#"{"errors":[{"code":10016,"title":"CF-UniquenessError","detail":"App with the name 'x' already exists."}]}"#;
        let e = CfError::from_response("POST", "/v3/apps", 422, Some("abc::def".into()), body);
        assert_eq!(
            e.to_string(),
            "POST /v3/apps: 422 CF-UniquenessError (10016): App with the name 'x' already exists."
        );
        assert!(e.is_name_taken());
        assert_eq!(e.request_id.as_deref(), Some("abc::def"));
    }

    fn cf_error(status: u16, code: i64, title: &str, detail: &str) -> CfError {
        let body = serde_json::json!({"errors": [{"code": code, "title": title, "detail": detail}]});
        CfError::from_response("PATCH", "/v3/apps/a", status, None, body.to_string().as_bytes())
    }

    #[test]
    fn every_form_cc_answers_a_taken_name_with_is_recognised() {
        const TCP_ROUTE_TAKEN: &str = "Route already exists with port '1024' for domain 'tcp.d.com'.";
        const BROKER_LIMIT: &str = "Service broker concurrent request limit exceeded";
        let taken = [
            cf_error(422, 10016, "CF-UniquenessError", "App with the name 'x' already exists."),
            cf_error(422, 10008, "CF-UnprocessableEntity", "App with the name 'x' already exists."),
            cf_error(422, 10008, "CF-UnprocessableEntity", "Route already exists with host 'x' for domain 'd.com'."),
            cf_error(422, 10008, "CF-UnprocessableEntity", TCP_ROUTE_TAKEN),
            cf_error(400, 100002, "CF-AppNameTaken", "The app name is taken: x"),
            cf_error(400, 210003, "CF-RouteHostTaken", "The host is taken: x"),
        ];
        for e in &taken {
            assert!(e.is_name_taken(), "{e}");
        }
        let not_taken = [
            cf_error(429, 10016, "CF-ServiceBrokerRateLimitExceeded", BROKER_LIMIT),
            cf_error(422, 10008, "CF-UnprocessableEntity", "Lifecycle type cannot be changed from buildpack to docker"),
            cf_error(400, 1001, "CF-MessageParseError", "Request invalid due to parse error"),
        ];
        for e in &not_taken {
            assert!(!e.is_name_taken(), "{e}");
        }
    }

    #[test]
    fn weighted_destinations_are_recognised() {
        let insert = cf_error(
            422,
            10008,
            "CF-UnprocessableEntity",
            "Destinations cannot be inserted when there are weighted destinations already configured.",
        );
        let delete =
            cf_error(422, 10008, "CF-UnprocessableEntity", "Weighted destinations cannot be deleted individually.");
        assert!(insert.is_weighted_destinations() && delete.is_weighted_destinations());
        assert!(
            !cf_error(422, 10008, "CF-UnprocessableEntity", "Routes can be mapped to at most 100 destinations.")
                .is_weighted_destinations()
        );
    }

    #[test]
    fn several_errors_are_all_shown() {
        let body = br#"{"errors":[{"code":10008,"title":"CF-UnprocessableEntity","detail":"a"},{"code":10005,"title":"CF-BadQueryParameter","detail":"b"}]}"#;
        let e = CfError::from_response("GET", "/v3/apps", 422, None, body);
        assert_eq!(
            e.to_string(),
            "GET /v3/apps: 422 CF-UnprocessableEntity (10008): a; CF-BadQueryParameter (10005): b"
        );
    }

    #[test]
    fn oauth_and_plain_bodies_still_make_sense() {
        let e = CfError::from_response(
            "POST",
            "/oauth/token",
            401,
            None,
            br#"{"error":"unauthorized","error_description":"Bad credentials"}"#,
        );
        assert_eq!(e.to_string(), "POST /oauth/token: 401 unauthorized: Bad credentials");
        let e = CfError::from_response("GET", "/v3/apps", 502, None, b"<html>\n  bad gateway </html>");
        assert_eq!(e.to_string(), "GET /v3/apps: 502 Bad Gateway: <html> bad gateway </html>");
        assert!(Error::from(e).is_ambiguous());
    }

    #[test]
    fn invalid_auth_token_is_recognised_but_not_authenticated_is_not() {
        let invalid = CfError::from_response(
            "GET",
            "/v3/apps",
            401,
            None,
            br#"{"errors":[{"code":1000,"title":"CF-InvalidAuthToken","detail":"Invalid Auth Token"}]}"#,
        );
        assert!(invalid.is_invalid_auth_token());
        let missing = CfError::from_response(
            "GET",
            "/v3/apps",
            401,
            None,
            br#"{"errors":[{"code":10002,"title":"CF-NotAuthenticated","detail":"Authentication error"}]}"#,
        );
        assert!(!missing.is_invalid_auth_token());
        let policy_server = CfError::from_response(
            "GET",
            "/networking/v1/external/policies",
            401,
            None,
            br#"{"error": "failed to verify token with uaa"}"#,
        );
        assert!(policy_server.is_invalid_auth_token());
        let no_header = CfError::from_response(
            "GET",
            "/networking/v1/external/policies",
            401,
            None,
            br#"{"error": "missing authorization header"}"#,
        );
        assert!(!no_header.is_invalid_auth_token());
    }

    #[test]
    fn job_failures_name_the_request_that_started_the_job() {
        let errors = vec![ApiError {
            code: 10008,
            title: "CF-UnprocessableEntity".into(),
            detail: "something went wrong".into(),
        }];
        let e = CfError::from_job("DELETE", "/v3/apps/abc", &errors);
        assert_eq!(
            e.to_string(),
            "DELETE /v3/apps/abc: job failed: CF-UnprocessableEntity (10008): something went wrong"
        );
        assert!(!Error::from(e).is_ambiguous());
    }
}
