//! Roles: who may do what in which org or space. `GET /v3/roles` as app/controllers/v3/roles_controller.rb
//! (`index`), app/messages/roles_list_message.rb, app/fetchers/role_list_fetcher.rb and
//! app/presenters/v3/role_presenter.rb answer it, and the rules of lib/cloud_controller/permissions.rb the other
//! endpoints ask:
//! - the list filters by `types`, `space_guids`, `organization_guids`, `user_guids` and `guids`, ordered by
//!   `created_at` unless told; an invalid query is a 422 (`unprocessable!`); a token without a global read scope
//!   (`cloud_controller.admin`, `.admin_read_only`, `.global_auditor`) sees only the roles of the spaces it may read
//!   (`ROLES_FOR_SPACE_READING`) and of the orgs it has a role in (`ROLES_FOR_ORG_READING`);
//! - a token's user is its `user_id`, else its `client_id` (security_context_configurer.rb, `user_from_token`).
//!
//! cf-sim's users start as an operator would have set them up: each UAA user and each `--oidc-user` is an
//! `organization_user` of every org and a `space_developer` of every space the sim starts with; a shadow user
//! added at login starts with none, as CC knows nothing of it. Tests add and remove roles through the admin API
//! (`POST /_sim/roles`, `DELETE /_sim/roles/:guid`); cf-sim renders no `include` of roles, and enforces roles only
//! where its endpoints say so (route policies).

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use super::Identity;
use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListQuery, list_keys, matches_any};
use crate::shared::Ctx;
use crate::state::{Common, State as CcState};

/// `RolesListMessage.allowed_keys`: ListMessage's, then its own (no `label_selector`).
const LIST_KEYS: &[&str] = list_keys!["organization_guids", "space_guids", "user_guids", "types", "include"];

/// `RoleTypes::SPACE_ROLES`.
const SPACE_ROLES: [&str; 4] = ["space_auditor", "space_manager", "space_developer", "space_supporter"];
/// `RoleTypes::ORGANIZATION_ROLES`.
const ORG_ROLES: [&str; 4] =
    ["organization_auditor", "organization_manager", "organization_billing_manager", "organization_user"];
/// `Permissions::ROLES_FOR_SPACE_READING` of the space itself (the org manager reads it through its org).
const SPACE_READING: [&str; 4] = ["space_developer", "space_manager", "space_auditor", "space_supporter"];
/// `Permissions::ROLES_FOR_SPACE_WRITING`.
const SPACE_WRITING: [&str; 1] = ["space_developer"];

/// One role of a user, in a space or in an org.
#[derive(Debug, Clone)]
pub struct Role {
    pub common: Common,
    pub kind: String,
    pub user_guid: String,
    /// The space of a space role, the org of an org role.
    pub scope: RoleScope,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleScope {
    Space(String),
    Org(String),
}

pub fn routes() -> Router<Ctx> {
    Router::new().route("/v3/roles", get(list))
}

impl Identity {
    /// Whom CC takes the token for: its `user_id`, else its `client_id`.
    fn user(&self) -> &str {
        self.user_guid.as_deref().unwrap_or(&self.client_id)
    }

