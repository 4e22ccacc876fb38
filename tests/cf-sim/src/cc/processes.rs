//! Processes: list, get, update (command, health and readiness checks), scale (instances take effect at once) and
//! stats per instance with the runtime's STARTING / RUNNING / CRASHED / DOWN, `routable` and ports.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::clock::now_iso_nanos;
use crate::config::CcApiVersion;
use crate::shared::Ctx;
use crate::state::{HealthCheck, Process, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/processes", get(list))
        .route("/v3/processes/{guid}", get(get_one).patch(update))
        .route("/v3/processes/{guid}/actions/scale", post(scale))
        .route("/v3/processes/{guid}/stats", get(stats))
        .route("/v3/processes/{guid}/process_instances", get(process_instances))
        .route("/v3/apps/{guid}/processes", get(list_for_app))
        .route("/v3/apps/{guid}/processes/{kind}", get(get_for_app).patch(update_for_app))
        .route("/v3/apps/{guid}/processes/{kind}/actions/scale", post(scale_for_app))
        .route("/v3/apps/{guid}/processes/{kind}/stats", get(stats_for_app))
}

fn process_of_app(state: &CcState, app_guid: &str, kind: &str) -> ApiResult<String> {
    state.app(app_guid)?;
    state.app_process(app_guid, kind).map(|p| p.common.guid.clone()).ok_or_else(|| ApiError::not_found("Process"))
}

fn list_body(ctx: &Ctx, state: &CcState, q: &ListQuery, processes: Vec<&Process>, path: &str) -> Value {
    let (types, apps) = (q.list("types"), q.list("app_guids"));
    let items = q
        .select(
            processes
                .into_iter()
                .filter(|p| matches_any(&types, &p.kind, false) && matches_any(&apps, &p.app_guid, false)),
        )
        .into_iter()
        .map(|p| present::process(&ctx.urls.api, ctx.config.cc_api_version, state, p, true))
        .collect();
    q.paginate(&ctx.urls.api, path, items)
}

/// `ProcessesListMessage` (`app/messages/processes_list_message.rb`).
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["app_guid", "types", "space_guids", "organization_guids", "app_guids", "embed", "label_selector"],
    orders: DEFAULT_ORDERS,
    unmodelled: &["app_guid", "embed"],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let state = ctx.state();
    let processes = state.processes.values().filter(|p| super::apps::in_scope(&state, &q, &p.app_guid)).collect();
    Ok(Json(list_body(&ctx, &state, &q, processes, "/v3/processes")))
}

async fn list_for_app(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // ProcessesListMessage with the path's `app_guid`; `app_nested_request` refuses the filters across apps.
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    q.refuse_present(&["app_guids", "organization_guids", "space_guids"])?;
    let state = ctx.state();
    state.app(&guid)?;
    Ok(Json(list_body(&ctx, &state, &q, state.app_processes(&guid).collect(), &format!("/v3/apps/{guid}/processes"))))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::process(&ctx.urls.api, ctx.config.cc_api_version, &state, state.process(&guid)?, false)))
}

async fn get_for_app(State(ctx): State<Ctx>, Path((guid, kind)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let process = process_of_app(&state, &guid, &kind)?;
    Ok(Json(present::process(&ctx.urls.api, ctx.config.cc_api_version, &state, state.process(&process)?, false)))
}

/// ActiveModel's `numericality: { only_integer: true, greater_than_or_equal_to: 1, less_than_or_equal_to: MAX_DB_INT }`
/// of a health check's `data.<key>` (process_update_message.rb); `label` is the humanized attribute.
fn seconds(data: &Map<String, Value>, key: &str, label: &str, current: Option<u64>) -> ApiResult<Option<u64>> {
    let error = |rule: &str| Err(ApiError::unprocessable(format!("{label} {rule}")));
    match data.get(key) {
        None => Ok(current),
        Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(n), _) if n < 1 => error("must be greater than or equal to 1"),
            (Some(n), _) if n > MAX_DB_INT => error(&format!("must be less than or equal to {MAX_DB_INT}")),
            (Some(n), _) => Ok(Some(n as u64)),
            (None, Some(f)) if f.fract() != 0.0 => error("must be an integer"),
            _ => error(&format!("must be less than or equal to {MAX_DB_INT}")),
        },
        Some(_) => error("is not a number"),
    }
}

