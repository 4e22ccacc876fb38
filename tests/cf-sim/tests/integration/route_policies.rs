//! Route policies (identity-aware routing, CC 3.225.0): domains that enforce them, and `/v3/route_policies` as
//! route_policies_controller.rb, its messages, actions, model and presenter answer (see src/cc/route_policies.rs).

use serde_json::{Value, json};

use crate::common::{Api, test_config};
use cf_sim::config::CcApiVersion;
use cf_sim::{Sim, SimConfig};

const POLICIES: &str = "/v3/route_policies";

/// A 422's detail, asserting its status and title.
async fn unprocessable(api: &Api, path: &str, body: Value) -> String {
    let response = api.post(path, body).await;
    assert_eq!((response.status, response.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));
    response.json()["errors"][0]["detail"].as_str().unwrap().to_owned()
}

/// A route `host` on the domain `domain`; its guid.
async fn route(api: &Api, host: &str, domain: &str) -> String {
    let space = api.space_guid().await;
    let body = json!({"host": host, "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": space}}}});
    let response = api.post("/v3/routes", body).await;
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["guid"].as_str().unwrap().to_owned()
}

fn policy(source: &str, route: &str) -> Value {
    json!({"source": source, "relationships": {"route": {"data": {"guid": route}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_policies_are_validated_created_listed_shown_and_deleted_as_cc_does() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    // Domains: the two fields only where enforced, and domain_create_message.rb's rules.
    let plain = api.post("/v3/domains", json!({"name": "plain.example.com"})).await.json();
    assert!(plain.get("enforce_route_policies").is_none() && plain.get("route_policies_scope").is_none(), "{plain}");
    let enforced = json!({"name": "mtls.example.com", "enforce_route_policies": true, "route_policies_scope": "space"});
    let mtls = api.post("/v3/domains", enforced).await.json();
    assert_eq!((&mtls["enforce_route_policies"], &mtls["route_policies_scope"]), (&json!(true), &json!("space")));
    let no_scope = json!({"name": "a.example.com", "enforce_route_policies": true});
    assert_eq!(
        unprocessable(&api, "/v3/domains", no_scope).await,
        "Route policies scope is required when enforce_route_policies is true"
    );
    let internal =
        json!({"name": "b.internal", "internal": true, "enforce_route_policies": true, "route_policies_scope": "x"});
    assert_eq!(
        unprocessable(&api, "/v3/domains", internal).await,
        "Internal domains cannot have route policy enforcement. Internal routes bypass GoRouter., Route policies scope \
         must be one of 'any', 'org', 'space'"
    );

    let (plain, mtls) = (plain["guid"].as_str().unwrap(), mtls["guid"].as_str().unwrap());
    let (open, guarded) = (route(&api, "open", plain).await, route(&api, "api", mtls).await);
    let app = api.create_app("caller").await;
    let source = format!("cf:app:{app}");

    // The message, then the route, then the action and the model.
    assert_eq!(
        unprocessable(&api, POLICIES, json!({"extra": 1})).await,
        "Unknown field(s): 'extra', Relationships 'relationships' is not an object, Source can't be blank, Source \
         must be a string"
    );
    assert_eq!(
        unprocessable(&api, POLICIES, policy(&format!("cf:app:{}", app.to_uppercase()), &guarded)).await,
        "Source must be in format 'cf:app:<uuid>', 'cf:space:<uuid>', 'cf:org:<uuid>', or 'cf:any'"
    );
    let missing = api.post(POLICIES, policy(&source, "no-such-route")).await;
    assert_eq!((missing.status, missing.json()["errors"][0]["detail"].clone()), (404, json!("Route not found")));
    assert_eq!(
        unprocessable(&api, POLICIES, policy(&source, &open)).await,
        format!(
            "Cannot create route policies for route '{open}': the route's domain does not have enforce_route_policies \
             enabled."
        )
    );
    let org = api.get("/v3/organizations").await.json()["resources"][0]["guid"].as_str().unwrap().to_owned();
    assert_eq!(
        unprocessable(&api, POLICIES, policy(&format!("cf:org:{org}"), &guarded)).await,
        format!("Source 'cf:org:{org}' is not allowed: domain's route_policies_scope is 'space'.")
    );

    let created = api.post(POLICIES, policy(&source, &guarded)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    assert_eq!(created["source"], source.as_str());
    assert_eq!(created["relationships"]["app"]["data"]["guid"], app.as_str());
    assert_eq!(
        (&created["relationships"]["space"]["data"], &created["relationships"]["route"]["data"]["guid"]),
        (&Value::Null, &json!(guarded))
    );
    assert!(created["links"]["app"]["href"].as_str().unwrap().ends_with(&format!("/v3/apps/{app}")), "{created}");
    assert!(created["links"].get("space").is_none(), "{created}");
    assert_eq!(
        unprocessable(&api, POLICIES, policy(&source, &guarded)).await,
        format!("A route policy with source '{source}' already exists for this route.")
    );
    assert_eq!(
        unprocessable(&api, POLICIES, policy("cf:any", &guarded)).await,
        "source 'cf:any' cannot coexist with other route policies on the same route"
    );

    // The list's filters and include=route; show; delete.
    let count = |body: Value| body["pagination"]["total_results"].as_u64().unwrap();
    assert_eq!(count(api.get(&format!("{POLICIES}?sources={source}")).await.json()), 1);
    assert_eq!(count(api.get(&format!("{POLICIES}?source_guids={app}&route_guids={guarded}")).await.json()), 1);
    assert_eq!(count(api.get(&format!("{POLICIES}?route_guids={open}")).await.json()), 0);
    let space = api.space_guid().await;
    assert_eq!(count(api.get(&format!("{POLICIES}?space_guids={space}")).await.json()), 1);
    let bad = api.get(&format!("{POLICIES}?sources=cf:app:x")).await;
    assert_eq!((bad.status, bad.cf_error()), (400, (10005, "CF-BadQueryParameter".into())));
    assert_eq!(
        bad.json()["errors"][0]["detail"],
        "The query parameter is invalid: Sources contains invalid source format: cf:app:x"
    );
    let included = api.get(&format!("{POLICIES}?include=route")).await.json();
    assert_eq!(included["included"]["routes"][0]["guid"], guarded.as_str(), "{included}");
    let guid = created["guid"].as_str().unwrap();
    assert_eq!(api.get(&format!("{POLICIES}/{guid}")).await.json()["source"], source.as_str());
    let labelled = api.patch(&format!("{POLICIES}/{guid}"), json!({"metadata": {"labels": {"team": "a"}}})).await;
    assert_eq!(labelled.json()["metadata"]["labels"]["team"], "a");
    assert_eq!(api.delete(&format!("{POLICIES}/{guid}")).await.status, 204);
    let gone = api.get(&format!("{POLICIES}/{guid}")).await;
    assert_eq!((gone.status, gone.json()["errors"][0]["detail"].clone()), (404, json!("Route policy not found")));
    assert_eq!(api.delete(&format!("{POLICIES}/{guid}")).await.status, 404);

    // cf:any stands alone; deleting the route deletes its policies, deleting the source app does not.
    assert_eq!(api.post(POLICIES, policy("cf:any", &guarded)).await.status, 201);
    assert_eq!(
        unprocessable(&api, POLICIES, policy(&source, &guarded)).await,
        "source cannot coexist with the existing 'cf:any' policy on this route"
    );
    let other = route(&api, "other", mtls).await;
    assert_eq!(api.post(POLICIES, policy(&source, &other)).await.status, 201);
    assert_eq!(api.delete(&format!("/v3/apps/{app}")).await.status, 202);
    assert_eq!(count(api.get(&format!("{POLICIES}?source_guids={app}")).await.json()), 1, "an app's go nowhere");
    let deleted = api.delete(&format!("/v3/routes/{guarded}")).await;
    api.wait_job(&deleted.header("location").unwrap()).await;
    assert_eq!(count(api.get(&format!("{POLICIES}?route_guids={guarded}")).await.json()), 0, "a route's go with it");
    let unmapped = api.delete(&format!("/v3/spaces/{space}/routes?unmapped=true")).await;
    api.wait_job(&unmapped.header("location").unwrap()).await;
    assert_eq!(count(api.get(&format!("{POLICIES}?route_guids={other}")).await.json()), 0, "so do unmapped routes'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_cc_3_225_there_are_no_route_policies() {
    let config = SimConfig { cc_api_version: CcApiVersion::parse("3.224.0").unwrap(), ..test_config() };
    let sim = Sim::start(config).unwrap();
    let api = Api::login(&sim).await;
    let listed = api.get(POLICIES).await;
    assert_eq!((listed.status, listed.cf_error()), (404, (10000, "CF-NotFound".into())));
    let enforced = json!({"name": "mtls.example.com", "enforce_route_policies": true, "route_policies_scope": "any"});
    assert_eq!(
        unprocessable(&api, "/v3/domains", enforced).await,
        "Unknown field(s): 'enforce_route_policies', 'route_policies_scope'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_seeded_to_enforce_route_policies_takes_them_and_the_state_dump_lists_them() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let domain = api.first_guid(&format!("/v3/domains?names={}", sim.info().domain)).await;
    let route = route(&api, "api", &domain).await;
    let source = format!("cf:app:{}", api.create_app("caller").await);
    let refused = unprocessable(&api, POLICIES, policy(&source, &route)).await;
    assert!(refused.ends_with("does not have enforce_route_policies enabled."), "{refused}");

    let seed = format!("/_sim/domains/{}", sim.info().domain);
    let invalid = api.patch(&seed, json!({"enforce_route_policies": true})).await;
    assert_eq!(invalid.status, 422, "validated as a create: {}", invalid.text());
    let seeded = api.patch(&seed, json!({"enforce_route_policies": true, "route_policies_scope": "any"})).await;
    assert_eq!(seeded.status, 200, "{}", seeded.text());
    assert_eq!(seeded.json()["route_policies_scope"], "any");
    let created = api.post(POLICIES, policy(&source, &route)).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let guid = created.json()["guid"].clone();
    assert_eq!(sim.state_dump()["route_policies"], json!([{"guid": guid, "source": source, "route": route}]));
}
