//! Manifests: `POST /v3/spaces/:guid/actions/apply_manifest` (YAML, a 202 `space.apply_manifest` job) with the keys
//! a single-app push uses and CC's semantics (creates the app, additive env/routes/services, routes created from
//! `route:` strings against known domains), and the generated manifest of `GET /v3/apps/:guid/manifest`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::jobs;
use super::processes::{Scale, apply_health_check, apply_scale};
use crate::shared::Ctx;
use crate::state::{Lifecycle, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/spaces/{guid}/actions/apply_manifest", post(apply))
        .route("/v3/apps/{guid}/manifest", get(generated))
}

/// A validated process section (the app level describes `web`).
#[derive(Debug, Clone, Default)]
struct ProcessSpec {
    kind: String,
    scale: Scale,
    command: Option<String>,
    health_check: Option<Value>,
    readiness_check: Option<Value>,
}

#[derive(Debug, Clone, Default)]
struct AppSpec {
    name: String,
    lifecycle: Option<Lifecycle>,
    env: Vec<(String, Option<Value>)>,
    processes: Vec<ProcessSpec>,
    routes: Option<Vec<String>>,
    no_route: bool,
    random_route: bool,
    default_route: bool,
    services: Vec<(String, Option<String>)>,
    metadata: Option<Value>,
}

fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
        .or_else(|| map.get(&key.replace('-', "_")))
        .or_else(|| map.get(&key.replace('_', "-")))
        .filter(|v| !v.is_null())
}

/// `256M`, `1G`, `512MB` → megabytes.
fn megabytes(value: &Value, label: &str) -> ApiResult<u64> {
    let text = match value {
        Value::String(s) => s.trim().to_ascii_uppercase(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        ApiError::unprocessable(format!("{label} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"))
    })?;
    let mb = match unit {
        "B" => number / (1024 * 1024),
        "K" | "KB" => number / 1024,
        "M" | "MB" => number,
        "G" | "GB" => number * 1024,
        "T" | "TB" => number * 1024 * 1024,
        _ => {
            return Err(ApiError::unprocessable(format!(
                "{label} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
            )));
        }
    };
    Ok(mb)
}

fn health_value(map: &Map<String, Value>, prefix: &str, readiness: bool) -> ApiResult<Option<Value>> {
    let kind = field(map, &format!("{prefix}health-check-type")).map(|v| v.as_str().unwrap_or("").to_string());
    let kind = match kind.as_deref() {
        Some("none") => Some("process".to_string()),
        Some(k @ ("port" | "process" | "http")) => Some(k.to_string()),
        Some(_) => {
            return Err(ApiError::unprocessable(format!(
                "{} type must be \"port\", \"process\", or \"http\"",
                if readiness { "Readiness health check" } else { "Health check" }
            )));
        }
        None => None,
    };
    let mut data = Map::new();
    if let Some(endpoint) = field(map, &format!("{prefix}health-check-http-endpoint")) {
        data.insert("endpoint".into(), endpoint.clone());
    }
    if !readiness && let Some(timeout) = field(map, "timeout") {
        data.insert("timeout".into(), timeout.clone());
    }
    if let Some(t) = field(map, &format!("{prefix}health-check-invocation-timeout")) {
        data.insert("invocation_timeout".into(), t.clone());
    }
    if let Some(t) = field(map, &format!("{prefix}health-check-interval")) {
        data.insert("interval".into(), t.clone());
    }
    if kind.is_none() && data.is_empty() {
        return Ok(None);
    }
    let mut check = json!({"data": data});
    if let Some(kind) = kind {
        check["type"] = json!(kind);
    }
    Ok(Some(check))
}

