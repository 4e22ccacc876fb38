//! Log Cache's read API as log-cache-release has it: `GET /api/v1/read/:source_id` behind the cf-auth-proxy (any
//! missing or invalid token is a 404 with an empty body, `internal/auth/cf_auth_middleware.go`), with
//! `start_time` (inclusive), `end_time` (exclusive, 0 or absent is now), `envelope_types` (ANY ignored), `limit`
//! (0 or absent is 100, at most 1000) and `descending` (`internal/routing/local_store_reader.go`,
//! `internal/cache/store/store.go`); errors as grpc-gateway's default handler renders a gRPC status
//! (`{"code","message","details"}`: 400 for a parameter that does not parse, 500 for the reader's own errors).
//! Envelopes render as protojson with proto names (`internal/gateway/gateway.go`), payloads base64, timers with
//! their int64 `start`/`stop` as strings. The PromQL endpoints `GET /api/v1/query` and `GET /api/v1/query_range`
//! are in [`promql`].

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::logs::{Stored, Stream};
use crate::shared::Ctx;

mod promql;

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/read/{source_id}", get(read))
        .route("/api/v1/query", get(promql::instant))
        .route("/api/v1/query_range", get(promql::range))
        .route("/api/v1/info", get(|| async { Json(json!({"version": "3.0.0", "vm_uptime": "1"})) }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "Not Found"}))) })
        .layer(from_fn_with_state((ctx.clone(), "log_cache"), crate::faults::inject))
        .layer(from_fn_with_state((ctx.clone(), "log_cache"), crate::request_log::record))
        .with_state(ctx)
}

/// A gRPC status as grpc-gateway's `DefaultHTTPErrorHandler` renders it.
fn grpc_error(status: StatusCode, code: u8, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message, "details": []}))).into_response()
}

/// A query parameter that does not parse: `codes.InvalidArgument`, 400.
fn invalid_argument(message: String) -> Response {
    grpc_error(StatusCode::BAD_REQUEST, 3, &message)
}

/// An error of the reader: a plain error on the gRPC side, `codes.Unknown`, 500.
fn unknown(message: String) -> Response {
    grpc_error(StatusCode::INTERNAL_SERVER_ERROR, 2, &message)
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let token = value.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim());
    token.is_some_and(|t| ctx.tokens.verify(t, crate::clock::unix_seconds()).is_ok())
}

/// The envelope types of `logcache_v1.EnvelopeType`.
const ENVELOPE_TYPES: &[&str] = &["ANY", "LOG", "COUNTER", "GAUGE", "TIMER", "EVENT"];

async fn read(
    State(ctx): State<Ctx>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !authorized(&ctx, &headers) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let number = |key: &str| -> Result<i64, String> {
        param(key).map_or(Ok(0), |v| v.parse().map_err(|e| format!("parsing field \"{key}\": {e}")))
    };
    let parsed = number("start_time").and_then(|start| Ok((start, number("end_time")?, number("limit")?)));
    let (start, end, limit) = match parsed {
        Ok(values) => values,
        Err(message) => return invalid_argument(message),
    };
    if end != 0 && start > end {
        return unknown(format!("StartTime ({start}) must be before EndTime ({end})"));
    }
    if limit > 1000 {
        return unknown(format!("limit ({limit}) must be 1000 or less"));
    }
    if limit < 0 {
        return unknown(format!("limit ({limit}) must be greater than zero"));
    }
    let end = if end == 0 { crate::clock::unix_nanos() } else { end };
    let limit = if limit == 0 { 100 } else { limit };
    let types: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "envelope_types")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_ascii_uppercase()).collect::<Vec<_>>())
        .collect();
    if let Some(bad) = types.iter().find(|t| !ENVELOPE_TYPES.contains(&t.as_str())) {
        return invalid_argument(format!("parsing field \"envelope_types\": {bad:?} is not a valid value"));
    }
    let wanted: Vec<&String> = types.iter().filter(|t| *t != "ANY").collect();
    let (logs, timers) = (wanted.iter().any(|t| *t == "LOG"), wanted.iter().any(|t| *t == "TIMER"));
    let every_type = wanted.is_empty();
    let descending = match param("descending") {
        None => false,
        Some(v) => match v {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
            "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
            other => return invalid_argument(format!("parsing field \"descending\": invalid boolean {other:?}")),
        },
    };
    let batch: Vec<Value> = ctx
        .logs
        .read(&source_id, start, end.saturating_sub(1), limit as usize, descending, |e| {
            every_type || matches!(e, Stored::Log(_)) && logs || matches!(e, Stored::Timer(_)) && timers
        })
        .iter()
        .map(render)
        .collect();
    Json(json!({"envelopes": {"batch": batch}})).into_response()
}

/// A loggregator v2 envelope as the gateway's protojson marshaler renders it (proto names, unpopulated fields
/// emitted, int64 as strings).
fn render(envelope: &Stored) -> Value {
    match envelope {
        Stored::Log(e) => json!({
            "timestamp": e.timestamp.to_string(),
            "source_id": e.source_id,
            "instance_id": e.instance_id,
            "deprecated_tags": {},
            "tags": {"source_type": e.source_type, "origin": "rep"},
            "log": {
                "payload": STANDARD.encode(e.message.as_bytes()),
                "type": match e.stream { Stream::Out => "OUT", Stream::Err => "ERR" },
            },
        }),
        Stored::Timer(t) => json!({
            "timestamp": t.timestamp.to_string(),
            "source_id": t.source_id,
            "instance_id": t.instance_id,
            "deprecated_tags": {},
            "tags": t.tags,
            "timer": {"name": t.name, "start": t.start.to_string(), "stop": t.stop.to_string()},
        }),
    }
}
