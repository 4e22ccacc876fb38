//! The numbered phases of a put: their headers in the build log and how long each took (for the summary and
//! the put's metadata).

use std::time::{Duration, Instant};

use crate::log;

/// Tracks which phase is running and how long the finished ones took.
pub(crate) struct Phases {
    total: usize,
    current: Option<(&'static str, Instant)>,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    pub(crate) fn new(total: usize) -> Phases {
        Phases { total, current: None, done: Vec::new() }
    }

    /// Ends the running phase and starts the phase `key` (a short name for metadata: `push`, `verify`),
    /// printing its numbered header `title`.
    pub(crate) fn start(&mut self, key: &'static str, title: &str) {
        self.finish();
        let number = self.done.len() + 1;
        log::phase(number, self.total.max(number), title);
        self.current = Some((key, Instant::now()));
    }

    /// Ends the running phase, if any.
    pub(crate) fn finish(&mut self) {
        if let Some((title, started)) = self.current.take() {
            self.done.push((title, started.elapsed()));
        }
    }

    /// The key of the running phase.
    pub(crate) fn current(&self) -> Option<&'static str> {
        self.current.map(|(key, _)| key)
    }

    /// Every finished phase with its duration, in order.
    pub(crate) fn durations(&self) -> &[(&'static str, Duration)] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_phase_once_in_order() {
        let mut phases = Phases::new(3);
        phases.start("validate", "Checking the request");
        assert_eq!(phases.current(), Some("validate"));
        phases.start("push", "Pushing myapp-green");
        phases.finish();
        phases.finish();
        let keys: Vec<_> = phases.durations().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["validate", "push"]);
        assert_eq!(phases.current(), None);
    }
}
