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
use super::list::{DEFAULT_ORDERS, ListMessage, ListQuery, list_keys, matches_any};
use super::present;

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

/// The includes of `routes_list_message.rb` the sim renders (`route_policies` is not modelled).
const ROUTE_INCLUDES: &[&str] = &["domain", "space", "space.organization"];

/// A page of routes. `decorate`: render what `include` asks for — `routes_controller.rb#index` passes decorators,
/// `#index_by_app` validates `include` but renders no `included`.
fn list_body(
    ctx: &Ctx,
    state: &CcState,
    q: &ListQuery,
    routes: Vec<&Route>,
    path: &str,
    decorate: bool,
) -> ApiResult<Value> {
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
            // Every route in the sim is an HTTP route, whose port is null, and none is bound to a route service:
            // `ports` and `service_instance_guids` filters match none.
            && q.get("ports").is_none()
            && q.get("service_instance_guids").is_none()
    });
    let selected = q.select(filtered);
    let page: Vec<&Route> = selected.iter().skip((q.page - 1) * q.per_page).take(q.per_page).copied().collect();
    let items = selected.iter().map(|r| present::route(&ctx.urls.api, ctx.config.cc_api_version, state, r)).collect();
    let mut body = q.paginate(&ctx.urls.api, path, items);
    let includes = q.includes_of(ROUTE_INCLUDES)?;
    if decorate && !includes.is_empty() {
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
    Ok(body)
}

/// `RoutesListMessage` (`app/messages/routes_list_message.rb`), a ListMessage registering `label_selector` itself.
const LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys![
        "hosts",
        "space_guids",
        "organization_guids",
        "domain_guids",
        "paths",
        "app_guids",
        "include",
        "label_selector",
        "ports",
        "service_instance_guids"
    ],
    orders: DEFAULT_ORDERS,
    unmodelled: &[],
};

async fn list(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &LIST_MESSAGE, ctx.default_per_page())?;
    let state = ctx.state();
    Ok(Json(list_body(&ctx, &state, &q, state.routes.values().collect(), "/v3/routes", true)?))
}

async fn app_routes(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    // `index_by_app` merges the path's guid into `app_guids`, so a given one is not modelled.
    let q = ListQuery::parse_list(
        raw.as_deref(),
        &ListMessage { unmodelled: &["app_guids"], ..LIST_MESSAGE },
        ctx.default_per_page(),
    )?;
    let state = ctx.state();
    state.app(&guid)?;
    let routes = state.app_routes(&guid).collect();
    Ok(Json(list_body(&ctx, &state, &q, routes, &format!("/v3/apps/{guid}/routes"), false)?))
}

async fn get_one(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::route(&ctx.urls.api, ctx.config.cc_api_version, &state, state.route(&guid)?)))
}

/// `route_create_message.rb`'s rules for host and path, every problem in CC's words.
fn route_message_errors(host: &str, path: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if host.len() > 63 {
        errors.push("Host is too long (maximum is 63 characters)".to_string());
    }
    if !(host == "*" || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
        errors.push("Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\"".to_string());
    }
    if path.len() > 128 {
        errors.push("Path is too long (maximum is 128 characters)".to_string());
    }
    if !path.is_empty() && !path.starts_with('/') {
        errors.push("Path must begin with /".to_string());
    }
    if path.contains('?') {
        errors.push("Path cannot contain ?".to_string());
    }
    if path == "/" {
        errors.push("Path cannot be exactly /".to_string());
    }
    errors
}

