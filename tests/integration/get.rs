//! `in` against cf-sim: the real binary writes `metadata.json` and the one-value files for a version, names
//! env vars without their values, reads what `out` recorded (and the droplet's package when nothing was),
//! downloads the droplet on request, answers the same for the same CF state, and fails with a clear message
//! naming the version when its app or droplet is gone or belongs elsewhere. Plain gets cost at most 5 requests
//! (one more for a version whose app was renamed away).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::util::sim::{
    Pushed, connect, describe_requests, home_space, in_request, push, resource_requests, restage, sample_app_dir,
    sample_manifest, source, start_sim, start_sim_with,
};
use crate::util::{Run, run_resource};
use cf_blue_green_resource::cf::CfClient;
use cf_blue_green_resource::cf::apps::AppUpdate;
use cf_blue_green_resource::cf::bindings::NewBinding;
use cf_blue_green_resource::cf::types::MetadataPatch;
use cf_blue_green_resource::protocol::BuildEnv;
use cf_blue_green_resource::record::Audit;
use cf_sim::{RequestRecord, Sim};
use serde_json::{Value, json};

/// The most requests a plain get of a version `out` deployed may make: `GET /`, the token, the apps named like
/// production and its kept versions (one list, the version's app among them), the droplet and the app's manifest.
const MAX_IN_REQUESTS: usize = 5;

/// The names of a get's metadata, in order: an interface, as Concourse 8 makes them local vars
/// (`((.:<get>.<name>))`), documented in the README.
const GET_METADATA_NAMES: [&str; 8] = ["app", "url", "instances", "memory", "stack", "deployed_at", "build", "kept"];

/// One run of `in` into a fresh destination directory (created by `in`, as Concourse leaves it to the script).
struct Get {
    run: Run,
    requests: Vec<RequestRecord>,
    _root: tempfile::TempDir,
    dir: PathBuf,
}

impl Get {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn metadata(&self) -> Value {
        serde_json::from_str(&self.file("metadata.json")).expect("metadata.json is JSON")
    }

    fn answer(&self) -> Value {
        assert_eq!(self.run.status, 0, "in failed:\n{}", self.run.stderr);
        serde_json::from_str(&self.run.stdout).expect("in prints JSON")
    }

    /// Every file `in` wrote, by name.
    fn files(&self) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect()
    }
}

fn get(sim: &Sim, source: &Value, version: &Value, params: Option<Value>) -> Get {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("get");
    sim.reset_request_log();
    let run = run_resource("in", &[dir.to_str().unwrap()], &in_request(source, version, params), &[]);
    let requests = resource_requests(sim);
    eprintln!("in made {} requests:\n{}", requests.len(), describe_requests(&requests));
    Get { run, requests, _root: root, dir }
}

/// A cf-sim with the sample app pushed as `shop` (one instance) and an audit written as `out` writes it: the sim,
/// a client, the app and its package's checksum.
async fn audited_shop() -> (Sim, CfClient, Pushed, String) {
    let sim = start_sim();
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let bits = sample_app_dir();
    let shop = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;
    let checksum = package_checksum(&cf, &shop.package_guid).await;
    write_audit(&cf, &shop, &checksum).await;
    (sim, cf, shop, checksum)
}

/// Records what `out` records when it makes `droplet` production.
async fn write_audit(cf: &CfClient, app: &Pushed, package_checksum: &str) {
    let build = BuildEnv {
        team_name: Some("main".into()),
        pipeline_name: Some("shop".into()),
        job_name: Some("deploy".into()),
        name: Some("42".into()),
        url: Some("https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/42".into()),
        ..BuildEnv::default()
    };
    let mut audit = Audit::new(&build, "deploy-77", &app.droplet_guid, Some(package_checksum.to_owned()));
    audit.deployed_at = Some(humantime::parse_rfc3339("2026-11-26T10:00:00Z").unwrap());
    let patch = MetadataPatch { annotations: audit.to_annotations(), ..MetadataPatch::default() };
    cf.apps().update_metadata(&app.app_guid, &patch).await.unwrap();
}

async fn package_checksum(cf: &CfClient, package_guid: &str) -> String {
    cf.packages().get(package_guid).await.unwrap().data.checksum.unwrap().value.unwrap()
}

