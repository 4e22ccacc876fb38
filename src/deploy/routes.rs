//! Which routes are production's, as CF objects: manifest route strings resolved against the foundation's
//! domains (longest matching domain wins, as CC does), blue's current routes, or CF's default route; plus the
//! candidate's temporary route.

use std::collections::BTreeSet;

use anyhow::{Result, anyhow, bail};

use crate::cf::domains::Domain;
use crate::cf::routes::{NewRoute, Route, RouteFilter};
use crate::cf::{CfClient, ListParams};
use crate::config::GreenRoute;
use crate::log;

/// A production route: where it is, and the CF route object when it exists already.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// `host.domain/path`, as manifests and `route.url` write it.
    pub url: String,
    pub host: String,
    pub path: String,
    pub domain_guid: String,
    pub domain_name: String,
    pub route: Option<Route>,
}

impl RouteTarget {
    fn from_route(route: Route, domain_name: String) -> RouteTarget {
        RouteTarget {
            url: normalize(&route.url),
            host: route.host.clone(),
            path: route.path.clone(),
            domain_guid: route.domain_guid().unwrap_or_default().to_owned(),
            domain_name,
            route: Some(route),
        }
    }

    /// The route's guid, creating the route in `space_guid` if it does not exist yet.
    pub async fn ensure(&mut self, cf: &CfClient, space_guid: &str) -> Result<String> {
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
        let route = cf.routes().create(&new).await.map_err(|e| anyhow!("creating route {}: {e}", self.url))?;
        log::detail(format_args!("created route {}", self.url));
        let guid = route.guid.clone();
        self.route = Some(route);
        Ok(guid)
    }
}

/// `Host.Example.com/api/` → `host.example.com/api`.
pub fn normalize(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    match url.split_once('/') {
        Some((host, path)) => format!("{}/{path}", host.to_ascii_lowercase()),
        None => url.to_ascii_lowercase(),
    }
}

/// Resolves manifest route strings (`host.domain[/path]`) to route targets, finding existing routes in the
/// space: one domain lookup and one route lookup for all of them.
pub async fn resolve_manifest_routes(cf: &CfClient, space_guid: &str, urls: &[String]) -> Result<Vec<RouteTarget>> {
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
            domain_name: domain.name.clone(),
            route: None,
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

/// Blue's routes as targets (they exist; their domain names come from their URLs).
pub fn from_routes(routes: &[Route]) -> Vec<RouteTarget> {
    routes
        .iter()
        .map(|route| {
            let (host_and_domain, _) = split_path(&normalize(&route.url));
            let domain_name = if route.host.is_empty() {
                host_and_domain
            } else {
                host_and_domain.strip_prefix(&format!("{}.", route.host)).unwrap_or(&host_and_domain).to_owned()
            };
            RouteTarget::from_route(route.clone(), domain_name)
        })
        .collect()
}

/// CF's default route for a first deploy without routes: `<app>.<org default domain>`.
pub async fn default_route(cf: &CfClient, org_guid: &str, space_guid: &str, app: &str) -> Result<RouteTarget> {
    let domain = cf.orgs().default_domain(org_guid).await?;
    let host = app.to_ascii_lowercase();
    let mut targets = vec![RouteTarget {
        url: format!("{host}.{}", domain.name),
        host,
        path: String::new(),
        domain_guid: domain.guid.clone(),
        domain_name: domain.name.clone(),
        route: None,
    }];
    attach_existing(cf, space_guid, &mut targets).await?;
    Ok(targets.remove(0))
}

/// `host.domain` of the candidate's temporary route: `green_route` where given, else the candidate's name on
/// the domain of the first production route; `None` with neither a green_route domain nor a production route.
pub fn temporary_route(green_route: &GreenRoute, candidate_name: &str, prod_routes: &[RouteTarget]) -> Option<String> {
    let host = green_route.host.clone().unwrap_or_else(|| candidate_name.to_ascii_lowercase());
    let domain = match &green_route.domain {
        Some(name) => name.to_ascii_lowercase(),
        None => prod_routes.first()?.domain_name.clone(),
    };
    Some(format!("{host}.{domain}"))
}

/// Fails unless `params.green_route.domain`, when given, is a domain of this Cloud Foundry: checked before the
/// deploy changes anything.
pub async fn check_green_route(cf: &CfClient, green_route: &GreenRoute) -> Result<()> {
    if let Some(name) = &green_route.domain {
        let domain: Option<Domain> = cf.domains().by_name(name).await?;
        domain.ok_or_else(|| anyhow!("params.green_route.domain '{name}' is not a domain of this Cloud Foundry"))?;
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
    fn splits_the_path() {
        assert_eq!(split_path("a.example.com/x/y"), ("a.example.com".to_owned(), "/x/y".to_owned()));
        assert_eq!(split_path("a.example.com"), ("a.example.com".to_owned(), String::new()));
    }
}
