//! What a finished put tells Concourse (version and metadata) and the person reading the build (a summary).

use std::time::SystemTime;

use super::gate::GateReport;
use super::phases::Phases;
use super::push::Pushed;
use crate::cf::apps::App;
use crate::config::RouteScheme;
use crate::log;
use crate::protocol::{BuildEnv, MetadataField, Version, VersionResult};

/// The facts of a finished deploy.
pub(crate) struct Outcome<'a> {
    pub(crate) production: &'a App,
    pub(crate) pushed: &'a Pushed,
    /// `host.domain/path` of every production route.
    pub(crate) prod_routes: Vec<String>,
    pub(crate) scheme: RouteScheme,
    pub(crate) gate: &'a GateReport,
    pub(crate) phases: &'a Phases,
    pub(crate) build: &'a BuildEnv,
    /// What happened to the version that was in production (`kept as myapp-previous`, `deleted`).
    pub(crate) previous: Option<String>,
}

impl Outcome<'_> {
    pub(crate) fn result(&self) -> VersionResult {
        let pushed = self.pushed;
        let mut metadata = vec![
            MetadataField::new("app", &self.production.name),
            MetadataField::new("app_guid", &self.production.guid),
            MetadataField::new("urls", self.urls().join(", ")),
            MetadataField::new(
                "instances",
                pushed.instances.iter().map(|(kind, n)| format!("{kind}: {n}")).collect::<Vec<_>>().join(", "),
            ),
        ];
        if let Some(memory) = pushed.memory_mb {
            metadata.push(MetadataField::new("memory", format!("{memory}M")));
        }
        if let Some(stack) = &pushed.stack {
            metadata.push(MetadataField::new("stack", stack));
        }
        if !pushed.buildpacks.is_empty() {
            metadata.push(MetadataField::new("buildpacks", pushed.buildpacks.join(", ")));
        }
        metadata.push(MetadataField::new("droplet", &pushed.droplet_guid));
        if let Some(checksum) = &pushed.package_checksum {
            metadata.push(MetadataField::new("package_checksum", checksum));
        }
        metadata.push(MetadataField::new("deployed_at", humantime::format_rfc3339_seconds(SystemTime::now())));
        if let Some(url) = &self.build.url {
            metadata.push(MetadataField::new("build_url", url));
        }
        if let Some(previous) = &self.previous {
            metadata.push(MetadataField::new("previous", previous));
        }
        metadata.push(MetadataField::new("verification", self.gate.summary()));
        if let Some(candidate) = &self.gate.candidate {
            metadata.push(MetadataField::new("kpi_candidate", candidate.summary()));
        }
        if let Some(production) = &self.gate.production {
            metadata.push(MetadataField::new("kpi_production", production.summary()));
        }
        for (key, took) in self.phases.durations() {
            metadata.push(MetadataField::new(format!("duration_{key}"), log::human_duration(*took)));
        }
        VersionResult {
            version: Version { app_guid: self.production.guid.clone(), droplet_guid: pushed.droplet_guid.clone() },
            metadata,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.prod_routes.iter().map(|r| format!("{}://{r}", self.scheme.as_str())).collect()
    }

    /// The closing lines of the build log.
    pub(crate) fn print_summary(&self) {
        log::heading("Summary");
        log::success(format_args!(
            "{} ({}) is in production with droplet {}",
            self.production.name, self.production.guid, self.pushed.droplet_guid
        ));
        for url in self.urls() {
            log::detail(url);
        }
        log::detail(format_args!("verification: {}", self.gate.summary()));
        if let Some(previous) = &self.previous {
            log::detail(format_args!("previous version: {previous}"));
        }
        let phases: Vec<String> =
            self.phases.durations().iter().map(|(k, d)| format!("{k} {}", log::human_duration(*d))).collect();
        log::detail(format_args!("phases: {}", phases.join(", ")));
        log::detail(format_args!("total: {}", log::human_duration(log::elapsed())));
    }
}
