//! One app instance: a real child process (`sh -c COMMAND`) in its own process group and its own copy of the
//! droplet, supervised like Diego does: health checks take it from STARTING to RUNNING (or crash it after the
//! timeout), liveness and readiness checks keep running, an exit or a failed check makes it CRASHED and it is
//! restarted with backoff; stopping sends SIGTERM to the group and SIGKILL after the grace period.

use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::launch::LaunchSpec;
use super::{InstanceStats, RoutableInstance, health};
use crate::clock::new_guid;
use crate::logs::Stream;
use crate::shared::Shared;

/// How often a STARTING instance is checked (Diego checks starting instances much more often than running ones).
const STARTUP_CHECK_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_INVOCATION_TIMEOUT: Duration = Duration::from_secs(1);
const CELL: &str = "sim-cell-0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    Starting,
    Running,
    Crashed,
    Down,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Starting => "STARTING",
            InstanceState::Running => "RUNNING",
            InstanceState::Crashed => "CRASHED",
            InstanceState::Down => "DOWN",
        }
    }
}

#[derive(Debug, Clone)]
struct Status {
    state: InstanceState,
    routable: bool,
    port: Option<u16>,
    pid: Option<u32>,
    since: Option<SystemTime>,
    details: Option<String>,
    instance_guid: Option<String>,
}

enum Outcome {
    Stopped,
    Crashed(String),
}

pub struct Instance {
    pub index: u32,
    spec: Arc<LaunchSpec>,
    status: Mutex<Status>,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
}

impl Instance {
    pub fn new(index: u32, spec: Arc<LaunchSpec>) -> Self {
        Instance {
            index,
            spec,
            status: Mutex::new(Status {
                state: InstanceState::Starting,
                routable: false,
                port: None,
                pid: None,
                since: None,
                details: None,
                instance_guid: None,
            }),
            stop: watch::Sender::new(false),
            done: watch::Sender::new(false),
        }
    }

    pub fn spawn_task(self: &Arc<Self>, shared: Arc<Shared>) {
        let instance = self.clone();
        shared.runtime.clone().spawn(async move {
            instance.supervise_forever(&shared).await;
            instance.done.send_replace(true);
        });
    }

    pub fn request_stop(&self) {
        self.stop.send_replace(true);
    }

    pub fn finished(&self) -> bool {
        *self.done.borrow()
    }

