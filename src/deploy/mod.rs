//! `out`: the blue-green deploy.
//!
//! The phases (see the deploy design): validate locally → take the lock (`<app>-green`, with its journal) →
//! push the candidate → verify it → swap the production routes → drain (and watch) → housekeeping. A failure
//! before the swap leaves production untouched and the candidate deleted or kept as `<app>-failed`; a deploy
//! that died is recovered by the next one from its journal. `rollback` and `dry_run` are variations.

pub mod cleanup;
pub mod dry_run;
pub mod gate;
pub mod housekeeping;
pub mod local;
pub mod lock;
pub mod phases;
pub mod plan;
pub mod promotion;
pub mod push;
pub mod recovery;
pub mod report;
pub mod rollback;
pub mod routes;
pub mod swap;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::time::Instant;

use self::gate::{GateReport, GateTarget};
use self::lock::{Lock, Take};
use self::phases::Phases;
use self::plan::{Apps, Blue, Plan, Target};
use self::push::Pushed;
use self::routes::RouteTarget;
use crate::cf::CfClient;
use crate::cf::apps::{App, NewApp};
use crate::cf::types::Lifecycle;
use crate::config::{OutParams, Source};
use crate::log;
use crate::manifest::BUILDPACK;
use crate::protocol::{BuildEnv, OutRequest, VersionResult};
use crate::record::{Journal, Phase};
use crate::verify::route_client::RouteClient;
use crate::verify::smoke::SmokeEnv;

/// How long a single CF job (deleting an app or a route, applying a manifest) may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What every step of a put shares.
pub struct Context {
    pub cf: CfClient,
    pub source: Source,
    pub params: OutParams,
    pub put_dir: PathBuf,
    pub build: BuildEnv,
    pub target: Target,
    /// How verification and probes reach app routes (through `source.router_address` when given).
    pub routes: RouteClient,
    /// The smoke-test program in the put's inputs.
    pub smoke_test: Option<PathBuf>,
    pub phases: Phases,
    /// When the put's overall `timeout` runs out.
    pub deadline: Instant,
}

impl Context {
    /// `limit`, cut to what is left of the put's overall timeout; an error once nothing is left.
    pub fn within(&self, limit: Duration) -> Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            anyhow::bail!("the put's overall timeout ({}) ran out", log::human_duration(self.params.timeouts.overall));
        }
        Ok(limit.min(left))
    }
}

pub async fn run(request: OutRequest) -> Result<VersionResult> {
    let deadline = Instant::now() + request.params.timeouts.overall;
    let mut phases = Phases::new(if request.params.rollback { 6 } else { 7 });
    phases.start("validate", "Checking the request");
    let smoke_test = local::smoke_test(&request)?;
    let prepared = if request.params.rollback { None } else { Some(local::prepare(&request)?) };
    if let Some(prepared) = &prepared {
        log::detail(format_args!("deploying {} as {}", prepared.bits.describe(), request.source.names.production));
    }
    let cf = CfClient::connect(request.source.client_settings()?).await.context("connecting to Cloud Foundry")?;
    let target = Target::resolve(&cf, &request.source).await?;
    log::detail(format_args!("target: {} / {} on {}", target.org.name, target.space.name, request.source.api));
    // The last checks that need the API or DNS, still before anything is changed.
    let routes = route_client(&request.source, &cf).await?;
    routes::check_green_route(&cf, &request.params.green_route).await?;
    let OutRequest { source, params, dir, build } = request;
    let mut ctx = Context { cf, source, params, put_dir: dir, build, target, phases, deadline, routes, smoke_test };

    match prepared {
        None => rollback::run(&mut ctx).await,
        Some(prepared) if ctx.params.dry_run => dry_run::run(&ctx, prepared).await,
        Some(prepared) => deploy(&mut ctx, prepared).await,
    }
}

