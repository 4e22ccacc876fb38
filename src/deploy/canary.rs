//! Phase canary (`params.canary`): after the pre-swap gates, the verified candidate — scaled to the canary's
//! `instances` — is mapped to production's routes beside blue, so gorouter gives it its share of real users'
//! traffic. For `duration` both apps' real traffic is read from Log Cache (gorouter's `http` timers) over the same
//! window and compared: the candidate's error share, its p95, and its p95 against blue's; a candidate log line
//! matching one of `log_patterns` fails it at once. Too little traffic to judge is "no data", which `on_no_data`
//! decides. A pass scales the candidate to full size (the swap follows); a failure unmaps it from production (its
//! share returns to blue, which never stopped serving), lets it drain, and fails the deploy before the swap.
//!
//! The journal says `canary` before the first route is mapped: recovery of a put that died here unmaps the
//! candidate from the journal's production routes and removes it.

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::future::try_join_all;
use regex::Regex;
use tokio::time::Instant;

use super::abort;
use super::candidate::Candidate;
use super::context::Context;
use super::drain;
use super::routes::RouteTarget;
use super::swap;
use crate::cf::apps::App;
use crate::cf::logs::{LogFollower, now_ns};
use crate::cf::processes::Scale;
use crate::cf::wait::{Poll, Wait};
use crate::config::{Canary, ErrorStatuses, Kpi, OnNoData};
use crate::log;
use crate::record::Phase;
use crate::verify::kpi::{self, ProbeStats, Verdict};
use crate::verify::traffic::{Traffic, TrafficWindow};

/// How often Log Cache is read while the canary runs.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often a progress line is printed (a short canary's four times, but not more than once a second).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What the canary measured, for the log and the put's metadata.
#[derive(Debug, Clone)]
pub(crate) struct CanaryReport {
    pub(crate) candidate: Traffic,
    pub(crate) blue: Traffic,
    /// How it was judged: `passed on 412 request(s): …`, or why there was no verdict.
    pub(crate) verdict: String,
}

/// Runs the canary of `candidate` beside `blue` on the existing ones among `prod_routes`. `Ok` once it passed (or
/// had no data and `on_no_data: pass`) and the candidate is back to full size; on an error the candidate is no
/// longer mapped to production and the caller handles a failure before the swap.
pub(crate) async fn run(
    ctx: &Context,
    candidate: &Candidate,
    blue: &App,
    prod_routes: &[RouteTarget],
    params: &Canary,
) -> Result<CanaryReport> {
    let app = candidate.app();
    let patterns = compile(&params.log_patterns)?;
    let logs = ctx.cf.logs();
    let routes: Vec<&RouteTarget> = prod_routes.iter().filter(|r| r.route.is_some()).collect();
    let nothing_to_judge = if !logs.available() {
        Some("this Cloud Foundry has no Log Cache, so there is no real traffic to judge")
    } else if routes.is_empty() {
        Some("production has no routes, so no users' traffic reaches it")
    } else {
        None
    };
    if let Some(why) = nothing_to_judge {
        let empty = crate::verify::traffic::analyse(&[], &ErrorStatuses::default());
        return no_data(params, &app.name, why.to_owned(), empty.clone(), empty);
    }
    let full = scale_down(ctx, app, params.instances).await?;
    let route_guids: Vec<String> = routes.iter().filter_map(|r| r.route.as_ref()).map(|r| r.guid.clone()).collect();
    // Recovery must find the routes before any of them reaches the candidate.
    candidate
        .lock
        .record(|j| {
            j.phase = Phase::Canary;
            j.prod_routes = route_guids.clone();
        })
        .await?;
    let started_ns = now_ns();
    let judged = async {
        map_beside(ctx, app, blue, &routes).await?;
        log::info(format_args!(
            "canary: {} serves beside {} on {} production route(s) for {}",
            app.name,
            blue.name,
            routes.len(),
            log::human_duration(params.duration())
        ));
        let report = judge(ctx, app, blue, params, &patterns, started_ns).await?;
        if let Some(full) = full {
            scale_up(ctx, app, full).await?;
        }
        Ok(report)
    };
    let judged = abort::or_abort(judged).await;
    if judged.is_err()
        && let Err(e) = withdraw(ctx, app, blue, &route_guids).await
    {
        log::warn(format_args!("could not unmap {} from production ({e:#}); removing it unmaps it", app.name));
    }
    judged
}

