//! The envelopes of every app — log lines (staging output, app stdout/stderr, cell lifecycle lines) and the router's
//! `http` timers — in one bounded buffer per source, as Log Cache keeps them: a flood of timers evicts old log
//! lines too.

use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// A loggregator v2 timer envelope (`Envelope_Timer`), as the router's `http` timers reach Log Cache.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimerEnvelope {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    pub source_id: String,
    pub instance_id: String,
    pub tags: BTreeMap<String, String>,
    pub name: String,
    /// Nanoseconds since the epoch.
    pub start: i64,
    pub stop: i64,
}

/// One envelope of a source, whatever its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Log(Envelope),
    Timer(TimerEnvelope),
}

impl Stored {
    pub fn timestamp(&self) -> i64 {
        match self {
            Stored::Log(e) => e.timestamp,
            Stored::Timer(t) => t.timestamp,
        }
    }
}

pub struct LogStore {
    capacity: usize,
    sources: Mutex<HashMap<String, VecDeque<Stored>>>,
}

impl LogStore {
    pub fn new(capacity: usize) -> Self {
        LogStore { capacity: capacity.max(1), sources: Mutex::new(HashMap::new()) }
    }

    pub fn push(&self, source_id: &str, source_type: &str, instance_id: &str, stream: Stream, message: &str) {
        self.store(source_id, |timestamp| {
            Stored::Log(Envelope {
                timestamp,
                source_id: source_id.to_string(),
                instance_id: instance_id.to_string(),
                source_type: source_type.to_string(),
                message: message.to_string(),
                stream,
            })
        });
    }

    /// Stores a timer; its timestamp is when it is stored.
    pub fn push_timer(&self, mut timer: TimerEnvelope) {
        let source_id = timer.source_id.clone();
        self.store(&source_id, move |timestamp| {
            timer.timestamp = timestamp;
            Stored::Timer(timer)
        });
    }

    fn store(&self, source_id: &str, envelope: impl FnOnce(i64) -> Stored) {
        let mut sources = self.sources.lock().unwrap();
        let buffer = sources.entry(source_id.to_string()).or_default();
        // Strictly increasing timestamps per source keep `start_time` paging exact.
        let mut timestamp = crate::clock::unix_nanos();
        if let Some(last) = buffer.back() {
            timestamp = timestamp.max(last.timestamp() + 1);
        }
        if buffer.len() == self.capacity {
            buffer.pop_front();
        }
        buffer.push_back(envelope(timestamp));
    }

    /// Log Cache's read: envelopes `wanted` with `start <= timestamp <= end`; the oldest `limit` ascending, or with
    /// `descending` the newest `limit` newest first.
    pub fn read(
        &self,
        source_id: &str,
        start: i64,
        end: i64,
        limit: usize,
        descending: bool,
        wanted: impl Fn(&Stored) -> bool,
    ) -> Vec<Stored> {
        let sources = self.sources.lock().unwrap();
        let Some(buffer) = sources.get(source_id) else { return Vec::new() };
        let in_range = buffer.iter().filter(|e| e.timestamp() >= start && e.timestamp() <= end && wanted(e));
        if descending {
            let mut newest: Vec<Stored> = in_range.cloned().collect();
            newest.reverse();
            newest.truncate(limit);
            newest
        } else {
            in_range.take(limit).cloned().collect()
        }
    }

    /// Every log line of a source, oldest first (for tests).
    pub fn messages(&self, source_id: &str) -> Vec<Envelope> {
        self.entries(source_id)
            .into_iter()
            .filter_map(|e| match e {
                Stored::Log(log) => Some(log),
                Stored::Timer(_) => None,
            })
            .collect()
    }

    /// Every timer of a source, oldest first (for tests).
    pub fn timers(&self, source_id: &str) -> Vec<TimerEnvelope> {
        self.entries(source_id)
            .into_iter()
            .filter_map(|e| match e {
                Stored::Timer(timer) => Some(timer),
                Stored::Log(_) => None,
            })
            .collect()
    }

    fn entries(&self, source_id: &str) -> Vec<Stored> {
        self.read(source_id, 0, i64::MAX, usize::MAX, false, |_| true)
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
        let newest = store.read("app", 0, i64::MAX, 2, true, |_| true);
        let message = |e: &Stored| match e {
            Stored::Log(log) => log.message.clone(),
            Stored::Timer(_) => unreachable!("only logs were stored"),
        };
        assert_eq!(newest.iter().map(message).collect::<Vec<_>>(), ["line 4", "line 3"]);
        let after = store.read("app", all[1].timestamp, i64::MAX, 10, false, |_| true);
        assert_eq!(after.len(), 2);
        assert!(store.read("other", 0, i64::MAX, 10, false, |_| true).is_empty());
    }

    #[test]
    fn timers_share_the_buffer_and_evict_log_lines() {
        let store = LogStore::new(3);
        store.push("app", "APP/PROC/WEB", "0", Stream::Out, "started");
        let timer = |n: i64| TimerEnvelope {
            timestamp: 0,
            source_id: "app".into(),
            instance_id: "0".into(),
            tags: BTreeMap::new(),
            name: "http".into(),
            start: n,
            stop: n + 1,
        };
        for n in 0..3 {
            store.push_timer(timer(n));
        }
        assert!(store.messages("app").is_empty(), "three timers evicted the log line");
        let timers = store.timers("app");
        assert_eq!(timers.iter().map(|t| t.start).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(timers.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    }
}
