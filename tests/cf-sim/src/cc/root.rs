//! Discovery: `GET /` (links to UAA, Log Cache and the v3 API with its version, `--cc-api-version`), `GET /v3`
//! and `GET /v3/info`, all anonymous as in CC (app/controllers/runtime/root_controller.rb,
//! app/controllers/v3/root_controller.rb; only `GET /` names the version).

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::config::CcApiVersion;
use crate::shared::Ctx;

/// `config/version_v2` of cloud_controller_ng at commit 3bbba906 (CC API 3.228.0).
const API_VERSION_V2: &str = "2.293.0";

pub fn routes() -> Router<Ctx> {
    Router::new().route("/", get(root)).route("/v3", get(v3_root)).route("/v3/info", get(info))
}

async fn root(State(ctx): State<Ctx>) -> Json<Value> {
    let api = &ctx.urls.api;
    let mut body = json!({
        "links": {
            "self": {"href": api},
            "cloud_controller_v3": {"href": format!("{api}/v3"), "meta": {"version": ctx.config.cc_api_version.to_string()}},
            "network_policy_v0": {"href": format!("{api}/networking/v0/external")},
            "network_policy_v1": {"href": format!("{api}/networking/v1/external")},
            "login": {"href": ctx.urls.uaa},
            "uaa": {"href": ctx.urls.uaa},
            "credhub": null,
            "routing": {"href": format!("{api}/routing")},
            "logging": {"href": format!("{}/doppler", ctx.urls.log_cache.replacen("http", "ws", 1))},
            "log_cache": {"href": ctx.urls.log_cache},
            "log_stream": {"href": ctx.urls.log_cache},
            "app_ssh": {"href": "127.0.0.1:2222", "meta": {"host_key_fingerprint": "sim", "oauth_client": "ssh-proxy"}},
        }
    });
    // `temporary_enable_v2: true` (config/cloud_controller.yml) adds the v2 link with `config/version_v2`, known
    // only for the version cf-sim follows; an older foundation is presented as one with v2 disabled.
    if ctx.config.cc_api_version == CcApiVersion::LATEST {
        body["links"]["cloud_controller_v2"] =
            json!({"href": format!("{api}/v2"), "meta": {"version": API_VERSION_V2}});
    }
    Json(body)
}

async fn v3_root(State(ctx): State<Ctx>) -> Json<Value> {
    let api = &ctx.urls.api;
    let collections = [
        "app_usage_events",
        "apps",
        "audit_events",
        "buildpacks",
        "builds",
        "deployments",
        "domains",
        "droplets",
        "environment_variable_groups",
        "feature_flags",
        "info",
        "isolation_segments",
        "organizations",
        "organization_quotas",
        "packages",
        "processes",
        "resource_matches",
        "roles",
        "routes",
        "security_groups",
        "service_brokers",
        "service_instances",
        "service_offerings",
        "service_plans",
        "service_usage_events",
        "spaces",
        "space_quotas",
        "stacks",
        "tasks",
        "users",
    ];
    let mut links = serde_json::Map::new();
    links.insert("self".into(), json!({"href": format!("{api}/v3")}));
    for name in collections {
        links.insert(name.into(), json!({"href": format!("{api}/v3/{name}")}));
    }
    links["service_instances"]["experimental"] = json!(true);
    Json(json!({"links": links}))
}

async fn info(State(ctx): State<Ctx>) -> Json<Value> {
    Json(json!({
        "build": "cf-sim",
        "cli_version": {"minimum": "7.0.0", "recommended": "8.0.0"},
        "custom": {},
        "description": "A local Cloud Foundry for tests",
        "name": "cf-sim",
        "version": 228,
        "osbapi_version": "2.15",
        "rate_limits": {"enabled": false, "general_limit": 2000, "reset_interval_in_minutes": 60},
        "links": {
            "self": {"href": format!("{}/v3/info", ctx.urls.api)},
            "support": {"href": "https://github.com/cloudfoundry/cloud_controller_ng"},
        },
    }))
}
