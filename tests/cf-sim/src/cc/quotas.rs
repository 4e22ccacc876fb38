//! Organization and space quotas, as far as a deploy needs them: the quota definitions (read-only), the usage
//! summaries of orgs and spaces, and CC's memory quota check when a process starts or scales.
//!
//! Every org shares CC's default quota definition (`default_quota_definition: default`); `--org-memory-limit-mb`
//! sets its memory limit. `--space-memory-limit-mb` applies a space quota to the configured space. Only the memory
//! limit is modelled; every other limit renders as unlimited (`null`, as the presenters render CC's -1). Creating,
//! updating or applying quotas is not modelled and answers CC's 404 "Unknown request".

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use crate::config::{CcApiVersion, SimConfig};
use crate::shared::Ctx;
use crate::state::{AppState, Process, Quota, State as CcState, TaskState};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/organization_quotas", get(list_org_quotas))
        .route("/v3/organization_quotas/{guid}", get(get_org_quota))
        .route("/v3/space_quotas", get(list_space_quotas))
        .route("/v3/space_quotas/{guid}", get(get_space_quota))
        .route("/v3/organizations/{guid}/usage_summary", get(org_usage))
        .route("/v3/spaces/{guid}/usage_summary", get(space_usage))
}

/// The first CC API version with `GET /v3/spaces/:guid/usage_summary` (cloud_controller_ng f9e7faf596, merged
/// at 3.199.0 and released with 3.200.0); older versions have no such route.
const SPACE_USAGE_SINCE: CcApiVersion = CcApiVersion(3, 200, 0);

/// The name of CC's default organization quota.
const DEFAULT_ORG_QUOTA: &str = "default";

/// The guid of the default organization quota, created (unlimited) on first use.
pub(crate) fn default_org_quota(state: &mut CcState) -> String {
    if let Some(quota) = state.org_quotas.values().find(|q| q.name == DEFAULT_ORG_QUOTA) {
        return quota.common.guid.clone();
    }
    let common = state.common();
    let guid = common.guid.clone();
    state
        .org_quotas
        .insert(guid.clone(), Quota { common, name: DEFAULT_ORG_QUOTA.into(), memory_limit_mb: None, org_guid: None });
    guid
}

/// Applies `--org-memory-limit-mb` to the default org quota and `--space-memory-limit-mb` to the configured space.
pub(crate) fn configure(state: &mut CcState, config: &SimConfig) -> ApiResult<()> {
    let default = default_org_quota(state);
    if let Some(quota) = state.org_quotas.get_mut(&default) {
        quota.memory_limit_mb = config.org_memory_limit_mb;
    }
    let Some(limit) = config.space_memory_limit_mb else { return Ok(()) };
    let space_guid = state
        .spaces
        .values()
        .find(|s| s.name == config.space && state.orgs.get(&s.org_guid).is_some_and(|o| o.name == config.organization))
        .map(|s| s.common.guid.clone())
        .ok_or_else(|| ApiError::not_found("Space"))?;
    let org_guid = state.space(&space_guid)?.org_guid.clone();
    let common = state.common();
    let guid = common.guid.clone();
    let name = format!("{}-quota", config.space);
    state
        .space_quotas
        .insert(guid.clone(), Quota { common, name, memory_limit_mb: Some(limit), org_guid: Some(org_guid) });
    if let Some(space) = state.spaces.get_mut(&space_guid) {
        space.quota_guid = Some(guid);
    }
    Ok(())
}