#[tokio::test]
async fn in_writes_what_the_version_deployed_without_secret_values() {
    let sim = start_sim();
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let secret = format!("s3cret-{}-value", std::process::id());
    let credentials = BTreeMap::from([("password".to_owned(), json!(format!("db-{secret}")))]);
    let db = cf.service_instances().create_user_provided(&space.guid, "orders-db", &credentials).await.unwrap();
    let bits = sample_app_dir();
    let manifest = sample_manifest(&sim, "shop", 2, &[("SECRET_TOKEN", &secret), ("APP_VERSION", "v7")]);
    let shop = push(&cf, &space, &manifest, bits.path()).await;
    let binding =
        NewBinding { app_guid: shop.app_guid.clone(), service_instance_guid: db.guid, ..NewBinding::default() };
    cf.bindings().create(&binding, crate::util::sim::WAIT).await.unwrap();
    let checksum = package_checksum(&cf, &shop.package_guid).await;
    write_audit(&cf, &shop, &checksum).await;
    let droplet = cf.droplets().get(&shop.droplet_guid).await.unwrap();

    let source = source(&sim, "shop");
    let got = get(&sim, &source, &shop.version(), None);
    let url = format!("http://shop.{}", sim.info().domain);
    assert_eq!(
        got.answer(),
        json!({"version": shop.version(), "metadata": [
            {"name": "app", "value": "shop"},
            {"name": "url", "value": url},
            {"name": "instances", "value": "2"},
            {"name": "memory", "value": "64M"},
            {"name": "stack", "value": "cflinuxfs4"},
            {"name": "deployed_at", "value": "2026-11-26T10:00:00Z"},
            {"name": "build", "value": "main/shop/deploy #42"},
        ]})
    );
    let answer = got.answer();
    let names: Vec<&str> = answer["metadata"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, GET_METADATA_NAMES[..7], "every field known (no kept versions here): the list, in order");
    assert_eq!(got.file("app_guid"), shop.app_guid);
    assert_eq!(got.file("droplet_guid"), shop.droplet_guid);
    assert_eq!(got.file("app_name"), "shop");
    assert_eq!(got.file("url"), url);

    let metadata = got.metadata();
    assert_eq!(
        metadata,
        json!({
            "app_guid": shop.app_guid,
            "app_name": "shop",
            "organization": sim.info().organization,
            "space": sim.info().space,
            "state": "STARTED",
            "instances": 2,
            "memory": "64M",
            "disk_quota": "256M",
            "processes": [{"type": "web", "instances": 2, "memory": "64M", "disk_quota": "256M", "command": null}],
            "stack": "cflinuxfs4",
            "buildpacks": metadata["buildpacks"],
            "droplet_guid": shop.droplet_guid,
            "droplet_state": "STAGED",
            "droplet_is_current": true,
            "droplet_checksum": {"type": "sha256", "value": droplet.checksum.unwrap().value.unwrap()},
            "package_checksum": {"type": "sha256", "value": checksum},
            "process_types": {"web": "./sample-app"},
            "routes": [format!("shop.{}", sim.info().domain)],
            "urls": [url],
            "env_names": ["APP_VERSION", "SECRET_TOKEN"],
            "services": ["orders-db"],
            "staged_at": droplet.created_at,
            "deployed_at": "2026-11-26T10:00:00Z",
            "build": {"team": "main", "pipeline": "shop", "job": "deploy", "name": "42",
                      "url": "https://ci.example.com/teams/main/pipelines/shop/jobs/deploy/builds/42",
                      "deploy_id": "deploy-77"},
        })
    );
    assert!(!metadata["buildpacks"].as_array().unwrap().is_empty(), "{metadata}");

    // Values of env vars and service credentials appear nowhere, nor does the CF password.
    for leak in [secret.as_str(), sim.info().password.as_str()] {
        for (name, contents) in got.files() {
            assert!(!String::from_utf8_lossy(&contents).contains(leak), "{name} holds a secret");
        }
        assert!(!got.run.stdout.contains(leak) && !got.run.stderr.contains(leak), "secret printed");
    }

    // A plain get is cheap, and deterministic: the same CF state gives the same bytes.
    assert!(
        got.requests.len() <= MAX_IN_REQUESTS,
        "in made {} requests:\n{}",
        got.requests.len(),
        describe_requests(&got.requests)
    );
    let again = get(&sim, &source, &shop.version(), None);
    assert_eq!(again.run.stdout, got.run.stdout);
    assert_eq!(again.files(), got.files());
    assert!(sim.request_log().iter().all(|r| r.method == "GET" || r.path == "/oauth/token"), "in only reads");
}

