//! The admin API under `/_sim/` (no auth): state dump, request log and counters, issued tokens, fault injection,
//! staging and health-check controls, killing instances, the router's view, and run-time settings.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use crate::faults::Fault;
use crate::shared::Ctx;
use crate::state::State as CcState;

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/state", get(state))
        .route("/requests", get(requests).delete(reset_requests))
        .route("/counters", get(counters))
        .route("/tokens", get(tokens))
        .route("/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/faults/{id}", delete(remove_fault))
        .route("/apps/{app}/fail_staging", post(fail_staging))
        .route("/apps/{app}/health", put(set_health))
        .route("/apps/{app}/instances/{index}/kill", post(kill))
        .route("/instances", get(instances))
        .route("/routing", get(routing))
        .route("/config", get(get_config).patch(patch_config))
        .route("/managed_service_instances", post(super::managed_services::seed))
        .route("/roles", post(super::roles::seed))
        .route("/roles/{guid}", delete(super::roles::remove))
        .route("/domains/{domain}", axum::routing::patch(super::route_policies::seed_enforcement))
}

/// An app by guid, or by name when exactly one app has it.
pub fn resolve_app(state: &CcState, key: &str) -> ApiResult<String> {
    if state.apps.contains_key(key) {
        return Ok(key.to_string());
    }
    let named: Vec<&String> = state.apps.values().filter(|a| a.name == key).map(|a| &a.common.guid).collect();
    match named.as_slice() {
        [guid] => Ok((*guid).clone()),
        [] => Err(ApiError::not_found("App")),
        _ => Err(ApiError::unprocessable(format!("Several apps are named '{key}'; use the guid"))),
    }
}

