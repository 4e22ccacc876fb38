//! The CF client against cf-sim (started in-process on 127.0.0.1): every operation the deploy uses, plus the
//! failure modes the client must survive — paging, token expiry, 429 and 5xx, lost responses, TLS, proxies,
//! resource matching and streaming uploads, staging logs, droplet round trips. Every wait is bounded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cf_blue_green_resource::cf::apps::{App, AppFilter, AppState, NewApp};
use cf_blue_green_resource::cf::bindings::NewBinding;
use cf_blue_green_resource::cf::builds::NewBuild;
use cf_blue_green_resource::cf::domains::Domain;
use cf_blue_green_resource::cf::droplets::DropletState;
use cf_blue_green_resource::cf::packages::PackageState;
use cf_blue_green_resource::cf::processes::{HealthCheck, InstanceState, ProcessUpdate, Scale};
use cf_blue_green_resource::cf::root::MIN_CC_API_VERSION;
use cf_blue_green_resource::cf::routes::{NewDestination, NewRoute};
use cf_blue_green_resource::cf::spaces::Space;
use cf_blue_green_resource::cf::types::{Lifecycle, MetadataPatch};
use cf_blue_green_resource::cf::{
    CfClient, Credentials, Error, FileResource, ListParams, Poll, ProxySettings, RetryPolicy, Settings, Wait,
};
use cf_sim::config::CcApiVersion;
use cf_sim::{Fault, FaultAction, Sim, SimConfig};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::archive;
use crate::util::server::{scripted_api, start_proxy};
use crate::util::sim::{WAIT, connect, home_space, settings, start_sim_with};

/// A sim for the client: staging a little slower than the toolkit's, and resource matching for files of any size.
fn start_sim(adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    start_sim_with(|config| {
        config.staging_delay_ms = 40;
        config.resource_min_size = 1;
        adjust(config);
    })
}

fn new_app(space: &Space, name: &str) -> NewApp {
    NewApp { name: name.to_owned(), space_guid: space.guid.clone(), ..NewApp::default() }
}

fn new_route(space: &Space, domain: &Domain, host: &str) -> NewRoute {
    NewRoute {
        space_guid: space.guid.clone(),
        domain_guid: domain.guid.clone(),
        host: Some(host.into()),
        ..NewRoute::default()
    }
}

/// The apps of that name (all spaces).
async fn apps_named(cf: &CfClient, name: &str) -> Vec<App> {
    cf.apps().list_filtered(&AppFilter { names: vec![name.into()], ..AppFilter::default() }).await.unwrap()
}

/// Sends one request by hand over plain HTTP (for what the client deliberately does not do) and returns the
/// status and body.
async fn raw_request(api: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let host = api.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// Zips `files` (path, contents, mode) into `dest`; returns them as resources.
fn write_zip(dest: &Path, files: &[(&str, Vec<u8>, u32)]) -> Vec<FileResource> {
    let entries: Vec<archive::Entry> =
        files.iter().map(|(path, data, mode)| (*path, data.as_slice(), Some(*mode))).collect();
    archive::zip(dest, zip::CompressionMethod::Deflated, &entries);
    files.iter().map(|(path, contents, mode)| resource(path, contents, *mode)).collect()
}

fn resource(path: &str, contents: &[u8], mode: u32) -> FileResource {
    let sha1: String = Sha1::digest(contents).iter().map(|b| format!("{b:02x}")).collect();
    FileResource::new(path, sha1, contents.len() as u64, mode)
}

fn big(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// An app with a READY bits package whose Procfile runs `sleep`, and the package guid.
async fn app_with_package(cf: &CfClient, space: &Space, name: &str, dir: &Path) -> (String, String) {
    let app = cf.apps().create(&new_app(space, name)).await.unwrap();
    let zip = dir.join(format!("{name}.zip"));
    write_zip(&zip, &[("Procfile", b"web: sleep 600\n".to_vec(), 0o644), ("data.bin", big(1, 70_000), 0o644)]);
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    cf.packages().upload(&package.guid, Some(&zip), &[]).await.unwrap();
    let package = cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();
    (app.guid, package.guid)
}

async fn stage(cf: &CfClient, package_guid: &str) -> String {
    let build = cf.builds().create(package_guid, &NewBuild::default()).await.unwrap();
    let build = cf.builds().wait_staged(&build.guid, WAIT, |_, _| {}).await.unwrap();
    build.droplet_guid().unwrap().to_owned()
}

#[tokio::test]
async fn logs_in_with_either_grant_and_rejects_bad_credentials_without_leaking_them() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    assert!(cf.endpoints().token.as_str().starts_with(&sim.info().uaa));
    assert!(cf.endpoints().log_cache.is_some());
    assert!(cf.info().await.unwrap().name.is_some());

    let mut client = settings(&sim);
    client.credentials =
        Credentials::Client { id: sim.info().client_id.clone(), secret: sim.info().client_secret.clone() };
    let cc = CfClient::connect(client).await.unwrap();
    home_space(&cc, &sim).await;
    cc.refresh_now().await.unwrap();
    assert_eq!(cc.trace().count_matching("POST", "/oauth/token"), 2, "client credentials refresh by a new grant");

    let mut wrong = settings(&sim);
    wrong.credentials =
        Credentials::Password { username: sim.info().username.clone(), password: "not-the-password-42".into() };
    let err = CfClient::connect(wrong).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Auth(_)), "{text}");
    assert!(text.contains(&format!("user '{}'", sim.info().username)), "{text}");
    assert!(!text.contains("not-the-password-42"), "{text}");
}

/// Discovery reads `links.cloud_controller_v3.meta.version` of `GET /`: a Cloud Controller older than the oldest
/// one supported fails at once, naming both versions; the oldest supported works; a root that names no version
/// (not a stock CC) is used with a warning.
#[tokio::test]
async fn the_cloud_controller_api_version_is_checked_at_discovery() {
    let older = MIN_CC_API_VERSION.minor - 1;
    let old = start_sim(|c| c.cc_api_version = CcApiVersion(3, older, 0));
    let err = CfClient::connect(settings(&old)).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}/ runs Cloud Controller API 3.{older}.0; this resource needs {MIN_CC_API_VERSION} or newer",
            old.info().api
        )
    );

    let oldest = start_sim(|c| c.cc_api_version = CcApiVersion(3, MIN_CC_API_VERSION.minor, 0));
    let cf = connect(&oldest).await;
    assert_eq!(cf.endpoints().v3_version.as_deref(), Some(MIN_CC_API_VERSION.to_string().as_str()));
    home_space(&cf, &oldest).await;

    let sim = start_sim(|_| {});
    let api = scripted_api(Some(sim.info().uaa.clone()), None, |_, _| {
        ("200 OK", String::new(), r#"{"name":"unversioned"}"#.into())
    })
    .await;
    let mut s = settings(&sim);
    s.api = api;
    let cf = CfClient::connect(s).await.unwrap();
    assert!(cf.endpoints().v3_version.is_none());
    assert_eq!(cf.info().await.unwrap().name.as_deref(), Some("unversioned"));
}

