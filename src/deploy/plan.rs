//! The plan of a deploy: what the foundation looks like now (production, its routes, its manifest, leftovers
//! of earlier deploys) and what the deploy will do — the candidate's manifest, the production routes it
//! will take over, the temporary route, and the scale it inherits. Steps only carry the plan out.

use anyhow::{Context as _, Result, bail};

use super::context::Context;
use super::inputs::{Payload, Prepared};
use super::routes::{self, RouteTarget};
use crate::cf::apps::{App, AppFilter};
use crate::cf::domains::Domain;
use crate::cf::orgs::Organization;
use crate::cf::routes::Route;
use crate::cf::spaces::Space;
use crate::cf::{CfClient, ListParams, Listed};
use crate::config::{AppNames, MAX_KEEP_PREVIOUS, Source, TaskParams};
use crate::log;
use crate::manifest::{AppManifest, BUILDPACK, CNB, Candidate, DOCKER, ProcessScale};

/// The memory of a process that sets none (`default_app_memory: 1024` in CC's `config/cloud_controller.yml`).
const DEFAULT_APP_MEMORY_MB: u64 = 1024;

/// The org and space the app lives in.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) org: Organization,
    pub(crate) space: Space,
}

impl Target {
    /// The space and its organization, in one request: the spaces called `source.space` with their
    /// organizations included (`spaces_list_message.rb` takes `include=organization`).
    pub(crate) async fn resolve(cf: &CfClient, source: &Source) -> Result<Target> {
        let params = ListParams::new().filter("names", [&source.space]).include("organization");
        let listed = cf.spaces().list_with_included(&params).await?;
        let orgs: Vec<Organization> = listed.included.get("organizations")?;
        let org_of = |space: &Space| orgs.iter().find(|o| Some(o.guid.as_str()) == space.org_guid());
        let placed: Vec<(&Space, &Organization)> =
            listed.resources.iter().filter_map(|space| Some((space, org_of(space)?))).collect();
        let named = |exact: bool| {
            placed.iter().find(|(_, o)| {
                if exact { o.name == source.organization } else { o.name.eq_ignore_ascii_case(&source.organization) }
            })
        };
        let Some((space, org)) = named(true).or_else(|| named(false)) else {
            let (wanted_org, wanted_space) = (&source.organization, &source.space);
            if placed.is_empty() {
                bail!("space '{wanted_space}' not found in organization '{wanted_org}' (or this user cannot see them)");
            }
            let elsewhere: Vec<&str> = placed.iter().map(|(_, o)| o.name.as_str()).collect();
            bail!(
                "organization '{wanted_org}' not found, or it has no space '{wanted_space}' (or this user cannot see \
                 them); a space of that name is in organization(s) {}",
                elsewhere.join(", ")
            );
        };
        Ok(Target { org: (*org).clone(), space: (*space).clone() })
    }

    /// The space and organization named exactly like `source`'s among those included with `listed` apps (listed
    /// with `include=space.organization`: the apps' own); `None` when no app lives there, or the names differ in case (then
    /// [`Target::resolve`] decides as CC matches names). Space names are unique in an organization and
    /// organization names in the foundation, so this is the space [`Target::resolve`] would find.
    fn among(listed: &Listed<App>, source: &Source) -> Result<Option<Target>> {
        let spaces: Vec<Space> = listed.included.get("spaces")?;
        let orgs: Vec<Organization> = listed.included.get("organizations")?;
        let target = spaces.into_iter().filter(|space| space.name == source.space).find_map(|space| {
            let org =
                orgs.iter().find(|o| Some(o.guid.as_str()) == space.org_guid() && o.name == source.organization)?;
            Some(Target { org: org.clone(), space })
        });
        Ok(target)
    }
}

