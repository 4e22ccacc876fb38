//! What CC asks Diego to run for a process (the desired LRP): droplet, command, environment (app env,
//! VCAP_APPLICATION, VCAP_SERVICES) and health checks, captured when the app starts, as CF does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::shared::Shared;
use crate::state::{App, AppState, DropletState, HealthCheck, State};

#[derive(Debug, Clone)]
pub struct LaunchSpec {
    pub app_guid: String,
    pub process_guid: String,
    pub process_type: String,
    pub version: String,
    pub instances: u32,
    pub droplet_dir: PathBuf,
    pub command: String,
    /// The app's env vars plus VCAP_SERVICES; per-instance variables are added at spawn.
    pub env: Vec<(String, String)>,
    /// VCAP_APPLICATION without the per-instance fields.
    pub vcap_application: Value,
    pub health_check: HealthCheck,
    pub readiness_check: HealthCheck,
    pub health_timeout: Duration,
    pub check_interval: Duration,
    pub memory_in_mb: u64,
}

impl LaunchSpec {
    /// `APP/PROC/WEB`, the log source type of this process's output.
    pub fn source_type(&self) -> String {
        format!("APP/PROC/{}", self.process_type.to_ascii_uppercase())
    }
}

/// The LRPs CC desires for an app now: one per process with instances, if the app is started with a droplet.
pub fn desired_for_app(shared: &Arc<Shared>, app_guid: &str) -> Vec<LaunchSpec> {
    let state = shared.state();
    let Some(app) = state.apps.get(app_guid) else { return Vec::new() };
    if app.state != AppState::Started {
        return Vec::new();
    }
    let Some(droplet) = app.droplet_guid.as_ref().and_then(|g| state.droplets.get(g)) else { return Vec::new() };
    if droplet.state != DropletState::Staged {
        return Vec::new();
    }
    let env = app_env(&state, app);
    state
        .app_processes(app_guid)
        .map(|process| {
            let command = process.command.clone().or_else(|| state.detected_command(process)).unwrap_or_default();
            let vcap_application = vcap_application(
                &state,
                app,
                &shared.urls.api,
                json!({
                    "application_version": process.version,
                    "host": "0.0.0.0",
                    "limits": {"disk": process.disk_in_mb, "fds": 16384, "mem": process.memory_in_mb},
                    "process_id": process.common.guid,
                    "process_type": process.kind,
                    "version": process.version,
                }),
            );
            LaunchSpec {
                app_guid: app_guid.to_string(),
                process_guid: process.common.guid.clone(),
                process_type: process.kind.clone(),
                version: process.version.clone(),
                instances: process.instances,
                droplet_dir: shared.blobs.droplet_dir(&droplet.common.guid),
                command,
                env: env.clone(),
                vcap_application,
                health_check: process.health_check.clone(),
                readiness_check: process.readiness_check.clone(),
                health_timeout: Duration::from_secs(
                    process.health_check.timeout.unwrap_or(shared.config.health_check_timeout_secs),
                ),
                check_interval: process
                    .health_check
                    .interval
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_millis(shared.config.health_check_interval_ms)),
                memory_in_mb: process.memory_in_mb,
            }
        })
        .filter(|spec| spec.instances > 0)
        .collect()
}

/// VCAP_APPLICATION's fields that name the app, its routes, space, org and API, with `extra`'s fields (a
/// process's or a task's version and limits) added: what CC's `vcap_application` gives every process and task,
/// and the environment endpoint shows.
pub fn vcap_application(state: &State, app: &App, api: &str, extra: Value) -> Value {
    let space = state.spaces.get(&app.space_guid);
    let org = state.org_of_space(&app.space_guid);
    let uris: Vec<String> = state.app_routes(&app.common.guid).map(|r| state.route_url(r)).collect();
    let mut fields = json!({
        "application_id": app.common.guid,
        "application_name": app.name,
        "application_uris": uris,
        "cf_api": api,
        "name": app.name,
        "organization_id": org.map(|o| o.common.guid.clone()),
        "organization_name": org.map(|o| o.name.clone()),
        "space_id": app.space_guid,
        "space_name": space.map(|s| s.name.clone()),
        "uris": uris,
    });
    if let (Some(fields), Value::Object(extra)) = (fields.as_object_mut(), extra) {
        fields.extend(extra);
    }
    fields
}

/// The app's env vars plus VCAP_SERVICES, what every process and task of the app gets.
pub(super) fn app_env(state: &State, app: &App) -> Vec<(String, String)> {
    app.env
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
        .chain([("VCAP_SERVICES".to_string(), vcap_services(state, &app.common.guid).to_string())])
        .collect()
}

/// VCAP_SERVICES for the user-provided instances bound to an app, in CF's shape.
pub fn vcap_services(state: &State, app_guid: &str) -> Value {
    let mut bound: Vec<Value> = state
        .bindings
        .values()
        .filter(|b| b.app_guid == app_guid)
        .filter_map(|b| {
            let instance = state.service_instances.get(&b.service_instance_guid)?;
            Some(json!({
                "label": "user-provided",
                "name": b.name.clone().unwrap_or_else(|| instance.name.clone()),
                "tags": instance.tags,
                "instance_guid": instance.common.guid,
                "instance_name": instance.name,
                "binding_guid": b.common.guid,
                "binding_name": b.name,
                "credentials": instance.credentials,
                "syslog_drain_url": instance.syslog_drain_url,
                "volume_mounts": [],
            }))
        })
        .collect();
    if bound.is_empty() {
        return json!({});
    }
    bound.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({"user-provided": bound})
}