    fn scoped(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// `Permissions#can_write_globally?`.
    fn writes_globally(&self) -> bool {
        self.scoped("cloud_controller.admin")
    }

    /// `Permissions#can_read_globally?`.
    fn reads_globally(&self) -> bool {
        ["cloud_controller.admin", "cloud_controller.admin_read_only", "cloud_controller.global_auditor"]
            .iter()
            .any(|s| self.scoped(s))
    }

    /// `ApplicationController#check_write_permissions!`: an admin, or the `cloud_controller.write` scope.
    pub(crate) fn may_write(&self) -> bool {
        self.writes_globally() || self.scoped("cloud_controller.write")
    }
}

/// Whether `user` has one of `kinds` in `scope`.
fn has_role(state: &CcState, user: &str, kinds: &[&str], scope: &RoleScope) -> bool {
    state.roles.values().any(|r| r.user_guid == user && &r.scope == scope && kinds.contains(&r.kind.as_str()))
}

/// `Permissions#can_read_from_space?`: a global reader, a member of the space, or a manager of its org.
pub(crate) fn may_read_space(state: &CcState, identity: &Identity, space_guid: &str) -> bool {
    let org = state.spaces.get(space_guid).map(|s| RoleScope::Org(s.org_guid.clone()));
    let user = identity.user();
    identity.reads_globally()
        || has_role(state, user, &SPACE_READING, &RoleScope::Space(space_guid.to_owned()))
        || org.is_some_and(|org| has_role(state, user, &["organization_manager"], &org))
}

/// `Permissions#can_write_to_active_space?`: an admin, or a space developer there.
pub(crate) fn may_write_to_space(state: &CcState, identity: &Identity, space_guid: &str) -> bool {
    identity.writes_globally()
        || has_role(state, identity.user(), &SPACE_WRITING, &RoleScope::Space(space_guid.to_owned()))
}

/// `RolesController#readable_roles`: every role for a global reader; else those of the spaces it may read and of
/// the orgs it has any role in.
fn readable(state: &CcState, identity: &Identity, role: &Role) -> bool {
    match &role.scope {
        RoleScope::Space(space) => may_read_space(state, identity, space),
        RoleScope::Org(org) => {
            identity.reads_globally() || has_role(state, identity.user(), &ORG_ROLES, &RoleScope::Org(org.clone()))
        }
    }
}

/// Ruby's `CGI.escape`, which the presenter applies to the user's guid (a client's id may be any text): all but
/// `A-Za-z0-9_.-~` percent-encoded, a space as `+`.
fn cgi_escape(text: &str) -> String {
    const KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'.').remove(b'-').remove(b'~');
    utf8_percent_encode(text, KEPT).to_string().replace("%20", "+")
}

/// `RolePresenter`: a space role's org is null, an org role's space is.
fn present(base: &str, role: &Role) -> Value {
    let link = |path: String| json!({"href": format!("{base}{path}")});
    let (space, org, scope_link) = match &role.scope {
        RoleScope::Space(space) => (json!({"guid": space}), Value::Null, ("space", format!("/v3/spaces/{space}"))),
        RoleScope::Org(org) => {
            (Value::Null, json!({"guid": org}), ("organization", format!("/v3/organizations/{org}")))
        }
    };
    let mut links = json!({
        "self": link(format!("/v3/roles/{}", role.common.guid)),
        "user": link(format!("/v3/users/{}", cgi_escape(&role.user_guid))),
    });
    links[scope_link.0] = link(scope_link.1);
    json!({
        "guid": role.common.guid,
        "created_at": role.common.created_at,
        "updated_at": role.common.updated_at,
        "type": role.kind,
        "relationships": {
            "user": {"data": {"guid": role.user_guid}},
            "space": {"data": space},
            "organization": {"data": org},
        },
        "links": links,
    })
}

/// `RolesListMessage` (422 when invalid), `RoleListFetcher`, the readable roles, paginated.
async fn list(
    State(ctx): State<Ctx>,
    Extension(identity): Extension<Identity>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let unprocessable =
        |e: ApiError| ApiError::unprocessable(e.detail.trim_start_matches("The query parameter is invalid: "));
    let q = ListQuery::parse_message(raw.as_deref(), LIST_KEYS, DEFAULT_ORDERS, ctx.default_per_page())
        .map_err(unprocessable)?;
    if !q.includes_of(&["user", "organization", "space"]).map_err(unprocessable)?.is_empty() {
        return Err(ApiError::bad_query("cf-sim does not model include of roles"));
    }
    let (types, spaces, orgs, users) =
        (q.list("types"), q.list("space_guids"), q.list("organization_guids"), q.list("user_guids"));
    let state = ctx.state();
    let selected = q.select(state.roles.values().filter(|r| {
        let (space, org) = match &r.scope {
            RoleScope::Space(space) => (Some(space.as_str()), None),
            RoleScope::Org(org) => (None, Some(org.as_str())),
        };
        let within = |filter: &Option<Vec<String>>, guid: Option<&str>| {
            filter.is_none() || guid.is_some_and(|g| matches_any(filter, g, false))
        };
        readable(&state, &identity, r)
            && matches_any(&types, &r.kind, false)
            && matches_any(&users, &r.user_guid, false)
            && within(&spaces, space)
            && within(&orgs, org)
    }));
    let items = selected.iter().map(|r| present(&ctx.urls.api, r)).collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/roles", items)))
}

/// Gives `user_guid` the role `kind` in `scope`; the role it has already when it has it.
fn grant(state: &mut CcState, user_guid: &str, kind: &str, scope: RoleScope) -> String {
    let existing = state.roles.values().find(|r| r.user_guid == user_guid && r.kind == kind && r.scope == scope);
    if let Some(existing) = existing {
        return existing.common.guid.clone();
    }
    let role = Role { common: state.common(), kind: kind.to_owned(), user_guid: user_guid.to_owned(), scope };
    let guid = role.common.guid.clone();
    state.roles.insert(guid.clone(), role);
    guid
}

/// What a user of the sim starts with: `organization_user` of every org, `space_developer` of every space.
pub fn grant_defaults(state: &mut CcState, user_guid: &str) {
    let orgs: Vec<String> = state.orgs.keys().cloned().collect();
    let spaces: Vec<String> = state.spaces.keys().cloned().collect();
    for org in orgs {
        grant(state, user_guid, "organization_user", RoleScope::Org(org));
    }
    for space in spaces {
        grant(state, user_guid, "space_developer", RoleScope::Space(space));
    }
}

/// `POST /_sim/roles` (the admin API): `{type, user_guid | username, space_guid | organization_guid}` → 201 with
/// the role as the list presents it. A user is a guid (a client's id for a client) or the name of a user of the
/// sim; a space role needs an existing space, an org role an existing org.
pub(crate) async fn seed(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["type", "user_guid", "username", "space_guid", "organization_guid"])?;
    let kind = body::string_field(&map, "type")?.ok_or_else(|| ApiError::unprocessable("type is required"))?;
    let user = match (body::string_field(&map, "user_guid")?, body::string_field(&map, "username")?) {
        (Some(guid), None) => guid,
        (None, Some(name)) => {
            let idp = ctx.idp_users.all().into_iter().map(|u| u.user);
            let mut users = ctx.users.iter().map(|u| u.user.clone()).chain(idp);
            users.find(|u| u.name == name).ok_or_else(|| ApiError::not_found("User"))?.guid
        }
        _ => return Err(ApiError::unprocessable("give user_guid or username")),
    };
    let mut state = ctx.state();
    let scope = if SPACE_ROLES.contains(&kind.as_str()) {
        let space = body::string_field(&map, "space_guid")?;
        let space = space.ok_or_else(|| ApiError::unprocessable("a space role needs space_guid"))?;
        state.space(&space)?;
        RoleScope::Space(space)
    } else if ORG_ROLES.contains(&kind.as_str()) {
        let org = body::string_field(&map, "organization_guid")?;
        let org = org.ok_or_else(|| ApiError::unprocessable("an organization role needs organization_guid"))?;
        state.orgs.get(&org).ok_or_else(|| ApiError::not_found("Organization"))?;
        RoleScope::Org(org)
    } else {
        return Err(ApiError::unprocessable(format!("Type must be one of the role types, not '{kind}'")));
    };
    let guid = grant(&mut state, &user, &kind, scope);
    Ok((StatusCode::CREATED, Json(present(&ctx.urls.api, &state.roles[&guid]))))
}