/// The org quota (`relationships.quota` of the org → `GET /v3/organization_quotas/:guid`), the space quota
/// (`relationships.quota` of the space → `GET /v3/space_quotas/:guid`) and their usage summaries.
#[tokio::test]
async fn memory_quotas_of_the_org_and_the_space_are_read_with_their_usage() {
    let sim = start_sim(|c| {
        c.org_memory_limit_mb = Some(4096);
        c.space_memory_limit_mb = Some(1024);
    });
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    sim.reset_request_log();
    let quotas = cf.memory_quotas(&org, &space).await.unwrap();
    assert_eq!(sim.request_log().len(), 4, "two quotas and two usage summaries");
    let org = quotas.org.as_ref().unwrap();
    assert_eq!((org.limit_mb, org.used_mb), (Some(4096), Some(0)));
    let space_quota = quotas.space.as_ref().unwrap();
    assert_eq!((space_quota.limit_mb, space_quota.used_mb), (Some(1024), Some(0)));
    assert_eq!(quotas.shortfall(1024), None);
    let short = quotas.shortfall(2048).unwrap();
    assert_eq!((short.scope, short.limit_mb, short.needed_mb), ("space", 1024, 2048));

    let unlimited = start_sim(|_| {});
    let cf = connect(&unlimited).await;
    let space = home_space(&cf, &unlimited).await;
    let org = cf.orgs().require_by_name(&unlimited.info().organization).await.unwrap();
    unlimited.reset_request_log();
    let quotas = cf.memory_quotas(&org, &space).await.unwrap();
    assert_eq!(unlimited.request_log().len(), 1, "an unlimited org quota needs no usage, a space without one nothing");
    assert_eq!(quotas.org.as_ref().unwrap().limit_mb, None);
    assert!(quotas.space.is_none());
    assert_eq!(quotas.shortfall(1 << 20), None);
}

#[tokio::test]
async fn orgs_spaces_and_domains_are_found_by_name() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    let space = cf.spaces().require_by_name(&org.guid, &sim.info().space).await.unwrap();
    assert_eq!(space.org_guid(), Some(org.guid.as_str()));
    let missing = cf.orgs().require_by_name("no-such-org").await.unwrap_err();
    assert!(missing.to_string().contains("organization 'no-such-org' not found"), "{missing}");
    assert!(cf.spaces().by_name(&org.guid, "no-such-space").await.unwrap().is_none());

    let default = cf.orgs().default_domain(&org.guid).await.unwrap();
    assert_eq!(default.name, sim.info().domain);
    assert!(default.is_shared());
    let by_name = cf.domains().by_name(&sim.info().domain).await.unwrap().unwrap();
    assert_eq!(by_name.guid, default.guid);
    assert!(cf.orgs().get(&org.guid).await.is_ok());
    assert!(cf.orgs().find("00000000-0000-0000-0000-000000000000").await.unwrap().is_none());
}

#[tokio::test]
async fn apps_are_created_found_renamed_configured_and_deleted() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let mut spec = new_app(&space, "shop-green");
    spec.environment_variables.insert("GREETING".into(), "hello".into());
    spec.metadata =
        MetadataPatch::new().label("bg-role", "green").annotation("cf-blue-green-resource.concourse/deploy-id", "d-1");
    spec.lifecycle = Some(Lifecycle::buildpack(vec!["binary_buildpack".into()], None));
    let app = cf.apps().create(&spec).await.unwrap();
    assert_eq!(app.state, AppState::Stopped);
    assert_eq!(app.metadata.labels.get("bg-role").map(String::as_str), Some("green"));

    let taken = cf.apps().create(&spec).await.unwrap_err();
    assert!(taken.cf().unwrap().is_name_taken(), "{taken}");
    assert!(taken.to_string().starts_with("POST /v3/apps: 422"), "{taken}");
    let other = cf.apps().create(&new_app(&space, "shop-blue")).await.unwrap();
    let rename = cf.apps().rename(&other.guid, "shop-green").await.unwrap_err();
    assert!(rename.cf().unwrap().is_name_taken(), "{rename}");
    cf.apps().delete(&other.guid).await.unwrap();

    let found = cf.apps().by_name(&space.guid, "shop-green").await.unwrap().unwrap();
    assert_eq!(found.guid, app.guid);
    let labelled = cf
        .apps()
        .list_filtered(&AppFilter { label_selector: Some("bg-role=green".into()), ..AppFilter::default() })
        .await
        .unwrap();
    assert_eq!(labelled.len(), 1);

    let env = cf.apps().env_vars(&app.guid).await.unwrap();
    assert_eq!(env.get("GREETING").map(String::as_str), Some("hello"));
    let mut patch = BTreeMap::new();
    patch.insert("GREETING".to_owned(), None);
    patch.insert("MODE".to_owned(), Some("blue-green".to_owned()));
    let env = cf.apps().update_env_vars(&app.guid, &patch).await.unwrap();
    assert_eq!(env.get("MODE").map(String::as_str), Some("blue-green"));
    assert!(!env.contains_key("GREETING"));

    let renamed = cf.apps().rename(&app.guid, "shop").await.unwrap();
    assert_eq!(renamed.name, "shop");
    let updated = cf.apps().update_metadata(&app.guid, &MetadataPatch::new().remove_label("bg-role")).await.unwrap();
    assert!(!updated.metadata.labels.contains_key("bg-role"));
    assert!(cf.apps().manifest(&app.guid).await.unwrap().contains("name: shop"));
    assert!(cf.apps().current_droplet(&app.guid).await.unwrap().is_none());

    cf.apps().delete(&app.guid).await.unwrap();
    assert!(cf.apps().find(&app.guid).await.unwrap().is_none());
    cf.apps().delete(&app.guid).await.unwrap();
}

