//! `rollback: true`: a deploy whose candidate already exists. `<app>-previous` (or the kept version
//! `rollback_to` names) is renamed to `<app>-green` (atomically taking the lock), started, verified on a temporary
//! route and swapped in; the version that was in production becomes `<app>-previous` and the other kept versions
//! move down the list behind it, so a second rollback rolls forward again. No staging: seconds.

use anyhow::{Result, anyhow, bail};

use super::abort;
use super::candidate::Candidate;
use super::context::Context;
use super::lock::{Lock, Take};
use super::plan::{Apps, Blue, Kept};
use super::promotion::{self, Verified};
use super::push::Pushed;
use super::routes::{self, RouteTarget};
use crate::cf::apps::App;
use crate::config::{AppNames, RollbackTo};
use crate::log;
use crate::protocol::{BuildEnv, VersionResult};
use crate::record::Journal;

/// What a rollback settles under the lock, before it starts the candidate.
struct Planned {
    droplet: String,
    blue: Option<Blue>,
    /// The other kept versions, the most recent first.
    kept: Vec<Kept>,
    prod_routes: Vec<RouteTarget>,
    /// `host.domain` of the candidate's temporary route (`None` for a no-route app).
    temp_url: Option<String>,
}

pub(crate) async fn run(ctx: &mut Context) -> Result<VersionResult> {
    if let Some(line) = answers(&ctx.build) {
        log::info(line);
    }
    let names = ctx.source.names.clone();
    let green_name = names.green();
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, &names).await?;
    let previous_name = names.kept(target_of(&ctx.params.rollback_to, &apps, &names)?);
    let previous = apps.kept.iter().map(|k| &k.app).find(|app| app.name.eq_ignore_ascii_case(&previous_name));
    // With no such version but a lock held, the holder may yet leave one (a rollback that died is given back as it
    // was): the lock decides.
    if previous.is_none() && apps.green.is_none() {
        bail!(
            "rollback: there is no {previous_name} to roll back to (a deploy with keep_previous: N keeps N versions)"
        );
    }
    if let Some(previous) = previous {
        droplet_of(previous, &previous_name)?;
    }

    ctx.phases.start("lock", &format!("Taking the deploy lock (renaming {previous_name} to {green_name})"));
    let mut journal = Journal::new(&ctx.build, ctx.params.lock_lease);
    journal.rollback = true;
    journal.rollback_from = Some(previous_name.clone());
    let take = Take::Rename { space_guid: ctx.target.space.guid.clone(), previous_name: previous_name.clone() };
    let mut candidate = Candidate::take(ctx, journal, take).await?;
    // The app renamed may not be the one found above: a deploy the rollback waited for replaces the previous
    // version, and rolling back means going back from that deploy.
    if previous.is_some_and(|previous| previous.guid != candidate.app().guid) {
        log::info(format_args!(
            "{previous_name} changed while waiting for the lock: rolling back to {} instead",
            candidate.app().guid
        ));
    }
    // From here every failure before the swap gives the lock back (the app is renamed back, stopped).
    let planned = abort::or_abort(plan_under_lock(ctx, &candidate.lock)).await;
    let Planned { droplet, blue, kept, prod_routes, temp_url } = candidate.or_release(ctx, planned).await?;

    ctx.phases.start("start", &format!("Starting {green_name}"));
    let pushed = candidate.start_again(ctx, temp_url.as_deref()).await?;
    let pushed = Pushed { droplet_guid: droplet, ..pushed };

    ctx.phases.start("verify", &format!("Verifying {green_name}"));
    let gate = candidate.verify(ctx, temp_url.as_deref(), &prod_routes, blue.is_some()).await?;

    let blue = blue.map(|b| b.app);
    let verified = Verified { candidate, blue, kept, prod_routes, pushed, gate };
    promotion::swap_in(ctx, verified).await
}

/// Under the lock: the droplet to roll back to, production as it is now and its routes (written to the
/// journal), and the candidate's temporary route.
async fn plan_under_lock(ctx: &Context, lock: &Lock) -> Result<Planned> {
    let names = &ctx.source.names;
    let droplet = droplet_of(&ctx.cf.apps().with_current_droplet(lock.app.clone()).await?, &names.green())?;
    if let RollbackTo::Droplet(wanted) = &ctx.params.rollback_to
        && *wanted != droplet
    {
        bail!(
            "rollback_to: the kept version taken runs droplet {droplet}, not {wanted} (a deploy moved the kept \
             versions while this put waited for the lock); run the rollback again"
        );
    }
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, names).await?;
    let blue = Blue::read_production(&ctx.cf, apps.production).await?;
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
        j.prod_routes = routes::existing_guids(&prod_routes);
    })
    .await?;
    let known = blue.as_ref().map(|b| b.domains.as_slice()).unwrap_or_default();
    let (space_guid, green) = (&ctx.target.space.guid, names.green());
    let temp_url =
        routes::temporary_route(&ctx.cf, &ctx.params.green_route, &green, space_guid, &prod_routes, known).await?;
    Ok(Planned { droplet, blue, kept: apps.kept, prod_routes, temp_url })
}

/// Which kept version `rollback_to` names in `apps`: its place in the list (1 is `<app>-previous`). A droplet guid
/// that no kept version runs is refused, naming those there are.
fn target_of(rollback_to: &RollbackTo, apps: &Apps, names: &AppNames) -> Result<u32> {
    let droplet = match rollback_to {
        RollbackTo::Nth(nth) => return Ok(*nth),
        RollbackTo::Droplet(droplet) => droplet,
    };
    let runs = |k: &&Kept| k.app.current_droplet_guid().is_some_and(|d| d.eq_ignore_ascii_case(droplet));
    if let Some(kept) = apps.kept.iter().find(runs) {
        return Ok(kept.nth);
    }
    let there: Vec<String> = apps
        .kept
        .iter()
        .map(|k| format!("{} (droplet {})", k.app.name, k.app.current_droplet_guid().unwrap_or("none")))
        .collect();
    match there.is_empty() {
        true => bail!("rollback_to: no kept version runs droplet {droplet}: {} keeps none", names.production),
        false => bail!("rollback_to: no kept version runs droplet {droplet}; kept: {}", there.join(", ")),
    }
}

/// In a step hook (Concourse sets `BUILD_STATUS` there: `failed` in `on_failure`), which outcome of which
/// build this rollback answers. It only says so: the rollback itself is the same in a hook or not.
fn answers(build: &BuildEnv) -> Option<String> {
    let status = build.status.as_deref()?;
    Some(format!("rolling back because {} {status} (BUILD_STATUS={status})", build.describe()))
}

/// The droplet `app` (called `name`) would run; an error naming it when it has none.
fn droplet_of(app: &App, name: &str) -> Result<String> {
    app.current_droplet_guid().map(str::to_owned).ok_or_else(|| anyhow!("rollback: {name} has no droplet to run"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_in_a_hook_names_the_outcome_it_answers() {
        let build = BuildEnv { job_name: Some("deploy".into()), name: Some("7".into()), ..BuildEnv::default() };
        assert_eq!(answers(&build), None, "not in a hook: nothing to answer");
        let failed = BuildEnv { status: Some("failed".into()), ..build };
        assert_eq!(
            answers(&failed).as_deref(),
            Some("rolling back because job 'deploy' build 7 failed (BUILD_STATUS=failed)")
        );
    }
}
