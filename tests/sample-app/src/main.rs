//! sample-app: the app the cf-blue-green-resource tests deploy to cf-sim.
//!
//! An HTTP server whose version, health, latency and failures are all set by
//! env vars (see README.md), so each test can push the same binary and make
//! it behave as the deploy scenario needs.

mod backend;
mod config;
mod faults;
mod redis;
mod routes;
mod server;
mod services;
mod session;

use std::process::ExitCode;

use config::Config;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("sample-app: {err}");
            return ExitCode::FAILURE;
        }
    };
    if config.crash_on_start {
        eprintln!("sample-app: crashing on start as configured (CRASH_ON_START=true)");
        return ExitCode::FAILURE;
    }
    if let Some(marker) = &config.crash_once_marker
        && std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_ok()
    {
        eprintln!("sample-app: crashing once as configured (CRASH_ONCE_MARKER {} created)", marker.display());
        return ExitCode::FAILURE;
    }

    let env_names = env_names();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sample-app: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(server::run(config, env_names))
}

/// The names of the variables the app sees, sorted; `/env` shows these and
/// never the values, which may hold credentials.
fn env_names() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
