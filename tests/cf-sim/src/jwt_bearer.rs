//! UAA's JWT bearer grant (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion=<ID token>`): a
//! user of a trusted OpenID Connect identity provider logs in with a token that provider signed.
//!
//! UAA's `BackwardsCompatibleTokenEndpointAuthenticationFilter` hands the assertion to
//! `ExternalOAuthAuthenticationManager` once the client has authenticated: the provider is the active `oidc1.0`
//! one whose `issuer` equals the token's `iss` (`resolveOriginProvider`), the token is checked against that
//! provider's keys, `issuer`, `relyingPartyId` and the clock (`validateToken`), the user name is the claim
//! `attributeMappings.user_name` names (`sub` by default), and the user is found by name and origin, or added as a
//! shadow user when the provider allows it (`ExternalLoginAuthenticationManager.authenticate`). Only then does the
//! token endpoint check that the client may use the grant (`AbstractTokenGranter.validateGrantType`).

use std::sync::Mutex;

use serde_json::Value;

use crate::clock::new_guid;
use crate::config::OidcProvider;
use crate::state::User;
use crate::tokens::{CLOCK_SKEW_SECS, ParsedJwt, key_matches, signature_verifies};

/// `grant_type` of the JWT bearer grant (RFC 7523 section 2.1).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// UAA's answer to a refused assertion: a 401 with this `error` and `error_description`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: &'static str,
    pub description: String,
}

/// An `AuthenticationException` without an OAuth2 cause: `DefaultWebResponseExceptionTranslator` answers
/// `unauthorized`.
fn unauthorized(description: impl Into<String>) -> Refusal {
    Refusal { error: "unauthorized", description: description.into() }
}

/// An `InvalidTokenException` (an `OAuth2Exception`, found in the cause chain): `invalid_token`.
fn invalid_token(description: impl Into<String>) -> Refusal {
    Refusal { error: "invalid_token", description: description.into() }
}

/// A `BadCredentialsException`: `UaaExceptionTranslator` answers `invalid_client`.
fn bad_credentials(description: impl Into<String>) -> Refusal {
    Refusal { error: "invalid_client", description: description.into() }
}

/// Checks `assertion` as `ExternalOAuthAuthenticationManager` does and returns its provider and the user name it
/// maps to; `token_endpoint` is this UAA's, the issuer of its own tokens.
pub fn authenticate<'a>(
    assertion: &str,
    providers: &'a [OidcProvider],
    token_endpoint: &str,
    now: u64,
) -> Result<(&'a OidcProvider, String), Refusal> {
    // JwtHelper.decode: an empty token is an InsufficientAuthenticationException; one that nimbus's JWTParser (its
    // header, then getJWTClaimsSet) cannot parse an InvalidTokenException("Invalid token"), which
    // resolveOriginProvider does not catch.
    if assertion.is_empty() {
        return Err(unauthorized("Unable to decode expected id_token"));
    }
    let jwt = ParsedJwt::parse(assertion).filter(nimbus_parses).ok_or_else(|| invalid_token("Invalid token"))?;
    let issuer = jwt.claims.get("iss").and_then(Value::as_str).filter(|iss| !iss.is_empty());
    let issuer = issuer.ok_or_else(|| unauthorized("Issuer is missing in id_token"))?;
    let Some(provider) = providers.iter().find(|p| p.issuer.issuer == issuer) else {
        // resolveOriginProvider: a token UAA issued itself, naming an origin, is checked against UAA's own keys.
        let origin = jwt.claims.get("origin").and_then(Value::as_str).filter(|o| !o.is_empty());
        if issuer == token_endpoint && origin.is_some() {
            return Err(unauthorized(
                "cf-sim does not model UAA's own tokens as JWT bearer assertions (resolveOriginProvider, \
                 buildInternalUaaIdpConfig)",
            ));
        }
        return Err(unauthorized(format!("Unable to map issuer, {issuer} , to a single registered provider")));
    };
    // ChainedSignatureVerifier: every key of the provider, each under the token's kid; nimbus's
    // DefaultJWTClaimsVerifier then rejects a token more than 60 s past its exp or before its nbf, all as one
    // "Could not verify token signature." (JwtTokenSignedByThisUAA.checkSignature).
    let alg = jwt.header.get("alg").and_then(Value::as_str).unwrap_or("none");
    let signed =
        provider.issuer.keys.iter().any(|key| key_matches(key, alg, None) && signature_verifies(key, alg, &jwt));
    let exp = jwt.claims.get("exp").and_then(Value::as_u64);
    let nbf = jwt.claims.get("nbf").and_then(Value::as_u64);
    let in_time =
        exp.is_none_or(|exp| exp + CLOCK_SKEW_SECS > now) && nbf.is_none_or(|nbf| nbf < now + CLOCK_SKEW_SECS);
    if !(signed && in_time) {
        return Err(invalid_token("Could not verify token signature."));
    }
    // checkAudience(relyingPartyId), then checkExpiry() without skew.
    if !jwt.claims.contains_key("aud") {
        return Err(invalid_token("The token does not bear an AUD claim."));
    }
    if !jwt.audiences().contains(&provider.relying_party_id) {
        return Err(invalid_token(format!(
            "Some parties were not in the token audience: {}",
            provider.relying_party_id
        )));
    }
    if exp.is_none_or(|exp| now > exp) {
        return Err(invalid_token("Token does not bear a valid EXP claim."));
    }
    let claim = provider.user_name_claim.as_deref().unwrap_or("sub");
    match user_name(&jwt, claim)? {
        Some(name) => Ok((provider, name)),
        None => Err(unauthorized("Unable to map claim to a username")),
    }
}

