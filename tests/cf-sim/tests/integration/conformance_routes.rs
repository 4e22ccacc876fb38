//! Conformance with the Cloud Controller's source (cloud_controller_ng at CC API 3.228) for routes, destinations,
//! quotas, usage summaries and rate limiting: each test names the upstream files whose rules it pins.

use serde_json::{Value, json};

use crate::common::{Api, Response, app_zip, test_config};
use cf_sim::faults::Limiter;
use cf_sim::{Fault, FaultAction, Sim, SimConfig};

/// A route on the default domain in the default space.
async fn create_route(api: &Api, host: &str, path: &str) -> Response {
    create_route_with(api, host, json!({"path": path})).await
}

async fn route_guid(api: &Api, host: &str) -> String {
    let route = create_route(api, host, "").await;
    assert_eq!(route.status, 201, "{}", route.text());
    route.json()["guid"].as_str().unwrap().to_string()
}

fn detail(response: &Response) -> String {
    response.json()["errors"][0]["detail"].as_str().unwrap_or("").to_string()
}

/// `app/actions/route_create.rb` (`validation_error_host!`, `validation_error_path!`) raises `RouteCreate::Error`,
/// which `routes_controller.rb#create` answers as 422 CF-UnprocessableEntity, never CF-UniquenessError.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_route_is_unprocessable_entity_with_route_creates_detail() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    assert_eq!(create_route(&api, "taken", "/api").await.status, 201);
    let again = create_route(&api, "taken", "/api").await;
    assert_eq!((again.status, again.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));
    assert_eq!(
        detail(&again),
        "Route already exists with host 'taken' and path '/api' for domain 'apps.sim.internal'."
    );
    assert_eq!(create_route(&api, "taken", "").await.status, 201, "another path is another route");
    let host_only = create_route(&api, "taken", "").await;
    assert_eq!(detail(&host_only), "Route already exists with host 'taken' for domain 'apps.sim.internal'.");
    let mixed = create_route(&api, "MixedCase", "").await;
    assert_eq!(mixed.json()["host"], "MixedCase", "route.rb keeps the host as given");
    assert_eq!(create_route(&api, "mixedcase", "").await.status, 422);
    sim.stop();
}

/// `app/messages/route_update_destinations_message.rb` keeps `port` and `protocol`;
/// `app/actions/update_route_destinations.rb` defaults them to 8080 and the route protocol's http1;
/// `app/presenters/v3/route_destination_presenter.rb` renders guid, app {guid, process {type}}, weight (null),
/// port and protocol. `route_destinations_list_message.rb` filters by `guids`/`app_guids` and the controller
/// answers any other parameter with 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_keep_protocol_and_port_and_render_like_cc() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let (grpc, plain) = (api.create_app("grpc").await, api.create_app("plain").await);
    let route = route_guid(&api, "dest").await;
    let path = format!("/v3/routes/{route}/destinations");
    let inserted = api
        .post(
            &path,
            json!({"destinations": [
                {"app": {"guid": grpc, "process": {"type": "web"}}, "port": 9090, "protocol": "http2"},
                {"app": {"guid": plain}},
            ]}),
        )
        .await;
    assert_eq!(inserted.status, 200, "{}", inserted.text());
    let body = inserted.json();
    let of = |app: &str| -> Value {
        body["destinations"].as_array().unwrap().iter().find(|d| d["app"]["guid"] == app).cloned().unwrap()
    };
    let grpc_dest = of(&grpc);
    assert_eq!(
        (&grpc_dest["app"]["process"]["type"], &grpc_dest["port"], &grpc_dest["protocol"], &grpc_dest["weight"]),
        (&json!("web"), &json!(9090), &json!("http2"), &Value::Null)
    );
    let plain_dest = of(&plain);
    assert_eq!((&plain_dest["port"], &plain_dest["protocol"]), (&json!(8080), &json!("http1")));
    assert!(body["links"]["route"]["href"].as_str().unwrap().ends_with(&format!("/v3/routes/{route}")));

    let filtered = api.get(&format!("{path}?app_guids={grpc}")).await.json();
    assert_eq!(filtered["destinations"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["destinations"][0]["protocol"], "http2");
    let bad = api.get(&format!("{path}?hosts=x")).await;
    assert_eq!((bad.status, bad.cf_error().0), (422, 10008));
    assert_eq!(detail(&bad), "Unknown query parameter(s): 'hosts'. Valid parameters are: 'guids', 'app_guids'");

    let again = api.post(&path, json!({"destinations": [{"app": {"guid": plain}}]})).await;
    assert_eq!(again.json()["destinations"].as_array().unwrap().len(), 2, "an equal destination is skipped");
    let other_protocol =
        api.post(&path, json!({"destinations": [{"app": {"guid": plain}, "protocol": "http2"}]})).await;
    assert_eq!(other_protocol.status, 422);
    assert_eq!(
        detail(&other_protocol),
        format!(
            "Cannot add destination with protocol: http2. Destination already exists for route: \
             dest.apps.sim.internal, app: {plain}, process: web, and protocol: http1."
        )
    );
    sim.stop();
}

