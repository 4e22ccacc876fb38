//! Manifests: `POST /v3/spaces/:guid/actions/apply_manifest` (YAML, a 202 `space.apply_manifest` job) with the keys
//! a single-app push uses and CC's semantics (creates the app, additive env/routes/services, routes created from
//! `route:` strings against known domains), and the generated manifest of `GET /v3/apps/:guid/manifest`.
//!
//! Follows app_manifest_message.rb (what is refused before the job), space_manifests_controller.rb (lifecycle
//! mismatches refused at once), app_apply_manifest.rb and space_apply_manifest_action_job.rb (errors of the job,
//! "For application '…': …"), and app_manifest_presenter.rb with app_manifest_presenters/* (the generated form).
//! A key CC accepts that cf-sim does not model is refused with a 422 naming it, never silently dropped.

mod diff;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::jobs;
use super::processes::{Scale, apply_health_check, apply_scale};
use crate::config::CcApiVersion;
use crate::shared::Ctx;
use crate::state::{Lifecycle, State as CcState};

/// The first CC API version whose generated manifests name the `lifecycle` (commit 6ba8491370, released in 3.169.0).
const MANIFEST_LIFECYCLE_SINCE: CcApiVersion = CcApiVersion(3, 169, 0);
/// The first CC API version whose generated manifests carry `features` (commit d04c8c7a41, released in 3.197.0).
const MANIFEST_FEATURES_SINCE: CcApiVersion = CcApiVersion(3, 197, 0);
/// App-level keys of AppManifestMessage cf-sim does not model.
const UNMODELLED_APP_KEYS: [&str; 2] = ["sidecars", "cnb-credentials"];
/// Keys of ManifestProcessUpdateMessage cf-sim does not model.
const UNMODELLED_PROCESS_KEYS: [&str; 1] = ["user"];

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/spaces/{guid}/actions/apply_manifest", post(apply))
        .route("/v3/spaces/{guid}/manifest_diff", post(diff::diff))
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

/// A manifest `services:` entry: instance name, binding name, parameters (empty when not given).
type ServiceEntry = (String, Option<String>, Map<String, Value>);

/// A `services:` entry: its instance name, binding name and parameters, `None` when the entry is malformed.
fn service_binding(entry: &Value) -> Option<ServiceEntry> {
    match entry {
        Value::String(name) => Some((name.clone(), None, Map::new())),
        Value::Object(o) => {
            let known = o.keys().all(|k| ["name", "parameters", "binding_name"].contains(&k.as_str()));
            let parameters = match o.get("parameters") {
                None => Some(Map::new()),
                Some(p) => p.as_object().cloned(),
            };
            let binding_name = match o.get("binding_name") {
                None => None,
                Some(Value::String(b)) => Some(Some(b.clone())),
                Some(_) => return None,
            };
            let name = o.get("name").and_then(Value::as_str)?;
            (known && parameters.is_some())
                .then(|| (name.to_string(), binding_name.flatten(), parameters.unwrap_or_default()))
        }
        _ => None,
    }
}

/// A `routes:` entry (ManifestRoutesUpdateMessage).
#[derive(Debug, Clone, Default)]
struct RouteSpec {
    route: String,
    /// `http1`, `http2` or `tcp`; `None` keeps an existing mapping's and defaults a new one to `http1`.
    protocol: Option<String>,
    loadbalancing: Option<String>,
}

/// CC's `RouteOptionsMessage.valid_loadbalancing_algorithms` without the `hash_based_routing` feature flag.
const LOADBALANCING: [&str; 2] = ["round-robin", "least-connection"];

