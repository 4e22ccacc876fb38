//! Apps: create (with their web process), list with the CLI's filters, get, update (rename, lifecycle, metadata),
//! start / stop / restart (which drive the runtime), environment variables, the current droplet relationship, and
//! delete as an async job. Requests are validated as cloud_controller_ng's app messages, apps_controller.rb and
//! app_create.rb / app_update.rb do; answers take the shape of `--cc-api-version` (see CONFORMANCE.md).

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::jobs;
use super::list::{ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::clock::new_guid;
use crate::shared::Ctx;
use crate::state::{App, AppState, DropletState, Lifecycle, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/apps", get(list).post(create))
        .route("/v3/apps/{guid}", get(get_one).patch(update).delete(delete_app))
        .route("/v3/apps/{guid}/actions/start", post(start))
        .route("/v3/apps/{guid}/actions/stop", post(stop))
        .route("/v3/apps/{guid}/actions/restart", post(restart))
        .route("/v3/apps/{guid}/environment_variables", get(get_env_vars).patch(patch_env_vars))
        .route("/v3/apps/{guid}/env", get(get_env))
        .route("/v3/apps/{guid}/relationships/current_droplet", get(get_current_droplet).patch(set_current_droplet))
}

pub const DEFAULT_STACK: &str = "cflinuxfs4";

/// The `include` values of AppsListMessage and AppShowMessage (IncludeParamValidator).
const APP_INCLUDES: &[&str] = &["space", "space.organization"];

/// AppCreateMessage / AppUpdateMessage: `length: { maximum: 255 }`.
pub(crate) const MAX_APP_NAME: usize = 255;

/// Parses a request's `lifecycle` (`current` is the app's lifecycle when updating) as LifecycleValidator,
/// BuildpackLifecycleDataMessage and EmptyLifecycleDataMessage (app/messages/) and
/// buildpack_lifecycle_data_validator.rb do; a type change is app_update.rb's error.
pub fn parse_lifecycle(value: Option<&Value>, current: Option<&Lifecycle>) -> ApiResult<Option<Lifecycle>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(None) };
    let kind = value.get("type").and_then(Value::as_str).or(current.map(Lifecycle::type_name)).unwrap_or("buildpack");
    if kind == "cnb" {
        return Err(ApiError::unprocessable("cf-sim does not model the cnb lifecycle (Cloud Controller accepts it)"));
    }
    if !["buildpack", "docker"].contains(&kind) {
        return Err(ApiError::unprocessable("Lifecycle type is not included in the list: buildpack, docker, cnb"));
    }
    let data = value
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::unprocessable("Lifecycle data must be an object"))?;
    let mut errors = body::Errors::default();
    let allowed: &[&str] = if kind == "buildpack" { &["buildpacks", "stack", "credentials"] } else { &[] };
    if let Err(e) = body::only_keys(data, allowed) {
        errors.add(format!("Lifecycle {}", e.detail));
    }
    if let Some(current) = current
        && current.type_name() != kind
    {
        errors.finish()?;
        return Err(ApiError::unprocessable(format!(
            "Lifecycle type cannot be changed from {} to {kind}",
            current.type_name()
        )));
    }
    if kind == "docker" {
        errors.finish()?;
        return Ok(Some(Lifecycle::Docker));
    }
    let (old_buildpacks, old_stack) = match current {
        Some(Lifecycle::Buildpack { buildpacks, stack }) => (buildpacks.clone(), stack.clone()),
        _ => (Vec::new(), DEFAULT_STACK.to_string()),
    };
    let buildpacks = match data.get("buildpacks") {
        None => old_buildpacks,
        Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            if list.iter().any(|b| !b.is_string()) {
                errors.add("Lifecycle Buildpacks can only contain strings");
            }
            if list.iter().filter_map(Value::as_str).any(|b| b.trim().is_empty() || b.chars().count() > 4096) {
                errors.add("Lifecycle Buildpacks entries must be between 1 and 4096 characters");
            }
            list.iter().filter_map(Value::as_str).map(str::to_string).collect()
        }
        Some(_) => {
            errors.add("Lifecycle Buildpacks must be an array");
            Vec::new()
        }
    };
    if data.get("credentials").is_some_and(|c| !c.is_null()) {
        errors.add("cf-sim does not model buildpack credentials (Cloud Controller accepts them)");
    }
    let stack = match data.get("stack") {
        None | Some(Value::Null) => Some(old_stack),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.add("Lifecycle Stack must be a string");
            None
        }
    };
    errors.finish()?;
    let stack = stack.unwrap_or_default();
    if stack != DEFAULT_STACK && stack != "cflinuxfs3" {
        return Err(ApiError::unprocessable("Stack must be an existing stack"));
    }
    Ok(Some(Lifecycle::Buildpack { buildpacks, stack }))
}

