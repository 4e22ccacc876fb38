//! The log envelopes of every app (staging output, app stdout/stderr, cell lifecycle lines), in a bounded buffer per
//! source, as Log Cache keeps them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stream {
    #[serde(rename = "OUT")]
    Out,
    #[serde(rename = "ERR")]
    Err,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Envelope {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub source_id: String,
    pub instance_id: String,
    pub source_type: String,
    pub message: String,
    pub stream: Stream,
}

pub struct LogStore {
    capacity: usize,
    sources: Mutex<HashMap<String, VecDeque<Envelope>>>,
}

impl LogStore {
    pub fn new(capacity: usize) -> Self {
        LogStore { capacity: capacity.max(1), sources: Mutex::new(HashMap::new()) }
    }

    pub fn push(&self, source_id: &str, source_type: &str, instance_id: &str, stream: Stream, message: &str) {
        let mut sources = self.sources.lock().unwrap();
        let buffer = sources.entry(source_id.to_string()).or_default();
        // Strictly increasing timestamps per source keep `start_time` paging exact.
        let mut timestamp = crate::clock::unix_nanos();
        if let Some(last) = buffer.back() {
            timestamp = timestamp.max(last.timestamp + 1);
        }
        if buffer.len() == self.capacity {
            buffer.pop_front();
        }
        buffer.push_back(Envelope {
            timestamp,
            source_id: source_id.to_string(),
            instance_id: instance_id.to_string(),
            source_type: source_type.to_string(),
            message: message.to_string(),
            stream,
        });
    }

    /// Log Cache's read: envelopes with `start <= timestamp <= end`; the oldest `limit` ascending, or with
    /// `descending` the newest `limit` newest first.
    pub fn read(&self, source_id: &str, start: i64, end: i64, limit: usize, descending: bool) -> Vec<Envelope> {
        let sources = self.sources.lock().unwrap();
        let Some(buffer) = sources.get(source_id) else { return Vec::new() };
        let in_range = buffer.iter().filter(|e| e.timestamp >= start && e.timestamp <= end);
        if descending {
            let mut newest: Vec<Envelope> = in_range.cloned().collect();
            newest.reverse();
            newest.truncate(limit);
            newest
        } else {
            in_range.take(limit).cloned().collect()
        }
    }

    /// Every message of a source, oldest first (for tests).
    pub fn messages(&self, source_id: &str) -> Vec<Envelope> {
        self.read(source_id, 0, i64::MAX, usize::MAX, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_bounded_and_reads_both_ways() {
        let store = LogStore::new(3);
        for i in 0..5 {
            store.push("app", "APP/PROC/WEB", "0", Stream::Out, &format!("line {i}"));
        }
        let all = store.messages("app");
        assert_eq!(all.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["line 2", "line 3", "line 4"]);
        let newest = store.read("app", 0, i64::MAX, 2, true);
        assert_eq!(newest.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["line 4", "line 3"]);
        let after = store.read("app", all[1].timestamp, i64::MAX, 10, false);
        assert_eq!(after.len(), 2);
        assert!(store.read("other", 0, i64::MAX, 10, false).is_empty());
    }
}
