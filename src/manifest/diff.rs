//! The manifest as `skip_unchanged` compares it with production: normalised so that Cloud Foundry's
//! `manifest_diff` (`space_diff_manifest.rb`) reports no false change, and digested so that what the diff cannot
//! see (a key removed from the manifest) still counts.
//!
//! The diff is asked under production's name, without the candidate's name or temporary route. CC never diffs
//! app-level `memory` or `disk_quota`, so every process key the manifest gives at app level goes to the web
//! process's `processes` entry. CC presents routes and services alphabetised, and diffs arrays position by
//! position: they are sorted the same way. Env is left out (its values may be secret; the deploy compares it
//! with production's itself), and so are the values CC presents in another form than it reads them: a
//! `log-rate-limit-per-second` of -1 or 0 (presented as the number -1 or as `0T`) and the deprecated
//! `health-check-type: none` (presented as `process`).

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::candidate::{CLIENT_SIDE_KEYS, apply_health_check, drop_our_metadata};
use super::{AppManifest, service_name};
use crate::config::HealthCheck;

/// The keys of a process, which at app level mean the web process's (`manifest_process_update_message.rb`).
const PROCESS_KEYS: &[&str] = &[
    "instances",
    "memory",
    "disk_quota",
    "log-rate-limit-per-second",
    "command",
    "health-check-type",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "health-check-interval",
    "readiness-health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
    "timeout",
];

/// The manifest of a deploy, normalised for comparing with production.
#[derive(Debug, Clone)]
pub(crate) struct Normalised {
    app: Map<String, Value>,
    /// The names of the env vars the manifest and the params set.
    env_names: Vec<String>,
}

impl AppManifest {
    /// This manifest as production `name` would run it, with `health_check` applied and the env names
    /// `param_env_names` set on top of the manifest's.
    pub(crate) fn normalised<'a>(
        &self,
        name: &str,
        health_check: Option<&HealthCheck>,
        param_env_names: impl IntoIterator<Item = &'a String>,
    ) -> Normalised {
        let mut env_names: Vec<String> = self.env().into_keys().chain(param_env_names.into_iter().cloned()).collect();
        env_names.sort_unstable();
        env_names.dedup();
        let mut app = self.app.clone();
        app.insert("name".into(), Value::String(name.to_owned()));
        for key in CLIENT_SIDE_KEYS.iter().chain(&["no-route", "env"]) {
            app.remove(*key);
        }
        drop_our_metadata(&mut app);
        if let Some(Value::Array(routes)) = app.get_mut("routes") {
            routes.sort_by_key(|r| r.get("route").and_then(Value::as_str).unwrap_or_default().to_lowercase());
        }
        let web = web_entry(&mut app);
        if let Some(check) = health_check {
            apply_health_check(web, check);
        }
        for process in app.get_mut("processes").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Value::Object(process) = process {
                normalise_process(process);
            }
        }
        Normalised { app, env_names }
    }
}

impl Normalised {
    /// `sha1:<hex>` of everything the manifest says but env values (compared apart, and maybe secret).
    pub(crate) fn digest(&self) -> String {
        let text = json!({ "app": self.app, "env_names": self.env_names }).to_string();
        format!("sha1:{}", crate::bits::to_hex(&Sha1::digest(text.as_bytes())))
    }

    /// The service instances the manifest binds; empty when it lists none (production's are kept then).
    pub(crate) fn services(&self) -> Vec<String> {
        let entries = self.app.get("services").and_then(Value::as_array).into_iter().flatten();
        entries.filter_map(service_name).map(str::to_owned).collect()
    }

    /// The YAML to send to `manifest_diff`: services by name (CC presents no parameters or binding names),
    /// production's `bound` ones beside the manifest's (the deploy keeps them), alphabetised as CC presents them.
    pub(crate) fn diff_yaml(&self, bound: &[String]) -> String {
        let mut app = self.app.clone();
        let mut services = self.services();
        if !services.is_empty() {
            services.extend(bound.iter().cloned());
            services.sort_by_key(|s| s.to_lowercase());
            services.dedup();
            app.insert("services".into(), json!(services));
        }
        serde_norway::to_string(&json!({ "applications": [app] })).expect("a JSON value always serializes to YAML")
    }
}

/// The web process's `processes` entry, made if need be, with the app-level process keys moved into it (its
/// own win, as in CC).
fn web_entry(app: &mut Map<String, Value>) -> &mut Map<String, Value> {
    if let Some(disk) = app.remove("disk-quota") {
        app.entry("disk_quota").or_insert(disk);
    }
    let app_level: Vec<(String, Value)> =
        PROCESS_KEYS.iter().filter_map(|key| Some(((*key).to_owned(), app.remove(*key)?))).collect();
    let processes = app.entry("processes").or_insert_with(|| json!([]));
    if !processes.is_array() {
        *processes = json!([]);
    }
    let list = processes.as_array_mut().expect("made an array above");
    let is_web = |p: &Value| p.get("type").and_then(Value::as_str) == Some("web");
    let index = match list.iter().position(is_web) {
        Some(index) => index,
        None => {
            list.push(json!({ "type": "web" }));
            list.len() - 1
        }
    };
    let web = list[index].as_object_mut().expect("a process entry is a map");
    for (key, value) in app_level {
        web.entry(key).or_insert(value);
    }
    web
}