/// The candidate's log patterns, compiled (they were validated with the params).
fn compile(patterns: &[String]) -> Result<Vec<Regex>> {
    patterns.iter().map(|p| Regex::new(p).with_context(|| format!("params.canary.log_patterns: '{p}'"))).collect()
}

/// Scales the candidate's web process down to `instances` when it has more; returns its full size then.
async fn scale_down(ctx: &Context, app: &App, instances: u32) -> Result<Option<u32>> {
    let web = ctx.cf.processes().of_app(&app.guid, "web").await.context("reading the candidate's web process")?;
    if web.instances <= instances {
        return Ok(None);
    }
    let scale = Scale { instances: Some(instances), ..Scale::default() };
    ctx.cf.processes().scale(&web.guid, &scale).await.context("scaling the candidate down for the canary")?;
    log::detail(format_args!("scaled {} to {instances} instance(s) for the canary (of {})", app.name, web.instances));
    Ok(Some(web.instances))
}

/// Scales the candidate's web process back to `instances` and waits for all of them to run.
async fn scale_up(ctx: &Context, app: &App, instances: u32) -> Result<()> {
    let processes = ctx.cf.processes();
    let web = processes.of_app(&app.guid, "web").await.context("reading the candidate's web process")?;
    let scale = Scale { instances: Some(instances), ..Scale::default() };
    processes.scale(&web.guid, &scale).await.context("scaling the candidate to full size")?;
    Wait::new(format!("{} to run {instances} instance(s)", app.name), ctx.within(ctx.params.timeouts.startup)?)
        .until(|| async {
            let stats = processes.stats(&web.guid).await?;
            Ok(if stats.all_ready(instances) { Poll::Ready(()) } else { Poll::Pending })
        })
        .await
        .with_context(|| format!("{} did not reach full size after the canary", app.name))?;
    log::success(format_args!("{} is at full size: {instances} instance(s)", app.name));
    Ok(())
}

/// Maps the candidate to every route, the way blue is mapped there, side by side.
async fn map_beside(ctx: &Context, app: &App, blue: &App, routes: &[&RouteTarget]) -> Result<()> {
    try_join_all(routes.iter().map(|target| async move {
        let route = target.route.as_ref().expect("only existing routes");
        let destinations = swap::candidate_destinations(target, &app.guid, Some(&blue.guid));
        ctx.cf
            .routes()
            .insert_destinations(&route.guid, &destinations)
            .await
            .with_context(|| format!("mapping {} to the candidate beside {}", target.url, blue.name))?;
        log::detail(format_args!("mapped {} to {} beside {}", target.url, app.name, blue.name));
        anyhow::Ok(())
    }))
    .await?;
    Ok(())
}

/// Unmaps the candidate from the production routes (blue keeps them) and lets it drain.
async fn withdraw(ctx: &Context, app: &App, blue: &App, route_guids: &[String]) -> Result<()> {
    try_join_all(route_guids.iter().map(|route| async move {
        ctx.cf.routes().unmap_app(route, &app.guid).await.with_context(|| format!("unmapping route {route}"))
    }))
    .await
    .with_context(|| format!("unmapping {} from production after the canary", app.name))?;
    log::info(format_args!("unmapped {} from production: its share of the traffic returns to {}", app.name, blue.name));
    drain::wait(ctx, &app.name, None).await;
    Ok(())
}

