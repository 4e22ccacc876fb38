//! The router's view of the world: which routable instances serve each host and path. It is recomputed whenever
//! routes or instances change, but each new snapshot reaches the router only after the route propagation delay
//! (in order), because real routers learn routes asynchronously.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::shared::{Knobs, Shared};

#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub addr: SocketAddr,
    pub app_guid: String,
    pub instance_guid: String,
    pub index: u32,
}

#[derive(Debug)]
pub struct RouteEntry {
    /// `""` or `/path`.
    pub path: String,
    pub backends: Vec<Backend>,
    next: AtomicUsize,
}

impl RouteEntry {
    /// Backends in round-robin order starting with the next one due.
    pub fn rotation(&self) -> Vec<Backend> {
        if self.backends.is_empty() {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.backends.len();
        self.backends.iter().cycle().skip(start).take(self.backends.len()).cloned().collect()
    }
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Host (lowercase) → its routes, longest path first.
    hosts: HashMap<String, Vec<RouteEntry>>,
}

impl Snapshot {
    /// The route serving `host` and `path`: the longest route path that is a prefix of `path` at a segment boundary.
    pub fn lookup(&self, host: &str, path: &str) -> Option<&RouteEntry> {
        self.hosts.get(&host.to_ascii_lowercase())?.iter().find(|entry| {
            entry.path.is_empty()
                || path == entry.path
                || path.strip_prefix(entry.path.as_str()).is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Routable backends per `host/path`, for the admin API.
    pub fn describe(&self) -> Vec<(String, Vec<Backend>)> {
        let mut routes: Vec<(String, Vec<Backend>)> = self
            .hosts
            .iter()
            .flat_map(|(host, entries)| entries.iter().map(move |e| (format!("{host}{}", e.path), e.backends.clone())))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }
}

pub struct RoutingTable {
    current: RwLock<Arc<Snapshot>>,
    pending: mpsc::UnboundedSender<(Instant, Snapshot)>,
    /// Snapshots scheduled but not applied yet; while there are some, new ones must queue behind them.
    in_flight: AtomicUsize,
}

impl RoutingTable {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(Instant, Snapshot)>) {
        let (pending, receiver) = mpsc::unbounded_channel();
        (
            RoutingTable {
                current: RwLock::new(Arc::new(Snapshot::default())),
                pending,
                in_flight: AtomicUsize::new(0),
            },
            receiver,
        )
    }

    /// What the router sees now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// Recomputes the table from the CC state and the running instances and schedules it for the router.
    pub fn publish(&self, shared: &Shared) {
        let snapshot = compute(shared);
        let delay = Knobs::ms(&shared.knobs.route_propagation_delay_ms);
        if delay.is_zero() && self.in_flight.load(Ordering::SeqCst) == 0 {
            // No propagation delay: the router sees the change before the API call returns.
            *self.current.write().unwrap() = Arc::new(snapshot);
            return;
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _ = self.pending.send((Instant::now() + delay, snapshot));
    }

    /// Applies scheduled snapshots in order, each at its time; ends when the table is dropped.
    pub async fn apply_scheduled(
        table: std::sync::Weak<Shared>,
        mut receiver: mpsc::UnboundedReceiver<(Instant, Snapshot)>,
    ) {
        while let Some((due, snapshot)) = receiver.recv().await {
            tokio::time::sleep_until(due).await;
            let Some(shared) = table.upgrade() else { return };
            *shared.routing.current.write().unwrap() = Arc::new(snapshot);
            shared.routing.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn compute(shared: &Shared) -> Snapshot {
    // Collect what the routes point at under the state lock, then ask the runtime without holding it.
    // (host, path, [(app guid, process guid)]) of every route.
    type Wanted = (String, String, Vec<(String, String)>);
    let mut wanted: Vec<Wanted> = Vec::new();
    {
        let state = shared.state();
        for route in state.routes.values() {
            // gorouter never learns internal routes: they resolve to instances directly (see c2c.rs).
            let Some(domain) = state.domains.get(&route.domain_guid).filter(|d| !d.internal) else { continue };
            let host =
                if route.host.is_empty() { domain.name.clone() } else { format!("{}.{}", route.host, domain.name) };
            let processes = route
                .destinations
                .iter()
                .filter_map(|d| {
                    state.app_process(&d.app_guid, &d.process_type).map(|p| (d.app_guid.clone(), p.common.guid.clone()))
                })
                .collect();
            wanted.push((host.to_ascii_lowercase(), route.path.clone(), processes));
        }
    }
    let mut hosts: HashMap<String, Vec<RouteEntry>> = HashMap::new();
    for (host, path, processes) in wanted {
        let backends = processes
            .iter()
            .flat_map(|(app_guid, process_guid)| {
                shared.diego.routable_instances(process_guid).into_iter().map(move |i| Backend {
                    addr: SocketAddr::from(([127, 0, 0, 1], i.port)),
                    app_guid: app_guid.clone(),
                    instance_guid: i.instance_guid,
                    index: i.index,
                })
            })
            .collect();
        hosts.entry(host).or_default().push(RouteEntry { path, backends, next: AtomicUsize::new(0) });
    }
    for entries in hosts.values_mut() {
        entries.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    }
    Snapshot { hosts }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, ports: &[u16]) -> RouteEntry {
        RouteEntry {
            path: path.to_string(),
            backends: ports
                .iter()
                .map(|&port| Backend {
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    app_guid: "a".into(),
                    instance_guid: format!("i{port}"),
                    index: 0,
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn longest_path_prefix_wins_at_segment_boundaries() {
        let mut snapshot = Snapshot::default();
        snapshot.hosts.insert("app.example.com".into(), vec![entry("/api", &[2]), entry("", &[1])]);
        let port = |path: &str| snapshot.lookup("APP.example.com", path).map(|e| e.backends[0].addr.port());
        assert_eq!(port("/api/v1"), Some(2));
        assert_eq!(port("/api"), Some(2));
        assert_eq!(port("/apix"), Some(1));
        assert_eq!(port("/"), Some(1));
        assert!(snapshot.lookup("other.example.com", "/").is_none());
    }

    #[test]
    fn rotation_is_round_robin() {
        let e = entry("", &[1, 2, 3]);
        let firsts: Vec<u16> = (0..4).map(|_| e.rotation()[0].addr.port()).collect();
        assert_eq!(firsts, [1, 2, 3, 1]);
    }
}
