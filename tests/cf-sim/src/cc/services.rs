//! User-provided service instances (with credentials) and their service credential bindings to apps, which
//! become VCAP_SERVICES at the app's next start.

use axum::Json;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::body;
use super::error::{ApiError, ApiResult};
use super::jobs;
use super::list::{ListMessage, ListQuery, list_keys, matches_any};
use super::present;
use crate::shared::Ctx;
use crate::state::{Binding, ServiceInstance, ServicePlan, State as CcState};

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/v3/service_instances", get(list_instances).post(create_instance))
        .route("/v3/service_instances/{guid}", get(get_instance).patch(update_instance).delete(delete_instance))
        .route("/v3/service_instances/{guid}/credentials", get(instance_credentials))
        .route("/v3/service_credential_bindings", get(list_bindings).post(create_binding))
        .route("/v3/service_credential_bindings/{guid}", get(get_binding).patch(update_binding).delete(delete_binding))
        .route("/v3/service_credential_bindings/{guid}/details", get(binding_details))
        .route("/v3/service_credential_bindings/{guid}/parameters", get(binding_parameters))
}

/// `ServiceInstancesListMessage` (`app/messages/service_instances_list_message.rb`): its single keys, then its array keys.
const INSTANCES_LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys![
        "type",
        "fields",
        "names",
        "space_guids",
        "organization_guids",
        "service_plan_guids",
        "service_plan_names",
        "label_selector"
    ],
    orders: &["created_at", "updated_at", "name"],
    unmodelled: &["fields", "service_plan_guids", "service_plan_names"],
};

async fn list_instances(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &INSTANCES_LIST_MESSAGE, ctx.default_per_page())?;
    let (names, spaces, orgs) = (q.list("names"), q.list("space_guids"), q.list("organization_guids"));
    let kind = q.one_of("type", &["managed", "user-provided"])?;
    let state = ctx.state();
    let items = q
        .select(state.service_instances.values().filter(|s| {
            matches_any(&names, &s.name, false)
                && matches_any(&spaces, &s.space_guid, false)
                && kind.is_none_or(|k| k == if s.plan.is_some() { "managed" } else { "user-provided" })
                && orgs.as_ref().is_none_or(|orgs| {
                    state.spaces.get(&s.space_guid).is_some_and(|space| orgs.contains(&space.org_guid))
                })
        }))
        .into_iter()
        .map(|s| present::service_instance(&ctx.urls.api, s))
        .collect();
    Ok(Json(q.paginate(&ctx.urls.api, "/v3/service_instances", items)))
}

async fn get_instance(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(present::service_instance(&ctx.urls.api, state.service_instance(&guid)?)))
}

async fn instance_credentials(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    Ok(Json(state.service_instance(&guid)?.credentials.clone()))
}

fn apply_instance_fields(si: &mut ServiceInstance, map: &Map<String, Value>) -> ApiResult<()> {
    if let Some(name) = body::string_field(map, "name")? {
        si.name = name;
    }
    match map.get("credentials") {
        None => {}
        Some(Value::Object(c)) => si.credentials = Value::Object(c.clone()),
        Some(_) => return Err(ApiError::unprocessable("Credentials must be an object")),
    }
    if let Some(tags) = map.get("tags") {
        si.tags = serde_json::from_value(tags.clone())
            .map_err(|_| ApiError::unprocessable("Tags must be a list of strings"))?;
    }
    if map.contains_key("syslog_drain_url") {
        si.syslog_drain_url = body::string_field(map, "syslog_drain_url")?;
    }
    if map.contains_key("route_service_url") {
        si.route_service_url = body::string_field(map, "route_service_url")?;
    }
    si.common.metadata.apply(map.get("metadata"))
}

async fn create_instance(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let map = body::object(&raw)?;
    body::only_keys(
        &map,
        &[
            "type",
            "name",
            "relationships",
            "credentials",
            "tags",
            "syslog_drain_url",
            "route_service_url",
            "metadata",
            "parameters",
        ],
    )?;
    match body::string_field(&map, "type")?.as_deref() {
        Some("user-provided") => {}
        Some("managed") => return Err(ApiError::unprocessable("Relationships Service plan can't be blank")),
        _ => return Err(ApiError::unprocessable("Type must be one of 'managed', 'user-provided'")),
    }
    let name = body::string_field(&map, "name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::unprocessable("Name can't be blank"))?;
    let space_guid = body::required_relationship(&map, "space")?;
    let mut state = ctx.state();
    if !state.spaces.contains_key(&space_guid) {
        return Err(ApiError::unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.".to_string(),
        ));
    }
    insert_instance(&ctx.urls.api, &mut state, name, space_guid, None, |si| apply_instance_fields(si, &map))
}