/// The lifecycle type the candidate is created with: docker for a docker image, else what the user's manifest
/// asks for, else production's (a redeploy of production's droplet, or a CNB app pushed again), else buildpack.
/// Cloud Foundry cannot change an app's lifecycle type later (`app_update.rb`).
pub(crate) fn candidate_lifecycle(prepared: &Prepared, production: Option<&App>) -> &'static str {
    let production_kind = production.and_then(|p| p.lifecycle.as_ref()).map(|l| l.kind.as_str());
    let asked = prepared.manifest.as_ref().and_then(AppManifest::lifecycle);
    let kind = match &prepared.payload {
        Payload::Docker { .. } => Some(DOCKER),
        Payload::Production | Payload::Restage => asked.or(production_kind),
        Payload::App(_) | Payload::Droplet { .. } => asked.or(production_kind.filter(|k| *k == CNB)),
    };
    [DOCKER, CNB].into_iter().find(|k| kind == Some(*k)).unwrap_or(BUILDPACK)
}

/// Whether [`candidate_lifecycle`] needs production's app: only a docker image makes it needless.
pub(crate) fn lifecycle_needs_production(prepared: &Prepared) -> bool {
    !matches!(prepared.payload, Payload::Docker { .. })
}

/// The apps a deploy juggles, as they are now (one lookup).
#[derive(Debug, Clone, Default)]
pub(crate) struct Apps {
    pub(crate) production: Option<App>,
    pub(crate) green: Option<App>,
    /// Every kept version found (`<app>-previous` too), the most recent first, each with its current droplet.
    pub(crate) kept: Vec<Kept>,
}

/// A kept version: the app named `<app>-previous` (`nth` 1) or `<app>-previous-N` (`nth` N).
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) nth: u32,
    pub(crate) app: App,
}

impl Apps {
    pub(crate) async fn read(cf: &CfClient, space_guid: &str, names: &AppNames) -> Result<Apps> {
        let filter = AppFilter { space_guids: vec![space_guid.to_owned()], ..Apps::named(names) };
        Apps::found(cf, names, cf.apps().list_filtered(&filter).await?).await
    }

    /// The space and its organization, and (`with_apps`) the apps as they are. The apps are listed in every space
    /// the user sees with their spaces and organizations (`apps_list_message.rb` takes `include=space.organization`,
    /// rendered by the same presenters as the spaces list's `include=organization`): on a redeploy the target is
    /// among them, and the space is looked up only when it is not (a first deploy).
    pub(crate) async fn read_beside_target(
        cf: &CfClient,
        source: &Source,
        with_apps: bool,
    ) -> Result<(Target, Option<Apps>)> {
        if !with_apps {
            return Ok((Target::resolve(cf, source).await?, None));
        }
        let params = Apps::named(&source.names).params().include("space.organization");
        let listed = cf.apps().list_with_included(&params).await?;
        let target = match Target::among(&listed, source)? {
            Some(target) => target,
            None => Target::resolve(cf, source).await?,
        };
        let here =
            listed.resources.into_iter().filter(|a| a.space_guid() == Some(target.space.guid.as_str())).collect();
        Ok((target, Some(Apps::found(cf, &source.names, here).await?)))
    }

    /// The filter for the apps of a deploy, in any space: every name a kept version can have is asked for in the
    /// same lookup.
    fn named(names: &AppNames) -> AppFilter {
        let kept = (1..=MAX_KEEP_PREVIOUS).map(|n| names.kept(n));
        AppFilter {
            names: [names.production.clone(), names.green()].into_iter().chain(kept).collect(),
            ..AppFilter::default()
        }
    }

    /// The apps of a deploy among `apps` (of one space).
    async fn found(cf: &CfClient, names: &AppNames, apps: Vec<App>) -> Result<Apps> {
        let find = |name: &str| apps.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned();
        // Production's and the kept versions' droplets matter (redeploy, rollback, the version answered).
        let with_droplet = |app: Option<App>| async {
            match app {
                Some(app) => cf.apps().with_current_droplet(app).await.map(Some),
                None => Ok(None),
            }
        };
        let mut kept: Vec<(u32, App)> =
            apps.iter().filter_map(|a| Some((names.kept_slot(&a.name, MAX_KEEP_PREVIOUS)?, a.clone()))).collect();
        kept.sort_by_key(|(nth, _)| *nth);
        let kept =
            futures_util::future::try_join_all(kept.into_iter().map(|(nth, app)| async move {
                cf.apps().with_current_droplet(app).await.map(|app| Kept { nth, app })
            }));
        let (production, kept) = tokio::try_join!(with_droplet(find(&names.production)), kept)?;
        Ok(Apps { production, green: find(&names.green()), kept })
    }

