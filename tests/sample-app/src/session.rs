//! Per-user visit counters behind `/session`, kept in process memory or in a
//! bound Redis.
//!
//! This is what the blue-green tests use to show that session state survives
//! a swap only when it lives outside the app instance: a memory counter starts
//! over on the new version, a Redis counter carries on.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hyper::HeaderMap;

use crate::redis::{RedisClient, RedisError};

/// The cookie that carries a browser's session id.
pub const COOKIE_NAME: &str = "sid";
/// The header a load generator can name its user with instead of a cookie.
pub const USER_HEADER: &str = "x-user";
const MAX_USER_LEN: usize = 256;

/// Where counters are kept.
pub enum SessionStore {
    Memory(Mutex<HashMap<String, i64>>),
    Redis(RedisClient),
}

impl SessionStore {
    pub fn memory() -> SessionStore {
        SessionStore::Memory(Mutex::new(HashMap::new()))
    }

    /// The name `/session` reports the store under.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionStore::Memory(_) => "memory",
            SessionStore::Redis(_) => "redis",
        }
    }

    /// Adds one to the user's counter and returns the new count. With Redis
    /// the key is `session:<user>`.
    pub async fn increment(&self, user: &str) -> Result<i64, RedisError> {
        match self {
            SessionStore::Memory(counts) => {
                let mut counts = counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let count = counts.entry(user.to_string()).or_insert(0);
                *count += 1;
                Ok(*count)
            }
            SessionStore::Redis(redis) => redis.incr(&format!("session:{user}")).await,
        }
    }
}

/// Who a request is from.
#[derive(Debug, PartialEq, Eq)]
pub enum User {
    /// Named by the request's `sid` cookie or X-User header.
    Known(String),
    /// A first visit: the app made up this session id and must set the cookie.
    New(String),
}

impl User {
    pub fn name(&self) -> &str {
        match self {
            User::Known(name) | User::New(name) => name,
        }
    }
}

/// Picks the user from the `sid` cookie, else the X-User header, else issues
/// a new session id. A cookie value the app could not have issued is ignored
/// like a missing one; an unusable X-User header is an error for the caller.
pub fn identify(headers: &HeaderMap) -> Result<User, String> {
    if let Some(sid) = sid_cookie(headers) {
        return Ok(User::Known(sid));
    }
    match headers.get(USER_HEADER) {
        Some(value) => {
            let name = value
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|name| !name.is_empty() && name.len() <= MAX_USER_LEN)
                .ok_or_else(|| format!("{USER_HEADER} must be 1 to {MAX_USER_LEN} visible ASCII characters"))?;
            Ok(User::Known(name.to_string()))
        }
        None => Ok(User::New(new_session_id())),
    }
}

/// The `Set-Cookie` value that hands a new session id to the client.
pub fn set_cookie(sid: &str) -> String {
    format!("{COOKIE_NAME}={sid}; Path=/; HttpOnly; SameSite=Lax")
}

fn sid_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|cookie| cookie.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|sid| is_session_id(sid))
        .map(str::to_string)
}

fn is_session_id(sid: &str) -> bool {
    (1..=MAX_USER_LEN).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A 128-bit hex id that is unique across instances and restarts. It only
/// has to tell test users apart, not resist guessing, so std's randomly
/// keyed hasher is the source rather than a random-number crate.
fn new_session_id() -> String {
    static ISSUED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let issued = ISSUED.fetch_add(1, Ordering::Relaxed);
    let part = || RandomState::new().hash_one((nanos, issued, std::process::id()));
    format!("{:016x}{:016x}", part(), part())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_sid_cookie_names_the_user() {
        let headers = headers(&[("cookie", "theme=dark; sid=abc123"), ("x-user", "bob")]);
        assert_eq!(identify(&headers).unwrap(), User::Known("abc123".into()));
    }

    #[test]
    fn the_user_header_names_the_user_when_there_is_no_cookie() {
        let headers = headers(&[("x-user", "bob")]);
        assert_eq!(identify(&headers).unwrap(), User::Known("bob".into()));
    }

    #[test]
    fn a_first_visit_gets_a_fresh_session_id() {
        let User::New(first) = identify(&HeaderMap::new()).unwrap() else {
            panic!("expected a new user");
        };
        let User::New(second) = identify(&HeaderMap::new()).unwrap() else {
            panic!("expected a new user");
        };
        assert_eq!(first.len(), 32);
        assert!(is_session_id(&first));
        assert_ne!(first, second);
    }

    #[test]
    fn a_forged_cookie_is_ignored() {
        let headers = headers(&[("cookie", "sid=../../etc")]);
        assert!(matches!(identify(&headers).unwrap(), User::New(_)));
    }

    #[test]
    fn an_empty_user_header_is_refused() {
        assert!(identify(&headers(&[("x-user", " ")])).is_err());
    }

    #[tokio::test]
    async fn memory_counts_each_user_separately() {
        let store = SessionStore::memory();
        assert_eq!(store.increment("a").await.unwrap(), 1);
        assert_eq!(store.increment("a").await.unwrap(), 2);
        assert_eq!(store.increment("b").await.unwrap(), 1);
        assert_eq!(store.kind(), "memory");
    }
}