/// A `routes:` entry as manifest_routes_update_message.rb validates it.
fn route_spec(entry: &Value) -> ApiResult<RouteSpec> {
    let route = entry.get("route").and_then(Value::as_str).unwrap_or("");
    if route.is_empty() || route.contains(char::is_whitespace) || route.contains("://") {
        return Err(ApiError::unprocessable(format!("The route '{route}' is not a properly formed URL")));
    }
    let protocol = match entry.get("protocol") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if ["http1", "http2", "tcp"].contains(&p.as_str()) => Some(p.clone()),
        Some(_) => return Err(ApiError::unprocessable("Route protocol must be 'http1', 'http2' or 'tcp'.")),
    };
    let loadbalancing = match entry.get("options") {
        None | Some(Value::Null) => None,
        Some(Value::Object(options)) => {
            if let Some(key) = options.keys().find(|k| *k != "loadbalancing") {
                return Err(ApiError::unprocessable(format!(
                    "Route '{route}' contains invalid route option '{key}'. Valid keys: 'loadbalancing'"
                )));
            }
            match options.get("loadbalancing") {
                None | Some(Value::Null) => None,
                Some(Value::String(lb)) if LOADBALANCING.contains(&lb.as_str()) => Some(lb.clone()),
                Some(Value::String(lb)) => {
                    return Err(ApiError::unprocessable(format!(
                        "Cannot use loadbalancing value '{lb}' for Route '{route}'; Valid values are: '{}'",
                        LOADBALANCING.join(", ")
                    )));
                }
                Some(_) => {
                    return Err(ApiError::unprocessable(format!(
                        "Invalid value for 'loadbalancing' for Route '{route}'; Valid values are: '{}'",
                        LOADBALANCING.join(", ")
                    )));
                }
            }
        }
        Some(_) => return Err(ApiError::unprocessable(format!("Route '{route}': options must be an object"))),
    };
    Ok(RouteSpec { route: route.to_string(), protocol, loadbalancing })
}

#[derive(Debug, Clone, Default)]
struct AppSpec {
    name: String,
    /// The lifecycle the manifest asks for: `docker` with a `docker` key, `buildpack` with `lifecycle: buildpack`.
    lifecycle_type: Option<&'static str>,
    /// `Buildpacks` or `Buildpack` when the manifest names buildpacks (the controller's wording).
    buildpack_key: Option<&'static str>,
    docker: bool,
    lifecycle: Option<Lifecycle>,
    env: Vec<(String, Option<Value>)>,
    processes: Vec<ProcessSpec>,
    routes: Option<Vec<RouteSpec>>,
    no_route: bool,
    random_route: bool,
    default_route: bool,
    services: Vec<ServiceEntry>,
    metadata: Option<Value>,
    features: Option<Map<String, Value>>,
}

fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key)
        .or_else(|| map.get(&key.replace('-', "_")))
        .or_else(|| map.get(&key.replace('_', "-")))
        .filter(|v| !v.is_null())
}

/// `ByteConverter#convert_to_b` (`ByteQuantity.to_bytes`) of a value's text: CC's "is not a number" when it does
/// not start as one, its unit message when the rest is not `BYTESPATTERN`; B, K, M, G, T with an optional `i` and
/// `B`, any case, decimals allowed, all base 2.
pub(super) fn byte_quantity(text: &str, attribute: &str) -> Result<i64, String> {
    // /\A-?\d+(?:\.\d+)?/ on the value as it is.
    if !text.strip_prefix('-').unwrap_or(text).starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("{attribute} is not a number"));
    }
    let unit_error = || format!("{attribute} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB");
    // BYTESPATTERN, /^(-?\d+(?:\.\d+)?)([KMGT]i?B?|B)$/i, on the stripped value.
    let stripped = text.trim();
    let unsigned = stripped.strip_prefix('-').unwrap_or(stripped);
    let whole = unsigned.find(|c: char| !c.is_ascii_digit()).unwrap_or(unsigned.len());
    let rest = &unsigned[whole..];
    let fraction = match rest.strip_prefix('.') {
        Some(after) => 1 + after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len()),
        None => 0,
    };
    if whole == 0 || fraction == 1 {
        return Err(unit_error());
    }
    let number_len = stripped.len() - unsigned.len() + whole + fraction;
    let (number, unit) = stripped.split_at(number_len);
    let scale: f64 = match unit.to_ascii_uppercase().as_str() {
        "B" => 1.0,
        "K" | "KB" | "KI" | "KIB" => 1024.0,
        "M" | "MB" | "MI" | "MIB" => 1_048_576.0,
        "G" | "GB" | "GI" | "GIB" => 1_073_741_824.0,
        "T" | "TB" | "TI" | "TIB" => 1_099_511_627_776.0,
        _ => return Err(unit_error()),
    };
    let number: f64 = number.parse().map_err(|_| unit_error())?;
    Ok((number * scale) as i64)
}

