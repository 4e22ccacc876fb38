//! One typed API over every CF resource kind, in the manner of kube-rs: [`Api<K>`] gives each kind the generic
//! operations (get, find, list with paging, delete with its job, metadata update), and each kind's module adds
//! its own (`impl Api<App> { fn start … }`).

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cf::client::{CfClient, Deleted};
use crate::cf::error::Result;
use crate::cf::paginate::{ListParams, Listed};
use crate::cf::retry::create_id;
use crate::cf::types::{AppRelationship, Metadata, MetadataPatch};
use crate::record::CREATE_ID_LABEL;

/// A CF resource kind: where its collection lives and what its objects look like.
pub trait Resource: DeserializeOwned + Send + Sync + 'static {
    /// The collection path, e.g. `/v3/apps`.
    const PATH: &'static str;
}

/// A resource kind whose objects carry labels (every kind but jobs).
pub(crate) trait Labelled: Resource {
    fn metadata(&self) -> &Metadata;
}

/// The typed API of one resource kind. Cheap to clone; get one from the client (`cf.apps()`, `cf.routes()`, …)
/// or with [`CfClient::api`].
pub struct Api<K> {
    pub(crate) cf: CfClient,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api { cf: self.cf.clone(), _kind: PhantomData }
    }
}

impl CfClient {
    /// The typed API for resource kind `K`.
    pub fn api<K: Resource>(&self) -> Api<K> {
        Api { cf: self.clone(), _kind: PhantomData }
    }
}

impl<K: Resource> Api<K> {
    pub(crate) fn path_of(&self, guid: &str) -> String {
        format!("{}/{guid}", K::PATH)
    }

    /// `GET /v3/<kind>/:guid`.
    pub async fn get(&self, guid: &str) -> Result<K> {
        self.cf.get(&self.path_of(guid)).await
    }

    /// Like [`get`](Self::get), with 404 as `None`.
    pub async fn find(&self, guid: &str) -> Result<Option<K>> {
        self.cf.get_opt(&self.path_of(guid)).await
    }

    /// Every object matching `params`, all pages.
    pub async fn list(&self, params: &ListParams) -> Result<Vec<K>> {
        Ok(self.list_with_included(params).await?.resources)
    }

    /// Every object matching `params`, all pages, with the `included` objects (`include=` in `params`).
    pub async fn list_with_included(&self, params: &ListParams) -> Result<Listed<K>> {
        self.cf.list_all(K::PATH, params).await
    }

    /// At most one object matching `params` (asks for one page of one).
    pub async fn first(&self, params: &ListParams) -> Result<Option<K>> {
        let page: crate::cf::paginate::Page<K> = self.cf.get_with(K::PATH, &params.clone().per_page(1)).await?;
        Ok(page.resources.into_iter().next())
    }

    /// `DELETE /v3/<kind>/:guid`, waiting for the job if CF starts one (within `timeouts.job`). Deleting
    /// something that is already gone succeeds.
    pub async fn delete(&self, guid: &str) -> Result<()> {
        self.delete_within(guid, self.cf.timeouts().job).await
    }

    /// [`delete`](Self::delete) with an explicit deadline for the job.
    pub async fn delete_within(&self, guid: &str, timeout: Duration) -> Result<()> {
        let path = self.path_of(guid);
        match self.cf.delete(&path).await? {
            Deleted::Done | Deleted::NotFound => Ok(()),
            Deleted::Job(url) => self.cf.wait_for_job(&url, "DELETE", &path, timeout).await.map(drop),
        }
    }

    /// The object, if `holds` is true of it (after a lost answer: did the request take effect?).
    pub(crate) async fn get_if(&self, guid: &str, holds: impl Fn(&K) -> bool) -> Result<Option<K>> {
        let object = self.get(guid).await?;
        Ok(holds(&object).then_some(object))
    }

