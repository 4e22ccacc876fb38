//! Starting and stopping a whole simulated Cloud Foundry (CC API, UAA, Log Cache and router listeners on their own
//! multi-thread runtime), and the in-process equivalents of the admin API for tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::blobstore::Blobstore;
use crate::cc::{self, orgs_and_domains};
use crate::config::{SimConfig, split_pair};
use crate::diego::Diego;
use crate::faults::{Fault, Faults};
use crate::latency::delay_answers;
use crate::logs::{Envelope, LogStore};
use crate::request_log::{RequestLog, RequestRecord};
use crate::routing::RoutingTable;
use crate::server::{self, axum_handler};
use crate::shared::{Knobs, Shared, Urls, UserAccount};
use crate::state::{State, User};
use crate::tokens::Tokens;

/// Where a running sim can be reached and how to log in; the binary prints this as its ready line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimInfo {
    pub api: String,
    pub uaa: String,
    pub log_cache: String,
    pub router: String,
    pub domain: String,
    pub organization: String,
    pub space: String,
    pub username: String,
    pub password: String,
    pub client_id: String,
    pub client_secret: String,
    /// The CA certificate to trust, when TLS is on.
    pub ca_cert_path: Option<PathBuf>,
    pub state_dir: PathBuf,
}

pub struct Sim {
    info: SimInfo,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: watch::Sender<bool>,
    _state_dir: Option<tempfile::TempDir>,
}

fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("binding the {what} listener to {addr}"))?;
    listener.set_nonblocking(true)?;
    // std listens with a backlog of 128; the router must take bursts of hundreds of connections.
    // SAFETY: listen(2) on a socket we own; calling it again only changes the backlog.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 1024) };
    Ok(listener)
}

impl Sim {
    /// Starts every listener on its own multi-thread tokio runtime running on background threads, so it works from
    /// plain #[test] functions and from inside other tokio runtimes alike.
    pub fn start(config: SimConfig) -> anyhow::Result<Sim> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cf-sim")
            .enable_all()
            .build()
            .context("starting the sim's runtime")?;
        let api = bind(config.api_listen, "API")?;
        let uaa = bind(config.uaa_listen, "UAA")?;
        let log_cache = bind(config.log_cache_listen, "Log Cache")?;
        let router = bind(config.router_listen, "router")?;

        let (state_dir, temp_dir) = match &config.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("cf-sim-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let tls = config.tls.then(|| crate::tls::generate(&state_dir)).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let urls = Urls {
            api: format!("{scheme}://{}", api.local_addr()?),
            uaa: format!("{scheme}://{}", uaa.local_addr()?),
            log_cache: format!("{scheme}://{}", log_cache.local_addr()?),
            router: format!("http://{}", router.local_addr()?),
        };

        let username = config.username.clone().unwrap_or_else(|| crate::clock::random_secret("sim-user"));
        let password = config.password.clone().unwrap_or_else(|| crate::clock::random_secret("sim-password"));
        let client_id = config.client_id.clone().unwrap_or_else(|| crate::clock::random_secret("sim-client"));
        let client_secret = config.client_secret.clone().unwrap_or_else(|| crate::clock::random_secret("sim-secret"));
        let mut users = vec![(username.clone(), password.clone())];
        for extra in &config.extra_users {
            let (name, pass) = split_pair(extra, ':', "--user")?;
            users.push((name.to_string(), pass.to_string()));
        }
        let users: Vec<UserAccount> = users
            .into_iter()
            .map(|(name, password)| UserAccount {
                user: User { guid: crate::clock::new_guid(), email: format!("{name}@sim.internal"), name },
                password,
            })
            .collect();
        let mut clients = vec![(client_id.clone(), client_secret.clone())];
        for extra in &config.extra_clients {
            let (id, secret) = split_pair(extra, ':', "--client")?;
            clients.push((id.to_string(), secret.to_string()));
        }

