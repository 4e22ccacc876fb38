//! Fault injection: statuses with CF error bodies, delays, and connections dropped before or after the request
//! is processed (a lost POST response must not hide that the app was created), through both APIs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Api, send, test_config};
use cf_sim::{Fault, FaultAction, Sim};

fn fault(method: &str, path: &str, nth: u64, action: FaultAction) -> Fault {
    Fault { method: Some(method.into()), path: path.into(), nth, times: 1, action }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_delay_faults_hit_the_nth_matching_request() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("faulty").await;
    sim.add_fault(fault(
        "GET",
        "/v3/apps/:guid",
        2,
        FaultAction::Status { status: 503, code: None, title: None, detail: None },
    ));
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.status, 200);
    let failed = api.get(&format!("/v3/apps/{app}")).await;
    assert_eq!((failed.status, failed.cf_error()), (503, (10015, "CF-ServiceUnavailable".into())));
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.status, 200, "times defaults to 1");
    let counted = sim.faults();
    assert_eq!((counted.len(), counted[0].matched, counted[0].fired), (1, 3, 1), "{counted:?}");

    sim.add_fault(fault("GET", "/v3/apps", 1, FaultAction::Delay { ms: 400 }));
    let started = Instant::now();
    assert_eq!(api.get("/v3/apps").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let log = sim.request_log();
    assert!(log.iter().any(|r| r.fault.as_deref() == Some("status 503") && r.status == 503));
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_stopped_waiting_is_still_processed_like_cc_does() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    sim.add_fault(fault("POST", "/v3/apps", 1, FaultAction::Delay { ms: 800 }));
    let body = json!({"name": "late", "relationships": {"space": {"data": {"guid": space}}}});
    let auth = format!("bearer {}", api.token);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let url = format!("{}/v3/apps", api.base);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        send("POST", &url, &headers, body.to_string().into_bytes(), None),
    )
    .await;
    assert!(gave_up.is_err(), "the client stopped waiting (and closed its connection)");
    let started = Instant::now();
    loop {
        let apps = api.get("/v3/apps?names=late").await.json();
        if apps["resources"].as_array().is_some_and(|a| a.len() == 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the late create never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = sim.request_log();
    assert!(
        log.iter().any(|r| r.method == "POST"
            && r.path == "/v3/apps"
            && r.fault.as_deref() == Some("delay 800ms")
            && r.status == 201),
        "the late request is logged"
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_lose_the_response_before_or_after_processing() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let create = |name: &str| json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}});
    let auth = format!("bearer {}", api.token);
    let post = |body: serde_json::Value| {
        let (url, auth) = (format!("{}/v3/apps", api.base), auth.clone());
        async move {
            send(
                "POST",
                &url,
                &[("authorization", &auth), ("content-type", "application/json")],
                body.to_string().into_bytes(),
                None,
            )
            .await
        }
    };

    sim.add_fault(fault("POST", "/v3/apps", 1, FaultAction::DropBefore));
    assert!(post(create("before")).await.is_err(), "the client sees the connection closed");
    assert_eq!(
        api.get("/v3/apps?names=before").await.json()["pagination"]["total_results"],
        0,
        "nothing was processed"
    );

    sim.add_fault(fault("POST", "/v3/apps", 1, FaultAction::DropAfter));
    assert!(post(create("after")).await.is_err());
    assert_eq!(
        api.get("/v3/apps?names=after").await.json()["pagination"]["total_results"],
        1,
        "processed exactly once"
    );
    let log = sim.request_log();
    assert_eq!(log.iter().filter(|r| r.dropped).count(), 2);

    // The admin API does the same over HTTP.
    let admin = format!("{}/_sim/faults", api.base);
    let added = send(
        "POST",
        &admin,
        &[],
        json!({"method": "GET", "path": "/v3/apps", "action": {"type": "status", "status": 500}})
            .to_string()
            .into_bytes(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(added.status, 201);
    assert_eq!(api.get("/v3/apps").await.cf_error(), (10001, "CF-UnknownError".into()));
    let listed = send("GET", &admin, &[], Vec::new(), None).await.unwrap().json();
    assert_eq!(listed["faults"].as_array().unwrap().len(), 3);
    assert_eq!(send("DELETE", &admin, &[], Vec::new(), None).await.unwrap().status, 204);
    assert_eq!(api.get("/v3/apps").await.status, 200);

    let uaa_fault =
        fault("POST", "/oauth/token", 1, FaultAction::Status { status: 503, code: None, title: None, detail: None });
    sim.add_fault(uaa_fault);
    let info = sim.info();
    let login = crate::common::password_token(&info.uaa, &info.username, &info.password, None).await;
    assert_eq!((login.status, login.json()["error"].clone()), (503, json!("server_error")));
    sim.stop();
}
