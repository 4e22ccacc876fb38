//! The kill matrix: `out` is SIGKILLed (as a worker crash or an OOM kill ends it) at every phase boundary (the
//! deploys run a migration task: before, while and after it runs too), at every step of the swap and the
//! housekeeping, and at seeded random instants of a deploy. Production must
//! serve every probe request throughout (a candidate killed before the swap never serving it), and the next
//! `out` must recover from the journal and deploy, leaving exactly `myapp` and `myapp-previous` and only the
//! production route, with production's network and route policies and none of a deleted app. Deploys with a canary are killed at each of its steps too: the candidate serves beside
//! production then, and the next `out` unmaps it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{self, Lane, LaneConfig, Outcome, Rng, assert_clean_outcome};
use crate::util::summary;

/// Where to kill: right after `out` printed a line matching the point.
#[derive(Clone, Debug)]
enum Point {
    /// A line starting with (after trimming) this text.
    Line(&'static str),
    /// This long after `out` started.
    After(Duration),
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Line(line) => write!(f, "after \"{line}…\""),
            Point::After(at) => write!(f, "at +{}ms", at.as_millis()),
        }
    }
}

impl Point {
    /// Whether `out` dies before its swap begins, so its candidate must never have served production.
    fn before_the_swap(&self) -> bool {
        let Point::Line(line) = self else { return false };
        let lines: Vec<&str> = boundaries()
            .iter()
            .filter_map(|point| match point {
                Point::Line(line) => Some(*line),
                Point::After(_) => None,
            })
            .collect();
        let swap = lines.iter().position(|l| *l == "[5/7] Swapping production routes").expect("the swap's header");
        lines.iter().position(|l| l == line).is_some_and(|at| at < swap)
    }
}

/// Every phase header and every step of the swap and housekeeping a deploy of `myapp` prints, in order.
fn boundaries() -> Vec<Point> {
    vec![
        Point::Line("[2/7] Taking the deploy lock"),
        Point::Line("holding the deploy lock"),
        Point::Line("[3/7] Pushing"),
        Point::Line("applying the manifest"),
        Point::Line("staging myapp-green"),
        Point::Line("running the task 'migrate'"),
        Point::Line("│ migrating to"),
        Point::Line("the task 'migrate' succeeded"),
        // Production's route policy is created right after this line, and its network policy after the next.
        Point::Line("carrying 1 route policies of production to myapp-green"),
        Point::Line("carrying 1 network policies of production to myapp-green"),
        Point::Line("myapp-green is running"),
        Point::Line("[4/7] Verifying"),
        Point::Line("[5/7] Swapping production routes"),
        Point::Line("mapped myapp."),
        Point::Line("unmapped the previous version"),
        Point::Line("deleted the temporary route"),
        Point::Line("[6/7] Draining"),
        Point::Line("[7/7] Housekeeping"),
        Point::Line("stopped myapp"),
        Point::Line("deleted the older myapp-previous"),
        Point::Line("renamed myapp to myapp-previous"),
        Point::Line("renamed myapp-green to myapp"),
    ]
}

/// The params of the kill matrix's deploys: the lane's, with a migration task that is still running a second after it
/// printed its line (so a kill on that line lands while it runs).
fn params(lane: &Lane, version: &str) -> serde_json::Value {
    let mut params = lane.params(version);
    params["task"] = json!({"command": "echo migrating to $APP_VERSION; sleep 1"});
    params
}

/// Every step of a canary a deploy of `myapp` (two instances) prints, in order, and the swap after it.
fn canary_steps() -> Vec<Point> {
    vec![
        Point::Line("[5/8] Canary: myapp-green beside myapp"),
        Point::Line("scaled myapp-green to 1 instance(s) for the canary"),
        Point::Line("mapped myapp."),
        Point::Line("canary: myapp-green serves beside myapp"),
        Point::Line("canary 1"),
        Point::Line("canary: myapp-green passed on"),
        Point::Line("myapp-green is at full size"),
        Point::Line("[6/8] Swapping production routes"),
    ]
}