    /// The apps as they are now and production as a [`Blue`], with production's manifest and routes read beside
    /// the apps, for the production `seen` earlier: when the apps show that one still, that is one round trip
    /// instead of two, and a failure of that read fails the deploy. When production changed, it is read afterwards.
    /// Called under the lock, so what is read side by side cannot change in between.
    pub(crate) async fn read_with_blue(
        cf: &CfClient,
        space_guid: &str,
        names: &AppNames,
        seen: Option<&App>,
    ) -> Result<(Apps, Option<Blue>)> {
        let (apps, early) = tokio::join!(Apps::read(cf, space_guid, names), Blue::read_production(cf, seen.cloned()));
        let apps = apps?;
        let blue = match (early, &apps.production) {
            (Ok(Some(early)), Some(now)) if early.app.guid == now.guid && early.app.name == now.name => {
                Some(Blue { app: now.clone(), ..early })
            }
            (Ok(None), None) => None,
            // The early read was of production as it still is: its failure is this deploy's.
            (Err(e), Some(now)) if seen.is_some_and(|seen| seen.guid == now.guid) => return Err(e),
            _ => Blue::read_production(cf, apps.production.clone()).await?,
        };
        Ok((apps, blue))
    }
}

/// Production as the deploy found it.
#[derive(Debug, Clone)]
pub(crate) struct Blue {
    pub(crate) app: App,
    /// Its routes, with their destinations (to unmap it without another lookup).
    pub(crate) routes: Vec<Route>,
    /// The domains of those routes (whether a worker can reach them, for the temporary route).
    pub(crate) domains: Vec<Domain>,
    /// CF's generated manifest of it: scale, env, services, health checks.
    pub(crate) manifest: AppManifest,
}

impl Blue {
    /// Production as it is now, when there is an app (`production`).
    pub(crate) async fn read_production(cf: &CfClient, production: Option<App>) -> Result<Option<Blue>> {
        match production {
            Some(app) => Ok(Some(Blue::read(cf, app).await?)),
            None => Ok(None),
        }
    }

    /// Its manifest (with the names of its service bindings) and its routes, read side by side.
    async fn read(cf: &CfClient, app: App) -> Result<Blue> {
        let manifest = async {
            let yaml = cf.apps().manifest(&app.guid).await?;
            let mut manifest = AppManifest::literal(&format!("the manifest of {}", app.name), &yaml, &app.name)
                .with_context(|| format!("reading the current manifest of {}", app.name))?;
            if !manifest.services().is_empty() {
                let (bindings, instances) = cf.bindings().for_app(&app.guid).await?;
                let binding_names = bindings
                    .iter()
                    .filter_map(|b| {
                        let instance = instances.iter().find(|i| Some(i.guid.as_str()) == b.service_instance_guid())?;
                        Some((instance.name.clone(), b.name.clone()?))
                    })
                    .collect();
                manifest.name_bindings(&binding_names);
            }
            anyhow::Ok(manifest)
        };
        // `GET /v3/routes?app_guids=` rather than `/v3/apps/:guid/routes`: only the former renders `include=domain`
        // (`routes_controller.rb#index` passes decorators, `#index_by_app` does not).
        let routes = async {
            let params = ListParams::new().filter("app_guids", [&app.guid]).include("domain");
            let listed = cf.routes().list_with_included(&params).await?;
            let domains: Vec<Domain> = listed.included.get("domains")?;
            anyhow::Ok((listed.resources, domains))
        };
        let (manifest, (routes, domains)) = tokio::try_join!(manifest, routes)?;
        Ok(Blue { app, routes, domains, manifest })
    }
}