/// `organization_quota_presenter.rb` / `space_quota_presenter.rb`: the limits with -1 (unlimited) as `null`.
fn present(base: &str, state: &CcState, quota: &Quota) -> Value {
    let g = &quota.common.guid;
    let mut body = json!({
        "guid": g,
        "created_at": quota.common.created_at,
        "updated_at": quota.common.updated_at,
        "name": quota.name,
        "apps": {
            "total_memory_in_mb": quota.memory_limit_mb,
            "per_process_memory_in_mb": null,
            "total_instances": null,
            "per_app_tasks": null,
            "log_rate_limit_in_bytes_per_second": null,
        },
        "services": {"paid_services_allowed": true, "total_service_instances": null, "total_service_keys": null},
        "routes": {"total_routes": null, "total_reserved_ports": null},
    });
    match &quota.org_guid {
        None => {
            let orgs: Vec<Value> =
                state.orgs.values().filter(|o| &o.quota_guid == g).map(|o| json!({"guid": o.common.guid})).collect();
            body["domains"] = json!({"total_domains": null});
            body["relationships"] = json!({"organizations": {"data": orgs}});
            body["links"] = json!({"self": {"href": format!("{base}/v3/organization_quotas/{g}")}});
        }
        Some(org) => {
            let spaces: Vec<Value> = state
                .spaces
                .values()
                .filter(|s| s.quota_guid.as_ref() == Some(g))
                .map(|s| json!({"guid": s.common.guid}))
                .collect();
            body["relationships"] = json!({"organization": {"data": {"guid": org}}, "spaces": {"data": spaces}});
            body["links"] = json!({
                "self": {"href": format!("{base}/v3/space_quotas/{g}")},
                "organization": {"href": format!("{base}/v3/organizations/{org}")},
            });
        }
    }
    body
}

/// `organization_quotas_list_message.rb`: names, organization_guids.
/// `OrganizationQuotasListMessage` (`app/messages/organization_quotas_list_message.rb`), a ListMessage: no
/// `label_selector`.
const ORG_QUOTAS_LIST_MESSAGE: ListMessage =
    ListMessage { keys: list_keys!["names", "organization_guids"], orders: DEFAULT_ORDERS, unmodelled: &[] };

async fn list_org_quotas(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &ORG_QUOTAS_LIST_MESSAGE, ctx.default_per_page())?;
    let (names, orgs) = (q.list("names"), q.list("organization_guids"));
    let state = ctx.state();
    let items = q
        .select(state.org_quotas.values().filter(|quota| {
            matches_any(&names, &quota.name, false)
                && orgs.as_ref().is_none_or(|orgs| {
                    orgs.iter().any(|o| state.orgs.get(o).is_some_and(|o| o.quota_guid == quota.common.guid))
                })
        }))
        .into_iter()
        .map(|quota| present(&ctx.urls.api, &state, quota))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/organization_quotas", items)))
}

async fn get_org_quota(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let quota = state.org_quotas.get(&guid).ok_or_else(|| ApiError::not_found("Organization quota"))?;
    Ok(Json(present(&ctx.urls.api, &state, quota)))
}

/// `space_quotas_list_message.rb`: names, organization_guids, space_guids.
/// `SpaceQuotasListMessage` (`app/messages/space_quotas_list_message.rb`), a ListMessage: no `label_selector`.
const SPACE_QUOTAS_LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys!["names", "organization_guids", "space_guids"],
    orders: DEFAULT_ORDERS,
    unmodelled: &[],
};

async fn list_space_quotas(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    // `space_quotas_controller.rb#index` answers an invalid message with `unprocessable!`.
    let q = ListQuery::parse_list(raw.as_deref(), &SPACE_QUOTAS_LIST_MESSAGE, ctx.default_per_page())
        .map_err(|e| ApiError::unprocessable(e.detail.trim_start_matches("The query parameter is invalid: ")))?;
    let (names, orgs, spaces) = (q.list("names"), q.list("organization_guids"), q.list("space_guids"));
    let state = ctx.state();
    let items = q
        .select(state.space_quotas.values().filter(|quota| {
            matches_any(&names, &quota.name, false)
                && orgs.as_ref().is_none_or(|orgs| quota.org_guid.as_ref().is_some_and(|o| orgs.contains(o)))
                && spaces.as_ref().is_none_or(|spaces| {
                    spaces
                        .iter()
                        .any(|s| state.spaces.get(s).is_some_and(|s| s.quota_guid.as_ref() == Some(&quota.common.guid)))
                })
        }))
        .into_iter()
        .map(|quota| present(&ctx.urls.api, &state, quota))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/space_quotas", items)))
}

