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
//! production's user metadata and app features (SSH included) that it does not set itself, and the parameters of
//! production's bindings to managed services (read where the service allows it) for the services it binds
//! without parameters of its own.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Map, Value};

use super::plan::Blue;
use crate::cf::apps::App;
use crate::cf::policies::Policy;
use crate::cf::roles::{Identity, SPACE_DEVELOPER};
use crate::cf::route_policies::{RoutePolicy, app_source};
use crate::cf::{CfClient, ListParams};
use crate::log;

/// Production's network policies, its route policies and its managed bindings' parameters as read before the
/// lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listed {
    production_guid: Option<String>,
    policies: Vec<Policy>,
    /// `None` where the foundation has no route policies.
    route_policies: Option<Vec<RoutePolicy>>,
    parameters: BindingParameters,
}

impl Listed {
    /// The network and route policies of production (`guid`, called `name`): those listed before the lock when it
    /// is still that app, else listed again (another app became production meanwhile).
    async fn or_list(&self, cf: &CfClient, guid: &str, name: &str) -> Result<(Vec<Policy>, Option<Vec<RoutePolicy>>)> {
        if self.production_guid.as_deref() == Some(guid) {
            return Ok((self.policies.clone(), self.route_policies.clone()));
        }
        tokio::try_join!(policies_of(cf, guid, name), route_policies_of(cf, guid, name))
    }
}

/// The parameters of an app's bindings to managed services, by service instance name. They may hold secrets:
/// shown (`Debug` too) by their keys only.
#[derive(Clone, Default)]
pub(crate) struct BindingParameters(BTreeMap<String, Map<String, Value>>);

impl std::fmt::Debug for BindingParameters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(name, p)| (name, p.keys().collect::<Vec<_>>()))).finish()
    }
}

/// Before the lock: the network policies and the route policies of `production` (as the apps' lookup found it)
/// are read, which proves the deploying identity may read them (a 403 fails the put here, saying which
/// permission is missing), and so are its managed bindings' parameters; the identity must also be able to give
/// the route policies to the new version ([`may_give`]). Nothing to check when nothing runs in production.
pub(crate) async fn check(cf: &CfClient, production: Option<&App>) -> Result<Listed> {
    let Some(production) = production else { return Ok(Listed::default()) };
    let (guid, name) = (production.guid.as_str(), production.name.as_str());
    let (policies, route_policies, parameters) = tokio::try_join!(
        policies_of(cf, guid, name),
        route_policies_of(cf, guid, name),
        parameters_of(cf, production)
    )?;
    may_give(cf, route_policies.as_deref().unwrap_or_default()).await?;
    Ok(Listed { production_guid: Some(guid.to_owned()), policies, route_policies, parameters })
}

/// The parameters of `app`'s bindings to managed instances: one request per binding, side by side, none when it
/// has no such binding. A service that does not let them be read (not `bindings_retrievable`) is carried
/// without them, said once; any other failure fails the put.
async fn parameters_of(cf: &CfClient, app: &App) -> Result<BindingParameters> {
    let (bindings, instances) =
        cf.bindings().for_app(&app.guid).await.with_context(|| format!("listing {}'s service bindings", app.name))?;
    let managed = bindings.iter().filter_map(|b| {
        let instance = instances.iter().find(|i| Some(i.guid.as_str()) == b.service_instance_guid())?;
        (instance.kind.as_deref() == Some("managed")).then_some((b.guid.as_str(), instance.name.as_str()))
    });
    let read = managed.map(|(guid, name)| async move {
        let parameters = cf.bindings().parameters(guid).await;
        let parameters =
            parameters.with_context(|| format!("reading the parameters of {}'s binding to {name}", app.name));
        anyhow::Ok((name.to_owned(), parameters?))
    });
    let read = futures_util::future::try_join_all(read).await?;
    let unreadable: Vec<&str> = read.iter().filter(|(_, p)| p.is_none()).map(|(name, _)| name.as_str()).collect();
    if !unreadable.is_empty() {
        log::info(format_args!(
            "the parameters of {}'s bindings to {} cannot be read (the service does not allow it): the new version \
             is bound without them unless the manifest gives them",
            app.name,
            unreadable.join(", ")
        ));
    }
    Ok(BindingParameters(read.into_iter().filter_map(|(name, p)| Some((name, p?))).collect()))
}