/// Which CC message reads a set of environment variables; each words and converts them its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvMessage {
    /// `POST /v3/apps` `environment_variables`: AppCreateMessage checks the shape, the app model
    /// (`validate_environment_variables`) the names, as a Sequel error; values of any type are kept.
    Create,
    /// `PATCH /v3/apps/:guid/environment_variables` `var`: UpdateEnvironmentVariablesMessage
    /// (EnvironmentVariablesStringValuesValidator): values are strings, or null to remove.
    Patch,
    /// A manifest's `env`: AppManifestMessage turns every value into a string (`to_s`, so null is "").
    Manifest,
}

/// Validates environment variable changes (`None` removes) as CC does (app/messages/validators.rb).
pub(crate) fn env_changes(value: Option<&Value>, message: EnvMessage) -> ApiResult<Vec<(String, Option<Value>)>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let (label, not_object) = match message {
        EnvMessage::Create => ("environment_variables", "Environment variables must be an object"),
        EnvMessage::Patch => ("Var", "Var must be an object"),
        EnvMessage::Manifest => ("Env", "Env must be an object of keys and values"),
    };
    let map = value.as_object().ok_or_else(|| ApiError::unprocessable(not_object))?;
    let mut errors = body::Errors::default();
    let mut changes = Vec::new();
    for (key, value) in map {
        let upper = key.to_ascii_uppercase();
        let rule = if key.is_empty() {
            Some("key must be a minimum length of 1")
        } else if upper.starts_with("VCAP_") {
            Some("cannot start with VCAP_")
        } else if upper.starts_with("VMC") {
            Some("cannot start with VMC_")
        } else if upper == "PORT" {
            Some("cannot set PORT")
        } else {
            None
        };
        if let Some(rule) = rule {
            errors.add(format!("{label} {rule}"));
            continue;
        }
        let value = match (message, value) {
            (EnvMessage::Patch, Value::Null) => None,
            (EnvMessage::Patch, Value::String(_)) | (EnvMessage::Create, _) => Some(value.clone()),
            (EnvMessage::Patch, other) => {
                errors.add(format!("Non-string value in environment variable for key '{key}', value '{other}'"));
                continue;
            }
            (EnvMessage::Manifest, Value::Null) => Some(Value::String(String::new())),
            (EnvMessage::Manifest, Value::String(_)) => Some(value.clone()),
            (EnvMessage::Manifest, other) => Some(Value::String(other.to_string())),
        };
        changes.push((key.clone(), value));
    }
    errors.finish()?;
    Ok(changes)
}

fn apply_env(app: &mut App, changes: Vec<(String, Option<Value>)>) {
    for (key, value) in changes {
        match value {
            Some(value) => app.env.insert(key, value),
            None => app.env.remove(&key),
        };
    }
}

/// The `space_guids` and `organization_guids` filters of a list, applied to the app a resource belongs to.
pub(crate) fn in_scope(state: &CcState, q: &ListQuery, app_guid: &str) -> bool {
    let (spaces, orgs) = (q.list("space_guids"), q.list("organization_guids"));
    let space = state.apps.get(app_guid).and_then(|a| state.spaces.get(&a.space_guid));
    let matches = |filter: &Option<Vec<String>>, guid: Option<&String>| {
        filter.as_ref().is_none_or(|f| guid.is_some_and(|g| f.contains(g)))
    };
    matches(&spaces, space.map(|s| &s.common.guid)) && matches(&orgs, space.map(|s| &s.org_guid))
}

