//! Simultaneous puts of different versions of the same app (builds of different pipelines or jobs): they
//! serialize through the lock (`<app>-green`), each naming the build it waits for and none taking a live
//! holder for dead, every one deploys in turn, their swaps never interleave, and production ends consistently
//! on the last one — `check` reports it, the router serves it, and `<app>-previous` is the one before it. The
//! probe load sees no failed request.

use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::{Value, json};

use crate::harness::{self, APP, Lane, LaneConfig, Outcome, assert_clean_outcome};
use crate::util::sim::{check_request, destination_changes, source};
use crate::util::{Run, run_resource, summary};

fn simultaneous_puts(count: usize) {
    let _heavy = harness::heavy();
    let mut lane = Lane::new(LaneConfig { lock_lease: "6s", probe_rate: 50, ..LaneConfig::default() });
    let mark = lane.mark();
    lane.sim.reset_request_log();
    let started = Instant::now();
    let builds: Vec<(String, String, String)> = (0..count)
        .map(|i| {
            let name = format!("{}", 100 + i);
            let url = format!("https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/{name}");
            (lane.next_version(&format!("concurrent-{i}")), name, url)
        })
        .collect();
    let mut running: Vec<_> = builds
        .iter()
        .map(|(version, name, url)| {
            let env = [("BUILD_NAME", name.as_str()), ("BUILD_ID", name.as_str()), ("BUILD_URL", url.as_str())];
            Some(lane.spawn_out(version, &env, None))
        })
        .collect();
    // Collect them in the order they finish.
    let mut finished: Vec<(usize, Run, Duration)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60 * count as u64);
    while finished.len() < count {
        assert!(Instant::now() < deadline, "the puts did not all finish");
        for (i, slot) in running.iter_mut().enumerate() {
            if slot.as_mut().is_some_and(|r| r.exited()) {
                finished.push((i, slot.take().unwrap().wait(Lane::PUT_LIMIT), started.elapsed()));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let allowed = [
        Regex::new(r"^\[2/7\] Taking the deploy lock \(myapp-green\)").unwrap(),
        Regex::new(r"^holding the deploy lock: myapp-green \([0-9a-f-]{36}\)$").unwrap(),
        Regex::new(
            r"^waiting for the deploy lock: myapp-green is held by main/shop/deploy #(\d+) \(https://ci\.example\.com/teams/main/pipelines/shop/jobs/deploy/builds/(\d+)\) \(phase (pushing|verifying|swapping|swapped|housekeeping), waited [0-9.]+m?s\)$",
        )
        .unwrap(),
    ];
    let mut waited = 0;
    let mut versions = Vec::new();
    for (i, run, at) in &finished {
        let (version, name, _) = &builds[*i];
        let context = format!("put #{name} ({version})");
        if let Outcome::Failed(line) = assert_clean_outcome(run, &context) {
            panic!("{context} failed: {line}\n{}", run.stderr);
        }
        let mut waits = 0;
        for line in run.stderr.lines().map(str::trim).filter(|l| l.contains("deploy lock") || l.contains("lease")) {
            let matched = allowed.iter().find_map(|re| re.captures(line));
            let captures = matched.unwrap_or_else(|| panic!("{context}: an unexpected lock message: {line:?}"));
            if let (Some(holder), Some(url_build)) = (captures.get(1), captures.get(2)) {
                assert_ne!(holder.as_str(), name, "{context} waits for itself: {line}");
                assert_eq!(holder.as_str(), url_build.as_str(), "{context}: holder and build URL disagree: {line}");
                waits += 1;
            }
        }
        waited += usize::from(waits > 0);
        assert!(!run.stderr.contains("recovering"), "{context}: every holder was alive all along:\n{}", run.stderr);
        let answer: Value = serde_json::from_str(&run.stdout).unwrap();
        eprintln!("{context}: finished at +{:.1}s, waited for the lock: {}", at.as_secs_f64(), waits > 0);
        versions.push((version.clone(), answer["version"].clone()));
    }
    assert!(waited >= count - 1, "{} of {count} puts said they waited for the lock", waited);

    // One swap after the other: each put maps its candidate and unmaps the version before it, and no other put
    // changes a route in between.
    let changes: Vec<String> = destination_changes(&lane.sim).into_iter().map(|r| r.method).collect();
    assert_eq!(changes, ["POST", "DELETE"].repeat(count), "the swaps never interleave");

    // Production is the put that finished last; the one before it is kept as previous.
    let (last_version, last) = versions.last().unwrap().clone();
    lane.assert_settled(&last_version, "after the concurrent puts");
    let check = run_resource("check", &[], &check_request(&source(&lane.sim, APP), None), &[]);
    assert_eq!(serde_json::from_str::<Value>(&check.stdout).unwrap(), json!([last]), "{}", check.stderr);
    let state = lane.sim.state_dump();
    let previous = state["apps"].as_array().unwrap().iter().find(|a| a["name"] == "myapp-previous").unwrap();
    assert_eq!(
        previous["guid"],
        versions[count - 2].1["app_guid"],
        "the put that finished before the last is previous"
    );

    let probe = lane.assert_served_since(mark, "concurrent puts");
    let report = lane.finish();
    eprintln!("{count} simultaneous puts in {:.1}s; probe: {}", started.elapsed().as_secs_f64(), report.describe());
    summary::record(
        "concurrency",
        json!({"puts": count, "succeeded": count, "serialized": true, "probe_requests": probe.total(), "failed": 0}),
    );
    summary::record(
        "zero-downtime",
        json!({"test": format!("{count} concurrent puts probe"), "requests": report.total(), "failed": report.failures().len()}),
    );
}

#[test]
fn two_simultaneous_puts_serialize_through_the_lock() {
    simultaneous_puts(2);
}

#[test]
fn five_simultaneous_puts_serialize_through_the_lock() {
    simultaneous_puts(5);
}
