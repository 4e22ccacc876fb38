//! Manifests applied server-side: `apply_manifest` (a job) and `manifest_diff`. An app's generated manifest is
//! [`Api<App>::manifest`](crate::cf::Api::manifest).

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::cf::client::{CfClient, Req, ReqBody};
use crate::cf::error::{Error, Result};
use crate::cf::jobs::Job;
use crate::cf::types::null_as_default;

/// `POST /v3/spaces/:guid/manifest_diff` answer. Fixture: `manifest_diff.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ManifestDiff {
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff: Vec<DiffEntry>,
}

/// One JSON-Patch-like change: `{"op":"replace","path":"/applications/0/memory","was":"256M","value":"512M"}`;
/// a `move` carries `from` (relative to the array, e.g. `"/0"`) and neither `was` nor `value`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DiffEntry {
    pub op: String,
    pub path: String,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub was: Option<serde_json::Value>,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

/// Manifest operations; see [`CfClient::manifests`].
#[derive(Clone)]
pub struct Manifests {
    cf: CfClient,
}

impl CfClient {
    pub fn manifests(&self) -> Manifests {
        Manifests { cf: self.clone() }
    }
}

impl Manifests {
    /// `POST /v3/spaces/:guid/actions/apply_manifest` with the YAML, then waits for the job (additive: it never
    /// removes env vars, routes or services, so applying the same manifest twice is harmless and retried).
    pub async fn apply(&self, space_guid: &str, yaml: &str, timeout: Duration) -> Result<Job> {
        let path = format!("/v3/spaces/{space_guid}/actions/apply_manifest");
        let mut req = Req::path(Method::POST, &path).idempotent(true);
        req.body = ReqBody::Yaml(yaml.to_owned());
        let answer = self.cf.answer(&req).await?;
        if answer.status != reqwest::StatusCode::ACCEPTED {
            return Err(Error::Decode {
                method: "POST".into(),
                path,
                message: format!("expected 202 Accepted with a job, got {}", answer.status),
            });
        }
        let job = self.cf.job_url(&answer)?;
        self.cf.wait_for_job(&job, "POST", &path, timeout).await
    }

    /// `POST /v3/spaces/:guid/manifest_diff` (experimental in CF).
    pub async fn diff(&self, space_guid: &str, yaml: &str) -> Result<ManifestDiff> {
        let mut req = Req::path(Method::POST, format!("/v3/spaces/{space_guid}/manifest_diff")).idempotent(true);
        req.body = ReqBody::Yaml(yaml.to_owned());
        self.cf.answer(&req).await?.json()
    }
}