/// Everything a deploy can change, sorted and without volatile fields (timestamps, instance state, tokens, jobs),
/// so tests can compare dumps taken before and after a run.
pub fn dump_state(state: &CcState) -> Value {
    let sorted = |mut items: Vec<Value>| {
        items.sort_by_key(|v| {
            (v["name"].as_str().unwrap_or("").to_string(), v["guid"].as_str().unwrap_or("").to_string())
        });
        items
    };
    let orgs = state
        .orgs
        .values()
        .map(|o| json!({"guid": o.common.guid, "name": o.name, "metadata": o.common.metadata}))
        .collect();
    let spaces = state
        .spaces
        .values()
        .map(|s| json!({"guid": s.common.guid, "name": s.name, "organization": s.org_guid, "metadata": s.common.metadata}))
        .collect();
    let domains = state
        .domains
        .values()
        .map(|d| json!({"guid": d.common.guid, "name": d.name, "organization": d.org_guid, "internal": d.internal}))
        .collect();
    let routes = state
        .routes
        .values()
        .map(|r| {
            let mut destinations: Vec<Value> = r
                .destinations
                .iter()
                .map(|d| json!({"guid": d.guid, "app": d.app_guid, "process_type": d.process_type, "port": d.port, "protocol": d.protocol}))
                .collect();
            destinations.sort_by_key(|d| d["guid"].as_str().unwrap_or("").to_string());
            json!({"guid": r.common.guid, "name": state.route_url(r), "host": r.host, "path": r.path, "domain": r.domain_guid,
                   "space": r.space_guid, "destinations": destinations, "metadata": r.common.metadata, "loadbalancing": r.loadbalancing})
        })
        .collect();
    let apps = state
        .apps
        .values()
        .map(|a| {
            let mut processes: Vec<Value> = state
                .app_processes(&a.common.guid)
                .map(|p| json!({
                    "guid": p.common.guid, "type": p.kind, "command": p.command, "instances": p.instances,
                    "memory_in_mb": p.memory_in_mb, "disk_in_mb": p.disk_in_mb, "log_rate_limit_in_bytes_per_second": p.log_rate_limit,
                    "health_check": {"type": p.health_check.kind, "endpoint": p.health_check.endpoint, "timeout": p.health_check.timeout,
                                     "invocation_timeout": p.health_check.invocation_timeout, "interval": p.health_check.interval},
                    "readiness_health_check": {"type": p.readiness_check.kind, "endpoint": p.readiness_check.endpoint,
                                               "invocation_timeout": p.readiness_check.invocation_timeout, "interval": p.readiness_check.interval},
                    "metadata": p.common.metadata,
                }))
                .collect();
            processes.sort_by_key(|p| p["type"].as_str().unwrap_or("").to_string());
            json!({"guid": a.common.guid, "name": a.name, "space": a.space_guid, "state": a.state.as_str(),
                   "lifecycle": super::present::lifecycle(&a.lifecycle), "environment_variables": a.env,
                   "metadata": a.common.metadata, "current_droplet": a.droplet_guid, "processes": processes})
        })
        .collect();
    let packages = state
        .packages
        .values()
        .map(|p| {
            json!({"guid": p.common.guid, "app": p.app_guid, "type": if p.docker.is_some() { "docker" } else { "bits" },
                         "state": p.state.as_str(), "checksum": p.checksum, "error": p.error, "metadata": p.common.metadata})
        })
        .collect();
    let droplets = state
        .droplets
        .values()
        .map(|d| json!({"guid": d.common.guid, "app": d.app_guid, "package": d.package_guid, "state": d.state.as_str(), "error": d.error,
                         "process_types": d.process_types, "checksum": d.checksum, "image": d.image, "stack": d.stack,
                         "buildpacks": d.buildpacks, "metadata": d.common.metadata}))
        .collect();
    let builds = state
        .builds
        .values()
        .map(|b| {
            json!({"guid": b.common.guid, "app": b.app_guid, "package": b.package_guid, "state": b.state.as_str(),
                         "error": b.error, "droplet": b.droplet_guid, "metadata": b.common.metadata})
        })
        .collect();
    let service_instances = state
        .service_instances
        .values()
        .map(|s| json!({"guid": s.common.guid, "name": s.name, "space": s.space_guid, "credentials": s.credentials, "tags": s.tags, "metadata": s.common.metadata}))
        .collect();
    let bindings = state
        .bindings
        .values()
        .map(|b| json!({"guid": b.common.guid, "name": b.name, "app": b.app_guid, "service_instance": b.service_instance_guid, "metadata": b.common.metadata}))
        .collect();
    let mut policies: Vec<Value> = state
        .policies
        .iter()
        .map(|p| json!({"source": p.source, "destination": p.destination, "protocol": p.protocol, "ports": [p.start, p.end]}))
        .collect();
    policies.sort_by_key(Value::to_string);
    let mut route_policies: Vec<Value> = state
        .route_policies
        .values()
        .map(|p| json!({"guid": p.common.guid, "source": p.source, "route": p.route_guid}))
        .collect();
    route_policies.sort_by_key(Value::to_string);
    json!({
        "organizations": sorted(orgs),
        "spaces": sorted(spaces),
        "domains": sorted(domains),
        "routes": sorted(routes),
        "apps": sorted(apps),
        "packages": sorted(packages),
        "droplets": sorted(droplets),
        "builds": sorted(builds),
        "service_instances": sorted(service_instances),
        "service_credential_bindings": sorted(bindings),
        "network_policies": policies,
        "route_policies": route_policies,
    })
}

async fn state(State(ctx): State<Ctx>) -> Json<Value> {
    Json(dump_state(&ctx.state()))
}

async fn requests(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"requests": ctx.requests.records()}))
}

async fn reset_requests(State(ctx): State<Ctx>) -> StatusCode {
    ctx.requests.reset();
    StatusCode::NO_CONTENT
}

async fn counters(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"counters": ctx.requests.counters()}))
}

async fn tokens(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"tokens": ctx.tokens.issued()}))
}

async fn list_faults(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"faults": ctx.faults.list()}))
}

async fn add_fault(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let fault: Fault =
        serde_json::from_slice(&raw).map_err(|e| ApiError::unprocessable(format!("invalid fault: {e}")))?;
    if fault.nth == 0 {
        return Err(ApiError::unprocessable("nth counts from 1"));
    }
    let id = ctx.faults.add(fault);
    Ok((StatusCode::CREATED, Json(json!({"id": id}))))
}

async fn clear_faults(State(ctx): State<Ctx>) -> StatusCode {
    ctx.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(ctx): State<Ctx>, Path(id): Path<u64>) -> ApiResult<StatusCode> {
    if ctx.faults.remove(id) { Ok(StatusCode::NO_CONTENT) } else { Err(ApiError::not_found("Fault")) }
}

