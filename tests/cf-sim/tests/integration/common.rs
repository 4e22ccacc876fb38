//! Helpers for the sim's tests: a small HTTP client (plain or TLS with a given CA), a logged-in CC API client,
//! a test app (a python3 web server in a zip with a Procfile), a full push, and bounded polling.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use cf_sim::testkit::{self, CompressionMethod, ZipEntry};
use cf_sim::{Sim, SimConfig};

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    /// The first CF error's (code, title).
    pub fn cf_error(&self) -> (u64, String) {
        let body = self.json();
        (body["errors"][0]["code"].as_u64().unwrap_or(0), body["errors"][0]["title"].as_str().unwrap_or("").to_string())
    }
}

/// One HTTP/1.1 request on a fresh connection; `ca_pem` makes it HTTPS trusting that CA.
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    ca_pem: Option<&[u8]>,
) -> std::io::Result<Response> {
    let uri: hyper::Uri = url.parse().expect("valid URL");
    let host = uri.host().expect("host").to_string();
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    let path = uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let mut builder = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
        builder = builder.header("host", format!("{host}:{port}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Full::new(Bytes::from(body))).expect("valid request");
    let io_error = |e: hyper::Error| std::io::Error::other(e);
    let response = match ca_pem {
        None => {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io_error)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(io_error)?
        }
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                roots.add(cert.expect("PEM certificate")).expect("CA certificate");
            }
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("TLS versions")
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let name = rustls::pki_types::ServerName::try_from(host.clone()).expect("server name");
            let tls = connector.connect(name, stream).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(io_error)?;
            tokio::spawn(connection);
            sender.send_request(request).await.map_err(io_error)?
        }
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io_error)?.to_bytes();
    Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body })
}

/// A logged-in client of the sim's CC API.
pub struct Api {
    pub base: String,
    pub token: String,
    pub ca_pem: Option<Vec<u8>>,
}

pub async fn password_token(uaa: &str, username: &str, password: &str, ca_pem: Option<&[u8]>) -> Response {
    let form = format!("grant_type=password&username={username}&password={password}");
    send(
        "POST",
        &format!("{uaa}/oauth/token"),
        &[
            ("authorization", "Basic Y2Y6"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ],
        form.into_bytes(),
        ca_pem,
    )
    .await
    .expect("UAA answers")
}

impl Api {
    pub async fn login(sim: &Sim) -> Api {
        let info = sim.info();
        let ca_pem = info.ca_cert_path.as_ref().map(|p| std::fs::read(p).expect("CA file"));
        let response = password_token(&info.uaa, &info.username, &info.password, ca_pem.as_deref()).await;
        assert_eq!(response.status, 200, "{}", response.text());
        let token = response.json()["access_token"].as_str().expect("access token").to_string();
        Api { base: info.api.clone(), token, ca_pem }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Response {
        let auth = format!("bearer {}", self.token);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        send(
            method,
            &self.url(path),
            &[("authorization", &auth), ("content-type", "application/json")],
            bytes,
            self.ca_pem.as_deref(),
        )
        .await
        .expect("CC answers")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call("POST", path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Response {
        self.call("PATCH", path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.call("DELETE", path, None).await
    }

    /// A request with a raw body and content type.
    pub async fn raw(&self, method: &str, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        let auth = format!("bearer {}", self.token);
        send(
            method,
            &self.url(path),
            &[("authorization", &auth), ("content-type", content_type)],
            body,
            self.ca_pem.as_deref(),
        )
        .await
        .expect("CC answers")
    }

    /// The guid of the first resource a list returns.
    pub async fn first_guid(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["resources"][0]["guid"].as_str().unwrap_or_else(|| panic!("no resource at {path}")).to_string()
    }

    pub async fn space_guid(&self) -> String {
        self.first_guid("/v3/spaces").await
    }

    /// Polls a job until it is no longer PROCESSING; returns it.
    pub async fn wait_job(&self, location: &str) -> Value {
        let location = location.to_string();
        poll(Duration::from_secs(10), || async {
            let job = self.get(&location).await.json();
            (job["state"] != "PROCESSING").then_some(job)
        })
        .await
    }

    pub async fn create_app(&self, name: &str) -> String {
        let space = self.space_guid().await;
        let response =
            self.post("/v3/apps", json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}})).await;
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["guid"].as_str().unwrap().to_string()
    }

    /// Uploads bits as the CLI does (resources field first, then the zip as a file part).
    pub async fn upload_package(&self, app_guid: &str, zip: Vec<u8>) -> String {
        let package = self
            .post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}}))
            .await;
        assert_eq!(package.status, 201, "{}", package.text());
        let guid = package.json()["guid"].as_str().unwrap().to_string();
        let (content_type, body) =
            multipart(&[("resources", None, b"[]".to_vec()), ("bits", Some("package.zip"), zip)]);
        let uploaded = self.raw("POST", &format!("/v3/packages/{guid}/upload"), &content_type, body).await;
        assert_eq!(uploaded.status, 200, "{}", uploaded.text());
        let package = poll(Duration::from_secs(10), || async {
            let p = self.get(&format!("/v3/packages/{guid}")).await.json();
            (p["state"] == "READY" || p["state"] == "FAILED").then_some(p)
        })
        .await;
        assert_eq!(package["state"], "READY", "{package}");
        guid
    }

    /// Stages a package; returns the final build.
    pub async fn stage(&self, package_guid: &str) -> Value {
        let build = self.post("/v3/builds", json!({"package": {"guid": package_guid}})).await;
        assert_eq!(build.status, 201, "{}", build.text());
        let guid = build.json()["guid"].as_str().unwrap().to_string();
        poll(Duration::from_secs(20), || async {
            let b = self.get(&format!("/v3/builds/{guid}")).await.json();
            (b["state"] != "STAGING").then_some(b)
        })
        .await
    }

    /// Creates, uploads, stages and starts an app, and waits until every web instance is RUNNING.
    pub async fn push(&self, name: &str, zip: Vec<u8>) -> String {
        let app = self.create_app(name).await;
        let package = self.upload_package(&app, zip).await;
        let build = self.stage(&package).await;
        assert_eq!(build["state"], "STAGED", "{build}");
        let droplet = build["droplet"]["guid"].as_str().unwrap();
        let set = self
            .patch(&format!("/v3/apps/{app}/relationships/current_droplet"), json!({"data": {"guid": droplet}}))
            .await;
        assert_eq!(set.status, 200, "{}", set.text());
        let started = self.post(&format!("/v3/apps/{app}/actions/start"), json!({})).await;
        assert_eq!(started.status, 200, "{}", started.text());
        self.wait_running(&app, 1).await;
        app
    }

    /// Waits until the app's web process has `count` RUNNING instances; returns the stats.
    pub async fn wait_running(&self, app: &str, count: usize) -> Value {
        poll(Duration::from_secs(20), || async {
            let stats = self.get(&format!("/v3/apps/{app}/processes/web/stats")).await.json();
            let running = stats["resources"]
                .as_array()
                .map(|r| r.iter().filter(|i| i["state"] == "RUNNING").count())
                .unwrap_or(0);
            (running == count).then_some(stats)
        })
        .await
    }

    /// Creates a route on the default domain and maps the app to it.
    pub async fn map_route(&self, app: &str, host: &str) -> String {
        let space = self.space_guid().await;
        let domain = self.first_guid("/v3/domains").await;
        let route = self
            .post("/v3/routes", json!({"host": host, "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": space}}}}))
            .await;
        assert_eq!(route.status, 201, "{}", route.text());
        let guid = route.json()["guid"].as_str().unwrap().to_string();
        let mapped = self
            .post(&format!("/v3/routes/{guid}/destinations"), json!({"destinations": [{"app": {"guid": app}}]}))
            .await;
        assert_eq!(mapped.status, 200, "{}", mapped.text());
        guid
    }
}

