//! Apps: create (with lifecycle, env and metadata), find by name or label, rename, start/stop/restart, delete
//! (a job), environment variables, the current droplet, and the generated manifest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource, resource};
use crate::cf::droplets::Droplet;
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::types::{
    GuidRef, Lifecycle, Links, MetadataPatch, ToOne, guid_ref_or_none, lenient_string_map, null_as_default,
};

/// The desired state of an app.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppState {
    Started,
    Stopped,
    #[serde(other)]
    Unknown,
}

resource! {
    /// An app. Fixtures: `app.json`, `app_started.json`, `apps_list.json`.
    pub struct App at "/v3/apps", apps {
        pub name: String,
        pub state: AppState,
        #[serde(default)]
        pub lifecycle: Option<Lifecycle>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: AppRelationships,
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct AppRelationships {
    #[serde(default)]
    pub space: ToOne,
    /// Absent before CC API 3.175 (`app_presenter.rb`, commit d543a66688), so `None` there says nothing; from
    /// 3.175 on `{"data": {"guid": null}}` (read as pointing at nothing) until a droplet is assigned.
    #[serde(default)]
    pub current_droplet: Option<ToOne>,
}

impl App {
    pub fn space_guid(&self) -> Option<&str> {
        self.relationships.space.guid()
    }

    /// The current droplet's guid, if the app response says.
    pub fn current_droplet_guid(&self) -> Option<&str> {
        self.relationships.current_droplet.as_ref().and_then(ToOne::guid)
    }
}

/// An app to create.
#[derive(Clone, Debug, Default)]
pub struct NewApp {
    pub name: String,
    pub space_guid: String,
    /// `None`: buildpack with auto-detection and the default stack.
    pub lifecycle: Option<Lifecycle>,
    pub environment_variables: BTreeMap<String, String>,
    pub metadata: MetadataPatch,
}

/// Fields to change with `PATCH /v3/apps/:guid`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `data` is required; `type` cannot change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataPatch>,
}

/// Filters for listing apps.
#[derive(Clone, Debug, Default)]
pub struct AppFilter {
    pub names: Vec<String>,
    pub space_guids: Vec<String>,
    pub label_selector: Option<String>,
}

impl AppFilter {
    /// The filter as list parameters.
    pub(crate) fn params(&self) -> ListParams {
        let params = ListParams::new().filter("names", &self.names).filter("space_guids", &self.space_guids);
        match &self.label_selector {
            Some(selector) => params.label_selector(selector),
            None => params,
        }
    }
}

/// `GET /v3/apps/:guid/environment_variables`. Fixture: `environment_variables.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct EnvironmentVariables {
    #[serde(default, deserialize_with = "lenient_string_map")]
    pub var: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

/// `PATCH/GET /v3/apps/:guid/relationships/current_droplet`. Fixture: `app_current_droplet_relationship.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct CurrentDropletRelationship {
    #[serde(default, deserialize_with = "guid_ref_or_none")]
    pub data: Option<GuidRef>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

impl Api<App> {
    /// `app` with its current droplet known: CC renders `relationships.current_droplet` from CC API 3.175 on
    /// (`app_presenter.rb`, commit d543a66688); from an older one it is read with
    /// `GET /v3/apps/:guid/relationships/current_droplet` (404 "Droplet not found": none). No request when the
    /// app already says.
    pub(crate) async fn with_current_droplet(&self, mut app: App) -> Result<App> {
        if app.relationships.current_droplet.is_none() {
            let path = format!("{}/relationships/current_droplet", self.path_of(&app.guid));
            let found: Option<ToOne> = self.cf.get_opt(&path).await?;
            app.relationships.current_droplet = Some(found.unwrap_or_default());
        }
        Ok(app)
    }

    /// Apps matching the filter, all pages.
    pub async fn list_filtered(&self, filter: &AppFilter) -> Result<Vec<App>> {
        self.list(&filter.params()).await
    }

    /// The app called `name` in the space (names are unique per space, case-insensitively).
    pub async fn by_name(&self, space_guid: &str, name: &str) -> Result<Option<App>> {
        let apps = self
            .list_filtered(&AppFilter {
                names: vec![name.to_owned()],
                space_guids: vec![space_guid.to_owned()],
                ..AppFilter::default()
            })
            .await?;
        Ok(apps.into_iter().find(|a| a.name.eq_ignore_ascii_case(name)))
    }

    /// `POST /v3/apps` (state STOPPED, with a `web` process). If the response is lost, the app is looked up by
    /// name in the space before it is created again, so it is never created twice. A name already taken is a
    /// 422 `CF-UniquenessError` (it is the blue-green lock).
    pub async fn create(&self, app: &NewApp) -> Result<App> {
        #[derive(Serialize)]
        struct Relationships {
            space: ToOne,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            name: &'a str,
            relationships: Relationships,
            #[serde(skip_serializing_if = "Option::is_none")]
            lifecycle: Option<&'a Lifecycle>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            environment_variables: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "MetadataPatch::is_empty")]
            metadata: &'a MetadataPatch,
        }
        let body = Body {
            name: &app.name,
            relationships: Relationships { space: ToOne::to(&app.space_guid) },
            lifecycle: app.lifecycle.as_ref(),
            environment_variables: &app.environment_variables,
            metadata: &app.metadata,
        };
        self.cf
            .create_or_find(
                &format!("app {}", app.name),
                || self.cf.post(App::PATH, &body),
                || self.by_name(&app.space_guid, &app.name),
            )
            .await
    }

    /// `PATCH /v3/apps/:guid`.
    pub async fn update(&self, guid: &str, update: &AppUpdate) -> Result<App> {
        self.cf.patch(&self.path_of(guid), update).await
    }

    /// Renames the app (routing is unaffected: destinations point at guids).
    pub async fn rename(&self, guid: &str, new_name: &str) -> Result<App> {
        self.update(guid, &AppUpdate { name: Some(new_name.to_owned()), ..AppUpdate::default() }).await
    }

    async fn action(&self, guid: &str, action: &str) -> Result<App> {
        self.cf.post_action::<(), App>(&format!("{}/actions/{action}", self.path_of(guid)), None).await
    }

    /// `POST /v3/apps/:guid/actions/start` (needs a current droplet; never stages).
    pub async fn start(&self, guid: &str) -> Result<App> {
        self.action(guid, "start").await
    }

    /// `POST /v3/apps/:guid/actions/stop`.
    pub async fn stop(&self, guid: &str) -> Result<App> {
        self.action(guid, "stop").await
    }

    /// `POST /v3/apps/:guid/actions/restart` (stop then start: downtime for this app).
    pub async fn restart(&self, guid: &str) -> Result<App> {
        self.action(guid, "restart").await
    }

    /// `GET /v3/apps/:guid/environment_variables`.
    pub async fn env_vars(&self, guid: &str) -> Result<BTreeMap<String, String>> {
        let env: EnvironmentVariables = self.cf.get(&format!("{}/environment_variables", self.path_of(guid))).await?;
        Ok(env.var)
    }

    /// `PATCH /v3/apps/:guid/environment_variables`: merges; a `None` value deletes the variable.
    pub async fn update_env_vars(
        &self,
        guid: &str,
        vars: &BTreeMap<String, Option<String>>,
    ) -> Result<BTreeMap<String, String>> {
        #[derive(Serialize)]
        struct Body<'a> {
            var: &'a BTreeMap<String, Option<String>>,
        }
        let env: EnvironmentVariables =
            self.cf.patch(&format!("{}/environment_variables", self.path_of(guid)), &Body { var: vars }).await?;
        Ok(env.var)
    }

    /// `GET /v3/apps/:guid/droplets/current`; `None` if the app has no current droplet.
    pub async fn current_droplet(&self, guid: &str) -> Result<Option<Droplet>> {
        self.cf.get_opt(&format!("{}/droplets/current", self.path_of(guid))).await
    }

    /// `PATCH /v3/apps/:guid/relationships/current_droplet`.
    pub async fn set_current_droplet(&self, guid: &str, droplet_guid: &str) -> Result<CurrentDropletRelationship> {
        #[derive(Serialize)]
        struct Body {
            data: GuidRef,
        }
        self.cf
            .patch(
                &format!("{}/relationships/current_droplet", self.path_of(guid)),
                &Body { data: GuidRef::new(droplet_guid) },
            )
            .await
    }

    /// `GET /v3/apps/:guid/manifest`: the app as a manifest (YAML text).
    pub async fn manifest(&self, guid: &str) -> Result<String> {
        self.cf.get_text(&format!("{}/manifest", self.path_of(guid)), "application/x-yaml").await
    }
}
