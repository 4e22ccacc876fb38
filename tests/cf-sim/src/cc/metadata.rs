//! `metadata.labels` / `metadata.annotations`: validation, PATCH merge (a `null` value deletes the key) and
//! `label_selector` matching (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`), as CC does them.
//!
//! Validation follows cloud_controller_ng's `app/messages/validators/metadata_validator.rb` and
//! `app/messages/metadata_validator_helper.rb` word for word: every problem is collected, in CC's order, as the
//! `full_messages` CC joins with ", " into one 422 CF-UnprocessableEntity.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};

/// `MetadataValidatorHelper::MAX_METADATA_KEY_SIZE` and `MAX_LABEL_VALUE_SIZE`.
const MAX_NAME_SIZE: usize = 63;
/// `MetadataValidatorHelper::MAX_METADATA_PREFIX_SIZE`.
const MAX_PREFIX_SIZE: usize = 253;
/// `MetadataValidator::MAX_ANNOTATION_VALUE_SIZE`.
const MAX_ANNOTATION_VALUE_SIZE: usize = 5000;
/// `MetadataValidatorHelper::RESERVED_DOMAIN`.
const RESERVED_DOMAIN: &str = "cloudfoundry.org";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Metadata {
    pub fn to_json(&self) -> Value {
        json!({"labels": self.labels, "annotations": self.annotations})
    }

    /// Merges a request's `metadata` (`None` when the request has no such key) into this one. Validates everything
    /// before changing anything; a present `metadata` that is not an object (`null` included) is refused, as CC's
    /// `MetadataBaseMessage` validates whatever was requested.
    pub fn apply(&mut self, patch: Option<&Value>) -> ApiResult<()> {
        let Some(patch) = patch else { return Ok(()) };
        let errors = errors(patch);
        if !errors.is_empty() {
            return Err(ApiError::unprocessable(errors.join(", ")));
        }
        merge(&mut self.labels, patch.get("labels"));
        merge(&mut self.annotations, patch.get("annotations"));
        Ok(())
    }
}

/// The `full_messages` of CC's `MetadataValidator` for a request's `metadata`, in CC's order; empty when valid.
pub(crate) fn errors(metadata: &Value) -> Vec<String> {
    let Some(obj) = metadata.as_object() else { return vec!["Metadata must be an object".to_string()] };
    let mut errors = Vec::new();
    let unexpected: Vec<String> =
        obj.keys().filter(|k| *k != "labels" && *k != "annotations").map(|k| format!("'{k}'")).collect();
    if !unexpected.is_empty() {
        errors.push(format!("Metadata has unexpected field(s): {}", unexpected.join(" ")));
    }
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(labels)) => {
            for (key, value) in labels {
                if let Err(e) = key_error(key) {
                    errors.push(format!("Metadata label key error: {e}"));
                }
                if let Err(e) = label_value_error(&ruby_to_s(value)) {
                    errors.push(format!("Metadata label value error: {e}"));
                }
            }
        }
        Some(_) => errors.push("Metadata 'labels' is not an object".to_string()),
    }
    match obj.get("annotations") {
        None | Some(Value::Null) => {}
        Some(Value::Object(annotations)) => {
            for (key, value) in annotations {
                let text = ruby_to_s(value);
                // `annotation_value.present?`: the key of a removal (null) or of an empty value is not checked.
                if !text.trim().is_empty()
                    && let Err(e) = key_error(key)
                {
                    errors.push(format!("Metadata annotation key error: {e}"));
                }
                if text.chars().count() > MAX_ANNOTATION_VALUE_SIZE {
                    errors.push(format!(
                        "Metadata annotation value error: '{}...' is greater than {MAX_ANNOTATION_VALUE_SIZE} characters",
                        first_chars(&text)
                    ));
                }
            }
        }
        Some(_) => errors.push("Metadata 'annotations' is not an object".to_string()),
    }
    errors
}

