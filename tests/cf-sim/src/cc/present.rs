//! Presenters: the JSON CC returns for each resource, with absolute `links` built from the API's base URL.

use serde_json::{Value, json};

use crate::config::CcApiVersion;

use crate::state::{
    App, Binding, Build, Destination, Domain, Droplet, Job, Lifecycle, Org, Package, Process, Route, ServiceInstance,
    Space, State,
};

fn link(base: &str, path: &str) -> Value {
    json!({"href": format!("{base}{path}")})
}

fn link_method(base: &str, path: &str, method: &str) -> Value {
    json!({"href": format!("{base}{path}"), "method": method})
}

fn to_one(guid: Option<&str>) -> Value {
    match guid {
        Some(guid) => json!({"data": {"guid": guid}}),
        None => json!({"data": null}),
    }
}

pub fn lifecycle(lifecycle: &Lifecycle) -> Value {
    match lifecycle {
        Lifecycle::Buildpack { buildpacks, stack } => {
            json!({"type": "buildpack", "data": {"buildpacks": buildpacks, "stack": stack}})
        }
        Lifecycle::Docker => json!({"type": "docker", "data": {}}),
    }
}

pub fn org(base: &str, org: &Org) -> Value {
    let g = &org.common.guid;
    json!({
        "guid": g,
        "created_at": org.common.created_at,
        "updated_at": org.common.updated_at,
        "name": org.name,
        "suspended": false,
        "relationships": {"quota": to_one(Some(&org.quota_guid))},
        "metadata": org.common.metadata.to_json(),
        "links": {
            "self": link(base, &format!("/v3/organizations/{g}")),
            "domains": link(base, &format!("/v3/organizations/{g}/domains")),
            "default_domain": link(base, &format!("/v3/organizations/{g}/domains/default")),
            "quota": link(base, &format!("/v3/organization_quotas/{}", org.quota_guid)),
        },
    })
}

pub fn space(base: &str, space: &Space) -> Value {
    let g = &space.common.guid;
    let mut body = json!({
        "guid": g,
        "created_at": space.common.created_at,
        "updated_at": space.common.updated_at,
        "name": space.name,
        "suspended": false,
        "relationships": {"organization": to_one(Some(&space.org_guid)), "quota": to_one(space.quota_guid.as_deref())},
        "metadata": space.common.metadata.to_json(),
        "links": {
            "self": link(base, &format!("/v3/spaces/{g}")),
            "features": link(base, &format!("/v3/spaces/{g}/features")),
            "organization": link(base, &format!("/v3/organizations/{}", space.org_guid)),
            "apply_manifest": link_method(base, &format!("/v3/spaces/{g}/actions/apply_manifest"), "POST"),
        },
    });
    if let Some(quota) = &space.quota_guid {
        body["links"]["quota"] = link(base, &format!("/v3/space_quotas/{quota}"));
    }
    body
}

pub fn domain(base: &str, domain: &Domain) -> Value {
    let g = &domain.common.guid;
    let mut links = json!({
        "self": link(base, &format!("/v3/domains/{g}")),
        "route_reservations": link(base, &format!("/v3/domains/{g}/route_reservations")),
    });
    if let Some(org) = &domain.org_guid {
        links["organization"] = link(base, &format!("/v3/organizations/{org}"));
        links["shared_organizations"] = link(base, &format!("/v3/domains/{g}/relationships/shared_organizations"));
    }
    let mut body = json!({
        "guid": g,
        "created_at": domain.common.created_at,
        "updated_at": domain.common.updated_at,
        "name": domain.name,
        "internal": domain.internal,
        "router_group": null,
        "supported_protocols": ["http"],
        "metadata": domain.common.metadata.to_json(),
        "relationships": {
            "organization": to_one(domain.org_guid.as_deref()),
            "shared_organizations": {"data": domain.shared_org_guids.iter().map(|g| json!({"guid": g})).collect::<Vec<_>>()},
        },
        "links": links,
    });
    // domain_presenter.rb: both keys only on a domain that enforces route policies.
    if let Some(scope) = &domain.route_policies {
        body["enforce_route_policies"] = json!(true);
        body["route_policies_scope"] = json!(scope);
    }
    body
}

/// The first CC API version whose route destinations have `protocol` (cloud_controller_ng PR #2439, released with
/// 3.105.0); before it a destination request may not name one.
pub(crate) const DESTINATION_PROTOCOL_SINCE: CcApiVersion = CcApiVersion(3, 105, 0);