/// `DELETE /_sim/roles/:guid` (the admin API): takes the role away at once (CC's own delete is a job).
pub(crate) async fn remove(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    ctx.state().roles.remove(&guid).ok_or_else(|| ApiError::not_found("Role"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(scopes: &[&str]) -> Identity {
        Identity {
            user_guid: Some("u".into()),
            client_id: "cf".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn writing_needs_the_write_scope_or_the_admin_one() {
        assert!(!identity(&["cloud_controller.read"]).may_write());
        assert!(identity(&["cloud_controller.read", "cloud_controller.write"]).may_write());
        assert!(identity(&["cloud_controller.admin"]).may_write());
    }

    #[test]
    fn the_user_link_escapes_the_guid_as_cgi_escape() {
        assert_eq!(cgi_escape("0d6e-4f1a_b.c~d"), "0d6e-4f1a_b.c~d");
        assert_eq!(cgi_escape("ci client/1@x:y"), "ci+client%2F1%40x%3Ay");
    }

    #[test]
    fn a_client_is_the_user_of_its_id_and_a_user_token_the_user_of_its_user_id() {
        let client = Identity { user_guid: None, client_id: "ci".into(), scopes: Vec::new() };
        assert_eq!((client.user(), identity(&[]).user()), ("ci", "u"));
    }
}
