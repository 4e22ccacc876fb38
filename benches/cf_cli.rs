//! The article's blue-green procedure as the cf CLI v8 performs it, request for request (see
//! `shared/reference/cf-cli-request-count.md` and cloudfoundry/cli's `command/v7`, `actor/v7action`,
//! `actor/v7pushaction`): each `cf` command is its own process (this benchmark binary re-run with
//! [`COMMAND_ARG`]) with a fresh HTTP client (new connections) that reads the target and token from
//! `config.json` in a home directory, as the CLI does with `~/.cf/config.json` (`login` writes it; the other
//! commands would write back only refreshed tokens, and none refreshes here). A Go CLI process starts slower than
//! this binary, so the procedure's wall time here is, if anything, short.
//!
//! Modelled: the CLI's fixed 3 s polls (a job is polled at once, then every 3 s after each answer; a package
//! sleeps 3 s first; a build and the process stats are polled at once, then every 3 s), the app lookup that runs
//! beside `POST /v3/builds`, the Log Cache stream during staging (`GET /api/v1/info`, then reads 250 ms apart
//! while they come back empty), resource matching (matched files are sent as `resources`, the rest zipped),
//! and the 8 requests of the app summary. Not modelled: token refreshes (the token lives 20 minutes, the
//! procedure takes less than 2) and retries of failed requests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The first argument that makes the benchmark binary run one `cf` command.
pub(crate) const COMMAND_ARG: &str = "__cf";

/// The CLI's `DefaultPollingInterval`, which cannot be changed.
const POLL: Duration = Duration::from_secs(3);
/// go-log-cache's walk: the wait after an empty read.
const LOG_RETRY: Duration = Duration::from_millis(250);

/// Runs `cf ARGS…` as its own process with `home` holding its config; panics with its output if it fails.
pub(crate) fn cf(home: &Path, args: &[&str]) {
    let output = Command::new(std::env::current_exe().expect("the benchmark binary"))
        .arg(COMMAND_ARG)
        .arg(home)
        .args(args)
        .output()
        .expect("run a cf command");
    assert!(output.status.success(), "cf {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// The child's side: `ARGS` are `[home, command, arguments…]`.
pub(crate) fn command(args: &[String]) -> Result<()> {
    let [home, command, rest @ ..] = args else { bail!("usage: {COMMAND_ARG} HOME COMMAND ARGS…") };
    let home = PathBuf::from(home);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        if command == "login" {
            let [api, user, password] = rest[..] else { bail!("login API USER PASSWORD") };
            return login(&home, api, user, password).await;
        }
        let cli = Cli::load(&home)?;
        match (command.as_str(), &rest[..]) {
            ("push", [name, dir]) => cli.push(name, Path::new(dir)).await,
            ("map-route", [app, domain, host]) => cli.map_route(app, domain, host).await,
            ("unmap-route", [app, domain, host]) => cli.unmap_route(app, domain, host).await,
            ("rename", [old, new]) => cli.rename(old, new).await,
            ("delete", [app]) => cli.delete(app).await,
            _ => bail!("unknown cf command {command} {rest:?}"),
        }
    })
}

/// What the CLI keeps in `config.json` between commands.
#[derive(Serialize, Deserialize)]
struct Config {
    api: String,
    uaa: String,
    log_cache: String,
    access_token: String,
    space_guid: String,
}

fn client() -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().context("an HTTP client")
}

/// Sends a request and returns its JSON answer (null when empty) and `Location`; fails on a non-2xx.
async fn send(request: RequestBuilder) -> Result<(Value, Option<String>)> {
    let response = request.send().await.context("sending a request")?;
    let (status, url) = (response.status(), response.url().clone());
    let location = response.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
    let body = response.text().await?;
    if !status.is_success() {
        bail!("{status} from {url}: {body}");
    }
    Ok((serde_json::from_str(&body).unwrap_or(Value::Null), location))
}