    /// `PATCH /v3/<kind>/:guid` with `{"metadata": …}` (a `None` value deletes a key).
    pub async fn update_metadata(&self, guid: &str, metadata: &MetadataPatch) -> Result<K> {
        #[derive(Serialize)]
        struct Body<'a> {
            metadata: &'a MetadataPatch,
        }
        self.cf.patch(&self.path_of(guid), &Body { metadata }).await
    }

    /// `POST /v3/<kind>` with the body `body` builds around a fresh [`CREATE_ID_LABEL`]: never created twice, as
    /// after an ambiguous failure the object is looked up by that label (within `scope`) before it is created
    /// again.
    pub(crate) async fn create_labelled<B: Serialize + Sync>(
        &self,
        what: &str,
        scope: ListParams,
        body: impl FnOnce(MetadataPatch) -> B,
    ) -> Result<K>
    where
        K: Labelled,
    {
        let id = create_id();
        let body = body(MetadataPatch::new().label(CREATE_ID_LABEL, &id));
        let find = || async {
            let found = self.list(&scope.clone().label_selector(format!("{CREATE_ID_LABEL}={id}"))).await?;
            Ok(found.into_iter().find(|k| k.metadata().labels.get(CREATE_ID_LABEL).is_some_and(|v| *v == id)))
        };
        self.cf.create_or_find(what, || self.cf.post(K::PATH, &body), find).await
    }
}

/// A kind that holds an app's bits (packages and droplets): listed per app, copied between apps, downloaded.
pub trait Bits: Resource {
    /// The progress label of a download.
    const DOWNLOADING: &'static str;
}

impl<K: Bits> Api<K> {
    /// The app's objects of this kind, newest first.
    pub async fn for_app(&self, app_guid: &str) -> Result<Vec<K>> {
        self.list(&ListParams::new().filter("app_guids", [app_guid]).order_by("-created_at")).await
    }

    /// `POST /v3/<kind>?source_guid=…`: copies an object into another app (state COPYING; wait for it with the
    /// kind's wait). A copy cannot carry a label, so it is not retried after an ambiguous failure; the caller may
    /// look at the app's objects.
    pub async fn copy(&self, source_guid: &str, app_guid: &str) -> Result<K> {
        #[derive(Serialize)]
        struct Body {
            relationships: AppRelationship,
        }
        let body = Body { relationships: AppRelationship::to(app_guid) };
        self.cf.post(&format!("{}?source_guid={source_guid}", K::PATH), &body).await
    }

    /// `GET /v3/<kind>/:guid/download` streamed to `dest` (only STAGED buildpack droplets can be downloaded).
    /// The redirect to the blobstore is followed without the Authorization header. Returns the size.
    pub async fn download(&self, guid: &str, dest: &Path) -> Result<u64> {
        self.cf.download_to_file(&format!("{}/download", self.path_of(guid)), dest, K::DOWNLOADING).await
    }
}

/// Declares a CF resource kind: its struct, with the fields every CC v3 object carries around its own (`guid`
/// first; `metadata`, `created_at`, `updated_at` and `links` last), its [`Resource`] path and its accessor
/// on [`CfClient`] (`cf.apps()`). `resource!(@kind …)` declares only the path and the accessor.
macro_rules! resource {
    (@kind $name:ident at $path:literal, $vis:vis $accessor:ident) => {
        impl $crate::cf::api::Resource for $name {
            const PATH: &'static str = $path;
        }

        impl $crate::cf::client::CfClient {
            #[doc = concat!("The typed API of `", $path, "`.")]
            $vis fn $accessor(&self) -> $crate::cf::api::Api<$name> {
                self.api()
            }
        }
    };
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident at $path:literal, $accessor:ident {
            $($(#[$field_attr:meta])* $field_vis:vis $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
        $vis struct $name {
            pub guid: String,
            $($(#[$field_attr])* $field_vis $field: $ty,)*
            #[serde(default, deserialize_with = "crate::cf::types::null_as_default")]
            pub metadata: $crate::cf::types::Metadata,
            #[serde(default)]
            pub created_at: Option<String>,
            #[serde(default)]
            pub(crate) updated_at: Option<String>,
            #[serde(default, deserialize_with = "crate::cf::types::null_as_default")]
            pub links: $crate::cf::types::Links,
        }

        impl $crate::cf::api::Labelled for $name {
            fn metadata(&self) -> &$crate::cf::types::Metadata {
                &self.metadata
            }
        }

        $crate::cf::api::resource!(@kind $name at $path, $vis $accessor);
    };
}
pub(crate) use resource;
