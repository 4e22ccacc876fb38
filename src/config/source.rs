//! `source`: where the app lives and how to log in. Shared by check, in and out.

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::Value;

use super::strict::parse_section;
pub(crate) use crate::cf::Credentials;
use crate::redact;

/// The names of the apps a deploy juggles (see the deploy design: production, candidate, previous, failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppNames {
    pub(crate) production: String,
    green_suffix: String,
    previous_suffix: String,
    failed_suffix: String,
}

impl AppNames {
    pub(crate) fn green(&self) -> String {
        format!("{}{}", self.production, self.green_suffix)
    }
    pub(crate) fn previous(&self) -> String {
        format!("{}{}", self.production, self.previous_suffix)
    }
    /// The name of the `nth` kept version: `<app>-previous` for the 1st, `<app>-previous-N` for the Nth.
    pub(crate) fn kept(&self, nth: u32) -> String {
        match nth {
            0 | 1 => self.previous(),
            n => format!("{}-{n}", self.previous()),
        }
    }
    /// Fails when the name of the oldest of `keep` kept versions is longer than Cloud Foundry takes: its rename in
    /// the housekeeping, after the swap, would be refused.
    pub(crate) fn check_kept(&self, keep: u32) -> Result<()> {
        let oldest = self.kept(keep);
        if oldest.chars().count() > MAX_APP_NAME {
            bail!(
                "params.keep_previous: {keep} makes app names up to {} characters ({}…); Cloud Foundry allows \
                 {MAX_APP_NAME}",
                oldest.chars().count(),
                oldest.chars().take(24).collect::<String>()
            );
        }
        Ok(())
    }
    /// Which kept version `name` names (`1` for `<app>-previous`), if any up to `most`.
    pub(crate) fn kept_slot(&self, name: &str, most: u32) -> Option<u32> {
        (1..=most).find(|n| self.kept(*n).eq_ignore_ascii_case(name))
    }
    pub(crate) fn failed(&self) -> String {
        format!("{}{}", self.production, self.failed_suffix)
    }
}

/// A validated `source`.
#[derive(Debug, Clone)]
pub struct Source {
    /// The Cloud Controller URL, without a trailing slash.
    pub(crate) api: String,
    pub(crate) credentials: Credentials,
    pub(crate) organization: String,
    pub(crate) space: String,
    pub(crate) names: AppNames,
    pub(crate) skip_cert_check: bool,
    pub(crate) ca_cert: Option<String>,
    pub(crate) verbose: bool,
    /// `host:port` that all HTTP traffic for app routes is sent to instead of resolving route hostnames.
    pub(crate) router_address: Option<String>,
    /// `https` (default) or `http`: how verification and probes reach app routes.
    pub(crate) route_scheme: RouteScheme,
}

/// The scheme app routes are reached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RouteScheme {
    #[default]
    Https,
    Http,
}

impl RouteScheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RouteScheme::Https => "https",
            RouteScheme::Http => "http",
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSource {
    api: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    user_assertion: Option<String>,
    organization: Option<String>,
    space: Option<String>,
    app: Option<String>,
    #[serde(default)]
    skip_cert_check: bool,
    ca_cert: Option<String>,
    #[serde(default)]
    verbose: bool,
    router_address: Option<String>,
    route_scheme: Option<RouteScheme>,
    green_suffix: Option<String>,
    previous_suffix: Option<String>,
    failed_suffix: Option<String>,
}

