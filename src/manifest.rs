//! The app manifest: a user's (loaded, `((vars))` resolved, our app picked, checked locally), or one Cloud
//! Foundry generated for an app; what it says (routes, scale, env names, services, buildpacks); the rewritten
//! copy a deploy's candidate is created from; and a copy safe to print.
//!
//! The candidate gets CF's own `apply_manifest`, so every manifest feature CF supports works; we only change
//! what blue-green needs: the name, the routes (the temporary route only, or none), env and health-check
//! overrides, and keys that only the cf CLI understands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{HealthCheck, HealthCheckType};

/// Values for `((vars))`: the `vars_files` in order, then `vars`, later ones winning, as `cf push` does.
#[derive(Debug, Default, Clone)]
pub struct Vars(Map<String, Value>);

impl Vars {
    pub fn load(put_dir: &Path, vars_files: &[String], vars: &BTreeMap<String, Value>) -> Result<Vars> {
        let mut all = Map::new();
        for file in vars_files {
            let path = put_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("params.vars_files: cannot read {file} ({})", path.display()))?;
            let parsed: Value = serde_norway::from_str(&text)
                .map_err(|e| anyhow!("params.vars_files: {file} is not valid YAML: {e}"))?;
            match parsed {
                Value::Object(map) => all.extend(map),
                Value::Null => {}
                other => bail!("params.vars_files: {file} must be a map of names to values, not {}", kind(&other)),
            }
        }
        all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(Vars(all))
    }

    fn lookup(&self, name: &str) -> Option<&Value> {
        let mut parts = name.split('.');
        let mut value = self.0.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }
}

/// One application of a manifest, with vars resolved.
#[derive(Debug, Clone)]
pub struct AppManifest {
    /// Where it came from, for error messages ("manifest ci/manifest.yml", "the manifest of myapp").
    origin: String,
    app: Map<String, Value>,
}

/// Manifest keys that only the cf CLI reads; CF's apply_manifest must not see them for the candidate.
/// The lifecycle types of CC (`lib/cloud_controller/diego/lifecycles/lifecycles.rb`).
pub const BUILDPACK: &str = "buildpack";
pub const DOCKER: &str = "docker";
pub const CNB: &str = "cnb";

const CLIENT_SIDE_KEYS: &[&str] =
    &["path", "random-route", "default-route", "no-hostname", "host", "hosts", "domain", "domains"];

