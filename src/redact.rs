//! The one place secrets are known, so no output path can print them by accident.
//!
//! Credentials from `source`, tokens from UAA and values the user marks secret are registered here as soon as
//! they are read; every line the resource writes (build log, errors, child-process output, traces) passes
//! through [`redact`] on its way out.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with in output.
pub const MASK: &str = "[redacted]";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `secret` so that it, and the forms it takes inside JSON strings and URL-encoded bodies, are masked
/// in all later output. Empty values are ignored: there is nothing to hide and they would match everywhere.
pub fn register(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let json_escaped = serde_json::to_string(secret).expect("a string always serializes");
    let json_escaped = json_escaped[1..json_escaped.len() - 1].to_owned();
    let url_encoded = percent_encode(secret);
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for form in [secret.to_owned(), json_escaped, url_encoded] {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole rather than leaving a tail behind.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_json_and_url_encoded_forms() {
        register("s3cr\"et&pw");
        assert_eq!(redact("password=s3cr\"et&pw"), format!("password={MASK}"));
        assert_eq!(redact(r#"{"password":"s3cr\"et&pw"}"#), format!(r#"{{"password":"{MASK}"}}"#));
        assert_eq!(redact("password=s3cr%22et%26pw"), format!("password={MASK}"));
    }

    #[test]
    fn longer_secret_containing_a_shorter_one_is_masked_whole() {
        register("tok");
        register("tokenvalue-123");
        assert_eq!(redact("a tokenvalue-123 b"), format!("a {MASK} b"));
    }

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        register("never-printed-value");
        assert!(matches!(redact("plain line"), Cow::Borrowed("plain line")));
    }

    #[test]
    fn empty_secret_is_ignored() {
        register("");
        assert_eq!(redact("abc"), "abc");
    }
}
