//! Timestamps and identifiers in the formats CF uses: ISO-8601 UTC with `Z`, UUID v4 guids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A new guid, a UUID v4 string as CC makes them.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A random string that is easy to find in logs when it leaks.
pub fn random_secret(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// `2016-03-17T21:41:30Z`: CC's timestamps have whole seconds.
pub fn iso_seconds(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    OffsetDateTime::from_unix_timestamp(secs).ok().and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

/// Now, formatted as CC does.
pub fn now_iso() -> String {
    iso_seconds(SystemTime::now())
}

/// Now with nanoseconds, as Diego reports `usage.time`.
pub fn now_iso_nanos() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    OffsetDateTime::from_unix_timestamp_nanos(now.as_nanos() as i128)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub fn unix_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_nanos() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_with_z_and_whole_seconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_458_250_890_500);
        assert_eq!(iso_seconds(at), "2016-03-17T21:41:30Z");
    }

    #[test]
    fn guids_are_uuid_v4() {
        let guid = new_guid();
        assert_eq!(guid.len(), 36);
        assert_eq!(guid.as_bytes()[14], b'4');
    }
}