/// What the deploy will do.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) payload: Payload,
    pub(crate) blue: Option<Blue>,
    /// The routes production must have, in order; blue's routes the manifest does not list are kept.
    pub(crate) prod_routes: Vec<RouteTarget>,
    /// `host.domain` of the candidate's temporary route (`None` for a no-route app).
    pub(crate) temp_route: Option<String>,
    /// The YAML given to `apply_manifest` for the candidate.
    pub(crate) candidate_manifest: String,
    /// Non-web process types to scale like production once the droplet is set.
    pub(crate) scale_after_droplet: Vec<ProcessScale>,
    /// The scale the candidate will run at, process by process, and where it comes from.
    pub(crate) scales: Vec<PlannedScale>,
}

/// The scale of one of the candidate's process types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlannedScale {
    pub(crate) scale: ProcessScale,
    /// `None`: the user's manifest sets it.
    pub(crate) from_production: Option<Inherited>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inherited {
    /// The manifest leaves (some of) it unset; production's values fill in.
    Unset,
    /// There is no user manifest: the candidate is made from production's own manifest.
    WholeManifest,
}

impl PlannedScale {
    fn describe(&self) -> Option<String> {
        let instances = self.scale.instances?;
        let memory = self.scale.memory.as_deref().map(|m| format!(" of {m}")).unwrap_or_default();
        let origin = match self.from_production {
            Some(Inherited::Unset) => ", inherited from production",
            Some(Inherited::WholeManifest) => ", as production runs now",
            None => "",
        };
        Some(format!("scale: {} {instances} instance(s){memory}{origin}", self.scale.kind))
    }
}

impl Plan {
    /// The plan for the foundation as `apps` found it, for a candidate of type `lifecycle`.
    pub(crate) async fn make(ctx: &Context, prepared: Prepared, apps: &Apps, lifecycle: &str) -> Result<Plan> {
        let blue = Blue::read_production(&ctx.cf, apps.production.clone()).await?;
        Plan::for_blue(ctx, prepared, blue, lifecycle).await
    }

    /// The plan for production as `blue` found it (read under the lock), for a candidate of type `lifecycle`.
    pub(crate) async fn for_blue(
        ctx: &Context,
        prepared: Prepared,
        blue: Option<Blue>,
        lifecycle: &str,
    ) -> Result<Plan> {
        let (names, params) = (&ctx.source.names, &ctx.params);
        let Prepared { payload, manifest: user_manifest } = prepared;
        let base = base_manifest(names, user_manifest.as_ref(), blue.as_ref());
        let (prod_routes, temp_route) = plan_routes(ctx, &base, blue.as_ref()).await?;
        // With the user's manifest, what it leaves unset comes from production; with production's own
        // manifest as the base, everything is in it already.
        let inherit = user_manifest.is_some().then_some(blue.as_ref()).flatten();
        let scale_after_droplet = scale_after_droplet(inherit, &base);
        let (docker_image, docker_username) = match &payload {
            Payload::Docker { image, username, .. } => (Some(image.as_str()), username.as_deref()),
            _ => (None, None),
        };
        let green_name = names.green();
        let candidate = Candidate {
            name: &green_name,
            temporary_route: temp_route.as_deref(),
            inherited_env: inherit.map(|b| b.manifest.env()).unwrap_or_default(),
            param_env: params.environment_variables.clone(),
            inherited_services: inherit.map(|b| b.manifest.service_entries().to_vec()).unwrap_or_default(),
            inherited_web_scale: inherit
                .and_then(|b| b.manifest.process_scales().into_iter().find(|s| s.kind == "web")),
            health_check: params.health_check.as_ref(),
            docker_image,
            docker_username,
            lifecycle,
        };
        let candidate_manifest = base.for_candidate(&candidate);
        let whole_manifest = user_manifest.is_none() && blue.is_some();
        let web_inherits = web_inherits(&base, &candidate);
        let scales =
            planned_scales(&candidate_manifest, &green_name, whole_manifest, web_inherits, &scale_after_droplet);
        Ok(Plan { payload, blue, prod_routes, temp_route, candidate_manifest, scale_after_droplet, scales })
    }

