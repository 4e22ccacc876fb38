//! Tasks: `POST /v3/apps/:guid/tasks`, `GET /v3/apps/:guid/tasks`, `GET /v3/tasks/:guid` and
//! `POST /v3/tasks/:guid/actions/cancel`, as `app/controllers/v3/tasks_controller.rb` answers them, with
//! `TaskCreateMessage` (`app/messages/task_create_message.rb`), `TaskCreate` (`app/actions/task_create.rb`),
//! `TaskModel`'s validations (`app/models/runtime/task_model.rb`), `TaskCancel` (`app/actions/task_cancel.rb`) and
//! `TaskPresenter` (`app/presenters/v3/task_presenter.rb`). The task itself runs in [`crate::diego`].

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListQuery, list_keys, matches_any};
use crate::config::CcApiVersion;
use crate::shared::Ctx;
use crate::state::{Task, TaskState};

/// `default_app_memory` of `config/cloud_controller.yml`: a task's memory when the request names none.
pub(crate) const DEFAULT_APP_MEMORY_MB: u64 = 1024;
/// `default_app_disk_in_mb`: a task's disk when the request names none.
pub(crate) const DEFAULT_APP_DISK_MB: u64 = 1024;
/// `maximum_app_disk_in_mb`: the most disk a task may ask for.
const MAXIMUM_APP_DISK_MB: u64 = 2048;
/// `TaskModel::COMMAND_MAX_LENGTH`.
const COMMAND_MAX_LENGTH: usize = 4096;
/// The first CC API version whose tasks have `log_rate_limit_in_bytes_per_second` (commit 6f115cdf6c).
const TASK_LOG_RATE_SINCE: CcApiVersion = CcApiVersion(3, 126, 0);
/// The first CC API version whose tasks have a `user` (commit cc006c0c74, "Add ability to set user on Tasks").
const TASK_USER_SINCE: CcApiVersion = CcApiVersion(3, 198, 0);

/// `TasksListMessage.allowed_keys`: ListMessage's, its own, then MetadataListMessage's `label_selector`.
const LIST_KEYS: &[&str] = list_keys![
    "names",
    "states",
    "app_guids",
    "organization_guids",
    "space_guids",
    "app_guid",
    "sequence_ids",
    "label_selector"
];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/apps/{guid}/tasks", get(list_for_app).post(create))
        .route("/v3/tasks/{guid}", get(get_one))
        .route("/v3/tasks/{guid}/actions/cancel", post(cancel))
}

/// The task as `TaskPresenter` renders it (with secrets: the command is shown to a space developer).
fn present(ctx: &Ctx, state: &crate::state::State, task: &Task) -> Value {
    let (base, version) = (&ctx.urls.api, ctx.config.cc_api_version);
    let g = &task.common.guid;
    let mut body = json!({
        "guid": g,
        "created_at": task.common.created_at,
        "updated_at": task.common.updated_at,
        "sequence_id": task.sequence_id,
        "name": task.name,
        "command": task.command,
        // `presented_user`: the droplet's `run_action_user`, which with no user set in the sim is the container's
        // default, `vcap` (for a docker droplet too: the sim's images name no user); once the droplet is deleted,
        // the task's own user, null.
        "user": state.droplets.contains_key(&task.droplet_guid).then_some("vcap"),
        "state": task.state.as_str(),
        "memory_in_mb": task.memory_in_mb,
        "disk_in_mb": task.disk_in_mb,
        "log_rate_limit_in_bytes_per_second": task.log_rate_limit,
        "result": {"failure_reason": task.failure_reason},
        "droplet_guid": task.droplet_guid,
        "relationships": {"app": {"data": {"guid": task.app_guid}}},
        "metadata": task.common.metadata.to_json(),
        "links": {
            "self": {"href": format!("{base}/v3/tasks/{g}")},
            "app": {"href": format!("{base}/v3/apps/{}", task.app_guid)},
            "cancel": {"href": format!("{base}/v3/tasks/{g}/actions/cancel"), "method": "POST"},
            "droplet": {"href": format!("{base}/v3/droplets/{}", task.droplet_guid)},
        },
    });
    let fields = body.as_object_mut().expect("a task is an object");
    if !version.at_least(TASK_LOG_RATE_SINCE) {
        fields.remove("log_rate_limit_in_bytes_per_second");
    }
    if !version.at_least(TASK_USER_SINCE) {
        fields.remove("user");
    }
    body
}

