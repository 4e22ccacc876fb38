//! Pushing the candidate: CF's own `apply_manifest` with the rewritten manifest, then the bits (uploaded with
//! resource matching and staged with its output streamed, a droplet uploaded as is, a docker image, or
//! production's droplet copied), the droplet set, inherited scale applied, and the app started and waited
//! for until every instance is running and routable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};

use super::inputs::Payload;
use super::plan::{Blue, Plan};
use super::routes;
use crate::bits::{AppBits, gather, match_cached, write_zip};
use crate::cf::builds::NewBuild;
use crate::cf::processes::{InstanceState, InstanceStats, Scale};
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

/// Applies the candidate's manifest and finds its temporary route.
pub(crate) async fn apply_manifest(
    cf: &CfClient,
    space_guid: &str,
    green_guid: &str,
    plan: &Plan,
    timeout: Duration,
) -> Result<Option<String>> {
    log::info("applying the manifest (name, routes, env, services, processes, health checks)");
    let (manifest, carried) = super::carry::manifest(&plan.candidate_manifest, plan.blue.as_ref())?;
    carried.iter().for_each(log::detail);
    cf.manifests().apply(space_guid, &manifest, timeout).await.context("applying the manifest")?;
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
pub(crate) async fn existing_temporary_route(cf: &CfClient, space_guid: &str, plan: &Plan) -> Option<String> {
    let url = plan.temp_route.as_ref()?;
    let targets = routes::resolve_manifest_routes(cf, space_guid, std::slice::from_ref(url)).await.ok()?;
    targets.into_iter().next()?.route.map(|r| r.guid)
}

/// Gets the candidate a droplet, sets it, applies inherited scale.
pub(crate) async fn droplet(
    cf: &CfClient,
    green_guid: &str,
    green_name: &str,
    plan: &Plan,
    staging_timeout: Duration,
) -> Result<Pushed> {
    let mut pushed = Pushed::default();
    let staged = Staging { cf, green_guid, green_name, timeout: staging_timeout };
    pushed.droplet_guid = match &plan.payload {
        Payload::App(bits) => {
            let (droplet, checksum) = staged.app_bits(bits).await?;
            pushed.package_checksum = checksum;
            droplet
        }
        Payload::Docker { image, username, password } => {
            staged.docker_image(image, username.as_deref(), password.as_deref()).await?
        }
        Payload::Droplet { tgz, process_types } => staged.droplet_tarball(tgz, process_types).await?,
        Payload::Production => staged.production_droplet(plan.blue.as_ref()).await?,
        Payload::Restage => {
            let (droplet, checksum) = staged.production_package(plan.blue.as_ref()).await?;
            pushed.package_checksum = checksum;
            droplet
        }
    };
    cf.apps().set_current_droplet(green_guid, &pushed.droplet_guid).await?;
    let droplet = cf.droplets().get(&pushed.droplet_guid).await?;
    pushed.stack = droplet.stack.clone();
    pushed.buildpacks =
        droplet.buildpacks.iter().flatten().filter_map(|b| b.buildpack_name.clone().or(b.name.clone())).collect();
    scale_like_production(cf, green_guid, plan).await?;
    Ok(pushed)
}

/// Where a droplet for the candidate comes from: one method per source of bits, each answering the droplet's
/// guid.
struct Staging<'a> {
    cf: &'a CfClient,
    green_guid: &'a str,
    green_name: &'a str,
    timeout: Duration,
}