fn process_spec(map: &Map<String, Value>, kind: &str) -> ApiResult<ProcessSpec> {
    let instances = match field(map, "instances") {
        None => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n as u32),
            _ => return Err(ApiError::unprocessable("Instances must be greater than or equal to 0")),
        },
    };
    let memory = field(map, "memory").map(|v| megabytes(v, "Memory")).transpose()?;
    let disk = field(map, "disk_quota").map(|v| megabytes(v, "Disk quota")).transpose()?;
    let command = match field(map, "command") {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(ApiError::unprocessable("Command must be a string")),
    };
    let health_check = health_value(map, "", false)?;
    let readiness_check = health_value(map, "readiness-", true)?;
    // Validate the checks now so a bad manifest is a 422, not a failed job.
    let default = crate::state::HealthCheck::of_kind(if kind == "web" { "port" } else { "process" });
    if let Some(check) = &health_check {
        apply_health_check(&default, check, false)?;
    }
    if let Some(check) = &readiness_check {
        apply_health_check(&crate::state::HealthCheck::of_kind("process"), check, true)?;
    }
    Ok(ProcessSpec {
        kind: kind.to_string(),
        scale: Scale { instances, memory_in_mb: memory, disk_in_mb: disk, log_rate_limit: None },
        command,
        health_check,
        readiness_check,
    })
}

fn app_spec(map: &Map<String, Value>) -> ApiResult<AppSpec> {
    let name = field(map, "name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Name must not be empty"))?
        .to_string();
    let context = |e: ApiError| ApiError::unprocessable(format!("For application '{name}': {}", e.detail));
    let spec = (|| {
        let mut buildpacks: Option<Vec<String>> = field(map, "buildpacks")
            .map(|b| {
                serde_json::from_value(b.clone())
                    .map_err(|_| ApiError::unprocessable("Buildpacks must be a list of strings"))
            })
            .transpose()?;
        if let Some(Value::String(b)) = field(map, "buildpack") {
            buildpacks = Some(vec![b.clone()]);
        }
        let stack = field(map, "stack").and_then(Value::as_str).map(str::to_string);
        let lifecycle = if field(map, "docker").is_some() {
            Some(Lifecycle::Docker)
        } else if buildpacks.is_some() || stack.is_some() {
            Some(Lifecycle::Buildpack {
                buildpacks: buildpacks.unwrap_or_default(),
                stack: stack.unwrap_or_else(|| super::apps::DEFAULT_STACK.into()),
            })
        } else {
            None
        };
        let env = super::apps::env_changes(field(map, "env"))?;
        let mut processes = vec![process_spec(map, "web")?];
        if let Some(list) = field(map, "processes") {
            let list = list
                .as_array()
                .ok_or_else(|| ApiError::unprocessable("Processes must be an array of process configurations"))?;
            for item in list {
                let item = item
                    .as_object()
                    .ok_or_else(|| ApiError::unprocessable("Processes must be an array of process configurations"))?;
                let kind = item
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::unprocessable("Process must have a type"))?;
                let spec = process_spec(item, kind)?;
                match processes.iter_mut().find(|p| p.kind == kind) {
                    Some(existing) => merge_process(existing, spec),
                    None => processes.push(spec),
                }
            }
        }
        let routes = match field(map, "routes") {
            None => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|r| {
                        let route = r.get("route").and_then(Value::as_str).unwrap_or("");
                        if route.is_empty() || route.contains(char::is_whitespace) || route.contains("://") {
                            Err(ApiError::unprocessable(format!("The route '{route}' is not a properly formed URL")))
                        } else {
                            Ok(route.to_string())
                        }
                    })
                    .collect::<ApiResult<Vec<_>>>()?,
            ),
            Some(_) => return Err(ApiError::unprocessable("Routes must be a list of route objects")),
        };
        let flag = |key: &str| field(map, key).and_then(Value::as_bool).unwrap_or(false);
        let (no_route, random_route, default_route) = (flag("no-route"), flag("random-route"), flag("default-route"));
        if no_route && routes.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::unprocessable("Cannot use the combination of no-route and routes"));
        }
        let services = match field(map, "services") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|s| match s {
                    Value::String(name) => Ok((name.clone(), None)),
                    Value::Object(o) => {
                        let name = o
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::unprocessable("Service must have a name"))?;
                        Ok((name.to_string(), o.get("binding_name").and_then(Value::as_str).map(str::to_string)))
                    }
                    _ => Err(ApiError::unprocessable("Services must be a list of service instance names or objects")),
                })
                .collect::<ApiResult<_>>()?,
            Some(_) => {
                return Err(ApiError::unprocessable("Services must be a list of service instance names or objects"));
            }
        };
        let metadata = field(map, "metadata").cloned();
        if let Some(metadata) = &metadata {
            crate::cc::metadata::Metadata::default().apply(Some(metadata))?;
        }
        Ok(AppSpec {
            name: name.clone(),
            lifecycle,
            env,
            processes,
            routes,
            no_route,
            random_route,
            default_route,
            services,
            metadata,
        })
    })();
    spec.map_err(context)
}

