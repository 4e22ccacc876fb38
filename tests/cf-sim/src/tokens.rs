//! UAA's tokens: HS256 JWT access tokens with UAA's claims, opaque refresh tokens, verification as CC does it,
//! and a record of every token issued so tests can scan output for leaks. Also the client assertions UAA accepts
//! instead of a client secret (RFC 7523 federated client credentials, [`verify_client_assertion`]) and an issuer
//! of them for tests ([`AssertionIssuer`], which signs tokens shaped like Concourse's `idtoken`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Value, json};

use crate::clock::{new_guid, unix_seconds};
use crate::config::{Jwk, JwtClient, TrustedIssuer};

const SCOPES: &[&str] = &["cloud_controller.read", "cloud_controller.write", "openid", "password.write", "uaa.user"];
const CLIENT_SCOPES: &[&str] =
    &["cloud_controller.admin", "cloud_controller.read", "cloud_controller.write", "uaa.none"];
/// What users and clients may do with network policies (the policy server's scopes), unless `--no-network-scopes`:
/// a user manages the policies of its spaces' apps (`network.write`), a CI client is an admin (`network.admin`).
const USER_NETWORK_SCOPE: &str = "network.write";
const CLIENT_NETWORK_SCOPE: &str = "network.admin";

/// The claims of an access token (the fields of UAA's, see uaa_token_claims.json).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub jti: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub client_id: String,
    pub cid: String,
    pub scope: Vec<String>,
    pub aud: Vec<String>,
    pub grant_type: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: String,
}

/// Who a token is for.
#[derive(Debug, Clone)]
pub struct Grantee {
    pub client_id: String,
    /// `(user guid, user name)` for user grants; `None` for client_credentials.
    pub user: Option<(String, String)>,
    pub grant_type: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub scope: String,
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
    /// A refresh token presented by another client than the one it was issued to (that client's id).
    WrongClient(String),
}

struct RefreshGrant {
    grantee: Grantee,
    expires_at: u64,
}

pub struct Tokens {
    key: [u8; 32],
    issuer: String,
    ttl_secs: AtomicU64,
    refresh_ttl_secs: u64,
    refresh: Mutex<HashMap<String, RefreshGrant>>,
    issued: Mutex<Vec<String>>,
    network_scopes: bool,
}