/// The first CC API version whose route destinations render `created_at` / `updated_at` (cloud_controller_ng
/// 1ee2ea6e73, released with 3.199.0).
const DESTINATION_TIMESTAMPS_SINCE: CcApiVersion = CcApiVersion(3, 199, 0);

/// The first CC API version with per-route `options` (cloud_controller_ng 05e617f864, released with 3.184.0);
/// before it routes render no `options` and a route request may not name them.
pub(crate) const ROUTE_OPTIONS_SINCE: CcApiVersion = CcApiVersion(3, 184, 0);

/// A destination as CC `version` renders it (app/presenters/v3/route_destination_presenter.rb).
fn destination(version: CcApiVersion, d: &Destination) -> Value {
    let mut body = json!({
        "guid": d.guid,
        "app": {"guid": d.app_guid, "process": {"type": d.process_type}},
        "weight": d.weight,
        "port": d.port,
    });
    if version.at_least(DESTINATION_PROTOCOL_SINCE) {
        body["protocol"] = json!(d.protocol);
    }
    if version.at_least(DESTINATION_TIMESTAMPS_SINCE) {
        body["created_at"] = json!(d.created_at);
        body["updated_at"] = json!(d.updated_at);
    }
    body
}

/// A route's destinations as CC `version` renders them (route_destinations_presenter.rb).
pub fn destinations(base: &str, version: CcApiVersion, route: &Route) -> Value {
    let g = &route.common.guid;
    json!({
        "destinations": route.destinations.iter().map(|d| destination(version, d)).collect::<Vec<_>>(),
        "links": {
            "self": link(base, &format!("/v3/routes/{g}/destinations")),
            "route": link(base, &format!("/v3/routes/{g}")),
        },
    })
}

/// A route as CC `version` renders it (app/presenters/v3/route_presenter.rb).
pub fn route(base: &str, version: CcApiVersion, state: &State, route: &Route) -> Value {
    let g = &route.common.guid;
    let mut body = json!({
        "guid": g,
        "protocol": "http",
        "port": null,
        "created_at": route.common.created_at,
        "updated_at": route.common.updated_at,
        "host": route.host,
        "path": route.path,
        "url": state.route_url(route),
        "destinations": route.destinations.iter().map(|d| destination(version, d)).collect::<Vec<_>>(),
        "metadata": route.common.metadata.to_json(),
        "relationships": {"space": to_one(Some(&route.space_guid)), "domain": to_one(Some(&route.domain_guid))},
        "links": {
            "self": link(base, &format!("/v3/routes/{g}")),
            "space": link(base, &format!("/v3/spaces/{}", route.space_guid)),
            "domain": link(base, &format!("/v3/domains/{}", route.domain_guid)),
            "destinations": link(base, &format!("/v3/routes/{g}/destinations")),
        },
    });
    if version.at_least(ROUTE_OPTIONS_SINCE) {
        body["options"] = route.loadbalancing.as_ref().map_or_else(|| json!({}), |lb| json!({"loadbalancing": lb}));
    }
    body
}

/// The first CC API version whose apps carry `relationships.current_droplet` (cloud_controller_ng commit
/// d543a66688; `config/version` was bumped to 3.174.0 before it and to 3.175.0 after it). Without a droplet CC
/// renders `{"data": {"guid": null}}` (app/presenters/v3/app_presenter.rb, spec/request/apps_spec.rb).
pub(crate) const CURRENT_DROPLET_SINCE: CcApiVersion = CcApiVersion(3, 175, 0);
/// The first CC API version whose apps link `clear_buildpack_cache` (commit adb73ec2e9).
pub(crate) const CLEAR_BUILDPACK_CACHE_SINCE: CcApiVersion = CcApiVersion(3, 171, 0);
/// The first CC API version whose builds have `staging_log_rate_limit_bytes_per_second` (commit 6d3e2e8fe1).
pub(crate) const BUILD_LOG_RATE_SINCE: CcApiVersion = CcApiVersion(3, 126, 0);

