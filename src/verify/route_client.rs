//! HTTP to app routes. With `source.router_address` every route hostname resolves to that address, while the
//! Host header and TLS SNI stay the route's (split-horizon DNS, the local Cloud Foundry); otherwise hostnames
//! resolve normally and the environment's proxies apply.
//!
//! Redirects on the route's own host (http → https from a load balancer, a trailing slash) are followed, at
//! most [`MAX_REDIRECTS`] hops, so a check reaches the app rather than passing on the redirect; a redirect to
//! another host is a failure naming where it points. Transport failures are described from the typed errors in
//! the cause chain (DNS, TLS, socket), each naming the URL and the setting that fixes it.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode, Url};

use crate::config::RouteScheme;

/// How many redirects on the route's host one request follows before it counts as failed.
const MAX_REDIRECTS: usize = 5;

/// A client for requests to app routes (`host.domain[/path]`).
#[derive(Clone)]
pub(crate) struct RouteClient {
    /// For URLs of the configured scheme (through `router_address` when set).
    http: reqwest::Client,
    /// With `router_address`, for a redirect to the other scheme: the router's host at that scheme's port.
    other_scheme: Option<reqwest::Client>,
    scheme: RouteScheme,
    router_address: Option<String>,
    request_timeout: Duration,
}

/// One request to a route.
pub(crate) struct RouteRequest<'a> {
    pub(crate) method: Method,
    pub(crate) url: &'a str,
    pub(crate) headers: &'a BTreeMap<String, String>,
    pub(crate) body: Option<&'a str>,
    /// Follow redirects on the route's host; when false a 3xx is the answer.
    pub(crate) follow_redirects: bool,
}

#[cfg(test)]
static NO_HEADERS: BTreeMap<String, String> = BTreeMap::new();

#[cfg(test)]
impl<'a> RouteRequest<'a> {
    /// A plain `GET`, following redirects.
    pub(crate) fn get(url: &'a str) -> RouteRequest<'a> {
        RouteRequest { method: Method::GET, url, headers: &NO_HEADERS, body: None, follow_redirects: true }
    }
}

/// Resolves every name to one address (the router); port 0 means "the port of the URL".
struct RouterResolver(SocketAddr);

impl Resolve for RouterResolver {
    fn resolve(&self, _name: Name) -> Resolving {
        let addr = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// The system resolver, failing with [`Unresolvable`] so the failure can be recognised in the cause chain.
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await.map(Iterator::collect::<Vec<_>>);
            match found {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(cause) => Err(Box::new(Unresolvable { host, cause }) as Box<dyn StdError + Send + Sync>),
            }
        })
    }
}

/// A route hostname that DNS does not know.
#[derive(Debug)]
struct Unresolvable {
    host: String,
    cause: std::io::Error,
}

impl std::fmt::Display for Unresolvable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} does not resolve ({})", self.host, self.cause)
    }
}

impl StdError for Unresolvable {}