#[tokio::test]
async fn lists_follow_every_page() {
    let sim = start_sim(|c| c.default_per_page = 2);
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    for i in 0..5 {
        cf.apps().create(&new_app(&space, &format!("app-{i}"))).await.unwrap();
    }
    cf.trace().clear();
    let apps = cf.apps().list(&ListParams::new().filter("space_guids", [&space.guid]).per_page(2)).await.unwrap();
    let mut names: Vec<_> = apps.iter().map(|a| a.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["app-0", "app-1", "app-2", "app-3", "app-4"]);
    assert_eq!(cf.trace().count_matching("GET", "/v3/apps"), 3, "{:#?}", cf.trace().requests());

    // include= objects are merged across pages.
    let listed = cf
        .apps()
        .list_with_included(&ListParams::new().filter("space_guids", [&space.guid]).include("space").per_page(2))
        .await
        .unwrap();
    assert_eq!(listed.resources.len(), 5);
    let spaces: Vec<Space> = listed.included.get("spaces").unwrap();
    assert_eq!(spaces.len(), 1);
    assert_eq!(spaces[0].guid, space.guid);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_before_use_and_a_rejected_one_once_after() {
    let sim = start_sim(|_| {});
    sim.set_token_ttl(Duration::from_secs(3));
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    // Past the refresh point (a third of the life before expiry) and past expiry itself.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    cf.apps()
        .list_filtered(&AppFilter { space_guids: vec![space.guid.clone()], ..AppFilter::default() })
        .await
        .unwrap();
    assert_eq!(cf.trace().count_matching("POST", "/oauth/token"), 2);
    assert!(cf.trace().requests().iter().all(|r| r.status != Some(401)), "no request went out with a stale token");

    // CC rejects the token (CF-InvalidAuthToken): refresh once and replay.
    sim.set_token_ttl(Duration::from_secs(1200));
    cf.refresh_now().await.unwrap();
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/spaces/:guid".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Status { status: 401, code: None, title: None, detail: None },
    });
    let before = cf.trace().count_matching("POST", "/oauth/token");
    cf.spaces().get(&space.guid).await.unwrap();
    assert_eq!(cf.trace().count_matching("POST", "/oauth/token"), before + 1);

    // The policy server's refusal of a token UAA no longer vouches for (401 "failed to verify token with uaa"):
    // the same refresh and replay.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/networking/v1/external/policies".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Status {
            status: 401,
            code: None,
            title: None,
            detail: Some("failed to verify token with uaa".into()),
        },
    });
    let before = cf.trace().count_matching("POST", "/oauth/token");
    let policies: serde_json::Value = cf.get("/networking/v1/external/policies").await.unwrap();
    assert_eq!(policies["policies"], serde_json::json!([]), "{policies}");
    assert_eq!(cf.trace().count_matching("POST", "/oauth/token"), before + 1);

    // A 401 CF-NotAuthenticated is not a token problem: no refresh, the error surfaces.
    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/spaces/:guid".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Status {
            status: 401,
            code: Some(10002),
            title: Some("CF-NotAuthenticated".into()),
            detail: Some("Authentication error".into()),
        },
    });
    let before = cf.trace().count_matching("POST", "/oauth/token");
    let err = cf.spaces().get(&space.guid).await.unwrap_err();
    assert!(err.to_string().contains("401 CF-NotAuthenticated (10002)"), "{err}");
    assert_eq!(cf.trace().count_matching("POST", "/oauth/token"), before);
}

#[tokio::test]
async fn a_rejected_refresh_token_means_logging_in_again() {
    let sim = start_sim(|c| c.refresh_token_ttl_secs = 1);
    let cf = connect(&sim).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cf.refresh_now().await.unwrap();
    let token_posts: Vec<_> =
        cf.trace().requests().into_iter().filter(|r| r.path == "/oauth/token").map(|r| r.status).collect();
    assert_eq!(token_posts.len(), 3, "login, rejected refresh, login again: {token_posts:?}");
    assert!(token_posts[1].is_some_and(|s| (400..500).contains(&s)), "{token_posts:?}");
    assert_eq!(token_posts[2], Some(200));
    home_space(&cf, &sim).await;
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_surfaced() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;

    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/spaces/:guid".into(),
        nth: 1,
        times: 2,
        action: FaultAction::Status { status: 429, code: None, title: None, detail: None },
    });
    cf.trace().clear();
    cf.spaces().get(&space.guid).await.unwrap();
    let statuses: Vec<_> = cf.trace().requests().iter().map(|r| (r.status, r.attempt)).collect();
    assert_eq!(statuses, [(Some(429), 1), (Some(429), 2), (Some(200), 3)]);

    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/spaces/:guid".into(),
        nth: 1,
        times: 2,
        action: FaultAction::Status { status: 502, code: None, title: None, detail: None },
    });
    cf.spaces().get(&space.guid).await.unwrap();

    sim.add_fault(Fault {
        method: Some("GET".into()),
        path: "/v3/spaces/:guid".into(),
        nth: 1,
        times: 0,
        action: FaultAction::Status { status: 500, code: None, title: None, detail: None },
    });
    cf.trace().clear();
    let err = cf.spaces().get(&space.guid).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("GET /v3/spaces/{}: 500 CF-UnknownError (10001): An unknown error occurred.", space.guid)
    );
    assert_eq!(cf.trace().count(), RetryPolicy::fast().max_attempts as usize);
    sim.clear_faults();

    // A create answered with 500 is not replayed blindly: it is looked up, and created again only if absent.
    sim.add_fault(Fault {
        method: Some("POST".into()),
        path: "/v3/apps".into(),
        nth: 1,
        times: 1,
        action: FaultAction::Status { status: 500, code: None, title: None, detail: None },
    });
    let app = cf.apps().create(&new_app(&space, "after-500")).await.unwrap();
    assert_eq!(app.name, "after-500");
    assert_eq!(apps_named(&cf, "after-500").await.len(), 1);
}

const RATE_LIMITED: &str =
    r#"{"errors":[{"code":10013,"title":"CF-RateLimitExceeded","detail":"Rate Limit Exceeded"}]}"#;

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = start_sim(|_| {});
    let infos = Arc::new(AtomicUsize::new(0));
    let served = infos.clone();
    let api = scripted_api(Some(sim.info().uaa.clone()), Some("3.228.0"), move |_, _| {
        if served.fetch_add(1, Ordering::SeqCst) == 0 {
            ("429 Too Many Requests", "Retry-After: 1\r\n".into(), RATE_LIMITED.into())
        } else {
            ("200 OK", String::new(), r#"{"name":"scripted"}"#.into())
        }
    })
    .await;
    let mut s = settings(&sim);
    s.api = api;
    s.retry = RetryPolicy { max_retry_after: Duration::from_secs(5), ..RetryPolicy::fast() };
    let cf = CfClient::connect(s).await.unwrap();
    let started = Instant::now();
    let info = cf.info().await.unwrap();
    assert_eq!(info.name.as_deref(), Some("scripted"));
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
    assert_eq!(infos.load(Ordering::SeqCst), 2);
}

