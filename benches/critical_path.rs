//! Reading cf-sim's request log as a client at a given API latency sees it: each request's interval, the number
//! of sequential round trips on the critical path, which phase of a put a request belongs to, and how soon each
//! wait (a poll series) saw CF finish.
//!
//! - A request's interval runs from its arrival to its answer reaching the client: arrival + processing time
//!   (the log's `ms`) + the latency cf-sim adds after processing (the benchmarks set no jitter, so it is exact).
//! - **Round trips on the critical path**: the longest chain of requests each of which arrived after the
//!   previous one's answer was back. Requests whose intervals overlap were in flight together and count once;
//!   a request that needed an earlier answer cannot overlap it. This is the number of latencies the client
//!   waited one after another, whatever the total number of requests.
//! - **Wait detection**: a wait is a series of polls of one resource (a job, a package, a build, a process's
//!   stats), up to two in flight at once. The wait ends on the first answer that saw it finished, and no poll
//!   leaves after that: the poll that saw it is the first one answered after the last poll left (every answer
//!   before that saw it unfinished; polls left after it are unread). CF finished it between the arrival of the
//!   poll before that one and that poll's own; the client knew when its answer came back. The lag is estimated
//!   from the middle of that window (CF finishes at a time independent of the poll schedule), and its upper
//!   bound from the window's start. A wait seen done by its first poll has no window: its lag is that poll's
//!   round trip, a lower bound.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cf_sim::RequestRecord;

/// A logged request as the client sees it, in seconds since the Unix epoch.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    pub(crate) record: RequestRecord,
    pub(crate) start: f64,
    pub(crate) end: f64,
}

/// The records as intervals at `latency` (added after processing), ordered by arrival.
pub(crate) fn timed(records: &[RequestRecord], latency: Duration) -> Vec<Timed> {
    let mut timed: Vec<Timed> = records
        .iter()
        .map(|r| {
            let start = unix_seconds(&r.timestamp);
            Timed { record: r.clone(), start, end: start + r.ms as f64 / 1000.0 + latency.as_secs_f64() }
        })
        .collect();
    timed.sort_by(|a, b| a.start.total_cmp(&b.start));
    timed
}

/// The longest chain of requests each arriving after the previous one's answer.
pub(crate) fn rounds(requests: &[&Timed]) -> usize {
    let mut depth: Vec<usize> = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let before = (0..i).filter(|&j| requests[j].end <= r.start).map(|j| depth[j]).max().unwrap_or(0);
        depth.push(before + 1);
    }
    depth.into_iter().max().unwrap_or(0)
}

/// Whether a request waits for something (a job, staging, a package, instances, logs) rather than doing it.
pub(crate) fn is_poll(r: &RequestRecord) -> bool {
    let p = r.path.as_str();
    r.method == "GET"
        && (p.starts_with("/v3/jobs/")
            || p.starts_with("/v3/builds/")
            || (p.starts_with("/v3/packages/") && !p.ends_with("/download"))
            || p.ends_with("/stats")
            || p.starts_with("/api/v1/read/"))
}

/// One wait: a series of polls of one resource.
pub(crate) struct Wait {
    pub(crate) what: String,
    pub(crate) polls: usize,
    /// Estimated lag between CF finishing and the client knowing, in seconds.
    pub(crate) lag: f64,
    /// Its upper bound (equal to `lag` for a wait done by its first poll, where it is a lower bound).
    pub(crate) bound: f64,
}

/// The waits among `requests`: polls grouped by path (Log Cache reads are a stream, not a wait).
pub(crate) fn waits(requests: &[Timed]) -> Vec<Wait> {
    let mut series: BTreeMap<&str, Vec<&Timed>> = BTreeMap::new();
    for r in requests.iter().filter(|r| is_poll(&r.record) && !r.record.path.starts_with("/api/v1/read/")) {
        series.entry(r.record.path.as_str()).or_default().push(r);
    }
    let mut waits: Vec<(f64, Wait)> = series
        .into_iter()
        .map(|(path, polls)| {
            let last_sent = polls[polls.len() - 1].start;
            // At 0 ms latency (and 1 ms resolution) the last answer may be logged back the moment its poll left.
            let seen = polls.iter().position(|p| p.end > last_sent).unwrap_or(polls.len() - 1);
            let done = polls[seen];
            let (lag, bound) = match seen {
                0 => (done.end - done.start, done.end - done.start),
                n => {
                    let window_start = polls[n - 1].start;
                    (done.end - (window_start + done.start) / 2.0, done.end - window_start)
                }
            };
            let what = cf_sim::request_log::path_template(path);
            (polls[0].start, Wait { what, polls: polls.len(), lag, bound })
        })
        .collect();
    waits.sort_by(|a, b| a.0.total_cmp(&b.0));
    waits.into_iter().map(|(_, w)| w).collect()
}

/// `2026-12-05T04:34:05.123456789Z` → seconds since the Unix epoch.
pub(crate) fn unix_seconds(timestamp: &str) -> f64 {
    let parse = |s: &str| s.parse::<i64>().expect("a number in a timestamp");
    let (date, time) = timestamp.trim_end_matches('Z').split_once('T').expect("an RFC 3339 timestamp");
    let [year, month, day] = date.splitn(3, '-').map(parse).collect::<Vec<_>>()[..] else { panic!("{timestamp}") };
    let mut clock = time.splitn(3, ':');
    let (hours, minutes) = (parse(clock.next().unwrap()), parse(clock.next().unwrap()));
    let seconds: f64 = clock.next().unwrap().parse().expect("seconds");
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hours * 3600 + minutes * 60) as f64 + seconds
}

/// A moment as seconds since the Unix epoch.
pub(crate) fn epoch_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs_f64()
}

/// The phases of a put from its metadata (`duration_<phase>` fields, in order), as windows in seconds since the
/// Unix epoch, the first starting at `started`.
pub(crate) fn phase_windows(metadata: &serde_json::Value, started: SystemTime) -> Vec<(String, f64, f64)> {
    let mut at = epoch_seconds(started);
    metadata
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|field| {
            let phase = field["name"].as_str()?.strip_prefix("duration_")?.to_owned();
            let took = human_seconds(field["value"].as_str()?);
            let window = (phase, at, at + took);
            at += took;
            Some(window)
        })
        .collect()
}

/// `850ms`, `2.4s`, `1m05s` → seconds.
fn human_seconds(text: &str) -> f64 {
    if let Some(ms) = text.strip_suffix("ms") {
        ms.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some((minutes, seconds)) = text.split_once('m') {
        minutes.parse::<f64>().unwrap_or(0.0) * 60.0 + seconds.trim_end_matches('s').parse::<f64>().unwrap_or(0.0)
    } else {
        text.trim_end_matches('s').parse().unwrap_or(0.0)
    }
}