impl AppManifest {
    /// Reads the manifest at `path` (given as `param`), resolves vars and selects `app_name`.
    pub fn load(path: &Path, param: &str, vars: &Vars, app_name: &str) -> Result<AppManifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("params.manifest: cannot read {param} ({})", path.display()))?;
        AppManifest::parse(&format!("manifest {param}"), &text, vars, app_name)
    }

    /// A manifest with nothing in it but the app's name (a first deploy without a manifest).
    pub fn minimal(app_name: &str) -> AppManifest {
        let mut app = Map::new();
        app.insert("name".into(), Value::String(app_name.into()));
        AppManifest { origin: "the default manifest".into(), app }
    }

    /// Parses manifest YAML, resolves vars and selects the application called `app_name` (or the only one).
    pub fn parse(origin: &str, text: &str, vars: &Vars, app_name: &str) -> Result<AppManifest> {
        let mut doc: Value = serde_norway::from_str(text).map_err(|e| anyhow!("{origin} is not valid YAML: {e}"))?;
        let mut missing = BTreeSet::new();
        interpolate(&mut doc, vars, &mut missing);
        if !missing.is_empty() {
            let names: Vec<_> = missing.into_iter().collect();
            bail!(
                "{origin} uses vars that have no value: {} (give them in params.vars or params.vars_files)",
                names.join(", ")
            );
        }
        let manifest = AppManifest::select(origin, doc, app_name)?;
        manifest.check()?;
        Ok(manifest)
    }

    /// Parses a manifest whose values are final — one Cloud Foundry generated for an app
    /// (`GET /v3/apps/:guid/manifest`), or the candidate's own — so nothing is interpolated (an env value may
    /// well contain `((`).
    pub fn literal(origin: &str, text: &str, app_name: &str) -> Result<AppManifest> {
        let doc: Value = serde_norway::from_str(text).map_err(|e| anyhow!("{origin} is not valid YAML: {e}"))?;
        AppManifest::select(origin, doc, app_name)
    }

    fn select(origin: &str, mut doc: Value, app_name: &str) -> Result<AppManifest> {
        let Some(Value::Array(apps)) = doc.get_mut("applications").map(Value::take) else {
            bail!("{origin} has no 'applications' list");
        };
        let mut apps: Vec<Map<String, Value>> = apps
            .into_iter()
            .enumerate()
            .map(|(i, app)| match app {
                Value::Object(map) if map.get("name").is_some_and(Value::is_string) => Ok(map),
                _ => Err(anyhow!("{origin}: applications[{i}] must be a map with a 'name'")),
            })
            .collect::<Result<_>>()?;
        let app = match apps.len() {
            0 => bail!("{origin} has an empty 'applications' list"),
            1 => apps.remove(0),
            _ => {
                let names: Vec<String> =
                    apps.iter().map(|a| a["name"].as_str().unwrap_or_default().to_owned()).collect();
                let index = names.iter().position(|n| n.eq_ignore_ascii_case(app_name)).ok_or_else(|| {
                    anyhow!(
                        "{origin} has several applications ({}) and none is source.app '{app_name}'",
                        names.join(", ")
                    )
                })?;
                apps.swap_remove(index)
            }
        };
        Ok(AppManifest { origin: origin.to_owned(), app })
    }

    /// The name the manifest gives the app.
    pub fn name(&self) -> &str {
        self.app.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    /// The `route:` strings of `routes`, or `None` when the manifest does not say.
    pub fn routes(&self) -> Option<Vec<String>> {
        let routes = self.app.get("routes")?.as_array()?;
        Some(routes.iter().filter_map(|r| r.get("route").and_then(Value::as_str).map(str::to_owned)).collect())
    }

    /// The `protocol:` of each entry of `routes` (`http1`, `http2`), in the order of [`AppManifest::routes`].
    pub fn route_protocols(&self) -> Vec<Option<String>> {
        let routes = self.app.get("routes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        routes
            .iter()
            .filter(|r| r.get("route").is_some_and(Value::is_string))
            .map(|r| r.get("protocol").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// `no-route: true`: a worker without routes.
    pub fn no_route(&self) -> bool {
        self.app.get("no-route").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The client-side `path` key: where the bits are, relative to the manifest's directory.
    pub fn path(&self) -> Option<&str> {
        self.app.get("path").and_then(Value::as_str)
    }

    /// The docker image the manifest names, if any.
    pub fn docker_image(&self) -> Option<&str> {
        self.app.get("docker")?.get("image")?.as_str()
    }

    /// The stack the manifest asks for.
    pub fn stack(&self) -> Option<&str> {
        self.app.get("stack").and_then(Value::as_str)
    }

    /// The buildpacks the manifest asks for (also the deprecated singular `buildpack`); empty: detected.
    pub fn buildpacks(&self) -> Vec<String> {
        let listed = self.app.get("buildpacks").and_then(Value::as_array).into_iter().flatten();
        listed.chain(self.app.get("buildpack")).filter_map(Value::as_str).map(str::to_owned).collect()
    }

    /// The lifecycle type the manifest asks for (`lifecycle: buildpack|cnb`, or `docker` with a `docker` key).
    pub fn lifecycle(&self) -> Option<&str> {
        if self.app.contains_key("docker") {
            return Some(DOCKER);
        }
        self.app.get("lifecycle")?.as_str()
    }

    /// The docker registry user the manifest names, if any.
    pub fn docker_username(&self) -> Option<&str> {
        self.app.get("docker")?.get("username")?.as_str()
    }

    /// The `env` map, values as text.
    pub fn env(&self) -> BTreeMap<String, String> {
        let Some(Value::Object(env)) = self.app.get("env") else { return BTreeMap::new() };
        env.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect()
    }

    /// The scale the manifest gives each process type it mentions (app-level keys are the web process's).
    pub fn process_scales(&self) -> Vec<ProcessScale> {
        let scale_of = |kind: &str, entry: &Map<String, Value>| ProcessScale {
            kind: kind.to_owned(),
            instances: entry.get("instances").and_then(Value::as_u64).map(|n| n as u32),
            memory: entry.get("memory").map(scalar_text),
            disk_quota: ["disk_quota", "disk-quota"].iter().find_map(|k| entry.get(*k)).map(scalar_text),
            command: entry.get("command").and_then(Value::as_str).map(str::to_owned),
        };
        let mut scales = vec![scale_of("web", &self.app)];
        let processes = self.app.get("processes").and_then(Value::as_array).into_iter().flatten();
        for entry in processes.filter_map(Value::as_object) {
            let Some(kind) = entry.get("type").and_then(Value::as_str) else { continue };
            let scale = scale_of(kind, entry);
            match scales.iter_mut().find(|s| s.kind == kind) {
                Some(existing) => existing.overlay(scale),
                None => scales.push(scale),
            }
        }
        scales
    }

    /// Whether the manifest sets `key` (instances, memory, disk_quota, …) for `process_type`, at app level
    /// (which means the web process) or in its `processes` entry.
    pub fn sets(&self, process_type: &str, key: &str) -> bool {
        let in_process = self.process(process_type).is_some_and(|p| p.contains_key(key));
        in_process || (process_type == "web" && self.app.contains_key(key))
    }

    /// The names of the service instances the manifest binds.
    pub fn services(&self) -> Vec<String> {
        self.service_entries().iter().filter_map(service_name).map(str::to_owned).collect()
    }

    /// The manifest's `services` entries as written: a name, or `{name, binding_name, parameters}`.
    pub fn service_entries(&self) -> &[Value] {
        self.app.get("services").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// Gives the plain-name entries of `services` the binding names in `binding_names` (instance → binding
    /// name): CC's generated manifest lists services by instance name only (`services_properties_presenter.rb`),
    /// so a binding's own name is read from the binding and written back here.
    pub fn name_bindings(&mut self, binding_names: &BTreeMap<String, String>) {
        let Some(Value::Array(services)) = self.app.get_mut("services") else { return };
        for entry in services.iter_mut() {
            if let Some(binding_name) = entry.as_str().and_then(|name| binding_names.get(name)) {
                *entry = json!({ "name": entry.as_str(), "binding_name": binding_name });
            }
        }
    }

    fn process(&self, process_type: &str) -> Option<&Map<String, Value>> {
        self.app
            .get("processes")?
            .as_array()?
            .iter()
            .filter_map(Value::as_object)
            .find(|p| p.get("type").and_then(Value::as_str) == Some(process_type))
    }

    /// Local checks of what CF would reject later, so a bad manifest fails before anything is touched.
    fn check(&self) -> Result<()> {
        let origin = &self.origin;
        let mut problems = Vec::new();
        if let Some(routes) = self.app.get("routes") {
            match routes.as_array() {
                None => problems.push("routes must be a list of {route: host.domain[/path]}".to_owned()),
                Some(routes) => {
                    for (i, route) in routes.iter().enumerate() {
                        match route.get("route").and_then(Value::as_str) {
                            Some(url) => {
                                if let Err(why) = check_route(url) {
                                    problems.push(format!("routes[{i}].route '{url}' {why}"));
                                }
                            }
                            None => problems.push(format!("routes[{i}] must be a map with a 'route' string")),
                        }
                        if let Some(protocol) = route.get("protocol")
                            && !protocol.as_str().is_some_and(|p| ["http1", "http2"].contains(&p))
                        {
                            problems.push(format!("routes[{i}].protocol {protocol} is not http1 or http2"));
                        }
                    }
                }
            }
            if self.no_route() {
                problems.push("'no-route: true' cannot be combined with 'routes'".into());
            }
        }
        let scopes = std::iter::once(("", &self.app)).chain(
            self.app
                .get("processes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .map(|p| ("processes[]: ", p)),
        );
        for (scope, entries) in scopes {
            if let Some(kind) = entries.get("health-check-type") {
                let known = ["port", "process", "http", "none"];
                if !kind.as_str().is_some_and(|k| known.contains(&k)) {
                    problems.push(format!("{scope}health-check-type {kind} is not one of {}", known.join(", ")));
                }
            }
            if let Some(endpoint) = entries.get("health-check-http-endpoint")
                && !endpoint.as_str().is_some_and(|e| e.starts_with('/'))
            {
                problems.push(format!("{scope}health-check-http-endpoint {endpoint} must be a path starting with /"));
            }
            if let Some(timeout) = entries.get("timeout") {
                let max = crate::config::MAX_HEALTH_CHECK_TIMEOUT;
                match timeout.as_u64() {
                    Some(t) if t > u64::from(max) => problems.push(format!(
                        "{scope}timeout {timeout} is above {max} seconds, the most Cloud Foundry allows by default"
                    )),
                    Some(1..) => {}
                    _ => {
                        problems.push(format!("{scope}timeout {timeout} must be a whole number of seconds, at least 1"))
                    }
                }
            }
            if let Some(instances) = entries.get("instances")
                && !instances.is_u64()
            {
                problems.push(format!("{scope}instances {instances} must be a whole number"));
            }
            for key in ["memory", "disk_quota", "disk-quota"] {
                if let Some(size) = entries.get(key)
                    && !is_byte_size(size)
                {
                    problems.push(format!("{scope}{key} {size} must be a size like 256M or 1G"));
                }
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(anyhow!("{origin}: {}", problems.join("; "))) }
    }

    /// The manifest the candidate is created from: named `name`, routed only to `temporary_route` (or
    /// nothing), with env = `inherited_env` overlaid by the manifest's env and then `param_env`, extra
    /// `inherited_services` bound, `health_check` overrides applied, and client-side keys removed.
    pub fn for_candidate(&self, candidate: &Candidate) -> String {
        let mut app = self.app.clone();
        app.insert("name".into(), Value::String(candidate.name.to_owned()));
        for key in CLIENT_SIDE_KEYS {
            app.remove(*key);
        }
        app.remove("routes");
        app.remove("no-route");
        match candidate.temporary_route {
            Some(route) => {
                app.insert("routes".into(), json!([{ "route": route }]));
            }
            None => {
                app.insert("no-route".into(), Value::Bool(true));
            }
        }

        let mut env: Map<String, Value> =
            candidate.inherited_env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        if let Some(Value::Object(manifest_env)) = app.get("env") {
            env.extend(manifest_env.iter().map(|(k, v)| (k.clone(), Value::String(scalar_text(v)))));
        }
        env.extend(candidate.param_env.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))));
        if env.is_empty() {
            app.remove("env");
        } else {
            app.insert("env".into(), Value::Object(env));
        }

        let listed = self.services();
        let extra: Vec<Value> = candidate
            .inherited_services
            .iter()
            .filter(|entry| service_name(entry).is_some_and(|name| !listed.iter().any(|l| l == name)))
            .cloned()
            .collect();
        if !extra.is_empty() {
            let services = app.entry("services").or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(services) = services {
                services.extend(extra);
            }
        }

        if candidate.lifecycle == DOCKER {
            for key in ["lifecycle", "buildpack", "buildpacks", "stack", "cnb-credentials"] {
                app.remove(key);
            }
        } else {
            app.remove("docker");
            if app.contains_key("lifecycle") || candidate.lifecycle == CNB {
                app.insert("lifecycle".into(), Value::String(candidate.lifecycle.to_owned()));
            }
        }
        if let Some(image) = candidate.docker_image {
            let docker = app.entry("docker").or_insert_with(|| json!({}));
            docker["image"] = Value::String(image.to_owned());
            if let Some(username) = candidate.docker_username {
                docker["username"] = Value::String(username.to_owned());
            }
        }

        if let Some(inherited) = &candidate.inherited_web_scale {
            let unset = |key: &str| !(self.sets("web", key) || key == "disk_quota" && self.sets("web", "disk-quota"));
            let values = [
                ("instances", inherited.instances.map(Value::from)),
                ("memory", inherited.memory.clone().map(Value::from)),
                ("disk_quota", inherited.disk_quota.clone().map(Value::from)),
            ];
            let target = web_process_entry(&mut app);
            for (key, value) in values {
                if let Some(value) = value.filter(|_| unset(key)) {
                    target.insert(key.into(), value);
                }
            }
        }

        if let Some(check) = candidate.health_check {
            let target = web_process_entry(&mut app);
            apply_health_check(target, check);
        }

        if let Some(Value::Object(metadata)) = app.get_mut("metadata") {
            for section in ["labels", "annotations"] {
                if let Some(Value::Object(entries)) = metadata.get_mut(section) {
                    entries.retain(|key, _| !key.starts_with(crate::record::PREFIX));
                }
            }
        }

        let doc = json!({ "applications": [Value::Object(app)] });
        serde_norway::to_string(&doc).expect("a JSON value always serializes to YAML")
    }
}

/// How many instances of a process type run, how big each is (manifest notation: `256M`, `1G`), and a start
/// command set on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessScale {
    #[serde(rename = "type")]
    pub kind: String,
    pub instances: Option<u32>,
    pub memory: Option<String>,
    pub disk_quota: Option<String>,
    /// A start command set on the process (else the droplet's process type runs).
    pub command: Option<String>,
}

impl ProcessScale {
    /// Memory per instance in MB.
    pub fn memory_mb(&self) -> Option<u64> {
        self.memory.as_deref().and_then(megabytes)
    }

    /// Disk per instance in MB.
    pub fn disk_mb(&self) -> Option<u64> {
        self.disk_quota.as_deref().and_then(megabytes)
    }

    /// Takes every value `other` has.
    fn overlay(&mut self, other: ProcessScale) {
        self.instances = other.instances.or(self.instances);
        self.memory = other.memory.or(self.memory.take());
        self.disk_quota = other.disk_quota.or(self.disk_quota.take());
        self.command = other.command.or(self.command.take());
    }
}

/// The instance name of a `services` entry.
fn service_name(entry: &Value) -> Option<&str> {
    entry.as_str().or_else(|| entry.get("name").and_then(Value::as_str))
}

/// `yaml` (a manifest) with every value that may be secret — env values, service binding parameters — replaced,
/// so it can be printed.
pub fn masked(yaml: &str) -> String {
    const HIDDEN: &str = "(hidden)";
    let Ok(mut doc) = serde_norway::from_str::<Value>(yaml) else { return "(the manifest cannot be shown)".into() };
    for app in doc.get_mut("applications").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(Value::Object(env)) = app.get_mut("env") {
            env.values_mut().for_each(|v| *v = Value::String(HIDDEN.into()));
        }
        for service in app.get_mut("services").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(parameters) = service.get_mut("parameters") {
                *parameters = Value::String(HIDDEN.into());
            }
        }
    }
    serde_norway::to_string(&doc).expect("a JSON value always serializes to YAML")
}

/// What the candidate's manifest is made from, besides the user's manifest.
#[derive(Debug, Default)]
pub struct Candidate<'a> {
    pub name: &'a str,
    /// `host.domain` of the temporary route, or `None` for a `no-route` app.
    pub temporary_route: Option<&'a str>,
    /// Production's user-set env vars (so values set with `cf set-env` survive the deploy).
    pub inherited_env: BTreeMap<String, String>,
    /// `params.environment_variables` (and the secret ones): they win over everything.
    pub param_env: BTreeMap<String, String>,
    /// Production's `services` entries (with their binding names); those the manifest does not list are added.
    pub inherited_services: Vec<Value>,
    /// Production's web scale, for whatever of it the manifest leaves unset (so a 10-instance app never swaps
    /// to 1 instance).
    pub inherited_web_scale: Option<ProcessScale>,
    pub health_check: Option<&'a HealthCheck>,
    pub docker_image: Option<&'a str>,
    pub docker_username: Option<&'a str>,
    /// The lifecycle type the candidate app was created with ([`DOCKER`], [`CNB`] or [`BUILDPACK`]): the
    /// manifest must not ask for another (CC: "Lifecycle type cannot be changed", `app_update.rb`), nor name
    /// buildpacks or a stack beside `docker` ("Cannot specify both buildpack(s) and docker keys",
    /// `app_manifest_message.rb`), as CC's generated manifest of the other kind of app would.
    pub lifecycle: &'a str,
}