fn include_spaces(ctx: &Ctx, state: &CcState, body: &mut Value, apps: &[&App], includes: &[String]) {
    if !includes.iter().any(|i| i == "space" || i == "space.organization") {
        return;
    }
    let mut guids: Vec<&String> = apps.iter().map(|a| &a.space_guid).collect();
    guids.sort();
    guids.dedup();
    let spaces: Vec<&crate::state::Space> = guids.into_iter().filter_map(|g| state.spaces.get(g)).collect();
    body["included"] = json!({"spaces": spaces.iter().map(|s| present::space(&ctx.urls.api, s)).collect::<Vec<_>>()});
    if includes.iter().any(|i| i == "space.organization") {
        let mut orgs: Vec<&String> = spaces.iter().map(|s| &s.org_guid).collect();
        orgs.sort();
        orgs.dedup();
        let orgs: Vec<Value> =
            orgs.into_iter().filter_map(|g| state.orgs.get(g)).map(|o| present::org(&ctx.urls.api, o)).collect();
        body["included"]["organizations"] = json!(orgs);
    }
}

/// `AppsListMessage` (`app/messages/apps_list_message.rb`).
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys![
        "names",
        "organization_guids",
        "space_guids",
        "stacks",
        "include",
        "lifecycle_type",
        "label_selector"
    ],
    orders: &["created_at", "updated_at", "name", "state"],
    unmodelled: &[],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let (names, stacks, types) = (q.list("names"), q.list("stacks"), q.list("lifecycle_type"));
    let state = ctx.state();
    let selected = q.select(state.apps.values().filter(|a| {
        let stack = match &a.lifecycle {
            Lifecycle::Buildpack { stack, .. } => Some(stack.as_str()),
            Lifecycle::Docker => None,
        };
        matches_any(&names, &a.name, true)
            && matches_any(&types, a.lifecycle.type_name(), false)
            && stacks.as_ref().is_none_or(|s| stack.is_some_and(|stack| s.iter().any(|x| x == stack)))
            && in_scope(&state, &q, &a.common.guid)
    }));
    let page: Vec<&App> = selected.iter().skip((q.page - 1) * q.per_page).take(q.per_page).copied().collect();
    let items = selected.iter().map(|a| render(&ctx, a)).collect();
    let mut body = q.paginate(&ctx.urls.api, "/v3/apps", items);
    include_spaces(&ctx, &state, &mut body, &page, &q.includes_of(APP_INCLUDES)?);
    Ok(Json(body))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse(raw.as_deref(), &["include"], ctx.default_per_page())?;
    let state = ctx.state();
    let app = state.app(&guid)?;
    let mut body = render(&ctx, app);
    include_spaces(&ctx, &state, &mut body, &[app], &q.includes_of(APP_INCLUDES)?);
    Ok(Json(body))
}

/// `name` of AppCreateMessage / AppUpdateMessage: a string (required on create) of at most 255 characters.
fn app_name(map: &Map<String, Value>, required: bool) -> ApiResult<Option<String>> {
    match map.get("name") {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(name)) if name.chars().count() > MAX_APP_NAME => {
            Err(ApiError::unprocessable(format!("Name is too long (maximum is {MAX_APP_NAME} characters)")))
        }
        Some(Value::String(name)) => Ok(Some(name.clone())),
        _ => Err(ApiError::unprocessable("Name must be a string")),
    }
}

/// `AppModel` strips the name and validates its presence and `APP_NAME_REGEX` (printable characters); Sequel
/// words the errors "name is not present" and "name is invalid".
fn stored_name(name: &str) -> ApiResult<String> {
    let name = name.trim();
    if name.is_empty() {
        Err(ApiError::unprocessable("name is not present"))
    } else if name.chars().any(char::is_control) {
        Err(ApiError::unprocessable("name is invalid"))
    } else {
        Ok(name.to_string())
    }
}

/// The app as the configured CC version renders it.
pub(crate) fn render(ctx: &Ctx, app: &App) -> Value {
    present::app_at(&ctx.urls.api, ctx.config.cc_api_version, app)
}

/// `POST /v3/apps`: app_create_message.rb, apps_controller.rb#create, app_create.rb (a taken name is the v3
/// CF-UniquenessError).
async fn create(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["name", "environment_variables", "relationships", "lifecycle", "metadata"]);
    let space_guid = errors.relationships(&map, &["space"], &["space"]).remove(0);
    let lifecycle = errors.check(parse_lifecycle(map.get("lifecycle"), None));
    let name = errors.check(app_name(&map, true));
    let env = errors.check(env_changes(map.get("environment_variables"), EnvMessage::Create));
    errors.finish()?;
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let mut state = ctx.state();
    let space_guid = space_guid.filter(|g| state.spaces.contains_key(g)).ok_or_else(|| {
        ApiError::unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
    })?;
    let name = stored_name(&name.flatten().unwrap_or_default())?;
    let lifecycle =
        lifecycle.flatten().unwrap_or(Lifecycle::Buildpack { buildpacks: Vec::new(), stack: DEFAULT_STACK.into() });
    let guid = state.create_app(&name, &space_guid, lifecycle)?;
    let app = state.apps.get_mut(&guid).expect("just created");
    apply_env(app, env.unwrap_or_default());
    app.common.metadata = metadata;
    Ok((StatusCode::CREATED, Json(render(&ctx, app))))
}

