//! `out`: the blue-green deploy.
//!
//! The phases (see the deploy design): validate locally → take the lock (`<app>-green`, with its journal) →
//! push the candidate → verify it → swap the production routes → drain (and watch) → housekeeping. A failure
//! before the swap leaves production untouched and the candidate deleted or kept as `<app>-failed`; a deploy
//! that died is recovered by the next one from its journal. `rollback` and `dry_run` are variations.

mod abort;
mod canary;
mod candidate;
mod carry;
mod context;
mod drain;
mod dry_run;
mod failure;
mod gate;
mod hold;
mod housekeeping;
mod inputs;
mod lock;
mod phases;
mod plan;
mod promotion;
mod push;
mod recovery;
mod report;
mod rollback;
mod routes;
mod swap;
mod task;
mod unchanged;

use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio::time::Instant;

use self::candidate::Candidate;
use self::context::Context;
use self::inputs::{Payload, Prepared};
use self::lock::Take;
use self::phases::Phases;
use self::plan::{Apps, Plan};
use self::promotion::Verified;
use self::push::ZipAhead;
use self::routes::RouteTarget;
use self::unchanged::Fingerprint;
use crate::cf::CfClient;
use crate::cf::apps::{App, NewApp};
use crate::cf::quotas::MemoryQuotas;
use crate::cf::types::Lifecycle;
use crate::config::{Canary, Source};
use crate::log;
use crate::manifest::BUILDPACK;
use crate::protocol::{OutRequest, VersionResult};
use crate::record::Journal;
use crate::verify::route_client::RouteClient;

/// Phase 1 (validate), then a deploy, a rollback or a dry run.
pub async fn run(request: OutRequest) -> Result<VersionResult> {
    let deadline = Instant::now() + request.params.timeouts.overall;
    let canary_phase = usize::from(request.params.canary.is_some() && !request.params.rollback);
    let usual = if request.params.rollback { 6 } else { 7 } + canary_phase;
    let mut phases = Phases::new(hold::phase_count(&request.params).unwrap_or(usual));
    phases.start("validate", "Checking the request");
    request.source.names.check_kept(request.params.keep_previous)?;
    let smoke_test = inputs::smoke_test(&request)?;
    let held_is_used = request.params.promote || request.params.abort;
    let prepared = if request.params.rollback || held_is_used { None } else { Some(inputs::prepare(&request)?) };
    if let Some(prepared) = &prepared {
        log::detail(format_args!("deploying {} as {}", prepared.payload.describe(), request.source.names.production));
    }
    // The app bits are gathered and hashed from here on, beside the API's answers; a dry run needs them only to
    // tell whether they changed.
    let gathering =
        prepared.as_ref().filter(|_| !request.params.dry_run || request.params.skip_unchanged).and_then(|p| {
            match &p.payload {
                Payload::App(bits) => Some(tokio::spawn(push::gather_bits(bits.clone()))),
                _ => None,
            }
        });
    let cf = CfClient::connect(request.source.client_settings()?).await.context("connecting to Cloud Foundry")?;
    // The apps are looked at beside the space when the candidate's lifecycle depends on production's.
    let with_apps = prepared.as_ref().is_some_and(|p| !request.params.dry_run && plan::lifecycle_needs_production(p));
    let (target, seen) = Apps::read_beside_target(&cf, &request.source, with_apps).await?;
    log::detail(format_args!("target: {} / {} on {}", target.org.name, target.space.name, request.source.api));
    // The last checks that need the API or DNS, still before anything is changed.
    let route_client = route_client(&request.source, &cf).await?;
    routes::check_green_route(&cf, &request.params.green_route).await?;
    let gathered = match gathering {
        Some(task) => Some(task.await.context("gathering the app bits")??),
        None => None,
    };
    let bits_digest = gathered.as_ref().map(|g| g.digest.clone());
    // Nothing is refused any more but the policy permission: the bits are packaged from here on, beside it (with
    // skip_unchanged, once the put is known to deploy).
    let mut gathered = gathered.filter(|_| !request.params.dry_run);
    let mut zip_ahead = None;
    if !request.params.skip_unchanged {
        zip_ahead = gathered.take().map(|g| ZipAhead::start(&cf, g));
    }
    let production = match &seen {
        Some(apps) => apps.production.clone(),
        None => cf.apps().by_name(&target.space.guid, &request.source.names.production).await?,
    };
    let production_policies = carry::check(&cf, production.as_ref()).await?;
    let fingerprint = match &prepared {
        Some(p) => {
            let names = &request.source.names;
            Some(Fingerprint::of(p, bits_digest, &request.params, &names.production).await?)
        }
        None => None,
    };
    let OutRequest { source, params, dir, build } = request;
    let mut ctx = Context {
        cf,
        source,
        params,
        put_dir: dir,
        build,
        target,
        phases,
        deadline,
        route_client,
        smoke_test,
        production_policies,
        zip_ahead,
        fingerprint,
    };
    if ctx.params.skip_unchanged && !ctx.params.dry_run {
        if let Some(skipped) = unchanged::skip(&ctx, production.as_ref()).await? {
            return Ok(skipped);
        }
        ctx.zip_ahead = gathered.map(|g| ZipAhead::start(&ctx.cf, g));
    }

    match prepared {
        None if ctx.params.promote => hold::promote(&mut ctx).await,
        None if ctx.params.abort => hold::abort_held(&mut ctx).await,
        None => rollback::run(&mut ctx).await,
        Some(prepared) if ctx.params.dry_run => dry_run::run(&ctx, prepared).await,
        Some(prepared) => deploy(&mut ctx, prepared, seen.and_then(|apps| apps.production)).await,
    }
}

