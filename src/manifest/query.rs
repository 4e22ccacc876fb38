//! What a manifest says: name, routes, lifecycle and image, env, services and the scale of each process type.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{AppManifest, DOCKER, scalar_text, service_name};

impl AppManifest {
    /// The name the manifest gives the app.
    pub(crate) fn name(&self) -> &str {
        self.app.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    /// The `route:` strings of `routes`, or `None` when the manifest does not say.
    pub(crate) fn routes(&self) -> Option<Vec<String>> {
        let routes = self.app.get("routes")?.as_array()?;
        Some(routes.iter().filter_map(|r| r.get("route").and_then(Value::as_str).map(str::to_owned)).collect())
    }

    /// The `protocol:` of each entry of `routes` (`http1`, `http2`), in the order of [`AppManifest::routes`].
    pub(crate) fn route_protocols(&self) -> Vec<Option<String>> {
        let routes = self.app.get("routes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        routes
            .iter()
            .filter(|r| r.get("route").is_some_and(Value::is_string))
            .map(|r| r.get("protocol").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// `no-route: true`: a worker without routes.
    pub(crate) fn no_route(&self) -> bool {
        self.app.get("no-route").and_then(Value::as_bool).unwrap_or(false)
    }

    /// The client-side `path` key: where the bits are, relative to the manifest's directory.
    pub(crate) fn path(&self) -> Option<&str> {
        self.app.get("path").and_then(Value::as_str)
    }

    /// The docker image the manifest names, if any.
    pub(crate) fn docker_image(&self) -> Option<&str> {
        self.app.get("docker")?.get("image")?.as_str()
    }

    /// The stack the manifest asks for.
    pub(crate) fn stack(&self) -> Option<&str> {
        self.app.get("stack").and_then(Value::as_str)
    }

    /// The buildpacks the manifest asks for (also the deprecated singular `buildpack`); empty: detected.
    pub(crate) fn buildpacks(&self) -> Vec<String> {
        let listed = self.app.get("buildpacks").and_then(Value::as_array).into_iter().flatten();
        listed.chain(self.app.get("buildpack")).filter_map(Value::as_str).map(str::to_owned).collect()
    }

    /// The lifecycle type the manifest asks for (`lifecycle: buildpack|cnb`, or `docker` with a `docker` key).
    pub(crate) fn lifecycle(&self) -> Option<&str> {
        if self.app.contains_key("docker") {
            return Some(DOCKER);
        }
        self.app.get("lifecycle")?.as_str()
    }

    /// The docker registry user the manifest names, if any.
    pub(crate) fn docker_username(&self) -> Option<&str> {
        self.app.get("docker")?.get("username")?.as_str()
    }

    /// The `env` map, values as text.
    pub(crate) fn env(&self) -> BTreeMap<String, String> {
        let Some(Value::Object(env)) = self.app.get("env") else { return BTreeMap::new() };
        env.iter().map(|(k, v)| (k.clone(), scalar_text(v))).collect()
    }

    /// The scale the manifest gives each process type it mentions (app-level keys are the web process's).
    pub(crate) fn process_scales(&self) -> Vec<ProcessScale> {
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
    pub(crate) fn sets(&self, process_type: &str, key: &str) -> bool {
        let in_process = self.process(process_type).is_some_and(|p| p.contains_key(key));
        in_process || (process_type == "web" && self.app.contains_key(key))
    }

    /// The app features the manifest sets (`features:`, e.g. `ssh: false`), as CC's generated manifest lists
    /// them from CC API 3.197.0 on.
    pub(crate) fn features(&self) -> Option<&Map<String, Value>> {
        self.app.get("features").and_then(Value::as_object)
    }

    /// The names of the service instances the manifest binds.
    pub(crate) fn services(&self) -> Vec<String> {
        self.service_entries().iter().filter_map(service_name).map(str::to_owned).collect()
    }

    /// The manifest's `services` entries as written: a name, or `{name, binding_name, parameters}`.
    pub(crate) fn service_entries(&self) -> &[Value] {
        self.app.get("services").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// Gives the plain-name entries of `services` the binding names in `binding_names` (instance → binding
    /// name): CC's generated manifest lists services by instance name only (`services_properties_presenter.rb`),
    /// so a binding's own name is read from the binding and written back here.
    pub(crate) fn name_bindings(&mut self, binding_names: &BTreeMap<String, String>) {
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
}

/// How many instances of a process type run, how big each is (manifest notation: `256M`, `1G`), and a start
/// command set on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ProcessScale {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) instances: Option<u32>,
    pub(crate) memory: Option<String>,
    pub(crate) disk_quota: Option<String>,
    /// A start command set on the process (else the droplet's process type runs).
    pub(crate) command: Option<String>,
}

impl ProcessScale {
    /// Memory per instance in MB.
    pub(crate) fn memory_mb(&self) -> Option<u64> {
        self.memory.as_deref().and_then(megabytes)
    }

    /// Disk per instance in MB.
    pub(crate) fn disk_mb(&self) -> Option<u64> {
        self.disk_quota.as_deref().and_then(megabytes)
    }

    /// Takes every value `other` has.
    pub(super) fn overlay(&mut self, other: ProcessScale) {
        self.instances = other.instances.or(self.instances);
        self.memory = other.memory.or(self.memory.take());
        self.disk_quota = other.disk_quota.or(self.disk_quota.take());
        self.command = other.command.or(self.command.take());
    }
}

/// A size as Cloud Controller's `ByteQuantity` reads it → whole megabytes: a number (decimals allowed) and a unit
/// B, K, M, G or T, optionally followed by `i` and/or `B`, any case (`256M`, `1.5G`, `65536K`, `2GiB`), all base 2;
/// the bytes are truncated to whole megabytes, so `512K` is 0. `None` for anything else, a negative size included.
pub(crate) fn megabytes(size: &str) -> Option<u64> {
    let size = size.trim().to_ascii_uppercase();
    let split = size.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = size.split_at(split);
    let valid_number = !number.is_empty()
        && number.split('.').count() <= 2
        && number.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    let number: f64 = number.parse().ok().filter(|_| valid_number)?;
    let power = match unit {
        "B" => 0,
        _ => {
            let rest = unit.get(1..)?;
            if !matches!(rest, "" | "B" | "I" | "IB") {
                return None;
            }
            match &unit[..1] {
                "K" => 1,
                "M" => 2,
                "G" => 3,
                "T" => 4,
                _ => return None,
            }
        }
    };
    let bytes = (number * 1024f64.powi(power)).trunc();
    Some((bytes / (1024.0 * 1024.0)).trunc() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::manifest::testing::{GENERATED, parse};

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
    fn binding_names_read_from_the_bindings_go_back_into_a_generated_manifest() {
        let mut manifest = AppManifest::literal("the manifest of shop", GENERATED, "shop").unwrap();
        manifest.name_bindings(&BTreeMap::from([("db".to_owned(), "primary".to_owned())]));
        assert_eq!(manifest.service_entries(), [json!("redis"), json!({"name": "db", "binding_name": "primary"})]);
        assert_eq!(manifest.services(), ["redis", "db"]);
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
    fn sizes_convert_to_megabytes() {
        assert_eq!(megabytes("256M"), Some(256));
        assert_eq!(megabytes("1G"), Some(1024));
        assert_eq!(megabytes("2gb"), Some(2048));
        assert_eq!(megabytes("lots"), None);
        // Cloud Controller's ByteQuantity: K and B units, binary prefixes, decimals, truncation to whole MB.
        assert_eq!(megabytes("65536K"), Some(64));
        assert_eq!(megabytes("1.5G"), Some(1536));
        assert_eq!(megabytes("2GiB"), Some(2048));
        assert_eq!(megabytes("1048576B"), Some(1));
        assert_eq!(megabytes("512K"), Some(0));
        for refused in ["1024", "M", "1.G", "-1G", "1GG", "1 G B", "1X"] {
            assert_eq!(megabytes(refused), None, "{refused}");
        }
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
}
