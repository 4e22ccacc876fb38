//! Reading what is deployed, without changing anything: the code `check` and `in` share.
//!
//! - [`production`]: which app serves production, found in one app list (journal-aware during a deploy).

pub mod production;
