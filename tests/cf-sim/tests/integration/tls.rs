//! TLS: API, UAA and Log Cache over HTTPS with a certificate generated at start, trusted through the written CA.

use serde_json::json;

use crate::common::{Api, send, test_config};
use cf_sim::{Sim, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_the_written_ca_and_only_with_it() {
    let sim = Sim::start(SimConfig { tls: true, ..test_config() }).unwrap();
    let info = sim.info().clone();
    assert!(
        info.api.starts_with("https://127.0.0.1:")
            && info.uaa.starts_with("https://")
            && info.log_cache.starts_with("https://")
    );
    let ca_path = info.ca_cert_path.clone().expect("CA path");
    let ca = std::fs::read(&ca_path).unwrap();
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));
    let api = Api::login(&sim).await;
    assert_eq!(api.get("/v3/apps").await.status, 200);
    let root = send("GET", &format!("{}/", info.api), &[], Vec::new(), Some(&ca)).await.unwrap().json();
    assert_eq!(root["links"]["self"]["href"], json!(info.api));
    assert_eq!(root["links"]["login"]["href"], json!(info.uaa));
    let logs = send("GET", &format!("{}/api/v1/info", info.log_cache), &[], Vec::new(), Some(&ca)).await.unwrap();
    assert_eq!(logs.status, 200);

    let plain = send("GET", &format!("{}/v3", info.api.replace("https", "http")), &[], Vec::new(), None).await;
    assert!(plain.is_err() || plain.unwrap().status >= 400, "plain HTTP is not served on the TLS port");
    let other_sim = Sim::start(SimConfig { tls: true, ..test_config() }).unwrap();
    let other_ca = std::fs::read(other_sim.info().ca_cert_path.as_ref().unwrap()).unwrap();
    assert!(
        send("GET", &format!("{}/v3", info.api), &[], Vec::new(), Some(&other_ca)).await.is_err(),
        "an untrusted CA fails"
    );
    other_sim.stop();
    sim.stop();
}
