//! Route policies (identity-aware routing, RFC 0055, experimental; CC 3.225.0): which apps, spaces or orgs may
//! call a route over the router's mTLS, on domains created with `enforce_route_policies` (and a
//! `route_policies_scope`). `POST /v3/route_policies`, `GET` (list and one), `PATCH` (metadata) and `DELETE
//! /v3/route_policies/:guid`, as app/controllers/v3/route_policies_controller.rb, app/messages/route_polic*_message.rb,
//! app/actions/route_policy_create.rb / _destroy.rb, app/models/runtime/route_policy.rb and
//! app/presenters/v3/route_policy_presenter.rb answer them:
//! - a source is `cf:app:<uuid>`, `cf:space:<uuid>`, `cf:org:<uuid>` or `cf:any` (`RoutePolicy::SOURCE_REGEX`,
//!   lower-case uuids); the route must exist (404 "Route not found"), not be on an internal domain and be on a domain
//!   that enforces route policies (422 each); a `space`-scoped domain refuses `cf:org:` sources; a source is unique
//!   per route, and `cf:any` stands alone on its route (422 each, with CC's details);
//! - the list filters by `guids`, `route_guids`, `space_guids` (the route's space), `sources`, `source_guids` and
//!   `label_selector`, and includes `route`; an invalid query is a 400;
//! - deleting answers 204 at once; deleting a route deletes its policies (`add_association_dependencies`), deleting
//!   an app does not (a policy names its source by guid only).
//!
//! - creating one needs the `cloud_controller.write` scope (or `cloud_controller.admin`) and, in the route's space,
//!   read rights (else "Route not found") and the space developer role (else 403 CF-NotAuthorized), as
//!   `find_and_authorize_route` asks lib/cloud_controller/permissions.rb (cc/roles.rs).
//!
//! Before 3.225.0 the endpoints are CC's unknown request (404) and a domain has no such fields. cf-sim checks roles
//! on create only (lists, updates and deletes see every policy), renders no `include=source` (answered with a 400
//! saying so) and has no enforcement by the router.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::Identity;
use super::body::{self, Errors};
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use super::roles;
use crate::config::CcApiVersion;
use crate::shared::Ctx;
use crate::state::{Common, State as CcState};

/// The first CC API version with route policies (cloud_controller_ng #4910, merged at 3.224.0).
pub const SINCE: CcApiVersion = CcApiVersion(3, 225, 0);

/// One route policy: `source` may call the route `route_guid`.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub common: Common,
    pub source: String,
    pub route_guid: String,
}

impl RoutePolicy {
    /// The source's type (`app`, `space`, `org` or `any`) and guid (empty for `any`).
    fn source_parts(&self) -> (&str, &str) {
        match self.source.strip_prefix("cf:").and_then(|rest| rest.split_once(':')) {
            Some((kind, guid)) => (kind, guid),
            None => ("any", ""),
        }
    }
}

/// `RoutePolicy::SOURCE_REGEX`.
fn valid_source(source: &str) -> bool {
    let uuid = |guid: &str| {
        let groups: Vec<&str> = guid.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
    };
    source == "cf:any" || ["cf:app:", "cf:space:", "cf:org:"].iter().any(|p| source.strip_prefix(p).is_some_and(uuid))
}

/// A domain's `enforce_route_policies` and `route_policies_scope` of a create body (domain_create_message.rb):
/// the scope when enforced.
pub fn domain_enforcement(map: &Map<String, Value>) -> ApiResult<Option<String>> {
    let mut errors = Errors::default();
    let enforce = match map.get("enforce_route_policies") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(enforce)) => *enforce,
        Some(_) => {
            errors.add("Enforce route policies must be a boolean");
            false
        }
    };
    if enforce && map.get("internal") == Some(&Value::Bool(true)) {
        errors.add("Internal domains cannot have route policy enforcement. Internal routes bypass GoRouter.");
    }
    let scope = match map.get("route_policies_scope") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if ["any", "org", "space"].contains(&s.as_str()) => Some(s.clone()),
        Some(_) => {
            errors.add("Route policies scope must be one of 'any', 'org', 'space'");
            None
        }
    };
    if enforce && map.get("route_policies_scope").is_none_or(|s| s.as_str().is_none_or(str::is_empty)) {
        errors.add("Route policies scope is required when enforce_route_policies is true");
    }
    errors.finish()?;
    Ok(scope.filter(|_| enforce))
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/route_policies", get(list).post(create))
        .route("/v3/route_policies/{guid}", get(show).patch(update).delete(destroy))
}

/// Before [`SINCE`], CC has no such path.
fn available(ctx: &Ctx) -> ApiResult<()> {
    if ctx.config.cc_api_version.at_least(SINCE) { Ok(()) } else { Err(ApiError::unknown_request()) }
}

