//! A local Cloud Foundry for tests, benchmarks and the demo: the CC v3 API, UAA, Log Cache and a gorouter-like
//! router, with apps run as real processes. Start it in-process with [`Sim::start`] or as the `cf-sim` binary.

mod blobstore;
mod c2c;
pub mod cc;
mod clock;
pub mod config;
mod diego;
pub mod faults;
mod jwt_bearer;
mod latency;
pub mod load;
mod log_cache;
pub mod logs;
pub mod request_log;
mod router;
mod routing;
mod server;
mod shared;
mod sim;
mod staging;
mod state;
pub mod testkit;
mod tls;
mod tokens;
mod uaa;

pub use config::SimConfig;
pub use faults::{Fault, FaultAction, FaultEntry};
pub use logs::{Envelope, Stream};
pub use request_log::RequestRecord;
pub use sim::{Sim, SimInfo};
pub use tokens::AssertionIssuer;