/// Adds an instance named `name` to the space, unless one has the name already (CC's "name is taken"), with
/// `plan` (`None`: user-provided) and what `configure` sets: 201 with it as `GET /v3/service_instances/:guid`
/// presents it.
pub(super) fn insert_instance(
    api: &str,
    state: &mut CcState,
    name: String,
    space_guid: String,
    plan: Option<ServicePlan>,
    configure: impl FnOnce(&mut ServiceInstance) -> ApiResult<()>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if state.service_instances.values().any(|s| s.space_guid == space_guid && s.name == name) {
        return Err(ApiError::unprocessable(format!("The service instance name is taken: {name}.")));
    }
    let common = state.common();
    let guid = common.guid.clone();
    let mut si = ServiceInstance {
        common,
        name,
        space_guid,
        credentials: json!({}),
        tags: Vec::new(),
        syslog_drain_url: None,
        route_service_url: None,
        plan,
    };
    configure(&mut si)?;
    let body = present::service_instance(api, &si);
    state.service_instances.insert(guid, si);
    Ok((StatusCode::CREATED, Json(body)))
}

async fn update_instance(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["name", "credentials", "tags", "syslog_drain_url", "route_service_url", "metadata"])?;
    let mut state = ctx.state();
    let mut si = state.service_instance(&guid)?.clone();
    apply_instance_fields(&mut si, &map)?;
    if state
        .service_instances
        .values()
        .any(|s| s.space_guid == si.space_guid && s.name == si.name && s.common.guid != guid)
    {
        return Err(ApiError::unprocessable(format!("The service instance name is taken: {}.", si.name)));
    }
    state.touch(&mut si.common);
    let body = present::service_instance(&ctx.urls.api, &si);
    state.service_instances.insert(guid, si);
    Ok(Json(body))
}

