//! The router's view of the world: which routable instances serve each host and path. It is recomputed whenever
//! routes or instances change, but each new snapshot reaches the router only after the route propagation delay
//! (in order), because real routers learn routes asynchronously. Each backend carries the tags the route-emitter
//! registers it with: the LRP's metric tags (cloud_controller_ng `lib/cloud_controller/diego/app_recipe_builder.rb`
//! `#metric_tags`, route-emitter `routingtable/registry_message.go` `populateMetricTags`), which gorouter copies
//! into its `http` timers.

use std::collections::{BTreeMap, HashMap};
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
    /// The route registration's tags (the process's metric tags with this instance's index and guid).
    pub tags: Arc<BTreeMap<String, String>>,
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
    // (host, path, [(app guid, process guid, the process's static metric tags)]) of every route.
    type Wanted = (String, String, Vec<(String, String, BTreeMap<String, String>)>);
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
                    let process = state.app_process(&d.app_guid, &d.process_type)?;
                    let tags = static_metric_tags(&state, &d.app_guid, &process.common.guid, &d.process_type);
                    Some((d.app_guid.clone(), process.common.guid.clone(), tags))
                })
                .collect();
            wanted.push((host.to_ascii_lowercase(), route.path.clone(), processes));
        }
    }
    let mut hosts: HashMap<String, Vec<RouteEntry>> = HashMap::new();
    for (host, path, processes) in wanted {
        let backends = processes
            .iter()
            .flat_map(|(app_guid, process_guid, tags)| {
                shared.diego.routable_instances(process_guid).into_iter().map(move |i| {
                    let mut tags = tags.clone();
                    tags.insert("instance_id".into(), i.index.to_string());
                    tags.insert("process_instance_id".into(), i.instance_guid.clone());
                    tags.insert("component".into(), "route-emitter".into());
                    Backend {
                        addr: SocketAddr::from(([127, 0, 0, 1], i.port)),
                        app_guid: app_guid.clone(),
                        instance_guid: i.instance_guid,
                        index: i.index,
                        tags: Arc::new(tags),
                    }
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

/// The static part of CC's `metric_tags` for a process (the dynamic `instance_id` and `process_instance_id` are
/// the route-emitter's, per instance).
fn static_metric_tags(
    state: &crate::state::State,
    app_guid: &str,
    process_guid: &str,
    process_type: &str,
) -> BTreeMap<String, String> {
    let app = state.apps.get(app_guid);
    let space = app.and_then(|a| state.spaces.get(&a.space_guid));
    let org = app.and_then(|a| state.org_of_space(&a.space_guid));
    [
        ("source_id", app_guid),
        ("app_id", app_guid),
        ("process_id", process_guid),
        ("process_type", process_type),
        ("app_name", app.map_or("", |a| a.name.as_str())),
        ("space_id", space.map_or("", |s| s.common.guid.as_str())),
        ("space_name", space.map_or("", |s| s.name.as_str())),
        ("organization_id", org.map_or("", |o| o.common.guid.as_str())),
        ("organization_name", org.map_or("", |o| o.name.as_str())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
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
                    tags: Arc::default(),
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