/// `PATCH /v3/apps/:guid`: app_update_message.rb, app_update.rb; a name taken in the space is the model's
/// validation error, which AppUpdate answers as CF-UnprocessableEntity (not CF-UniquenessError, which only
/// app_create.rb raises).
async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["name", "lifecycle", "metadata"]);
    let name = errors.check(app_name(&map, false)).flatten();
    errors.finish()?;
    let mut state = ctx.state();
    let mut app = state.app(&guid)?.clone();
    if let Some(lifecycle) = parse_lifecycle(map.get("lifecycle"), Some(&app.lifecycle))? {
        app.lifecycle = lifecycle;
    }
    if let Some(name) = name {
        let name = stored_name(&name)?;
        if state.app_name_taken(&app.space_guid, &name, Some(&guid)) {
            return Err(ApiError::unprocessable(format!("App with the name '{name}' already exists.")));
        }
        app.name = name;
    }
    app.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut app.common);
    let body = render(&ctx, &app);
    state.apps.insert(guid, app);
    Ok(Json(body))
}

async fn delete_app(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    ctx.state().app(&guid)?;
    let app_guid = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "app.delete",
        Some(("app".into(), format!("/v3/apps/{guid}"))),
        Box::new(move |ctx| {
            delete_app_now(ctx, &app_guid);
            Ok(Vec::new())
        }),
    ))
}

/// Deletes an app and what belongs to it (processes, packages, builds, droplets, bindings, route mappings); routes
/// themselves stay, as in CF.
pub fn delete_app_now(ctx: &Ctx, app_guid: &str) {
    let (droplets, packages) = {
        let mut state = ctx.state();
        state.apps.remove(app_guid);
        state.processes.retain(|_, p| p.app_guid != app_guid);
        state.builds.retain(|_, b| b.app_guid != app_guid);
        state.bindings.retain(|_, b| b.app_guid != app_guid);
        super::routes::unmap_app(&mut state, app_guid);
        state.fail_next_staging.remove(app_guid);
        let droplets: Vec<String> =
            state.droplets.values().filter(|d| d.app_guid == app_guid).map(|d| d.common.guid.clone()).collect();
        let packages: Vec<String> =
            state.packages.values().filter(|p| p.app_guid == app_guid).map(|p| p.common.guid.clone()).collect();
        state.droplets.retain(|_, d| d.app_guid != app_guid);
        state.packages.retain(|_, p| p.app_guid != app_guid);
        (droplets, packages)
    };
    ctx.diego.converge(ctx, app_guid);
    for droplet in droplets {
        ctx.blobs.remove_droplet(&droplet);
    }
    for package in packages {
        ctx.blobs.remove_package(&package);
    }
}

/// Sets the desired state; a stopped → started transition (or a restart) gives every process a new version, so
/// the runtime recreates its instances.
pub fn set_app_state(ctx: &Ctx, guid: &str, desired: AppState, restart: bool) -> ApiResult<Value> {
    let body = {
        let mut state = ctx.state();
        let mut app = state.app(guid)?.clone();
        if desired == AppState::Started {
            let staged = app
                .droplet_guid
                .as_ref()
                .and_then(|d| state.droplets.get(d))
                .is_some_and(|d| d.state == DropletState::Staged);
            if !staged {
                return Err(ApiError::unprocessable("Assign a droplet before starting this app."));
            }
            super::quotas::check_app_start(&state, guid)?;
        }
        let new_version = desired == AppState::Started && (restart || app.state == AppState::Stopped);
        if new_version {
            let process_guids: Vec<String> = state.app_processes(guid).map(|p| p.common.guid.clone()).collect();
            for process_guid in process_guids {
                if let Some(process) = state.processes.get_mut(&process_guid) {
                    process.version = new_guid();
                }
            }
        }
        app.state = desired;
        state.touch(&mut app.common);
        let body = render(ctx, &app);
        state.apps.insert(guid.to_string(), app);
        body
    };
    ctx.diego.converge(ctx, guid);
    Ok(body)
}