impl RouteClient {
    /// `request_timeout` bounds each request; `tls` is the same trust configuration as for the API.
    pub(crate) async fn new(
        scheme: RouteScheme,
        router_address: Option<&str>,
        tls: rustls::ClientConfig,
        request_timeout: Duration,
    ) -> Result<RouteClient> {
        let builder = || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .timeout(request_timeout)
                .connect_timeout(connect_timeout(request_timeout))
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(crate::cf::client::USER_AGENT)
        };
        let build =
            |builder: reqwest::ClientBuilder| builder.build().context("cannot build the HTTP client for app routes");
        let (http, other_scheme) = match router_address {
            Some(address) => {
                let addr = tokio::net::lookup_host(address)
                    .await
                    .with_context(|| format!("source.router_address {address} does not resolve"))?
                    .next()
                    .ok_or_else(|| anyhow!("source.router_address {address} resolves to no address"))?;
                let mut router_host = addr;
                router_host.set_port(0);
                (
                    build(builder().dns_resolver(Arc::new(RouterResolver(addr))).no_proxy())?,
                    Some(build(builder().dns_resolver(Arc::new(RouterResolver(router_host))).no_proxy())?),
                )
            }
            None => (build(builder().dns_resolver(Arc::new(SystemResolver)))?, None),
        };
        Ok(RouteClient {
            http,
            other_scheme,
            scheme,
            router_address: router_address.map(str::to_owned),
            request_timeout,
        })
    }

    /// The URL of `path` on `route` (`host.domain` or `host.domain/prefix`).
    pub(crate) fn url(&self, route: &str, path: &str) -> String {
        let route = route.trim_end_matches('/');
        let path = path.trim_start_matches('/');
        format!("{}://{route}/{path}", self.scheme.as_str())
    }

    /// Sends `request`, following redirects on its host when asked. The error is one line naming the URL and,
    /// where one is known, the fix.
    pub(crate) async fn send(&self, request: RouteRequest<'_>) -> Result<reqwest::Response, String> {
        let start = Url::parse(request.url).map_err(|e| format!("{} is not a valid URL: {e}", request.url))?;
        let (mut url, mut method, mut body) = (start.clone(), request.method, request.body);
        for hop in 0..=MAX_REDIRECTS {
            let mut builder = self.client_for(&url).request(method.clone(), url.clone());
            for (name, value) in request.headers {
                builder = builder.header(name, value);
            }
            if let Some(body) = body {
                builder = builder.body(body.to_owned());
            }
            let response = builder.send().await.map_err(|err| self.describe_error(&url, &err))?;
            let status = response.status();
            if !request.follow_redirects || !status.is_redirection() {
                return Ok(response);
            }
            let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
                return Ok(response);
            };
            let next = location.to_str().ok().and_then(|l| url.join(l).ok()).ok_or_else(|| {
                format!("{} answered {} with a Location that is not a URL", shown_url(&url), status.as_u16())
            })?;
            if next.host_str() != start.host_str() || !matches!(next.scheme(), "http" | "https") {
                return Err(format!(
                    "{} redirects ({}) to another host: Location {}; checks follow redirects only on {} \
                     (to accept the redirect itself, expect its status, e.g. status: {})",
                    shown_url(&url),
                    status.as_u16(),
                    shown_url(&next),
                    start.host_str().unwrap_or_default(),
                    status.as_u16()
                ));
            }
            if hop == MAX_REDIRECTS {
                return Err(format!(
                    "{} redirected more than {MAX_REDIRECTS} times on its host (last Location {})",
                    shown_url(&start),
                    shown_url(&next)
                ));
            }
            // What browsers and `curl -L` do: 303, and 301/302 after a POST, continue as a GET without a body.
            let becomes_get = (status == StatusCode::SEE_OTHER && method != Method::HEAD)
                || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST);
            if becomes_get {
                method = Method::GET;
                body = None;
            }
            url = next;
        }
        unreachable!("the last hop returns")
    }

    fn client_for(&self, url: &Url) -> &reqwest::Client {
        match &self.other_scheme {
            Some(other) if url.scheme() != self.scheme.as_str() => other,
            _ => &self.http,
        }
    }

    /// One line for a request to `url` that got no answer: the URL, what happened and the setting that fixes it.
    pub(crate) fn describe_error(&self, url: &Url, err: &reqwest::Error) -> String {
        let shown = shown_url(url);
        let target = self.connect_target(url);
        for cause in chain(err) {
            if let Some(dns) = cause.downcast_ref::<Unresolvable>() {
                return format!(
                    "{shown}: {dns}; if route hostnames resolve only inside the foundation's network, set \
                     source.router_address to its router or load balancer (host:port)"
                );
            }
            if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
                return match tls {
                    rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => format!(
                        "{shown}: {target} answered plain HTTP to an HTTPS request: set source.route_scheme: http"
                    ),
                    rustls::Error::InvalidCertificate(_) => format!(
                        "{shown}: the route's TLS certificate is not trusted ({tls}): set source.ca_cert to the CA \
                         that signed it (or skip_cert_check: true)"
                    ),
                    other => format!("{shown}: TLS handshake with {target} failed: {other}"),
                };
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        return format!(
                            "{shown}: connection refused by {target}: nothing listens there (check \
                             source.route_scheme{})",
                            if self.router_address.is_some() { " and source.router_address" } else { "" }
                        );
                    }
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                        return format!("{shown}: {target} closed the connection without an answer ({io})");
                    }
                    _ => {}
                }
            }
        }
        if err.is_timeout() && err.is_connect() {
            format!(
                "{shown}: cannot connect to {target} within {} (a firewall, or a network the worker cannot reach?)",
                crate::log::human_duration(connect_timeout(self.request_timeout))
            )
        } else if err.is_timeout() {
            format!("{shown}: no answer within {}", crate::log::human_duration(self.request_timeout))
        } else if url.scheme() == "http" && chain(err).iter().any(|c| c.to_string() == TLS_RECORD_AS_HTTP) {
            format!("{shown}: {target} answered with TLS, not plain HTTP: set source.route_scheme: https")
        } else {
            let innermost = chain(err).last().map(ToString::to_string).unwrap_or_default();
            format!("{shown}: {innermost}")
        }
    }

    /// Where a request for `url` connects: `router_address` (or its host at the URL's port), else `host:port`.
    fn connect_target(&self, url: &Url) -> String {
        let port = url.port_or_known_default().unwrap_or_default();
        let host = url.host_str().unwrap_or_default();
        match &self.router_address {
            Some(address) if url.scheme() == self.scheme.as_str() && url.port().is_none() => {
                format!("source.router_address {address}")
            }
            Some(address) => {
                let router_host = address.rsplit_once(':').map_or(address.as_str(), |(host, _)| host);
                format!("{router_host}:{port} (source.router_address's host)")
            }
            None => format!("{host}:{port}"),
        }
    }
}

