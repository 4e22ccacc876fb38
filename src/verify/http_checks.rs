//! Built-in HTTP checks (`params.verify`) against the candidate's temporary route, each retried until it
//! passes or the verification deadline passes. Without any configured check, the route must at least answer
//! `GET /` from the app (not the router) without a server error. Redirects on the route's host are followed
//! unless the check expects a 3xx; while a check keeps failing, a line says why every [`PROGRESS_EVERY`].

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use super::route_client::{RouteClient, RouteRequest, https_expected, is_router_error};
use crate::config::{ExpectedStatus, HttpCheck};
use crate::log;

/// How often a check that keeps failing says why, rather than staying silent until the deadline.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How one check ended, for the log and the put's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckOutcome {
    /// `GET /version`.
    pub(crate) name: String,
    pub(crate) attempts: u32,
    /// The last status seen, if any response came back.
    pub(crate) status: Option<u16>,
    /// Why the last attempt failed; `None` when the check passed.
    pub(crate) failure: Option<String>,
}

/// The check used when `params.verify` is empty: any answer from the app but a redirect (which is followed)
/// or a server error.
pub(crate) fn default_check() -> HttpCheck {
    HttpCheck {
        path: "/".into(),
        method: "GET".into(),
        headers: Default::default(),
        body: None,
        status: Some(ExpectedStatus::Any((200..300).chain(400..500).collect())),
        body_contains: None,
        body_matches: None,
    }
}

/// Runs `checks` against `route` one after another; each is retried every `retry_every` until it passes or
/// `deadline`. Returns every outcome when all pass, else an error naming the first failing check.
pub(crate) async fn run(
    client: &RouteClient,
    route: &str,
    checks: &[HttpCheck],
    deadline: Instant,
    retry_every: Duration,
) -> Result<Vec<CheckOutcome>> {
    let mut progress = |line: String| log::detail(line);
    let pace = Pace { retry_every, progress_every: PROGRESS_EVERY };
    run_reporting(client, route, checks, deadline, pace, &mut progress).await
}

/// How often a check is tried, and how often a failing one says why.
#[derive(Clone, Copy)]
struct Pace {
    retry_every: Duration,
    progress_every: Duration,
}

/// [`run`], with the progress lines going to `progress`.
async fn run_reporting(
    client: &RouteClient,
    route: &str,
    checks: &[HttpCheck],
    deadline: Instant,
    pace: Pace,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Vec<CheckOutcome>> {
    let mut outcomes = Vec::with_capacity(checks.len());
    for check in checks {
        let outcome = run_one(client, route, check, deadline, pace, progress).await;
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
    pace: Pace,
    progress: &mut (dyn FnMut(String) + Send),
) -> CheckOutcome {
    let name = format!("{} {}", check.method, check.path);
    let started = Instant::now();
    let mut next_report = started + pace.progress_every;
    let mut attempts = 0;
    let mut last_failure: Option<String> = None;
    loop {
        attempts += 1;
        let attempt_started = Instant::now();
        let (status, failure) =
            with_ticks(attempt(client, route, check), &mut next_report, pace.progress_every, || {
                let last = last_failure.as_deref();
                progress(progress_line(&name, started, attempts - 1, last, Some(attempt_started), pace.progress_every));
            })
            .await;
        if failure.is_none() || Instant::now() + pace.retry_every >= deadline {
            return CheckOutcome { name, attempts, status, failure };
        }
        last_failure = failure;
        with_ticks(tokio::time::sleep(pace.retry_every), &mut next_report, pace.progress_every, || {
            progress(progress_line(&name, started, attempts, last_failure.as_deref(), None, pace.progress_every));
        })
        .await;
    }
}

/// Awaits `work`, calling `tick` whenever `next_tick` passes meanwhile (and setting it `every` later).
async fn with_ticks<T>(
    work: impl Future<Output = T>,
    next_tick: &mut Instant,
    every: Duration,
    mut tick: impl FnMut(),
) -> T {
    tokio::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            () = tokio::time::sleep_until(*next_tick) => {
                tick();
                *next_tick = Instant::now() + every;
            }
        }
    }
}

