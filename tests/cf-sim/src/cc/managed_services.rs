//! Managed service instances of a built-in broker, seeded through the admin API (`POST
//! /_sim/managed_service_instances`): cf-sim has no service brokers, so a test makes the instance it binds apps to,
//! on a plan whose offering does or does not let bindings be fetched (`bindings_retrievable`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult};
use crate::shared::Ctx;
use crate::state::ServicePlan;

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
    let plan = ServicePlan { guid: state.common().guid, bindings_retrievable };
    super::services::insert_instance(&ctx.urls.api, &mut state, name, space_guid, Some(plan), |_| Ok(()))
}
