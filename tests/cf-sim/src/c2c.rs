//! Container-to-container networking: an app instance reaches another app's internal route
//! (`<host>.<internal domain>`, e.g. `backend.apps.internal`) directly, without the router, only where a network
//! policy lets its app reach the destination app on that port (TCP).
//!
//! In CF, BOSH DNS resolves an internal route to the overlay IPs of the destination's instances and the
//! policy agent drops packets no policy allows. cf-sim's instances all share 127.0.0.1, so the overlay is an HTTP
//! forward proxy on the router's listener: every instance gets `CF_SIM_C2C_PROXY=http://<instance guid>@<router
//! address>`, and a request in absolute form (`GET http://backend.apps.internal:8080/path`) whose host is under an
//! internal domain, with that proxy's credentials, goes to one of the destination's routable instances. The
//! instance guid is the source's identity, as the overlay IP is in CF: the platform assigns it and no other
//! instance knows it. The requested port is the route destination's port (8080 unless set), which the sim maps to
//! the instance's `$PORT`. A connection no policy allows is closed without an answer (CF drops the packets and the
//! client times out); a host with no internal route or no running instance answers 502 (CF: the name does not
//! resolve).

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use base64::Engine;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, PROXY_AUTHORIZATION};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::server::DropConnection;
use crate::shared::Shared;

/// The variable every instance finds the overlay proxy in.
pub const PROXY_ENV: &str = "CF_SIM_C2C_PROXY";

/// `CF_SIM_C2C_PROXY` of the instance `instance_guid`.
pub fn proxy_url(router: &str, instance_guid: &str) -> String {
    let address = router.trim_start_matches("http://");
    format!("http://{instance_guid}@{address}")
}

/// Whether the router must hand the request to the overlay: an absolute-form request for an internal host.
pub fn is_overlay_request(shared: &Shared, request: &Request<Incoming>) -> bool {
    let Some(host) = request.uri().host() else { return false };
    let host = host.to_ascii_lowercase();
    shared.state().domains.values().any(|d| d.internal && host.ends_with(&format!(".{}", d.name)))
}

/// Forwards an overlay request to an instance of the destination the source's policies allow.
pub async fn forward(shared: &Shared, mut request: Request<Incoming>) -> Response<Body> {
    let host = request.uri().host().unwrap_or_default().to_ascii_lowercase();
    let port = request.uri().port_u16().unwrap_or(80);
    let source = source_instance(&request).and_then(|guid| shared.diego.app_of_instance(&guid));
    let Some(source) = source else { return dropped() };
    let (resolved, allowed) = {
        let state = shared.state();
        // (app, process, port) of every destination of the internal route: the name resolves to them all.
        let destinations: Vec<(String, String, u16)> = state
            .routes
            .values()
            .filter(|r| r.path.is_empty() && state.domains.get(&r.domain_guid).is_some_and(|d| d.internal))
            .filter(|r| state.route_url(r) == host)
            .flat_map(|r| r.destinations.iter())
            .filter_map(|d| {
                let process = state.app_process(&d.app_guid, &d.process_type)?;
                Some((d.app_guid.clone(), process.common.guid.clone(), d.port))
            })
            .collect();
        // Those listening on the port asked for, where a policy lets the source through.
        let allowed: Vec<String> = destinations
            .iter()
            .filter(|(app, _, at)| *at == port && state.policies.iter().any(|p| p.allows(&source, app, "tcp", port)))
            .map(|(_, process, _)| process.clone())
            .collect();
        (destinations.into_iter().map(|(_, process, _)| process).collect::<Vec<_>>(), allowed)
    };
    let running =
        |processes: &[String]| processes.iter().flat_map(|p| shared.diego.routable_instances(p)).collect::<Vec<_>>();
    let instances = running(&allowed);
    if instances.is_empty() {
        if running(&resolved).is_empty() {
            return unresolved(&host);
        }
        return dropped();
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let instance = &instances[NEXT.fetch_add(1, Ordering::Relaxed) % instances.len()];
    request.headers_mut().remove(PROXY_AUTHORIZATION);
    if let Some(path_and_query) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = path_and_query.as_str().parse().expect("a path and query is a valid URI");
    }
    let Ok(stream) = TcpStream::connect(("127.0.0.1", instance.port)).await else { return dropped() };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return dropped();
    };
    tokio::spawn(connection);
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(_) => dropped(),
    }
}

/// The instance guid of the proxy credentials (`Proxy-Authorization: Basic base64(<guid>:)`).
fn source_instance(request: &Request<Incoming>) -> Option<String> {
    let value = request.headers().get(PROXY_AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let guid = text.split(':').next().unwrap_or_default();
    (!guid.is_empty()).then(|| guid.to_string())
}

/// No answer at all: what a connection the policies do not allow gets.
fn dropped() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    response.extensions_mut().insert(DropConnection);
    response
}

fn unresolved(host: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(format!("c2c: {host} does not resolve to any instance\n")));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