impl Source {
    /// Parses and validates `source`, reporting every missing or invalid key at once. Secrets are registered
    /// for redaction before anything else can print them.
    pub fn parse(value: Value) -> Result<Source> {
        register_secrets_in(&value);
        let raw: RawSource = parse_section("source", value)?;
        let mut missing = Vec::new();
        let mut problems = Vec::new();

        let mut required = |name: &str, value: Option<String>| match value.filter(|v| !v.trim().is_empty()) {
            Some(v) => v,
            None => {
                missing.push(name.to_owned());
                String::new()
            }
        };
        let api = required("api", raw.api);
        let organization = required("organization", raw.organization);
        let space = required("space", raw.space);
        let app = required("app", raw.app);

        let credentials = credentials(
            UserOrClient {
                username: raw.username,
                password: raw.password,
                client_id: raw.client_id,
                client_secret: raw.client_secret,
                client_assertion: raw.client_assertion,
                user_assertion: raw.user_assertion,
            },
            &mut missing,
            &mut problems,
        );

        if !api.is_empty() {
            match url::Url::parse(&api) {
                Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                    if let Some(password) = url.password() {
                        redact::register(password);
                    }
                    problems.push(
                        "source.api must not contain a user name or password; give source.username and source.password (or a client) instead"
                            .into(),
                    );
                }
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                // It may carry credentials the parser could not make out: not echoed.
                _ if api.contains('@') => {
                    problems.push("source.api is not an http(s) URL (e.g. https://api.sys.example.com)".into())
                }
                _ => problems
                    .push(format!("source.api '{api}' is not an http(s) URL (e.g. https://api.sys.example.com)")),
            }
        }
        if let Some(pem) = &raw.ca_cert
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            problems.push("source.ca_cert is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)".into());
        }
        if let Some(address) = &raw.router_address {
            check_host_port(address, &mut problems);
        }
        let names = AppNames {
            production: app,
            green_suffix: raw.green_suffix.unwrap_or_else(|| "-green".into()),
            previous_suffix: raw.previous_suffix.unwrap_or_else(|| "-previous".into()),
            failed_suffix: raw.failed_suffix.unwrap_or_else(|| "-failed".into()),
        };
        check_suffixes(&names, &mut problems);

        if !missing.is_empty() {
            problems.insert(0, format!("source is missing required keys: {}", missing.join(", ")));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(Source {
            api: api.trim_end_matches('/').to_owned(),
            credentials: credentials.expect("validated above"),
            organization,
            space,
            names,
            skip_cert_check: raw.skip_cert_check,
            ca_cert: raw.ca_cert,
            verbose: raw.verbose,
            router_address: raw.router_address,
            route_scheme: raw.route_scheme.unwrap_or_default(),
        })
    }
}

impl Source {
    /// How the CF client should connect: the API, credentials and TLS settings of this source, and the
    /// operator knobs of the environment ([`crate::cf::Settings::apply_knobs`]).
    pub(crate) fn client_settings(&self) -> Result<crate::cf::Settings> {
        let mut settings = crate::cf::Settings::new(self.api.clone(), self.credentials.clone());
        settings.ca_cert = self.ca_cert.clone();
        settings.skip_cert_check = self.skip_cert_check;
        settings.verbose = self.verbose;
        settings.apply_env_knobs().map_err(anyhow::Error::msg)?;
        Ok(settings)
    }
}

/// Registers every secret in the raw section before typed parsing, so even a type error cannot echo one.
fn register_secrets_in(value: &Value) {
    for key in ["password", "client_secret", "client_assertion", "user_assertion"] {
        if let Some(secret) = value.get(key).and_then(Value::as_str) {
            redact::register(secret);
        }
    }
}

/// The credential keys of `source`, before it is known which kind of login they make.
struct UserOrClient {
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    user_assertion: Option<String>,
}

fn credentials(keys: UserOrClient, missing: &mut Vec<String>, problems: &mut Vec<String>) -> Option<Credentials> {
    let UserOrClient { username, password, client_id, client_secret, client_assertion, user_assertion } = keys;
    if let Some(assertion) = user_assertion {
        let keys =
            UserOrClient { username, password, client_id, client_secret, client_assertion, user_assertion: None };
        return user_assertion_credentials(keys, assertion, missing, problems);
    }
    let user_pair = username.is_some() || password.is_some();
    let client = client_id.is_some() || client_secret.is_some() || client_assertion.is_some();
    match (user_pair, client) {
        (true, true) if client_assertion.is_some() => {
            problems.push(
                "source.client_assertion authenticates a UAA client, not a user; remove source.username and source.password"
                    .into(),
            );
            None
        }
        (true, true) => {
            problems
                .push("source has both username/password and client_id/client_secret; give exactly one pair".into());
            None
        }
        (false, false) => {
            problems.push(
                "source needs credentials: username and password, client_id and client_secret, client_id and client_assertion, or client_id, client_secret and user_assertion"
                    .into(),
            );
            None
        }
        (true, false) => both(("username", username), ("password", password), missing)
            .map(|(username, password)| Credentials::Password { username, password }),
        (false, true) => match client_assertion {
            Some(_) if client_secret.is_some() => {
                problems.push("source has both client_secret and client_assertion; give one of them".into());
                None
            }
            Some(assertion) => {
                if !assertion.trim().is_empty() && crate::cf::auth::AssertionClaims::decode(&assertion).is_none() {
                    problems.push(
                        "source.client_assertion is not a JWT (three base64url parts with JSON claims, as ((idtoken:token)) gives)"
                            .into(),
                    );
                }
                let assertion = Some(assertion.trim().to_owned()).filter(|a| !a.is_empty());
                both(("client_id", client_id), ("client_assertion", assertion), missing)
                    .map(|(id, assertion)| Credentials::ClientAssertion { id, assertion })
            }
            None => both(("client_id", client_id), ("client_secret", client_secret), missing)
                .map(|(id, secret)| Credentials::Client { id, secret }),
        },
    }
}