fn merge_process(target: &mut ProcessSpec, from: ProcessSpec) {
    let s = from.scale;
    target.scale.instances = s.instances.or(target.scale.instances);
    target.scale.memory_in_mb = s.memory_in_mb.or(target.scale.memory_in_mb);
    target.scale.disk_in_mb = s.disk_in_mb.or(target.scale.disk_in_mb);
    target.command = from.command.or(target.command.take());
    target.health_check = from.health_check.or(target.health_check.take());
    target.readiness_check = from.readiness_check.or(target.readiness_check.take());
}

async fn apply(
    State(ctx): State<Ctx>,
    Path(space_guid): Path<String>,
    headers: HeaderMap,
    raw: Bytes,
) -> ApiResult<Response> {
    ctx.state().space(&space_guid)?;
    let yaml = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.contains("yaml"));
    if !yaml {
        return Err(ApiError::bad_request("Content-Type must be yaml"));
    }
    let document: Value =
        serde_norway::from_slice(&raw).map_err(|e| ApiError::message_parse(format!("invalid request body: {e}")))?;
    let applications = document
        .get("applications")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Applications must be an array with at least one application"))?;
    let specs = applications
        .iter()
        .map(|a| {
            a.as_object()
                .ok_or_else(|| ApiError::unprocessable("Applications must be a list of hashes"))
                .and_then(app_spec)
        })
        .collect::<ApiResult<Vec<AppSpec>>>()?;
    let space = space_guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "space.apply_manifest",
        Some(("space".into(), format!("/v3/spaces/{space_guid}"))),
        Box::new(move |ctx| {
            for spec in specs {
                apply_app(ctx, &space, spec)?;
            }
            Ok(Vec::new())
        }),
    ))
}

/// Splits `host.domain/path` against the domains the space can use; the longest matching domain wins.
fn resolve_route(state: &CcState, org_guid: &str, route: &str) -> Option<(String, String, String)> {
    let (authority, path) = match route.find('/') {
        Some(i) => (&route[..i], route[i..].to_string()),
        None => (route, String::new()),
    };
    let authority = authority.split(':').next().unwrap_or(authority).to_ascii_lowercase();
    let mut best: Option<(&crate::state::Domain, String)> = None;
    for domain in state.domains.values().filter(|d| state.domain_visible_in_org(d, org_guid)) {
        let host = if authority == domain.name {
            Some(String::new())
        } else {
            authority.strip_suffix(&format!(".{}", domain.name)).map(str::to_string)
        };
        if let Some(host) = host
            && best.as_ref().is_none_or(|(b, _)| domain.name.len() > b.name.len())
        {
            best = Some((domain, host));
        }
    }
    best.map(|(domain, host)| (host, domain.common.guid.clone(), path))
}

