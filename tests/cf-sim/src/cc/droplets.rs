//! Droplets: get, list (also the app's current one), copy into another app, create + upload a prebuilt droplet
//! (tgz, a 202 job), download (302 to the blobstore) and delete.

use std::io::Write;

use axum::Json;
use axum::Router;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::Value;

use super::body;
use super::error::{ApiError, ApiResult};
use super::jobs;
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::shared::{Ctx, Knobs};
use crate::state::{Droplet, DropletState, Lifecycle};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/droplets", get(list).post(create))
        .route("/v3/droplets/{guid}", get(get_one).patch(update).delete(delete_droplet))
        .route("/v3/droplets/{guid}/upload", post(upload))
        .route("/v3/droplets/{guid}/download", get(download))
        .route("/v3/apps/{guid}/droplets", get(list_for_app))
        .route("/v3/apps/{guid}/droplets/current", get(current))
        .route("/v3/packages/{guid}/droplets", get(list_for_package))
}

/// Droplet downloads, unauthenticated like blobstore URLs.
pub fn blob_routes() -> Router<Ctx> {
    Router::new().route("/blobstore/droplets/{guid}", get(blob))
}

fn list_body(ctx: &Ctx, q: &ListQuery, droplets: Vec<&Droplet>, path: &str, current: Option<&str>) -> Value {
    let (apps, states) = (q.list("app_guids"), q.list("states"));
    let only_current = q.get("current") == Some("true");
    let items = q
        .select(droplets.into_iter().filter(|d| {
            matches_any(&apps, &d.app_guid, false)
                && matches_any(&states, d.state.as_str(), false)
                && (!only_current || Some(d.common.guid.as_str()) == current)
        }))
        .into_iter()
        .map(|d| present::droplet(&ctx.urls.api, d))
        .collect();
    q.paginate(&ctx.urls.api, path, items)
}

/// `DropletsListMessage` (`app/messages/droplets_list_message.rb`); its `app_guid` and `package_guid` are the path's
/// in CC, not query parameters cf-sim models.
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys![
        "app_guid",
        "app_guids",
        "current",
        "organization_guids",
        "package_guid",
        "space_guids",
        "states",
        "label_selector"
    ],
    orders: DEFAULT_ORDERS,
    unmodelled: &["app_guid", "package_guid"],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    // `not_app_nested_request`.
    q.refuse_present(&["current"])?;
    let state = ctx.state();
    let droplets = state.droplets.values().filter(|d| super::apps::in_scope(&state, &q, &d.app_guid)).collect();
    Ok(Json(list_body(&ctx, &q, droplets, "/v3/droplets", None)))
}

async fn list_for_app(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    // `current`'s inclusion validation, then `app_nested_request`.
    if q.get("current").is_some_and(|c| c != "true") {
        return Err(ApiError::bad_query("Current only accepts the value 'true'"));
    }
    q.refuse_present(&["app_guids", "organization_guids", "space_guids"])?;
    let state = ctx.state();
    let current = state.app(&guid)?.droplet_guid.clone();
    let droplets = state.droplets.values().filter(|d| d.app_guid == guid).collect();
    Ok(Json(list_body(&ctx, &q, droplets, &format!("/v3/apps/{guid}/droplets"), current.as_deref())))
}

async fn list_for_package(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // DropletsListMessage with the path's `package_guid`: `not_app_nested_request` refuses `current`; the filters
    // across apps are not modelled under a package.
    let q = ListQuery::parse_list(
        raw.as_deref(),
        &ListMessage {
            unmodelled: &["app_guid", "package_guid", "app_guids", "organization_guids", "space_guids"],
            ..LIST_MESSAGE
        },
        ctx.default_per_page(),
    )?;
    q.refuse_present(&["current"])?;
    let state = ctx.state();
    state.package(&guid)?;
    let droplets = state.droplets.values().filter(|d| d.package_guid.as_deref() == Some(guid.as_str())).collect();
    Ok(Json(list_body(&ctx, &q, droplets, &format!("/v3/packages/{guid}/droplets"), None)))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::droplet(&ctx.urls.api, state.droplet(&guid)?)))
}

async fn current(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let app = state.app(&guid)?;
    let droplet =
        app.droplet_guid.as_ref().and_then(|d| state.droplets.get(d)).ok_or_else(|| ApiError::not_found("Droplet"))?;
    Ok(Json(present::droplet(&ctx.urls.api, droplet)))
}

