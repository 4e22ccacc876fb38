//! The app's settings, read once from the environment at start.
//!
//! Every knob is an env var so a test can shape the app's behaviour through
//! the manifest or `cf set-env` alone. A malformed value stops the app with a
//! message naming the variable: a typo must not silently fall back to a default
//! and make a test pass for the wrong reason.

use std::time::Duration;

use crate::faults::ErrorRate;
use crate::services::{self, RedisTarget};

/// Everything the app reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub version: String,
    pub instance: String,
    pub port: u16,
    pub healthy: bool,
    pub crash_on_start: bool,
    /// `CRASH_ONCE_MARKER`: the first instance to start creates this file and crashes; every later start runs.
    pub crash_once_marker: Option<std::path::PathBuf>,
    pub startup_delay: Duration,
    pub latency: Duration,
    pub error_rate: ErrorRate,
    pub fail_after: Option<Duration>,
    pub fail_health_too: bool,
    pub log_requests: bool,
    /// Where `/session` keeps its counters: `None` means in process memory.
    pub redis: Option<RedisTarget>,
    /// Names of the service instances bound through VCAP_SERVICES.
    pub service_names: Vec<String>,
    /// What `/backend` calls (`BACKEND_URL`, through `CF_SIM_C2C_PROXY` when set).
    pub backend: Option<crate::backend::Backend>,
}

impl Config {
    /// Reads the real process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can supply any environment.
    /// An empty value counts as unset, as `cf set-env X ''` leaves it.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let vcap_services = get("VCAP_SERVICES");
        let bindings = match &vcap_services {
            Some(json) => services::parse(json).map_err(|err| format!("VCAP_SERVICES: {err}"))?,
            None => services::Bindings::default(),
        };

        Ok(Config {
            version: get("APP_VERSION").unwrap_or_else(|| "v1".to_string()),
            instance: get("CF_INSTANCE_INDEX").unwrap_or_else(|| "0".to_string()),
            port: parse_or("PORT", get("PORT"), 8080, |s| s.parse::<u16>().ok())?,
            healthy: parse_or("HEALTHY", get("HEALTHY"), true, parse_bool)?,
            crash_on_start: parse_or("CRASH_ON_START", get("CRASH_ON_START"), false, parse_bool)?,
            crash_once_marker: get("CRASH_ONCE_MARKER").map(Into::into),
            startup_delay: parse_or("STARTUP_DELAY_MS", get("STARTUP_DELAY_MS"), Duration::ZERO, parse_millis)?,
            latency: parse_or("LATENCY_MS", get("LATENCY_MS"), Duration::ZERO, parse_millis)?,
            error_rate: parse_or("ERROR_RATE", get("ERROR_RATE"), ErrorRate::NEVER, ErrorRate::parse)?,
            fail_after: get("FAIL_AFTER_SECS")
                .map(|value| parse_required("FAIL_AFTER_SECS", &value, parse_secs))
                .transpose()?,
            fail_health_too: parse_or("FAIL_HEALTH_TOO", get("FAIL_HEALTH_TOO"), false, parse_bool)?,
            log_requests: parse_or("LOG_REQUESTS", get("LOG_REQUESTS"), false, parse_bool)?,
            redis: bindings.redis,
            service_names: bindings.names,
            backend: get("BACKEND_URL")
                .map(|url| crate::backend::Backend::new(&url, get("CF_SIM_C2C_PROXY").as_deref()))
                .transpose()?,
        })
    }
}

fn parse_or<T>(name: &str, value: Option<String>, default: T, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    match value {
        Some(value) => parse_required(name, &value, parse),
        None => Ok(default),
    }
}

fn parse_required<T>(name: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    parse(value.trim()).ok_or_else(|| format!("{name}: cannot use {value:?}"))
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

fn parse_millis(value: &str) -> Option<Duration> {
    value.parse::<u64>().ok().map(Duration::from_millis)
}

/// Fractional seconds are allowed so tests can wait half a second, not one.
fn parse_secs(value: &str) -> Option<Duration> {
    value.parse::<f64>().ok().and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = config(&[]).unwrap();
        assert_eq!(config.version, "v1");
        assert_eq!(config.instance, "0");
        assert_eq!(config.port, 8080);
        assert!(config.healthy);
        assert!(!config.crash_on_start);
        assert_eq!(config.latency, Duration::ZERO);
        assert_eq!(config.fail_after, None);
        assert!(config.redis.is_none());
        assert!(config.service_names.is_empty());
    }

    #[test]
    fn reads_every_setting() {
        let config = config(&[
            ("APP_VERSION", "v2"),
            ("CF_INSTANCE_INDEX", "3"),
            ("PORT", "9000"),
            ("HEALTHY", "FALSE"),
            ("STARTUP_DELAY_MS", "250"),
            ("LATENCY_MS", "40"),
            ("ERROR_RATE", "0.25"),
            ("FAIL_AFTER_SECS", "1.5"),
            ("FAIL_HEALTH_TOO", "true"),
            ("LOG_REQUESTS", "1"),
        ])
        .unwrap();
        assert_eq!(config.version, "v2");
        assert_eq!(config.instance, "3");
        assert_eq!(config.port, 9000);
        assert!(!config.healthy);
        assert_eq!(config.startup_delay, Duration::from_millis(250));
        assert_eq!(config.latency, Duration::from_millis(40));
        assert_eq!(config.error_rate, ErrorRate::parse("0.25").unwrap());
        assert_eq!(config.fail_after, Some(Duration::from_millis(1500)));
        assert!(config.fail_health_too);
        assert!(config.log_requests);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let config = config(&[("APP_VERSION", ""), ("PORT", " ")]).unwrap();
        assert_eq!(config.version, "v1");
        assert_eq!(config.port, 8080);
    }

    #[test]
    fn malformed_values_are_refused_with_the_variable_name() {
        for (name, value) in [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("HEALTHY", "maybe"),
            ("LATENCY_MS", "-5"),
            ("ERROR_RATE", "1.5"),
            ("FAIL_AFTER_SECS", "soon"),
            ("FAIL_AFTER_SECS", "-1"),
            ("VCAP_SERVICES", "{not json"),
        ] {
            let err = config(&[(name, value)]).unwrap_err();
            assert!(err.starts_with(name), "{name}={value}: {err}");
        }
    }
}