/// `… GET /health: still failing after 20.0s (18 attempts): expected status 2xx, got 503`, plus how long the
/// attempt in flight has been waiting when that is a long time.
fn progress_line(
    name: &str,
    started: Instant,
    done: u32,
    last_failure: Option<&str>,
    in_flight_since: Option<Instant>,
    every: Duration,
) -> String {
    let elapsed = log::human_duration(started.elapsed());
    let mut line = match last_failure {
        Some(why) => format!("… {name}: still failing after {elapsed} ({}): {why}", attempts_text(done)),
        None => format!("… {name}: no answer yet after {elapsed}"),
    };
    if let Some(since) = in_flight_since.filter(|since| since.elapsed() >= every && last_failure.is_some()) {
        line.push_str(&format!(
            "; attempt {} has had no answer for {}",
            done + 1,
            log::human_duration(since.elapsed())
        ));
    }
    line
}

/// The statuses a check accepts (an empty list for "any 2xx").
fn expected_codes(check: &HttpCheck) -> &[u16] {
    match &check.status {
        Some(ExpectedStatus::One(code)) => std::slice::from_ref(code),
        Some(ExpectedStatus::Any(codes)) => codes,
        None => &[],
    }
}

/// `2xx`, `302`, `200 or 204`, `200–299 or 400–499`.
fn expected_text(check: &HttpCheck) -> String {
    let mut codes = expected_codes(check).to_vec();
    if codes.is_empty() {
        return "2xx".into();
    }
    codes.sort_unstable();
    codes.dedup();
    let mut runs: Vec<(u16, u16)> = Vec::new();
    for code in codes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == code => *last = code,
            _ => runs.push((code, code)),
        }
    }
    let mut parts = Vec::new();
    for (first, last) in runs {
        match last - first {
            0 => parts.push(first.to_string()),
            1 => parts.extend([first.to_string(), last.to_string()]),
            _ => parts.push(format!("{first}–{last}")),
        }
    }
    parts.join(" or ")
}