    pub async fn wait(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|d| *d).await;
    }

    /// SIGKILLs the instance's process group, as if it crashed.
    pub fn kill(&self) -> bool {
        match self.status.lock().unwrap().pid {
            Some(pid) => signal_group(pid, libc::SIGKILL),
            None => false,
        }
    }

    pub fn routable(&self) -> Option<RoutableInstance> {
        let status = self.status.lock().unwrap();
        match (status.state, status.routable, status.port, &status.instance_guid) {
            (InstanceState::Running, true, Some(port), Some(guid)) => {
                Some(RoutableInstance { index: self.index, port, instance_guid: guid.clone() })
            }
            _ => None,
        }
    }

    pub fn stats(&self) -> InstanceStats {
        let status = self.status.lock().unwrap();
        InstanceStats {
            index: self.index,
            state: status.state,
            routable: status.routable,
            since: status.since,
            port: status.port,
            details: status.details.clone(),
            instance_guid: status.instance_guid.clone(),
            pid: status.pid,
        }
    }

    fn update(&self, change: impl FnOnce(&mut Status)) {
        change(&mut self.status.lock().unwrap());
    }

    fn log(&self, shared: &Shared, source_type: &str, message: &str) {
        shared.logs.push(&self.spec.app_guid, source_type, &self.index.to_string(), Stream::Out, message);
    }

    async fn supervise_forever(&self, shared: &Arc<Shared>) {
        let mut stop = self.stop.subscribe();
        let mut crashes: u32 = 0;
        while !*stop.borrow() {
            match self.run_once(shared, &mut stop).await {
                Outcome::Stopped => break,
                Outcome::Crashed(reason) => {
                    crashes += 1;
                    self.update(|s| {
                        s.state = InstanceState::Crashed;
                        s.routable = false;
                        s.pid = None;
                        s.port = None;
                        s.since = None;
                        s.details = Some(reason.clone());
                    });
                    shared.routing.publish(shared);
                    self.log(
                        shared,
                        "API",
                        &format!(
                            "App instance exited with guid {} payload: {{\"instance\"=>\"{}\", \"index\"=>{}, \"reason\"=>\"CRASHED\", \"exit_description\"=>\"{}\", \"crash_count\"=>{}}}",
                            self.spec.app_guid,
                            self.status.lock().unwrap().instance_guid.clone().unwrap_or_default(),
                            self.index,
                            reason,
                            crashes
                        ),
                    );
                    let base = shared.config.crash_restart_delay_ms;
                    let delay =
                        base.saturating_mul(1 << (crashes - 1).min(16)).min(shared.config.max_crash_restart_delay_ms);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                        _ = stopped(&mut stop) => break,
                    }
                }
            }
        }
        self.update(|s| {
            s.state = InstanceState::Down;
            s.routable = false;
            s.pid = None;
        });
    }

    async fn run_once(&self, shared: &Arc<Shared>, stop: &mut watch::Receiver<bool>) -> Outcome {
        let instance_guid = new_guid();
        let dir = shared.blobs.instance_dir(&instance_guid);
        self.log(shared, "CELL", &format!("Cell {CELL} creating container for instance {instance_guid}"));
        let (droplet, container) = (self.spec.droplet_dir.clone(), dir.clone());
        let prepared = tokio::task::spawn_blocking(move || crate::blobstore::link_tree(&droplet, &container)).await;
        if !matches!(prepared, Ok(Ok(()))) {
            let _ = std::fs::remove_dir_all(&dir);
            return Outcome::Crashed("failed to create container: the droplet could not be copied".into());
        }
        self.log(shared, "CELL", &format!("Cell {CELL} successfully created container for instance {instance_guid}"));
        let app_dir = if dir.join("app").is_dir() { dir.join("app") } else { dir.clone() };
        let port = free_port();
        let child = self.command(shared, &app_dir, &dir, port, &instance_guid).spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Outcome::Crashed(format!("failed to start the process: {error}"));
            }
        };
        let pid = child.id().expect("a just-spawned child has a pid");
        shared.diego.guardian().watch(pid);
        self.update(|s| {
            *s = Status {
                state: InstanceState::Starting,
                routable: false,
                port: Some(port),
                pid: Some(pid),
                since: None,
                details: None,
                instance_guid: Some(instance_guid.clone()),
            }
        });
        forward_output(shared, &mut child, &self.spec.app_guid, &self.spec.source_type(), &self.index.to_string());
        self.log(shared, "CELL", "Starting health monitoring of container");
        let outcome = self.watch_health(shared, &mut child, port, stop).await;
        // Whatever happened, nothing of this container may survive it.
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
        shared.diego.guardian().forget(pid);
        self.log(shared, "CELL", &format!("Cell {CELL} successfully destroyed container for instance {instance_guid}"));
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        outcome
    }

    fn command(
        &self,
        shared: &Shared,
        app_dir: &std::path::Path,
        container: &std::path::Path,
        port: u16,
        guid: &str,
    ) -> Command {
        let mut vcap_application = self.spec.vcap_application.clone();
        vcap_application["instance_id"] = guid.into();
        vcap_application["instance_index"] = self.index.into();
        vcap_application["port"] = port.into();
        let tmp = container.join("tmp");
        let _ = std::fs::create_dir_all(&tmp);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(&self.spec.command)
            .current_dir(app_dir)
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORT", port.to_string())
            .env("VCAP_APPLICATION", vcap_application.to_string())
            .env("CF_INSTANCE_INDEX", self.index.to_string())
            .env("INSTANCE_INDEX", self.index.to_string())
            .env("CF_INSTANCE_GUID", guid)
            .env("INSTANCE_GUID", guid)
            .env("CF_INSTANCE_IP", "127.0.0.1")
            .env("CF_INSTANCE_INTERNAL_IP", "127.0.0.1")
            .env("CF_INSTANCE_PORT", port.to_string())
            .env("CF_INSTANCE_ADDR", format!("127.0.0.1:{port}"))
            .env("CF_INSTANCE_PORTS", format!("[{{\"external\":{port},\"internal\":{port}}}]"))
            .env("MEMORY_LIMIT", format!("{}m", self.spec.memory_in_mb))
            .env("CF_API", &shared.urls.api)
            .env(crate::c2c::PROXY_ENV, crate::c2c::proxy_url(&shared.urls.router, guid))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        command
    }

    /// Runs the health checks until the instance must stop or has crashed.
    async fn watch_health(
        &self,
        shared: &Arc<Shared>,
        child: &mut Child,
        port: u16,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let spec = &self.spec;
        let started = Instant::now();
        let mut running = false;
        loop {
            let interval = if running { spec.check_interval } else { STARTUP_CHECK_INTERVAL };
            tokio::select! {
                status = child.wait() => {
                    let code = status.ok().and_then(|s| s.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + sig))).unwrap_or(-1);
                    self.log(shared, "CELL", &format!("Exit status {code}"));
                    return Outcome::Crashed(format!("{}: Exited with status {code}", spec.source_type()));
                }
                _ = stopped(stop) => {
                    self.log(shared, "CELL", &format!("Cell {CELL} stopping instance {}", self.status.lock().unwrap().instance_guid.clone().unwrap_or_default()));
                    self.terminate(shared, child).await;
                    return Outcome::Stopped;
                }
                _ = tokio::time::sleep(interval) => {}
            }
            let forced = shared.diego.app_unhealthy(&spec.app_guid);
            let liveness = if forced {
                Err(health::forced_failure(&spec.health_check, port))
            } else {
                health::check(&spec.health_check, port, DEFAULT_INVOCATION_TIMEOUT).await
            };
            if !running {
                match liveness {
                    Ok(()) => {
                        running = true;
                        let ready = self.ready(port, forced).await;
                        self.update(|s| {
                            s.state = InstanceState::Running;
                            s.since = Some(SystemTime::now());
                            s.routable = ready;
                        });
                        self.log(shared, "CELL", "Container became healthy");
                        shared.routing.publish(shared);
                    }
                    Err(error) if started.elapsed() >= spec.health_timeout => {
                        let reason =
                            format!("Instance never healthy after {}s: {error}", spec.health_timeout.as_secs());
                        self.log(
                            shared,
                            "CELL",
                            &format!("Timed out after {}s: health check never passed.", spec.health_timeout.as_secs()),
                        );
                        return Outcome::Crashed(reason);
                    }
                    Err(_) => {}
                }
            } else {
                if let Err(error) = liveness {
                    self.log(shared, "CELL", &format!("Container became unhealthy: {error}"));
                    return Outcome::Crashed(format!("Instance became unhealthy: {error}"));
                }
                let ready = self.ready(port, forced).await;
                let changed = {
                    let mut status = self.status.lock().unwrap();
                    let changed = status.routable != ready;
                    status.routable = ready;
                    changed
                };
                if changed {
                    shared.routing.publish(shared);
                }
            }
        }
    }

    /// The readiness check (routability); `process` readiness is the process being alive.
    async fn ready(&self, port: u16, forced_unhealthy: bool) -> bool {
        !forced_unhealthy && health::check(&self.spec.readiness_check, port, DEFAULT_INVOCATION_TIMEOUT).await.is_ok()
    }

    /// SIGTERM to the process group, SIGKILL after the grace period. Like Garden, the container lives until
    /// every process in it has exited, not only the start command's shell (which exits at once on SIGTERM
    /// while the app it started is still finishing its requests in flight).
    async fn terminate(&self, shared: &Shared, child: &mut Child) {
        let Some(pid) = child.id() else { return };
        signal_group(pid, libc::SIGTERM);
        let grace = Duration::from_millis(shared.config.stop_grace_ms);
        let all_exited = async {
            let _ = child.wait().await;
            while group_has_live_process(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(grace, all_exited).await.is_err() {
            self.log(
                shared,
                "CELL",
                &format!("Exit status 137 (exceeded {}s graceful shutdown interval)", grace.as_secs()),
            );
            signal_group(pid, libc::SIGKILL);
        }
    }
}

/// Streams the child's stdout and stderr, line by line, into the app's logs as `source_type`/`index`.
pub(super) fn forward_output(shared: &Arc<Shared>, child: &mut Child, app_guid: &str, source_type: &str, index: &str) {
    for (pipe, stream) in [
        (child.stdout.take().map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>), Stream::Out),
        (child.stderr.take().map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>), Stream::Err),
    ] {
        if let Some(pipe) = pipe {
            let shared = shared.clone();
            let (app, source_type, index) = (app_guid.to_string(), source_type.to_string(), index.to_string());
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    shared.logs.push(&app, &source_type, &index, stream, &line);
                }
            });
        }
    }
}

/// Resolves when the instance is asked to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub(super) fn signal_group(pgid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions; a negative pid addresses the process group.
    unsafe { libc::kill(-(pgid as i32), signal) == 0 }
}

/// Whether a process of the group `pgid` is still running (zombies have exited; their parent may be gone).
fn group_has_live_process(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // After the command name: state, ppid, pgrp, ...
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
}

/// Instance ports, like Diego's, come from a range of their own: below Linux's ephemeral range (32768–60999),
/// so no outgoing connection can take a port between this check and the app's bind, and handed out in turn, so
/// instances starting together never get the same one. Each process starts at its own offset.
const PORT_RANGE: std::ops::Range<u16> = 20_000..32_000;

fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % span, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = PORT_RANGE.start + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}
