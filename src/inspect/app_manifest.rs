//! The manifest CF generates for an app (`GET /v3/apps/:guid/manifest`), reduced to what `in` reports: the
//! processes' scale, the routes, the buildpacks and stack, the service names, and the *names* of the
//! environment variables.
//!
//! The generated manifest carries the variables' values; they are skipped while parsing (never held in a
//! string), and a manifest that cannot be read is reported by position only, so no value reaches an error
//! message either.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer, Serialize};

/// One process of the app, as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessScale {
    #[serde(rename = "type")]
    pub kind: String,
    pub instances: Option<u32>,
    pub memory: Option<String>,
    pub disk_quota: Option<String>,
    /// A start command set on the process (else the droplet's process type runs).
    pub command: Option<String>,
}

/// What the generated manifest says about an app, without secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppManifest {
    pub name: Option<String>,
    pub stack: Option<String>,
    /// The configured buildpacks (empty: detected at staging).
    pub buildpacks: Vec<String>,
    /// Sorted.
    pub env_names: Vec<String>,
    /// `host.domain/path` (or `domain:port`), in CF's order.
    pub routes: Vec<String>,
    /// Service instance names, sorted.
    pub services: Vec<String>,
    /// Sorted by type.
    pub processes: Vec<ProcessScale>,
}

impl AppManifest {
    /// Parses the YAML of `GET /v3/apps/:guid/manifest` (its first application).
    pub fn parse(yaml: &str) -> Result<AppManifest> {
        let document: Document = serde_norway::from_str(yaml).map_err(|err| {
            let at =
                err.location().map(|l| format!(" at line {}, column {}", l.line(), l.column())).unwrap_or_default();
            anyhow!("the manifest CF generated for the app cannot be read{at}")
        })?;
        let Some(app) = document.applications.into_iter().next() else {
            return Err(anyhow!("the manifest CF generated for the app lists no application"));
        };
        let mut services: Vec<String> = app.services.into_iter().map(|s| s.name()).collect();
        services.sort();
        let mut processes: Vec<ProcessScale> = app
            .processes
            .into_iter()
            .map(|p| ProcessScale {
                kind: p.kind,
                instances: p.instances,
                memory: p.memory,
                disk_quota: p.disk_quota,
                command: p.command,
            })
            .collect();
        processes.sort_by(|a, b| a.kind.cmp(&b.kind));
        Ok(AppManifest {
            name: app.name,
            stack: app.stack,
            buildpacks: app.buildpacks.into_iter().chain(app.buildpack).collect(),
            env_names: app.env.into_keys().collect(),
            routes: app.routes.into_iter().map(|r| r.route).collect(),
            services,
            processes,
        })
    }

    /// The `web` process, else the first one.
    pub fn main_process(&self) -> Option<&ProcessScale> {
        self.processes.iter().find(|p| p.kind == "web").or_else(|| self.processes.first())
    }
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    applications: Vec<ManifestApp>,
}

#[derive(Deserialize)]
struct ManifestApp {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stack: Option<String>,
    #[serde(default)]
    buildpacks: Vec<String>,
    /// The deprecated singular form, in manifests of older foundations.
    #[serde(default)]
    buildpack: Option<String>,
    /// Names only: the values are skipped unread.
    #[serde(default)]
    env: BTreeMap<String, IgnoredAny>,
    #[serde(default)]
    routes: Vec<ManifestRoute>,
    #[serde(default)]
    services: Vec<ManifestService>,
    #[serde(default)]
    processes: Vec<ManifestProcess>,
}

#[derive(Deserialize)]
struct ManifestRoute {
    route: String,
}

/// `- db` or `- {name: db, binding_name: …, parameters: …}` (parameters are skipped unread).
#[derive(Deserialize)]
#[serde(untagged)]
enum ManifestService {
    Name(String),
    Entry { name: String },
}

impl ManifestService {
    fn name(self) -> String {
        match self {
            ManifestService::Name(name) | ManifestService::Entry { name } => name,
        }
    }
}

#[derive(Deserialize)]
struct ManifestProcess {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    instances: Option<u32>,
    #[serde(default, deserialize_with = "scalar")]
    memory: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    disk_quota: Option<String>,
    #[serde(default)]
    command: Option<String>,
}

/// A size that is usually `256M` but may be written as a bare number.
fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Number(u64),
    }
    Ok(Option::<Scalar>::deserialize(deserializer)?.map(|s| match s {
        Scalar::Text(text) => text,
        Scalar::Number(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape cloud_controller_ng generates (AppManifestPresenter), with a secret env value.
    const GENERATED: &str = r#"---
applications:
- name: shop
  stack: cflinuxfs4
  buildpacks:
  - ruby_buildpack
  env:
    SECRET_TOKEN: hunter2-do-not-print
    RAILS_ENV: production
    NESTED:
      inner: value
  routes:
  - route: shop.example.com
    protocol: http1
  - route: example.com/shop
  services:
  - redis
  - name: db
    binding_name: primary
    parameters:
      password: also-secret
  metadata:
    labels: {team: a}
  processes:
  - type: worker
    instances: 1
    memory: 128M
    disk_quota: 512M
    command: bundle exec work
  - type: web
    instances: 3
    memory: 1G
    disk_quota: 1024M
    log-rate-limit-per-second: -1
    health-check-type: http
    health-check-http-endpoint: /health
"#;

    #[test]
    fn keeps_names_and_scale_and_drops_values() {
        let manifest = AppManifest::parse(GENERATED).unwrap();
        assert_eq!(manifest.name.as_deref(), Some("shop"));
        assert_eq!(manifest.stack.as_deref(), Some("cflinuxfs4"));
        assert_eq!(manifest.buildpacks, ["ruby_buildpack"]);
        assert_eq!(manifest.env_names, ["NESTED", "RAILS_ENV", "SECRET_TOKEN"]);
        assert_eq!(manifest.routes, ["shop.example.com", "example.com/shop"]);
        assert_eq!(manifest.services, ["db", "redis"]);
        let web = manifest.main_process().unwrap();
        assert_eq!((web.kind.as_str(), web.instances, web.memory.as_deref()), ("web", Some(3), Some("1G")));
        assert_eq!(manifest.processes[1].command.as_deref(), Some("bundle exec work"));
        let debug = format!("{manifest:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("also-secret"), "{debug}");
    }

    #[test]
    fn a_no_route_app_and_bare_numbers() {
        let manifest = AppManifest::parse(
            "applications:\n- name: worker\n  no-route: true\n  processes:\n  - type: worker\n    memory: 256\n",
        )
        .unwrap();
        assert!(manifest.routes.is_empty() && manifest.env_names.is_empty());
        assert_eq!(manifest.main_process().unwrap().memory.as_deref(), Some("256"));
    }

    #[test]
    fn errors_name_a_position_never_a_value() {
        let err = AppManifest::parse("applications:\n- name: x\n  env: hunter2-do-not-print\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("the manifest CF generated for the app cannot be read at line 3"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(AppManifest::parse("applications: []\n").unwrap_err().to_string().contains("lists no application"));
    }
}
