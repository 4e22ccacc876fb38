//! Approval between verification and production: `hold`, `promote` and `abort`.
//!
//! - `hold: true`: a deploy stops once its candidate is verified, before any production traffic. The candidate
//!   keeps running on its temporary route and keeps the lock: its journal says `held` and names the build that
//!   holds it. A held journal never goes stale, so no lease runs out on it and recovery never touches it; every
//!   other deploy or rollback of the app fails at once, naming the holder. The put answers production's version
//!   unchanged (the candidate is not in production: `trigger: true` jobs must not fire on it).
//! - `promote: true`: a later put takes the held candidate over (the journal moves on from `held`), runs the gates
//!   it configures again, then swaps, drains and does the housekeeping like any deploy.
//! - `abort: true`: a later put removes the held candidate as `on_failure` says, with its temporary route, and
//!   releases the lock.

use anyhow::{Context as _, Result, anyhow, bail};

use super::abort;
use super::candidate::Candidate;
use super::context::{Context, JOB_TIMEOUT};
use super::failure;
use super::gate::GateReport;
use super::lock;
use super::plan::{Apps, Plan};
use super::promotion::{self, Verified};
use super::push::Pushed;
use super::routes::{self, RouteTarget};
use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::config::OutParams;
use crate::log;
use crate::protocol::{MetadataField, Version, VersionResult};
use crate::record::{Journal, Phase};

/// How many phases a put with `hold`, `promote` or `abort` has; `None` for any other put.
pub(crate) fn phase_count(params: &OutParams) -> Option<usize> {
    // hold: validate, lock, push, verify, hold; promote: validate, lock, verify, (canary,) swap, drain, housekeeping.
    let promote = 6 + usize::from(params.canary.is_some());
    [(params.hold, 5), (params.promote, promote), (params.abort, 2)]
        .into_iter()
        .find(|(given, _)| *given)
        .map(|(_, n)| n)
}

/// The line every other deploy of the app fails with while `green_name` is held (`journal`).
pub(crate) fn refusal(green_name: &str, journal: &Journal) -> String {
    format!(
        "{green_name} is held for approval by {}: no other deploy can run until a put with params.promote: true \
         swaps it in or one with params.abort: true removes it",
        journal.describe_holder()
    )
}

/// `hold: true`, once the candidate passed its gates: the production routes a promote maps are created now
/// (unmapped, they carry no traffic) so the journal names them all, the journal says `held`, and the put
/// answers production's version as it is.
pub(crate) async fn hold(
    ctx: &mut Context,
    candidate: Candidate,
    plan: Plan,
    pushed: Pushed,
    gate: GateReport,
) -> Result<VersionResult> {
    let Plan { blue, mut prod_routes, temp_route, .. } = plan;
    ctx.phases.start("hold", &format!("Holding {} for approval", candidate.app().name));
    log::detail("the swap and what follows it in the plan wait for a put with params.promote: true");
    let held = async {
        candidate.lock.ensure_held().await?;
        let production = match blue {
            Some(blue) => Some(with_droplet(&ctx.cf, blue.app).await?),
            None => None,
        };
        let mut guids = Vec::new();
        for route in &mut prod_routes {
            guids.push(route.ensure(&ctx.cf, &ctx.target.space.guid).await?);
        }
        let digests = ctx.fingerprint.as_ref().map(|f| f.digests(production.as_ref().map(|(app, _)| app)));
        candidate
            .lock
            .record(|j| {
                j.phase = Phase::Held;
                j.verified = true;
                j.prod_routes = guids;
                (j.bits_digest, j.manifest_digest) = digests.unwrap_or_default();
            })
            .await?;
        Ok(production)
    };
    let production = candidate.or_release(ctx, abort::or_abort(held).await).await?;
    candidate.lock.stop_renewing().await;
    ctx.phases.finish();

    let green = candidate.app();
    let scheme = ctx.source.route_scheme.as_str();
    let url = temp_route.map(|route| format!("{scheme}://{route}"));
    let held = format!("{} ({}) with droplet {}", green.name, green.guid, pushed.droplet_guid);
    log::heading("Summary");
    log::success(format_args!("{held} is held for approval; production is unchanged"));
    if let Some(url) = &url {
        log::detail(format_args!("try it at {url}"));
    }
    log::detail(format_args!("verification: {}", gate.summary()));
    log::detail("next: a put with params.promote: true swaps it in; one with params.abort: true removes it");
    let mut metadata = vec![
        MetadataField::new("held", &held),
        MetadataField::new("held_by", candidate.lock.journal().await.describe_holder()),
    ];
    metadata.extend(url.map(|url| MetadataField::new("held_url", url)));
    metadata.push(MetadataField::new("verification", gate.summary()));
    Ok(answer(
        production.as_ref().map(|(app, droplet)| (app, droplet.as_str())),
        (green, pushed.droplet_guid.as_str()),
        metadata,
    ))
}

