//! Routes and their destinations: create with CC's validation, list with the CLI's filters, insert / replace /
//! remove destinations (which reach the router after the propagation delay), and delete as an async job.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::jobs;
use super::list::{ListQuery, matches_any};
use super::present;
use crate::clock::{new_guid, now_iso};
use crate::shared::Ctx;
use crate::state::{Destination, Route, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/routes", get(list).post(create))
        .route("/v3/routes/{guid}", get(get_one).patch(update).delete(delete_route))
        .route(
            "/v3/routes/{guid}/destinations",
            get(get_destinations).post(add_destinations).patch(replace_destinations),
        )
        .route("/v3/routes/{guid}/destinations/{destination}", delete(remove_destination))
        .route("/v3/apps/{guid}/routes", get(app_routes))
        .route("/v3/spaces/{guid}/routes", delete(delete_unmapped))
}

const FILTERS: &[&str] =
    &["hosts", "paths", "domain_guids", "space_guids", "app_guids", "organization_guids", "ports", "include"];

fn list_body(ctx: &Ctx, state: &CcState, q: &ListQuery, routes: Vec<&Route>, path: &str) -> Value {
    let (hosts, paths, domains, spaces, apps, orgs) = (
        q.list("hosts"),
        q.list("paths"),
        q.list("domain_guids"),
        q.list("space_guids"),
        q.list("app_guids"),
        q.list("organization_guids"),
    );
    let filtered = routes.into_iter().filter(|r| {
        matches_any(&hosts, &r.host, true)
            && matches_any(&paths, &r.path, false)
            && matches_any(&domains, &r.domain_guid, false)
            && matches_any(&spaces, &r.space_guid, false)
            && apps.as_ref().is_none_or(|apps| r.destinations.iter().any(|d| apps.contains(&d.app_guid)))
            && orgs
                .as_ref()
                .is_none_or(|orgs| state.spaces.get(&r.space_guid).is_some_and(|s| orgs.contains(&s.org_guid)))
    });
    let selected = q.select(filtered);
    let page: Vec<&Route> = selected.iter().skip((q.page - 1) * q.per_page).take(q.per_page).copied().collect();
    let items = selected.iter().map(|r| present::route(&ctx.urls.api, state, r)).collect();
    let mut body = q.paginate(&ctx.urls.api, path, items);
    let includes = q.includes();
    if !includes.is_empty() {
        let mut included = Map::new();
        if includes.iter().any(|i| i == "domain") {
            let mut guids: Vec<&String> = page.iter().map(|r| &r.domain_guid).collect();
            guids.sort();
            guids.dedup();
            let domains: Vec<Value> = guids
                .into_iter()
                .filter_map(|g| state.domains.get(g))
                .map(|d| present::domain(&ctx.urls.api, d))
                .collect();
            included.insert("domains".into(), json!(domains));
        }
        if includes.iter().any(|i| i == "space" || i == "space.organization") {
            let mut guids: Vec<&String> = page.iter().map(|r| &r.space_guid).collect();
            guids.sort();
            guids.dedup();
            let spaces: Vec<&crate::state::Space> = guids.into_iter().filter_map(|g| state.spaces.get(g)).collect();
            included.insert(
                "spaces".into(),
                json!(spaces.iter().map(|s| present::space(&ctx.urls.api, s)).collect::<Vec<_>>()),
            );
            if includes.iter().any(|i| i == "space.organization") {
                let mut orgs: Vec<&String> = spaces.iter().map(|s| &s.org_guid).collect();
                orgs.sort();
                orgs.dedup();
                let orgs: Vec<Value> = orgs
                    .into_iter()
                    .filter_map(|g| state.orgs.get(g))
                    .map(|o| present::org(&ctx.urls.api, o))
                    .collect();
                included.insert("organizations".into(), json!(orgs));
            }
        }
        body["included"] = Value::Object(included);
    }
    body
}

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse(raw.as_deref(), FILTERS, ctx.default_per_page())?;
    let state = ctx.state();
    Ok(Json(list_body(&ctx, &state, &q, state.routes.values().collect(), "/v3/routes")))
}

async fn app_routes(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse(raw.as_deref(), FILTERS, ctx.default_per_page())?;
    let state = ctx.state();
    state.app(&guid)?;
    let routes = state.app_routes(&guid).collect();
    Ok(Json(list_body(&ctx, &state, &q, routes, &format!("/v3/apps/{guid}/routes"))))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::route(&ctx.urls.api, &state, state.route(&guid)?)))
}

