//! Service credential bindings: list blue's app bindings (with their service instances) and create the same
//! ones for green before it stages, so it starts with the same `VCAP_SERVICES`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cf::api::{Api, Resource, resource};
use crate::cf::client::Req;
use crate::cf::error::{Error, Result};
use crate::cf::paginate::{ListParams, Listed};
use crate::cf::service_instances::{LastOperation, ServiceInstance};
use crate::cf::types::{MetadataPatch, ToOne, null_as_default};

resource! {
    /// A binding. Fixtures: `service_credential_binding.json`, `service_credential_bindings_list.json`.
    pub struct ServiceCredentialBinding at "/v3/service_credential_bindings", bindings {
        #[serde(default)]
        pub name: Option<String>,
        /// `app` or `key`.
        #[serde(rename = "type")]
        pub kind: String,
        #[serde(default)]
        pub last_operation: Option<LastOperation>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: BindingRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct BindingRelationships {
    #[serde(default)]
    pub app: Option<ToOne>,
    #[serde(default)]
    pub(crate) service_instance: ToOne,
}

impl ServiceCredentialBinding {
    pub fn app_guid(&self) -> Option<&str> {
        self.relationships.app.as_ref().and_then(ToOne::guid)
    }

    pub fn service_instance_guid(&self) -> Option<&str> {
        self.relationships.service_instance.guid()
    }
}

/// CC's `ServiceFetchBindingParametersNotSupported` (errors/v2.yml).
const PARAMETERS_NOT_SUPPORTED: i64 = 90007;

/// A binding to create. `parameters` can be read back only from a managed service that allows it, so they come
/// from config.
#[derive(Clone, Debug, Default)]
pub struct NewBinding {
    pub app_guid: String,
    pub service_instance_guid: String,
    pub name: Option<String>,
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,
    pub metadata: MetadataPatch,
}

impl Api<ServiceCredentialBinding> {
    /// The app's bindings, with their service instances (`included.service_instances`).
    pub async fn for_app(&self, app_guid: &str) -> Result<(Vec<ServiceCredentialBinding>, Vec<ServiceInstance>)> {
        let listed: Listed<ServiceCredentialBinding> = self
            .list_with_included(
                &ListParams::new().filter("app_guids", [app_guid]).filter("type", ["app"]).include("service_instance"),
            )
            .await?;
        let instances = listed.included.get("service_instances")?;
        Ok((listed.resources, instances))
    }

    /// `GET /v3/service_credential_bindings/:guid/parameters`: the parameters the broker keeps for the binding;
    /// `None` when the service does not let them be read (`service_binding_read.rb`: a user-provided instance, or
    /// an offering not `bindings_retrievable`, answer 400 CF-ServiceFetchBindingParametersNotSupported). Their
    /// values are masked in all later output.
    pub(crate) async fn parameters(&self, guid: &str) -> Result<Option<Map<String, Value>>> {
        match self.cf.get::<Map<String, Value>>(&format!("{}/{guid}/parameters", ServiceCredentialBinding::PATH)).await
        {
            Ok(parameters) => {
                // They may hold credentials, and they go into the candidate's manifest.
                parameters.values().for_each(crate::redact::register_strings_in);
                Ok(Some(parameters))
            }
            Err(e) if e.cf().is_some_and(|c| c.code == Some(PARAMETERS_NOT_SUPPORTED)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The binding of this app to this instance, if any.
    pub(crate) async fn find_for(
        &self,
        app_guid: &str,
        service_instance_guid: &str,
    ) -> Result<Option<ServiceCredentialBinding>> {
        let found = self
            .list(
                &ListParams::new()
                    .filter("app_guids", [app_guid])
                    .filter("service_instance_guids", [service_instance_guid])
                    .filter("type", ["app"]),
            )
            .await?;
        Ok(found
            .into_iter()
            .find(|b| b.app_guid() == Some(app_guid) && b.service_instance_guid() == Some(service_instance_guid)))
    }

    /// `POST /v3/service_credential_bindings` type app. User-provided instances answer 201 with the binding;
    /// managed ones 202 with a job, which is waited for (within `timeout`) before the binding is read. If the
    /// answer is lost, the binding is looked up by app and instance before it is created again; an existing
    /// binding of the same pair is returned as it is.
    pub async fn create(&self, binding: &NewBinding, timeout: Duration) -> Result<ServiceCredentialBinding> {
        #[derive(Serialize)]
        struct Relationships {
            app: ToOne,
            service_instance: ToOne,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            relationships: Relationships,
            #[serde(skip_serializing_if = "Option::is_none")]
            parameters: Option<&'a BTreeMap<String, serde_json::Value>>,
            #[serde(skip_serializing_if = "MetadataPatch::is_empty")]
            metadata: &'a MetadataPatch,
        }
        let body = Body {
            kind: "app",
            name: binding.name.as_deref(),
            relationships: Relationships {
                app: ToOne::to(&binding.app_guid),
                service_instance: ToOne::to(&binding.service_instance_guid),
            },
            parameters: binding.parameters.as_ref(),
            metadata: &binding.metadata,
        };
        let find = || self.find_for(&binding.app_guid, &binding.service_instance_guid);
        let create = || async {
            let req = Req::path(reqwest::Method::POST, ServiceCredentialBinding::PATH).json(&body)?;
            let answer = match self.cf.answer(&req).await {
                Ok(answer) => answer,
                Err(e) if e.cf().is_some_and(|c| c.status == Some(422) && c.detail.contains("already bound")) => {
                    return find().await?.ok_or(e);
                }
                Err(e) => return Err(e),
            };
            if answer.status == reqwest::StatusCode::ACCEPTED {
                let job = self.cf.job_url(&answer)?;
                self.cf.wait_for_job(&job, "POST", ServiceCredentialBinding::PATH, timeout).await?;
                return find().await?.ok_or_else(|| {
                    Error::Failed(format!(
                        "binding app {} to service instance {} completed but the binding is not there",
                        binding.app_guid, binding.service_instance_guid
                    ))
                });
            }
            answer.json()
        };
        self.cf.create_or_find("service binding", create, find).await
    }
}
