//! The Cloud Controller's database: orgs, spaces, domains, routes, apps, processes, packages, builds, droplets,
//! jobs, service instances and bindings, kept in memory behind one lock.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::cc::error::{ApiError, ApiResult};
use crate::cc::list::Listable;
use crate::cc::metadata::Metadata;
use crate::clock::{new_guid, now_iso};

/// Fields every resource has.
#[derive(Debug, Clone)]
pub struct Common {
    pub guid: String,
    pub created_at: String,
    pub updated_at: String,
    /// Creation order, so lists sort stably even within one second.
    pub seq: u64,
    pub updated_seq: u64,
    pub metadata: Metadata,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub common: Common,
    pub name: String,
    pub quota_guid: String,
}

#[derive(Debug, Clone)]
pub struct Space {
    pub common: Common,
    pub name: String,
    pub org_guid: String,
    /// The space quota applied to it, if any.
    pub quota_guid: Option<String>,
}

/// An organization or space quota definition; only the memory limit is modelled, every other limit is unlimited.
#[derive(Debug, Clone)]
pub struct Quota {
    pub common: Common,
    pub name: String,
    /// `apps.total_memory_in_mb`; `None` is unlimited (CC's -1).
    pub memory_limit_mb: Option<u64>,
    /// The org a space quota belongs to; `None` for an organization quota.
    pub org_guid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub common: Common,
    pub name: String,
    pub internal: bool,
    /// `None` for a shared domain.
    pub org_guid: Option<String>,
    pub shared_org_guids: Vec<String>,
    /// `enforce_route_policies` and `route_policies_scope` (CC 3.225.0, see cc/route_policies.rs).
    pub route_policies: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub guid: String,
    pub app_guid: String,
    pub process_type: String,
    pub port: u16,
    pub protocol: String,
    /// Set only by a replace with weighted destinations.
    pub weight: Option<u8>,
    pub created_at: String,
    pub updated_at: String,
}

