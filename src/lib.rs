//! cf-blue-green-resource: a Concourse resource type that deploys to Cloud Foundry blue-green.
//!
//! The three binaries (`check`, `in`, `out`) are thin mains over this library. Data flows one way:
//! [`config`] (what the pipeline asked for) → the deploy plan and its steps → the CF API client.

pub mod bits;
pub mod cf;
pub mod check;
pub mod config;
pub mod deploy;
pub mod get;
pub(crate) mod inspect;
pub(crate) mod log;
pub(crate) mod manifest;
pub mod protocol;
pub mod record;
pub(crate) mod redact;
pub(crate) mod verify;
