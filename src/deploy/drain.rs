//! Phase 6, and every other wait for an app that production routes no longer reach: it keeps running, unrouted,
//! for `drain` — routers learn route changes asynchronously and requests in flight must finish. With `watch`,
//! production is judged meanwhile (like a post-promotion analysis) from two sources: the probe's rounds, and its
//! real traffic as Log Cache recorded it (gorouter's `http` timers; the resource's own requests counted aside). The
//! gates judge each source's whole window once it holds `kpi.min_requests` requests; if a gate fails, production
//! is swapped back to blue, which is still running. Log Cache trouble never fails the watch: it goes on with the
//! probe alone and says so.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use tokio::time::Instant;

use super::abort;
use super::context::Context;
use super::failure;
use super::lock::Lock;
use super::routes::RouteTarget;
use crate::cf::apps::App;
use crate::cf::logs::now_ns;
use crate::config::Kpi;
use crate::log;
use crate::verify::kpi::{self, ProbeStats, Verdict};
use crate::verify::traffic::TrafficWindow;

/// Requests per watch round; rounds repeat until the watch is over.
const ROUND_REQUESTS: u32 = 40;

/// Lets blue drain after the swap for `drain` (or as long as the watch lasts, when longer), watching production
/// meanwhile when the params ask for it.
pub(crate) async fn drain_and_watch(
    ctx: &Context,
    blue: &App,
    prod_routes: &[RouteTarget],
    route_guids: &[String],
    lock: &Lock,
) -> Result<()> {
    let started = Instant::now();
    let hold_for = hold_for(ctx);
    let (Some(watch), Some(gates)) = (ctx.params.watch, ctx.params.kpi.as_ref()) else {
        hold(&blue.name, hold_for).await;
        return Ok(());
    };
    log::info(format_args!(
        "watching production for {} ({} keeps running to swap back to)",
        log::human_duration(watch),
        blue.name
    ));
    let routes: Vec<&str> = prod_routes.iter().map(|route| route.url.as_str()).collect();
    if routes.is_empty() {
        log::info(format_args!(
            "nothing to watch: production has no routes; {} keeps running for {}",
            blue.name,
            log::human_duration(hold_for)
        ));
        tokio::time::sleep(hold_for).await;
        return Ok(());
    }
    let watch_gates = Kpi { max_p95_ratio: None, ..gates.clone() };
    let logs = ctx.cf.logs();
    let mut real_traffic = logs.available();
    if !real_traffic {
        log::detail("this Cloud Foundry has no Log Cache: the watch judges the probe alone");
    }
    let mut real_window = TrafficWindow::since(&logs, &lock.app.guid, now_ns());
    let mut window = kpi::Samples::default();
    let mut rounds = 0;
    // Each source's latest verdict, with the requests it rests on.
    let mut verdicts: Vec<(&str, Verdict, u32)> = Vec::new();
    while started.elapsed() < watch {
        window.extend(kpi::round(&ctx.route_client, &routes, gates, ROUND_REQUESTS).await);
        rounds += 1;
        let probe = window.stats();
        let mut line = format!("watch round {rounds}, the window so far: probe {}", probe.summary());
        let mut judged = vec![(PROBE, probe)];
        if real_traffic {
            match real_window.until(now_ns(), &gates.error_statuses).await {
                Ok(real) => {
                    line.push_str(&format!("; {REAL_TRAFFIC} {}", real.summary()));
                    judged.push((REAL_TRAFFIC, ProbeStats::from(&real)));
                }
                Err(e) => {
                    log::warn(format_args!(
                        "cannot read production's real traffic from Log Cache ({e}); the watch goes on with the probe \
                         alone"
                    ));
                    real_traffic = false;
                }
            }
        }
        verdicts.clear();
        for (source, stats) in judged {
            let requests = stats.requests;
            match kpi::evaluate(&watch_gates, &stats, None) {
                Verdict::Fail(why) => {
                    let why = format!("{why}, from {source}");
                    log::warn(format_args!("watch failed after {rounds} round(s): {why}"));
                    return failure::after_watch(ctx, lock, blue, route_guids, &why).await;
                }
                verdict => verdicts.push((source, verdict, requests)),
            }
        }
        log::detail(line);
        tokio::time::sleep(Duration::from_secs(1).min(watch.saturating_sub(started.elapsed()))).await;
    }
    for (source, verdict, requests) in verdicts {
        match verdict {
            Verdict::Pass(text) => log::detail(format_args!("production passed the watch ({source}): {text}")),
            Verdict::TooFew(_) if source == REAL_TRAFFIC && requests == 0 => log::warn(format_args!(
                "the watch could not judge production from {source}: Log Cache holds no http timers of it for the \
                 watch (the routers may not send them, or Log Cache evicted them)"
            )),
            Verdict::TooFew(text) => {
                log::warn(format_args!("the watch could not judge production from {source}: {text}"))
            }
            Verdict::Fail(_) => unreachable!("a failed gate ends the watch"),
        }
    }
    tokio::time::sleep(hold_for.saturating_sub(started.elapsed())).await;
    Ok(())
}

/// How long the version production left keeps running, unrouted, after the swap: the longer of `drain` and
/// `watch`.
pub(crate) fn hold_for(ctx: &Context) -> Duration {
    ctx.params.drain.max(ctx.params.watch.unwrap_or_default())
}

/// The names of the watch's sources of figures, as the log says them.
const PROBE: &str = "the probe";
const REAL_TRAFFIC: &str = "real traffic (Log Cache)";

/// Waits `drain` (of this put) for an app that production routes no longer reach, counting from `unmapped_by`
/// (when it is known to have been unmapped already) or from now.
pub(crate) async fn wait(ctx: &Context, app_name: &str, unmapped_by: Option<SystemTime>) {
    let already = unmapped_by.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
    hold(app_name, ctx.params.drain.saturating_sub(already)).await;
}

/// Keeps `app_name` running, unrouted, for `duration` before it is stopped or deleted: routers learn of an
/// unmapping late, and requests in flight finish.
async fn hold(app_name: &str, duration: Duration) {
    if duration.is_zero() {
        return;
    }
    log::detail(format_args!(
        "{app_name} keeps running, unrouted, for {} so requests in flight finish",
        log::human_duration(duration)
    ));
    abort::sleep(duration).await;
}
