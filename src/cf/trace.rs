//! A record of every HTTP request the client made: method, path, status, time and attempt.
//!
//! Benchmarks and tests count API calls with [`Trace::requests`]; with `verbose` each request is also printed to
//! the build log (through [`crate::log::trace`], so redacted), like `CF_TRACE` but without bodies or headers.

use std::sync::Mutex;
use std::time::Duration;

use crate::log;

/// The most records kept; older ones are dropped first (a deploy makes a few hundred requests).
const MAX_RECORDS: usize = 100_000;

/// One HTTP request as it went out (each retry is its own record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceRecord {
    pub method: String,
    /// Host and port, so API, UAA, Log Cache and blobstore requests can be told apart.
    pub host: String,
    /// The path, without the query string.
    pub path: String,
    pub query: Option<String>,
    /// `None` when no HTTP answer came (connection refused, timeout, dropped).
    pub status: Option<u16>,
    pub elapsed: Duration,
    /// 1 for the first try, 2 for the first retry, ….
    pub attempt: u32,
}

impl TraceRecord {
    /// `GET /v3/apps?names=x → 200 (35ms)`.
    pub fn summary(&self) -> String {
        let query = self.query.as_deref().map(|q| format!("?{q}")).unwrap_or_default();
        let status = self.status.map_or_else(|| "no response".to_owned(), |s| s.to_string());
        let attempt = if self.attempt > 1 { format!(", attempt {}", self.attempt) } else { String::new() };
        format!(
            "{} {}{} → {} ({}{})",
            self.method,
            self.path,
            query,
            status,
            log::human_duration(self.elapsed),
            attempt
        )
    }
}

/// The request log of one client (shared by its clones).
#[derive(Debug, Default)]
pub struct Trace {
    records: Mutex<Vec<TraceRecord>>,
    print: bool,
}

impl Trace {
    pub(crate) fn new(print: bool) -> Self {
        Trace { records: Mutex::new(Vec::new()), print }
    }

    pub(crate) fn record(&self, record: TraceRecord) {
        if self.print {
            log::trace(record.summary());
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= MAX_RECORDS {
            records.drain(..MAX_RECORDS / 10);
        }
        records.push(record);
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<TraceRecord> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// How many requests had this method and a path starting with `path_prefix`.
    pub fn count_matching(&self, method: &str, path_prefix: &str) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .count()
    }

    /// Forgets the records so far (e.g. between benchmark phases).
    pub fn clear(&self) {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: &str, path: &str, status: Option<u16>, attempt: u32) -> TraceRecord {
        TraceRecord {
            method: method.into(),
            host: "api.example.org".into(),
            path: path.into(),
            query: None,
            status,
            elapsed: Duration::from_millis(35),
            attempt,
        }
    }

    #[test]
    fn records_are_counted_and_summarised() {
        let trace = Trace::new(false);
        trace.record(rec("GET", "/v3/apps", Some(200), 1));
        trace.record(rec("GET", "/v3/apps/x", None, 2));
        trace.record(rec("POST", "/v3/apps", Some(201), 1));
        assert_eq!(trace.count(), 3);
        assert_eq!(trace.count_matching("GET", "/v3/apps"), 2);
        assert_eq!(trace.requests()[1].summary(), "GET /v3/apps/x → no response (35ms, attempt 2)");
        let mut with_query = rec("GET", "/v3/apps", Some(200), 1);
        with_query.query = Some("names=a".into());
        assert_eq!(with_query.summary(), "GET /v3/apps?names=a → 200 (35ms)");
        trace.clear();
        assert_eq!(trace.count(), 0);
    }
}
