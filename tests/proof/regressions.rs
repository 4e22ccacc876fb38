//! The bugs the matrices found, each pinned by a direct case (the matrices only reach them with `PROOF_FULL`):
//!
//! 1. A failure just after taking the lock (reading production, planning, writing the journal) returned
//!    without cleaning up: `<app>-green` stayed, and the next deploy had to wait for the lease to run out.
//! 2. A failure after the swap said nothing of the swap: the put failed while production already ran the new
//!    version, and the message did not say so, nor that the next deploy would finish.
//! 3. When applying the candidate's manifest failed after CF had created its temporary route, the route was
//!    left behind (its guid was not known yet).
//! 4. A journal write that CF processes after the client gave up on it lands on an app that is no longer a
//!    candidate; such stale journal keys stayed on `<app>-previous` forever.
//! 5. A deploy that waited for the lock longer than its lease wrote a journal that was already stale when it
//!    took the lock (the lease counted from when it started waiting): the other waiting deploys "recovered"
//!    the live deploy — deleting its candidate — and the deploys failed each other (five simultaneous puts).

use std::collections::BTreeMap;
use std::time::Duration;

use cf_blue_green_resource::cf::RetryPolicy;
use cf_blue_green_resource::cf::apps::NewApp;
use cf_blue_green_resource::cf::types::MetadataPatch;
use cf_blue_green_resource::protocol::BuildEnv;
use cf_blue_green_resource::record::candidate_metadata;
use cf_blue_green_resource::record::{Journal, Phase};
use cf_sim::{Fault, FaultAction};

use crate::harness::{APP, Lane, LaneConfig, Outcome, assert_clean_outcome, wait_for_line};
use crate::util::sim::connect;

/// HTTP 500 on the first request matching `method path`, and on each retry of it.
fn failing(method: &str, path: &str) -> Fault {
    Fault {
        method: Some(method.into()),
        path: path.into(),
        nth: 1,
        times: u64::from(RetryPolicy::default().max_attempts),
        action: FaultAction::Status { status: 500, code: None, title: None, detail: Some("injected".into()) },
    }
}

/// Deploys with `fault`; returns the error line.
fn failing_deploy(lane: &mut Lane, fault: Fault) -> (String, String) {
    let version = lane.next_version("regression");
    lane.sim.clear_faults();
    lane.sim.add_fault(fault);
    let run = lane.out(&version, &[]);
    lane.sim.clear_faults();
    match assert_clean_outcome(&run, "the deploy with the fault") {
        Outcome::Failed(line) => (line, run.stderr),
        Outcome::Succeeded => panic!("the fault did not fail the deploy:\n{}", run.stderr),
    }
}

/// The next deploy succeeds; returns whether it had to recover a dead deploy first.
fn next_deploy_recovers(lane: &mut Lane) -> bool {
    let version = lane.next_version("next");
    let run = lane.out(&version, &[]);
    if let Outcome::Failed(line) = assert_clean_outcome(&run, "the next deploy") {
        panic!("the next deploy failed: {line}\n{}", run.stderr);
    }
    lane.assert_settled(&version, "after the next deploy");
    run.stderr.contains("recovery:")
}