fn present(base: &str, policy: &RoutePolicy) -> Value {
    let g = &policy.common.guid;
    let (kind, source_guid) = policy.source_parts();
    let data = |of: &str| if kind == of { json!({"guid": source_guid}) } else { Value::Null };
    let link = |path: String| json!({"href": format!("{base}{path}")});
    let mut links = json!({
        "self": link(format!("/v3/route_policies/{g}")),
        "route": link(format!("/v3/routes/{}", policy.route_guid)),
    });
    let source_link = match kind {
        "app" => Some(("app", "apps")),
        "space" => Some(("space", "spaces")),
        "org" => Some(("organization", "organizations")),
        _ => None,
    };
    if let Some((name, collection)) = source_link {
        links[name] = link(format!("/v3/{collection}/{source_guid}"));
    }
    json!({
        "guid": g,
        "created_at": policy.common.created_at,
        "updated_at": policy.common.updated_at,
        "source": policy.source,
        "metadata": policy.common.metadata.to_json(),
        "relationships": {
            "route": {"data": {"guid": policy.route_guid}},
            "app": {"data": data("app")},
            "space": {"data": data("space")},
            "organization": {"data": data("org")},
        },
        "links": links,
    })
}

/// `IncludeParamValidator` with `source` and `route`, of which cf-sim renders `route` only.
fn includes(q: &ListQuery) -> ApiResult<bool> {
    let includes = q.includes_of(&["source", "route"])?;
    if includes.iter().any(|i| i == "source") {
        return Err(ApiError::bad_query("cf-sim does not model include=source of route policies"));
    }
    Ok(!includes.is_empty())
}

/// `IncludeRoutePolicyRouteDecorator`: the policies' routes, in creation order.
fn include_routes(ctx: &Ctx, state: &CcState, body: &mut Value, policies: &[&RoutePolicy]) {
    let mut routes: Vec<_> =
        state.routes.values().filter(|r| policies.iter().any(|p| p.route_guid == r.common.guid)).collect();
    routes.sort_by_key(|r| r.common.seq);
    let version = ctx.config.cc_api_version;
    let routes: Vec<Value> = routes.iter().map(|r| present::route(&ctx.urls.api, version, state, r)).collect();
    body["included"] = json!({"routes": routes});
}

/// `RoutePoliciesListMessage` (`app/messages/route_policies_list_message.rb`), which registers `guids` a second time.
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["guids", "route_guids", "space_guids", "sources", "source_guids", "include", "label_selector"],
    orders: DEFAULT_ORDERS,
    unmodelled: &[],
};

/// `RoutePoliciesListMessage`: a bad filter is a 400 (`invalid_param!`).
async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    available(&ctx)?;
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let include_route = includes(&q)?;
    let sources = q.list("sources");
    if let Some(invalid) = sources.as_ref().map(|s| s.iter().filter(|s| !valid_source(s)).cloned().collect::<Vec<_>>())
        && !invalid.is_empty()
    {
        return Err(ApiError::bad_query(format!("Sources contains invalid source format: {}", invalid.join(", "))));
    }
    let (routes, spaces, source_guids) = (q.list("route_guids"), q.list("space_guids"), q.list("source_guids"));
    let state = ctx.state();
    let selected = q.select(state.route_policies.values().filter(|p| {
        let space = state.routes.get(&p.route_guid).map(|r| r.space_guid.as_str()).unwrap_or_default();
        matches_any(&routes, &p.route_guid, false)
            && matches_any(&spaces, space, false)
            && matches_any(&sources, &p.source, false)
            && matches_any(&source_guids, p.source_parts().1, false)
    }));
    let items = selected.iter().map(|p| present(&ctx.urls.api, p)).collect();
    let mut body = q.paginate(&ctx.urls.api, "/v3/route_policies", items);
    if include_route {
        include_routes(&ctx, &state, &mut body, &selected);
    }
    Ok(Json(body))
}

/// `RoutePolicyShowMessage`: an invalid query is a 422 (`unprocessable!`).
async fn show(State(ctx): State<Ctx>, Path(guid): Path<String>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    available(&ctx)?;
    let q = ListQuery::parse(raw.as_deref(), &["include"], ctx.default_per_page())
        .map_err(|e| ApiError::unprocessable(e.detail.trim_start_matches("The query parameter is invalid: ")))?;
    let include_route = includes(&q)?;
    let state = ctx.state();
    let policy = state.route_policies.get(&guid).ok_or_else(|| ApiError::not_found("Route policy"))?;
    let mut body = present(&ctx.urls.api, policy);
    if include_route {
        include_routes(&ctx, &state, &mut body, &[policy]);
    }
    Ok(Json(body))
}