/// CC's rate limiter (`middleware/base_rate_limiter.rb`) answers `Retry-After: <seconds until its counter
/// resets>`, up to an hour: beyond the retry budget the run stops at once with the time it may go on.
#[tokio::test]
async fn a_retry_after_beyond_the_budget_fails_at_once_naming_the_time() {
    let sim = start_sim(|_| {});
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let api = scripted_api(Some(sim.info().uaa.clone()), Some("3.228.0"), move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        ("429 Too Many Requests", "Retry-After: 3600\r\n".into(), RATE_LIMITED.into())
    })
    .await;
    let mut s = settings(&sim);
    s.api = api;
    s.retry = RetryPolicy { max_retry_after: Duration::from_secs(5), ..RetryPolicy::fast() };
    let cf = CfClient::connect(s).await.unwrap();
    let started = Instant::now();
    let err = cf.info().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "waited {:?}", started.elapsed());
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("GET /v3/info: rate limited by Cloud Controller until "), "{text}");
    assert!(text.ends_with(" UTC (Retry-After: 3600)"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Only the Cloud Controller's own rate limiter ends the run at once: a long `Retry-After` from UAA is waited
/// for within the budget, as before.
#[tokio::test]
async fn a_long_retry_after_from_uaa_is_capped_not_fatal() {
    let tokens = Arc::new(AtomicUsize::new(0));
    let served = tokens.clone();
    let uaa = scripted_api(None, None, move |_, _| {
        if served.fetch_add(1, Ordering::SeqCst) == 0 {
            ("429 Too Many Requests", "Retry-After: 3600\r\n".into(), r#"{"error":"too_many_requests"}"#.into())
        } else {
            (
                "200 OK",
                String::new(),
                r#"{"access_token":"opaque-token","token_type":"bearer","expires_in":3600}"#.into(),
            )
        }
    })
    .await;
    let api =
        scripted_api(Some(uaa), Some("3.228.0"), |_, _| ("200 OK", String::new(), r#"{"name":"scripted"}"#.into()))
            .await;
    let credentials = Credentials::Password { username: "scripted-user".into(), password: "scripted-password".into() };
    let mut s = Settings::new(&api, credentials);
    s.retry = RetryPolicy { max_retry_after: Duration::from_millis(200), ..RetryPolicy::fast() };
    s.proxy = ProxySettings::none();
    let cf = CfClient::connect(s).await.unwrap();
    assert_eq!(tokens.load(Ordering::SeqCst), 2);
    assert_eq!(cf.info().await.unwrap().name.as_deref(), Some("scripted"));
}

/// `POST /v3/droplets` takes only `relationships` and `process_types` (`app/messages/droplet_create_message.rb`,
/// a BaseMessage with `NoAdditionalKeysValidator`): anything else is a 422 "Unknown field(s)".
#[tokio::test]
async fn a_droplet_is_created_with_only_the_keys_cc_accepts() {
    let sim = start_sim(|_| {});
    let api = scripted_api(Some(sim.info().uaa.clone()), Some("3.228.0"), |line, body| {
        assert!(line.starts_with("POST /v3/droplets "), "{line}");
        let sent: serde_json::Value = serde_json::from_str(body).unwrap();
        let unknown: Vec<_> = sent
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !["relationships", "process_types"].contains(&k.as_str()))
            .map(|k| format!("'{k}'"))
            .collect();
        if !unknown.is_empty() {
            let detail = format!("Unknown field(s): {}", unknown.join(", "));
            let error =
                serde_json::json!({"errors": [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": detail}]});
            return ("422 Unprocessable Entity", String::new(), error.to_string());
        }
        let droplet = serde_json::json!({
            "guid": "d-1", "state": "AWAITING_UPLOAD", "process_types": sent["process_types"],
            "relationships": {"app": {"data": {"guid": sent["relationships"]["app"]["data"]["guid"]}}},
        });
        ("201 Created", String::new(), droplet.to_string())
    })
    .await;
    let mut s = settings(&sim);
    s.api = api;
    let cf = CfClient::connect(s).await.unwrap();
    let process_types = BTreeMap::from([("web".to_owned(), "./server".to_owned())]);
    let droplet = cf.droplets().create("app-1", &process_types).await.unwrap();
    assert_eq!(droplet.state, DropletState::AwaitingUpload);
    assert_eq!(droplet.app_guid(), Some("app-1"));
    assert_eq!(droplet.process_types, process_types);
}

#[tokio::test]
async fn creates_whose_answer_is_lost_are_not_duplicated() {
    let sim = start_sim(|c| c.extra_spaces = vec!["sim-org/staging".into()]);
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let drop_after = |path: &str| Fault {
        method: Some("POST".into()),
        path: path.into(),
        nth: 1,
        times: 1,
        action: FaultAction::DropAfter,
    };

    sim.add_fault(drop_after("/v3/apps"));
    let app = cf.apps().create(&new_app(&space, "lost-answer")).await.unwrap();
    let same = apps_named(&cf, "lost-answer").await;
    assert_eq!(same.len(), 1, "exactly one app");
    assert_eq!(same[0].guid, app.guid);
    assert!(sim.request_log().iter().any(|r| r.path == "/v3/apps" && r.method == "POST" && r.dropped));

    sim.add_fault(drop_after("/v3/packages"));
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    assert_eq!(cf.packages().for_app(&app.guid).await.unwrap().len(), 1, "exactly one package");
    assert_eq!(package.state, PackageState::AwaitingUpload);

    let domain = cf.domains().by_name(&sim.info().domain).await.unwrap().unwrap();
    sim.add_fault(drop_after("/v3/routes"));
    let route = cf.routes().create(&new_route(&space, &domain, "lost-answer")).await.unwrap();
    let routes = cf.routes().list(&ListParams::new().filter("hosts", ["lost-answer"])).await.unwrap();
    assert_eq!(routes.len(), 1, "exactly one route");
    assert_eq!(routes[0].guid, route.guid);

    // A route that exists in the space already is found, not an error (CC answers the create 422 "Route already
    // exists with host …", app/actions/route_create.rb).
    let again = new_route(&space, &domain, "lost-answer");
    assert_eq!(cf.routes().create(&again).await.unwrap().guid, route.guid);
    // Hosts are unique per domain across the foundation: taken by another space, it stays an error.
    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    let staging = cf.spaces().require_by_name(&org.guid, "staging").await.unwrap();
    let elsewhere = cf.routes().create(&NewRoute { space_guid: staging.guid.clone(), ..again }).await.unwrap_err();
    assert!(elsewhere.cf().is_some_and(|e| e.is_name_taken()), "{elsewhere}");

    // A droplet carries no label to be found by (CC takes no metadata on its create), so it is created again:
    // the one the lost answer left stays AWAITING_UPLOAD and is never used.
    sim.add_fault(drop_after("/v3/droplets"));
    let droplet = cf.droplets().create(&app.guid, &BTreeMap::new()).await.unwrap();
    assert_eq!(droplet.state, DropletState::AwaitingUpload);
    assert_eq!(cf.droplets().get(&droplet.guid).await.unwrap().app_guid(), Some(app.guid.as_str()));

    // The connection dropped before the request was processed: looked up, absent, created once.
    sim.add_fault(Fault { action: FaultAction::DropBefore, ..drop_after("/v3/apps") });
    cf.apps().create(&new_app(&space, "dropped-before")).await.unwrap();
    assert_eq!(apps_named(&cf, "dropped-before").await.len(), 1);
}

#[tokio::test]
async fn tls_with_ca_cert_without_it_and_with_skip_cert_check() {
    let sim = start_sim(|c| c.tls = true);
    assert!(sim.info().api.starts_with("https://"));
    let with_ca = settings(&sim);
    assert!(with_ca.ca_cert.is_some());
    let cf = CfClient::connect(with_ca.clone()).await.unwrap();
    home_space(&cf, &sim).await;

    let mut without = with_ca.clone();
    without.ca_cert = None;
    let err = CfClient::connect(without).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("TLS certificate verification failed"), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("ca_cert"), "{text}");

    let mut skip = with_ca;
    skip.ca_cert = None;
    skip.skip_cert_check = true;
    let cf = CfClient::connect(skip).await.unwrap();
    home_space(&cf, &sim).await;
}

#[tokio::test]
async fn proxies_from_settings_are_used_unless_no_proxy_matches() {
    let sim = start_sim(|_| {});
    let (proxy, count) = start_proxy().await;
    let mut via = settings(&sim);
    via.proxy = ProxySettings { http_proxy: Some(proxy.clone()), https_proxy: Some(proxy.clone()), no_proxy: None };
    let cf = CfClient::connect(via.clone()).await.unwrap();
    home_space(&cf, &sim).await;
    assert!(count.load(Ordering::SeqCst) > 0, "requests went through the proxy");

    let before = count.load(Ordering::SeqCst);
    let mut bypass = via;
    bypass.proxy.no_proxy = Some("localhost,127.0.0.1".into());
    let cf = CfClient::connect(bypass).await.unwrap();
    home_space(&cf, &sim).await;
    assert_eq!(count.load(Ordering::SeqCst), before, "no_proxy bypasses the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_starts_with_a_refreshed_token_once_the_token_has_aged() {
    let sim = start_sim(|c| c.token_ttl_secs = 6);
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let app = cf.apps().create(&new_app(&space, "aged")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("app.zip");
    write_zip(&zip, &[("Procfile", b"web: sleep 600\n".to_vec(), 0o644)]);
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    // Past a third of the token's 6 s life, yet before the client would refresh it for an ordinary request.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cf.trace().clear();
    cf.packages().upload(&package.guid, Some(&zip), &[]).await.unwrap();
    let order: Vec<_> = cf.trace().requests().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(order.first().map(String::as_str), Some("POST /oauth/token"), "token refreshed first: {order:?}");
}

#[tokio::test]
async fn upload_sends_only_what_the_cache_lacks() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let app = cf.apps().create(&new_app(&space, "bits")).await.unwrap();
    let files = vec![
        ("Procfile", b"web: sleep 600\n".to_vec(), 0o644),
        ("lib/a.bin", big(1, 80_000), 0o644),
        ("lib/b.bin", big(2, 90_000), 0o644),
        ("bin/run", b"#!/bin/sh\nexec sleep 600\n".to_vec(), 0o755),
    ];
    let first_zip = dir.path().join("first.zip");
    let all = write_zip(&first_zip, &files);
    assert!(cf.resource_matches().find_cached(&all).await.unwrap().is_empty(), "nothing cached yet");
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    cf.trace().clear();
    let uploaded = cf.packages().upload(&package.guid, Some(&first_zip), &[]).await.unwrap();
    assert_ne!(uploaded.state, PackageState::AwaitingUpload);
    let order: Vec<_> = cf.trace().requests().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert!(order.first().is_some_and(|r| r.ends_with("/upload")), "a token this fresh is not refreshed: {order:?}");
    cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();

    // Change one file: everything else is matched and only that file travels.
    let mut changed = files.clone();
    changed[2].1 = big(3, 90_000);
    let wanted: Vec<FileResource> = changed.iter().map(|(p, c, m)| resource(p, c, *m)).collect();
    let matched = cf.resource_matches().find_cached(&wanted).await.unwrap();
    let matched_paths: Vec<_> = matched.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(matched_paths, ["Procfile", "lib/a.bin", "bin/run"]);
    let second_zip = dir.path().join("second.zip");
    write_zip(&second_zip, &changed[2..3]);
    assert_eq!(archive::files(&second_zip).len(), 1);
    let second = cf.packages().create_bits(&app.guid).await.unwrap();
    cf.packages().upload(&second.guid, Some(&second_zip), &matched).await.unwrap();
    cf.packages().wait_ready(&second.guid, WAIT).await.unwrap();

    let download = dir.path().join("second-download.zip");
    cf.packages().download(&second.guid, &download).await.unwrap();
    let entries = archive::files(&download);
    for (path, contents, _) in &changed {
        assert_eq!(entries.get(*path), Some(contents), "{path} in the merged package");
    }

    // Everything matched: only `resources` is sent.
    let third = cf.packages().create_bits(&app.guid).await.unwrap();
    let everything = cf.resource_matches().find_cached(&wanted).await.unwrap();
    assert_eq!(everything.len(), 4);
    cf.packages().upload(&third.guid, None, &everything).await.unwrap();
    cf.packages().wait_ready(&third.guid, WAIT).await.unwrap();

    // Copy between apps.
    let other = cf.apps().create(&new_app(&space, "bits-copy")).await.unwrap();
    let copy = cf.packages().copy(&third.guid, &other.guid).await.unwrap();
    assert_eq!(cf.packages().wait_ready(&copy.guid, WAIT).await.unwrap().app_guid(), Some(other.guid.as_str()));
}

#[tokio::test]
async fn resource_matching_asks_in_batches_of_at_most_5000() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let resources: Vec<FileResource> =
        (0..5001).map(|i| resource(&format!("f{i}"), format!("content {i}").as_bytes(), 0o644)).collect();
    cf.trace().clear();
    assert!(cf.resource_matches().find_cached(&resources).await.unwrap().is_empty());
    assert_eq!(cf.trace().count_matching("POST", "/v3/resource_matches"), 2);
    cf.trace().clear();
    cf.resource_matches().batch_size(1000).find_cached(&resources).await.unwrap();
    assert_eq!(cf.trace().count_matching("POST", "/v3/resource_matches"), 6);
}

#[tokio::test]
async fn staging_logs_are_followed_and_recent_logs_read() {
    let sim = start_sim(|c| c.staging_delay_ms = 2500);
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let (app, package) = app_with_package(&cf, &space, "staged", dir.path()).await;

    let build = cf.builds().create(&package, &NewBuild::default()).await.unwrap();
    let mut lines = Vec::new();
    let mut polls = 0;
    let start = cf_blue_green_resource::cf::logs::now_ns() - 60_000_000_000;
    let builds = cf.builds();
    let staged = cf
        .logs()
        .follow_while(&app, start, builds.wait_staged(&build.guid, WAIT, |_, _| polls += 1), |line| {
            lines.push((Instant::now(), line.clone()))
        })
        .await
        .unwrap();
    assert!(staged.droplet_guid().is_some());
    assert!(polls > 0);
    let texts: Vec<String> = lines.iter().map(|(_, l)| l.display()).collect();
    assert!(texts.iter().any(|t| t == "[STG/0] Downloading app package..."), "{texts:#?}");
    assert_eq!(texts.iter().filter(|t| t.contains("Uploading complete")).count(), 1, "each line once: {texts:#?}");
    assert!(lines.first().unwrap().0 < lines.last().unwrap().0, "lines arrived while staging ran");

    let recent = cf.logs().recent(&app, 100).await.unwrap();
    assert!(recent.iter().any(|l| l.is_staging() && l.message.contains("Downloaded app package")));
    assert!(recent.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));

    // A failed staging is an error with CF's reason.
    sim.fail_staging(&app).unwrap();
    let build = cf.builds().create(&package, &NewBuild::default()).await.unwrap();
    let err = cf.builds().wait_staged(&build.guid, WAIT, |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("staging failed: BuildpackCompileFailed"), "{err}");
}

#[tokio::test]
async fn droplets_round_trip_and_copy() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let (app, package) = app_with_package(&cf, &space, "source", dir.path()).await;
    let droplet = stage(&cf, &package).await;
    let staged = cf.droplets().get(&droplet).await.unwrap();
    assert_eq!(staged.process_types.get("web").map(String::as_str), Some("sleep 600"));

    let tgz = dir.path().join("droplet.tgz");
    let size = cf.droplets().download(&droplet, &tgz).await.unwrap();
    assert_eq!(size, std::fs::metadata(&tgz).unwrap().len());
    assert!(size > 0);

    let target = cf.apps().create(&new_app(&space, "target")).await.unwrap();
    let uploaded = cf.droplets().create(&target.guid, &staged.process_types).await.unwrap();
    assert_eq!(uploaded.state, DropletState::AwaitingUpload);
    // The upload arrives but its answer is lost: the droplet's state says so, and it is not sent again.
    let lost = Fault {
        method: Some("POST".into()),
        path: "/v3/droplets/:guid/upload".into(),
        nth: 1,
        times: 1,
        action: FaultAction::DropAfter,
    };
    sim.add_fault(lost);
    let uploaded = cf.droplets().upload(&uploaded.guid, &tgz, WAIT).await.unwrap();
    assert_eq!(uploaded.state, DropletState::Staged);
    let uploads: Vec<_> =
        sim.request_log().into_iter().filter(|r| r.method == "POST" && r.path.ends_with("/upload")).collect();
    assert_eq!(uploads.len(), 2, "the package's upload and the droplet's, each once");
    assert!(uploads[1].dropped, "the droplet upload's answer was lost");
    let again = dir.path().join("again.tgz");
    cf.droplets().download(&uploaded.guid, &again).await.unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&tgz).unwrap());

    cf.apps().set_current_droplet(&target.guid, &uploaded.guid).await.unwrap();
    assert_eq!(cf.apps().current_droplet(&target.guid).await.unwrap().unwrap().guid, uploaded.guid);

    let copy_app = cf.apps().create(&new_app(&space, "copy")).await.unwrap();
    let copy = cf.droplets().copy(&droplet, &copy_app.guid).await.unwrap();
    let copy = cf.droplets().wait_staged(&copy.guid, WAIT).await.unwrap();
    assert_eq!(copy.app_guid(), Some(copy_app.guid.as_str()));
    assert!(!cf.droplets().for_app(&app).await.unwrap().is_empty());
}

#[tokio::test]
async fn processes_are_configured_scaled_started_and_observed() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let (app, package) = app_with_package(&cf, &space, "runner", dir.path()).await;
    let droplet = stage(&cf, &package).await;
    cf.apps().set_current_droplet(&app, &droplet).await.unwrap();

    let web = cf.processes().of_app(&app, "web").await.unwrap();
    assert_eq!(cf.processes().for_app(&app).await.unwrap().len(), 1);
    let updated = cf
        .processes()
        .update(
            &web.guid,
            &ProcessUpdate {
                command: Some(Some("sleep 601".into())),
                health_check: Some(HealthCheck { kind: "process".into(), ..HealthCheck::default() }),
                ..ProcessUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.command.as_deref(), Some("sleep 601"));
    assert_eq!(updated.health_check.unwrap().kind, "process");
    let scaled = cf.processes().scale(&web.guid, &Scale { instances: Some(2), ..Scale::default() }).await.unwrap();
    assert_eq!(scaled.instances, 2);

    let started = cf.apps().start(&app).await.unwrap();
    assert_eq!(started.state, AppState::Started);
    let processes = cf.processes();
    let stats = Wait::new("both instances to run", WAIT)
        .until(|| async {
            let stats = processes.stats(&web.guid).await?;
            Ok(if stats.all_ready(2) { Poll::Ready(stats) } else { Poll::Pending })
        })
        .await
        .unwrap();
    assert_eq!(stats.resources.len(), 2);
    assert!(stats.resources.iter().all(|i| i.state == InstanceState::Running));

    let stopped = cf.apps().stop(&app).await.unwrap();
    assert_eq!(stopped.state, AppState::Stopped);
    cf.apps().delete(&app).await.unwrap();
}

#[tokio::test]
async fn routes_map_and_unmap_apps_and_are_deleted_by_job() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let domain = cf.domains().by_name(&sim.info().domain).await.unwrap().unwrap();
    let blue = cf.apps().create(&new_app(&space, "shop")).await.unwrap();
    let green = cf.apps().create(&new_app(&space, "shop-green")).await.unwrap();
    let route = cf.routes().create(&new_route(&space, &domain, "shop")).await.unwrap();
    assert_eq!(route.host, "shop");
    assert_eq!(route.path, "");
    let found = cf.routes().find_exact(&space.guid, &domain.guid, "shop", "").await.unwrap().unwrap();
    assert_eq!(found.guid, route.guid);
    assert!(cf.routes().find_exact(&space.guid, &domain.guid, "shop", "/x").await.unwrap().is_none());
    assert!(
        cf.trace()
            .requests()
            .iter()
            .any(|r| r.query.as_deref().is_some_and(|q| q.contains("paths=&") || q.ends_with("paths=")))
    );

    cf.routes().map_app(&route.guid, &blue.guid).await.unwrap();
    let both = cf.routes().map_app(&route.guid, &green.guid).await.unwrap();
    assert_eq!(both.len(), 2);
    // Inserting the same destination again changes nothing.
    assert_eq!(cf.routes().map_app(&route.guid, &green.guid).await.unwrap().len(), 2);
    assert_eq!(cf.routes().for_app(&green.guid).await.unwrap()[0].guid, route.guid);
    assert_eq!(cf.routes().unmap_app(&route.guid, &blue.guid).await.unwrap(), 1);
    let left = cf.routes().destinations(&route.guid).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].app.guid, green.guid);
    assert!(cf.routes().for_app(&blue.guid).await.unwrap().is_empty());

    // Removing a destination that is gone already (a retry after a lost answer) is not an error.
    cf.routes().remove_destination(&route.guid, &left[0].guid).await.unwrap();
    cf.routes().remove_destination(&route.guid, &left[0].guid).await.unwrap();
    assert!(cf.routes().destinations(&route.guid).await.unwrap().is_empty());

    // Production serves HTTP/2 on port 9000: the candidate mapped like it is reached the same way, where a plain
    // map gets CC's defaults (http1, 8080) and would lose the traffic.
    let grpc = NewDestination { port: Some(9000), protocol: Some("http2".into()), ..NewDestination::app(&blue.guid) };
    let production = cf.routes().insert_destinations(&route.guid, &[grpc]).await.unwrap().remove(0);
    assert_eq!((production.port, production.protocol.as_deref()), (Some(9000), Some("http2")));
    let mapped = cf.routes().map_app_like(&route.guid, &green.guid, &production).await.unwrap();
    let candidate = mapped.iter().find(|d| d.app.guid == green.guid).unwrap();
    assert_eq!((candidate.port, candidate.protocol.as_deref()), (Some(9000), Some("http2")));
    assert_eq!(candidate.app.process.as_ref().unwrap().kind, "web");
    let plain = cf.routes().map_app(&route.guid, &green.guid).await.unwrap();
    let defaults = plain.iter().find(|d| d.app.guid == green.guid && d.port != Some(9000)).unwrap();
    assert_eq!((defaults.port, defaults.protocol.as_deref()), (Some(8080), Some("http1")));
    assert!(!cf.routes().get(&route.guid).await.unwrap().has_weighted_destinations());

    // A route whose traffic is split by weights (set by someone else with a PATCH) refuses inserts and single
    // removals; the route says so before anything is tried, and CC's refusal is recognised.
    let token = sim.issued_tokens().into_iter().next().unwrap();
    let weights = serde_json::json!({"destinations": [
        {"app": {"guid": blue.guid}, "weight": 60},
        {"app": {"guid": green.guid}, "weight": 40},
    ]});
    let path = format!("/v3/routes/{}/destinations", route.guid);
    let (status, answer) = raw_request(&sim.info().api, "PATCH", &path, &token, &weights.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    let weighted = cf.routes().get(&route.guid).await.unwrap();
    assert!(weighted.has_weighted_destinations());
    let refused = cf.routes().map_app_like(&route.guid, &green.guid, &production).await.unwrap_err();
    assert!(refused.cf().is_some_and(|e| e.is_weighted_destinations()), "{refused}");
    let refused = cf.routes().unmap_app(&route.guid, &blue.guid).await.unwrap_err();
    assert!(refused.cf().is_some_and(|e| e.is_weighted_destinations()), "{refused}");

    cf.routes().delete(&route.guid).await.unwrap();
    assert!(cf.routes().find(&route.guid).await.unwrap().is_none());
}

