//! The fault matrix. The API calls of a normal deploy (v1 → v2, production serving) are recorded in order from
//! the sim's request log; then, for each call index k, a deploy runs in which call k fails:
//!
//! - `500`: HTTP 500 on call k and the retries that follow it, past the client's retry budget;
//! - `drop`: the connection of call k is dropped after the sim processed it (the answer is lost);
//! - `timeout`: call k is answered only after the client's request timeout (made 1 s with
//!   `CF_BG_REQUEST_TIMEOUT`); the sim still processes it late, as CC does.
//!
//! The requests to route policies (production's listed before the lock, one created for the candidate, the older
//! previous version's listed and deleted) fail too, each picked by its method and path (a call index may land on
//! another request, as requests made side by side come in varying order): with a seeded kind each, with every
//! kind under `PROOF_FULL`.
//!
//! The same for the calls of a canary (`params.canary`): from scaling the candidate down for it, through mapping it
//! beside production and reading both apps' traffic from Log Cache, to scaling it back to full size.
//!
//! Plus token expiry at seeded random points: access tokens that live 2–4 s, and a token rejected with
//! `CF-InvalidAuthToken` at a random call. For every case: production served every probe request throughout;
//! `out` succeeded or failed cleanly in one line; a following `out` succeeds; afterwards exactly `myapp` and
//! `myapp-previous` exist, and only the production route, mapped only to `myapp`.

use std::time::{Duration, Instant};

use cf_blue_green_resource::cf::RetryPolicy;
use cf_sim::{Fault, FaultAction};
use serde_json::json;

use crate::harness::{self, Lane, LaneConfig, Outcome, Rng, assert_clean_outcome};
use crate::util::summary;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Status500,
    Drop,
    Timeout,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Status500 => "500 past the retry budget",
            Kind::Drop => "dropped connection",
            Kind::Timeout => "answer after the client's timeout",
        }
    }
}

/// One recorded API call.
#[derive(Clone, Debug)]
struct Call {
    listener: String,
    method: String,
    template: String,
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.template, self.listener)
    }
}

#[derive(Clone, Debug)]
enum Case {
    /// Call number `index` (from 1) fails like `kind`.
    Call { index: usize, kind: Kind },
    /// The `nth` request (from 1) of `method` to `path` (a fault's pattern) fails like `kind`.
    Request { method: &'static str, path: &'static str, nth: u64, kind: Kind },
    /// Tokens live `ttl_secs`, and the `/v3` call number `rejected_at` is refused with CF-InvalidAuthToken.
    Token { ttl_secs: u64, rejected_at: usize },
}

/// The request timeout the timeout cases give `out`, and how late the sim answers.
const CLIENT_TIMEOUT: &str = "1s";
const LATE_ANSWER: Duration = Duration::from_millis(1600);

