//! Waiting, as values: the bounded [`Wait`] poller every state wait uses (polls start at 100 ms, back off to 3 s,
//! and always end at a deadline), waiting for an object to reach a state ([`Api::await_state`]) and for an
//! async job (202 + `Location` → `GET /v3/jobs/:guid` until COMPLETE or FAILED).

use std::future::Future;
use std::time::Duration;

use reqwest::{Method, Url};
use tokio::time::Instant;

use crate::cf::api::{Api, Resource};
use crate::cf::client::{CfClient, Req, Target};
use crate::cf::error::{CfError, Error, Result};
use crate::cf::jobs::{Job, JobState};
use crate::log;

/// What one poll of a [`Wait`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    Ready(T),
    Pending,
}

type OnPoll<'a> = Box<dyn FnMut(u32, Duration) + Send + 'a>;

/// A bounded poll loop: checks at once, then 100 ms after that check was sent, backing off by a quarter each
/// time to 3 s (so short waits end promptly and long ones settle at the CLI's interval), and gives up with
/// [`Error::Timeout`] at the deadline. Never waits without one. A check is never sent before the answer to the
/// previous one is back, and a slow answer counts towards the interval: on a far API, whose answers take longer
/// than the interval, the next check goes out as soon as the previous answer is in.
pub struct Wait<'a> {
    what: String,
    timeout: Duration,
    initial: Duration,
    max: Duration,
    on_poll: Option<OnPoll<'a>>,
}

impl<'a> Wait<'a> {
    /// `what` completes "timed out after 5m00s waiting for {what}".
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Wait {
            what: what.into(),
            timeout,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(3),
            on_poll: None,
        }
    }

    /// Called after each poll that was not ready, with the poll count and the time waited so far (for
    /// progress lines).
    pub(crate) fn on_poll(mut self, callback: impl FnMut(u32, Duration) + Send + 'a) -> Self {
        self.on_poll = Some(Box::new(callback));
        self
    }

    /// Polls `check` until it is ready, fails, or the deadline passes.
    pub async fn until<T, F, Fut>(mut self, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut delay = self.initial;
        let mut polls = 0u32;
        loop {
            polls += 1;
            let sent = Instant::now();
            if let Poll::Ready(value) = check().await? {
                return Ok(value);
            }
            if let Some(callback) = self.on_poll.as_mut() {
                callback(polls, started.elapsed());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout { what: self.what, after: self.timeout });
            }
            tokio::time::sleep_until((sent + delay).min(deadline)).await;
            delay = (delay * 5 / 4).min(self.max);
        }
    }
}

/// The reason CF gave for a failure, or a word that it gave none.
pub(crate) fn reason_of(error: &Option<String>) -> &str {
    error.as_deref().unwrap_or("CF gave no reason")
}

impl<K: Resource> Api<K> {
    /// Polls `GET /v3/<kind>/:guid` with `wait` until `state` says the object is there (`Ok(true)`, the object is
    /// returned) or has failed (its error is returned); `Ok(false)` polls again.
    pub(crate) async fn await_state(
        &self,
        guid: &str,
        wait: Wait<'_>,
        state: impl Fn(&K) -> Result<bool>,
    ) -> Result<K> {
        wait.until(|| async {
            let object = self.get(guid).await?;
            Ok(if state(&object)? { Poll::Ready(object) } else { Poll::Pending })
        })
        .await
    }
}

impl CfClient {
    /// Polls the job at `job_url` until COMPLETE (returned) or FAILED (its first error as a [`CfError`] tied to
    /// `method path`, the request that started it), within `timeout`. Job warnings are printed.
    pub(crate) async fn wait_for_job(&self, job_url: &Url, method: &str, path: &str, timeout: Duration) -> Result<Job> {
        let what = format!("the job started by {method} {path}");
        let job = Wait::new(what, timeout)
            .until(|| async {
                let job: Job = self.answer(&Req::new(Method::GET, Target::Url(job_url.clone()))).await?.json()?;
                Ok(match job.state {
                    JobState::Complete | JobState::Failed => Poll::Ready(job),
                    _ => Poll::Pending,
                })
            })
            .await?;
        for warning in &job.warnings {
            log::warn(&warning.detail);
        }
        if job.state == JobState::Failed {
            return Err(CfError::from_job(method, path, &job.errors).into());
        }
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wait_backs_off_and_stops_at_the_deadline() {
        let mut polls = Vec::new();
        let started = tokio::time::Instant::now();
        let result: Result<()> = Wait::new("the thing", Duration::from_secs(10))
            .until(|| {
                polls.push(started.elapsed());
                async { Ok(Poll::Pending) }
            })
            .await;
        let err = result.unwrap_err();
        assert_eq!(err.to_string(), "timed out after 10.0s waiting for the thing");
        let gaps: Vec<Duration> = polls.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[0], Duration::from_millis(100));
        assert_eq!(gaps[1], Duration::from_millis(125));
        assert!(gaps.windows(2).all(|w| w[1] >= w[0] || w[1] < Duration::from_secs(3)), "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= Duration::from_secs(3)), "{gaps:?}");
        assert!(started.elapsed() <= Duration::from_secs(10) + Duration::from_millis(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_counts_towards_the_interval() {
        let sent = std::sync::Mutex::new(Vec::new());
        let started = tokio::time::Instant::now();
        let result: Result<()> = Wait::new("the thing", Duration::from_secs(1))
            .until(|| async {
                sent.lock().unwrap().push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok(Poll::Pending)
            })
            .await;
        assert!(matches!(result, Err(Error::Timeout { .. })));
        let sent = sent.into_inner().unwrap();
        let gaps: Vec<u128> = sent.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // 100 ms and 125 ms are shorter than an answer: each check goes out when the previous answer is in; then
        // 156.25 ms (the timer rounds it up to the next millisecond).
        assert_eq!(gaps[..3], [150, 150, 157], "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn wait_returns_when_ready_and_reports_progress() {
        let mut n = 0;
        let mut reported = 0;
        let value = Wait::new("x", Duration::from_secs(60))
            .on_poll(|_, _| reported += 1)
            .until(|| {
                n += 1;
                let ready = n == 3;
                async move { Ok(if ready { Poll::Ready(42) } else { Poll::Pending }) }
            })
            .await
            .unwrap();
        assert_eq!(value, 42);
        assert_eq!(reported, 2);
    }
}
