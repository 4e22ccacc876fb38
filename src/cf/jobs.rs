//! Async jobs (`GET /v3/jobs/:guid`): what deletes, apply_manifest, managed-service bindings and droplet uploads
//! hand back with a 202. Waiting for one is [`CfClient::wait_for_job`](crate::cf::CfClient::wait_for_job).

use serde::{Deserialize, Serialize};

use crate::cf::api::resource;
use crate::cf::error::ApiError;
use crate::cf::types::{Links, Warning, null_as_default};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Processing,
    /// Waiting on a service broker's last_operation.
    Polling,
    Complete,
    Failed,
    #[serde(other)]
    Unknown,
}

/// A job. Fixtures: `job.json`, `job_failed.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Job {
    pub guid: String,
    /// `app.delete`, `space.apply_manifest`, `service_bindings.create`, ….
    #[serde(default, deserialize_with = "null_as_default")]
    pub operation: String,
    pub state: JobState,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ApiError>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub warnings: Vec<Warning>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

resource!(@kind Job at "/v3/jobs", pub jobs);
