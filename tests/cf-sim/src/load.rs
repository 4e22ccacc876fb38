//! A bounded load generator for zero-downtime tests, benchmarks, real-traffic analysis and the demo: requests to a
//! route through the sim's router, on a fixed schedule (request n leaves at n / rate, so a slow moment is caught up
//! and the average rate holds), a mix of fast requests and slow (1 s) ones, over kept-alive and new connections.
//! It can play a population of users (each with its own connections and `User-Agent`, taking turns) over a
//! weighted mix of paths, for minutes. It records every failure (any non-2xx or connection error), each answer's
//! status and path, and which app version answered when, and always stops by itself: at its request budget, its
//! time budget, or when stopped. The samples so far can be read while it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// How many users take turns sending the requests, each over its own connections with its own `User-Agent`
    /// (`cf-sim-load/<n>`); at least 1.
    pub users: u32,
    /// The paths requested, each with its weight, in a fixed interleaved order (a path of weight 3 beside one of
    /// weight 1 is three requests in four); empty is `/version`. A slow request still goes to `/slow?ms=1000`.
    pub paths: Vec<(String, u32)>,
}

impl LoadConfig {
    pub fn new(router: &str, host: &str) -> LoadConfig {
        LoadConfig {
            router: router.trim_start_matches("http://").to_owned(),
            host: host.to_owned(),
            requests_per_second: 50,
            slow_every: 0,
            new_connection_every: 0,
            max_requests: 200_000,
            max_duration: Duration::from_secs(300),
            users: 1,
            paths: Vec::new(),
        }
    }

    /// `users` users browsing `paths` (with weights) at `rate` requests/s in total for at most `duration`.
    pub fn population(
        router: &str,
        host: &str,
        rate: u32,
        users: u32,
        paths: &[(&str, u32)],
        duration: Duration,
    ) -> LoadConfig {
        LoadConfig {
            requests_per_second: rate,
            users,
            paths: paths.iter().map(|(p, w)| ((*p).to_owned(), *w)).collect(),
            max_requests: (duration.as_secs_f64() * f64::from(rate)).ceil() as u64,
            max_duration: duration,
            ..LoadConfig::new(router, host)
        }
    }

    /// The path of request `n` (from 1) by the weighted mix: the same interleaved cycle, whatever the rate.
    fn path(&self, n: u64) -> String {
        let total: u64 = self.paths.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return "/version".into();
        }
        // Smooth weighted round robin over one cycle: each path's share spread evenly, not in runs.
        let slot = (n - 1) % total;
        let mut current: Vec<i64> = vec![0; self.paths.len()];
        let mut chosen = 0;
        for _ in 0..=slot {
            for (c, (_, w)) in current.iter_mut().zip(&self.paths) {
                *c += i64::from(*w);
            }
            chosen = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).expect("paths");
            current[chosen] -= total as i64;
        }
        self.paths[chosen].0.clone()
    }

    /// The proof suite's heavy mix at `rate` requests/s: every 10th request slow (1 s), every 3rd on a new
    /// connection, the rest on kept-alive ones.
    pub fn heavy(router: &str, host: &str, rate: u32) -> LoadConfig {
        LoadConfig {
            requests_per_second: rate,
            slow_every: 10,
            new_connection_every: 3,
            ..LoadConfig::new(router, host)
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
    pub new_connection: bool,
    /// The path requested.
    pub path: String,
    /// The user (0-based) who sent it.
    pub user: u32,
    /// The HTTP status of the answer; `None` when there was none.
    pub status: Option<u16>,
}

impl Sample {
    pub fn answered_at(&self) -> Duration {
        self.sent_at + self.latency
    }
}

/// Everything the load saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub samples: Vec<Sample>,
    /// How long the load ran.
    pub duration: Duration,
}

impl LoadReport {
    pub fn total(&self) -> usize {
        self.samples.len()
    }

    pub fn failures(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.outcome.is_err()).collect()
    }

    pub fn slow(&self) -> usize {
        self.samples.iter().filter(|s| s.slow).count()
    }

    pub fn new_connections(&self) -> usize {
        self.samples.iter().filter(|s| s.new_connection).count()
    }

    /// Requests sent per second, on average.
    pub fn rate(&self) -> f64 {
        let last_sent = self.samples.iter().map(|s| s.sent_at).max().unwrap_or_default();
        if last_sent.is_zero() { 0.0 } else { self.samples.len() as f64 / last_sent.as_secs_f64() }
    }

    /// The versions that answered, in the order they first appeared.
    pub fn versions(&self) -> Vec<String> {
        let mut ordered = self.samples.clone();
        ordered.sort_by_key(Sample::answered_at);
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
        self.samples.iter().filter(|s| s.outcome.as_deref() == Ok(version)).map(Sample::answered_at).min()
    }

    /// When `version` last answered, from the start of the load.
    pub fn last_answer_by(&self, version: &str) -> Option<Duration> {
        self.samples.iter().filter(|s| s.outcome.as_deref() == Ok(version)).map(Sample::answered_at).max()
    }

    /// How many answers came from `version`.
    pub fn answers_by(&self, version: &str) -> usize {
        self.samples.iter().filter(|s| s.outcome.as_deref() == Ok(version)).count()
    }

    /// The samples sent at or after `from` (from the start of the load).
    pub fn since(&self, from: Duration) -> LoadReport {
        LoadReport {
            samples: self.samples.iter().filter(|s| s.sent_at >= from).cloned().collect(),
            duration: self.duration.saturating_sub(from),
        }
    }

    /// How many requests went to each path.
    pub fn by_path(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for sample in &self.samples {
            *counts.entry(sample.path.clone()).or_default() += 1;
        }
        counts
    }

    /// How many distinct users sent requests.
    pub fn users(&self) -> usize {
        self.samples.iter().map(|s| s.user).collect::<std::collections::BTreeSet<_>>().len()
    }

    /// A description of the failures for assertion messages.
    pub fn describe_failures(&self) -> String {
        let failures = self.failures();
        let mut lines: Vec<String> = failures
            .iter()
            .take(20)
            .map(|s| {
                let kind = if s.slow { "slow" } else { "fast" };
                let conn = if s.new_connection { "new connection" } else { "kept-alive" };
                format!("at {:?} ({kind}, {conn}): {}", s.sent_at, s.outcome.as_ref().unwrap_err())
            })
            .collect();
        if failures.len() > 20 {
            lines.push(format!("… and {} more", failures.len() - 20));
        }
        lines.join("\n")
    }

    /// `12034 requests in 60.2s (200.0/s; 1203 slow, 4011 on new connections)`.
    pub fn describe(&self) -> String {
        format!(
            "{} requests in {:.1}s ({:.1}/s; {} slow, {} on new connections), {} failed, versions {:?}",
            self.total(),
            self.duration.as_secs_f64(),
            self.rate(),
            self.slow(),
            self.new_connections(),
            self.failures().len(),
            self.versions()
        )
    }
}

