//! The protocol contract of the real binaries: every kind of bad request fails cleanly (exit 1, empty
//! stdout, one error line naming the problem) before any network call.

use crate::util::run_resource;
use serde_json::{Value, json};

/// A source that passes validation but points at a port nothing listens on: the tests below must fail
/// before any connection is attempted, so the address is never used.
fn source() -> Value {
    json!({"api": "http://127.0.0.1:9", "username": "ci-user", "password": "pw-never-printed",
           "organization": "org", "space": "space", "app": "myapp"})
}

fn request(source: Value, params: Option<Value>, version: Option<Value>) -> String {
    let mut request = json!({"source": source});
    if let Some(params) = params {
        request["params"] = params;
    }
    if let Some(version) = version {
        request["version"] = version;
    }
    request.to_string()
}

fn version() -> Value {
    json!({"app_guid": "a", "droplet_guid": "d"})
}

/// Runs each binary with its directory argument where it takes one.
fn each_binary(stdin: &str, expected: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    for (name, args) in [("check", vec![]), ("in", vec![dir]), ("out", vec![dir])] {
        let run = run_resource(name, &args, stdin, &[]);
        eprintln!("{name}: {}", run.last_line());
        run.assert_clean_failure(expected);
    }
}

#[test]
fn malformed_json() {
    each_binary("{\"source\": {", "the request on stdin is not valid JSON");
}

#[test]
fn empty_stdin() {
    each_binary("", "no request on stdin");
}

#[test]
fn request_that_is_not_an_object() {
    each_binary("[1, 2]", "the request on stdin must be a JSON object, not a list");
}

#[test]
fn null_source_lists_every_missing_key() {
    each_binary(
        r#"{"source": null}"#,
        "source is missing required keys: api, organization, space, app; source needs credentials",
    );
}

#[test]
fn unknown_key_in_source_is_named_with_suggestion() {
    let mut bad = source();
    bad["organisation"] = json!("org");
    each_binary(&request(bad, None, None), "source.organisation is not a known key; did you mean organization?");
}

#[test]
fn unknown_key_in_out_params_is_named_with_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = request(source(), Some(json!({"manfest": "m.yml"})), None);
    let run = run_resource("out", &[dir.path().to_str().unwrap()], &stdin, &[]);
    run.assert_clean_failure("params.manfest is not a known key; did you mean manifest?");
}

#[test]
fn unknown_key_in_in_params_is_named_with_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = request(source(), Some(json!({"download_dropplet": true})), Some(version()));
    let run = run_resource("in", &[dir.path().to_str().unwrap()], &stdin, &[]);
    run.assert_clean_failure("params.download_dropplet is not a known key; did you mean download_droplet?");
}

#[test]
fn wrong_types_name_the_field_path() {
    let mut bad = source();
    bad["skip_cert_check"] = json!("yes");
    each_binary(&request(bad, None, None), "source.skip_cert_check: invalid type: string \"yes\", expected a boolean");

    let dir = tempfile::tempdir().unwrap();
    let stdin = request(source(), Some(json!({"health_check": {"timeout": "soon"}})), None);
    let run = run_resource("out", &[dir.path().to_str().unwrap()], &stdin, &[]);
    run.assert_clean_failure("params.health_check.timeout: invalid type: string \"soon\", expected a whole number");
}

#[test]
fn wrong_type_of_a_secret_does_not_echo_it() {
    let mut bad = source();
    bad["password"] = json!(987654321);
    let dir = tempfile::tempdir().unwrap();
    let run = run_resource("out", &[dir.path().to_str().unwrap()], &request(bad, None, None), &[]);
    run.assert_clean_failure("source.password: ");
    assert!(!run.stderr.contains("987654321"), "secret echoed: {}", run.stderr);
}

#[test]
fn both_credential_pairs_rejected() {
    let mut bad = source();
    bad["client_id"] = json!("ci-client");
    bad["client_secret"] = json!("cs-never-printed");
    each_binary(&request(bad, None, None), "source has both username/password and client_id/client_secret");
}

#[test]
fn neither_credential_pair_rejected() {
    let mut bad = source();
    bad.as_object_mut().unwrap().remove("username");
    bad.as_object_mut().unwrap().remove("password");
    each_binary(
        &request(bad, None, None),
        "source needs credentials: username and password, or client_id and client_secret",
    );
}

#[test]
fn missing_directory_argument() {
    for name in ["in", "out"] {
        let run = run_resource(name, &[], &request(source(), None, Some(version())), &[]);
        run.assert_clean_failure(&format!("missing directory argument: usage: {name} <"));
    }
}

#[test]
fn out_directory_must_exist() {
    let run = run_resource("out", &["/nonexistent/put-dir"], &request(source(), None, None), &[]);
    run.assert_clean_failure("the put directory /nonexistent/put-dir does not exist");
}

#[test]
fn in_needs_a_version_of_this_resource() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    run_resource("in", &[dir], &request(source(), None, None), &[]).assert_clean_failure("version is missing");
    run_resource("in", &[dir], &request(source(), None, Some(json!({"timestamp": "2021"}))), &[])
        .assert_clean_failure("version is not one of this resource's versions");
}

#[test]
fn unknown_top_level_key() {
    let stdin = json!({"source": source(), "verison": {}}).to_string();
    let run = run_resource("check", &[], &stdin, &[]);
    run.assert_clean_failure("the request has an unknown top-level key 'verison'");
}

#[test]
fn source_and_params_problems_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = json!({"source": {"username": "ci-user", "password": "pw-never-printed"},
                       "params": {"path": "a", "droplet": "b"}})
    .to_string();
    let run = run_resource("out", &[dir.path().to_str().unwrap()], &stdin, &[]);
    run.assert_clean_failure("source is missing required keys: api, organization, space, app");
    assert!(run.last_line().contains("params.path and params.droplet cannot be combined"), "{}", run.last_line());
}

#[test]
fn forced_panic_is_one_clean_line() {
    if std::env::var_os("RESOURCE_BIN_DIR").is_some() {
        return; // release binaries in the image have no forced-panic switch
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in
        [("check", vec![]), ("in", vec![dir.path().to_str().unwrap()]), ("out", vec![dir.path().to_str().unwrap()])]
    {
        let run = run_resource(name, &args, "", &[("CF_BG_FORCE_PANIC", name)]);
        run.assert_clean_failure("internal error: forced panic");
        assert_eq!(run.stderr.trim().lines().count(), 1, "exactly one line: {}", run.stderr);
    }
}

#[test]
fn secrets_never_printed_in_any_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = source();
    bad["colour"] = json!("pw-never-printed");
    let run = run_resource("out", &[dir.path().to_str().unwrap()], &request(bad, None, None), &[]);
    assert!(!run.stderr.contains("pw-never-printed"), "{}", run.stderr);
}
