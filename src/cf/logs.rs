//! App logs from Log Cache (`GET {log_cache}/api/v1/read/<app_guid>`): recent envelopes for an app (shown when
//! staging or starting fails), and a follower that polls for envelopes newer than the last one seen while
//! something else runs, so staging output (`STG`) streams into the build log as it happens.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use reqwest::{Method, Url};
use serde::{Deserialize, Deserializer};

use crate::cf::client::{CfClient, Req, Target};
use crate::cf::error::{Error, Result};
use crate::log;

/// Log Cache's largest page.
pub(crate) const MAX_LIMIT: u32 = 1000;

/// How often [`Logs::follow_while`] polls.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(1000);

/// Which stream a line was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogStream {
    Out,
    Err,
}

/// One decoded log envelope.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogLine {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    /// `STG`, `APP/PROC/WEB`, `API`, `CELL`, `RTR`, ….
    pub(crate) source_type: String,
    /// The instance index (`"0"`), or empty.
    pub instance: String,
    pub stream: LogStream,
    /// The payload, decoded, without its trailing newline.
    pub message: String,
}

impl LogLine {
    /// `[STG/0] message` (`ERR` lines are marked).
    pub fn display(&self) -> String {
        let source = if self.instance.is_empty() {
            self.source_type.clone()
        } else {
            format!("{}/{}", self.source_type, self.instance)
        };
        match self.stream {
            LogStream::Out => format!("[{source}] {}", self.message),
            LogStream::Err => format!("[{source}] ERR {}", self.message),
        }
    }

    pub fn is_staging(&self) -> bool {
        self.source_type == "STG"
    }
}

/// The current time in nanoseconds since the epoch (Log Cache's unit).
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

#[derive(Deserialize)]
struct ReadResponse {
    #[serde(default)]
    envelopes: Option<EnvelopeBatch>,
}

#[derive(Deserialize, Default)]
struct EnvelopeBatch {
    #[serde(default)]
    batch: Vec<RawEnvelope>,
}

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(default, deserialize_with = "int_or_string")]
    timestamp: i64,
    #[serde(default, alias = "instanceId")]
    instance_id: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    log: Option<RawLog>,
}

#[derive(Deserialize)]
struct RawLog {
    #[serde(default)]
    payload: String,
    #[serde(rename = "type", default)]
    kind: serde_json::Value,
}

fn int_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
        serde_json::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        serde_json::Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!("bad timestamp {other}"))),
    }
}

/// Decodes a Log Cache read answer into log lines (non-log envelopes are skipped), in the order given.
pub(crate) fn decode_envelopes(body: &[u8]) -> std::result::Result<Vec<LogLine>, serde_json::Error> {
    let response: ReadResponse = serde_json::from_slice(body)?;
    Ok(response
        .envelopes
        .unwrap_or_default()
        .batch
        .into_iter()
        .filter_map(|e| {
            let log = e.log?;
            let bytes = base64::engine::general_purpose::STANDARD.decode(log.payload.as_bytes()).unwrap_or_default();
            let message = String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned();
            let stream = match &log.kind {
                serde_json::Value::String(s) if s == "ERR" => LogStream::Err,
                serde_json::Value::Number(n) if n.as_i64() == Some(1) => LogStream::Err,
                _ => LogStream::Out,
            };
            Some(LogLine {
                timestamp: e.timestamp,
                source_type: e.tags.get("source_type").cloned().unwrap_or_default(),
                instance: e.instance_id,
                stream,
                message,
            })
        })
        .collect())
}

/// Log Cache access; see [`CfClient::logs`].
#[derive(Clone)]
pub struct Logs {
    cf: CfClient,
}

impl CfClient {
    pub fn logs(&self) -> Logs {
        Logs { cf: self.clone() }
    }
}

impl Logs {
    /// Whether the foundation advertises Log Cache.
    pub fn available(&self) -> bool {
        self.cf.endpoints().log_cache.is_some()
    }

    fn read_url(&self, source_id: &str, start_ns: i64, limit: u32, descending: bool) -> Result<Url> {
        let base =
            self.cf.endpoints().log_cache.clone().ok_or_else(|| {
                Error::Config("this Cloud Foundry has no Log Cache (no links.log_cache in GET /)".into())
            })?;
        let base = base.as_str().trim_end_matches('/');
        let url = format!(
            "{base}/api/v1/read/{source_id}?start_time={start_ns}&envelope_types=LOG&limit={}&descending={descending}",
            limit.clamp(1, MAX_LIMIT)
        );
        Url::parse(&url).map_err(|e| Error::Config(format!("bad Log Cache URL {url}: {e}")))
    }

