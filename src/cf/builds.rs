//! Builds: stage a READY package into a droplet (`POST /v3/builds`) and wait for STAGED or FAILED.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, resource};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::types::{
    AppRelationship, CreatedBy, GuidRef, Lifecycle, MetadataPatch, guid_ref_or_none, null_as_default,
};
use crate::cf::wait::{Wait, reason_of};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildState {
    Staging,
    Staged,
    Failed,
    #[serde(other)]
    Unknown,
}

resource! {
    /// A build. Fixtures: `build.json`, `build_staging.json`.
    pub struct Build at "/v3/builds", builds {
        pub state: BuildState,
        /// `"<error_id> - <message>"` when FAILED.
        #[serde(default)]
        pub error: Option<String>,
        #[serde(default)]
        pub lifecycle: Option<Lifecycle>,
        #[serde(default, deserialize_with = "guid_ref_or_none")]
        pub package: Option<GuidRef>,
        /// Set once STAGED.
        #[serde(default, deserialize_with = "guid_ref_or_none")]
        pub droplet: Option<GuidRef>,
        #[serde(default)]
        pub staging_memory_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) staging_disk_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) staging_log_rate_limit_bytes_per_second: Option<i64>,
        #[serde(default)]
        pub created_by: Option<CreatedBy>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: AppRelationship,
    }
}

impl Build {
    pub fn droplet_guid(&self) -> Option<&str> {
        self.droplet.as_ref().map(|d| d.guid.as_str())
    }
}

/// Optional staging settings (defaults are the app's).
#[derive(Clone, Debug, Default)]
pub struct NewBuild {
    pub lifecycle: Option<Lifecycle>,
    pub staging_memory_in_mb: Option<u64>,
    pub(crate) staging_disk_in_mb: Option<u64>,
}

impl Api<Build> {
    /// `POST /v3/builds` for a READY package (state STAGING). Carries a create-id label, so after an ambiguous
    /// failure it is looked up before it is created again (and a second STAGING build is never started).
    pub async fn create(&self, package_guid: &str, options: &NewBuild) -> Result<Build> {
        #[derive(Serialize)]
        struct Body<'a> {
            package: GuidRef,
            #[serde(skip_serializing_if = "Option::is_none")]
            lifecycle: Option<&'a Lifecycle>,
            #[serde(skip_serializing_if = "Option::is_none")]
            staging_memory_in_mb: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            staging_disk_in_mb: Option<u64>,
            metadata: MetadataPatch,
        }
        self.create_labelled("build", ListParams::new(), |metadata| Body {
            package: GuidRef::new(package_guid),
            lifecycle: options.lifecycle.as_ref(),
            staging_memory_in_mb: options.staging_memory_in_mb,
            staging_disk_in_mb: options.staging_disk_in_mb,
            metadata,
        })
        .await
    }

    /// Polls until STAGED (returned, with `droplet` set) or FAILED (an error with CF's reason), within
    /// `timeout`. `on_poll` is called after each poll that found it still staging.
    pub async fn wait_staged(
        &self,
        guid: &str,
        timeout: Duration,
        on_poll: impl FnMut(u32, Duration) + Send,
    ) -> Result<Build> {
        let wait = Wait::new(format!("build {guid} to stage"), timeout).on_poll(on_poll);
        self.await_state(guid, wait, |build| match build.state {
            BuildState::Staged => Ok(true),
            BuildState::Failed => Err(Error::Failed(format!("staging failed: {}", reason_of(&build.error)))),
            _ => Ok(false),
        })
        .await
    }
}