impl Tokens {
    pub fn new(issuer: String, ttl_secs: u64, refresh_ttl_secs: u64) -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        Tokens {
            key,
            issuer,
            ttl_secs: AtomicU64::new(ttl_secs),
            refresh_ttl_secs,
            refresh: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            network_scopes: true,
        }
    }

    /// Tokens with (the default) or without the policy server's scopes.
    pub fn with_network_scopes(self, network_scopes: bool) -> Self {
        Tokens { network_scopes, ..self }
    }

    pub fn set_ttl(&self, secs: u64) {
        self.ttl_secs.store(secs, Ordering::SeqCst);
    }

    pub fn ttl(&self) -> u64 {
        self.ttl_secs.load(Ordering::SeqCst)
    }

    /// Every access and refresh token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap().clone()
    }

    /// Issues an access token (and a refresh token for user grants).
    pub fn issue(&self, grantee: Grantee) -> TokenResponse {
        let now = unix_seconds();
        let ttl = self.ttl();
        let user_grant = grantee.user.is_some();
        let (scopes, network) =
            if user_grant { (SCOPES, USER_NETWORK_SCOPE) } else { (CLIENT_SCOPES, CLIENT_NETWORK_SCOPE) };
        let mut scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        if self.network_scopes {
            scopes.push(network.to_string());
            scopes.sort();
        }
        let claims = Claims {
            jti: new_guid().replace('-', ""),
            sub: grantee.user.as_ref().map(|(guid, _)| guid.clone()).unwrap_or_else(|| grantee.client_id.clone()),
            user_id: grantee.user.as_ref().map(|(guid, _)| guid.clone()),
            user_name: grantee.user.as_ref().map(|(_, name)| name.clone()),
            email: grantee.user.as_ref().map(|(_, name)| format!("{name}@sim.internal")),
            client_id: grantee.client_id.clone(),
            cid: grantee.client_id.clone(),
            scope: scopes.clone(),
            aud: vec!["cloud_controller".into(), "openid".into(), "password".into(), grantee.client_id.clone()],
            grant_type: grantee.grant_type.clone(),
            iat: now,
            exp: now + ttl,
            iss: self.issuer.clone(),
        };
        let access_token = self.sign(&claims);
        let refresh_token = user_grant.then(|| {
            let token = format!("{}-r", uuid::Uuid::new_v4().simple());
            self.refresh.lock().unwrap().insert(
                token.clone(),
                RefreshGrant { grantee: grantee.clone(), expires_at: now + self.refresh_ttl_secs },
            );
            token
        });
        let mut issued = self.issued.lock().unwrap();
        issued.push(access_token.clone());
        issued.extend(refresh_token.clone());
        TokenResponse {
            access_token,
            token_type: "bearer",
            refresh_token,
            expires_in: ttl,
            scope: scopes.join(" "),
            jti: claims.jti,
        }
    }

    /// A fresh access token for a refresh token issued to `client_id`; UAA keeps the refresh token unchanged.
    pub fn refresh(&self, refresh_token: &str, client_id: &str) -> Result<TokenResponse, TokenError> {
        let grantee = {
            let grants = self.refresh.lock().unwrap();
            let grant = grants.get(refresh_token).ok_or(TokenError::Invalid)?;
            if grant.expires_at <= unix_seconds() {
                return Err(TokenError::Expired);
            }
            if grant.grantee.client_id != client_id {
                return Err(TokenError::WrongClient(grant.grantee.client_id.clone()));
            }
            grant.grantee.clone()
        };
        let mut response = self.issue(Grantee { grant_type: "refresh_token".into(), ..grantee });
        self.issued.lock().unwrap().pop_if(|t| Some(t.as_str()) == response.refresh_token.as_deref());
        self.refresh.lock().unwrap().retain(|t, _| Some(t.as_str()) != response.refresh_token.as_deref());
        response.refresh_token = Some(refresh_token.to_string());
        Ok(response)
    }

    /// Checks signature and expiry at `now` (CC compares with the upload start time for uploads).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Invalid)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length works for HMAC");
        mac.update(format!("{header}.{payload}").as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Invalid)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"sim-key"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length works for HMAC");
        mac.update(format!("{header}.{payload}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{header}.{payload}.{signature}")
    }
}

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The clock skew UAA's claims verifier allows on `exp` and `nbf` (nimbus `DefaultJWTClaimsVerifier`).
pub(crate) const CLOCK_SKEW_SECS: u64 = 60;

/// What UAA trusts of client assertions: the federated credentials of its clients, the keys of their issuers, and
/// whether an assertion must carry a `jti` (UAA releases without cloudfoundry/uaa#3577 require one).
pub struct AssertionTrust<'a> {
    pub clients: &'a [JwtClient],
    pub issuers: &'a [TrustedIssuer],
    pub require_jti: bool,
}

