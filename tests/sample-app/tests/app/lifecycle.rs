//! Stopping gracefully on SIGTERM and SIGINT, and holding many connections
//! at once.

use std::time::{Duration, Instant};

use crate::harness::{Connection, SampleApp, refuses_connections, wait_for};

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let mut app = SampleApp::start(&[("APP_VERSION", "v3")]);
    let mut in_flight = app.connect();
    in_flight.write_request("GET", "/slow?ms=1500", &[]).unwrap();
    let mut idle = app.connect();
    assert_eq!(idle.send("GET", "/healthcheck", &[]).unwrap().status, 200);

    std::thread::sleep(Duration::from_millis(300));
    app.signal("TERM");

    assert!(
        wait_for(Duration::from_secs(2), || refuses_connections(app.address())),
        "still accepting connections after SIGTERM"
    );
    assert!(idle.is_closed_by_server(), "idle keep-alive connection left open");

    let response = in_flight.read_response().expect("the in-flight request is answered");
    assert_eq!((response.status, response.body.as_str()), (200, "v3"));

    let status = app.wait_for_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "stderr: {}", app.stderr());
    assert!(app.stderr().contains("SIGTERM received"), "stderr: {}", app.stderr());
}

#[test]
fn sigint_stops_an_idle_app_at_once() {
    let mut app = SampleApp::start(&[]);
    let started = Instant::now();
    app.signal("INT");
    assert_eq!(app.wait_for_exit(Duration::from_secs(5)).code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn sigterm_during_the_startup_delay_exits_0() {
    let mut app = SampleApp::spawn(&[("STARTUP_DELAY_MS", "30000")]);
    std::thread::sleep(Duration::from_millis(300));
    app.signal("TERM");
    assert_eq!(app.wait_for_exit(Duration::from_secs(5)).code(), Some(0));
}

#[test]
fn five_hundred_slow_requests_do_not_stall_a_fast_one() {
    const CONNECTIONS: usize = 500;
    let app = SampleApp::start(&[]);

    let mut slow: Vec<Connection> = (0..CONNECTIONS).map(|_| app.connect()).collect();
    let started = Instant::now();
    for connection in &mut slow {
        connection.write_request("GET", "/slow?ms=1000", &[]).unwrap();
    }

    let fast = app.get("/");
    let fast_done = started.elapsed();
    assert_eq!(fast.status, 200);
    assert!(fast_done < Duration::from_millis(900), "the fast request waited for the slow ones: {fast_done:?}");

    for connection in &mut slow {
        assert_eq!(connection.read_response().unwrap().status, 200);
    }
    let all_done = started.elapsed();
    assert!(all_done < Duration::from_secs(5), "slow requests took {all_done:?}");

    // The connections are kept alive for further requests.
    assert_eq!(slow[0].send("GET", "/version", &[]).unwrap().body, "v1");
}
