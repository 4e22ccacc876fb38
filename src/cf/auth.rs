//! Finding UAA and Log Cache, logging in, and keeping the access token fresh.
//!
//! Discovery reads `GET /`: the token endpoint is `{links.login}/oauth/token` (falling back to `links.uaa`), Log
//! Cache is `links.log_cache`. Users log in with the password grant through the `cf` client (empty secret,
//! `Authorization: Basic Y2Y6`), UAA clients with `client_credentials`. The token is refreshed before a request
//! when little of its life remains (the JWT `exp`, decoded here), and once more when CC still rejects it with
//! `CF-InvalidAuthToken`. A rejected refresh token means a full login; client credentials "refresh" by asking for
//! a new token. Every token is registered for redaction the moment it arrives.
//!
//! A client may authenticate with a client assertion instead of a secret (RFC 7523 section 2.2, UAA's federated
//! client credentials: `JwtClientAuthentication.validateClientJwt`), e.g. Concourse's `idtoken`. The assertion
//! cannot be renewed here: a new access token re-sends the same assertion while it is valid, and once it has
//! expired the login fails with a line that says when. UAA answers every refused assertion with one of a few
//! `error_description`s; [`explain_refused_assertion`] adds what the assertion's own claims show.
//!
//! A user of an OpenID Connect identity provider UAA trusts logs in with the JWT bearer grant (RFC 7523 section
//! 2.1, UAA's `ExternalOAuthAuthenticationManager`): the provider's token as `assertion`, asked for by a client with
//! its secret. UAA answers with a refresh token, which renews the user's token as for the password grant; only
//! without one is the assertion sent again, and never once it has expired.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};

use crate::cf::client::{Core, Req, ReqBody, Target, decode_json};
use crate::cf::error::{Error, Result};
use crate::cf::root::{ApiVersion, MIN_CC_API_VERSION, Root};
use crate::cf::settings::Credentials;
use crate::cf::types::null_as_default;
use crate::{log, redact};

/// The longest time before expiry at which the token is refreshed (the CLI's margin).
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// `grant_type` of the JWT bearer grant (RFC 7523 section 2.1).
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The clock skew UAA allows on an assertion's `exp` and `nbf` (nimbus `DefaultJWTClaimsVerifier`).
const ASSERTION_CLOCK_SKEW: i64 = 60;

/// Where things are, from `GET /`.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub api: Url,
    /// The login server (`links.login`, or `links.uaa`).
    pub login: Url,
    /// `{login}/oauth/token`.
    pub token: Url,
    /// Log Cache (`links.log_cache`), if the foundation has one.
    pub log_cache: Option<Url>,
    /// The CC v3 API version, e.g. `3.228.0`.
    pub v3_version: Option<String>,
}

impl Endpoints {
    pub(crate) async fn discover(core: &Core) -> Result<Endpoints> {
        let mut req = Req::path(Method::GET, "/");
        req.authenticated = false;
        let answer = core.answer(&req, None).await?;
        let root: Root = answer.json()?;
        Self::from_root(&core.api, &root)
    }

    pub(crate) fn from_root(api: &Url, root: &Root) -> Result<Endpoints> {
        let login = root.link("login").or_else(|| root.link("uaa")).ok_or_else(|| {
            Error::Config(format!(
                "{api} lists neither a login nor a uaa link in GET /; is it a Cloud Foundry API endpoint?"
            ))
        })?;
        let parse = |what: &str, href: &str| {
            Url::parse(href).map_err(|e| Error::Config(format!("GET / gave a bad {what} link '{href}': {e}")))
        };
        let login = parse("login", &login.href)?;
        let token = parse("login", &format!("{}/oauth/token", login.as_str().trim_end_matches('/')))?;
        let log_cache = match root.link("log_cache") {
            Some(link) => Some(parse("log_cache", &link.href)?),
            None => None,
        };
        let v3_version = root.v3_version();
        check_api_version(api, v3_version.as_deref())?;
        Ok(Endpoints { api: api.clone(), login, token, log_cache, v3_version })
    }
}