/// `BaseMessage::MAX_DB_INT`, the upper bound of CC's integer fields.
const MAX_DB_INT: i64 = (1 << 31) - 1;

/// Applies a `health_check` / `readiness_health_check` request object to a check.
/// `max_timeout` is CC's `maximum_health_check_timeout`, which the process model enforces
/// (app/models/runtime/constraints/base_health_check_policy.rb) after the message's own checks.
pub fn apply_health_check(
    current: &HealthCheck,
    value: &Value,
    readiness: bool,
    max_timeout: u64,
) -> ApiResult<HealthCheck> {
    let prefix = if readiness { "Readiness health check" } else { "Health check" };
    let obj = value.as_object().ok_or_else(|| ApiError::unprocessable(format!("{prefix} must be an object")))?;
    let kind = match obj.get("type") {
        None => current.kind.clone(),
        Some(Value::String(t)) if ["port", "process", "http"].contains(&t.as_str()) => t.clone(),
        Some(_) => {
            return Err(ApiError::unprocessable(format!("{prefix} type must be \"port\", \"process\", or \"http\"")));
        }
    };
    let empty = Map::new();
    let data = match obj.get("data") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(data)) => data,
        Some(_) => return Err(ApiError::unprocessable(format!("{prefix} data must be an object"))),
    };
    let endpoint = match data.get("endpoint") {
        None => {
            if kind == "http" {
                current.endpoint.clone()
            } else {
                None
            }
        }
        Some(Value::Null) => None,
        Some(Value::String(e)) if kind == "http" => {
            if e.chars().count() > 255 {
                return Err(ApiError::unprocessable(format!(
                    "{prefix} endpoint is too long (maximum is 255 characters)"
                )));
            }
            if !e.starts_with('/') {
                return Err(ApiError::unprocessable(format!("{prefix} endpoint must be a valid URI path")));
            }
            Some(e.clone())
        }
        Some(_) => {
            return Err(ApiError::unprocessable(format!(
                "{prefix} type must be \"http\" to set a health check HTTP endpoint"
            )));
        }
    };
    let timeout =
        if readiness { None } else { seconds(data, "timeout", &format!("{prefix} timeout"), current.timeout)? };
    let invocation_timeout =
        seconds(data, "invocation_timeout", &format!("{prefix} invocation timeout"), current.invocation_timeout)?;
    let interval = seconds(data, "interval", &format!("{prefix} interval"), current.interval)?;
    if let Some(timeout) = timeout
        && timeout > max_timeout
    {
        // A Sequel validation error: the attribute, unhumanized, then the policy's message.
        return Err(ApiError::unprocessable(format!("health_check_timeout Maximum exceeded: max {max_timeout}s")));
    }
    Ok(HealthCheck { kind, endpoint, timeout, invocation_timeout, interval })
}

fn update_process(ctx: &Ctx, guid: &str, raw: &Bytes) -> ApiResult<Value> {
    let map = body::object(raw)?;
    let mut errors = body::Errors::default();
    errors.metadata(&map);
    let version = ctx.config.cc_api_version;
    let allowed = since(
        version,
        &["command", "health_check", "metadata"],
        &[("readiness_health_check", present::PROCESS_READINESS_SINCE), ("user", present::PROCESS_USER_SINCE)],
    );
    errors.unknown_keys(&map, &allowed);
    errors.finish()?;
    body::not_modelled(&map, &["user"])?;
    let max_timeout = ctx.config.maximum_health_check_timeout;
    let mut state = ctx.state();
    let mut process = state.process(guid)?.clone();
    match map.get("command") {
        None => {}
        Some(Value::Null) => process.command = None,
        Some(Value::String(c)) if !c.is_empty() && c.len() <= 4096 => process.command = Some(c.clone()),
        Some(_) => return Err(ApiError::unprocessable("Command must be between 1 and 4096 characters")),
    }
    if let Some(check) = map.get("health_check") {
        process.health_check = apply_health_check(&process.health_check, check, false, max_timeout)?;
    }
    if let Some(check) = map.get("readiness_health_check") {
        process.readiness_check = apply_health_check(&process.readiness_check, check, true, max_timeout)?;
    }
    process.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut process.common);
    state.processes.insert(guid.to_string(), process);
    Ok(present::process(&ctx.urls.api, ctx.config.cc_api_version, &state, state.process(guid)?, false))
}

