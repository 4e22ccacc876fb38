//! Request bodies as CC reads them: invalid JSON is a 400 MessageParseError; a body of the wrong shape, or with
//! fields the message does not know, is a 422 UnprocessableEntity naming the problem.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

/// Parses a JSON body into `T` (whose unknown fields are rejected when it says `deny_unknown_fields`).
pub fn parse<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    let value = value(body)?;
    serde_json::from_value(value).map_err(|e| shape_error(&e.to_string()))
}

/// The body as a JSON object; an empty body is `{}`.
pub fn object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    match value(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::message_parse("the body must be a JSON object")),
    }
}

fn value(body: &Bytes) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::message_parse(e.to_string()))
}

/// Rejects keys a message does not accept, as CC's `NoAdditionalKeysValidator` does.
pub fn only_keys(map: &Map<String, Value>, allowed: &[&str]) -> ApiResult<()> {
    let unknown: Vec<&str> = map.keys().map(String::as_str).filter(|k| !allowed.contains(k)).collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!("Unknown field(s): '{}'", unknown.join("', '"))))
    }
}

/// A message's validation errors in CC's order, answered as one 422 CF-UnprocessableEntity whose detail joins them
/// with ", ", as `unprocessable!(message.errors.full_messages)` does (app/controllers/v3/application_controller.rb,
/// lib/cloud_controller/errors/api_error.rb).
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<String>);

impl Errors {
    pub(crate) fn add(&mut self, error: impl Into<String>) {
        self.0.push(error.into());
    }

    /// Records the detail of a failed check; gives the value of a passed one.
    pub(crate) fn check<T>(&mut self, result: ApiResult<T>) -> Option<T> {
        result.map_err(|e| self.add(e.detail)).ok()
    }

    /// `MetadataValidator`, run when the body has `metadata` (`MetadataBaseMessage`).
    pub(crate) fn metadata(&mut self, map: &Map<String, Value>) {
        if let Some(metadata) = map.get("metadata") {
            self.0.extend(super::metadata::errors(metadata));
        }
    }

    /// `numericality: { only_integer: true, greater_than: 0 }, allow_nil: true` on `key`, with ActiveModel's
    /// humanized attribute name ("Staging memory in mb must be greater than 0").
    pub(crate) fn positive_integer(&mut self, map: &Map<String, Value>, key: &str) {
        self.integer_greater_than(map, key, 0);
    }

    /// `numericality: { only_integer: true, greater_than: bound }, allow_nil: true` on `key` ("Log rate limit in
    /// bytes per second must be greater than -2").
    pub(crate) fn integer_greater_than(&mut self, map: &Map<String, Value>, key: &str, bound: i64) {
        let rule = match map.get(key) {
            None | Some(Value::Null) => return,
            Some(v) if v.as_i64().map_or(v.is_u64(), |n| n > bound) => return,
            Some(v) if v.is_i64() => format!("must be greater than {bound}"),
            Some(v) if v.is_number() => "must be an integer".to_owned(),
            Some(_) => "is not a number".to_owned(),
        };
        self.add(format!("{} {rule}", capitalize(&key.replace('_', " "))));
    }

    /// `NoAdditionalKeysValidator`.
    pub(crate) fn unknown_keys(&mut self, map: &Map<String, Value>, allowed: &[&str]) {
        self.check(only_keys(map, allowed));
    }

    /// `RelationshipValidator` over a `Relationships` message of to-one relationships (`ToOneRelationshipValidator`,
    /// app/messages/validators.rb); `required` are validated for presence. Gives each named relationship's guid.
    pub(crate) fn relationships(
        &mut self,
        map: &Map<String, Value>,
        allowed: &[&str],
        required: &[&str],
    ) -> Vec<Option<String>> {
        let none = vec![None; allowed.len()];
        let relationships = match map.get("relationships") {
            Some(Value::Object(r)) => r,
            _ => {
                self.add("Relationships 'relationships' is not an object");
                return none;
            }
        };
        if relationships.is_empty() {
            self.add("Relationships 'relationships' must include one or more valid relationships");
            return none;
        }
        let mut nested = Errors::default();
        nested.unknown_keys(relationships, allowed);
        let guids =
            allowed.iter().map(|name| nested.one_relationship(relationships.get(*name), name, required.contains(name)));
        let guids = guids.collect();
        self.0.extend(nested.0.into_iter().map(|e| format!("Relationships {e}")));
        guids
    }