/// The entry health-check keys go to: the web process's `processes` entry if there is one, else the app.
fn web_process_entry(app: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let has_web_entry = app
        .get("processes")
        .and_then(Value::as_array)
        .is_some_and(|ps| ps.iter().any(|p| p.get("type").and_then(Value::as_str) == Some("web")));
    if !has_web_entry {
        return app;
    }
    let processes = app.get_mut("processes").and_then(Value::as_array_mut).expect("checked above");
    processes
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|p| p.get("type").and_then(Value::as_str) == Some("web"))
        .expect("checked above")
}

fn apply_health_check(entry: &mut Map<String, Value>, check: &HealthCheck) {
    if let Some(kind) = check.check_type {
        entry.insert("health-check-type".into(), Value::String(kind.as_str().into()));
        if kind != HealthCheckType::Http {
            entry.remove("health-check-http-endpoint");
        }
    }
    if let Some(endpoint) = &check.endpoint {
        entry.insert("health-check-http-endpoint".into(), Value::String(endpoint.clone()));
    }
    if let Some(timeout) = check.timeout {
        entry.insert("timeout".into(), Value::from(timeout));
    }
    if let Some(timeout) = check.invocation_timeout {
        entry.insert("health-check-invocation-timeout".into(), Value::from(timeout));
    }
}

