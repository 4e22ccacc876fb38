//! Packages: create (bits or docker), upload bits (streaming multipart from a zip on disk plus the matched
//! resources), wait until READY, copy between apps, download.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource};
use crate::cf::client::{CfClient, FilePart};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::{ListParams, Poll, Wait};
use crate::cf::resource_matches::FileResource;
use crate::cf::retry::create_id;
use crate::cf::types::{AppRelationship, Checksum, Links, Metadata, MetadataPatch, null_as_default};
use crate::record::CREATE_ID_LABEL;
use crate::{log, redact};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PackageState {
    AwaitingUpload,
    ProcessingUpload,
    Ready,
    Failed,
    Copying,
    Expired,
    #[serde(other)]
    Unknown,
}

/// A package. Fixtures: `package.json`, `package_created.json`, `package_docker.json`, `package_copy.json`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Package {
    pub guid: String,
    /// `bits` or `docker`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: PackageData,
    pub state: PackageState,
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

/// Bits packages have `checksum` and `error`; docker packages `image`, `username` and a masked `password`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PackageData {
    #[serde(default)]
    pub checksum: Option<Checksum>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl Package {
    pub fn app_guid(&self) -> Option<&str> {
        self.relationships.app_guid()
    }
}

impl Resource for Package {
    const PATH: &'static str = "/v3/packages";
}

impl CfClient {
    pub fn packages(&self) -> Api<Package> {
        self.api()
    }
}

impl Api<Package> {
    /// The app's packages, newest first.
    pub async fn for_app(&self, app_guid: &str) -> Result<Vec<Package>> {
        self.list(&ListParams::new().filter("app_guids", [app_guid]).order_by("-created_at")).await
    }

    /// Finds a package by the create-id label (see [`CREATE_ID_LABEL`]).
    async fn by_create_id(&self, app_guid: &str, id: &str) -> Result<Option<Package>> {
        let params =
            ListParams::new().filter("app_guids", [app_guid]).label_selector(format!("{CREATE_ID_LABEL}={id}"));
        let found = self.list(&params).await?;
        Ok(found.into_iter().find(|p| p.metadata.labels.get(CREATE_ID_LABEL).is_some_and(|v| v == id)))
    }

    async fn create_labelled<B: Serialize + Sync>(
        &self,
        app_guid: &str,
        what: &str,
        body: impl FnOnce(MetadataPatch) -> B,
    ) -> Result<Package> {
        let id = create_id();
        let body = body(MetadataPatch::new().label(CREATE_ID_LABEL, &id));
        self.cf.create_or_find(what, || self.cf.post(Package::PATH, &body), || self.by_create_id(app_guid, &id)).await
    }

    /// `POST /v3/packages` type bits (state AWAITING_UPLOAD). Never created twice: the package carries a
    /// create-id label it is looked up by after an ambiguous failure.
    pub async fn create_bits(&self, app_guid: &str) -> Result<Package> {
        #[derive(Serialize)]
        struct Body {
            #[serde(rename = "type")]
            kind: &'static str,
            relationships: AppRelationship,
            metadata: MetadataPatch,
        }
        self.create_labelled(app_guid, "bits package", |metadata| Body {
            kind: "bits",
            relationships: AppRelationship::to(app_guid),
            metadata,
        })
        .await
    }

    /// `POST /v3/packages` type docker (READY at once). The registry password is registered for redaction.
    pub async fn create_docker(
        &self,
        app_guid: &str,
        image: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Package> {
        if let Some(p) = password {
            redact::register(p);
        }
        #[derive(Serialize)]
        struct Data<'a> {
            image: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            username: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            relationships: AppRelationship,
            data: Data<'a>,
            metadata: MetadataPatch,
        }
        self.create_labelled(app_guid, "docker package", |metadata| Body {
            kind: "docker",
            relationships: AppRelationship::to(app_guid),
            data: Data { image, username, password },
            metadata,
        })
        .await
    }

    /// `POST /v3/packages/:guid/upload`: the `resources` field (JSON of the files CF already has, `[]` if none)
    /// and then, if any file did not match, the `bits` zip streamed from `zip` (never read into memory), with
    /// progress lines. The token is refreshed first. If the answer is lost, the package state tells whether
    /// the upload arrived before it is sent again.
    pub async fn upload(&self, guid: &str, zip: Option<&Path>, matched: &[FileResource]) -> Result<Package> {
        if zip.is_none() && matched.is_empty() {
            return Err(Error::Config("nothing to upload: no zip and no matched resources".into()));
        }
        let resources =
            serde_json::to_string(matched).map_err(|e| Error::Config(format!("cannot encode resources: {e}")))?;
        let path = format!("{}/upload", self.path_of(guid));
        let policy = self.cf.retry_policy().clone();
        let mut attempt = 1;
        loop {
            let file =
                zip.map(|path| FilePart { field: "bits", filename: "package.zip", mime: "application/zip", path });
            let result =
                self.cf.upload_multipart(&path, vec![("resources", resources.clone())], file, "uploading").await;
            let err = match result {
                Ok(answer) => return answer.json(),
                Err(e) if e.is_ambiguous() => e,
                Err(e) => return Err(e),
            };
            log::detail(format_args!("the upload may not have arrived ({err}); checking the package"));
            let package = self.get(guid).await?;
            if package.state != PackageState::AwaitingUpload {
                return Ok(package);
            }
            if attempt >= policy.max_attempts {
                return Err(err);
            }
            tokio::time::sleep(policy.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Polls until the package is READY (after upload or copy); FAILED or EXPIRED is an error with CF's reason.
    pub async fn wait_ready(&self, guid: &str, timeout: Duration) -> Result<Package> {
        Wait::new(format!("package {guid} to be processed"), timeout)
            .until(|| async {
                let package = self.get(guid).await?;
                match package.state {
                    PackageState::Ready => Ok(Poll::Ready(package)),
                    PackageState::Failed | PackageState::Expired => Err(Error::Failed(format!(
                        "package {guid} is {:?}: {}",
                        package.state,
                        package.data.error.as_deref().unwrap_or("CF gave no reason")
                    ))),
                    _ => Ok(Poll::Pending),
                }
            })
            .await
    }

    /// `POST /v3/packages?source_guid=…`: copies a package's bits into another app (state COPYING; wait with
    /// [`wait_ready`](Self::wait_ready)). A copy cannot carry a label, so it is not retried after an ambiguous
    /// failure; the caller may look at the app's packages.
    pub async fn copy(&self, source_guid: &str, app_guid: &str) -> Result<Package> {
        #[derive(Serialize)]
        struct Body {
            relationships: AppRelationship,
        }
        self.cf
            .post(
                &format!("{}?source_guid={source_guid}", Package::PATH),
                &Body { relationships: AppRelationship::to(app_guid) },
            )
            .await
    }

    /// `GET /v3/packages/:guid/download` to a file (following the blobstore redirect without credentials).
    pub async fn download(&self, guid: &str, dest: &Path) -> Result<u64> {
        self.cf.download_to_file(&format!("{}/download", self.path_of(guid)), dest, "downloading package").await
    }
}