/// Whether nimbus parses the token: a string `alg` in the header (`Header.parse`), and the registered claims of
/// their types (`JWTClaimsSet.parse`): `iss`, `jti` strings, `sub` a string (or a number, which nimbus 9 reads
/// as one), `aud` a string or a list of strings, `exp`, `nbf`, `iat` numbers; each may be null. So the user name
/// claim may be a list only when it is another claim than `sub`.
fn nimbus_parses(jwt: &ParsedJwt) -> bool {
    let claim = |name: &str| jwt.claims.get(name).unwrap_or(&Value::Null);
    let string = |name: &str| matches!(claim(name), Value::Null | Value::String(_));
    let number = |name: &str| matches!(claim(name), Value::Null | Value::Number(_));
    let audience = match claim("aud") {
        Value::Null | Value::String(_) => true,
        Value::Array(list) => list.iter().all(Value::is_string),
        _ => false,
    };
    jwt.header.get("alg").is_some_and(Value::is_string)
        && ["iss", "jti"].into_iter().all(string)
        && (string("sub") || claim("sub").is_number())
        && ["exp", "nbf", "iat"].into_iter().all(number)
        && audience
}

/// `getMappedClaim`: a string, or a list holding one string; another list or type is a `BadCredentialsException`.
fn user_name(jwt: &ParsedJwt, claim: &str) -> Result<Option<String>, Refusal> {
    match jwt.claims.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Ok(Some(name.clone()).filter(|n| !n.trim().is_empty())),
        Some(Value::Array(values)) => match values.iter().filter_map(Value::as_str).collect::<Vec<_>>()[..] {
            [] => Ok(None),
            [name] => Ok(Some(name.to_owned()).filter(|n| !n.trim().is_empty())),
            _ => Err(bad_credentials("Claim mapping for user_name attribute is ambiguous")),
        },
        Some(_) => Err(bad_credentials(format!(
            "External token attribute {claim} cannot be mapped to user attribute user_name"
        ))),
    }
}

/// A user of an identity provider other than UAA's own.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub origin: String,
    pub user: User,
}

/// The users of the OIDC providers: pre-created ones and the shadow users added at login.
#[derive(Debug, Default)]
pub struct IdpUsers(Mutex<Vec<IdpUser>>);

