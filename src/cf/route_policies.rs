//! Route policies (identity-aware routing, CC 3.225.0 on, experimental): which apps, spaces or orgs may call a
//! route through the router's mTLS, on domains that enforce them. A policy names its source app by guid
//! (`cf:app:<guid>`), so a new app of a blue-green deploy has none of its predecessor's. A foundation whose CC
//! predates them answers the path with 404 (CC's unknown request).

use serde::Serialize;

use crate::cf::api::{Api, Resource, resource};
use crate::cf::client::Req;
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::root::ApiVersion;
use crate::cf::routes::Route;
use crate::cf::types::{Metadata, ToOne, null_as_default};

resource! {
    /// A route policy: `source` may call the route of `relationships.route`.
    pub(crate) struct RoutePolicy at "/v3/route_policies", route_policies {
        pub(crate) source: String,
        #[serde(default, deserialize_with = "null_as_default")]
        pub(crate) relationships: RoutePolicyRelationships,
        /// The space of the policy's route, where listed with its route (`include=route`).
        #[serde(skip)]
        pub(crate) route_space: Option<String>,
    }
}

#[derive(Clone, Debug, Default, serde::Deserialize, Serialize)]
pub(crate) struct RoutePolicyRelationships {
    #[serde(default)]
    pub(crate) route: ToOne,
}

impl RoutePolicy {
    pub(crate) fn route_guid(&self) -> &str {
        self.relationships.route.guid().unwrap_or_default()
    }
}

/// The oldest CC API version that may serve route policies: cloud_controller_ng merged them (82d917b02c) while its
/// `config/version` said 3.224.0, the last before `bump to 3.225.0`. A foundation that says it is older has none;
/// one that says nothing is asked.
const SINCE: ApiVersion = ApiVersion { major: 3, minor: 224, patch: 0 };

/// The source form of an app (`RoutePolicy#source`).
pub(crate) fn app_source(app_guid: &str) -> String {
    format!("cf:app:{app_guid}")
}

impl Api<RoutePolicy> {
    /// The policies whose source is the app `app_guid`, each with its route's space (listed with their routes,
    /// `IncludeRoutePolicyRouteDecorator`); `None` where the foundation has no route policies: not asked when its
    /// CC API version (from `GET /`) predates them, else told by CC's 404.
    pub(crate) async fn of_app(&self, app_guid: &str) -> Result<Option<Vec<RoutePolicy>>> {
        let version = self.cf.endpoints().v3_version.as_deref().and_then(ApiVersion::parse);
        if version.is_some_and(|v| v < SINCE) {
            return Ok(None);
        }
        let params = ListParams::new().filter("sources", [app_source(app_guid)]).include("route");
        match self.list_with_included(&params).await {
            Ok(listed) => {
                let routes: Vec<Route> = listed.included.get("routes")?;
                let space_of = |route: &str| {
                    let route = routes.iter().find(|r| r.guid == route)?;
                    route.relationships.space.guid().map(str::to_owned)
                };
                let policies =
                    listed.resources.into_iter().map(|p| RoutePolicy { route_space: space_of(p.route_guid()), ..p });
                Ok(Some(policies.collect()))
            }
            Err(e) if e.cf().is_some_and(|c| c.status == Some(404)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v3/route_policies`: lets `source` call `route_guid`, with `metadata`. A policy that exists already
    /// (CC's 422 "already exists for this route", also after a lost answer) is left as it is.
    pub(crate) async fn create(&self, source: &str, route_guid: &str, metadata: &Metadata) -> Result<()> {
        #[derive(Serialize)]
        struct Relationships {
            route: ToOne,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            source: &'a str,
            relationships: Relationships,
            #[serde(skip_serializing_if = "is_empty")]
            metadata: &'a Metadata,
        }
        fn is_empty(metadata: &&Metadata) -> bool {
            metadata.labels.is_empty() && metadata.annotations.is_empty()
        }
        let body = Body { source, relationships: Relationships { route: ToOne::to(route_guid) }, metadata };
        let req = Req::path(reqwest::Method::POST, RoutePolicy::PATH).json(&body)?.idempotent(true);
        match self.cf.answer(&req).await {
            Ok(_) => Ok(()),
            Err(e) if e.cf().is_some_and(|c| c.status == Some(422) && c.detail.contains("already exists")) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_decodes_from_ccs_presenter() {
        let body = r#"{"guid": "p", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "source": "cf:app:a", "metadata": {"labels": {"team": "x"}, "annotations": {}},
            "relationships": {"route": {"data": {"guid": "r"}}, "app": {"data": {"guid": "a"}},
                "space": {"data": null}, "organization": {"data": null}},
            "links": {"self": {"href": "https://api/v3/route_policies/p"}}}"#;
        let policy: RoutePolicy = serde_json::from_str(body).unwrap();
        assert_eq!((policy.source.as_str(), policy.route_guid()), (app_source("a").as_str(), "r"));
        assert_eq!(policy.metadata.labels["team"], "x");
    }
}
