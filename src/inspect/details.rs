//! What `in` reports about a version: the `metadata.json` document, the one-value files for scripts and the
//! short metadata list for the Concourse UI, built from what CF said about the app, the droplet and the app's
//! manifest. Pure: the same CF answers always give the same bytes (Concourse caches gets).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cf::apps::App;
use crate::cf::droplets::Droplet;
use crate::cf::types::Checksum;
use crate::config::RouteScheme;
use crate::manifest::{AppManifest, ProcessScale};
use crate::protocol::{MetadataField, Version};
use crate::record::Audit;

/// What CF said, gathered by `in`.
pub(crate) struct Observed<'a> {
    pub(crate) version: &'a Version,
    pub(crate) app: &'a App,
    pub(crate) organization: Option<&'a str>,
    pub(crate) space: Option<&'a str>,
    pub(crate) droplet: &'a Droplet,
    pub(crate) manifest: &'a AppManifest,
    /// The checksum of the package the droplet was staged from, if known.
    pub(crate) package_checksum: Option<Checksum>,
    pub(crate) route_scheme: RouteScheme,
}

/// A buildpack the droplet was staged with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Buildpack {
    pub(crate) name: String,
    pub(crate) version: Option<String>,
}

/// The Concourse build that deployed the droplet (from the audit annotations `out` writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Build {
    pub(crate) team: Option<String>,
    pub(crate) pipeline: Option<String>,
    pub(crate) job: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) deploy_id: Option<String>,
}

impl Build {
    /// `team/pipeline/job #name`, else the URL, else the deploy id.
    pub(crate) fn label(&self) -> Option<String> {
        let path: Vec<&str> =
            [&self.team, &self.pipeline, &self.job].into_iter().filter_map(|p| p.as_deref()).collect();
        if !path.is_empty() {
            let path = path.join("/");
            return Some(match &self.name {
                Some(name) => format!("{path} #{name}"),
                None => path,
            });
        }
        self.url.clone().or_else(|| self.deploy_id.clone())
    }
}

/// `metadata.json`. Field order is the file's order; everything is derived from CF state only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Details {
    pub(crate) app_guid: String,
    pub(crate) app_name: String,
    pub(crate) organization: Option<String>,
    pub(crate) space: Option<String>,
    pub(crate) state: String,
    /// Of the `web` process (else the first one).
    pub(crate) instances: Option<u32>,
    pub(crate) memory: Option<String>,
    pub(crate) disk_quota: Option<String>,
    pub(crate) processes: Vec<ProcessScale>,
    pub(crate) stack: Option<String>,
    pub(crate) buildpacks: Vec<Buildpack>,
    pub(crate) droplet_guid: String,
    pub(crate) droplet_state: String,
    /// Whether the droplet is still the app's current droplet (false after a later restage or push).
    pub(crate) droplet_is_current: bool,
    pub(crate) droplet_checksum: Option<Checksum>,
    pub(crate) package_checksum: Option<Checksum>,
    /// The droplet's start commands by process type (what `out` needs to deploy the droplet elsewhere).
    pub(crate) process_types: BTreeMap<String, String>,
    pub(crate) routes: Vec<String>,
    pub(crate) urls: Vec<String>,
    pub(crate) env_names: Vec<String>,
    pub(crate) services: Vec<String>,
    pub(crate) staged_at: Option<String>,
    /// When `out` made the droplet production; unknown for droplets deployed some other way.
    pub(crate) deployed_at: Option<String>,
    pub(crate) build: Option<Build>,
}

/// The audit `out` recorded on the app, if it is about `droplet_guid` (a later push or restage by hand makes it
/// describe an older droplet).
pub(crate) fn audit_of(app: &App, droplet_guid: &str) -> Option<Audit> {
    Audit::from_annotations(&app.metadata.annotations).filter(|audit| audit.describes(droplet_guid))
}

