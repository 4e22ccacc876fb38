//! What the client needs to know, independent of how the pipeline's `source` is spelled.
//!
//! The config module builds a [`Settings`] from `source`; tests build one directly. Secrets in here are
//! registered with [`crate::redact`] when the client is created, and `Debug` never prints them.

use std::fmt;
use std::time::Duration;

use crate::cf::retry::RetryPolicy;

/// How to log in to UAA.
#[derive(Clone)]
pub enum Credentials {
    /// A user, with the password grant through the `cf` client (empty secret), as the CLI does.
    Password { username: String, password: String },
    /// A UAA client with the `client_credentials` grant.
    Client { id: String, secret: String },
    /// A UAA client with the `client_credentials` grant that authenticates with a JWT another issuer signed
    /// (RFC 7523 client assertion, e.g. Concourse's `idtoken`) instead of a secret.
    ClientAssertion { id: String, assertion: String },
    /// A user of an OIDC identity provider UAA trusts, logged in with the JWT bearer grant: `assertion` is a JWT that
    /// provider signed (e.g. Concourse's `idtoken`), asked for by the client `client_id` with its secret.
    UserAssertion { client_id: String, client_secret: String, assertion: String },
}

impl Credentials {
    /// Who is logging in, for messages: `user 'admin'` or `client 'deployer'`. Never the secret.
    pub(crate) fn who(&self) -> String {
        match self {
            Credentials::Password { username, .. } => format!("user '{username}'"),
            Credentials::Client { id, .. } | Credentials::ClientAssertion { id, .. } => format!("client '{id}'"),
            Credentials::UserAssertion { client_id, .. } => format!("the user of the assertion (client '{client_id}')"),
        }
    }

    fn secrets(&self) -> Vec<&str> {
        match self {
            Credentials::Password { password, .. } => vec![password],
            Credentials::Client { secret, .. } => vec![secret],
            Credentials::ClientAssertion { assertion, .. } => vec![assertion],
            Credentials::UserAssertion { client_secret, assertion, .. } => vec![client_secret, assertion],
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Password { username, .. } => {
                f.debug_struct("Password").field("username", username).field("password", &"***").finish()
            }
            Credentials::Client { id, .. } => f.debug_struct("Client").field("id", id).field("secret", &"***").finish(),
            Credentials::ClientAssertion { id, .. } => {
                f.debug_struct("ClientAssertion").field("id", id).field("assertion", &"***").finish()
            }
            Credentials::UserAssertion { client_id, .. } => f
                .debug_struct("UserAssertion")
                .field("client_id", client_id)
                .field("client_secret", &"***")
                .field("assertion", &"***")
                .finish(),
        }
    }
}

/// Time limits for single requests. Waits for CF state (staging, starting, jobs) take their own deadline.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// TCP connect plus TLS handshake.
    pub connect: Duration,
    /// A whole ordinary API request, response body included.
    pub request: Duration,
    /// Streaming uploads and downloads: the longest stretch without a byte moving.
    pub idle: Duration,
    /// Default deadline for async jobs (`DELETE` of apps and routes, apply_manifest, droplet upload).
    pub job: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            request: Duration::from_secs(120),
            idle: Duration::from_secs(120),
            job: Duration::from_secs(600),
        }
    }
}

/// HTTP(S) proxies. Concourse passes them to resource containers as lowercase `http_proxy`, `https_proxy` and
/// `no_proxy`; [`ProxySettings::from_env`] reads those (and the uppercase forms as a fallback).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    /// Comma-separated hosts, domains (`.example.com` or `example.com`), IPs or CIDRs that bypass the proxy; `*`
    /// bypasses it for everything.
    pub no_proxy: Option<String>,
}

impl ProxySettings {
    /// No proxy at all, whatever the environment says.
    pub fn none() -> Self {
        ProxySettings::default()
    }

    /// Reads `http_proxy`, `https_proxy` and `no_proxy` from the process environment.
    pub(crate) fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env) over any variable lookup (so it can be tested without touching the
    /// process environment). Lowercase wins over uppercase; empty values count as unset.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |lower: &str, upper: &str| {
            lookup(lower).filter(|v| !v.trim().is_empty()).or_else(|| lookup(upper).filter(|v| !v.trim().is_empty()))
        };
        ProxySettings {
            http_proxy: get("http_proxy", "HTTP_PROXY"),
            https_proxy: get("https_proxy", "HTTPS_PROXY"),
            no_proxy: get("no_proxy", "NO_PROXY"),
        }
    }
}

/// Everything the client needs. Build with [`Settings::new`] and adjust the public fields.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The CC API URL, e.g. `https://api.sys.example.com`.
    pub api: String,
    pub credentials: Credentials,
    /// Extra trusted CA certificates (PEM, one or more), on top of the system trust store.
    pub ca_cert: Option<String>,
    /// Disables TLS certificate verification (prints one warning when the client is built).
    pub skip_cert_check: bool,
    /// Prints every API request (method, path, status, time) to the build log, like `CF_TRACE`.
    pub verbose: bool,
    pub timeouts: Timeouts,
    pub retry: RetryPolicy,
    pub proxy: ProxySettings,
}

