//! The one place secrets are known, so no output path can print them by accident.
//!
//! Credentials from `source`, tokens from UAA and values the user marks secret are registered here as soon as
//! they are read; every line the resource writes (build log, errors, child-process output, traces) passes
//! through [`redact`] on its way out.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a secret is replaced with in output.
pub(crate) const MASK: &str = "[redacted]";

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Lines of a multi-line secret (a PEM key, a JSON blob) at least this long are masked on their own too.
const MIN_LINE: usize = 8;

/// Remembers `secret` so that it, and the forms it takes inside JSON strings, URL-encoded and form-encoded
/// bodies, and text folded onto one line, are masked in all later output. Empty and blank values are ignored:
/// there is nothing to hide and they would match everywhere (a blank one between every two words).
pub(crate) fn register(secret: &str) {
    if secret.trim().is_empty() {
        return;
    }
    let json_escaped = serde_json::to_string(secret).expect("a string always serializes");
    let json_escaped = json_escaped[1..json_escaped.len() - 1].to_owned();
    let url_encoded = percent_encode(secret);
    let form_encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let folded = secret.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines = secret.lines().map(str::trim).filter(|line| line.len() >= MIN_LINE && *line != secret);
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    let forms = [secret.to_owned(), json_escaped, url_encoded, form_encoded, folded].into_iter();
    for form in forms.chain(lines.map(str::to_owned)).filter(|form| !form.is_empty()) {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole rather than leaving a tail behind.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers every string inside `value` (a managed binding's parameters: a broker's options and credentials
/// alike) of at least [`MIN_LINE`] characters; a shorter one is more likely a plan name or a flag than a secret,
/// and masking it would garble the log.
pub(crate) fn register_strings_in(value: &serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.len() >= MIN_LINE => register(text),
        serde_json::Value::Array(items) => items.iter().for_each(register_strings_in),
        serde_json::Value::Object(fields) => fields.values().for_each(register_strings_in),
        _ => {}
    }
}

/// `text` with every registered secret replaced by [`MASK`]. All matches are found in the original text and
/// overlapping ones merged, so one secret never matches inside another's mask or a mask's own letters.
pub(crate) fn redact(text: &str) -> Cow<'_, str> {
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut spans: Vec<(usize, usize)> = secrets
        .iter()
        .flat_map(|secret| text.match_indices(secret.as_str()).map(|(start, s)| (start, start + s.len())))
        .collect();
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut spans = spans.into_iter().peekable();
    while let Some((start, mut end)) = spans.next() {
        while let Some(&(next_start, next_end)) = spans.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            spans.next();
        }
        out.push_str(&text[copied..start]);
        out.push_str(MASK);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
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
    fn every_long_string_inside_parameters_is_masked() {
        register_strings_in(&serde_json::json!({
            "pool": 5,
            "plan": "small",
            "credentials": {"password": "s3cret-in-params"},
            "hosts": ["db-host-one.internal"],
        }));
        assert_eq!(
            redact("password s3cret-in-params on db-host-one.internal, plan small, pool 5"),
            format!("password {MASK} on {MASK}, plan small, pool 5")
        );
    }

    #[test]
    fn masks_form_encoded_folded_and_line_by_line_forms() {
        register("pass word*~");
        assert_eq!(redact("username=u&password=pass+word*%7E"), format!("username=u&password={MASK}"));
        register("-----BEGIN KEY-----\nAAAAsecretline1\n  BBBBsecretline2\n-----END KEY-----");
        assert_eq!(
            redact("error: -----BEGIN KEY----- AAAAsecretline1 BBBBsecretline2 -----END KEY-----"),
            format!("error: {MASK}")
        );
        assert_eq!(redact("…cretline1 BBBBsecretline2 -----EN…"), format!("…cretline1 {MASK} -----EN…"));
    }

    #[test]
    fn a_short_secret_never_matches_inside_a_mask_and_overlaps_merge() {
        // `dact` is part of the mask's own text.
        register("ctd-long-secret");
        register("dact");
        assert_eq!(redact("x ctd-long-secret y"), format!("x {MASK} y"));
        register("ab12cd");
        register("cd34ef");
        assert_eq!(redact("-ab12cd34ef-"), format!("-{MASK}-"));
    }

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
    fn empty_and_blank_secrets_are_ignored() {
        register("");
        register(" ");
        register("\t\n");
        assert_eq!(redact("a b\tc"), "a b\tc");
    }
}
