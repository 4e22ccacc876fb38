//! Network policies: the policy server's external API (cloudfoundry/cf-networking-release), on the API's host
//! (`links.network_policy_v1` of `GET /`). An app's policies are listed with `?id=<guid>`
//! (source or destination), created with `POST …/policies` and deleted with `POST …/policies/delete`; both are
//! no-ops for what already is (or is not) there, so they are safe to send again.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::cf::client::{CfClient, Req};
use crate::cf::error::Result;

/// One policy: the source app may open connections to the destination app's `protocol` ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub(crate) source: PolicySource,
    pub(crate) destination: PolicyDestination,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicySource {
    pub(crate) id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PolicyDestination {
    pub(crate) id: String,
    pub(crate) protocol: String,
    pub(crate) ports: Ports,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ports {
    pub(crate) start: u16,
    pub(crate) end: u16,
}

impl Policy {
    /// The same policy with `from` replaced by `to` wherever it is the source or the destination.
    pub(crate) fn moved(&self, from: &str, to: &str) -> Policy {
        let swap = |id: &str| if id == from { to.to_owned() } else { id.to_owned() };
        Policy {
            source: PolicySource { id: swap(&self.source.id) },
            destination: PolicyDestination { id: swap(&self.destination.id), ..self.destination.clone() },
        }
    }

    /// `source → destination protocol ports`, guids shortened to names by `name`.
    pub(crate) fn describe(&self, name: impl Fn(&str) -> String) -> String {
        let Ports { start, end } = self.destination.ports;
        let ports = if start == end { start.to_string() } else { format!("{start}-{end}") };
        let (source, destination) = (name(&self.source.id), name(&self.destination.id));
        format!("{source} → {destination} {} {ports}", self.destination.protocol)
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    policies: Vec<Policy>,
}

/// Where CC's root links the policy server (`links.network_policy_v1`, root_controller.rb): on the API's host,
/// whatever the foundation, so it is not discovered; a foundation without container networking answers 404.
const BASE: &str = "/networking/v1/external";

/// The policy server of a foundation.
pub(crate) struct PolicyServer<'a> {
    cf: &'a CfClient,
}

impl CfClient {
    pub(crate) fn policy_server(&self) -> PolicyServer<'_> {
        PolicyServer { cf: self }
    }
}

impl PolicyServer<'_> {
    /// Every policy the app is the source or the destination of (that the caller may see).
    pub(crate) async fn for_app(&self, app_guid: &str) -> Result<Vec<Policy>> {
        let path = format!("{BASE}/policies?id={app_guid}");
        let answer = self.cf.answer(&Req::path(Method::GET, path)).await?;
        Ok(answer.json::<Payload>()?.policies)
    }

    /// Creates `policies` (those that exist already stay as they are).
    pub(crate) async fn create(&self, policies: &[Policy]) -> Result<()> {
        self.send("/policies", policies).await
    }

    /// Deletes `policies` (those that do not exist are skipped).
    pub(crate) async fn delete(&self, policies: &[Policy]) -> Result<()> {
        self.send("/policies/delete", policies).await
    }

    async fn send(&self, path: &str, policies: &[Policy]) -> Result<()> {
        if policies.is_empty() {
            return Ok(());
        }
        let body = Payload { policies: policies.to_vec() };
        let req = Req::path(Method::POST, format!("{BASE}{path}")).json(&body)?.idempotent(true);
        self.cf.answer(&req).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(source: &str, destination: &str) -> Policy {
        Policy {
            source: PolicySource { id: source.into() },
            destination: PolicyDestination {
                id: destination.into(),
                protocol: "tcp".into(),
                ports: Ports { start: 8080, end: 8090 },
            },
        }
    }

    #[test]
    fn a_moved_policy_names_the_new_app_where_the_old_one_was() {
        assert_eq!(policy("blue", "backend").moved("blue", "green"), policy("green", "backend"));
        assert_eq!(policy("frontend", "blue").moved("blue", "green"), policy("frontend", "green"));
        assert_eq!(policy("blue", "blue").moved("blue", "green"), policy("green", "green"));
        let described = policy("a", "b").describe(|g| g.to_uppercase());
        assert_eq!(described, "A → B tcp 8080-8090");
    }

    #[test]
    fn policies_decode_from_the_policy_servers_list() {
        let body = r#"{"total_policies": 1, "policies": [{"source": {"id": "a"}, "destination": {"id": "b", "protocol": "tcp", "ports": {"start": 8080, "end": 8090}}}]}"#;
        let payload: Payload = serde_json::from_str(body).unwrap();
        assert_eq!(payload.policies, vec![policy("a", "b")]);
    }
}
