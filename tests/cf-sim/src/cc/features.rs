//! App features: `GET /v3/apps/:guid/features`, `GET`/`PATCH /v3/apps/:guid/features/:name`, `GET
//! /v3/apps/:guid/ssh_enabled`, and the `features:` of manifests (app_features_controller.rb,
//! app_feature_update_message.rb, manifest_features_update_message.rb, actions/app_feature_update.rb,
//! models/helpers/app_features.rb, the app_*_feature_presenter.rb and app_ssh_status_presenter.rb). An app starts
//! with CC's defaults (`default_app_ssh_access: true`, revisions on, the binding ones off); SSH is allowed
//! globally and in every space (`allow_app_ssh_access: true`, spaces' `allow_ssh` default).

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use crate::shared::Ctx;
use crate::state::State as CcState;

/// `AppFeatures.all_features`, with each one's presenter description and CC's default.
const FEATURES: [(&str, &str, bool); 4] = [
    ("ssh", "Enable SSHing into the app.", true),
    ("revisions", "Enable versioning of an application", true),
    ("service-binding-k8s", "Enable k8s service bindings for the app", false),
    ("file-based-vcap-services", "Enable file-based VCAP service bindings for the app", false),
];
const EXCLUSIVE: [&str; 2] = ["file-based-vcap-services", "service-binding-k8s"];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/apps/{guid}/features", get(index))
        .route("/v3/apps/{guid}/features/{name}", get(show).patch(update))
        .route("/v3/apps/{guid}/ssh_enabled", get(ssh_enabled))
}

/// The app's features, in CC's order, as (name, enabled).
pub fn of_app(state: &CcState, app_guid: &str) -> Vec<(&'static str, bool)> {
    let set = state.app_features.get(app_guid);
    FEATURES
        .iter()
        .map(|(name, _, default)| (*name, set.and_then(|s| s.get(*name)).copied().unwrap_or(*default)))
        .collect()
}

fn present(state: &CcState, app_guid: &str, name: &str) -> Value {
    let description = FEATURES.iter().find(|(n, ..)| *n == name).map(|(_, d, _)| *d).unwrap_or_default();
    let enabled = of_app(state, app_guid).into_iter().any(|(n, on)| n == name && on);
    json!({"name": name, "description": description, "enabled": enabled})
}

/// Sets `features` on the app (AppFeatureUpdate.bulk_update): refused when it would enable both binding features.
pub fn bulk_update(state: &mut CcState, app_guid: &str, features: &Map<String, Value>) -> ApiResult<()> {
    let mut next: Map<String, Value> =
        of_app(state, app_guid).into_iter().map(|(n, on)| (n.into(), on.into())).collect();
    next.extend(features.iter().map(|(k, v)| (k.clone(), v.clone())));
    if EXCLUSIVE.iter().all(|name| next.get(*name) == Some(&Value::Bool(true))) {
        return Err(ApiError::unprocessable(format!(
            "'{}' and '{}' features cannot be enabled at the same time.",
            EXCLUSIVE[0], EXCLUSIVE[1]
        )));
    }
    let entry = state.app_features.entry(app_guid.to_string()).or_default();
    entry.extend(features.iter().filter_map(|(k, v)| Some((k.clone(), v.as_bool()?))));
    Ok(())
}

/// A manifest's `features:` (ManifestFeaturesUpdateMessage): a non-empty map of known features to booleans.
pub fn check_manifest(value: &Value) -> ApiResult<Map<String, Value>> {
    let valid = value.as_object().filter(|m| {
        !m.is_empty() && m.iter().all(|(name, on)| on.is_boolean() && FEATURES.iter().any(|(n, ..)| n == name))
    });
    valid.cloned().ok_or_else(|| {
        ApiError::unprocessable(
            "Features must be a map of valid feature names to booleans (true = enabled, false = disabled)",
        )
    })
}

async fn index(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    state.app(&guid)?;
    let resources: Vec<Value> = FEATURES.iter().map(|(name, ..)| present(&state, &guid, name)).collect();
    let href = json!({"href": format!("{}/v3/apps/{guid}/features", ctx.urls.api)});
    let pagination = json!({"total_results": resources.len(), "total_pages": 1, "first": href, "last": href,
        "next": null, "previous": null});
    Ok(Json(json!({"resources": resources, "pagination": pagination})))
}

fn known(name: &str) -> ApiResult<()> {
    match FEATURES.iter().any(|(n, ..)| *n == name) {
        true => Ok(()),
        false => Err(ApiError::not_found("Feature")),
    }
}

async fn show(State(ctx): State<Ctx>, Path((guid, name)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    state.app(&guid)?;
    known(&name)?;
    Ok(Json(present(&state, &guid, &name)))
}

async fn update(
    State(ctx): State<Ctx>,
    Path((guid, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let mut state = ctx.state();
    state.app(&guid)?;
    known(&name)?;
    let map = body::object(&raw)?;
    body::only_keys(&map, &["enabled"])?;
    let enabled = map
        .get("enabled")
        .filter(|v| v.is_boolean())
        .ok_or_else(|| ApiError::unprocessable("Enabled must be a boolean"))?;
    bulk_update(&mut state, &guid, &Map::from_iter([(name.clone(), enabled.clone())]))?;
    Ok(Json(present(&state, &guid, &name)))
}

async fn ssh_enabled(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    state.app(&guid)?;
    let enabled = of_app(&state, &guid).into_iter().any(|(n, on)| n == "ssh" && on);
    let reason = if enabled { "" } else { "ssh is disabled for app" };
    Ok(Json(json!({"enabled": enabled, "reason": reason})))
}
