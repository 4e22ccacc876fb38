//! Pushing the candidate: CF's own `apply_manifest` with the rewritten manifest and, beside it, the bits
//! (uploaded with resource matching, a droplet uploaded as is, a docker image, or production's droplet copied);
//! then staging with its output streamed, the droplet set, inherited scale applied, and the app started and
//! waited for until every instance is running and routable.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::task::JoinHandle;

use super::carry;
use super::context::{Context, JOB_TIMEOUT};
use super::inputs::Payload;
use super::lock::Lock;
use super::plan::{Blue, Plan};
use super::routes;
use crate::bits::{AppBits, PackageZip, Resource, content_digest, gather, match_cached, write_zip};
use crate::cf::builds::NewBuild;
use crate::cf::droplets::Droplet;
use crate::cf::packages::Package;
use crate::cf::processes::{InstanceState, InstanceStats, Scale};
use crate::cf::resource_matches::FileResource;
use crate::cf::{CfClient, Poll, Wait};
use crate::log;

/// What pushing produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pushed {
    pub(crate) droplet_guid: String,
    /// SHA-256 of the uploaded package, when bits were uploaded.
    pub(crate) package_checksum: Option<String>,
    /// Running instances per process type once healthy.
    pub(crate) instances: BTreeMap<String, u32>,
    /// Memory per instance of the web process, in MB.
    pub(crate) memory_mb: Option<u64>,
    pub(crate) stack: Option<String>,
    pub(crate) buildpacks: Vec<String>,
}

/// Applies the candidate's manifest.
async fn apply_manifest(
    cf: &CfClient,
    space_guid: &str,
    plan: &Plan,
    listed: &carry::Listed,
    timeout: Duration,
) -> Result<()> {
    log::info("applying the manifest (name, routes, env, services, processes, health checks)");
    let parameters = carry::parameters_for(cf, plan.blue.as_ref(), listed).await?;
    let (manifest, carried) = carry::manifest(&plan.candidate_manifest, plan.blue.as_ref(), &parameters)?;
    carried.iter().for_each(log::detail);
    cf.manifests().apply(space_guid, &manifest, timeout).await.context("applying the manifest")?;
    Ok(())
}

/// The guid of the temporary route the applied manifest mapped to the candidate, if the plan has one.
async fn temporary_route(cf: &CfClient, green_guid: &str, plan: &Plan) -> Result<Option<String>> {
    let Some(url) = &plan.temp_route else { return Ok(None) };
    let routes = cf.routes().for_app(green_guid).await?;
    let route = routes
        .into_iter()
        .find(|r| routes::normalize(&r.url) == routes::normalize(url))
        .ok_or_else(|| anyhow!("the temporary route {url} was not mapped by apply_manifest"))?;
    log::detail(format_args!("temporary route {url}"));
    Ok(Some(route.guid))
}

/// The guid of the candidate's temporary route if it exists in the space (mapped or not), looked up by its
/// URL; `None` when it does not exist or cannot be looked up.
async fn existing_temporary_route(cf: &CfClient, space_guid: &str, plan: &Plan) -> Option<String> {
    let url = plan.temp_route.as_ref()?;
    let targets = routes::resolve_manifest_routes(cf, space_guid, std::slice::from_ref(url)).await.ok()?;
    targets.into_iter().next()?.route.map(|r| r.guid)
}

