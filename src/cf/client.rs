//! The HTTP core every resource kind goes through.
//!
//! One `reqwest` client (rustls with *ring*, our own trust store, proxies from the settings, redirects off so a
//! bearer token never follows a redirect), and one request path that adds the token, records the request in
//! the [`Trace`], prints `X-Cf-Warnings`, retries what is safe to retry, refreshes the token once on
//! `CF-InvalidAuthToken`, and turns CF error bodies into [`CfError`]s. On top of it: typed
//! `get`/`post`/`patch`/`delete`. Streamed uploads and downloads are in [`transfers`](crate::cf::transfers).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cf::auth::{Auth, Endpoints};
use crate::cf::error::{CfError, Error, Result};
use crate::cf::paginate::ListParams;
use crate::cf::retry::{RetryPolicy, is_retryable_status};
use crate::cf::settings::{ProxySettings, Settings, Timeouts};
use crate::cf::tls;
use crate::cf::trace::{Trace, TraceRecord};
use crate::log;

/// `cf-blue-green-resource/<version>`.
pub(crate) const USER_AGENT: &str = concat!("cf-blue-green-resource/", env!("CARGO_PKG_VERSION"));

/// The typed Cloud Foundry client. Cheap to clone: clones share the connection pool, token and trace.
///
/// ```no_run
/// # async fn demo() -> cf_blue_green_resource::cf::Result<()> {
/// use cf_blue_green_resource::cf::{CfClient, Credentials, Settings};
/// let settings = Settings::new(
///     "https://api.sys.example.com",
///     Credentials::Password { username: "admin".into(), password: "secret".into() },
/// );
/// let cf = CfClient::connect(settings).await?;
/// let org = cf.orgs().require_by_name("my-org").await?;
/// let space = cf.spaces().require_by_name(&org.guid, "my-space").await?;
/// let app = cf.apps().by_name(&space.guid, "my-app").await?;
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct CfClient {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    endpoints: Endpoints,
    auth: Auth,
}

impl std::fmt::Debug for CfClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfClient").field("api", &self.inner.core.api.as_str()).finish_non_exhaustive()
    }
}

/// Where a request goes: a path under the API URL (query included) or an absolute URL (UAA, Log Cache, a
/// job's `Location`, a pagination `next.href`, a blobstore redirect).
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Path(String),
    Url(Url),
}

pub(crate) type FormFactory = Arc<dyn Fn() -> Result<reqwest::multipart::Form> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum ReqBody {
    Empty,
    Json(Vec<u8>),
    Yaml(String),
    Form(Vec<(String, String)>),
    /// Rebuilt for every try (a streamed file part is opened anew).
    Multipart(FormFactory),
}

/// One logical request; the core may send it several times.
#[derive(Clone)]
pub(crate) struct Req {
    pub method: Method,
    pub target: Target,
    pub body: ReqBody,
    /// Safe to send again after a connection error or a 5xx.
    pub(crate) idempotent: bool,
    pub accept: &'static str,
    pub(crate) basic_auth: Option<(String, String)>,
    /// The total time for the request; `None` means the settings' `timeouts.request`.
    pub timeout: Option<Duration>,
    /// A streamed upload or download: no total time limit (the caller watches for stalls instead).
    pub stream: bool,
    /// Send the bearer token (CC and Log Cache) or not (`GET /`, UAA, blobstore redirects).
    pub(crate) authenticated: bool,
}

impl Req {
    pub(crate) fn new(method: Method, target: Target) -> Self {
        let idempotent = method != Method::POST;
        Req {
            method,
            target,
            body: ReqBody::Empty,
            idempotent,
            accept: "application/json",
            basic_auth: None,
            timeout: None,
            stream: false,
            authenticated: true,
        }
    }

    pub(crate) fn path(method: Method, path: impl Into<String>) -> Self {
        Req::new(method, Target::Path(path.into()))
    }

    pub(crate) fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Config(format!("cannot encode request body: {e}")))?;
        self.body = ReqBody::Json(bytes);
        Ok(self)
    }

    pub(crate) fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }
}

/// A whole (non-streamed) answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub(crate) location: Option<String>,
    pub body: Bytes,
    pub method: String,
    pub path: String,
}

impl Answer {
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode_json(&self.method, &self.path, &self.body)
    }
}

/// Decodes JSON, naming the path into the document where it went wrong.
pub(crate) fn decode_json<T: DeserializeOwned>(method: &str, path: &str, body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| Error::Decode {
        method: method.to_owned(),
        path: path.to_owned(),
        message: if e.path().to_string() == "." {
            e.inner().to_string()
        } else {
            format!("at `{}`: {}", e.path(), e.inner())
        },
    })
}