/// One process entry with the values CC presents differently from how it reads them taken out or spelled its way.
fn normalise_process(process: &mut Map<String, Value>) {
    if let Some(disk) = process.remove("disk-quota") {
        process.entry("disk_quota").or_insert(disk);
    }
    let unlimited_or_none = |v: &Value| matches!(v.to_string().trim_matches('"'), "-1" | "0");
    if process.get("log-rate-limit-per-second").is_some_and(unlimited_or_none) {
        process.remove("log-rate-limit-per-second");
    }
    if process.get("health-check-type").and_then(Value::as_str) == Some("none") {
        process.insert("health-check-type".into(), json!("process"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthCheckType;
    use crate::manifest::testing::parse;

    fn normalised(text: &str) -> Normalised {
        parse(text).unwrap().normalised("shop", None, &Vec::<String>::new())
    }

    fn sent(text: &str, bound: &[&str]) -> Value {
        let bound: Vec<String> = bound.iter().map(|s| (*s).to_owned()).collect();
        serde_norway::from_str::<Value>(&normalised(text).diff_yaml(&bound)).unwrap()["applications"][0].clone()
    }

    #[test]
    fn the_diff_is_asked_under_production_s_name_with_app_level_scale_in_the_web_process() {
        let app = sent(
            "applications:\n- name: myapp\n  path: app\n  random-route: true\n  instances: 2\n  memory: 64M\n  \
             disk-quota: 256M\n  health-check-type: none\n  log-rate-limit-per-second: -1\n  env:\n    TOKEN: s3cret\n  \
             processes:\n  - type: worker\n    log-rate-limit-per-second: 0\n    instances: 1\n  - type: web\n    instances: 3\n",
            &[],
        );
        assert_eq!(app["name"], "shop");
        for gone in ["path", "random-route", "instances", "memory", "disk-quota", "env"] {
            assert!(app.get(gone).is_none(), "{gone} is still at app level");
        }
        assert_eq!(app["processes"][0], json!({"type": "worker", "instances": 1}));
        assert_eq!(
            app["processes"][1],
            json!({"type": "web", "instances": 3, "memory": "64M", "disk_quota": "256M", "health-check-type": "process"})
        );
        assert!(!app.to_string().contains("s3cret"), "env values are never sent");
    }

    #[test]
    fn a_manifest_without_processes_gets_a_web_entry_and_the_put_s_health_check() {
        let manifest = parse("applications:\n- name: myapp\n  instances: 2\n").unwrap();
        let check = HealthCheck {
            check_type: Some(HealthCheckType::Port),
            endpoint: None,
            timeout: None,
            invocation_timeout: None,
        };
        let n = manifest.normalised("shop", Some(&check), &Vec::<String>::new());
        let app: Value = serde_norway::from_str::<Value>(&n.diff_yaml(&[])).unwrap()["applications"][0].clone();
        assert_eq!(app["processes"], json!([{"type": "web", "instances": 2, "health-check-type": "port"}]));
    }

    #[test]
    fn routes_and_services_are_alphabetised_as_cc_presents_them_with_production_s_services_kept() {
        let app = sent(
            "applications:\n- name: myapp\n  routes:\n  - route: b.example.com\n  - route: A.example.com\n  services:\n  \
             - redis\n  - name: Db\n    parameters: {size: 1}\n",
            &["cache", "redis"],
        );
        assert_eq!(app["routes"], json!([{"route": "A.example.com"}, {"route": "b.example.com"}]));
        assert_eq!(app["services"], json!(["cache", "Db", "redis"]));
        let none = sent("applications:\n- name: myapp\n", &["cache"]);
        assert!(none.get("services").is_none(), "a manifest without services keeps production's: nothing to diff");
    }

    #[test]
    fn the_digest_sees_a_removed_key_and_env_names_but_not_env_values() {
        let base = "applications:\n- name: myapp\n  instances: 2\n  env:\n    A: one\n";
        let digest = normalised(base).digest();
        assert_eq!(normalised(base).digest(), digest);
        assert_ne!(normalised("applications:\n- name: myapp\n  env:\n    A: one\n").digest(), digest);
        assert_ne!(normalised("applications:\n- name: myapp\n  instances: 2\n").digest(), digest);
        assert_eq!(normalised("applications:\n- name: myapp\n  instances: 2\n  env:\n    A: two\n").digest(), digest);
        let with_param = parse(base).unwrap().normalised("shop", None, &["B".to_owned()]);
        assert_ne!(with_param.digest(), digest, "a param env name counts");
    }
}