/// A running load; [`LoadHandle::stop`] ends it and returns the report.
pub struct LoadHandle {
    stop: Arc<AtomicBool>,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoadHandle {
    /// Time since the load started (to mark events in its timeline).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The samples of the requests answered so far.
    pub fn report_so_far(&self) -> LoadReport {
        LoadReport { samples: self.samples.lock().unwrap().clone(), duration: self.started.elapsed() }
    }

    /// Waits until the load ends by itself (its request or time budget), then returns everything.
    pub fn finish(mut self) -> LoadReport {
        self.thread.take().expect("joined once").join().expect("the load thread does not panic");
        LoadReport { samples: std::mem::take(&mut *self.samples.lock().unwrap()), duration: self.started.elapsed() }
    }

    /// Stops sending, waits for the requests in flight and returns everything.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.finish()
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
    let samples = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let thread = {
        let (stop, samples) = (stop.clone(), samples.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the load");
            runtime.block_on(run(config, stop, samples, started));
        })
    };
    LoadHandle { stop, started, samples, thread: Some(thread) }
}

async fn run(config: LoadConfig, stop: Arc<AtomicBool>, samples: Arc<Mutex<Vec<Sample>>>, started: Instant) {
    // The router speaks plain HTTP, but a workspace build may give reqwest TLS support, which needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let router: std::net::SocketAddr = config.router.parse().expect("the router address is ip:port");
    let client = |pool: bool, user: u32| {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .resolve(&config.host, router)
            .timeout(Duration::from_secs(10))
            .user_agent(format!("cf-sim-load/{user}"));
        if !pool {
            builder = builder.pool_max_idle_per_host(0);
        }
        builder.build().expect("an HTTP client")
    };
    // Each user keeps its own connections.
    let clients: Vec<(reqwest::Client, reqwest::Client)> =
        (0..config.users.max(1)).map(|user| (client(true, user), client(false, user))).collect();
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.requests_per_second.max(1)));
    let start = tokio::time::Instant::from_std(started);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut n: u64 = 0;
    while !stop.load(Ordering::SeqCst) && n < config.max_requests && started.elapsed() < config.max_duration {
        tokio::time::sleep_until(start + interval.mul_f64(n as f64)).await;
        n += 1;
        let slow = config.slow_every > 0 && n.is_multiple_of(u64::from(config.slow_every));
        let new_connection =
            config.new_connection_every > 0 && n.is_multiple_of(u64::from(config.new_connection_every));
        let user = ((n - 1) % clients.len() as u64) as u32;
        let (kept_alive, fresh) = &clients[user as usize];
        let http = if new_connection { fresh.clone() } else { kept_alive.clone() };
        let path = if slow { "/slow?ms=1000".to_owned() } else { config.path(n) };
        let url = format!("http://{}{path}", config.host);
        let samples = samples.clone();
        let sent_at = started.elapsed();
        in_flight.spawn(async move {
            let sent = Instant::now();
            let (status, outcome) = match http.get(&url).send().await {
                Ok(response) if response.status().is_success() => (
                    Some(response.status().as_u16()),
                    match response.text().await {
                        Ok(body) => Ok(body.split_whitespace().next().unwrap_or_default().to_owned()),
                        Err(e) => Err(format!("body: {e}")),
                    },
                ),
                Ok(response) => {
                    let status = response.status();
                    (
                        Some(status.as_u16()),
                        Err(format!("{status}: {}", response.text().await.unwrap_or_default().trim())),
                    )
                }
                Err(e) => (None, Err(format!("{e:?}"))),
            };
            let sample = Sample { sent_at, latency: sent.elapsed(), outcome, slow, new_connection, path, user, status };
            samples.lock().unwrap().push(sample);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_mix_follows_its_weights_interleaved() {
        let config = LoadConfig {
            paths: vec![("/a".into(), 3), ("/b".into(), 1)],
            ..LoadConfig::new("127.0.0.1:1", "app.example.com")
        };
        let cycle: Vec<String> = (1..=8).map(|n| config.path(n)).collect();
        assert_eq!(cycle, ["/a", "/a", "/b", "/a", "/a", "/a", "/b", "/a"]);
        assert_eq!(LoadConfig::new("127.0.0.1:1", "h").path(7), "/version");
    }

    #[test]
    fn a_population_is_bounded_in_count_and_time() {
        let config = LoadConfig::population("127.0.0.1:1", "h", 20, 50, &[("/", 1)], Duration::from_secs(180));
        assert_eq!((config.max_requests, config.max_duration, config.users), (3600, Duration::from_secs(180), 50));
    }
}