/// `promote: true`: takes the held candidate over, runs the gates again on its temporary route (and the canary
/// beside production, with `canary`), then swaps it in like any deploy. A failure while it reads what it needs,
/// before the takeover, touches nothing: the candidate stays held.
pub(crate) async fn promote(ctx: &mut Context) -> Result<VersionResult> {
    let green_name = ctx.source.names.green();
    ctx.phases.start("lock", &format!("Taking over the held {green_name}"));
    let (app, journal) = find_held(ctx, "promote").await?;
    let cf = &ctx.cf;
    let apps = Apps::read(cf, &ctx.target.space.guid, &ctx.source.names).await?;
    let prod_routes = routes_by_guid(cf, &journal.prod_routes).await?;
    let temp_url = match &journal.temp_route {
        Some(guid) => Some(routes::normalize(&cf.routes().get(guid).await.context("reading the temporary route")?.url)),
        None => None,
    };
    let (app, droplet) = with_droplet(cf, app).await?;
    let pushed = running(cf, &app, droplet).await?;
    let candidate = take_over(ctx, app, journal).await?;

    ctx.phases.start("verify", &format!("Verifying {green_name} again"));
    let mut gate = candidate.verify(ctx, temp_url.as_deref(), &prod_routes, apps.production.is_some()).await?;
    if let Some(params) = ctx.params.canary.clone() {
        gate.canary = super::run_canary(ctx, &candidate, apps.production.as_ref(), &prod_routes, &params).await?;
    }
    let verified = Verified { candidate, blue: apps.production, kept: apps.kept, prod_routes, pushed, gate };
    promotion::swap_in(ctx, verified).await
}

/// `abort: true`: takes the held candidate over and removes it (deleted, or kept stopped as `<app>-failed`, as
/// `on_failure` says) with its temporary route and the production routes only it would have used. The answer
/// is production's version, untouched (or, with nothing in production, the version the held put answered).
pub(crate) async fn abort_held(ctx: &mut Context) -> Result<VersionResult> {
    let green_name = ctx.source.names.green();
    ctx.phases.start("abort", &format!("Removing the held {green_name}"));
    let (app, journal) = find_held(ctx, "abort").await?;
    let production = match Apps::read(&ctx.cf, &ctx.target.space.guid, &ctx.source.names).await?.production {
        Some(app) => Some(with_droplet(&ctx.cf, app).await?),
        None => None,
    };
    let (app, droplet) = with_droplet(&ctx.cf, app).await?;
    let holder = journal.describe_holder();
    let prod_routes = journal.prod_routes.clone();
    let candidate = take_over(ctx, app, journal).await?;
    failure::release(ctx, &candidate.lock, candidate.temp_route_guid.as_deref(), false)
        .await
        .context("removing the held candidate")?;
    remove_unused_routes(&ctx.cf, &prod_routes).await?;
    ctx.phases.finish();
    log::success(format_args!("aborted: the candidate held by {holder} is gone; production is unchanged"));
    let metadata =
        vec![MetadataField::new("aborted", format!("{green_name} ({}), held by {holder}", candidate.app().guid))];
    Ok(answer(
        production.as_ref().map(|(app, droplet)| (app, droplet.as_str())),
        (candidate.app(), droplet.as_str()),
        metadata,
    ))
}

