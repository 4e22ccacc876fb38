//! The plan of a deploy: what the foundation looks like now (production, its routes, its manifest, leftovers
//! of earlier deploys) and what the deploy will do — the candidate's manifest, the production routes it
//! will take over, the temporary route, and the scale it inherits. Steps only carry the plan out.

use anyhow::{Context, Result, anyhow};

use super::local::{Bits, Prepared};
use super::routes::{self, RouteTarget};
use crate::cf::CfClient;
use crate::cf::apps::{App, AppFilter};
use crate::cf::orgs::Organization;
use crate::cf::routes::Route;
use crate::cf::spaces::Space;
use crate::config::{AppNames, OutParams, Source};
use crate::log;
use crate::manifest::{AppManifest, Candidate, ProcessScale};

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
        Ok(Apps {
            production: find(&names.production),
            green: find(&names.green()),
            previous: find(&names.previous()),
            failed: find(&names.failed()),
        })
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
        let manifest = AppManifest::literal(&format!("the manifest of {}", app.name), &yaml, &app.name)
            .with_context(|| format!("reading the current manifest of {}", app.name))?;
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
    /// Create the candidate with the docker lifecycle.
    pub docker: bool,
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

        let prod_routes = production_routes(cf, target, names, &base, blue.as_ref()).await?;
        let green_name = names.green();
        let temp_route = if base.no_route() {
            None
        } else {
            routes::temporary_route(&params.green_route, &green_name, &prod_routes)
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
        let docker = docker_image.is_some() || (matches!(bits, Bits::Production) && base.docker_image().is_some());
        let candidate = Candidate {
            name: &green_name,
            temporary_route: temp_route.as_deref(),
            inherited_env: inherit.map(|b| b.manifest.env()).unwrap_or_default(),
            param_env: params.environment_variables.clone(),
            inherited_services: inherit.map(|b| b.manifest.services()).unwrap_or_default(),
            inherited_web_scale,
            health_check: params.health_check.as_ref(),
            docker_image,
            docker_username,
            drop_docker: !docker,
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
        Ok(Plan { bits, blue, prod_routes, temp_route, candidate_manifest, docker, scale_after_droplet, scales })
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
    if manifest.no_route() {
        return Ok(Vec::new());
    }
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