/// Checks a client assertion for `client_id` as UAA's `JwtClientAuthentication.validateClientJwt` does for a
/// federated credential. `Err` is the `error_description` of UAA's 401 `unauthorized` answer.
pub fn verify_client_assertion(
    assertion: &str,
    client_id: &str,
    trust: &AssertionTrust,
    token_endpoint: &str,
    now: u64,
) -> Result<(), &'static str> {
    let jwt = ParsedJwt::parse(assertion).ok_or("Bad client_assertion")?;
    let claim = |name: &str| jwt.claims.get(name).and_then(Value::as_str);
    let audiences = jwt.audiences();
    // getClientJwtFederation: the client's credential whose sub and iss equal the assertion's, and whose aud (if
    // any) is among the assertion's audiences (or the assertion names none).
    let credential = trust
        .clients
        .iter()
        .find(|c| {
            c.client_id == client_id
                && Some(c.subject.as_str()) == claim("sub")
                && Some(c.issuer.as_str()) == claim("iss")
                && c.audience.as_ref().is_none_or(|aud| audiences.is_empty() || audiences.contains(aud))
        })
        .ok_or("Wrong client_assertion")?;
    // getTrustedJwksSet: keys come from the issuer's OIDC discovery, so the issuer must be an http(s) URL
    // (MalformedURLException makes validateClientJwt false); a fetch that fails is "Bad client_assertion".
    if !(credential.issuer.starts_with("https://") || credential.issuer.starts_with("http://")) {
        return Err("Bad client_assertion type");
    }
    let issuer = trust.issuers.iter().find(|i| i.issuer == credential.issuer).ok_or("Bad client_assertion")?;
    if issuer.keys.is_empty() {
        return Err("Bad empty jwk_set");
    }
    let alg = jwt.header.get("alg").and_then(Value::as_str).unwrap_or("none");
    if ["none", "HS256", "HS384", "HS512"].contains(&alg) {
        return Err("Bad client_assertion algorithm");
    }
    let kid = jwt.header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&Jwk> = issuer.keys.iter().filter(|key| key_matches(key, alg, kid)).collect();
    if candidates.is_empty() {
        return Err("Untrusted client_assertion");
    }
    if !candidates.iter().any(|key| signature_verifies(key, alg, &jwt)) {
        return Err("Unauthorized client_assertion");
    }
    // DefaultJWTClaimsVerifier(expectedAud, exact {iss, sub}, required {iss, sub, aud, exp} and jti before 3577).
    let expected_aud = credential.audience.as_deref().unwrap_or(token_endpoint);
    let exp = jwt.claims.get("exp").and_then(Value::as_u64);
    let nbf = jwt.claims.get("nbf").and_then(Value::as_u64);
    let valid = exp.is_some_and(|exp| exp + CLOCK_SKEW_SECS > now)
        && (!trust.require_jti || jwt.claims.get("jti").is_some_and(|jti| !jti.is_null()))
        && nbf.is_none_or(|nbf| nbf <= now + CLOCK_SKEW_SECS)
        && audiences.iter().any(|aud| aud == expected_aud);
    if !valid {
        return Err("Unauthorized client_assertion");
    }
    Ok(())
}

/// The `sub` and `iss` of an assertion when they are equal (`JwtClientAuthentication.getClientId`, how UAA finds the
/// client of a request that names none).
pub fn assertion_client_id(assertion: &str) -> Option<String> {
    let jwt = ParsedJwt::parse(assertion)?;
    let sub = jwt.claims.get("sub").and_then(Value::as_str)?;
    (jwt.claims.get("iss").and_then(Value::as_str) == Some(sub)).then(|| sub.to_owned())
}