/// Validates and creates a route; shared with apply_manifest. The message's rules, then the controller's space and
/// domain lookups, then `app/actions/route_create.rb`'s errors in its order (domain, host, path); each is a 422.
pub fn insert_route(
    state: &mut CcState,
    host: &str,
    path: &str,
    domain_guid: &str,
    space_guid: &str,
) -> ApiResult<String> {
    let errors = route_message_errors(host, path);
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors.join(", ")));
    }
    let space = state.spaces.get(space_guid).ok_or_else(|| {
        ApiError::unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
    })?;
    let domain = state.domains.get(domain_guid).ok_or_else(|| {
        ApiError::unprocessable("Invalid domain. Ensure that the domain exists and you have access to it.")
    })?;
    if !state.domain_visible_in_org(domain, &space.org_guid) {
        let org = state.orgs.get(&space.org_guid).map_or("", |o| o.name.as_str());
        return Err(ApiError::unprocessable(format!(
            "Invalid domain. Domain '{}' is not available in organization '{org}'.",
            domain.name
        )));
    }
    let fqdn = if host.is_empty() { domain.name.clone() } else { format!("{host}.{}", domain.name) };
    let route_error = if !host.is_empty() && state.domains.values().any(|d| d.name.eq_ignore_ascii_case(&fqdn)) {
        Some(format!("Route conflicts with domain '{fqdn}'."))
    } else if domain.internal && host == "*" {
        Some("Wildcard hosts are not supported for internal domains.".to_string())
    } else if domain.org_guid.is_none() && host.is_empty() {
        Some("Missing host. Routes in shared domains must have a host defined.".to_string())
    } else if fqdn.len() > 253 {
        Some("Host combined with domain name must be no more than 253 characters.".to_string())
    } else if domain.internal && !path.is_empty() {
        Some("Paths are not supported for internal domains.".to_string())
    } else {
        None
    };
    if let Some(error) = route_error {
        return Err(ApiError::unprocessable(error));
    }
    let same_host = |r: &&Route| r.domain_guid == domain_guid && r.host.eq_ignore_ascii_case(host);
    if state.routes.values().filter(same_host).any(|r| r.path == path) {
        // validation_error_host! / validation_error_path!: a RouteCreate::Error, which routes_controller.rb answers
        // as 422 CF-UnprocessableEntity.
        let what = match (host.is_empty(), path.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(" with host '{host}'"),
            (true, false) => format!(" with path '{path}'"),
            (false, false) => format!(" with host '{host}' and path '{path}'"),
        };
        return Err(ApiError::unprocessable(format!("Route already exists{what} for domain '{}'.", domain.name)));
    }
    // Route#validate_host_and_domain_in_different_space: on a shared domain a host belongs to one space, whatever
    // the path. No RouteCreate error names it, so CC answers Sequel's own message.
    if domain.org_guid.is_none() && state.routes.values().filter(same_host).any(|r| r.space_guid != space_guid) {
        return Err(ApiError::unprocessable("domain_id and host host_and_domain_taken_different_space"));
    }
    let common = state.common();
    let guid = common.guid.clone();
    state.routes.insert(
        guid.clone(),
        Route {
            common,
            // CC keeps the host as given (route.rb has no normalisation); comparisons here ignore case, as on a
            // MySQL database (Postgres would let `App` and `app` coexist).
            host: host.to_string(),
            path: path.to_string(),
            domain_guid: domain_guid.to_string(),
            space_guid: space_guid.to_string(),
            destinations: Vec::new(),
            loadbalancing: None,
        },
    );
    Ok(guid)
}

/// `route_options_message.rb` with the `hash_based_routing` feature flag at its default (off): `loadbalancing`
/// is round-robin or least-connection, and the hash options are unknown fields. The problems are reported under
/// `Options`, as `OptionsValidator` adds them.
fn loadbalancing(map: &Map<String, Value>) -> ApiResult<Option<String>> {
    let Some(options) = map.get("options") else { return Ok(None) };
    let Some(options) = options.as_object() else {
        return Err(ApiError::unprocessable("Options 'options' is not a valid object"));
    };
    let mut errors = Vec::new();
    let unknown: Vec<&str> = options
        .iter()
        .filter(|(k, v)| k.as_str() != "loadbalancing" && !v.is_null() && v.as_str() != Some(""))
        .map(|(k, _)| k.as_str())
        .collect();
    if !unknown.is_empty() {
        errors.push(format!("Options Unknown field(s): '{}'", unknown.join("', '")));
    }
    let lb = match options.get("loadbalancing") {
        None | Some(Value::Null) => None,
        Some(Value::String(lb)) if lb.is_empty() => None,
        Some(Value::String(lb)) if lb == "round-robin" || lb == "least-connection" => Some(lb.clone()),
        Some(_) => {
            errors.push("Options Loadbalancing must be one of 'round-robin, least-connection' if present".into());
            None
        }
    };
    if errors.is_empty() { Ok(lb) } else { Err(ApiError::unprocessable(errors.join(", "))) }
}

