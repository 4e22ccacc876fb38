//! Packages: create (bits or docker), upload bits (streaming multipart from a zip on disk plus the matched
//! resources), wait until READY, copy between apps, an app's newest READY package, download.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Bits, resource};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::resource_matches::FileResource;
use crate::cf::retry::Done;
use crate::cf::transfers::FilePart;
use crate::cf::types::{AppRelationship, Checksum, MetadataPatch, null_as_default};
use crate::cf::wait::{Wait, reason_of};
use crate::redact;

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

resource! {
    /// A package. Fixtures: `package.json`, `package_created.json`, `package_docker.json`, `package_copy.json`.
    pub struct Package at "/v3/packages", packages {
        /// `bits` or `docker`.
        #[serde(rename = "type")]
        pub kind: String,
        #[serde(default, deserialize_with = "null_as_default")]
        pub data: PackageData,
        pub state: PackageState,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: AppRelationship,
    }
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

impl Bits for Package {
    const DOWNLOADING: &'static str = "downloading package";
}

impl Api<Package> {
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
        self.create_labelled("bits package", ListParams::new().filter("app_guids", [app_guid]), |metadata| Body {
            kind: "bits",
            relationships: AppRelationship::to(app_guid),
            metadata,
        })
        .await
    }

    /// `POST /v3/packages` type docker (READY at once). The registry password is registered for redaction.
    pub(crate) async fn create_docker(
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
        self.create_labelled("docker package", ListParams::new().filter("app_guids", [app_guid]), |metadata| Body {
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
        let upload = || {
            let file =
                zip.map(|path| FilePart { field: "bits", filename: "package.zip", mime: "application/zip", path });
            self.cf.upload_multipart(&path, vec![("resources", resources.clone())], file, "uploading")
        };
        let doubt = |err: &Error| format!("the upload may not have arrived ({err}); checking the package");
        match self
            .cf
            .act_or_check(doubt, upload, || self.get_if(guid, |p| p.state != PackageState::AwaitingUpload))
            .await?
        {
            Done::Acted(answer) => answer.json(),
            Done::Checked(package) => Ok(package),
        }
    }

    /// `GET /v3/packages?app_guids=…&states=READY&order_by=-created_at&per_page=1`: the app's newest READY package.
    pub(crate) async fn newest_ready(&self, app_guid: &str) -> Result<Option<Package>> {
        let params =
            ListParams::new().filter("app_guids", [app_guid]).filter("states", ["READY"]).order_by("-created_at");
        self.first(&params).await
    }

    /// Polls until the package is READY (after upload or copy); FAILED or EXPIRED is an error with CF's reason.
    pub async fn wait_ready(&self, guid: &str, timeout: Duration) -> Result<Package> {
        let wait = Wait::new(format!("package {guid} to be processed"), timeout);
        self.await_state(guid, wait, |package| match package.state {
            PackageState::Ready => Ok(true),
            PackageState::Failed | PackageState::Expired => {
                Err(Error::Failed(format!("package {guid} is {:?}: {}", package.state, reason_of(&package.data.error))))
            }
            _ => Ok(false),
        })
        .await
    }
}
