//! CF's native rolling/canary deployments (`/v3/deployments`): read and cancelled by the client when one is in
//! flight on an app it touches (scaling is refused during a deployment); the blue-green deploy itself uses two
//! apps instead.

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource};
use crate::cf::client::CfClient;
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{AppRelationship, GuidRef, Links, Metadata};

/// A deployment. Fixture: `deployment.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Deployment {
    pub guid: String,
    pub status: DeploymentStatus,
    #[serde(default)]
    pub strategy: Option<String>,
    #[serde(default)]
    pub options: Option<serde_json::Value>,
    #[serde(default)]
    pub droplet: Option<GuidRef>,
    #[serde(default)]
    pub previous_droplet: Option<GuidRef>,
    #[serde(default)]
    pub new_processes: Vec<serde_json::Value>,
    #[serde(default)]
    pub revision: Option<serde_json::Value>,
    #[serde(default)]
    pub relationships: AppRelationship,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub links: Links,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DeploymentStatus {
    /// `ACTIVE` or `FINALIZED`.
    pub value: String,
    /// `DEPLOYING`, `PAUSED`, `CANCELING`, `DEPLOYED`, `CANCELED`, `SUPERSEDED`.
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub details: Option<serde_json::Value>,
}

impl Resource for Deployment {
    const PATH: &'static str = "/v3/deployments";
    const KIND: &'static str = "deployment";
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl CfClient {
    pub fn deployments(&self) -> Api<Deployment> {
        self.api()
    }
}

impl Api<Deployment> {
    /// The app's ACTIVE deployments.
    pub async fn active_for_app(&self, app_guid: &str) -> Result<Vec<Deployment>> {
        self.list(&ListParams::new().filter("app_guids", [app_guid]).filter("status_values", ["ACTIVE"])).await
    }

    /// `POST /v3/deployments/:guid/actions/cancel` (rolls back to the previous droplet).
    pub async fn cancel(&self, guid: &str) -> Result<()> {
        self.cf.post_action_ignoring_body(&format!("{}/actions/cancel", self.path_of(guid))).await
    }
}