/// Replaces `((name))` in every string: a string that is exactly one var takes the var's value with its type
/// (so `instances: ((count))` stays a number); vars inside longer strings are spliced in as text.
fn interpolate(value: &mut Value, vars: &Vars, missing: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            if let Some(name) = whole_var(text) {
                match vars.lookup(name) {
                    Some(found) => *value = found.clone(),
                    None => {
                        missing.insert(name.to_owned());
                    }
                }
                return;
            }
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            while let Some(start) = rest.find("((") {
                let Some(len) = rest[start + 2..].find("))") else { break };
                let name = rest[start + 2..start + 2 + len].trim();
                out.push_str(&rest[..start]);
                match vars.lookup(name) {
                    Some(found) => out.push_str(&scalar_text(found)),
                    None => {
                        missing.insert(name.to_owned());
                    }
                }
                rest = &rest[start + 2 + len + 2..];
            }
            out.push_str(rest);
            *text = out;
        }
        Value::Array(items) => items.iter_mut().for_each(|item| interpolate(item, vars, missing)),
        Value::Object(map) => map.values_mut().for_each(|item| interpolate(item, vars, missing)),
        _ => {}
    }
}

fn whole_var(text: &str) -> Option<&str> {
    let name = text.trim().strip_prefix("((")?.strip_suffix("))")?.trim();
    (!name.is_empty() && !name.contains("((") && !name.contains("))")).then_some(name)
}