async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    Ok(Json(update_process(&ctx, &guid, &raw)?))
}

async fn update_for_app(
    State(ctx): State<Ctx>,
    Path((guid, kind)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let process = process_of_app(&ctx.state(), &guid, &kind)?;
    Ok(Json(update_process(&ctx, &process, &raw)?))
}

/// Scale values of a request or manifest.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scale {
    pub instances: Option<u32>,
    pub memory_in_mb: Option<u64>,
    pub disk_in_mb: Option<u64>,
    pub log_rate_limit: Option<i64>,
}

/// Applies a scale to a process; instances reach the runtime at once, the rest at the next restart.
pub fn apply_scale(ctx: &Ctx, process_guid: &str, scale: Scale) -> ApiResult<String> {
    let app_guid = {
        let mut state = ctx.state();
        let mut process = state.process(process_guid)?.clone();
        if let Some(instances) = scale.instances {
            process.instances = instances;
        }
        if let Some(memory) = scale.memory_in_mb {
            process.memory_in_mb = memory;
        }
        if let Some(disk) = scale.disk_in_mb {
            process.disk_in_mb = disk;
        }
        if let Some(rate) = scale.log_rate_limit {
            process.log_rate_limit = rate;
        }
        super::quotas::check_scale(&state, state.process(process_guid)?, &process)?;
        state.touch(&mut process.common);
        let app_guid = process.app_guid.clone();
        state.processes.insert(process_guid.to_string(), process);
        app_guid
    };
    ctx.diego.converge(ctx, &app_guid);
    Ok(app_guid)
}

/// A message's allowed keys at `version`: `always`, plus each key of `added` from the version that added it.
fn since<'a>(version: CcApiVersion, always: &[&'a str], added: &[(&'a str, CcApiVersion)]) -> Vec<&'a str> {
    let newer = added.iter().filter(|(_, since)| version.at_least(*since)).map(|(key, _)| *key);
    always.iter().copied().chain(newer).collect()
}

fn parse_scale(raw: &Bytes, version: CcApiVersion) -> ApiResult<Scale> {
    let map = body::object(raw)?;
    let allowed = since(
        version,
        &["instances", "memory_in_mb", "disk_in_mb"],
        &[("log_rate_limit_in_bytes_per_second", present::PROCESS_LOG_RATE_SINCE)],
    );
    body::only_keys(&map, &allowed)?;
    // ProcessScaleMessage: integers, instances ≥ 0, memory and disk > 0, log rate ≥ -1, all ≤ MAX_DB_INT (the
    // log rate ≤ MAX_DB_BIGINT).
    let int = |key: &str, min: i64, max: i64, label: &str| -> ApiResult<Option<i64>> {
        let error = |rule: String| Err(ApiError::unprocessable(format!("{label} {rule}")));
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(n) if n < min && min == 1 => error("must be greater than 0".into()),
                Some(n) if n < min => error(format!("must be greater than or equal to {min}")),
                Some(n) if n > max => error(format!("must be less than or equal to {max}")),
                Some(n) => Ok(Some(n)),
                None if n.as_f64().is_some_and(|f| f.fract() != 0.0) => error("must be an integer".into()),
                None => error(format!("must be less than or equal to {max}")),
            },
            Some(_) => error("is not a number".into()),
        }
    };
    let mut errors = body::Errors::default();
    let scale = Scale {
        instances: errors.check(int("instances", 0, MAX_DB_INT, "Instances")).flatten().map(|n| n as u32),
        memory_in_mb: errors.check(int("memory_in_mb", 1, MAX_DB_INT, "Memory in mb")).flatten().map(|n| n as u64),
        disk_in_mb: errors.check(int("disk_in_mb", 1, MAX_DB_INT, "Disk in mb")).flatten().map(|n| n as u64),
        log_rate_limit: errors
            .check(int("log_rate_limit_in_bytes_per_second", -1, i64::MAX, "Log rate limit in bytes per second"))
            .flatten(),
    };
    errors.finish()?;
    Ok(scale)
}