/// Ruby's `to_s` of a JSON value as CC's helper sees it (`nil.to_s` is "").
fn ruby_to_s(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sets or (for `null`) removes each key of a validated `labels` / `annotations` object.
fn merge(target: &mut BTreeMap<String, String>, changes: Option<&Value>) {
    let Some(Value::Object(changes)) = changes else { return };
    for (key, value) in changes {
        match value {
            Value::Null => target.remove(key),
            other => target.insert(key.clone(), ruby_to_s(other)),
        };
    }
}

/// `name[0...8]`, as CC quotes an overlong key or value.
fn first_chars(text: &str) -> String {
    text.chars().take(8).collect()
}

/// `INVALID_CHAR_REGEX = /[^\w\-.]/`: Ruby's `\w` is ASCII letters, digits and `_`.
fn valid_characters(text: &str) -> bool {
    text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// `ALPHANUMERIC_START_END_REGEX = /\A(?=[a-zA-Z\d]).*[a-zA-Z\d]\z/`.
fn start_end_alphanumeric(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && text.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `CloudController::DomainDecorator::DOMAIN_REGEX` (lib/cloud_controller/domain_decorator.rb): two or more
/// dot-separated labels of 1–63 letters, digits and inner hyphens.
fn is_domain(prefix: &str) -> bool {
    let labels: Vec<&str> = prefix.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && start_end_alphanumeric(label)
        })
}

/// `MetadataValidatorHelper#key_error`: the first problem of a key, in CC's order.
fn key_error(key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err("key cannot be empty string".to_string());
    }
    if key.matches('/').count() > 1 {
        return Err("key has more than one '/'".to_string());
    }
    // `MetadataHelpers.extract_prefix`: Ruby's `split('/')` drops a trailing empty part.
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) if !(prefix.is_empty() && name.is_empty()) => (Some(prefix), name),
        Some(_) => (None, ""),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if !is_domain(prefix) {
            return Err(format!("prefix '{prefix}' must be in valid dns format"));
        }
        if prefix.chars().count() > MAX_PREFIX_SIZE {
            return Err(format!("prefix '{}...' is greater than {MAX_PREFIX_SIZE} characters", first_chars(prefix)));
        }
        if prefix.to_lowercase() == RESERVED_DOMAIN {
            return Err(format!("prefix '{RESERVED_DOMAIN}' is reserved"));
        }
    }
    if name.trim().is_empty() {
        return Err("key cannot be empty string".to_string());
    }
    name_error(name)
}

/// The character, start/end and size rules keys' names and label values share.
fn name_error(text: &str) -> Result<(), String> {
    if !valid_characters(text) {
        return Err(format!("'{text}' contains invalid characters"));
    }
    if !start_end_alphanumeric(text) {
        return Err(format!("'{text}' starts or ends with invalid characters"));
    }
    if text.chars().count() > MAX_NAME_SIZE {
        return Err(format!("'{}...' is greater than {MAX_NAME_SIZE} characters", first_chars(text)));
    }
    Ok(())
}