impl Details {
    pub(crate) fn new(seen: Observed<'_>) -> Details {
        let Observed { version, app, organization, space, droplet, manifest, package_checksum, route_scheme } = seen;
        let audit = audit_of(app, &droplet.guid);
        let mut processes = manifest.process_scales();
        processes.sort_by(|a, b| a.kind.cmp(&b.kind));
        let main = processes.iter().find(|p| p.kind == "web").or_else(|| processes.first()).cloned();
        let routes = manifest.routes().unwrap_or_default();
        let mut services = manifest.services();
        services.sort();
        let buildpacks = match droplet.buildpacks.as_deref() {
            Some(used) if !used.is_empty() => used
                .iter()
                .filter_map(|b| {
                    let name = b.name.clone().or_else(|| b.buildpack_name.clone())?;
                    Some(Buildpack { name, version: b.version.clone().filter(|v| !v.is_empty()) })
                })
                .collect(),
            _ => manifest.buildpacks().into_iter().map(|name| Buildpack { name, version: None }).collect(),
        };
        let build = audit.as_ref().map(|a| Build {
            team: a.team.clone(),
            pipeline: a.pipeline.clone(),
            job: a.job.clone(),
            name: a.build_name.clone(),
            url: a.build_url.clone(),
            deploy_id: a.deploy_id.clone(),
        });
        Details {
            app_guid: version.app_guid.clone(),
            app_name: app.name.clone(),
            organization: organization.map(str::to_owned),
            space: space.map(str::to_owned),
            state: upper_case(&app.state),
            instances: main.as_ref().and_then(|p| p.instances),
            memory: main.as_ref().and_then(|p| p.memory.clone()),
            disk_quota: main.and_then(|p| p.disk_quota),
            processes,
            stack: droplet.stack.clone().filter(|s| !s.is_empty()).or_else(|| manifest.stack().map(str::to_owned)),
            buildpacks,
            droplet_guid: version.droplet_guid.clone(),
            droplet_state: upper_case(&droplet.state),
            droplet_is_current: app.current_droplet_guid() == Some(droplet.guid.as_str()),
            droplet_checksum: droplet.checksum.clone().filter(|c| c.value.is_some()),
            package_checksum,
            process_types: droplet.process_types.clone(),
            urls: routes.iter().map(|route| format!("{}://{route}", route_scheme.as_str())).collect(),
            routes,
            env_names: manifest.env().into_keys().collect(),
            services,
            staged_at: droplet.created_at.clone(),
            deployed_at: audit
                .as_ref()
                .and_then(|a| a.deployed_at)
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            build,
        }
    }

    /// The first production route's URL; empty for an app without routes.
    pub(crate) fn url(&self) -> &str {
        self.urls.first().map_or("", String::as_str)
    }