#[tokio::test]
async fn service_bindings_and_manifests() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let app = cf.apps().create(&new_app(&space, "bound")).await.unwrap();
    let mut creds = BTreeMap::new();
    creds.insert("uri".to_owned(), serde_json::json!("postgres://db"));
    let db = cf.service_instances().create_user_provided(&space.guid, "db", &creds).await.unwrap();
    assert_eq!(cf.service_instances().by_name(&space.guid, "db").await.unwrap().unwrap().guid, db.guid);
    let spec =
        NewBinding { app_guid: app.guid.clone(), service_instance_guid: db.guid.clone(), ..NewBinding::default() };
    let binding = cf.bindings().create(&spec, WAIT).await.unwrap();
    assert_eq!(binding.app_guid(), Some(app.guid.as_str()));
    // Binding the same pair again returns the existing binding.
    assert_eq!(cf.bindings().create(&spec, WAIT).await.unwrap().guid, binding.guid);
    let (bindings, instances) = cf.bindings().for_app(&app.guid).await.unwrap();
    assert_eq!(bindings.len(), 1);
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].name, "db");

    let yaml = "applications:\n- name: from-manifest\n  instances: 1\n  env:\n    MODE: manifest\n";
    let job = cf.manifests().apply(&space.guid, yaml, WAIT).await.unwrap();
    assert!(job.operation.contains("apply_manifest"), "{}", job.operation);
    let created = cf.apps().by_name(&space.guid, "from-manifest").await.unwrap().unwrap();
    assert_eq!(cf.apps().env_vars(&created.guid).await.unwrap().get("MODE").map(String::as_str), Some("manifest"));
}

