//! The policy server's external API (cloudfoundry/cf-networking-release, `policy-server`), v1, served on the API's
//! host as CF does (`links.network_policy_v1` of `GET /`): create (`POST /networking/v1/external/policies`), list
//! (`GET`, filtered by `id=`, `source_id=`, `dest_id=`) and delete (`POST /networking/v1/external/policies/delete`).
//!
//! As the policy server does (cmd/policy-server/main.go, handlers/auth_middleware.go, handlers/policies_*.go,
//! handlers/policy_guard.go, handlers/policy_filter.go, handlers/quota_guard.go, api/policy_validator.go,
//! store/store.go): a token is required (401), with the `network.admin` or `network.write` scope (403); the body is
//! validated (400); a caller without `network.admin` must be a space developer of every existing app named (403,
//! "one or more applications cannot be found or accessed") and may name an app as the source of at most 150
//! policies (403, "policy quota exceeded"); creating an existing policy or deleting a missing one is a no-op (200
//! `{}`). A list without `network.admin` shows only policies whose two apps are in the caller's spaces. Errors are
//! `{"error": "…"}`. cf-sim models no roles: a user is a developer of every space, a client of none.
//!
//! Like CC, deleting an app does not delete its policies (the policy server's cleanup poller does that later).

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::shared::Ctx;
use crate::state::State as CcState;
use crate::tokens::Claims;

/// `max_policies_per_app_source` of the policy-server job (jobs/policy-server/spec).
const MAX_POLICIES_PER_APP_SOURCE: usize = 150;
const ALLOWED_SCOPES: [&str; 2] = ["network.admin", "network.write"];

/// One policy: the source app may open connections to the destination app's `protocol` ports `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub source: String,
    pub destination: String,
    pub protocol: String,
    pub start: u16,
    pub end: u16,
}

impl NetworkPolicy {
    /// Whether it lets `source` reach `destination` on `protocol` port `port`.
    pub fn allows(&self, source: &str, destination: &str, protocol: &str, port: u16) -> bool {
        self.source == source
            && self.destination == destination
            && self.protocol == protocol
            && (self.start..=self.end).contains(&port)
    }

    fn present(&self) -> Value {
        json!({
            "source": {"id": self.source},
            "destination": {"id": self.destination, "protocol": self.protocol, "ports": {"start": self.start, "end": self.end}},
        })
    }
}

pub fn routes() -> Router<Ctx> {
    Router::new()
        .route("/networking/v1/external/policies", get(index).post(create))
        .route("/networking/v1/external/policies/delete", post(delete))
}

/// An answer of the policy server: a status and `{"error": "…"}` (httperror/error_response.go).
struct PolicyError(StatusCode, String);