/// The rules of `route_update_destinations_message.rb` (422, all problems joined), the controller's app checks
/// (`routes_controller.rb#apps_hash`) and the action's (`update_route_destinations.rb`): an http route takes
/// http1/http2 only, and duplicates within one request are a 422 on replace but an unrescued 500 on insert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_requests_follow_the_message_controller_and_action() {
    let sim = Sim::start(SimConfig { extra_spaces: vec!["sim-org/elsewhere".into()], ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("target").await;
    let route = route_guid(&api, "rules").await;
    let path = format!("/v3/routes/{route}/destinations");
    let app_ref = json!({"guid": app});
    let cases = [
        (
            json!({"destinations": []}),
            "Destinations must be an array containing between 1 and 100 destination objects.",
        ),
        (
            json!({"destinations": {}}),
            "Destinations must be an array containing between 1 and 100 destination objects.",
        ),
        (json!({"destinations": [7]}), "Destinations[0]: must be an object."),
        (json!({"destinations": [{"port": 8080}]}), "Destinations[0]: must have an \"app\"."),
        (
            json!({"destinations": [{"app": app_ref, "route": "x"}]}),
            "Destinations[0]: must have only \"app\" and optionally \"weight\", \"port\" or \"protocol\".",
        ),
        (
            json!({"destinations": [{"app": {"id": "x"}}]}),
            "Destinations[0]: app must have the structure {\"guid\": \"app_guid\"}",
        ),
        (
            json!({"destinations": [{"app": {"guid": app, "process": {"type": ""}}}]}),
            "Destinations[0]: process must have the structure {\"type\": \"process_type\"}",
        ),
        (
            json!({"destinations": [{"app": app_ref, "port": 80, "protocol": "h3"}]}),
            "Destinations[0]: port must be a positive integer between 1024 and 65535 inclusive., \
             Destinations[0]: protocol must be 'http1', 'http2' or 'tcp'.",
        ),
        (
            json!({"destinations": [{"app": app_ref, "weight": 100}]}),
            "Destinations[0]: weighted destinations can only be used when replacing all destinations.",
        ),
        (json!({"destinations": [{"app": app_ref}], "extra": 1}), "Unknown field(s): 'extra'"),
        (
            json!({"destinations": [{"app": {"guid": "nope"}}]}),
            "App(s) with guid(s) \"nope\" do not exist or you do not have access.",
        ),
        (
            json!({"destinations": [{"app": app_ref, "protocol": "tcp"}]}),
            "Cannot use 'tcp' protocol for http routes; valid options are: [http1, http2].",
        ),
    ];
    for (body, expected) in cases {
        let answer = api.post(&path, body.clone()).await;
        assert_eq!((answer.status, answer.cf_error().0), (422, 10008), "{body}: {}", answer.text());
        assert_eq!(detail(&answer), expected, "{body}");
    }

    let elsewhere = api.get("/v3/spaces?names=elsewhere").await.json()["resources"][0]["guid"].clone();
    let stranger = api
        .post("/v3/apps", json!({"name": "stranger", "relationships": {"space": {"data": {"guid": elsewhere}}}}))
        .await;
    let stranger = stranger.json()["guid"].as_str().unwrap().to_string();
    let across = api.post(&path, json!({"destinations": [{"app": {"guid": stranger}}]})).await;
    assert_eq!(detail(&across), "Routes destinations must be in either the route's space or the route's shared spaces");

    let twice = json!({"destinations": [{"app": app_ref}, {"app": app_ref}]});
    let inserted = api.post(&path, twice.clone()).await;
    assert_eq!((inserted.status, inserted.cf_error()), (500, (10001, "UnknownError".into())));
    let replaced = api.patch(&path, twice).await;
    assert_eq!((replaced.status, detail(&replaced)), (422, "Destinations cannot contain duplicate entries".into()));
    let tcp = api.patch(&path, json!({"destinations": [{"app": app_ref, "protocol": "tcp"}]})).await;
    assert_eq!(tcp.status, 500, "replace_destinations rescues only DuplicateDestinationError");
    let emptied = api.patch(&path, json!({"destinations": []})).await;
    assert_eq!(emptied.status, 200, "a replace may empty the route: {}", emptied.text());
    sim.stop();
}

/// Weighted destinations (`route_update_destinations_message.rb#validate_weights`,
/// `update_route_destinations.rb#add` and `#delete`): only a replace sets them, they sum to 100 and are not mixed
/// with unweighted ones; while a route has them, inserts and single removals are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_destinations_refuse_inserts_and_single_removals() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let (blue, green) = (api.create_app("blue").await, api.create_app("green").await);
    let route = route_guid(&api, "weights").await;
    let path = format!("/v3/routes/{route}/destinations");
    let mixed = api
        .patch(&path, json!({"destinations": [{"app": {"guid": blue}, "weight": 50}, {"app": {"guid": green}}]}))
        .await;
    assert_eq!(detail(&mixed), "Destinations cannot contain both weighted and unweighted destinations.");
    let short = api
        .patch(
            &path,
            json!({"destinations": [{"app": {"guid": blue}, "weight": 50}, {"app": {"guid": green}, "weight": 40}]}),
        )
        .await;
    assert_eq!(detail(&short), "Destinations must have weights that sum to 100.");
    let out_of_range = api.patch(&path, json!({"destinations": [{"app": {"guid": blue}, "weight": 0}]})).await;
    assert_eq!(detail(&out_of_range), "Destinations[0]: weight must be a positive integer between 1 and 100.");

    let weighted = api
        .patch(
            &path,
            json!({"destinations": [{"app": {"guid": blue}, "weight": 70}, {"app": {"guid": green}, "weight": 30}]}),
        )
        .await;
    assert_eq!(weighted.status, 200, "{}", weighted.text());
    let destinations = api.get(&path).await.json()["destinations"].clone();
    let mut weights: Vec<u64> =
        destinations.as_array().unwrap().iter().map(|d| d["weight"].as_u64().unwrap()).collect();
    weights.sort();
    assert_eq!(weights, [30, 70]);
    let route_body = api.get(&format!("/v3/routes/{route}")).await.json();
    assert!(route_body["destinations"].as_array().unwrap().iter().all(|d| d["weight"].is_u64()), "{route_body}");

    let insert = api.post(&path, json!({"destinations": [{"app": {"guid": green}, "port": 9000}]})).await;
    assert_eq!(
        (insert.status, detail(&insert)),
        (422, "Destinations cannot be inserted when there are weighted destinations already configured.".into())
    );
    let one = destinations[0]["guid"].as_str().unwrap();
    let removed = api.delete(&format!("{path}/{one}")).await;
    assert_eq!(
        (removed.status, detail(&removed)),
        (422, "Weighted destinations cannot be deleted individually.".into())
    );

    assert_eq!(api.patch(&path, json!({"destinations": [{"app": {"guid": blue}}]})).await.status, 200);
    assert_eq!(api.post(&path, json!({"destinations": [{"app": {"guid": green}}]})).await.status, 200);
    sim.stop();
}