#[tokio::test]
async fn uploads_builds_and_bindings_whose_answer_is_lost_are_not_repeated() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let drop_after = |path: &str| Fault {
        method: Some("POST".into()),
        path: path.into(),
        nth: 1,
        times: 1,
        action: FaultAction::DropAfter,
    };
    let app = cf.apps().create(&new_app(&space, "lossy")).await.unwrap();
    let zip = dir.path().join("app.zip");
    write_zip(&zip, &[("Procfile", b"web: sleep 600\n".to_vec(), 0o644)]);
    let package = cf.packages().create_bits(&app.guid).await.unwrap();

    // The upload arrived but its answer was lost: the package state says so, and it is not sent again.
    sim.add_fault(drop_after("/v3/packages/:guid/upload"));
    let uploaded = cf.packages().upload(&package.guid, Some(&zip), &[]).await.unwrap();
    assert_ne!(uploaded.state, PackageState::AwaitingUpload);
    let uploads = sim.request_log().iter().filter(|r| r.method == "POST" && r.path.ends_with("/upload")).count();
    assert_eq!(uploads, 1);
    cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();

    sim.add_fault(drop_after("/v3/builds"));
    let build = cf.builds().create(&package.guid, &NewBuild::default()).await.unwrap();
    let builds = cf.builds().list(&ListParams::new().filter("app_guids", [&app.guid])).await.unwrap();
    assert_eq!(builds.len(), 1, "exactly one build");
    assert_eq!(builds[0].guid, build.guid);
    cf.builds().wait_staged(&build.guid, WAIT, |_, _| {}).await.unwrap();

    let creds = BTreeMap::new();
    let db = cf.service_instances().create_user_provided(&space.guid, "cache", &creds).await.unwrap();
    sim.add_fault(drop_after("/v3/service_credential_bindings"));
    let spec =
        NewBinding { app_guid: app.guid.clone(), service_instance_guid: db.guid.clone(), ..NewBinding::default() };
    let binding = cf.bindings().create(&spec, WAIT).await.unwrap();
    let (bindings, _) = cf.bindings().for_app(&app.guid).await.unwrap();
    assert_eq!(bindings.len(), 1, "exactly one binding");
    assert_eq!(bindings[0].guid, binding.guid);
}

