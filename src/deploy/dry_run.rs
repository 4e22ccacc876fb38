//! `dry_run: true`: the plan a deploy would carry out — apps to create, rename, stop and delete, routes to map
//! and unmap, inherited scale, the network policies the candidate would be given, and what recovery would do
//! with a dead deploy's leftovers — printed without changing anything. The answer is the version in production
//! now.

use anyhow::{Result, anyhow};

use super::carry;
use super::context::Context;
use super::hold;
use super::inputs::Prepared;
use super::plan::{self, Apps, Plan};
use super::recovery::{self, Action};
use super::unchanged;
use crate::log;
use crate::protocol::{MetadataField, Version, VersionResult};
use crate::record::{Journal, Phase};

pub(crate) async fn run(ctx: &Context, prepared: Prepared) -> Result<VersionResult> {
    let names = &ctx.source.names;
    let apps = Apps::read(&ctx.cf, &ctx.target.space.guid, names).await?;
    log::heading("Dry run: nothing is changed");
    if let Some(green) = &apps.green {
        match Journal::from_annotations(&green.metadata.annotations) {
            None => log::warn(format_args!(
                "{} exists without a deploy journal: a real deploy would refuse to touch it",
                green.name
            )),
            Some(Err(e)) => log::warn(format_args!("{} has a damaged deploy journal: {e}", green.name)),
            Some(Ok(journal)) if journal.is_stale(std::time::SystemTime::now()) => {
                let (action, _) = recovery::assess(&ctx.cf, green, &journal).await?;
                log::info(format_args!(
                    "a deploy by {} died in its {} phase; recovery would {}",
                    journal.describe_holder(),
                    journal.phase,
                    action.describe()
                ));
                if matches!(action, Action::FinishSwap | Action::FinishHousekeeping) {
                    log::detail(format_args!(
                        "{} ({}) would then be production as {}; the plan below starts from the foundation as it is now",
                        green.name, green.guid, names.production
                    ));
                }
            }
            Some(Ok(journal)) if journal.phase == Phase::Held => {
                log::info(format_args!("{}; a real deploy would fail", hold::refusal(&green.name, &journal)))
            }
            Some(Ok(journal)) => log::info(format_args!(
                "a deploy by {} holds the lock (phase {}); a real deploy would wait for it",
                journal.describe_holder(),
                journal.phase
            )),
        }
    }
    let lifecycle = plan::candidate_lifecycle(&prepared, apps.production.as_ref());
    let plan = Plan::make(ctx, prepared, &apps, lifecycle).await?;
    plan.print(ctx, &apps);
    for line in carry::describe(&ctx.cf, apps.production.as_ref(), &names.green(), &ctx.production_policies).await? {
        log::detail(line);
    }
    let parameters = carry::parameters_for(&ctx.cf, plan.blue.as_ref(), &ctx.production_policies).await?;
    carry::manifest(&plan.candidate_manifest, plan.blue.as_ref(), &parameters)?.1.iter().for_each(log::detail);
    log::detail("the candidate's manifest (values that may be secret hidden):");
    for line in crate::manifest::masked(&plan.candidate_manifest).lines() {
        log::output(line);
    }
    if let Some(production) = apps.production.as_ref().filter(|_| ctx.params.skip_unchanged) {
        unchanged::describe(ctx, production).await?;
    }
    let production = apps.production.ok_or_else(|| {
        anyhow!("dry run: nothing runs in production yet, so there is no version to report (the plan is above)")
    })?;
    let droplet = production
        .current_droplet_guid()
        .ok_or_else(|| anyhow!("dry run: {} has no droplet, so there is no version to report", production.name))?
        .to_owned();
    Ok(VersionResult {
        version: Version::of(&production, &droplet),
        metadata: vec![MetadataField::new("dry_run", "true"), MetadataField::new("app", &production.name)],
    })
}
