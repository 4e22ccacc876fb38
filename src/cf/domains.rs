//! Domains: found by name for routes; an organization's default domain is in [`orgs`](crate::cf::orgs).

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, resource};
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToMany, ToOne, null_as_default};

resource! {
    /// A domain. Fixtures: `domain.json`, `domains_list.json`.
    pub struct Domain at "/v3/domains", domains {
        pub name: String,
        #[serde(default, deserialize_with = "null_as_default")]
        pub internal: bool,
        /// Non-null for tcp domains.
        #[serde(default)]
        pub(crate) router_group: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub supported_protocols: Vec<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: DomainRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DomainRelationships {
    /// `data: null` for a shared domain; the owning org for a private one.
    #[serde(default)]
    pub organization: ToOne,
    #[serde(default, deserialize_with = "null_as_default")]
    pub shared_organizations: ToMany,
}

impl Domain {
    /// Shared with every org (no owning organization).
    pub fn is_shared(&self) -> bool {
        self.relationships.organization.data.is_none()
    }

    pub fn is_tcp(&self) -> bool {
        self.router_group.as_ref().is_some_and(|g| !g.is_null()) || self.supported_protocols.iter().any(|p| p == "tcp")
    }
}

impl Api<Domain> {
    /// The domain called `name` (case-insensitive), if visible to the user.
    pub async fn by_name(&self, name: &str) -> Result<Option<Domain>> {
        self.first(&ListParams::new().filter("names", [name])).await
    }
}