/// Every list message is a `NoAdditionalParamsValidator`: an unknown query parameter is 400 CF-BadQueryParameter from
/// the controllers that answer with `invalid_param!` (`space_quotas_controller.rb` answers 422, pinned in
/// `list_messages`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_are_bad_query_parameters() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    for path in [
        "/v3/routes",
        "/v3/domains",
        "/v3/organizations",
        "/v3/spaces",
        "/v3/service_instances",
        "/v3/service_credential_bindings",
        "/v3/organization_quotas",
    ] {
        let answer = api.get(&format!("{path}?bogus=1")).await;
        assert_eq!((answer.status, answer.cf_error()), (400, (10005, "CF-BadQueryParameter".into())), "{path}");
    }
    sim.stop();
}

/// `organization_quota_presenter.rb` / `space_quota_presenter.rb` (unlimited -1 → null), the org's and space's
/// quota relationship (`organization_presenter.rb`, `space_presenter.rb`: `data: null` and no `links.quota`
/// without a space quota), and the usage summaries of `config/routes.rb`
/// (`organization_usage_summary_presenter.rb`, `space_usage_summary_presenter.rb`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_and_usage_summaries_render_like_cc() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let org = api.first_guid("/v3/organizations").await;
    let quota =
        api.get(&format!("/v3/organizations/{org}")).await.json()["relationships"]["quota"]["data"]["guid"].clone();
    let quota = api.get(&format!("/v3/organization_quotas/{}", quota.as_str().unwrap())).await.json();
    assert_eq!(quota["name"], "default");
    assert_eq!(
        quota["apps"],
        json!({"total_memory_in_mb": null, "per_process_memory_in_mb": null, "total_instances": null, "per_app_tasks": null, "log_rate_limit_in_bytes_per_second": null})
    );
    assert_eq!(quota["relationships"]["organizations"]["data"], json!([{"guid": org}]));
    assert_eq!(quota["domains"], json!({"total_domains": null}));
    let space = api.get(&format!("/v3/spaces/{}", api.space_guid().await)).await.json();
    assert_eq!(space["relationships"]["quota"], json!({"data": null}));
    assert!(space["links"].get("quota").is_none(), "{space}");
    assert_eq!(api.get("/v3/space_quotas/nope").await.status, 404);
    sim.stop();

    let sim =
        Sim::start(SimConfig { org_memory_limit_mb: Some(2048), space_memory_limit_mb: Some(1536), ..test_config() })
            .unwrap();
    let api = Api::login(&sim).await;
    let org = api.first_guid("/v3/organizations").await;
    let space_guid = api.space_guid().await;
    let quotas = api.get(&format!("/v3/organization_quotas?organization_guids={org}")).await.json();
    assert_eq!(quotas["resources"][0]["apps"]["total_memory_in_mb"], 2048);
    let space = api.get(&format!("/v3/spaces/{space_guid}")).await.json();
    let space_quota = space["relationships"]["quota"]["data"]["guid"].as_str().unwrap().to_string();
    assert!(space["links"]["quota"]["href"].as_str().unwrap().ends_with(&format!("/v3/space_quotas/{space_quota}")));
    let space_quota = api.get(&format!("/v3/space_quotas/{space_quota}")).await.json();
    assert_eq!(space_quota["apps"]["total_memory_in_mb"], 1536);
    assert_eq!(space_quota["relationships"]["organization"]["data"]["guid"], org);
    assert_eq!(space_quota["relationships"]["spaces"]["data"], json!([{"guid": space_guid}]));
    let listed = api.get(&format!("/v3/space_quotas?space_guids={space_guid}")).await.json();
    assert_eq!(listed["pagination"]["total_results"], 1);

    let usage = api.get(&format!("/v3/spaces/{space_guid}/usage_summary")).await.json();
    assert_eq!(usage["usage_summary"]["memory_in_mb"], 0);
    assert!(usage["links"]["space"]["href"].as_str().unwrap().ends_with(&format!("/v3/spaces/{space_guid}")));
    let app = api.push("counted", app_zip()).await;
    let usage = api.get(&format!("/v3/organizations/{org}/usage_summary")).await.json();
    assert_eq!(
        usage["usage_summary"],
        json!({"started_instances": 1, "memory_in_mb": 1024, "routes": 0, "service_instances": 0, "reserved_ports": 0, "domains": 0, "per_app_tasks": 0, "service_keys": 0})
    );
    assert!(usage["links"]["organization"]["href"].as_str().unwrap().ends_with(&format!("/v3/organizations/{org}")));
    assert_eq!(api.post(&format!("/v3/apps/{app}/actions/stop"), json!({})).await.status, 200);
    let usage = api.get(&format!("/v3/spaces/{space_guid}/usage_summary")).await.json();
    assert_eq!(usage["usage_summary"]["memory_in_mb"], 0, "a stopped app uses no quota");
    sim.stop();

    // The space usage summary arrived with CC API 3.200.0 (cloud_controller_ng f9e7faf596); before, no route.
    let sim =
        Sim::start(SimConfig { cc_api_version: cf_sim::config::CcApiVersion(3, 199, 0), ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let space_guid = api.space_guid().await;
    let org = api.first_guid("/v3/organizations").await;
    let old = api.get(&format!("/v3/spaces/{space_guid}/usage_summary")).await;
    assert_eq!((old.status, old.cf_error()), (404, (10000, "CF-NotFound".into())));
    assert_eq!(api.get(&format!("/v3/organizations/{org}/usage_summary")).await.status, 200);
    sim.stop();
}

/// `AppMaxMemoryPolicy` (`app/models/runtime/constraints/max_memory_policy.rb`, `process_model.rb`: space quota
/// first, then the org's) fails the process validation; `AppStart` and `ProcessScale` turn it into 422
/// CF-UnprocessableEntity "memory space_quota_exceeded" / "memory quota_exceeded" (`apps_controller.rb#start`,
/// `processes_controller.rb#scale`; the detail spec/request/deployments_spec.rb matches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_or_scaling_beyond_the_memory_quota_is_refused() {
    let sim =
        Sim::start(SimConfig { org_memory_limit_mb: Some(1536), space_memory_limit_mb: Some(1024), ..test_config() })
            .unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("fits", app_zip()).await;
    let scaled = api.post(&format!("/v3/apps/{app}/processes/web/actions/scale"), json!({"instances": 2})).await;
    assert_eq!((scaled.status, scaled.cf_error().0), (422, 10008));
    assert_eq!(detail(&scaled), "memory space_quota_exceeded, memory quota_exceeded");
    let smaller = api.post(&format!("/v3/apps/{app}/processes/web/actions/scale"), json!({"memory_in_mb": 512})).await;
    assert_eq!(smaller.status, 202, "{}", smaller.text());

    let second = api.create_app("second").await;
    let package = api.upload_package(&second, app_zip()).await;
    let droplet = api.stage(&package).await["droplet"]["guid"].clone();
    let set = api
        .patch(&format!("/v3/apps/{second}/relationships/current_droplet"), json!({"data": {"guid": droplet}}))
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let start = api.post(&format!("/v3/apps/{second}/actions/start"), json!({})).await;
    assert_eq!((start.status, detail(&start)), (422, "memory space_quota_exceeded".into()));
    assert_eq!(api.get(&format!("/v3/apps/{second}")).await.json()["state"], "STOPPED");
    sim.stop();
}

