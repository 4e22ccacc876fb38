//! Routes and their destinations: find or create the temporary and production routes, map an app (insert a
//! destination, optionally with the protocol and port of another one), unmap it (delete one destination), and
//! delete routes (an async job).

use serde::{Deserialize, Serialize};

use crate::cf::api::{Api, Resource, resource};
use crate::cf::error::{Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::types::{Links, MetadataPatch, ToOne, null_as_default};

resource! {
    /// A route. Fixtures: `route.json`, `routes_list.json`.
    pub struct Route at "/v3/routes", routes {
        /// `http` or `tcp`.
        #[serde(default)]
        pub protocol: Option<String>,
        /// Empty for routes without a host (private domains).
        #[serde(default, deserialize_with = "null_as_default")]
        pub host: String,
        /// Empty, or a path starting with `/`.
        #[serde(default, deserialize_with = "null_as_default")]
        pub path: String,
        #[serde(default)]
        pub port: Option<u32>,
        /// `host.domain/path`.
        #[serde(default, deserialize_with = "null_as_default")]
        pub url: String,
        #[serde(default, deserialize_with = "null_as_default")]
        pub destinations: Vec<Destination>,
        #[serde(default)]
        pub options: Option<RouteOptions>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub relationships: RouteRelationships,
    }
}

impl Route {
    pub fn domain_guid(&self) -> Option<&str> {
        self.relationships.domain.guid()
    }

    pub fn space_guid(&self) -> Option<&str> {
        self.relationships.space.guid()
    }

    /// The destinations that send traffic to `app_guid`.
    pub fn destinations_of<'a>(&'a self, app_guid: &'a str) -> impl Iterator<Item = &'a Destination> + 'a {
        self.destinations.iter().filter(move |d| d.app.guid == app_guid)
    }

    /// True when the route splits its traffic by weights. CC refuses to insert a destination into such a route
    /// or to delete one of its destinations ([`CfError::is_weighted_destinations`]), so a deploy that would map
    /// or unmap it must refuse before it changes anything.
    ///
    /// [`CfError::is_weighted_destinations`]: crate::cf::CfError::is_weighted_destinations
    pub fn has_weighted_destinations(&self) -> bool {
        self.destinations.iter().any(|d| d.weight.is_some())
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RouteRelationships {
    #[serde(default)]
    pub space: ToOne,
    #[serde(default)]
    pub domain: ToOne,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct RouteOptions {
    /// `round-robin` or `least-connection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loadbalancing: Option<String>,
}

/// A route's mapping to an app process (`app/presenters/v3/route_destination_presenter.rb`). Fixture:
/// `route_destinations.json`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Destination {
    /// Needed to unmap.
    #[serde(default, deserialize_with = "null_as_default")]
    pub guid: String,
    pub app: DestinationApp,
    /// `null` unless the route's traffic is split by weights (see [`Route::has_weighted_destinations`]).
    #[serde(default)]
    pub weight: Option<u32>,
    /// The app port traffic goes to (CC presents its default, 8080 or the docker image's first port, when none
    /// was given).
    #[serde(default)]
    pub port: Option<u32>,
    /// `http1`, `http2` or `tcp`; absent before CC API 3.105.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub(crate) updated_at: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct DestinationApp {
    pub guid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessType>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ProcessType {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
}

/// `{"destinations":[…],"links":…}` from `GET`/`POST`/`PATCH /v3/routes/:guid/destinations`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Destinations {
    #[serde(default, deserialize_with = "null_as_default")]
    pub destinations: Vec<Destination>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub links: Links,
}

/// A destination to add. What is left unset CC fills in (`app/actions/update_route_destinations.rb`): the
/// `web` process, port 8080 for a buildpack app (the docker image's port for a docker app) and the route's
/// default protocol, `http1` on an http route.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NewDestination {
    pub app: DestinationApp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl NewDestination {
    /// The app's `web` process on its default port and protocol.
    pub fn app(app_guid: impl Into<String>) -> Self {
        NewDestination { app: DestinationApp { guid: app_guid.into(), process: None }, port: None, protocol: None }
    }

    /// The app, reached the way `like` reaches its app: the same process type, port and protocol (e.g. `http2`
    /// for a gRPC app, or a port other than 8080), so traffic moved to it arrives as it did before. The app must
    /// listen on that port; a protocol CC did not present (before CC API 3.105) is left to CC's default.
    pub fn like(app_guid: impl Into<String>, like: &Destination) -> Self {
        NewDestination {
            app: DestinationApp {
                guid: app_guid.into(),
                process: like.app.process.clone().filter(|p| !p.kind.is_empty()),
            },
            port: like.port,
            protocol: like.protocol.clone(),
        }
    }
}

/// A route to create.
#[derive(Clone, Debug, Default)]
pub struct NewRoute {
    pub space_guid: String,
    pub domain_guid: String,
    /// Required on shared http domains.
    pub host: Option<String>,
    /// Starts with `/`; not just `/`.
    pub path: Option<String>,
    /// tcp domains only.
    pub port: Option<u32>,
    pub metadata: MetadataPatch,
}

/// Filters for listing routes. `paths` is sent even when it holds only the empty path (that is how an exact
/// path-less route is found).
#[derive(Clone, Debug, Default)]
pub struct RouteFilter {
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub(crate) domain_guids: Vec<String>,
    pub space_guids: Vec<String>,
    pub app_guids: Vec<String>,
    pub label_selector: Option<String>,
}

impl RouteFilter {
    pub fn params(&self) -> ListParams {
        let mut params = ListParams::new()
            .filter("hosts", &self.hosts)
            .filter("paths", &self.paths)
            .filter("domain_guids", &self.domain_guids)
            .filter("space_guids", &self.space_guids)
            .filter("app_guids", &self.app_guids);
        if let Some(selector) = &self.label_selector {
            params = params.label_selector(selector);
        }
        params
    }
}

impl Api<Route> {
    /// Routes matching the filter, all pages.
    pub async fn list_filtered(&self, filter: &RouteFilter) -> Result<Vec<Route>> {
        self.list(&filter.params()).await
    }

    /// The route with exactly this host and path on the domain, in the space (`paths=` sent even when empty).
    pub async fn find_exact(
        &self,
        space_guid: &str,
        domain_guid: &str,
        host: &str,
        path: &str,
    ) -> Result<Option<Route>> {
        let filter = RouteFilter {
            hosts: vec![host.to_owned()],
            paths: vec![path.to_owned()],
            domain_guids: vec![domain_guid.to_owned()],
            space_guids: vec![space_guid.to_owned()],
            ..RouteFilter::default()
        };
        let routes = self.list_filtered(&filter).await?;
        Ok(routes.into_iter().find(|r| r.host == host && r.path == path))
    }

    /// `POST /v3/routes`; if the response is lost, the route is looked up (host, path, domain, space) before
    /// it is created again. A route that already exists in the space is returned as it is; one taken elsewhere
    /// (CC answers 422 "Route already exists with host …", `app/actions/route_create.rb`) is an error for which
    /// [`CfError::is_name_taken`](crate::cf::CfError::is_name_taken) holds.
    pub async fn create(&self, route: &NewRoute) -> Result<Route> {
        #[derive(Serialize)]
        struct Relationships {
            domain: ToOne,
            space: ToOne,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            host: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            path: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            port: Option<u32>,
            relationships: Relationships,
            #[serde(skip_serializing_if = "MetadataPatch::is_empty")]
            metadata: &'a MetadataPatch,
        }
        let body = Body {
            host: route.host.as_deref(),
            path: route.path.as_deref(),
            port: route.port,
            relationships: Relationships { domain: ToOne::to(&route.domain_guid), space: ToOne::to(&route.space_guid) },
            metadata: &route.metadata,
        };
        let host = route.host.clone().unwrap_or_default();
        let path = route.path.clone().unwrap_or_default();
        let what = format!("route {host}{path}");
        let find = || self.find_exact(&route.space_guid, &route.domain_guid, &host, &path);
        match self.cf.create_or_find(&what, || self.cf.post(Route::PATH, &body), find).await {
            Err(Error::Cf(e)) if e.is_name_taken() => find().await?.ok_or(Error::Cf(e)),
            outcome => outcome,
        }
    }

    /// `GET /v3/apps/:guid/routes`: the routes with a destination pointing at the app.
    pub async fn for_app(&self, app_guid: &str) -> Result<Vec<Route>> {
        Ok(self.cf.list_all(&format!("/v3/apps/{app_guid}/routes"), &ListParams::new()).await?.resources)
    }

    /// `GET /v3/routes/:guid/destinations`.
    pub async fn destinations(&self, route_guid: &str) -> Result<Vec<Destination>> {
        let d: Destinations = self.cf.get(&format!("{}/destinations", self.path_of(route_guid))).await?;
        Ok(d.destinations)
    }

    /// `POST /v3/routes/:guid/destinations`: adds destinations, keeping the existing ones (an identical one is
    /// skipped by CF, so this is safe to repeat). Returns all destinations.
    pub async fn insert_destinations(
        &self,
        route_guid: &str,
        destinations: &[NewDestination],
    ) -> Result<Vec<Destination>> {
        #[derive(Serialize)]
        struct Body<'a> {
            destinations: &'a [NewDestination],
        }
        let path = format!("{}/destinations", self.path_of(route_guid));
        let d: Destinations = self.cf.post_action(&path, Some(&Body { destinations })).await?;
        Ok(d.destinations)
    }

    /// Maps the route to the app's web process on CC's default port and protocol.
    pub async fn map_app(&self, route_guid: &str, app_guid: &str) -> Result<Vec<Destination>> {
        self.insert_destinations(route_guid, &[NewDestination::app(app_guid)]).await
    }

    /// Maps the route to the app the way `like` (e.g. production's destination on that route) is mapped: same
    /// process type, port and protocol (see [`NewDestination::like`]).
    pub async fn map_app_like(&self, route_guid: &str, app_guid: &str, like: &Destination) -> Result<Vec<Destination>> {
        self.insert_destinations(route_guid, &[NewDestination::like(app_guid, like)]).await
    }

    /// `DELETE /v3/routes/:guid/destinations/:destination_guid` (takes effect at once). Already gone is fine: CC
    /// answers that with 422 "Ensure the route has a destination with this guid", e.g. when a retry follows a
    /// removal whose answer was lost.
    pub async fn remove_destination(&self, route_guid: &str, destination_guid: &str) -> Result<()> {
        match self.cf.delete(&format!("{}/destinations/{destination_guid}", self.path_of(route_guid))).await {
            Err(Error::Cf(e))
                if e.status == Some(422) && e.detail.contains("Ensure the route has a destination with this guid") =>
            {
                Ok(())
            }
            outcome => outcome.map(drop),
        }
    }

    /// Removes every destination of the route that points at `app_guid`; returns how many there were.
    pub async fn unmap_app(&self, route_guid: &str, app_guid: &str) -> Result<usize> {
        let destinations = self.destinations(route_guid).await?;
        let mine: Vec<_> = destinations.iter().filter(|d| d.app.guid == app_guid).collect();
        for d in &mine {
            self.remove_destination(route_guid, &d.guid).await?;
        }
        Ok(mine.len())
    }
}