/// A compact JWS split into its decoded header and claims, the signed input and the signature.
pub(crate) struct ParsedJwt {
    pub(crate) header: serde_json::Map<String, Value>,
    pub(crate) claims: serde_json::Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl ParsedJwt {
    pub(crate) fn parse(token: &str) -> Option<ParsedJwt> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let json = |part: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok();
        Some(ParsedJwt {
            header: json(header)?,
            claims: json(payload)?,
            signing_input: format!("{header}.{payload}"),
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// `aud`, a string or a list of strings (RFC 7519 section 4.1.3).
    pub(crate) fn audiences(&self) -> Vec<String> {
        match self.claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.clone()],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether `key` may verify an `alg` signature (nimbus `JWSVerificationKeySelector`: the key type of the
/// algorithm, the header's `kid` if it names one, `use` sig or unset, the key's `alg` if set).
pub(crate) fn key_matches(key: &Jwk, alg: &str, kid: Option<&str>) -> bool {
    let key_type = match alg {
        "RS256" => key.kty == "RSA",
        "ES256" => key.kty == "EC" && key.crv.as_deref() == Some("P-256"),
        _ => false,
    };
    key_type
        && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
        && key.use_.as_deref().is_none_or(|u| u == "sig")
        && key.alg.as_deref().is_none_or(|a| a == alg)
}

pub(crate) fn signature_verifies(key: &Jwk, alg: &str, jwt: &ParsedJwt) -> bool {
    let decode = |part: &Option<String>| part.as_deref().and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
    let message = jwt.signing_input.as_bytes();
    match alg {
        "RS256" => {
            let (Some(n), Some(e)) = (decode(&key.n), decode(&key.e)) else { return false };
            RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, &jwt.signature)
                .is_ok()
        }
        "ES256" => {
            let (Some(x), Some(y)) = (decode(&key.x), decode(&key.y)) else { return false };
            let point = [&[0x04][..], &x, &y].concat();
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, &jwt.signature).is_ok()
        }
        _ => false,
    }
}

/// An issuer of signed JWTs for tests: an ES256 key pair, the key set it publishes, and tokens with the claims of
/// Concourse's `idtoken` var source (`atc/creds/idtoken/token_generator.go`).
pub struct AssertionIssuer {
    issuer: String,
    kid: String,
    key: EcdsaKeyPair,
}

impl AssertionIssuer {
    /// A new issuer named `issuer` (Concourse's is its external URL) with a freshly generated P-256 key.
    pub fn generate(issuer: &str) -> AssertionIssuer {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("a P-256 key is generated");
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("a generated key loads");
        AssertionIssuer { issuer: issuer.to_owned(), kid: new_guid(), key }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public key set, as the issuer's `jwks_uri` serves it.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]})
    }

    /// This issuer as UAA trusts it.
    pub fn trusted(&self) -> TrustedIssuer {
        TrustedIssuer::from_jwks(&self.issuer, &self.jwks().to_string()).expect("the key set parses")
    }

    /// A token like Concourse's `idtoken`: `iss` this issuer, `sub` `team/pipeline`, one audience (serialized as a
    /// string, as go-jose does), `iat` now, `exp` `lifetime_secs` from now (negative: already expired), the `team`,
    /// `pipeline` and `job` claims, and a random `jti` (concourse/concourse#9693).
    pub fn idtoken(&self, team: &str, pipeline: &str, audience: &str, lifetime_secs: i64) -> String {
        let mut claims = self.idtoken_claims(team, pipeline, audience, lifetime_secs);
        claims["jti"] = json!(new_guid());
        self.sign(&claims)
    }

    /// The same as Concourse made it before concourse/concourse#9693: without a `jti`.
    pub fn idtoken_without_jti(&self, team: &str, pipeline: &str, audience: &str, lifetime_secs: i64) -> String {
        self.sign(&self.idtoken_claims(team, pipeline, audience, lifetime_secs))
    }

    fn idtoken_claims(&self, team: &str, pipeline: &str, audience: &str, lifetime_secs: i64) -> Value {
        let now = unix_seconds() as i64;
        json!({
            "iss": self.issuer, "sub": format!("{team}/{pipeline}"), "aud": audience,
            "iat": now, "exp": now + lifetime_secs, "team": team, "pipeline": pipeline, "job": "deploy",
        })
    }

    /// Any claims, signed with ES256 under this issuer's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "kid": self.kid}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let signature =
            self.key.sign(&SystemRandom::new(), signing_input.as_bytes()).expect("signing with a loaded key");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Grantee {
        Grantee { client_id: "cf".into(), user: Some(("u-1".into(), "alice".into())), grant_type: "password".into() }
    }

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let tokens = Tokens::new("http://uaa/oauth/token".into(), 60, 3600);
        let response = tokens.issue(user());
        let claims = tokens.verify(&response.access_token, unix_seconds()).unwrap();
        assert_eq!(claims.user_name.as_deref(), Some("alice"));
        assert_eq!(claims.exp - claims.iat, 60);
        assert_eq!(tokens.verify(&response.access_token, claims.exp), Err(TokenError::Expired));
        let mut tampered = response.access_token.clone();
        tampered.insert(tampered.len() - 2, 'x');
        assert_eq!(tokens.verify(&tampered, unix_seconds()), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_keeps_the_refresh_token_and_checks_the_client() {
        let tokens = Tokens::new("iss".into(), 60, 3600);
        let first = tokens.issue(user());
        let refresh = first.refresh_token.clone().unwrap();
        assert_eq!(tokens.refresh(&refresh, "other").unwrap_err(), TokenError::WrongClient("cf".into()));
        let second = tokens.refresh(&refresh, "cf").unwrap();
        assert_eq!(second.refresh_token.as_deref(), Some(refresh.as_str()));
        assert_ne!(second.access_token, first.access_token);
        assert_eq!(tokens.issued().len(), 3);
    }

    const ISSUER: &str = "https://ci.example.com";
    const TOKEN_ENDPOINT: &str = "http://uaa.sim/oauth/token";

    fn deployer(audience: Option<&str>) -> Vec<JwtClient> {
        vec![JwtClient {
            client_id: "deployer".into(),
            issuer: ISSUER.into(),
            subject: "main/deploy".into(),
            audience: audience.map(str::to_owned),
        }]
    }

    fn check(issuer: &AssertionIssuer, assertion: &str, clients: &[JwtClient]) -> Result<(), &'static str> {
        let issuers = [issuer.trusted()];
        let trust = AssertionTrust { clients, issuers: &issuers, require_jti: false };
        verify_client_assertion(assertion, "deployer", &trust, TOKEN_ENDPOINT, unix_seconds())
    }

    #[test]
    fn a_concourse_shaped_idtoken_is_accepted_and_each_rule_answers_as_uaa() {
        let ci = AssertionIssuer::generate(ISSUER);
        let clients = deployer(None);
        assert_eq!(check(&ci, &ci.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600), &clients), Ok(()));
        // jti is optional since cloudfoundry/uaa#3577.
        assert_eq!(check(&ci, &ci.idtoken_without_jti("main", "deploy", TOKEN_ENDPOINT, 3600), &clients), Ok(()));
        // exp is checked with nimbus' 60 s skew.
        assert_eq!(check(&ci, &ci.idtoken("main", "deploy", TOKEN_ENDPOINT, -30), &clients), Ok(()));
        let expired = ci.idtoken("main", "deploy", TOKEN_ENDPOINT, -61);
        assert_eq!(check(&ci, &expired, &clients), Err("Unauthorized client_assertion"));
        let wrong_aud = ci.idtoken("main", "deploy", "https://elsewhere/oauth/token", 3600);
        assert_eq!(check(&ci, &wrong_aud, &clients), Err("Unauthorized client_assertion"));
        let other_subject = ci.idtoken("main", "other", TOKEN_ENDPOINT, 3600);
        assert_eq!(check(&ci, &other_subject, &clients), Err("Wrong client_assertion"));
        let impostor = AssertionIssuer::generate("https://impostor.example.com");
        let wrong_issuer = impostor.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600);
        assert_eq!(check(&ci, &wrong_issuer, &clients), Err("Wrong client_assertion"));
        // Same issuer name, another key: the kid finds no key.
        let same_name = AssertionIssuer::generate(ISSUER);
        let foreign_key = same_name.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600);
        assert_eq!(check(&ci, &foreign_key, &clients), Err("Untrusted client_assertion"));
        let good = ci.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600);
        let (input, _) = good.rsplit_once('.').unwrap();
        let tampered_claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": ISSUER, "sub": "main/deploy", "aud": TOKEN_ENDPOINT, "exp": unix_seconds() + 86_400})
                .to_string(),
        );
        let header = input.split('.').next().unwrap();
        let tampered = format!("{header}.{tampered_claims}.{}", good.rsplit_once('.').unwrap().1);
        assert_eq!(check(&ci, &tampered, &clients), Err("Unauthorized client_assertion"));
        assert_eq!(check(&ci, "not-a-jwt", &clients), Err("Bad client_assertion"));
        let unsigned = format!("{}.{tampered_claims}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(check(&ci, &unsigned, &clients), Err("Bad client_assertion algorithm"));
        let no_exp = ci.sign(&json!({"iss": ISSUER, "sub": "main/deploy", "aud": [TOKEN_ENDPOINT]}));
        assert_eq!(check(&ci, &no_exp, &clients), Err("Unauthorized client_assertion"));
        let not_yet = ci.sign(&json!({"iss": ISSUER, "sub": "main/deploy", "aud": [TOKEN_ENDPOINT],
            "exp": unix_seconds() + 3600, "nbf": unix_seconds() + 120}));
        assert_eq!(check(&ci, &not_yet, &clients), Err("Unauthorized client_assertion"));
    }

    #[test]
    fn a_credential_audience_replaces_the_token_endpoint_and_keys_come_from_the_issuer() {
        let ci = AssertionIssuer::generate(ISSUER);
        let clients = deployer(Some("cf-deployer"));
        assert_eq!(check(&ci, &ci.idtoken("main", "deploy", "cf-deployer", 3600), &clients), Ok(()));
        // getClientJwtFederation skips a credential whose aud the assertion does not name.
        let endpoint_aud = ci.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600);
        assert_eq!(check(&ci, &endpoint_aud, &clients), Err("Wrong client_assertion"));
        let token = ci.idtoken("main", "deploy", "cf-deployer", 3600);
        let now = unix_seconds();
        let verify = |client: &str, issuers: &[TrustedIssuer]| {
            let trust = AssertionTrust { clients: &clients, issuers, require_jti: false };
            verify_client_assertion(&token, client, &trust, TOKEN_ENDPOINT, now)
        };
        assert_eq!(verify("deployer", &[]), Err("Bad client_assertion"));
        let keyless = TrustedIssuer { issuer: ISSUER.into(), keys: vec![] };
        assert_eq!(verify("deployer", &[keyless]), Err("Bad empty jwk_set"));
        assert_eq!(verify("someone-else", &[ci.trusted()]), Err("Wrong client_assertion"));
    }

    #[test]
    fn a_uaa_without_pr_3577_requires_a_jti_which_concourse_idtokens_lacked() {
        let ci = AssertionIssuer::generate(ISSUER);
        let clients = deployer(None);
        let issuers = [ci.trusted()];
        let trust = AssertionTrust { clients: &clients, issuers: &issuers, require_jti: true };
        let verify = |token: &str| verify_client_assertion(token, "deployer", &trust, TOKEN_ENDPOINT, unix_seconds());
        let without_jti = ci.idtoken_without_jti("main", "deploy", TOKEN_ENDPOINT, 3600);
        assert_eq!(verify(&without_jti), Err("Unauthorized client_assertion"));
        assert_eq!(verify(&ci.idtoken("main", "deploy", TOKEN_ENDPOINT, 3600)), Ok(()));
    }

    #[test]
    fn rs256_assertions_verify_against_rsa_keys() {
        let rng = SystemRandom::new();
        let key = signature::RsaKeyPair::from_der(include_bytes!("../testdata/rs256-test-only.der")).unwrap();
        let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(key.public());
        let jwks = json!({"keys": [{"kty": "RSA", "kid": "rsa-1", "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e)}]});
        let issuer = TrustedIssuer::from_jwks(ISSUER, &jwks.to_string()).unwrap();
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa-1"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"iss": ISSUER, "sub": "main/deploy", "aud": [TOKEN_ENDPOINT], "exp": unix_seconds() + 600})
                .to_string(),
        );
        let input = format!("{header}.{claims}");
        let mut sig = vec![0; key.public().modulus_len()];
        key.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        let clients = deployer(None);
        let trust = AssertionTrust { clients: &clients, issuers: std::slice::from_ref(&issuer), require_jti: false };
        let verify = |token: &str| verify_client_assertion(token, "deployer", &trust, TOKEN_ENDPOINT, unix_seconds());
        assert_eq!(verify(&token), Ok(()));
        sig[10] ^= 1;
        assert_eq!(verify(&format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig))), Err("Unauthorized client_assertion"));
    }

    #[test]
    fn client_credentials_tokens_have_no_user_and_no_refresh_token() {
        let tokens = Tokens::new("iss".into(), 60, 3600);
        let response =
            tokens.issue(Grantee { client_id: "ci".into(), user: None, grant_type: "client_credentials".into() });
        assert!(response.refresh_token.is_none());
        let claims = tokens.verify(&response.access_token, unix_seconds()).unwrap();
        assert_eq!((claims.user_id, claims.sub.as_str()), (None, "ci"));
    }
}