/// A value as env-var text: strings as is, other scalars as YAML would print them.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn check_route(url: &str) -> Result<(), &'static str> {
    if url.contains("://") {
        return Err("must not have a scheme (write host.domain[/path])");
    }
    let host_and_domain = url.split('/').next().unwrap_or_default();
    let host_and_domain = host_and_domain.split(':').next().unwrap_or_default();
    if host_and_domain.is_empty() || !host_and_domain.contains('.') {
        return Err("is not a route (expected host.domain[/path])");
    }
    if host_and_domain.split('.').any(|label| label.is_empty() || label.len() > 63) {
        return Err("has an empty or too long DNS label");
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '*';
    if !host_and_domain.chars().all(valid) {
        return Err("has characters a hostname cannot have");
    }
    Ok(())
}

fn is_byte_size(value: &Value) -> bool {
    let Some(text) = value.as_str() else { return false };
    let text = text.trim().to_ascii_uppercase();
    let number_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    number_end > 0 && matches!(text[number_end..].trim(), "M" | "MB" | "G" | "GB" | "T" | "TB")
}

/// `256M`, `1G`, `1024MB`, `2T` → megabytes.
fn megabytes(size: &str) -> Option<u64> {
    let size = size.trim().to_ascii_uppercase();
    let split = size.find(|c: char| !c.is_ascii_digit())?;
    let number: u64 = size[..split].parse().ok()?;
    match size[split..].trim() {
        "M" | "MB" => Some(number),
        "G" | "GB" => Some(number * 1024),
        "T" | "TB" => Some(number * 1024 * 1024),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    crate::config::json_kind(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: Value) -> Vars {
        Vars(pairs.as_object().unwrap().clone())
    }

    fn parse(text: &str) -> Result<AppManifest> {
        AppManifest::parse(
            "manifest m.yml",
            text,
            &vars(json!({"count": 3, "domain": "example.com", "db": {"user": "u1"}})),
            "myapp",
        )
    }

    fn candidate_yaml(manifest: &AppManifest, candidate: Candidate) -> Value {
        serde_norway::from_str(&manifest.for_candidate(&candidate)).unwrap()
    }

    #[test]
    fn whole_vars_keep_their_type_and_partial_vars_splice_text() {
        let manifest = parse(
            "applications:\n- name: myapp\n  instances: ((count))\n  routes:\n  - route: myapp.((domain))\n  env:\n    DB_USER: ((db.user))\n",
        )
        .unwrap();
        assert_eq!(manifest.app["instances"], json!(3));
        assert_eq!(manifest.routes().unwrap(), vec!["myapp.example.com"]);
        assert_eq!(manifest.app["env"]["DB_USER"], json!("u1"));
    }

    #[test]
    fn every_missing_var_is_listed() {
        let err =
            parse("applications:\n- name: myapp\n  memory: ((mem))\n  env: {A: \"x-((a))-((b))\"}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest m.yml uses vars that have no value: a, b, mem (give them in params.vars or params.vars_files)"
        );
    }

    #[test]
    fn selects_source_app_among_several() {
        let text = "applications:\n- name: worker\n- name: myapp\n  instances: 2\n";
        assert_eq!(parse(text).unwrap().app["instances"], json!(2));
        let err = AppManifest::parse("manifest m.yml", text, &Vars::default(), "other").unwrap_err();
        assert!(
            err.to_string().contains("several applications (worker, myapp) and none is source.app 'other'"),
            "{err}"
        );
    }

    #[test]
    fn invalid_yaml_and_values_are_reported_locally() {
        assert!(parse("applications: [").unwrap_err().to_string().starts_with("manifest m.yml is not valid YAML"));
        let err = parse(
            "applications:\n- name: myapp\n  health-check-type: tcp\n  memory: lots\n  routes:\n  - route: https://x.example.com\n  - route: nodomain\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("health-check-type \"tcp\" is not one of port, process, http, none"), "{err}");
        assert!(err.contains("memory \"lots\" must be a size"), "{err}");
        assert!(err.contains("routes[0].route 'https://x.example.com' must not have a scheme"), "{err}");
        assert!(err.contains("routes[1].route 'nodomain' is not a route"), "{err}");
    }

    #[test]
    fn a_health_check_timeout_cloud_foundry_refuses_is_refused_locally() {
        let err = parse("applications:\n- name: myapp\n  timeout: 600\n").unwrap_err().to_string();
        assert!(err.contains("timeout 600 is above 180 seconds"), "{err}");
        let err = parse("applications:\n- name: myapp\n  processes:\n  - type: web\n    timeout: 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("processes[]: timeout 0 must be a whole number"), "{err}");
        assert!(parse("applications:\n- name: myapp\n  timeout: 180\n").is_ok());
    }

    #[test]
    fn route_protocols_are_read_in_order_and_checked() {
        let manifest = parse(
            "applications:\n- name: myapp\n  routes:\n  - route: a.example.com\n  - route: b.example.com\n    protocol: http2\n",
        )
        .unwrap();
        assert_eq!(manifest.route_protocols(), [None, Some("http2".to_owned())]);
        let err = parse("applications:\n- name: myapp\n  routes:\n  - route: a.example.com\n    protocol: grpc\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("routes[0].protocol \"grpc\" is not http1 or http2"), "{err}");
    }

    #[test]
    fn no_route_with_routes_is_rejected() {
        let err =
            parse("applications:\n- name: myapp\n  no-route: true\n  routes: [{route: a.example.com}]\n").unwrap_err();
        assert!(err.to_string().contains("'no-route: true' cannot be combined with 'routes'"));
    }

    #[test]
    fn candidate_gets_green_name_temporary_route_and_no_client_side_keys() {
        let manifest = parse(
            "applications:\n- name: myapp\n  path: build/app.jar\n  random-route: true\n  buildpacks: [java_buildpack]\n  routes:\n  - route: myapp.example.com\n  - route: www.example.com/api\n",
        )
        .unwrap();
        let app = &candidate_yaml(
            &manifest,
            Candidate { name: "myapp-green", temporary_route: Some("myapp-green.example.com"), ..Default::default() },
        )["applications"][0];
        assert_eq!(app["name"], json!("myapp-green"));
        assert_eq!(app["routes"], json!([{"route": "myapp-green.example.com"}]));
        assert_eq!(app["buildpacks"], json!(["java_buildpack"]));
        assert!(app.get("path").is_none() && app.get("random-route").is_none() && app.get("env").is_none());
    }

    #[test]
    fn candidate_without_route_is_no_route() {
        let manifest = parse("applications:\n- name: myapp\n  no-route: true\n").unwrap();
        let app = &candidate_yaml(&manifest, Candidate { name: "g", ..Default::default() })["applications"][0];
        assert_eq!(app["no-route"], json!(true));
        assert!(app.get("routes").is_none());
    }

    #[test]
    fn env_precedence_is_inherited_then_manifest_then_params() {
        let manifest = parse("applications:\n- name: myapp\n  env: {A: manifest, B: manifest, N: 5}\n").unwrap();
        let inherited = BTreeMap::from([("A".to_owned(), "blue".to_owned()), ("C".to_owned(), "blue".to_owned())]);
        let params = BTreeMap::from([("B".to_owned(), "param".to_owned())]);
        let app = &candidate_yaml(
            &manifest,
            Candidate { name: "g", inherited_env: inherited, param_env: params, ..Default::default() },
        )["applications"][0];
        assert_eq!(app["env"], json!({"A": "manifest", "B": "param", "C": "blue", "N": "5"}));
    }

    #[test]
    fn inherited_services_are_added_once() {
        let manifest =
            parse("applications:\n- name: myapp\n  services: [db, {name: cache, binding_name: c}]\n").unwrap();
        let inherited = vec![json!("db"), json!({"name": "queue", "binding_name": "q"})];
        let app = &candidate_yaml(
            &manifest,
            Candidate { name: "g", inherited_services: inherited, ..Default::default() },
        )["applications"][0];
        assert_eq!(
            app["services"],
            json!(["db", {"name": "cache", "binding_name": "c"}, {"name": "queue", "binding_name": "q"}])
        );
    }

    #[test]
    fn binding_names_read_from_the_bindings_go_back_into_a_generated_manifest() {
        let mut manifest = AppManifest::literal("the manifest of shop", GENERATED, "shop").unwrap();
        manifest.name_bindings(&BTreeMap::from([("db".to_owned(), "primary".to_owned())]));
        assert_eq!(manifest.service_entries(), [json!("redis"), json!({"name": "db", "binding_name": "primary"})]);
        assert_eq!(manifest.services(), ["redis", "db"]);
    }

    #[test]
    fn health_check_override_goes_to_the_web_process_entry_when_present() {
        let check = HealthCheck {
            check_type: Some(HealthCheckType::Http),
            endpoint: Some("/healthcheck".into()),
            timeout: Some(90),
            invocation_timeout: None,
        };
        let plain = parse("applications:\n- name: myapp\n").unwrap();
        let app = &candidate_yaml(&plain, Candidate { name: "g", health_check: Some(&check), ..Default::default() })["applications"]
            [0];
        assert_eq!(app["health-check-type"], json!("http"));
        assert_eq!(app["health-check-http-endpoint"], json!("/healthcheck"));
        assert_eq!(app["timeout"], json!(90));

        let with_processes =
            parse("applications:\n- name: myapp\n  processes:\n  - type: web\n    instances: 2\n  - type: worker\n")
                .unwrap();
        let app =
            &candidate_yaml(&with_processes, Candidate { name: "g", health_check: Some(&check), ..Default::default() })
                ["applications"][0];
        assert_eq!(app["processes"][0]["health-check-type"], json!("http"));
        assert!(app.get("health-check-type").is_none());
        assert!(app["processes"][1].get("health-check-type").is_none());
    }

    #[test]
    fn sets_knows_app_level_means_web() {
        let manifest =
            parse("applications:\n- name: myapp\n  memory: 1G\n  processes:\n  - type: worker\n    instances: 2\n")
                .unwrap();
        assert!(manifest.sets("web", "memory"));
        assert!(!manifest.sets("web", "instances"));
        assert!(manifest.sets("worker", "instances"));
        assert!(!manifest.sets("worker", "memory"));
    }

    #[test]
    fn vars_files_load_in_order_and_vars_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yml"), "x: from-a\ny: from-a\n").unwrap();
        std::fs::write(dir.path().join("b.yml"), "y: from-b\nz: from-b\n").unwrap();
        let params = BTreeMap::from([("z".to_owned(), json!("from-params"))]);
        let vars = Vars::load(dir.path(), &["a.yml".into(), "b.yml".into()], &params).unwrap();
        assert_eq!(vars.lookup("x"), Some(&json!("from-a")));
        assert_eq!(vars.lookup("y"), Some(&json!("from-b")));
        assert_eq!(vars.lookup("z"), Some(&json!("from-params")));
        let err = Vars::load(dir.path(), &["missing.yml".into()], &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().starts_with("params.vars_files: cannot read missing.yml"), "{err}");
    }

    #[test]
    fn sizes_convert_to_megabytes() {
        assert_eq!(megabytes("256M"), Some(256));
        assert_eq!(megabytes("1G"), Some(1024));
        assert_eq!(megabytes("2gb"), Some(2048));
        assert_eq!(megabytes("lots"), None);
    }

    #[test]
    fn process_scales_merge_app_level_and_process_entries() {
        let manifest = parse(
            "applications:\n- name: myapp\n  instances: 4\n  processes:\n  - type: web\n    memory: 512M\n  - type: worker\n    instances: 2\n    disk_quota: 1G\n",
        )
        .unwrap();
        assert_eq!(
            manifest.process_scales(),
            vec![
                ProcessScale {
                    kind: "web".into(),
                    instances: Some(4),
                    memory: Some("512M".into()),
                    ..ProcessScale::default()
                },
                ProcessScale {
                    kind: "worker".into(),
                    instances: Some(2),
                    disk_quota: Some("1G".into()),
                    ..ProcessScale::default()
                },
            ]
        );
    }

    #[test]
    fn inherited_web_scale_fills_only_what_the_manifest_leaves_unset() {
        let manifest = parse("applications:\n- name: myapp\n  memory: 1G\n").unwrap();
        let inherited = ProcessScale {
            kind: "web".into(),
            instances: Some(10),
            memory: Some("256M".into()),
            disk_quota: Some("2G".into()),
            ..ProcessScale::default()
        };
        let app = &candidate_yaml(
            &manifest,
            Candidate { name: "g", inherited_web_scale: Some(inherited), ..Default::default() },
        )["applications"][0];
        assert_eq!(app["instances"], json!(10));
        assert_eq!(app["memory"], json!("1G"));
        assert_eq!(app["disk_quota"], json!("2G"));
    }

    #[test]
    fn our_own_metadata_is_not_copied_to_the_candidate() {
        let manifest = parse(
            "applications:\n- name: myapp\n  metadata:\n    labels: {team: a, cf-blue-green-resource.concourse/role: candidate}\n    annotations: {cf-blue-green-resource.concourse/deployed-at: x, note: keep}\n",
        )
        .unwrap();
        let app = &candidate_yaml(&manifest, Candidate { name: "g", ..Default::default() })["applications"][0];
        assert_eq!(app["metadata"], json!({"labels": {"team": "a"}, "annotations": {"note": "keep"}}));
    }

    #[test]
    fn final_manifests_are_taken_literally() {
        let text = "applications:\n- name: myapp\n  env:\n    TEMPLATE: \"((not-a-var))\"\n";
        let manifest = AppManifest::literal("the manifest of myapp", text, "myapp").unwrap();
        assert_eq!(manifest.env()["TEMPLATE"], "((not-a-var))");
        assert!(parse(text).is_err(), "a user's manifest resolves vars");
    }

    /// The shape cloud_controller_ng generates (`app_manifest_presenter.rb` and its property presenters, key
    /// order as theirs; `spec/request/app_manifests_spec.rb`), with a secret value: services by name only,
    /// `lifecycle` and `features` always, routes with their protocol.
    const GENERATED: &str = r#"---