async fn deploy(ctx: &mut Context, prepared: local::Prepared) -> Result<VersionResult> {
    let names = ctx.source.names.clone();
    let green_name = names.green();
    ctx.phases.start("lock", &format!("Taking the deploy lock ({green_name})"));
    let production = if plan::lifecycle_needs_production(&prepared) {
        Apps::read(&ctx.cf, &ctx.target.space.guid, &names).await?.production
    } else {
        None
    };
    let lifecycle = plan::candidate_lifecycle(&prepared, production.as_ref());
    let new_app = NewApp {
        space_guid: ctx.target.space.guid.clone(),
        lifecycle: (lifecycle != BUILDPACK).then(|| Lifecycle { kind: lifecycle.into(), data: Default::default() }),
        ..NewApp::default()
    };
    let journal = Journal::new(&ctx.build, ctx.params.lock_lease);
    let lock = take_lock(ctx, journal, Take::Create(new_app)).await?;

    // Planned under the lock: whatever an earlier deploy left is settled by now. From here on, every failure
    // before the swap releases the lock (fail_before_swap), so the next deploy need not wait for the lease.
    let (apps, plan) = match plan_under_lock(ctx, prepared, lifecycle).await {
        Ok(planned) => planned,
        Err(e) => return Err(fail_before_swap(ctx, &lock, None, e).await),
    };

    ctx.phases.start("push", &format!("Pushing {green_name}"));
    let mut temp_route_guid = None;
    let pushed = push_candidate(ctx, &lock, &plan, &mut temp_route_guid).await;
    let pushed = match pushed {
        Ok(pushed) => pushed,
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    ctx.phases.start("verify", &format!("Verifying {green_name}"));
    let verified =
        verify_candidate(ctx, &lock, plan.temp_route.as_deref(), &plan.prod_routes, plan.blue.is_some()).await;
    let gate = match verified {
        Ok(gate) => gate,
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    let Plan { blue, prod_routes, .. } = plan;
    let keep = ctx.params.keep_previous;
    let retirement = promotion::Retirement {
        older_previous: apps.previous.as_ref(),
        keep,
        summary: if keep { format!("kept stopped as {}", names.previous()) } else { "deleted".into() },
    };
    let verified = promotion::Verified {
        lock: &lock,
        blue: blue.as_ref().map(|b| &b.app),
        prod_routes,
        temp_route_guid,
        pushed,
        gate,
    };
    promotion::swap_in(ctx, verified, retirement).await
}

/// Reads what the foundation looks like now (under the lock), makes the plan and prints it.
async fn plan_under_lock(ctx: &Context, prepared: local::Prepared, lifecycle: &str) -> Result<(Apps, Plan)> {
    let names = &ctx.source.names;
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, names).await?;
    let blue = match apps.production.clone() {
        Some(app) => Some(Blue::read(&ctx.cf, app).await?),
        None => None,
    };
    let plan = Plan::make(&ctx.cf, &ctx.target, names, &ctx.params, prepared, blue, lifecycle).await?;
    log::info("plan:");
    for line in plan.describe(names, ctx.params.keep_previous, apps.previous.as_ref()) {
        log::detail(line);
    }
    check_quotas(ctx, &plan).await?;
    Ok((apps, plan))
}

/// Fails before anything is pushed when the organization's or the space's memory quota cannot hold the candidate
/// beside production (CC would refuse to start it, after staging).
async fn check_quotas(ctx: &Context, plan: &Plan) -> Result<()> {
    let needed = plan.memory_needed_mb();
    let quotas = ctx.cf.memory_quotas(&ctx.target.space).await.context("reading the memory quotas")?;
    match quotas.shortfall(needed) {
        Some(short) => anyhow::bail!("{} cannot run beside production: {short}", ctx.source.names.green()),
        None => Ok(()),
    }
}

/// Takes the lock, recovering any deploy that died holding it.
async fn take_lock(ctx: &Context, journal: Journal, take: Take) -> Result<Lock> {
    let names = &ctx.source.names;
    lock::acquire(
        &ctx.cf,
        &ctx.target.space.guid,
        &names.green(),
        journal,
        take,
        ctx.within(ctx.params.timeouts.lock)?,
        |claimed| recovery::recover(ctx, claimed),
    )
    .await
}

async fn push_candidate(
    ctx: &Context,
    lock: &Lock,
    plan: &Plan,
    temp_route_guid: &mut Option<String>,
) -> Result<Pushed> {
    let green = &lock.app;
    let apply_within = ctx.within(JOB_TIMEOUT)?;
    *temp_route_guid =
        match push::apply_manifest(&ctx.cf, &ctx.target.space.guid, &green.guid, plan, apply_within).await {
            Ok(guid) => guid,
            Err(e) => {
                // CF may have created the temporary route before the failure: find it, so the cleanup removes it.
                *temp_route_guid = push::existing_temporary_route(&ctx.cf, &ctx.target.space.guid, plan).await;
                return Err(e);
            }
        };
    // One journal write for all the plan settled: what recovery needs to undo or finish this deploy.
    lock.record(|j| {
        j.temp_route = temp_route_guid.clone();
        j.blue_guid = plan.blue.as_ref().map(|b| b.app.guid.clone());
        j.prod_routes = plan.prod_routes.iter().filter_map(|r| r.route.as_ref().map(|r| r.guid.clone())).collect();
    })
    .await?;
    let staging = ctx.within(ctx.params.timeouts.staging)?;
    let mut pushed = push::droplet(&ctx.cf, &green.guid, &green.name, plan, staging).await?;
    let startup = ctx.within(ctx.params.timeouts.startup)?;
    push::start_and_wait(&ctx.cf, &green.guid, &green.name, &mut pushed, startup).await?;
    pushed.temp_route_guid = temp_route_guid.clone();
    Ok(pushed)
}

/// The client for app routes; resolving `source.router_address` here makes a bad one fail before any change.
async fn route_client(source: &Source, cf: &CfClient) -> Result<RouteClient> {
    RouteClient::new(source.route_scheme, source.router_address.as_deref(), cf.tls_config(), Duration::from_secs(30))
        .await
}

/// Phase verify, for a deploy and a rollback alike: HTTP checks, smoke test and KPI probe against the candidate
/// on its temporary route; with `production_runs`, the first production route is what the KPI probe compares with.
async fn verify_candidate(
    ctx: &Context,
    lock: &Lock,
    temp_route: Option<&str>,
    prod_routes: &[RouteTarget],
    production_runs: bool,
) -> Result<GateReport> {
    lock.record(|j| j.phase = Phase::Verifying).await?;
    let scheme = ctx.source.route_scheme.as_str();
    let smoke_env = SmokeEnv {
        green_url: temp_route.map(|r| format!("{scheme}://{r}")).unwrap_or_default(),
        green_app: lock.app.name.clone(),
        green_app_guid: lock.app.guid.clone(),
        prod_urls: prod_routes.iter().map(|r| format!("{scheme}://{}", r.url)).collect(),
        cf_api: ctx.source.api.clone(),
        cf_org: ctx.target.org.name.clone(),
        cf_space: ctx.target.space.name.clone(),
        router_address: ctx.source.router_address.clone(),
    };
    let target = GateTarget {
        client: &ctx.routes,
        temp_route,
        production_route: prod_routes.first().filter(|_| production_runs).map(|r| r.url.as_str()),
        smoke_test: ctx.smoke_test.as_deref(),
        smoke_env,
        put_dir: &ctx.put_dir,
        put_time_left: ctx.within(ctx.params.timeouts.overall)?,
    };
    gate::verify(&target, &ctx.params, ctx.within(ctx.params.timeouts.verify)?).await
}

/// A failure before the swap: production was never touched. Shows the candidate's logs, removes it (or keeps it
/// as `<app>-failed`), and returns the error naming the phase.
async fn fail_before_swap(
    ctx: &Context,
    lock: &Lock,
    temp_route_guid: Option<&str>,
    error: anyhow::Error,
) -> anyhow::Error {
    let phase = ctx.phases.current().unwrap_or("deploy");
    log::warn(format_args!("{phase} failed; production is untouched"));
    cleanup::show_recent_logs(&ctx.cf, &lock.app).await;
    lock.stop_renewing().await;
    let names = &ctx.source.names;
    if let Err(cleanup_error) = cleanup::abandon(
        &ctx.cf,
        names,
        &lock.app,
        temp_route_guid,
        ctx.params.on_failure,
        ctx.params.rollback,
        JOB_TIMEOUT,
    )
    .await
    {
        log::warn(format_args!(
            "could not clean up {} ({cleanup_error:#}); the next deploy will, once its lease ({}) has run out",
            lock.app.name,
            log::human_duration(ctx.params.lock_lease)
        ));
    }
    let what = if ctx.params.rollback { "rollback" } else { "deploy" };
    error.context(format!("{what} failed in phase {phase}"))
}

/// A failure half-way through the swap: blue gets back the routes it had before the swap, and once
/// routers have caught up (`drain`), the candidate is cleaned up like any failure before the swap.
async fn undo_partial_swap(
    ctx: &Context,
    lock: &Lock,
    blue: Option<&App>,
    existing_routes: &[String],
    temp_route_guid: Option<&str>,
    error: anyhow::Error,
) -> anyhow::Error {
    let restored = async {
        // Should this process die half-way, recovery must give production back too, not finish the swap.
        lock.record(|j| j.verified = false).await?;
        if let Some(blue) = blue {
            swap::give_back(&ctx.cf, existing_routes, &lock.app.guid, &blue.guid).await?;
            log::info(format_args!("production is back on {}", blue.name));
            let_drain(&lock.app.name, ctx.params.drain).await;
        }
        anyhow::Ok(())
    };
    match restored.await {
        Ok(()) => fail_before_swap(ctx, lock, temp_route_guid, error).await,
        Err(restore_error) => {
            log::warn(format_args!(
                "could not give production back to the previous version ({restore_error:#}); the next deploy recovers it from the journal"
            ));
            let what = if ctx.params.rollback { "rollback" } else { "deploy" };
            error.context(format!("{what} failed in phase swap"))
        }
    }
}

/// Keeps `app_name` running, unrouted, for `duration` before it is stopped or deleted: routers learn of an
/// unmapping late, and requests in flight finish.
async fn let_drain(app_name: &str, duration: Duration) {
    if duration.is_zero() {
        return;
    }
    log::detail(format_args!(
        "{app_name} keeps running, unrouted, for {} so requests in flight finish",
        log::human_duration(duration)
    ));
    tokio::time::sleep(duration).await;
}