/// Follows both apps' real traffic (and the candidate's logs) for the canary's duration and judges it.
async fn judge(
    ctx: &Context,
    app: &App,
    blue: &App,
    params: &Canary,
    patterns: &[Regex],
    started_ns: i64,
) -> Result<CanaryReport> {
    let logs = ctx.cf.logs();
    let statuses = ctx.params.kpi.as_ref().map(|k| k.error_statuses.clone()).unwrap_or_default();
    let mut candidate_window = TrafficWindow::since(&logs, &app.guid, started_ns);
    let mut blue_window = TrafficWindow::since(&logs, &blue.guid, started_ns);
    let mut lines = (!patterns.is_empty()).then(|| logs.follow(&app.guid, started_ns));
    let started = Instant::now();
    let length = params.duration();
    let every = PROGRESS_EVERY.min(length / 4).max(POLL_EVERY);
    let mut next_progress = started + every;
    let mut unreadable: Option<String> = None;
    let mut figures = None;
    loop {
        let done = started.elapsed() >= length;
        if let Some(follower) = &mut lines {
            check_logs(follower, patterns).await?;
        }
        if unreadable.is_none() {
            let end = now_ns();
            match tokio::try_join!(candidate_window.until(end, &statuses), blue_window.until(end, &statuses)) {
                Ok(read) => figures = Some(read),
                Err(e) => {
                    log::warn(format_args!(
                        "cannot read the real traffic from Log Cache ({e}); the canary has no data"
                    ));
                    unreadable = Some(format!("Log Cache could not be read ({e})"));
                }
            }
        }
        if let Some((candidate, blue)) = figures.as_ref().filter(|_| done || Instant::now() >= next_progress) {
            log::detail(progress(started.elapsed().min(length), length, candidate, blue));
            next_progress += every;
        }
        if done {
            break;
        }
        tokio::time::sleep(POLL_EVERY.min(length.saturating_sub(started.elapsed()))).await;
    }
    let empty = || crate::verify::traffic::analyse(&[], &statuses);
    let (candidate, blue_traffic) = figures.unwrap_or_else(|| (empty(), empty()));
    if let Some(why) = unreadable {
        return no_data(params, &app.name, why, candidate, blue_traffic);
    }
    let gates = Kpi {
        requests: params.min_requests,
        concurrency: 1,
        paths: Vec::new(),
        error_statuses: statuses,
        warmup: 0,
        min_requests: Some(params.min_requests),
        max_error_rate: params.max_error_rate,
        max_p95_ms: params.max_p95_ms,
        max_p95_ratio: params.max_p95_ratio,
    };
    match kpi::evaluate(&gates, &ProbeStats::from(&candidate), Some(&ProbeStats::from(&blue_traffic))) {
        Verdict::Pass(text) => {
            log::success(format_args!("canary: {} {text}; {} {}", app.name, blue.name, blue_traffic.summary()));
            Ok(CanaryReport { candidate, blue: blue_traffic, verdict: text })
        }
        Verdict::Fail(why) => Err(anyhow!(
            "canary failed: {why}, from real traffic (Log Cache); {} {}",
            blue.name,
            blue_traffic.summary()
        )),
        Verdict::TooFew(_) if candidate.requests == 0 => {
            let why = format!(
                "Log Cache holds no http timers of {} since the canary began (the routers may not send them, or Log \
                 Cache evicted them)",
                app.name
            );
            no_data(params, &app.name, why, candidate, blue_traffic)
        }
        Verdict::TooFew(why) => no_data(params, &app.name, why, candidate, blue_traffic),
    }
}

/// Fails at once when a new line of the candidate's matches one of `patterns`. Log Cache trouble is not a match.
async fn check_logs(follower: &mut LogFollower, patterns: &[Regex]) -> Result<()> {
    let Ok(lines) = follower.poll().await else { return Ok(()) };
    for line in lines.iter().filter(|l| l.source_type.starts_with("APP")) {
        if let Some(pattern) = patterns.iter().find(|p| p.is_match(&line.message)) {
            bail!("canary failed: the candidate logged a line matching log_patterns '{pattern}': {}", line.display());
        }
    }
    Ok(())
}