/// A rate-limited request as `middleware/base_rate_limiter.rb#too_many_requests!` answers it (`rate_limiter.rb`:
/// 10013 for a user, 10014 without a token), and as `service_broker_rate_limiter.rb` does (10016, `Retry-After`
/// only): 429, `Retry-After` in seconds, `X-RateLimit-*`, a text/plain body holding the v3 error JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_requests_answer_like_ccs_rate_limiters() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let limited = |limiter| Fault {
        method: Some("GET".into()),
        path: "/v3/apps".into(),
        nth: 1,
        times: 1,
        action: FaultAction::RateLimited { retry_after_secs: 3599, limiter, limit: 20_000 },
    };
    sim.add_fault(limited(Limiter::General));
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let answer = api.get("/v3/apps").await;
    assert_eq!((answer.status, answer.cf_error()), (429, (10013, "CF-RateLimitExceeded".into())));
    assert_eq!(detail(&answer), "Rate Limit Exceeded");
    assert_eq!(answer.header("retry-after").as_deref(), Some("3599"));
    assert_eq!(answer.header("content-type").as_deref(), Some("text/plain; charset=utf-8"));
    assert_eq!(answer.header("x-ratelimit-limit").as_deref(), Some("20000"));
    assert_eq!(answer.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let reset: u64 = answer.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!((before + 3599..=before + 3601).contains(&reset), "{reset}");
    assert_eq!(api.get("/v3/apps").await.status, 200);

    sim.add_fault(limited(Limiter::Unauthenticated));
    assert_eq!(api.get("/v3/apps").await.cf_error(), (10014, "CF-IPBasedRateLimitExceeded".into()));
    sim.add_fault(limited(Limiter::ServiceBroker));
    let broker = api.get("/v3/apps").await;
    assert_eq!(broker.cf_error(), (10016, "CF-ServiceBrokerRateLimitExceeded".into()));
    assert_eq!(broker.header("retry-after").as_deref(), Some("3599"));
    assert!(broker.header("x-ratelimit-limit").is_none());
    sim.stop();
}