async fn get_space_quota(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let quota = state.space_quotas.get(&guid).ok_or_else(|| ApiError::not_found("Space quota"))?;
    Ok(Json(present(&ctx.urls.api, &state, quota)))
}

/// What the spaces `in_scope` accepts use: CC's `memory_used` (`started_app_memory`, memory × instances of every
/// process whose app is STARTED, plus the memory of their PENDING and RUNNING tasks) and the started instance count.
fn started_usage(state: &CcState, in_scope: impl Fn(&str) -> bool) -> (u64, u64) {
    let in_scope_app = |app_guid: &str| state.apps.get(app_guid).is_some_and(|a| in_scope(&a.space_guid));
    let tasks: u64 = state
        .tasks
        .values()
        .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running) && in_scope_app(&t.app_guid))
        .map(|t| t.memory_in_mb)
        .sum();
    state
        .processes
        .values()
        .filter(|p| {
            state.apps.get(&p.app_guid).is_some_and(|a| a.state == AppState::Started && in_scope(&a.space_guid))
        })
        .fold((tasks, 0), |(memory, instances), p| {
            (memory + p.memory_in_mb * u64::from(p.instances), instances + u64::from(p.instances))
        })
}

/// The `usage_summary` body: `organization_usage_summary_presenter.rb` / `space_usage_summary_presenter.rb`. The
/// sim has user-provided service instances only, which CC does not count, and no keys or reserved ports;
/// `per_app_tasks` counts PENDING and RUNNING tasks (`running_and_pending_tasks_count`).
fn usage_body(state: &CcState, in_scope: impl Fn(&str) -> bool, org_guid: &str, links: Value) -> Value {
    let (memory, instances) = started_usage(state, &in_scope);
    let routes = state.routes.values().filter(|r| in_scope(&r.space_guid)).count();
    let domains = state.domains.values().filter(|d| d.org_guid.as_deref() == Some(org_guid)).count();
    let tasks = state
        .tasks
        .values()
        .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running))
        .filter(|t| state.apps.get(&t.app_guid).is_some_and(|a| in_scope(&a.space_guid)))
        .count();
    json!({
        "usage_summary": {
            "started_instances": instances,
            "memory_in_mb": memory,
            "routes": routes,
            "service_instances": 0,
            "reserved_ports": 0,
            "domains": domains,
            "per_app_tasks": tasks,
            "service_keys": 0,
        },
        "links": links,
    })
}

async fn org_usage(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    state.orgs.get(&guid).ok_or_else(|| ApiError::not_found("Organization"))?;
    let base = &ctx.urls.api;
    let in_org = |space: &str| state.spaces.get(space).is_some_and(|s| s.org_guid == guid);
    let links = json!({
        "self": {"href": format!("{base}/v3/organizations/{guid}/usage_summary")},
        "organization": {"href": format!("{base}/v3/organizations/{guid}")},
    });
    Ok(Json(usage_body(&state, in_org, &guid, links)))
}

async fn space_usage(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    if !ctx.config.cc_api_version.at_least(SPACE_USAGE_SINCE) {
        return Err(ApiError::unknown_request());
    }
    let state = ctx.state();
    let org_guid = state.space(&guid)?.org_guid.clone();
    let base = &ctx.urls.api;
    let links = json!({
        "self": {"href": format!("{base}/v3/spaces/{guid}/usage_summary")},
        "space": {"href": format!("{base}/v3/spaces/{guid}")},
    });
    Ok(Json(usage_body(&state, |space| space == guid, &org_guid, links)))
}

