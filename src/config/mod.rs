//! What the pipeline asked for: `source` and `params`, parsed strictly and validated before any network call.
//!
//! Every problem is reported with the key path it concerns; a misspelt key gets a suggestion; all missing
//! required keys are listed at once. Secrets are registered for redaction as they are read.

pub mod duration;
mod params;
mod source;
mod strict;

pub use params::{
    AppSource, ExpectedStatus, GreenRoute, HealthCheck, HealthCheckType, HttpCheck, InParams, Kpi,
    MAX_HEALTH_CHECK_TIMEOUT, OnFailure, OutParams, SmokeTest, Timeouts,
};
pub use source::{AppNames, Credentials, RouteScheme, Source};
pub use strict::{closest, json_kind};