/// An app as CC `version` renders it (app/presenters/v3/app_presenter.rb).
pub(crate) fn app_at(base: &str, version: CcApiVersion, app: &App) -> Value {
    let g = &app.common.guid;
    let path = |suffix: &str| format!("/v3/apps/{g}{suffix}");
    let mut relationships = json!({"space": to_one(Some(&app.space_guid))});
    if version.at_least(CURRENT_DROPLET_SINCE) {
        relationships["current_droplet"] = json!({"data": {"guid": app.droplet_guid}});
    }
    let mut body = json!({
        "guid": g,
        "name": app.name,
        "state": app.state.as_str(),
        "created_at": app.common.created_at,
        "updated_at": app.common.updated_at,
        "lifecycle": lifecycle(&app.lifecycle),
        "relationships": relationships,
        "metadata": app.common.metadata.to_json(),
        "links": {
            "self": link(base, &path("")),
            "space": link(base, &format!("/v3/spaces/{}", app.space_guid)),
            "processes": link(base, &path("/processes")),
            "packages": link(base, &path("/packages")),
            "environment_variables": link(base, &path("/environment_variables")),
            "current_droplet": link(base, &path("/droplets/current")),
            "droplets": link(base, &path("/droplets")),
            "tasks": link(base, &path("/tasks")),
            "start": link_method(base, &path("/actions/start"), "POST"),
            "stop": link_method(base, &path("/actions/stop"), "POST"),
            "clear_buildpack_cache": link_method(base, &path("/actions/clear_buildpack_cache"), "POST"),
            "revisions": link(base, &path("/revisions")),
            "deployed_revisions": link(base, &path("/revisions/deployed")),
            "features": link(base, &path("/features")),
        },
    });
    if !version.at_least(CLEAR_BUILDPACK_CACHE_SINCE) {
        body["links"].as_object_mut().expect("links are an object").remove("clear_buildpack_cache");
    }
    body
}

fn health_check(check: &crate::state::HealthCheck, readiness: bool) -> Value {
    let mut data = serde_json::Map::new();
    if !readiness {
        data.insert("timeout".into(), json!(check.timeout));
    }
    data.insert("invocation_timeout".into(), json!(check.invocation_timeout));
    data.insert("interval".into(), json!(check.interval));
    if check.kind == "http" {
        data.insert("endpoint".into(), json!(check.endpoint.clone().unwrap_or_else(|| "/".into())));
    }
    json!({"type": check.kind, "data": data})
}

/// The first CC API version whose processes have `log_rate_limit_in_bytes_per_second` (commit 6f115cdf6c).
pub(crate) const PROCESS_LOG_RATE_SINCE: CcApiVersion = CcApiVersion(3, 126, 0);
/// The first CC API version whose processes have `readiness_health_check` (commit 89eb910c6d).
pub(crate) const PROCESS_READINESS_SINCE: CcApiVersion = CcApiVersion(3, 145, 0);
/// The first CC API version whose processes have `user` (commit 384b017c2e).
pub(crate) const PROCESS_USER_SINCE: CcApiVersion = CcApiVersion(3, 198, 0);

/// A process as CC `version` renders it (app/presenters/v3/process_presenter.rb); `in_list` hides the command as
/// CC does in lists.
pub fn process(base: &str, version: CcApiVersion, state: &State, process: &Process, in_list: bool) -> Value {
    let g = &process.common.guid;
    let space_guid = state.apps.get(&process.app_guid).map(|a| a.space_guid.clone()).unwrap_or_default();
    let command = if in_list {
        json!("[PRIVATE DATA HIDDEN IN LISTS]")
    } else {
        json!(process.command.clone().or_else(|| state.detected_command(process)))
    };
    let mut body = json!({
        "guid": g,
        "type": process.kind,
        "command": command,
        "user": "vcap",
        "instances": process.instances,
        "memory_in_mb": process.memory_in_mb,
        "disk_in_mb": process.disk_in_mb,
        "log_rate_limit_in_bytes_per_second": process.log_rate_limit,
        "health_check": health_check(&process.health_check, false),
        "readiness_health_check": health_check(&process.readiness_check, true),
        "relationships": {"app": to_one(Some(&process.app_guid)), "revision": to_one(None)},
        "metadata": process.common.metadata.to_json(),
        "created_at": process.common.created_at,
        "updated_at": process.common.updated_at,
        "version": process.version,
        "links": {
            "self": link(base, &format!("/v3/processes/{g}")),
            "scale": link_method(base, &format!("/v3/processes/{g}/actions/scale"), "POST"),
            "app": link(base, &format!("/v3/apps/{}", process.app_guid)),
            "space": link(base, &format!("/v3/spaces/{space_guid}")),
            "stats": link(base, &format!("/v3/processes/{g}/stats")),
            "process_instances": link(base, &format!("/v3/processes/{g}/process_instances")),
        },
    });
    let fields = body.as_object_mut().expect("a process is an object");
    for (field, since) in [
        ("log_rate_limit_in_bytes_per_second", PROCESS_LOG_RATE_SINCE),
        ("readiness_health_check", PROCESS_READINESS_SINCE),
        ("user", PROCESS_USER_SINCE),
    ] {
        if !version.at_least(since) {
            fields.remove(field);
        }
    }
    body
}