async fn delete_instance(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<StatusCode> {
    let mut state = ctx.state();
    state.service_instance(&guid)?;
    if state.bindings.values().any(|b| b.service_instance_guid == guid) {
        return Err(ApiError::new(
            422,
            10006,
            "CF-AssociationNotEmpty",
            "Please delete the service_bindings, service_keys, and routes associations for your service_instances.",
        ));
    }
    state.service_instances.remove(&guid);
    Ok(StatusCode::NO_CONTENT)
}

/// Binds an app to an instance (shared with apply_manifest); the built-in broker keeps a managed binding's
/// `parameters`, a user-provided instance has none.
pub fn insert_binding(
    state: &mut CcState,
    app_guid: &str,
    instance_guid: &str,
    name: Option<String>,
    parameters: Map<String, Value>,
) -> ApiResult<String> {
    let app = state
        .apps
        .get(app_guid)
        .ok_or_else(|| ApiError::unprocessable(format!("The app could not be found: '{app_guid}'")))?;
    let instance = state.service_instances.get(instance_guid).ok_or_else(|| {
        ApiError::unprocessable(format!("The service instance could not be found: '{instance_guid}'"))
    })?;
    if app.space_guid != instance.space_guid {
        return Err(ApiError::unprocessable("The service instance and the app are in different spaces"));
    }
    if state.bindings.values().any(|b| b.app_guid == app_guid && b.service_instance_guid == instance_guid) {
        return Err(ApiError::unprocessable("The app is already bound to the service instance"));
    }
    if let Some(name) = &name
        && state.bindings.values().any(|b| b.app_guid == app_guid && b.name.as_ref() == Some(name))
    {
        return Err(ApiError::unprocessable(format!(
            "The binding name is invalid. Binding names must be unique for a given service instance and app. The app \
             already has a binding with name '{name}'."
        )));
    }
    let parameters = if instance.plan.is_some() { parameters } else { Map::new() };
    let common = state.common();
    let guid = common.guid.clone();
    state.bindings.insert(
        guid.clone(),
        Binding {
            common,
            name,
            app_guid: app_guid.to_string(),
            service_instance_guid: instance_guid.to_string(),
            parameters,
        },
    );
    Ok(guid)
}

/// `service_credential_bindings_controller.rb#create`: the generic then the app message
/// (`service_credential_binding_create_message.rb`, `service_credential_app_binding_create_message.rb`), the service
/// instance (422 when unknown), `check_parameters_support` (a user-provided instance refuses any `parameters` key,
/// even `{}`), the app, then `ServiceCredentialBindingAppCreate`'s rules. A user-provided instance is bound at
/// once (201); a managed one answers 202 with a `service_bindings.create` job, its binding (with the
/// `parameters` the broker was given) made before the job completes. A `key` binding is refused as
/// `service_credential_binding_key_create.rb` refuses it for a user-provided instance; cf-sim has no service keys.
async fn create_binding(State(ctx): State<Ctx>, raw: Bytes) -> ApiResult<Response> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["type", "strategy", "name", "relationships", "parameters", "metadata"])?;
    let kind = map.get("type").and_then(Value::as_str).filter(|t| *t == "app" || *t == "key");
    let mut errors = Vec::new();
    if map.get("parameters").is_some_and(|p| !p.is_null() && !p.is_object()) {
        errors.push("Parameters must be an object".to_string());
    }
    if kind.is_none() {
        errors.push("Type must be 'app' or 'key'".to_string());
    }
    if body::relationship_guid(&map, "service_instance").is_none() {
        errors.push("Relationships Service instance can't be blank".to_string());
    }
    if kind == Some("app") {
        let strategy = map.get("strategy").filter(|s| !s.is_null());
        if strategy.is_some_and(|s| s != "single" && s != "multiple") {
            errors.push("Strategy must be 'single' or 'multiple'".to_string());
        }
        if body::relationship_guid(&map, "app").is_none() {
            errors.push("Relationships App can't be blank".to_string());
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::unprocessable(errors.join(", ")));
    }
    let instance = body::required_relationship(&map, "service_instance")?;
    let name = body::string_field(&map, "name")?;
    let mut metadata = crate::cc::metadata::Metadata::default();
    metadata.apply(map.get("metadata"))?;
    let mut state = ctx.state();
    let managed = match state.service_instances.get(&instance) {
        None => return Err(ApiError::unprocessable(format!("The service instance could not be found: '{instance}'"))),
        Some(si) => si.plan.is_some(),
    };
    if !managed && map.contains_key("parameters") {
        return Err(ApiError::unprocessable(
            "Binding parameters are not supported for user-provided service instances",
        ));
    }
    if kind == Some("key") && managed {
        return Err(ApiError::unprocessable("cf-sim does not model service keys"));
    }
    if kind == Some("key") {
        return Err(ApiError::unprocessable(
            "Service credential bindings of type 'key' are not supported for user-provided service instances.",
        ));
    }
    let app = body::required_relationship(&map, "app")?;
    let parameters = map.get("parameters").and_then(Value::as_object).cloned().unwrap_or_default();
    let guid = insert_binding(&mut state, &app, &instance, name, parameters)?;
    let binding = state.bindings.get_mut(&guid).expect("just created");
    binding.common.metadata = metadata;
    if !managed {
        return Ok((StatusCode::CREATED, Json(present::binding(&ctx.urls.api, binding))).into_response());
    }
    drop(state);
    let link = ("service_credential_binding".to_string(), format!("/v3/service_credential_bindings/{guid}"));
    Ok(jobs::enqueue(&ctx, "service_bindings.create", Some(link), Box::new(|_| Ok(Vec::new()))))
}

/// The binding list's filters on a service plan or offering (`service_credential_binding_list_message.rb`).
const PLAN_FILTERS: &[&str] =
    &["service_plan_guids", "service_plan_names", "service_offering_guids", "service_offering_names"];

/// `ServiceCredentialBindingListMessage` (`app/messages/service_credential_binding_list_message.rb`): its array
/// keys, then `type`.
const BINDINGS_LIST_MESSAGE: ListMessage = ListMessage {
    keys: list_keys![
        "names",
        "service_instance_guids",
        "service_instance_names",
        "service_plan_names",
        "service_plan_guids",
        "service_offering_names",
        "service_offering_guids",
        "app_guids",
        "app_names",
        "include",
        "type",
        "label_selector"
    ],
    orders: &["created_at", "updated_at", "name"],
    unmodelled: &[],
};

