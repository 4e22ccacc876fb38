//! `/session`: counters kept in memory (lost with the instance) or in a bound
//! Redis (kept across instances), and a Redis that cannot be reached.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{RedisServer, SampleApp, free_port, note};

fn redis_uri_binding(port: u16, password: &str) -> String {
    json!({ "user-provided": [{
        "name": "session-store",
        "credentials": { "uri": format!("redis://:{password}@127.0.0.1:{port}/0") },
    }]})
    .to_string()
}

fn redis_host_port_binding(port: u16, password: &str) -> String {
    json!({ "p-redis": [{
        "name": "sessions",
        "label": "p-redis",
        "tags": ["redis", "key-value"],
        "credentials": { "host": "127.0.0.1", "port": port, "password": password },
    }]})
    .to_string()
}

/// The count `/session` returns for `user`, checking the store it names.
fn session_count(app: &SampleApp, user: &str, store: &str) -> i64 {
    let response = app.request("GET", "/session", &[("X-User", user)]);
    assert_eq!(response.status, 200, "{response:?}");
    let json = response.json();
    assert_eq!(json["user"], user);
    assert_eq!(json["store"], store);
    json["count"].as_i64().unwrap()
}

#[test]
fn memory_sessions_count_per_cookie_and_end_with_the_instance() {
    let app = SampleApp::start(&[("APP_VERSION", "v1"), ("CF_INSTANCE_INDEX", "2")]);

    let first = app.get("/session");
    assert_eq!(first.status, 200);
    let cookie = first.header("set-cookie").expect("a new visitor gets a cookie");
    let sid_cookie = cookie.split(';').next().unwrap().to_string();
    let sid = sid_cookie.strip_prefix("sid=").unwrap();
    assert_eq!(first.json(), json!({"user": sid, "count": 1, "store": "memory", "version": "v1", "instance": "2"}));

    for expected in 2..=3 {
        let again = app.request("GET", "/session", &[("Cookie", &sid_cookie)]);
        assert_eq!(again.json()["count"], expected);
        assert_eq!(again.header("set-cookie"), None);
    }
    assert_eq!(session_count(&app, "alice", "memory"), 1);

    drop(app);
    let replacement = SampleApp::start(&[("APP_VERSION", "v2")]);
    let after_swap = replacement.request("GET", "/session", &[("Cookie", &sid_cookie)]);
    assert_eq!(after_swap.json()["count"], 1, "memory sessions do not survive");
}

#[test]
fn unreachable_redis_answers_503_instead_of_using_memory() {
    let nothing_there = free_port();
    let app = SampleApp::start(&[("VCAP_SERVICES", &redis_uri_binding(nothing_there, "pw"))]);

    let started = Instant::now();
    let response = app.request("GET", "/session", &[("X-User", "dave")]);
    assert_eq!(response.status, 503);
    assert_eq!(response.json()["store"], "redis");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn redis_sessions_survive_replacing_the_app() {
    if let Some(reason) = RedisServer::unavailable() {
        note(&format!(
            "skipping redis_sessions_survive_replacing_the_app: {reason}; \
             install redis-server to run it"
        ));
        return;
    }
    let password = "test-pw";
    let redis_port = free_port();
    let redis = RedisServer::start(redis_port, password);
    let by_uri = redis_uri_binding(redis_port, password);

    let blue = SampleApp::start(&[("APP_VERSION", "v1"), ("VCAP_SERVICES", &by_uri)]);
    assert_eq!(session_count(&blue, "carol", "redis"), 1);
    assert_eq!(session_count(&blue, "carol", "redis"), 2);
    drop(blue);

    let green =
        SampleApp::start(&[("APP_VERSION", "v2"), ("VCAP_SERVICES", &redis_host_port_binding(redis_port, password))]);
    assert_eq!(session_count(&green, "carol", "redis"), 3);

    let wrong_password = SampleApp::start(&[("VCAP_SERVICES", &redis_uri_binding(redis_port, "nope"))]);
    let refused = wrong_password.request("GET", "/session", &[("X-User", "carol")]);
    assert_eq!(refused.status, 503, "{refused:?}");

    // Redis restarts (losing its data, as it has no persistence here): the
    // app reports it gone, then reconnects by itself once it is back.
    drop(redis);
    let gone = green.request("GET", "/session", &[("X-User", "carol")]);
    assert_eq!(gone.status, 503, "{gone:?}");
    let _redis = RedisServer::start(redis_port, password);
    assert_eq!(session_count(&green, "carol", "redis"), 1);
}