        let mut state = State::default();
        orgs_and_domains(&mut state, &config)
            .map_err(|e| anyhow!("creating the initial orgs, spaces and domain: {}", e.detail))?;
        let idp_users = crate::jwt_bearer::IdpUsers::from_flags(&config.oidc_users)?;
        let idp_guids = idp_users.all().into_iter().map(|u| u.user.guid);
        for user in users.iter().map(|u| u.user.guid.clone()).chain(idp_guids) {
            crate::cc::roles::grant_defaults(&mut state, &user);
        }
        let (routing, pending_routes) = RoutingTable::new();
        let shared = Arc::new(Shared {
            knobs: Knobs::from_config(&config),
            tokens: Tokens::new(
                format!("{}/oauth/token", urls.uaa),
                config.token_ttl_secs,
                config.refresh_token_ttl_secs,
            )
            .with_network_scopes(!config.no_network_scopes),
            logs: LogStore::new(config.log_buffer_size),
            requests: RequestLog::default(),
            faults: Faults::default(),
            diego: Diego::new().context("starting the instance guardian (awk)")?,
            routing,
            blobs: Blobstore::new(&state_dir)?,
            runtime: runtime.handle().clone(),
            state: std::sync::Mutex::new(state),
            users,
            clients,
            idp_users,
            urls: urls.clone(),
            config: config.clone(),
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        {
            let _context = runtime.enter();
            let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
            let listen = |listener: std::net::TcpListener| tokio::net::TcpListener::from_std(listener);
            server::spawn(
                listen(api)?,
                acceptor.clone(),
                delay_answers(axum_handler(cc::router(shared.clone())), &config),
                shutdown_rx.clone(),
            );
            server::spawn(
                listen(uaa)?,
                acceptor.clone(),
                delay_answers(axum_handler(crate::uaa::router(shared.clone())), &config),
                shutdown_rx.clone(),
            );
            server::spawn(
                listen(log_cache)?,
                acceptor,
                delay_answers(axum_handler(crate::log_cache::router(shared.clone())), &config),
                shutdown_rx.clone(),
            );
            server::spawn(listen(router)?, None, crate::router::handler(Arc::downgrade(&shared)), shutdown_rx);
            runtime.spawn(RoutingTable::apply_scheduled(Arc::downgrade(&shared), pending_routes));
        }

        let info = SimInfo {
            api: urls.api,
            uaa: urls.uaa,
            log_cache: urls.log_cache,
            router: urls.router,
            domain: config.domain.clone(),
            organization: config.organization.clone(),
            space: config.space.clone(),
            username,
            password,
            client_id,
            client_secret,
            ca_cert_path: tls.map(|t| t.ca_cert_path),
            state_dir,
        };
        Ok(Sim { info, shared, runtime: Some(runtime), shutdown, _state_dir: temp_dir })
    }

    pub fn info(&self) -> &SimInfo {
        &self.info
    }

    /// Stops every app instance (SIGTERM, then SIGKILL after grace) and every listener. Also done by Drop.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        // A separate thread, because the caller may be inside another runtime, where blocking is not allowed.
        let stopper = std::thread::spawn(move || {
            runtime.block_on(async {
                shutdown.send_replace(true);
                shared.diego.shutdown().await;
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        });
        let _ = stopper.join();
    }

    /// Everything a deploy can change, sorted, without volatile fields (see the admin API's `GET /_sim/state`).
    pub fn state_dump(&self) -> Value {
        cc::dump_state(&self.shared.state())
    }

    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.requests.records()
    }

    pub fn reset_request_log(&self) {
        self.shared.requests.reset();
    }

    /// Non-admin requests by `METHOD /path/:guid`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.shared.requests.counters()
    }

    /// Injects a fault; returns its id.
    pub fn add_fault(&self, fault: Fault) -> u64 {
        self.shared.faults.add(fault)
    }

    /// The faults with how many requests each matched and how often it fired (as `GET /_sim/faults`).
    pub fn faults(&self) -> Vec<crate::faults::FaultEntry> {
        self.shared.faults.list()
    }

    pub fn remove_fault(&self, id: u64) -> bool {
        self.shared.faults.remove(id)
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Makes the next staging of an app (guid or unique name) fail with BuildpackCompileFailed.
    pub fn fail_staging(&self, app: &str) -> anyhow::Result<()> {
        let mut state = self.shared.state();
        let guid = cc::resolve_app(&state, app).map_err(|e| anyhow!(e.detail))?;
        state.fail_next_staging.insert(guid);
        Ok(())
    }

    /// Makes every health check of an app fail (it then crashes like on Diego) or pass again.
    pub fn set_app_health(&self, app: &str, healthy: bool) -> anyhow::Result<()> {
        let guid = cc::resolve_app(&self.shared.state(), app).map_err(|e| anyhow!(e.detail))?;
        self.shared.diego.set_app_health(&guid, healthy);
        Ok(())
    }

    /// SIGKILLs one instance of an app's web process.
    pub fn kill_instance(&self, app: &str, index: u32) -> anyhow::Result<()> {
        let process = {
            let state = self.shared.state();
            let guid = cc::resolve_app(&state, app).map_err(|e| anyhow!(e.detail))?;
            state
                .app_process(&guid, "web")
                .map(|p| p.common.guid.clone())
                .ok_or_else(|| anyhow!("app {app} has no web process"))?
        };
        if self.shared.diego.kill_instance(&process, index) {
            Ok(())
        } else {
            Err(anyhow!("app {app} has no live instance {index}"))
        }
    }

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.tokens.issued()
    }

    /// Process ids of every live app instance.
    pub fn instance_pids(&self) -> Vec<u32> {
        self.shared.diego.pids()
    }

    /// The log envelopes of an app (guid), oldest first.
    pub fn app_logs(&self, app_guid: &str) -> Vec<Envelope> {
        self.shared.logs.messages(app_guid)
    }

    pub fn set_route_propagation_delay(&self, delay: Duration) {
        self.shared.knobs.route_propagation_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_staging_delay(&self, delay: Duration) {
        self.shared.knobs.staging_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_job_delay(&self, delay: Duration) {
        self.shared.knobs.job_delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn set_token_ttl(&self, ttl: Duration) {
        self.shared.tokens.set_ttl(ttl.as_secs());
    }

    /// Turns the router's `http` timers on or off (`--no-http-timers` at start).
    pub fn set_http_timers(&self, on: bool) {
        self.shared.knobs.http_timers.store(on, Ordering::SeqCst);
    }

    /// The `http` timers Log Cache holds for a source (an app guid), oldest first.
    pub fn http_timers(&self, source_id: &str) -> Vec<crate::logs::TimerEnvelope> {
        self.shared.logs.timers(source_id)
    }

    pub fn set_default_per_page(&self, per_page: usize) {
        self.shared.knobs.default_per_page.store(per_page.clamp(1, 5000), Ordering::SeqCst);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}