/// Validates and creates a route; shared with apply_manifest.
pub fn insert_route(
    state: &mut CcState,
    host: &str,
    path: &str,
    domain_guid: &str,
    space_guid: &str,
) -> ApiResult<String> {
    let space = state.spaces.get(space_guid).ok_or_else(|| {
        ApiError::unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
    })?;
    let domain =
        state.domains.get(domain_guid).filter(|d| state.domain_visible_in_org(d, &space.org_guid)).ok_or_else(
            || ApiError::unprocessable("Invalid domain. Ensure that the domain exists and you have access to it."),
        )?;
    let valid_host =
        host == "*" || (host.len() <= 63 && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    if !valid_host {
        return Err(ApiError::unprocessable(
            "Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\"",
        ));
    }
    if domain.org_guid.is_none() && host.is_empty() {
        return Err(ApiError::unprocessable("Missing host. Routes in shared domains must have a host defined."));
    }
    if !path.is_empty() {
        let problem = if !path.starts_with('/') {
            Some("Path must begin with /")
        } else if path == "/" {
            Some("Path cannot be exactly /")
        } else if path.contains('?') {
            Some("Path cannot contain ?")
        } else if path.len() > 128 {
            Some("Path is too long (maximum is 128 characters)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ApiError::unprocessable(problem));
        }
    }
    let exists = state
        .routes
        .values()
        .any(|r| r.domain_guid == domain_guid && r.host.eq_ignore_ascii_case(host) && r.path == path);
    if exists {
        let path_part = if path.is_empty() { String::new() } else { format!(" and path '{path}'") };
        return Err(ApiError::uniqueness(format!(
            "Route already exists with host '{host}'{path_part} for domain '{}'.",
            domain.name
        )));
    }
    let common = state.common();
    let guid = common.guid.clone();
    state.routes.insert(
        guid.clone(),
        Route {
            common,
            host: host.to_ascii_lowercase(),
            path: path.to_string(),
            domain_guid: domain_guid.to_string(),
            space_guid: space_guid.to_string(),
            destinations: Vec::new(),
            loadbalancing: "round-robin".into(),
        },
    );
    Ok(guid)
}

fn loadbalancing(map: &Map<String, Value>) -> ApiResult<Option<String>> {
    let Some(options) = map.get("options").filter(|o| !o.is_null()) else { return Ok(None) };
    let options = options.as_object().ok_or_else(|| ApiError::unprocessable("Options must be an object"))?;
    match options.get("loadbalancing") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(lb)) if lb == "round-robin" || lb == "least-connection" || lb == "hash" => {
            Ok(Some(lb.clone()))
        }
        Some(other) => Err(ApiError::unprocessable(format!(
            "Options Loadbalancing must be one of 'round-robin, least-connection, hash' if present: {other}"
        ))),
    }
}

async fn create(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["host", "path", "port", "relationships", "options", "metadata"])?;
    let host = body::string_field(&map, "host")?.unwrap_or_default();
    let path = body::string_field(&map, "path")?.unwrap_or_default();
    let domain = body::required_relationship(&map, "domain")?;
    let space = body::required_relationship(&map, "space")?;
    let lb = loadbalancing(&map)?;
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let mut state = ctx.state();
    let guid = insert_route(&mut state, &host, &path, &domain, &space)?;
    let route = state.routes.get_mut(&guid).expect("just created");
    route.common.metadata = metadata;
    if let Some(lb) = lb {
        route.loadbalancing = lb;
    }
    let route = state.routes.get(&guid).expect("just created");
    Ok((StatusCode::CREATED, Json(present::route(&ctx.urls.api, &state, route))))
}

async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["metadata", "options"])?;
    let lb = loadbalancing(&map)?;
    let mut state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    route.common.metadata.apply(map.get("metadata"))?;
    if let Some(lb) = lb {
        route.loadbalancing = lb;
    }
    state.touch(&mut route.common);
    state.routes.insert(guid.clone(), route);
    Ok(Json(present::route(&ctx.urls.api, &state, state.route(&guid)?)))
}

async fn delete_route(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    ctx.state().route(&guid)?;
    let work_guid = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "route.delete",
        Some(("route".into(), format!("/v3/routes/{guid}"))),
        Box::new(move |ctx| {
            ctx.state().routes.remove(&work_guid);
            ctx.routing.publish(ctx);
            Ok(Vec::new())
        }),
    ))
}

async fn delete_unmapped(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let q = ListQuery::parse(raw.as_deref(), &["unmapped"], ctx.default_per_page())?;
    ctx.state().space(&guid)?;
    if q.get("unmapped") != Some("true") {
        return Err(ApiError::bad_query(
            "Mass delete not supported for mapped routes. Use 'unmapped=true' parameter to delete all unmapped routes.",
        ));
    }
    let space = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "space.delete_unmapped_routes",
        Some(("space".into(), format!("/v3/spaces/{guid}"))),
        Box::new(move |ctx| {
            ctx.state().routes.retain(|_, r| r.space_guid != space || !r.destinations.is_empty());
            Ok(Vec::new())
        }),
    ))
}