/// `cf login -a API -u USER -p PASSWORD` (one org and one space visible, so both are targeted).
async fn login(home: &Path, api: &str, user: &str, password: &str) -> Result<()> {
    let http = client()?;
    let (root, _) = send(http.get(format!("{api}/"))).await?;
    let link = |name: &str| root["links"][name]["href"].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no {name}"));
    let (uaa, log_cache) = (link("login")?, link("log_cache")?);
    send(http.get(format!("{uaa}/login"))).await?;
    let form = [("grant_type", "password"), ("username", user), ("password", password)];
    let (token, _) = send(http.post(format!("{uaa}/oauth/token")).basic_auth("cf", Some("")).form(&form)).await?;
    let access_token = token["access_token"].as_str().context("an access token")?.to_owned();
    let get = |path: String| http.get(format!("{api}{path}")).bearer_auth(&access_token);
    let (orgs, _) = send(get("/v3/organizations?order_by=name".into())).await?;
    let org = orgs["resources"][0]["guid"].as_str().context("an organization")?;
    let (spaces, _) = send(get(format!("/v3/spaces?organization_guids={org}&order_by=name"))).await?;
    let space_guid = spaces["resources"][0]["guid"].as_str().context("a space")?.to_owned();
    let config = Config { api: api.to_owned(), uaa, log_cache, access_token, space_guid };
    std::fs::write(home.join("config.json"), serde_json::to_vec(&config)?).context("writing config.json")
}

/// One command's client and config.
struct Cli {
    http: reqwest::Client,
    config: Config,
}