/// The managed bindings' parameters of production as `production` found it: those read before the lock when it
/// is still the same app, else read again.
pub(crate) async fn parameters_for(
    cf: &CfClient,
    production: Option<&Blue>,
    listed: &Listed,
) -> Result<BindingParameters> {
    match production {
        None => Ok(BindingParameters::default()),
        Some(blue) if listed.production_guid.as_deref() == Some(blue.app.guid.as_str()) => {
            Ok(listed.parameters.clone())
        }
        Some(blue) => parameters_of(cf, &blue.app).await,
    }
}

/// The policies the app `guid` (called `name`) is the source or the destination of; none where the foundation
/// has no container networking (its policy server's path is not found).
async fn policies_of(cf: &CfClient, guid: &str, name: &str) -> Result<Vec<Policy>> {
    match cf.policy_server().for_app(guid).await {
        Ok(policies) => Ok(policies),
        Err(e) if e.cf().is_some_and(|c| c.status == Some(404)) => Ok(Vec::new()),
        Err(e) => Err(not_listed(
            e,
            ("network policies", "the policy server"),
            name,
            "the deploying user needs the network.write scope (or network.admin) and space developer rights in the \
             apps' spaces, so the new version keeps them",
        )),
    }
}

/// Why `what` (the policies' kind, and who `refuser` is) of the app `name` could not be listed: a refusal (403)
/// is one line saying which permission the deploying user lacks (`needs`); anything else keeps its cause.
fn not_listed(e: crate::cf::Error, (what, refuser): (&str, &str), name: &str, needs: &str) -> anyhow::Error {
    match e.cf().filter(|c| c.status == Some(403)) {
        Some(refused) => anyhow!("{what}: {refuser} refused to list {name}'s {what} ({}): {needs}", refused.title),
        None => anyhow!(e).context(format!("listing the {what} of {name}")),
    }
}