#[test]
fn each_bug_the_matrices_found_stays_fixed() {
    let mut lane = Lane::new(LaneConfig::default());
    let mark = lane.mark();

    // 1. Reading production's manifest fails right after the lock is taken: the lock is released at once.
    let (line, stderr) = failing_deploy(&mut lane, failing("GET", "/v3/apps/*/manifest"));
    assert!(line.contains("deploy failed in phase lock"), "{line}");
    lane.assert_only_production("right after a failure under the lock");
    assert!(stderr.contains("production is untouched"), "{stderr}");
    assert!(!next_deploy_recovers(&mut lane), "nothing was left for the next deploy to recover");

    // 2. Stopping the old version fails in the housekeeping: the error says production runs the new version.
    let (line, _) = failing_deploy(&mut lane, failing("POST", "/v3/apps/*/actions/stop"));
    assert!(
        line.contains("deploy failed in phase housekeeping after the swap: production already runs myapp-green"),
        "{line}"
    );
    assert!(line.contains("the next deploy finishes the housekeeping"), "{line}");
    assert!(next_deploy_recovers(&mut lane), "the next deploy finishes the housekeeping");

    // 3. Polling the apply_manifest job fails after CF created the temporary route: no route is left. A wait has
    // up to two polls in flight, each retrying on its own: 2 × attempts − 1 failures exhaust one of them whatever
    // their order, and leave too few to exhaust a poll of the clean-up.
    let attempts = u64::from(RetryPolicy::default().max_attempts);
    let (line, _) = failing_deploy(&mut lane, Fault { times: 2 * attempts - 1, ..failing("GET", "/v3/jobs/*") });
    assert!(line.contains("deploy failed in phase push: applying the manifest"), "{line}");
    lane.assert_only_production("right after applying the manifest failed");

    // 4. A late journal write put journal keys on production; they do not follow it into myapp-previous.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(&lane.sim).await;
        let state = lane.sim.state_dump();
        let production = state["apps"].as_array().unwrap().iter().find(|a| a["name"] == APP).unwrap();
        let mut journal = Journal::new(&BuildEnv::default(), Duration::from_secs(60));
        journal.phase = Phase::Verifying;
        journal.temp_route = Some("0d9a6c2e-5bd1-4f4e-a0d4-1b7d2e6f8a90".into());
        let patch = MetadataPatch { labels: BTreeMap::new(), annotations: journal.to_annotations() };
        cf.apps().update_metadata(production["guid"].as_str().unwrap(), &patch).await.unwrap();
    });
    next_deploy_recovers(&mut lane);

    lane.assert_served_since(mark, "the regression cases");
    let report = lane.finish();
    assert!(report.failures().is_empty(), "{}", report.describe_failures());
}

#[test]
fn a_deploy_that_waited_longer_than_its_lease_holds_a_fresh_lock() {
    let mut lane = Lane::new(LaneConfig::default());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cf = runtime.block_on(connect(&lane.sim));
    let space = runtime.block_on(crate::util::sim::home_space(&cf, &lane.sim));
    // Another deploy holds the lock (alive: its lease is long).
    let theirs = Journal::new(&BuildEnv { name: Some("1".into()), ..BuildEnv::default() }, Duration::from_secs(600));
    let new_app = NewApp {
        name: format!("{APP}-green"),
        space_guid: space.guid.clone(),
        metadata: candidate_metadata(&theirs),
        ..NewApp::default()
    };
    let holder = runtime.block_on(cf.apps().create(&new_app)).unwrap();

    // This deploy (lease 4 s) waits longer than its lease, then gets the lock.
    let version = lane.next_version("waited");
    let mut running = lane.spawn_out(&version, &[], None);
    wait_for_line(&mut running, "waiting for the lock", |l| l.starts_with("waiting for the deploy lock"));
    std::thread::sleep(Duration::from_secs(6));
    // Hold the deploy just after it takes the lock (its next app list is slow), to read the journal it took
    // the lock with before it writes the next one.
    lane.sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/apps".into(),
        nth: 1,
        times: 0,
        action: FaultAction::Delay { ms: 1500 },
    });
    runtime.block_on(cf.apps().delete_within(&holder.guid, Duration::from_secs(30))).unwrap();
    wait_for_line(&mut running, "taking the lock", |l| l.trim_start().starts_with("holding the deploy lock"));
    let state = lane.sim.state_dump();
    lane.sim.clear_faults();
    let green = state["apps"].as_array().unwrap().iter().find(|a| a["name"] == format!("{APP}-green")).unwrap();
    let annotations: BTreeMap<String, String> =
        serde_json::from_value(green["metadata"]["annotations"].clone()).unwrap();
    let journal = Journal::from_annotations(&annotations).unwrap().unwrap();
    assert!(
        !journal.is_stale(std::time::SystemTime::now()),
        "the journal of a lock just taken is fresh (renewed at {:?}, lease {:?})",
        journal.renewed_at,
        journal.lease
    );
    let run = running.wait(Lane::PUT_LIMIT);
    if let Outcome::Failed(line) = assert_clean_outcome(&run, "the deploy that waited") {
        panic!("{line}\n{}", run.stderr);
    }
    lane.assert_settled(&version, "after the deploy that waited");
    let report = lane.finish();
    assert!(report.failures().is_empty(), "{}", report.describe_failures());
}