    /// One read: envelopes of type LOG for `source_id` (an app guid) from `start_ns` on, at most `limit`.
    pub async fn read(&self, source_id: &str, start_ns: i64, limit: u32, descending: bool) -> Result<Vec<LogLine>> {
        let mut req = Req::new(Method::GET, Target::Url(self.read_url(source_id, start_ns, limit, descending)?));
        req.timeout = Some(Duration::from_secs(15));
        let answer = self.cf.answer(&req).await?;
        decode_envelopes(&answer.body).map_err(|e| Error::Decode {
            method: "GET".into(),
            path: answer.path.clone(),
            message: e.to_string(),
        })
    }

    /// The last `limit` log lines of the app (staging and runtime), oldest first.
    pub async fn recent(&self, app_guid: &str, limit: u32) -> Result<Vec<LogLine>> {
        let mut lines = self.read(app_guid, 0, limit, true).await?;
        lines.sort_by_key(|l| l.timestamp);
        Ok(lines)
    }

    /// A follower that returns the app's lines from `start_ns` on, each once.
    pub fn follow(&self, app_guid: &str, start_ns: i64) -> LogFollower {
        LogFollower { logs: self.clone(), source_id: app_guid.to_owned(), next: start_ns, seen_at_next: HashSet::new() }
    }

    /// Runs `work` while following the app's logs, handing each new line to `on_line` (about once a second,
    /// plus a last look when `work` is done). Log Cache trouble never fails `work`: it is reported once and
    /// following stops.
    pub async fn follow_while<F: Future>(
        &self,
        app_guid: &str,
        start_ns: i64,
        work: F,
        mut on_line: impl FnMut(&LogLine),
    ) -> F::Output {
        let mut follower = self.follow(app_guid, start_ns);
        let mut broken = !self.available();
        tokio::pin!(work);
        loop {
            tokio::select! {
                output = &mut work => {
                    if !broken && let Ok(lines) = follower.poll().await {
                        lines.iter().for_each(&mut on_line);
                    }
                    return output;
                }
                _ = tokio::time::sleep(FOLLOW_INTERVAL), if !broken => {
                    match follower.poll().await {
                        Ok(lines) => lines.iter().for_each(&mut on_line),
                        Err(e) => {
                            log::warn(format_args!("cannot read the app's logs from Log Cache ({e}); going on without them"));
                            broken = true;
                        }
                    }
                }
            }
        }
    }
}

/// Polls Log Cache for lines newer than the last one it returned.
pub struct LogFollower {
    logs: Logs,
    source_id: String,
    /// Start time of the next read (inclusive), the newest timestamp seen so far.
    next: i64,
    /// Lines already returned whose timestamp is `next` (a read from `next` returns them again).
    seen_at_next: HashSet<u64>,
}

impl LogFollower {
    /// The lines that arrived since the last poll, oldest first (reads further pages when a page is full).
    pub(crate) async fn poll(&mut self) -> Result<Vec<LogLine>> {
        let mut out = Vec::new();
        for _ in 0..10 {
            let mut lines = self.logs.read(&self.source_id, self.next, MAX_LIMIT, false).await?;
            let full = lines.len() as u32 >= MAX_LIMIT;
            lines.sort_by_key(|l| l.timestamp);
            let mut fresh = 0;
            for line in lines {
                let key = line_key(&line);
                if line.timestamp < self.next || (line.timestamp == self.next && self.seen_at_next.contains(&key)) {
                    continue;
                }
                if line.timestamp > self.next {
                    self.next = line.timestamp;
                    self.seen_at_next.clear();
                }
                self.seen_at_next.insert(key);
                fresh += 1;
                out.push(line);
            }
            if !full || fresh == 0 {
                break;
            }
        }
        Ok(out)
    }
}

fn line_key(line: &LogLine) -> u64 {
    let mut h = DefaultHasher::new();
    line.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_decode_in_either_field_style() {
        let body = br#"{"envelopes":{"batch":[
            {"timestamp":"1581447006352020890","source_id":"app","instance_id":"0","tags":{"source_type":"STG"},
             "log":{"payload":"LS0tLS0+IERvd25sb2FkZWQgYXBwIHBhY2thZ2UK","type":"OUT"}},
            {"timestamp":1581447006352020891,"sourceId":"app","instanceId":"1","tags":{"source_type":"APP/PROC/WEB"},
             "log":{"payload":"Ym9vbQ==","type":"ERR"}},
            {"timestamp":"1","tags":{},"counter":{"name":"x","total":"1"}}
        ]}}"#;
        let lines = decode_envelopes(body).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "-----> Downloaded app package");
        assert_eq!(lines[0].display(), "[STG/0] -----> Downloaded app package");
        assert!(lines[0].is_staging());
        assert_eq!(lines[1].timestamp, 1581447006352020891);
        assert_eq!(lines[1].display(), "[APP/PROC/WEB/1] ERR boom");
        assert!(decode_envelopes(br#"{"envelopes":{"batch":[]}}"#).unwrap().is_empty());
        assert!(decode_envelopes(br#"{}"#).unwrap().is_empty());
    }
}
