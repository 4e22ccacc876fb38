//! The HTTP router, like gorouter: routes by Host header (port stripped) and longest path prefix to the routable
//! instances of the apps mapped to the route, round-robin; a failed connect is retried on another endpoint (up to 3
//! attempts) before 502; unknown routes get 404 and routes without routable instances 503, with gorouter's bodies
//! and `X-Cf-Routererror` headers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::routing::Backend;
use crate::server::{Handler, PeerAddr};
use crate::shared::Shared;

const CONNECT_ATTEMPTS: usize = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

pub fn handler(shared: std::sync::Weak<Shared>) -> Handler {
    Arc::new(move |request| {
        let shared = shared.clone();
        Box::pin(async move {
            match shared.upgrade() {
                Some(shared) if crate::c2c::is_overlay_request(&shared, &request) => {
                    crate::c2c::forward(&shared, request).await
                }
                Some(shared) => proxy(&shared, request).await,
                None => router_error(StatusCode::SERVICE_UNAVAILABLE, "", "Router is shutting down.\n".into()),
            }
        })
    })
}

fn router_error(status: StatusCode, kind: &str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    if !kind.is_empty() {
        headers.insert("x-cf-routererror", HeaderValue::from_str(kind).expect("ascii"));
    }
    response
}

fn request_host(request: &Request<Incoming>) -> String {
    let raw = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    match raw.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_string(),
        _ => raw,
    }
}

async fn connect(backends: &[Backend]) -> Option<(TcpStream, Backend)> {
    for backend in backends.iter().take(CONNECT_ATTEMPTS) {
        if let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await {
            return Some((stream, backend.clone()));
        }
    }
    None
}

async fn proxy(shared: &Shared, mut request: Request<Incoming>) -> Response<Body> {
    let host = request_host(&request);
    let backends = {
        let snapshot = shared.routing.current();
        match snapshot.lookup(&host, request.uri().path()) {
            None => {
                return router_error(
                    StatusCode::NOT_FOUND,
                    "unknown_route",
                    format!("404 Not Found: Requested route ('{host}') does not exist.\n"),
                );
            }
            Some(entry) => entry.rotation(),
        }
    };
    if backends.is_empty() {
        return router_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_endpoints",
            format!("503 Service Unavailable: Requested route ('{host}') has no available endpoints.\n"),
        );
    }
    let Some((stream, backend)) = connect(&backends).await else {
        return endpoint_failure();
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let peer_ip = request.extensions().get::<PeerAddr>().map(|p| p.0.ip().to_string()).unwrap_or_default();
    let headers = request.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {peer_ip}"),
        None => peer_ip,
    };
    let set = |headers: &mut hyper::HeaderMap, name: &'static str, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(headers, "x-forwarded-for", &forwarded_for);
    if !headers.contains_key("x-forwarded-proto") {
        set(headers, "x-forwarded-proto", "http");
    }
    set(headers, "x-vcap-request-id", &request_id);
    set(headers, "x-cf-applicationid", &backend.app_guid);
    set(headers, "x-cf-instanceid", &backend.instance_guid);
    set(headers, "x-cf-instanceindex", &backend.index.to_string());
    if let Some(path_and_query) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = path_and_query.as_str().parse().expect("a path and query is a valid URI");
    }
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return endpoint_failure();
    };
    tokio::spawn(connection);
    match sender.send_request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(*name);
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                parts.headers.insert("x-vcap-request-id", value);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(_) => endpoint_failure(),
    }
}

fn endpoint_failure() -> Response<Body> {
    router_error(
        StatusCode::BAD_GATEWAY,
        "endpoint_failure",
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n".into(),
    )
}
