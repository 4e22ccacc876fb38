//! The secrets scan: every stdout and stderr a resource binary writes in a test is searched for every secret
//! that run could have leaked — the password, client secret, client assertion or user assertion of its `source`,
//! `docker_password` and `secret_environment_variables` values of its `params`, secret-looking values of its
//! environment, and every access and refresh token the cf-sim behind `source.api` has issued so far.
//! A leak fails the test (naming what leaked, never printing it whole) and is counted in the proof summary.

use std::time::Duration;

use serde_json::{Value, json};

/// One secret and what it is, for the failure message.
#[derive(Clone, Debug)]
pub struct Secret {
    pub what: String,
    pub value: String,
}

/// Shorter values are not scanned: they would match ordinary text. Tests use long, distinctive secrets.
pub const MIN_LEN: usize = 8;

/// What a run fed `stdin` and `env` could leak.
pub fn secrets_of(stdin: &str, env: &[(&str, &str)]) -> Vec<Secret> {
    let mut found = Vec::new();
    let request: Value = serde_json::from_str(stdin).unwrap_or(Value::Null);
    let source = &request["source"];
    for key in ["password", "client_secret", "client_assertion", "user_assertion"] {
        if let Some(value) = source[key].as_str() {
            found.push(Secret { what: format!("source.{key}"), value: value.to_owned() });
        }
    }
    let params = &request["params"];
    if let Some(value) = params["docker_password"].as_str() {
        found.push(Secret { what: "params.docker_password".into(), value: value.to_owned() });
    }
    if let Some(secrets) = params["secret_environment_variables"].as_object() {
        for (name, value) in secrets {
            let value = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            found.push(Secret { what: format!("params.secret_environment_variables.{name}"), value });
        }
    }
    for (key, value) in env {
        let key = key.to_ascii_uppercase();
        if ["SECRET", "PASSWORD", "TOKEN"].iter().any(|word| key.contains(word)) {
            found.push(Secret { what: format!("env {key}"), value: (*value).to_owned() });
        }
    }
    if let Some(api) = source["api"].as_str() {
        for (i, token) in sim_tokens(api).into_iter().enumerate() {
            found.push(Secret { what: format!("token #{} issued by the sim", i + 1), value: token });
        }
    }
    found.retain(|s| s.value.len() >= MIN_LEN);
    found
}

/// The forms a secret takes in output: as is, inside a JSON string, URL-encoded.
fn forms(value: &str) -> Vec<String> {
    let json = serde_json::to_string(value).unwrap();
    let url: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let mut forms = vec![value.to_owned(), json[1..json.len() - 1].to_owned(), url];
    forms.dedup();
    forms
}

/// The leaks of `secrets` in `outputs` (`(stream name, text)`): what leaked where.
pub fn leaks(secrets: &[Secret], outputs: &[(&str, &str)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for secret in secrets {
        for (stream, text) in outputs {
            if forms(&secret.value).iter().any(|form| text.contains(form.as_str())) {
                let shown: String = secret.value.chars().take(4).collect();
                leaks.push(format!("{} ({shown}…) appears in {stream}", secret.what));
            }
        }
    }
    leaks
}

/// Scans one run's output, records the scan in the proof summary, and panics on a leak.
pub fn scan(name: &str, stdin: &str, env: &[(&str, &str)], stdout: &str, stderr: &str) {
    let secrets = secrets_of(stdin, env);
    let found = leaks(&secrets, &[("stdout", stdout), ("stderr", stderr)]);
    super::summary::record(
        "secrets",
        json!({"outputs": 2, "secrets": secrets.len(), "leaked": found.len(), "binary": name}),
    );
    assert_no_leak(name, &found);
}

/// Panics naming the leaks, if any.
pub fn assert_no_leak(name: &str, leaks: &[String]) {
    if let Err(why) = verdict(name, leaks) {
        panic!("{why}");
    }
}

/// What [`assert_no_leak`] decides.
pub fn verdict(name: &str, leaks: &[String]) -> Result<(), String> {
    if leaks.is_empty() { Ok(()) } else { Err(format!("{name} leaked secrets:\n{}", leaks.join("\n"))) }
}

/// Every token the sim at `api` issued, when `api` is a sim on loopback (its admin API needs no auth).
fn sim_tokens(api: &str) -> Vec<String> {
    let Ok(url) = url::Url::parse(api) else { return Vec::new() };
    if !matches!(url.host_str(), Some("127.0.0.1" | "localhost")) {
        return Vec::new();
    }
    let tokens_url = format!("{}/_sim/tokens", api.trim_end_matches('/'));
    // Its own thread and runtime: callers may be inside a runtime already.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let client =
                super::http_client().danger_accept_invalid_certs(true).timeout(Duration::from_secs(5)).build().ok()?;
            let body: Value = client.get(&tokens_url).send().await.ok()?.json().await.ok()?;
            Some(body["tokens"].as_array()?.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect())
        })
    })
    .join()
    .ok()
    .flatten()
    .unwrap_or_default()
}
