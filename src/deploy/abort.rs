//! An aborted build. Concourse stops a running step by stopping its container: Garden sends every process in it
//! SIGTERM, then SIGKILL to what still runs 10 seconds later (`atc/worker/gardenruntime/process.go`,
//! `gardenProcessStopGracePeriod`; the containerd runtime likewise, `worker/runtime/killer.go`). From the lock
//! on, `out` catches SIGTERM (and SIGINT) and uses those seconds so that the next put need not wait for a
//! lease to run out: before the swap the work stops at once and the failure path removes the candidate and
//! releases the lock; a swap that has begun runs to its end (or gives production back); the drain is cut short
//! so that the housekeeping (or the clean-up after giving production back) finishes before the SIGKILL.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::log;

/// How long after the signal an old version may keep draining: the rest of Concourse's 10 s is for the
/// housekeeping.
const DRAIN_AFTER_ABORT: Duration = Duration::from_secs(4);

/// The signal and when it came, once one has.
static ABORTED: OnceLock<(&'static str, Instant)> = OnceLock::new();
static ARRIVED: Notify = Notify::const_new();
static LISTENING: OnceLock<()> = OnceLock::new();

/// Catches SIGTERM and SIGINT from now on (once per process). Without the handlers (they cannot be installed),
/// the signals keep their default action: the put dies, and the next one recovers it from the journal.
fn listen() {
    LISTENING.get_or_init(|| {
        let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            if ABORTED.set((name, Instant::now())).is_ok() {
                log::warn(format_args!(
                    "{name}: the build was aborted; cleaning up before Concourse kills this step (10 s after the \
                     signal)"
                ));
            }
            ARRIVED.notify_waiters();
        });
    });
}

/// Resolves when the build has been aborted: at once if it already has.
async fn aborted() -> (&'static str, Instant) {
    loop {
        let arrived = ARRIVED.notified();
        if let Some(aborted) = ABORTED.get() {
            return *aborted;
        }
        arrived.await;
    }
}

/// `work`, unless the build is aborted first (or was already): then `work` is dropped where it is and the result
/// is an error, which the caller's failure path turns into removing the candidate and releasing the lock.
pub(crate) async fn or_abort<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    listen();
    tokio::select! {
        biased;
        (signal, _) = aborted() => Err(anyhow!("the build was aborted ({signal})")),
        done = work => done,
    }
}

/// Waits `duration` for an app to drain (a candidate given production back drains too), or until
/// [`DRAIN_AFTER_ABORT`] after an abort.
pub(crate) async fn sleep(duration: Duration) {
    let drained = async {
        tokio::time::sleep(duration).await;
        Ok(())
    };
    // The drain itself never fails.
    let _ = cut_short(drained).await;
}

/// `drain` (the old version draining after the swap, and the watch), cut short [`DRAIN_AFTER_ABORT`] after an
/// abort so that the housekeeping still finishes before the SIGKILL.
pub(crate) async fn cut_short(drain: impl Future<Output = Result<()>>) -> Result<()> {
    tokio::select! {
        done = drain => done,
        () = async {
            let (signal, at) = aborted().await;
            tokio::time::sleep_until(at + DRAIN_AFTER_ABORT).await;
            log::warn(format_args!("{signal}: the drain is cut short, to clean up before Concourse kills this step"));
        } => Ok(()),
    }
}
