//! `rollback: true`: a deploy whose candidate already exists. `<app>-previous` is renamed to `<app>-green`
//! (atomically taking the lock), started, verified on a temporary route and swapped in; the version that was in
//! production becomes `<app>-previous`, so a second rollback rolls forward again. No staging: seconds.

use anyhow::{Result, anyhow, bail};

use super::lock::{Lock, Take};
use super::plan::{Apps, Blue};
use super::push::{self, Pushed};
use super::routes::{self, RouteTarget};
use super::{Context, fail_before_swap, promotion, take_lock, verify_candidate};
use crate::cf::apps::App;
use crate::log;
use crate::protocol::VersionResult;
use crate::record::Journal;

pub async fn run(ctx: &mut Context) -> Result<VersionResult> {
    let names = ctx.source.names.clone();
    let (green_name, previous_name) = (names.green(), names.previous());
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, &names).await?;
    // With no previous version but a lock held, the holder may yet leave one (a rollback that died is given
    // back as it was): the lock decides.
    if apps.previous.is_none() && apps.green.is_none() {
        bail!("rollback: there is no {previous_name} to roll back to (a deploy with keep_previous: true leaves one)");
    }
    if let Some(previous) = &apps.previous {
        droplet_of(previous, &previous_name)?;
    }

    ctx.phases.start("lock", &format!("Taking the deploy lock (renaming {previous_name} to {green_name})"));
    let mut journal = Journal::new(&ctx.build, ctx.params.lock_lease);
    journal.rollback = true;
    let take = Take::Rename { space_guid: ctx.target.space.guid.clone(), previous_name: previous_name.clone() };
    let lock = take_lock(ctx, journal, take).await?;
    // The app renamed may not be the one found above: a deploy the rollback waited for replaces the previous
    // version, and rolling back means going back from that deploy.
    if apps.previous.as_ref().is_some_and(|previous| previous.guid != lock.app.guid) {
        log::info(format_args!(
            "{previous_name} changed while waiting for the lock: rolling back to {} instead",
            lock.app.guid
        ));
    }
    // From here every failure before the swap gives the lock back (the app is renamed back, stopped).
    let (droplet, blue, prod_routes) = match plan_under_lock(ctx, &lock).await {
        Ok(planned) => planned,
        Err(e) => return Err(fail_before_swap(ctx, &lock, None, e).await),
    };
    let temp_url = match routes::temporary_route(
        &ctx.cf,
        &ctx.params.green_route,
        &green_name,
        &ctx.target.space.guid,
        &prod_routes,
    )
    .await
    {
        Ok(url) => url,
        Err(e) => return Err(fail_before_swap(ctx, &lock, None, e).await),
    };

    ctx.phases.start("start", &format!("Starting {green_name}"));
    let mut temp_route_guid = None;
    let started = start_candidate(ctx, &lock, temp_url.as_deref(), &mut temp_route_guid).await;
    let pushed = match started {
        Ok(pushed) => Pushed { droplet_guid: droplet, ..pushed },
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    ctx.phases.start("verify", &format!("Verifying {green_name}"));
    let gate = match verify_candidate(ctx, &lock, temp_url.as_deref(), &prod_routes, blue.is_some()).await {
        Ok(gate) => gate,
        Err(e) => return Err(fail_before_swap(ctx, &lock, temp_route_guid.as_deref(), e).await),
    };

    let retirement = promotion::Retirement {
        older_previous: None,
        keep: true,
        summary: format!("kept stopped as {previous_name} (roll back again to return to it)"),
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

/// Under the lock: the droplet to roll back to, production as it is now and its routes, written to the journal.
async fn plan_under_lock(ctx: &Context, lock: &Lock) -> Result<(String, Option<Blue>, Vec<RouteTarget>)> {
    let names = &ctx.source.names;
    let droplet = droplet_of(&ctx.cf.apps().with_current_droplet(lock.app.clone()).await?, &names.green())?;
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, names).await?;
    let blue = match apps.production {
        Some(app) => Some(Blue::read(&ctx.cf, app).await?),
        None => None,
    };
    let prod_routes = match &blue {
        Some(blue) => routes::from_routes(&blue.routes),
        None => {
            vec![routes::default_route(&ctx.cf, &ctx.target.org.guid, &ctx.target.space.guid, &names.production).await?]
        }
    };
    log::detail(format_args!(
        "rolling back to droplet {droplet}; production {}",
        blue.as_ref().map(|b| format!("{} ({})", b.app.name, b.app.guid)).unwrap_or_else(|| "has no app".into())
    ));
    lock.record(|j| {
        j.blue_guid = blue.as_ref().map(|b| b.app.guid.clone());
        j.prod_routes = prod_routes.iter().filter_map(|r| r.route.as_ref().map(|r| r.guid.clone())).collect();
    })
    .await?;
    Ok((droplet, blue, prod_routes))
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
    let startup = ctx.within(ctx.params.timeouts.startup)?;
    push::start_and_wait(&ctx.cf, &lock.app.guid, &lock.app.name, &mut pushed, startup).await?;
    Ok(pushed)
}
