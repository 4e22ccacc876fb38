//! The runtime (Diego): runs every started process's instances as real child processes, keeps their state
//! (STARTING / RUNNING / CRASHED / DOWN and `routable`) for stats and the router, and converges the running
//! instances to what CC desires whenever an app is started, stopped, scaled or deleted.

mod guardian;
mod health;
mod instance;
mod launch;
mod task;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use instance::Instance;
pub use instance::InstanceState;
use launch::LaunchSpec;
pub use launch::{vcap_application, vcap_services};
pub use task::spawn as run_task;

use crate::shared::Shared;

/// An instance the router may send traffic to.
#[derive(Debug, Clone)]
pub struct RoutableInstance {
    pub index: u32,
    pub port: u16,
    pub instance_guid: String,
}

/// One entry of process stats.
#[derive(Debug, Clone)]
pub struct InstanceStats {
    pub index: u32,
    pub state: InstanceState,
    pub routable: bool,
    pub since: Option<SystemTime>,
    pub port: Option<u16>,
    pub details: Option<String>,
    pub instance_guid: Option<String>,
    pub pid: Option<u32>,
}

/// The desired LRP of one process: its launch spec and the instances running it.
struct Lrp {
    spec: Arc<LaunchSpec>,
    instances: Vec<Arc<Instance>>,
}

pub struct Diego {
    lrps: Mutex<HashMap<String, Lrp>>,
    /// Instances being stopped, kept until their task ends so shutdown can wait for them.
    retiring: Mutex<Vec<Arc<Instance>>>,
    unhealthy_apps: Mutex<HashSet<String>>,
    guardian: guardian::Guardian,
}

impl Diego {
    pub fn new() -> std::io::Result<Self> {
        Ok(Diego {
            lrps: Mutex::new(HashMap::new()),
            retiring: Mutex::new(Vec::new()),
            unhealthy_apps: Mutex::new(HashSet::new()),
            guardian: guardian::Guardian::start()?,
        })
    }

    /// Makes the app's running instances match what CC desires for it now.
    pub fn converge(&self, shared: &Arc<Shared>, app_guid: &str) {
        let desired = launch::desired_for_app(shared, app_guid);
        let mut to_stop = Vec::new();
        let mut to_start = Vec::new();
        {
            let mut lrps = self.lrps.lock().unwrap();
            let stale: Vec<String> = lrps
                .iter()
                .filter(|(guid, lrp)| {
                    lrp.spec.app_guid == app_guid && !desired.iter().any(|d| &d.process_guid == *guid)
                })
                .map(|(guid, _)| guid.clone())
                .collect();
            for guid in stale {
                to_stop.extend(lrps.remove(&guid).map(|lrp| lrp.instances).unwrap_or_default());
            }
            for spec in desired {
                let spec = Arc::new(spec);
                let lrp = lrps
                    .entry(spec.process_guid.clone())
                    .or_insert_with(|| Lrp { spec: spec.clone(), instances: Vec::new() });
                if lrp.spec.version != spec.version {
                    to_stop.append(&mut lrp.instances);
                    lrp.spec = spec.clone();
                }
                let wanted = spec.instances as usize;
                while lrp.instances.len() > wanted {
                    to_stop.extend(lrp.instances.pop());
                }
                while lrp.instances.len() < wanted {
                    let instance = Arc::new(Instance::new(lrp.instances.len() as u32, lrp.spec.clone()));
                    lrp.instances.push(instance.clone());
                    to_start.push(instance);
                }
            }
        }
        for instance in to_stop {
            instance.request_stop();
            self.retiring.lock().unwrap().push(instance);
        }
        for instance in to_start {
            instance.spawn_task(shared.clone());
        }
        self.retiring.lock().unwrap().retain(|i| !i.finished());
        shared.routing.publish(shared);
    }

    /// Instances of a process the router may use.
    pub fn routable_instances(&self, process_guid: &str) -> Vec<RoutableInstance> {
        let lrps = self.lrps.lock().unwrap();
        let Some(lrp) = lrps.get(process_guid) else { return Vec::new() };
        lrp.instances.iter().filter_map(|i| i.routable()).collect()
    }

    /// The app whose running instance has the guid `instance_guid` (the overlay's source identity).
    pub fn app_of_instance(&self, instance_guid: &str) -> Option<String> {
        let lrps = self.lrps.lock().unwrap();
        lrps.values()
            .find(|lrp| lrp.instances.iter().any(|i| i.stats().instance_guid.as_deref() == Some(instance_guid)))
            .map(|lrp| lrp.spec.app_guid.clone())
    }

    /// Stats for `desired` instances of a process; indices Diego does not run are DOWN.
    pub fn stats(&self, process_guid: &str, desired: u32) -> Vec<InstanceStats> {
        let lrps = self.lrps.lock().unwrap();
        let running: Vec<InstanceStats> =
            lrps.get(process_guid).map(|lrp| lrp.instances.iter().map(|i| i.stats()).collect()).unwrap_or_default();
        (0..desired.max(running.len() as u32))
            .map(|index| {
                running.iter().find(|s| s.index == index).cloned().unwrap_or(InstanceStats {
                    index,
                    state: InstanceState::Down,
                    routable: false,
                    since: None,
                    port: None,
                    details: None,
                    instance_guid: None,
                    pid: None,
                })
            })
            .collect()
    }

    /// Process ids of every live instance (for tests that check for orphans).
    pub fn pids(&self) -> Vec<u32> {
        let lrps = self.lrps.lock().unwrap();
        let retiring = self.retiring.lock().unwrap();
        lrps.values().flat_map(|l| l.instances.iter()).chain(retiring.iter()).filter_map(|i| i.stats().pid).collect()
    }

    /// Makes every health check of the app fail (or pass again).
    pub fn set_app_health(&self, app_guid: &str, healthy: bool) {
        let mut unhealthy = self.unhealthy_apps.lock().unwrap();
        if healthy {
            unhealthy.remove(app_guid);
        } else {
            unhealthy.insert(app_guid.to_string());
        }
    }

    pub fn app_unhealthy(&self, app_guid: &str) -> bool {
        self.unhealthy_apps.lock().unwrap().contains(app_guid)
    }

    /// Kills one instance of a process with SIGKILL, as if it crashed. False if there is no such instance.
    pub fn kill_instance(&self, process_guid: &str, index: u32) -> bool {
        let lrps = self.lrps.lock().unwrap();
        let instance = lrps.get(process_guid).and_then(|lrp| lrp.instances.iter().find(|i| i.index == index));
        instance.is_some_and(|i| i.kill())
    }

    pub(crate) fn guardian(&self) -> &guardian::Guardian {
        &self.guardian
    }

    /// Stops every instance (SIGTERM, SIGKILL after the grace period) and waits for all of them.
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Instance>> = {
            let mut lrps = self.lrps.lock().unwrap();
            let mut retiring = self.retiring.lock().unwrap();
            lrps.drain().flat_map(|(_, lrp)| lrp.instances).chain(retiring.drain(..)).collect()
        };
        for instance in &all {
            instance.request_stop();
        }
        for instance in &all {
            instance.wait().await;
        }
        self.guardian.shutdown();
    }
}