/// Refuses a Cloud Controller older than [`MIN_CC_API_VERSION`]; warns and goes on when the root names no
/// version it can read (see the constant for why).
fn check_api_version(api: &Url, found: Option<&str>) -> Result<()> {
    match found.and_then(ApiVersion::parse) {
        Some(version) if version < MIN_CC_API_VERSION => Err(Error::Config(format!(
            "{api} runs Cloud Controller API {version}; this resource needs {MIN_CC_API_VERSION} or newer"
        ))),
        Some(_) => Ok(()),
        None => {
            log::warn(format_args!(
                "{api} does not say which Cloud Controller API version it runs (links.cloud_controller_v3.meta.version \
                 in GET / is {}); this resource needs {MIN_CC_API_VERSION} or newer",
                found.map_or("missing".to_owned(), |v| format!("'{v}'"))
            ));
            Ok(())
        }
    }
}

/// UAA's token response (`POST /oauth/token`).
#[derive(Clone, Deserialize, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
    #[serde(default)]
    pub(crate) id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// The claims of a UAA access token that the client looks at. Scopes and audiences are lists.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TokenClaims {
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub(crate) user_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub(crate) cid: Option<String>,
    #[serde(default)]
    pub grant_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub scope: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub(crate) iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub(crate) jti: Option<String>,
}

/// Decodes the payload of a JWT (base64url JSON between the two dots), without checking the signature: the
/// client only needs `exp`. `None` for opaque tokens.
pub fn decode_jwt_claims(token: &str) -> Option<TokenClaims> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The claims of a client assertion that explain UAA's answers. `aud` is a string or a list (RFC 7519 section
/// 4.1.3; Concourse writes a single audience as a string).
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct AssertionClaims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    jti: Option<serde_json::Value>,
}

