//! Roles: `GET /v3/roles` as roles_controller.rb, roles_list_message.rb, role_list_fetcher.rb and role_presenter.rb
//! answer it, what the sim's users start with, the admin API that adds and removes roles, and the rule
//! route_policies_controller.rb's `find_and_authorize_route` asks of lib/cloud_controller/permissions.rb when a
//! route policy is created (see src/cc/roles.rs).

use base64::Engine;
use serde_json::{Value, json};

use crate::common::{Api, send, test_config};
use cf_sim::{Sim, SimConfig};

/// A sim whose org has a second space, `other`, and a second user, `bob`.
fn sim() -> Sim {
    Sim::start(SimConfig {
        extra_spaces: vec!["sim-org/other".into()],
        extra_users: vec!["bob:bob-password".into()],
        ..test_config()
    })
    .unwrap()
}

/// The `user_id` of the API's token.
fn user_of(api: &Api) -> String {
    let payload = api.token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["user_id"].as_str().unwrap().to_owned()
}

/// A space's guid by name.
async fn space(api: &Api, name: &str) -> String {
    api.get(&format!("/v3/spaces?names={name}")).await.json()["resources"][0]["guid"].as_str().unwrap().to_owned()
}

/// The roles a query lists (one page).
async fn roles(api: &Api, query: &str) -> Vec<Value> {
    let listed = api.get(&format!("/v3/roles?{query}")).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    listed.json()["resources"].as_array().unwrap().clone()
}

/// Takes every role of `user` in `space` away through the admin API.
async fn strip(api: &Api, user: &str, space: &str) {
    for role in roles(api, &format!("user_guids={user}&space_guids={space}")).await {
        let guid = role["guid"].as_str().unwrap();
        assert_eq!(api.delete(&format!("/_sim/roles/{guid}")).await.status, 204);
    }
}

/// Seeds a role through the admin API; its body as the list presents it.
async fn seed(api: &Api, body: Value) -> Value {
    let seeded = api.post("/_sim/roles", body).await;
    assert_eq!(seeded.status, 201, "{}", seeded.text());
    seeded.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_listed_filtered_paged_and_seen_as_cc_shows_them() {
    let sim = sim();
    let api = Api::login(&sim).await;
    let me = user_of(&api);
    let (home, other) = (space(&api, "sim-space").await, space(&api, "other").await);

    // A user of the sim starts as organization_user of the org and space_developer of every space.
    let mine = roles(&api, &format!("user_guids={me}")).await;
    let kinds: Vec<&str> = mine.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["organization_user", "space_developer", "space_developer"], "by created_at");
    let developer = &roles(&api, &format!("types=space_developer&space_guids={home}&user_guids={me}")).await[0];
    assert_eq!(developer["relationships"]["space"]["data"]["guid"], home.as_str());
    assert_eq!(developer["relationships"]["organization"]["data"], Value::Null);
    assert_eq!(developer["relationships"]["user"]["data"]["guid"], me.as_str());
    let links = &developer["links"];
    assert!(links["space"]["href"].as_str().unwrap().ends_with(&format!("/v3/spaces/{home}")), "{links}");
    assert!(links["user"]["href"].as_str().unwrap().ends_with(&format!("/v3/users/{me}")), "{links}");
    assert!(links.get("organization").is_none(), "{links}");
    let org_role = &roles(&api, &format!("types=organization_user&user_guids={me}")).await[0];
    assert_eq!(org_role["relationships"]["space"]["data"], Value::Null);
    assert!(org_role["links"].get("space").is_none() && org_role["links"]["organization"].is_object());

    // Pagination as every list; an unknown filter is a 422 (unprocessable!).
    let page = api.get(&format!("/v3/roles?user_guids={me}&per_page=1")).await.json();
    assert_eq!((&page["pagination"]["total_results"], &page["pagination"]["total_pages"]), (&json!(3), &json!(3)));
    assert!(page["pagination"]["next"]["href"].as_str().unwrap().contains("/v3/roles?page=2"), "{page}");
    let bad = api.get("/v3/roles?names=x").await;
    assert_eq!((bad.status, bad.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));

    // A user sees the roles of the spaces it may read: bob's in `other` no more once it has none there.
    assert_eq!(roles(&api, &format!("space_guids={other}")).await.len(), 2, "its own and bob's");
    strip(&api, &me, &other).await;
    assert!(roles(&api, &format!("space_guids={other}")).await.is_empty());
    assert_eq!(roles(&api, &format!("types=space_developer&space_guids={home}")).await.len(), 2);

    // The admin API adds a role by user name.
    let auditor = seed(&api, json!({"type": "space_auditor", "username": "bob", "space_guid": home})).await;
    assert_eq!(auditor["type"], "space_auditor");
    assert_eq!(roles(&api, "types=space_auditor").await.len(), 1);
    sim.stop();
}