/// The push up to the candidate's droplet: the manifest applied, side by side with the bits made ready (resource
/// matching, upload; a docker package; a droplet uploaded or copied), which do not need the manifest; then
/// staging, the droplet set, inherited scale applied, beside the temporary route's lookup and the plan written to
/// the journal. The guid of the temporary route lands in `temp_route_guid` as soon as it is known, also when this
/// fails (for the cleanup).
pub(crate) async fn to_droplet(
    ctx: &Context,
    lock: &Lock,
    plan: &Plan,
    temp_route_guid: &mut Option<String>,
) -> Result<Pushed> {
    let (cf, green, space_guid) = (&ctx.cf, &lock.app, &ctx.target.space.guid);
    let staging = Staging {
        cf,
        ahead: ctx.zip_ahead.as_ref(),
        green_guid: &green.guid,
        green_name: &green.name,
        timeout: ctx.within(ctx.params.timeouts.staging)?,
    };
    let applied = async {
        let timeout = ctx.within(JOB_TIMEOUT)?;
        let applied = apply_manifest(cf, space_guid, plan, &ctx.production_policies, timeout).await;
        if applied.is_err() {
            // CF may have created the temporary route before the failure: find it, so the cleanup removes it.
            *temp_route_guid = existing_temporary_route(cf, space_guid, plan).await;
        }
        applied
    };
    // A failure of the manifest's side drops the bits at once; one of the bits' side (or of the network
    // policies') waits for the manifest's, which may have created the temporary route.
    let made = async { anyhow::Ok(staging.source(plan).await) };
    // Production's network policies need nothing but the two apps: given beside the rest, before the start.
    let production = plan.blue.as_ref().map(|b| b.app.guid.as_str());
    let carried = async { anyhow::Ok(carry::policies_to(cf, production, green, &ctx.production_policies).await) };
    let ((), made, carried) = tokio::try_join!(applied, made, carried)?;
    let made = match carried.and(made) {
        Ok(made) => made,
        Err(e) => {
            // The manifest applied has mapped the temporary route: find it, so the cleanup removes it.
            *temp_route_guid = existing_temporary_route(cf, space_guid, plan).await;
            return Err(e);
        }
    };
    // Beside staging: the temporary route's guid looked up, then one journal write for all the plan settled (what
    // recovery needs to undo or finish this deploy), in the background (the next journal write waits for it): a
    // temporary route created just before a crash, before the journal names it, is reused by the next deploy.
    let recorded = async {
        let found = temporary_route(cf, &green.guid, plan).await;
        *temp_route_guid = match &found {
            Ok(guid) => guid.clone(),
            Err(_) => existing_temporary_route(cf, space_guid, plan).await,
        };
        found?;
        lock.record_behind(|j| {
            j.temp_route = temp_route_guid.clone();
            j.blue_guid = plan.blue.as_ref().map(|b| b.app.guid.clone());
            j.prod_routes = routes::existing_guids(&plan.prod_routes);
        })
        .await
    };
    let mut pushed = Pushed::default();
    // A failure of the journal's side drops the staging at once; one of the staging waits for the journal's, which
    // learns the temporary route's guid.
    let staged = async {
        anyhow::Ok(match made {
            Made::Package { guid, checksum } => {
                pushed.package_checksum = checksum;
                staging.stage_then(&guid, |droplet_guid| set_droplet(cf, &green.guid, droplet_guid)).await
            }
            Made::Droplet(guid) => set_droplet(cf, &green.guid, guid).await,
        })
    };
    let ((), droplet) = tokio::try_join!(recorded, staged)?;
    let droplet = droplet?;
    pushed.droplet_guid = droplet.guid.clone();
    pushed.stack = droplet.stack.clone();
    pushed.buildpacks =
        droplet.buildpacks.iter().flatten().filter_map(|b| b.buildpack_name.clone().or(b.name.clone())).collect();
    scale_like_production(cf, &green.guid, plan).await?;
    Ok(pushed)
}

/// Makes `droplet_guid` the candidate's current droplet, reading the droplet (stack, buildpacks) meanwhile.
async fn set_droplet(cf: &CfClient, green_guid: &str, droplet_guid: String) -> Result<Droplet> {
    let set = async { cf.apps().set_current_droplet(green_guid, &droplet_guid).await.map_err(anyhow::Error::from) };
    let read = async { cf.droplets().get(&droplet_guid).await.map_err(anyhow::Error::from) };
    let (_, droplet) = tokio::try_join!(set, read)?;
    Ok(droplet)
}

