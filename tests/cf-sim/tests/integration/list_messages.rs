//! Every list refuses the query parameters its Cloud Controller list message refuses, in CC's words: the message's
//! `allowed_keys` in `register_allowed_keys` order (`base_message.rb`, `list_message.rb`,
//! `metadata_list_message.rb`), `order_by` only among its `valid_order_by_values`, answered as its controller does
//! (`invalid_param!` 400, `unprocessable!` 422).

use crate::common::{Api, app_zip, test_config};
use cf_sim::Sim;

const LIST: &str = "'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_name_their_messages_keys_in_ccs_order_and_refuse_other_orders() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let unknown = |keys: &str| format!("Unknown query parameter(s): 'bogus'. Valid parameters are: {LIST}, {keys}");
    let refused = [
        (
            "/v3/apps?bogus=1",
            unknown(
                "'names', 'organization_guids', 'space_guids', 'stacks', 'include', 'lifecycle_type', 'label_selector'",
            ),
        ),
        ("/v3/apps?order_by=position", "Order by can only be: 'created_at', 'updated_at', 'name', 'state'".into()),
        (
            "/v3/processes?bogus=1",
            unknown("'app_guid', 'types', 'space_guids', 'organization_guids', 'app_guids', 'embed', 'label_selector'"),
        ),
        ("/v3/processes?order_by=name", "Order by can only be: 'created_at', 'updated_at'".into()),
        (
            "/v3/droplets?package_guids=p",
            "Unknown query parameter(s): 'package_guids'. Valid parameters are: \
             'page', 'per_page', 'order_by', 'created_ats', 'updated_ats', 'guids', 'app_guid', 'app_guids', \
             'current', 'organization_guids', 'package_guid', 'space_guids', 'states', 'label_selector'"
                .into(),
        ),
        ("/v3/domains?bogus=1", unknown("'names', 'guids', 'organization_guids', 'label_selector'")),
        (
            "/v3/routes?bogus=1",
            unknown(
                "'hosts', 'space_guids', 'organization_guids', 'domain_guids', 'paths', 'app_guids', 'include', \
                 'label_selector', 'ports', 'service_instance_guids'",
            ),
        ),
        ("/v3/organization_quotas?label_selector=a", {
            "Unknown query parameter(s): 'label_selector'. Valid parameters are: 'page', 'per_page', 'order_by', \
             'created_ats', 'updated_ats', 'guids', 'names', 'organization_guids'"
                .into()
        }),
        ("/v3/spaces?order_by=state", "Order by can only be: 'created_at', 'updated_at', 'name'".into()),
        (
            "/v3/service_credential_bindings?bogus=1&order_by=state",
            format!(
                "Order by can only be: 'created_at', 'updated_at', 'name', {}",
                unknown(
                    "'names', 'service_instance_guids', 'service_instance_names', 'service_plan_names', \
                     'service_plan_guids', 'service_offering_names', 'service_offering_guids', 'app_guids', \
                     'app_names', 'include', 'type', 'label_selector'"
                )
            ),
        ),
    ];
    for (path, detail) in refused {
        let answer = api.get(path).await;
        assert_eq!((answer.status, answer.cf_error()), (400, (10005, "CF-BadQueryParameter".into())), "{path}");
        assert_eq!(answer.json()["errors"][0]["detail"], format!("The query parameter is invalid: {detail}"), "{path}");
    }
    // SpaceQuotasController#index answers with `unprocessable!`.
    let answer = api.get("/v3/space_quotas?order_by=name").await;
    assert_eq!((answer.status, answer.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));
    assert_eq!(answer.json()["errors"][0]["detail"], "Order by can only be: 'created_at', 'updated_at'");
    // A key of CC's message that cf-sim does not model is refused by name.
    let answer = api.get("/v3/organizations?isolation_segment_guid=i").await;
    assert_eq!((answer.status, answer.cf_error()), (400, (10005, "CF-BadQueryParameter".into())));
    assert_eq!(
        answer.json()["errors"][0]["detail"],
        "The query parameter is invalid: cf-sim does not model the query parameter(s) 'isolation_segment_guid'"
    );
    for path in ["/v3/apps?order_by=-state", "/v3/spaces?order_by=name", "/v3/organizations?order_by=-name"] {
        assert_eq!(api.get(path).await.status, 200, "{path}");
    }
    sim.stop();
}

/// The lists under an app, a package or an organization use the same messages, with the path's guid: filters across
/// apps refused as `app_nested_request` words it, `current` only under an app and only `true`
/// (`droplets_list_message.rb`), AppBuildsListMessage's keys, DomainsListMessage under an organization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_lists_use_their_messages_with_the_paths_guid() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("web", app_zip()).await;
    let org = api.first_guid("/v3/organizations").await;
    let package = api.first_guid(&format!("/v3/apps/{app}/packages")).await;
    let refused = [
        (
            format!("/v3/apps/{app}/processes?space_guids=s&app_guids=a"),
            "Unknown query parameter(s): 'app_guids', 'space_guids'".to_string(),
        ),
        (format!("/v3/apps/{app}/packages?order_by=name"), "Order by can only be: 'created_at', 'updated_at'".into()),
        (format!("/v3/apps/{app}/droplets?current=false"), "Current only accepts the value 'true'".into()),
        (
            format!("/v3/apps/{app}/droplets?organization_guids=o"),
            "Unknown query parameter(s): 'organization_guids'".into(),
        ),
        ("/v3/droplets?current=true".into(), "Unknown query parameter(s): 'current'".into()),
        (format!("/v3/packages/{package}/droplets?current=true"), "Unknown query parameter(s): 'current'".into()),
        (
            format!("/v3/apps/{app}/builds?bogus=1"),
            format!("Unknown query parameter(s): 'bogus'. Valid parameters are: {LIST}, 'states', 'label_selector'"),
        ),
        (format!("/v3/apps/{app}/routes?order_by=name"), "Order by can only be: 'created_at', 'updated_at'".into()),
        (
            format!("/v3/organizations/{org}/domains?bogus=1"),
            format!(
                "Unknown query parameter(s): 'bogus'. Valid parameters are: {LIST}, 'names', 'guids', \
                 'organization_guids', 'label_selector'"
            ),
        ),
    ];
    for (path, detail) in refused {
        let answer = api.get(&path).await;
        assert_eq!((answer.status, answer.cf_error()), (400, (10005, "CF-BadQueryParameter".into())), "{path}");
        assert_eq!(answer.json()["errors"][0]["detail"], format!("The query parameter is invalid: {detail}"), "{path}");
    }
    let current = api.get(&format!("/v3/apps/{app}/droplets?current=true")).await;
    assert_eq!(current.status, 200);
    assert_eq!(current.json()["pagination"]["total_results"], 1);
    for path in [format!("/v3/apps/{app}/processes?types=web"), format!("/v3/apps/{app}/routes?order_by=-updated_at")] {
        assert_eq!(api.get(&path).await.status, 200, "{path}");
    }
    sim.stop();
}
