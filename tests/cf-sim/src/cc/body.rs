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