    fn one_relationship(&mut self, relationship: Option<&Value>, name: &str, required: bool) -> Option<String> {
        let label = capitalize(&name.replace('_', " "));
        let relationship = match relationship {
            None | Some(Value::Null) if !required => return None,
            None | Some(Value::Null) => {
                self.add(format!("{label} can't be blank"));
                None
            }
            Some(value) => Some(value),
        };
        let data = relationship.and_then(Value::as_object).filter(|r| r.len() == 1).and_then(|r| r.get("data"));
        let guid = match data {
            Some(Value::Null) => return None,
            Some(Value::Object(data)) if data.len() == 1 && data.contains_key("guid") => &data["guid"],
            _ => {
                self.add(format!(
                    "{label} must be structured like this: \"{name}: {{\"data\": {{\"guid\": \"valid-guid\"}}}}\""
                ));
                return None;
            }
        };
        match guid.as_str() {
            Some(guid) if (1..=200).contains(&guid.chars().count()) => Some(guid.to_string()),
            Some(_) => {
                self.add(format!("{label} guid must be between 1 and 200 characters"));
                None
            }
            None => {
                self.add(format!("{label} guid must be a string"));
                self.add(format!("{label} guid must be between 1 and 200 characters"));
                None
            }
        }
    }

    /// Ok when nothing was recorded.
    pub(crate) fn finish(self) -> ApiResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::unprocessable(self.0.join(", "))) }
    }
}

/// Fields CC accepts that cf-sim does not model: a clear 422 naming them instead of silently ignoring them.
pub(crate) fn not_modelled(map: &Map<String, Value>, fields: &[&str]) -> ApiResult<()> {
    let present: Vec<&str> = fields.iter().copied().filter(|f| map.contains_key(*f)).collect();
    if present.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "cf-sim does not model field(s): '{}' (Cloud Controller accepts them)",
            present.join("', '")
        )))
    }
}

fn shape_error(message: &str) -> ApiError {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return ApiError::unprocessable(format!("Unknown field(s): '{field}'"));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return ApiError::unprocessable(format!("{} can't be blank", capitalize(field)));
    }
    ApiError::unprocessable(message.split(" at line ").next().unwrap_or(message).to_string())
}

fn capitalize(field: &str) -> String {
    let mut chars = field.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

/// `relationships.<name>.data.guid` of a request body.
pub fn relationship_guid(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.get("relationships")?.get(name)?.get("data")?.get("guid")?.as_str().map(str::to_string)
}

/// A relationship the message requires: 422 "Relationships Service instance can't be blank" when it is missing.
pub fn required_relationship(map: &Map<String, Value>, name: &str) -> ApiResult<String> {
    relationship_guid(map, name).ok_or_else(|| {
        ApiError::unprocessable(format!("Relationships {} can't be blank", capitalize(&name.replace('_', " "))))
    })
}

/// A string field, `None` when absent or null; 422 when it has another type.
pub fn string_field(map: &Map<String, Value>, key: &str) -> ApiResult<Option<String>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::unprocessable(format!("{} must be a string", capitalize(key)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Message {
        name: String,
    }

    #[test]
    fn errors_look_like_cc() {
        assert_eq!(parse::<Message>(&Bytes::from_static(br#"{"name":"a"}"#)).unwrap().name, "a");
        let err = parse::<Message>(&Bytes::from_static(b"{")).unwrap_err();
        assert_eq!((err.code, err.status.as_u16()), (1001, 400));
        let err = parse::<Message>(&Bytes::from_static(br#"{"name":"a","bogus":1}"#)).unwrap_err();
        assert_eq!(err.detail, "Unknown field(s): 'bogus'");
        let err = parse::<Message>(&Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(err.detail, "Name can't be blank");
    }
}