#[tokio::test]
async fn a_large_upload_streams_from_disk() {
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let dir = tempfile::tempdir().unwrap();
    let app = cf.apps().create(&new_app(&space, "large")).await.unwrap();
    // 24 MB of incompressible-ish data, stored (not deflated) so building the zip is quick.
    let zip_path = dir.path().join("large.zip");
    let blobs: Vec<(String, Vec<u8>)> = (0..3u8)
        .map(|part| {
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(part);
            let chunk: Vec<u8> = (0..1 << 20)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            (format!("blob-{part}.bin"), chunk.repeat(8))
        })
        .collect();
    let mut entries: Vec<archive::Entry> = vec![("Procfile", b"web: sleep 600\n", Some(0o644))];
    entries.extend(blobs.iter().map(|(name, data)| (name.as_str(), data.as_slice(), Some(0o644))));
    archive::zip(&zip_path, zip::CompressionMethod::Stored, &entries);
    let size = std::fs::metadata(&zip_path).unwrap().len();
    assert!(size > 24 << 20);
    let package = cf.packages().create_bits(&app.guid).await.unwrap();
    cf.packages().upload(&package.guid, Some(&zip_path), &[]).await.unwrap();
    cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();
    let back = dir.path().join("back.zip");
    cf.packages().download(&package.guid, &back).await.unwrap();
    let entries = archive::files(&back);
    assert_eq!(entries.len(), 4);
    assert_eq!(entries["blob-2.bin"].len(), 8 << 20);
}

