//! Phase 6: blue keeps running, unrouted, for `drain` — routers learn route changes asynchronously and
//! requests in flight must finish. With `watch`, production is probed meanwhile (like a post-promotion
//! analysis); if a gate fails, production is swapped back to blue, which is still running.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::time::Instant;

use super::lock::Lock;
use super::routes::RouteTarget;
use super::{Context, JOB_TIMEOUT, cleanup, let_drain, swap};
use crate::cf::apps::App;
use crate::config::Kpi;
use crate::log;
use crate::record::Phase;
use crate::verify::kpi;

/// Requests per watch round; rounds repeat until the watch is over.
const ROUND_REQUESTS: u32 = 40;

pub async fn drain_and_watch(
    ctx: &Context,
    blue: &App,
    prod_routes: &[RouteTarget],
    route_guids: &[String],
    lock: &Lock,
) -> Result<()> {
    let started = Instant::now();
    let hold = ctx.params.drain.max(ctx.params.watch.unwrap_or_default());
    let (Some(watch), Some(gates)) = (ctx.params.watch, ctx.params.kpi.as_ref()) else {
        log::info(format_args!(
            "{} keeps running, unrouted, for {} so requests in flight finish",
            blue.name,
            log::human_duration(hold)
        ));
        tokio::time::sleep(hold).await;
        return Ok(());
    };
    log::info(format_args!(
        "watching production for {} ({} keeps running to swap back to)",
        log::human_duration(watch),
        blue.name
    ));
    let urls: Vec<String> =
        prod_routes.iter().flat_map(|route| gates.paths.iter().map(|path| ctx.routes.url(&route.url, path))).collect();
    if urls.is_empty() {
        log::info(format_args!(
            "nothing to watch: production has no routes; {} keeps running for {}",
            blue.name,
            log::human_duration(hold)
        ));
        tokio::time::sleep(hold).await;
        return Ok(());
    }
    let watch_gates = Kpi { max_p95_ratio: None, ..gates.clone() };
    let mut rounds = 0;
    while started.elapsed() < watch {
        let stats = kpi::probe_urls(&ctx.routes, &urls, ROUND_REQUESTS, gates.concurrency.min(ROUND_REQUESTS)).await;
        rounds += 1;
        if let Err(why) = kpi::evaluate(&watch_gates, &stats, None) {
            log::warn(format_args!("watch round {rounds} failed: {why}"));
            return swap_back(ctx, blue, route_guids, lock, &why).await;
        }
        log::detail(format_args!("watch round {rounds}: {}", stats.summary()));
        tokio::time::sleep(Duration::from_secs(1).min(watch.saturating_sub(started.elapsed()))).await;
    }
    log::detail(format_args!("production passed {rounds} watch round(s)"));
    tokio::time::sleep(hold.saturating_sub(started.elapsed())).await;
    Ok(())
}

/// Gives production back to blue and removes the candidate, then fails the put.
async fn swap_back(ctx: &Context, blue: &App, route_guids: &[String], lock: &Lock, why: &str) -> Result<()> {
    // If this process dies half-way, recovery must give production back too, not finish the promotion.
    lock.record(|j| {
        j.phase = Phase::Swapping;
        j.verified = false;
    })
    .await?;
    swap::give_back(&ctx.cf, route_guids, &lock.app.guid, &blue.guid).await?;
    log::info(format_args!("production is back on {}", blue.name));
    cleanup::show_recent_logs(&ctx.cf, &lock.app).await;
    // The candidate served production until just now.
    let_drain(&lock.app.name, ctx.params.drain).await;
    lock.stop_renewing().await;
    cleanup::abandon(
        &ctx.cf,
        &ctx.source.names,
        &lock.app,
        None,
        ctx.params.on_failure,
        ctx.params.rollback,
        JOB_TIMEOUT,
    )
    .await?;
    bail!("watch failed after the swap: {why}; production was swapped back to {}", blue.name)
}