/// What a DELETE did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// 204 (or 200): gone.
    Done,
    /// 202: an async job is deleting it; poll the job.
    Job(Url),
    /// 404: it was not there.
    NotFound,
}

/// The HTTP machinery without authentication: TLS, proxies, retries, tracing, errors.
pub(crate) struct Core {
    http: reqwest::Client,
    /// The trust configuration, shared with other HTTP clients of the run (app routes).
    pub tls: rustls::ClientConfig,
    pub api: Url,
    pub trace: Trace,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
}

impl Core {
    pub(crate) fn new(settings: &Settings) -> Result<Self> {
        let api = parse_api_url(&settings.api)?;
        let tls = tls::client_config(settings.ca_cert.as_deref(), settings.skip_cert_check)?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeouts.connect)
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(50))
            .no_proxy();
        for proxy in proxies(&settings.proxy)? {
            builder = builder.proxy(proxy);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Core {
            http,
            tls,
            api,
            trace: Trace::new(settings.verbose),
            retry: settings.retry.clone(),
            timeouts: settings.timeouts.clone(),
        })
    }

    pub(crate) fn url(&self, target: &Target) -> Result<Url> {
        match target {
            Target::Url(url) => Ok(url.clone()),
            Target::Path(path) => {
                let base = self.api.as_str().trim_end_matches('/');
                Url::parse(&format!("{base}{path}")).map_err(|e| Error::Config(format!("bad request path {path}: {e}")))
            }
        }
    }

    fn build(&self, req: &Req, url: &Url, bearer: Option<&str>) -> Result<reqwest::RequestBuilder> {
        let mut rb = self.http.request(req.method.clone(), url.clone()).header(ACCEPT, req.accept);
        if !req.stream {
            rb = rb.timeout(req.timeout.unwrap_or(self.timeouts.request));
        }
        if let Some(token) = bearer {
            let mut value = HeaderValue::from_str(&format!("bearer {token}"))
                .map_err(|_| Error::Auth("the access token UAA issued is not a valid header value".into()))?;
            value.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, value);
        }
        if let Some((user, pass)) = &req.basic_auth {
            rb = rb.basic_auth(user, Some(pass));
        }
        rb = match &req.body {
            ReqBody::Empty => rb,
            ReqBody::Json(bytes) => rb.header(CONTENT_TYPE, "application/json").body(bytes.clone()),
            ReqBody::Yaml(text) => rb.header(CONTENT_TYPE, "application/x-yaml").body(text.clone()),
            ReqBody::Form(pairs) => rb.form(pairs),
            ReqBody::Multipart(factory) => rb.multipart(factory()?),
        };
        Ok(rb)
    }

    /// Sends `req` (retrying what is safe to retry) and returns the response if its status is 1xx–3xx.
    pub(crate) async fn execute(&self, req: &Req, bearer: Option<&str>) -> Result<reqwest::Response> {
        let url = self.url(&req.target)?;
        let method = req.method.as_str().to_owned();
        let mut attempt = 1u32;
        loop {
            let rb = self.build(req, &url, bearer)?;
            let started = Instant::now();
            let sent = rb.send().await;
            let elapsed = started.elapsed();
            let mut record = TraceRecord {
                method: method.clone(),
                host: host_port(&url),
                path: url.path().to_owned(),
                // A full URL is a blobstore redirect, whose query is a signature (a credential): never shown.
                query: matches!(req.target, Target::Path(_)).then(|| url.query().map(str::to_owned)).flatten(),
                status: None,
                elapsed,
                attempt,
            };
            match sent {
                Err(err) => {
                    self.trace.record(record);
                    let cert_problem = tls::certificate_problem(&err);
                    let safe_to_retry = cert_problem.is_none() && (req.idempotent || err.is_connect());
                    if safe_to_retry && attempt < self.retry.max_attempts {
                        let wait = self.retry.backoff(attempt);
                        log::trace(format_args!(
                            "{method} {}: {}; trying again in {}",
                            url.path(),
                            describe(&err),
                            log::human_duration(wait)
                        ));
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::Transport {
                        method,
                        url: display_url(&url),
                        message: cert_problem.unwrap_or_else(|| describe(&err)),
                        ambiguous: !err.is_connect(),
                    });
                }
                Ok(resp) => {
                    record.status = Some(resp.status().as_u16());
                    self.trace.record(record);
                    print_warnings(resp.headers());
                    let status = resp.status();
                    if !(status.is_client_error() || status.is_server_error()) {
                        return Ok(resp);
                    }
                    let code = status.as_u16();
                    let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    // CC's own rate limiter; UAA's and Log Cache's 429s keep the capped wait.
                    if code == 429
                        && url.origin() == self.api.origin()
                        && let Some(limited) = self.retry.rate_limited(&method, url.path(), retry_after.as_deref())
                    {
                        return Err(limited);
                    }
                    // A 429 was refused before any work was done, so even a create may be sent again.
                    let may_retry = is_retryable_status(code) && (req.idempotent || code == 429);
                    if may_retry && attempt < self.retry.max_attempts {
                        let wait = retry_after
                            .as_deref()
                            .and_then(|v| self.retry.retry_after(v))
                            .unwrap_or_else(|| self.retry.backoff(attempt));
                        log::detail(format_args!(
                            "{method} {} answered {code}; trying again in {} (attempt {} of {})",
                            url.path(),
                            log::human_duration(wait),
                            attempt + 1,
                            self.retry.max_attempts
                        ));
                        drop(resp);
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error_from_response(&method, url.path(), resp).await);
                }
            }
        }
    }

    /// Sends and reads the whole body.
    pub(crate) async fn answer(&self, req: &Req, bearer: Option<&str>) -> Result<Answer> {
        let resp = self.execute(req, bearer).await?;
        read_answer(req.method.as_str(), resp).await
    }
}

