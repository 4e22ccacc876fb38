//! A bounded load generator for zero-downtime tests: requests to a production route through the sim's router,
//! at a fixed rate, a mix of fast requests and slow (1 s) ones, over kept-alive and new connections. It records
//! every failure (any non-2xx or connection error) and which app version answered when, and always stops by
//! itself: at its request budget, its time budget, or when stopped.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// What to send.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `127.0.0.1:port` of the router.
    pub router: String,
    /// The route's host (the Host header), e.g. `myapp.apps.sim.internal`.
    pub host: String,
    pub requests_per_second: u32,
    /// Every n-th request is a slow one (`/slow?ms=1000`); 0 for none.
    pub slow_every: u32,
    /// Every n-th request opens a new connection instead of reusing one; 0 for never.
    pub new_connection_every: u32,
    pub max_requests: u64,
    pub max_duration: Duration,
}

impl LoadConfig {
    pub fn new(router: &str, host: &str) -> LoadConfig {
        LoadConfig {
            router: router.trim_start_matches("http://").to_owned(),
            host: host.to_owned(),
            requests_per_second: 50,
            slow_every: 0,
            new_connection_every: 0,
            max_requests: 20_000,
            max_duration: Duration::from_secs(120),
        }
    }
}

/// One request's outcome.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When it was sent, from the start of the load.
    pub sent_at: Duration,
    pub latency: Duration,
    /// The version that answered (the body's first word for `/version`), or why it failed.
    pub outcome: Result<String, String>,
    pub slow: bool,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub samples: Vec<Sample>,
}

impl LoadReport {
    pub fn total(&self) -> usize {
        self.samples.len()
    }

    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.outcome.is_err()).collect()
    }

    /// The versions that answered, in the order they first appeared.
    pub fn versions(&self) -> Vec<String> {
        let mut ordered = self.samples.clone();
        ordered.sort_by_key(|s| s.sent_at + s.latency);
        let mut seen: Vec<String> = Vec::new();
        for sample in ordered {
            if let Ok(version) = sample.outcome
                && !seen.contains(&version)
            {
                seen.push(version);
            }
        }
        seen
    }

    /// When `version` first answered, from the start of the load.
    pub fn first_answer_by(&self, version: &str) -> Option<Duration> {
        self.samples.iter().filter(|s| s.outcome.as_deref() == Ok(version)).map(|s| s.sent_at + s.latency).min()
    }

    /// A description of the failures for assertion messages.
    pub fn describe_failures(&self) -> String {
        self.failures()
            .iter()
            .take(20)
            .map(|s| {
                let kind = if s.slow { "slow request" } else { "request" };
                format!(
                    "{kind} sent at {:?}, failed after {:?}: {}",
                    s.sent_at,
                    s.latency,
                    s.outcome.as_ref().unwrap_err()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A running load; [`LoadHandle::stop`] ends it and returns the report.
pub struct LoadHandle {
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<LoadReport>>,
}

impl LoadHandle {
    /// Time since the load started (the origin of every sample's `sent_at`), give or take the thread start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().expect("joined once").join().expect("the load thread does not panic")
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts sending load on its own runtime thread (so the test may block on child processes meanwhile).
pub fn start(config: LoadConfig) -> LoadHandle {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the load");
        runtime.block_on(run(config, stopping))
    });
    LoadHandle { started: Instant::now(), stop, thread: Some(thread) }
}

async fn run(config: LoadConfig, stop: Arc<AtomicBool>) -> LoadReport {
    let router: std::net::SocketAddr = config.router.parse().expect("the router address is ip:port");
    let client = |pool: bool| {
        let mut builder = super::http_client().resolve(&config.host, router).timeout(Duration::from_secs(10));
        if !pool {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder.build().expect("an HTTP client")
    };
    let (kept_alive, fresh) = (client(true), client(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.requests_per_second.max(1)));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = Vec::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) && n < config.max_requests && started.elapsed() < config.max_duration {
        ticker.tick().await;
        n += 1;
        let slow = config.slow_every > 0 && n.is_multiple_of(u64::from(config.slow_every));
        let new_connection =
            config.new_connection_every > 0 && n.is_multiple_of(u64::from(config.new_connection_every));
        let http = if new_connection { fresh.clone() } else { kept_alive.clone() };
        let path = if slow { "/slow?ms=1000" } else { "/version" };
        let url = format!("http://{}{path}", config.host);
        let samples = samples.clone();
        let sent_at = started.elapsed();
        in_flight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => match response.text().await {
                    Ok(body) => Ok(body.split_whitespace().next().unwrap_or_default().to_owned()),
                    Err(e) => Err(format!("body: {e}")),
                },
                Ok(response) => {
                    let status = response.status();
                    Err(format!("{status}: {}", response.text().await.unwrap_or_default().trim()))
                }
                Err(e) => Err(format!("{e}")),
            };
            samples.lock().await.push(Sample { sent_at, latency: sent.elapsed(), outcome, slow });
        }));
        in_flight.retain(|task| !task.is_finished());
    }
    for task in in_flight {
        let _ = task.await;
    }
    let samples = std::mem::take(&mut *samples.lock().await);
    LoadReport { samples }
}