impl IdpUsers {
    /// The users of `ORIGIN:NAME` flags.
    pub fn from_flags(flags: &[String]) -> anyhow::Result<IdpUsers> {
        let users = flags
            .iter()
            .map(|flag| {
                let (origin, name) = crate::config::split_pair(flag, ':', "--oidc-user")?;
                Ok(IdpUser { origin: origin.to_owned(), user: new_user(origin, name) })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(IdpUsers(Mutex::new(users)))
    }

    /// The user `name` of `origin`; when there is none, a new shadow user if `add_shadow_user`, else UAA's
    /// `AccountNotPreCreatedException`.
    pub fn login(&self, origin: &str, name: &str, add_shadow_user: bool) -> Result<User, Refusal> {
        let mut users = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(found) = users.iter().find(|u| u.origin == origin && u.user.name == name) {
            return Ok(found.user.clone());
        }
        if !add_shadow_user {
            return Err(unauthorized(
                "The user account must be pre-created. Please contact your system administrator.",
            ));
        }
        let user = new_user(origin, name);
        users.push(IdpUser { origin: origin.to_owned(), user: user.clone() });
        Ok(user)
    }

    /// Every user, pre-created or shadow.
    pub fn all(&self) -> Vec<IdpUser> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// A user with UAA's generated email for a name without one (`generateEmailIfNullOrEmpty`).
fn new_user(origin: &str, name: &str) -> User {
    let email = if name.contains('@') { name.to_owned() } else { format!("{name}@user.from.{origin}.cf") };
    User { guid: new_guid(), name: name.to_owned(), email }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::clock::unix_seconds;
    use crate::tokens::AssertionIssuer;

    const ISSUER: &str = "https://ci.example.com";
    const RP: &str = "cf-deploy";

    fn provider(ci: &AssertionIssuer, claim: Option<&str>) -> OidcProvider {
        OidcProvider {
            origin: "concourse".into(),
            relying_party_id: RP.into(),
            user_name_claim: claim.map(str::to_owned),
            issuer: ci.trusted(),
        }
    }

    fn check(ci: &AssertionIssuer, token: &str) -> Result<String, Refusal> {
        let providers = [provider(ci, None)];
        authenticate(token, &providers, UAA_TOKEN_ENDPOINT, unix_seconds())
            .map(|(p, name)| format!("{}:{name}", p.origin))
    }

    /// The token endpoint of the UAA the tests' assertions are sent to.
    const UAA_TOKEN_ENDPOINT: &str = "https://uaa.example.com/oauth/token";

    fn refused(error: &'static str, description: &str) -> Result<String, Refusal> {
        Err(Refusal { error, description: description.into() })
    }

    #[test]
    fn a_concourse_idtoken_for_the_relying_party_logs_in_its_subject() {
        let ci = AssertionIssuer::generate(ISSUER);
        assert_eq!(check(&ci, &ci.idtoken("main", "shop", RP, 600)), Ok("concourse:main/shop".into()));
        // Without a jti as well (IdTokenValidation never asks for one), and with the audience among others.
        let mut claims = json!({"iss": ISSUER, "sub": "main/shop", "aud": ["other", RP], "exp": unix_seconds() + 60});
        assert_eq!(check(&ci, &ci.sign(&claims)), Ok("concourse:main/shop".into()));
        claims["sub"] = json!(["main/shop"]);
        assert_eq!(check(&ci, &ci.sign(&claims)), refused("invalid_token", "Invalid token"), "nimbus wants a string");
    }

    #[test]
    fn the_issuer_picks_the_provider() {
        let ci = AssertionIssuer::generate(ISSUER);
        let rogue = AssertionIssuer::generate("https://rogue.example.com");
        assert_eq!(
            check(&ci, &rogue.idtoken("main", "shop", RP, 600)),
            refused(
                "unauthorized",
                "Unable to map issuer, https://rogue.example.com , to a single registered provider"
            )
        );
        let no_iss = ci.sign(&json!({"sub": "main/shop", "aud": RP, "exp": unix_seconds() + 60}));
        assert_eq!(check(&ci, &no_iss), refused("unauthorized", "Issuer is missing in id_token"));
        assert_eq!(check(&ci, ""), refused("unauthorized", "Unable to decode expected id_token"));
        // UAA's own tokens: without an origin unmapped, with one not modelled (UAA checks them with its keys).
        let own = AssertionIssuer::generate(UAA_TOKEN_ENDPOINT);
        let claims = json!({"iss": UAA_TOKEN_ENDPOINT, "sub": "u", "aud": RP, "exp": unix_seconds() + 60});
        let unmapped = format!("Unable to map issuer, {UAA_TOKEN_ENDPOINT} , to a single registered provider");
        assert_eq!(check(&ci, &own.sign(&claims)), refused("unauthorized", &unmapped));
        let mut with_origin = claims.clone();
        with_origin["origin"] = json!("uaa");
        let refusal = check(&ci, &own.sign(&with_origin)).unwrap_err();
        assert!(refusal.description.starts_with("cf-sim does not model UAA's own tokens"), "{refusal:?}");
    }

    /// JwtHelper.decode: what nimbus cannot parse is an InvalidTokenException, before the issuer is looked at.
    #[test]
    fn a_token_nimbus_cannot_parse_is_an_invalid_token() {
        let ci = AssertionIssuer::generate(ISSUER);
        assert_eq!(check(&ci, "not-a-jwt"), refused("invalid_token", "Invalid token"));
        let exp = unix_seconds() + 60;
        for claims in [
            json!({"iss": ISSUER, "sub": "main/shop", "aud": 7, "exp": exp}),
            json!({"iss": ISSUER, "sub": "main/shop", "aud": [RP, 7], "exp": exp}),
            json!({"iss": ISSUER, "sub": "main/shop", "aud": RP, "exp": "tomorrow"}),
            json!({"iss": 1, "sub": "main/shop", "aud": RP, "exp": exp}),
            json!({"iss": ISSUER, "sub": {"team": "main"}, "aud": RP, "exp": exp}),
        ] {
            assert_eq!(check(&ci, &ci.sign(&claims)), refused("invalid_token", "Invalid token"), "{claims}");
        }
        let good = ci.idtoken("main", "shop", RP, 600);
        let rest = good.split_once('.').unwrap().1;
        // `{"typ":"JWT"}`: no alg.
        assert_eq!(check(&ci, &format!("eyJ0eXAiOiJKV1QifQ.{rest}")), refused("invalid_token", "Invalid token"));
    }

    #[test]
    fn the_signature_must_verify_with_the_providers_keys() {
        let ci = AssertionIssuer::generate(ISSUER);
        // Same issuer name, another key: an impostor.
        let impostor = AssertionIssuer::generate(ISSUER);
        let signature = "Could not verify token signature.";
        assert_eq!(check(&ci, &impostor.idtoken("main", "shop", RP, 600)), refused("invalid_token", signature));
        let genuine = ci.idtoken("main", "shop", RP, 600);
        let other = ci.idtoken("main", "other", RP, 600);
        let parts: Vec<&str> = genuine.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], other.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(check(&ci, &tampered), refused("invalid_token", signature));
        let unsigned = format!("{UNSIGNED_HEADER}.{}.", parts[1]);
        assert_eq!(check(&ci, &unsigned), refused("invalid_token", signature));
    }

    /// `{"alg":"none"}`, base64url.
    const UNSIGNED_HEADER: &str = "eyJhbGciOiJub25lIn0";

    #[test]
    fn expiry_beyond_the_clock_skew_fails_the_signature_and_within_it_the_exp_check() {
        let ci = AssertionIssuer::generate(ISSUER);
        assert_eq!(
            check(&ci, &ci.idtoken("main", "shop", RP, -120)),
            refused("invalid_token", "Could not verify token signature.")
        );
        assert_eq!(
            check(&ci, &ci.idtoken("main", "shop", RP, -30)),
            refused("invalid_token", "Token does not bear a valid EXP claim.")
        );
        let no_exp = ci.sign(&json!({"iss": ISSUER, "sub": "main/shop", "aud": RP}));
        assert_eq!(check(&ci, &no_exp), refused("invalid_token", "Token does not bear a valid EXP claim."));
        let not_yet = ci.sign(
            &json!({"iss": ISSUER, "sub": "s", "aud": RP, "exp": unix_seconds() + 900, "nbf": unix_seconds() + 300}),
        );
        assert_eq!(check(&ci, &not_yet), refused("invalid_token", "Could not verify token signature."));
    }

    #[test]
    fn the_audience_must_contain_the_relying_party_id() {
        let ci = AssertionIssuer::generate(ISSUER);
        assert_eq!(
            check(&ci, &ci.idtoken("main", "shop", "https://uaa.example.com/oauth/token", 600)),
            refused("invalid_token", "Some parties were not in the token audience: cf-deploy")
        );
        // Concourse's default: no audience at all.
        let no_aud = ci.sign(&json!({"iss": ISSUER, "sub": "main/shop", "exp": unix_seconds() + 60}));
        assert_eq!(check(&ci, &no_aud), refused("invalid_token", "The token does not bear an AUD claim."));
    }

    #[test]
    fn the_user_name_comes_from_the_mapped_claim() {
        let ci = AssertionIssuer::generate(ISSUER);
        let providers = [provider(&ci, Some("pipeline"))];
        let login =
            |token: &str| authenticate(token, &providers, UAA_TOKEN_ENDPOINT, unix_seconds()).map(|(_, name)| name);
        assert_eq!(login(&ci.idtoken("main", "shop", RP, 600)), Ok("shop".into()));
        let claims = |pipeline: Value| {
            ci.sign(&json!({"iss": ISSUER, "sub": "s", "aud": RP, "exp": unix_seconds() + 60, "pipeline": pipeline}))
        };
        assert_eq!(login(&claims(Value::Null)), Err(unauthorized("Unable to map claim to a username")));
        assert_eq!(login(&claims(json!(["shop"]))), Ok("shop".into()), "a list of one");
        assert_eq!(
            login(&claims(json!(["a", "b"]))),
            Err(bad_credentials("Claim mapping for user_name attribute is ambiguous"))
        );
        assert_eq!(
            login(&claims(json!(7))),
            Err(bad_credentials("External token attribute pipeline cannot be mapped to user attribute user_name"))
        );
    }

    #[test]
    fn unknown_users_are_added_as_shadow_users_unless_the_provider_says_not() {
        let users = IdpUsers::from_flags(&["concourse:main/shop".into()]).unwrap();
        let known = users.login("concourse", "main/shop", false).unwrap();
        assert_eq!(known.email, "main/shop@user.from.concourse.cf");
        assert_eq!(users.login("concourse", "main/shop", true).unwrap().guid, known.guid);
        assert_eq!(
            users.login("concourse", "main/other", false).unwrap_err(),
            unauthorized("The user account must be pre-created. Please contact your system administrator.")
        );
        // Same name, another origin: another user.
        assert!(users.login("other-idp", "main/shop", false).is_err());
        let shadow = users.login("concourse", "main/other", true).unwrap();
        assert_eq!(users.login("concourse", "main/other", false).unwrap().guid, shadow.guid);
        assert_eq!(users.all().len(), 2);
    }
}
