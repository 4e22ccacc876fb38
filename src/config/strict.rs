//! Strict parsing of one config section (`source`, `params`): unknown keys and wrong types are errors that
//! name the full key path, and a misspelt key gets the closest valid name as a suggestion.
//!
//! The typed structs carry `#[serde(deny_unknown_fields)]`; this module turns serde's messages into ones a
//! pipeline author can act on ("params.manfest is not a known key; did you mean manifest?").

use anyhow::{Result, anyhow};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Keys whose values must never be echoed back in an error message.
const SECRET_KEYS: &[&str] = &["password", "client_secret", "docker_password", "secret_environment_variables"];

/// Deserializes `value` (a whole section, `null` meaning "empty") into `T`, naming `section` in errors.
pub(crate) fn parse_section<T: DeserializeOwned>(section: &str, value: Value) -> Result<T> {
    let value = if value.is_null() { Value::Object(Default::default()) } else { value };
    if !value.is_object() {
        return Err(anyhow!("{section} must be an object of keys and values, not {}", json_kind(&value)));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let full_path = if path == "." { section.to_owned() } else { format!("{section}.{path}") };
        describe(&full_path, &err.inner().to_string())
    })
}

fn describe(full_path: &str, message: &str) -> anyhow::Error {
    if let Some((key, expected)) = parse_unknown_field(message) {
        let parent = full_path.strip_suffix(key).map(|p| p.trim_end_matches('.')).unwrap_or(full_path);
        let location = if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") };
        return match closest(key, &expected) {
            Some(suggestion) => anyhow!("{location} is not a known key; did you mean {suggestion}?"),
            None if expected.is_empty() => anyhow!("{location} is not a known key; {parent} takes no keys"),
            None => anyhow!("{location} is not a known key; valid keys are: {}", expected.join(", ")),
        };
    }
    let is_secret = full_path.split(['.', '[']).any(|segment| SECRET_KEYS.contains(&segment.trim_end_matches(']')));
    let message = if is_secret { without_value(message) } else { message.to_owned() };
    anyhow!("{full_path}: {}", friendlier(&message))
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into the key and the valid keys.
fn parse_unknown_field(message: &str) -> Option<(&str, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_owned).collect();
    Some((key, expected))
}

/// "invalid type: string \"hunter2\", expected a string map" → "invalid type, expected a string map".
fn without_value(message: &str) -> String {
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("wrong type or value (hidden: secret), expected {expected}"),
        None => "invalid value (hidden: secret)".to_owned(),
    }
}

fn friendlier(message: &str) -> String {
    message
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
        .replace("expected u16", "expected a whole number")
        .replace("expected f64", "expected a number")
}

/// The valid key most like `key`, if any is close enough to be a plausible typo.
fn closest(key: &str, candidates: &[impl AsRef<str>]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(key, c.as_ref()), c.as_ref()))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        endpoint: Option<String>,
        timeout: Option<u64>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Section {
        manifest: Option<String>,
        password: Option<String>,
        health_check: Option<Inner>,
        verify: Option<Vec<Inner>>,
    }

    fn err(value: Value) -> String {
        parse_section::<Section>("params", value).unwrap_err().to_string()
    }

    #[test]
    fn known_keys_parse_at_every_depth() {
        let section: Section = parse_section(
            "params",
            json!({"manifest": "m.yml", "password": "pw", "health_check": {"endpoint": "/h", "timeout": 5},
                   "verify": [{"timeout": 1}]}),
        )
        .unwrap();
        assert_eq!((section.manifest.as_deref(), section.password.as_deref()), (Some("m.yml"), Some("pw")));
        let check = section.health_check.unwrap();
        assert_eq!((check.endpoint.as_deref(), check.timeout), (Some("/h"), Some(5)));
        assert_eq!(section.verify.unwrap()[0].timeout, Some(1));
    }

    #[test]
    fn unknown_key_names_path_and_suggests() {
        assert_eq!(err(json!({"manfest": "m.yml"})), "params.manfest is not a known key; did you mean manifest?");
    }

    #[test]
    fn unknown_nested_key_names_full_path() {
        assert_eq!(
            err(json!({"health_check": {"endpont": "/h"}})),
            "params.health_check.endpont is not a known key; did you mean endpoint?"
        );
        assert_eq!(
            err(json!({"verify": [{"timeout": 1}, {"tmeout": 2}]})),
            "params.verify[1].tmeout is not a known key; did you mean timeout?"
        );
    }

    #[test]
    fn unknown_key_without_close_match_lists_valid_keys() {
        assert_eq!(
            err(json!({"zzz": 1})),
            "params.zzz is not a known key; valid keys are: manifest, password, health_check, verify"
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        assert_eq!(
            err(json!({"health_check": {"timeout": "soon"}})),
            "params.health_check.timeout: invalid type: string \"soon\", expected a whole number"
        );
    }

    #[test]
    fn type_errors_on_secrets_hide_the_value() {
        let message = err(json!({"password": 12345678}));
        assert!(!message.contains("12345678"), "{message}");
        assert!(message.starts_with("params.password: "), "{message}");
    }

    #[test]
    fn null_is_an_empty_section_and_non_objects_are_rejected() {
        assert!(parse_section::<Section>("params", Value::Null).is_ok());
        assert_eq!(err(json!([1])), "params must be an object of keys and values, not a list");
    }
}
