//! App logs from Log Cache (`GET {log_cache}/api/v1/read/<app_guid>`): recent envelopes for an app (shown when
//! staging or starting fails), and a follower that polls for envelopes newer than the last one seen while
//! something else runs, so staging output (`STG`) streams into the build log as it happens. Beside them, the
//! app's real traffic: gorouter's `http` timers (`envelope_types=TIMER`) over a window, every page of it.
//!
//! Decoding is tolerant of every form Log Cache sends: proto or JSON field names, int64s as strings or numbers,
//! an empty or missing batch, tags as `tags` (strings) or `deprecated_tags` (`{"text": …}` values), missing tags.

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

/// The most pages of timers one window read takes before it says the window was cut short.
const MAX_TIMER_PAGES: usize = 100;

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
    tags: BTreeMap<String, serde_json::Value>,
    #[serde(default, alias = "deprecatedTags")]
    deprecated_tags: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    timer: Option<RawTimer>,
}

impl RawEnvelope {
    /// A tag's text, from `tags` or else from `deprecated_tags` (`{"text": …}`, `{"integer": …}`, …).
    fn tag(&self, key: &str) -> Option<String> {
        let text = |value: &serde_json::Value| match value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        self.tags.get(key).and_then(text).or_else(|| {
            let value = self.deprecated_tags.get(key)?;
            text(value).or_else(|| value.as_object()?.values().find_map(text))
        })
    }
}

#[derive(Deserialize)]
struct RawTimer {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "int_or_string")]
    start: i64,
    #[serde(default, deserialize_with = "int_or_string")]
    stop: i64,
}

/// One of gorouter's `http` timers: one request as the router saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTimer {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    /// `Server` (the whole request, one per request) or `Client` (one backend attempt); `None` when untagged.
    pub peer_type: Option<String>,
    /// `None` when the tag is missing or not a number.
    pub status: Option<u16>,
    /// `stop - start` in nanoseconds; `None` when either is missing or they are out of order.
    pub duration_ns: Option<i64>,
    pub request_id: Option<String>,
    pub user_agent: Option<String>,
    pub instance: String,
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
        serde_json::Value::String(s) => {
            s.trim().parse().or_else(|_| s.trim().parse::<f64>().map(|f| f as i64)).map_err(serde::de::Error::custom)
        }
        serde_json::Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!("bad timestamp {other}"))),
    }
}

/// Decodes a Log Cache read answer into log lines (non-log envelopes are skipped), in the order given.
pub(crate) fn decode_envelopes(body: &[u8]) -> std::result::Result<Vec<LogLine>, serde_json::Error> {
    decode_batch(body, |e| {
        let log = e.log.as_ref()?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(log.payload.as_bytes()).unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_owned();
        let stream = match &log.kind {
            serde_json::Value::String(s) if s == "ERR" => LogStream::Err,
            serde_json::Value::Number(n) if n.as_i64() == Some(1) => LogStream::Err,
            _ => LogStream::Out,
        };
        Some(LogLine {
            timestamp: e.timestamp,
            source_type: e.tag("source_type").unwrap_or_default(),
            instance: e.instance_id.clone(),
            stream,
            message,
        })
    })
}

/// Decodes a Log Cache read answer into `http` timers (other envelopes and timers are skipped), in the order
/// given.
pub(crate) fn decode_http_timers(body: &[u8]) -> std::result::Result<Vec<HttpTimer>, serde_json::Error> {
    decode_batch(body, |e| {
        let timer = e.timer.as_ref().filter(|t| t.name == "http")?;
        let duration_ns = (timer.start > 0 && timer.stop >= timer.start).then(|| timer.stop - timer.start);
        Some(HttpTimer {
            timestamp: e.timestamp,
            peer_type: e.tag("peer_type"),
            status: e.tag("status_code").and_then(|s| s.trim().parse().ok()),
            duration_ns,
            request_id: e.tag("request_id").filter(|id| !id.is_empty()),
            user_agent: e.tag("user_agent").filter(|agent| !agent.is_empty()),
            instance: e.instance_id.clone(),
        })
    })
}