/// A multipart/form-data body: (name, file name, content) parts.
pub fn multipart(parts: &[(&str, Option<&str>, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "cf-sim-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        write!(body, "--{boundary}\r\n").unwrap();
        match file {
            Some(file) => write!(body, "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/zip\r\n\r\n").unwrap(),
            None => write!(body, "Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").unwrap(),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    write!(body, "--{boundary}--\r\n").unwrap();
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Polls `check` every 50 ms until it yields a value; panics after `limit`.
pub async fn poll<T, F, Fut>(limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test app: a python3 web server answering JSON about its instance, with `/health`, `/slow` and `/exit`.
pub const SERVER_PY: &str = r#"import json, os, sys, time
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(1.5)
        if self.path.startswith("/exit"):
            os._exit(3)
        body = json.dumps({
            "index": os.environ.get("CF_INSTANCE_INDEX"),
            "version": os.environ.get("VERSION", ""),
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "vcap_services": json.loads(os.environ.get("VCAP_SERVICES", "{}")),
            "vcap_application": json.loads(os.environ.get("VCAP_APPLICATION", "{}")),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

print("listening on", os.environ["PORT"], flush=True)
print("a line on stderr", file=sys.stderr, flush=True)
Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A zip with the test app and a Procfile.
pub fn app_zip() -> Vec<u8> {
    zip_of(&[("server.py", SERVER_PY.as_bytes(), 0o644), ("Procfile", b"web: python3 server.py\n", 0o644)])
}

/// A zip of `files` (name, contents, unix mode), deflated.
pub fn zip_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let entries: Vec<ZipEntry> = files.iter().map(|(name, content, mode)| (*name, *content, Some(*mode))).collect();
    testkit::zip(CompressionMethod::Deflated, &entries)
}

/// A sim with fast health checks and restarts, for tests.
pub fn test_config() -> SimConfig {
    SimConfig {
        stop_grace_ms: 2000,
        health_check_interval_ms: 200,
        crash_restart_delay_ms: 200,
        ..SimConfig::default()
    }
}

/// A GET through the router for `host`.
pub async fn via_router(sim: &Sim, host: &str, path: &str) -> Response {
    let url = format!("{}{path}", sim.info().router);
    send("GET", &url, &[("host", host)], Vec::new(), None).await.expect("router answers")
}

/// The fields of /proc/PID/stat after the command name.
fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat.rsplit(')').next()?.split_whitespace().map(str::to_string).collect())
}

/// Whether a process exists and has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    stat_fields(&pid.to_string()).is_some_and(|f| f[0] != "Z")
}

/// Live processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.chars().all(|c| c.is_ascii_digit()))
        .filter(|pid| stat_fields(pid).is_some_and(|f| f[0] != "Z" && f[2] == pgid.to_string()))
        .filter_map(|pid| pid.parse().ok())
        .collect()
}