async fn start(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(set_app_state(&ctx, &guid, AppState::Started, false)?))
}

async fn stop(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(set_app_state(&ctx, &guid, AppState::Stopped, false)?))
}

async fn restart(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(set_app_state(&ctx, &guid, AppState::Started, true)?))
}

fn env_vars_body(ctx: &Ctx, app: &App) -> Value {
    let g = &app.common.guid;
    json!({
        "var": app.env,
        "links": {
            "self": {"href": format!("{}/v3/apps/{g}/environment_variables", ctx.urls.api)},
            "app": {"href": format!("{}/v3/apps/{g}", ctx.urls.api)},
        },
    })
}

async fn get_env_vars(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(env_vars_body(&ctx, state.app(&guid)?)))
}

async fn patch_env_vars(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map: Map<String, Value> = body::object(&raw)?;
    body::only_keys(&map, &["var"])?;
    if map.get("var").is_none_or(Value::is_null) {
        return Err(ApiError::unprocessable("Var must be an object"));
    }
    let changes = env_changes(map.get("var"), EnvMessage::Patch)?;
    let mut state = ctx.state();
    let mut app = state.app(&guid)?.clone();
    apply_env(&mut app, changes);
    state.touch(&mut app.common);
    let body = env_vars_body(&ctx, &app);
    state.apps.insert(guid, app);
    Ok(Json(body))
}

async fn get_env(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let app = state.app(&guid)?;
    Ok(Json(json!({
        "staging_env_json": {},
        "running_env_json": {},
        "environment_variables": app.env,
        "system_env_json": {"VCAP_SERVICES": crate::diego::vcap_services(&state, &guid)},
        "application_env_json": {
            "VCAP_APPLICATION": crate::diego::vcap_application(&state, app, &ctx.urls.api, json!({})),
        },
    })))
}

fn droplet_relationship(ctx: &Ctx, app: &App) -> Value {
    let g = &app.common.guid;
    json!({
        "data": app.droplet_guid.as_ref().map(|d| json!({"guid": d})),
        "links": {
            "self": {"href": format!("{}/v3/apps/{g}/relationships/current_droplet", ctx.urls.api)},
            "related": {"href": format!("{}/v3/apps/{g}/droplets/current", ctx.urls.api)},
        },
    })
}

/// `GET /v3/apps/:guid/relationships/current_droplet`: 404 "Droplet not found" when the app has none
/// (apps_controller.rb#current_droplet_relationship).
async fn get_current_droplet(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let app = state.app(&guid)?;
    if app.droplet_guid.as_ref().is_none_or(|d| !state.droplets.contains_key(d)) {
        return Err(ApiError::not_found("Droplet"));
    }
    Ok(Json(droplet_relationship(&ctx, app)))
}

/// Makes a droplet the app's current one and creates the processes its `process_types` name.
pub fn assign_droplet(state: &mut CcState, app_guid: &str, droplet_guid: &str) -> ApiResult<()> {
    let droplet = state
        .droplets
        .get(droplet_guid)
        .filter(|d| d.app_guid == app_guid && d.state == DropletState::Staged)
        .ok_or_else(|| {
            ApiError::unprocessable(
                "Unable to assign current droplet. Ensure the droplet exists and belongs to this app.",
            )
        })?;
    let types: Vec<String> = droplet.process_types.keys().cloned().collect();
    for kind in types {
        state.ensure_process(app_guid, &kind);
    }
    let mut app = state.app(app_guid)?.clone();
    app.droplet_guid = Some(droplet_guid.to_string());
    state.touch(&mut app.common);
    state.apps.insert(app_guid.to_string(), app);
    Ok(())
}

async fn set_current_droplet(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["data"])?;
    let droplet = match map.get("data") {
        Some(Value::Null) => {
            return Err(ApiError::unprocessable(
                "Current droplet cannot be removed. Replace it with a preferable droplet.",
            ));
        }
        Some(data) => data.get("guid").and_then(Value::as_str).map(str::to_string),
        None => None,
    }
    .ok_or_else(|| ApiError::unprocessable("Data must have a guid"))?;
    let mut state = ctx.state();
    state.app(&guid)?;
    assign_droplet(&mut state, &guid, &droplet)?;
    Ok(Json(droplet_relationship(&ctx, state.app(&guid)?)))
}
