//! Managed service instances of a built-in broker, seeded through the admin API (`POST
//! /_sim/managed_service_instances`): cf-sim has no service brokers, so a test makes the instance it binds apps to,
//! on a plan whose offering does or does not let bindings be fetched (`bindings_retrievable`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::present;
use crate::shared::Ctx;
use crate::state::{ServiceInstance, ServicePlan};

/// `{name, space_guid, bindings_retrievable}` → 201 with the instance as `GET /v3/service_instances/:guid`
/// presents it.
pub(crate) async fn seed(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["name", "space_guid", "bindings_retrievable"])?;
    let name = body::string_field(&map, "name")?.ok_or_else(|| ApiError::unprocessable("name is required"))?;
    let space_guid =
        body::string_field(&map, "space_guid")?.ok_or_else(|| ApiError::unprocessable("space_guid is required"))?;
    let bindings_retrievable = map.get("bindings_retrievable").and_then(Value::as_bool).unwrap_or(true);
    let mut state = ctx.state();
    if !state.spaces.contains_key(&space_guid) {
        return Err(ApiError::not_found("Space"));
    }
    if state.service_instances.values().any(|s| s.space_guid == space_guid && s.name == name) {
        return Err(ApiError::unprocessable(format!("The service instance name is taken: {name}.")));
    }
    let plan = ServicePlan { guid: state.common().guid, bindings_retrievable };
    let common = state.common();
    let guid = common.guid.clone();
    let si = ServiceInstance {
        common,
        name,
        space_guid,
        credentials: json!({}),
        tags: Vec::new(),
        syslog_drain_url: None,
        route_service_url: None,
        plan: Some(plan),
    };
    let body = present::service_instance(&ctx.urls.api, &si);
    state.service_instances.insert(guid, si);
    Ok((StatusCode::CREATED, Json(body)))
}