/// The real packer (`bits`) with the client: gather, match, zip what is missing, upload; then the same tree with
/// one file changed uploads a zip holding only that file (plus directory entries).
#[tokio::test]
async fn gathered_bits_are_matched_zipped_and_uploaded() {
    use cf_blue_green_resource::bits::{AppBits, gather, write_zip as pack};
    let sim = start_sim(|_| {});
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let put = tempfile::tempdir().unwrap();
    let root = put.path().join("app");
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::write(root.join("Procfile"), "web: sleep 600\n").unwrap();
    std::fs::write(root.join("lib/a.bin"), big(7, 100_000)).unwrap();
    std::fs::write(root.join("lib/b.bin"), big(8, 100_000)).unwrap();
    std::fs::write(root.join(".cfignore"), "secret.txt\n").unwrap();
    std::fs::write(root.join("secret.txt"), "do not upload").unwrap();
    let app = cf.apps().create(&new_app(&space, "packed")).await.unwrap();

    let push = |expect_files: usize| {
        let cf = cf.clone();
        let app = app.guid.clone();
        let put = put.path().to_path_buf();
        async move {
            let bits = AppBits::resolve(&put, "app").unwrap();
            let gathered = gather(&bits).unwrap();
            let (cached, resources) = cf_blue_green_resource::bits::match_cached(&cf, &gathered).await.unwrap();
            let zip = pack(&bits, &gathered, &cached).unwrap();
            assert_eq!(zip.stats().files, expect_files, "files in the zip");
            let package = cf.packages().create_bits(&app).await.unwrap();
            let zip_path = (!zip.is_empty()).then(|| zip.path().to_path_buf());
            cf.packages().upload(&package.guid, zip_path.as_deref(), &resources).await.unwrap();
            cf.packages().wait_ready(&package.guid, WAIT).await.unwrap();
            package.guid
        }
    };
    push(3).await;
    std::fs::write(root.join("lib/b.bin"), big(9, 100_000)).unwrap();
    let second = push(1).await;

    let dir = tempfile::tempdir().unwrap();
    let download = dir.path().join("second.zip");
    cf.packages().download(&second, &download).await.unwrap();
    let entries = archive::files(&download);
    assert_eq!(entries.get("lib/b.bin"), Some(&big(9, 100_000)));
    assert_eq!(entries.get("lib/a.bin"), Some(&big(7, 100_000)));
    assert_eq!(entries.get("Procfile").map(Vec::as_slice), Some(&b"web: sleep 600\n"[..]));
    assert!(!entries.contains_key("secret.txt"), ".cfignore honoured");
}