async fn fail_staging(State(ctx): State<Ctx>, Path(app): Path<String>) -> ApiResult<StatusCode> {
    let mut state = ctx.state();
    let guid = resolve_app(&state, &app)?;
    state.fail_next_staging.insert(guid);
    Ok(StatusCode::NO_CONTENT)
}

async fn set_health(State(ctx): State<Ctx>, Path(app): Path<String>, raw: Bytes) -> ApiResult<StatusCode> {
    let body: Value =
        serde_json::from_slice(&raw).map_err(|e| ApiError::unprocessable(format!("invalid body: {e}")))?;
    let healthy = body
        .get("healthy")
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::unprocessable("healthy must be a boolean"))?;
    let guid = resolve_app(&ctx.state(), &app)?;
    ctx.diego.set_app_health(&guid, healthy);
    Ok(StatusCode::NO_CONTENT)
}

async fn kill(
    State(ctx): State<Ctx>,
    Path((app, index)): Path<(String, u32)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<StatusCode> {
    let kind = raw
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "process_type").map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "web".into());
    let process = {
        let state = ctx.state();
        let guid = resolve_app(&state, &app)?;
        state.app_process(&guid, &kind).map(|p| p.common.guid.clone()).ok_or_else(|| ApiError::not_found("Process"))?
    };
    if ctx.diego.kill_instance(&process, index) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Instance"))
    }
}

async fn instances(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({"pids": ctx.diego.pids()}))
}

async fn routing(State(ctx): State<Ctx>) -> Json<Value> {
    let routes: Vec<Value> = ctx
        .routing
        .current()
        .describe()
        .into_iter()
        .map(|(route, backends)| json!({"route": route, "backends": backends.iter().map(|b| json!({"address": b.addr.to_string(), "app": b.app_guid, "index": b.index})).collect::<Vec<_>>()}))
        .collect();
    Json(json!({"routes": routes}))
}

fn config_body(ctx: &Ctx) -> Value {
    let k = &ctx.knobs;
    json!({
        "route_propagation_delay_ms": k.route_propagation_delay_ms.load(Ordering::SeqCst),
        "staging_delay_ms": k.staging_delay_ms.load(Ordering::SeqCst),
        "package_processing_delay_ms": k.package_processing_delay_ms.load(Ordering::SeqCst),
        "job_delay_ms": k.job_delay_ms.load(Ordering::SeqCst),
        "default_per_page": k.default_per_page.load(Ordering::SeqCst),
        "token_ttl_secs": ctx.tokens.ttl(),
    })
}

async fn get_config(State(ctx): State<Ctx>) -> Json<Value> {
    Json(config_body(&ctx))
}

async fn patch_config(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<Json<Value>> {
    let body: serde_json::Map<String, Value> =
        serde_json::from_slice(&raw).map_err(|e| ApiError::unprocessable(format!("invalid body: {e}")))?;
    let number = |key: &str| -> ApiResult<Option<u64>> {
        body.get(key)
            .map(|v| v.as_u64().ok_or_else(|| ApiError::unprocessable(format!("{key} must be a non-negative integer"))))
            .transpose()
    };
    let k = &ctx.knobs;
    for (key, target) in [
        ("route_propagation_delay_ms", &k.route_propagation_delay_ms),
        ("staging_delay_ms", &k.staging_delay_ms),
        ("package_processing_delay_ms", &k.package_processing_delay_ms),
        ("job_delay_ms", &k.job_delay_ms),
    ] {
        if let Some(value) = number(key)? {
            target.store(value, Ordering::SeqCst);
        }
    }
    if let Some(per_page) = number("default_per_page")? {
        if !(1..=5000).contains(&per_page) {
            return Err(ApiError::unprocessable("default_per_page must be between 1 and 5000"));
        }
        k.default_per_page.store(per_page as usize, Ordering::SeqCst);
    }
    if let Some(ttl) = number("token_ttl_secs")? {
        ctx.tokens.set_ttl(ttl);
    }
    let unknown: Vec<&String> =
        body.keys().filter(|key| !config_body(&ctx).as_object().is_some_and(|c| c.contains_key(*key))).collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(format!("unknown setting(s): {unknown:?}")));
    }
    Ok(Json(config_body(&ctx)))
}