async fn scale(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let scale = parse_scale(&raw, ctx.config.cc_api_version)?;
    apply_scale(&ctx, &guid, scale)?;
    let state = ctx.state();
    Ok((
        StatusCode::ACCEPTED,
        Json(present::process(&ctx.urls.api, ctx.config.cc_api_version, &state, state.process(&guid)?, false)),
    ))
}

async fn scale_for_app(
    State(ctx): State<Ctx>,
    Path((guid, kind)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let scale = parse_scale(&raw, ctx.config.cc_api_version)?;
    let process = process_of_app(&ctx.state(), &guid, &kind)?;
    apply_scale(&ctx, &process, scale)?;
    let state = ctx.state();
    Ok((
        StatusCode::ACCEPTED,
        Json(present::process(&ctx.urls.api, ctx.config.cc_api_version, &state, state.process(&process)?, false)),
    ))
}

/// Resident memory of a process, from /proc.
fn resident_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn stats_body(ctx: &Ctx, process_guid: &str) -> ApiResult<Value> {
    let (kind, desired, memory, disk, log_rate) = {
        let state = ctx.state();
        let process = state.process(process_guid)?;
        // Indices Diego does not run (all of them for a stopped app) are reported DOWN, as CC fills them in.
        (process.kind.clone(), process.instances, process.memory_in_mb, process.disk_in_mb, process.log_rate_limit)
    };
    let resources: Vec<Value> = ctx
        .diego
        .stats(process_guid, desired)
        .into_iter()
        .map(|s| {
            let uptime = s.since.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs()).unwrap_or(0);
            let live = s.port.is_some();
            json!({
                "type": kind,
                "index": s.index,
                "instance_guid": s.instance_guid,
                "state": s.state.as_str(),
                "routable": s.routable,
                "usage": {
                    "time": now_iso_nanos(),
                    "cpu": 0.0,
                    "cpu_entitlement": 0.0,
                    "mem": s.pid.map(resident_bytes).unwrap_or(0),
                    "disk": 0,
                    "log_rate": 0,
                },
                "host": if live { "127.0.0.1" } else { "" },
                "instance_internal_ip": if live { "127.0.0.1" } else { "" },
                "instance_ports": s.port.map(|p| json!([{
                    "external": p, "internal": p, "external_tls_proxy_port": 0, "internal_tls_proxy_port": 0
                }])),
                "uptime": uptime,
                "mem_quota": memory * 1024 * 1024,
                "disk_quota": disk * 1024 * 1024,
                "fds_quota": 16384,
                "isolation_segment": null,
                "log_rate_limit": if log_rate < 0 { Value::Null } else { json!(log_rate) },
                "details": s.details,
            })
        })
        .collect();
    Ok(json!({"resources": resources}))
}

async fn stats(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(stats_body(&ctx, &guid)?))
}

async fn stats_for_app(State(ctx): State<Ctx>, Path((guid, kind)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let process = process_of_app(&ctx.state(), &guid, &kind)?;
    Ok(Json(stats_body(&ctx, &process)?))
}

async fn process_instances(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let desired = {
        let state = ctx.state();
        state.process(&guid)?.instances
    };
    let resources: Vec<Value> = ctx
        .diego
        .stats(&guid, desired)
        .into_iter()
        .map(|s| json!({"index": s.index, "state": s.state.as_str(), "since": s.since.and_then(|t| t.elapsed().ok()).map(|d| d.as_secs())}))
        .collect();
    Ok(Json(
        json!({"resources": resources, "links": {"self": {"href": format!("{}/v3/processes/{guid}/process_instances", ctx.urls.api)}}}),
    ))
}