/// `check_write_permissions!` (403), `RoutePolicyCreateMessage`, then the controller's route checks
/// (`find_and_authorize_route`: a route the user may not read is not found, one in a space it is no developer of
/// is a 403), then `RoutePolicyCreate` and the model's validation.
async fn create(
    State(ctx): State<Ctx>,
    Extension(identity): Extension<Identity>,
    raw: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    available(&ctx)?;
    if !identity.may_write() {
        return Err(ApiError::not_authorized());
    }
    let map = body::object(&raw)?;
    let mut errors = Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["source", "relationships", "metadata"]);
    let route_guid = errors.relationships(&map, &["route"], &["route"]).pop().flatten();
    let source = match map.get("source") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.add("Source can't be blank");
            None
        }
        None | Some(Value::Null) => {
            errors.add("Source can't be blank");
            errors.add("Source must be a string");
            None
        }
        Some(_) => {
            errors.add("Source must be a string");
            None
        }
    };
    if source.as_deref().is_some_and(|s| !valid_source(s)) {
        errors.add("Source must be in format 'cf:app:<uuid>', 'cf:space:<uuid>', 'cf:org:<uuid>', or 'cf:any'");
    }
    errors.finish()?;
    let (Some(route_guid), Some(source)) = (route_guid, source) else { unreachable!("validated above") };
    let mut state = ctx.state();
    let route = state.route(&route_guid)?;
    if !roles::may_read_space(&state, &identity, &route.space_guid) {
        return Err(ApiError::not_found("Route"));
    }
    if !roles::may_write_to_space(&state, &identity, &route.space_guid) {
        return Err(ApiError::not_authorized());
    }
    let domain = state.domain(&route.domain_guid)?;
    if domain.internal {
        return Err(ApiError::unprocessable(
            "Cannot create route policies for routes on internal domains. Internal routes use container-to-container \
             networking and bypass GoRouter.",
        ));
    }
    let Some(scope) = &domain.route_policies else {
        return Err(ApiError::unprocessable(format!(
            "Cannot create route policies for route '{route_guid}': the route's domain does not have \
             enforce_route_policies enabled."
        )));
    };
    if scope == "space" && source.starts_with("cf:org:") {
        return Err(ApiError::unprocessable(format!(
            "Source '{source}' is not allowed: domain's route_policies_scope is 'space'."
        )));
    }
    let siblings: Vec<&RoutePolicy> = state.route_policies.values().filter(|p| p.route_guid == route_guid).collect();
    if !siblings.is_empty() && source == "cf:any" {
        return Err(ApiError::unprocessable(
            "source 'cf:any' cannot coexist with other route policies on the same route",
        ));
    }
    if siblings.iter().any(|p| p.source == "cf:any") {
        return Err(ApiError::unprocessable("source cannot coexist with the existing 'cf:any' policy on this route"));
    }
    if siblings.iter().any(|p| p.source == source) {
        return Err(ApiError::unprocessable(format!(
            "A route policy with source '{source}' already exists for this route."
        )));
    }
    let mut common = state.common();
    common.metadata.apply(map.get("metadata"))?;
    let policy = RoutePolicy { common, source, route_guid };
    let body = present(&ctx.urls.api, &policy);
    state.route_policies.insert(policy.common.guid.clone(), policy);
    Ok((StatusCode::CREATED, Json(body)))
}

/// `RoutePolicyUpdateMessage`: metadata only.
async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    available(&ctx)?;
    let mut state = ctx.state();
    state.route_policies.get(&guid).ok_or_else(|| ApiError::not_found("Route policy"))?;
    let map = body::object(&raw)?;
    let mut errors = Errors::default();
    errors.metadata(&map);
    errors.unknown_keys(&map, &["metadata"]);
    errors.finish()?;
    let mut common = state.route_policies[&guid].common.clone();
    common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut common);
    let policy = state.route_policies.get_mut(&guid).expect("found above");
    policy.common = common;
    Ok(Json(present(&ctx.urls.api, policy)))
}

async fn destroy(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    available(&ctx)?;
    let removed = ctx.state().route_policies.remove(&guid);
    removed.ok_or_else(|| ApiError::not_found("Route policy"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /_sim/domains/:domain` (the admin API, `domain` a guid or a name): seeds `enforce_route_policies` and
/// `route_policies_scope` on an existing domain, validated as a create validates them. CC sets them only when it
/// creates a domain; this makes a foundation whose default domain enforces route policies.
pub async fn seed_enforcement(
    State(ctx): State<Ctx>,
    Path(domain): Path<String>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    available(&ctx)?;
    let scope = domain_enforcement(&body::object(&raw)?)?;
    let mut state = ctx.state();
    let found = state.domains.values_mut().find(|d| d.common.guid == domain || d.name == domain);
    let found = found.ok_or_else(|| ApiError::not_found("Domain"))?;
    if found.internal && scope.is_some() {
        return Err(ApiError::unprocessable(
            "Internal domains cannot have route policy enforcement. Internal routes bypass GoRouter.",
        ));
    }
    found.route_policies = scope;
    Ok(Json(present::domain(&ctx.urls.api, found)))
}

/// Deleting a route deletes its policies (route.rb, `add_association_dependencies route_policies: :destroy`).
pub fn forget_route(state: &mut CcState, route_guid: &str) {
    state.route_policies.retain(|_, p| p.route_guid != route_guid);
}