    /// The memory the candidate's instances take once started, in MB: what the quotas must still have room for
    /// beside production. A process type's unset instances are CC's defaults (1 for `web`, else 0), an unset
    /// memory CC's `default_app_memory`.
    pub(crate) fn memory_needed_mb(&self) -> u64 {
        let web_listed = self.scales.iter().any(|s| s.scale.kind == "web");
        let web_default = (!web_listed).then_some(DEFAULT_APP_MEMORY_MB);
        self.scales
            .iter()
            .map(|s| {
                let instances = s.scale.instances.unwrap_or(u32::from(s.scale.kind == "web"));
                u64::from(instances) * s.scale.memory_mb().unwrap_or(DEFAULT_APP_MEMORY_MB)
            })
            .chain(web_default)
            .sum()
    }

    /// Prints the plan into the build log (a deploy's and the dry run's); `apps.kept` move down the list when blue
    /// is kept.
    pub(crate) fn print(&self, ctx: &Context, apps: &Apps) {
        let task = ctx.params.task.as_ref();
        for line in self.describe(&ctx.source.names, ctx.params.keep_previous, &apps.kept, task) {
            log::detail(line);
        }
    }

    fn describe(&self, names: &AppNames, keep_previous: u32, kept: &[Kept], task: Option<&TaskParams>) -> Vec<String> {
        let mut lines = Vec::new();
        let green = names.green();
        match &self.blue {
            Some(blue) => lines.push(format!("production: {} ({})", blue.app.name, blue.app.guid)),
            None => lines.push(format!("production: none yet — this is the first deploy of {}", names.production)),
        }
        lines.push(format!("create {green} from {}", self.payload.describe()));
        lines.extend(self.scales.iter().filter_map(PlannedScale::describe));
        if let Some(task) = task {
            lines.push(format!("run the task '{}' on {green}'s droplet before it starts: {}", task.name, task.command));
        }
        match &self.temp_route {
            Some(route) => lines.push(format!("verify {green} on its temporary route {route}")),
            None => lines.push(format!("verify {green} by instance health (no-route app)")),
        }
        for route in &self.prod_routes {
            let exists = if route.route.is_some() { "" } else { " (new route)" };
            lines.push(format!("map {}{exists} to {green}", route.url));
        }
        if let Some(blue) = &self.blue {
            if !self.prod_routes.is_empty() {
                lines.push(format!("unmap {} from those routes, then let it drain", blue.app.name));
            }
            // In the order the housekeeping goes: the oldest beyond `keep_previous` deleted, then the renames from
            // the oldest down, so each goes to a name no app has any more.
            let older: Vec<(u32, &App)> =
                (2..).zip(kept.iter().map(|k| &k.app).filter(|app| app.guid != blue.app.guid)).collect();
            let (moved, deleted): (Vec<_>, Vec<_>) = older.into_iter().partition(|(nth, _)| *nth <= keep_previous);
            lines.extend(deleted.iter().map(|(_, app)| format!("delete the older {} ({})", app.name, app.guid)));
            let renames = moved.iter().rev().filter(|(nth, app)| app.name != names.kept(*nth));
            lines.extend(renames.map(|(nth, app)| format!("rename {} to {}", app.name, names.kept(*nth))));
            match keep_previous {
                0 => lines.push(format!("stop and delete {}", blue.app.name)),
                _ => lines.push(format!("stop {} and keep it as {}", blue.app.name, names.previous())),
            }
        }
        if let Some(route) = &self.temp_route {
            lines.push(format!("delete the temporary route {route}"));
        }
        lines.push(format!("rename {green} to {}", names.production));
        lines
    }
}

