//! The audit trail: annotations on the production app saying which Concourse build deployed it, when, and
//! with which bits. `out` writes them when the candidate becomes production; `in` reads them back.

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::protocol::BuildEnv;
use crate::record::prefix;

const DEPLOYED_AT: &str = concat!(prefix!(), "deployed-at");
const DEPLOY_ID: &str = concat!(prefix!(), "deployed-by-deploy");
const TEAM: &str = concat!(prefix!(), "build-team");
const PIPELINE: &str = concat!(prefix!(), "build-pipeline");
const JOB: &str = concat!(prefix!(), "build-job");
const BUILD: &str = concat!(prefix!(), "build-name");
const BUILD_URL: &str = concat!(prefix!(), "build-url-deployed");
const DROPLET: &str = concat!(prefix!(), "droplet");
const PACKAGE_CHECKSUM: &str = concat!(prefix!(), "package-checksum");
const BITS_DIGEST: &str = concat!(prefix!(), "bits-digest");
const MANIFEST_DIGEST: &str = concat!(prefix!(), "manifest-digest");

/// Who deployed the production app and with what.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    pub deployed_at: Option<SystemTime>,
    pub deploy_id: Option<String>,
    pub team: Option<String>,
    pub pipeline: Option<String>,
    pub job: Option<String>,
    pub build_name: Option<String>,
    pub build_url: Option<String>,
    /// The droplet the deploy put in production; the other fields describe that droplet only.
    pub droplet_guid: Option<String>,
    /// SHA-256 of the package the droplet was staged from, when the deploy uploaded one.
    pub package_checksum: Option<String>,
    /// The content digest of the app bits deployed (`skip_unchanged` compares the next deploy's with it).
    pub bits_digest: Option<String>,
    /// The digest of the deploy's manifest as normalised for `skip_unchanged` (a key removed from the manifest
    /// changes it, while `manifest_diff` cannot see it).
    pub manifest_digest: Option<String>,
}

impl Audit {
    pub fn new(build: &BuildEnv, deploy_id: &str, droplet_guid: &str, package_checksum: Option<String>) -> Audit {
        Audit {
            deployed_at: Some(SystemTime::now()),
            deploy_id: Some(deploy_id.to_owned()),
            team: build.team_name.clone(),
            pipeline: build.pipeline_name.clone(),
            job: build.job_name.clone(),
            build_name: build.name.clone(),
            build_url: build.url.clone(),
            droplet_guid: Some(droplet_guid.to_owned()),
            package_checksum,
            bits_digest: None,
            manifest_digest: None,
        }
    }

    /// The annotations that record this audit; every key is written (absent values remove stale ones).
    pub fn to_annotations(&self) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            (DEPLOYED_AT.into(), self.deployed_at_text()),
            (DEPLOY_ID.into(), self.deploy_id.clone()),
            (TEAM.into(), self.team.clone()),
            (PIPELINE.into(), self.pipeline.clone()),
            (JOB.into(), self.job.clone()),
            (BUILD.into(), self.build_name.clone()),
            (BUILD_URL.into(), self.build_url.clone()),
            (DROPLET.into(), self.droplet_guid.clone()),
            (PACKAGE_CHECKSUM.into(), self.package_checksum.clone()),
            (BITS_DIGEST.into(), self.bits_digest.clone()),
            (MANIFEST_DIGEST.into(), self.manifest_digest.clone()),
        ])
    }

    /// `deployed_at` as the annotation writes it (RFC 3339, whole seconds).
    pub(crate) fn deployed_at_text(&self) -> Option<String> {
        self.deployed_at.map(|t| humantime::format_rfc3339_seconds(t).to_string())
    }

    /// The audit recorded on an app, if it has one.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Option<Audit> {
        let get = |key: &str| annotations.get(key).filter(|v| !v.is_empty()).cloned();
        let audit = Audit {
            deployed_at: get(DEPLOYED_AT).and_then(|t| humantime::parse_rfc3339(&t).ok()),
            deploy_id: get(DEPLOY_ID),
            team: get(TEAM),
            pipeline: get(PIPELINE),
            job: get(JOB),
            build_name: get(BUILD),
            build_url: get(BUILD_URL),
            droplet_guid: get(DROPLET),
            package_checksum: get(PACKAGE_CHECKSUM),
            bits_digest: get(BITS_DIGEST),
            manifest_digest: get(MANIFEST_DIGEST),
        };
        (audit != Audit::default()).then_some(audit)
    }

    /// Whether this audit describes `droplet_guid` (a later hand-made push or restage makes it stale).
    pub fn describes(&self, droplet_guid: &str) -> bool {
        self.droplet_guid.as_deref() == Some(droplet_guid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_knows_its_droplet() {
        let build = BuildEnv {
            team_name: Some("main".into()),
            pipeline_name: Some("shop".into()),
            job_name: Some("deploy".into()),
            name: Some("7".into()),
            url: Some("https://ci/builds/7".into()),
            ..Default::default()
        };
        let mut audit = Audit::new(&build, "deploy-1", "droplet-1", Some("abc".into()));
        audit.bits_digest = Some(format!("sha1:{}", "0".repeat(40)));
        audit.manifest_digest = Some(format!("sha1:{}", "1".repeat(40)));
        audit.deployed_at = Some(humantime::parse_rfc3339("2026-11-26T10:00:00Z").unwrap());
        let written: BTreeMap<String, String> =
            audit.to_annotations().into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        let back = Audit::from_annotations(&written).unwrap();
        assert_eq!(back, audit);
        assert!(back.describes("droplet-1") && !back.describes("droplet-2"));
    }

    #[test]
    fn no_annotations_no_audit() {
        assert_eq!(Audit::from_annotations(&BTreeMap::new()), None);
    }
}