/// `service_credential_bindings_controller.rb#create` for app bindings: the messages
/// (`service_credential_binding_create_message.rb`, `service_credential_app_binding_create_message.rb`), an unknown
/// instance or app (422 "could not be found"), `check_parameters_support` (any `parameters` key, even `{}`, on a
/// user-provided instance), keys on user-provided instances (`service_credential_binding_key_create.rb`), and
/// `service_credential_binding_app_create.rb`'s name rule. The list's `type` and `include` are validated as
/// `service_credential_binding_list_message.rb` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_bindings_follow_the_controller_messages_and_action() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let instance = |name: &str| json!({"type": "user-provided", "name": name, "relationships": {"space": {"data": {"guid": space}}}});
    let db = api.post("/v3/service_instances", instance("db")).await.json()["guid"].as_str().unwrap().to_string();
    let cache = api.post("/v3/service_instances", instance("cache")).await.json()["guid"].as_str().unwrap().to_string();
    let app = api.create_app("bound").await;
    let binding = |instance: &str, extra: Value| {
        let mut body = json!({"type": "app", "relationships": {"app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": instance}}}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases = [
        (
            binding(&db, json!({"parameters": {}})),
            "Binding parameters are not supported for user-provided service instances",
        ),
        (binding("nope", json!({"parameters": {}})), "The service instance could not be found: 'nope'"),
        (binding(&db, json!({"parameters": []})), "Parameters must be an object"),
        (binding(&db, json!({"type": null})), "Type must be 'app' or 'key'"),
        (binding(&db, json!({"strategy": "all"})), "Strategy must be 'single' or 'multiple'"),
        (
            binding(&db, json!({"type": "key"})),
            "Service credential bindings of type 'key' are not supported for user-provided service instances.",
        ),
        (
            json!({"type": "app", "relationships": {"app": {"data": {"guid": "ghost"}}, "service_instance": {"data": {"guid": db}}}}),
            "The app could not be found: 'ghost'",
        ),
    ];
    for (body, expected) in cases {
        let answer = api.post("/v3/service_credential_bindings", body.clone()).await;
        assert_eq!((answer.status, answer.cf_error().0), (422, 10008), "{body}: {}", answer.text());
        assert_eq!(detail(&answer), expected, "{body}");
    }
    let created = api.post("/v3/service_credential_bindings", binding(&db, json!({"name": "primary"}))).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["name"], "primary");
    let twice = api.post("/v3/service_credential_bindings", binding(&db, json!({"name": "primary"}))).await;
    assert_eq!(detail(&twice), "The app is already bound to the service instance");
    let same_name = api.post("/v3/service_credential_bindings", binding(&cache, json!({"name": "primary"}))).await;
    assert_eq!(
        detail(&same_name),
        "The binding name is invalid. Binding names must be unique for a given service instance and app. The app \
         already has a binding with name 'primary'."
    );

    let listed =
        api.get(&format!("/v3/service_credential_bindings?app_guids={app}&type=app&include=service_instance")).await;
    assert_eq!(listed.json()["included"]["service_instances"][0]["guid"], db.as_str());
    let bad_type = api.get("/v3/service_credential_bindings?type=apps").await;
    assert_eq!(
        (bad_type.status, detail(&bad_type)),
        (400, "The query parameter is invalid: Type must be one of 'app', 'key'".into())
    );
    let bad_include = api.get("/v3/service_credential_bindings?include=route").await;
    assert_eq!(bad_include.cf_error().0, 10005);
    let by_plan = api.get("/v3/service_credential_bindings?service_plan_guids=x").await.json();
    assert_eq!(by_plan["pagination"]["total_results"], 0, "a user-provided instance has no plan");
    let managed = api.get("/v3/service_instances?type=managed").await.json();
    assert_eq!(managed["pagination"]["total_results"], 0);
    assert_eq!(api.get("/v3/service_instances?type=upsi").await.status, 400);
    sim.stop();
}

