//! Service instances: found by name in a space (to bind green to the same services as blue). Creating a
//! user-provided instance is here for tests and demos.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource, resource};
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToOne, null_as_default};

resource! {
    /// A service instance (managed or user-provided).
    pub struct ServiceInstance at "/v3/service_instances", service_instances {
        pub name: String,
        /// `managed` or `user-provided`.
        #[serde(rename = "type", default)]
        pub kind: Option<String>,
        #[serde(default)]
        pub last_operation: Option<LastOperation>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: ServiceInstanceRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ServiceInstanceRelationships {
    #[serde(default)]
    pub space: ToOne,
    #[serde(default)]
    pub(crate) service_plan: Option<ToOne>,
}

/// `last_operation` of an instance or binding: `{type: create|update|delete, state: initial|in progress|succeeded|failed}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LastOperation {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

impl Api<ServiceInstance> {
    /// The instance called `name` in the space.
    pub async fn by_name(&self, space_guid: &str, name: &str) -> Result<Option<ServiceInstance>> {
        let found = self.list(&ListParams::new().filter("names", [name]).filter("space_guids", [space_guid])).await?;
        Ok(found.into_iter().find(|s| s.name == name))
    }

    /// `POST /v3/service_instances` type user-provided (201, synchronous). Looked up by name after an
    /// ambiguous failure.
    pub async fn create_user_provided(
        &self,
        space_guid: &str,
        name: &str,
        credentials: &BTreeMap<String, serde_json::Value>,
    ) -> Result<ServiceInstance> {
        #[derive(Serialize)]
        struct Relationships {
            space: ToOne,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
            credentials: &'a BTreeMap<String, serde_json::Value>,
            relationships: Relationships,
        }
        let body = Body {
            kind: "user-provided",
            name,
            credentials,
            relationships: Relationships { space: ToOne::to(space_guid) },
        };
        self.cf
            .create_or_find(
                &format!("service instance {name}"),
                || self.cf.post(ServiceInstance::PATH, &body),
                || self.by_name(space_guid, name),
            )
            .await
    }
}
