//! Packages and resource matching: create (bits or docker), copy, multipart upload of `resources` + `bits`
//! streamed to disk (memory stays flat for any size), the states AWAITING_UPLOAD → PROCESSING_UPLOAD → READY /
//! FAILED, download, and `POST /v3/resource_matches` against the SHA-1 keyed resource cache.

use std::io::Write;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::blobstore::{CachedResource, PackageLimits, safe_relative_path};
use crate::shared::{Ctx, Knobs};
use crate::state::{DockerImage, Package, PackageState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/packages", get(list).post(create))
        .route("/v3/packages/{guid}", get(get_one).patch(update))
        .route("/v3/packages/{guid}/upload", post(upload))
        .route("/v3/packages/{guid}/download", get(download))
        .route("/v3/apps/{guid}/packages", get(list_for_app))
        .route("/v3/resource_matches", post(resource_matches))
}

/// Downloads are served without authentication, as blobstore URLs are (see [`crate::cc::router`]).
pub fn blob_routes() -> Router<Ctx> {
    Router::new().route("/blobstore/packages/{guid}", get(blob))
}

fn list_body(ctx: &Ctx, q: &ListQuery, packages: Vec<&Package>, path: &str) -> Value {
    let (apps, states, types) = (q.list("app_guids"), q.list("states"), q.list("types"));
    let items = q
        .select(packages.into_iter().filter(|p| {
            matches_any(&apps, &p.app_guid, false)
                && matches_any(&states, p.state.as_str(), false)
                && matches_any(&types, if p.docker.is_some() { "docker" } else { "bits" }, false)
        }))
        .into_iter()
        .map(|p| present::package(&ctx.urls.api, p))
        .collect();
    q.paginate(&ctx.urls.api, path, items)
}

/// `PackagesListMessage` (`app/messages/packages_list_message.rb`).
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["states", "types", "app_guids", "app_guid", "space_guids", "organization_guids", "label_selector"],
    orders: DEFAULT_ORDERS,
    unmodelled: &["app_guid"],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let state = ctx.state();
    let packages = state.packages.values().filter(|p| super::apps::in_scope(&state, &q, &p.app_guid)).collect();
    Ok(Json(list_body(&ctx, &q, packages, "/v3/packages")))
}

async fn list_for_app(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // PackagesListMessage with the path's `app_guid`; `app_nested_request` refuses the filters across apps.
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    q.refuse_present(&["app_guids", "organization_guids", "space_guids"])?;
    let state = ctx.state();
    state.app(&guid)?;
    let packages = state.packages.values().filter(|p| p.app_guid == guid).collect();
    Ok(Json(list_body(&ctx, &q, packages, &format!("/v3/apps/{guid}/packages"))))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::package(&ctx.urls.api, state.package(&guid)?)))
}

async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    // PackageUpdateMessage: metadata, and a docker package's `username` / `password`.
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["metadata", "username", "password"]);
    errors.finish()?;
    body::not_modelled(&map, &["username", "password"])?;
    let mut state = ctx.state();
    let mut package = state.package(&guid)?.clone();
    package.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut package.common);
    let body = present::package(&ctx.urls.api, &package);
    state.packages.insert(guid, package);
    Ok(Json(body))
}

/// Moves a package to `next` after the processing delay, running `work` (blocking) first.
fn finish_later(ctx: &Ctx, guid: String, work: impl FnOnce(&Ctx) -> Result<Option<String>, String> + Send + 'static) {
    let delay = Knobs::ms(&ctx.knobs.package_processing_delay_ms);
    let task_ctx = ctx.clone();
    ctx.runtime.spawn(async move {
        tokio::time::sleep(delay).await;
        let work_ctx = task_ctx.clone();
        let result = tokio::task::spawn_blocking(move || work(&work_ctx)).await.unwrap_or_else(|e| Err(e.to_string()));
        let mut state = task_ctx.state();
        let Some(mut package) = state.packages.get(&guid).cloned() else { return };
        match result {
            Ok(checksum) => {
                package.state = PackageState::Ready;
                package.checksum = checksum.or(package.checksum);
            }
            Err(error) => {
                package.state = PackageState::Failed;
                package.error = Some(error);
            }
        }
        state.touch(&mut package.common);
        state.packages.insert(guid, package);
    });
}