impl Settings {
    /// Settings with defaults: system trust store only, verification on, proxies from the environment.
    pub fn new(api: impl Into<String>, credentials: Credentials) -> Self {
        Settings {
            api: api.into(),
            credentials,
            ca_cert: None,
            skip_cert_check: false,
            verbose: false,
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            proxy: ProxySettings::from_env(),
        }
    }

    pub(crate) fn register_secrets(&self) {
        for secret in self.credentials.secrets() {
            crate::redact::register(secret);
        }
    }

    /// Applies the operator knobs from the process environment (see [`Settings::apply_knobs`]).
    pub(crate) fn apply_env_knobs(&mut self) -> Result<(), String> {
        self.apply_knobs(|name| std::env::var(name).ok())
    }

    /// Operator knobs, read from the environment rather than the pipeline (Concourse passes no environment to
    /// resources, so a pipeline cannot change them):
    ///
    /// - `CF_BG_REQUEST_TIMEOUT`: the time limit of one API request (default 120s);
    /// - `CF_BG_RETRY_DELAY`: the wait before the first retry, doubled for each further one (default 500ms).
    ///
    /// Values are durations like `1s` or `250ms`; empty means unset. The retry budget itself never changes. The
    /// proof suite makes them small to inject request timeouts and exhaust retries in seconds.
    pub(crate) fn apply_knobs(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let read = |name: &str| -> Result<Option<Duration>, String> {
            match lookup(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(text) => match humantime::parse_duration(text.trim()) {
                    Ok(d) if !d.is_zero() => Ok(Some(d)),
                    _ => Err(format!("{name}='{text}' is not a positive duration (e.g. 5s, 250ms)")),
                },
            }
        };
        if let Some(timeout) = read("CF_BG_REQUEST_TIMEOUT")? {
            self.timeouts.request = timeout;
        }
        if let Some(delay) = read("CF_BG_RETRY_DELAY")? {
            self.retry.base_delay = delay;
            self.retry.max_delay = self.retry.max_delay.min(delay.saturating_mul(8)).max(delay);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_settings_prefer_lowercase_and_ignore_empty() {
        let env = |name: &str| match name {
            "http_proxy" => Some("http://lower:3128".to_owned()),
            "HTTP_PROXY" => Some("http://upper:3128".to_owned()),
            "https_proxy" => Some(String::new()),
            "HTTPS_PROXY" => Some("http://secure:3128".to_owned()),
            "no_proxy" => Some("localhost,.internal".to_owned()),
            _ => None,
        };
        let proxy = ProxySettings::from_lookup(env);
        assert_eq!(proxy.http_proxy.as_deref(), Some("http://lower:3128"));
        assert_eq!(proxy.https_proxy.as_deref(), Some("http://secure:3128"));
        assert_eq!(proxy.no_proxy.as_deref(), Some("localhost,.internal"));
        assert_eq!(ProxySettings::from_lookup(|_| None), ProxySettings::none());
    }

    #[test]
    fn env_knobs_shorten_timeouts_and_retry_waits_only_when_set() {
        let creds = Credentials::Client { id: "c".into(), secret: "s".into() };
        let mut settings = Settings::new("https://api.example.org", creds);
        settings.apply_knobs(|_| None).unwrap();
        assert_eq!(settings.timeouts.request, Duration::from_secs(120));
        assert_eq!(settings.retry, RetryPolicy::default());

        let env = |name: &str| match name {
            "CF_BG_REQUEST_TIMEOUT" => Some("1s".to_owned()),
            "CF_BG_RETRY_DELAY" => Some("20ms".to_owned()),
            _ => None,
        };
        settings.apply_knobs(env).unwrap();
        assert_eq!(settings.timeouts.request, Duration::from_secs(1));
        assert_eq!(settings.retry.base_delay, Duration::from_millis(20));
        assert_eq!(settings.retry.max_delay, Duration::from_millis(160));
        assert_eq!(settings.retry.max_attempts, RetryPolicy::default().max_attempts, "the budget never changes");

        let err = settings.apply_knobs(|_| Some("soon".to_owned())).unwrap_err();
        assert_eq!(err, "CF_BG_REQUEST_TIMEOUT='soon' is not a positive duration (e.g. 5s, 250ms)");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let creds = Credentials::Password { username: "admin".into(), password: "hunter2".into() };
        let shown = format!("{:?}", Settings::new("https://api.example.org", creds.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(creds.who(), "user 'admin'");
        let client = Credentials::Client { id: "deployer".into(), secret: "s3cret".into() };
        assert!(!format!("{client:?}").contains("s3cret"));
        assert_eq!(client.who(), "client 'deployer'");
    }
}
