//! The plan of a deploy: what the foundation looks like now (production, its routes, its manifest, leftovers
//! of earlier deploys) and what the deploy will do — the candidate's manifest, the production routes it
//! will take over, the temporary route, and the scale it inherits. Steps only carry the plan out.

use anyhow::{Context, Result, anyhow, bail};

use super::local::{Bits, Prepared};
use super::routes::{self, RouteTarget};
use crate::cf::CfClient;
use crate::cf::apps::{App, AppFilter};
use crate::cf::orgs::Organization;
use crate::cf::routes::Route;
use crate::cf::spaces::Space;
use crate::config::{AppNames, OutParams, Source};
use crate::log;
use crate::manifest::{AppManifest, BUILDPACK, CNB, Candidate, DOCKER, ProcessScale};

/// The memory of a process that sets none (`default_app_memory: 1024` in CC's `config/cloud_controller.yml`).
const DEFAULT_APP_MEMORY_MB: u64 = 1024;

/// The org and space the app lives in.
#[derive(Debug, Clone)]
pub struct Target {
    pub org: Organization,
    pub space: Space,
}

impl Target {
    pub async fn resolve(cf: &CfClient, source: &Source) -> Result<Target> {
        let org =
            cf.orgs().by_name(&source.organization).await?.ok_or_else(|| {
                anyhow!("organization '{}' not found (or this user cannot see it)", source.organization)
            })?;
        let space = cf.spaces().by_name(&org.guid, &source.space).await?.ok_or_else(|| {
            anyhow!("space '{}' not found in organization '{}' (or this user cannot see it)", source.space, org.name)
        })?;
        Ok(Target { org, space })
    }
}

/// The lifecycle type the candidate is created with: docker for a docker image, else what the user's manifest
/// asks for, else production's (a redeploy of production's droplet, or a CNB app pushed again), else buildpack.
/// Cloud Foundry cannot change an app's lifecycle type later (`app_update.rb`).
pub fn candidate_lifecycle(prepared: &Prepared, production: Option<&App>) -> &'static str {
    let production_kind = production.and_then(|p| p.lifecycle.as_ref()).map(|l| l.kind.as_str());
    let asked = prepared.manifest.as_ref().and_then(AppManifest::lifecycle);
    let kind = match &prepared.bits {
        Bits::Docker { .. } => Some(DOCKER),
        Bits::Production => asked.or(production_kind),
        Bits::App(_) | Bits::Droplet { .. } => asked.or(production_kind.filter(|k| *k == CNB)),
    };
    [DOCKER, CNB].into_iter().find(|k| kind == Some(*k)).unwrap_or(BUILDPACK)
}

/// Whether [`candidate_lifecycle`] needs production's app: only a docker image makes it needless.
pub fn lifecycle_needs_production(prepared: &Prepared) -> bool {
    !matches!(prepared.bits, Bits::Docker { .. })
}

/// The apps a deploy juggles, as they are now (one lookup).
#[derive(Debug, Clone, Default)]
pub struct Apps {
    pub production: Option<App>,
    pub green: Option<App>,
    pub previous: Option<App>,
    pub failed: Option<App>,
}

impl Apps {
    pub async fn read(cf: &CfClient, space_guid: &str, names: &AppNames) -> Result<Apps> {
        let wanted = [names.production.clone(), names.green(), names.previous(), names.failed()];
        let filter =
            AppFilter { names: wanted.to_vec(), space_guids: vec![space_guid.to_owned()], ..AppFilter::default() };
        let apps = cf.apps().list_filtered(&filter).await?;
        let find = |name: &str| apps.iter().find(|a| a.name.eq_ignore_ascii_case(name)).cloned();
        // Production's and the previous version's droplets matter (redeploy, rollback, the version answered).
        let with_droplet = |app: Option<App>| async {
            match app {
                Some(app) => cf.apps().with_current_droplet(app).await.map(Some),
                None => Ok(None),
            }
        };
        let (production, previous) =
            tokio::try_join!(with_droplet(find(&names.production)), with_droplet(find(&names.previous())))?;
        Ok(Apps { production, green: find(&names.green()), previous, failed: find(&names.failed()) })
    }
}

