//! The proof suite: the README's reliability claims, each backed by a test that could fail.
//!
//! - `zero_downtime`: ≥ 200 requests/s (fast and 1 s requests, new and kept-alive connections) through the router
//!   during a whole deploy with route propagation delay, with 2 and with 4 instances: not one failed request.
//! - `concurrency`: 2 and 5 simultaneous puts serialize through the lock.
//! - `bad_inputs`: a table of more than 40 bad requests across check, in and out, each failing cleanly without
//!   touching Cloud Foundry.
//! - `secrets`: every output of every binary run in any test is scanned for secrets (`common::secrets`); here
//!   the scanner itself is proven to catch leaks, and the most talkative runs are scanned.
//! - `sessions`: a real Redis keeps sessions across the swap; in-process sessions are lost.
//! - `regressions`: each bug the matrices found, pinned by a direct case.
//!
//! Figures go to the proof summary (`common::summary`).

#[path = "../common/mod.rs"]
mod common;

mod bad_inputs;
mod concurrency;
mod harness;
mod regressions;
mod secrets;
mod sessions;
mod zero_downtime;