async fn read_answer(method: &str, resp: reqwest::Response) -> Result<Answer> {
    let status = resp.status();
    let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let url = resp.url().clone();
    let body = resp.bytes().await.map_err(|e| Error::Transport {
        method: method.to_owned(),
        url: display_url(&url),
        message: format!("reading the response failed: {}", describe(&e)),
        ambiguous: true,
    })?;
    Ok(Answer { status, location, body, method: method.to_owned(), path: url.path().to_owned() })
}

async fn error_from_response(method: &str, path: &str, resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let request_id = resp.headers().get("x-vcap-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.bytes().await.unwrap_or_default();
    let err = CfError::from_response(method, path, status, request_id, &body);
    if let Some(id) = &err.request_id {
        log::trace(format_args!("{method} {path}: {status}, X-Vcap-Request-Id {id}"));
    }
    err.into()
}

impl CfClient {
    /// Discovers the endpoints (`GET /`) and logs in. Fails with a clear message if the API is unreachable,
    /// its certificate is not trusted, or the credentials are rejected.
    pub async fn connect(settings: Settings) -> Result<CfClient> {
        settings.register_secrets();
        if settings.verbose {
            log::set_verbose(true);
        }
        let core = Core::new(&settings)?;
        let endpoints = Endpoints::discover(&core).await?;
        let auth = Auth::new(settings.credentials.clone(), endpoints.token.clone());
        auth.login(&core).await?;
        Ok(CfClient { inner: Arc::new(Inner { core, endpoints, auth }) })
    }

    /// The request log (every request, retries included).
    /// The TLS trust configuration this client uses (system store plus `ca_cert`, or none with
    /// `skip_cert_check`), for other HTTPS clients of the same run.
    pub(crate) fn tls_config(&self) -> rustls::ClientConfig {
        self.inner.core.tls.clone()
    }

    pub fn trace(&self) -> &Trace {
        &self.inner.core.trace
    }

    /// The discovered endpoints (API, token endpoint, Log Cache) and the CC API version.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.inner.core.timeouts
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.core.retry
    }

    /// Gets a fresh access token now (before a long upload, so it cannot expire half-way).
    pub async fn refresh_now(&self) -> Result<()> {
        self.refresh_if_older_than(Duration::ZERO).await
    }

    /// Gets a fresh access token unless the current one was obtained within `age`.
    pub(crate) async fn refresh_if_older_than(&self, age: Duration) -> Result<()> {
        self.inner.auth.refresh_if_older_than(&self.inner.core, age).await
    }

    /// The HTTP core under the token handling (the streamed transfers send through it directly).
    pub(crate) fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The current access token (refreshed first if it is about to expire). For callers that talk to other
    /// CF components with it; it is registered for redaction.
    pub async fn access_token(&self) -> Result<String> {
        self.inner.auth.bearer(&self.inner.core).await
    }

    /// Sends an authenticated request; on 401 `CF-InvalidAuthToken` refreshes the token once and replays it.
    pub(crate) async fn send(&self, req: &Req) -> Result<reqwest::Response> {
        let core = &self.inner.core;
        if !req.authenticated {
            return core.execute(req, None).await;
        }
        let token = self.inner.auth.bearer(core).await?;
        match core.execute(req, Some(&token)).await {
            Err(Error::Cf(e)) if e.is_invalid_auth_token() => {
                log::trace(format_args!("{} {}: token rejected; refreshing it and trying once more", e.method, e.path));
                self.inner.auth.refresh_after_rejection(core, &token).await?;
                let token = self.inner.auth.bearer(core).await?;
                core.execute(req, Some(&token)).await
            }
            other => other,
        }
    }

    pub(crate) async fn answer(&self, req: &Req) -> Result<Answer> {
        let resp = self.send(req).await?;
        read_answer(req.method.as_str(), resp).await
    }

    /// `GET path` decoded as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.answer(&Req::path(Method::GET, path)).await?.json()
    }

    /// `GET path?query` decoded as `T`.
    pub(crate) async fn get_with<T: DeserializeOwned>(&self, path: &str, params: &ListParams) -> Result<T> {
        self.get(&params.apply(path)).await
    }

    /// `GET path`, with 404 as `None`.
    pub(crate) async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.get(path).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET path` as text with the given `Accept` (e.g. the app manifest as YAML).
    pub(crate) async fn get_text(&self, path: &str, accept: &'static str) -> Result<String> {
        let mut req = Req::path(Method::GET, path);
        req.accept = accept;
        let answer = self.answer(&req).await?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    /// `POST path` with a JSON body, **not** retried after it may have been sent: for creates. Pair it with
    /// [`create_or_find`](Self::create_or_find).
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.answer(&Req::path(Method::POST, path).json(body)?).await?.json()
    }

    /// `POST path` for actions that are safe to repeat (start, stop, scale, inserting route destinations,
    /// resource matching): retried like a GET.
    pub(crate) async fn post_action<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = Req::path(Method::POST, path).idempotent(true);
        if let Some(body) = body {
            req = req.json(body)?;
        }
        self.answer(&req).await?.json()
    }

    /// `PATCH path` with a JSON body (sets values, so it is retried).
    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.answer(&Req::path(Method::PATCH, path).json(body)?).await?.json()
    }

    /// `DELETE path`: done, a job to wait for, or not found.
    pub async fn delete(&self, path: &str) -> Result<Deleted> {
        match self.answer(&Req::path(Method::DELETE, path)).await {
            Ok(answer) if answer.status == StatusCode::ACCEPTED => Ok(Deleted::Job(self.job_url(&answer)?)),
            Ok(_) => Ok(Deleted::Done),
            Err(e) if e.is_not_found() => Ok(Deleted::NotFound),
            Err(e) => Err(e),
        }
    }

    /// The job URL of a 202 answer.
    pub(crate) fn job_url(&self, answer: &Answer) -> Result<Url> {
        let location = answer.location.as_deref().ok_or_else(|| Error::Decode {
            method: answer.method.clone(),
            path: answer.path.clone(),
            message: "202 Accepted without a Location header".into(),
        })?;
        self.resolve(location)
    }

    /// An absolute URL for an href CF returned (relative ones are taken relative to the API URL).
    pub(crate) fn resolve(&self, href: &str) -> Result<Url> {
        resolve_href(&self.inner.core.api, href)
    }
}

/// Parses the configured API URL; `api.example.com` means `https://api.example.com`.
pub(crate) fn parse_api_url(api: &str) -> Result<Url> {
    let api = api.trim().trim_end_matches('/');
    if api.is_empty() {
        return Err(Error::Config("the API URL is empty".into()));
    }
    let with_scheme = if api.contains("://") { api.to_owned() } else { format!("https://{api}") };
    let url = Url::parse(&with_scheme).map_err(|e| Error::Config(format!("the API URL '{api}' is not valid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Config(format!("the API URL '{api}' must be an http(s) URL with a host")));
    }
    Ok(url)
}

/// An absolute URL for `href`: absolute hrefs are followed as they are (as the CLI does), relative ones are
/// joined to the API URL.
pub(crate) fn resolve_href(api: &Url, href: &str) -> Result<Url> {
    let bad = |e: String| Error::Decode { method: "GET".into(), path: href.to_owned(), message: e };
    match Url::parse(href) {
        Ok(url) => Ok(url),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = api.as_str().trim_end_matches('/');
            let sep = if href.starts_with('/') { "" } else { "/" };
            Url::parse(&format!("{base}{sep}{href}")).map_err(|e| bad(e.to_string()))
        }
        Err(e) => Err(bad(format!("bad link: {e}"))),
    }
}

/// The proxies to install (reqwest's own environment lookup is switched off so the settings are the truth).
pub(crate) fn proxies(settings: &ProxySettings) -> Result<Vec<reqwest::Proxy>> {
    let no_proxy = settings.no_proxy.as_deref().and_then(reqwest::NoProxy::from_string);
    let mut out = Vec::new();
    if let Some(http) = &settings.http_proxy {
        let proxy = reqwest::Proxy::http(with_default_scheme(http))
            .map_err(|e| Error::Config(format!("http_proxy '{http}' is not a valid proxy URL: {e}")))?;
        out.push(proxy.no_proxy(no_proxy.clone()));
    }
    if let Some(https) = &settings.https_proxy {
        let proxy = reqwest::Proxy::https(with_default_scheme(https))
            .map_err(|e| Error::Config(format!("https_proxy '{https}' is not a valid proxy URL: {e}")))?;
        out.push(proxy.no_proxy(no_proxy));
    }
    Ok(out)
}

fn with_default_scheme(proxy: &str) -> String {
    if proxy.contains("://") { proxy.to_owned() } else { format!("http://{proxy}") }
}

/// Decodes an `X-Cf-Warnings` header: comma-separated, each warning URL-encoded (`+` for spaces).
pub(crate) fn decode_warnings(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(|w| w.trim().replace('+', " "))
        .filter(|w| !w.is_empty())
        .map(|w| percent_encoding::percent_decode_str(&w).decode_utf8_lossy().into_owned())
        .collect()
}

fn print_warnings(headers: &HeaderMap) {
    for value in headers.get_all("x-cf-warnings") {
        if let Ok(text) = value.to_str() {
            for warning in decode_warnings(text) {
                log::warn(warning);
            }
        }
    }
}

fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

/// `https://host/path` without query or credentials, for error messages.
pub(crate) fn display_url(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), host_port(url), url.path())
}