#[tokio::test]
async fn in_reads_a_hand_made_restage_and_older_droplets() {
    let (sim, cf, shop, checksum) = audited_shop().await;
    let restaged = Pushed { droplet_guid: restage(&cf, &shop.app_guid).await, ..shop.clone() };
    let source = source(&sim, "shop");

    // The audit is about the earlier droplet: no build, no deploy time, and the package is read from CF.
    let got = get(&sim, &source, &restaged.version(), None);
    assert_eq!(got.answer()["version"], restaged.version());
    let metadata = got.metadata();
    assert_eq!(metadata["droplet_is_current"], json!(true));
    assert_eq!((&metadata["build"], &metadata["deployed_at"]), (&Value::Null, &Value::Null));
    assert_eq!(metadata["package_checksum"], json!({"type": "sha256", "value": checksum}));
    assert!(got.answer()["metadata"].as_array().unwrap().iter().all(|f| f["name"] != "build"));
    assert!(got.requests.len() <= MAX_IN_REQUESTS + 1, "{}", describe_requests(&got.requests));

    // The version deployed before the restage can still be fetched: its droplet exists, it is just not current.
    let older = get(&sim, &source, &shop.version(), None);
    let metadata = older.metadata();
    assert_eq!(older.file("droplet_guid"), shop.droplet_guid);
    assert_eq!(metadata["droplet_is_current"], json!(false));
    assert_eq!(metadata["build"]["deploy_id"], json!("deploy-77"));
    assert_eq!(metadata["package_checksum"], json!({"type": "sha256", "value": checksum}));
    assert!(older.requests.len() <= MAX_IN_REQUESTS, "{}", describe_requests(&older.requests));
}

#[tokio::test]
async fn in_reads_a_version_whose_app_was_renamed_away_on_its_own() {
    let (sim, cf, shop, _) = audited_shop().await;
    let renamed = AppUpdate { name: Some("shop-archived".into()), ..AppUpdate::default() };
    cf.apps().update(&shop.app_guid, &renamed).await.unwrap();
    let got = get(&sim, &source(&sim, "shop"), &shop.version(), None);
    let answer = got.answer();
    assert_eq!(answer["version"], shop.version());
    assert_eq!(got.file("app_name"), "shop-archived");
    assert!(got.run.stderr.contains("its app is now 'shop-archived'"), "{}", got.run.stderr);
    // Not among the apps named like production: read on its own, after the list.
    let app_reads: Vec<&RequestRecord> =
        got.requests.iter().filter(|r| r.path == format!("/v3/apps/{}", shop.app_guid)).collect();
    assert_eq!(app_reads.len(), 1, "{}", describe_requests(&got.requests));
    assert_eq!(got.requests.len(), MAX_IN_REQUESTS + 1, "{}", describe_requests(&got.requests));
}

