//! `check` against cf-sim: the real binary reports what runs in production (`[]` before anything does), keeps
//! the version while production is unchanged, reports a hand-made restage as a new version, follows a deploy
//! through its housekeeping renames without reporting an unswapped candidate, never makes more than three
//! requests (discovery, token, one app list), and fails in one line when it cannot log in or connect.

use std::time::Duration;

use crate::util::run_resource;
use crate::util::sim::{
    check_request, connect, describe_requests, home_space, push, resource_requests, restage, sample_app_dir,
    sample_manifest, source, start_sim, start_sim_with,
};
use cf_blue_green_resource::cf::CfClient;
use cf_blue_green_resource::cf::types::MetadataPatch;
use cf_blue_green_resource::protocol::BuildEnv;
use cf_blue_green_resource::record::{Journal, Phase, journal};
use cf_sim::Sim;
use serde_json::{Value, json};

/// The most requests one check may make: `GET /`, the token, one app list.
const MAX_CHECK_REQUESTS: usize = 3;

/// Runs `check` and returns its stdout (asserting success, a JSON array, and the request budget).
fn check(sim: &Sim, source: &Value) -> String {
    check_from(sim, source, None)
}

fn check_from(sim: &Sim, source: &Value, version: Option<&Value>) -> String {
    sim.reset_request_log();
    let run = run_resource("check", &[], &check_request(source, version), &[]);
    assert_eq!(run.status, 0, "check failed:\n{}", run.stderr);
    let requests = resource_requests(sim);
    eprintln!("check made {} requests:\n{}", requests.len(), describe_requests(&requests));
    assert!(
        requests.len() <= MAX_CHECK_REQUESTS,
        "check made {} requests:\n{}",
        requests.len(),
        describe_requests(&requests)
    );
    let versions: Value = serde_json::from_str(&run.stdout).expect("check prints JSON");
    assert!(versions.is_array(), "{}", run.stdout);
    run.stdout
}

fn versions(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap()
}

/// Writes a deploy journal in `phase` on the app (as `out` does on `<app>-green`).
async fn set_journal(cf: &CfClient, app_guid: &str, phase: Phase, blue: Option<&str>) {
    let mut journal = Journal::new(&BuildEnv::default(), Duration::from_secs(600));
    journal.phase = phase;
    journal.verified = phase >= Phase::Swapping;
    journal.blue_guid = blue.map(str::to_owned);
    let patch = MetadataPatch { annotations: journal.to_annotations(), ..MetadataPatch::default() };
    cf.apps().update_metadata(app_guid, &patch).await.unwrap();
}

#[tokio::test]
async fn check_reports_production_and_changes_only_when_production_does() {
    let sim = start_sim();
    let source = source(&sim, "shop");
    assert_eq!(check(&sim, &source), "[]\n", "nothing is deployed yet");

    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let bits = sample_app_dir();
    let shop = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;

    let first = check(&sim, &source);
    assert_eq!(versions(&first), json!([shop.version()]));
    assert_eq!(check(&sim, &source), first, "the same deployment gives byte-identical output");
    assert_eq!(check_from(&sim, &source, Some(&shop.version())), first, "with the known version passed in");

    let restaged = restage(&cf, &shop.app_guid).await;
    assert_ne!(restaged, shop.droplet_guid);
    let after = check(&sim, &source);
    assert_eq!(versions(&after), json!([{"app_guid": shop.app_guid, "droplet_guid": restaged}]));
    assert_eq!(check_from(&sim, &source, Some(&shop.version())), after, "the old version is not repeated");
}

