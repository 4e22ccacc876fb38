//! The candidate's manifest: the user's (or production's) rewritten to what a blue-green candidate needs.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{AppManifest, CNB, DOCKER, ProcessScale, scalar_text, service_name};
use crate::config::{HealthCheck, HealthCheckType};

/// Manifest keys that only the cf CLI reads; CF's apply_manifest must not see them for the candidate.
pub(super) const CLIENT_SIDE_KEYS: &[&str] =
    &["path", "random-route", "default-route", "no-hostname", "host", "hosts", "domain", "domains"];

/// What the candidate's manifest is made from, besides the user's manifest.
#[derive(Debug, Default)]
pub(crate) struct Candidate<'a> {
    pub(crate) name: &'a str,
    /// `host.domain` of the temporary route, or `None` for a `no-route` app.
    pub(crate) temporary_route: Option<&'a str>,
    /// Production's user-set env vars (so values set with `cf set-env` survive the deploy).
    pub(crate) inherited_env: BTreeMap<String, String>,
    /// `params.environment_variables` (and the secret ones): they win over everything.
    pub(crate) param_env: BTreeMap<String, String>,
    /// Production's `services` entries (with their binding names); those the manifest does not list are added.
    pub(crate) inherited_services: Vec<Value>,
    /// Production's web scale, for whatever of it the manifest leaves unset (so a 10-instance app never swaps
    /// to 1 instance).
    pub(crate) inherited_web_scale: Option<ProcessScale>,
    pub(crate) health_check: Option<&'a HealthCheck>,
    pub(crate) docker_image: Option<&'a str>,
    pub(crate) docker_username: Option<&'a str>,
    /// The lifecycle type the candidate app was created with ([`DOCKER`], [`CNB`] or [`BUILDPACK`](super::BUILDPACK)): the
    /// manifest must not ask for another (CC: "Lifecycle type cannot be changed", `app_update.rb`), nor name
    /// buildpacks or a stack beside `docker` ("Cannot specify both buildpack(s) and docker keys",
    /// `app_manifest_message.rb`), as CC's generated manifest of the other kind of app would.
    pub(crate) lifecycle: &'a str,
}

impl AppManifest {
    /// The manifest the candidate is created from: named `name`, routed only to `temporary_route` (or
    /// nothing), with env = `inherited_env` overlaid by the manifest's env and then `param_env`, extra
    /// `inherited_services` bound, `health_check` overrides applied, and client-side keys removed.
    pub(crate) fn for_candidate(&self, candidate: &Candidate) -> String {
        let mut app = self.app.clone();
        app.insert("name".into(), Value::String(candidate.name.to_owned()));
        for key in CLIENT_SIDE_KEYS {
            app.remove(*key);
        }
        route_only_to(&mut app, candidate.temporary_route);
        merge_env(&mut app, candidate);
        add_services(&mut app, &self.services(), &candidate.inherited_services);
        set_lifecycle(&mut app, candidate);
        if let Some(inherited) = &candidate.inherited_web_scale {
            self.inherit_web_scale(&mut app, inherited);
        }
        if let Some(check) = candidate.health_check {
            apply_health_check(web_process_entry(&mut app), check);
        }
        drop_our_metadata(&mut app);
        let doc = json!({ "applications": [Value::Object(app)] });
        serde_norway::to_string(&doc).expect("a JSON value always serializes to YAML")
    }

    /// Production's web scale for whatever of instances, memory and disk the manifest leaves unset.
    fn inherit_web_scale(&self, app: &mut Map<String, Value>, inherited: &ProcessScale) {
        let unset = |key: &str| !(self.sets("web", key) || key == "disk_quota" && self.sets("web", "disk-quota"));
        let values = [
            ("instances", inherited.instances.map(Value::from)),
            ("memory", inherited.memory.clone().map(Value::from)),
            ("disk_quota", inherited.disk_quota.clone().map(Value::from)),
        ];
        let target = web_process_entry(app);
        for (key, value) in values {
            if let Some(value) = value.filter(|_| unset(key)) {
                target.insert(key.into(), value);
            }
        }
    }
}

/// The temporary route as the only route, or `no-route` without one.
fn route_only_to(app: &mut Map<String, Value>, temporary_route: Option<&str>) {
    app.remove("routes");
    app.remove("no-route");
    match temporary_route {
        Some(route) => app.insert("routes".into(), json!([{ "route": route }])),
        None => app.insert("no-route".into(), Value::Bool(true)),
    };
}

/// Env: production's inherited values, overlaid by the manifest's, overlaid by the params'.
fn merge_env(app: &mut Map<String, Value>, candidate: &Candidate) {
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
}

/// Production's service entries the manifest does not list (`listed`), added after the manifest's.
fn add_services(app: &mut Map<String, Value>, listed: &[String], inherited: &[Value]) {
    let extra: Vec<Value> = inherited
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
}

/// The keys of the candidate's lifecycle only (see [`Candidate::lifecycle`]), and its docker image.
fn set_lifecycle(app: &mut Map<String, Value>, candidate: &Candidate) {
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
}

/// Our own labels and annotations are the deploy's to write, never copied from production.
pub(super) fn drop_our_metadata(app: &mut Map<String, Value>) {
    if let Some(Value::Object(metadata)) = app.get_mut("metadata") {
        for section in ["labels", "annotations"] {
            if let Some(Value::Object(entries)) = metadata.get_mut(section) {
                entries.retain(|key, _| !key.starts_with(crate::record::PREFIX));
            }
        }
    }
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

pub(super) fn apply_health_check(entry: &mut Map<String, Value>, check: &HealthCheck) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BUILDPACK;
    use crate::manifest::testing::{GENERATED, parse};

    fn candidate_yaml(manifest: &AppManifest, candidate: Candidate) -> Value {
        serde_norway::from_str(&manifest.for_candidate(&candidate)).unwrap()
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
}
