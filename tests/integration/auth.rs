//! Keyless authentication: `out` logs in as a UAA client with a client assertion signed by a CI system (shaped like
//! Concourse's `idtoken`), which the sim's UAA checks as UAA checks a federated client credential. A valid
//! assertion deploys; an expired, wrong-issuer, wrong-audience or tampered one fails with one line that says why,
//! exit 1, nothing on stdout, nothing changed on the foundation, and the assertion never in the output.

use cf_sim::config::JwtClient;
use cf_sim::{AssertionIssuer, Sim, SimConfig};
use serde_json::{Value, json};

use crate::util::deploy::{BUILD_ENV, PutDir, apps, manifest};
use crate::util::sim::{out_request, resource_requests, source, start_sim_with};
use crate::util::{Run, run_resource};

/// Concourse's issuer is its external URL.
const CI: &str = "https://ci.example.com";
const CLIENT: &str = "concourse-deployer";
const APP: &str = "keyless";

/// A sim whose UAA has the client [`CLIENT`] trusting `ci`'s assertions about the pipeline `main/shop`.
fn sim_trusting(ci: &AssertionIssuer) -> Sim {
    sim_trusting_with(ci, |_| {})
}

fn sim_trusting_with(ci: &AssertionIssuer, adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    start_sim_with(|config| {
        config.jwt_clients = vec![JwtClient {
            client_id: CLIENT.into(),
            issuer: CI.into(),
            subject: "main/shop".into(),
            audience: None,
        }];
        config.trusted_issuers = vec![ci.trusted()];
        adjust(config);
    })
}

/// The token requests of the run so far, as `status` codes.
fn token_answers(sim: &Sim) -> Vec<u16> {
    resource_requests(sim).into_iter().filter(|r| r.path == "/oauth/token").map(|r| r.status).collect()
}

/// UAA's token endpoint, the audience the client's credential expects by default.
fn token_endpoint(sim: &Sim) -> String {
    format!("{}/oauth/token", sim.info().uaa)
}

/// Runs `out` for [`APP`] as the client [`CLIENT`] with `assertion` instead of a secret, tracing every request, and
/// checks that neither the assertion nor its signature was printed (the secrets scan of [`run_resource`] checks
/// the assertion's other forms and every token the sim issued).
fn out_with_assertion(sim: &Sim, put: &PutDir, assertion: &str) -> Run {
    let mut source: Value = source(sim, APP);
    let fields = source.as_object_mut().unwrap();
    fields.remove("username");
    fields.remove("password");
    fields.insert("client_id".into(), json!(CLIENT));
    fields.insert("client_assertion".into(), json!(assertion));
    // Every request traced too: no line may carry the assertion.
    fields.insert("verbose".into(), json!(true));
    let params = json!({"path": "app", "manifest": "ci/manifest.yml"});
    let run = run_resource("out", &[put.path().to_str().unwrap()], &out_request(&source, Some(params)), BUILD_ENV);
    eprintln!("---- out with a client assertion exited {}\n{}", run.status, run.stderr);
    assert!(!run.stdout.contains(assertion) && !run.stderr.contains(assertion), "the assertion was printed");
    let signature = assertion.rsplit('.').next().unwrap();
    assert!(!run.stderr.contains(signature), "the assertion's signature was printed");
    run
}

fn put_dir(sim: &Sim) -> PutDir {
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(sim, APP, 1, &[APP], &[]));
    put
}

#[test]
fn a_deploy_authenticates_with_a_signed_assertion_instead_of_a_secret() {
    let ci = AssertionIssuer::generate(CI);
    let sim = sim_trusting(&ci);
    let put = put_dir(&sim);
    // As Concourse 7.14 to 8 make it: without a jti, which UAA has not required since cloudfoundry/uaa#3577.
    let assertion = ci.idtoken_without_jti("main", "shop", &token_endpoint(&sim), 3600);
    let run = out_with_assertion(&sim, &put, &assertion);
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    assert!(apps(&sim).contains(&(APP.to_owned(), "STARTED".to_owned())), "{:?}", apps(&sim));
    let answers = token_answers(&sim);
    assert!(!answers.is_empty() && answers.iter().all(|status| *status == 200), "{answers:?}");
}

/// UAA's tokens outlive no deploy here (2 s): each new one is asked for with the same assertion, which UAA
/// accepts again while it is valid (UAA keeps no record of assertions it has seen).
#[test]
fn short_lived_tokens_are_renewed_with_the_same_assertion() {
    let ci = AssertionIssuer::generate(CI);
    let sim = sim_trusting_with(&ci, |config| {
        config.token_ttl_secs = 2;
        config.api_latency_ms = 20;
    });
    let put = put_dir(&sim);
    let run = out_with_assertion(&sim, &put, &ci.idtoken("main", "shop", &token_endpoint(&sim), 3600));
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    let answers = token_answers(&sim);
    assert!(answers.len() >= 2 && answers.iter().all(|status| *status == 200), "{answers:?}");
}

