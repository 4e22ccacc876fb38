//! `rollback: true`: a deploy whose candidate already exists. `<app>-previous` is renamed to `<app>-green`
//! (atomically taking the lock), started, verified on a temporary route and swapped in; the version that was in
//! production becomes `<app>-previous`, so a second rollback rolls forward again. No staging: seconds.

use anyhow::{Result, anyhow};

use super::audit::Audit;
use super::housekeeping::{self, Retire};
use super::journal::{Journal, Phase};
use super::lock::{Lock, Take};
use super::plan::{Apps, Blue};
use super::push::{self, Pushed};
use super::report::Outcome;
use super::routes::{self, RouteTarget};
use super::{Context, JOB_TIMEOUT, fail_before_swap, gate, route_client, swap, take_lock, undo_partial_swap, watch};
use crate::cf::apps::App;
use crate::log;
use crate::protocol::VersionResult;

pub async fn run(ctx: &mut Context) -> Result<VersionResult> {
    let names = ctx.source.names.clone();
    let (green_name, previous_name) = (names.green(), names.previous());
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, &names).await?;
    let previous = apps.previous.clone().ok_or_else(|| {
        anyhow!("rollback: there is no {previous_name} to roll back to (a deploy with keep_previous: true leaves one)")
    })?;
    droplet_of(&previous, &previous_name)?;

    ctx.phases.start("lock", &format!("Taking the deploy lock (renaming {previous_name} to {green_name})"));
    let mut journal = Journal::new(&ctx.build, ctx.params.lock_lease);
    journal.rollback = true;
    let take = Take::Rename { space_guid: ctx.target.space.guid.clone(), previous_name: previous_name.clone() };
    let lock = take_lock(ctx, journal, take).await?;
    // The app renamed may not be the one found above: a deploy the rollback waited for replaces the previous
    // version, and rolling back means going back from that deploy.
    if lock.app.guid != previous.guid {
        log::info(format_args!(
            "{previous_name} changed while waiting for the lock: rolling back to {} instead",
            lock.app.guid
        ));
    }
    let droplet = match droplet_of(&lock.app, &green_name) {
        Ok(droplet) => droplet,
        Err(e) => return Err(fail_before_swap(ctx, &lock, None, e).await),
    };
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, &names).await?;
    let blue = match apps.production {
        Some(app) => Some(Blue::read(&ctx.cf, app).await?),
        None => None,
    };
    let mut prod_routes = match &blue {
        Some(blue) => routes::from_routes(&blue.routes),
        None => {
            vec![routes::default_route(&ctx.cf, &ctx.target.org.guid, &ctx.target.space.guid, &names.production).await?]
        }
    };
    let temp_url = routes::temporary_route(&ctx.cf, &ctx.params.green_route, &green_name, &prod_routes).await?;
    log::detail(format_args!(
        "rolling back to droplet {droplet}; production {}",
        blue.as_ref().map(|b| format!("{} ({})", b.app.name, b.app.guid)).unwrap_or_else(|| "has no app".into())
    ));
    lock.record(|j| {
        j.blue_guid = blue.as_ref().map(|b| b.app.guid.clone());
        j.prod_routes = prod_routes.iter().filter_map(|r| r.route.as_ref().map(|r| r.guid.clone())).collect();
    })
    .await?;

    ctx.phases.start("start", &format!("Starting {green_name}"));
    let mut temp_route_guid = None;
    let started = start_candidate(ctx, &lock, temp_url.as_deref(), &mut temp_route_guid).await;
    let pushed = match started {
        Ok(pushed) => Pushed { droplet_guid: droplet, ..pushed },
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    ctx.phases.start("verify", &format!("Verifying {green_name}"));
    lock.record(|j| j.phase = Phase::Verifying).await?;
    let client = route_client(ctx).await?;
    let target = gate::GateTarget {
        client: &client,
        temp_route: temp_url.as_deref(),
        production_route: blue.as_ref().and(prod_routes.first()).map(|r| r.url.as_str()),
        smoke_test: None,
        smoke_env: Default::default(),
        put_dir: &ctx.put_dir,
    };
    let gate = match gate::verify(&target, &ctx.params).await {
        Ok(gate) => gate,
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    ctx.phases.start("swap", "Swapping production routes");
    lock.record(|j| {
        j.phase = Phase::Swapping;
        j.verified = true;
    })
    .await?;
    let blue_guid = blue.as_ref().map(|b| b.app.guid.clone());
    let route_guids =
        match swap::take_over(&ctx.cf, &ctx.target.space.guid, &lock.app.guid, blue_guid.as_deref(), &mut prod_routes)
            .await
        {
            Ok(guids) => guids,
            Err(e) => {
                let blue_app = blue.as_ref().map(|b| &b.app);
                return Err(undo_partial_swap(ctx, &lock, blue_app, &prod_routes, temp_route_guid.as_deref(), e).await);
            }
        };
    lock.record(|j| {
        j.prod_routes = route_guids.clone();
        j.phase = Phase::Swapped;
    })
    .await?;
    if let Some(route) = &temp_route_guid {
        swap::remove_temporary_route(&ctx.cf, route, JOB_TIMEOUT).await?;
    }
    let plan = super::plan::Plan {
        bits: super::local::Bits::Production,
        blue,
        prod_routes,
        temp_route: temp_url,
        candidate_manifest: String::new(),
        docker: false,
        scale_after_droplet: Vec::new(),
        scales: Vec::new(),
    };
    if let Some(blue) = &plan.blue {
        ctx.phases.start("drain", &format!("Draining {}", blue.app.name));
        watch::drain_and_watch(ctx, &client, &plan, &route_guids, &lock).await?;
    }

    ctx.phases.start("housekeeping", "Housekeeping");
    lock.record(|j| j.phase = Phase::Housekeeping).await?;
    if let Some(blue) = &plan.blue {
        housekeeping::retire(&ctx.cf, &names, Retire { blue: &blue.app, previous: None, keep: true }, JOB_TIMEOUT)
            .await?;
    }
    lock.stop_renewing().await;
    let audit = Audit::new(&ctx.build, &lock.journal().await.deploy_id, &pushed.droplet_guid, None);
    let production = housekeeping::promote(&ctx.cf, &names, &lock.app, &audit).await?;
    ctx.phases.finish();
    let outcome = Outcome {
        production: &production,
        pushed: &pushed,
        prod_routes: plan.prod_routes.iter().map(|r| r.url.clone()).collect(),
        scheme: ctx.source.route_scheme,
        gate: &gate,
        phases: &ctx.phases,
        build: &ctx.build,
        previous: plan
            .blue
            .as_ref()
            .map(|_| format!("kept stopped as {previous_name} (roll back again to return to it)")),
    };
    outcome.print_summary();
    Ok(outcome.result())
}

/// The droplet `app` (called `name`) would run; an error naming it when it has none.
fn droplet_of(app: &App, name: &str) -> Result<String> {
    app.current_droplet_guid().map(str::to_owned).ok_or_else(|| anyhow!("rollback: {name} has no droplet to run"))
}

/// Maps a temporary route to the rolled-back app and starts it.
async fn start_candidate(
    ctx: &Context,
    lock: &Lock,
    temp_url: Option<&str>,
    temp_route_guid: &mut Option<String>,
) -> Result<Pushed> {
    if let Some(url) = temp_url {
        let mut targets: Vec<RouteTarget> =
            routes::resolve_manifest_routes(&ctx.cf, &ctx.target.space.guid, &[url.to_owned()]).await?;
        let guid = targets[0].ensure(&ctx.cf, &ctx.target.space.guid).await?;
        ctx.cf.routes().map_app(&guid, &lock.app.guid).await?;
        *temp_route_guid = Some(guid);
        lock.record(|j| j.temp_route = temp_route_guid.clone()).await?;
    }
    let mut pushed = Pushed::default();
    push::start_and_wait(&ctx.cf, &lock.app.guid, &lock.app.name, &mut pushed, ctx.params.timeouts.startup).await?;
    Ok(pushed)
}
