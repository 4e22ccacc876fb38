//! What a finished put tells Concourse (version and metadata) and the person reading the build (a summary).

use std::time::SystemTime;

use super::gate::GateReport;
use super::phases::Phases;
use super::push::Pushed;
use crate::cf::apps::App;
use crate::config::RouteScheme;
use crate::log;
use crate::protocol::{BuildEnv, MetadataField, Version, VersionResult};
use crate::record::Audit;

/// Warns when production was deployed by a later build of the same job than this one: the lock keeps deploys
/// from overlapping, not in order, so two builds of a job that is not `serial: true` can leave production on
/// the older one. A warning, not a refusal: rerunning an older build on purpose is a way back.
pub(crate) fn warn_if_older(build: &BuildEnv, production: Option<&App>) {
    let audit = production.and_then(|app| Audit::from_annotations(&app.metadata.annotations));
    if let Some(line) = audit.and_then(|audit| older_than(build, &audit)) {
        log::warn(line);
    }
}

/// The warning when `audit` names a later build of `build`'s team, pipeline and job. Build names are compared
/// as Concourse numbers them (`7`, `7.1` for a rerun of 7); names that are not numbers are not compared.
fn older_than(build: &BuildEnv, audit: &Audit) -> Option<String> {
    let same_job =
        [(&audit.team, &build.team_name), (&audit.pipeline, &build.pipeline_name), (&audit.job, &build.job_name)]
            .iter()
            .all(|(theirs, ours)| theirs.is_some() && theirs == ours);
    let (theirs, ours) = (audit.build_name.as_deref()?, build.name.as_deref()?);
    let number = |name: &str| name.split('.').map(|part| part.parse::<u64>().ok()).collect::<Option<Vec<_>>>();
    (same_job && number(ours)? < number(theirs)?).then(|| {
        format!(
            "production runs build {theirs} of this job, newer than this build {ours}: this put replaces it with an \
             older build (make the job serial: true so that its builds deploy in order)"
        )
    })
}

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
        if let Some(canary) = &self.gate.canary {
            metadata.push(MetadataField::new("canary", &canary.verdict));
            metadata.push(MetadataField::new("canary_candidate", canary.candidate.summary()));
            metadata.push(MetadataField::new("canary_blue", canary.blue.summary()));
        }
        for (key, took) in self.phases.durations() {
            metadata.push(MetadataField::new(format!("duration_{key}"), log::human_duration(*took)));
        }
        VersionResult { version: Version::of(self.production, &pushed.droplet_guid), metadata }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn build(job: &str, name: &str) -> BuildEnv {
        BuildEnv {
            team_name: Some("main".into()),
            pipeline_name: Some("shop".into()),
            job_name: Some(job.into()),
            name: Some(name.into()),
            ..BuildEnv::default()
        }
    }

    #[test]
    fn an_older_build_of_the_same_job_is_named() {
        let production = Audit::new(&build("deploy", "9"), "id", "droplet", None);
        let line = older_than(&build("deploy", "7"), &production).unwrap();
        assert!(line.starts_with("production runs build 9 of this job, newer than this build 7"), "{line}");
        assert!(older_than(&build("deploy", "9.1"), &production).is_none(), "a rerun of 9 is not older");
        assert!(older_than(&build("deploy", "8.3"), &production).is_some(), "a rerun of 8 is");
        assert!(older_than(&build("deploy", "10"), &production).is_none(), "numbers, not text: 10 > 9");
        assert!(older_than(&build("hotfix", "2"), &production).is_none(), "another job is not compared");
        assert!(older_than(&BuildEnv { name: Some("2".into()), ..BuildEnv::default() }, &production).is_none());
    }
}