pub fn package(base: &str, package: &Package) -> Value {
    let g = &package.common.guid;
    let mut links = json!({
        "self": link(base, &format!("/v3/packages/{g}")),
        "app": link(base, &format!("/v3/apps/{}", package.app_guid)),
    });
    let data = match &package.docker {
        Some(docker) => {
            let mut data = json!({"image": docker.image});
            if let Some(username) = &docker.username {
                data["username"] = json!(username);
                data["password"] = json!("***");
            }
            data
        }
        None => {
            links["upload"] = link_method(base, &format!("/v3/packages/{g}/upload"), "POST");
            links["download"] = link_method(base, &format!("/v3/packages/{g}/download"), "GET");
            json!({"checksum": {"type": "sha256", "value": package.checksum}, "error": package.error})
        }
    };
    json!({
        "guid": g,
        "type": if package.docker.is_some() { "docker" } else { "bits" },
        "data": data,
        "state": package.state.as_str(),
        "created_at": package.common.created_at,
        "updated_at": package.common.updated_at,
        "relationships": {"app": to_one(Some(&package.app_guid))},
        "links": links,
        "metadata": package.common.metadata.to_json(),
    })
}

/// A build as CC `version` renders it (app/presenters/v3/build_presenter.rb).
pub fn build(base: &str, version: CcApiVersion, build: &Build) -> Value {
    let g = &build.common.guid;
    let mut links = json!({
        "self": link(base, &format!("/v3/builds/{g}")),
        "app": link(base, &format!("/v3/apps/{}", build.app_guid)),
    });
    if let Some(droplet) = &build.droplet_guid {
        links["droplet"] = link(base, &format!("/v3/droplets/{droplet}"));
    }
    let mut body = json!({
        "guid": g,
        "created_at": build.common.created_at,
        "updated_at": build.common.updated_at,
        "created_by": {"guid": build.created_by.guid, "name": build.created_by.name, "email": build.created_by.email},
        "state": build.state.as_str(),
        "staging_memory_in_mb": build.staging_memory_in_mb,
        "staging_disk_in_mb": build.staging_disk_in_mb,
        "staging_log_rate_limit_bytes_per_second": -1,
        "error": build.error,
        "lifecycle": lifecycle(&build.lifecycle),
        "package": {"guid": build.package_guid},
        "droplet": build.droplet_guid.as_ref().map(|d| json!({"guid": d})),
        "relationships": {"app": to_one(Some(&build.app_guid))},
        "metadata": build.common.metadata.to_json(),
        "links": links,
    });
    if !version.at_least(BUILD_LOG_RATE_SINCE) {
        body.as_object_mut().expect("a build is an object").remove("staging_log_rate_limit_bytes_per_second");
    }
    body
}

pub fn droplet(base: &str, droplet: &Droplet) -> Value {
    let g = &droplet.common.guid;
    let staged = droplet.state == crate::state::DropletState::Staged;
    let mut links = json!({
        "self": link(base, &format!("/v3/droplets/{g}")),
        "app": link(base, &format!("/v3/apps/{}", droplet.app_guid)),
        "assign_current_droplet": link_method(base, &format!("/v3/apps/{}/relationships/current_droplet", droplet.app_guid), "PATCH"),
    });
    if let Some(package) = &droplet.package_guid {
        links["package"] = link(base, &format!("/v3/packages/{package}"));
    }
    if staged && droplet.image.is_none() {
        links["download"] = link(base, &format!("/v3/droplets/{g}/download"));
    }
    if droplet.state == crate::state::DropletState::AwaitingUpload {
        links["upload"] = link_method(base, &format!("/v3/droplets/{g}/upload"), "POST");
    }
    let buildpacks: Vec<Value> = droplet
        .buildpacks
        .iter()
        .map(|name| json!({"name": name, "detect_output": "", "version": crate::staging::BUILDPACK_VERSION, "buildpack_name": name.trim_end_matches("_buildpack")}))
        .collect();
    json!({
        "guid": g,
        "state": droplet.state.as_str(),
        "error": droplet.error,
        "lifecycle": {"type": droplet.lifecycle_type, "data": {}},
        "execution_metadata": droplet.execution_metadata,
        "process_types": if staged { json!(droplet.process_types) } else { Value::Null },
        "checksum": droplet.checksum.as_ref().map(|c| json!({"type": "sha256", "value": c})),
        "buildpacks": if staged && droplet.image.is_none() { json!(buildpacks) } else { Value::Null },
        "stack": droplet.stack,
        "image": droplet.image,
        "created_at": droplet.common.created_at,
        "updated_at": droplet.common.updated_at,
        "relationships": {"app": to_one(Some(&droplet.app_guid))},
        "links": links,
        "metadata": droplet.common.metadata.to_json(),
    })
}

