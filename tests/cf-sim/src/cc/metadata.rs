//! `metadata.labels` / `metadata.annotations`: validation, PATCH merge (a `null` value deletes the key) and
//! `label_selector` matching (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`), as CC does them.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    pub fn to_json(&self) -> Value {
        json!({"labels": self.labels, "annotations": self.annotations})
    }

    /// Merges a request's `metadata` object into this one. Validates everything before changing anything.
    pub fn apply(&mut self, patch: Option<&Value>) -> ApiResult<()> {
        let Some(patch) = patch else { return Ok(()) };
        if patch.is_null() {
            return Ok(());
        }
        let obj = patch.as_object().ok_or_else(|| ApiError::unprocessable("Metadata must be an object"))?;
        for key in obj.keys() {
            if key != "labels" && key != "annotations" {
                return Err(ApiError::unprocessable(format!("Metadata has unexpected field(s): '{key}'")));
            }
        }
        let labels = changes(obj.get("labels"), "label")?;
        let annotations = changes(obj.get("annotations"), "annotation")?;
        for (key, value) in &labels {
            validate_key(key, "label")?;
            if let Some(value) = value {
                validate_label_value(value)?;
            }
        }
        for (key, value) in &annotations {
            validate_key(key, "annotation")?;
            if value.as_ref().is_some_and(|v| v.chars().count() > 5000) {
                return Err(ApiError::unprocessable(format!(
                    "Metadata annotations error: value for key '{key}' is greater than 5000 characters"
                )));
            }
        }
        merge(&mut self.labels, labels);
        merge(&mut self.annotations, annotations);
        Ok(())
    }
}

fn changes(value: Option<&Value>, what: &str) -> ApiResult<Vec<(String, Option<String>)>> {
    let Some(value) = value else { return Ok(Vec::new()) };
    if value.is_null() {
        return Ok(Vec::new());
    }
    let obj =
        value.as_object().ok_or_else(|| ApiError::unprocessable(format!("Metadata {what}s must be an object")))?;
    obj.iter()
        .map(|(key, value)| match value {
            Value::Null => Ok((key.clone(), None)),
            Value::String(s) => Ok((key.clone(), Some(s.clone()))),
            _ => Err(ApiError::unprocessable(format!("Metadata {what} values must be strings or null: '{key}'"))),
        })
        .collect()
}

fn merge(target: &mut BTreeMap<String, String>, changes: Vec<(String, Option<String>)>) {
    for (key, value) in changes {
        match value {
            Some(value) => target.insert(key, value),
            None => target.remove(&key),
        };
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(is_name_char)
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn validate_key(key: &str, what: &str) -> ApiResult<()> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let error = |reason: String| Err(ApiError::unprocessable(format!("Metadata {what} key error: {reason}")));
    if name.contains('/') {
        return error("key has more than one '/'".to_string());
    }
    if let Some(prefix) = prefix {
        if prefix.len() > 253 || prefix.split('.').any(|part| !valid_name(part) || part.contains('_')) {
            return error(format!("prefix '{prefix}' must be in valid DNS format"));
        }
        if prefix.eq_ignore_ascii_case("cloudfoundry.org") {
            return error("Cloudfoundry.org is a reserved domain".to_string());
        }
    }
    if name.is_empty() {
        return error("key cannot be empty string".to_string());
    }
    if name.len() > 63 {
        return error(format!("'{}...' is greater than 63 characters", &name[..8]));
    }
    if !valid_name(name) {
        return error(format!("'{name}' contains invalid characters"));
    }
    Ok(())
}

fn validate_label_value(value: &str) -> ApiResult<()> {
    if value.is_empty() || valid_name(value) {
        Ok(())
    } else if value.len() > 63 {
        Err(ApiError::unprocessable(format!(
            "Metadata label value error: '{}...' is greater than 63 characters",
            &value[..8]
        )))
    } else {
        Err(ApiError::unprocessable(format!("Metadata label value error: '{value}' contains invalid characters")))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equal(String, String),
    NotEqual(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `label_selector`: every requirement must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(selector: &str) -> ApiResult<Self> {
        let invalid = || ApiError::bad_query(format!("Invalid label_selector value: '{selector}'"));
        let mut requirements = Vec::new();
        for part in split_requirements(selector) {
            let part = part.trim();
            if part.is_empty() {
                return Err(invalid());
            }
            let requirement = if let Some(key) = part.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((key, value)) = part.split_once("!=") {
                Requirement::NotEqual(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
                Requirement::Equal(key.trim().to_string(), value.trim().to_string())
            } else if let Some((key, values)) = split_set(part, " notin ") {
                Requirement::NotIn(key, values.ok_or_else(invalid)?)
            } else if let Some((key, values)) = split_set(part, " in ") {
                Requirement::In(key, values.ok_or_else(invalid)?)
            } else {
                Requirement::Exists(part.to_string())
            };
            let key = match &requirement {
                Requirement::Equal(k, _)
                | Requirement::NotEqual(k, _)
                | Requirement::In(k, _)
                | Requirement::NotIn(k, _)
                | Requirement::Exists(k)
                | Requirement::NotExists(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(invalid());
            }
            requirements.push(requirement);
        }
        if requirements.len() > 50 {
            return Err(ApiError::bad_query("label_selector may have at most 50 requirements"));
        }
        Ok(LabelSelector(requirements))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equal(k, v) => labels.get(k) == Some(v),
            Requirement::NotEqual(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas that are not inside `( … )`.
fn split_requirements(selector: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in selector.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// `key in (a,b)` → (key, [a, b]); `None` inside when the set is malformed.
fn split_set(part: &str, operator: &str) -> Option<(String, Option<Vec<String>>)> {
    let (key, rest) = part.split_once(operator)?;
    let rest = rest.trim();
    let values = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(|inner| inner.split(',').map(|v| v.trim().to_string()).collect());
    Some((key.trim().to_string(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn patch_merges_and_null_deletes() {
        let mut metadata = Metadata::default();
        metadata.apply(Some(&json!({"labels": {"a": "1", "b": "2"}, "annotations": {"x/y": "long text"}}))).unwrap();
        metadata.apply(Some(&json!({"labels": {"a": null, "c": "3"}}))).unwrap();
        assert_eq!(metadata.labels, labels(&[("b", "2"), ("c", "3")]));
        assert_eq!(metadata.annotations["x/y"], "long text");
    }

    #[test]
    fn invalid_label_changes_nothing() {
        let mut metadata = Metadata::default();
        let err = metadata.apply(Some(&json!({"labels": {"ok": "1", "bad key": "2"}}))).unwrap_err();
        assert_eq!(err.code, 10008);
        assert!(metadata.labels.is_empty());
    }

    #[test]
    fn selectors_cover_every_operator() {
        let l = labels(&[("env", "prod"), ("tier", "web")]);
        let matches = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(matches("env=prod"));
        assert!(matches("env==prod,tier"));
        assert!(!matches("env!=prod"));
        assert!(matches("env in (dev,prod)"));
        assert!(!matches("env notin (dev,prod)"));
        assert!(matches("!missing"));
        assert!(!matches("!env"));
        assert!(matches("env in (prod),tier=web"));
        assert!(LabelSelector::parse("").is_err());
    }
}
