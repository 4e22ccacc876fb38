//! The HTTP router, like gorouter: routes by Host header (port stripped) and longest path prefix to the routable
//! instances of the apps mapped to the route, round-robin; a failed connect is retried on another endpoint (up to 3
//! attempts) before 502; unknown routes get 404 and routes without routable instances 503, with gorouter's bodies
//! and `X-Cf-Routererror` headers.
//!
//! Every request routed to an app leaves gorouter's `http` timers in Log Cache for that app (unless the timers are
//! off): one `peer_type: Server` timer for the whole request (`handlers/httpstartstop.go`, with the endpoint's
//! route-emitter tags, ending when the response body is written) and one `peer_type: Client` timer per backend
//! attempt (`proxy/round_tripper/dropsonde_round_tripper.go`, dropsonde's `instrumented_round_tripper.go`: until the
//! backend's response headers, status 0 when it failed), as loggregator's `conversion/tov2.go`
//! (`convertHTTPStartStop`) turns those `HttpStartStop` events into v2 timers named `http`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::logs::TimerEnvelope;
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

/// The first backend that accepts a connection, with when the attempt began; a failed attempt leaves its `Client`
/// timer.
async fn connect(shared: &Shared, backends: &[Backend], facts: &RequestFacts) -> Option<(TcpStream, Backend, i64)> {
    for backend in backends.iter().take(CONNECT_ATTEMPTS) {
        let started = crate::clock::unix_nanos();
        if let Ok(Ok(stream)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.addr)).await {
            return Some((stream, backend.clone(), started));
        }
        facts.emit(shared, Peer::Client, backend, 0, 0, started);
    }
    None
}

/// What gorouter's `HttpStartStop` events say about a request besides its outcome.
struct RequestFacts {
    request_id: String,
    method: String,
    /// `http://host/path`, without the query (dropsonde's `factories.NewHttpStartStop`).
    uri: String,
    remote_address: String,
    user_agent: String,
    /// The `X-Forwarded-For` values as the request arrived (Server) and as it went to the app (Client).
    forwarded_in: Vec<String>,
    forwarded_out: Vec<String>,
}

#[derive(Clone, Copy)]
enum Peer {
    Server,
    Client,
}

/// The BOSH instance id of the simulated router VM (the v1 envelope's `index`).
const ROUTER_INDEX: &str = "6b3f4c1e-5f0a-4c8e-9d3e-0c5f1d2a7b90";

impl RequestFacts {
    /// Stores the `http` timer of one peer of this request for `backend`'s app, from `start` until now.
    fn emit(&self, shared: &Shared, peer: Peer, backend: &Backend, status: u16, content_length: i64, start: i64) {
        if !shared.knobs.http_timers.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let stop = crate::clock::unix_nanos();
        // The Server event carries the endpoint's tags, minus `source_id` (it becomes the envelope's); it has no
        // application id or instance index of its own (the round tripper sets those headers on a clone), so its
        // instance is "0". The Client event has no endpoint tags but the app's id, index and instance guid.
        let (mut tags, instance_id, routing_instance_id, forwarded) = match peer {
            Peer::Server => {
                let mut tags: BTreeMap<String, String> = (*backend.tags).clone();
                tags.remove("source_id");
                (tags, "0".to_string(), String::new(), &self.forwarded_in)
            }
            Peer::Client => {
                (BTreeMap::new(), backend.index.to_string(), backend.instance_guid.clone(), &self.forwarded_out)
            }
        };
        let peer_type = match peer {
            Peer::Server => "Server",
            Peer::Client => "Client",
        };
        for (key, value) in [
            ("origin", "gorouter"),
            ("deployment", "cf"),
            ("job", "router"),
            ("index", ROUTER_INDEX),
            ("ip", "127.0.0.1"),
            ("__v1_type", "HttpStartStop"),
            ("request_id", &self.request_id),
            ("peer_type", peer_type),
            ("method", &self.method),
            ("uri", &self.uri),
            ("remote_address", &self.remote_address),
            ("user_agent", &self.user_agent),
            ("status_code", &status.to_string()),
            ("content_length", &content_length.to_string()),
            ("routing_instance_id", &routing_instance_id),
            ("forwarded", &forwarded.join("\n")),
        ] {
            tags.insert(key.to_string(), value.to_string());
        }
        shared.logs.push_timer(TimerEnvelope {
            timestamp: 0,
            source_id: backend.app_guid.clone(),
            instance_id,
            tags,
            name: "http".into(),
            start,
            stop,
        });
    }
}