pub fn job(base: &str, job: &Job) -> Value {
    let g = &job.common.guid;
    let mut links = json!({"self": link(base, &format!("/v3/jobs/{g}"))});
    if let Some((name, path)) = &job.resource_link {
        links[name] = link(base, path);
    }
    json!({
        "guid": g,
        "created_at": job.common.created_at,
        "updated_at": job.common.updated_at,
        "operation": job.operation,
        "state": job.state.as_str(),
        "links": links,
        "errors": job.errors.iter().map(|e| e.to_json()).collect::<Vec<_>>(),
        "warnings": job.warnings.iter().map(|w| json!({"detail": w})).collect::<Vec<_>>(),
    })
}

/// `service_instance_presenter.rb`: the common fields, then a managed instance's plan, maintenance info and
/// links, or a user-provided one's drain and route service URLs and credentials link.
pub fn service_instance(base: &str, si: &ServiceInstance) -> Value {
    let g = &si.common.guid;
    let mut body = json!({
        "guid": g,
        "created_at": si.common.created_at,
        "updated_at": si.common.updated_at,
        "name": si.name,
        "tags": si.tags,
        "last_operation": {"type": "create", "state": "succeeded", "description": "Operation succeeded", "created_at": si.common.created_at, "updated_at": si.common.updated_at},
        "relationships": {"space": to_one(Some(&si.space_guid))},
        "metadata": si.common.metadata.to_json(),
        "links": {
            "self": link(base, &format!("/v3/service_instances/{g}")),
            "space": link(base, &format!("/v3/spaces/{}", si.space_guid)),
            "service_credential_bindings": link(base, &format!("/v3/service_credential_bindings?service_instance_guids={g}")),
            "service_route_bindings": link(base, &format!("/v3/service_route_bindings?service_instance_guids={g}")),
        },
    });
    match &si.plan {
        Some(plan) => {
            body["type"] = json!("managed");
            body["maintenance_info"] = json!({});
            body["upgrade_available"] = json!(false);
            body["dashboard_url"] = Value::Null;
            body["relationships"]["service_plan"] = to_one(Some(&plan.guid));
            body["links"]["service_plan"] = link(base, &format!("/v3/service_plans/{}", plan.guid));
            body["links"]["parameters"] = link(base, &format!("/v3/service_instances/{g}/parameters"));
            body["links"]["shared_spaces"] =
                link(base, &format!("/v3/service_instances/{g}/relationships/shared_spaces"));
        }
        None => {
            body["type"] = json!("user-provided");
            body["syslog_drain_url"] = json!(si.syslog_drain_url);
            body["route_service_url"] = json!(si.route_service_url);
            body["links"]["credentials"] = link(base, &format!("/v3/service_instances/{g}/credentials"));
        }
    }
    body
}

pub fn binding(base: &str, binding: &Binding) -> Value {
    let g = &binding.common.guid;
    json!({
        "guid": g,
        "created_at": binding.common.created_at,
        "updated_at": binding.common.updated_at,
        "name": binding.name,
        "type": "app",
        "last_operation": {"type": "create", "state": "succeeded", "description": null, "created_at": binding.common.created_at, "updated_at": binding.common.updated_at},
        "metadata": binding.common.metadata.to_json(),
        "relationships": {
            "app": to_one(Some(&binding.app_guid)),
            "service_instance": to_one(Some(&binding.service_instance_guid)),
        },
        "links": {
            "self": link(base, &format!("/v3/service_credential_bindings/{g}")),
            "details": link(base, &format!("/v3/service_credential_bindings/{g}/details")),
            "parameters": link(base, &format!("/v3/service_credential_bindings/{g}/parameters")),
            "service_instance": link(base, &format!("/v3/service_instances/{}", binding.service_instance_guid)),
            "app": link(base, &format!("/v3/apps/{}", binding.app_guid)),
        },
    })
}