/// `ByteConverter#convert_to_mb` of a memory or disk value: whole megabytes, the bytes truncated.
fn megabytes(value: &Value, label: &str) -> ApiResult<i64> {
    Ok(byte_quantity(&scalar_text(value), label).map_err(ApiError::unprocessable)? / (1024 * 1024))
}

/// Ruby's `to_s` of a string or number; empty for anything else.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `log-rate-limit-per-second` as `convert_to_bytes_per_second` reads it: `-1` (unlimited) and `0` as written,
/// anything else a byte quantity such as `1M`, in bytes per second.
fn log_rate(value: &Value) -> ApiResult<i64> {
    let text = scalar_text(value);
    match text.as_str() {
        "-1" => Ok(-1),
        "0" => Ok(0),
        _ => byte_quantity(&text, "Log rate limit per second").map_err(ApiError::unprocessable),
    }
}

/// Refuses keys (either spelling, `a-b` or `a_b`) CC accepts but cf-sim does not model.
fn not_modelled(map: &Map<String, Value>, keys: &[&str]) -> ApiResult<()> {
    let present: Vec<&str> = keys.iter().copied().filter(|k| field(map, k).is_some()).collect();
    if present.is_empty() {
        return Ok(());
    }
    Err(ApiError::unprocessable(format!(
        "cf-sim does not model the manifest key(s) '{}' (Cloud Controller accepts them)",
        present.join("', '")
    )))
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
    not_modelled(map, &UNMODELLED_PROCESS_KEYS)?;
    // ManifestProcessScaleMessage: the converted size must be an integer greater than 0.
    let size = |key: &str, label: &str| -> ApiResult<Option<u64>> {
        let Some(value) = field(map, key) else { return Ok(None) };
        match u64::try_from(megabytes(value, label)?) {
            Ok(mb) if mb > 0 => Ok(Some(mb)),
            _ => Err(ApiError::unprocessable(format!("Process \"{kind}\": {label} must be greater than 0MB"))),
        }
    };
    let memory = size("memory", "Memory")?;
    let disk = size("disk_quota", "Disk quota")?;
    let log_rate_limit = field(map, "log-rate-limit-per-second").map(log_rate).transpose()?;
    let command = match field(map, "command") {
        None => None,
        Some(Value::String(c)) => Some(c.clone()),
        Some(_) => return Err(ApiError::unprocessable("Command must be a string")),
    };
    let health_check = health_value(map, "", false)?;
    let readiness_check = health_value(map, "readiness-", true)?;
    // The message's own checks make a bad manifest a 422; the maximum timeout is the process model's, in the job.
    let default = crate::state::HealthCheck::of_kind(if kind == "web" { "port" } else { "process" });
    if let Some(check) = &health_check {
        apply_health_check(&default, check, false, u64::MAX)?;
    }
    if let Some(check) = &readiness_check {
        apply_health_check(&crate::state::HealthCheck::of_kind("process"), check, true, u64::MAX)?;
    }
    Ok(ProcessSpec {
        kind: kind.to_string(),
        scale: Scale { instances, memory_in_mb: memory, disk_in_mb: disk, log_rate_limit },
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
        not_modelled(map, &UNMODELLED_APP_KEYS)?;
        let docker = field(map, "docker").is_some();
        let buildpack_key = if field(map, "buildpacks").is_some() {
            Some("Buildpacks")
        } else {
            field(map, "buildpack").map(|_| "Buildpack")
        };
        let mut errors = body::Errors::default();
        if field(map, "buildpack").is_some() && field(map, "buildpacks").is_some() {
            errors.add("Buildpack and Buildpacks fields cannot be used together.");
        }
        if docker && buildpack_key.is_some() {
            errors.add("Cannot specify both buildpack(s) and docker keys");
        }
        errors.finish()?;
        let lifecycle_type = match field(map, "lifecycle").and_then(Value::as_str) {
            _ if docker => Some("docker"),
            Some("buildpack") => Some("buildpack"),
            Some("cnb") => {
                return Err(ApiError::unprocessable(
                    "cf-sim does not model the cnb lifecycle (Cloud Controller accepts 'lifecycle: cnb')",
                ));
            }
            // AppManifestMessage#app_lifecycle_hash ignores any other value.
            _ => None,
        };
        let features = field(map, "features").map(super::features::check_manifest).transpose()?;
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
        let lifecycle = if docker {
            Some(Lifecycle::Docker)
        } else if buildpacks.is_some() || stack.is_some() {
            Some(Lifecycle::Buildpack {
                buildpacks: buildpacks.unwrap_or_default(),
                stack: stack.unwrap_or_else(|| super::apps::DEFAULT_STACK.into()),
            })
        } else {
            None
        };
        let env = super::apps::env_changes(field(map, "env"), super::apps::EnvMessage::Manifest)?;
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
                // AppManifestMessage#process_attributes: a `web` entry replaces the app-level attributes.
                match processes.iter_mut().find(|p| p.kind == kind) {
                    Some(existing) => *existing = spec,
                    None => processes.push(spec),
                }
            }
        }
        let routes = match field(map, "routes") {
            None => None,
            Some(Value::Array(list)) => Some(list.iter().map(route_spec).collect::<ApiResult<Vec<_>>>()?),
            Some(_) => return Err(ApiError::unprocessable("Routes must be a list of route objects")),
        };
        let flag = |key: &str| field(map, key).and_then(Value::as_bool).unwrap_or(false);
        let (no_route, random_route, default_route) = (flag("no-route"), flag("random-route"), flag("default-route"));
        if no_route && routes.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::unprocessable("Cannot use the combination of no-route and routes"));
        }
        // ManifestServiceBindingCreateMessage: names, or objects of `name`, an object `parameters` (which a
        // user-provided instance ignores, a managed one's broker keeps) and a string `binding_name`.
        let services = match field(map, "services") {
            None => Some(Vec::new()),
            Some(Value::Array(list)) => list.iter().map(service_binding).collect::<Option<Vec<_>>>(),
            Some(_) => None,
        }
        .ok_or_else(|| ApiError::unprocessable("Services must be a list of service instances"))?;
        let metadata = field(map, "metadata").cloned();
        if let Some(metadata) = &metadata {
            crate::cc::metadata::Metadata::default().apply(Some(metadata))?;
        }
        Ok(AppSpec {
            name: name.clone(),
            lifecycle_type,
            buildpack_key,
            docker,
            lifecycle,
            env,
            processes,
            routes,
            no_route,
            random_route,
            default_route,
            services,
            metadata,
            features,
        })
    })();
    spec.map_err(context)
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
        .ok_or_else(|| ApiError::unprocessable("Cannot parse manifest with no 'applications' field."))?;
    let specs = applications
        .iter()
        .map(|a| {
            a.as_object()
                .ok_or_else(|| ApiError::unprocessable("Applications must be a list of hashes"))
                .and_then(app_spec)
        })
        .collect::<ApiResult<Vec<AppSpec>>>()?;
    // AppFindOrCreateSkeleton: the apps are found or created before the job is enqueued.
    let apps = {
        let mut state = ctx.state();
        check_lifecycles(&state, &space_guid, &specs)?;
        let mut apps = Vec::new();
        for spec in specs {
            let guid = match existing_app(&state, &space_guid, &spec.name) {
                Some(app) => app.common.guid.clone(),
                None => {
                    let lifecycle = spec.lifecycle.clone().unwrap_or(Lifecycle::Buildpack {
                        buildpacks: Vec::new(),
                        stack: super::apps::DEFAULT_STACK.into(),
                    });
                    state.create_app(&spec.name, &space_guid, lifecycle).map_err(|e| {
                        ApiError::unprocessable(format!("For application '{}': {}", spec.name, e.detail))
                    })?
                }
            };
            apps.push((guid, spec));
        }
        apps
    };
    let space = space_guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "space.apply_manifest",
        Some(("space".into(), format!("/v3/spaces/{space_guid}"))),
        Box::new(move |ctx| {
            for (guid, spec) in apps {
                apply_app(ctx, &space, &guid, spec)?;
            }
            Ok(Vec::new())
        }),
    ))
}