/// A task whose app still exists (`TaskFetcher` finds a task through its app's space; CC deletes an app's tasks
/// with it).
fn find<'a>(state: &'a crate::state::State, guid: &str) -> ApiResult<&'a Task> {
    state.tasks.get(guid).filter(|t| state.apps.contains_key(&t.app_guid)).ok_or_else(|| ApiError::not_found("Task"))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let task = find(&state, &guid)?;
    Ok(Json(present(&ctx, &state, task)))
}

async fn list_for_app(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // TasksListMessage (a 400, `invalid_param!`); under an app its `app_guid` is the path's.
    let q = ListQuery::parse_message(raw.as_deref(), LIST_KEYS, DEFAULT_ORDERS, ctx.default_per_page())?;
    // `app_nested_request`: filters that only make sense across apps.
    q.refuse_present(&["space_guids", "organization_guids", "app_guids"])?;
    let state = ctx.state();
    state.app(&guid)?;
    let (names, states, sequences) = (q.list("names"), q.list("states"), q.list("sequence_ids"));
    let tasks = state.tasks.values().filter(|t| {
        t.app_guid == guid
            && matches_any(&names, &t.name, false)
            && matches_any(&states, t.state.as_str(), false)
            && matches_any(&sequences, &t.sequence_id.to_string(), false)
    });
    let items = q.select(tasks).into_iter().map(|t| present(&ctx, &state, t)).collect();
    Ok(Json(q.paginate(&ctx.urls.api, &format!("/v3/apps/{guid}/tasks"), items)))
}

/// `TaskCreateMessage`'s validations, in its order: keys, disk, memory, log rate limit, droplet guid, command.
fn validate_message(ctx: &Ctx, map: &Map<String, Value>) -> ApiResult<()> {
    let mut errors = body::Errors::default();
    errors.metadata(map);
    let mut allowed = vec!["name", "command", "disk_in_mb", "memory_in_mb", "droplet_guid", "template", "metadata"];
    if ctx.config.cc_api_version.at_least(TASK_LOG_RATE_SINCE) {
        allowed.push("log_rate_limit_in_bytes_per_second");
    }
    if ctx.config.cc_api_version.at_least(TASK_USER_SINCE) {
        allowed.push("user");
    }
    errors.unknown_keys(map, &allowed);
    errors.positive_integer(map, "disk_in_mb");
    errors.positive_integer(map, "memory_in_mb");
    if ctx.config.cc_api_version.at_least(TASK_LOG_RATE_SINCE) {
        errors.integer_greater_than(map, "log_rate_limit_in_bytes_per_second", -2);
    }
    match map.get("droplet_guid") {
        None | Some(Value::Null) => {}
        Some(Value::String(guid)) if (1..=200).contains(&guid.chars().count()) => {}
        Some(Value::String(_)) => errors.add("Droplet guid must be between 1 and 200 characters"),
        Some(_) => {
            errors.add("Droplet guid must be a string");
            errors.add("Droplet guid must be between 1 and 200 characters");
        }
    }
    if map.get("command").is_none_or(Value::is_null) && map.get("template").is_none_or(Value::is_null) {
        errors.add("Command No command or template provided");
    }
    errors.finish()?;
    body::not_modelled(map, &["template", "user"])?;
    if map.get("log_rate_limit_in_bytes_per_second").is_some_and(|v| !v.is_null() && v.as_i64() != Some(-1)) {
        return Err(ApiError::unprocessable(
            "cf-sim does not model a task log rate limit other than -1 (Cloud Controller accepts one)",
        ));
    }
    for key in ["name", "command"] {
        if map.get(key).is_some_and(|v| !v.is_null() && !v.is_string()) {
            return Err(ApiError::unprocessable(format!("cf-sim models a string {key} only")));
        }
    }
    Ok(())
}