/// The params of a deploy with a short canary that a good candidate passes on the probe's traffic.
fn canary_params(lane: &Lane, version: &str) -> serde_json::Value {
    let mut params = lane.params(version);
    params["canary"] = json!({"duration": "3s", "max_error_rate": 0.5, "min_requests": 5});
    params
}

/// Kills a deploy with `params` at `point`, then deploys again; returns a one-line description.
fn kill_and_recover(lane: &mut Lane, point: &Point, params: fn(&Lane, &str) -> serde_json::Value) -> String {
    let killed_version = lane.next_version("killed");
    let mark = lane.mark();
    let started = Instant::now();
    let (hook, killed_on_line) = match point {
        Point::Line(text) => {
            let text: &'static str = text;
            let (hook, killed) = harness::kill_on(move |line| line.trim_start().starts_with(text));
            (Some(hook), killed)
        }
        Point::After(_) => (None, Arc::default()),
    };
    let mut running = lane.spawn_out_with(params(lane, &killed_version), &[], hook);
    let reached = match point {
        Point::Line(_) => {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !running.exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            killed_on_line.load(Ordering::SeqCst)
        }
        Point::After(at) => {
            while started.elapsed() < *at && !running.exited() {
                std::thread::sleep(Duration::from_millis(1));
            }
            true
        }
    };
    let killed_at = started.elapsed();
    let finished_first = matches!(point, Point::After(_)) && running.exited();
    let killed = running.kill();
    assert!(reached, "{point}: the deploy never got there:\n{}", killed.stderr);
    let last_step = killed.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();

    let version = lane.next_version("after-kill");
    let rerun = lane.out_with(params(lane, &version), &[]);
    let context = format!("killed {point}");
    if let Outcome::Failed(line) = assert_clean_outcome(&rerun, &context) {
        panic!(
            "{context}: the next deploy failed: {line}\nkilled deploy:\n{}\nnext deploy:\n{}",
            killed.stderr, rerun.stderr
        );
    }
    lane.assert_settled(&version, &context);
    let probe = lane.assert_served_since(mark, &context);
    if point.before_the_swap() {
        let served = probe.versions();
        assert!(!served.contains(&killed_version), "{context}: the killed candidate served production: {served:?}");
    }
    let recovery = rerun.stderr.lines().find(|l| l.starts_with("recovery:")).unwrap_or("no recovery needed").to_owned();
    summary::record(
        "kills",
        json!({"killed": 1, "recovered": 1, "point": point.to_string(), "at_ms": killed_at.as_millis() as u64,
               "last_line": last_step, "recovery": recovery, "probe_requests": probe.total()}),
    );
    format!(
        "killed {point} (+{}ms{}; last line \"{last_step}\"); {recovery}; next deploy ok; {} probe requests, 0 failed",
        killed_at.as_millis(),
        if finished_first { ", it had already finished" } else { "" },
        probe.total()
    )
}

#[test]
fn a_deploy_killed_at_any_moment_is_recovered_by_the_next_one() {
    let _heavy = harness::heavy();
    let mut rng = Rng::seeded("kill matrix");
    let lane = Lane::new(LaneConfig::default());
    let typical = lane.last_deploy;
    eprintln!("a deploy takes {}ms here", typical.as_millis());

    let (boundaries, random) = if harness::full() { (boundaries(), 20) } else { (rng.sample(&boundaries(), 3), 2) };
    let mut points = boundaries;
    for _ in 0..random {
        points.push(Point::After(Duration::from_millis(rng.below(typical.as_millis() as u64 + 1))));
    }
    let lanes = if harness::full() { 3 } else { 2 };
    let failed = ("kills", json!({"killed": 1, "recovered": 0}));
    harness::run_on_lanes("kill matrix", failed, &points, lanes, Some(lane), |lane, point| {
        kill_and_recover(lane, point, params)
    });
}

