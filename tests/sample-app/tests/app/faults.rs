//! The failures the deploy tests provoke: slow or crashing starts, an error
//! rate, added latency and failing after a while.

use std::time::{Duration, Instant};

use crate::harness::{PATIENCE, SampleApp, refuses_connections, wait_for};

#[test]
fn startup_delay_keeps_the_port_closed_until_it_passes() {
    let started = Instant::now();
    let app = SampleApp::spawn(&[("STARTUP_DELAY_MS", "1500")]);

    std::thread::sleep(Duration::from_millis(500));
    assert!(refuses_connections(app.address()), "port open during the delay");
    assert!(app.stdout_lines().is_empty());

    app.wait_until_listening(PATIENCE);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "listening after {took:?}");
    assert_eq!(app.get("/").status, 200);
}

#[test]
fn crash_on_start_exits_1_with_a_clear_message() {
    let mut app = SampleApp::spawn(&[("CRASH_ON_START", "true")]);
    let status = app.wait_for_exit(PATIENCE);
    assert_eq!(status.code(), Some(1));
    assert!(app.stderr().contains("crashing on start as configured"), "stderr: {}", app.stderr());
    assert!(app.stdout_lines().is_empty());
}

#[test]
fn a_malformed_setting_stops_the_app_naming_the_variable() {
    let mut app = SampleApp::spawn(&[("ERROR_RATE", "5%")]);
    assert_eq!(app.wait_for_exit(PATIENCE).code(), Some(1));
    assert!(app.stderr().contains("ERROR_RATE"), "stderr: {}", app.stderr());
}

#[test]
fn error_rate_fails_exactly_that_share_and_spares_health_checks() {
    let app = SampleApp::start(&[("ERROR_RATE", "0.05")]);
    let mut connection = app.connect();

    let mut failed = Vec::new();
    for k in 1..=100 {
        let response = connection.send("GET", "/", &[]).unwrap();
        if response.status == 500 {
            failed.push(k);
        } else {
            assert_eq!(response.status, 200);
        }
        let health = connection.send("GET", "/healthcheck", &[]).unwrap();
        assert_eq!(health.status, 200, "health check {k} failed");
    }
    assert_eq!(failed, [20, 40, 60, 80, 100]);
}

#[test]
fn latency_delays_requests_but_not_health_checks() {
    let app = SampleApp::start(&[("LATENCY_MS", "400")]);

    let started = Instant::now();
    assert_eq!(app.get("/").status, 200);
    let request = started.elapsed();
    assert!(request >= Duration::from_millis(400), "request took {request:?}");

    let started = Instant::now();
    assert_eq!(app.get("/healthcheck").status, 200);
    let health = started.elapsed();
    assert!(health < Duration::from_millis(300), "health check took {health:?}");
}

#[test]
fn fail_after_fails_requests_once_the_time_is_up() {
    let requests_only = SampleApp::start(&[("FAIL_AFTER_SECS", "1")]);
    let health_too = SampleApp::start(&[("FAIL_AFTER_SECS", "1"), ("FAIL_HEALTH_TOO", "true")]);
    let started = Instant::now();

    for app in [&requests_only, &health_too] {
        assert_eq!(app.get("/").status, 200);
        assert_eq!(app.get("/healthcheck").status, 200);
    }

    assert!(wait_for(Duration::from_secs(5), || requests_only.get("/").status == 500));
    let failing_after = started.elapsed();
    // The start line is seen after the clock starts, so allow a little slack.
    assert!(failing_after >= Duration::from_millis(800), "failed after {failing_after:?}");
    assert_eq!(requests_only.get("/healthcheck").status, 200);

    assert!(wait_for(Duration::from_secs(5), || health_too.get("/").status == 500));
    assert_eq!(health_too.get("/healthcheck").status, 500);
}
