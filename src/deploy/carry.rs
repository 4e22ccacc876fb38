//! What the candidate carries over from production that no manifest holds, before it gets production traffic:
//! the network policies. Container-to-container networking names apps by guid, so the new app of a blue-green
//! deploy would start with none: its callers could no longer reach it over its internal routes, nor it its
//! backends, and no HTTP check on a public route would notice. Every policy production is the source or the
//! destination of is created for the candidate (same ports and protocol), on a deploy and on a rollback alike;
//! the version kept as `<app>-previous` keeps its own (a rollback needs them), and an app the deploy deletes
//! loses its policies with it (the policy server would only clean them up much later).

use anyhow::{Result, anyhow};

use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::cf::policies::Policy;
use crate::log;

/// Before the lock: production's network policies, read, which also proves the deploying identity may manage
/// them (a 403 fails the put here, saying which permission is missing). Empty when nothing runs in production
/// or the foundation has no policy server.
pub(crate) async fn check(cf: &CfClient, space_guid: &str, production_name: &str) -> Result<Vec<Policy>> {
    let Some(production) = cf.apps().by_name(space_guid, production_name).await? else { return Ok(Vec::new()) };
    policies_of(cf, &production).await
}

/// The policies `app` is the source or the destination of.
async fn policies_of(cf: &CfClient, app: &App) -> Result<Vec<Policy>> {
    let Some(server) = cf.policy_server().await? else { return Ok(Vec::new()) };
    server.for_app(&app.guid).await.map_err(|e| match e.cf().filter(|c| c.status == Some(403)) {
        Some(refused) => anyhow!(
            "network policies: the policy server refused to list {}'s policies ({}): the deploying user needs the \
             network.write scope (or network.admin) and space developer rights in the apps' spaces, so the new \
             version keeps them",
            app.name,
            refused.title
        ),
        None => anyhow!(e).context(format!("listing the network policies of {}", app.name)),
    })
}

/// Gives `candidate` every policy of production (`production_guid`): what it may call and who may call it.
pub(crate) async fn policies_to(cf: &CfClient, production_guid: Option<&str>, candidate: &App) -> Result<()> {
    let Some(production) = production_guid else { return Ok(()) };
    let Some(server) = cf.policy_server().await? else { return Ok(()) };
    let listed =
        server.for_app(production).await.map_err(|e| anyhow!(e).context("listing production's network policies"))?;
    let carried = moved(&listed, production, &candidate.guid);
    if carried.is_empty() {
        return Ok(());
    }
    log::info(format_args!("carrying {} network policies of production to {}", carried.len(), candidate.name));
    for policy in &carried {
        log::detail(policy.describe(|guid| if guid == candidate.guid { candidate.name.clone() } else { guid.into() }));
    }
    server
        .create(&carried)
        .await
        .map_err(|e| anyhow!(e).context(format!("creating {}'s network policies", candidate.name)))
}

/// Deletes every policy of `app`, which is about to be deleted.
pub(crate) async fn forget(cf: &CfClient, app: &App) -> Result<()> {
    let Some(server) = cf.policy_server().await? else { return Ok(()) };
    let policies = policies_of(cf, app).await?;
    server.delete(&policies).await.map_err(|e| anyhow!(e).context(format!("deleting {}'s network policies", app.name)))
}

/// The dry run's lines: what the candidate `green` would be given of `production`'s policies.
pub(crate) async fn describe(cf: &CfClient, production: Option<&App>, green: &str) -> Result<Vec<String>> {
    let Some(production) = production else { return Ok(Vec::new()) };
    let carried = moved(&policies_of(cf, production).await?, &production.guid, green);
    Ok(carried.iter().map(|p| format!("carry network policy {}", p.describe(str::to_owned))).collect())
}

/// `policies` with production (`from`) replaced by the candidate (`to`).
fn moved(policies: &[Policy], from: &str, to: &str) -> Vec<Policy> {
    policies.iter().map(|p| p.moved(from, to)).collect()
}