/// Splits `X-Forwarded-For` header values into addresses, as dropsonde's `parseXForwarded` does.
fn forwarded(headers: &hyper::HeaderMap) -> Vec<String> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|a| a.trim().to_string()))
        .collect()
}

/// A response body that leaves the request's `Server` timer once it is written (or abandoned), with its size.
struct TimedBody {
    inner: Body,
    written: i64,
    on_end: Option<Box<dyn FnOnce(i64) + Send>>,
}

impl TimedBody {
    fn end(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.written);
        }
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.written += frame.data_ref().map_or(0, |d| d.len() as i64);
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.end(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.end();
    }
}

/// `response` with the `Server` timer of the request left when its body is done.
fn timed(
    shared: &Arc<Shared>,
    facts: RequestFacts,
    backend: Backend,
    start: i64,
    response: Response<Body>,
) -> Response<Body> {
    let status = response.status().as_u16();
    let shared = shared.clone();
    response.map(|inner| {
        Body::new(TimedBody {
            inner,
            written: 0,
            on_end: Some(Box::new(move |written| facts.emit(&shared, Peer::Server, &backend, status, written, start))),
        })
    })
}

async fn proxy(shared: &Arc<Shared>, mut request: Request<Incoming>) -> Response<Body> {
    let started = crate::clock::unix_nanos();
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
    let request_id = uuid::Uuid::new_v4().to_string();
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let peer_ip = peer.map(|p| p.ip().to_string()).unwrap_or_default();
    let header =
        |name: HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut facts = RequestFacts {
        request_id: request_id.clone(),
        method: request.method().as_str().to_string(),
        uri: format!("http://{}{}", header(HOST), request.uri().path()),
        remote_address: peer.map(|p| p.to_string()).unwrap_or_default(),
        user_agent: header(hyper::header::USER_AGENT),
        forwarded_in: forwarded(request.headers()),
        forwarded_out: Vec::new(),
    };
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
    facts.forwarded_out = forwarded(headers);
    if !headers.contains_key("x-forwarded-proto") {
        set(headers, "x-forwarded-proto", "http");
    }
    set(headers, "x-vcap-request-id", &request_id);
    let Some((stream, backend, attempt_started)) = connect(shared, &backends, &facts).await else {
        // gorouter's Server event names the last endpoint it tried.
        let last = backends[backends.len().min(CONNECT_ATTEMPTS) - 1].clone();
        return timed(shared, facts, last, started, endpoint_failure());
    };
    let headers = request.headers_mut();
    set(headers, "x-cf-applicationid", &backend.app_guid);
    set(headers, "x-cf-instanceid", &backend.instance_guid);
    set(headers, "x-cf-instanceindex", &backend.index.to_string());
    if let Some(path_and_query) = request.uri().path_and_query().cloned() {
        *request.uri_mut() = path_and_query.as_str().parse().expect("a path and query is a valid URI");
    }
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        facts.emit(shared, Peer::Client, &backend, 0, 0, attempt_started);
        return timed(shared, facts, backend, started, endpoint_failure());
    };
    tokio::spawn(connection);
    let response = match sender.send_request(request).await {
        Ok(response) => {
            let content_length = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(-1);
            facts.emit(shared, Peer::Client, &backend, response.status().as_u16(), content_length, attempt_started);
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(*name);
            }
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                parts.headers.insert("x-vcap-request-id", value);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(_) => {
            facts.emit(shared, Peer::Client, &backend, 0, 0, attempt_started);
            endpoint_failure()
        }
    };
    timed(shared, facts, backend, started, response)
}

fn endpoint_failure() -> Response<Body> {
    router_error(
        StatusCode::BAD_GATEWAY,
        "endpoint_failure",
        "502 Bad Gateway: Registered endpoint failed to handle the request.\n".into(),
    )
}