impl Staging<'_> {
    /// App bits: packaged with resource matching, uploaded and staged; also answers the package's checksum.
    async fn app_bits(&self, bits: &AppBits) -> Result<(String, Option<String>)> {
        let (cf, started) = (self.cf, Instant::now());
        let gathered = {
            let bits = bits.clone();
            tokio::task::spawn_blocking(move || gather(&bits)).await??
        };
        let files = gathered.iter().filter(|r| r.is_match_candidate()).count();
        let total: u64 = gathered.iter().map(|r| r.size).sum();
        log::info(format_args!(
            "packaging {} ({} files, {}, hashed in {})",
            bits.param(),
            files,
            log::human_bytes(total),
            log::human_duration(started.elapsed())
        ));
        let (cached, matched) = match_cached(cf, &gathered).await?;
        let cached_bytes: u64 = gathered.iter().filter(|r| r.is_cached(&cached)).map(|r| r.size).sum();
        log::detail(format_args!(
            "{} of {} files ({}) already in Cloud Foundry's cache",
            matched.len(),
            files,
            log::human_bytes(cached_bytes)
        ));
        let zip = {
            let bits = bits.clone();
            tokio::task::spawn_blocking(move || write_zip(&bits, &gathered, &cached)).await??
        };
        let package = cf.packages().create_bits(self.green_guid).await?;
        let zip_path = (!zip.is_empty()).then(|| zip.path());
        if let Some(path) = zip_path {
            log::info(format_args!("uploading {} ({} zipped)", path.display(), log::human_bytes(zip.len())));
        } else {
            log::info("uploading nothing new: every file is cached");
        }
        cf.packages().upload(&package.guid, zip_path, &matched).await.context("uploading the app bits")?;
        let package = cf.packages().wait_ready(&package.guid, self.timeout).await?;
        let checksum = package.data.checksum.and_then(|c| c.value);
        Ok((self.stage(&package.guid).await?, checksum))
    }

    /// A docker image: staged from a docker package.
    async fn docker_image(&self, image: &str, username: Option<&str>, password: Option<&str>) -> Result<String> {
        log::info(format_args!("using docker image {image}"));
        let package = self.cf.packages().create_docker(self.green_guid, image, username, password).await?;
        self.stage(&package.guid).await
    }

    /// A droplet tarball: uploaded as is, no staging.
    async fn droplet_tarball(&self, tgz: &Path, process_types: &BTreeMap<String, String>) -> Result<String> {
        let size = std::fs::metadata(tgz).map(|m| m.len()).unwrap_or(0);
        log::info(format_args!("uploading droplet {} ({}) — no staging", tgz.display(), log::human_bytes(size)));
        let droplet = self.cf.droplets().create(self.green_guid, process_types).await?;
        self.cf.droplets().upload(&droplet.guid, tgz, self.timeout).await.context("uploading the droplet")?;
        Ok(droplet.guid)
    }

    /// Production's current droplet, copied: a redeploy with new settings, no staging.
    async fn production_droplet(&self, blue: Option<&Blue>) -> Result<String> {
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
        let copy = self.cf.droplets().copy(current, self.green_guid).await?;
        Ok(self.cf.droplets().wait_staged(&copy.guid, self.timeout).await?.guid)
    }

    /// Production's current package (the one its current droplet was staged from), copied into the candidate
    /// and staged there with today's buildpacks and stack: a restage that production never notices. Also
    /// answers the package's checksum.
    async fn production_package(&self, blue: Option<&Blue>) -> Result<(String, Option<String>)> {
        let blue = blue.ok_or_else(|| {
            anyhow!("params.restage rebuilds production's current package, but there is no production app")
        })?;
        let current = blue
            .app
            .current_droplet_guid()
            .ok_or_else(|| anyhow!("params.restage: {} has no droplet, so no package to restage", blue.app.name))?;
        let droplet = self.cf.droplets().get(current).await?;
        let package = droplet.package_guid().ok_or_else(|| {
            anyhow!(
                "params.restage: {}'s droplet {current} was not staged from a package (it was copied or uploaded); deploy its bits with params.path",
                blue.app.name
            )
        })?;
        log::info(format_args!("restaging {}'s package {package} (of droplet {current})", blue.app.name));
        let copy = self.cf.packages().copy(package, self.green_guid).await.context("copying production's package")?;
        let copy = self.cf.packages().wait_ready(&copy.guid, self.timeout).await?;
        let checksum = copy.data.checksum.and_then(|c| c.value);
        Ok((self.stage(&copy.guid).await?, checksum))
    }

    /// Stages the package, streaming the staging output into the build log as it arrives.
    async fn stage(&self, package_guid: &str) -> Result<String> {
        let (cf, app_name) = (self.cf, self.green_name);
        log::info(format_args!("staging {app_name}"));
        let start = crate::cf::logs::now_ns();
        let build = cf.builds().create(package_guid, &NewBuild::default()).await?;
        let waited = cf
            .logs()
            .follow_while(
                self.green_guid,
                start,
                cf.builds().wait_staged(&build.guid, self.timeout, |_, _| {}),
                |line| {
                    if line.is_staging() {
                        log::output(&line.message);
                    }
                },
            )
            .await;
        let build = waited.with_context(|| format!("staging {app_name} failed"))?;
        build
            .droplet_guid()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("staging {app_name} succeeded but CF named no droplet"))
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
    cf.apps().start(green_guid).await.with_context(|| format!("starting {green_name}"))?;
    let processes = cf.processes().for_app(green_guid).await?;
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