#[tokio::test]
async fn in_fails_clearly_when_the_version_is_gone_or_not_ours() {
    let sim = start_sim_with(|c| c.extra_spaces = vec!["sim-org/staging".into()]);
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let bits = sample_app_dir();
    let shop = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;
    let cart = push(&cf, &space, &sample_manifest(&sim, "cart", 1, &[]), bits.path()).await;
    let source = source(&sim, "shop");
    let failure = |version: &Value, expected: &str| {
        let got = get(&sim, &source, version, None);
        got.run.assert_clean_failure(expected);
        let named = format!(
            "version {{app_guid: {}, droplet_guid: {}}}",
            version["app_guid"].as_str().unwrap(),
            version["droplet_guid"].as_str().unwrap()
        );
        assert!(got.run.last_line().contains(&named), "the error names the version: {}", got.run.last_line());
    };

    let unknown = "0b9e5a4c-7d1f-4c2e-9a3b-5f6e7d8c9b0a";
    failure(
        &json!({"app_guid": shop.app_guid, "droplet_guid": unknown}),
        &format!("is no longer available: droplet {unknown} does not exist"),
    );
    failure(
        &json!({"app_guid": shop.app_guid, "droplet_guid": cart.droplet_guid}),
        &format!("droplet {} belongs to app {}, not to app 'shop'", cart.droplet_guid, cart.app_guid),
    );
    failure(&json!({"app_guid": "../v3/info", "droplet_guid": unknown}), "'../v3/info' is not a CF guid");

    let org = cf.orgs().require_by_name(&sim.info().organization).await.unwrap();
    let staging = cf.spaces().require_by_name(&org.guid, "staging").await.unwrap();
    let elsewhere = push(&cf, &staging, "applications:\n- name: shop\n  no-route: true\n", bits.path()).await;
    failure(
        &elsewhere.version(),
        "is not a version of this resource: app 'shop' is in organization 'sim-org', space 'staging'",
    );

    cf.apps().delete(&cart.app_guid).await.unwrap();
    failure(&cart.version(), &format!("is no longer available: app {} does not exist (it was deleted)", cart.app_guid));
}

#[tokio::test]
async fn download_droplet_writes_the_droplet_as_cf_serves_it() {
    let sim = start_sim();
    let cf = connect(&sim).await;
    let space = home_space(&cf, &sim).await;
    let bits = sample_app_dir();
    let shop = push(&cf, &space, &sample_manifest(&sim, "shop", 1, &[]), bits.path()).await;

    let got = get(&sim, &source(&sim, "shop"), &shop.version(), Some(json!({"download_droplet": true})));
    assert_eq!(got.answer()["version"], shop.version());
    let tgz = got.dir.join("droplet.tgz");
    let downloaded = std::fs::read(&tgz).unwrap();
    assert!(downloaded.starts_with(&[0x1f, 0x8b]), "droplet.tgz is gzip");
    assert_eq!(got.metadata()["process_types"], json!({"web": "./sample-app"}), "what out needs to run it");

    // A gzipped tar: the first header carries the ustar magic, and tar (when installed) lists the app.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(downloaded.as_slice()).read_to_end(&mut tar).unwrap();
    assert_eq!(&tar[257..262], b"ustar", "droplet.tgz holds a tar archive");
    if let Some(listing) = tar_listing(&tgz) {
        assert!(listing.lines().any(|l| l.ends_with("sample-app")), "{listing}");
    }

    // Byte for byte what CF serves.
    let direct = tempfile::NamedTempFile::new().unwrap();
    cf.droplets().download(&shop.droplet_guid, direct.path()).await.unwrap();
    assert!(std::fs::read(direct.path()).unwrap() == downloaded, "droplet.tgz differs from CF's droplet");
    eprintln!("in with download_droplet made {} requests", got.requests.len());
}

/// `tar tzf`, when tar is installed.
fn tar_listing(tgz: &Path) -> Option<String> {
    let output = std::process::Command::new("tar").arg("tzf").arg(tgz).output().ok()?;
    assert!(output.status.success(), "tar tzf: {}", String::from_utf8_lossy(&output.stderr));
    Some(String::from_utf8(output.stdout).unwrap())
}

/// A local var's path segment needs quoting when it has one of `,.:/ ` (`vars.Reference.String` in Concourse);
/// the names are plainer still: lower case letters, digits and `_`, starting with a letter.
#[test]
fn get_metadata_names_are_plain_identifiers_and_the_readme_lists_them() {
    for name in GET_METADATA_NAMES {
        let mut chars = name.chars();
        assert!(
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name} is not a plain identifier"
        );
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("The build page shows ").expect("the README lists the get metadata");
    let sentence = &readme[start..start + readme[start..].find('.').unwrap()];
    let listed: Vec<&str> = sentence.split('`').skip(1).step_by(2).collect();
    assert_eq!(listed, GET_METADATA_NAMES, "the README's list: {sentence}");
    assert!(readme[start..].contains("**These names are an interface**"), "the README says they are stable");
}