/// Gives `candidate` every policy of production (`production_guid`): what it may call and who may call it, and
/// the routes it may call where they enforce route policies. The lists read before the lock are used when
/// production is still that app; they are read again when another app became production meanwhile.
pub(crate) async fn policies_to(
    cf: &CfClient,
    production_guid: Option<&str>,
    candidate: &App,
    listed: &Listed,
) -> Result<()> {
    let Some(production) = production_guid else { return Ok(()) };
    let (policies, routed) = listed.or_list(cf, production, "production").await?;
    route_policies_to(cf, routed, candidate).await?;
    let carried = moved(&policies, production, &candidate.guid);
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
    let (guid, name) = (app.guid.as_str(), app.name.as_str());
    let (policies, routed) = tokio::try_join!(policies_of(cf, guid, name), route_policies_of(cf, guid, name))?;
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

/// The route policies whose source is the app `guid` (called `name`); `None` where the foundation has none (CC
/// before 3.225.0). CC answers a token without the `cloud_controller.read` scope (nor an admin's or a global
/// auditor's) 403 CF-NotAuthorized (`ApplicationController#check_read_permissions!`); it lists only the
/// policies of routes in spaces the user may read, and creating one on a route needs space developer rights in
/// the route's space.
async fn route_policies_of(cf: &CfClient, guid: &str, name: &str) -> Result<Option<Vec<RoutePolicy>>> {
    cf.route_policies().of_app(guid).await.map_err(|e| {
        let needs = "the deploying user needs the cloud_controller.read scope to read them, and space developer \
                     rights in their routes' spaces to give them to the new version";
        not_listed(e, ("route policies", "Cloud Controller"), name, needs)
    })
}

/// Whether the deploying identity may give the candidate production's route policies (`routed`, as listed with
/// their routes): CC's `RoutePoliciesController#create` wants the `cloud_controller.write` scope and, in each
/// route's space, the space developer role (`find_and_authorize_route`, `can_write_to_active_space?`), unless
/// the token has `cloud_controller.admin`. One roles request for all the spaces; none without route policies,
/// for an admin, or for a token that is no JWT (CC alone can say then). A missing role or scope is one line.
async fn may_give(cf: &CfClient, routed: &[RoutePolicy]) -> Result<()> {
    let spaces: BTreeSet<&str> = routed.iter().filter_map(|p| p.route_space.as_deref()).collect();
    if spaces.is_empty() {
        return Ok(());
    }
    let Some(identity) = cf.identity().await? else { return Ok(()) };
    let Some(user_guid) = roles_to_ask(&identity)? else { return Ok(()) };
    let developer = cf.roles().spaces_with(SPACE_DEVELOPER, user_guid, &spaces).await;
    let developer = developer.with_context(|| format!("listing the space developer roles of {}", who(&identity)))?;
    let lacking: Vec<&str> = spaces.into_iter().filter(|s| !developer.contains(*s)).collect();
    if lacking.is_empty() {
        return Ok(());
    }
    let named = space_names(cf, &lacking).await;
    bail!(
        "route policies: {} is not a space developer in {} {}, where production's route policies' routes are: \
         giving them to the new version needs the Space Developer role there (or the cloud_controller.admin scope)",
        who(&identity),
        if named.len() == 1 { "space" } else { "spaces" },
        named.join(", ")
    )
}

/// Whose space developer roles to ask for before giving route policies: nobody's for an admin (`Ok(None)`); a
/// token without `cloud_controller.write` may not give them at all (one line saying so).
fn roles_to_ask(identity: &Identity) -> Result<Option<&str>> {
    if identity.admin {
        return Ok(None);
    }
    if !identity.writes {
        bail!(
            "route policies: {} lacks the cloud_controller.write scope, which giving production's route policies to \
             the new version needs",
            who(identity)
        );
    }
    Ok(Some(&identity.user_guid))
}

/// How a line names the deploying identity.
fn who(identity: &Identity) -> String {
    format!("the deploying {}", identity.called)
}

/// The names of the spaces `guids`, each its guid where it cannot be read (the line it goes in fails the put
/// anyway).
async fn space_names(cf: &CfClient, guids: &[&str]) -> Vec<String> {
    let listed = cf.spaces().list(&ListParams::new().filter("guids", guids)).await.unwrap_or_default();
    let name = |guid: &str| listed.iter().find(|s| s.guid == guid).map_or_else(|| guid.to_owned(), |s| s.name.clone());
    guids.iter().map(|guid| name(guid)).collect()
}

/// Creates the route policies of production (`routed`, as listed) for `candidate`: same routes, same metadata.
/// A foundation without route policies (`None`) is said so once, and deployed to without. CC refuses (403) a
/// user who may read a route's space but is no space developer there: one line says so.
async fn route_policies_to(cf: &CfClient, routed: Option<Vec<RoutePolicy>>, candidate: &App) -> Result<()> {
    let Some(routed) = routed else {
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
    created.map(drop).map_err(|e| match e.cf().filter(|c| c.status == Some(403)) {
        Some(refused) => anyhow!(
            "route policies: Cloud Controller refused to give {} production's route policies ({}): the deploying \
             user needs space developer rights in the spaces of their routes",
            candidate.name,
            refused.title
        ),
        None => anyhow!(e).context(format!("creating {}'s route policies", candidate.name)),
    })
}

/// The dry run's lines: what the candidate `green` would be given of `production`'s policies (as `listed` before
/// the lock).
pub(crate) async fn describe(
    cf: &CfClient,
    production: Option<&App>,
    green: &str,
    listed: &Listed,
) -> Result<Vec<String>> {
    let Some(production) = production else { return Ok(Vec::new()) };
    let (policies, routed) = listed.or_list(cf, &production.guid, &production.name).await?;
    let carried = moved(&policies, &production.guid, green);
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
/// `file-based-vcap-services`, `service-binding-k8s`, in CC's generated manifest from 3.197.0 on), and its
/// managed bindings' `parameters` on the `services:` entries that give none; and a line per key carried (a
/// binding's parameters by their keys only: their values may be secret).
pub(crate) fn manifest(
    candidate_manifest: &str,
    production: Option<&Blue>,
    parameters: &BindingParameters,
) -> Result<(String, Vec<String>)> {
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
    carried.extend(give_parameters(app, parameters));
    let yaml = serde_norway::to_string(&doc).context("writing the candidate's manifest")?;
    Ok((yaml, carried.into_iter().map(|line| format!("carry {line} (as production has it)")).collect()))
}

/// Gives each `services:` entry of `app` without `parameters` those of production's binding to its instance
/// (a plain name becomes `{name, parameters}`); answers a line per entry given, naming the keys only.
fn give_parameters(app: &mut Map<String, Value>, parameters: &BindingParameters) -> Vec<String> {
    let Some(Value::Array(services)) = app.get_mut("services") else { return Vec::new() };
    let mut carried = Vec::new();
    for entry in services.iter_mut() {
        let name = match entry {
            Value::String(name) => name.clone(),
            Value::Object(o) if !o.contains_key("parameters") => match o.get("name").and_then(Value::as_str) {
                Some(name) => name.to_owned(),
                None => continue,
            },
            _ => continue,
        };
        let Some(given) = parameters.0.get(&name).filter(|p| !p.is_empty()) else { continue };
        if entry.is_string() {
            *entry = serde_json::json!({ "name": name });
        }
        entry["parameters"] = Value::Object(given.clone());
        let keys: Vec<&str> = given.keys().map(String::as_str).collect();
        carried.push(format!("the parameters of the binding to {name} ({})", keys.join(", ")));
    }
    carried
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
        let (yaml, lines) = manifest(candidate, Some(&production()), &BindingParameters::default()).unwrap();
        let doc: Value = serde_norway::from_str(&yaml).unwrap();
        let app = &doc["applications"][0];
        assert_eq!(app["metadata"]["labels"], json!({"tier": "api", "team": "a"}), "the manifest's own value wins");
        assert_eq!(app["metadata"]["annotations"], json!({"owner": "ops"}));
        assert_eq!(app["features"], json!({"revisions": false, "ssh": false}));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.contains(&"carry feature ssh: false (as production has it)".to_owned()), "{lines:?}");
    }

    #[test]
    fn managed_bindings_parameters_go_to_the_entries_that_give_none_by_their_keys_only() {
        let candidate = "applications:\n- name: myapp-green\n  services:\n  - db\n  - name: cache\n    binding_name: c\n  - name: queue\n    parameters: {durable: false}\n  - logs\n";
        let given = |pairs: serde_json::Value| pairs.as_object().unwrap().clone();
        let parameters = BindingParameters(BTreeMap::from([
            ("db".to_owned(), given(json!({"password": "s3cret-value", "pool": 5}))),
            ("cache".to_owned(), given(json!({"ttl": 60}))),
            ("queue".to_owned(), given(json!({"durable": true}))),
        ]));
        let (yaml, lines) = manifest(candidate, Some(&production()), &parameters).unwrap();
        let doc: Value = serde_norway::from_str(&yaml).unwrap();
        let services = &doc["applications"][0]["services"];
        assert_eq!(services[0], json!({"name": "db", "parameters": {"password": "s3cret-value", "pool": 5}}));
        assert_eq!(services[1], json!({"name": "cache", "binding_name": "c", "parameters": {"ttl": 60}}));
        assert_eq!(services[2], json!({"name": "queue", "parameters": {"durable": false}}), "the manifest's own win");
        assert_eq!(services[3], json!("logs"), "no managed binding, nothing given");
        let shown = format!("{lines:?} {parameters:?}");
        assert!(shown.contains("the parameters of the binding to db (password, pool)"), "{shown}");
        assert!(!shown.contains("s3cret-value") && !shown.contains("queue (durable)"), "{shown}");
    }

    #[test]
    fn a_first_deploy_carries_nothing_and_a_bare_manifest_everything() {
        let candidate = "applications:\n- name: myapp-green\n";
        let (yaml, lines) = manifest(candidate, None, &BindingParameters::default()).unwrap();
        assert_eq!((yaml.as_str(), lines.len()), (candidate, 0));
        let (_, lines) = manifest(candidate, Some(&production()), &BindingParameters::default()).unwrap();
        assert_eq!(lines.len(), 5, "{lines:?}");
    }

    #[test]
    fn an_admin_is_asked_no_roles_a_writer_its_own_and_a_reader_is_refused() {
        let identity = |admin, writes| Identity { user_guid: "u-1".into(), called: "user alice".into(), admin, writes };
        assert_eq!(roles_to_ask(&identity(true, false)).unwrap(), None);
        assert_eq!(roles_to_ask(&identity(false, true)).unwrap(), Some("u-1"));
        assert_eq!(
            roles_to_ask(&identity(false, false)).unwrap_err().to_string(),
            "route policies: the deploying user alice lacks the cloud_controller.write scope, which giving \
             production's route policies to the new version needs"
        );
    }
}
