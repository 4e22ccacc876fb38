//! One typed API over every CF resource kind, in the manner of kube-rs: [`Api<K>`] gives each kind the generic
//! operations (get, find, list with paging, delete with its job, metadata update), and each kind's module adds
//! its own (`impl Api<App> { fn start … }`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cf::client::{CfClient, Deleted};
use crate::cf::error::Result;
use crate::cf::paginate::{ListParams, Listed};
use crate::cf::types::MetadataPatch;

/// A CF resource kind: where its collection lives and what its objects look like.
pub trait Resource: DeserializeOwned + Send + Sync + 'static {
    /// The collection path, e.g. `/v3/apps`.
    const PATH: &'static str;
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

    /// `PATCH /v3/<kind>/:guid` with `{"metadata": …}` (a `None` value deletes a key).
    pub async fn update_metadata(&self, guid: &str, metadata: &MetadataPatch) -> Result<K> {
        #[derive(Serialize)]
        struct Body<'a> {
            metadata: &'a MetadataPatch,
        }
        self.cf.patch(&self.path_of(guid), &Body { metadata }).await
    }
}
