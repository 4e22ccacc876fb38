//! The Cloud Controller v3 API: assembles every resource's routes behind CC's authentication, the fault injector
//! and the request log, plus the admin API under `/_sim/`.

mod admin;
mod apps;
mod auth;
pub mod body;
mod builds;
mod domains;
mod droplets;
pub mod error;
mod features;
mod jobs;
pub mod list;
mod managed_services;
pub mod manifest;
pub mod metadata;
mod orgs;
mod packages;
pub mod policies;
pub mod present;
mod processes;
mod quotas;
pub mod roles;
mod root;
pub mod route_policies;
mod routes;
mod services;
pub(crate) mod tasks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::middleware::{from_fn, from_fn_with_state};

pub use admin::{dump_state, resolve_app};
pub use auth::Identity;

use crate::shared::Ctx;

pub fn router(ctx: Ctx) -> Router {
    let protected = Router::new()
        .merge(orgs::routes())
        .merge(domains::routes())
        .merge(routes::routes())
        .merge(route_policies::routes())
        .merge(roles::routes())
        .merge(apps::routes())
        .merge(features::routes())
        .merge(processes::routes())
        .merge(packages::routes())
        .merge(builds::routes())
        .merge(droplets::routes())
        .merge(jobs::routes())
        .merge(services::routes())
        .merge(manifest::routes())
        .merge(quotas::routes())
        .merge(tasks::routes())
        .route_layer(from_fn_with_state(ctx.clone(), auth::require_token));
    Router::new()
        .merge(protected)
        .merge(packages::blob_routes())
        .merge(droplets::blob_routes())
        .merge(root::routes())
        .merge(policies::routes())
        .nest("/_sim", admin::routes())
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn(request_id))
        .layer(from_fn_with_state((ctx.clone(), "api"), crate::faults::inject))
        .layer(from_fn_with_state((ctx.clone(), "api"), crate::request_log::record))
        .with_state(ctx)
}

async fn unknown() -> error::ApiError {
    error::ApiError::unknown_request()
}

/// CC answers every request with an `X-Vcap-Request-Id`.
async fn request_id(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let id = request
        .headers()
        .get("x-vcap-request-id")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&crate::clock::new_guid()).expect("a guid is a header value"));
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-vcap-request-id", id);
    response
}

/// The organizations, spaces and shared domain a sim starts with.
pub fn orgs_and_domains(state: &mut crate::state::State, config: &crate::config::SimConfig) -> error::ApiResult<()> {
    let org = orgs::insert_org(state, &config.organization)?;
    orgs::insert_space(state, &org, &config.space)?;
    for extra in &config.extra_spaces {
        let (org_name, space_name) = crate::config::split_pair(extra, '/', "--extra-space")
            .map_err(|e| error::ApiError::unprocessable(e.to_string()))?;
        let existing = state.orgs.values().find(|o| o.name == org_name).map(|o| o.common.guid.clone());
        let org = match existing {
            Some(guid) => guid,
            None => orgs::insert_org(state, org_name)?,
        };
        orgs::insert_space(state, &org, space_name)?;
    }
    domains::insert_domain(state, &config.domain, None, false)?;
    for domain in &config.extra_domains {
        domains::insert_domain(state, domain, None, false)?;
    }
    quotas::configure(state, config)
}
