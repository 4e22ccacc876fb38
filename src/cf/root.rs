//! The discovery documents: `GET /` (where UAA and Log Cache are), `GET /v3` and `GET /v3/info`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cf::client::CfClient;
use crate::cf::error::Result;

/// A root link, optionally with `meta` (`version` for the CC APIs, `host_key_fingerprint` for SSH).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RootLink {
    pub href: String,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, serde_json::Value>>,
}

/// `GET /`: the global root. Links can be `null` (e.g. `credhub`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Root {
    #[serde(default)]
    pub links: BTreeMap<String, Option<RootLink>>,
}

impl Root {
    pub fn link(&self, name: &str) -> Option<&RootLink> {
        self.links.get(name).and_then(Option::as_ref)
    }

    /// The CC v3 API version (`links.cloud_controller_v3.meta.version`), e.g. `3.228.0`.
    pub fn v3_version(&self) -> Option<String> {
        self.link("cloud_controller_v3")?.meta.as_ref()?.get("version")?.as_str().map(str::to_owned)
    }
}

/// `GET /v3`: the v3 root, one link per resource collection.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct V3Root {
    #[serde(default)]
    pub links: BTreeMap<String, Option<RootLink>>,
}

/// `GET /v3/info` (anonymous).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Info {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub build: Option<String>,
    /// A number in the upstream example, a string on some foundations.
    #[serde(default)]
    pub version: Option<serde_json::Value>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub osbapi_version: Option<String>,
    #[serde(default)]
    pub cli_version: Option<CliVersion>,
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    #[serde(default)]
    pub custom: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CliVersion {
    #[serde(default)]
    pub minimum: Option<String>,
    #[serde(default)]
    pub recommended: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RateLimits {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub general_limit: Option<u64>,
    #[serde(default)]
    pub reset_interval_in_minutes: Option<u64>,
}

impl CfClient {
    /// `GET /v3/info`.
    pub async fn info(&self) -> Result<Info> {
        self.get("/v3/info").await
    }
}
