//! Spaces: looked up by name within an organization (`GET /v3/spaces?names=&organization_guids=`).

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, resource};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToOne, null_as_default};

resource! {
    /// A space. Fixtures: `space.json`, `spaces_list.json`.
    pub struct Space at "/v3/spaces", spaces {
        pub name: String,
        #[serde(default)]
        pub suspended: Option<bool>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: SpaceRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SpaceRelationships {
    #[serde(default)]
    pub organization: ToOne,
    /// The quota applied; a space often has none.
    #[serde(default)]
    pub quota: ToOne,
}

impl Space {
    pub fn org_guid(&self) -> Option<&str> {
        self.relationships.organization.guid()
    }
}

impl Api<Space> {
    /// The space called `name` in the organization, if the user can see it.
    pub async fn by_name(&self, org_guid: &str, name: &str) -> Result<Option<Space>> {
        self.first(&ListParams::new().filter("names", [name]).filter("organization_guids", [org_guid])).await
    }

    /// Like [`by_name`](Self::by_name), with a clear error when it is missing.
    pub async fn require_by_name(&self, org_guid: &str, name: &str) -> Result<Space> {
        self.by_name(org_guid, name)
            .await?
            .ok_or_else(|| Error::Failed(format!("space '{name}' not found (or the user has no role in it)")))
    }
}