/// Phases 2–7 of a deploy: lock, push, verify, then the swap and what follows it. `seen`: production as found
/// before the lock, when the candidate's lifecycle depends on it.
async fn deploy(ctx: &mut Context, prepared: Prepared, seen: Option<App>) -> Result<VersionResult> {
    let green_name = ctx.source.names.green();
    ctx.phases.start("lock", &format!("Taking the deploy lock ({green_name})"));
    let lifecycle = plan::candidate_lifecycle(&prepared, seen.as_ref());
    let new_app = NewApp {
        space_guid: ctx.target.space.guid.clone(),
        lifecycle: (lifecycle != BUILDPACK).then(|| Lifecycle { kind: lifecycle.into(), data: Default::default() }),
        ..NewApp::default()
    };
    let journal = Journal::new(&ctx.build, ctx.params.lock_lease);
    let mut candidate = Candidate::take(ctx, journal, Take::Create(new_app)).await?;
    // Planned under the lock: whatever an earlier deploy left is settled by now. From here on, every failure
    // before the swap releases the lock, so the next deploy need not wait for the lease.
    let planned = abort::or_abort(plan_under_lock(ctx, prepared, lifecycle, seen.as_ref())).await;
    let (apps, plan) = candidate.or_release(ctx, planned).await?;

    ctx.phases.start("push", &format!("Pushing {green_name}"));
    let pushed = candidate.push(ctx, &plan).await?;

    ctx.phases.start("verify", &format!("Verifying {green_name}"));
    let mut gate = candidate.verify(ctx, plan.temp_route.as_deref(), &plan.prod_routes, plan.blue.is_some()).await?;
    if ctx.params.hold {
        // Before the canary, which serves production traffic: a held candidate serves none until promoted.
        return hold::hold(ctx, candidate, plan, pushed, gate).await;
    }
    if let Some(params) = ctx.params.canary.clone() {
        let blue = plan.blue.as_ref().map(|b| &b.app);
        gate.canary = run_canary(ctx, &candidate, blue, &plan.prod_routes, &params).await?;
    }

    let Plan { blue, prod_routes, .. } = plan;
    let blue = blue.map(|b| b.app);
    let verified = Verified { candidate, blue, kept: apps.kept, prod_routes, pushed, gate };
    promotion::swap_in(ctx, verified).await
}

/// Phase canary, after the pre-swap gates (of a deploy or a promote): the candidate beside `blue` on
/// `prod_routes` (a first deploy has no production to compare with, and goes on without it).
async fn run_canary(
    ctx: &mut Context,
    candidate: &Candidate,
    blue: Option<&App>,
    prod_routes: &[RouteTarget],
    params: &Canary,
) -> Result<Option<canary::CanaryReport>> {
    let Some(blue) = blue else {
        // Its header still stands, so the numbers of the phases after it match the total the first one gave.
        ctx.phases.start("canary", "Canary: skipped");
        log::info("canary: this is the first deploy, there is no production to serve beside; skipped");
        return Ok(None);
    };
    ctx.phases.start("canary", &format!("Canary: {} beside {}", candidate.app().name, blue.name));
    let report = canary::run(ctx, candidate, blue, prod_routes, params).await;
    candidate.or_release(ctx, report).await.map(Some)
}

/// Reads what the foundation looks like now (under the lock; production `seen` before it is read beside the
/// apps, and the quotas too), makes the plan and prints it.
async fn plan_under_lock(
    ctx: &Context,
    prepared: Prepared,
    lifecycle: &str,
    seen: Option<&App>,
) -> Result<(Apps, Plan)> {
    let (cf, target) = (&ctx.cf, &ctx.target);
    let (read, quotas) = tokio::join!(
        Apps::read_with_blue(cf, &target.space.guid, &ctx.source.names, seen),
        cf.memory_quotas(&target.org, &target.space)
    );
    let (apps, blue) = read?;
    let plan = Plan::for_blue(ctx, prepared, blue, lifecycle).await?;
    log::info("plan:");
    plan.print(ctx, &apps);
    report::warn_if_older(&ctx.build, apps.production.as_ref());
    check_quotas(ctx, &plan, quotas.context("reading the memory quotas")?)?;
    Ok((apps, plan))
}

/// Fails before anything is pushed when the organization's or the space's memory quota cannot hold the candidate
/// beside production (CC would refuse to start it, after staging).
fn check_quotas(ctx: &Context, plan: &Plan, quotas: MemoryQuotas) -> Result<()> {
    let needed = plan.memory_needed_mb();
    match quotas.shortfall(needed) {
        Some(short) => anyhow::bail!("{} cannot run beside production: {short}", ctx.source.names.green()),
        None => Ok(()),
    }
}

/// The client for app routes; resolving `source.router_address` here makes a bad one fail before any change.
async fn route_client(source: &Source, cf: &CfClient) -> Result<RouteClient> {
    RouteClient::new(source.route_scheme, source.router_address.as_deref(), cf.tls_config(), Duration::from_secs(30))
        .await
}
