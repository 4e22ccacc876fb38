//! The proof suite: the README's reliability claims, each backed by a test that could fail.
//!
//! - `zero_downtime`: ≥ 200 requests/s (fast and 1 s requests, new and kept-alive connections) through the router
//!   during a whole deploy with route propagation delay, with 2 and with 4 instances: not one failed request.
//! - `faults`: for every API call of a deploy, that call fails (HTTP 500 past the retry budget, a dropped
//!   connection, an answer slower than the client's timeout), plus token rejection at a seeded random point.
//! - `kills`: `out` SIGKILLed at every phase boundary and step of the swap and housekeeping, and at seeded
//!   random instants; the next `out` recovers.
//! - `concurrency`: 2 and 5 simultaneous puts serialize through the lock.
//! - `bad_inputs`: a table of more than 40 bad requests across check, in and out, each failing cleanly without
//!   touching Cloud Foundry.
//! - `secrets`: every output of every binary run in any test is scanned for secrets (`util::secrets`); here
//!   the scanner itself is proven to catch leaks, and the most talkative runs are scanned.
//! - `sessions`: a real Redis keeps sessions across the swap; in-process sessions are lost.
//! - `regressions`: each bug the matrices found, pinned by a direct case.
//!
//! The slow matrices run a seeded subset by default and everything with `PROOF_FULL=1` (as `.ci/run` does);
//! `PROOF_SEED` replays a run. Figures go to the proof summary (`util::summary`).

/// The integration tests' toolkit. Public here: this binary uses only part of it, and rustc checks the toolkit
/// for unused code where all of it is used, in the integration binary.
#[path = "../integration/util/mod.rs"]
pub mod util;

mod bad_inputs;
mod concurrency;
mod faults;
mod harness;
mod kills;
mod regressions;
mod secrets;
mod sessions;
mod zero_downtime;