impl AssertionClaims {
    /// The claims of a compact JWS (three base64url parts, JSON claims), without checking the signature.
    pub(crate) fn decode(assertion: &str) -> Option<AssertionClaims> {
        let parts: Vec<&str> = assertion.trim().split('.').collect();
        let [_, payload, _] = parts[..] else { return None };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn audiences(&self) -> Vec<&str> {
        match &self.aud {
            Some(serde_json::Value::String(aud)) => vec![aud.as_str()],
            Some(serde_json::Value::Array(auds)) => auds.iter().filter_map(serde_json::Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// `Some(exp)` when UAA would refuse the assertion as expired at `now`.
    fn expired_at(&self, now: i64) -> Option<i64> {
        self.exp.filter(|exp| exp + ASSERTION_CLOCK_SKEW <= now)
    }
}

/// When `epoch` was, as an RFC 3339 time and how long ago.
fn when(epoch: i64, now: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64);
    let ago = Duration::from_secs((now - epoch).max(0) as u64);
    format!("{} ({} ago)", humantime::format_rfc3339_seconds(at), humantime::format_duration(ago))
}

/// Why UAA refused a client assertion with `description` (the `error_description` of its 401, from
/// `JwtClientAuthentication` and `ClientDetailsAuthenticationProvider`), in the terms of the assertion's claims.
/// `expected_aud` is the audience UAA wants when the client's federated credential names none.
fn explain_refused_assertion(description: &str, claims: &AssertionClaims, expected_aud: &str, now: i64) -> String {
    let iss = claims.iss.as_deref().unwrap_or("(none)");
    let sub = claims.sub.as_deref().unwrap_or("(none)");
    match description {
        "Wrong client_assertion" => format!(
            "the client has no federated credential for issuer '{iss}' and subject '{sub}' (the assertion's iss and \
             sub), or that credential names an audience the assertion does not"
        ),
        "Unauthorized client_assertion" => {
            let audiences = claims.audiences();
            if let Some(exp) = claims.expired_at(now) {
                format!("the assertion expired at {}", when(exp, now))
            } else if claims.exp.is_none() {
                "the assertion has no exp claim".to_owned()
            } else if let Some(nbf) = claims.nbf.filter(|nbf| nbf - ASSERTION_CLOCK_SKEW > now) {
                format!(
                    "the assertion is not valid before {}",
                    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(nbf.max(0) as u64))
                )
            } else if !audiences.contains(&expected_aud) {
                let audiences = if audiences.is_empty() { "none".to_owned() } else { audiences.join(", ") };
                format!(
                    "its audience ({audiences}) is not UAA's token endpoint {expected_aud} (unless the client's \
                     federated credential names that audience: then its signature does not verify with the keys \
                     issuer '{iss}' publishes)"
                )
            } else if claims.jti.as_ref().is_none_or(serde_json::Value::is_null) {
                format!(
                    "it has no jti claim, which UAA releases without cloudfoundry/uaa#3577 require (Concourse's idtoken \
                     has one from concourse/concourse#9693), or its signature does not verify with the keys issuer \
                     '{iss}' publishes"
                )
            } else {
                format!(
                    "its signature does not verify with the keys issuer '{iss}' publishes (altered, or signed with another key)"
                )
            }
        }
        "Untrusted client_assertion" => {
            format!("none of the keys issuer '{iss}' publishes matches the assertion's signing key")
        }
        "Bad client_assertion" => format!(
            "UAA could not read the assertion or fetch the keys of issuer '{iss}' (its \
             /.well-known/openid-configuration over https)"
        ),
        "Bad client_assertion algorithm" => "the assertion is unsigned or signed with a shared secret".to_owned(),
        "Bad empty jwk_set" => format!("issuer '{iss}' publishes no keys"),
        _ => "UAA has no such client, or it does not take client assertions".to_owned(),
    }
}

/// Why UAA refused the user assertion of the JWT bearer grant with `description` (the `error_description` of its
/// 401: `ExternalOAuthAuthenticationManager`, `JwtTokenSignedByThisUAA`, `ExternalLoginAuthenticationManager`,
/// `AbstractTokenGranter`), in the terms of the assertion's claims.
fn explain_refused_user_assertion(description: &str, claims: &AssertionClaims, client_id: &str, now: i64) -> String {
    let iss = claims.iss.as_deref().unwrap_or("(none)");
    let sub = claims.sub.as_deref().unwrap_or("(none)");
    let audiences = claims.audiences();
    let expired = |exp: i64| format!("the assertion expired at {}", when(exp, now));
    if description.starts_with("Unable to map issuer") {
        return format!(
            "the issuer '{iss}' is not trusted: UAA has no OpenID Connect identity provider with that issuer (the \
             assertion's iss)"
        );
    }
    if let Some(relying_party) = description.strip_prefix("Some parties were not in the token audience: ") {
        let audiences = if audiences.is_empty() { "none".to_owned() } else { audiences.join(", ") };
        return format!(
            "its audience ({audiences}) does not name the identity provider's relyingPartyId '{relying_party}': add \
             it to the idtoken var source's audience"
        );
    }
    match description {
        "Could not verify token signature." => match claims.exp.filter(|exp| exp + ASSERTION_CLOCK_SKEW <= now) {
            Some(exp) => expired(exp),
            None => format!(
                "its signature does not verify with the keys of the identity provider for issuer '{iss}' (altered, \
                 signed with another key, or the provider's token key does not hold the issuer's current keys)"
            ),
        },
        "The token does not bear an AUD claim." => {
            "the assertion names no audience: give the idtoken var source an audience holding the identity \
             provider's relyingPartyId"
                .to_owned()
        }
        "Token does not bear a valid EXP claim." => match claims.exp {
            Some(exp) => expired(exp),
            None => "the assertion has no exp claim".to_owned(),
        },
        "The user account must be pre-created. Please contact your system administrator." => format!(
            "UAA has no user for the assertion (subject '{sub}', or the claim the identity provider maps to \
             user_name) and the provider adds no shadow users: create the user with that origin"
        ),
        "Unable to map claim to a username" => {
            "the assertion lacks the claim the identity provider maps to user_name".to_owned()
        }
        "Unauthorized grant type" => format!(
            "client '{client_id}' may not use the JWT bearer grant: add {JWT_BEARER_GRANT} to its \
             authorized_grant_types"
        ),
        "Bad credentials" => format!("UAA has no client '{client_id}' with that secret"),
        _ => format!("UAA did not log in the user of the assertion of issuer '{iss}' and subject '{sub}'"),
    }
}

fn now_epoch() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[derive(Clone)]
struct Token {
    access: String,
    refresh: Option<String>,
    /// Epoch seconds after which the token is refreshed before use; `None` if its expiry is unknown.
    refresh_at: Option<i64>,
    /// Epoch seconds when it was obtained.
    obtained_at: i64,
    /// Seconds from issue to expiry, when known.
    lifetime: Option<i64>,
}

impl Token {
    fn from_response(response: TokenResponse, now: i64) -> Token {
        redact::register(&response.access_token);
        if let Some(refresh) = &response.refresh_token {
            redact::register(refresh);
        }
        let claims = decode_jwt_claims(&response.access_token);
        let expires_at =
            claims.as_ref().and_then(|c| c.exp).or_else(|| response.expires_in.map(|secs| now + secs as i64));
        let issued = claims.as_ref().and_then(|c| c.iat).unwrap_or(now).min(now);
        let refresh_at = expires_at.map(|exp| exp - refresh_margin(exp - issued));
        Token {
            access: response.access_token,
            refresh: response.refresh_token,
            refresh_at,
            obtained_at: now,
            lifetime: expires_at.map(|exp| exp - issued),
        }
    }

    fn needs_refresh(&self, now: i64) -> bool {
        self.refresh_at.is_some_and(|at| now >= at)
    }
}

/// How long before expiry to refresh: 60 s, or a third of the token's life for short-lived tokens (so a token
/// that lives 30 s is not refreshed before every single request).
pub(crate) fn refresh_margin(lifetime_secs: i64) -> i64 {
    (REFRESH_MARGIN.as_secs() as i64).min(lifetime_secs.max(0) / 3)
}

pub(crate) struct Auth {
    credentials: Credentials,
    token_url: Url,
    state: tokio::sync::Mutex<Option<Token>>,
}

impl Auth {
    pub(crate) fn new(credentials: Credentials, token_url: Url) -> Self {
        Auth { credentials, token_url, state: tokio::sync::Mutex::new(None) }
    }

    pub(crate) async fn login(&self, core: &Core) -> Result<()> {
        let token = self.grant(core).await?;
        *self.state.lock().await = Some(token);
        Ok(())
    }

    /// The access token to send, refreshed first if it is close to expiry.
    pub(crate) async fn bearer(&self, core: &Core) -> Result<String> {
        let mut state = self.state.lock().await;
        if let Some(token) = state.as_ref()
            && !token.needs_refresh(now_epoch())
        {
            return Ok(token.access.clone());
        }
        let token = self.renew(core, state.as_ref()).await?;
        let access = token.access.clone();
        *state = Some(token);
        Ok(access)
    }

    /// CC rejected `rejected`: refresh, unless another request already did.
    pub(crate) async fn refresh_after_rejection(&self, core: &Core, rejected: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        if state.as_ref().is_some_and(|t| t.access != rejected) {
            return Ok(());
        }
        let token = self.renew(core, state.as_ref()).await?;
        *state = Some(token);
        Ok(())
    }

    /// Gets a fresh token unless the current one is younger than `max_age` and than a third of its life (a
    /// token that new is as good as a refreshed one).
    pub(crate) async fn refresh_if_older_than(&self, core: &Core, max_age: Duration) -> Result<()> {
        let mut state = self.state.lock().await;
        let fresh = |t: &Token| {
            let limit = t.lifetime.map_or(max_age.as_secs() as i64, |life| (max_age.as_secs() as i64).min(life / 3));
            now_epoch() - t.obtained_at < limit
        };
        if state.as_ref().is_some_and(fresh) {
            return Ok(());
        }
        let token = self.renew(core, state.as_ref()).await?;
        *state = Some(token);
        Ok(())
    }

    async fn renew(&self, core: &Core, current: Option<&Token>) -> Result<Token> {
        if let (Some(basic), Some(refresh)) = (self.user_client(), current.and_then(|t| t.refresh.as_ref())) {
            let form = vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), refresh.clone()),
            ];
            match self.token_request(core, form, Some(basic)).await {
                Ok(response) => return Ok(Token::from_response(response, now_epoch())),
                Err(Error::Cf(e)) if e.status.is_some_and(|s| (400..500).contains(&s)) => {
                    log::trace(format_args!(
                        "UAA rejected the refresh token ({}: {}); logging in again",
                        e.title, e.detail
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        self.grant(core).await
    }

    /// A new token from the credentials.
    async fn grant(&self, core: &Core) -> Result<Token> {
        let (form, basic) = match &self.credentials {
            Credentials::Password { username, password } => (
                vec![
                    ("grant_type".to_owned(), "password".to_owned()),
                    ("username".to_owned(), username.clone()),
                    ("password".to_owned(), password.clone()),
                ],
                self.user_client(),
            ),
            Credentials::Client { id, secret } => (
                vec![
                    ("grant_type".to_owned(), "client_credentials".to_owned()),
                    ("client_id".to_owned(), id.clone()),
                    ("client_secret".to_owned(), secret.clone()),
                ],
                None,
            ),
            Credentials::ClientAssertion { id, assertion } => return self.assertion_grant(core, id, assertion).await,
            Credentials::UserAssertion { client_id, assertion, .. } => {
                return self.user_assertion_grant(core, client_id, assertion).await;
            }
        };
        match self.token_request(core, form, basic).await {
            Ok(response) => Ok(Token::from_response(response, now_epoch())),
            Err(Error::Cf(e)) if e.status.is_some_and(|s| (400..500).contains(&s)) => {
                let reason = if e.detail.is_empty() { e.title.clone() } else { format!("{}: {}", e.title, e.detail) };
                Err(Error::Auth(format!(
                    "UAA ({}) rejected the credentials of {} ({} {reason})",
                    self.token_url.host_str().unwrap_or_default(),
                    self.credentials.who(),
                    e.status.unwrap_or_default(),
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// The client_credentials grant authenticated by the client assertion (no secret, no Authorization header, as
    /// UAA's `ClientDetailsAuthenticationProvider.isPrivateKeyJwt` requires). An assertion that has already expired
    /// is not sent.
    async fn assertion_grant(&self, core: &Core, id: &str, assertion: &str) -> Result<Token> {
        let claims = AssertionClaims::decode(assertion).unwrap_or_default();
        let who = self.credentials.who();
        let now = now_epoch();
        if let Some(exp) = claims.expired_at(now) {
            return Err(Error::Auth(format!(
                "the client assertion of {who} expired at {}: UAA refuses it, and an assertion cannot be renewed \
                 here (give the idtoken var source a longer expires_in, at most 24h, or run the step again)",
                when(exp, now)
            )));
        }
        let form = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_id".to_owned(), id.to_owned()),
            ("client_assertion_type".to_owned(), CLIENT_ASSERTION_TYPE.to_owned()),
            ("client_assertion".to_owned(), assertion.to_owned()),
        ];
        match self.token_request(core, form, None).await {
            Ok(response) => Ok(Token::from_response(response, now_epoch())),
            Err(Error::Cf(e)) if e.status.is_some_and(|s| (400..500).contains(&s)) => {
                let expected_aud = match e.detail.as_str() {
                    "Unauthorized client_assertion" => self.token_endpoint_as_uaa_names_it(core).await,
                    _ => self.token_url.to_string(),
                };
                let why = explain_refused_assertion(&e.detail, &claims, &expected_aud, now_epoch());
                Err(Error::Auth(format!(
                    "UAA ({}) refused the client assertion of {who} ({} {}: {}): {why}",
                    self.token_url.host_str().unwrap_or_default(),
                    e.status.unwrap_or_default(),
                    e.title,
                    e.detail,
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// UAA's token endpoint as UAA names itself (`issuer` of `GET /oauth/token/.well-known/openid-configuration`,
    /// `OpenIdConnectEndpoints`): the audience it expects of an assertion (`KeyInfoService.getTokenEndpointUrl`),
    /// which can differ from the login URL the token was asked of. The URL asked of, if UAA does not say.
    async fn token_endpoint_as_uaa_names_it(&self, core: &Core) -> String {
        #[derive(Deserialize)]
        struct OpenIdConfiguration {
            issuer: String,
        }
        let url =
            Url::parse(&format!("{}/.well-known/openid-configuration", self.token_url.as_str().trim_end_matches('/')));
        let Ok(url) = url else { return self.token_url.to_string() };
        let mut req = Req::new(Method::GET, Target::Url(url));
        req.authenticated = false;
        let issuer = match core.answer(&req, None).await {
            Ok(answer) => answer.json::<OpenIdConfiguration>().ok().map(|conf| conf.issuer),
            Err(_) => None,
        };
        issuer.unwrap_or_else(|| self.token_url.to_string())
    }

    /// The client a user's token is asked for and refreshed by, as its Basic credentials: `cf` with an empty secret
    /// for the password grant (as the CLI does), the configured client for the JWT bearer grant; `None` for a
    /// client's own token.
    fn user_client(&self) -> Option<(String, String)> {
        match &self.credentials {
            Credentials::Password { .. } => Some(("cf".to_owned(), String::new())),
            Credentials::UserAssertion { client_id, client_secret, .. } => {
                Some((client_id.clone(), client_secret.clone()))
            }
            Credentials::Client { .. } | Credentials::ClientAssertion { .. } => None,
        }
    }

    /// The JWT bearer grant (RFC 7523 section 2.1) for the user of `assertion`, asked for by the client with its
    /// secret in the Authorization header (as `cf auth CLIENT SECRET --assertion TOKEN` does). An assertion that has
    /// already expired is not sent: UAA's `checkExpiry` allows no skew.
    async fn user_assertion_grant(&self, core: &Core, client_id: &str, assertion: &str) -> Result<Token> {
        let claims = AssertionClaims::decode(assertion).unwrap_or_default();
        let who = self.credentials.who();
        let now = now_epoch();
        if let Some(exp) = claims.exp.filter(|exp| *exp < now) {
            return Err(Error::Auth(format!(
                "the user assertion of client '{client_id}' expired at {}: UAA refuses it, and an assertion cannot be                  renewed here (give the idtoken var source a longer expires_in, at most 24h, or run the step again)",
                when(exp, now)
            )));
        }
        let form = vec![
            ("grant_type".to_owned(), JWT_BEARER_GRANT.to_owned()),
            ("assertion".to_owned(), assertion.to_owned()),
        ];
        match self.token_request(core, form, self.user_client()).await {
            Ok(response) => Ok(Token::from_response(response, now_epoch())),
            Err(Error::Cf(e)) if e.status.is_some_and(|s| (400..500).contains(&s)) => {
                let why = explain_refused_user_assertion(&e.detail, &claims, client_id, now_epoch());
                Err(Error::Auth(format!(
                    "UAA ({}) refused {who} ({} {}: {}): {why}",
                    self.token_url.host_str().unwrap_or_default(),
                    e.status.unwrap_or_default(),
                    e.title,
                    e.detail,
                )))
            }
            Err(e) => Err(e),
        }
    }

    async fn token_request(
        &self,
        core: &Core,
        form: Vec<(String, String)>,
        basic: Option<(String, String)>,
    ) -> Result<TokenResponse> {
        let mut req = Req::new(Method::POST, Target::Url(self.token_url.clone()));
        // Asking for a token has no effect that repeating could double.
        req.idempotent = true;
        req.authenticated = false;
        req.body = ReqBody::Form(form);
        req.basic_auth = basic;
        let answer = core.answer(&req, None).await?;
        let response: TokenResponse = decode_json(&answer.method, &answer.path, &answer.body)?;
        if response.access_token.is_empty() {
            return Err(Error::Auth(format!("UAA answered {} without an access token", self.credentials.who())));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"HS256"}"#), b64(claims))
    }

    #[test]
    fn jwt_claims_are_decoded_without_padding() {
        let claims =
            decode_jwt_claims(&jwt(r#"{"exp":1406612135,"iat":1406568935,"user_name":"marissa","scope":["a"]}"#))
                .unwrap();
        assert_eq!(claims.exp, Some(1406612135));
        assert_eq!(claims.user_name.as_deref(), Some("marissa"));
        assert!(decode_jwt_claims("opaque-token").is_none());
        assert!(decode_jwt_claims("a.!!!.c").is_none());
    }

    #[test]
    fn upstream_token_example_decodes() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJiYzNlNzQ1Ni05MWY1LTQ5NjEtYjg4ZC1kYjcwNTYyNmJhNzciLCJzdWIiOiI3Zjc5MWVhOS05OWI5LTQyM2QtOTg4Yi05MzFmMDIyMmE3OWYiLCJzY29wZSI6WyJjbG91ZF9jb250cm9sbGVyLnJlYWQiLCJjbG91ZF9jb250cm9sbGVyLndyaXRlIiwib3BlbmlkIiwicGFzc3dvcmQud3JpdGUiLCJzY2ltLnVzZXJpZHMiXSwiY2xpZW50X2lkIjoiYXBwIiwiY2lkIjoiYXBwIiwiZ3JhbnRfdHlwZSI6InBhc3N3b3JkIiwidXNlcl9pZCI6IjdmNzkxZWE5LTk5YjktNDIzZC05ODhiLTkzMWYwMjIyYTc5ZiIsInVzZXJfbmFtZSI6Im1hcmlzc2EiLCJlbWFpbCI6Im1hcmlzc2FAdGVzdC5vcmciLCJpYXQiOjE0MDY1Njg5MzUsImV4cCI6MTQwNjYxMjEzNSwiaXNzIjoiaHR0cDovL2xvY2FsaG9zdDo4MDgwL3VhYS9vYXV0aC90b2tlbiIsImF1ZCI6WyJzY2ltIiwib3BlbmlkIiwiY2xvdWRfY29udHJvbGxlciIsInBhc3N3b3JkIl19.ZOhp7HmYF0ufvxXrkut40eHZbHFzAb5EETT2NL7n2Cs";
        let claims = decode_jwt_claims(token).unwrap();
        assert_eq!(claims.exp, Some(1406612135));
        assert_eq!(claims.cid.as_deref(), Some("app"));
    }

    #[test]
    fn refresh_is_due_a_minute_before_expiry_for_normal_tokens() {
        let now = 1_000_000;
        let token = Token::from_response(
            TokenResponse {
                access_token: jwt(&format!(r#"{{"iat":{now},"exp":{}}}"#, now + 1200)),
                token_type: None,
                refresh_token: None,
                expires_in: Some(1199),
                scope: None,
                jti: None,
                id_token: None,
            },
            now,
        );
        assert_eq!(token.refresh_at, Some(now + 1200 - 60));
        assert!(!token.needs_refresh(now + 1139));
        assert!(token.needs_refresh(now + 1140));
    }

    #[test]
    fn short_lived_and_opaque_tokens() {
        assert_eq!(refresh_margin(1200), 60);
        assert_eq!(refresh_margin(30), 10);
        assert_eq!(refresh_margin(-5), 0);
        let now = 2_000;
        let opaque = Token::from_response(
            TokenResponse {
                access_token: "2YotnFZFEjr1zCsicMWpAA".into(),
                token_type: Some("bearer".into()),
                refresh_token: None,
                expires_in: Some(3600),
                scope: None,
                jti: None,
                id_token: None,
            },
            now,
        );
        assert_eq!(opaque.refresh_at, Some(now + 3600 - 60));
    }

    #[test]
    fn assertion_claims_take_one_audience_as_a_string_or_a_list() {
        let single = jwt(r#"{"iss":"https://ci.example.com","sub":"main/p","aud":"https://uaa/oauth/token","exp":5}"#);
        let claims = AssertionClaims::decode(&single).unwrap();
        assert_eq!(claims.audiences(), ["https://uaa/oauth/token"]);
        let list = AssertionClaims::decode(&jwt(r#"{"aud":["a","b"]}"#)).unwrap();
        assert_eq!(list.audiences(), ["a", "b"]);
        assert!(AssertionClaims::decode("a.b").is_none());
        assert!(AssertionClaims::decode("not.!!.jwt").is_none());
        // UAA allows 60 s of clock skew on exp.
        assert_eq!(claims.expired_at(65), Some(5));
        assert_eq!(claims.expired_at(64), None);
    }

    #[test]
    fn each_refusal_of_uaa_is_explained_from_the_assertions_claims() {
        let token_url = "https://uaa.example.com/oauth/token";
        let now = 1_000_000;
        let claims = |exp: i64, aud: &str| AssertionClaims {
            iss: Some("https://ci.example.com".into()),
            sub: Some("main/deploy".into()),
            aud: Some(serde_json::json!(aud)),
            exp: Some(exp),
            nbf: None,
            jti: Some(serde_json::json!("3f2a")),
        };
        let explain = |description: &str, claims: &AssertionClaims| {
            explain_refused_assertion(description, claims, token_url, now)
        };
        let good = claims(now + 600, token_url);
        assert_eq!(
            explain("Unauthorized client_assertion", &claims(now - 300, token_url)),
            "the assertion expired at 1970-01-12T13:41:40Z (5m ago)"
        );
        assert_eq!(
            explain("Unauthorized client_assertion", &claims(now + 600, "https://other/oauth/token")),
            "its audience (https://other/oauth/token) is not UAA's token endpoint https://uaa.example.com/oauth/token \
             (unless the client's federated credential names that audience: then its signature does not verify with \
             the keys issuer 'https://ci.example.com' publishes)"
        );
        assert!(explain("Unauthorized client_assertion", &good).starts_with("its signature does not verify"));
        let without_jti = AssertionClaims { jti: None, ..good.clone() };
        assert!(
            explain("Unauthorized client_assertion", &without_jti)
                .starts_with("it has no jti claim, which UAA releases without cloudfoundry/uaa#3577 require")
        );
        assert!(
            explain("Wrong client_assertion", &good)
                .contains("no federated credential for issuer 'https://ci.example.com' and subject 'main/deploy'")
        );
        assert!(explain("Untrusted client_assertion", &good).contains("none of the keys issuer"));
        assert!(explain("Bad client_assertion", &good).contains("/.well-known/openid-configuration"));
        assert_eq!(explain("Bad credentials", &good), "UAA has no such client, or it does not take client assertions");
    }

    #[test]
    fn each_refusal_of_a_user_assertion_is_explained_from_its_claims() {
        let now = 1_000_000;
        let claims = |exp: Option<i64>, aud: &str| AssertionClaims {
            iss: Some("https://ci.example.com".into()),
            sub: Some("main/deploy".into()),
            aud: Some(serde_json::json!(aud)),
            exp,
            nbf: None,
            jti: None,
        };
        let good = claims(Some(now + 600), "cf-deploy");
        let explain = |description: &str, claims: &AssertionClaims| {
            explain_refused_user_assertion(description, claims, "deployer", now)
        };
        assert_eq!(
            explain("Unable to map issuer, https://ci.example.com , to a single registered provider", &good),
            "the issuer 'https://ci.example.com' is not trusted: UAA has no OpenID Connect identity provider with \
             that issuer (the assertion's iss)"
        );
        assert_eq!(
            explain("Some parties were not in the token audience: cf-deploy", &claims(Some(now + 600), "other")),
            "its audience (other) does not name the identity provider's relyingPartyId 'cf-deploy': add it to the \
             idtoken var source's audience"
        );
        // More than 60 s past exp fails UAA's signature check; within them, its exp check.
        let signature = "Could not verify token signature.";
        assert_eq!(
            explain(signature, &claims(Some(now - 300), "cf-deploy")),
            "the assertion expired at 1970-01-12T13:41:40Z (5m ago)"
        );
        assert!(explain(signature, &good).starts_with("its signature does not verify with the keys of the identity"));
        assert_eq!(
            explain("Token does not bear a valid EXP claim.", &claims(Some(now - 30), "cf-deploy")),
            "the assertion expired at 1970-01-12T13:46:10Z (30s ago)"
        );
        assert_eq!(
            explain("Token does not bear a valid EXP claim.", &claims(None, "x")),
            "the assertion has no exp claim"
        );
        assert!(explain("The token does not bear an AUD claim.", &good).starts_with("the assertion names no audience"));
        assert!(
            explain("The user account must be pre-created. Please contact your system administrator.", &good)
                .contains("subject 'main/deploy'")
        );
        assert!(explain("Unauthorized grant type", &good).contains("add urn:ietf:params:oauth:grant-type:jwt-bearer"));
        assert_eq!(explain("Bad credentials", &good), "UAA has no client 'deployer' with that secret");
    }

    #[test]
    fn discovery_prefers_login_then_uaa() {
        let api = Url::parse("https://api.example.org").unwrap();
        let root: Root = serde_json::from_str(
            r#"{"links":{"login":{"href":"https://login.example.org/"},"uaa":{"href":"https://uaa.example.org"},
                "log_cache":{"href":"https://log-cache.example.org"},"credhub":null,
                "cloud_controller_v3":{"href":"https://api.example.org/v3","meta":{"version":"3.90.0"}}}}"#,
        )
        .unwrap();
        let ep = Endpoints::from_root(&api, &root).unwrap();
        assert_eq!(ep.token.as_str(), "https://login.example.org/oauth/token");
        assert_eq!(ep.log_cache.unwrap().as_str(), "https://log-cache.example.org/");
        assert_eq!(ep.v3_version.as_deref(), Some("3.90.0"));

        let root: Root = serde_json::from_str(r#"{"links":{"uaa":{"href":"https://uaa.example.org/uaa"}}}"#).unwrap();
        let ep = Endpoints::from_root(&api, &root).unwrap();
        assert_eq!(ep.token.as_str(), "https://uaa.example.org/uaa/oauth/token");
        assert!(ep.log_cache.is_none());

        let root: Root = serde_json::from_str(r#"{"links":{}}"#).unwrap();
        assert!(Endpoints::from_root(&api, &root).unwrap_err().to_string().contains("neither a login nor a uaa"));
    }

    #[test]
    fn a_cloud_controller_older_than_the_minimum_is_refused_at_discovery() {
        let api = Url::parse("https://api.example.org").unwrap();
        let root = |version: &str| -> Root {
            serde_json::from_value(serde_json::json!({"links": {
                "login": {"href": "https://login.example.org"},
                "cloud_controller_v3": {"href": "https://api.example.org/v3", "meta": {"version": version}},
            }}))
            .unwrap()
        };
        let err = Endpoints::from_root(&api, &root("3.85.0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "https://api.example.org/ runs Cloud Controller API 3.85.0; this resource needs 3.86.0 or newer"
        );
        for ok in ["3.86.0", "3.228.0", "4.0.0", "3.117.0+cf-k8s", "unknown"] {
            assert!(Endpoints::from_root(&api, &root(ok)).is_ok(), "{ok}");
        }
        let unversioned: Root =
            serde_json::from_str(r#"{"links":{"login":{"href":"https://login.example.org"}}}"#).unwrap();
        assert!(Endpoints::from_root(&api, &unversioned).unwrap().v3_version.is_none());
    }
}