/// `IncludeParamValidator` on the route and space lists (`routes_list_message.rb`, `spaces_list_message.rb`,
/// `space_show_message.rb`, where `org` is an alias of `organization`), and the `ports` filter, which no HTTP route
/// (port null) matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_includes_and_filters_follow_the_list_messages() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    route_guid(&api, "listed").await;
    let bad = api.get("/v3/routes?include=app").await;
    assert_eq!((bad.status, bad.cf_error().0), (400, 10005));
    assert_eq!(
        detail(&bad),
        "The query parameter is invalid: Invalid included resource: 'app'. Valid included resources are: 'domain', \
         'space', 'space.organization'"
    );
    let included = api.get("/v3/routes?include=domain,space.organization").await.json();
    assert_eq!(included["included"]["organizations"].as_array().unwrap().len(), 1);
    // `#index_by_app` validates `include` but passes no decorators: no `included` for an app's routes.
    let app = api.create_app("listed-app").await;
    let route = route_guid(&api, "listed-by-app").await;
    let mapped =
        api.post(&format!("/v3/routes/{route}/destinations"), json!({"destinations": [{"app": {"guid": app}}]})).await;
    assert_eq!(mapped.status, 200, "{}", mapped.text());
    let by_app = api.get(&format!("/v3/apps/{app}/routes?include=domain")).await.json();
    assert_eq!(by_app["pagination"]["total_results"], 1);
    assert!(by_app.get("included").is_none(), "{by_app}");
    assert_eq!(api.get(&format!("/v3/apps/{app}/routes?include=app")).await.status, 400);
    let by_filter = api.get(&format!("/v3/routes?app_guids={app}&include=domain")).await.json();
    assert_eq!(by_filter["included"]["domains"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v3/routes?ports=1024").await.json()["pagination"]["total_results"], 0);
    assert_eq!(api.get("/v3/routes?service_instance_guids=x").await.json()["pagination"]["total_results"], 0);
    assert_eq!(api.get("/v3/routes?hosts=listed").await.json()["pagination"]["total_results"], 1);
    let space = api.space_guid().await;
    let with_org = api.get(&format!("/v3/spaces/{space}?include=org")).await.json();
    assert_eq!(with_org["included"]["organizations"].as_array().unwrap().len(), 1);
    assert_eq!(api.get("/v3/spaces?include=space").await.status, 400);
    sim.stop();
}

/// `route_create_message.rb` (host and path rules, joined), `routes_controller.rb#create` (unknown space or
/// domain), `app/actions/route_create.rb` (a domain of another org, a host that names a domain, a port on an HTTP
/// route), `Route#validate_host_and_domain_in_different_space` (a shared-domain host belongs to one space, whatever
/// the path) and `route_options_message.rb` with `hash_based_routing` off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_create_follows_the_message_controller_action_and_model() {
    let sim = Sim::start(SimConfig {
        extra_spaces: vec!["sim-org/neighbour".into(), "other-org/far".into()],
        extra_domains: vec!["shop.apps.sim.internal".into()],
        ..test_config()
    })
    .unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let domain = api.get("/v3/domains?names=apps.sim.internal").await.json()["resources"][0]["guid"].clone();
    let other_org = api.get("/v3/organizations?names=other-org").await.json()["resources"][0]["guid"].clone();
    let private = api
        .post(
            "/v3/domains",
            json!({"name": "private.example.org", "relationships": {"organization": {"data": {"guid": other_org}}}}),
        )
        .await;
    assert_eq!(private.status, 201, "{}", private.text());
    let private = private.json()["guid"].clone();
    let route = |host: &str, path: &str, domain: &Value, space: &str, extra: Value| {
        let mut body = json!({"host": host, "path": path, "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": space}}}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let long_host = "h".repeat(64);
    let cases = [
        (route("a.b", "x?", &domain, &space, json!({})), "Host must be either \"*\" or contain only alphanumeric characters, \"_\", or \"-\", Path must begin with /, Path cannot contain ?".to_string()),
        (route(&long_host, "", &domain, &space, json!({})), "Host is too long (maximum is 63 characters)".to_string()),
        (route("x", "/", &domain, &space, json!({})), "Path cannot be exactly /".to_string()),
        (route("x", "", &json!("nope"), &space, json!({})), "Invalid domain. Ensure that the domain exists and you have access to it.".to_string()),
        (route("x", "", &domain, "nope", json!({})), "Invalid space. Ensure that the space exists and you have access to it.".to_string()),
        (route("x", "", &private, &space, json!({})), "Invalid domain. Domain 'private.example.org' is not available in organization 'sim-org'.".to_string()),
        (route("shop", "", &domain, &space, json!({})), "Route conflicts with domain 'shop.apps.sim.internal'.".to_string()),
        (route("", "", &domain, &space, json!({})), "Missing host. Routes in shared domains must have a host defined.".to_string()),
        (route("x", "", &domain, &space, json!({"port": 8080})), "Routes with protocol 'http' do not support ports.".to_string()),
        (route("x", "", &domain, &space, json!({"port": 1.5})), "Port must be an integer".to_string()),
        (route("x", "", &domain, &space, json!({"options": {"loadbalancing": "hash"}})), "Options Loadbalancing must be one of 'round-robin, least-connection' if present".to_string()),
        (route("x", "", &domain, &space, json!({"options": {"hash_header": "X-User"}})), "Options Unknown field(s): 'hash_header'".to_string()),
    ];
    for (body, expected) in cases {
        let answer = api.post("/v3/routes", body.clone()).await;
        assert_eq!((answer.status, answer.cf_error().0), (422, 10008), "{body}: {}", answer.text());
        assert_eq!(detail(&answer), expected, "{body}");
    }
    let created = api
        .post("/v3/routes", route("lc", "", &domain, &space, json!({"options": {"loadbalancing": "least-connection"}})))
        .await;
    assert_eq!(created.json()["options"], json!({"loadbalancing": "least-connection"}));
    let plain = api.post("/v3/routes", route("plain", "", &domain, &space, json!({}))).await;
    assert_eq!(plain.json()["options"], json!({}), "route_create.rb stores {{}} without options");

    let neighbour =
        api.get("/v3/spaces?names=neighbour").await.json()["resources"][0]["guid"].as_str().unwrap().to_string();
    assert_eq!(api.post("/v3/routes", route("shared-host", "/a", &domain, &space, json!({}))).await.status, 201);
    let elsewhere = api.post("/v3/routes", route("shared-host", "/b", &domain, &neighbour, json!({}))).await;
    assert_eq!(
        (elsewhere.status, detail(&elsewhere)),
        (422, "domain_id and host host_and_domain_taken_different_space".into())
    );
    assert_eq!(api.post("/v3/routes", route("shared-host", "/b", &domain, &space, json!({}))).await.status, 201);
    sim.stop();
}