fn apply_app(ctx: &Ctx, space_guid: &str, spec: AppSpec) -> ApiResult<()> {
    let fail = |detail: String| ApiError::unprocessable(format!("For application '{}': {detail}", spec.name));
    let app_guid = {
        let mut state = ctx.state();
        let org_guid = state.space(space_guid)?.org_guid.clone();
        let existing = state
            .apps
            .values()
            .find(|a| a.space_guid == space_guid && a.name.eq_ignore_ascii_case(&spec.name))
            .map(|a| a.common.guid.clone());
        let app_guid = match existing {
            Some(guid) => guid,
            None => {
                let lifecycle = spec.lifecycle.clone().unwrap_or(Lifecycle::Buildpack {
                    buildpacks: Vec::new(),
                    stack: super::apps::DEFAULT_STACK.into(),
                });
                state.create_app(&spec.name, space_guid, lifecycle)?
            }
        };
        let mut app = state.app(&app_guid)?.clone();
        if let Some(lifecycle) = &spec.lifecycle
            && lifecycle.type_name() == app.lifecycle.type_name()
        {
            app.lifecycle = lifecycle.clone();
        }
        for (key, value) in spec.env.clone() {
            match value {
                Some(v) => app.env.insert(key, v),
                None => app.env.remove(&key),
            };
        }
        app.common.metadata.apply(spec.metadata.as_ref()).map_err(|e| fail(e.detail))?;
        state.touch(&mut app.common);
        state.apps.insert(app_guid.clone(), app);

        // Services first: a missing instance fails the job before routes change.
        let mut to_bind = Vec::new();
        for (name, binding_name) in &spec.services {
            let instance = state
                .service_instances
                .values()
                .find(|s| s.space_guid == space_guid && &s.name == name)
                .ok_or_else(|| fail(format!("Service instance '{name}' not found")))?;
            to_bind.push((instance.common.guid.clone(), binding_name.clone()));
        }
        for (instance, binding_name) in to_bind {
            if !state.bindings.values().any(|b| b.app_guid == app_guid && b.service_instance_guid == instance) {
                super::services::insert_binding(&mut state, &app_guid, &instance, binding_name)
                    .map_err(|e| fail(e.detail))?;
            }
        }

        for process in &spec.processes {
            let guid = state.ensure_process(&app_guid, &process.kind);
            let mut stored = state.process(&guid)?.clone();
            if let Some(command) = &process.command {
                stored.command = Some(command.clone());
            }
            if let Some(check) = &process.health_check {
                stored.health_check =
                    apply_health_check(&stored.health_check, check, false).map_err(|e| fail(e.detail))?;
            }
            if let Some(check) = &process.readiness_check {
                stored.readiness_check =
                    apply_health_check(&stored.readiness_check, check, true).map_err(|e| fail(e.detail))?;
            }
            state.processes.insert(guid, stored);
        }

        if spec.no_route {
            super::routes::unmap_app(&mut state, &app_guid);
        } else {
            let mut wanted: Vec<String> = spec.routes.clone().unwrap_or_default();
            let has_routes = state.app_routes(&app_guid).next().is_some();
            if wanted.is_empty() && !has_routes && (spec.random_route || spec.default_route) {
                let domain = state
                    .default_domain(&org_guid)
                    .map(|d| d.name.clone())
                    .ok_or_else(|| fail("No default domain".into()))?;
                let host = if spec.random_route {
                    format!("{}-{}", spec.name.to_ascii_lowercase(), &crate::clock::new_guid()[..8])
                } else {
                    spec.name.to_ascii_lowercase()
                };
                wanted.push(format!("{host}.{domain}"));
            }
            for route in wanted {
                let (host, domain_guid, path) = resolve_route(&state, &org_guid, &route)
                    .ok_or_else(|| fail(format!("The route '{route}' did not match any existing domains.")))?;
                let existing = state
                    .routes
                    .values()
                    .find(|r| r.domain_guid == domain_guid && r.host == host && r.path == path)
                    .map(|r| (r.common.guid.clone(), r.space_guid.clone()));
                let route_guid = match existing {
                    Some((guid, route_space)) if route_space == space_guid => guid,
                    Some(_) => {
                        return Err(fail(format!(
                            "The app cannot be mapped to route {route} because the route exists in a different space."
                        )));
                    }
                    None => super::routes::insert_route(&mut state, &host, &path, &domain_guid, space_guid)
                        .map_err(|e| fail(e.detail))?,
                };
                let route = state.routes.get_mut(&route_guid).expect("route exists");
                if !route.destinations.iter().any(|d| d.app_guid == app_guid && d.process_type == "web") {
                    route.destinations.push(crate::state::Destination::new(&app_guid, "web", 8080, "http1"));
                }
            }
        }
        app_guid
    };
    for process in &spec.processes {
        let guid = ctx.state().app_process(&app_guid, &process.kind).map(|p| p.common.guid.clone());
        if let Some(guid) = guid {
            apply_scale(ctx, &guid, process.scale)?;
        }
    }
    ctx.routing.publish(ctx);
    Ok(())
}