impl IntoResponse for PolicyError {
    fn into_response(self) -> Response {
        let body = format!("{{\"error\": {}}}", Value::String(self.1));
        let mut response = (self.0, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type PolicyResult<T> = Result<T, PolicyError>;

fn ok_empty() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

/// The auth middleware: the token's claims, once it is valid and carries an allowed scope.
fn authenticate(ctx: &Ctx, request: &Request) -> PolicyResult<Claims> {
    let Some(value) = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(PolicyError(StatusCode::UNAUTHORIZED, "missing authorization header".into()));
    };
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or(value);
    let claims = ctx
        .tokens
        .verify(token.trim(), crate::clock::unix_seconds())
        .map_err(|_| PolicyError(StatusCode::UNAUTHORIZED, "failed to verify token with uaa".into()))?;
    if !claims.scope.iter().any(|s| ALLOWED_SCOPES.contains(&s.as_str())) {
        return Err(PolicyError(
            StatusCode::FORBIDDEN,
            format!(
                "provided scopes [{}] do not include allowed scopes [{}]",
                claims.scope.join(" "),
                ALLOWED_SCOPES.join(" ")
            ),
        ));
    }
    Ok(claims)
}

fn is_network_admin(claims: &Claims) -> bool {
    claims.scope.iter().any(|s| s == "network.admin")
}

/// The subject is a space developer of the app's space (every space for a user; none for a client).
fn develops(claims: &Claims, state: &CcState, app_guid: &str) -> bool {
    claims.user_id.is_some() && state.apps.contains_key(app_guid)
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    policies: Option<Vec<PolicyIn>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyIn {
    source: EndIn,
    destination: EndIn,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EndIn {
    id: String,
    tag: String,
    protocol: String,
    ports: PortsIn,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PortsIn {
    start: i64,
    end: i64,
}

/// The mapper: the body decoded and validated (api/policy_validator.go), or 400 `mapper: …`.
fn parse_policies(body: &Bytes) -> PolicyResult<Vec<NetworkPolicy>> {
    let bad = |message: String| PolicyError(StatusCode::BAD_REQUEST, format!("mapper: {message}"));
    let payload: Payload = serde_json::from_slice(body).map_err(|e| bad(format!("unmarshal json: {e}")))?;
    let policies = payload.policies.unwrap_or_default();
    let invalid = |message: String| bad(format!("validate policies: {message}"));
    if policies.is_empty() {
        return Err(invalid("missing policies".into()));
    }
    policies
        .into_iter()
        .map(|p| {
            let (source, destination) = (p.source, p.destination);
            let (start, end) = (destination.ports.start, destination.ports.end);
            if source.id.is_empty() {
                return Err(invalid("missing source id".into()));
            }
            if destination.id.is_empty() {
                return Err(invalid("missing destination id".into()));
            }
            if destination.protocol != "udp" && destination.protocol != "tcp" {
                return Err(invalid("invalid destination protocol, specify either udp or tcp".into()));
            }
            if start > end {
                return Err(invalid(format!(
                    "invalid port range {start}-{end}, start must be less than or equal to end"
                )));
            }
            if start < 0 {
                return Err(invalid(format!("invalid start port {start}, must be in range 1-65535")));
            }
            if start == 0 {
                return Err(invalid("missing start port".into()));
            }
            if end > 65535 {
                return Err(invalid(format!("invalid end port {end}, must be in range 1-65535")));
            }
            if !source.tag.is_empty() || !destination.tag.is_empty() {
                return Err(invalid("tags may not be specified".into()));
            }
            Ok(NetworkPolicy {
                source: source.id,
                destination: destination.id,
                protocol: destination.protocol,
                start: start as u16,
                end: end as u16,
            })
        })
        .collect()
}

/// The policy guard of create and delete: a network admin, or a developer of every existing app's space.
fn guard(claims: &Claims, state: &CcState, policies: &[NetworkPolicy]) -> PolicyResult<()> {
    let named = policies.iter().flat_map(|p| [&p.source, &p.destination]);
    let mut existing = named.filter(|guid| state.apps.contains_key(guid.as_str()));
    if is_network_admin(claims) || existing.all(|guid| develops(claims, state, guid)) {
        return Ok(());
    }
    Err(PolicyError(StatusCode::FORBIDDEN, "one or more applications cannot be found or accessed".into()))
}

/// The quota guard of create: without `network.admin`, no app may be the source of more than 150 policies.
fn quota(claims: &Claims, state: &CcState, policies: &[NetworkPolicy]) -> PolicyResult<()> {
    if is_network_admin(claims) {
        return Ok(());
    }
    let named: Vec<&String> = policies.iter().flat_map(|p| [&p.source, &p.destination]).collect();
    let sources = |list: &[NetworkPolicy], guid: &str| list.iter().filter(|p| p.source == guid).count();
    if named.iter().any(|guid| sources(&state.policies, guid) + sources(policies, guid) > MAX_POLICIES_PER_APP_SOURCE) {
        return Err(PolicyError(StatusCode::FORBIDDEN, "policy quota exceeded".into()));
    }
    Ok(())
}

async fn create(State(ctx): State<Ctx>, request: Request) -> Response {
    let created = async {
        let claims = authenticate(&ctx, &request)?;
        let body = axum::body::to_bytes(request.into_body(), 10 << 20)
            .await
            .map_err(|e| PolicyError(StatusCode::BAD_REQUEST, format!("failed reading request body: {e}")))?;
        let policies = parse_policies(&body)?;
        let mut state = ctx.state();
        guard(&claims, &state, &policies)?;
        quota(&claims, &state, &policies)?;
        for policy in policies {
            if !state.policies.contains(&policy) {
                state.policies.push(policy);
            }
        }
        PolicyResult::Ok(())
    };
    created.await.map(|()| ok_empty()).unwrap_or_else(IntoResponse::into_response)
}

async fn delete(State(ctx): State<Ctx>, request: Request) -> Response {
    let deleted = async {
        let claims = authenticate(&ctx, &request)?;
        let body = axum::body::to_bytes(request.into_body(), 10 << 20)
            .await
            .map_err(|e| PolicyError(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))?;
        let policies = parse_policies(&body)?;
        let mut state = ctx.state();
        guard(&claims, &state, &policies)?;
        state.policies.retain(|p| !policies.contains(p));
        PolicyResult::Ok(())
    };
    deleted.await.map(|()| ok_empty()).unwrap_or_else(IntoResponse::into_response)
}

/// The first value of `name`, split at commas (handlers/policies_index.go's `parse*Ids`).
fn ids(raw: Option<&str>, name: &str) -> Vec<String> {
    let first = raw.and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v));
    first.map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default()
}

async fn index(State(ctx): State<Ctx>, RawQuery(raw): RawQuery, request: Request) -> Response {
    let claims = match authenticate(&ctx, &request) {
        Ok(claims) => claims,
        Err(e) => return e.into_response(),
    };
    let (id, source, dest) =
        (ids(raw.as_deref(), "id"), ids(raw.as_deref(), "source_id"), ids(raw.as_deref(), "dest_id"));
    let has = |list: &[String], guid: &str| list.iter().any(|g| g == guid);
    let state = ctx.state();
    let listed: Vec<Value> = state
        .policies
        .iter()
        .filter(|p| match (id.is_empty(), source.is_empty(), dest.is_empty()) {
            (false, _, _) => has(&id, &p.source) || has(&id, &p.destination),
            (true, false, false) => has(&source, &p.source) && has(&dest, &p.destination),
            (true, false, true) => has(&source, &p.source),
            (true, true, false) => has(&dest, &p.destination),
            (true, true, true) => true,
        })
        .filter(|p| {
            is_network_admin(&claims)
                || (develops(&claims, &state, &p.source) && develops(&claims, &state, &p.destination))
        })
        .map(NetworkPolicy::present)
        .collect();
    let body = json!({"total_policies": listed.len(), "policies": listed});
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