fn template(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.len() == 36 && segment.matches('-').count() == 4 { ":guid" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// What the deploys of a matrix send: the lane's params, or those with a canary.
type Params = fn(&Lane, &str) -> serde_json::Value;

fn plain(lane: &Lane, version: &str) -> serde_json::Value {
    lane.params(version)
}

/// A short canary that a good candidate passes on the probe's traffic.
fn with_canary(lane: &Lane, version: &str) -> serde_json::Value {
    let mut params = lane.params(version);
    params["canary"] = json!({"duration": "2s", "max_error_rate": 0.5, "min_requests": 5});
    params
}

/// The calls of one deploy with `params` on `lane`, in order: every request to the API, UAA and Log Cache but
/// the sim's admin API (exactly the requests faults count).
fn record_calls(lane: &mut Lane, params: Params) -> Vec<Call> {
    lane.sim.reset_request_log();
    let version = lane.next_version("record");
    lane.deploy_with(params(lane, &version));
    lane.sim
        .request_log()
        .into_iter()
        .filter(|r| !r.path.starts_with("/_sim"))
        .map(|r| Call { listener: r.listener.to_owned(), method: r.method.clone(), template: template(&r.path) })
        .collect()
}

impl Case {
    /// How the call fails, for the cases of one call.
    fn kind(&self) -> Option<Kind> {
        match self {
            Case::Call { kind, .. } | Case::Request { kind, .. } => Some(*kind),
            Case::Token { .. } => None,
        }
    }
}

/// A fault failing the `nth` request of `method` (any when `None`) to `path` like `kind`.
fn call_fault(method: Option<&str>, path: &str, nth: u64, kind: Kind) -> Fault {
    Fault {
        method: method.map(str::to_owned),
        path: path.into(),
        nth,
        times: match kind {
            Kind::Status500 => u64::from(RetryPolicy::default().max_attempts),
            Kind::Drop | Kind::Timeout => 1,
        },
        action: match kind {
            Kind::Status500 => {
                FaultAction::Status { status: 500, code: None, title: None, detail: Some("injected".into()) }
            }
            Kind::Drop => FaultAction::DropAfter,
            Kind::Timeout => FaultAction::Delay { ms: LATE_ANSWER.as_millis() as u64 },
        },
    }
}

fn fault_for(case: &Case) -> Fault {
    match case {
        Case::Call { index, kind } => call_fault(None, "/**", *index as u64, *kind),
        Case::Request { method, path, nth, kind } => call_fault(Some(method), path, *nth, *kind),
        Case::Token { rejected_at, .. } => Fault {
            method: None,
            path: "/v3/**".into(),
            nth: *rejected_at as u64,
            times: 1,
            action: FaultAction::Status {
                status: 401,
                code: Some(1000),
                title: Some("CF-InvalidAuthToken".into()),
                detail: Some("Invalid Auth Token".into()),
            },
        },
    }
}

/// Runs one case on `lane`; returns a one-line description.
fn run_case(lane: &mut Lane, case: &Case, calls: &[Call], params: Params) -> String {
    let version = lane.next_version("fault");
    let mark = lane.mark();
    let started = Instant::now();
    let description = match case {
        Case::Call { index, kind } => {
            format!("{} at call {index}/{} ({})", kind.label(), calls.len(), calls[index - 1])
        }
        Case::Request { method, path, nth, kind } => format!("{} at {method} {path} number {nth}", kind.label()),
        Case::Token { ttl_secs, rejected_at } => {
            format!("tokens living {ttl_secs}s, and the token rejected at /v3 call {rejected_at}")
        }
    };
    lane.sim.reset_request_log();
    lane.sim.clear_faults();
    if let Case::Token { ttl_secs, .. } = case {
        lane.sim.set_token_ttl(Duration::from_secs(*ttl_secs));
    }
    lane.sim.add_fault(fault_for(case));
    let env: &[(&str, &str)] =
        if case.kind() == Some(Kind::Timeout) { &[("CF_BG_REQUEST_TIMEOUT", CLIENT_TIMEOUT)] } else { &[] };
    let first = lane.out_with(params(lane, &version), env);
    let fired = lane.sim.faults().first().map_or(0, |f| f.fired);
    assert!(fired > 0 || !matches!(case, Case::Request { .. }), "{description}: the request was never made");
    lane.sim.clear_faults();
    if let Case::Token { .. } = case {
        lane.sim.set_token_ttl(Duration::from_secs(1200));
    }
    if case.kind() == Some(Kind::Timeout) {
        // The sim answers the late request after the client gave up; let it land before looking.
        std::thread::sleep(LATE_ANSWER);
    }
    let hit: Vec<String> = lane
        .sim
        .request_log()
        .iter()
        .filter(|r| r.fault.is_some())
        .map(|r| format!("{} {} → {}", r.method, template(&r.path), r.fault.as_deref().unwrap_or_default()))
        .collect();
    let context = format!("{description}: the deploy with the fault");
    let outcome = assert_clean_outcome(&first, &context);
    let mut late_journal = false;
    match &outcome {
        Outcome::Succeeded if case.kind() == Some(Kind::Timeout) => {
            late_journal = lane.assert_only_production_but_late_journal(&format!("{context}, which succeeded"));
        }
        Outcome::Succeeded => lane.assert_settled(&version, &format!("{context}, which succeeded")),
        Outcome::Failed(_) if matches!(case, Case::Token { .. }) => {
            panic!(
                "{context}: an expired or rejected token must be renewed without failing the deploy:\n{}",
                first.stderr
            )
        }
        Outcome::Failed(line) if first.stderr.contains("production routes now reach") => assert!(
            line.contains("after the swap"),
            "{context}: a failure after the swap must say that production already runs the new version: {line}"
        ),
        // Before the swap: production untouched, and the failed deploy cleaned up after itself.
        Outcome::Failed(_) => lane.assert_only_production(&format!("{context}, right after it failed")),
    }

    // A following deploy succeeds and leaves exactly production and its previous version.
    let second = lane.out(&version, &[]);
    if let Outcome::Failed(line) = assert_clean_outcome(&second, &format!("{description}: the following deploy")) {
        panic!(
            "{description}: the following deploy failed: {line}\nthe deploy with the fault:\n{}\nthe following deploy:\n{}",
            first.stderr, second.stderr
        );
    }
    lane.assert_settled(&version, &description);
    let probe = lane.assert_served_since(mark, &description);
    let next = match second.stderr.lines().find(|l| l.starts_with("recovery:")) {
        Some(recovery) => format!("the next out succeeded ({recovery})"),
        None => "the next out succeeded".to_owned(),
    };

    let outcome = match outcome {
        Outcome::Succeeded if late_journal => {
            "out succeeded (a late journal write left journal keys on production; the next deploy cleared them)"
                .to_owned()
        }
        Outcome::Succeeded => "out succeeded".to_owned(),
        Outcome::Failed(line) => format!("out failed: {line}"),
    };
    let injected = fired > 0;
    summary::record(
        "faults",
        json!({"injected": u32::from(injected), "survived": 1, "case": description, "hit": hit, "outcome": outcome, "next": next,
               "probe_requests": probe.total(), "seconds": started.elapsed().as_secs_f64()}),
    );
    format!(
        "{description}: hit {}; {outcome}; {next}; {} probe requests, 0 failed ({:.1}s)",
        match (fired, hit.is_empty()) {
            (0, _) => "nothing (the deploy made fewer calls this time)".to_owned(),
            (_, true) => format!("{fired} request(s)"),
            _ => hit.join(", "),
        },
        probe.total(),
        started.elapsed().as_secs_f64()
    )
}

/// The call indices (from 1) of the canary in a deploy with one: from scaling the candidate down to scaling it
/// back up, and the look at its instances after that.
fn canary_calls(calls: &[Call]) -> Vec<usize> {
    let scale = |c: &Call| c.method == "POST" && c.template.ends_with("/actions/scale");
    let first = calls.iter().position(scale).expect("the canary scales the candidate down");
    let last = calls.iter().rposition(scale).expect("and back up");
    assert!(last > first, "the candidate is scaled down and then back up");
    (first + 1..=(last + 2).min(calls.len())).collect()
}

/// The cases of the canary's calls: all of them with `PROOF_FULL`, else two of each kind.
fn canary_cases(calls: &[Call], rng: &mut Rng) -> Vec<Case> {
    let indices = canary_calls(calls);
    [Kind::Status500, Kind::Drop, Kind::Timeout]
        .into_iter()
        .flat_map(|kind| {
            let chosen = if harness::full() { indices.clone() } else { rng.sample(&indices, 2) };
            chosen.into_iter().map(move |index| Case::Call { index, kind })
        })
        .collect()
}

/// The route-policy requests of a deploy, in order: production's listed before the lock, one created for the
/// candidate, the older previous version's listed and deleted with it.
const ROUTE_POLICY_REQUESTS: [(&str, &str, u64); 4] = [
    ("GET", "/v3/route_policies", 1),
    ("POST", "/v3/route_policies", 1),
    ("GET", "/v3/route_policies", 2),
    ("DELETE", "/v3/route_policies/:guid", 1),
];

/// Each route-policy request failing: with every kind under `PROOF_FULL`, else with a seeded one. (A call index
/// of the cases of every call may land on another request than the recorded one, as requests made side by side
/// come in another order.)
fn route_policy_cases(rng: &mut Rng) -> Vec<Case> {
    let kinds = [Kind::Status500, Kind::Drop, Kind::Timeout];
    ROUTE_POLICY_REQUESTS
        .iter()
        .flat_map(|&(method, path, nth)| {
            let chosen = if harness::full() { kinds.to_vec() } else { rng.sample(&kinds, 1) };
            chosen.into_iter().map(move |kind| Case::Request { method, path, nth, kind })
        })
        .collect()
}

/// The cases to run: everything with `PROOF_FULL`, else a seeded handful; and the route-policy requests.
fn cases(calls: &[Call], rng: &mut Rng) -> Vec<Case> {
    let kinds = [Kind::Status500, Kind::Drop, Kind::Timeout];
    let v3_calls = calls.iter().filter(|c| c.template.starts_with("/v3")).count();
    let token = |rng: &mut Rng| Case::Token {
        ttl_secs: 2 + rng.below(3),
        rejected_at: 1 + rng.below(v3_calls as u64) as usize,
    };
    if harness::full() {
        let mut all: Vec<Case> =
            kinds.iter().flat_map(|&kind| (1..=calls.len()).map(move |index| Case::Call { index, kind })).collect();
        all.extend((0..4).map(|_| token(rng)));
        all.extend(route_policy_cases(rng));
        return all;
    }
    let mut some: Vec<Case> = kinds
        .iter()
        .flat_map(|&kind| {
            let indices: Vec<usize> = (1..=calls.len()).collect();
            rng.sample(&indices, 2).into_iter().map(move |index| Case::Call { index, kind })
        })
        .collect();
    some.push(token(rng));
    some.extend(route_policy_cases(rng));
    some
}

#[test]
fn every_api_call_of_a_deploy_can_fail_and_production_never_notices() {
    let _heavy = harness::heavy();
    let mut rng = Rng::seeded("fault matrix");
    let mut first = Lane::new(LaneConfig::default());
    let calls = record_calls(&mut first, plain);
    eprintln!("a normal deploy makes {} calls:", calls.len());
    for (i, call) in calls.iter().enumerate() {
        eprintln!("  {:>3}. {call}", i + 1);
    }
    let route_policies: Vec<(&str, &str)> = calls
        .iter()
        .filter(|c| c.template.starts_with("/v3/route_policies"))
        .map(|c| (c.method.as_str(), c.template.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = ROUTE_POLICY_REQUESTS.iter().map(|&(method, path, _)| (method, path)).collect();
    assert_eq!(route_policies, expected, "the route-policy requests of a deploy");
    let cases = cases(&calls, &mut rng);
    let lanes = if harness::full() { 6 } else { 2 };
    let failed = ("faults", json!({"injected": 1, "survived": 0}));
    harness::run_on_lanes("fault matrix", failed, &cases, lanes, Some(first), |lane, case| {
        run_case(lane, case, &calls, plain)
    });
}

#[test]
fn every_api_call_of_a_canary_can_fail_and_production_never_notices() {
    let _heavy = harness::heavy();
    let mut rng = Rng::seeded("canary fault matrix");
    // Two instances, so the candidate is scaled down for the canary and back up after it.
    let mut first = Lane::new(LaneConfig { instances: 2, ..LaneConfig::default() });
    let calls = record_calls(&mut first, with_canary);
    let indices = canary_calls(&calls);
    eprintln!("the canary makes calls {}–{} of {}:", indices[0], indices[indices.len() - 1], calls.len());
    for index in &indices {
        eprintln!("  {index:>3}. {}", calls[index - 1]);
    }
    let cases = canary_cases(&calls, &mut rng);
    let lanes = if harness::full() { 6 } else { 2 };
    let failed = ("faults", json!({"injected": 1, "survived": 0}));
    harness::run_on_lanes("canary fault matrix", failed, &cases, lanes, Some(first), |lane, case| {
        run_case(lane, case, &calls, with_canary)
    });
}
