//! What every component of a running sim shares: the CC state, the listeners' URLs, credentials, the knobs that
//! can change at run time, and the other components (tokens, logs, request log, faults, runtime, routing, blobs).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::blobstore::Blobstore;
use crate::config::SimConfig;
use crate::diego::Diego;
use crate::faults::Faults;
use crate::logs::LogStore;
use crate::request_log::RequestLog;
use crate::routing::RoutingTable;
use crate::state::{State, User};
use crate::tokens::Tokens;

/// The base URLs of the listeners, as clients reach them.
#[derive(Debug, Clone)]
pub struct Urls {
    pub api: String,
    pub uaa: String,
    pub log_cache: String,
    pub router: String,
}

/// A UAA user: name, password and the guid its tokens carry.
#[derive(Debug, Clone)]
pub struct UserAccount {
    pub user: User,
    pub password: String,
}

/// Settings a test may change while the sim runs.
#[derive(Debug)]
pub struct Knobs {
    pub route_propagation_delay_ms: AtomicU64,
    pub staging_delay_ms: AtomicU64,
    pub package_processing_delay_ms: AtomicU64,
    pub job_delay_ms: AtomicU64,
    pub default_per_page: AtomicUsize,
    /// Whether the router sends its `http` timers to Log Cache.
    pub http_timers: AtomicBool,
}

impl Knobs {
    pub fn from_config(config: &SimConfig) -> Self {
        Knobs {
            route_propagation_delay_ms: AtomicU64::new(config.route_propagation_delay_ms),
            staging_delay_ms: AtomicU64::new(config.staging_delay_ms),
            package_processing_delay_ms: AtomicU64::new(config.package_processing_delay_ms),
            job_delay_ms: AtomicU64::new(config.job_delay_ms),
            default_per_page: AtomicUsize::new(config.default_per_page),
            http_timers: AtomicBool::new(!config.no_http_timers),
        }
    }

    pub fn ms(value: &AtomicU64) -> Duration {
        Duration::from_millis(value.load(Ordering::SeqCst))
    }
}

pub struct Shared {
    pub config: SimConfig,
    pub knobs: Knobs,
    pub urls: Urls,
    pub users: Vec<UserAccount>,
    /// Clients allowed the client_credentials grant: (id, secret).
    pub clients: Vec<(String, String)>,
    /// The users of the OIDC identity providers (`--oidc-user` and the shadow users added at login).
    pub idp_users: crate::jwt_bearer::IdpUsers,
    pub state: Mutex<State>,
    pub tokens: Tokens,
    pub logs: LogStore,
    pub requests: RequestLog,
    pub faults: Faults,
    pub diego: Diego,
    pub routing: RoutingTable,
    pub blobs: Blobstore,
    pub runtime: tokio::runtime::Handle,
}

pub type Ctx = Arc<Shared>;

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn default_per_page(&self) -> usize {
        self.knobs.default_per_page.load(Ordering::SeqCst)
    }

    /// A user by guid (for `created_by` of builds), of UAA or of an OIDC identity provider.
    pub fn user(&self, guid: &str) -> Option<User> {
        let idp_users = || self.idp_users.all().into_iter().map(|u| u.user);
        self.users.iter().map(|u| u.user.clone()).chain(idp_users()).find(|u| u.guid == guid)
    }
}
