//! Local checks of a user's manifest: what Cloud Foundry would refuse later fails before anything is touched.

use anyhow::{Result, anyhow};
use serde_json::{Map, Value};

use super::AppManifest;

impl AppManifest {
    /// Local checks of what CF would reject later, so a bad manifest fails before anything is touched.
    pub(super) fn check(&self) -> Result<()> {
        let mut problems = self.route_problems();
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
            process_problems(scope, entries, &mut problems);
        }
        let origin = &self.origin;
        if problems.is_empty() { Ok(()) } else { Err(anyhow!("{origin}: {}", problems.join("; "))) }
    }

    /// What is wrong with `routes`: its shape, each route and protocol, and `no-route` beside it.
    fn route_problems(&self) -> Vec<String> {
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
        problems
    }
}

/// What is wrong with the process keys of the app (`scope` "") or of one `processes` entry.
fn process_problems(scope: &str, entries: &Map<String, Value>, problems: &mut Vec<String>) {
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
            _ => problems.push(format!("{scope}timeout {timeout} must be a whole number of seconds, at least 1")),
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
            problems.push(format!("{scope}{key} {size} must be a size of at least 1M, like 256M or 1G"));
        }
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

/// A size Cloud Controller takes for memory or disk: one `ByteQuantity` reads, of at least 1 MB.
fn is_byte_size(value: &Value) -> bool {
    value.as_str().and_then(crate::manifest::query::megabytes).is_some_and(|mb| mb > 0)
}

#[cfg(test)]
mod tests {
    use crate::manifest::testing::parse;

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
    fn sizes_are_read_as_cloud_controller_reads_them() {
        parse("applications:\n- name: myapp\n  memory: 65536K\n  disk_quota: 1.5GiB\n").unwrap();
        let err = parse("applications:\n- name: myapp\n  memory: 512K\n").unwrap_err().to_string();
        assert!(err.contains("memory \"512K\" must be a size of at least 1M"), "{err}");
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
    fn no_route_with_routes_is_rejected() {
        let err =
            parse("applications:\n- name: myapp\n  no-route: true\n  routes: [{route: a.example.com}]\n").unwrap_err();
        assert!(err.to_string().contains("'no-route: true' cannot be combined with 'routes'"));
    }
}
