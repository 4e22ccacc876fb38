//! Behaviour of the CC API and UAA: authentication and token expiry, paging, uniqueness, async deletes, errors,
//! metadata and label selectors, staging outcomes and logs, apply_manifest, packages, droplets, the state dump.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::common::{Api, app_zip, multipart, password_token, poll, send, test_config, zip_of};
use cf_sim::testkit::{self, CompressionMethod};
use cf_sim::{Sim, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_like_cc_and_expire() {
    let sim = Sim::start(test_config()).unwrap();
    let info = sim.info().clone();
    let missing = send("GET", &format!("{}/v3/apps", info.api), &[], Vec::new(), None).await.unwrap();
    assert_eq!((missing.status, missing.cf_error()), (401, (10002, "CF-NotAuthenticated".into())));
    let garbage =
        send("GET", &format!("{}/v3/apps", info.api), &[("authorization", "bearer not.a.token")], Vec::new(), None)
            .await
            .unwrap();
    assert_eq!((garbage.status, garbage.cf_error()), (401, (1000, "CF-InvalidAuthToken".into())));
    let wrong = password_token(&info.uaa, &info.username, "wrong", None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json(), json!({"error": "unauthorized", "error_description": "Bad credentials"}));

    sim.set_token_ttl(Duration::from_secs(1));
    let login = password_token(&info.uaa, &info.username, &info.password, None).await.json();
    assert_eq!(login["token_type"], "bearer");
    assert_eq!(login["expires_in"], 1);
    let api = Api { base: info.api.clone(), token: login["access_token"].as_str().unwrap().into(), ca_pem: None };
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = api.get("/v3/apps").await;
    assert_eq!((expired.status, expired.cf_error()), (401, (1000, "CF-InvalidAuthToken".into())));

    sim.set_token_ttl(Duration::from_secs(600));
    let form = format!("grant_type=refresh_token&refresh_token={}", login["refresh_token"].as_str().unwrap());
    let headers = [("authorization", "Basic Y2Y6"), ("content-type", "application/x-www-form-urlencoded")];
    let refreshed =
        send("POST", &format!("{}/oauth/token", info.uaa), &headers, form.into_bytes(), None).await.unwrap().json();
    let api = Api { token: refreshed["access_token"].as_str().unwrap().into(), ..api };
    assert_eq!(api.get("/v3/apps").await.status, 200);
    let bad_refresh = send(
        "POST",
        &format!("{}/oauth/token", info.uaa),
        &headers,
        b"grant_type=refresh_token&refresh_token=nope".to_vec(),
        None,
    )
    .await
    .unwrap();
    assert_eq!((bad_refresh.status, bad_refresh.json()["error"].clone()), (401, json!("invalid_token")));

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", info.client_id, info.client_secret));
    let client = send(
        "POST",
        &format!("{}/oauth/token", info.uaa),
        &[("authorization", &format!("Basic {basic}")), ("content-type", "application/x-www-form-urlencoded")],
        b"grant_type=client_credentials".to_vec(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(client.status, 200, "{}", client.text());
    assert!(client.json().get("refresh_token").is_none());
    let issued = sim.issued_tokens();
    assert!(issued.contains(&refreshed["access_token"].as_str().unwrap().to_string()));
    assert!(issued.contains(&login["refresh_token"].as_str().unwrap().to_string()));
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_pages_with_absolute_next_links() {
    let sim = Sim::start(SimConfig { default_per_page: 2, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    for i in 0..5 {
        api.create_app(&format!("paged-{i}")).await;
    }
    let mut names = Vec::new();
    let mut next = Some(format!("{}/v3/apps?order_by=name", api.base));
    let mut pages = 0;
    while let Some(url) = next.take() {
        pages += 1;
        assert!(pages <= 10, "paging does not end");
        let page = api.get(&url).await.json();
        assert_eq!(page["pagination"]["total_results"], 5);
        assert!(page["resources"].as_array().unwrap().len() <= 2);
        names.extend(page["resources"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap().to_string()));
        next = page["pagination"]["next"]["href"].as_str().map(str::to_string);
        if let Some(href) = &next {
            assert!(href.starts_with(&api.base) && href.contains("order_by=name"), "{href}");
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["paged-0", "paged-1", "paged-2", "paged-3", "paged-4"]);
    let filtered = api.get("/v3/apps?names=PAGED-1,paged-3").await.json();
    assert_eq!(filtered["pagination"]["total_results"], 2, "name filters ignore case");
    for bad in ["per_page=0", "per_page=5001", "page=0", "per_page=abc"] {
        let response = api.get(&format!("/v3/apps?{bad}")).await;
        assert_eq!((response.status, response.cf_error().0), (400, 10005), "{bad}");
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_per_space_and_errors_look_like_cc() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let first = api.create_app("unique").await;
    let clash =
        api.post("/v3/apps", json!({"name": "UNIQUE", "relationships": {"space": {"data": {"guid": space}}}})).await;
    assert_eq!((clash.status, clash.cf_error()), (422, (10016, "CF-UniquenessError".into())));
    assert_eq!(clash.json()["errors"][0]["detail"], "App with the name 'UNIQUE' already exists.");
    let other = api.create_app("other").await;
    // A rename to a taken name is the model's validation error, CF-UnprocessableEntity (app/actions/app_update.rb).
    let rename = api.patch(&format!("/v3/apps/{other}"), json!({"name": "unique"})).await;
    assert_eq!((rename.status, rename.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));
    assert_eq!(rename.json()["errors"][0]["detail"], "App with the name 'unique' already exists.");
    assert_eq!(api.patch(&format!("/v3/apps/{first}"), json!({"name": "renamed"})).await.status, 200);
    assert_eq!(api.patch(&format!("/v3/apps/{other}"), json!({"name": "unique"})).await.status, 200);

    let missing = api.get("/v3/apps/does-not-exist").await;
    assert_eq!((missing.status, missing.cf_error().0), (404, 10010));
    assert_eq!(missing.json()["errors"][0]["detail"], "App not found");
    let unknown = api.get("/v3/no_such_thing").await;
    assert_eq!((unknown.status, unknown.cf_error()), (404, (10000, "CF-NotFound".into())));
    let invalid = api.raw("POST", "/v3/apps", "application/json", b"{not json".to_vec()).await;
    assert_eq!((invalid.status, invalid.cf_error().0), (400, 1001));
    let extra = api
        .post("/v3/apps", json!({"name": "x", "bogus": 1, "relationships": {"space": {"data": {"guid": space}}}}))
        .await;
    assert_eq!((extra.status, extra.cf_error().0), (422, 10008));
    let no_droplet = api.post(&format!("/v3/apps/{first}/actions/start"), json!({})).await;
    assert_eq!(no_droplet.status, 422);
    assert_eq!(no_droplet.json()["errors"][0]["detail"], "Assign a droplet before starting this app.");

    let domain = api.first_guid("/v3/domains").await;
    let route = json!({"host": "dup", "relationships": {"domain": {"data": {"guid": domain}}, "space": {"data": {"guid": space}}}});
    assert_eq!(api.post("/v3/routes", route.clone()).await.status, 201);
    // app/actions/route_create.rb raises RouteCreate::Error, which routes_controller.rb answers as
    // CF-UnprocessableEntity (not CF-UniquenessError).
    let again = api.post("/v3/routes", route).await;
    assert_eq!((again.status, again.cf_error()), (422, (10008, "CF-UnprocessableEntity".into())));
    assert!(again.json()["errors"][0]["detail"].as_str().unwrap().starts_with("Route already exists with host 'dup'"));
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_async_jobs() {
    let sim = Sim::start(SimConfig { job_delay_ms: 300, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("doomed").await;
    let route = api.map_route(&app, "doomed").await;
    let deleted = api.delete(&format!("/v3/apps/{app}")).await;
    assert_eq!(deleted.status, 202);
    let location = deleted.header("location").unwrap();
    assert!(location.starts_with(&format!("{}/v3/jobs/", api.base)), "{location}");
    let job = api.get(&location).await.json();
    assert_eq!((job["state"].clone(), job["operation"].clone()), (json!("PROCESSING"), json!("app.delete")));
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.status, 200, "the app exists until the job runs");
    assert_eq!(api.wait_job(&location).await["state"], "COMPLETE");
    assert_eq!(api.get(&format!("/v3/apps/{app}")).await.status, 404);
    let kept = api.get(&format!("/v3/routes/{route}")).await.json();
    assert_eq!(kept["destinations"], json!([]), "routes survive their apps, unmapped");
    let route_delete = api.delete(&format!("/v3/routes/{route}")).await;
    assert_eq!(route_delete.status, 202);
    assert_eq!(api.wait_job(&route_delete.header("location").unwrap()).await["state"], "COMPLETE");
    assert_eq!(api.get(&format!("/v3/routes/{route}")).await.cf_error().0, 10010);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_merges_and_label_selectors_filter() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let blue = api.create_app("blue").await;
    let green = api.create_app("green").await;
    api.patch(
        &format!("/v3/apps/{blue}"),
        json!({"metadata": {"labels": {"role": "blue", "team": "a"}, "annotations": {"note": "x"}}}),
    )
    .await;
    api.patch(&format!("/v3/apps/{green}"), json!({"metadata": {"labels": {"role": "green"}}})).await;
    let merged = api
        .patch(&format!("/v3/apps/{blue}"), json!({"metadata": {"labels": {"team": null, "deploy": "7"}}}))
        .await
        .json();
    assert_eq!(merged["metadata"]["labels"], json!({"role": "blue", "deploy": "7"}));
    assert_eq!(merged["metadata"]["annotations"], json!({"note": "x"}));
    let names = |body: Value| {
        body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(api.get("/v3/apps?label_selector=role%3Dgreen").await.json()), ["green"]);
    assert_eq!(names(api.get("/v3/apps?label_selector=role%20in%20(blue%2Cgreen),deploy").await.json()), ["blue"]);
    assert_eq!(names(api.get("/v3/apps?label_selector=!deploy").await.json()), ["green"]);
    assert_eq!(names(api.get("/v3/apps?label_selector=role!%3Dblue").await.json()), ["green"]);
    let bad = api.patch(&format!("/v3/apps/{blue}"), json!({"metadata": {"labels": {"bad key!": "v"}}})).await;
    assert_eq!((bad.status, bad.cf_error().0), (422, 10008));
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_fails_like_cf_and_logs_stg_output() {
    let sim = Sim::start(SimConfig { staging_delay_ms: 400, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("stager").await;
    let package = api.upload_package(&app, app_zip()).await;
    let first = api.post("/v3/builds", json!({"package": {"guid": package}})).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.json()["state"], "STAGING");
    let second = api.post("/v3/builds", json!({"package": {"guid": package}})).await;
    assert_eq!((second.status, second.cf_error().0), (422, 170017));
    let guid = first.json()["guid"].as_str().unwrap().to_string();
    poll(Duration::from_secs(10), || async {
        (api.get(&format!("/v3/builds/{guid}")).await.json()["state"] == "STAGED").then_some(())
    })
    .await;

    sim.fail_staging("stager").unwrap();
    let failed = api.stage(&package).await;
    assert_eq!(failed["state"], "FAILED");
    assert!(failed["error"].as_str().unwrap().starts_with("BuildpackCompileFailed - "), "{failed}");

    let no_command = api.upload_package(&app, zip_of(&[("index.html", b"hi", 0o644)])).await;
    let undetected = api.stage(&no_command).await;
    assert_eq!(undetected["state"], "FAILED");
    assert!(undetected["error"].as_str().unwrap().starts_with("NoAppDetectedError - "), "{undetected}");

    let waiting = api
        .post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}))
        .await
        .json();
    let early = api.post("/v3/builds", json!({"package": {"guid": waiting["guid"]}})).await;
    assert_eq!(early.status, 400);
    assert_eq!(early.json()["errors"][0]["detail"], "Bad request: Cannot stage package whose state is not ready.");

    let read = send(
        "GET",
        &format!("{}/api/v1/read/{app}?envelope_types=LOG&limit=1000", sim.info().log_cache),
        &[("authorization", &format!("bearer {}", api.token))],
        Vec::new(),
        None,
    )
    .await
    .unwrap()
    .json();
    let lines: Vec<String> = read["envelopes"]["batch"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tags"]["source_type"] == "STG")
        .map(|e| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD.decode(e["log"]["payload"].as_str().unwrap()).unwrap(),
            )
            .unwrap()
        })
        .collect();
    for expected in ["Downloading app package...", "Exit status 0", "Uploading droplet...", "Exit status 222"] {
        assert!(lines.iter().any(|l| l.contains(expected)), "no STG line with {expected:?} in {lines:?}");
    }
    // log-cache-release's cf-auth-proxy (internal/auth/cf_auth_middleware.go) answers a missing token with 404.
    let unauthorized =
        send("GET", &format!("{}/api/v1/read/{app}", sim.info().log_cache), &[], Vec::new(), None).await.unwrap();
    assert_eq!(unauthorized.status, 404);
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_manifest_creates_and_updates_apps_like_cc() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let space = api.space_guid().await;
    let domain = sim.info().domain.clone();
    api.post("/v3/service_instances", json!({"type": "user-provided", "name": "db", "credentials": {"password": "s3cret"}, "relationships": {"space": {"data": {"guid": space}}}}))
        .await;
    let manifest = format!(
        "applications:\n- name: shop\n  instances: 2\n  memory: 256M\n  disk_quota: 1G\n  command: python3 server.py\n  env:\n    A: one\n  health-check-type: http\n  health-check-http-endpoint: /health\n  timeout: 30\n  routes:\n  - route: shop.{domain}\n  - route: shop.{domain}/api\n  services:\n  - db\n  metadata:\n    labels:\n      tier: web\n"
    );
    let applied = api
        .raw("POST", &format!("/v3/spaces/{space}/actions/apply_manifest"), "application/x-yaml", manifest.into_bytes())
        .await;
    assert_eq!(applied.status, 202, "{}", applied.text());
    let job = api.wait_job(&applied.header("location").unwrap()).await;
    assert_eq!(
        (job["state"].clone(), job["operation"].clone()),
        (json!("COMPLETE"), json!("space.apply_manifest")),
        "{job}"
    );
    let app = api.get("/v3/apps?names=shop").await.json()["resources"][0].clone();
    let guid = app["guid"].as_str().unwrap();
    assert_eq!(app["metadata"]["labels"]["tier"], "web");
    let web = api.get(&format!("/v3/apps/{guid}/processes/web")).await.json();
    assert_eq!(
        (web["instances"].clone(), web["memory_in_mb"].clone(), web["disk_in_mb"].clone()),
        (json!(2), json!(256), json!(1024))
    );
    assert_eq!(
        web["health_check"],
        json!({"type": "http", "data": {"endpoint": "/health", "timeout": 30, "invocation_timeout": null, "interval": null}})
    );
    assert_eq!(web["command"], "python3 server.py");
    let routes = api.get(&format!("/v3/apps/{guid}/routes")).await.json();
    assert_eq!(routes["pagination"]["total_results"], 2);
    let bindings = api.get(&format!("/v3/service_credential_bindings?app_guids={guid}")).await.json();
    assert_eq!(bindings["pagination"]["total_results"], 1);

    let more = "applications:\n- name: shop\n  env:\n    B: two\n".to_string();
    let applied = api
        .raw("POST", &format!("/v3/spaces/{space}/actions/apply_manifest"), "application/x-yaml", more.into_bytes())
        .await;
    api.wait_job(&applied.header("location").unwrap()).await;
    let env = api.get(&format!("/v3/apps/{guid}/environment_variables")).await.json();
    assert_eq!(env["var"], json!({"A": "one", "B": "two"}), "env is merged, never replaced");
    assert_eq!(
        api.get(&format!("/v3/apps/{guid}/routes")).await.json()["pagination"]["total_results"],
        2,
        "routes are kept"
    );

    let generated = api.get(&format!("/v3/apps/{guid}/manifest")).await;
    assert_eq!(generated.header("content-type").as_deref(), Some("application/x-yaml"));
    let yaml: Value = serde_norway::from_str(&generated.text()).unwrap();
    let entry = &yaml["applications"][0];
    assert_eq!(entry["name"], "shop");
    assert_eq!(entry["services"], json!(["db"]));
    assert!(entry["routes"].as_array().unwrap().iter().any(|r| r["route"] == format!("shop.{domain}/api")));
    assert_eq!(entry["processes"][0]["health-check-http-endpoint"], "/health");

    let bad_type = api
        .raw(
            "POST",
            &format!("/v3/spaces/{space}/actions/apply_manifest"),
            "application/x-yaml",
            b"applications:\n- name: shop\n  health-check-type: tcp\n".to_vec(),
        )
        .await;
    assert_eq!((bad_type.status, bad_type.cf_error().0), (422, 10008));
    let bad_route = api
        .raw(
            "POST",
            &format!("/v3/spaces/{space}/actions/apply_manifest"),
            "application/x-yaml",
            b"applications:\n- name: shop\n  routes:\n  - route: nowhere.example.com\n".to_vec(),
        )
        .await;
    let failed = api.wait_job(&bad_route.header("location").unwrap()).await;
    assert_eq!(failed["state"], "FAILED");
    // app/actions/manifest_route_update.rb: "No domains exist for route …".
    assert_eq!(failed["errors"][0]["detail"], "For application 'shop': No domains exist for route nowhere.example.com");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_use_the_resource_cache_and_enforce_the_size_limit() {
    let sim = Sim::start(SimConfig { resource_min_size: 10, max_package_size: 100_000, ..test_config() }).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("bits").await;
    let big = vec![b'x'; 5000];
    api.upload_package(&app, zip_of(&[("big.bin", &big, 0o644), ("tiny", b"1", 0o644)])).await;
    use sha1::Digest;
    let hash = |bytes: &[u8]| sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
    let matches = api
        .post(
            "/v3/resource_matches",
            json!({"resources": [
            {"checksum": {"value": hash(&big)}, "size_in_bytes": 5000, "path": "big.bin", "mode": "644"},
            {"checksum": {"value": hash(b"1")}, "size_in_bytes": 1, "path": "tiny", "mode": "644"},
            {"checksum": {"value": hash(b"unknown")}, "size_in_bytes": 7000, "path": "u", "mode": "644"}]}),
        )
        .await;
    assert_eq!(matches.status, 201);
    let matched = matches.json()["resources"].clone();
    assert_eq!(matched.as_array().unwrap().len(), 1, "only cached files within the size window match: {matched}");

    let package = api
        .post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}))
        .await
        .json();
    let guid = package["guid"].as_str().unwrap();
    let resources =
        json!([{"checksum": {"value": hash(&big)}, "size_in_bytes": 5000, "path": "again/big.bin", "mode": "644"}])
            .to_string();
    let (content_type, body) = multipart(&[("resources", None, resources.into_bytes())]);
    assert_eq!(api.raw("POST", &format!("/v3/packages/{guid}/upload"), &content_type, body).await.status, 200);
    poll(Duration::from_secs(10), || async {
        (api.get(&format!("/v3/packages/{guid}")).await.json()["state"] == "READY").then_some(())
    })
    .await;
    let download = api.get(&format!("/v3/packages/{guid}/download")).await;
    assert_eq!(download.status, 302);
    let zip = send("GET", &download.header("location").unwrap(), &[], Vec::new(), None).await.unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.body.to_vec())).unwrap();
    assert_eq!(archive.by_name("again/big.bin").unwrap().size(), 5000);

    let bad_mode =
        json!([{"checksum": {"value": hash(&big)}, "size_in_bytes": 5000, "path": "x", "mode": "444"}]).to_string();
    let fresh = api
        .post("/v3/packages", json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}}))
        .await
        .json();
    let (content_type, body) = multipart(&[("resources", None, bad_mode.into_bytes())]);
    let rejected =
        api.raw("POST", &format!("/v3/packages/{}/upload", fresh["guid"].as_str().unwrap()), &content_type, body).await;
    assert_eq!((rejected.status, rejected.cf_error().0), (400, 160003));

    let huge = testkit::zip(CompressionMethod::Stored, &[("huge.bin", &[7u8; 150_000], Some(0o644))]);
    let (content_type, body) = multipart(&[("bits", Some("package.zip"), huge)]);
    let too_big =
        api.raw("POST", &format!("/v3/packages/{}/upload", fresh["guid"].as_str().unwrap()), &content_type, body).await;
    assert_eq!((too_big.status, too_big.cf_error()), (400, (150001, "CF-AppPackageInvalid".into())));
    assert!(
        too_big.json()["errors"][0]["detail"].as_str().unwrap().contains("Package may not be larger than 100000 bytes")
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn droplets_download_copy_and_upload() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.push("dropper", app_zip()).await;
    let droplet = api.get(&format!("/v3/apps/{app}/droplets/current")).await.json();
    assert_eq!(droplet["process_types"]["web"], "python3 server.py");
    let download = api.get(&format!("/v3/droplets/{}/download", droplet["guid"].as_str().unwrap())).await;
    assert_eq!(download.status, 302);
    let tgz = send("GET", &download.header("location").unwrap(), &[], Vec::new(), None).await.unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz.body[..]));
    let names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n.ends_with("app/server.py")), "{names:?}");

    let target = api.create_app("copy-target").await;
    let copy = api
        .post(
            &format!("/v3/droplets?source_guid={}", droplet["guid"].as_str().unwrap()),
            json!({"relationships": {"app": {"data": {"guid": target}}}}),
        )
        .await;
    assert_eq!((copy.status, copy.json()["state"].clone()), (201, json!("COPYING")));
    let copy_guid = copy.json()["guid"].as_str().unwrap().to_string();
    poll(Duration::from_secs(10), || async {
        (api.get(&format!("/v3/droplets/{copy_guid}")).await.json()["state"] == "STAGED").then_some(())
    })
    .await;
    assert_eq!(
        api.patch(&format!("/v3/apps/{target}/relationships/current_droplet"), json!({"data": {"guid": copy_guid}}))
            .await
            .status,
        200
    );
    assert_eq!(api.post(&format!("/v3/apps/{target}/actions/start"), json!({})).await.status, 200);
    api.wait_running(&target, 1).await;

    let uploaded_app = api.create_app("prebuilt").await;
    let created = api.post("/v3/droplets", json!({"relationships": {"app": {"data": {"guid": uploaded_app}}}, "process_types": {"web": "python3 server.py"}})).await.json();
    assert_eq!(created["state"], "AWAITING_UPLOAD");
    let guid = created["guid"].as_str().unwrap();
    let (content_type, body) = multipart(&[("bits", Some("droplet.tgz"), tgz.body.to_vec())]);
    let upload = api.raw("POST", &format!("/v3/droplets/{guid}/upload"), &content_type, body).await;
    assert_eq!(upload.status, 202, "{}", upload.text());
    assert_eq!(api.wait_job(&upload.header("location").unwrap()).await["state"], "COMPLETE");
    assert_eq!(api.get(&format!("/v3/droplets/{guid}")).await.json()["state"], "STAGED");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_dump_is_deterministic_and_the_request_log_counts_calls() {
    let sim = Sim::start(test_config()).unwrap();
    let api = Api::login(&sim).await;
    let app = api.create_app("dumped").await;
    let before = sim.state_dump();
    let space = api.space_guid().await;
    let clash =
        api.post("/v3/apps", json!({"name": "dumped", "relationships": {"space": {"data": {"guid": space}}}})).await;
    assert_eq!(clash.status, 422);
    api.get(&format!("/v3/apps/{app}")).await;
    assert_eq!(sim.state_dump(), before, "failed and read-only calls change nothing");
    assert_eq!(before["apps"][0]["name"], "dumped");
    let over_http = send("GET", &format!("{}/_sim/state", api.base), &[], Vec::new(), None).await.unwrap().json();
    assert_eq!(over_http, before);
    api.patch(&format!("/v3/apps/{app}"), json!({"name": "changed"})).await;
    assert_ne!(sim.state_dump(), before);

    // Whatever a manifest can set on a process shows: its log rate limit and its readiness check's timing.
    let web = api.get(&format!("/v3/apps/{app}/processes/web")).await.json()["guid"].as_str().unwrap().to_owned();
    let scaled = sim.state_dump();
    let rate = api
        .post(&format!("/v3/processes/{web}/actions/scale"), json!({"log_rate_limit_in_bytes_per_second": 1024}))
        .await;
    assert_eq!(rate.status, 202);
    let limited = sim.state_dump();
    assert_ne!(limited, scaled, "the log rate limit is in the dump");
    assert_eq!(limited["apps"][0]["processes"][0]["log_rate_limit_in_bytes_per_second"], json!(1024));
    let readiness = json!({"readiness_health_check": {"type": "port", "data": {"interval": 7}}});
    assert_eq!(api.patch(&format!("/v3/processes/{web}"), readiness).await.status, 200);
    assert_eq!(sim.state_dump()["apps"][0]["processes"][0]["readiness_health_check"]["interval"], json!(7));

    let counters = sim.counters();
    assert_eq!(counters.get("GET /v3/apps/:guid"), Some(&1));
    assert_eq!(counters.get("POST /v3/apps"), Some(&2));
    let log = sim.request_log();
    let record = log.iter().find(|r| r.method == "PATCH").unwrap();
    assert_eq!((record.status, record.listener, record.admin), (200, "api", false));
    let body_len = json!({"name": "changed"}).to_string().len() as u64;
    assert_eq!(record.request_bytes, Some(body_len), "the log records what the client sent");
    assert!(log.iter().any(|r| r.path == "/_sim/state" && r.admin));
    sim.reset_request_log();
    assert!(sim.request_log().is_empty());
    sim.stop();
}

#[test]
fn the_sim_runs_from_a_plain_test_without_a_runtime() {
    use std::io::{Read, Write};
    let sim = Sim::start(SimConfig::default()).unwrap();
    let address = sim.info().api.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(stream, "GET /v3/info HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("\"osbapi_version\""));
    sim.stop();
}