/// `MetadataValidatorHelper#value_error`: an empty value (or a removal) is always valid.
fn label_value_error(value: &str) -> Result<(), String> {
    if value.is_empty() { Ok(()) } else { name_error(value) }
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

impl Requirement {
    fn key(&self) -> &str {
        match self {
            Requirement::Equal(k, _)
            | Requirement::NotEqual(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::NotExists(k) => k,
        }
    }

    fn values(&self) -> Vec<&str> {
        match self {
            Requirement::Equal(_, v) | Requirement::NotEqual(_, v) => vec![v.as_str()],
            Requirement::In(_, vs) | Requirement::NotIn(_, vs) => vs.iter().map(String::as_str).collect(),
            Requirement::Exists(_) | Requirement::NotExists(_) => Vec::new(),
        }
    }
}

/// A parsed `label_selector`: every requirement must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses a `label_selector` as app/messages/list_message.rb and
    /// app/messages/validators/label_selector_requirement_validator.rb do: keys and values must be valid label keys
    /// and values (`MetadataValidatorHelper`), every problem a 400 CF-BadQueryParameter.
    pub fn parse(selector: &str) -> ApiResult<Self> {
        let invalid = || ApiError::bad_query("Invalid label_selector value");
        let mut requirements = Vec::new();
        // `REQUIREMENT_SPLITTER` scans non-empty runs, so empty parts are skipped.
        for part in split_requirements(selector).iter().filter(|p| !p.is_empty()) {
            let part = part.trim();
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
            let key = requirement.key();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(invalid());
            }
            requirements.push(requirement);
        }
        if requirements.is_empty() {
            return Err(ApiError::bad_query("Missing label_selector value"));
        }
        if requirements.len() > 50 {
            return Err(ApiError::bad_query("Too many label_selector requirements (maximum is 50)"));
        }
        let errors: Vec<String> = requirements
            .iter()
            .filter_map(|r| {
                key_error(r.key()).and_then(|()| r.values().iter().try_for_each(|v| label_value_error(v))).err()
            })
            .collect();
        if !errors.is_empty() {
            return Err(ApiError::bad_query(errors.join(", ")));
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
        metadata
            .apply(Some(&json!({"labels": {"a": "1", "b": "2"}, "annotations": {"example.com/y": "long text"}})))
            .unwrap();
        metadata.apply(Some(&json!({"labels": {"a": null, "c": "3"}}))).unwrap();
        assert_eq!(metadata.labels, labels(&[("b", "2"), ("c", "3")]));
        assert_eq!(metadata.annotations["example.com/y"], "long text");
    }

    #[test]
    fn invalid_label_changes_nothing() {
        let mut metadata = Metadata::default();
        let err = metadata.apply(Some(&json!({"labels": {"ok": "1", "bad key": "2"}}))).unwrap_err();
        assert_eq!(err.code, 10008);
        assert!(metadata.labels.is_empty());
    }

    fn label_errors(labels: Value) -> Vec<String> {
        errors(&json!({ "labels": labels }))
    }

    /// Cases of cloud_controller_ng's spec/unit/messages/validators/metadata_validator_spec.rb.
    #[test]
    fn key_prefixes_must_be_dns_names_with_a_dot() {
        assert_eq!(
            label_errors(json!({"onlycom/key4": "value5"})),
            ["Metadata label key error: prefix 'onlycom' must be in valid dns format"]
        );
        assert_eq!(
            label_errors(json!({"blue-green/lock": null})),
            ["Metadata label key error: prefix 'blue-green' must be in valid dns format"],
            "a removal's key is validated too"
        );
        for prefix in ["-a", "a%a.com", "a..com"] {
            assert_eq!(
                label_errors(json!({ format!("{prefix}/k"): "v" })),
                [format!("Metadata label key error: prefix '{prefix}' must be in valid dns format")]
            );
        }
        assert!(label_errors(json!({"cf-blue-green-resource.concourse/lock": "held"})).is_empty());
        assert!(label_errors(json!({"capi.ci.cf-app.com/dashboard": "green"})).is_empty());
        assert_eq!(
            label_errors(json!({"cloudfoundry.org/k": "v"})),
            ["Metadata label key error: prefix 'cloudfoundry.org' is reserved"]
        );
        let long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert_eq!(
            label_errors(json!({ format!("{long}/k"): "v" })),
            ["Metadata label key error: prefix 'aaaaaaaa...' is greater than 253 characters"]
        );
        assert_eq!(label_errors(json!({"a/b/c": "v"})), ["Metadata label key error: key has more than one '/'"]);
        assert_eq!(
            label_errors(json!({"": "v", "example.com/": "empty"})),
            ["Metadata label key error: key cannot be empty string"; 2]
        );
    }

    #[test]
    fn names_and_label_values_follow_cc_character_rules() {
        assert_eq!(
            label_errors(json!({"potato mashed": "v", "-a": "a-"})),
            [
                "Metadata label key error: '-a' starts or ends with invalid characters",
                "Metadata label value error: 'a-' starts or ends with invalid characters",
                "Metadata label key error: 'potato mashed' contains invalid characters",
            ]
        );
        assert_eq!(
            label_errors(json!({ "b".repeat(64): "c".repeat(64) })),
            [
                "Metadata label key error: 'bbbbbbbb...' is greater than 63 characters",
                "Metadata label value error: 'cccccccc...' is greater than 63 characters",
            ]
        );
        assert!(label_errors(json!({ "b".repeat(63): "" })).is_empty());
    }

    #[test]
    fn annotation_keys_are_checked_only_with_a_value() {
        let errors = errors(&json!({"annotations": {"blue-green/journal": null, "x y": "", "bad key": "v"}}));
        assert_eq!(errors, ["Metadata annotation key error: 'bad key' contains invalid characters"]);
        let errors = super::errors(&json!({"annotations": {"example.com/k": "a".repeat(5001)}}));
        assert_eq!(errors, ["Metadata annotation value error: 'aaaaaaaa...' is greater than 5000 characters"]);
        assert!(super::errors(&json!({"annotations": {"example.com/k": "a".repeat(5000)}})).is_empty());
    }

    #[test]
    fn metadata_shape_errors_are_cc_messages_joined_into_one_422() {
        assert_eq!(errors(&Value::Null), ["Metadata must be an object"]);
        assert_eq!(
            errors(&json!({"labels": [], "annotations": "x", "other": {}, "extra": 1})),
            [
                "Metadata has unexpected field(s): 'extra' 'other'",
                "Metadata 'labels' is not an object",
                "Metadata 'annotations' is not an object",
            ]
        );
        let err = Metadata::default().apply(Some(&json!({"labels": {"-a": "b-"}}))).unwrap_err();
        assert_eq!((err.status.as_u16(), err.code, err.title.as_str()), (422, 10008, "CF-UnprocessableEntity"));
        assert_eq!(
            err.detail,
            "Metadata label key error: '-a' starts or ends with invalid characters, \
             Metadata label value error: 'b-' starts or ends with invalid characters"
        );
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

    /// app/messages/validators/label_selector_requirement_validator.rb: keys and values are checked as labels'.
    #[test]
    fn selectors_validate_keys_and_values_as_cc() {
        let detail = |s: &str| LabelSelector::parse(s).unwrap_err().detail;
        assert_eq!(
            detail("blue-green/lock"),
            "The query parameter is invalid: prefix 'blue-green' must be in valid dns format"
        );
        assert_eq!(detail("env=-bad"), "The query parameter is invalid: '-bad' starts or ends with invalid characters");
        assert_eq!(detail(""), "The query parameter is invalid: Missing label_selector value");
        let many = (0..51).map(|i| format!("k{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(
            detail(&many),
            "The query parameter is invalid: Too many label_selector requirements (maximum is 50)"
        );
        assert_eq!(detail("env in prod"), "The query parameter is invalid: Invalid label_selector value");
        assert!(LabelSelector::parse("cf-blue-green-resource.concourse/lock=held,!example.com/x").is_ok());
    }
}