async fn get_destinations(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::destinations(&ctx.urls.api, state.route(&guid)?)))
}

/// The requested destinations, validated against the route's space.
fn requested_destinations(state: &CcState, route: &Route, raw: &Bytes) -> ApiResult<Vec<Destination>> {
    let map = body::object(raw)?;
    body::only_keys(&map, &["destinations"])?;
    let list = map
        .get("destinations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::unprocessable("Destinations must be an array"))?;
    let mut missing = Vec::new();
    let mut destinations = Vec::new();
    for item in list {
        let app_guid = item["app"]["guid"].as_str().map(str::to_string);
        let Some(app_guid) = app_guid else {
            return Err(ApiError::unprocessable("Destinations[0]: must have an 'app' with a 'guid'"));
        };
        let Some(app) = state.apps.get(&app_guid) else {
            missing.push(app_guid);
            continue;
        };
        if app.space_guid != route.space_guid {
            return Err(ApiError::unprocessable("Routes cannot be mapped to destinations in different spaces."));
        }
        let process_type = item["app"]["process"]["type"].as_str().unwrap_or("web").to_string();
        let port = item.get("port").and_then(Value::as_u64).unwrap_or(8080) as u16;
        let protocol = item.get("protocol").and_then(Value::as_str).unwrap_or("http1").to_string();
        if protocol != "http1" && protocol != "http2" {
            return Err(ApiError::unprocessable("Destinations[0]: protocol must be 'http1' or 'http2'.".to_string()));
        }
        let now = now_iso();
        destinations.push(Destination {
            guid: new_guid(),
            app_guid,
            process_type,
            port,
            protocol,
            created_at: now.clone(),
            updated_at: now,
        });
    }
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "App(s) with guid(s) \"{}\" do not exist or you do not have access.",
            missing.join("\", \"")
        )));
    }
    Ok(destinations)
}

fn same_target(a: &Destination, b: &Destination) -> bool {
    a.app_guid == b.app_guid && a.process_type == b.process_type && a.port == b.port && a.protocol == b.protocol
}

async fn add_destinations(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let body = {
        let mut state = ctx.state();
        let route = state.route(&guid)?.clone();
        let requested = requested_destinations(&state, &route, &raw)?;
        let mut route = route;
        for destination in requested {
            if !route.destinations.iter().any(|d| same_target(d, &destination)) {
                route.destinations.push(destination);
            }
        }
        if route.destinations.len() > 100 {
            return Err(ApiError::unprocessable("Routes can be mapped to at most 100 destinations."));
        }
        let body = present::destinations(&ctx.urls.api, &route);
        state.routes.insert(guid, route);
        body
    };
    ctx.routing.publish(&ctx);
    Ok(Json(body))
}

async fn replace_destinations(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let body = {
        let mut state = ctx.state();
        let mut route = state.route(&guid)?.clone();
        let requested = requested_destinations(&state, &route, &raw)?;
        let mut kept: Vec<Destination> = Vec::new();
        for destination in requested {
            if kept.iter().any(|d| same_target(d, &destination)) {
                continue;
            }
            kept.push(route.destinations.iter().find(|d| same_target(d, &destination)).cloned().unwrap_or(destination));
        }
        route.destinations = kept;
        let body = present::destinations(&ctx.urls.api, &route);
        state.routes.insert(guid, route);
        body
    };
    ctx.routing.publish(&ctx);
    Ok(Json(body))
}

async fn remove_destination(
    State(ctx): State<Ctx>,
    Path((guid, destination)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    {
        let mut state = ctx.state();
        let route = state.routes.get_mut(&guid).ok_or_else(|| ApiError::not_found("Route"))?;
        let before = route.destinations.len();
        route.destinations.retain(|d| d.guid != destination);
        if route.destinations.len() == before {
            return Err(ApiError::unprocessable(
                "Unable to unmap route from destination. Ensure the route has a destination with this guid."
                    .to_string(),
            ));
        }
    }
    ctx.routing.publish(&ctx);
    Ok(StatusCode::NO_CONTENT)
}

/// Unmaps an app from every route (when the app is deleted).
pub fn unmap_app(state: &mut CcState, app_guid: &str) {
    for route in state.routes.values_mut() {
        route.destinations.retain(|d| d.app_guid != app_guid);
    }
}
