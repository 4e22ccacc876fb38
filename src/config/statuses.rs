//! `error_statuses`: which HTTP answers count as errors in a rate gate — classes (`"5xx"`, `"4xx"`) and single
//! codes (`429`, `"404"`). By default only 5xx answers do: a 404 for a missing favicon is not an outage.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A set of HTTP statuses given as classes and codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorStatuses {
    /// Classes by their first digit (5 for `5xx`).
    classes: Vec<u16>,
    codes: Vec<u16>,
}

impl Default for ErrorStatuses {
    fn default() -> Self {
        ErrorStatuses { classes: vec![5], codes: Vec::new() }
    }
}

impl ErrorStatuses {
    /// Whether an answer with `status` is an error.
    pub(crate) fn contains(&self, status: u16) -> bool {
        self.classes.contains(&(status / 100)) || self.codes.contains(&status)
    }

    /// Parses one entry: `"5xx"` (any case), `503` or `"503"`, statuses 100–599.
    fn entry(&mut self, entry: &serde_json::Value) -> Result<(), String> {
        let bad = || format!("{entry} is not an HTTP status or class (e.g. \"5xx\", 429)");
        let text = match entry {
            serde_json::Value::String(text) => text.trim().to_ascii_lowercase(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(bad()),
        };
        if let Some(class) = text.strip_suffix("xx") {
            let class: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&class) {
                return Err(bad());
            }
            self.classes.push(class);
        } else {
            let code: u16 = text.parse().map_err(|_| bad())?;
            if !(100..=599).contains(&code) {
                return Err(bad());
            }
            self.codes.push(code);
        }
        Ok(())
    }
}

impl fmt::Display for ErrorStatuses {
    /// `5xx, 429`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> =
            self.classes.iter().map(|c| format!("{c}xx")).chain(self.codes.iter().map(u16::to_string)).collect();
        f.write_str(&entries.join(", "))
    }
}

impl<'de> Deserialize<'de> for ErrorStatuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = match serde_json::Value::deserialize(d)? {
            serde_json::Value::Array(entries) if !entries.is_empty() => entries,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "must be a non-empty list like [\"5xx\", 429], got {other}"
                )));
            }
        };
        let mut statuses = ErrorStatuses { classes: Vec::new(), codes: Vec::new() };
        for entry in &entries {
            statuses.entry(entry).map_err(serde::de::Error::custom)?;
        }
        Ok(statuses)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: serde_json::Value) -> Result<ErrorStatuses, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn only_5xx_by_default() {
        let statuses = ErrorStatuses::default();
        assert!(statuses.contains(500) && statuses.contains(503));
        assert!(!statuses.contains(404) && !statuses.contains(200) && !statuses.contains(429));
        assert_eq!(statuses.to_string(), "5xx");
    }

    #[test]
    fn classes_and_codes_in_any_form() {
        let statuses = parse(json!(["5XX", 429, "404"])).unwrap();
        assert!(statuses.contains(502) && statuses.contains(429) && statuses.contains(404));
        assert!(!statuses.contains(403));
        assert_eq!(statuses.to_string(), "5xx, 429, 404");
        assert!(parse(json!(["6xx"])).unwrap_err().contains("\"6xx\" is not an HTTP status or class"));
        assert!(parse(json!([99])).is_err());
        assert!(parse(json!([])).unwrap_err().contains("non-empty list"));
        assert!(parse(json!("5xx")).unwrap_err().contains("non-empty list"));
    }
}