impl Destination {
    /// A new unweighted destination created now.
    pub fn new(app_guid: &str, process_type: &str, port: u16, protocol: &str) -> Self {
        let now = now_iso();
        Destination {
            guid: new_guid(),
            app_guid: app_guid.to_string(),
            process_type: process_type.to_string(),
            port,
            protocol: protocol.to_string(),
            weight: None,
            created_at: now.clone(),
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub common: Common,
    pub host: String,
    pub path: String,
    pub domain_guid: String,
    pub space_guid: String,
    pub destinations: Vec<Destination>,
    /// `options.loadbalancing`; a route created without options has none (CC stores and renders `{}`).
    pub loadbalancing: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Started,
    Stopped,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Started => "STARTED",
            AppState::Stopped => "STOPPED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    Buildpack { buildpacks: Vec<String>, stack: String },
    Docker,
}

impl Lifecycle {
    pub fn type_name(&self) -> &'static str {
        match self {
            Lifecycle::Buildpack { .. } => "buildpack",
            Lifecycle::Docker => "docker",
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub common: Common,
    pub name: String,
    pub space_guid: String,
    pub state: AppState,
    pub lifecycle: Lifecycle,
    pub env: BTreeMap<String, Value>,
    pub droplet_guid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `port`, `http` or `process`.
    pub kind: String,
    pub endpoint: Option<String>,
    pub timeout: Option<u64>,
    pub invocation_timeout: Option<u64>,
    pub interval: Option<u64>,
}

impl HealthCheck {
    pub fn of_kind(kind: &str) -> Self {
        HealthCheck { kind: kind.to_string(), endpoint: None, timeout: None, invocation_timeout: None, interval: None }
    }
}

#[derive(Debug, Clone)]
pub struct Process {
    pub common: Common,
    pub app_guid: String,
    pub kind: String,
    /// The command the user set; `None` means the droplet's detected command.
    pub command: Option<String>,
    pub instances: u32,
    pub memory_in_mb: u64,
    pub disk_in_mb: u64,
    pub log_rate_limit: i64,
    pub health_check: HealthCheck,
    pub readiness_check: HealthCheck,
    /// Changes whenever the runtime must recreate the instances (start, restart).
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageState {
    AwaitingUpload,
    ProcessingUpload,
    Ready,
    Failed,
    Copying,
    Expired,
}

impl PackageState {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageState::AwaitingUpload => "AWAITING_UPLOAD",
            PackageState::ProcessingUpload => "PROCESSING_UPLOAD",
            PackageState::Ready => "READY",
            PackageState::Failed => "FAILED",
            PackageState::Copying => "COPYING",
            PackageState::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DockerImage {
    pub image: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub common: Common,
    pub app_guid: String,
    /// `None` for bits, the image for docker.
    pub docker: Option<DockerImage>,
    pub state: PackageState,
    pub checksum: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildState {
    Staging,
    Staged,
    Failed,
}

impl BuildState {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Staging => "STAGING",
            BuildState::Staged => "STAGED",
            BuildState::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub guid: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct Build {
    pub common: Common,
    pub app_guid: String,
    pub package_guid: String,
    pub state: BuildState,
    pub error: Option<String>,
    pub lifecycle: Lifecycle,
    pub droplet_guid: Option<String>,
    pub staging_memory_in_mb: u64,
    pub staging_disk_in_mb: u64,
    pub created_by: User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropletState {
    AwaitingUpload,
    ProcessingUpload,
    Staged,
    Copying,
    Failed,
    Expired,
}

impl DropletState {
    pub fn as_str(self) -> &'static str {
        match self {
            DropletState::AwaitingUpload => "AWAITING_UPLOAD",
            DropletState::ProcessingUpload => "PROCESSING_UPLOAD",
            DropletState::Staged => "STAGED",
            DropletState::Copying => "COPYING",
            DropletState::Failed => "FAILED",
            DropletState::Expired => "EXPIRED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Droplet {
    pub common: Common,
    pub app_guid: String,
    pub package_guid: Option<String>,
    pub state: DropletState,
    pub error: Option<String>,
    pub process_types: BTreeMap<String, String>,
    pub checksum: Option<String>,
    pub buildpacks: Vec<String>,
    pub stack: Option<String>,
    /// The docker image, for docker droplets.
    pub image: Option<String>,
    pub lifecycle_type: &'static str,
    pub execution_metadata: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Processing,
    Complete,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Processing => "PROCESSING",
            JobState::Complete => "COMPLETE",
            JobState::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub common: Common,
    pub operation: String,
    pub state: JobState,
    pub errors: Vec<ApiError>,
    pub warnings: Vec<String>,
    /// The resource the job works on, for its links: (link name, path).
    pub resource_link: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Pending,
    Running,
    Canceling,
    Succeeded,
    Failed,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Running => "RUNNING",
            TaskState::Canceling => "CANCELING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Failed => "FAILED",
        }
    }

    /// SUCCEEDED or FAILED (`TaskModel::TERMINAL_STATES`).
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// A task (`app/models/runtime/task_model.rb`): a one-off command run on a droplet of its app.
#[derive(Debug, Clone)]
pub struct Task {
    pub common: Common,
    pub app_guid: String,
    pub droplet_guid: String,
    pub name: String,
    pub command: String,
    pub state: TaskState,
    pub memory_in_mb: u64,
    pub disk_in_mb: u64,
    pub log_rate_limit: i64,
    pub sequence_id: u64,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceInstance {
    pub common: Common,
    pub name: String,
    pub space_guid: String,
    pub credentials: Value,
    pub tags: Vec<String>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    /// The plan of a managed instance (of the built-in broker); `None` for a user-provided one.
    pub plan: Option<ServicePlan>,
}

/// A plan of the built-in broker: its guid and whether its offering lets bindings be fetched
/// (`bindings_retrievable`), which `GET /v3/service_credential_bindings/:guid/parameters` needs.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub guid: String,
    pub bindings_retrievable: bool,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub common: Common,
    pub name: Option<String>,
    pub app_guid: String,
    pub service_instance_guid: String,
    /// The parameters the broker was given at bind time (managed instances only).
    pub parameters: Map<String, Value>,
}

#[derive(Debug, Default)]
pub struct State {
    next_seq: u64,
    pub orgs: BTreeMap<String, Org>,
    pub spaces: BTreeMap<String, Space>,
    pub domains: BTreeMap<String, Domain>,
    pub routes: BTreeMap<String, Route>,
    pub apps: BTreeMap<String, App>,
    pub processes: BTreeMap<String, Process>,
    pub packages: BTreeMap<String, Package>,
    pub builds: BTreeMap<String, Build>,
    pub droplets: BTreeMap<String, Droplet>,
    pub jobs: BTreeMap<String, Job>,
    pub service_instances: BTreeMap<String, ServiceInstance>,
    pub bindings: BTreeMap<String, Binding>,
    pub tasks: BTreeMap<String, Task>,
    /// App features set away from CC's defaults: app guid → feature name → enabled (see cc/features.rs).
    pub app_features: BTreeMap<String, BTreeMap<String, bool>>,
    /// The policy server's network policies, in creation order.
    pub policies: Vec<crate::cc::policies::NetworkPolicy>,
    /// CC's route policies by guid (cc/route_policies.rs).
    pub route_policies: BTreeMap<String, crate::cc::route_policies::RoutePolicy>,
    /// The users' roles in orgs and spaces by guid (cc/roles.rs).
    pub roles: BTreeMap<String, crate::cc::roles::Role>,
    pub org_quotas: BTreeMap<String, Quota>,
    pub space_quotas: BTreeMap<String, Quota>,
    /// Apps whose next staging the admin API made fail.
    pub fail_next_staging: HashSet<String>,
}

macro_rules! listable {
    ($($ty:ty => |$item:ident| $name:expr),* $(,)?) => {$(
        impl Listable for $ty {
            fn guid(&self) -> &str { &self.common.guid }
            fn sequence(&self) -> u64 { self.common.seq }
            fn updated_seq(&self) -> u64 { self.common.updated_seq }
            fn labels(&self) -> Option<&BTreeMap<String, String>> { Some(&self.common.metadata.labels) }
            fn sort_name(&self) -> Option<&str> { let $item = self; $name }
        }
    )*};
}

listable! {
    Org => |o| Some(o.name.as_str()),
    Space => |s| Some(s.name.as_str()),
    Domain => |d| Some(d.name.as_str()),
    Route => |_r| None,
    App => |a| Some(a.name.as_str()),
    Process => |_p| None,
    Package => |_p| None,
    Build => |_b| None,
    Droplet => |_d| None,
    ServiceInstance => |s| Some(s.name.as_str()),
    Quota => |q| Some(q.name.as_str()),
    Binding => |b| b.name.as_deref(),
    Task => |t| Some(t.name.as_str()),
    crate::cc::route_policies::RoutePolicy => |_p| None,
    crate::cc::roles::Role => |_r| None,
}

impl State {
    /// Fresh common fields for a new resource.
    pub fn common(&mut self) -> Common {
        self.next_seq += 1;
        let now = now_iso();
        Common {
            guid: new_guid(),
            created_at: now.clone(),
            updated_at: now,
            seq: self.next_seq,
            updated_seq: self.next_seq,
            metadata: Metadata::default(),
        }
    }

    /// Marks a resource as changed now.
    pub fn touch(&mut self, common: &mut Common) {
        self.next_seq += 1;
        common.updated_at = now_iso();
        common.updated_seq = self.next_seq;
    }

    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn app(&self, guid: &str) -> ApiResult<&App> {
        self.apps.get(guid).ok_or_else(|| ApiError::not_found("App"))
    }

    /// The app a new package or droplet is to belong to: 422, as CC answers, when it does not exist.
    pub fn owning_app(&self, guid: &str) -> ApiResult<&App> {
        self.apps
            .get(guid)
            .ok_or_else(|| ApiError::unprocessable("App is invalid. Ensure it exists and you have access to it."))
    }

    pub fn space(&self, guid: &str) -> ApiResult<&Space> {
        self.spaces.get(guid).ok_or_else(|| ApiError::not_found("Space"))
    }

    pub fn process(&self, guid: &str) -> ApiResult<&Process> {
        self.processes.get(guid).ok_or_else(|| ApiError::not_found("Process"))
    }

    pub fn route(&self, guid: &str) -> ApiResult<&Route> {
        self.routes.get(guid).ok_or_else(|| ApiError::not_found("Route"))
    }

    pub fn domain(&self, guid: &str) -> ApiResult<&Domain> {
        self.domains.get(guid).ok_or_else(|| ApiError::not_found("Domain"))
    }

    pub fn package(&self, guid: &str) -> ApiResult<&Package> {
        self.packages.get(guid).ok_or_else(|| ApiError::not_found("Package"))
    }

    pub fn droplet(&self, guid: &str) -> ApiResult<&Droplet> {
        self.droplets.get(guid).ok_or_else(|| ApiError::not_found("Droplet"))
    }

    pub fn build(&self, guid: &str) -> ApiResult<&Build> {
        self.builds.get(guid).ok_or_else(|| ApiError::not_found("Build"))
    }

    pub fn service_instance(&self, guid: &str) -> ApiResult<&ServiceInstance> {
        self.service_instances.get(guid).ok_or_else(|| ApiError::not_found("Service instance"))
    }

    /// The process of `kind` of an app.
    pub fn app_process(&self, app_guid: &str, kind: &str) -> Option<&Process> {
        self.processes.values().find(|p| p.app_guid == app_guid && p.kind == kind)
    }

    pub fn app_processes<'a>(&'a self, app_guid: &'a str) -> impl Iterator<Item = &'a Process> + 'a {
        self.processes.values().filter(move |p| p.app_guid == app_guid)
    }

    pub fn org_of_space(&self, space_guid: &str) -> Option<&Org> {
        self.spaces.get(space_guid).and_then(|s| self.orgs.get(&s.org_guid))
    }

    /// `host.domain/path`, the route's URL without scheme.
    pub fn route_url(&self, route: &Route) -> String {
        let domain = self.domains.get(&route.domain_guid).map(|d| d.name.as_str()).unwrap_or("");
        let host = if route.host.is_empty() { domain.to_string() } else { format!("{}.{domain}", route.host) };
        format!("{host}{}", route.path)
    }

    /// Routes with a destination pointing at the app.
    pub fn app_routes<'a>(&'a self, app_guid: &'a str) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes.values().filter(move |r| r.destinations.iter().any(|d| d.app_guid == app_guid))
    }

    /// The app's name is taken in its space (names are unique per space, case-insensitively).
    pub fn app_name_taken(&self, space_guid: &str, name: &str, except_guid: Option<&str>) -> bool {
        self.apps.values().any(|a| {
            a.space_guid == space_guid
                && a.name.eq_ignore_ascii_case(name)
                && Some(a.common.guid.as_str()) != except_guid
        })
    }

    /// The oldest shared, non-internal domain (CC's default domain).
    pub fn default_domain(&self, org_guid: &str) -> Option<&Domain> {
        let mut shared: Vec<&Domain> = self.domains.values().filter(|d| d.org_guid.is_none() && !d.internal).collect();
        shared.sort_by_key(|d| d.common.seq);
        shared.first().copied().or_else(|| {
            let mut private: Vec<&Domain> =
                self.domains.values().filter(|d| d.org_guid.as_deref() == Some(org_guid)).collect();
            private.sort_by_key(|d| d.common.seq);
            private.first().copied()
        })
    }

    /// Whether a domain can be used by routes in an org.
    pub fn domain_visible_in_org(&self, domain: &Domain, org_guid: &str) -> bool {
        match &domain.org_guid {
            None => true,
            Some(owner) => owner == org_guid || domain.shared_org_guids.iter().any(|g| g == org_guid),
        }
    }

    /// Creates an app with its `web` process, as `POST /v3/apps` does.
    pub fn create_app(&mut self, name: &str, space_guid: &str, lifecycle: Lifecycle) -> ApiResult<String> {
        if self.app_name_taken(space_guid, name, None) {
            return Err(ApiError::uniqueness(format!("App with the name '{name}' already exists.")));
        }
        let common = self.common();
        let guid = common.guid.clone();
        self.apps.insert(
            guid.clone(),
            App {
                common,
                name: name.to_string(),
                space_guid: space_guid.to_string(),
                state: AppState::Stopped,
                lifecycle,
                env: BTreeMap::new(),
                droplet_guid: None,
            },
        );
        self.ensure_process(&guid, "web");
        Ok(guid)
    }

    /// The app's process of `kind`, created with CC's defaults when missing (web gets 1 instance, others 0).
    pub fn ensure_process(&mut self, app_guid: &str, kind: &str) -> String {
        if let Some(process) = self.app_process(app_guid, kind) {
            return process.common.guid.clone();
        }
        let common = self.common();
        let guid = common.guid.clone();
        let web = kind == "web";
        self.processes.insert(
            guid.clone(),
            Process {
                common,
                app_guid: app_guid.to_string(),
                kind: kind.to_string(),
                command: None,
                instances: u32::from(web),
                memory_in_mb: 1024,
                disk_in_mb: 1024,
                log_rate_limit: -1,
                health_check: HealthCheck::of_kind(if web { "port" } else { "process" }),
                readiness_check: HealthCheck::of_kind("process"),
                version: new_guid(),
            },
        );
        guid
    }

    /// The droplet's command for a process type, as CC fills it in when the user set none.
    pub fn detected_command(&self, process: &Process) -> Option<String> {
        let app = self.apps.get(&process.app_guid)?;
        let droplet = self.droplets.get(app.droplet_guid.as_ref()?)?;
        droplet.process_types.get(&process.kind).cloned()
    }
}