async fn create(
    State(ctx): State<Ctx>,
    RawQuery(raw): RawQuery,
    request: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let q = ListQuery::parse(raw.as_deref(), &["source_guid"], ctx.default_per_page())?;
    let map = body::object(&request)?;
    // PackageCreateMessage (relationships, type, data, metadata) or, for a copy, PackageCopyMessage (relationships).
    let mut errors = body::Errors::default();
    if q.get("source_guid").is_some() {
        errors.unknown_keys(&map, &["relationships"]);
    } else {
        errors.metadata(&map);
        errors.unknown_keys(&map, &["type", "relationships", "data", "metadata"]);
    }
    let app_guid = errors.relationships(&map, &["app"], &["app"]).remove(0);
    errors.finish()?;
    let mut state = ctx.state();
    let app = state.owning_app(&app_guid.unwrap_or_default())?.clone();
    let app_guid = app.common.guid.clone();
    if let Some(source_guid) = q.get("source_guid") {
        let source = state.package(source_guid)?.clone();
        if source.state != PackageState::Ready {
            return Err(ApiError::unprocessable("Source package is not ready to be copied."));
        }
        let common = state.common();
        let guid = common.guid.clone();
        let package = Package {
            common,
            app_guid,
            docker: source.docker.clone(),
            state: PackageState::Copying,
            checksum: source.checksum.clone(),
            error: None,
        };
        let body = present::package(&ctx.urls.api, &package);
        state.packages.insert(guid.clone(), package);
        drop(state);
        let (from, to) = (source.common.guid.clone(), guid.clone());
        let docker = source.docker.is_some();
        finish_later(&ctx, guid, move |ctx| {
            if !docker {
                ctx.blobs.copy_package(&from, &to).map_err(|e| e.to_string())?;
            }
            Ok(None)
        });
        return Ok((StatusCode::CREATED, Json(body)));
    }
    let kind = body::string_field(&map, "type")?
        .ok_or_else(|| ApiError::unprocessable("Type must be one of 'bits, docker'"))?;
    let docker = match kind.as_str() {
        "bits" => None,
        "docker" => {
            if app.lifecycle.type_name() != "docker" {
                return Err(ApiError::unprocessable("Cannot create a docker package for a buildpack app."));
            }
            let data = map.get("data").ok_or_else(|| ApiError::unprocessable("Data Image required"))?;
            let image = data
                .get("image")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::unprocessable("Data Image required"))?;
            Some(DockerImage {
                image: image.to_string(),
                username: data.get("username").and_then(Value::as_str).map(str::to_string),
                password: data.get("password").and_then(Value::as_str).map(str::to_string),
            })
        }
        _ => return Err(ApiError::unprocessable("Type must be one of 'bits, docker'")),
    };
    if docker.is_none() && app.lifecycle.type_name() == "docker" {
        return Err(ApiError::unprocessable("Cannot create a bits package for a docker app."));
    }
    let mut common = state.common();
    common.metadata.apply(map.get("metadata"))?;
    let guid = common.guid.clone();
    let ready = docker.is_some();
    let package = Package {
        common,
        app_guid,
        docker,
        state: if ready { PackageState::Ready } else { PackageState::AwaitingUpload },
        checksum: None,
        error: None,
    };
    let body = present::package(&ctx.urls.api, &package);
    state.packages.insert(guid, package);
    Ok((StatusCode::CREATED, Json(body)))
}

/// The `resources` form field: the files the client expects from the cache.
fn parse_resources(text: &str) -> ApiResult<Vec<CachedResource>> {
    let list: Vec<Value> =
        serde_json::from_str(text).map_err(|e| ApiError::app_bits_upload_invalid(format!("invalid resources: {e}")))?;
    list.iter()
        .map(|r| {
            let sha1 = r["checksum"]["value"].as_str().or(r["sha1"].as_str()).unwrap_or("").to_string();
            let path = r["path"].as_str().or(r["fn"].as_str()).unwrap_or("").to_string();
            let size = r["size_in_bytes"].as_u64().or(r["size"].as_u64()).unwrap_or(0);
            let mode_text = r["mode"].as_str().unwrap_or("744");
            let mode = u32::from_str_radix(mode_text, 8).map_err(|_| {
                ApiError::resource_mode_invalid(format!("File mode '{mode_text}' with path '{path}' is invalid."))
            })?;
            if mode & 0o600 != 0o600 {
                return Err(ApiError::resource_mode_invalid(format!(
                    "File mode '{mode_text}' with path '{path}' is invalid. Minimum file mode is '0600'"
                )));
            }
            if !safe_relative_path(&path) {
                return Err(ApiError::resource_path_invalid(format!("Path '{path}' is not safe")));
            }
            Ok(CachedResource { sha1, size, path, mode })
        })
        .collect()
}

