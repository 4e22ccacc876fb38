//! The plain endpoints: `/`, `/version`, `/healthcheck`, `/slow`, `/env`,
//! and the app's logging.

use std::time::{Duration, Instant};

use crate::harness::{SampleApp, wait_for};

#[test]
fn root_and_version_report_the_configured_version_and_instance() {
    let app = SampleApp::start(&[("APP_VERSION", "v2"), ("CF_INSTANCE_INDEX", "3")]);

    let root = app.get("/");
    assert_eq!(root.status, 200);
    assert_eq!(root.body, "sample-app v2 instance 3\n");
    assert!(root.header("content-type").unwrap().starts_with("text/plain"), "{root:?}");
    assert_eq!(app.get("/version").body, "v2");

    assert_eq!(app.stdout_lines()[0], format!("sample-app v2 listening on 127.0.0.1:{} (instance 3)", app.port));
}

#[test]
fn version_defaults_to_v1_and_instance_to_0() {
    let app = SampleApp::start(&[]);
    assert_eq!(app.get("/version").body, "v1");
    assert_eq!(app.get("/").body, "sample-app v1 instance 0\n");
}

#[test]
fn healthcheck_passes_unless_told_to_fail() {
    let healthy = SampleApp::start(&[]);
    let unhealthy = SampleApp::start(&[("HEALTHY", "false")]);

    let ok = healthy.get("/healthcheck");
    assert_eq!((ok.status, ok.body.as_str()), (200, "ok"));
    assert_eq!(unhealthy.get("/healthcheck").status, 500);
    // Only the health check reports the failure; the app itself still serves.
    assert_eq!(unhealthy.get("/").status, 200);
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let app = SampleApp::start(&[]);
    assert_eq!(app.get("/nope").status, 404);
    let post = app.request("POST", "/", &[("Content-Length", "0")]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn slow_waits_as_asked_then_answers_with_the_version() {
    let app = SampleApp::start(&[("APP_VERSION", "v7")]);

    let started = Instant::now();
    let slow = app.get("/slow?ms=600");
    let took = started.elapsed();
    assert_eq!((slow.status, slow.body.as_str()), (200, "v7"));
    assert!(took >= Duration::from_millis(600), "took {took:?}");

    assert_eq!(app.get("/slow?ms=soon").status, 400);
}

#[test]
fn requests_reuse_a_keep_alive_connection() {
    let app = SampleApp::start(&[]);
    let mut connection = app.connect();
    for _ in 0..5 {
        let response = connection.send("GET", "/version", &[]).unwrap();
        assert_eq!(response.body, "v1");
    }
}

#[test]
fn env_lists_variable_and_service_names_but_no_values() {
    let vcap = r#"{
        "user-provided": [{"name": "my-db", "credentials": {"uri": "postgres://u:s3cret@db"}}],
        "p-config": [{"name": "config-server", "credentials": {"token": "t0ken"}}]
    }"#;
    let app = SampleApp::start(&[
        ("SECRET_TOKEN", "hunter2"),
        ("VCAP_SERVICES", vcap),
        ("VCAP_APPLICATION", r#"{"application_name":"sample"}"#),
    ]);

    let env = app.get("/env");
    assert_eq!(env.status, 200);
    let json = env.json();
    let names: Vec<&str> = json["env"].as_array().unwrap().iter().map(|name| name.as_str().unwrap()).collect();
    for expected in ["PORT", "SECRET_TOKEN", "VCAP_APPLICATION", "VCAP_SERVICES"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert_eq!(json["services"], serde_json::json!(["config-server", "my-db"]));
    for secret in ["hunter2", "s3cret", "t0ken", "application_name"] {
        assert!(!env.body.contains(secret), "/env leaks {secret}: {}", env.body);
    }
}

#[test]
fn requests_are_logged_only_when_asked() {
    let quiet = SampleApp::start(&[]);
    let chatty = SampleApp::start(&[("LOG_REQUESTS", "true")]);
    for app in [&quiet, &chatty] {
        app.get("/");
        app.get("/healthcheck");
    }

    assert!(wait_for(Duration::from_secs(5), || chatty.stdout_lines().len() == 3), "{:?}", chatty.stdout_lines());
    let lines = chatty.stdout_lines();
    assert!(lines[1].starts_with("GET / 200 "), "{lines:?}");
    assert!(lines[2].starts_with("GET /healthcheck 200 "), "{lines:?}");
    assert_eq!(quiet.stdout_lines().len(), 1, "{:?}", quiet.stdout_lines());
}

#[test]
fn backend_relays_another_apps_answer_and_says_when_it_cannot() {
    let backend = SampleApp::start(&[("APP_VERSION", "v7")]);
    let url = format!("http://127.0.0.1:{}/version", backend.port);
    let frontend = SampleApp::start(&[("BACKEND_URL", url.as_str())]);
    let relayed = frontend.get("/backend");
    assert_eq!((relayed.status, relayed.body.as_str()), (200, "v7"));

    let missing = format!("http://127.0.0.1:{}/nothing", backend.port);
    let not_found = SampleApp::start(&[("BACKEND_URL", missing.as_str())]).get("/backend");
    assert_eq!(not_found.status, 502);
    assert!(not_found.body.starts_with("the backend answered 404"), "{}", not_found.body);
    drop(backend);
    let gone = frontend.get("/backend");
    assert_eq!(gone.status, 502);
    assert!(gone.body.starts_with("the backend is unreachable"), "{}", gone.body);
    assert_eq!(SampleApp::start(&[]).get("/backend").status, 500);
}