/// The keys a route message allows on this sim's CC version: `options` only from 3.184.0.
fn route_keys<'a>(ctx: &Ctx, keys: &[&'a str]) -> Vec<&'a str> {
    let options = ctx.config.cc_api_version.at_least(present::ROUTE_OPTIONS_SINCE);
    keys.iter().copied().filter(|k| *k != "options" || options).collect()
}

/// `POST /v3/routes` (`routes_controller.rb#create`). Every route in the sim is an HTTP route, so a port is
/// refused as `validation_error_port!` refuses it.
async fn create(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &route_keys(&ctx, &["host", "path", "port", "relationships", "options", "metadata"]))?;
    let host = body::string_field(&map, "host")?.unwrap_or_default();
    let path = body::string_field(&map, "path")?.unwrap_or_default();
    let domain = body::required_relationship(&map, "domain")?;
    let space = body::required_relationship(&map, "space")?;
    let lb = loadbalancing(&map)?;
    let port = map.get("port").filter(|p| !p.is_null());
    // ActiveModel's numericality (only_integer, 0..=65535) in its own words.
    let port_error = port.and_then(|port| match (port.as_i64(), port.as_f64()) {
        (Some(p), _) if p < 0 => Some("Port must be greater than or equal to 0"),
        (Some(p), _) if p > 65_535 => Some("Port must be less than or equal to 65535"),
        (Some(_), _) => None,
        (None, Some(_)) => Some("Port must be an integer"),
        (None, None) => Some("Port is not a number"),
    });
    if let Some(error) = port_error {
        return Err(ApiError::unprocessable(error));
    }
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let mut state = ctx.state();
    if port.is_some() {
        state.space(&space).map_err(|_| {
            ApiError::unprocessable("Invalid space. Ensure that the space exists and you have access to it.")
        })?;
        state.domain(&domain).map_err(|_| {
            ApiError::unprocessable("Invalid domain. Ensure that the domain exists and you have access to it.")
        })?;
        return Err(ApiError::unprocessable("Routes with protocol 'http' do not support ports."));
    }
    let guid = insert_route(&mut state, &host, &path, &domain, &space)?;
    let route = state.routes.get_mut(&guid).expect("just created");
    route.common.metadata = metadata;
    if lb.is_some() {
        route.loadbalancing = lb;
    }
    let route = state.routes.get(&guid).expect("just created");
    Ok((StatusCode::CREATED, Json(present::route(&ctx.urls.api, ctx.config.cc_api_version, &state, route))))
}

async fn update(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &route_keys(&ctx, &["metadata", "options"]))?;
    let lb = loadbalancing(&map)?;
    let mut state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    route.common.metadata.apply(map.get("metadata"))?;
    if lb.is_some() {
        route.loadbalancing = lb;
    }
    state.touch(&mut route.common);
    state.routes.insert(guid.clone(), route);
    Ok(Json(present::route(&ctx.urls.api, ctx.config.cc_api_version, &state, state.route(&guid)?)))
}