#[tokio::test]
async fn check_follows_a_deploy_through_its_renames() {
    let sim = start_sim();
    let source = source(&sim, "shop");
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let bits = sample_app_dir();
    let blue = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;
    let green = push(&cf, &space, &sample_manifest(&sim, "shop-green", 1, &[("APP_VERSION", "v2")]), bits.path()).await;

    // While the candidate is pushed and verified, production is still the app called shop.
    set_journal(&cf, &green.app_guid, Phase::Verifying, Some(&blue.app_guid)).await;
    assert_eq!(versions(&check(&sim, &source)), json!([blue.version()]));

    // Housekeeping renames blue away first; the swapped-in candidate is production until it is renamed.
    cf.apps().rename(&blue.app_guid, "shop-previous").await.unwrap();
    set_journal(&cf, &green.app_guid, Phase::Housekeeping, Some(&blue.app_guid)).await;
    let during = check(&sim, &source);
    assert_eq!(versions(&during), json!([green.version()]));
    set_journal(&cf, &green.app_guid, Phase::Swapped, Some(&blue.app_guid)).await;
    assert_eq!(check(&sim, &source), during);

    // A candidate that has not been swapped in is never production, even with shop missing.
    for phase in [Phase::Pushing, Phase::Verifying, Phase::Swapping] {
        set_journal(&cf, &green.app_guid, phase, Some(&blue.app_guid)).await;
        assert_eq!(check(&sim, &source), "[]\n", "phase {phase}");
    }
    // Nor is a shop-green this resource did not make.
    let cleared = MetadataPatch { annotations: journal::cleared(), ..MetadataPatch::default() };
    cf.apps().update_metadata(&green.app_guid, &cleared).await.unwrap();
    assert_eq!(check(&sim, &source), "[]\n");

    // The end of housekeeping: the candidate is renamed to shop; the version does not change (no flapping).
    set_journal(&cf, &green.app_guid, Phase::Housekeeping, Some(&blue.app_guid)).await;
    assert_eq!(check(&sim, &source), during);
    cf.apps().rename(&green.app_guid, "shop").await.unwrap();
    cf.apps().update_metadata(&green.app_guid, &cleared).await.unwrap();
    assert_eq!(check(&sim, &source), during);
}

#[tokio::test]
async fn check_finds_the_app_by_org_and_space_names_ignoring_case() {
    let sim = start_sim_with(|c| c.extra_spaces = vec!["sim-org/staging".into()]);
    let cf = connect(&sim).await;
    let bits = sample_app_dir();
    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    let staging = cf.spaces().require_by_name(&org.guid, "staging").await.unwrap();
    push(&cf, &staging, "applications:\n- name: shop\n  no-route: true\n", bits.path()).await;

    // An app of that name in another space is not this resource's production.
    sim.reset_request_log();
    let run = run_resource("check", &[], &check_request(&source(&sim, "shop"), None), &[]);
    assert_eq!((run.status, run.stdout.as_str()), (0, "[]\n"), "{}", run.stderr);
    assert!(run.stderr.contains("there is one in organization 'sim-org', space 'staging'"), "{}", run.stderr);

    let space = home_space(&cf, &sim).await;
    let shop = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;
    let mut shouting = source(&sim, "SHOP");
    shouting["organization"] = json!("SIM-ORG");
    shouting["space"] = json!("Sim-Space");
    assert_eq!(versions(&check(&sim, &shouting)), json!([shop.version()]));
}

#[tokio::test]
async fn check_failures_are_one_clear_line() {
    let sim = start_sim();
    let mut wrong = source(&sim, "shop");
    wrong["password"] = json!("not-the-password-7f3a");
    let run = run_resource("check", &[], &check_request(&wrong, None), &[]);
    run.assert_clean_failure(&format!("user '{}'", sim.info().username));
    assert!(!run.stderr.contains("not-the-password-7f3a"), "{}", run.stderr);

    let tls = start_sim_with(|c| c.tls = true);
    let mut untrusted = source(&tls, "shop");
    untrusted.as_object_mut().unwrap().remove("ca_cert");
    let run = run_resource("check", &[], &check_request(&untrusted, None), &[]);
    run.assert_clean_failure("certificate");
    assert_eq!(versions(&check(&tls, &source(&tls, "shop"))), json!([]), "trusted with source.ca_cert");

    // Nothing listens on a port just released (the client retries a refused connection for a few seconds).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut unreachable = source(&sim, "shop");
    unreachable["api"] = json!(format!("http://127.0.0.1:{port}"));
    let run = run_resource("check", &[], &check_request(&unreachable, None), &[]);
    run.assert_clean_failure("Connection refused");
    assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
}