/// Production as the deploy found it.
#[derive(Debug, Clone)]
pub struct Blue {
    pub app: App,
    /// Its routes, with their destinations (to unmap it without another lookup).
    pub routes: Vec<Route>,
    /// CF's generated manifest of it: scale, env, services, health checks.
    pub manifest: AppManifest,
}

impl Blue {
    pub async fn read(cf: &CfClient, app: App) -> Result<Blue> {
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
        let routes = cf.routes().for_app(&app.guid).await?;
        Ok(Blue { app, routes, manifest })
    }
}

/// What the deploy will do.
#[derive(Debug)]
pub struct Plan {
    pub bits: Bits,
    pub blue: Option<Blue>,
    /// The routes production must have, in order; blue's routes the manifest does not list are kept.
    pub prod_routes: Vec<RouteTarget>,
    /// `host.domain` of the candidate's temporary route (`None` for a no-route app).
    pub temp_route: Option<String>,
    /// The YAML given to `apply_manifest` for the candidate.
    pub candidate_manifest: String,
    /// Non-web process types to scale like production once the droplet is set.
    pub scale_after_droplet: Vec<ProcessScale>,
    /// The scale the candidate will run at, process by process, and where it comes from.
    pub scales: Vec<PlannedScale>,
}

/// The scale of one of the candidate's process types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedScale {
    pub scale: ProcessScale,
    /// `None`: the user's manifest sets it.
    pub from_production: Option<Inherited>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inherited {
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
    pub async fn make(
        cf: &CfClient,
        target: &Target,
        names: &AppNames,
        params: &OutParams,
        prepared: Prepared,
        blue: Option<Blue>,
        lifecycle: &str,
    ) -> Result<Plan> {
        let Prepared { bits, manifest: user_manifest, .. } = prepared;
        let base = match (&user_manifest, &blue) {
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

        // CC's generated manifest never says `no-route` (`route_properties_presenter.rb`): production without
        // routes is a worker, and stays one unless the manifest gives it routes.
        let no_route = base.no_route() || base.routes().is_none() && blue.as_ref().is_some_and(|b| b.routes.is_empty());
        let prod_routes =
            if no_route { Vec::new() } else { production_routes(cf, target, names, &base, blue.as_ref()).await? };
        if let Some(weighted) =
            prod_routes.iter().find(|r| r.route.as_ref().is_some_and(|r| r.has_weighted_destinations()))
        {
            bail!(
                "route {} splits its traffic by weights, and Cloud Foundry refuses to map another app to such a \
                 route: remove the weighted destinations first",
                weighted.url
            );
        }
        let green_name = names.green();
        let temp_route = if no_route {
            None
        } else {
            routes::temporary_route(cf, &params.green_route, &green_name, &target.space.guid, &prod_routes).await?
        };

        // With the user's manifest, what it leaves unset comes from production; with production's own
        // manifest as the base, everything is in it already.
        let inherit = user_manifest.is_some().then_some(blue.as_ref()).flatten();
        let blue_scales = inherit.map(|b| b.manifest.process_scales()).unwrap_or_default();
        let inherited_web_scale = blue_scales.iter().find(|s| s.kind == "web").cloned();
        let scale_after_droplet: Vec<ProcessScale> = blue_scales
            .iter()
            .filter(|s| s.kind != "web" && s.instances.is_some_and(|n| n > 0) && !base.sets(&s.kind, "instances"))
            .cloned()
            .collect();
        let (docker_image, docker_username) = match &bits {
            Bits::Docker { image, username, .. } => (Some(image.as_str()), username.as_deref()),
            _ => (None, None),
        };
        let candidate = Candidate {
            name: &green_name,
            temporary_route: temp_route.as_deref(),
            inherited_env: inherit.map(|b| b.manifest.env()).unwrap_or_default(),
            param_env: params.environment_variables.clone(),
            inherited_services: inherit.map(|b| b.manifest.service_entries().to_vec()).unwrap_or_default(),
            inherited_web_scale,
            health_check: params.health_check.as_ref(),
            docker_image,
            docker_username,
            lifecycle,
        };
        let web_inherits = candidate.inherited_web_scale.as_ref().is_some_and(|s| {
            (s.instances.is_some() && !base.sets("web", "instances"))
                || (s.memory.is_some() && !base.sets("web", "memory"))
        });
        let candidate_manifest = base.for_candidate(&candidate);
        let origin = |kind: &str| match (&user_manifest, &blue) {
            (None, Some(_)) => Some(Inherited::WholeManifest),
            _ if kind == "web" && web_inherits => Some(Inherited::Unset),
            _ => None,
        };
        let mut scales: Vec<PlannedScale> =
            AppManifest::literal("the candidate's manifest", &candidate_manifest, &green_name)
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
        Ok(Plan { bits, blue, prod_routes, temp_route, candidate_manifest, scale_after_droplet, scales })
    }

    /// The memory the candidate's instances take once started, in MB: what the quotas must still have room for
    /// beside production. A process type's unset instances are CC's defaults (1 for `web`, else 0), an unset
    /// memory CC's `default_app_memory`.
    pub fn memory_needed_mb(&self) -> u64 {
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

    /// The plan as lines for the build log (and the dry run). `older_previous` is the `<app>-previous` that
    /// exists now (replaced when blue is kept).
    pub fn describe(&self, names: &AppNames, keep_previous: bool, older_previous: Option<&App>) -> Vec<String> {
        let mut lines = Vec::new();
        let green = names.green();
        match &self.blue {
            Some(blue) => lines.push(format!("production: {} ({})", blue.app.name, blue.app.guid)),
            None => lines.push(format!("production: none yet — this is the first deploy of {}", names.production)),
        }
        lines.push(format!("create {green} from {}", self.bits.describe()));
        lines.extend(self.scales.iter().filter_map(PlannedScale::describe));
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
            if keep_previous {
                if let Some(older) = older_previous.filter(|p| p.guid != blue.app.guid) {
                    lines.push(format!("delete the older {} ({})", older.name, older.guid));
                }
                lines.push(format!("stop {} and keep it as {}", blue.app.name, names.previous()));
            } else {
                lines.push(format!("stop and delete {}", blue.app.name));
            }
        }
        if let Some(route) = &self.temp_route {
            lines.push(format!("delete the temporary route {route}"));
        }
        lines.push(format!("rename {green} to {}", names.production));
        lines
    }
}

async fn production_routes(
    cf: &CfClient,
    target: &Target,
    names: &AppNames,
    manifest: &AppManifest,
    blue: Option<&Blue>,
) -> Result<Vec<RouteTarget>> {
    let blue_routes = blue.map(|b| routes::from_routes(&b.routes)).unwrap_or_default();
    let Some(urls) = manifest.routes() else {
        if !blue_routes.is_empty() {
            return Ok(blue_routes);
        }
        return Ok(vec![routes::default_route(cf, &target.org.guid, &target.space.guid, &names.production).await?]);
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

    fn prepared(bits: Bits, manifest: Option<&str>) -> Prepared {
        let manifest = manifest.map(|m| AppManifest::parse("m", m, &Vars::default(), "myapp").unwrap());
        Prepared { bits, manifest }
    }

    fn droplet() -> Bits {
        Bits::Droplet { tgz: "d.tgz".into(), process_types: BTreeMap::new() }
    }

    #[test]
    fn the_candidate_keeps_the_lifecycle_cloud_foundry_cannot_change() {
        let docker = Bits::Docker { image: "i".into(), username: None, password: None };
        assert_eq!(candidate_lifecycle(&prepared(docker, None), Some(&app("buildpack"))), DOCKER);
        assert_eq!(candidate_lifecycle(&prepared(Bits::Production, None), Some(&app("docker"))), DOCKER);
        assert_eq!(candidate_lifecycle(&prepared(Bits::Production, None), Some(&app("cnb"))), CNB);
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