/// `PATCH /v3/droplets/:guid`: DropletUpdateMessage (metadata and `image`) and droplet_update.rb.
async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    let image =
        errors.check(body::string_field(&map, "image").map_err(|_| ApiError::unprocessable("Image must be a string")));
    errors.unknown_keys(&map, &["metadata", "image"]);
    errors.finish()?;
    let mut state = ctx.state();
    let mut droplet = state.droplet(&guid)?.clone();
    if map.contains_key("image") {
        if droplet.state != DropletState::Staged {
            return Err(ApiError::unprocessable("Droplet image can only be updated on staged droplets"));
        }
        if droplet.lifecycle_type != "docker" {
            return Err(ApiError::unprocessable("Images can only be updated for docker droplets"));
        }
        droplet.image = image.flatten();
    }
    droplet.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut droplet.common);
    let body = present::droplet(&ctx.urls.api, &droplet);
    state.droplets.insert(guid, droplet);
    Ok(Json(body))
}

/// DropletCreateMessage's `process_types`: an object of non-empty keys and string values.
fn process_types(value: Option<&Value>) -> ApiResult<std::collections::BTreeMap<String, String>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Default::default()) };
    let map = value.as_object().ok_or_else(|| ApiError::unprocessable("Process types must be an object"))?;
    let mut errors = body::Errors::default();
    if map.keys().any(String::is_empty) {
        errors.add("Process types key must not be empty");
    }
    if map.values().any(|v| !v.is_string()) {
        errors.add("Process types value must be a string");
    }
    errors.finish()?;
    Ok(map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
}

async fn delete_droplet(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    ctx.state().droplet(&guid)?;
    let droplet = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "droplet.delete",
        Some(("droplet".into(), format!("/v3/droplets/{guid}"))),
        Box::new(move |ctx| {
            let mut state = ctx.state();
            state.droplets.remove(&droplet);
            for app in state.apps.values_mut() {
                if app.droplet_guid.as_deref() == Some(droplet.as_str()) {
                    app.droplet_guid = None;
                }
            }
            drop(state);
            ctx.blobs.remove_droplet(&droplet);
            Ok(Vec::new())
        }),
    ))
}

/// Updates a droplet's state after background work.
fn set_droplet_state(ctx: &Ctx, guid: &str, result: Result<(), String>) {
    let mut state = ctx.state();
    if let Some(mut droplet) = state.droplets.get(guid).cloned() {
        match result {
            Ok(()) => droplet.state = DropletState::Staged,
            Err(error) => {
                droplet.state = DropletState::Failed;
                droplet.error = Some(error);
            }
        }
        state.touch(&mut droplet.common);
        state.droplets.insert(guid.to_string(), droplet);
    }
}

