//! Organizations and spaces: list (names filters are case-insensitive), get, create, and `include=organization`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::list::{ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::shared::Ctx;
use crate::state::{Org, Space, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/organizations", get(list_orgs).post(create_org))
        .route("/v3/organizations/{guid}", get(get_org))
        .route("/v3/organizations/{guid}/domains", get(org_domains))
        .route("/v3/organizations/{guid}/domains/default", get(default_domain))
        .route("/v3/spaces", get(list_spaces).post(create_space))
        .route("/v3/spaces/{guid}", get(get_space))
}

/// `OrgsListMessage` (`app/messages/orgs_list_message.rb`).
const ORGS_LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["names", "isolation_segment_guid", "label_selector"],
    orders: &["created_at", "updated_at", "name"],
    unmodelled: &["isolation_segment_guid"],
};

async fn list_orgs(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &ORGS_LIST_MESSAGE, ctx.default_per_page())?;
    let names = q.list("names");
    let state = ctx.state();
    let items = q
        .select(state.orgs.values().filter(|o| matches_any(&names, &o.name, true)))
        .into_iter()
        .map(|o| present::org(&ctx.urls.api, o))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/organizations", items)))
}

async fn get_org(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let org = state.orgs.get(&guid).ok_or_else(|| ApiError::not_found("Organization"))?;
    Ok(Json(present::org(&ctx.urls.api, org)))
}

/// Creates an org (used by the sim's start-up flags too).
pub fn insert_org(state: &mut CcState, name: &str) -> ApiResult<String> {
    if state.orgs.values().any(|o| o.name.eq_ignore_ascii_case(name)) {
        return Err(ApiError::unprocessable(format!("Organization '{name}' already exists.")));
    }
    let common = state.common();
    let guid = common.guid.clone();
    let quota_guid = super::quotas::default_org_quota(state);
    state.orgs.insert(guid.clone(), Org { common, name: name.to_string(), quota_guid });
    Ok(guid)
}

/// Creates a space in an org.
pub fn insert_space(state: &mut CcState, org_guid: &str, name: &str) -> ApiResult<String> {
    if state.spaces.values().any(|s| s.org_guid == org_guid && s.name.eq_ignore_ascii_case(name)) {
        return Err(ApiError::unprocessable("Name must be unique per organization"));
    }
    let common = state.common();
    let guid = common.guid.clone();
    state.spaces.insert(
        guid.clone(),
        Space { common, name: name.to_string(), org_guid: org_guid.to_string(), quota_guid: None },
    );
    Ok(guid)
}

async fn create_org(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["name", "suspended", "metadata"])?;
    let name = body::string_field(&map, "name")?.ok_or_else(|| ApiError::unprocessable("Name can't be blank"))?;
    let mut state = ctx.state();
    let guid = insert_org(&mut state, &name)?;
    let org = state.orgs.get_mut(&guid).expect("just created");
    org.common.metadata.apply(map.get("metadata"))?;
    Ok((StatusCode::CREATED, Json(present::org(&ctx.urls.api, org))))
}

async fn create_space(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["name", "relationships", "metadata"])?;
    let name = body::string_field(&map, "name")?.ok_or_else(|| ApiError::unprocessable("Name can't be blank"))?;
    let org_guid = body::required_relationship(&map, "organization")?;
    let mut state = ctx.state();
    if !state.orgs.contains_key(&org_guid) {
        return Err(ApiError::unprocessable(
            "Invalid organization. Ensure the organization exists and you have access to it.",
        ));
    }
    let guid = insert_space(&mut state, &org_guid, &name)?;
    let space = state.spaces.get_mut(&guid).expect("just created");
    space.common.metadata.apply(map.get("metadata"))?;
    Ok((StatusCode::CREATED, Json(present::space(&ctx.urls.api, space))))
}

/// `include=organization` (or its alias `org`) for spaces, as `spaces_list_message.rb` / `space_show_message.rb`
/// accept it.
const SPACE_INCLUDES: &[&str] = &["org", "organization"];

fn with_included_orgs(ctx: &Ctx, state: &CcState, mut body: Value, spaces: &[&Space], includes: &[String]) -> Value {
    if !includes.is_empty() {
        let mut guids: Vec<&String> = spaces.iter().map(|s| &s.org_guid).collect();
        guids.sort();
        guids.dedup();
        let orgs: Vec<Value> =
            guids.into_iter().filter_map(|g| state.orgs.get(g)).map(|o| present::org(&ctx.urls.api, o)).collect();
        body["included"] = json!({"organizations": orgs});
    }
    body
}

/// `SpacesListMessage` (`app/messages/spaces_list_message.rb`).
const SPACES_LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["names", "organization_guids", "include", "label_selector"],
    orders: &["created_at", "updated_at", "name"],
    unmodelled: &[],
};

async fn list_spaces(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &SPACES_LIST_MESSAGE, ctx.default_per_page())?;
    let (names, orgs) = (q.list("names"), q.list("organization_guids"));
    let state = ctx.state();
    let selected = q.select(
        state.spaces.values().filter(|s| matches_any(&names, &s.name, true) && matches_any(&orgs, &s.org_guid, false)),
    );
    let page: Vec<&Space> = selected.iter().skip((q.page - 1) * q.per_page).take(q.per_page).copied().collect();
    let items = selected.iter().map(|s| present::space(&ctx.urls.api, s)).collect();
    let body = q.paginate(&ctx.urls.api, "/v3/spaces", items);
    Ok(Json(with_included_orgs(&ctx, &state, body, &page, &q.includes_of(SPACE_INCLUDES)?)))
}

async fn get_space(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse(raw.as_deref(), &["include"], ctx.default_per_page())?;
    let state = ctx.state();
    let space = state.space(&guid)?;
    let body = present::space(&ctx.urls.api, space);
    Ok(Json(with_included_orgs(&ctx, &state, body, &[space], &q.includes_of(SPACE_INCLUDES)?)))
}

async fn org_domains(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // `organizations_controller.rb#index_org_domains`: DomainsListMessage, `invalid_param!`.
    let q = ListQuery::parse_list(
        raw.as_deref(),
        &ListMessage { unmodelled: &["organization_guids"], ..super::domains::LIST_MESSAGE },
        ctx.default_per_page(),
    )?;
    let names = q.list("names");
    let state = ctx.state();
    state.orgs.get(&guid).ok_or_else(|| ApiError::not_found("Organization"))?;
    let items = q
        .select(
            state
                .domains
                .values()
                .filter(|d| state.domain_visible_in_org(d, &guid) && matches_any(&names, &d.name, true)),
        )
        .into_iter()
        .map(|d| present::domain(&ctx.urls.api, d))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, &format!("/v3/organizations/{guid}/domains"), items)))
}

async fn default_domain(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    state.orgs.get(&guid).ok_or_else(|| ApiError::not_found("Organization"))?;
    let domain = state.default_domain(&guid).ok_or_else(|| ApiError::not_found("Domain"))?;
    Ok(Json(present::domain(&ctx.urls.api, domain)))
}
