//! UAA's tokens: HS256 JWT access tokens with UAA's claims, opaque refresh tokens, verification as CC does it,
//! and a record of every token issued so tests can scan output for leaks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::clock::{new_guid, unix_seconds};

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