async fn create(
    State(ctx): State<Ctx>,
    RawQuery(raw): RawQuery,
    request: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let q = ListQuery::parse(raw.as_deref(), &["source_guid"], ctx.default_per_page())?;
    let map = body::object(&request)?;
    let mut errors = body::Errors::default();
    let (app_guid, process_types) = if q.get("source_guid").is_some() {
        // DropletCopyMessage: only `relationships.app`.
        errors.unknown_keys(&map, &["relationships"]);
        (errors.relationships(&map, &["app"], &["app"]).remove(0), Default::default())
    } else {
        // DropletCreateMessage: `relationships` and `process_types` only; labels need a later PATCH.
        errors.unknown_keys(&map, &["relationships", "process_types"]);
        let app = errors.relationships(&map, &["app"], &["app"]).remove(0);
        (app, errors.check(process_types(map.get("process_types"))).unwrap_or_default())
    };
    errors.finish()?;
    let app_guid = app_guid.unwrap_or_default();
    let mut state = ctx.state();
    if let Some(source_guid) = q.get("source_guid") {
        state.droplet(source_guid)?;
    }
    let app = match state.apps.get(&app_guid) {
        Some(app) => app.clone(),
        None if q.get("source_guid").is_some() => return Err(ApiError::not_found("App")),
        None => {
            return Err(ApiError::unprocessable(format!(
                "App with guid \"{app_guid}\" does not exist, or you do not have access to it."
            )));
        }
    };
    let common = state.common();
    let guid = common.guid.clone();
    if let Some(source_guid) = q.get("source_guid") {
        let source = state.droplet(source_guid)?.clone();
        if source.state != DropletState::Staged {
            return Err(ApiError::unprocessable("Source droplet is not staged."));
        }
        // DropletCopy (app/actions/droplet_copy.rb) clones process types, receipts and execution metadata, not
        // the package: a copy was staged from no package of its app.
        let droplet = Droplet {
            common,
            app_guid,
            package_guid: None,
            state: DropletState::Copying,
            error: None,
            ..source.clone()
        };
        let body = present::droplet(&ctx.urls.api, &droplet);
        state.droplets.insert(guid.clone(), droplet);
        drop(state);
        let task_ctx = ctx.clone();
        let delay = Knobs::ms(&ctx.knobs.package_processing_delay_ms);
        ctx.runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let (blob_ctx, from, to) = (task_ctx.clone(), source.common.guid.clone(), guid.clone());
            let copied =
                tokio::task::spawn_blocking(move || blob_ctx.blobs.copy_droplet(&from, &to).map_err(|e| e.to_string()))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()));
            set_droplet_state(&task_ctx, &guid, copied);
        });
        return Ok((StatusCode::CREATED, Json(body)));
    }
    let droplet = Droplet {
        common,
        app_guid,
        package_guid: None,
        state: DropletState::AwaitingUpload,
        error: None,
        process_types,
        checksum: None,
        buildpacks: Vec::new(),
        stack: match &app.lifecycle {
            Lifecycle::Buildpack { stack, .. } => Some(stack.clone()),
            Lifecycle::Docker => None,
        },
        image: None,
        lifecycle_type: app.lifecycle.type_name(),
        execution_metadata: String::new(),
    };
    let body = present::droplet(&ctx.urls.api, &droplet);
    state.droplets.insert(guid, droplet);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn upload(State(ctx): State<Ctx>, Path(guid): Path<String>, mut multipart: Multipart) -> ApiResult<Response> {
    {
        let state = ctx.state();
        if state.droplet(&guid)?.state != DropletState::AwaitingUpload {
            return Err(ApiError::unprocessable("Droplet may be uploaded only once."));
        }
    }
    let invalid = |e: axum::extract::multipart::MultipartError| ApiError::app_bits_upload_invalid(e.body_text());
    let mut file = None;
    while let Some(mut field) = multipart.next_field().await.map_err(invalid)? {
        if field.name() != Some("bits") {
            continue;
        }
        if field.file_name().is_none() {
            return Err(ApiError::app_bits_upload_invalid("File field missing path information"));
        }
        let mut temp = ctx.blobs.upload_file().map_err(|e| ApiError::app_bits_upload_invalid(e.to_string()))?;
        while let Some(chunk) = field.chunk().await.map_err(invalid)? {
            temp.write_all(&chunk).map_err(|e| ApiError::app_bits_upload_invalid(e.to_string()))?;
        }
        file = Some(temp);
    }
    let file = file.ok_or_else(|| ApiError::unprocessable("Upload must include bits"))?;
    {
        let mut state = ctx.state();
        let mut droplet = state.droplet(&guid)?.clone();
        droplet.state = DropletState::ProcessingUpload;
        state.touch(&mut droplet.common);
        state.droplets.insert(guid.clone(), droplet);
    }
    let droplet = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "droplet.upload",
        Some(("droplet".into(), format!("/v3/droplets/{guid}"))),
        Box::new(move |ctx| {
            let dir = ctx.blobs.droplet_dir(&droplet);
            let tgz = ctx.blobs.droplet_tgz(&droplet);
            let result = crate::blobstore::untar_gz(file.path(), &dir)
                .and_then(|()| std::fs::copy(file.path(), &tgz).map(|_| ()))
                .map_err(|e| format!("The droplet could not be unpacked: {e}"));
            let checksum = crate::blobstore::sha256_file(&tgz).ok();
            if let Some(d) = ctx.state().droplets.get_mut(&droplet) {
                d.checksum = checksum;
            }
            set_droplet_state(ctx, &droplet, result.clone());
            result.map(|()| Vec::new()).map_err(ApiError::unprocessable)
        }),
    ))
}

async fn download(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    let state = ctx.state();
    let droplet = state.droplet(&guid)?;
    if droplet.state != DropletState::Staged || droplet.image.is_some() {
        return Err(ApiError::unprocessable("Only staged buildpack droplets can be downloaded."));
    }
    let location = format!("{}/blobstore/droplets/{guid}", ctx.urls.api);
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

async fn blob(State(ctx): State<Ctx>, Path(guid): Path<String>) -> Response {
    super::packages::stream_file(ctx.blobs.droplet_tgz(&guid), "application/gzip").await
}