/// What the candidate's manifest starts from: the user's manifest, else production's own, else a minimal one.
fn base_manifest(names: &AppNames, user_manifest: Option<&AppManifest>, blue: Option<&Blue>) -> AppManifest {
    let base = match (user_manifest, blue) {
        (Some(user), _) => user.clone(),
        (None, Some(blue)) => blue.manifest.clone(),
        (None, None) => AppManifest::minimal(&names.production),
    };
    if base.name() != names.production && user_manifest.is_some() {
        log::detail(format_args!(
            "the manifest names the app '{}'; deploying it as source.app '{}'",
            base.name(),
            names.production
        ));
    }
    base
}

/// The production routes and the candidate's temporary route; neither for a worker. CC's generated manifest never
/// says `no-route` (`route_properties_presenter.rb`): production without routes is a worker, and stays one unless
/// the manifest gives it routes.
async fn plan_routes(
    ctx: &Context,
    base: &AppManifest,
    blue: Option<&Blue>,
) -> Result<(Vec<RouteTarget>, Option<String>)> {
    let no_route = base.no_route() || base.routes().is_none() && blue.is_some_and(|b| b.routes.is_empty());
    if no_route {
        return Ok((Vec::new(), None));
    }
    let prod_routes = production_routes(ctx, base, blue).await?;
    if let Some(weighted) = prod_routes.iter().find(|r| r.route.as_ref().is_some_and(|r| r.has_weighted_destinations()))
    {
        bail!(
            "route {} splits its traffic by weights, and Cloud Foundry refuses to map another app to such a \
             route: remove the weighted destinations first",
            weighted.url
        );
    }
    let (cf, space_guid) = (&ctx.cf, &ctx.target.space.guid);
    let known = blue.map(|b| b.domains.as_slice()).unwrap_or_default();
    let green = ctx.source.names.green();
    let temp_route =
        routes::temporary_route(cf, &ctx.params.green_route, &green, space_guid, &prod_routes, known).await?;
    Ok((prod_routes, temp_route))
}

/// The non-web process types production runs that `base` does not scale: scaled like production once the
/// candidate has its droplet (they exist only then).
fn scale_after_droplet(inherit: Option<&Blue>, base: &AppManifest) -> Vec<ProcessScale> {
    let blue_scales = inherit.map(|b| b.manifest.process_scales()).unwrap_or_default();
    blue_scales
        .into_iter()
        .filter(|s| s.kind != "web" && s.instances.is_some_and(|n| n > 0) && !base.sets(&s.kind, "instances"))
        .collect()
}

/// Whether the candidate's web process takes (some of) its scale from production: what `base` leaves unset.
fn web_inherits(base: &AppManifest, candidate: &Candidate) -> bool {
    candidate.inherited_web_scale.as_ref().is_some_and(|s| {
        (s.instances.is_some() && !base.sets("web", "instances")) || (s.memory.is_some() && !base.sets("web", "memory"))
    })
}

/// The scale of every process type of the candidate, and where it comes from: the candidate's manifest (made from
/// production's own with `whole_manifest`; with production's web scale filling in when `web_inherits`), then the
/// types scaled after the droplet.
fn planned_scales(
    candidate_manifest: &str,
    green_name: &str,
    whole_manifest: bool,
    web_inherits: bool,
    scale_after_droplet: &[ProcessScale],
) -> Vec<PlannedScale> {
    let origin = |kind: &str| {
        if whole_manifest {
            Some(Inherited::WholeManifest)
        } else if kind == "web" && web_inherits {
            Some(Inherited::Unset)
        } else {
            None
        }
    };
    let mut scales: Vec<PlannedScale> =
        AppManifest::literal("the candidate's manifest", candidate_manifest, green_name)
            .map(|m| m.process_scales())
            .unwrap_or_default()
            .into_iter()
            .map(|scale| PlannedScale { from_production: origin(&scale.kind), scale })
            .collect();
    scales.extend(
        scale_after_droplet
            .iter()
            .map(|scale| PlannedScale { scale: scale.clone(), from_production: Some(Inherited::Unset) }),
    );
    scales
}

