//! What a real foundation does that cf-sim now models after the Cloud Controller's source, end to end through
//! `out`: an app's lifecycle cannot change and CC's generated manifest names it (a buildpack app redeployed as a
//! docker image and back, without a manifest), and a route whose traffic is split by weights takes no other app.

use crate::util::deploy::{PutDir, app_named, apps, deploy, get, manifest, out, wait_until_serving};
use crate::util::sim::{connect, home_space, resource_requests, sample_app_bin, start_sim_with};
use serde_json::{Value, json};

#[test]
fn a_buildpack_app_becomes_a_docker_image_and_back_without_a_manifest() {
    let image_dir = tempfile::tempdir().unwrap();
    std::fs::copy(sample_app_bin(), image_dir.path().join("sample-app")).unwrap();
    std::fs::write(image_dir.path().join("Procfile"), "web: ./sample-app\n").unwrap();
    let image = "registry.example.com/shop/myapp:2.0";
    let sim = start_sim_with(|c| c.docker_images = vec![format!("{image}={}", image_dir.path().display())]);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let env = |version: &str| json!({"APP_VERSION": version});
    deploy(
        &sim,
        &put,
        "myapp",
        json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": env("v1"), "drain": "1s"}),
    );

    // Production's own manifest says `lifecycle: buildpack`: kept, CC would refuse the docker candidate.
    let run =
        out(&sim, &put, "myapp", json!({"docker_image": image, "environment_variables": env("v2"), "drain": "1s"}));
    assert_eq!(run.status, 0, "{}", run.stderr);
    wait_until_serving(&sim, "myapp", "v2");
    assert_eq!(app_named(&sim, "myapp").unwrap()["lifecycle"]["type"], json!("docker"));

    // And back: production's manifest says `lifecycle: docker` and names the image.
    let run = out(&sim, &put, "myapp", json!({"path": "app", "environment_variables": env("v3"), "drain": "1s"}));
    assert_eq!(run.status, 0, "{}", run.stderr);
    wait_until_serving(&sim, "myapp", "v3");
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v3".to_owned()));
    assert_eq!(app_named(&sim, "myapp").unwrap()["lifecycle"]["type"], json!("buildpack"));
}

#[test]
fn a_production_route_split_by_weights_is_refused_before_anything_moves() {
    let sim = start_sim_with(|_| {});
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let params = |version: &str| json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": {"APP_VERSION": version}, "drain": "1s"});
    deploy(&sim, &put, "myapp", params("v1"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let cf = connect(&sim).await;
        let space = home_space(&cf, &sim).await;
        let app = cf.apps().by_name(&space.guid, "myapp").await.unwrap().unwrap();
        let route = cf.routes().for_app(&app.guid).await.unwrap().remove(0);
        let weighted = json!({"destinations": [{"app": {"guid": app.guid}, "weight": 100}]});
        let _: Value = cf.patch(&format!("/v3/routes/{}/destinations", route.guid), &weighted).await.unwrap();
    });
    sim.reset_request_log();
    let run = out(&sim, &put, "myapp", params("v2"));
    assert_eq!(run.status, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("splits its traffic by weights, and Cloud Foundry refuses to map another app to such a route"),
        "{}",
        run.stderr
    );
    let touched_routes =
        resource_requests(&sim).into_iter().filter(|r| r.method != "GET" && r.path.contains("/destinations")).count();
    assert_eq!(touched_routes, 0, "no route was touched");
    assert_eq!(apps(&sim), [("myapp".to_owned(), "STARTED".to_owned())], "the candidate is gone");
    assert_eq!(get(&sim, "myapp", "/version"), (200, "v1".to_owned()));
}