/// Whether `additional_mb` fits in what the space quota and the org quota leave (`has_remaining_memory` of
/// `app/models/runtime/space.rb` and `organization.rb`; an unlimited quota always has room): (space, org).
fn memory_fits(state: &CcState, space_guid: &str, additional_mb: i64) -> ApiResult<(bool, bool)> {
    let space = state.space(space_guid)?;
    let remaining = |limit: Option<u64>, in_scope: &dyn Fn(&str) -> bool| {
        limit.is_none_or(|limit| {
            let (used, _) = started_usage(state, in_scope);
            limit as i64 - used as i64 >= additional_mb
        })
    };
    let space_limit = space.quota_guid.as_ref().and_then(|q| state.space_quotas.get(q)).and_then(|q| q.memory_limit_mb);
    let org = state.orgs.get(&space.org_guid).ok_or_else(|| ApiError::not_found("Organization"))?;
    let org_limit = state.org_quotas.get(&org.quota_guid).and_then(|q| q.memory_limit_mb);
    let space_fits = remaining(space_limit, &|s: &str| s == space_guid);
    let org_fits = remaining(org_limit, &|s: &str| state.spaces.get(s).is_some_and(|s| s.org_guid == space.org_guid));
    Ok((space_fits, org_fits))
}

/// CC's `AppMaxMemoryPolicy` (`app/models/runtime/constraints/max_memory_policy.rb`), space quota first, then the
/// org's: `additional_mb` must fit in what the quota leaves. A failed check is the process's validation error,
/// which `AppStart` and `ProcessScale` answer as 422 with the Sequel message ("memory space_quota_exceeded",
/// "memory quota_exceeded", joined by ", " when both fail).
fn check_memory(state: &CcState, space_guid: &str, additional_mb: i64) -> ApiResult<()> {
    let (space_fits, org_fits) = memory_fits(state, space_guid, additional_mb)?;
    validation_errors([(!space_fits, "memory space_quota_exceeded"), (!org_fits, "memory quota_exceeded")])
}

/// CC's `TaskMaxMemoryPolicy` for a new task (`task_model.rb#validate`: the org's quota first, then the space's):
/// the task's memory must fit in what each quota leaves, else TaskCreate's InvalidTask, a 422 with the Sequel
/// messages ("memory_in_mb exceeds organization memory quota, memory_in_mb exceeds space memory quota").
pub(crate) fn check_task_memory(state: &CcState, space_guid: &str, memory_mb: u64) -> ApiResult<()> {
    let (space_fits, org_fits) = memory_fits(state, space_guid, memory_mb as i64)?;
    validation_errors([
        (!org_fits, "memory_in_mb exceeds organization memory quota"),
        (!space_fits, "memory_in_mb exceeds space memory quota"),
    ])
}

/// The failed checks' Sequel messages, in order, joined into one 422.
fn validation_errors(checks: [(bool, &str); 2]) -> ApiResult<()> {
    let errors: Vec<&str> = checks.into_iter().filter(|(failed, _)| *failed).map(|(_, e)| e).collect();
    if errors.is_empty() { Ok(()) } else { Err(ApiError::unprocessable(errors.join(", "))) }
}

/// The quota check of starting a stopped app (`app/actions/app_start.rb`): all its processes become started.
pub(crate) fn check_app_start(state: &CcState, app_guid: &str) -> ApiResult<()> {
    let app = state.app(app_guid)?;
    if app.state == AppState::Started {
        return Ok(());
    }
    let additional: u64 = state.app_processes(app_guid).map(|p| p.memory_in_mb * u64::from(p.instances)).sum();
    check_memory(state, &app.space_guid, additional as i64)
}

/// The quota check of scaling a process (`app/actions/process_scale.rb`, `ProcessMemoryCalculator`): only a started
/// process asks for memory, the difference to what it uses now.
pub(crate) fn check_scale(state: &CcState, before: &Process, after: &Process) -> ApiResult<()> {
    let app = state.app(&after.app_guid)?;
    if app.state != AppState::Started {
        return Ok(());
    }
    let total = |p: &Process| (p.memory_in_mb * u64::from(p.instances)) as i64;
    check_memory(state, &app.space_guid, total(after) - total(before))
}
