//! UAA's HTTP API: `POST /oauth/token` with the password, client_credentials and refresh_token grants (client
//! authentication by Basic header or form fields), UAA's OAuth2 error bodies, and `GET /login` for discovery.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde_json::json;

use crate::shared::Ctx;
use crate::tokens::{Grantee, TokenError};

/// The client the cf CLI uses for user logins; its secret is empty.
pub const CF_CLIENT: &str = "cf";

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/login", get(login_info))
        .route("/", get(login_info))
        .fallback(|| async { oauth_error(StatusCode::NOT_FOUND, "not_found", "Not Found") })
        .layer(from_fn_with_state((ctx.clone(), "uaa"), crate::faults::inject))
        .layer(from_fn_with_state((ctx.clone(), "uaa"), crate::request_log::record))
        .with_state(ctx)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({"error": error, "error_description": description}))).into_response()
}

fn bad_credentials() -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials")
}

/// `Authorization: Basic base64(id:secret)`, if present.
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

async fn token(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let client = basic_client(&headers).or_else(|| {
        form.get("client_id").map(|id| (id.clone(), form.get("client_secret").cloned().unwrap_or_default()))
    });
    let Some((client_id, client_secret)) = client else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Full authentication is required to access this resource",
        );
    };
    let cf_client = client_id == CF_CLIENT && client_secret.is_empty();
    let known_client = ctx.clients.iter().any(|(id, secret)| *id == client_id && *secret == client_secret);
    if !cf_client && !known_client {
        return bad_credentials();
    }
    let Some(grant_type) = form.get("grant_type") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing grant type");
    };
    let response = match grant_type.as_str() {
        "password" => {
            let username = form.get("username").map(String::as_str).unwrap_or("");
            let password = form.get("password").map(String::as_str).unwrap_or("");
            let Some(account) = ctx.users.iter().find(|u| u.user.name == username && u.password == password) else {
                return bad_credentials();
            };
            ctx.tokens.issue(Grantee {
                client_id,
                user: Some((account.user.guid.clone(), account.user.name.clone())),
                grant_type: "password".into(),
            })
        }
        "client_credentials" if known_client => {
            ctx.tokens.issue(Grantee { client_id, user: None, grant_type: "client_credentials".into() })
        }
        "client_credentials" => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Unauthorized grant type: client_credentials",
            );
        }
        "refresh_token" => {
            let refresh_token = form.get("refresh_token").map(String::as_str).unwrap_or("");
            // UAA's refresh tokens are opaque by default (TokenPolicy.refreshTokenFormat): an unknown or expired one
            // is not in the revocable token store, which TokenValidationService answers with TokenRevokedException;
            // another client's is UaaTokenServices.refreshAccessToken's InvalidGrantException.
            match ctx.tokens.refresh(refresh_token, &client_id) {
                Ok(response) => response,
                Err(TokenError::Expired | TokenError::Invalid) => {
                    return oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_token",
                        "The token expired, was revoked, or the token ID is incorrect.",
                    );
                }
                Err(TokenError::WrongClient(owner)) => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        &format!("Wrong client for this refresh token: {owner}"),
                    );
                }
            }
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Unsupported grant type: {other}"),
            );
        }
    };
    ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(response)).into_response()
}

async fn login_info(State(ctx): State<Ctx>) -> Response {
    Json(json!({
        "app": {"version": "77.0.0"},
        "links": {"uaa": ctx.urls.uaa, "login": ctx.urls.uaa, "passwd": "/forgot_password"},
        "zone_name": "uaa",
        "entityID": "cloudfoundry-saml-login",
        "prompts": {
            "username": ["text", "Email"],
            "password": ["password", "Password"],
            "passcode": ["password", "Temporary Authentication Code"]
        },
        "timestamp": crate::clock::now_iso(),
    }))
    .into_response()
}