/// `TaskModel#validate` of a new task: name format and presence (a null name fails both), command presence and
/// length (the quota checks follow in [`create`]).
fn model_errors(name: Option<&str>, command: &str) -> Vec<String> {
    let mut errors = Vec::new();
    // TASK_NAME_REGEX: one or more printable characters.
    if name.is_none_or(|name| name.is_empty() || name.chars().any(char::is_control)) {
        errors.push("name is invalid".to_string());
    }
    if command.trim().is_empty() {
        errors.push("command is not present".to_string());
    }
    if command.chars().count() > COMMAND_MAX_LENGTH {
        errors.push(format!("command must be shorter than {} characters", COMMAND_MAX_LENGTH + 1));
    }
    if name.is_none_or(|name| name.trim().is_empty()) {
        errors.push("name is not present".to_string());
    }
    errors
}

async fn create(
    State(ctx): State<Ctx>,
    Path(app_guid): Path<String>,
    raw: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    validate_message(&ctx, &map)?;
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_string);
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let guid = {
        let mut state = ctx.state();
        // TaskCreateFetcher asks the app for the droplet before it checks that there is an app: with a droplet
        // guid, a missing app is a NoMethodError on nil (500).
        let app = match state.app(&app_guid) {
            Ok(app) => app.clone(),
            Err(_) if text("droplet_guid").is_some() => return Err(ApiError::unhandled()),
            Err(e) => return Err(e),
        };
        // It looks the droplet up among the app's own; a requested one (null included) must be found.
        let droplet = match map.get("droplet_guid") {
            Some(requested) => Some(
                requested
                    .as_str()
                    .and_then(|guid| state.droplets.get(guid))
                    .filter(|d| d.app_guid == app_guid)
                    .ok_or_else(|| ApiError::not_found("Droplet"))?
                    .common
                    .guid
                    .clone(),
            ),
            None => app.droplet_guid.clone(),
        };
        let droplet = droplet.ok_or_else(|| {
            ApiError::unprocessable("Task must have a droplet. Specify droplet or assign current droplet to app.")
        })?;
        let disk = map.get("disk_in_mb").and_then(Value::as_u64);
        if disk.is_some_and(|d| d > MAXIMUM_APP_DISK_MB) {
            return Err(ApiError::unprocessable(format!(
                "Cannot request disk_in_mb greater than {MAXIMUM_APP_DISK_MB}"
            )));
        }
        // use_requested_name_or_generate_name: the requested name (null too), else 4 random bytes in hex.
        let name = match map.contains_key("name") {
            true => text("name"),
            false => Some(crate::clock::new_guid().replace('-', "")[..8].to_string()),
        };
        let command = text("command").unwrap_or_default();
        let memory = map.get("memory_in_mb").and_then(Value::as_u64).unwrap_or(DEFAULT_APP_MEMORY_MB);
        let errors = model_errors(name.as_deref(), &command);
        let Some(name) = name.filter(|_| errors.is_empty()) else {
            return Err(ApiError::unprocessable(errors.join(", ")));
        };
        super::quotas::check_task_memory(&state, &app.space_guid, memory)?;
        let sequence_id = state.tasks.values().filter(|t| t.app_guid == app_guid).map(|t| t.sequence_id).max();
        let mut common = state.common();
        common.metadata = metadata;
        let guid = common.guid.clone();
        // Created PENDING and marked RUNNING as soon as Diego has it, before CC answers (`submit_task`).
        let task = Task {
            common,
            app_guid: app_guid.clone(),
            droplet_guid: droplet,
            name,
            command,
            state: TaskState::Running,
            memory_in_mb: memory,
            disk_in_mb: disk.unwrap_or(DEFAULT_APP_DISK_MB),
            log_rate_limit: -1,
            sequence_id: sequence_id.map_or(1, |s| s + 1),
            failure_reason: None,
        };
        state.tasks.insert(guid.clone(), task);
        guid
    };
    crate::diego::run_task(&ctx, &guid);
    let state = ctx.state();
    let task = state.tasks.get(&guid).ok_or_else(|| ApiError::not_found("Task"))?;
    Ok((StatusCode::ACCEPTED, Json(present(&ctx, &state, task))))
}

async fn cancel(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut state = ctx.state();
    let mut task = find(&state, &guid)?.clone();
    if task.state.is_terminal() {
        return Err(ApiError::unprocessable(format!(
            "Task state is {} and therefore cannot be canceled",
            task.state.as_str()
        )));
    }
    task.state = TaskState::Canceling;
    state.touch(&mut task.common);
    let body = present(&ctx, &state, &task);
    state.tasks.insert(guid, task);
    Ok((StatusCode::ACCEPTED, Json(body)))
}
