//! Which routes are production's, as CF objects: manifest route strings resolved against the foundation's
//! domains (longest matching domain wins, as CC does), blue's current routes, or CF's default route; plus the
//! candidate's temporary route.

use std::collections::BTreeSet;

use anyhow::{Context as _, Result, anyhow, bail};

use crate::cf::domains::Domain;
use crate::cf::routes::{NewRoute, Route, RouteFilter};
use crate::cf::{CfClient, ListParams};
use crate::config::GreenRoute;
use crate::log;

/// A production route: where it is, and the CF route object when it exists already.
#[derive(Debug, Clone)]
pub(crate) struct RouteTarget {
    /// `host.domain/path`, as manifests and `route.url` write it.
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) domain_guid: String,
    pub(crate) route: Option<Route>,
    /// The protocol the manifest gives the route (`routes[].protocol`: `http1`, `http2`), if any.
    pub(crate) protocol: Option<String>,
}

impl RouteTarget {
    fn from_route(route: Route) -> RouteTarget {
        RouteTarget {
            url: normalize(&route.url),
            host: route.host.clone(),
            path: route.path.clone(),
            domain_guid: route.domain_guid().unwrap_or_default().to_owned(),
            route: Some(route),
            protocol: None,
        }
    }

    /// The route's guid, creating the route in `space_guid` if it does not exist yet.
    pub(crate) async fn ensure(&mut self, cf: &CfClient, space_guid: &str) -> Result<String> {
        if let Some(route) = &self.route {
            return Ok(route.guid.clone());
        }
        let new = NewRoute {
            space_guid: space_guid.to_owned(),
            domain_guid: self.domain_guid.clone(),
            host: (!self.host.is_empty()).then(|| self.host.clone()),
            path: (!self.path.is_empty()).then(|| self.path.clone()),
            ..NewRoute::default()
        };
        let route = cf.routes().create(&new).await.with_context(|| format!("creating route {}", self.url))?;
        log::detail(format_args!("created route {}", self.url));
        let guid = route.guid.clone();
        self.route = Some(route);
        Ok(guid)
    }
}

/// The guids of the routes among `targets` that exist already.
pub(crate) fn existing_guids(targets: &[RouteTarget]) -> Vec<String> {
    targets.iter().filter_map(|t| t.route.as_ref().map(|r| r.guid.clone())).collect()
}

/// `Host.Example.com/api/` → `host.example.com/api`.
pub(crate) fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    match url.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => url.to_ascii_lowercase(),
    }
}

/// Resolves manifest route strings (`host.domain[/path]`) to route targets, finding existing routes in the
/// space: one domain lookup and one route lookup for all of them.
pub(crate) async fn resolve_manifest_routes(
    cf: &CfClient,
    space_guid: &str,
    urls: &[String],
) -> Result<Vec<RouteTarget>> {
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Vec<(String, String)> = urls.iter().map(|u| split_path(&normalize(u))).collect();
    let mut candidates = BTreeSet::new();
    for (host_and_domain, _) in &parsed {
        if host_and_domain.contains(':') {
            bail!("route '{host_and_domain}' has a port: tcp routes are not supported for blue-green deploys");
        }
        candidates.extend(domain_candidates(host_and_domain));
    }
    let domains = cf.domains().list(&ListParams::new().filter("names", &candidates)).await?;
    let mut targets = Vec::new();
    for (host_and_domain, path) in parsed {
        let domain = domains
            .iter()
            .filter(|d| host_and_domain == d.name || host_and_domain.ends_with(&format!(".{}", d.name)))
            .max_by_key(|d| d.name.len())
            .ok_or_else(|| anyhow!("route '{host_and_domain}{path}': no domain of this Cloud Foundry matches it"))?;
        let host = host_and_domain.strip_suffix(&domain.name).unwrap_or_default().trim_end_matches('.').to_owned();
        targets.push(RouteTarget {
            url: format!("{host_and_domain}{path}"),
            host,
            path,
            domain_guid: domain.guid.clone(),
            route: None,
            protocol: None,
        });
    }
    attach_existing(cf, space_guid, &mut targets).await?;
    Ok(targets)
}

