//! Processes: the app's `web` (and other) processes, their command and health checks (liveness and readiness),
//! scaling, and per-instance stats (state, `routable`, crash details) for deciding that an app is healthy.

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, resource};
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToOne, null_as_default};

resource! {
    /// A process. Fixtures: `process.json`, `processes_list.json`.
    pub struct Process at "/v3/processes", processes {
        #[serde(rename = "type")]
        pub kind: String,
        /// `None`: the buildpack's or Procfile's command.
        #[serde(default)]
        pub command: Option<String>,
        #[serde(default)]
        pub user: Option<String>,
        #[serde(default)]
        pub instances: u32,
        #[serde(default)]
        pub memory_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) disk_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) log_rate_limit_in_bytes_per_second: Option<i64>,
        #[serde(default)]
        pub health_check: Option<HealthCheck>,
        /// Newer CC versions only.
        #[serde(default)]
        pub readiness_health_check: Option<HealthCheck>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: ProcessRelationships,
        /// Changes whenever the process is recreated in the runtime.
        #[serde(default)]
        pub version: Option<String>,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ProcessRelationships {
    #[serde(default)]
    pub app: ToOne,
    #[serde(default)]
    pub(crate) revision: Option<ToOne>,
}

/// `{"type":"http","data":{"endpoint":"/health","timeout":120,"invocation_timeout":5,"interval":10}}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HealthCheck {
    /// `port`, `process` or `http`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: HealthCheckData,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HealthCheckData {
    /// Seconds the app may take to become healthy (liveness only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) invocation_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) interval: Option<u32>,
    /// http checks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Changes for `PATCH /v3/processes/:guid` (they reach running instances after a restart).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessUpdate {
    /// `Some(None)` sends `"command": null` (back to the detected command).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_health_check: Option<HealthCheck>,
}

/// `POST /v3/processes/:guid/actions/scale`; unset fields are left as they are.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Scale {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_in_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_in_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_rate_limit_in_bytes_per_second: Option<i64>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    Starting,
    Running,
    Crashed,
    Stopping,
    Down,
    #[serde(other)]
    Unknown,
}

/// One instance in `GET /v3/processes/:guid/stats`. Fixture: `process_stats.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct InstanceStats {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub index: u32,
    pub state: InstanceState,
    /// `None` when Diego has no readiness support.
    #[serde(default)]
    pub routable: Option<bool>,
    #[serde(default)]
    pub uptime: Option<u64>,
    /// Placement or crash reason.
    #[serde(default)]
    pub(crate) details: Option<String>,
    #[serde(default)]
    pub usage: Option<InstanceUsage>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub(crate) instance_guid: Option<String>,
    #[serde(default)]
    pub(crate) instance_internal_ip: Option<String>,
    #[serde(default)]
    pub instance_ports: Option<Vec<InstancePort>>,
    #[serde(default)]
    pub mem_quota: Option<u64>,
    #[serde(default)]
    pub disk_quota: Option<u64>,
    #[serde(default)]
    pub(crate) fds_quota: Option<u64>,
    #[serde(default)]
    pub(crate) log_rate_limit: Option<i64>,
    #[serde(default)]
    pub(crate) isolation_segment: Option<String>,
}

impl InstanceStats {
    /// RUNNING and not marked unroutable by a readiness check.
    pub fn is_ready(&self) -> bool {
        self.state == InstanceState::Running && self.routable != Some(false)
    }
}

/// `usage`; can be `{}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct InstanceUsage {
    /// May carry nanoseconds or `+00:00`.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub(crate) cpu: Option<f64>,
    #[serde(default)]
    pub(crate) cpu_entitlement: Option<f64>,
    #[serde(default)]
    pub mem: Option<u64>,
    #[serde(default)]
    pub(crate) disk: Option<u64>,
    #[serde(default)]
    pub(crate) log_rate: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct InstancePort {
    #[serde(default)]
    pub external: Option<u32>,
    #[serde(default)]
    pub internal: Option<u32>,
    #[serde(default)]
    pub(crate) external_tls_proxy_port: Option<u32>,
    #[serde(default)]
    pub(crate) internal_tls_proxy_port: Option<u32>,
}

/// `{"resources":[…]}` (not paginated).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ProcessStats {
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<InstanceStats>,
}

impl ProcessStats {
    /// Every instance RUNNING and routable (and there is at least one, unless none is wanted).
    pub fn all_ready(&self, wanted: u32) -> bool {
        self.resources.len() >= wanted as usize
            && self.resources.iter().filter(|i| i.is_ready()).count() >= wanted as usize
    }

    pub fn any_crashed(&self) -> bool {
        self.resources.iter().any(|i| i.state == InstanceState::Crashed)
    }
}

impl Api<Process> {
    /// `GET /v3/apps/:guid/processes`.
    pub async fn for_app(&self, app_guid: &str) -> Result<Vec<Process>> {
        Ok(self.cf.list_all(&format!("/v3/apps/{app_guid}/processes"), &ListParams::new()).await?.resources)
    }

    /// `GET /v3/apps/:guid/processes/:type` (e.g. `web`).
    pub async fn of_app(&self, app_guid: &str, kind: &str) -> Result<Process> {
        self.cf.get(&format!("/v3/apps/{app_guid}/processes/{kind}")).await
    }

    /// `PATCH /v3/processes/:guid`.
    pub async fn update(&self, guid: &str, update: &ProcessUpdate) -> Result<Process> {
        self.cf.patch(&self.path_of(guid), update).await
    }

    /// `POST /v3/processes/:guid/actions/scale` (sets values, so it is retried).
    pub async fn scale(&self, guid: &str, scale: &Scale) -> Result<Process> {
        self.cf.post_action(&format!("{}/actions/scale", self.path_of(guid)), Some(scale)).await
    }

    /// `GET /v3/processes/:guid/stats` (a 503 while Diego is unreachable is retried).
    pub async fn stats(&self, guid: &str) -> Result<ProcessStats> {
        self.cf.get(&format!("{}/stats", self.path_of(guid))).await
    }
}