async fn delete_route(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Response> {
    ctx.state().route(&guid)?;
    let work_guid = guid.clone();
    Ok(jobs::enqueue(
        &ctx,
        "route.delete",
        Some(("route".into(), format!("/v3/routes/{guid}"))),
        Box::new(move |ctx| {
            let mut state = ctx.state();
            state.routes.remove(&work_guid);
            super::route_policies::forget_route(&mut state, &work_guid);
            drop(state);
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
            let mut state = ctx.state();
            let unmapped: Vec<String> = state
                .routes
                .values()
                .filter(|r| r.space_guid == space && r.destinations.is_empty())
                .map(|r| r.common.guid.clone())
                .collect();
            for route in &unmapped {
                state.routes.remove(route);
                super::route_policies::forget_route(&mut state, route);
            }
            Ok(Vec::new())
        }),
    ))
}

/// `route_destinations_list_message.rb`: `guids` and `app_guids`; the controller answers an invalid query with 422.
async fn get_destinations(
    State(ctx): State<Ctx>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).map(|(k, v)| (k.into(), v.into())).collect();
    let unknown: Vec<&str> =
        params.iter().map(|(k, _)| k.as_str()).filter(|k| *k != "guids" && *k != "app_guids").collect();
    if !unknown.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "Unknown query parameter(s): '{}'. Valid parameters are: 'guids', 'app_guids'",
            unknown.join("', '")
        )));
    }
    let filter = |key: &str| {
        params.iter().find(|(k, _)| k == key).map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
    };
    let (guids, apps) = (filter("guids"), filter("app_guids"));
    let state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    route.destinations.retain(|d| matches_any(&guids, &d.guid, false) && matches_any(&apps, &d.app_guid, false));
    Ok(Json(present::destinations(&ctx.urls.api, ctx.config.cc_api_version, &route)))
}

/// `RouteUpdateDestinationsMessage#destinations_valid?` (`app/messages/route_update_destinations_message.rb`):
/// every problem of the body, in CC's words. `replace` allows an empty list and weights; `protocols` is whether
/// this CC version knows a destination's `protocol` (3.105.0 on).
fn destination_errors(list: Option<&Value>, replace: bool, protocols: bool) -> Vec<String> {
    let minimum = usize::from(!replace);
    let Some(list) = list.and_then(Value::as_array).filter(|l| (minimum..=100).contains(&l.len())) else {
        return vec![format!(
            "Destinations must be an array containing between {minimum} and 100 destination objects."
        )];
    };
    let mut errors = Vec::new();
    let mut ports_per_app: Vec<(&Value, usize)> = Vec::new();
    for (index, item) in list.iter().enumerate() {
        let mut error = |message: &str| errors.push(format!("Destinations[{index}]: {message}"));
        let Some(dst) = item.as_object() else {
            error("must be an object.");
            continue;
        };
        let Some(app) = dst.get("app") else {
            error("must have an \"app\".");
            continue;
        };
        let allowed: &[&str] =
            if protocols { &["app", "weight", "port", "protocol"] } else { &["app", "weight", "port"] };
        if dst.keys().any(|k| !allowed.contains(&k.as_str())) {
            error(if protocols {
                "must have only \"app\" and optionally \"weight\", \"port\" or \"protocol\"."
            } else {
                "must have only \"app\" and optionally \"weight\" and \"port\"."
            });
            continue;
        }
        let guid_ok = app["guid"].as_str().is_some_and(|g| (1..200).contains(&g.len()));
        if !app.is_object() || !guid_ok {
            error("app must have the structure {\"guid\": \"app_guid\"}");
        } else if let Some(process) = app.get("process").filter(|p| !p.is_null()) {
            let valid = process
                .as_object()
                .is_some_and(|p| p.len() == 1 && p.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty()));
            if !valid {
                error("process must have the structure {\"type\": \"process_type\"}");
            }
        }
        if let Some(weight) = dst.get("weight").filter(|w| !w.is_null()) {
            if !replace {
                error("weighted destinations can only be used when replacing all destinations.");
            } else if !weight.as_u64().is_some_and(|w| (1..=100).contains(&w)) {
                error("weight must be a positive integer between 1 and 100.");
            }
        }
        if dst.get("port").is_some_and(|p| !p.is_null() && !p.as_u64().is_some_and(|p| (1024..=65_535).contains(&p))) {
            error("port must be a positive integer between 1024 and 65535 inclusive.");
        }
        let protocol = dst.get("protocol").filter(|p| !p.is_null());
        if protocol.is_some_and(|p| !p.as_str().is_some_and(|p| ["http1", "http2", "tcp"].contains(&p))) {
            error("protocol must be 'http1', 'http2' or 'tcp'.");
        }
        match ports_per_app.iter_mut().find(|(a, _)| *a == app) {
            Some((_, count)) => *count += 1,
            None => ports_per_app.push((app, 1)),
        }
    }
    if ports_per_app.iter().any(|(_, count)| *count > 10) {
        errors.push("Process must have at most 10 exposed ports.".into());
    }
    if errors.is_empty() {
        let weights: Vec<bool> = list.iter().map(|d| d.get("weight").is_some_and(|w| !w.is_null())).collect();
        if weights.contains(&true) {
            if weights.contains(&false) {
                errors.push("Destinations cannot contain both weighted and unweighted destinations.".into());
            } else if list.iter().filter_map(|d| d["weight"].as_u64()).sum::<u64>() != 100 {
                errors.push("Destinations must have weights that sum to 100.".into());
            }
        }
    }
    errors
}