/// UAA's answers to a refresh that cannot succeed: refresh tokens are opaque by default
/// (`model/.../zone/TokenPolicy.java`), so an unknown or expired one is missing from the revocable token store and
/// `TokenValidationService.validateToken` throws `TokenRevokedException` (401 invalid_token); one presented by
/// another client fails `UaaTokenServices.refreshAccessToken` (400 invalid_grant). Bad user credentials are
/// 401 unauthorized "Bad credentials" (`AuthzAuthenticationManager`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uaa_refresh_and_credential_errors_answer_like_uaa() {
    let sim = Sim::start(SimConfig {
        refresh_token_ttl_secs: 1,
        client_id: Some("deployer".into()),
        client_secret: Some("secret".into()),
        ..test_config()
    })
    .unwrap();
    let info = sim.info().clone();
    let token = |basic: &'static str, form: String| {
        let uaa = info.uaa.clone();
        async move {
            let headers = [("authorization", basic), ("content-type", "application/x-www-form-urlencoded")];
            crate::common::send("POST", &format!("{uaa}/oauth/token"), &headers, form.into_bytes(), None).await.unwrap()
        }
    };
    let login = crate::common::password_token(&info.uaa, &info.username, &info.password, None).await.json();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    // deployer:secret
    let other = token("Basic ZGVwbG95ZXI6c2VjcmV0", format!("grant_type=refresh_token&refresh_token={refresh}")).await;
    assert_eq!(
        (other.status, other.json()),
        (400, json!({"error": "invalid_grant", "error_description": "Wrong client for this refresh token: cf"}))
    );
    let revoked = json!({"error": "invalid_token", "error_description": "The token expired, was revoked, or the token ID is incorrect."});
    let unknown = token("Basic Y2Y6", "grant_type=refresh_token&refresh_token=nope".into()).await;
    assert_eq!((unknown.status, unknown.json()), (401, revoked.clone()));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let expired = token("Basic Y2Y6", format!("grant_type=refresh_token&refresh_token={refresh}")).await;
    assert_eq!((expired.status, expired.json()), (401, revoked));
    let bad = crate::common::password_token(&info.uaa, &info.username, "wrong", None).await;
    assert_eq!(
        (bad.status, bad.json()),
        (401, json!({"error": "unauthorized", "error_description": "Bad credentials"}))
    );
    sim.stop();
}

