//! Roles (`/v3/roles`) and whom CC takes the client's token for: what a deploy asks before the lock when CC will
//! want a role of the deploying identity under it. CC's user is the token's `user_id`, else its `client_id`
//! (security_context_configurer.rb, `user_from_token`); `cloud_controller.admin` may write everywhere
//! (permissions.rb, `can_write_globally?`) and any other token needs `cloud_controller.write` to write at all
//! (`ApplicationController#check_write_permissions!`).

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::cf::CfClient;
use crate::cf::api::{Api, resource};
use crate::cf::auth::{TokenClaims, decode_jwt_claims};
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{ToOne, null_as_default};

/// A role of a user in a space or an org (role_presenter.rb).
#[derive(Clone, Debug, Deserialize)]
pub struct Role {
    #[serde(default, deserialize_with = "null_as_default")]
    relationships: RoleRelationships,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct RoleRelationships {
    #[serde(default)]
    space: ToOne,
}

resource!(@kind Role at "/v3/roles", pub(crate) roles);

impl Role {
    /// The space of a space role; `None` for an org role.
    pub fn space_guid(&self) -> Option<&str> {
        self.relationships.space.guid()
    }
}

/// The space developer role (`RoleTypes::SPACE_DEVELOPER`).
pub(crate) const SPACE_DEVELOPER: &str = "space_developer";

impl Api<Role> {
    /// The spaces among `spaces` where the user `user_guid` has the role `kind`: one request for them all.
    pub(crate) async fn spaces_with(
        &self,
        kind: &str,
        user_guid: &str,
        spaces: &BTreeSet<&str>,
    ) -> Result<BTreeSet<String>> {
        let params =
            ListParams::new().filter("types", [kind]).filter("space_guids", spaces).filter("user_guids", [user_guid]);
        let roles = self.list(&params).await?;
        Ok(roles.into_iter().filter_map(|r| r.space_guid().map(str::to_owned)).collect())
    }
}

/// The deploying identity as CC sees its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    /// CC's user guid: the `user_id`, else the `client_id`.
    pub(crate) user_guid: String,
    /// How to name it in a line: `user <name>` or `client <id>`.
    pub(crate) called: String,
    /// `cloud_controller.admin`.
    pub(crate) admin: bool,
    /// `cloud_controller.write`.
    pub(crate) writes: bool,
}

impl Identity {
    fn of(claims: TokenClaims) -> Option<Identity> {
        let has = |scope: &str| claims.scope.iter().any(|s| s == scope);
        let (admin, writes) = (has("cloud_controller.admin"), has("cloud_controller.write"));
        let called = match (&claims.user_id, &claims.user_name, &claims.client_id) {
            (Some(id), name, _) => format!("user {}", name.as_deref().unwrap_or(id)),
            (None, _, Some(client)) => format!("client {client}"),
            (None, _, None) => return None,
        };
        Some(Identity { user_guid: claims.user_id.or(claims.client_id)?, called, admin, writes })
    }
}

impl CfClient {
    /// Whom CC takes the current token for; `None` for a token that is no JWT (or names nobody): CC alone knows.
    pub(crate) async fn identity(&self) -> Result<Option<Identity>> {
        Ok(decode_jwt_claims(&self.access_token().await?).and_then(Identity::of))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(json: &str) -> TokenClaims {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_user_is_its_user_id_and_a_client_its_client_id() {
        let user = Identity::of(claims(
            r#"{"user_id": "u-1", "user_name": "alice", "client_id": "cf",
                "scope": ["cloud_controller.read", "cloud_controller.write"]}"#,
        ));
        let user = user.unwrap();
        assert_eq!(
            (user.user_guid.as_str(), user.called.as_str(), user.admin, user.writes),
            ("u-1", "user alice", false, true)
        );
        let client = Identity::of(claims(r#"{"client_id": "ci", "scope": ["cloud_controller.admin"]}"#)).unwrap();
        assert_eq!(
            (client.user_guid.as_str(), client.called.as_str(), client.admin, client.writes),
            ("ci", "client ci", true, false)
        );
        assert_eq!(Identity::of(claims(r#"{"scope": []}"#)), None);
    }
}