/// What the candidate's droplet is made from, ready before the manifest is applied.
enum Made {
    /// A package to stage, with the checksum of the bits uploaded.
    Package { guid: String, checksum: Option<String> },
    /// A droplet, staged already.
    Droplet(String),
}

/// The zip of what Cloud Foundry lacks of the app bits, and the files it has.
type Zipped = (PackageZip, Vec<FileResource>);

/// App bits gathered in one walk: the entries the zip is made from, and their content digest.
pub(crate) struct Gathered {
    bits: AppBits,
    resources: Vec<Resource>,
    /// What [`content_digest`] makes of them.
    pub(crate) digest: String,
    took: Duration,
}

/// Gathers and hashes `bits` on a blocking thread.
pub(crate) async fn gather_bits(bits: AppBits) -> Result<Gathered> {
    let started = Instant::now();
    tokio::task::spawn_blocking(move || {
        let resources = gather(&bits)?;
        let digest = content_digest(&bits, &resources)?;
        Ok(Gathered { bits, resources, digest, took: started.elapsed() })
    })
    .await?
}

/// Gathered app bits matched against Cloud Foundry's resource cache and zipped.
async fn zip(cf: &CfClient, gathered: Gathered) -> Result<Zipped> {
    let Gathered { bits, resources: gathered, took, .. } = gathered;
    let files = gathered.iter().filter(|r| r.is_match_candidate()).count();
    let total: u64 = gathered.iter().map(|r| r.size).sum();
    log::info(format_args!(
        "packaging {} ({} files, {}, hashed in {})",
        bits.param(),
        files,
        log::human_bytes(total),
        log::human_duration(took)
    ));
    let (cached, matched) = match_cached(cf, &gathered).await?;
    let cached_bytes: u64 = gathered.iter().filter(|r| r.is_cached(&cached)).map(|r| r.size).sum();
    log::detail(format_args!(
        "{} of {} files ({}) already in Cloud Foundry's cache",
        matched.len(),
        files,
        log::human_bytes(cached_bytes)
    ));
    let zip = tokio::task::spawn_blocking(move || write_zip(&bits, &gathered, &cached)).await??;
    Ok((zip, matched))
}

/// The app bits' packaging started before the lock, so the zipping (the longest of it) runs while the lock is
/// taken and the plan made, and the package they go into, created as soon as the candidate exists (beside the
/// plan's reads); the push uploads what it made. Dropped unused (a put that fails before its push), both are
/// aborted.
pub(crate) struct ZipAhead {
    zip: Ahead<Zipped>,
    package: Ahead<Package>,
}

/// Work started ahead, until the push takes it.
type Ahead<T> = Mutex<Option<JoinHandle<Result<T>>>>;

/// The work started ahead in `slot`, if any and not taken yet.
fn take<T>(slot: &Ahead<T>) -> Option<JoinHandle<Result<T>>> {
    slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
}

impl ZipAhead {
    /// Starts matching and zipping the `gathered` app bits.
    pub(crate) fn start(cf: &CfClient, gathered: Gathered) -> ZipAhead {
        let cf = cf.clone();
        let zip = tokio::spawn(async move { zip(&cf, gathered).await });
        ZipAhead { zip: Mutex::new(Some(zip)), package: Mutex::new(None) }
    }

    /// Starts creating the bits package of the candidate `app_guid`: it needs nothing else, so the upload can go
    /// out with the manifest's application instead of one round trip after it.
    pub(crate) fn create_package(&self, cf: &CfClient, app_guid: &str) {
        let (cf, app_guid) = (cf.clone(), app_guid.to_owned());
        let task = tokio::spawn(async move { Ok(cf.packages().create_bits(&app_guid).await?) });
        *self.package.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    }
}

impl Drop for ZipAhead {
    fn drop(&mut self) {
        take(&self.zip).inspect(JoinHandle::abort);
        take(&self.package).inspect(JoinHandle::abort);
    }
}

