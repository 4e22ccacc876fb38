//! Builds: create (one STAGING build per app at a time, the package must be READY), list, get; staging itself
//! runs in [`crate::staging`].

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde_json::Value;

use super::Identity;
use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::shared::Ctx;
use crate::state::{Build, BuildState, PackageState, User};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/builds", get(list).post(create))
        .route("/v3/builds/{guid}", get(get_one).patch(update))
        .route("/v3/apps/{guid}/builds", get(list_for_app))
}

fn list_body(ctx: &Ctx, q: &ListQuery, builds: Vec<&Build>, path: &str) -> Value {
    let (apps, packages, states) = (q.list("app_guids"), q.list("package_guids"), q.list("states"));
    let items = q
        .select(builds.into_iter().filter(|b| {
            matches_any(&apps, &b.app_guid, false)
                && matches_any(&packages, &b.package_guid, false)
                && matches_any(&states, b.state.as_str(), false)
        }))
        .into_iter()
        .map(|b| present::build(&ctx.urls.api, ctx.config.cc_api_version, b))
        .collect();
    q.paginate(&ctx.urls.api, path, items)
}

/// `BuildsListMessage` (`app/messages/builds_list_message.rb`).
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["app_guids", "package_guids", "states", "label_selector"],
    orders: DEFAULT_ORDERS,
    unmodelled: &[],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let state = ctx.state();
    Ok(Json(list_body(&ctx, &q, state.builds.values().collect(), "/v3/builds")))
}

/// `AppBuildsListMessage` (`app/messages/app_builds_list_message.rb`).
const APP_LIST_MESSAGE: ListMessage =
    ListMessage { keys: list_keys!["states", "label_selector"], orders: DEFAULT_ORDERS, unmodelled: &[] };

async fn list_for_app(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &APP_LIST_MESSAGE, ctx.default_per_page())?;
    let state = ctx.state();
    state.app(&guid)?;
    let builds = state.builds.values().filter(|b| b.app_guid == guid).collect();
    Ok(Json(list_body(&ctx, &q, builds, &format!("/v3/apps/{guid}/builds"))))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::build(&ctx.urls.api, ctx.config.cc_api_version, state.build(&guid)?)))
}

async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    // BuildUpdateMessage: metadata, and `state`, `error`, `lifecycle` for a build-state updater.
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["metadata", "state", "error", "lifecycle"]);
    errors.finish()?;
    body::not_modelled(&map, &["state", "error", "lifecycle"])?;
    let mut state = ctx.state();
    let mut build = state.build(&guid)?.clone();
    build.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut build.common);
    let body = present::build(&ctx.urls.api, ctx.config.cc_api_version, &build);
    state.builds.insert(guid, build);
    Ok(Json(body))
}

/// Creates a STAGING build for a READY package and starts staging it.
pub fn start_build(
    ctx: &Ctx,
    package_guid: &str,
    lifecycle: Option<&Value>,
    memory: Option<u64>,
    disk: Option<u64>,
    user: User,
) -> ApiResult<Build> {
    let build = {
        let mut state = ctx.state();
        let package = state
            .packages
            .get(package_guid)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "Unable to use package. Ensure that the package exists and you have access to it.",
                )
            })?
            .clone();
        if package.state != PackageState::Ready {
            return Err(ApiError::bad_request("Cannot stage package whose state is not ready."));
        }
        let app = state.app(&package.app_guid)?.clone();
        if state.builds.values().any(|b| b.app_guid == app.common.guid && b.state == BuildState::Staging) {
            return Err(ApiError::staging_in_progress());
        }
        let lifecycle = super::apps::parse_lifecycle(lifecycle, Some(&app.lifecycle))?.unwrap_or(app.lifecycle.clone());
        let common = state.common();
        let build = Build {
            common,
            app_guid: app.common.guid.clone(),
            package_guid: package_guid.to_string(),
            state: BuildState::Staging,
            error: None,
            lifecycle,
            droplet_guid: None,
            staging_memory_in_mb: memory.unwrap_or(1024),
            staging_disk_in_mb: disk.unwrap_or(1024),
            created_by: user,
        };
        state.builds.insert(build.common.guid.clone(), build.clone());
        build
    };
    ctx.runtime.spawn(crate::staging::run_build(ctx.clone(), build.common.guid.clone()));
    Ok(build)
}

async fn create(
    State(ctx): State<Ctx>,
    Extension(identity): Extension<Identity>,
    raw: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    // BuildCreateMessage (app/messages/build_create_message.rb).
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    let mut allowed =
        vec!["package", "lifecycle", "staging_memory_in_mb", "staging_disk_in_mb", "environment_variables", "metadata"];
    if ctx.config.cc_api_version.at_least(present::BUILD_LOG_RATE_SINCE) {
        allowed.push("staging_log_rate_limit_bytes_per_second");
    }
    errors.unknown_keys(&map, &allowed);
    errors.positive_integer(&map, "staging_memory_in_mb");
    errors.positive_integer(&map, "staging_disk_in_mb");
    // `package_guid`: presence and GuidValidator (a string of 1 to 200 characters).
    let package = map.get("package").and_then(|p| p.get("guid")).filter(|g| !g.is_null());
    let package = match package {
        None => {
            errors.add("Package guid can't be blank");
            errors.add("Package guid must be a string");
            errors.add("Package guid must be between 1 and 200 characters");
            None
        }
        Some(Value::String(guid)) if (1..=200).contains(&guid.chars().count()) => Some(guid.clone()),
        Some(Value::String(guid)) => {
            if guid.trim().is_empty() {
                errors.add("Package guid can't be blank");
            }
            errors.add("Package guid must be between 1 and 200 characters");
            None
        }
        Some(_) => {
            errors.add("Package guid must be a string");
            errors.add("Package guid must be between 1 and 200 characters");
            None
        }
    };
    errors.finish()?;
    let package = package.unwrap_or_default();
    body::not_modelled(&map, &["environment_variables"])?;
    if map.get("staging_log_rate_limit_bytes_per_second").is_some_and(|v| !v.is_null() && v.as_i64() != Some(-1)) {
        return Err(ApiError::unprocessable(
            "cf-sim does not model a staging log rate limit other than -1 (Cloud Controller accepts one)",
        ));
    }
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let user = identity.user_guid.as_deref().and_then(|g| ctx.user(g)).unwrap_or(User {
        guid: identity.client_id.clone(),
        name: identity.client_id.clone(),
        email: String::new(),
    });
    let mut build = start_build(
        &ctx,
        &package,
        map.get("lifecycle"),
        map.get("staging_memory_in_mb").and_then(Value::as_u64),
        map.get("staging_disk_in_mb").and_then(Value::as_u64),
        user,
    )?;
    if metadata != crate::cc::metadata::Metadata::default() {
        let mut state = ctx.state();
        if let Some(stored) = state.builds.get_mut(&build.common.guid) {
            stored.common.metadata = metadata.clone();
        }
        build.common.metadata = metadata;
    }
    Ok((StatusCode::CREATED, Json(present::build(&ctx.urls.api, ctx.config.cc_api_version, &build))))
}