    /// The one-value files (name, contents) next to `metadata.json`, for scripts.
    pub(crate) fn value_files(&self) -> [(&'static str, &str); 4] {
        [
            ("app_guid", &self.app_guid),
            ("droplet_guid", &self.droplet_guid),
            ("url", self.url()),
            ("app_name", &self.app_name),
        ]
    }

    /// The short list shown on the build page: app, url, instances, memory, stack, deployed_at, build (each
    /// only when known).
    pub(crate) fn ui_metadata(&self) -> Vec<MetadataField> {
        let fields = [
            ("app", Some(self.app_name.clone())),
            ("url", self.urls.first().cloned()),
            ("instances", self.instances.map(|n| n.to_string())),
            ("memory", self.memory.clone()),
            ("stack", self.stack.clone()),
            ("deployed_at", self.deployed_at.clone()),
            ("build", self.build.as_ref().and_then(Build::label)),
        ];
        fields.into_iter().filter_map(|(name, value)| value.map(|v| MetadataField::new(name, v))).collect()
    }
}

/// `STARTED`, `STAGED`: the wire spelling of a CF state enum.
fn upper_case(state: &impl Serialize) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(text)) => text,
        _ => "UNKNOWN".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::protocol::BuildEnv;

    fn app(annotations: serde_json::Value) -> App {
        serde_json::from_value(json!({"guid": "a-1", "name": "shop", "state": "STARTED",
            "relationships": {"space": {"data": {"guid": "s"}}, "current_droplet": {"data": {"guid": "d-2"}}},
            "metadata": {"labels": {}, "annotations": annotations}}))
        .unwrap()
    }

    fn droplet(guid: &str) -> Droplet {
        serde_json::from_value(json!({"guid": guid, "state": "STAGED",
            "process_types": {"web": "./sample-app"},
            "checksum": {"type": "sha256", "value": "d0d0"},
            "buildpacks": [{"name": "binary_buildpack", "buildpack_name": "binary", "version": "1.2.3", "detect_output": ""}],
            "stack": "cflinuxfs4", "created_at": "2026-11-26T09:00:00Z",
            "relationships": {"app": {"data": {"guid": "a-1"}}}}))
        .unwrap()
    }

    fn audit_for(droplet: &str) -> serde_json::Value {
        let build = BuildEnv {
            team_name: Some("main".into()),
            pipeline_name: Some("shop".into()),
            job_name: Some("deploy".into()),
            name: Some("42".into()),
            url: Some("https://ci/builds/42".into()),
            ..Default::default()
        };
        let mut audit = Audit::new(&build, "deploy-9", droplet, Some("p4c".into()));
        audit.deployed_at = Some(humantime::parse_rfc3339("2026-11-26T10:00:00Z").unwrap());
        let written: BTreeMap<String, String> =
            audit.to_annotations().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        serde_json::to_value(written).unwrap()
    }

    fn details(app: &App, droplet: &Droplet, manifest: &AppManifest) -> Details {
        let version = Version::of(app, &droplet.guid);
        Details::new(Observed {
            version: &version,
            app,
            organization: Some("org"),
            space: Some("space"),
            droplet,
            manifest,
            package_checksum: None,
            route_scheme: RouteScheme::Https,
        })
    }

    fn manifest() -> AppManifest {
        AppManifest::literal(
            "the manifest of shop",
            "applications:\n- name: shop\n  env: {TOKEN: x}\n  routes:\n  - route: shop.example.com\n  - route: www.example.com\n  processes:\n  - type: web\n    instances: 2\n    memory: 256M\n    disk_quota: 1G\n",
            "shop",
        )
        .unwrap()
    }

    #[test]
    fn a_deployed_droplet_carries_its_build_and_deploy_time() {
        let app = app(audit_for("d-2"));
        let details = details(&app, &droplet("d-2"), &manifest());
        assert!(details.droplet_is_current);
        assert_eq!(details.url(), "https://shop.example.com");
        assert_eq!(details.deployed_at.as_deref(), Some("2026-11-26T10:00:00Z"));
        assert_eq!(details.buildpacks, [Buildpack { name: "binary_buildpack".into(), version: Some("1.2.3".into()) }]);
        assert_eq!(
            serde_json::to_value(details.ui_metadata()).unwrap(),
            json!([
                {"name": "app", "value": "shop"},
                {"name": "url", "value": "https://shop.example.com"},
                {"name": "instances", "value": "2"},
                {"name": "memory", "value": "256M"},
                {"name": "stack", "value": "cflinuxfs4"},
                {"name": "deployed_at", "value": "2026-11-26T10:00:00Z"},
                {"name": "build", "value": "main/shop/deploy #42"},
            ])
        );
        assert_eq!(details.build.unwrap().deploy_id.as_deref(), Some("deploy-9"));
    }

    #[test]
    fn an_audit_about_another_droplet_is_not_reported() {
        let app = app(audit_for("d-1"));
        let details = details(&app, &droplet("d-2"), &manifest());
        assert_eq!(details.ui_metadata().len(), 5);
        assert_eq!((details.deployed_at, details.build), (None, None));
    }

    #[test]
    fn an_older_droplet_of_the_app_is_not_current_and_a_routeless_app_has_an_empty_url() {
        let app = app(json!({}));
        let manifest =
            AppManifest::literal("the manifest of shop", "applications:\n- name: shop\n  no-route: true\n", "shop")
                .unwrap();
        let details = details(&app, &droplet("d-1"), &manifest);
        assert!(!details.droplet_is_current);
        assert_eq!(details.url(), "");
        assert_eq!(details.value_files()[2], ("url", ""));
        assert!(details.ui_metadata().iter().all(|f| f.name != "url"));
    }
}