/// Where a droplet for the candidate comes from: one method per source of bits.
struct Staging<'a> {
    cf: &'a CfClient,
    /// The app bits' packaging, when it started before the lock.
    ahead: Option<&'a ZipAhead>,
    green_guid: &'a str,
    green_name: &'a str,
    timeout: Duration,
}

impl Staging<'_> {
    /// The package or droplet of the plan's payload.
    async fn source(&self, plan: &Plan) -> Result<Made> {
        match &plan.payload {
            Payload::App(bits) => self.app_bits(bits).await,
            Payload::Docker { image, username, password } => {
                self.docker_image(image, username.as_deref(), password.as_deref()).await
            }
            Payload::Droplet { tgz, process_types } => self.droplet_tarball(tgz, process_types).await,
            Payload::Production => self.production_droplet(plan.blue.as_ref()).await,
            Payload::Restage => self.production_package(plan.blue.as_ref()).await,
        }
    }

    /// App bits: packaged with resource matching and put in a package (both ahead, or side by side now), and
    /// uploaded.
    async fn app_bits(&self, bits: &AppBits) -> Result<Made> {
        let cf = self.cf;
        let zipped = async {
            match self.ahead.and_then(|ahead| take(&ahead.zip)) {
                Some(task) => task.await.context("packaging the app bits")?,
                None => zip(cf, gather_bits(bits.clone()).await?).await,
            }
        };
        let package = async {
            match self.ahead.and_then(|ahead| take(&ahead.package)) {
                Some(task) => task.await.context("creating the bits package")?,
                None => cf.packages().create_bits(self.green_guid).await.map_err(anyhow::Error::from),
            }
        };
        let ((zip, matched), package) = tokio::try_join!(zipped, package)?;
        let zip_path = (!zip.is_empty()).then(|| zip.path());
        if let Some(path) = zip_path {
            log::info(format_args!("uploading {} ({} zipped)", path.display(), log::human_bytes(zip.len())));
        } else {
            log::info("uploading nothing new: every file is cached");
        }
        cf.packages().upload(&package.guid, zip_path, &matched).await.context("uploading the app bits")?;
        let package = cf.packages().wait_ready(&package.guid, self.timeout).await?;
        let checksum = package.data.checksum.and_then(|c| c.value);
        Ok(Made::Package { guid: package.guid, checksum })
    }

    /// A docker image: a docker package, to stage.
    async fn docker_image(&self, image: &str, username: Option<&str>, password: Option<&str>) -> Result<Made> {
        log::info(format_args!("using docker image {image}"));
        let package = self.cf.packages().create_docker(self.green_guid, image, username, password).await?;
        Ok(Made::Package { guid: package.guid, checksum: None })
    }

    /// A droplet tarball: uploaded as is, no staging.
    async fn droplet_tarball(&self, tgz: &Path, process_types: &BTreeMap<String, String>) -> Result<Made> {
        let size = std::fs::metadata(tgz).map(|m| m.len()).unwrap_or(0);
        log::info(format_args!("uploading droplet {} ({}) — no staging", tgz.display(), log::human_bytes(size)));
        let droplet = self.cf.droplets().create(self.green_guid, process_types).await?;
        self.cf.droplets().upload(&droplet.guid, tgz, self.timeout).await.context("uploading the droplet")?;
        Ok(Made::Droplet(droplet.guid))
    }

    /// Production's current droplet, copied: a redeploy with new settings, no staging.
    async fn production_droplet(&self, blue: Option<&Blue>) -> Result<Made> {
        let blue = blue.ok_or_else(|| {
            anyhow!("nothing to deploy: give params.path, params.droplet or params.docker_image (there is no production app to redeploy)")
        })?;
        let current = blue.app.current_droplet_guid().ok_or_else(|| {
            anyhow!(
                "nothing to deploy: {} has no droplet to copy; give params.path, params.droplet or params.docker_image",
                blue.app.name
            )
        })?;
        log::info(format_args!("copying {}'s current droplet {current} — no staging", blue.app.name));
        let droplet = async {
            let copy = self.cf.droplets().copy(current, self.green_guid).await?;
            Ok(self.cf.droplets().wait_staged(&copy.guid, self.timeout).await?.guid)
        };
        let (droplet, ()) = tokio::try_join!(droplet, self.copy_newest_package(blue))?;
        Ok(Made::Droplet(droplet))
    }

    /// Production's newest READY package, copied into the candidate beside its copied droplet (CC's droplet copy
    /// clones no package), so that a later `params.restage` still finds the package to stage again.
    async fn copy_newest_package(&self, blue: &Blue) -> Result<()> {
        let Some(package) = self.cf.packages().newest_ready(&blue.app.guid).await? else { return Ok(()) };
        self.cf.packages().copy(&package.guid, self.green_guid).await.context("copying production's package")?;
        Ok(())
    }

    /// Production's current package (the one its current droplet was staged from, else its newest READY package:
    /// the one a no-bits redeploy copied beside the droplet), copied into the candidate to be staged there with
    /// today's buildpacks and stack: a restage that production never notices.
    async fn production_package(&self, blue: Option<&Blue>) -> Result<Made> {
        let blue = blue.ok_or_else(|| {
            anyhow!("params.restage rebuilds production's current package, but there is no production app")
        })?;
        let current = blue
            .app
            .current_droplet_guid()
            .ok_or_else(|| anyhow!("params.restage: {} has no droplet, so no package to restage", blue.app.name))?;
        let droplet = self.cf.droplets().get(current).await?;
        let package = match droplet.package_guid() {
            Some(guid) => guid.to_owned(),
            None => self.cf.packages().newest_ready(&blue.app.guid).await?.map(|p| p.guid).ok_or_else(|| {
                anyhow!(
                    "params.restage: {} has no package to restage (its droplet {current} was uploaded, not staged); deploy its bits with params.path",
                    blue.app.name
                )
            })?,
        };
        log::info(format_args!("restaging {}'s package {package} (of droplet {current})", blue.app.name));
        let copy = self.cf.packages().copy(&package, self.green_guid).await.context("copying production's package")?;
        let copy = self.cf.packages().wait_ready(&copy.guid, self.timeout).await?;
        Ok(Made::Package { guid: copy.guid, checksum: copy.data.checksum.and_then(|c| c.value) })
    }

    /// Stages the package, streaming the staging output into the build log as it arrives, and hands the droplet
    /// to `then` as soon as it is staged: the last look at the staging output runs beside `then`.
    async fn stage_then<T, F>(&self, package_guid: &str, then: impl FnOnce(String) -> F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        let (cf, app_name) = (self.cf, self.green_name);
        log::info(format_args!("staging {app_name}"));
        let start = crate::cf::logs::now_ns();
        let build = cf.builds().create(package_guid, &NewBuild::default()).await?;
        let (staged_tx, staged_rx) = tokio::sync::oneshot::channel();
        let staging = async {
            let staged = cf.builds().wait_staged(&build.guid, self.timeout, |_, _| {}).await;
            // The receiver lives until both sides are done.
            let _ = staged_tx.send(staged);
        };
        let logs = cf.logs();
        let followed = logs.follow_while(self.green_guid, start, staging, |line| {
            if line.is_staging() {
                log::output(&line.message);
            }
        });
        let after = async {
            let build = staged_rx
                .await
                .context("staging ended without an outcome")?
                .with_context(|| format!("staging {app_name} failed"))?;
            let droplet = build
                .droplet_guid()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("staging {app_name} succeeded but CF named no droplet"))?;
            then(droplet).await
        };
        let ((), outcome) = tokio::join!(followed, after);
        outcome
    }
}