/// The requested destinations: the message's rules, then the controller's (the apps exist and are in the route's
/// space), with the action's defaults (`app/actions/update_route_destinations.rb`: port 8080 and the route
/// protocol's default, http1).
fn requested_destinations(
    ctx: &Ctx,
    state: &CcState,
    route: &Route,
    raw: &Bytes,
    replace: bool,
) -> ApiResult<Vec<Destination>> {
    let map = body::object(raw)?;
    body::only_keys(&map, &["destinations"])?;
    let protocols = ctx.config.cc_api_version.at_least(present::DESTINATION_PROTOCOL_SINCE);
    let errors = destination_errors(map.get("destinations"), replace, protocols);
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors.join(", ")));
    }
    let list = map["destinations"].as_array().expect("validated");
    let mut missing: Vec<&str> = Vec::new();
    for guid in list.iter().filter_map(|d| d["app"]["guid"].as_str()) {
        if !state.apps.contains_key(guid) && !missing.contains(&guid) {
            missing.push(guid);
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "App(s) with guid(s) \"{}\" do not exist or you do not have access.",
            missing.join("\", \"")
        )));
    }
    if list.iter().any(|d| {
        d["app"]["guid"].as_str().and_then(|g| state.apps.get(g)).is_some_and(|a| a.space_guid != route.space_guid)
    }) {
        return Err(ApiError::unprocessable(
            "Routes destinations must be in either the route's space or the route's shared spaces",
        ));
    }
    Ok(list
        .iter()
        .map(|item| {
            let process_type = item["app"]["process"]["type"].as_str().unwrap_or("web");
            let port = item["port"].as_u64().map_or(8080, |p| p as u16);
            let protocol = item["protocol"].as_str().unwrap_or("http1");
            let mut destination =
                Destination::new(item["app"]["guid"].as_str().unwrap_or(""), process_type, port, protocol);
            destination.weight = item["weight"].as_u64().map(|w| w as u8);
            destination
        })
        .collect())
}

/// CC's mapping identity (app, process type, port), which its database keeps unique per route.
fn same_mapping(a: &Destination, b: &Destination) -> bool {
    a.app_guid == b.app_guid && a.process_type == b.process_type && a.port == b.port
}

/// Two destinations CC's action compares as equal hashes (mapping, protocol and weight).
fn same_destination(a: &Destination, b: &Destination) -> bool {
    same_mapping(a, b) && a.protocol == b.protocol && a.weight == b.weight
}

/// `validate_unique!`: equal entries in one request.
fn has_duplicates(requested: &[Destination]) -> bool {
    requested.iter().enumerate().any(|(i, a)| requested[i + 1..].iter().any(|b| same_destination(a, b)))
}

/// `validate_protocol_matches!`: the sim's routes are all HTTP routes, which take http1 and http2.
fn protocol_error(requested: &[Destination]) -> Option<String> {
    requested
        .iter()
        .find(|d| d.protocol == "tcp")
        .map(|d| format!("Cannot use '{}' protocol for http routes; valid options are: [http1, http2].", d.protocol))
}

