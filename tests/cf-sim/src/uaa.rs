//! UAA's HTTP API: `POST /oauth/token` with the password, client_credentials, refresh_token and JWT bearer grants
//! (client authentication by Basic header or form fields, or by a client assertion from a trusted issuer), UAA's
//! OAuth2 error bodies, and `GET /login` for discovery.

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

use crate::jwt_bearer::{JWT_BEARER_GRANT, authenticate};
use crate::shared::Ctx;
use crate::tokens::{
    AssertionTrust, CLIENT_ASSERTION_TYPE, Grantee, TokenError, assertion_client_id, verify_client_assertion,
};

/// The client the cf CLI uses for user logins; its secret is empty.
pub const CF_CLIENT: &str = "cf";

pub fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/login", get(login_info))
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/oauth/token/.well-known/openid-configuration", get(openid_configuration))
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

/// The `client_assertion_type` and `client_assertion` of a request that authenticates its client with them:
/// `ClientDetailsAuthenticationProvider.isPrivateKeyJwt` (no Authorization header, no client_secret, both set).
fn client_assertion<'a>(headers: &HeaderMap, form: &'a HashMap<String, String>) -> Option<(&'a str, &'a str)> {
    let given = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    if headers.contains_key(header::AUTHORIZATION) || given("client_secret").is_some() {
        return None;
    }
    Some((given("client_assertion_type")?, given("client_assertion")?))
}

/// A token for a client that authenticates with an assertion (`AbstractClientParametersAuthenticationFilter`, then
/// `JwtClientAuthentication.validateClientJwt`); only the client_credentials grant is allowed such clients here.
fn assertion_token(ctx: &Ctx, form: &HashMap<String, String>, assertion_type: &str, assertion: &str) -> Response {
    let client_id =
        form.get("client_id").filter(|id| !id.is_empty()).cloned().or_else(|| assertion_client_id(assertion));
    let Some(client_id) = client_id.filter(|id| ctx.config.jwt_clients.iter().any(|c| c.client_id == *id)) else {
        return bad_credentials();
    };
    if assertion_type != CLIENT_ASSERTION_TYPE {
        return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad client_assertion type");
    }
    let token_endpoint = format!("{}/oauth/token", ctx.urls.uaa);
    let trust = AssertionTrust {
        clients: &ctx.config.jwt_clients,
        issuers: &ctx.config.trusted_issuers,
        require_jti: ctx.config.client_assertion_requires_jti,
    };
    let checked = verify_client_assertion(assertion, &client_id, &trust, &token_endpoint, crate::clock::unix_seconds());
    if let Err(description) = checked {
        return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", description);
    }
    match form.get("grant_type").map(String::as_str) {
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing grant type"),
        Some("client_credentials") => {
            token_answer(ctx.tokens.issue(Grantee { client_id, user: None, grant_type: "client_credentials".into() }))
        }
        // AbstractTokenGranter#validateGrantType: a grant the client lacks.
        Some(_) => oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized grant type"),
    }
}

/// The JWT bearer grant for a client that has authenticated: the assertion's user first (see
/// [`crate::jwt_bearer`]), then whether the client may use the grant.
fn jwt_bearer_token(ctx: &Ctx, client_id: String, form: &HashMap<String, String>) -> Response {
    let Some(assertion) = form.get("assertion") else {
        return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Assertion is missing");
    };
    let now = crate::clock::unix_seconds();
    let token_endpoint = format!("{}/oauth/token", ctx.urls.uaa);
    let user = authenticate(assertion, &ctx.config.oidc_providers, &token_endpoint, now)
        .and_then(|(provider, name)| ctx.idp_users.login(&provider.origin, &name, !ctx.config.no_shadow_users));
    let user = match user {
        Ok(user) => user,
        Err(refusal) => return oauth_error(StatusCode::UNAUTHORIZED, refusal.error, &refusal.description),
    };
    if !ctx.config.jwt_bearer_clients.contains(&client_id) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized grant type");
    }
    let user = Some((user.guid, user.name));
    token_answer(ctx.tokens.issue(Grantee { client_id, user, grant_type: JWT_BEARER_GRANT.into() }))
}

fn token_answer(response: crate::tokens::TokenResponse) -> Response {
    ([(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], Json(response)).into_response()
}

async fn token(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    if let Some((assertion_type, assertion)) = client_assertion(&headers, &form) {
        return assertion_token(&ctx, &form, assertion_type, assertion);
    }
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
        // A client without a secret (one that authenticates with assertions): ClientDetailsAuthenticationProvider.
        if ctx.config.jwt_clients.iter().any(|c| c.client_id == client_id) {
            return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Missing credentials");
        }
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
        JWT_BEARER_GRANT => return jwt_bearer_token(&ctx, client_id, &form),
        "client_credentials" if known_client => {
            ctx.tokens.issue(Grantee { client_id, user: None, grant_type: "client_credentials".into() })
        }
        "client_credentials" => {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized grant type");
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
    token_answer(response)
}

/// UAA's OpenID discovery (`OpenIdConnectEndpoints`, `OpenIdConfiguration`): `issuer` is the token endpoint URL,
/// the audience a client assertion must name by default.
async fn openid_configuration(State(ctx): State<Ctx>) -> Response {
    let uaa = &ctx.urls.uaa;
    Json(json!({
        "issuer": format!("{uaa}/oauth/token"),
        "authorization_endpoint": format!("{uaa}/oauth/authorize"),
        "token_endpoint": format!("{uaa}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "HS256"],
        "userinfo_endpoint": format!("{uaa}/userinfo"),
        "jwks_uri": format!("{uaa}/token_keys"),
        "end_session_endpoint": format!("{uaa}/logout.do"),
        "scopes_supported": ["openid", "profile", "email", "phone", "roles", "user_attributes"],
        "response_types_supported": ["code", "code id_token", "id_token", "token id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
        "id_token_encryption_alg_values_supported": ["none"],
        "claim_types_supported": ["normal"],
        "claims_supported": ["sub", "user_name", "origin", "iss", "auth_time", "amr", "acr", "client_id", "aud",
            "zid", "grant_type", "user_id", "azp", "scope", "exp", "iat", "jti", "rev_sig", "cid", "given_name",
            "family_name", "phone_number", "email"],
        "claims_parameter_supported": false,
        "service_documentation": "http://docs.cloudfoundry.org/api/uaa/",
        "ui_locales_supported": ["en-US"],
        "code_challenge_methods_supported": ["S256", "plain"],
    }))
    .into_response()
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
