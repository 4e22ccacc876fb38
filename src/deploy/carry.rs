//! What the candidate carries over from production that no manifest holds, before it gets production traffic:
//! the network policies and the route policies. Container-to-container networking names apps by guid, so the new
//! app of a blue-green
//! deploy would start with none: its callers could no longer reach it over its internal routes, nor it its
//! backends, and no HTTP check on a public route would notice. Every policy production is the source or the
//! destination of is created for the candidate (same ports and protocol), on a deploy and on a rollback alike;
//! the version kept as `<app>-previous` keeps its own (a rollback needs them), and an app the deploy deletes
//! loses its policies with it (the policy server would only clean them up much later). Route policies (CC 3.225.0
//! on) name their source app by guid too: those whose source is production are created for the candidate on the
//! same routes, where the foundation has them; CC never deletes an app's, so a deleted app's go with it here.
//! Its manifest also gets
//! production's user metadata and app features (SSH included) that it does not set itself.

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Map, Value};

use super::plan::Blue;
use crate::cf::CfClient;
use crate::cf::apps::App;
use crate::cf::policies::Policy;
use crate::cf::route_policies::{RoutePolicy, app_source};
use crate::log;

/// Before the lock: production's network policies are read, which proves the deploying identity may manage them
/// (a 403 fails the put here, saying which permission is missing). Nothing to check when nothing runs in
/// production.
pub(crate) async fn check(cf: &CfClient, space_guid: &str, production_name: &str) -> Result<()> {
    let Some(production) = cf.apps().by_name(space_guid, production_name).await? else { return Ok(()) };
    policies_of(cf, &production.guid, &production.name).await.map(drop)
}

/// The policies the app `guid` (called `name`) is the source or the destination of; none where the foundation
/// has no container networking (its policy server's path is not found).
async fn policies_of(cf: &CfClient, guid: &str, name: &str) -> Result<Vec<Policy>> {
    match cf.policy_server().for_app(guid).await {
        Ok(policies) => Ok(policies),
        Err(e) if e.cf().is_some_and(|c| c.status == Some(404)) => Ok(Vec::new()),
        Err(e) => Err(match e.cf().filter(|c| c.status == Some(403)) {
            Some(refused) => anyhow!(
                "network policies: the policy server refused to list {name}'s policies ({}): the deploying user \
                 needs the network.write scope (or network.admin) and space developer rights in the apps' spaces, \
                 so the new version keeps them",
                refused.title
            ),
            None => anyhow!(e).context(format!("listing the network policies of {name}")),
        }),
    }
}

/// Gives `candidate` every policy of production (`production_guid`): what it may call and who may call it.
pub(crate) async fn policies_to(cf: &CfClient, production_guid: Option<&str>, candidate: &App) -> Result<()> {
    let Some(production) = production_guid else { return Ok(()) };
    route_policies_to(cf, production, candidate).await?;
    let carried = moved(&policies_of(cf, production, "production").await?, production, &candidate.guid);
    if carried.is_empty() {
        return Ok(());
    }
    log::info(format_args!("carrying {} network policies of production to {}", carried.len(), candidate.name));
    for policy in &carried {
        log::detail(policy.describe(|guid| if guid == candidate.guid { candidate.name.clone() } else { guid.into() }));
    }
    cf.policy_server()
        .create(&carried)
        .await
        .map_err(|e| anyhow!(e).context(format!("creating {}'s network policies", candidate.name)))
}

/// Deletes every policy of `app`, which is about to be deleted: its network policies and the route policies it
/// is the source of.
pub(crate) async fn forget(cf: &CfClient, app: &App) -> Result<()> {
    let (policies, routed) = tokio::try_join!(policies_of(cf, &app.guid, &app.name), route_policies_of(cf, &app.guid))?;
    let network = async {
        let deleted = cf.policy_server().delete(&policies).await;
        deleted.map_err(|e| anyhow!(e).context(format!("deleting {}'s network policies", app.name)))
    };
    let routed = async {
        let deleted =
            routed.unwrap_or_default().into_iter().map(|p| async move { cf.route_policies().delete(&p.guid).await });
        let deleted = futures_util::future::try_join_all(deleted).await;
        deleted.map_err(|e| anyhow!(e).context(format!("deleting {}'s route policies", app.name)))
    };
    tokio::try_join!(network, routed).map(drop)
}

/// The route policies whose source is the app `guid`; `None` where the foundation has none (CC before 3.225.0).
async fn route_policies_of(cf: &CfClient, guid: &str) -> Result<Option<Vec<RoutePolicy>>> {
    cf.route_policies().of_app(guid).await.context("listing route policies")
}

/// Creates the route policies whose source is `production` for `candidate`: same routes, same metadata. A
/// foundation without route policies is said so once, and deployed to without.
async fn route_policies_to(cf: &CfClient, production: &str, candidate: &App) -> Result<()> {
    let Some(routed) = route_policies_of(cf, production).await? else {
        log::detail("this foundation has no route policies (CC before 3.225.0): none to carry");
        return Ok(());
    };
    if routed.is_empty() {
        return Ok(());
    }
    log::info(format_args!("carrying {} route policies of production to {}", routed.len(), candidate.name));
    let (api, source) = (cf.route_policies(), app_source(&candidate.guid));
    let created = routed.iter().map(|policy| {
        log::detail(format_args!("{} → route {}", candidate.name, policy.route_guid()));
        api.create(&source, policy.route_guid(), &policy.metadata)
    });
    let created = futures_util::future::try_join_all(created).await;
    created.map(drop).map_err(|e| anyhow!(e).context(format!("creating {}'s route policies", candidate.name)))
}