/// Stores the route's new destinations and publishes them to the router.
fn save_destinations(ctx: &Ctx, mut state: std::sync::MutexGuard<'_, CcState>, route: Route) {
    state.routes.insert(route.common.guid.clone(), route);
    drop(state);
    ctx.routing.publish(ctx);
}

/// Saves the route and answers its destinations, as insert and replace do.
fn answer_destinations(ctx: &Ctx, state: std::sync::MutexGuard<'_, CcState>, route: Route) -> Json<Value> {
    let body = present::destinations(&ctx.urls.api, ctx.config.cc_api_version, &route);
    save_destinations(ctx, state, route);
    Json(body)
}

/// `UpdateRouteDestinations.add`: keeps the existing destinations; an equal one is skipped, one that differs only
/// in protocol is refused, and nothing can be added beside weighted destinations. Errors of the action are 422,
/// except duplicates within the request (`DuplicateDestinationError`), which `insert_destinations` does not rescue.
async fn add_destinations(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    let requested = requested_destinations(&ctx, &state, &route, &raw, false)?;
    if route.destinations.len() + requested.len() > 100 {
        return Err(ApiError::unprocessable("Routes can be mapped to at most 100 destinations."));
    }
    if has_duplicates(&requested) {
        return Err(ApiError::unhandled());
    }
    if route.destinations.iter().any(|d| d.weight.is_some()) {
        return Err(ApiError::unprocessable(
            "Destinations cannot be inserted when there are weighted destinations already configured.",
        ));
    }
    let mut to_add = Vec::new();
    for destination in requested {
        match route.destinations.iter().find(|d| same_mapping(d, &destination)) {
            Some(existing) if existing.protocol != destination.protocol => {
                return Err(ApiError::unprocessable(format!(
                    "Cannot add destination with protocol: {}. Destination already exists for route: {}, app: {}, \
                     process: {}, and protocol: {}.",
                    destination.protocol,
                    state.route_url(&route),
                    destination.app_guid,
                    destination.process_type,
                    existing.protocol
                )));
            }
            Some(_) => {}
            None => to_add.push(destination),
        }
    }
    if let Some(error) = protocol_error(&to_add) {
        return Err(ApiError::unprocessable(error));
    }
    route.destinations.extend(to_add);
    Ok(answer_destinations(&ctx, state, route))
}

/// `UpdateRouteDestinations.replace`: destinations equal to an existing one keep it (and its guid), the others are
/// created. `replace_destinations` rescues only duplicates (422); the action's other errors are a 500.
async fn replace_destinations(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    let requested = requested_destinations(&ctx, &state, &route, &raw, true)?;
    if has_duplicates(&requested) {
        return Err(ApiError::unprocessable("Destinations cannot contain duplicate entries"));
    }
    if protocol_error(&requested).is_some() {
        return Err(ApiError::unhandled());
    }
    route.destinations = requested
        .into_iter()
        .map(|wanted| route.destinations.iter().find(|d| same_destination(d, &wanted)).cloned().unwrap_or(wanted))
        .collect();
    Ok(answer_destinations(&ctx, state, route))
}

/// `destroy_destination`: 422 when the route has no such destination; a weighted one cannot be removed alone.
async fn remove_destination(
    State(ctx): State<Ctx>,
    Path((guid, destination)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let state = ctx.state();
    let mut route = state.route(&guid)?.clone();
    let found = route.destinations.iter().find(|d| d.guid == destination).ok_or_else(|| {
        ApiError::unprocessable(
            "Unable to unmap route from destination. Ensure the route has a destination with this guid.",
        )
    })?;
    if found.weight.is_some() {
        return Err(ApiError::unprocessable("Weighted destinations cannot be deleted individually."));
    }
    route.destinations.retain(|d| d.guid != destination);
    save_destinations(&ctx, state, route);
    Ok(StatusCode::NO_CONTENT)
}

/// Unmaps an app from every route (when the app is deleted).
pub fn unmap_app(state: &mut CcState, app_guid: &str) {
    for route in state.routes.values_mut() {
        route.destinations.retain(|d| d.app_guid != app_guid);
    }
}
