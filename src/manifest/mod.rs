//! The app manifest: a user's (loaded, `((vars))` resolved, our app picked, checked locally), or one Cloud
//! Foundry generated for an app; what it says (routes, scale, env names, services, buildpacks); the rewritten
//! copy a deploy's candidate is created from; and a copy safe to print.
//!
//! The candidate gets CF's own `apply_manifest`, so every manifest feature CF supports works; we only change
//! what blue-green needs: the name, the routes (the temporary route only, or none), env and health-check
//! overrides, and keys that only the cf CLI understands.
//!
//! One file a job: [`vars`] resolves `((vars))`, [`read`] parses and selects the app, [`query`] answers what it
//! says, [`check`] refuses locally what CF would refuse later, [`candidate`] rewrites it for the candidate and
//! [`mask`] hides its secrets for printing.

mod candidate;
mod check;
mod diff;
mod mask;
mod query;
mod read;
mod vars;

use serde_json::{Map, Value};

pub(crate) use candidate::Candidate;
pub(crate) use diff::Normalised;
pub(crate) use mask::masked;
pub(crate) use query::{ProcessScale, megabytes};
pub(crate) use vars::Vars;

/// One application of a manifest, with vars resolved.
#[derive(Debug, Clone)]
pub(crate) struct AppManifest {
    /// Where it came from, for error messages ("manifest ci/manifest.yml", "the manifest of myapp").
    origin: String,
    app: Map<String, Value>,
}

/// The lifecycle types of CC (`lib/cloud_controller/diego/lifecycles/lifecycles.rb`).
pub(crate) const BUILDPACK: &str = "buildpack";
pub(crate) const DOCKER: &str = "docker";
pub(crate) const CNB: &str = "cnb";

/// The instance name of a `services` entry.
fn service_name(entry: &Value) -> Option<&str> {
    entry.as_str().or_else(|| entry.get("name").and_then(Value::as_str))
}

/// A value as env-var text: strings as is, other scalars as YAML would print them.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What the tests of the submodules share: a user's manifest parsed with a few vars, and the shape of one
/// Cloud Foundry generates.
#[cfg(test)]
mod testing {
    use anyhow::Result;
    use serde_json::json;

    use super::{AppManifest, Vars};

    pub(super) fn parse(text: &str) -> Result<AppManifest> {
        let vars = Vars::of(json!({"count": 3, "domain": "example.com", "db": {"user": "u1"}}));
        AppManifest::parse("manifest m.yml", text, &vars, "myapp")
    }

    /// The shape cloud_controller_ng generates (`app_manifest_presenter.rb` and its property presenters, key
    /// order as theirs; `spec/request/app_manifests_spec.rb`), with a secret value: services by name only,
    /// `lifecycle` and `features` always, routes with their protocol.
    pub(super) const GENERATED: &str = r#"---
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
}
