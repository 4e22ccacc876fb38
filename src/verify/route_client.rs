//! HTTP to app routes. With `source.router_address` every route hostname resolves to that address, while the
//! Host header and TLS SNI stay the route's (split-horizon DNS, the local Cloud Foundry); otherwise hostnames
//! resolve normally and the environment's proxies apply.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::RouteScheme;

/// A client for requests to app routes (`host.domain[/path]`).
#[derive(Clone)]
pub struct RouteClient {
    http: reqwest::Client,
    scheme: RouteScheme,
}

/// Resolves every name to the router.
struct RouterResolver(SocketAddr);

impl Resolve for RouterResolver {
    fn resolve(&self, _name: Name) -> Resolving {
        let addr = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

impl RouteClient {
    /// `request_timeout` bounds each request; `tls` is the same trust configuration as for the API.
    pub async fn new(
        scheme: RouteScheme,
        router_address: Option<&str>,
        tls: rustls::ClientConfig,
        request_timeout: Duration,
    ) -> Result<RouteClient> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(request_timeout)
            .connect_timeout(request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cf-blue-green-resource/", env!("CARGO_PKG_VERSION")));
        if let Some(address) = router_address {
            let addr = tokio::net::lookup_host(address)
                .await
                .with_context(|| format!("source.router_address {address} does not resolve"))?
                .next()
                .ok_or_else(|| anyhow!("source.router_address {address} resolves to no address"))?;
            builder = builder.dns_resolver(Arc::new(RouterResolver(addr))).no_proxy();
        }
        let http = builder.build().context("cannot build the HTTP client for app routes")?;
        Ok(RouteClient { http, scheme })
    }

    /// The URL of `path` on `route` (`host.domain` or `host.domain/prefix`).
    pub fn url(&self, route: &str, path: &str) -> String {
        let route = route.trim_end_matches('/');
        let path = path.trim_start_matches('/');
        format!("{}://{route}/{path}", self.scheme.as_str())
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

/// Whether a response came from the router rather than the app (unknown route, no healthy backend).
pub fn is_router_error(response: &reqwest::Response) -> bool {
    response.headers().contains_key("x-cf-routererror")
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    /// A TLS config for tests that only talk plain HTTP.
    pub fn plain_tls() -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_server::TestServer;

    #[tokio::test]
    async fn router_address_keeps_the_route_host_header() {
        let server = TestServer::start(|request| (200, request.host.clone())).await;
        let client = RouteClient::new(
            RouteScheme::Http,
            Some(&server.address()),
            test_support::plain_tls(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let url = client.url("myapp-green.apps.example.com", "/version");
        assert_eq!(url, "http://myapp-green.apps.example.com/version");
        let body = client.http().get(&url).send().await.unwrap().text().await.unwrap();
        assert_eq!(body, "myapp-green.apps.example.com");
    }

    #[tokio::test]
    async fn unresolvable_router_address_is_a_clear_error() {
        let err = RouteClient::new(
            RouteScheme::Http,
            Some("no-such-host.invalid:80"),
            test_support::plain_tls(),
            Duration::from_secs(1),
        )
        .await
        .err()
        .unwrap();
        assert!(err.to_string().contains("source.router_address no-such-host.invalid:80 does not resolve"), "{err}");
    }
}