/// Log Cache's read API (log-cache-release): the cf-auth-proxy answers any auth failure with an empty 404
/// (`internal/auth/cf_auth_middleware.go`); `internal/routing/local_store_reader.go` defaults `limit` to 100,
/// refuses more than 1000 and a start after the end (gRPC Unknown → 500 through grpc-gateway's default handler);
/// a parameter that does not parse is InvalidArgument → 400; `end_time` is exclusive
/// (`internal/cache/store/store.go`) and ANY among `envelope_types` is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_cache_reads_follow_log_cache() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("logged", app_zip()).await;
    let base = format!("{}/api/v1/read/{app}", sim.info().log_cache);
    let bearer = format!("bearer {}", api.token);
    let read = |query: &str, auth: bool| {
        let url = format!("{base}?{query}");
        let bearer = bearer.clone();
        async move {
            let headers: Vec<(&str, &str)> = if auth { vec![("authorization", bearer.as_str())] } else { vec![] };
            crate::common::send("GET", &url, &headers, Vec::new(), None).await.unwrap()
        }
    };
    let anonymous = read("", false).await;
    assert_eq!((anonymous.status, anonymous.body.len()), (404, 0));
    let all = read("envelope_types=LOG&limit=1000", true).await.json();
    let batch = all["envelopes"]["batch"].as_array().unwrap().clone();
    assert!(batch.len() > 2, "{all}");
    assert!(batch[0]["timestamp"].is_string() && batch[0]["log"]["payload"].is_string(), "{all}");
    assert_eq!(
        read("envelope_types=ANY", true).await.json()["envelopes"]["batch"].as_array().unwrap().len(),
        batch.len().min(100)
    );
    assert_eq!(read("envelope_types=GAUGE", true).await.json()["envelopes"]["batch"], json!([]));

    let second: i64 = batch[1]["timestamp"].as_str().unwrap().parse().unwrap();
    let first: i64 = batch[0]["timestamp"].as_str().unwrap().parse().unwrap();
    let until = read(&format!("start_time={first}&end_time={second}"), true).await.json();
    assert!(
        until["envelopes"]["batch"].as_array().unwrap().iter().all(|e| e["timestamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            < second),
        "end_time is exclusive: {until}"
    );

    let too_many = read("limit=1001", true).await;
    assert_eq!(
        (too_many.status, too_many.json()),
        (500, json!({"code": 2, "message": "limit (1001) must be 1000 or less", "details": []}))
    );
    let backwards = read("start_time=5&end_time=4", true).await;
    assert_eq!(backwards.json()["message"], "StartTime (5) must be before EndTime (4)");
    let garbage = read("limit=ten", true).await;
    assert_eq!((garbage.status, garbage.json()["code"].clone()), (400, json!(3)));
    sim.stop();
}

/// Taken names outside apps are RouteCreate-style action errors that the v3 controllers answer with
/// `unprocessable!` (422 CF-UnprocessableEntity), never CF-UniquenessError: `organization_create.rb`,
/// `space_create.rb`, `mixins/service_instance_create.rb` (user-provided create, and update through
/// `service_instance_update_user_provided.rb`) and `domain_create.rb`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_names_of_orgs_spaces_instances_and_domains_are_unprocessable() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let org = api.first_guid("/v3/organizations").await;
    let space = api.space_guid().await;
    let instance =
        json!({"type": "user-provided", "name": "db", "relationships": {"space": {"data": {"guid": space}}}});
    assert_eq!(api.post("/v3/service_instances", instance.clone()).await.status, 201);
    let other = api
        .post(
            "/v3/service_instances",
            json!({"type": "user-provided", "name": "cache", "relationships": {"space": {"data": {"guid": space}}}}),
        )
        .await
        .json()["guid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(api.post("/v3/domains", json!({"name": "mine.example.org"})).await.status, 201);
    let cases = [
        (api.post("/v3/organizations", json!({"name": "SIM-ORG"})).await, "Organization 'SIM-ORG' already exists."),
        (
            api.post(
                "/v3/spaces",
                json!({"name": "sim-space", "relationships": {"organization": {"data": {"guid": org}}}}),
            )
            .await,
            "Name must be unique per organization",
        ),
        (api.post("/v3/service_instances", instance).await, "The service instance name is taken: db."),
        (
            api.patch(&format!("/v3/service_instances/{other}"), json!({"name": "db"})).await,
            "The service instance name is taken: db.",
        ),
        (
            api.post("/v3/domains", json!({"name": "mine.example.org"})).await,
            "The domain name \"mine.example.org\" is already in use",
        ),
    ];
    for (answer, expected) in cases {
        assert_eq!((answer.status, answer.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())), "{expected}");
        assert_eq!(detail(&answer), expected);
    }
    sim.stop();
}

/// Older Cloud Controllers, as `--cc-api-version` presents them: destinations gained `protocol` with 3.105.0
/// (cloud_controller_ng PR #2439, `route_update_destinations_message.rb` then allowed only "app", "weight" and
/// "port") and `created_at`/`updated_at` with 3.199.0 (1ee2ea6e73); routes gained `options` with 3.184.0
/// (05e617f864: `route_presenter.rb`, `route_create_message.rb`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_cc_versions_render_and_accept_their_own_route_shapes() {
    for (version, protocols, options, timestamps) in
        [((3, 86), false, false, false), ((3, 190), true, true, false), ((3, 228), true, true, true)]
    {
        let cc_api_version = cf_sim::config::CcApiVersion(version.0, version.1, 0);
        let sim = Sim::start(SimConfig { cc_api_version, ..test_config() }).unwrap();
        let api = Api::login(&sim).await;
        let app = api.create_app("versioned").await;
        let with_options =
            create_route_with(&api, "opts", json!({"options": {"loadbalancing": "least-connection"}})).await;
        if options {
            assert_eq!(with_options.status, 201, "{version:?}: {}", with_options.text());
        } else {
            assert_eq!((with_options.status, detail(&with_options)), (422, "Unknown field(s): 'options'".into()));
        }
        let route = route_guid(&api, "versioned").await;
        let path = format!("/v3/routes/{route}/destinations");
        let http2 = api.post(&path, json!({"destinations": [{"app": {"guid": app}, "protocol": "http2"}]})).await;
        if protocols {
            assert_eq!(http2.status, 200, "{version:?}: {}", http2.text());
        } else {
            assert_eq!(
                (http2.status, detail(&http2)),
                (422, "Destinations[0]: must have only \"app\" and optionally \"weight\" and \"port\".".into())
            );
            assert_eq!(api.post(&path, json!({"destinations": [{"app": {"guid": app}}]})).await.status, 200);
        }
        let destination = api.get(&path).await.json()["destinations"][0].clone();
        assert_eq!(destination.get("protocol").is_some(), protocols, "{version:?}: {destination}");
        assert_eq!(destination.get("created_at").is_some(), timestamps, "{version:?}: {destination}");
        let body = api.get(&format!("/v3/routes/{route}")).await.json();
        assert_eq!(body.get("options").is_some(), options, "{version:?}: {body}");
        assert_eq!(body["destinations"][0].get("protocol").is_some(), protocols, "{version:?}: {body}");
        sim.stop();
    }
}

/// A route on the default domain in the default space, with `extra` keys in the body.
async fn create_route_with(api: &Api, host: &str, extra: Value) -> Response {
    let space = api.space_guid().await;
    let domain = api.first_guid("/v3/domains").await;
    let mut body = json!({"host": host, "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": space}}}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    api.post("/v3/routes", body).await
}