async fn list_bindings(State(ctx): State<Ctx>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let q = ListQuery::parse_list(raw.as_deref(), &BINDINGS_LIST_MESSAGE, ctx.default_per_page())?;
    let (apps, instances, instance_names, app_names, names) = (
        q.list("app_guids"),
        q.list("service_instance_guids"),
        q.list("service_instance_names"),
        q.list("app_names"),
        q.list("names"),
    );
    let kind = q.one_of("type", &["app", "key"])?;
    let includes = q.includes_of(&["app", "service_instance"])?;
    let state = ctx.state();
    let selected = q.select(state.bindings.values().filter(|b| {
        matches_any(&apps, &b.app_guid, false)
            && matches_any(&instances, &b.service_instance_guid, false)
            && kind.is_none_or(|k| k == "app")
            // A user-provided instance has no plan or offering, so filters on them match no binding.
            && PLAN_FILTERS.iter().all(|f| q.get(f).is_none())
            && names.as_ref().is_none_or(|n| b.name.as_ref().is_some_and(|name| n.contains(name)))
            && instance_names.as_ref().is_none_or(|n| {
                state.service_instances.get(&b.service_instance_guid).is_some_and(|s| n.contains(&s.name))
            })
            && app_names.as_ref().is_none_or(|n| state.apps.get(&b.app_guid).is_some_and(|a| n.contains(&a.name)))
    }));
    let page: Vec<&Binding> = selected.iter().skip((q.page - 1) * q.per_page).take(q.per_page).copied().collect();
    let items = selected.iter().map(|b| present::binding(&ctx.urls.api, b)).collect();
    let mut body = q.paginate(&ctx.urls.api, "/v3/service_credential_bindings", items);
    if !includes.is_empty() {
        let mut included = Map::new();
        if includes.iter().any(|i| i == "app") {
            let apps: Vec<Value> = page
                .iter()
                .filter_map(|b| state.apps.get(&b.app_guid))
                .map(|a| present::app_at(&ctx.urls.api, ctx.config.cc_api_version, a))
                .collect();
            included.insert("apps".into(), json!(dedup(apps)));
        }
        if includes.iter().any(|i| i == "service_instance") {
            let instances: Vec<Value> = page
                .iter()
                .filter_map(|b| state.service_instances.get(&b.service_instance_guid))
                .map(|s| present::service_instance(&ctx.urls.api, s))
                .collect();
            included.insert("service_instances".into(), json!(dedup(instances)));
        }
        body["included"] = Value::Object(included);
    }
    Ok(Json(body))
}

fn dedup(mut resources: Vec<Value>) -> Vec<Value> {
    resources.sort_by(|a, b| a["guid"].as_str().cmp(&b["guid"].as_str()));
    resources.dedup_by(|a, b| a["guid"] == b["guid"]);
    resources
}

async fn get_binding(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let binding = state.bindings.get(&guid).ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    Ok(Json(present::binding(&ctx.urls.api, binding)))
}

async fn update_binding(State(ctx): State<Ctx>, Path(guid): Path<String>, raw: Bytes) -> ApiResult<Json<Value>> {
    let map = body::object(&raw)?;
    body::only_keys(&map, &["metadata"])?;
    let mut state = ctx.state();
    let mut binding =
        state.bindings.get(&guid).ok_or_else(|| ApiError::not_found("Service credential binding"))?.clone();
    binding.common.metadata.apply(map.get("metadata"))?;
    state.touch(&mut binding.common);
    let body = present::binding(&ctx.urls.api, &binding);
    state.bindings.insert(guid, binding);
    Ok(Json(body))
}

async fn delete_binding(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<StatusCode> {
    let mut state = ctx.state();
    state.bindings.remove(&guid).ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn binding_details(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let binding = state.bindings.get(&guid).ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    let instance = state.service_instance(&binding.service_instance_guid)?;
    Ok(Json(
        json!({"credentials": instance.credentials, "syslog_drain_url": instance.syslog_drain_url, "volume_mounts": []}),
    ))
}

/// `service_credential_bindings_controller.rb#parameters` and `ServiceBindingRead#fetch_parameters`: the
/// broker's parameters of a binding to a managed instance whose offering is `bindings_retrievable`; any other
/// binding (a user-provided instance's too) is refused with `ServiceFetchBindingParametersNotSupported`.
async fn binding_parameters(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let binding = state.bindings.get(&guid).ok_or_else(|| ApiError::not_found("Service credential binding"))?;
    let instance = state.service_instance(&binding.service_instance_guid)?;
    if !instance.plan.as_ref().is_some_and(|p| p.bindings_retrievable) {
        return Err(ApiError::new(
            400,
            90007,
            "CF-ServiceFetchBindingParametersNotSupported",
            "This service does not support fetching service binding parameters.",
        ));
    }
    Ok(Json(Value::Object(binding.parameters.clone())))
}
