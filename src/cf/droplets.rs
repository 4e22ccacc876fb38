//! Droplets: get, copy into another app (promote blue's exact droplet without staging), stream a download to a
//! file (following the blobstore redirect without credentials), and create + upload a prebuilt droplet tgz.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource};
use crate::cf::client::{CfClient, FilePart};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::{ListParams, Poll, Wait};
use crate::cf::types::{AppRelationship, Checksum, Lifecycle, Links, Metadata, lenient_string_map, null_as_default};
use crate::log;

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

/// A droplet. Fixtures: `droplet.json`, `droplet_copy.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Droplet {
    pub guid: String,
    pub state: DropletState,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default)]
    pub execution_metadata: Option<String>,
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Metadata,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct DropletBuildpack {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub buildpack_name: Option<String>,
    #[serde(default)]
    pub detect_output: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

impl Droplet {
    pub fn app_guid(&self) -> Option<&str> {
        self.relationships.app_guid()
    }
}

impl Resource for Droplet {
    const PATH: &'static str = "/v3/droplets";
}

impl CfClient {
    pub fn droplets(&self) -> Api<Droplet> {
        self.api()
    }
}

impl Api<Droplet> {
    /// The app's droplets, newest first.
    pub async fn for_app(&self, app_guid: &str) -> Result<Vec<Droplet>> {
        self.list(&ListParams::new().filter("app_guids", [app_guid]).order_by("-created_at")).await
    }

    /// `POST /v3/droplets?source_guid=…`: copies a droplet into another app (state COPYING; wait with
    /// [`wait_staged`](Self::wait_staged)). A copy carries no label, so it is not retried after an ambiguous
    /// failure.
    pub async fn copy(&self, source_guid: &str, app_guid: &str) -> Result<Droplet> {
        #[derive(Serialize)]
        struct Body {
            relationships: AppRelationship,
        }
        self.cf
            .post(
                &format!("{}?source_guid={source_guid}", Droplet::PATH),
                &Body { relationships: AppRelationship::to(app_guid) },
            )
            .await
    }

    /// Polls until STAGED; FAILED or EXPIRED is an error.
    pub async fn wait_staged(&self, guid: &str, timeout: Duration) -> Result<Droplet> {
        Wait::new(format!("droplet {guid} to be ready"), timeout)
            .until(|| async {
                let droplet = self.get(guid).await?;
                match droplet.state {
                    DropletState::Staged => Ok(Poll::Ready(droplet)),
                    DropletState::Failed | DropletState::Expired => Err(Error::Failed(format!(
                        "droplet {guid} is {:?}: {}",
                        droplet.state,
                        droplet.error.as_deref().unwrap_or("CF gave no reason")
                    ))),
                    _ => Ok(Poll::Pending),
                }
            })
            .await
    }

    /// `GET /v3/droplets/:guid/download` streamed to `dest` (only STAGED buildpack droplets can be
    /// downloaded). The 302 to the blobstore is followed without the Authorization header. Returns the size.
    pub async fn download(&self, guid: &str, dest: &Path) -> Result<u64> {
        self.cf.download_to_file(&format!("{}/download", self.path_of(guid)), dest, "downloading droplet").await
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
        let policy = self.cf.retry_policy().clone();
        let mut attempt = 1;
        loop {
            let file = FilePart { field: "bits", filename: "droplet.tgz", mime: "application/gzip", path: tgz };
            let err = match self.cf.upload_multipart(&path, Vec::new(), Some(file), "uploading droplet").await {
                Ok(answer) => {
                    if answer.status == reqwest::StatusCode::ACCEPTED {
                        let job = self.cf.job_url(&answer)?;
                        self.cf.wait_for_job(&job, "POST", &path, timeout).await?;
                    }
                    return self.wait_staged(guid, timeout).await;
                }
                Err(e) if e.is_ambiguous() => e,
                Err(e) => return Err(e),
            };
            log::detail(format_args!("the droplet upload may not have arrived ({err}); checking the droplet"));
            if self.get(guid).await?.state != DropletState::AwaitingUpload {
                return self.wait_staged(guid, timeout).await;
            }
            if attempt >= policy.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(policy.backoff(attempt)).await;
            attempt += 1;
        }
    }
}
