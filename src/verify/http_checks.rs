//! Built-in HTTP checks (`params.verify`) against the candidate's temporary route, each retried until it
//! passes or the verification deadline passes. Without any configured check, the route must at least answer
//! `GET /` from the app (not the router) without a server error.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use super::route_client::{RouteClient, is_router_error};
use crate::config::{ExpectedStatus, HttpCheck};
use crate::log;

/// How one check ended, for the log and the put's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// `GET /version`.
    pub name: String,
    pub attempts: u32,
    /// The last status seen, if any response came back.
    pub status: Option<u16>,
    /// Why the last attempt failed; `None` when the check passed.
    pub failure: Option<String>,
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The check used when `params.verify` is empty.
pub fn default_check() -> HttpCheck {
    HttpCheck {
        path: "/".into(),
        method: "GET".into(),
        headers: Default::default(),
        body: None,
        status: Some(ExpectedStatus::Any((200..500).collect())),
        body_contains: None,
        body_matches: None,
    }
}

/// Runs `checks` against `route` one after another; each is retried every `retry_every` until it passes or
/// `deadline`. Returns every outcome when all pass, else an error naming the first failing check.
pub async fn run(
    client: &RouteClient,
    route: &str,
    checks: &[HttpCheck],
    deadline: Instant,
    retry_every: Duration,
) -> Result<Vec<CheckOutcome>> {
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in checks {
        let outcome = run_one(client, route, check, deadline, retry_every).await;
        match &outcome.failure {
            None => log::detail(format_args!(
                "✓ {} → {} ({})",
                outcome.name,
                outcome.status.map(|s| s.to_string()).unwrap_or_default(),
                attempts_text(outcome.attempts)
            )),
            Some(why) => {
                log::detail(format_args!("✗ {}: {why} ({})", outcome.name, attempts_text(outcome.attempts)));
                bail!("HTTP check {} on {route} failed: {why}", outcome.name);
            }
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

async fn run_one(
    client: &RouteClient,
    route: &str,
    check: &HttpCheck,
    deadline: Instant,
    retry_every: Duration,
) -> CheckOutcome {
    let name = format!("{} {}", check.method, check.path);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, failure) = attempt(client, route, check).await;
        if failure.is_none() || Instant::now() + retry_every >= deadline {
            return CheckOutcome { name, attempts, status, failure };
        }
        tokio::time::sleep(retry_every).await;
    }
}

/// One request: the status seen and why it does not satisfy the check, if it does not.
async fn attempt(client: &RouteClient, route: &str, check: &HttpCheck) -> (Option<u16>, Option<String>) {
    let method = reqwest::Method::from_bytes(check.method.as_bytes()).expect("validated with the config");
    let mut request = client.http().request(method, client.url(route, &check.path));
    for (name, value) in &check.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &check.body {
        request = request.body(body.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(err) => return (None, Some(format!("no response: {}", describe_transport_error(&err)))),
    };
    let status = response.status().as_u16();
    if is_router_error(&response) {
        return (Some(status), Some(format!("the router answered {status}: the route does not reach the app (yet)")));
    }
    let accepted = match &check.status {
        Some(expected) => expected.accepts(status),
        None => (200..300).contains(&status),
    };
    if !accepted {
        let expected = match &check.status {
            Some(ExpectedStatus::One(code)) => code.to_string(),
            Some(ExpectedStatus::Any(codes)) if codes.len() > 10 => format!("{}–{}", codes[0], codes[codes.len() - 1]),
            Some(ExpectedStatus::Any(codes)) => codes.iter().map(u16::to_string).collect::<Vec<_>>().join(" or "),
            None => "2xx".into(),
        };
        return (Some(status), Some(format!("expected status {expected}, got {status}")));
    }
    if check.body_contains.is_none() && check.body_matches.is_none() {
        return (Some(status), None);
    }
    let body = match response.text().await {
        Ok(body) => body,
        Err(err) => return (Some(status), Some(format!("cannot read the body: {}", describe_transport_error(&err)))),
    };
    if let Some(needle) = &check.body_contains
        && !body.contains(needle.as_str())
    {
        return (Some(status), Some(format!("body does not contain {needle:?} (body starts {:?})", preview(&body))));
    }
    if let Some(pattern) = &check.body_matches {
        let regex = regex::Regex::new(pattern).expect("validated with the config");
        if !regex.is_match(&body) {
            return (Some(status), Some(format!("body does not match /{pattern}/ (body starts {:?})", preview(&body))));
        }
    }
    (Some(status), None)
}

fn attempts_text(attempts: u32) -> String {
    if attempts == 1 { "1 attempt".into() } else { format!("{attempts} attempts") }
}

fn preview(body: &str) -> String {
    body.chars().take(120).collect()
}

/// The innermost cause of a transport error, which is the part that says what happened.
pub fn describe_transport_error(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(next) = source.source() {
        source = next;
    }
    if err.is_timeout() { format!("timed out ({source})") } else { source.to_string() }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::RouteScheme;
    use crate::verify::route_client::test_support::plain_tls;
    use crate::verify::test_server::{Reply, TestServer};

    async fn client(server: &TestServer) -> RouteClient {
        RouteClient::new(RouteScheme::Http, Some(&server.address()), plain_tls(), Duration::from_secs(5)).await.unwrap()
    }

    fn check(path: &str) -> HttpCheck {
        HttpCheck { path: path.into(), ..default_check() }
    }

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn passing_checks_report_status_and_attempts() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/version" => (200, "v2".into()),
            _ => (404, String::new()),
        })
        .await;
        let checks = vec![HttpCheck {
            status: Some(ExpectedStatus::One(200)),
            body_contains: Some("v2".into()),
            ..check("/version")
        }];
        let outcomes =
            run(&client(&server).await, "app.example.com", &checks, soon(5), Duration::from_millis(50)).await.unwrap();
        assert_eq!(
            outcomes,
            vec![CheckOutcome { name: "GET /version".into(), attempts: 1, status: Some(200), failure: None }]
        );
    }

    #[tokio::test]
    async fn check_is_retried_until_it_passes() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let server = TestServer::start(move |_| {
            if seen.fetch_add(1, Ordering::SeqCst) < 2 { (503, String::new()) } else { (200, "ok".into()) }
        })
        .await;
        let outcomes = run(&client(&server).await, "a.example.com", &[check("/")], soon(5), Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(outcomes[0].attempts, 3);
        assert!(outcomes[0].passed());
    }

    #[tokio::test]
    async fn failing_check_names_itself_and_the_reason() {
        let server = TestServer::start(|_| (200, "hello v1".into())).await;
        let checks = vec![HttpCheck { body_matches: Some("v2$".into()), ..check("/version") }];
        let err = run(&client(&server).await, "a.example.com", &checks, soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP check GET /version on a.example.com failed: body does not match /v2$/ (body starts \"hello v1\")"
        );
    }

    #[tokio::test]
    async fn router_errors_never_count_as_the_app_answering() {
        let router = TestServer::start(|_| Reply {
            status: 404,
            headers: vec![("X-Cf-Routererror".into(), "unknown_route".into())],
            body: "Requested route ('a.example.com') does not exist.".into(),
        })
        .await;
        let err = run(&client(&router).await, "a.example.com", &[default_check()], soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the router answered 404: the route does not reach the app"), "{err}");
    }

    #[tokio::test]
    async fn default_check_accepts_client_errors_but_not_server_errors() {
        let server = TestServer::start(|_| (404, String::new())).await;
        assert!(
            run(&client(&server).await, "a.example.com", &[default_check()], soon(0), Duration::from_millis(10))
                .await
                .is_ok()
        );
        let server = TestServer::start(|_| (500, String::new())).await;
        let err = run(&client(&server).await, "a.example.com", &[default_check()], soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("expected status 200–499, got 500"), "{err}");
    }

    #[tokio::test]
    async fn method_headers_and_body_are_sent() {
        let server = TestServer::start(|r| {
            let token = r.headers.iter().find(|(n, _)| n == "x-token").map(|(_, v)| v.as_str()).unwrap_or("");
            if r.method == "POST" && token == "t" && r.body == "{\"q\":1}" {
                (201, String::new())
            } else {
                (400, String::new())
            }
        })
        .await;
        let checks = vec![HttpCheck {
            method: "POST".into(),
            headers: [("x-token".to_owned(), "t".to_owned())].into(),
            body: Some("{\"q\":1}".into()),
            status: Some(ExpectedStatus::One(201)),
            ..check("/api")
        }];
        run(&client(&server).await, "a.example.com", &checks, soon(2), Duration::from_millis(10)).await.unwrap();
    }
}