/// space_manifests_controller.rb refuses, before any job, buildpacks for an existing docker app and `docker` for an
/// existing buildpack app.
fn check_lifecycles(state: &CcState, space_guid: &str, specs: &[AppSpec]) -> ApiResult<()> {
    for spec in specs {
        let Some(app) = existing_app(state, space_guid, &spec.name) else { continue };
        let refused = match (&app.lifecycle, spec.buildpack_key) {
            (Lifecycle::Docker, Some(key)) => Some(format!("{key} cannot be configured for a docker lifecycle app.")),
            (Lifecycle::Buildpack { .. }, _) if spec.docker => {
                Some("Docker cannot be configured for a buildpack lifecycle app.".to_string())
            }
            _ => None,
        };
        if let Some(detail) = refused {
            return Err(ApiError::unprocessable(format!("For application '{}': {detail}", spec.name)));
        }
    }
    Ok(())
}

fn existing_app<'a>(state: &'a CcState, space_guid: &str, name: &str) -> Option<&'a crate::state::App> {
    state.apps.values().find(|a| a.space_guid == space_guid && a.name.eq_ignore_ascii_case(name))
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

fn apply_app(ctx: &Ctx, space_guid: &str, app_guid: &str, spec: AppSpec) -> ApiResult<()> {
    let fail = |detail: String| ApiError::unprocessable(format!("For application '{}': {detail}", spec.name));
    let max_timeout = ctx.config.maximum_health_check_timeout;
    let app_guid = {
        let mut state = ctx.state();
        let org_guid = state.space(space_guid)?.org_guid.clone();
        // AppApplyManifest#app_instance_not_found!: the app was deleted after the request.
        let mut app = state.apps.get(app_guid).cloned().ok_or_else(|| {
            ApiError::new(404, 10010, "CF-ResourceNotFound", format!("App with guid '{app_guid}' not found"))
        })?;
        let app_guid = app_guid.to_string();
        // AppUpdate#validate_not_changing_lifecycle_type! (app/actions/app_update.rb), an error of the job.
        if let Some(kind) = spec.lifecycle_type
            && kind != app.lifecycle.type_name()
        {
            return Err(fail(format!("Lifecycle type cannot be changed from {} to {kind}", app.lifecycle.type_name())));
        }
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
        if let Some(features) = &spec.features {
            super::features::bulk_update(&mut state, &app_guid, features).map_err(|e| fail(e.detail))?;
        }
        state.touch(&mut app.common);
        state.apps.insert(app_guid.clone(), app);

        // Services first: a missing instance fails the job before routes change.
        let mut to_bind = Vec::new();
        for (name, binding_name, parameters) in &spec.services {
            let instance =
                state.service_instances.values().find(|s| s.space_guid == space_guid && &s.name == name).ok_or_else(
                    || {
                        // AppApplyManifest#service_instance_not_found!: a NotFound the job prefixes with the app.
                        let detail = format!("For application '{}': Service instance '{name}' not found", spec.name);
                        ApiError::new(404, 10010, "CF-ResourceNotFound", detail)
                    },
                )?;
            to_bind.push((instance.common.guid.clone(), binding_name.clone(), parameters.clone()));
        }
        for (instance, binding_name, parameters) in to_bind {
            if !state.bindings.values().any(|b| b.app_guid == app_guid && b.service_instance_guid == instance) {
                super::services::insert_binding(&mut state, &app_guid, &instance, binding_name, parameters)
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
                    apply_health_check(&stored.health_check, check, false, max_timeout).map_err(|e| fail(e.detail))?;
            }
            if let Some(check) = &process.readiness_check {
                stored.readiness_check = apply_health_check(&stored.readiness_check, check, true, max_timeout)
                    .map_err(|e| fail(e.detail))?;
            }
            state.processes.insert(guid, stored);
        }

        if spec.no_route {
            super::routes::unmap_app(&mut state, &app_guid);
        } else {
            let mut wanted: Vec<RouteSpec> = spec.routes.clone().unwrap_or_default();
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
                wanted.push(RouteSpec { route: format!("{host}.{domain}"), ..RouteSpec::default() });
            }
            // ManifestRouteUpdate (app/actions/manifest_route_update.rb): every route is found or created before
            // any is mapped.
            let mut found = Vec::new();
            for wanted in &wanted {
                let for_route = |detail: String| fail(format!("For route '{}': {detail}", wanted.route));
                let (host, domain_guid, path) = resolve_route(&state, &org_guid, &wanted.route)
                    .ok_or_else(|| fail(format!("No domains exist for route {}", wanted.route)))?;
                let existing = state
                    .routes
                    .values()
                    .find(|r| r.domain_guid == domain_guid && r.host == host && r.path == path)
                    .map(|r| (r.common.guid.clone(), r.space_guid.clone()));
                let route_guid = match existing {
                    Some((guid, route_space)) if route_space == space_guid => guid,
                    Some(_) => return Err(fail("Routes cannot be mapped to destinations in different spaces".into())),
                    None => super::routes::insert_route(&mut state, &host, &path, &domain_guid, space_guid)
                        .map_err(|e| for_route(e.detail))?,
                };
                if let Some(lb) = &wanted.loadbalancing {
                    state.routes.get_mut(&route_guid).expect("route exists").loadbalancing = Some(lb.clone());
                }
                found.push((route_guid, wanted.protocol.clone()));
            }
            for (route_guid, protocol) in found {
                let route = state.routes.get_mut(&route_guid).expect("route exists");
                let mapped = route.destinations.iter().find(|d| d.app_guid == app_guid && d.process_type == "web");
                match (mapped.map(|d| d.protocol.clone()), protocol) {
                    (None, protocol) => route.destinations.push(crate::state::Destination::new(
                        &app_guid,
                        "web",
                        8080,
                        protocol.as_deref().unwrap_or("http1"),
                    )),
                    // UpdateRouteDestinations.replace: the route's destinations become this mapping alone.
                    (Some(current), Some(protocol)) if current != protocol => {
                        route.destinations = vec![crate::state::Destination::new(&app_guid, "web", 8080, &protocol)];
                    }
                    _ => {}
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
    let document = app_manifest(&state, &guid, ctx.config.cc_api_version)?;
    let yaml = serde_norway::to_string(&document).map_err(|_| ApiError::unknown_error())?;
    Ok(([(header::CONTENT_TYPE, "application/x-yaml")], yaml).into_response())
}

type Yaml = serde_norway::Value;

fn yaml(value: Value) -> Yaml {
    serde_norway::to_value(value).unwrap_or(Yaml::Null)
}

/// A hash in CC's key order with its nil values dropped (`.compact`).
fn ordered(pairs: Vec<(&str, Yaml)>) -> Yaml {
    let mut mapping = serde_norway::Mapping::new();
    for (key, value) in pairs {
        if !value.is_null() {
            mapping.insert(Yaml::String(key.to_string()), value);
        }
    }
    Yaml::Mapping(mapping)
}

/// `presence`: an empty list is no key at all.
fn presence(items: Vec<Yaml>) -> Yaml {
    if items.is_empty() { Yaml::Null } else { Yaml::Sequence(items) }
}

/// A log rate as the manifest presenter renders it: -1 stays the integer -1, others `human_readable_bytes`.
fn human_bytes(bytes: i64) -> Yaml {
    if bytes == -1 {
        return yaml(json!(-1));
    }
    yaml(json!(human_readable_bytes(bytes)))
}

/// ByteConverter#human_readable_byte_value: the largest unit of T, G, M, K, B that divides the value (`-1B` for -1).
fn human_readable_bytes(bytes: i64) -> String {
    let units = ["T", "G", "M", "K", "B"];
    let (power, unit) = units
        .iter()
        .enumerate()
        .map(|(i, u)| (4 - i as u32, *u))
        .find(|(power, _)| bytes % 1024_i64.pow(*power) == 0)
        .unwrap_or((0, "B"));
    format!("{}{unit}", bytes / 1024_i64.pow(power))
}

/// The presenters of app_manifest_presenter.rb, in its order: name and env, lifecycle (3.169.0 on), docker or
/// buildpacks and stack, features (3.197.0 on), services by name, routes, metadata, processes.
fn app_manifest(state: &CcState, guid: &str, version: CcApiVersion) -> ApiResult<Yaml> {
    let app = state.app(guid)?;
    let mut entry = vec![
        ("name", yaml(json!(app.name))),
        ("env", if app.env.is_empty() { Yaml::Null } else { yaml(json!(app.env)) }),
    ];
    if version.at_least(MANIFEST_LIFECYCLE_SINCE) {
        entry.push(("lifecycle", yaml(json!(app.lifecycle.type_name()))));
    }
    match &app.lifecycle {
        Lifecycle::Docker => {
            // DockerPresenter: the image (and user name) of the app's newest package.
            let package = state
                .packages
                .values()
                .filter(|p| p.app_guid == guid)
                .max_by(|a, b| a.common.created_at.cmp(&b.common.created_at));
            if let Some(docker) = package.and_then(|p| p.docker.as_ref()) {
                let docker =
                    ordered(vec![("image", yaml(json!(docker.image))), ("username", yaml(json!(docker.username)))]);
                entry.push(("docker", docker));
            }
        }
        Lifecycle::Buildpack { buildpacks, stack } => {
            let buildpacks = buildpacks.iter().map(|b| yaml(json!(b))).collect();
            entry.push(("buildpacks", presence(buildpacks)));
            entry.push(("stack", yaml(json!(stack))));
        }
    }
    if version.at_least(MANIFEST_FEATURES_SINCE) {
        let features = super::features::of_app(state, guid);
        entry.push(("features", ordered(features.into_iter().map(|(name, on)| (name, yaml(json!(on)))).collect())));
    }
    // ServicesPropertiesPresenter: instance names only, alphabetized ignoring case.
    let mut services: Vec<String> = state
        .bindings
        .values()
        .filter(|b| b.app_guid == guid)
        .filter_map(|b| state.service_instances.get(&b.service_instance_guid).map(|i| i.name.clone()))
        .collect();
    services.sort_by_key(|name| name.to_lowercase());
    entry.push(("services", presence(services.into_iter().map(|n| yaml(json!(n))).collect())));
    // RoutePropertiesPresenter: one entry per mapping, with its protocol and the route's options; none at all
    // (never `no-route`) for an app without routes.
    let mut routes: Vec<(String, Yaml)> = state
        .routes
        .values()
        .flat_map(|route| {
            let url = state.route_url(route);
            route.destinations.iter().filter(|d| d.app_guid == guid).map(move |d| {
                let options = ordered(vec![("loadbalancing", yaml(json!(route.loadbalancing)))]);
                let entry = ordered(vec![
                    ("route", yaml(json!(url))),
                    ("protocol", yaml(json!(d.protocol))),
                    ("options", options),
                ]);
                (url.to_lowercase(), entry)
            })
        })
        .collect();
    routes.sort_by(|a, b| a.0.cmp(&b.0));
    entry.push(("routes", presence(routes.into_iter().map(|(_, r)| r).collect())));
    let metadata = &app.common.metadata;
    let metadata = ordered(vec![
        ("labels", if metadata.labels.is_empty() { Yaml::Null } else { yaml(json!(metadata.labels)) }),
        ("annotations", if metadata.annotations.is_empty() { Yaml::Null } else { yaml(json!(metadata.annotations)) }),
    ]);
    let metadata_empty = metadata.as_mapping().is_some_and(|m| m.is_empty());
    entry.push(("metadata", if metadata_empty { Yaml::Null } else { metadata }));
    let mut processes: Vec<&crate::state::Process> = state.app_processes(guid).collect();
    processes.sort_by(|a, b| a.kind.cmp(&b.kind));
    let processes = processes.into_iter().map(process_manifest).collect();
    entry.push(("processes", presence(processes)));
    Ok(ordered(vec![("applications", Yaml::Sequence(vec![ordered(entry)]))]))
}

/// ProcessPropertiesPresenter#process_hash, compacted.
fn process_manifest(p: &crate::state::Process) -> Yaml {
    let (live, ready) = (&p.health_check, &p.readiness_check);
    ordered(vec![
        ("type", yaml(json!(p.kind))),
        ("instances", yaml(json!(p.instances))),
        ("memory", yaml(json!(format!("{}M", p.memory_in_mb)))),
        ("disk_quota", yaml(json!(format!("{}M", p.disk_in_mb)))),
        ("log-rate-limit-per-second", human_bytes(p.log_rate_limit)),
        ("command", yaml(json!(p.command))),
        ("health-check-type", yaml(json!(live.kind))),
        ("health-check-http-endpoint", yaml(json!(live.endpoint))),
        ("health-check-invocation-timeout", yaml(json!(live.invocation_timeout))),
        ("health-check-interval", yaml(json!(live.interval))),
        ("readiness-health-check-type", yaml(json!(ready.kind))),
        ("readiness-health-check-http-endpoint", yaml(json!(ready.endpoint))),
        ("readiness-health-check-invocation-timeout", yaml(json!(ready.invocation_timeout))),
        ("readiness-health-check-interval", yaml(json!(ready.interval))),
        ("timeout", yaml(json!(live.timeout))),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// lib/cloud_controller/app_manifest/byte_converter.rb#human_readable_byte_value and the `-1` of
    /// process_properties_presenter.rb#add_units_log_rate_limit.
    #[test]
    fn log_rates_render_and_parse_as_ccs_byte_converter() {
        let rendered = |bytes: i64| serde_norway::to_string(&human_bytes(bytes)).unwrap().trim().to_string();
        assert_eq!(rendered(1_048_576), "1M");
        assert_eq!(rendered(1536), "1536B");
        assert_eq!(rendered(3 << 30), "3G");
        assert_eq!(rendered(0), "0T");
        assert_eq!(rendered(-1), "-1");
        assert_eq!(log_rate(&json!("16K")).unwrap(), 16_384);
        assert_eq!(log_rate(&json!("1MB")).unwrap(), 1_048_576);
        assert_eq!(log_rate(&json!(-1)).unwrap(), -1);
        assert!(log_rate(&json!("12")).is_err(), "a unit is required");
        assert_eq!(log_rate(&json!(0)).unwrap(), 0);
        assert_eq!(log_rate(&json!("1.5K")).unwrap(), 1536);
    }

    /// byte_quantity.rb's BYTESPATTERN and ManifestProcessScaleMessage's "greater than 0MB", for memory and disk.
    #[test]
    fn sizes_are_read_as_byte_quantity_reads_them() {
        let spec = |memory: &str| {
            let map = json!({"memory": memory}).as_object().cloned().unwrap();
            process_spec(&map, "web").map(|p| p.scale.memory_in_mb).map_err(|e| e.detail)
        };
        for (size, mb) in [("65536K", 64), ("1.5G", 1536), ("2GiB", 2048), ("1mb", 1), ("1048576B", 1)] {
            assert_eq!(spec(size), Ok(Some(mb)), "{size}");
        }
        assert_eq!(spec("512K"), Err("Process \"web\": Memory must be greater than 0MB".to_string()));
        assert_eq!(spec("-1G"), Err("Process \"web\": Memory must be greater than 0MB".to_string()));
        assert_eq!(spec("1024"), Err("Memory must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB".to_string()));
        assert_eq!(spec("lots"), Err("Memory is not a number".to_string()));
    }
}