/// What hyper says when an answer does not start with `HTTP/`, as a TLS alert record (0x15 0x03 …) from a TLS-only
/// port does not. hyper's error kinds are not reachable without depending on hyper, so its message is the sign.
const TLS_RECORD_AS_HTTP: &str = "invalid HTTP version parsed";

fn connect_timeout(request_timeout: Duration) -> Duration {
    request_timeout.min(Duration::from_secs(10))
}

/// Every error in `err`'s cause chain, including the causes an `io::Error` wraps without exposing them as its
/// `source()`.
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut causes = Vec::new();
    let mut current = Some(err);
    while let Some(cause) = current {
        causes.push(cause);
        current = match cause.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => cause.source(),
        };
    }
    causes
}

/// A URL for the log: its query is left out (it may carry a token or a signature).
pub(crate) fn shown_url(url: &Url) -> String {
    let mut shown = url.clone();
    let had_query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_password(None);
    if had_query { format!("{shown}?…") } else { shown.to_string() }
}

/// Whether a response came from the router rather than the app (unknown route, no healthy backend).
pub(crate) fn is_router_error(response: &reqwest::Response) -> bool {
    response.headers().contains_key("x-cf-routererror")
}

/// For an answer with `body`: when it is a 400 to a plain-HTTP request saying the port expects TLS (not an
/// answer from the app), the line naming `route_scheme`. Servers give no other sign of it: Go's `net/http` answers
/// "Client sent an HTTP request to an HTTPS server.", nginx and load balancers built on it "The plain HTTP request
/// was sent to HTTPS port".
pub(crate) fn https_expected(url: &Url, status: StatusCode, body: &str) -> Option<String> {
    let says_so =
        body.contains("HTTP request to an HTTPS server") || body.contains("plain HTTP request was sent to HTTPS");
    (url.scheme() == "http" && status == StatusCode::BAD_REQUEST && says_so).then(|| {
        format!("{}: the route expects HTTPS but was sent plain HTTP: set source.route_scheme: https", shown_url(url))
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn tls(roots: rustls::RootCertStore) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// A TLS config for tests that only talk plain HTTP (it trusts no certificate).
    pub(crate) fn plain_tls() -> rustls::ClientConfig {
        tls(rustls::RootCertStore::empty())
    }

    /// A TLS config trusting only the test CA that signed the loopback TLS server's certificate.
    pub(super) fn test_ca_tls() -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(include_bytes!("testdata/route-ca.pem")).expect("test CA is PEM");
        roots.add(ca).expect("test CA is a usable trust anchor");
        tls(roots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_server::{RawServer, Reply, TestServer, TlsFront};

    async fn client_via(scheme: RouteScheme, address: &str, tls: rustls::ClientConfig) -> RouteClient {
        RouteClient::new(scheme, Some(address), tls, Duration::from_secs(5)).await.unwrap()
    }

    async fn body(client: &RouteClient, url: &str) -> Result<String, String> {
        let response = client.send(RouteRequest::get(url)).await?;
        Ok(response.text().await.unwrap())
    }

    #[tokio::test]
    async fn router_address_keeps_the_route_host_header() {
        let server = TestServer::start(|request| (200, request.host.clone())).await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        let url = client.url("myapp-green.apps.example.com", "/version");
        assert_eq!(url, "http://myapp-green.apps.example.com/version");
        assert_eq!(body(&client, &url).await.unwrap(), "myapp-green.apps.example.com");
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

    fn redirect(status: u16, location: &str) -> Reply {
        Reply { status, headers: vec![("Location".into(), location.into())], body: String::new() }
    }

    #[tokio::test]
    async fn a_redirect_on_the_same_host_is_followed_through_the_router() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/" => redirect(302, "/home"),
            "/home" => redirect(301, "http://a.example.com/app/"),
            _ => Reply::from((200, format!("{} {}", r.host, r.path))),
        })
        .await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        assert_eq!(body(&client, "http://a.example.com/").await.unwrap(), "a.example.com /app/");
        assert_eq!(server.served(), 3);
    }

    #[tokio::test]
    async fn a_redirect_to_https_on_the_same_host_keeps_the_host_for_sni_and_the_router() {
        let app = TestServer::start(|r| (200, format!("tls {} {}", r.host, r.path))).await;
        let tls = TlsFront::start(&app.address()).await;
        let port = tls.port();
        let balancer =
            TestServer::start(move |r| redirect(308, &format!("https://a.example.com:{port}{}", r.path))).await;
        let client = client_via(RouteScheme::Http, &balancer.address(), test_support::test_ca_tls()).await;
        let answer = body(&client, "http://a.example.com/version").await.unwrap();
        assert_eq!(answer, format!("tls a.example.com:{port} /version"));
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_fails_naming_its_location() {
        let server = TestServer::start(|_| redirect(302, "https://login.example.com/sso?state=secret-ish")).await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        let err = body(&client, "http://a.example.com/").await.unwrap_err();
        assert_eq!(
            err,
            "http://a.example.com/ redirects (302) to another host: Location https://login.example.com/sso?…; \
             checks follow redirects only on a.example.com (to accept the redirect itself, expect its status, \
             e.g. status: 302)"
        );
        assert_eq!(server.served(), 1);
    }

    #[tokio::test]
    async fn a_redirect_loop_stops() {
        let server = TestServer::start(|_| redirect(302, "/again")).await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        let err = body(&client, "http://a.example.com/").await.unwrap_err();
        assert!(err.contains("redirected more than 5 times on its host"), "{err}");
        assert_eq!(server.served(), MAX_REDIRECTS + 1);
    }

    #[tokio::test]
    async fn a_redirect_is_the_answer_when_not_followed() {
        let server = TestServer::start(|_| redirect(302, "https://login.example.com/")).await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        let request = RouteRequest { follow_redirects: false, ..RouteRequest::get("http://a.example.com/") };
        assert_eq!(client.send(request).await.unwrap().status(), 302);
    }

    #[tokio::test]
    async fn https_to_a_plain_http_route_names_route_scheme() {
        let server = RawServer::start(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let client = client_via(RouteScheme::Https, &server.address(), test_support::plain_tls()).await;
        let err = body(&client, "https://a.example.com/").await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "https://a.example.com/: source.router_address {} answered plain HTTP to an HTTPS request: set \
                 source.route_scheme: http",
                server.address()
            )
        );
    }

    #[tokio::test]
    async fn an_untrusted_route_certificate_names_ca_cert() {
        let app = TestServer::start(|_| (200, String::new())).await;
        let tls = TlsFront::start(&app.address()).await;
        let client = client_via(RouteScheme::Https, &tls.address(), test_support::plain_tls()).await;
        let err = body(&client, "https://a.example.com/").await.unwrap_err();
        assert!(err.starts_with("https://a.example.com/: the route's TLS certificate is not trusted ("), "{err}");
        assert!(err.ends_with("set source.ca_cert to the CA that signed it (or skip_cert_check: true)"), "{err}");
    }

    #[tokio::test]
    async fn an_unresolvable_route_names_router_address() {
        let client =
            RouteClient::new(RouteScheme::Http, None, test_support::plain_tls(), Duration::from_secs(5)).await.unwrap();
        let err = body(&client, "http://myapp.no-such-domain.invalid/").await.unwrap_err();
        assert!(
            err.starts_with("http://myapp.no-such-domain.invalid/: myapp.no-such-domain.invalid does not resolve ("),
            "{err}"
        );
        assert!(err.ends_with("set source.router_address to its router or load balancer (host:port)"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_router_address() {
        let server = TestServer::start(|_| (200, String::new())).await;
        let address = server.address();
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let client = client_via(RouteScheme::Http, &address, test_support::plain_tls()).await;
        let err = body(&client, "http://a.example.com/").await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "http://a.example.com/: connection refused by source.router_address {address}: nothing listens \
                 there (check source.route_scheme and source.router_address)"
            )
        );
    }

    #[tokio::test]
    async fn plain_http_to_a_tls_only_port_names_route_scheme() {
        let app = TestServer::start(|_| (200, String::new())).await;
        let tls = TlsFront::start(&app.address()).await;
        let client = client_via(RouteScheme::Http, &tls.address(), test_support::test_ca_tls()).await;
        let err = body(&client, "http://a.example.com/").await.unwrap_err();
        assert_eq!(
            err,
            format!(
                "http://a.example.com/: source.router_address {} answered with TLS, not plain HTTP: set \
                 source.route_scheme: https",
                tls.address()
            )
        );
    }

    #[tokio::test]
    async fn a_redirect_to_the_other_scheme_goes_to_the_router_host_at_that_scheme_port() {
        if std::net::TcpStream::connect("127.0.0.1:443").is_ok() {
            return; // something serves 443 here: the refusal this test relies on cannot happen
        }
        let balancer = TestServer::start(|r| redirect(301, &format!("https://a.example.com{}", r.path))).await;
        let client = client_via(RouteScheme::Http, &balancer.address(), test_support::test_ca_tls()).await;
        let err = body(&client, "http://a.example.com/").await.unwrap_err();
        assert_eq!(
            err,
            "https://a.example.com/: connection refused by 127.0.0.1:443 (source.router_address's host): nothing \
             listens there (check source.route_scheme and source.router_address)"
        );
    }

    #[tokio::test]
    async fn a_see_other_continues_as_a_get_and_a_307_repeats_the_request() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/form" => redirect(303, "/done"),
            "/moved" => redirect(307, "/form-v2"),
            _ => Reply::from((200, format!("{} {} {:?}", r.method, r.path, r.body))),
        })
        .await;
        let client = client_via(RouteScheme::Http, &server.address(), test_support::plain_tls()).await;
        let post = |url| RouteRequest { method: Method::POST, body: Some("q=1"), ..RouteRequest::get(url) };
        let answer = client.send(post("http://a.example.com/form")).await.unwrap().text().await.unwrap();
        assert_eq!(answer, "GET /done \"\"");
        let answer = client.send(post("http://a.example.com/moved")).await.unwrap().text().await.unwrap();
        assert_eq!(answer, "POST /form-v2 \"q=1\"");
    }
}