applications:
- name: shop
  env:
    SECRET_TOKEN: hunter2-do-not-print
    RAILS_ENV: production
  lifecycle: buildpack
  buildpacks:
  - ruby_buildpack
  stack: cflinuxfs4
  features:
    ssh: true
    revisions: true
    service-binding-k8s: false
    file-based-vcap-services: false
  services:
  - redis
  - db
  routes:
  - route: shop.example.com
    protocol: http1
    options: {}
  - route: example.com/shop
    protocol: http2
    options: {}
  processes:
  - type: worker
    instances: 1
    memory: 128M
    disk_quota: 512M
    log-rate-limit-per-second: 1M
    command: bundle exec work
    health-check-type: process
    readiness-health-check-type: process
  - type: web
    instances: 3
    memory: 1G
    disk_quota: 1024M
    log-rate-limit-per-second: 1M
    health-check-type: http
    health-check-http-endpoint: /health
    readiness-health-check-type: process
"#;

    #[test]
    fn a_buildpack_apps_manifest_becomes_a_docker_candidates_without_what_docker_apps_cannot_have() {
        let manifest = AppManifest::literal("the manifest of shop", GENERATED, "shop").unwrap();
        let candidate = Candidate { name: "g", lifecycle: DOCKER, docker_image: Some("shop:2"), ..Default::default() };
        let app = &candidate_yaml(&manifest, candidate)["applications"][0];
        for gone in ["lifecycle", "buildpacks", "stack"] {
            assert!(app.get(gone).is_none(), "{gone} must go: {app:#}");
        }
        assert_eq!(app["docker"]["image"], json!("shop:2"));
        assert_eq!(app["features"]["ssh"], json!(true), "features are carried");
    }

    #[test]
    fn a_docker_apps_manifest_becomes_a_buildpack_candidates_and_cnb_stays_cnb() {
        let docker = "applications:\n- name: shop\n  lifecycle: docker\n  docker:\n    image: shop:1\n";
        let manifest = AppManifest::literal("the manifest of shop", docker, "shop").unwrap();
        assert_eq!(manifest.lifecycle(), Some(DOCKER));
        let app = &candidate_yaml(&manifest, Candidate { name: "g", lifecycle: BUILDPACK, ..Default::default() })["applications"]
            [0];
        assert!(app.get("docker").is_none(), "{app:#}");
        assert_eq!(app["lifecycle"], json!("buildpack"));

        let cnb = "applications:\n- name: shop\n  lifecycle: cnb\n  buildpacks: [docker.io/paketobuildpacks/ruby]\n";
        let manifest = AppManifest::literal("the manifest of shop", cnb, "shop").unwrap();
        let app = &candidate_yaml(&manifest, Candidate { name: "g", lifecycle: CNB, ..Default::default() })["applications"]
            [0];
        assert_eq!(app["lifecycle"], json!("cnb"));
        assert_eq!(app["buildpacks"], json!(["docker.io/paketobuildpacks/ruby"]));
    }

    #[test]
    fn a_generated_manifest_tells_scale_routes_services_and_env_names() {
        let manifest = AppManifest::literal("the manifest of shop", GENERATED, "shop").unwrap();
        assert_eq!(manifest.stack(), Some("cflinuxfs4"));
        assert_eq!(manifest.buildpacks(), ["ruby_buildpack"]);
        assert_eq!(manifest.env().into_keys().collect::<Vec<_>>(), ["RAILS_ENV", "SECRET_TOKEN"]);
        assert_eq!(manifest.routes().unwrap(), ["shop.example.com", "example.com/shop"]);
        assert_eq!(manifest.services(), ["redis", "db"]);
        let scales = manifest.process_scales();
        let web = scales.iter().find(|p| p.kind == "web").unwrap();
        assert_eq!((web.instances, web.memory.as_deref()), (Some(3), Some("1G")));
        let worker = scales.iter().find(|p| p.kind == "worker").unwrap();
        assert_eq!(worker.command.as_deref(), Some("bundle exec work"));
    }

    #[test]
    fn bare_numbers_are_kept_as_written() {
        let text = "applications:\n- name: worker\n  no-route: true\n  processes:\n  - type: worker\n    memory: 256\n";
        let manifest = AppManifest::literal("the manifest of worker", text, "worker").unwrap();
        assert_eq!(manifest.process_scales()[1].memory.as_deref(), Some("256"));
    }

    #[test]
    fn masked_manifests_show_no_env_values_or_binding_parameters() {
        let shown = masked(GENERATED);
        assert!(!shown.contains("hunter2") && !shown.contains("also-secret"), "{shown}");
        assert!(shown.contains("SECRET_TOKEN"), "{shown}");
        let with_parameters = "applications:\n- name: a\n  services:\n  - name: db\n    binding_name: primary\n    parameters:\n      password: also-secret\n";
        let shown = masked(with_parameters);
        assert!(!shown.contains("also-secret") && shown.contains("binding_name"), "{shown}");
    }
}
