//! Droplets: get, copy into another app (promote blue's exact droplet without staging), stream a download to a
//! file (following the blobstore redirect without credentials), and create + upload a prebuilt droplet tgz.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Bits, Resource, resource};
use crate::cf::error::{Error, Result};
use crate::cf::retry::Done;
use crate::cf::transfers::FilePart;
use crate::cf::types::{AppRelationship, Checksum, Lifecycle, lenient_string_map, null_as_default};
use crate::cf::wait::{Wait, reason_of};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DropletState {
    AwaitingUpload,
    ProcessingUpload,
    Staged,
    Copying,
    Failed,
    Expired,
    #[serde(other)]
    Unknown,
}

resource! {
    /// A droplet. Fixtures: `droplet.json`, `droplet_copy.json`.
    pub struct Droplet at "/v3/droplets", droplets {
        pub state: DropletState,
        #[serde(default)]
        pub error: Option<String>,
        #[serde(default)]
        pub lifecycle: Option<Lifecycle>,
        #[serde(default)]
        pub(crate) execution_metadata: Option<String>,
        /// e.g. `{"web": "bundle exec rackup config.ru -p $PORT"}`; `null` while copying.
        #[serde(default, deserialize_with = "lenient_string_map")]
        pub process_types: BTreeMap<String, String>,
        #[serde(default)]
        pub checksum: Option<Checksum>,
        #[serde(default)]
        pub buildpacks: Option<Vec<DropletBuildpack>>,
        #[serde(default)]
        pub stack: Option<String>,
        /// Docker droplets.
        #[serde(default)]
        pub image: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: AppRelationship,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DropletBuildpack {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub(crate) buildpack_name: Option<String>,
    #[serde(default)]
    pub(crate) detect_output: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl Droplet {
    pub fn app_guid(&self) -> Option<&str> {
        self.relationships.app_guid()
    }

    /// The package it was staged from (`links.package`); a copied or uploaded droplet has none.
    pub(crate) fn package_guid(&self) -> Option<&str> {
        let href = &self.links.get("package")?.as_ref()?.href;
        href.trim_end_matches('/').rsplit('/').next().filter(|guid| !guid.is_empty() && *guid != "packages")
    }
}

impl Bits for Droplet {
    const DOWNLOADING: &'static str = "downloading droplet";
}

impl Api<Droplet> {
    /// Polls until STAGED; FAILED or EXPIRED is an error.
    pub async fn wait_staged(&self, guid: &str, timeout: Duration) -> Result<Droplet> {
        let wait = Wait::new(format!("droplet {guid} to be ready"), timeout);
        self.await_state(guid, wait, |droplet| match droplet.state {
            DropletState::Staged => Ok(true),
            DropletState::Failed | DropletState::Expired => {
                Err(Error::Failed(format!("droplet {guid} is {:?}: {}", droplet.state, reason_of(&droplet.error))))
            }
            _ => Ok(false),
        })
        .await
    }

    /// `POST /v3/droplets` for uploading a prebuilt droplet (state AWAITING_UPLOAD). CC takes only
    /// `relationships` and `process_types` here (`app/messages/droplet_create_message.rb`: `metadata` is an unknown
    /// field), so the droplet cannot carry a label to be found by after a lost answer; it is created again instead.
    /// The droplet a lost answer may have left behind stays AWAITING_UPLOAD, never becomes current, and goes with
    /// the app.
    pub async fn create(&self, app_guid: &str, process_types: &BTreeMap<String, String>) -> Result<Droplet> {
        #[derive(Serialize)]
        struct Body<'a> {
            relationships: AppRelationship,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            process_types: &'a BTreeMap<String, String>,
        }
        let body = Body { relationships: AppRelationship::to(app_guid), process_types };
        self.cf.create_or_find("droplet", || self.cf.post(Droplet::PATH, &body), || async { Ok(None) }).await
    }

    /// `POST /v3/droplets/:guid/upload` with the `bits` file part streamed from `tgz`, then waits for the job
    /// (within `timeout`). If the answer is lost, the droplet state tells whether the upload arrived.
    pub async fn upload(&self, guid: &str, tgz: &Path, timeout: Duration) -> Result<Droplet> {
        let path = format!("{}/upload", self.path_of(guid));
        let upload = || {
            let file = FilePart { field: "bits", filename: "droplet.tgz", mime: "application/gzip", path: tgz };
            self.cf.upload_multipart(&path, Vec::new(), Some(file), "uploading droplet")
        };
        let doubt = |err: &Error| format!("the droplet upload may not have arrived ({err}); checking the droplet");
        let arrived = || self.get_if(guid, |d| d.state != DropletState::AwaitingUpload);
        if let Done::Acted(answer) = self.cf.act_or_check(doubt, upload, arrived).await?
            && answer.status == reqwest::StatusCode::ACCEPTED
        {
            let job = self.cf.job_url(&answer)?;
            self.cf.wait_for_job(&job, "POST", &path, timeout).await?;
        }
        self.wait_staged(guid, timeout).await
    }
}
