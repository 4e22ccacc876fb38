//! The Cloud Foundry client: CC v3 API, UAA and Log Cache over HTTPS, without the `cf` CLI.
//!
//! Layers, bottom up:
//! - [`settings`]: what the client needs to know (API URL, credentials, TLS, proxy, timeouts, retry budget).
//! - [`client`]: the HTTP core — TLS, proxies, tracing, retries, typed `get`/`post`/`patch`/`delete`, CF error
//!   bodies, warnings, streaming uploads and downloads. [`CfClient`] is cheap to clone and shared by the deploy.
//! - [`auth`]: discovery from `GET /` and UAA tokens (password and client-credentials grants, proactive and
//!   reactive refresh).
//! - [`retry`]: the retry policy and the `create_or_find` pattern for non-idempotent creates.
//! - [`paginate`]: list queries and paginate-all; [`wait`]: the bounded [`Wait`] poller, waits for an object's
//!   state and for async jobs.
//! - [`api`]: the generic typed [`Api<K>`] (get/list/delete/metadata) that every resource kind reuses.
//! - One module per resource kind: [`orgs`], [`spaces`], [`domains`], [`routes`], [`apps`], [`packages`],
//!   [`resource_matches`], [`builds`], [`droplets`], [`processes`], [`service_instances`],
//!   [`bindings`], [`manifests`], [`jobs`], [`logs`], [`quotas`], [`tasks`], plus [`root`] for the discovery
//!   documents, [`policies`] for the policy server's network policies, [`route_policies`] for CC's route
//!   policies and [`roles`] for the deploying identity's roles.

pub(crate) mod api;
pub mod apps;
pub mod auth;
pub mod bindings;
pub mod builds;
pub(crate) mod client;
pub mod domains;
pub mod droplets;
pub mod error;
pub mod jobs;
pub mod logs;
pub mod manifests;
pub mod orgs;
pub mod packages;
pub mod paginate;
pub(crate) mod policies;
pub mod processes;
pub mod quotas;
pub mod resource_matches;
pub(crate) mod retry;
pub mod roles;
pub mod root;
pub(crate) mod route_policies;
pub mod routes;
pub(crate) mod service_instances;
pub(crate) mod settings;
pub mod spaces;
pub(crate) mod tasks;
mod tls;
pub(crate) mod trace;
mod transfers;
pub mod types;
pub(crate) mod wait;

pub use api::{Api, Resource};
pub use client::CfClient;
pub use error::{CfError, Error, Result};
pub use paginate::ListParams;
pub(crate) use paginate::Listed;
pub use resource_matches::FileResource;
pub use retry::RetryPolicy;
pub use settings::{Credentials, ProxySettings, Settings};
pub use wait::{Poll, Wait};