#[test]
fn a_deploy_killed_during_its_canary_is_recovered_by_the_next_one() {
    let _heavy = harness::heavy();
    let mut rng = Rng::seeded("canary kill matrix");
    // Two instances, so the candidate is scaled down for the canary and back up after it.
    let lane = Lane::new(LaneConfig { instances: 2, ..LaneConfig::default() });
    let points = if harness::full() { canary_steps() } else { rng.sample(&canary_steps(), 3) };
    let failed = ("kills", json!({"killed": 1, "recovered": 0}));
    harness::run_on_lanes("canary kill matrix", failed, &points, 2, Some(lane), |lane, point| {
        kill_and_recover(lane, point, canary_params)
    });
}

/// Kills a put of `params` once it prints a line starting with `line`; returns its log.
fn kill_at_line(lane: &Lane, params: serde_json::Value, line: &'static str) -> String {
    let (hook, killed) = harness::kill_on(move |printed| printed.trim_start().starts_with(line));
    let mut running = lane.spawn_out_with(params, &[], Some(hook));
    let deadline = Instant::now() + Lane::PUT_LIMIT;
    while !running.exited() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let run = running.kill();
    assert!(killed.load(Ordering::SeqCst), "the put never printed \"{line}…\":\n{}", run.stderr);
    run.stderr
}

/// The held phase: a put with `hold` killed once its journal says `held` is just held — past its lease no deploy
/// recovers it (one is refused, naming the holder), and the next promote swaps it in. A promote killed while it
/// verifies the candidate again is recovered by the next deploy like a deploy that died verifying. Production
/// serves every probe request throughout.
#[test]
fn a_held_put_killed_is_still_held_and_a_killed_promote_is_recovered() {
    let _heavy = harness::heavy();
    let mut lane = Lane::new(LaneConfig::default());
    let mark = lane.mark();
    let acting =
        |lane: &Lane| json!({"promote": true, "drain": lane.config.drain, "lock_lease": lane.config.lock_lease});

    let held = lane.next_version("held");
    let mut hold = lane.params(&held);
    hold["hold"] = json!(true);
    kill_at_line(&lane, hold.clone(), "Summary");
    // Longer than the lease: a dead deploy's lock would be taken over by now.
    std::thread::sleep(Duration::from_secs(5));
    let blocked = lane.next_version("blocked");
    let blocked = lane.out(&blocked, &[]);
    match assert_clean_outcome(&blocked, "a deploy while held") {
        Outcome::Failed(line) => assert!(line.contains("is held for approval by"), "{line}"),
        Outcome::Succeeded => panic!("a deploy ran over the held candidate:\n{}", blocked.stderr),
    }
    let promoted = lane.out_with(acting(&lane), &[]);
    if let Outcome::Failed(line) = assert_clean_outcome(&promoted, "the promote after a killed hold") {
        panic!("the promote failed: {line}\n{}", promoted.stderr);
    }
    lane.assert_settled(&held, "promoted after the held put was killed");
    summary::record("kills", json!({"killed": 1, "recovered": 1, "point": "a held put after writing held"}));

    let again = lane.next_version("held-again");
    hold["environment_variables"]["APP_VERSION"] = json!(again);
    let run = lane.out_with(hold, &[]);
    assert!(matches!(assert_clean_outcome(&run, "the second hold"), Outcome::Succeeded), "{}", run.stderr);
    kill_at_line(&lane, acting(&lane), "[3/6] Verifying");
    let version = lane.next_version("after-killed-promote");
    let rerun = lane.out(&version, &[]);
    if let Outcome::Failed(line) = assert_clean_outcome(&rerun, "the deploy after a killed promote") {
        panic!("the deploy after a killed promote failed: {line}\n{}", rerun.stderr);
    }
    assert!(rerun.stderr.contains("recovery: remove the unfinished candidate"), "{}", rerun.stderr);
    lane.assert_settled(&version, "deployed after a killed promote");
    summary::record("kills", json!({"killed": 1, "recovered": 1, "point": "a promote while verifying again"}));
    let probe = lane.assert_served_since(mark, "hold, promote and their kills");
    assert!(!probe.versions().contains(&again), "the candidate whose promote was killed never served production");
}
