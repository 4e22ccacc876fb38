//! Phase 6, and every other wait for an app that production routes no longer reach: it keeps running, unrouted,
//! for `drain` — routers learn route changes asynchronously and requests in flight must finish. With `watch`,
//! production is probed meanwhile (like a post-promotion analysis); if a gate fails, production is swapped back
//! to blue, which is still running.

use std::time::{Duration, SystemTime};

use anyhow::Result;
use tokio::time::Instant;

use super::context::Context;
use super::failure;
use super::lock::Lock;
use super::routes::RouteTarget;
use crate::cf::apps::App;
use crate::config::Kpi;
use crate::log;
use crate::verify::kpi;

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
    let hold_for = ctx.params.drain.max(ctx.params.watch.unwrap_or_default());
    let (Some(watch), Some(gates)) = (ctx.params.watch, ctx.params.kpi.as_ref()) else {
        hold(&blue.name, hold_for).await;
        return Ok(());
    };
    log::info(format_args!(
        "watching production for {} ({} keeps running to swap back to)",
        log::human_duration(watch),
        blue.name
    ));
    let urls: Vec<String> = prod_routes
        .iter()
        .flat_map(|route| gates.paths.iter().map(|path| ctx.route_client.url(&route.url, path)))
        .collect();
    if urls.is_empty() {
        log::info(format_args!(
            "nothing to watch: production has no routes; {} keeps running for {}",
            blue.name,
            log::human_duration(hold_for)
        ));
        tokio::time::sleep(hold_for).await;
        return Ok(());
    }
    let watch_gates = Kpi { max_p95_ratio: None, ..gates.clone() };
    let mut rounds = 0;
    while started.elapsed() < watch {
        let stats =
            kpi::probe_urls(&ctx.route_client, &urls, ROUND_REQUESTS, gates.concurrency.min(ROUND_REQUESTS)).await;
        rounds += 1;
        if let Err(why) = kpi::evaluate(&watch_gates, &stats, None) {
            log::warn(format_args!("watch round {rounds} failed: {why}"));
            return failure::after_watch(ctx, lock, blue, route_guids, &why).await;
        }
        log::detail(format_args!("watch round {rounds}: {}", stats.summary()));
        tokio::time::sleep(Duration::from_secs(1).min(watch.saturating_sub(started.elapsed()))).await;
    }
    log::detail(format_args!("production passed {rounds} watch round(s)"));
    tokio::time::sleep(hold_for.saturating_sub(started.elapsed())).await;
    Ok(())
}

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
    tokio::time::sleep(duration).await;
}
