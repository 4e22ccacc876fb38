//! The build log: what a person reading a Concourse build sees on stderr.
//!
//! Numbered phase headers with elapsed time, indented detail and child-process output, throttled progress
//! lines and one final error line. Concourse renders ANSI colour, so it is on unless `NO_COLOR` is set
//! (<https://no-color.org>). Every line is passed through [`crate::redact`] before it is written, and
//! stdout is never touched: it belongs to the protocol's single JSON answer.

use std::fmt::Display;
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::redact::redact;

static START: OnceLock<Instant> = OnceLock::new();
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// Marks the start of the run (the origin of every elapsed time). Called first thing by the protocol layer;
/// calling it again changes nothing.
pub(crate) fn start() {
    START.get_or_init(Instant::now);
}

/// Time since [`start`].
pub(crate) fn elapsed() -> Duration {
    START.get_or_init(Instant::now).elapsed()
}

/// Turns [`trace`] output on (`source.verbose`).
pub(crate) fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

pub(crate) fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

fn colour_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()))
}

#[derive(Clone, Copy)]
enum Style {
    Plain,
    Bold,
    Dim,
    Green,
    Yellow,
    Red,
    Cyan,
}

fn paint(style: Style, text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let code = match style {
        Style::Plain => return text.to_owned(),
        Style::Bold => "1",
        Style::Dim => "2",
        Style::Green => "32",
        Style::Yellow => "33",
        Style::Red => "1;31",
        Style::Cyan => "1;36",
    };
    if colour_enabled() { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
}

/// Writes one or more lines to stderr, redacted, each prefixed with `prefix`.
fn emit(prefix: &str, style: Style, text: &str) {
    let text = redact(text);
    let mut stderr = std::io::stderr().lock();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        // A failed write to stderr has nowhere to be reported; the run goes on.
        let _ = writeln!(stderr, "{prefix}{}", paint(style, line));
    }
}

/// Formats a duration the way build logs show it: `850ms`, `12.3s`, `2m05s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// A numbered phase header: `[3/7] Pushing myapp-green  (+12.3s)`.
pub(crate) fn phase(number: usize, total: usize, title: &str) {
    let header = paint(Style::Cyan, &format!("[{number}/{total}] {title}"));
    let at = paint(Style::Dim, &format!("(+{})", human_duration(elapsed())));
    emit("", Style::Plain, &format!("\n{header}  {at}"));
}

/// A top-level line of the current phase.
pub(crate) fn info(message: impl Display) {
    emit("", Style::Plain, &message.to_string());
}

/// A line belonging to the line above it, indented.
pub(crate) fn detail(message: impl Display) {
    emit("    ", Style::Plain, &message.to_string());
}

/// A line of output from something else (staging, the app, a smoke test), indented and set off.
pub(crate) fn output(line: &str) {
    emit("      │ ", Style::Dim, line);
}

/// Something went well and the reader should notice.
pub(crate) fn success(message: impl Display) {
    emit("", Style::Green, &message.to_string());
}

/// Something the reader should know about but that does not stop the run.
pub(crate) fn warn(message: impl Display) {
    emit("", Style::Yellow, &format!("warning: {message}"));
}

/// API traces and other diagnostics, shown only with `source.verbose: true`.
pub(crate) fn trace(message: impl Display) {
    if verbose() {
        emit("    ", Style::Dim, &message.to_string());
    }
}

/// A bold heading for the closing summary.
pub(crate) fn heading(message: impl Display) {
    emit("", Style::Bold, &format!("\n{message}"));
}

/// The final line of a failed run. Newlines inside the message are folded so it stays one line.
pub(crate) fn error(message: impl Display) {
    // Masked before folding, so a secret with line breaks in it is still recognised.
    let message = message.to_string();
    let one_line = redact(&message).split_whitespace().collect::<Vec<_>>().join(" ");
    emit("", Style::Red, &format!("error: {one_line}"));
}

/// Throttled progress for long work: prints at most every `interval`, plus the final 100% line.
pub(crate) struct Progress {
    label: String,
    total: u64,
    started: Instant,
    last_print: Option<Instant>,
    interval: Duration,
}

impl Progress {
    pub(crate) fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            started: Instant::now(),
            last_print: None,
            interval: Duration::from_secs(2),
        }
    }

    /// Reports `done` bytes of `total`; prints when enough time has passed or when the work is complete.
    pub(crate) fn update(&mut self, done: u64) {
        let now = Instant::now();
        let complete = done >= self.total;
        let due = self.last_print.is_none_or(|last| now.duration_since(last) >= self.interval);
        if !(complete || due) {
            return;
        }
        self.last_print = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let percent = done.saturating_mul(100).checked_div(self.total).unwrap_or(100);
        detail(format_args!(
            "{}: {percent:>3}%  {} of {}  {:.1} MB/s",
            self.label,
            human_bytes(done),
            human_bytes(self.total),
            done as f64 / 1e6 / secs
        ));
    }
}

/// `532 B`, `12.4 KB`, `200.0 MB`, `1.07 GB` (decimal units, as transfer rates are quoted).
pub(crate) fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1000 {
        format!("{bytes} B")
    } else if b < 1e6 {
        format!("{:.1} KB", b / 1e3)
    } else if b < 1e9 {
        format!("{:.1} MB", b / 1e6)
    } else {
        format!("{:.2} GB", b / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m05s");
    }

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(human_bytes(532), "532 B");
        assert_eq!(human_bytes(12_400), "12.4 KB");
        assert_eq!(human_bytes(200_000_000), "200.0 MB");
        assert_eq!(human_bytes(1_070_000_000), "1.07 GB");
    }
}