/// The routes production must have, in order: the manifest's (with blue's the manifest does not list), else
/// blue's, else CF's default route.
async fn production_routes(ctx: &Context, manifest: &AppManifest, blue: Option<&Blue>) -> Result<Vec<RouteTarget>> {
    let (cf, target) = (&ctx.cf, &ctx.target);
    let blue_routes = blue.map(|b| routes::from_routes(&b.routes)).unwrap_or_default();
    let Some(urls) = manifest.routes() else {
        if !blue_routes.is_empty() {
            return Ok(blue_routes);
        }
        return Ok(vec![
            routes::default_route(cf, &target.org.guid, &target.space.guid, &ctx.source.names.production).await?,
        ]);
    };
    // Routes production already has need no lookup: usually that is all of them.
    let known = |url: &String| blue_routes.iter().find(|r| r.url == routes::normalize(url)).cloned();
    let mut targets = match urls.iter().map(known).collect::<Option<Vec<_>>>() {
        Some(targets) => targets,
        None => routes::resolve_manifest_routes(cf, &target.space.guid, &urls).await?,
    };
    for (target, protocol) in targets.iter_mut().zip(manifest.route_protocols()) {
        target.protocol = protocol;
    }
    // An app that serves a route keeps serving it until another does: routes blue has beyond the manifest's
    // move to the candidate too (CF's own pushes never unmap routes either).
    for route in blue_routes {
        if !targets.iter().any(|t| t.url == route.url) {
            log::detail(format_args!("keeping route {} (production has it; the manifest does not list it)", route.url));
            targets.push(route);
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::manifest::Vars;

    fn app(lifecycle: &str) -> App {
        serde_json::from_value(json!({"guid": "g", "name": "myapp", "state": "STARTED",
            "lifecycle": {"type": lifecycle, "data": {}}}))
        .unwrap()
    }

    fn prepared(payload: Payload, manifest: Option<&str>) -> Prepared {
        let manifest = manifest.map(|m| AppManifest::parse("m", m, &Vars::default(), "myapp").unwrap());
        Prepared { payload, manifest }
    }

    fn droplet() -> Payload {
        Payload::Droplet { tgz: "d.tgz".into(), process_types: BTreeMap::new() }
    }

    #[test]
    fn the_candidate_keeps_the_lifecycle_cloud_foundry_cannot_change() {
        let docker = Payload::Docker { image: "i".into(), username: None, password: None };
        assert_eq!(candidate_lifecycle(&prepared(docker, None), Some(&app("buildpack"))), DOCKER);
        assert_eq!(candidate_lifecycle(&prepared(Payload::Production, None), Some(&app("docker"))), DOCKER);
        assert_eq!(candidate_lifecycle(&prepared(Payload::Production, None), Some(&app("cnb"))), CNB);
        assert_eq!(candidate_lifecycle(&prepared(droplet(), None), Some(&app("cnb"))), CNB, "a CNB app stays one");
        assert_eq!(candidate_lifecycle(&prepared(droplet(), None), Some(&app("docker"))), BUILDPACK);
        assert_eq!(candidate_lifecycle(&prepared(droplet(), None), None), BUILDPACK);
        let asks_cnb = "applications:\n- name: myapp\n  lifecycle: cnb\n";
        assert_eq!(candidate_lifecycle(&prepared(droplet(), Some(asks_cnb)), None), CNB);
        let asks_buildpack = "applications:\n- name: myapp\n  lifecycle: buildpack\n";
        assert_eq!(candidate_lifecycle(&prepared(droplet(), Some(asks_buildpack)), Some(&app("cnb"))), BUILDPACK);
        assert!(lifecycle_needs_production(&prepared(droplet(), None)));
    }
}
