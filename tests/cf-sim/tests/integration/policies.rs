//! Container-to-container networking: the policy server's external API (cf-networking-release's policy-server:
//! validation, scopes, guard, quota, idempotent create and delete, `id=` filters, `{"error": …}` bodies) and its
//! enforcement (an instance reaches an internal route only where a policy allows it; gorouter never serves one).

use serde_json::{Value, json};

use std::time::Duration;

use crate::common::{Api, app_zip, poll, send, test_config, via_router, zip_of};
use cf_sim::{Sim, SimConfig};

const POLICIES: &str = "/networking/v1/external/policies";

fn policy(source: &str, destination: &str, protocol: &str, start: u64, end: u64) -> Value {
    json!({"source": {"id": source}, "destination": {"id": destination, "protocol": protocol, "ports": {"start": start, "end": end}}})
}

/// The error message of a policy server answer with `status`.
async fn refused(api: &Api, path: &str, body: Value, status: u16) -> String {
    let response = api.post(path, body).await;
    assert_eq!(response.status, status, "{}", response.text());
    response.json()["error"].as_str().expect("an error message").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_server_validates_creates_lists_and_deletes_like_cf_networking() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let (a, b) = (api.create_app("a").await, api.create_app("b").await);

    let anonymous = send("GET", &format!("{}{POLICIES}", api.base), &[], Vec::new(), None).await.unwrap();
    assert_eq!((anonymous.status, anonymous.text().as_str()), (401, r#"{"error": "missing authorization header"}"#));
    assert_eq!(anonymous.header("www-authenticate").as_deref(), Some("Bearer"));
    let url = format!("{}{POLICIES}", api.base);
    let forged = send("GET", &url, &[("authorization", "bearer x.y.z")], vec![], None);
    assert_eq!(forged.await.unwrap().json()["error"], "failed to verify token with uaa");

    let invalid = [
        (json!({}), "mapper: validate policies: missing policies"),
        (json!({"policies": [policy("", &b, "tcp", 8080, 8080)]}), "mapper: validate policies: missing source id"),
        (json!({"policies": [policy(&a, "", "tcp", 8080, 8080)]}), "mapper: validate policies: missing destination id"),
        (
            json!({"policies": [policy(&a, &b, "icmp", 8080, 8080)]}),
            "mapper: validate policies: invalid destination protocol, specify either udp or tcp",
        ),
        (
            json!({"policies": [policy(&a, &b, "tcp", 9000, 8000)]}),
            "mapper: validate policies: invalid port range 9000-8000, start must be less than or equal to end",
        ),
        (json!({"policies": [policy(&a, &b, "tcp", 0, 0)]}), "mapper: validate policies: missing start port"),
        (
            json!({"policies": [policy(&a, &b, "tcp", 1, 70000)]}),
            "mapper: validate policies: invalid end port 70000, must be in range 1-65535",
        ),
        (
            json!({"policies": [{"source": {"id": a, "tag": "01"}, "destination": {"id": b, "protocol": "tcp", "ports": {"start": 1, "end": 1}}}]}),
            "mapper: validate policies: tags may not be specified",
        ),
    ];
    for (body, message) in invalid {
        assert_eq!(refused(&api, POLICIES, body, 400).await, message);
    }
    let garbled = api.raw("POST", POLICIES, "application/json", b"{not json".to_vec()).await;
    assert_eq!(garbled.status, 400);
    assert!(garbled.json()["error"].as_str().unwrap().starts_with("mapper: unmarshal json: "), "{}", garbled.text());

    let created = api.post(POLICIES, json!({"policies": [policy(&a, &b, "tcp", 8080, 8080)]})).await;
    assert_eq!((created.status, created.text().as_str()), (200, "{}"));
    let again =
        api.post(POLICIES, json!({"policies": [policy(&a, &b, "tcp", 8080, 8080), policy(&b, &a, "udp", 53, 54)]}));
    assert_eq!(again.await.status, 200, "creating an existing policy is a no-op");
    let all = api.get(POLICIES).await.json();
    assert_eq!(
        all,
        json!({"total_policies": 2, "policies": [policy(&a, &b, "tcp", 8080, 8080), policy(&b, &a, "udp", 53, 54)]})
    );
    let count = |body: Value| body["total_policies"].as_u64().unwrap();
    assert_eq!(count(api.get(&format!("{POLICIES}?id={a}")).await.json()), 2, "id= is source or destination");
    assert_eq!(count(api.get(&format!("{POLICIES}?id=nothing,{b}")).await.json()), 2, "id= takes a list");
    assert_eq!(count(api.get(&format!("{POLICIES}?id=")).await.json()), 0);
    assert_eq!(count(api.get(&format!("{POLICIES}?source_id={a}")).await.json()), 1);
    assert_eq!(count(api.get(&format!("{POLICIES}?source_id={a}&dest_id={a}")).await.json()), 0);
    assert_eq!(count(api.get(&format!("{POLICIES}?dest_id={a}")).await.json()), 1);

    let delete = format!("{POLICIES}/delete");
    let deleted = api.post(&delete, json!({"policies": [policy(&a, &b, "tcp", 8080, 8080)]}));
    assert_eq!(deleted.await.text(), "{}");
    let missing = api.post(&delete, json!({"policies": [policy(&a, &b, "tcp", 8080, 8080)]}));
    assert_eq!(missing.await.status, 200, "deleting a missing policy is a no-op");
    assert_eq!(api.get(POLICIES).await.json()["policies"], json!([policy(&b, &a, "udp", 53, 54)]));

    // An app deleted in CC keeps its policies (the policy server's cleanup poller removes them later), but a
    // space developer no longer sees them: only policies between apps of the caller's spaces are listed.
    assert_eq!(api.delete(&format!("/v3/apps/{b}")).await.status, 202);
    poll(Duration::from_secs(10), || async { (api.get(&format!("/v3/apps/{b}")).await.status == 404).then_some(()) })
        .await;
    assert_eq!(count(api.get(POLICIES).await.json()), 0);

    // Without network.admin, an app is the source of at most 150 policies.
    let c = api.create_app("c").await;
    let many: Vec<Value> = (1..=150).map(|port| policy(&a, &c, "tcp", port, port)).collect();
    assert_eq!(api.post(POLICIES, json!({"policies": many})).await.status, 200);
    let one_more = json!({"policies": [policy(&a, &c, "tcp", 151, 151)]});
    assert_eq!(refused(&api, POLICIES, one_more, 403).await, "policy quota exceeded");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_server_wants_a_network_scope_and_a_developer_of_the_apps() {
    let sim = Sim::start(SimConfig { no_network_scopes: true, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let (a, b) = (api.create_app("a").await, api.create_app("b").await);
    let body = json!({"policies": [policy(&a, &b, "tcp", 8080, 8080)]});
    assert_eq!(
        refused(&api, POLICIES, body, 403).await,
        "provided scopes [cloud_controller.read cloud_controller.write openid password.write uaa.user] do not include \
         allowed scopes [network.admin network.write]"
    );
    assert_eq!(api.get(POLICIES).await.status, 403);
    sim.stop();

    // A client is a developer of no space: without network.admin it may not name an existing app.
    let sim = Sim::start(test_config()).unwrap();
    let user = Api::login(&sim).await;
    let info = sim.info().clone();
    let form =
        format!("grant_type=client_credentials&client_id={}&client_secret={}", info.client_id, info.client_secret);
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("accept", "application/json")];
    let token = send("POST", &format!("{}/oauth/token", info.uaa), &headers, form.into_bytes(), None).await.unwrap();
    let scope = token.json()["scope"].as_str().unwrap().to_string();
    assert!(scope.split(' ').any(|s| s == "network.admin"), "{scope}");
    let (a, b) = (user.create_app("a").await, user.create_app("b").await);
    let body = json!({"policies": [policy(&a, &b, "tcp", 8080, 8080)]});
    assert_eq!(user.post(POLICIES, body.clone()).await.status, 200, "a user is a developer of every space");
    let client =
        Api { base: info.api.clone(), token: token.json()["access_token"].as_str().unwrap().into(), ca_pem: None };
    assert_eq!(client.post(&format!("{POLICIES}/delete"), body).await.status, 200, "network.admin may do anything");
    sim.stop();
}

/// A python3 app whose `/call?url=URL` GETs `URL` through the overlay proxy and answers `{"status", "body"}`
/// (status 599 when the connection fails or is closed without an answer).
const CALLER_PY: &str = r#"import base64, http.client, json, os
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        target = parse_qs(urlparse(self.path).query).get("url", [""])[0]
        proxy = urlparse(os.environ["CF_SIM_C2C_PROXY"])
        credentials = base64.b64encode((proxy.username + ":").encode()).decode()
        try:
            conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=5)
            conn.request("GET", target, headers={"Proxy-Authorization": "Basic " + credentials})
            answer = conn.getresponse()
            status, text = answer.status, answer.read().decode()
        except Exception as e:
            status, text = 599, type(e).__name__
        body = json.dumps({"status": status, "body": text}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_reaches_an_internal_route_only_where_a_policy_allows_it() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let domain = api.post("/v3/domains", json!({"name": "apps.internal", "internal": true})).await;
    assert_eq!(domain.status, 201, "{}", domain.text());
    let backend = api.push("backend", app_zip()).await;
    let route = api
        .post("/v3/routes", json!({"host": "backend", "relationships": {"domain": {"data": {"guid": domain.json()["guid"]}}, "space": {"data": {"guid": space}}}}))
        .await;
    assert_eq!(route.status, 201, "{}", route.text());
    let route = route.json()["guid"].as_str().unwrap().to_string();
    let destinations = format!("/v3/routes/{route}/destinations");
    let mapped = api.post(&destinations, json!({"destinations": [{"app": {"guid": backend}}]})).await;
    assert_eq!(mapped.status, 200);
    let caller_zip =
        zip_of(&[("caller.py", CALLER_PY.as_bytes(), 0o644), ("Procfile", b"web: python3 caller.py\n", 0o644)]);
    let frontend = api.push("frontend", caller_zip).await;
    api.map_route(&frontend, "frontend").await;
    let host = format!("frontend.{}", sim.info().domain);
    let call = |url: &str| {
        let (sim, host, path) = (&sim, host.clone(), format!("/call?url={url}"));
        async move {
            let response = via_router(sim, &host, &path).await;
            assert_eq!(response.status, 200, "{}", response.text());
            let body = response.json();
            (body["status"].as_u64().unwrap(), body["body"].as_str().unwrap().to_string())
        }
    };
    let internal = "http://backend.apps.internal:8080/hello";

    assert_eq!(call(internal).await.0, 599, "no policy: the connection is dropped");
    let allow = |source: &str, destination: &str, start: u64, end: u64| json!({"policies": [policy(source, destination, "tcp", start, end)]});
    assert_eq!(api.post(POLICIES, allow(&backend, &frontend, 8080, 8080)).await.status, 200);
    assert_eq!(call(internal).await.0, 599, "a policy the other way round allows nothing");
    assert_eq!(api.post(POLICIES, allow(&frontend, &backend, 9000, 9100)).await.status, 200);
    assert_eq!(call(internal).await.0, 599, "a policy for other ports allows nothing");
    assert_eq!(api.post(POLICIES, allow(&frontend, &backend, 8000, 8080)).await.status, 200);
    let (status, body) = call(internal).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["path"], "/hello");
    assert!(answer["headers"].get("x-cf-applicationid").is_none(), "no router on the way: {answer}");
    assert!(answer["headers"].get("proxy-authorization").is_none(), "the overlay's credentials stay in the overlay");
    assert_eq!(call("http://backend.apps.internal:9000/").await.0, 599, "8080 is the destination's port");
    let (status, body) = call("http://nothing.apps.internal:8080/").await;
    assert_eq!(status, 502, "a name that does not resolve: {body}");

    let gorouter = via_router(&sim, "backend.apps.internal", "/").await;
    assert_eq!(gorouter.status, 404, "gorouter does not route internal routes");
    let router = sim.info().router.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&router).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get(internal).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert!(sender.send_request(request).await.is_err(), "no instance credentials: no answer");

    let revoke = api.post(&format!("{POLICIES}/delete"), allow(&frontend, &backend, 8000, 8080)).await;
    assert_eq!(revoke.status, 200);
    assert_eq!(call(internal).await.0, 599, "the policy deleted, the connection is dropped again");
    sim.stop();
}
