//! Secrets never reach the build log. Every run of a binary in every test is scanned (`util::secrets`, called
//! by `run_resource` and `spawn_resource`); here the scanner is shown to catch what it must — a token in JSON,
//! a URL-encoded password, a secret env value — and the most talkative runs are made: `verbose: true` traces
//! of check, in and out with client credentials, a secret env value and a docker password, and a failing
//! deploy that prints the candidate's logs.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{self, random_hex};
use crate::util::deploy::{BUILD_ENV, PutDir, manifest};
use crate::util::run_resource;
use crate::util::secrets::{self, Secret};
use crate::util::sim::{check_request, in_request, source, start_sim_with};

#[test]
fn the_scanner_catches_every_form_of_a_leak() {
    let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    let secrets = [
        Secret { what: "token".into(), value: token.into() },
        Secret { what: "password".into(), value: "p@ss w/ord&1".into() },
    ];
    assert!(secrets::leaks(&secrets, &[("stderr", "all fine")]).is_empty());
    for leaked in [
        format!("Authorization: bearer {token}"),
        format!("{{\"access_token\":\"{token}\"}}"),
        "password=p%40ss%20w%2Ford%261".to_owned(),
        "{\"password\":\"p@ss w/ord&1\"}".to_owned(),
    ] {
        let found = secrets::leaks(&secrets, &[("stderr", &leaked)]);
        assert_eq!(found.len(), 1, "{leaked}: {found:?}");
        assert!(!found[0].contains("w/ord"), "the report never prints the secret whole: {found:?}");
    }
    // A run whose output holds a secret fails its test.
    let stdin = json!({"source": {"password": "pw-planted-in-the-output"}}).to_string();
    let found = secrets::leaks(&secrets::secrets_of(&stdin, &[]), &[("stderr", "error: pw-planted-in-the-output")]);
    let verdict = secrets::verdict("out", &found);
    assert!(verdict.as_ref().is_err_and(|why| why.contains("source.password")), "a leak fails the test: {verdict:?}");
}

#[test]
fn the_most_talkative_runs_leak_nothing() {
    let _heavy = harness::heavy();
    let sim = start_sim_with(|c| c.token_ttl_secs = 3);
    let info = sim.info().clone();
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let mut client_source = source(&sim, "myapp");
    let object = client_source.as_object_mut().unwrap();
    object.remove("username");
    object.remove("password");
    object.insert("client_id".into(), json!(info.client_id));
    object.insert("client_secret".into(), json!(info.client_secret));
    object.insert("verbose".into(), json!(true));
    let secret_value = format!("proof-secret-env-{}", random_hex());
    let params = |version: &str| {
        json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s",
               "environment_variables": {"APP_VERSION": version},
               "secret_environment_variables": {"API_KEY": secret_value, "DB_PASSWORD": format!("db-{secret_value}")}})
    };
    let out = |source: &Value, params: Value| {
        run_resource(
            "out",
            &[put.path().to_str().unwrap()],
            &json!({"source": source, "params": params}).to_string(),
            BUILD_ENV,
        )
    };

    // Verbose deploys with client credentials; tokens live 3 s, so they are refreshed on the way.
    let first = out(&client_source, params("v1"));
    assert_eq!(first.status, 0, "{}", first.stderr);
    std::thread::sleep(Duration::from_secs(2));
    let second = out(&client_source, params("v2"));
    assert_eq!(second.status, 0, "{}", second.stderr);
    assert!(second.stderr.contains("GET /v3/apps"), "verbose traces every request:\n{}", second.stderr);
    let version: Value = serde_json::from_str::<Value>(&second.stdout).unwrap()["version"].clone();

    // check and in, verbose, with the user's password too.
    let mut user_source = source(&sim, "myapp");
    user_source["verbose"] = json!(true);
    let check = run_resource("check", &[], &check_request(&user_source, None), &[]);
    assert_eq!(check.status, 0, "{}", check.stderr);
    let dir = tempfile::tempdir().unwrap();
    let fetched = run_resource(
        "in",
        &[dir.path().to_str().unwrap()],
        &in_request(&client_source, &version, Some(json!({"download_droplet": true}))),
        &[],
    );
    assert_eq!(fetched.status, 0, "{}", fetched.stderr);
    let metadata = std::fs::read_to_string(dir.path().join("metadata.json")).unwrap();
    let written = secrets::leaks(
        &secrets::secrets_of(&json!({"source": client_source, "params": params("v2")}).to_string(), &[]),
        &[("metadata.json", &metadata)],
    );
    assert!(written.is_empty(), "in wrote secrets into metadata.json: {written:?}");

    // A failing deploy prints the candidate's logs; the app prints its environment's names only, but a
    // crashing app could print anything — the values must still be masked.
    let mut crash = params("v3");
    crash["environment_variables"]["CRASH_ON_START"] = json!("true");
    let failed = out(&client_source, crash);
    assert_eq!(failed.status, 1, "{}", failed.stderr);

    // A docker password never shows, even in a failing deploy.
    let docker = json!({"docker_image": "example/app:1", "docker_username": "robot",
                        "docker_password": format!("docker-pw-{}", random_hex()), "drain": "0s"});
    let failed_docker = out(&client_source, docker);
    assert_eq!(failed_docker.status, 1, "{}", failed_docker.stderr);
    eprintln!("{} tokens issued by the sim were looked for in every output", sim.issued_tokens().len());
    assert!(sim.issued_tokens().len() >= 4, "the runs logged in and refreshed tokens");
}
