//! Organizations: looked up by name to find the space (`GET /v3/organizations?names=`).

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, resource};
use crate::cf::domains::Domain;
use crate::cf::error::{Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToOne, null_as_default};

resource! {
    /// An organization. Fixtures: `organization.json`, `organizations_list.json`.
    pub struct Organization at "/v3/organizations", orgs {
        pub name: String,
        #[serde(default)]
        pub suspended: Option<bool>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: OrgRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct OrgRelationships {
    /// The quota applied; a space often has none.
    #[serde(default)]
    pub quota: ToOne,
}

impl Api<Organization> {
    /// The organization called `name` (case-insensitive in CF), if the user can see it.
    pub async fn by_name(&self, name: &str) -> Result<Option<Organization>> {
        self.first(&ListParams::new().filter("names", [name])).await
    }

    /// Like [`by_name`](Self::by_name), with a clear error when it is missing.
    pub async fn require_by_name(&self, name: &str) -> Result<Organization> {
        self.by_name(name).await?.ok_or_else(|| {
            Error::Failed(format!("organization '{name}' not found (or the user is not a member of it)"))
        })
    }

    /// `GET /v3/organizations/:guid/domains/default`: the domain a route gets when none is named.
    pub async fn default_domain(&self, org_guid: &str) -> Result<Domain> {
        self.cf.get(&format!("{}/domains/default", self.path_of(org_guid))).await
    }
}
