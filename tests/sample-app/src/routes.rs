//! The HTTP endpoints and the fault injection in front of them.
//!
//! The health check is answered first and apart: CF's health checker and the
//! deploy gates must see the instance's real health, never the latency or
//! error rate injected for the KPI probes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::config::Config;
use crate::faults::Faults;
use crate::redis::RedisClient;
use crate::session::{self, SessionStore, User};

pub const HEALTH_PATH: &str = "/healthcheck";
/// `/slow` waits this long when no `ms` is given.
const DEFAULT_SLOW: Duration = Duration::from_millis(1000);
/// `/slow` never waits longer than this, so no request can outlive the
/// 10 s shutdown grace period by much.
const MAX_SLOW: Duration = Duration::from_millis(10_000);

type Body = Full<Bytes>;

/// Everything a request handler needs, shared by all connections.
pub struct App {
    version: String,
    instance: String,
    latency: Duration,
    log_requests: bool,
    faults: Faults,
    sessions: SessionStore,
    env_names: Vec<String>,
    service_names: Vec<String>,
    backend: Option<Backend>,
}

impl App {
    /// `serving_since` is when the port was bound; FAIL_AFTER_SECS counts
    /// from then. `env_names` are the variable names `/env` reports.
    pub fn new(config: Config, serving_since: Instant, env_names: Vec<String>) -> App {
        App {
            faults: Faults::new(
                config.error_rate,
                config.fail_after,
                config.fail_health_too,
                config.healthy,
                serving_since,
            ),
            sessions: match config.redis {
                Some(target) => SessionStore::Redis(RedisClient::new(target)),
                None => SessionStore::memory(),
            },
            version: config.version,
            instance: config.instance,
            latency: config.latency,
            log_requests: config.log_requests,
            env_names,
            service_names: config.service_names,
            backend: config.backend,
        }
    }

    /// Answers one request, logging it when LOG_REQUESTS is on.
    pub async fn handle(self: Arc<App>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let response = self.respond(&request).await;
        if self.log_requests {
            println!("{method} {uri} {} {}ms", response.status().as_u16(), started.elapsed().as_millis());
        }
        Ok(response)
    }

    async fn respond(&self, request: &Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        if path == HEALTH_PATH {
            return self.healthcheck();
        }

        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if let Some(failure) = self.faults.check_request() {
            return text(StatusCode::INTERNAL_SERVER_ERROR, failure.message());
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }

        match path {
            "/" => text(StatusCode::OK, format!("sample-app {} instance {}\n", self.version, self.instance)),
            "/version" => text(StatusCode::OK, self.version.clone()),
            "/slow" => self.slow(request.uri().query()).await,
            "/session" => self.session(request).await,
            "/backend" => self.backend().await,
            "/env" => json_response(StatusCode::OK, json!({ "env": self.env_names, "services": self.service_names })),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// The backend's answer when it is a success, else 502 saying what went wrong.
    async fn backend(&self) -> Response<Body> {
        let Some(backend) = &self.backend else {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "BACKEND_URL is not set\n");
        };
        match backend.call().await {
            Ok((status, body)) if (200..300).contains(&status) => text(StatusCode::OK, body),
            Ok((status, body)) => text(StatusCode::BAD_GATEWAY, format!("the backend answered {status}: {body}")),
            Err(error) => text(StatusCode::BAD_GATEWAY, format!("the backend is unreachable: {error}\n")),
        }
    }

    fn healthcheck(&self) -> Response<Body> {
        if self.faults.is_healthy() {
            text(StatusCode::OK, "ok")
        } else {
            text(StatusCode::INTERNAL_SERVER_ERROR, "unhealthy")
        }
    }

    async fn slow(&self, query: Option<&str>) -> Response<Body> {
        let wait = match slow_duration(query) {
            Ok(wait) => wait,
            Err(message) => return text(StatusCode::BAD_REQUEST, message),
        };
        tokio::time::sleep(wait).await;
        text(StatusCode::OK, self.version.clone())
    }

    async fn session(&self, request: &Request<Incoming>) -> Response<Body> {
        let user = match session::identify(request.headers()) {
            Ok(user) => user,
            Err(message) => return text(StatusCode::BAD_REQUEST, format!("{message}\n")),
        };
        let count = match self.sessions.increment(user.name()).await {
            Ok(count) => count,
            // Falling back to memory would hide exactly the failure the
            // session tests exist to catch.
            Err(err) => {
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": err.to_string(), "store": self.sessions.kind() }),
                );
            }
        };
        let mut response = json_response(
            StatusCode::OK,
            json!({
                "user": user.name(),
                "count": count,
                "store": self.sessions.kind(),
                "version": self.version,
                "instance": self.instance,
            }),
        );
        if let User::New(sid) = &user {
            let cookie = HeaderValue::from_str(&session::set_cookie(sid)).expect("session ids are ASCII alphanumerics");
            response.headers_mut().insert(SET_COOKIE, cookie);
        }
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The wait `/slow` asks for: `ms` from the query, capped at MAX_SLOW.
fn slow_duration(query: Option<&str>) -> Result<Duration, &'static str> {
    let ms = query.into_iter().flat_map(|query| query.split('&')).find_map(|pair| pair.strip_prefix("ms="));
    match ms {
        None => Ok(DEFAULT_SLOW),
        Some(ms) => ms
            .parse::<u64>()
            .map(|ms| Duration::from_millis(ms).min(MAX_SLOW))
            .map_err(|_| "ms must be a whole number of milliseconds\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn json_response(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_reads_ms_from_the_query() {
        assert_eq!(slow_duration(Some("ms=250")), Ok(Duration::from_millis(250)));
        assert_eq!(slow_duration(Some("x=1&ms=7")), Ok(Duration::from_millis(7)));
    }

    #[test]
    fn slow_defaults_and_caps() {
        assert_eq!(slow_duration(None), Ok(DEFAULT_SLOW));
        assert_eq!(slow_duration(Some("ms=999999")), Ok(MAX_SLOW));
    }

    #[test]
    fn slow_refuses_a_bad_ms() {
        assert!(slow_duration(Some("ms=-1")).is_err());
        assert!(slow_duration(Some("ms=soon")).is_err());
    }
}
