//! Domains: list, get, create (shared, or private to an org) and route reservations.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::shared::Ctx;
use crate::state::{Domain, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/domains", get(list).post(create))
        .route("/v3/domains/{guid}", get(get_one))
        .route("/v3/domains/{guid}/route_reservations", get(reservations))
}

/// `DomainsListMessage` (`app/messages/domains_list_message.rb`), which registers `guids` a second time.
pub(crate) const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["names", "guids", "organization_guids", "label_selector"],
    orders: DEFAULT_ORDERS,
    unmodelled: &[],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let (names, orgs) = (q.list("names"), q.list("organization_guids"));
    let state = ctx.state();
    let items = q
        .select(state.domains.values().filter(|d| {
            matches_any(&names, &d.name, true)
                && orgs.as_ref().is_none_or(|orgs| orgs.iter().any(|o| state.domain_visible_in_org(d, o)))
        }))
        .into_iter()
        .map(|d| present::domain(&ctx.urls.api, d))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/domains", items)))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::domain(&ctx.urls.api, state.domain(&guid)?)))
}

/// Creates a domain; `org_guid` makes it private to that org.
pub fn insert_domain(state: &mut CcState, name: &str, org_guid: Option<String>, internal: bool) -> ApiResult<String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').count() >= 2
        && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid {
        return Err(ApiError::unprocessable("Name does not comply with RFC 1035 standards"));
    }
    if state.domains.values().any(|d| d.name.eq_ignore_ascii_case(name)) {
        // app/actions/domain_create.rb: a DomainCreate::Error, answered as 422 CF-UnprocessableEntity.
        return Err(ApiError::unprocessable(format!("The domain name \"{name}\" is already in use")));
    }
    let common = state.common();
    let guid = common.guid.clone();
    state.domains.insert(
        guid.clone(),
        Domain {
            common,
            name: name.to_ascii_lowercase(),
            internal,
            org_guid,
            shared_org_guids: Vec::new(),
            route_policies: None,
        },
    );
    Ok(guid)
}

async fn create(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    let mut keys = vec!["name", "internal", "relationships", "metadata", "router_group"];
    if ctx.config.cc_api_version.at_least(super::route_policies::SINCE) {
        keys.extend(["enforce_route_policies", "route_policies_scope"]);
    }
    body::only_keys(&map, &keys)?;
    let route_policies = super::route_policies::domain_enforcement(&map)?;
    let name = body::string_field(&map, "name")?.ok_or_else(|| ApiError::unprocessable("Name can't be blank"))?;
    let internal = map.get("internal").and_then(Value::as_bool).unwrap_or(false);
    let org = body::relationship_guid(&map, "organization");
    let mut state = ctx.state();
    if let Some(org) = &org
        && !state.orgs.contains_key(org)
    {
        return Err(ApiError::unprocessable(format!(
            "Organization with guid '{org}' does not exist or you do not have access to it."
        )));
    }
    let shared_orgs: Vec<String> = map
        .get("relationships")
        .and_then(|r| r.get("shared_organizations"))
        .and_then(|s| s.get("data"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|o| o["guid"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let guid = insert_domain(&mut state, &name, org, internal)?;
    let domain = state.domains.get_mut(&guid).expect("just created");
    domain.shared_org_guids = shared_orgs;
    domain.route_policies = route_policies;
    domain.common.metadata.apply(map.get("metadata"))?;
    Ok((StatusCode::CREATED, Json(present::domain(&ctx.urls.api, domain))))
}

async fn reservations(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse(raw.as_deref(), &["host", "path", "port"], ctx.default_per_page())?;
    let state = ctx.state();
    state.domain(&guid)?;
    let host = q.get("host").unwrap_or("");
    let path = q.get("path").unwrap_or("");
    let matching =
        state.routes.values().any(|r| r.domain_guid == guid && r.host.eq_ignore_ascii_case(host) && r.path == path);
    Ok(Json(json!({"matching_route": matching})))
}
