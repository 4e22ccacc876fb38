//! The request log (method, path, query, status, duration, time) of every listener but the router, and per-endpoint
//! counters keyed by method and path template (guids replaced by `:guid`), so benchmarks can count CC calls.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::faults::FaultApplied;
use crate::server::DropConnection;
use crate::shared::Ctx;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestRecord {
    pub seq: u64,
    pub timestamp: String,
    /// `api`, `uaa` or `log_cache`.
    pub listener: &'static str,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub status: u16,
    pub ms: u64,
    /// Admin (`/_sim/…`) and discovery (`/`) requests are not CC API calls.
    pub admin: bool,
    /// The fault injected into this request, if any.
    pub fault: Option<String>,
    /// The connection was dropped instead of answering.
    pub dropped: bool,
    /// The request body's declared size (`Content-Length`), when it had one: what a client uploaded.
    pub request_bytes: Option<u64>,
}

#[derive(Default)]
pub struct RequestLog {
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    next_seq: u64,
    records: Vec<RequestRecord>,
    counters: BTreeMap<String, u64>,
}

impl RequestLog {
    pub fn records(&self) -> Vec<RequestRecord> {
        self.inner.lock().unwrap().records.clone()
    }

    /// Counts of non-admin requests by `METHOD /path/:guid` template.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.inner.lock().unwrap().counters.clone()
    }

    pub fn reset(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.records.clear();
        inner.counters.clear();
    }

    fn push(&self, mut record: RequestRecord) {
        let mut inner = self.inner.lock().unwrap();
        inner.next_seq += 1;
        record.seq = inner.next_seq;
        if !record.admin {
            *inner.counters.entry(format!("{} {}", record.method, path_template(&record.path))).or_default() += 1;
        }
        inner.records.push(record);
    }
}

/// `/v3/apps/6f1…/processes` → `/v3/apps/:guid/processes`.
pub fn path_template(path: &str) -> String {
    path.split('/')
        .map(|segment| if looks_like_guid(segment) { ":guid" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

fn looks_like_guid(segment: &str) -> bool {
    segment.len() == 36
        && segment
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_alphanumeric() })
}

/// Middleware recording each request of a listener. Like CC, the sim processes a request to the end even when
/// its client stops waiting (a client timeout, a closed connection): the work runs on its own task, so its
/// effects happen and it is logged.
pub async fn record(State((ctx, listener)): State<(Ctx, &'static str)>, request: Request, next: Next) -> Response {
    let work = tokio::spawn(async move {
        let started = Instant::now();
        let timestamp = crate::clock::now_iso_nanos();
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().map(str::to_string);
        let request_bytes = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let admin = path.starts_with("/_sim") || (listener == "api" && path == "/");
        let response = next.run(request).await;
        ctx.requests.push(RequestRecord {
            seq: 0,
            timestamp,
            listener,
            method,
            path,
            query,
            status: response.status().as_u16(),
            ms: started.elapsed().as_millis() as u64,
            admin,
            fault: response.extensions().get::<FaultApplied>().map(|f| f.0.clone()),
            dropped: response.extensions().get::<DropConnection>().is_some(),
            request_bytes,
        });
        response
    });
    match work.await {
        Ok(response) => response,
        Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_become_placeholders() {
        assert_eq!(
            path_template("/v3/apps/1cb006ee-fb05-47e1-b541-c34179ddc446/processes/web"),
            "/v3/apps/:guid/processes/web"
        );
        assert_eq!(path_template("/v3/apps"), "/v3/apps");
    }
}
