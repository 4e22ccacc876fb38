//! The discovery documents: `GET /` (where UAA and Log Cache are), `GET /v3` and `GET /v3/info`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cf::client::CfClient;
use crate::cf::error::Result;
use crate::cf::types::null_as_default;

/// A root link, optionally with `meta` (`version` for the CC APIs, `host_key_fingerprint` for SSH).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RootLink {
    #[serde(default, deserialize_with = "null_as_default")]
    pub href: String,
    #[serde(default)]
    pub meta: Option<BTreeMap<String, serde_json::Value>>,
}

/// `GET /`: the global root. Links can be `null` (e.g. `credhub`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Root {
    #[serde(default, deserialize_with = "null_as_default")]
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

/// The oldest CC API version the client works with: 3.86.0, the first Cloud Controller that serves
/// `GET /v3/droplets/:guid/download` (the `get` step's `download_droplet`; CC's commit e9310797e1). Everything
/// else the resource calls is older: organization and space quotas (3.81), `include=space.organization` on apps
/// (3.78), the organization usage summary (3.77), inserting route destinations and `label_selector` on routes
/// (3.74), droplet uploads (3.73), the default domain (3.72), v3 resource matches (3.70), metadata on package and
/// build creates (3.65, 3.67), the app manifest (3.46). Newer fields are only sent when a foundation showed them
/// first (a destination's `protocol`, 3.105) or looked for and done without (the space usage summary, 3.200).
///
/// Checked at discovery against `links.cloud_controller_v3.meta.version` of `GET /`. Every Cloud Controller has
/// rendered that version since it first linked its v3 API (2016), so a root without one is not a stock CC (a
/// gateway in front of it, or another implementation of the API): the client warns that it cannot check and
/// goes on, and an endpoint such a foundation lacks fails on its own when it is called.
pub const MIN_CC_API_VERSION: ApiVersion = ApiVersion { major: 3, minor: 86, patch: 0 };

/// A CC API version, `major.minor.patch`; a suffix such as `+build` is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ApiVersion {
    /// Reads `3.228.0`, `3.86` or `3.117.0+cf-k8s`; `None` for anything else.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let core = text.trim().split(['+', '-']).next()?;
        let mut parts = core.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().transpose().ok()?.unwrap_or(0);
        parts.next().is_none().then_some(ApiVersion { major, minor, patch })
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `GET /v3`: the v3 root, one link per resource collection.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct V3Root {
    #[serde(default, deserialize_with = "null_as_default")]
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
    pub(crate) osbapi_version: Option<String>,
    #[serde(default)]
    pub cli_version: Option<CliVersion>,
    #[serde(default)]
    pub rate_limits: Option<RateLimits>,
    #[serde(default)]
    pub(crate) custom: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CliVersion {
    #[serde(default)]
    pub minimum: Option<String>,
    #[serde(default)]
    pub(crate) recommended: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RateLimits {
    #[serde(default, deserialize_with = "null_as_default")]
    pub enabled: bool,
    #[serde(default)]
    pub general_limit: Option<u64>,
    #[serde(default)]
    pub(crate) reset_interval_in_minutes: Option<u64>,
}

impl CfClient {
    /// `GET /v3/info`.
    pub async fn info(&self) -> Result<Info> {
        self.get("/v3/info").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_numerically() {
        assert_eq!(ApiVersion::parse("3.228.0"), Some(ApiVersion { major: 3, minor: 228, patch: 0 }));
        assert_eq!(ApiVersion::parse(" 3.86 "), Some(ApiVersion { major: 3, minor: 86, patch: 0 }));
        assert_eq!(ApiVersion::parse("3.117.0+cf-k8s"), Some(ApiVersion { major: 3, minor: 117, patch: 0 }));
        for bad in ["", "3", "v3.1.0", "3.x.0", "3.1.0.4"] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert!(ApiVersion::parse("3.100.0").unwrap() > ApiVersion::parse("3.99.9").unwrap());
        assert_eq!(MIN_CC_API_VERSION.to_string(), "3.86.0");
    }
}