/// The envelopes of a Log Cache read answer that `keep` turns into a value, in the order given.
fn decode_batch<T>(
    body: &[u8],
    keep: impl FnMut(&RawEnvelope) -> Option<T>,
) -> std::result::Result<Vec<T>, serde_json::Error> {
    let response: ReadResponse = serde_json::from_slice(body)?;
    Ok(response.envelopes.unwrap_or_default().batch.iter().filter_map(keep).collect())
}

/// The `http` timers of a window, and whether all of them could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerWindow {
    pub timers: Vec<HttpTimer>,
    /// False when the window held more than [`MAX_TIMER_PAGES`] pages: the figures rest on its first part.
    pub complete: bool,
}

/// One page of a timer read: its `http` timers, how many envelopes it held (a full page means there may be more)
/// and the newest timestamp among them.
struct TimerPage {
    timers: Vec<HttpTimer>,
    envelopes: usize,
    newest: i64,
}

fn page_of_timers(body: &[u8]) -> std::result::Result<TimerPage, serde_json::Error> {
    let batch = serde_json::from_slice::<ReadResponse>(body)?.envelopes.unwrap_or_default().batch;
    let newest = batch.iter().map(|e| e.timestamp).max().unwrap_or_default();
    Ok(TimerPage { timers: decode_http_timers(body)?, envelopes: batch.len(), newest })
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

    fn read_url(&self, source_id: &str, query: &str) -> Result<Url> {
        let base =
            self.cf.endpoints().log_cache.clone().ok_or_else(|| {
                Error::Config("this Cloud Foundry has no Log Cache (no links.log_cache in GET /)".into())
            })?;
        let base = base.as_str().trim_end_matches('/');
        let url = format!("{base}/api/v1/read/{source_id}?{query}");
        Url::parse(&url).map_err(|e| Error::Config(format!("bad Log Cache URL {url}: {e}")))
    }

    /// One read of `source_id` with `query`, decoded by `decode`.
    async fn read_with<T>(
        &self,
        source_id: &str,
        query: &str,
        decode: fn(&[u8]) -> std::result::Result<T, serde_json::Error>,
    ) -> Result<T> {
        let mut req = Req::new(Method::GET, Target::Url(self.read_url(source_id, query)?));
        req.timeout = Some(Duration::from_secs(15));
        let answer = self.cf.answer(&req).await?;
        decode(&answer.body).map_err(|e| Error::Decode {
            method: "GET".into(),
            path: answer.path.clone(),
            message: e.to_string(),
        })
    }

    /// One read: envelopes of type LOG for `source_id` (an app guid) from `start_ns` on, at most `limit`.
    pub(crate) async fn read(
        &self,
        source_id: &str,
        start_ns: i64,
        limit: u32,
        descending: bool,
    ) -> Result<Vec<LogLine>> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let query = format!("start_time={start_ns}&envelope_types=LOG&limit={limit}&descending={descending}");
        self.read_with(source_id, &query, decode_envelopes).await
    }

    /// The `http` timers of `source_id` (an app guid) with `start_ns <= timestamp < end_ns`, oldest first, every
    /// page of them (at most [`MAX_TIMER_PAGES`]).
    pub async fn http_timers(&self, source_id: &str, start_ns: i64, end_ns: i64) -> Result<TimerWindow> {
        self.follow_timers(source_id, start_ns).poll(end_ns).await
    }

    /// A follower of the `http` timers of `source_id` from `start_ns` on: each poll returns the ones that arrived
    /// since the last, each once.
    pub fn follow_timers(&self, source_id: &str, start_ns: i64) -> TimerFollower {
        TimerFollower {
            logs: self.clone(),
            source_id: source_id.to_owned(),
            next: start_ns,
            seen_at_next: HashSet::new(),
        }
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

/// What tells timers with the same timestamp apart.
type TimerKey = (Option<String>, Option<String>, Option<i64>);

/// Polls Log Cache for `http` timers newer than the last one it returned.
pub struct TimerFollower {
    logs: Logs,
    source_id: String,
    /// Start time of the next read (inclusive), the newest timestamp seen so far.
    next: i64,
    /// Timers already returned whose timestamp is `next` (a read from `next` returns them again).
    seen_at_next: HashSet<TimerKey>,
}

impl TimerFollower {
    /// The timers that arrived since the last poll, before `end_ns`, oldest first: every page of them, at most
    /// [`MAX_TIMER_PAGES`] (the next poll goes on where this one stopped).
    pub async fn poll(&mut self, end_ns: i64) -> Result<TimerWindow> {
        let mut window = TimerWindow::default();
        for _ in 0..MAX_TIMER_PAGES {
            if self.next >= end_ns {
                window.complete = true;
                return Ok(window);
            }
            let query = format!("start_time={}&end_time={end_ns}&envelope_types=TIMER&limit={MAX_LIMIT}", self.next);
            let page = self.logs.read_with(&self.source_id, &query, page_of_timers).await?;
            let mut fresh = 0;
            let mut timers = page.timers;
            timers.sort_by_key(|t| t.timestamp);
            for timer in timers {
                let key = (timer.request_id.clone(), timer.peer_type.clone(), timer.duration_ns);
                if timer.timestamp < self.next
                    || (timer.timestamp == self.next && !self.seen_at_next.insert(key.clone()))
                {
                    continue;
                }
                if timer.timestamp > self.next {
                    self.next = timer.timestamp;
                    self.seen_at_next = HashSet::from([key]);
                }
                fresh += 1;
                window.timers.push(timer);
            }
            // A page of other timers only: go on after them.
            if fresh == 0 && page.newest > self.next {
                self.next = page.newest;
                self.seen_at_next.clear();
                continue;
            }
            // A short page is the last one; so is a full page of timers all seen before.
            if page.envelopes < MAX_LIMIT as usize || fresh == 0 {
                window.complete = true;
                return Ok(window);
            }
        }
        Ok(window)
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

    #[test]
    fn http_timers_decode_in_every_form_log_cache_sends() {
        let body = br#"{"envelopes":{"batch":[
            {"timestamp":"1700000000000000100","source_id":"app","instance_id":"0",
             "tags":{"peer_type":"Server","status_code":"503","request_id":"r1","method":"GET","user_agent":"curl/8"},
             "timer":{"name":"http","start":"1700000000000000000","stop":"1700000000080000000"}},
            {"timestamp":1700000000000000200,"sourceId":"app","instanceId":"1",
             "deprecatedTags":{"peer_type":{"text":"Client"},"status_code":{"integer":"200"}},
             "timer":{"name":"http","start":1700000000000000000,"stop":1700000000050000000}},
            {"timestamp":"3","tags":{},"timer":{"name":"http"}},
            {"timestamp":"4","tags":{"status_code":"n/a"},"timer":{"name":"http","start":"9","stop":"5"}},
            {"timestamp":"5","timer":{"name":"custom","start":"1","stop":"2"}},
            {"timestamp":"6","tags":{"source_type":"APP/PROC/WEB"},"log":{"payload":"aGk=","type":"OUT"}},
            {"timestamp":"7","gauge":{"metrics":{"cpu":{"unit":"percentage","value":1}}}}
        ]}}"#;
        let timers = decode_http_timers(body).unwrap();
        assert_eq!(timers.len(), 4, "only http timers: {timers:?}");
        assert_eq!(
            timers[0],
            HttpTimer {
                timestamp: 1_700_000_000_000_000_100,
                peer_type: Some("Server".into()),
                status: Some(503),
                duration_ns: Some(80_000_000),
                request_id: Some("r1".into()),
                user_agent: Some("curl/8".into()),
                instance: "0".into(),
            }
        );
        assert_eq!((timers[1].peer_type.as_deref(), timers[1].status), (Some("Client"), Some(200)));
        assert_eq!(timers[1].duration_ns, Some(50_000_000));
        assert_eq!((timers[2].peer_type.as_ref(), timers[2].status, timers[2].duration_ns), (None, None, None));
        assert_eq!((timers[3].status, timers[3].duration_ns), (None, None), "unparsable status, stop before start");
        for empty in [&br#"{"envelopes":{"batch":[]}}"#[..], br#"{"envelopes":{}}"#, br#"{}"#, br#"{"envelopes":null}"#]
        {
            assert!(decode_http_timers(empty).unwrap().is_empty());
        }
    }
}