impl Cli {
    fn load(home: &Path) -> Result<Cli> {
        let config = std::fs::read(home.join("config.json")).context("reading config.json")?;
        Ok(Cli { http: client()?, config: serde_json::from_slice(&config)? })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.config.api) };
        self.http.request(method, url).bearer_auth(&self.config.access_token)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        Ok(send(self.request(Method::GET, path)).await?.0)
    }

    /// A summary request: sent and waited for, whatever it answers (cf-sim does not model every endpoint the
    /// summary reads).
    async fn read(&self, path: &str) -> Result<()> {
        self.request(Method::GET, path).send().await?.bytes().await?;
        Ok(())
    }

    async fn send_json(&self, method: Method, path: &str, body: Value) -> Result<(Value, Option<String>)> {
        send(self.request(method, path).json(&body)).await
    }

    async fn app_guid(&self, name: &str) -> Result<String> {
        let apps = self.get(&format!("/v3/apps?names={name}&space_guids={}", self.config.space_guid)).await?;
        apps["resources"][0]["guid"].as_str().map(str::to_owned).with_context(|| format!("no app {name}"))
    }

    /// `PollJobForState`: at once, then 3 s after each answer, until COMPLETE.
    async fn poll_job(&self, location: Option<String>) -> Result<()> {
        let location = location.context("a job location")?;
        loop {
            let job = self.get(&location).await?;
            match job["state"].as_str() {
                Some("COMPLETE") => return Ok(()),
                Some("FAILED") => bail!("job failed: {job}"),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Polls `path` every 3 s (after a first 3 s sleep when `sleep_first`) until `done` says so.
    async fn poll(&self, path: &str, sleep_first: bool, done: impl Fn(&Value) -> Result<bool>) -> Result<Value> {
        if sleep_first {
            tokio::time::sleep(POLL).await;
        }
        loop {
            let answer = self.get(path).await?;
            if done(&answer)? {
                return Ok(answer);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `cf push NAME -p DIR -u http --endpoint /healthcheck -m 64M -k 256M` with no manifest file.
    async fn push(&self, name: &str, dir: &Path) -> Result<()> {
        let space = &self.config.space_guid;
        let manifest = format!(
            "applications:\n- name: {name}\n  default-route: true\n  memory: 64M\n  disk_quota: 256M\n  \
             health-check-type: http\n  health-check-http-endpoint: /healthcheck\n"
        );
        let apply = self
            .request(Method::POST, &format!("/v3/spaces/{space}/actions/apply_manifest"))
            .header("content-type", "application/x-yaml")
            .body(manifest);
        let (_, job) = send(apply).await?;
        self.poll_job(job).await?;
        let app = self.app_guid(name).await?;

        let files = bits(dir)?;
        let resources: Vec<Value> = files
            .iter()
            .map(|f| json!({"checksum": {"value": f.sha1}, "size_in_bytes": f.size, "path": f.path, "mode": "755"}))
            .collect();
        let (matched, _) =
            self.send_json(Method::POST, "/v3/resource_matches", json!({"resources": resources})).await?;
        let matched: Vec<Value> = matched["resources"].as_array().cloned().unwrap_or_default();
        let is_matched = |f: &Bits| matched.iter().any(|m| m["checksum"]["value"] == f.sha1.as_str());
        let package_body = json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}});
        let (package, _) = self.send_json(Method::POST, "/v3/packages", package_body).await?;
        let package = package["guid"].as_str().context("a package guid")?.to_owned();
        let zip = zip_of(dir, files.iter().filter(|f| !is_matched(f)))?;
        let matched_resources: Vec<Value> = files
            .iter()
            .filter(|f| is_matched(f))
            .map(|f| json!({"checksum": {"value": f.sha1}, "size_in_bytes": f.size, "path": f.path, "mode": "755"}))
            .collect();
        let form = reqwest::multipart::Form::new()
            .text("resources", Value::from(matched_resources).to_string())
            .part("bits", reqwest::multipart::Part::bytes(zip).file_name("application.zip"));
        send(self.request(Method::POST, &format!("/v3/packages/{package}/upload")).multipart(form)).await?;
        self.poll(&format!("/v3/packages/{package}"), true, |p| match p["state"].as_str() {
            Some("READY") => Ok(true),
            Some("FAILED" | "EXPIRED") => bail!("package failed: {p}"),
            _ => Ok(false),
        })
        .await?;

        let staging_done = Arc::new(AtomicBool::new(false));
        // The app lookup that handling `StartingStaging` makes runs beside the build; the log stream follows it.
        let (streamed, build) = tokio::join!(
            async {
                let app = self.app_guid(name).await?;
                self.stream_logs(&app, &staging_done).await;
                anyhow::Ok(())
            },
            async {
                let (build, _) =
                    self.send_json(Method::POST, "/v3/builds", json!({"package": {"guid": package}})).await?;
                let build = build["guid"].as_str().context("a build guid")?.to_owned();
                let result = self
                    .poll(&format!("/v3/builds/{build}"), false, |b| match b["state"].as_str() {
                        Some("STAGED") => Ok(true),
                        Some("FAILED") => bail!("staging failed: {b}"),
                        _ => Ok(false),
                    })
                    .await;
                staging_done.store(true, Ordering::SeqCst);
                result
            }
        );
        streamed?;
        let droplet = build?["droplet"]["guid"].as_str().context("a droplet")?.to_owned();
        self.get(&format!("/v3/droplets/{droplet}")).await?;
        let current = json!({"data": {"guid": droplet}});
        self.send_json(Method::PATCH, &format!("/v3/apps/{app}/relationships/current_droplet"), current).await?;
        self.send_json(Method::POST, &format!("/v3/apps/{app}/actions/restart"), json!({})).await?;
        let processes = self.get(&format!("/v3/apps/{app}/processes")).await?;
        let web = processes["resources"][0]["guid"].as_str().context("a web process")?.to_owned();
        self.poll(&format!("/v3/processes/{web}/stats"), false, |s| {
            Ok(s["resources"].as_array().into_iter().flatten().any(|i| i["state"] == "RUNNING"))
        })
        .await?;
        for path in [
            format!("/v3/apps?names={name}&space_guids={space}"),
            format!("/v3/apps/{app}/processes"),
            format!("/v3/processes/{web}"),
            format!("/v3/processes/{web}/sidecars"),
            format!("/v3/processes/{web}/stats"),
            format!("/v3/apps/{app}/routes"),
            format!("/v3/apps/{app}/droplets/current"),
            format!("/v3/deployments?app_guids={app}&status_values=ACTIVE&order_by=-created_at&per_page=1&page=1"),
        ] {
            self.read(&path).await?;
        }
        Ok(())
    }

    /// The staging log stream: Log Cache's info, then reads that follow the newest envelope, 250 ms apart while
    /// they come back empty, until staging is done.
    async fn stream_logs(&self, app: &str, done: &AtomicBool) {
        let log_cache = &self.config.log_cache;
        let _ = self.read(&format!("{log_cache}/api/v1/info")).await;
        let mut since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        while !done.load(Ordering::SeqCst) {
            let path = format!("{log_cache}/api/v1/read/{app}?start_time={since}&envelope_types=LOG&limit=1000");
            let newest = match self.get(&path).await {
                Ok(batch) => batch["envelopes"]["batch"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["timestamp"].as_str().and_then(|t| t.parse::<u128>().ok()))
                    .max(),
                Err(_) => None,
            };
            match newest {
                Some(newest) => since = newest + 1,
                None => tokio::time::sleep(LOG_RETRY).await,
            }
        }
    }

    /// The lookups of `map-route` and `unmap-route`, in the CLI's order: the domain, the app, the route.
    async fn app_and_route(&self, app: &str, domain: &str, host: &str) -> Result<(String, Value)> {
        let domains = self.get(&format!("/v3/domains?names={domain}&per_page=1&page=1")).await?;
        let domain = domains["resources"][0]["guid"].as_str().context("a domain")?.to_owned();
        let app = self.app_guid(app).await?;
        let routes =
            self.get(&format!("/v3/routes?domain_guids={domain}&hosts={host}&paths=&per_page=1&page=1")).await?;
        let route = routes["resources"][0].clone();
        if route.is_null() {
            bail!("no route {host}.{domain}");
        }
        Ok((app, route))
    }

    /// `cf map-route APP DOMAIN --hostname HOST` (the route exists).
    async fn map_route(&self, app: &str, domain: &str, host: &str) -> Result<()> {
        let (app, route) = self.app_and_route(app, domain, host).await?;
        let guid = route["guid"].as_str().context("a route guid")?;
        let body = json!({"destinations": [{"app": {"guid": app}}]});
        self.send_json(Method::POST, &format!("/v3/routes/{guid}/destinations"), body).await?;
        Ok(())
    }

    /// `cf unmap-route APP DOMAIN --hostname HOST`.
    async fn unmap_route(&self, app: &str, domain: &str, host: &str) -> Result<()> {
        let (app, route) = self.app_and_route(app, domain, host).await?;
        let destination = route["destinations"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["app"]["guid"] == app.as_str())
            .and_then(|d| d["guid"].as_str())
            .context("the app is mapped to the route")?;
        let guid = route["guid"].as_str().context("a route guid")?;
        send(self.request(Method::DELETE, &format!("/v3/routes/{guid}/destinations/{destination}"))).await?;
        Ok(())
    }

    /// `cf rename OLD NEW`.
    async fn rename(&self, old: &str, new: &str) -> Result<()> {
        let app = self.app_guid(old).await?;
        self.send_json(Method::PATCH, &format!("/v3/apps/{app}"), json!({"name": new})).await?;
        Ok(())
    }

    /// `cf delete APP -r -f`: the routes mapped only to the app go with it.
    async fn delete(&self, name: &str) -> Result<()> {
        let app = self.app_guid(name).await?;
        let routes = self.get(&format!("/v3/apps/{app}/routes")).await?;
        for route in routes["resources"].as_array().into_iter().flatten() {
            let only_this_app =
                route["destinations"].as_array().into_iter().flatten().all(|d| d["app"]["guid"] == app.as_str());
            if !only_this_app {
                bail!("route {} is bound to more than one app", route["url"]);
            }
            let guid = route["guid"].as_str().context("a route guid")?;
            let (_, job) = send(self.request(Method::DELETE, &format!("/v3/routes/{guid}"))).await?;
            self.poll_job(job).await?;
        }
        let (_, job) = send(self.request(Method::DELETE, &format!("/v3/apps/{app}"))).await?;
        self.poll_job(job).await
    }
}

/// A file of the app, as resource matching names it.
struct Bits {
    path: String,
    size: u64,
    sha1: String,
}

/// Every file under `dir` (the benchmark's apps are flat), with its SHA-1.
fn bits(dir: &Path) -> Result<Vec<Bits>> {
    use sha1::Digest;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let bytes = std::fs::read(entry.path())?;
        let sha1: String = sha1::Sha1::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let path = entry.file_name().to_string_lossy().into_owned();
        files.push(Bits { path, size: bytes.len() as u64, sha1 });
    }
    Ok(files)
}

/// A zip of `files` (executable, as the CLI keeps their mode).
fn zip_of<'a>(dir: &Path, files: impl Iterator<Item = &'a Bits>) -> Result<Vec<u8>> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    for file in files {
        zip.start_file(file.path.as_str(), options)?;
        zip.write_all(&std::fs::read(dir.join(&file.path))?)?;
    }
    Ok(zip.finish()?.into_inner())
}