/// One request: the status seen and why it does not satisfy the check, if it does not. A check that expects a
/// 3xx gets the redirect itself; any other follows redirects on the route's host.
async fn attempt(client: &RouteClient, route: &str, check: &HttpCheck) -> (Option<u16>, Option<String>) {
    let url = client.url(route, &check.path);
    let request = RouteRequest {
        method: reqwest::Method::from_bytes(check.method.as_bytes()).expect("validated with the config"),
        url: &url,
        headers: &check.headers,
        body: check.body.as_deref(),
        follow_redirects: !expected_codes(check).iter().any(|code| (300..400).contains(code)),
    };
    let response = match client.send(request).await {
        Ok(response) => response,
        Err(why) => return (None, Some(why)),
    };
    let status = response.status().as_u16();
    if is_router_error(&response) {
        return (Some(status), Some(format!("the router answered {status}: the route does not reach the app (yet)")));
    }
    let accepted = match &check.status {
        Some(expected) => expected.accepts(status),
        None => (200..300).contains(&status),
    };
    let plain_to_https_port = status == 400 && response.url().scheme() == "http";
    if accepted && !plain_to_https_port && check.body_contains.is_none() && check.body_matches.is_none() {
        return (Some(status), None);
    }
    let final_url = response.url().clone();
    let code = response.status();
    let body = response.text().await;
    let https_hint = body.as_deref().ok().and_then(|body| https_expected(&final_url, code, body));
    if !accepted {
        let why = format!("expected status {}, got {status}", expected_text(check));
        let why = match https_hint {
            Some(hint) => format!("{why}: {hint}"),
            None => why,
        };
        return (Some(status), Some(why));
    }
    if let Some(hint) = https_hint {
        return (Some(status), Some(hint));
    }
    let body = match body {
        Ok(body) => body,
        Err(err) => {
            return (Some(status), Some(format!("cannot read the body: {}", client.describe_error(&final_url, &err))));
        }
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
        assert!(outcomes[0].failure.is_none());
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
        assert!(err.to_string().contains("expected status 200–299 or 400–499, got 500"), "{err}");
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

    fn redirect(status: u16, location: &str) -> Reply {
        Reply { status, headers: vec![("Location".into(), location.into())], body: String::new() }
    }

    #[tokio::test]
    async fn a_redirect_is_followed_to_the_app_before_the_check_passes() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/" => redirect(302, "/login"),
            _ => Reply::from((500, "broken".to_owned())),
        })
        .await;
        let err = run(&client(&server).await, "a.example.com", &[default_check()], soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with("expected status 200–299 or 400–499, got 500"), "{err}");
        assert_eq!(server.served(), 2);
    }

    #[tokio::test]
    async fn a_check_expecting_a_redirect_gets_it_unfollowed() {
        let server = TestServer::start(|_| redirect(302, "https://login.example.com/")).await;
        let checks = vec![HttpCheck { status: Some(ExpectedStatus::One(302)), ..check("/") }];
        let outcomes =
            run(&client(&server).await, "a.example.com", &checks, soon(0), Duration::from_millis(10)).await.unwrap();
        assert_eq!(outcomes[0].status, Some(302));
        assert_eq!(server.served(), 1);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_fails_the_check_naming_its_location() {
        let server = TestServer::start(|_| redirect(301, "https://sso.example.org/login")).await;
        let err = run(&client(&server).await, "a.example.com", &[check("/")], soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "HTTP check GET / on a.example.com failed: http://a.example.com/ redirects (301) to another host: \
                 Location https://sso.example.org/login;"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_plain_request_to_an_https_port_names_route_scheme() {
        let server = TestServer::start(|_| (400, "Client sent an HTTP request to an HTTPS server.\n".to_owned())).await;
        let hint =
            "http://a.example.com/: the route expects HTTPS but was sent plain HTTP: set source.route_scheme: https";
        let strict = vec![HttpCheck { status: None, ..check("/") }];
        let err = run(&client(&server).await, "a.example.com", &strict, soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with(&format!("expected status 2xx, got 400: {hint}")), "{err}");
        let err = run(&client(&server).await, "a.example.com", &[default_check()], soon(0), Duration::from_millis(10))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), format!("HTTP check GET / on a.example.com failed: {hint}"));
    }

    fn collect_progress(lines: &Arc<std::sync::Mutex<Vec<String>>>) -> impl FnMut(String) + Send + use<> {
        let lines = lines.clone();
        move |line| lines.lock().unwrap().push(line)
    }

    #[tokio::test]
    async fn a_check_that_keeps_failing_says_why_while_it_waits() {
        let server = TestServer::start(|_| (503, String::new())).await;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pace = Pace { retry_every: Duration::from_millis(20), progress_every: Duration::from_millis(150) };
        let deadline = Instant::now() + Duration::from_millis(700);
        let mut progress = collect_progress(&lines);
        let client = client(&server).await;
        run_reporting(&client, "a.example.com", &[check("/health")], deadline, pace, &mut progress).await.unwrap_err();
        let lines = lines.lock().unwrap();
        assert!(lines.len() >= 3, "{lines:?}");
        for line in lines.iter() {
            assert!(line.starts_with("… GET /health: still failing after "), "{line}");
            assert!(line.ends_with("): expected status 200–299 or 400–499, got 503"), "{line}");
        }
    }

    #[tokio::test]
    async fn a_check_waiting_for_a_slow_answer_says_so() {
        let server = TestServer::start_with_delay(Duration::from_millis(500), |_| (200, String::new())).await;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let pace = Pace { retry_every: Duration::from_millis(20), progress_every: Duration::from_millis(150) };
        let mut progress = collect_progress(&lines);
        let client = client(&server).await;
        run_reporting(&client, "a.example.com", &[check("/")], soon(5), pace, &mut progress).await.unwrap();
        let lines = lines.lock().unwrap();
        assert!(lines.len() >= 2, "{lines:?}");
        assert!(lines[0].starts_with("… GET /: no answer yet after "), "{lines:?}");
    }

    #[test]
    fn expected_statuses_read_as_ranges() {
        let with = |status| expected_text(&HttpCheck { status, ..check("/") });
        assert_eq!(with(None), "2xx");
        assert_eq!(with(Some(ExpectedStatus::One(302))), "302");
        assert_eq!(with(Some(ExpectedStatus::Any(vec![204, 200]))), "200 or 204");
        assert_eq!(with(Some(ExpectedStatus::Any(vec![200, 201, 202, 404]))), "200–202 or 404");
    }
}