/// Scales the process types production runs (and the manifest does not mention) like production.
async fn scale_like_production(cf: &CfClient, green_guid: &str, plan: &Plan) -> Result<()> {
    if plan.scale_after_droplet.is_empty() {
        return Ok(());
    }
    let processes = cf.processes().for_app(green_guid).await?;
    for wanted in &plan.scale_after_droplet {
        let Some(process) = processes.iter().find(|p| p.kind == wanted.kind) else {
            log::warn(format_args!(
                "production runs {} instance(s) of '{}', but the new droplet has no such process type",
                wanted.instances.unwrap_or(0),
                wanted.kind
            ));
            continue;
        };
        let scale = Scale {
            instances: wanted.instances,
            memory_in_mb: wanted.memory_mb(),
            disk_in_mb: wanted.disk_mb(),
            ..Scale::default()
        };
        cf.processes().scale(&process.guid, &scale).await?;
        log::detail(format_args!(
            "scaled '{}' like production: {} instance(s)",
            wanted.kind,
            wanted.instances.unwrap_or(0)
        ));
    }
    Ok(())
}

/// Starts the candidate and waits until every instance of every process is running and routable. Diego
/// restarts a crashed instance, so one crash among several instances is reported and waited out (as the cf CLI
/// does, which fails only once every instance has crashed); every instance of a process crashed fails at once
/// (its logs are shown by the caller).
pub(crate) async fn start_and_wait(
    cf: &CfClient,
    green_guid: &str,
    green_name: &str,
    pushed: &mut Pushed,
    timeout: Duration,
) -> Result<()> {
    // Starting changes no process's instances: they are read meanwhile.
    let start = async { cf.apps().start(green_guid).await.with_context(|| format!("starting {green_name}")) };
    let processes = async { cf.processes().for_app(green_guid).await.map_err(anyhow::Error::from) };
    let (_, processes) = tokio::try_join!(start, processes)?;
    for process in processes.iter().filter(|p| p.instances > 0) {
        let wanted = process.instances;
        let kind = process.kind.clone();
        let seen = std::sync::Mutex::new((None, BTreeSet::new()));
        Wait::new(format!("{green_name} '{kind}' instances to run"), timeout)
            .until(|| async {
                let stats = cf.processes().stats(&process.guid).await?;
                let crashed: Vec<_> = stats.resources.iter().filter(|i| i.state == InstanceState::Crashed).collect();
                let describe = |i: &&InstanceStats| {
                    let details = i.details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                    format!("instance {} of '{kind}' crashed{details}", i.index)
                };
                if !crashed.is_empty() && crashed.len() >= stats.resources.len().max(wanted as usize) {
                    let all: Vec<String> = crashed.iter().map(describe).collect();
                    return Err(crate::cf::Error::Failed(format!("every instance crashed: {}", all.join("; "))));
                }
                let ready = stats.resources.iter().filter(|i| i.is_ready()).count() as u32;
                let mut seen = seen.lock().expect("never poisoned");
                for instance in &crashed {
                    if seen.1.insert(instance.index) {
                        log::warn(format_args!("{}; Cloud Foundry restarts it, waiting", describe(instance)));
                    }
                }
                if seen.0.replace(ready) != Some(ready) {
                    log::detail(format_args!(
                        "waiting for {ready}/{wanted} instances of '{kind}' to be running and routable"
                    ));
                }
                Ok(if stats.all_ready(wanted) { Poll::Ready(()) } else { Poll::Pending })
            })
            .await
            .with_context(|| format!("{green_name} did not start"))?;
        pushed.instances.insert(kind.clone(), wanted);
        if kind == "web" {
            pushed.memory_mb = process.memory_in_mb;
        }
    }
    if processes.iter().all(|p| p.instances == 0) {
        bail!("{green_name} has no instances to start (every process is scaled to 0)");
    }
    log::success(format_args!(
        "{green_name} is running: {}",
        pushed.instances.iter().map(|(k, n)| format!("{n} × {k}")).collect::<Vec<_>>().join(", ")
    ));
    Ok(())
}