/// RolesListMessage: ListMessage's keys and its own, in that order, and no `label_selector`; ListMessage's
/// pagination rules with `valid_order_by_values` created_at and updated_at; every error a 422 (`unprocessable!`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roles_list_message_refuses_what_roles_list_message_refuses_in_its_words() {
    let sim = sim();
    let api = Api::login(&sim).await;
    let valid = "Valid parameters are: 'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', \
                 'organization_guids', 'space_guids', 'user_guids', 'types', 'include'";
    let refusals = [
        ("names=x", format!("Unknown query parameter(s): 'names'. {valid}")),
        ("label_selector=team%3Da", format!("Unknown query parameter(s): 'label_selector'. {valid}")),
        ("order_by=name", "Order by can only be: 'created_at', 'updated_at'".to_owned()),
        ("order_by=--created_at", "Order by can only be: 'created_at', 'updated_at'".to_owned()),
        ("per_page=0", "Per page must be a positive integer".to_owned()),
        ("per_page=5001", "Per page must be between 1 and 5000".to_owned()),
        ("page=0", "Page must be a positive integer".to_owned()),
        (
            "include=users",
            "Invalid included resource: 'users'. Valid included resources are: 'user', 'organization', 'space'"
                .to_owned(),
        ),
    ];
    for (query, detail) in refusals {
        let refused = api.get(&format!("/v3/roles?{query}")).await;
        assert_eq!((refused.status, refused.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())), "{query}");
        assert_eq!(refused.json()["errors"][0]["detail"], detail.as_str(), "{query}");
    }
    let me = user_of(&api);
    let oldest = roles(&api, &format!("user_guids={me}&order_by=created_at")).await;
    assert_eq!(roles(&api, &format!("user_guids={me}&order_by=")).await, oldest, "a blank order_by is the default");
    let newest = roles(&api, &format!("user_guids={me}&order_by=-created_at")).await;
    assert_eq!((newest.len(), newest), (3, oldest.into_iter().rev().collect::<Vec<_>>()));
    sim.stop();
}

/// An API client with the sim's CI client's token (client credentials: `cloud_controller.admin`).
async fn client_api(sim: &Sim) -> Api {
    let info = sim.info();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", info.client_id, info.client_secret));
    let headers =
        [("authorization", format!("Basic {basic}")), ("content-type", "application/x-www-form-urlencoded".into())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = format!("{}/oauth/token", info.uaa);
    let answer = send("POST", &url, &headers, b"grant_type=client_credentials".to_vec(), None).await.unwrap();
    Api { base: info.api.clone(), token: answer.json()["access_token"].as_str().unwrap().to_owned(), ca_pem: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_route_policy_needs_the_space_developer_role_in_the_route_s_space() {
    let sim = sim();
    let api = Api::login(&sim).await;
    let me = user_of(&api);
    let home = space(&api, "sim-space").await;
    let domain = json!({"name": "mtls.example.com", "enforce_route_policies": true, "route_policies_scope": "any"});
    let domain = api.post("/v3/domains", domain).await.json()["guid"].clone();
    let relationships = json!({"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": home}}});
    let route = json!({"host": "api", "relationships": relationships});
    let route = api.post("/v3/routes", route).await.json()["guid"].clone();
    let policy = |source: String| json!({"source": source, "relationships": {"route": {"data": {"guid": route}}}});
    let app = api.create_app("caller").await;

    // An auditor of the route's space may read it, not give it policies: errors/v2.yml's NotAuthorized.
    strip(&api, &me, &home).await;
    seed(&api, json!({"type": "space_auditor", "user_guid": me, "space_guid": home})).await;
    let refused = api.post("/v3/route_policies", policy(format!("cf:app:{app}"))).await;
    assert_eq!((refused.status, refused.cf_error()), (403, (10003, "CF-NotAuthorized".into())));
    assert_eq!(refused.json()["errors"][0]["detail"], "You are not authorized to perform the requested action");
    // Without any role there, the route is not found.
    strip(&api, &me, &home).await;
    let unseen = api.post("/v3/route_policies", policy(format!("cf:app:{app}"))).await;
    assert_eq!((unseen.status, unseen.json()["errors"][0]["detail"].clone()), (404, json!("Route not found")));
    assert_eq!(api.get("/v3/route_policies").await.json()["pagination"]["total_results"], 0, "none was made");

    // An admin (the client's cloud_controller.admin) needs no role; a space developer may.
    let admin = client_api(&sim).await;
    assert_eq!(admin.post("/v3/route_policies", policy(format!("cf:app:{app}"))).await.status, 201);
    seed(&api, json!({"type": "space_developer", "user_guid": me, "space_guid": home})).await;
    assert_eq!(api.post("/v3/route_policies", policy(format!("cf:space:{home}"))).await.status, 201);
    sim.stop();
}