/// A user of an OIDC identity provider logging in with `assertion` (the JWT bearer grant), asked for by the client
/// of `client_id` and `client_secret`; the other keys of `keys` must be absent.
fn user_assertion_credentials(
    keys: UserOrClient,
    assertion: String,
    missing: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Option<Credentials> {
    let UserOrClient { username, password, client_id, client_secret, client_assertion, .. } = keys;
    if username.is_some() || password.is_some() {
        problems.push(
            "source.user_assertion logs in a user in place of username and password; remove source.username and source.password"
                .into(),
        );
    }
    if client_assertion.is_some() {
        problems.push(
            "source has both user_assertion and client_assertion; the client that asks for the user's token authenticates with client_id and client_secret"
                .into(),
        );
    }
    if !assertion.trim().is_empty() && crate::cf::auth::AssertionClaims::decode(&assertion).is_none() {
        problems.push(
            "source.user_assertion is not a JWT (three base64url parts with JSON claims, as ((idtoken:token)) gives)"
                .into(),
        );
    }
    let mut needed = |key: &str, value: Option<String>| {
        let value = value.filter(|v| !v.trim().is_empty());
        if value.is_none() {
            missing.push(format!("{key} (source.user_assertion is set)"));
        }
        value
    };
    let client_id = needed("client_id", client_id);
    let client_secret = needed("client_secret", client_secret);
    let assertion = Some(assertion.trim().to_owned()).filter(|a| !a.is_empty());
    if assertion.is_none() {
        missing.push("user_assertion (it is empty)".into());
    }
    if !problems.is_empty() {
        return None;
    }
    Some(Credentials::UserAssertion { client_id: client_id?, client_secret: client_secret?, assertion: assertion? })
}

/// The two values of a credential pair; when one is given alone, the other is reported missing.
fn both(
    (first_key, first): (&str, Option<String>),
    (second_key, second): (&str, Option<String>),
    missing: &mut Vec<String>,
) -> Option<(String, String)> {
    match (first, second) {
        (Some(first), Some(second)) => Some((first, second)),
        (None, _) => {
            missing.push(format!("{first_key} (source.{second_key} is set)"));
            None
        }
        (_, None) => {
            missing.push(format!("{second_key} (source.{first_key} is set)"));
            None
        }
    }
}

fn check_host_port(address: &str, problems: &mut Vec<String>) {
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid {
        problems.push(format!("source.router_address '{address}' must be host:port (e.g. 10.0.0.5:443)"));
    }
}

/// The longest app name the Cloud Controller takes (`app/messages/app_create_message.rb`, `app_update_message.rb`:
/// `length: { maximum: 255 }`).
const MAX_APP_NAME: usize = 255;

fn check_suffixes(names: &AppNames, problems: &mut Vec<String>) {
    let longest = [names.green(), names.previous(), names.failed()].into_iter().max_by_key(|n| n.chars().count());
    if let Some(longest) = longest.filter(|n| n.chars().count() > MAX_APP_NAME) {
        problems.push(format!(
            "source.app with its suffixes makes app names up to {} characters ({}…); Cloud Foundry allows {MAX_APP_NAME}",
            longest.chars().count(),
            longest.chars().take(24).collect::<String>()
        ));
    }
    let suffixes = [
        ("green_suffix", &names.green_suffix),
        ("previous_suffix", &names.previous_suffix),
        ("failed_suffix", &names.failed_suffix),
    ];
    for (i, (key, suffix)) in suffixes.iter().enumerate() {
        if suffix.is_empty() {
            problems.push(format!("source.{key} must not be empty"));
        }
        for (other_key, other) in &suffixes[i + 1..] {
            if suffix == other {
                problems.push(format!("source.{key} and source.{other_key} must differ"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({"api": "https://api.example.com/", "username": "ci-user", "password": "pw-not-shown-1",
               "organization": "o", "space": "s", "app": "myapp"})
    }

    #[test]
    fn valid_source_parses_with_defaults() {
        let source = Source::parse(valid()).unwrap();
        assert_eq!(source.api, "https://api.example.com");
        assert_eq!(source.names.green(), "myapp-green");
        assert_eq!(source.names.previous(), "myapp-previous");
        assert_eq!(source.names.failed(), "myapp-failed");
        assert!(!source.skip_cert_check);
    }

    #[test]
    fn credentials_inside_the_api_url_are_refused_without_being_shown() {
        for api in ["https://admin:url-pw-not-shown-9@api.example.com", "https://admin@api.example.com"] {
            let mut source = valid();
            source["api"] = json!(api);
            let err = Source::parse(source).unwrap_err().to_string();
            assert!(err.contains("source.api must not contain a user name or password"), "{err}");
            assert!(!err.contains("url-pw-not-shown-9") && !err.contains("admin"), "{err}");
        }
    }

    #[test]
    fn app_names_with_suffixes_stay_within_the_cloud_controllers_limit() {
        let mut source = valid();
        source["app"] = json!("a".repeat(246));
        assert!(Source::parse(source.clone()).is_ok(), "246 + '-previous' is 255");
        source["app"] = json!("a".repeat(247));
        let err = Source::parse(source).unwrap_err().to_string();
        assert!(err.contains("makes app names up to 256 characters") && err.contains("allows 255"), "{err}");
    }

    #[test]
    fn the_oldest_kept_version_s_name_stays_within_the_cloud_controllers_limit() {
        let mut source = valid();
        source["app"] = json!("a".repeat(244));
        let names = Source::parse(source).unwrap().names;
        assert!(names.check_kept(1).is_ok() && names.check_kept(9).is_ok(), "244 + '-previous-9' is 255");
        let err = names.check_kept(10).unwrap_err().to_string();
        assert!(err.contains("params.keep_previous: 10 makes app names up to 256 characters"), "{err}");
    }

    #[test]
    fn all_missing_keys_reported_at_once() {
        let err = Source::parse(json!({"username": "ci-user", "password": "pw-not-shown-2"})).unwrap_err().to_string();
        assert_eq!(err, "source is missing required keys: api, organization, space, app");
    }

    #[test]
    fn null_source_reports_everything_missing() {
        let err = Source::parse(Value::Null).unwrap_err().to_string();
        assert!(err.starts_with("source is missing required keys: api, organization, space, app"), "{err}");
        assert!(err.contains("source needs credentials"), "{err}");
    }

    #[test]
    fn both_credential_pairs_rejected() {
        let mut source = valid();
        source["client_id"] = json!("c");
        source["client_secret"] = json!("cs-not-shown-3");
        let err = Source::parse(source).unwrap_err().to_string();
        assert!(err.contains("both username/password and client_id/client_secret"), "{err}");
    }

    #[test]
    fn half_pair_names_the_missing_half() {
        let source = json!({"api": "https://a.b", "client_id": "c", "organization": "o", "space": "s", "app": "a"});
        let err = Source::parse(source).unwrap_err().to_string();
        assert_eq!(err, "source is missing required keys: client_secret (source.client_id is set)");
    }

    #[test]
    fn bad_api_url_and_router_address() {
        let mut source = valid();
        source["api"] = json!("api.example.com");
        source["router_address"] = json!("localhost");
        let err = Source::parse(source).unwrap_err().to_string();
        assert!(err.contains("source.api 'api.example.com' is not an http(s) URL"), "{err}");
        assert!(err.contains("source.router_address 'localhost' must be host:port"), "{err}");
    }

    fn assertion() -> String {
        let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
        let claims = r#"{"iss":"https://ci.example.com","sub":"main/deploy","aud":"x","exp":4102444800}"#;
        format!("{}.{}.sig-not-shown-4", b64(r#"{"alg":"ES256"}"#), b64(claims))
    }

    fn client_with_assertion() -> Value {
        json!({"api": "https://api.example.com", "client_id": "deployer", "client_assertion": assertion(),
               "organization": "o", "space": "s", "app": "myapp"})
    }

    #[test]
    fn a_client_assertion_replaces_the_client_secret() {
        let source = Source::parse(client_with_assertion()).unwrap();
        assert!(
            matches!(&source.credentials, Credentials::ClientAssertion { id, assertion: a } if id == "deployer" && *a == assertion())
        );
        let debug = format!("{source:?}");
        assert!(debug.contains("deployer") && !debug.contains("sig-not-shown-4"), "{debug}");
        // A token read from a file keeps its newline; UAA would not parse it with one.
        let mut with_newline = client_with_assertion();
        with_newline["client_assertion"] = json!(format!("{}\n", assertion()));
        let source = Source::parse(with_newline).unwrap();
        assert!(matches!(&source.credentials, Credentials::ClientAssertion { assertion: a, .. } if *a == assertion()));
    }

    #[test]
    fn a_client_assertion_goes_with_a_client_id_and_nothing_else() {
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut source = client_with_assertion();
            change(&mut source);
            let err = Source::parse(source).unwrap_err().to_string();
            assert!(!err.contains("sig-not-shown-4") && !err.contains('\n'), "{err}");
            err
        };
        assert_eq!(
            refused(&|s| s["client_secret"] = json!("cs-not-shown-5")),
            "source has both client_secret and client_assertion; give one of them"
        );
        assert_eq!(
            refused(&|s| s["password"] = json!("pw-not-shown-6")),
            "source.client_assertion authenticates a UAA client, not a user; remove source.username and source.password"
        );
        assert_eq!(
            refused(&|s| {
                s.as_object_mut().unwrap().remove("client_id");
            }),
            "source is missing required keys: client_id (source.client_assertion is set)"
        );
        assert_eq!(
            refused(&|s| s["client_assertion"] = json!("")),
            "source is missing required keys: client_assertion (source.client_id is set)"
        );
        assert_eq!(
            refused(&|s| s["client_assertion"] = json!("opaque-not-shown-7")),
            "source.client_assertion is not a JWT (three base64url parts with JSON claims, as ((idtoken:token)) gives)"
        );
        assert!(!refused(&|s| s["client_assertion"] = json!("opaque-not-shown-7")).contains("opaque-not-shown-7"));
    }

    fn user_with_assertion() -> Value {
        json!({"api": "https://api.example.com", "client_id": "deployer", "client_secret": "cs-not-shown-8",
               "user_assertion": format!("{}\n", assertion()), "organization": "o", "space": "s", "app": "myapp"})
    }

    #[test]
    fn a_user_assertion_is_asked_for_by_a_client_with_its_secret() {
        let source = Source::parse(user_with_assertion()).unwrap();
        assert!(matches!(
            &source.credentials,
            Credentials::UserAssertion { client_id, client_secret, assertion: a }
                if client_id == "deployer" && client_secret == "cs-not-shown-8" && *a == assertion()
        ));
        let debug = format!("{source:?}");
        assert!(
            debug.contains("deployer") && !debug.contains("sig-not-shown-4") && !debug.contains("cs-not"),
            "{debug}"
        );
    }

    #[test]
    fn a_user_assertion_goes_with_a_client_id_and_secret_and_nothing_else() {
        let refused = |change: &dyn Fn(&mut Value)| {
            let mut source = user_with_assertion();
            change(&mut source);
            let err = Source::parse(source).unwrap_err().to_string();
            assert!(!err.contains("sig-not-shown-4") && !err.contains("cs-not-shown") && !err.contains('\n'), "{err}");
            err
        };
        assert_eq!(
            refused(&|s| s["username"] = json!("ci-user")),
            "source.user_assertion logs in a user in place of username and password; remove source.username and \
             source.password"
        );
        assert_eq!(
            refused(&|s| s["client_assertion"] = json!(assertion())),
            "source has both user_assertion and client_assertion; the client that asks for the user's token \
             authenticates with client_id and client_secret"
        );
        assert_eq!(
            refused(&|s| {
                let fields = s.as_object_mut().unwrap();
                fields.remove("client_id");
                fields.remove("client_secret");
            }),
            "source is missing required keys: client_id (source.user_assertion is set), client_secret \
             (source.user_assertion is set)"
        );
        assert_eq!(
            refused(&|s| s["user_assertion"] = json!(" ")),
            "source is missing required keys: user_assertion (it is empty)"
        );
        assert_eq!(
            refused(&|s| s["user_assertion"] = json!("opaque-not-shown-9")),
            "source.user_assertion is not a JWT (three base64url parts with JSON claims, as ((idtoken:token)) gives)"
        );
        assert!(!refused(&|s| s["user_assertion"] = json!("opaque-not-shown-9")).contains("opaque-not-shown-9"));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let source = Source::parse(valid()).unwrap();
        let debug = format!("{:?}", source.credentials);
        assert!(debug.contains("ci-user") && !debug.contains("pw-not-shown-1"), "{debug}");
    }
}
