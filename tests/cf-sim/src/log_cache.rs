//! Log Cache's read API: `GET /api/v1/read/:source_id` with `start_time`, `end_time`, `envelope_types`, `limit`
//! (default 100, at most 1000) and `descending`, payloads base64 as Log Cache returns them; a token is required.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::logs::Stream;
use crate::shared::Ctx;

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/api/v1/read/{source_id}", get(read))
        .route("/api/v1/info", get(|| async { Json(json!({"version": "3.0.0", "vm_uptime": "1"})) }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "Not Found"}))) })
        .layer(from_fn_with_state((ctx.clone(), "log_cache"), crate::faults::inject))
        .layer(from_fn_with_state((ctx.clone(), "log_cache"), crate::request_log::record))
        .with_state(ctx)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let token = value.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim());
    token.is_some_and(|t| ctx.tokens.verify(t, crate::clock::unix_seconds()).is_ok())
}

async fn read(
    State(ctx): State<Ctx>,
    Path(source_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if !authorized(&ctx, &headers) {
        return error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let params: HashMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let number = |key: &str, default: i64| -> Result<i64, String> {
        params.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| format!("{key} must be an integer")))
    };
    let parsed = number("start_time", 0).and_then(|s| Ok((s, number("end_time", i64::MAX)?, number("limit", 100)?)));
    let (start, end, limit) = match parsed {
        Ok(values) => values,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if !(1..=1000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000");
    }
    let types: Vec<String> = params
        .get("envelope_types")
        .map(|t| t.split(',').map(|s| s.trim().to_ascii_uppercase()).collect())
        .unwrap_or_default();
    if !types.is_empty() && !types.iter().any(|t| t == "LOG" || t == "ANY") {
        return Json(json!({"envelopes": {"batch": []}})).into_response();
    }
    let descending = params.get("descending").is_some_and(|d| d == "true");
    let batch: Vec<Value> = ctx
        .logs
        .read(&source_id, start, end, limit as usize, descending)
        .into_iter()
        .map(|e| {
            json!({
                "timestamp": e.timestamp.to_string(),
                "source_id": e.source_id,
                "instance_id": e.instance_id,
                "deprecated_tags": {},
                "tags": {"source_type": e.source_type, "origin": "rep"},
                "log": {
                    "payload": STANDARD.encode(e.message.as_bytes()),
                    "type": match e.stream { Stream::Out => "OUT", Stream::Err => "ERR" },
                },
            })
        })
        .collect();
    Json(json!({"envelopes": {"batch": batch}})).into_response()
}
