//! The numbered phases of a put: their headers in the build log and how long each took (for the summary and
//! the put's metadata).

use std::time::{Duration, Instant};

use crate::log;

/// Tracks which phase is running and how long the finished ones took.
pub struct Phases {
    total: usize,
    current: Option<(String, Instant)>,
    done: Vec<(String, Duration)>,
}

impl Phases {
    pub fn new(total: usize) -> Phases {
        Phases { total, current: None, done: Vec::new() }
    }

    /// Ends the running phase and starts `title`, printing its numbered header.
    pub fn start(&mut self, title: &str) {
        self.finish();
        let number = self.done.len() + 1;
        log::phase(number, self.total.max(number), title);
        self.current = Some((title.to_owned(), Instant::now()));
    }

    /// Ends the running phase, if any.
    pub fn finish(&mut self) {
        if let Some((title, started)) = self.current.take() {
            self.done.push((title, started.elapsed()));
        }
    }

    /// The title of the running phase (for "… failed" messages).
    pub fn current(&self) -> Option<&str> {
        self.current.as_ref().map(|(title, _)| title.as_str())
    }

    /// Every finished phase with its duration, in order.
    pub fn durations(&self) -> &[(String, Duration)] {
        &self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_phase_once_in_order() {
        let mut phases = Phases::new(3);
        phases.start("Validating");
        assert_eq!(phases.current(), Some("Validating"));
        phases.start("Pushing");
        phases.finish();
        phases.finish();
        let titles: Vec<_> = phases.durations().iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(titles, ["Validating", "Pushing"]);
        assert_eq!(phases.current(), None);
    }
}
