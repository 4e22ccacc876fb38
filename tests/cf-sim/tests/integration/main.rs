//! Integration tests of the sim, in one binary so the test suite links once.

mod api;
mod app_features;
mod binary;
mod client_assertions;
mod common;
mod conformance_apps;
mod conformance_routes;
mod conformance_tasks;
mod contract;
mod faults;
mod jwt_bearer;
mod list_messages;
mod log_cache;
mod managed_services;
mod manifest_diff;
mod policies;
mod roles;
mod route_policies;
mod runtime;
mod tls;
