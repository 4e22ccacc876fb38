//! Reading what is deployed, without changing anything: the code `check` and `in` share.
//!
//! - [`production`]: which app serves production, found in one app list (journal-aware during a deploy).
//! - [`details`]: what `in` reports about a version: `metadata.json`, the one-value files and the UI metadata.

pub(crate) mod details;
pub(crate) mod production;