/// The held candidate: `<app>-green` with a journal saying `held`. Refused with one line when there is none.
async fn find_held(ctx: &Context, what: &str) -> Result<(App, Journal)> {
    let green_name = ctx.source.names.green();
    let app = ctx.cf.apps().by_name(&ctx.target.space.guid, &green_name).await?.ok_or_else(|| {
        anyhow!(
            "params.{what}: nothing is held: there is no {green_name} waiting for approval (a put with params.hold: \
             true leaves one)"
        )
    })?;
    let journal = match Journal::from_annotations(&app.metadata.annotations) {
        None => bail!("{green_name} exists but was not created by this resource (it has no deploy journal)"),
        Some(parsed) => parsed.with_context(|| format!("{green_name} has a damaged deploy journal"))?,
    };
    if journal.phase != Phase::Held {
        bail!(
            "params.{what}: nothing is held: {green_name} belongs to a deploy by {} in phase {}, not held for approval",
            journal.describe_holder(),
            journal.phase
        );
    }
    Ok((app, journal))
}

/// Takes the held candidate's lock over: its journal now names this put, renewed on this put's lease, and moves on
/// from `held` (to `verifying`: should this put die from here on, the next one removes the candidate, as it would a
/// deploy's that died verifying). Of two puts taking it over together, one wins and the other fails.
async fn take_over(ctx: &Context, app: App, theirs: Journal) -> Result<Candidate> {
    log::info(format_args!("taking over {}, held by {}", app.name, theirs.describe_holder()));
    let name = app.name.clone();
    let ours = Journal::new(&ctx.build, ctx.params.lock_lease);
    let temp_route_guid = theirs.temp_route.clone();
    let theirs = Journal { lease: ours.lease, ..theirs };
    let lock = lock::claim(&ctx.cf, app, theirs, &ours.deploy_id)
        .await?
        .ok_or_else(|| anyhow!("another put took {name} over first"))?;
    lock.record(|j| {
        j.deploy_id = ours.deploy_id;
        j.holder = ours.holder;
        j.build_url = ours.build_url;
        j.recovered_by = None;
        j.phase = Phase::Verifying;
    })
    .await?;
    Ok(Candidate { lock, temp_route_guid })
}

/// `app` with its current droplet's guid; an error when it has none.
async fn with_droplet(cf: &CfClient, app: App) -> Result<(App, String)> {
    let app = cf.apps().with_current_droplet(app).await?;
    let droplet =
        app.current_droplet_guid().map(str::to_owned).ok_or_else(|| anyhow!("{} has no droplet", app.name))?;
    Ok((app, droplet))
}

/// What the held candidate runs, for the promote's answer: its droplet, and the instances (and the web process's
/// memory) it was started with.
async fn running(cf: &CfClient, app: &App, droplet_guid: String) -> Result<Pushed> {
    let mut pushed = Pushed { droplet_guid, ..Pushed::default() };
    for process in cf.processes().for_app(&app.guid).await?.into_iter().filter(|p| p.instances > 0) {
        if process.kind == "web" {
            pushed.memory_mb = process.memory_in_mb;
        }
        pushed.instances.insert(process.kind, process.instances);
    }
    Ok(pushed)
}

/// The routes the journal names, read again.
async fn routes_by_guid(cf: &CfClient, guids: &[String]) -> Result<Vec<RouteTarget>> {
    let mut found = Vec::new();
    for guid in guids {
        found.push(cf.routes().get(guid).await.with_context(|| format!("reading production route {guid}"))?);
    }
    Ok(routes::from_routes(&found))
}

/// Deletes those of `guids` that no app is mapped to: the production routes the hold created for a promote that
/// will not come (production's own routes always have production mapped).
async fn remove_unused_routes(cf: &CfClient, guids: &[String]) -> Result<()> {
    for guid in guids {
        if cf.routes().destinations(guid).await?.is_empty() {
            cf.routes().delete_within(guid, JOB_TIMEOUT).await.context("deleting an unused route")?;
            log::detail(format_args!("deleted route {guid}, created by the hold and never used"));
        }
    }
    Ok(())
}

/// The put's answer: production's version when there is one, else the candidate's (a first deploy: Concourse
/// needs a version, and this is the one a promote makes production).
fn answer(production: Option<(&App, &str)>, candidate: (&App, &str), metadata: Vec<MetadataField>) -> VersionResult {
    let (app, droplet) = production.unwrap_or(candidate);
    let mut metadata = metadata;
    metadata.insert(0, MetadataField::new("app", &app.name));
    VersionResult { version: Version::of(app, droplet), metadata }
}