/// `GET /v3/apps/:guid/manifest`: the app as a manifest.
async fn generated(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    let state = ctx.state();
    let document = app_manifest(&state, &guid)?;
    let yaml = serde_norway::to_string(&document).map_err(|_| ApiError::unknown_error())?;
    Ok(([(header::CONTENT_TYPE, "application/x-yaml")], yaml).into_response())
}

fn app_manifest(state: &CcState, guid: &str) -> ApiResult<Value> {
    let app = state.app(guid)?;
    let mut entry = Map::new();
    entry.insert("name".into(), json!(app.name));
    match &app.lifecycle {
        Lifecycle::Buildpack { buildpacks, stack } => {
            if !buildpacks.is_empty() {
                entry.insert("buildpacks".into(), json!(buildpacks));
            }
            entry.insert("stack".into(), json!(stack));
        }
        Lifecycle::Docker => {
            let image = app.droplet_guid.as_ref().and_then(|d| state.droplets.get(d)).and_then(|d| d.image.clone());
            entry.insert("docker".into(), json!({"image": image}));
        }
    }
    if !app.env.is_empty() {
        entry.insert("env".into(), json!(app.env));
    }
    let routes: Vec<Value> =
        state.app_routes(guid).map(|r| json!({"route": state.route_url(r), "protocol": "http1"})).collect();
    if routes.is_empty() {
        entry.insert("no-route".into(), json!(true));
    } else {
        entry.insert("routes".into(), json!(routes));
    }
    let mut services: Vec<Value> = state
        .bindings
        .values()
        .filter(|b| b.app_guid == guid)
        .filter_map(|b| {
            let instance = state.service_instances.get(&b.service_instance_guid)?;
            Some(match &b.name {
                Some(name) => json!({"name": instance.name, "binding_name": name}),
                None => json!(instance.name),
            })
        })
        .collect();
    services.sort_by_key(|s| s.to_string());
    if !services.is_empty() {
        entry.insert("services".into(), json!(services));
    }
    let metadata = &app.common.metadata;
    if !metadata.labels.is_empty() || !metadata.annotations.is_empty() {
        entry.insert("metadata".into(), metadata.to_json());
    }
    let mut processes: Vec<Value> = state
        .app_processes(guid)
        .map(|p| {
            let mut process = Map::new();
            process.insert("type".into(), json!(p.kind));
            process.insert("instances".into(), json!(p.instances));
            process.insert("memory".into(), json!(format!("{}M", p.memory_in_mb)));
            process.insert("disk_quota".into(), json!(format!("{}M", p.disk_in_mb)));
            process.insert(
                "log-rate-limit-per-second".into(),
                json!(if p.log_rate_limit < 0 { "-1".to_string() } else { format!("{}B", p.log_rate_limit) }),
            );
            if let Some(command) = &p.command {
                process.insert("command".into(), json!(command));
            }
            process.insert("health-check-type".into(), json!(p.health_check.kind));
            if let Some(endpoint) = &p.health_check.endpoint {
                process.insert("health-check-http-endpoint".into(), json!(endpoint));
            }
            if let Some(timeout) = p.health_check.timeout {
                process.insert("timeout".into(), json!(timeout));
            }
            if let Some(t) = p.health_check.invocation_timeout {
                process.insert("health-check-invocation-timeout".into(), json!(t));
            }
            if let Some(t) = p.health_check.interval {
                process.insert("health-check-interval".into(), json!(t));
            }
            process.insert("readiness-health-check-type".into(), json!(p.readiness_check.kind));
            if let Some(endpoint) = &p.readiness_check.endpoint {
                process.insert("readiness-health-check-http-endpoint".into(), json!(endpoint));
            }
            Value::Object(process)
        })
        .collect();
    processes.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    entry.insert("processes".into(), json!(processes));
    Ok(json!({"applications": [entry]}))
}