/// A reqwest error as one readable line, without the URL (which the caller prints once).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    let mut parts: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() { err.to_string() } else { parts.join(": ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_url_decoded() {
        assert_eq!(
            decode_warnings("Some+warning%2C+with+a+comma,second%20one"),
            vec!["Some warning, with a comma".to_owned(), "second one".to_owned()]
        );
        assert!(decode_warnings("").is_empty());
    }

    #[test]
    fn api_urls_are_normalised() {
        assert_eq!(parse_api_url("api.example.com/").unwrap().as_str(), "https://api.example.com/");
        assert_eq!(parse_api_url("http://127.0.0.1:8080").unwrap().as_str(), "http://127.0.0.1:8080/");
        assert!(parse_api_url("").is_err());
        assert!(parse_api_url("ftp://x").is_err());
    }

    #[test]
    fn hrefs_are_followed_as_given_or_joined_to_the_api() {
        let api = Url::parse("http://127.0.0.1:9000").unwrap();
        let next = resolve_href(&api, "http://127.0.0.1:9000/v3/apps?page=2&per_page=2").unwrap();
        assert_eq!(next.as_str(), "http://127.0.0.1:9000/v3/apps?page=2&per_page=2");
        let relative = resolve_href(&api, "/v3/jobs/abc").unwrap();
        assert_eq!(relative.as_str(), "http://127.0.0.1:9000/v3/jobs/abc");
        let other = resolve_href(&api, "https://blobstore.example.org/x?sig=1").unwrap();
        assert_eq!(other.as_str(), "https://blobstore.example.org/x?sig=1");
    }

    #[test]
    fn proxies_come_from_the_settings_only() {
        assert!(proxies(&ProxySettings::none()).unwrap().is_empty());
        let settings = ProxySettings {
            http_proxy: Some("proxy.internal:3128".into()),
            https_proxy: Some("http://proxy.internal:3129".into()),
            no_proxy: Some("localhost,127.0.0.1".into()),
        };
        assert_eq!(proxies(&settings).unwrap().len(), 2);
        let bad = ProxySettings { http_proxy: Some("http://[::1".into()), ..ProxySettings::none() };
        assert!(proxies(&bad).unwrap_err().to_string().contains("http_proxy"));
    }

    #[test]
    fn decode_errors_name_the_json_path() {
        type Page = std::collections::BTreeMap<String, Vec<std::collections::BTreeMap<String, String>>>;
        let err = decode_json::<Page>("GET", "/v3/apps", br#"{"resources":[{"guid":1}]}"#).unwrap_err();
        assert!(err.to_string().starts_with("GET /v3/apps: unexpected response: at `resources[0].guid`"), "{err}");
    }
}