/// The dry run's lines: what the candidate `green` would be given of `production`'s policies.
pub(crate) async fn describe(cf: &CfClient, production: Option<&App>, green: &str) -> Result<Vec<String>> {
    let Some(production) = production else { return Ok(Vec::new()) };
    let (listed, routed) =
        tokio::try_join!(policies_of(cf, &production.guid, &production.name), route_policies_of(cf, &production.guid))?;
    let carried = moved(&listed, &production.guid, green);
    let network = carried.iter().map(|p| format!("carry network policy {}", p.describe(str::to_owned)));
    let routed = routed.unwrap_or_default().into_iter();
    let routed = routed.map(|p| format!("carry route policy {green} → route {}", p.route_guid()));
    Ok(network.chain(routed).collect())
}

/// `policies` with production (`from`) replaced by the candidate (`to`).
fn moved(policies: &[Policy], from: &str, to: &str) -> Vec<Policy> {
    policies.iter().map(|p| p.moved(from, to)).collect()
}

/// The candidate's manifest with what production has and the manifest does not set: production's user labels and
/// annotations (ours are the deploy's to write) and its app features (`ssh`, `revisions`,
/// `file-based-vcap-services`, `service-binding-k8s`, in CC's generated manifest from 3.197.0 on); and a line per
/// key carried.
pub(crate) fn manifest(candidate_manifest: &str, production: Option<&Blue>) -> Result<(String, Vec<String>)> {
    let Some(production) = production else { return Ok((candidate_manifest.to_owned(), Vec::new())) };
    let mut doc: Value = serde_norway::from_str(candidate_manifest).context("reading the candidate's manifest")?;
    let app = doc["applications"][0].as_object_mut().ok_or_else(|| anyhow!("the candidate's manifest has no app"))?;
    let mut carried = Vec::new();
    let metadata = &production.app.metadata;
    for (section, entries) in [("labels", &metadata.labels), ("annotations", &metadata.annotations)] {
        let user = entries.iter().filter(|(key, _)| !key.starts_with(crate::record::PREFIX));
        let values = user.map(|(key, value)| (key.clone(), Value::String(value.clone())));
        let added = fill(app, &["metadata", section], values);
        carried.extend(added.into_iter().map(|(k, v)| format!("{section}: {k}={v}")));
    }
    let features = production.manifest.features().into_iter().flatten().map(|(k, v)| (k.clone(), v.clone()));
    carried.extend(fill(app, &["features"], features).into_iter().map(|(k, v)| format!("feature {k}: {v}")));
    let yaml = serde_norway::to_string(&doc).context("writing the candidate's manifest")?;
    Ok((yaml, carried.into_iter().map(|line| format!("carry {line} (as production has it)")).collect()))
}

/// Sets each of `values` at `path` of `app` that is not set there yet; answers those it set.
fn fill(
    app: &mut Map<String, Value>,
    path: &[&str],
    values: impl Iterator<Item = (String, Value)>,
) -> Vec<(String, Value)> {
    let existing = path.iter().try_fold(&*app, |map, key| map.get(*key)?.as_object());
    let added: Vec<(String, Value)> =
        values.filter(|(key, _)| !existing.is_some_and(|map| map.contains_key(key))).collect();
    if added.is_empty() {
        return added;
    }
    let mut target = app;
    for key in path {
        let entry = target.entry(key.to_string()).or_insert(Value::Null);
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        target = entry.as_object_mut().expect("just made an object");
    }
    target.extend(added.iter().cloned());
    added
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::manifest::AppManifest;
    use crate::manifest::Vars;

    fn production() -> Blue {
        let app = serde_json::from_value(json!({"guid": "blue", "name": "myapp", "state": "STARTED",
            "metadata": {"labels": {"team": "a", "tier": "web", "cf-blue-green-resource.concourse/role": "x"},
                         "annotations": {"owner": "ops", "cf-blue-green-resource.concourse/phase": "y"}}}))
        .unwrap();
        let generated = "applications:\n- name: myapp\n  features: {ssh: false, revisions: true}\n";
        let manifest = AppManifest::parse("the manifest of myapp", generated, &Vars::default(), "myapp").unwrap();
        Blue { app, routes: Vec::new(), domains: Vec::new(), manifest }
    }

    #[test]
    fn what_the_manifest_leaves_unset_comes_from_production_and_ours_never_does() {
        let candidate = "applications:\n- name: myapp-green\n  metadata:\n    labels: {tier: api}\n  features: {revisions: false}\n";
        let (yaml, lines) = manifest(candidate, Some(&production())).unwrap();
        let doc: Value = serde_norway::from_str(&yaml).unwrap();
        let app = &doc["applications"][0];
        assert_eq!(app["metadata"]["labels"], json!({"tier": "api", "team": "a"}), "the manifest's own value wins");
        assert_eq!(app["metadata"]["annotations"], json!({"owner": "ops"}));
        assert_eq!(app["features"], json!({"revisions": false, "ssh": false}));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.contains(&"carry feature ssh: false (as production has it)".to_owned()), "{lines:?}");
    }

    #[test]
    fn a_first_deploy_carries_nothing_and_a_bare_manifest_everything() {
        let candidate = "applications:\n- name: myapp-green\n";
        let (yaml, lines) = manifest(candidate, None).unwrap();
        assert_eq!((yaml.as_str(), lines.len()), (candidate, 0));
        let (_, lines) = manifest(candidate, Some(&production())).unwrap();
        assert_eq!(lines.len(), 5, "{lines:?}");
    }
}