/// The assertion runs out while the deploy goes on (staging takes 15 s, UAA's tokens last 2 s): the tokens it
/// buys are renewed with it while UAA would take it, and the renewal after that says that the assertion expired,
/// and when, instead of sending it.
#[test]
fn an_assertion_that_expires_mid_deploy_fails_the_renewal_saying_when() {
    let ci = AssertionIssuer::generate(CI);
    let sim = sim_trusting_with(&ci, |config| {
        config.token_ttl_secs = 2;
        config.staging_delay_ms = 15_000;
    });
    let put = put_dir(&sim);
    // UAA takes it for ten more seconds (60 s of clock skew on exp).
    let assertion = ci.idtoken("main", "shop", &token_endpoint(&sim), -50);
    let run = out_with_assertion(&sim, &put, &assertion);
    run.assert_clean_failure("the client assertion of client 'concourse-deployer' expired at ");
    assert!(run.last_line().contains("an assertion cannot be renewed here"), "{}", run.last_line());
    let answers = token_answers(&sim);
    assert!(answers.len() >= 2 && answers.iter().all(|status| *status == 200), "{answers:?}");
    let cc = resource_requests(&sim).into_iter().filter(|r| r.listener == "api" && r.path != "/").count();
    assert!(cc > 0, "the deploy had begun before the assertion expired");
}

/// Runs `out` with `assertion`, which the UAA must refuse, and checks the failure contract and that the
/// foundation is untouched: no app, and no request to the Cloud Controller beyond discovery.
fn refused(sim: Sim, assertion: impl FnOnce(&Sim) -> String, expected: &str) {
    let put = put_dir(&sim);
    sim.reset_request_log();
    let run = out_with_assertion(&sim, &put, &assertion(&sim));
    run.assert_clean_failure(expected);
    assert!(apps(&sim).is_empty(), "an app was created: {:?}", apps(&sim));
    let cc: Vec<_> = resource_requests(&sim).into_iter().filter(|r| r.listener == "api" && r.path != "/").collect();
    assert!(cc.is_empty(), "the Cloud Controller was asked: {cc:?}");
}

#[test]
fn an_expired_assertion_is_refused_saying_when_it_expired() {
    let ci = AssertionIssuer::generate(CI);
    refused(
        sim_trusting(&ci),
        |sim| ci.idtoken("main", "shop", &token_endpoint(sim), -120),
        "the client assertion of client 'concourse-deployer' expired at ",
    );
}

#[test]
fn an_assertion_from_another_issuer_is_refused_as_untrusted() {
    let ci = AssertionIssuer::generate(CI);
    let impostor = AssertionIssuer::generate("https://rogue-ci.example.com");
    refused(
        sim_trusting(&ci),
        |sim| impostor.idtoken("main", "shop", &token_endpoint(sim), 3600),
        "(401 unauthorized: Wrong client_assertion): the client has no federated credential for issuer \
         'https://rogue-ci.example.com' and subject 'main/shop'",
    );
}

#[test]
fn an_assertion_for_another_audience_is_refused_naming_the_audience() {
    let ci = AssertionIssuer::generate(CI);
    refused(
        sim_trusting(&ci),
        |_| ci.idtoken("main", "shop", "https://uaa.other.example.com/oauth/token", 3600),
        "(401 unauthorized: Unauthorized client_assertion): its audience (https://uaa.other.example.com/oauth/token) \
         is not UAA's token endpoint",
    );
}

#[test]
fn a_tampered_assertion_is_refused_for_its_signature() {
    let ci = AssertionIssuer::generate(CI);
    refused(
        sim_trusting(&ci),
        |sim| {
            // Signed for the pipeline `main/other`, presented as `main/shop`: the claims change, the signature stays.
            let signed = ci.idtoken("main", "other", &token_endpoint(sim), 3600);
            let parts: Vec<&str> = signed.split('.').collect();
            let genuine = ci.idtoken("main", "shop", &token_endpoint(sim), 3600);
            let claims = genuine.split('.').nth(1).unwrap();
            format!("{}.{claims}.{}", parts[0], parts[2])
        },
        "(401 unauthorized: Unauthorized client_assertion): its signature does not verify with the keys issuer \
         'https://ci.example.com' publishes",
    );
}

#[test]
fn an_older_uaa_refuses_an_idtoken_without_jti_naming_the_missing_claim() {
    let ci = AssertionIssuer::generate(CI);
    refused(
        sim_trusting_with(&ci, |config| config.client_assertion_requires_jti = true),
        |sim| ci.idtoken_without_jti("main", "shop", &token_endpoint(sim), 3600),
        "(401 unauthorized: Unauthorized client_assertion): it has no jti claim, which UAA releases without \
         cloudfoundry/uaa#3577 require",
    );
}

/// The README's keyless pipeline is a source the resource takes once Concourse has put a token in it.
#[test]
fn the_readmes_keyless_pipeline_has_a_valid_source() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split("### Keyless login with Concourse's `idtoken`").nth(1).expect("the README's section");
    let yaml = section.split("```yaml\n").nth(1).and_then(|block| block.split("```").next()).expect("its pipeline");
    let token = AssertionIssuer::generate(CI).idtoken("main", "myapp", "https://uaa.sys.example.com/oauth/token", 3600);
    let pipeline: Value = serde_norway::from_str(&yaml.replace("((idtoken:token))", &token)).unwrap();
    assert_eq!(pipeline["var_sources"][0]["type"], "idtoken");
    let source = pipeline["resources"][0]["source"].clone();
    assert_eq!(source["client_assertion"], json!(token));
    cf_blue_green_resource::config::Source::parse(source).expect("the README's source parses");
}
