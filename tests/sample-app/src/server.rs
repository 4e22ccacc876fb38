//! Binding the port, serving connections and shutting down like a
//! well-behaved Cloud Foundry app.
//!
//! CF stops an instance with SIGTERM and kills it 10 s later. The app stops
//! accepting at once, lets in-flight requests finish within that window and
//! exits 0, so a blue-green swap drops no request that reached it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::routes::App;

/// How long in-flight requests get to finish after SIGTERM or SIGINT.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long to back off when accepting fails, e.g. when out of file
/// descriptors, so the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Runs the app until it is told to stop; the result is the exit code.
pub async fn run(config: Config, env_names: Vec<String>) -> ExitCode {
    // Listen for signals before the startup delay so that an app stopped
    // while still "starting" exits promptly, as a real one would.
    let mut stop = match StopSignal::install() {
        Ok(stop) => stop,
        Err(err) => {
            eprintln!("sample-app: cannot listen for signals: {err}");
            return ExitCode::FAILURE;
        }
    };

    if !config.startup_delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(config.startup_delay) => {}
            signal = stop.received() => {
                eprintln!("sample-app: {signal} received while starting, exiting");
                return ExitCode::SUCCESS;
            }
        }
    }

    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, config.port));
    let listener = match TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("sample-app: cannot listen on {address}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("sample-app {} listening on {address} (instance {})", config.version, config.instance);
    let app = Arc::new(App::new(config, Instant::now(), env_names));

    let http = http1::Builder::new();
    let connections = GracefulShutdown::new();
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Small responses go out at once instead of waiting on Nagle.
                    let _ = stream.set_nodelay(true);
                    let app = Arc::clone(&app);
                    let service = service_fn(move |request| Arc::clone(&app).handle(request));
                    let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        // A client hanging up mid-request is its own business.
                        let _ = connection.await;
                    });
                }
                Err(err) => {
                    eprintln!("sample-app: accept failed: {err}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            signal = stop.received() => break signal,
        }
    };

    drop(listener);
    eprintln!("sample-app: {signal} received, finishing in-flight requests");
    match tokio::time::timeout(SHUTDOWN_GRACE, connections.shutdown()).await {
        Ok(()) => eprintln!("sample-app: stopped"),
        Err(_) => eprintln!("sample-app: requests still running after {}s, exiting anyway", SHUTDOWN_GRACE.as_secs()),
    }
    ExitCode::SUCCESS
}

/// SIGTERM (how CF stops an instance) and SIGINT (Ctrl-C in a terminal).
struct StopSignal {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> std::io::Result<StopSignal> {
        Ok(StopSignal { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Waits for either signal and names it.
    async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
