//! CC's token check: a missing token is 401 CF-NotAuthenticated (10002); an expired, badly signed or malformed one
//! is 401 CF-InvalidAuthToken (1000). Uploads are checked against `upload_start_time` when given, as CC does.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::shared::Ctx;

/// Who made the request, from the token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user_guid: Option<String>,
    pub client_id: String,
    /// The token's scopes.
    pub scopes: Vec<String>,
}

const UPLOAD_SUFFIXES: &[&str] = &["/upload"];

pub async fn require_token(State(ctx): State<Ctx>, mut request: Request, next: Next) -> Response {
    let Some(value) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return ApiError::not_authenticated().into_response();
    };
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().to_string(),
        _ => return ApiError::invalid_auth_token().into_response(),
    };
    let mut now = crate::clock::unix_seconds();
    if UPLOAD_SUFFIXES.iter().any(|s| request.uri().path().ends_with(s)) {
        let start = request.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "upload_start_time")
                .and_then(|(_, v)| v.parse().ok())
        });
        if let Some(start) = start {
            now = now.min(start);
        }
    }
    match ctx.tokens.verify(&token, now) {
        Ok(claims) => {
            let (user_guid, client_id, scopes) = (claims.user_id, claims.client_id, claims.scope);
            request.extensions_mut().insert(Identity { user_guid, client_id, scopes });
            next.run(request).await
        }
        Err(_) => ApiError::invalid_auth_token().into_response(),
    }
}