async fn upload(State(ctx): State<Ctx>, Path(guid): Path<String>, mut multipart: Multipart) -> ApiResult<Json<Value>> {
    {
        let state = ctx.state();
        let package = state.package(&guid)?;
        if package.docker.is_some() {
            return Err(ApiError::unprocessable("Package type must be bits."));
        }
        if package.state != PackageState::AwaitingUpload {
            return Err(ApiError::unprocessable("Package has already been uploaded."));
        }
    }
    let max = ctx.config.max_package_size;
    let mut resources: Option<Vec<CachedResource>> = None;
    let mut bits: Option<tempfile::NamedTempFile> = None;
    let invalid = |e: axum::extract::multipart::MultipartError| ApiError::app_bits_upload_invalid(e.body_text());
    while let Some(mut field) = multipart.next_field().await.map_err(invalid)? {
        match field.name() {
            Some("resources") => {
                let text = field.text().await.map_err(invalid)?;
                resources = Some(parse_resources(&text)?);
            }
            Some("bits") => {
                if field.file_name().is_none() {
                    return Err(ApiError::app_bits_upload_invalid("File field missing path information"));
                }
                let mut file = ctx.blobs.upload_file().map_err(|e| ApiError::app_bits_upload_invalid(e.to_string()))?;
                let mut written: u64 = 0;
                while let Some(chunk) = field.chunk().await.map_err(invalid)? {
                    written += chunk.len() as u64;
                    if written > max {
                        return Err(ApiError::app_package_invalid(format!(
                            "Package may not be larger than {max} bytes"
                        )));
                    }
                    file.write_all(&chunk).map_err(|e| ApiError::app_bits_upload_invalid(e.to_string()))?;
                }
                bits = Some(file);
            }
            _ => {}
        }
    }
    if resources.is_none() && bits.is_none() {
        return Err(ApiError::unprocessable("Upload must include either resources or bits"));
    }
    let body = {
        let mut state = ctx.state();
        let mut package = state.package(&guid)?.clone();
        package.state = PackageState::ProcessingUpload;
        state.touch(&mut package.common);
        let body = present::package(&ctx.urls.api, &package);
        state.packages.insert(guid.clone(), package);
        body
    };
    let limits = PackageLimits {
        max_package_size: max,
        min_cached_size: ctx.config.resource_min_size,
        max_cached_size: ctx.config.resource_max_size,
    };
    let cached = resources.unwrap_or_default();
    let out = ctx.blobs.package_zip(&guid);
    finish_later(&ctx, guid, move |ctx| {
        let bits_path = bits.as_ref().map(|f| f.path().to_path_buf());
        let checksum = ctx.blobs.build_package(bits_path.as_deref(), &cached, &out, limits)?;
        drop(bits);
        Ok(Some(checksum))
    });
    Ok(Json(body))
}

async fn download(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    let state = ctx.state();
    let package = state.package(&guid)?;
    if package.docker.is_some() || package.state != PackageState::Ready {
        return Err(ApiError::unprocessable("Package is not ready to be downloaded."));
    }
    let location = format!("{}/blobstore/packages/{guid}", ctx.urls.api);
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}

/// Streams a file from the blobstore.
pub async fn stream_file(path: std::path::PathBuf, content_type: &'static str) -> Response {
    match tokio::fs::File::open(&path).await {
        Ok(file) => {
            let length = file.metadata().await.map(|m| m.len()).unwrap_or(0);
            let stream = tokio_util_stream(file);
            (
                [(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_LENGTH, length.to_string())],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "NoSuchKey").into_response(),
    }
}

/// A file as a stream of chunks, without buffering it whole.
fn tokio_util_stream(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 64 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

async fn blob(State(ctx): State<Ctx>, Path(guid): Path<String>) -> Response {
    stream_file(ctx.blobs.package_zip(&guid), "application/zip").await
}

async fn resource_matches(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["resources"])?;
    let list = map
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::unprocessable("Resources must be an array"))?;
    if list.is_empty() || list.len() > 5000 {
        return Err(ApiError::unprocessable("Resources array must have at least 1 resource and at most 5000"));
    }
    let window = ctx.config.resource_min_size..=ctx.config.resource_max_size;
    let mut matched = Vec::new();
    for resource in list {
        let sha1 = resource["checksum"]["value"].as_str();
        let size = resource["size_in_bytes"].as_u64();
        let (Some(sha1), Some(size)) = (sha1, size) else {
            return Err(ApiError::unprocessable("Each resource must have a checksum value and a size_in_bytes"));
        };
        if window.contains(&size) && ctx.blobs.is_cached(sha1) {
            matched.push(resource.clone());
        }
    }
    Ok((StatusCode::CREATED, Json(json!({"resources": matched}))))
}
