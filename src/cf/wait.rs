//! Waiting, as values: the bounded [`Wait`] poller every state wait uses (polls start at 100 ms, back off to 3 s,
//! and always end at a deadline), waiting for an object to reach a state ([`Api::await_state`]) and for an
//! async job (202 + `Location` → `GET /v3/jobs/:guid` until COMPLETE or FAILED).

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
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

/// How many checks of one [`Wait`] may be waiting for their answers at once.
const IN_FLIGHT: usize = 2;

/// How long a [`Wait`] polls at its first interval before backing off: most of CF's short steps (a job, a
/// package's processing, a small app's staging or start) end within it.
const BRISK: Duration = Duration::from_secs(1);

type OnPoll<'a> = Box<dyn FnMut(u32, Duration) + Send + 'a>;

/// A bounded poll loop: checks at once, then every 100 ms for the first second ([`BRISK`]), then backing off by
/// a quarter each time to 3 s (so short waits end promptly and long ones settle at the CLI's interval), and gives
/// up with [`Error::Timeout`] at the deadline. Never waits without one. Checks go out on that schedule whether or not the
/// previous answer is back, at most [`IN_FLIGHT`] at a time: on a far API, whose answers take longer than the
/// interval, CF finishing is seen up to half an interval sooner than if each check waited for the one before;
/// on a near one there is only ever one in flight. The first answer that is ready ends the wait.
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

    /// Polls `check` until it is ready, fails, or the deadline passes (a check is sent at the deadline, and the
    /// wait times out when every answer is in and none was ready).
    pub async fn until<T, F, Fut>(mut self, mut check: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Poll<T>>>,
    {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut delay = self.initial;
        let mut answers = 0u32;
        let mut in_flight = FuturesUnordered::new();
        // When the next check is due; `None` once the one at the deadline is sent.
        let mut next = Some(started);
        loop {
            let due = next.filter(|_| in_flight.len() < IN_FLIGHT);
            tokio::select! {
                biased;
                Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                    answers += 1;
                    if let Poll::Ready(value) = answer? {
                        return Ok(value);
                    }
                    if let Some(callback) = self.on_poll.as_mut() {
                        callback(answers, started.elapsed());
                    }
                    if Instant::now() >= deadline {
                        // No check after this answer: those in flight may still be ready.
                        next = None;
                        if in_flight.is_empty() {
                            return Err(Error::Timeout { what: self.what, after: self.timeout });
                        }
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or(deadline)), if due.is_some() => {
                    let sent = Instant::now();
                    in_flight.push(check());
                    next = (sent < deadline).then(|| (sent + delay).min(deadline));
                    if sent >= started + BRISK {
                        delay = (delay * 5 / 4).min(self.max);
                    }
                }
            }
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
        // Every 100 ms for the first second (the check sent at 1 s still waits 100 ms), then backing off.
        assert!(gaps[..11].iter().all(|g| *g == Duration::from_millis(100)), "{gaps:?}");
        assert_eq!(gaps[11], Duration::from_millis(125));
        assert!(gaps.windows(2).all(|w| w[1] >= w[0] || w[1] < Duration::from_secs(3)), "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= Duration::from_secs(3)), "{gaps:?}");
        assert!(started.elapsed() <= Duration::from_secs(10) + Duration::from_millis(1));
    }

    /// Runs a wait whose every answer takes `answer_after`, ready from the check sent at `ready_from` on, and
    /// answers when each check was sent, the most checks in flight at once and the outcome.
    async fn answering_after(
        answer_after: Duration,
        ready_from: Duration,
        timeout: Duration,
    ) -> (Vec<u128>, usize, Result<u128>) {
        let log = std::sync::Mutex::new((Vec::new(), 0usize, 0usize));
        let started = tokio::time::Instant::now();
        let outcome = Wait::new("the thing", timeout)
            .until(|| async {
                let sent = started.elapsed();
                {
                    let mut log = log.lock().unwrap();
                    log.0.push(sent.as_millis());
                    log.1 += 1;
                    log.2 = log.2.max(log.1);
                }
                tokio::time::sleep(answer_after).await;
                log.lock().unwrap().1 -= 1;
                Ok(if sent >= ready_from { Poll::Ready(sent.as_millis()) } else { Poll::Pending })
            })
            .await;
        let (sent, _, most) = log.into_inner().unwrap();
        (sent, most, outcome)
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_far_api_checks_go_out_on_schedule_before_the_previous_answer_is_back() {
        // Answers take 150 ms, longer than the interval: the checks still go out 100 ms apart, two in flight at a
        // time.
        let (sent, most, outcome) =
            answering_after(Duration::from_millis(150), Duration::from_millis(300), Duration::from_secs(10)).await;
        assert_eq!(most, 2);
        // The check sent at 300 ms is the first ready one: its answer ends the wait, the one sent after it unread.
        assert_eq!(outcome.unwrap(), 300);
        assert_eq!(sent, [0, 100, 200, 300, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_two_checks_are_in_flight() {
        // Answers take 1 s: the third check waits for the first answer.
        let (sent, most, outcome) =
            answering_after(Duration::from_secs(1), Duration::from_secs(60), Duration::from_secs(3)).await;
        assert_eq!(most, 2);
        assert_eq!(sent[..3], [0, 100, 1000], "{sent:?}");
        // The last check goes out at the deadline; the wait times out once every answer is in.
        assert!(sent.iter().all(|&t| t <= 3000), "{sent:?}");
        assert!(matches!(outcome, Err(Error::Timeout { .. })), "{outcome:?}");
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