/// Too little real traffic to judge: `on_no_data` decides, said plainly either way.
fn no_data(params: &Canary, name: &str, why: String, candidate: Traffic, blue: Traffic) -> Result<CanaryReport> {
    match params.on_no_data {
        OnNoData::Fail => bail!(
            "canary failed: no data to judge {name} by: {why}; on_no_data: fail (set on_no_data: pass to deploy \
             without a verdict)"
        ),
        OnNoData::Pass => {
            log::warn(format_args!(
                "the canary could not judge {name}: {why}; on_no_data: pass, so the deploy goes on without a verdict"
            ));
            Ok(CanaryReport { candidate, blue, verdict: format!("no data ({why}); passed by on_no_data: pass") })
        }
    }
}

/// `canary 1m40s/5m00s: candidate 412 req (11%), 0.2% errors, p95 84 ms; blue 3,310 req, 0.1%, p95 80 ms`.
fn progress(elapsed: Duration, length: Duration, candidate: &Traffic, blue: &Traffic) -> String {
    let total = candidate.requests + blue.requests;
    let share = if total == 0 { 0.0 } else { f64::from(candidate.requests) * 100.0 / f64::from(total) };
    format!(
        "canary {}/{}: candidate {} req ({share:.0}%), {:.1}% errors, p95 {:.0} ms; blue {} req, {:.1}%, p95 {:.0} ms",
        log::human_duration(Duration::from_secs(elapsed.as_secs())),
        log::human_duration(length),
        thousands(candidate.requests),
        candidate.error_rate() * 100.0,
        candidate.p95_ms,
        thousands(blue.requests),
        blue.error_rate() * 100.0,
        blue.p95_ms
    )
}

/// `3310` as `3,310`.
fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn traffic(requests: u32, errors: u32, p95_ms: f64) -> Traffic {
        Traffic {
            requests,
            errors,
            unknown_status: 0,
            own_requests: 0,
            by_status: BTreeMap::new(),
            p50_ms: p95_ms,
            p95_ms,
            p99_ms: p95_ms,
            complete: true,
        }
    }

    #[test]
    fn the_progress_line_gives_both_apps_and_the_candidates_share() {
        let line = progress(
            Duration::from_millis(100_700),
            Duration::from_secs(300),
            &traffic(412, 1, 84.0),
            &traffic(3310, 3, 80.2),
        );
        assert_eq!(
            line,
            "canary 1m40s/5m00s: candidate 412 req (11%), 0.2% errors, p95 84 ms; blue 3,310 req, 0.1%, p95 80 ms"
        );
        assert_eq!(
            [thousands(0), thousands(999), thousands(1000), thousands(1_234_567)],
            ["0", "999", "1,000", "1,234,567"]
        );
    }

    fn canary(on_no_data: OnNoData) -> Canary {
        let mut canary: Canary = serde_json::from_value(serde_json::json!({"max_error_rate": 0.01})).unwrap();
        canary.on_no_data = on_no_data;
        canary
    }

    #[test]
    fn no_data_fails_or_passes_as_on_no_data_says_plainly() {
        let why = "12 request(s) is fewer than min_requests 50".to_owned();
        let failed =
            no_data(&canary(OnNoData::Fail), "myapp-green", why.clone(), traffic(12, 0, 5.0), traffic(90, 0, 5.0));
        let message = failed.unwrap_err().to_string();
        assert!(message.starts_with("canary failed: no data to judge myapp-green by: 12 request(s)"), "{message}");
        assert!(message.contains("on_no_data: fail"), "{message}");
        let passed = no_data(&canary(OnNoData::Pass), "myapp-green", why, traffic(12, 0, 5.0), traffic(90, 0, 5.0));
        let report = passed.unwrap();
        assert!(report.verdict.ends_with("passed by on_no_data: pass"), "{}", report.verdict);
        assert_eq!((report.candidate.requests, report.blue.requests), (12, 90));
    }

    #[test]
    fn log_patterns_compile_as_regexes() {
        let patterns = compile(&["OutOfMemoryError".into(), "^FATAL".into()]).unwrap();
        assert!(patterns[1].is_match("FATAL: disk full") && !patterns[1].is_match("not FATAL"));
        assert!(compile(&["(".into()]).is_err());
    }
}
