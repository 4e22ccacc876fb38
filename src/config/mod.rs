//! What the pipeline asked for: `source` and `params`, parsed strictly and validated before any network call.
//!
//! Every problem is reported with the key path it concerns; a misspelt key gets a suggestion; all missing
//! required keys are listed at once. Secrets are registered for redaction as they are read.

pub(crate) mod duration;
mod params;
mod source;
mod statuses;
mod strict;

pub(crate) use params::KpiRequest;
pub(crate) use params::{
    AppSource, ExpectedStatus, GreenRoute, HealthCheck, HealthCheckType, HttpCheck, Kpi, MAX_HEALTH_CHECK_TIMEOUT,
    OnFailure, TaskParams,
};
pub(crate) use params::{Canary, OnNoData};
pub use params::{InParams, OutParams};
pub(crate) use params::{MAX_KEEP_PREVIOUS, RollbackTo};
pub use source::Source;
pub(crate) use source::{AppNames, RouteScheme};
pub(crate) use statuses::ErrorStatuses;
pub(crate) use strict::json_kind;