/// Fills in `route` for the targets that exist in the space, with one lookup.
async fn attach_existing(cf: &CfClient, space_guid: &str, targets: &mut [RouteTarget]) -> Result<()> {
    let filter = RouteFilter {
        hosts: targets.iter().map(|t| t.host.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
        domain_guids: targets.iter().map(|t| t.domain_guid.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
        space_guids: vec![space_guid.to_owned()],
        ..RouteFilter::default()
    };
    let existing = cf.routes().list_filtered(&filter).await?;
    for target in targets.iter_mut() {
        target.route = existing
            .iter()
            .find(|r| {
                r.host == target.host && r.path == target.path && r.domain_guid() == Some(target.domain_guid.as_str())
            })
            .cloned();
    }
    Ok(())
}

/// Blue's routes as targets (they exist).
pub(crate) fn from_routes(routes: &[Route]) -> Vec<RouteTarget> {
    routes.iter().cloned().map(RouteTarget::from_route).collect()
}

/// CF's default route for a first deploy without routes: `<app>.<org default domain>`.
pub(crate) async fn default_route(cf: &CfClient, org_guid: &str, space_guid: &str, app: &str) -> Result<RouteTarget> {
    let domain = cf.orgs().default_domain(org_guid).await?;
    let host = app.to_ascii_lowercase();
    let mut targets = vec![RouteTarget {
        url: format!("{host}.{}", domain.name),
        host,
        path: String::new(),
        domain_guid: domain.guid.clone(),
        route: None,
        protocol: None,
    }];
    attach_existing(cf, space_guid, &mut targets).await?;
    Ok(targets.remove(0))
}

/// `host.domain` of the candidate's temporary route, `None` without a production route or a `green_route`
/// domain. The host is `green_route.host`, else [`default_temporary_host`]; the domain is `green_route.domain`
/// (checked by [`check_green_route`]), else that of the first production route the worker can reach: an
/// internal domain (`apps.internal`, reached only from app containers) or a TCP domain is passed over, and with
/// nothing else the deploy stops before it pushes. Domains not in `known_domains` are looked up, one request each.
pub(crate) async fn temporary_route(
    cf: &CfClient,
    green_route: &GreenRoute,
    candidate_name: &str,
    space_guid: &str,
    prod_routes: &[RouteTarget],
    known_domains: &[Domain],
) -> Result<Option<String>> {
    let host = green_route.host.clone().unwrap_or_else(|| default_temporary_host(candidate_name, space_guid));
    if let Some(name) = &green_route.domain {
        return Ok(Some(format!("{host}.{}", name.to_ascii_lowercase())));
    }
    let mut passed_over = Vec::new();
    let mut seen = BTreeSet::new();
    for route in prod_routes.iter().filter(|r| seen.insert(r.domain_guid.clone())) {
        let domain = match known_domains.iter().find(|d| d.guid == route.domain_guid) {
            Some(known) => known.clone(),
            None => cf.domains().get(&route.domain_guid).await?,
        };
        match unreachable_reason(&domain) {
            None => return Ok(Some(format!("{host}.{}", domain.name))),
            Some(why) => passed_over.push(format!("{} ({why})", domain.name)),
        }
    }
    if passed_over.is_empty() {
        return Ok(None);
    }
    bail!(
        "production's routes are only on domains a Concourse worker cannot reach for verification: {}; set \
         params.green_route.domain to an HTTP domain the worker reaches",
        passed_over.join(", ")
    )
}

/// `<candidate>-<6 hex digits of the space's guid>`: route hosts are unique per domain across the whole
/// foundation, so `myapp` in two spaces must not both want `myapp-green`; the same app in the same space always
/// gets the same host. Characters CC refuses in a host become `-`, and it is cut to CC's 63.
pub(crate) fn default_temporary_host(candidate_name: &str, space_guid: &str) -> String {
    use sha1::{Digest, Sha1};
    let digest = Sha1::digest(space_guid.as_bytes());
    let tag: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let name: String = candidate_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(MAX_HOST - tag.len() - 1)
        .collect();
    format!("{}-{tag}", name.trim_end_matches('-'))
}

/// The longest route host CC takes (`route_create_message.rb`: `MAXIMUM_DOMAIN_LABEL_LENGTH`).
const MAX_HOST: usize = 63;

/// Why a worker cannot reach routes of `domain` over HTTP, if it cannot.
fn unreachable_reason(domain: &Domain) -> Option<&'static str> {
    if domain.internal {
        Some("internal: reached only from app containers")
    } else if domain.is_tcp() {
        Some("a TCP domain")
    } else {
        None
    }
}

/// Fails unless `params.green_route.domain`, when given, is an HTTP domain of this Cloud Foundry that a worker
/// can reach: checked before the deploy changes anything.
pub(crate) async fn check_green_route(cf: &CfClient, green_route: &GreenRoute) -> Result<()> {
    if let Some(name) = &green_route.domain {
        let domain: Option<Domain> = cf.domains().by_name(name).await?;
        let domain = domain
            .ok_or_else(|| anyhow!("params.green_route.domain '{name}' is not a domain of this Cloud Foundry"))?;
        if let Some(why) = unreachable_reason(&domain) {
            bail!("params.green_route.domain '{name}' cannot carry the temporary route: it is {why}");
        }
    }
    Ok(())
}

/// `a.b.example.com` → `a.b.example.com`, `b.example.com`, `example.com`, `com`.
fn domain_candidates(host_and_domain: &str) -> Vec<String> {
    let labels: Vec<&str> = host_and_domain.split('.').collect();
    (0..labels.len()).map(|i| labels[i..].join(".")).collect()
}

/// `host.domain/some/path` → (`host.domain`, `/some/path`).
fn split_path(url: &str) -> (String, String) {
    match url.split_once('/') {
        Some((host, path)) => (host.to_owned(), format!("/{path}")),
        None => (url.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_trailing_slashes() {
        assert_eq!(normalize("MyApp.Example.com/API/"), "myapp.example.com/API");
        assert_eq!(normalize("myapp.example.com"), "myapp.example.com");
    }

    #[test]
    fn candidate_domains_are_every_suffix() {
        assert_eq!(domain_candidates("a.b.example.com"), ["a.b.example.com", "b.example.com", "example.com", "com"]);
    }

    #[test]
    fn the_default_temporary_host_is_unique_per_space_stable_and_valid() {
        let a = default_temporary_host("MyApp-green", "space-a");
        assert_eq!(a, default_temporary_host("MyApp-green", "space-a"));
        assert_ne!(a, default_temporary_host("MyApp-green", "space-b"));
        assert!(a.starts_with("myapp-green-") && a.len() == "myapp-green-".len() + 6, "{a}");
        let long = default_temporary_host(&format!("{}.x y-green", "a".repeat(80)), "s");
        assert!(long.len() <= 63, "{long}");
        assert!(long.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{long}");
        assert_eq!(default_temporary_host("a.b-green", "s").split('-').next(), Some("a"));
    }

    #[test]
    fn internal_and_tcp_domains_cannot_carry_the_temporary_route() {
        let domain = |extra: serde_json::Value| -> Domain {
            let mut d = serde_json::json!({"guid": "d", "name": "example.com"});
            d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value(d).unwrap()
        };
        assert!(unreachable_reason(&domain(serde_json::json!({}))).is_none());
        assert!(unreachable_reason(&domain(serde_json::json!({"internal": true}))).unwrap().contains("internal"));
        let tcp = domain(serde_json::json!({"router_group": {"guid": "rg"}, "supported_protocols": ["tcp"]}));
        assert_eq!(unreachable_reason(&tcp), Some("a TCP domain"));
    }

    #[test]
    fn splits_the_path() {
        assert_eq!(split_path("a.example.com/x/y"), ("a.example.com".to_owned(), "/x/y".to_owned()));
        assert_eq!(split_path("a.example.com"), ("a.example.com".to_owned(), String::new()));
    }
}
