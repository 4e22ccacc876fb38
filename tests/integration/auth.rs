//! Keyless authentication: `out` logs in as a UAA client with a client assertion signed by a CI system (shaped like
//! Concourse's `idtoken`), which the sim's UAA checks as UAA checks a federated client credential. A valid
//! assertion deploys; an expired, wrong-issuer, wrong-audience or tampered one fails with one line that says why,
//! exit 1, nothing on stdout, nothing changed on the foundation, and the assertion never in the output.
//!
//! The same for a *user* of an OpenID Connect identity provider the sim's UAA trusts (Concourse registered as
//! one): `source.user_assertion` logs the assertion's subject in with UAA's JWT bearer grant, asked for by a client
//! with its secret.

use cf_sim::config::{JwtClient, OidcProvider};
use cf_sim::{AssertionIssuer, Sim, SimConfig};
use serde_json::{Value, json};

use crate::util::deploy::{BUILD_ENV, PutDir, apps, manifest};
use crate::util::sim::{check_request, out_request, resource_requests, source, start_sim_with};
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
    let source = keyless_source(sim, json!({"client_id": CLIENT, "client_assertion": assertion}));
    out_keyless(put, &source, assertion)
}

/// The source of [`APP`] with `credentials` in place of the user and password, every request traced (no line may
/// carry the assertion).
fn keyless_source(sim: &Sim, credentials: Value) -> Value {
    let mut source: Value = source(sim, APP);
    let fields = source.as_object_mut().unwrap();
    fields.remove("username");
    fields.remove("password");
    fields.extend(credentials.as_object().unwrap().clone());
    fields.insert("verbose".into(), json!(true));
    source
}

/// Runs `out` with `source` and checks that `assertion` was not printed.
fn out_keyless(put: &PutDir, source: &Value, assertion: &str) -> Run {
    let params = json!({"path": "app", "manifest": "ci/manifest.yml"});
    let run = run_resource("out", &[put.path().to_str().unwrap()], &out_request(source, Some(params)), BUILD_ENV);
    eprintln!("---- out with an assertion exited {}\n{}", run.status, run.stderr);
    assert_not_printed(&run, assertion);
    run
}

/// Neither the assertion nor its signature is in the output (the secrets scan of [`run_resource`] checks the
/// assertion's other forms and every token the sim issued).
fn assert_not_printed(run: &Run, assertion: &str) {
    assert!(!run.stdout.contains(assertion) && !run.stderr.contains(assertion), "the assertion was printed");
    let signature = assertion.rsplit('.').next().unwrap();
    assert!(
        !run.stdout.contains(signature) && !run.stderr.contains(signature),
        "the assertion's signature was printed"
    );
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
    let audience = "https://uaa.sys.example.com/oauth/token";
    let (pipeline, token) = readme_pipeline("### Keyless login with Concourse's `idtoken`", audience);
    let source = pipeline["resources"][0]["source"].clone();
    assert_eq!(source["client_assertion"], json!(token));
    cf_blue_green_resource::config::Source::parse(source).expect("the README's source parses");
}

/// The README's pipeline for a user names the provider's relyingPartyId as the audience and parses.
#[test]
fn the_readmes_pipeline_for_a_user_has_a_valid_source() {
    let (pipeline, token) = readme_pipeline("#### Logging in as a user with the token", RELYING_PARTY);
    assert_eq!(pipeline["var_sources"][0]["config"]["audience"], json!([RELYING_PARTY]));
    let source = pipeline["resources"][0]["source"].clone();
    assert_eq!(source["user_assertion"], json!(token));
    cf_blue_green_resource::config::Source::parse(source).expect("the README's source parses");
}

/// The first pipeline of the README's section under `heading`, as Concourse gives it to the resource: with an
/// idtoken for `audience` in place of `((idtoken:token))` (returned too).
fn readme_pipeline(heading: &str, audience: &str) -> (Value, String) {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme.split(heading).nth(1).expect("the README's section");
    let yaml = section.split("```yaml\n").nth(1).and_then(|block| block.split("```").next()).expect("its pipeline");
    let token = AssertionIssuer::generate(CI).idtoken("main", "myapp", audience, 3600);
    let pipeline: Value = serde_norway::from_str(&yaml.replace("((idtoken:token))", &token)).unwrap();
    assert_eq!(pipeline["var_sources"][0]["type"], "idtoken");
    (pipeline, token)
}

/// The origin key and `relyingPartyId` of Concourse as the sim's OIDC identity provider.
const IDP: &str = "concourse";
const RELYING_PARTY: &str = "cf-deploy";
/// The client with the JWT bearer grant (its secret is the sim's generated one).
const USER_CLIENT: &str = "concourse-login";

/// A sim whose UAA trusts `ci` as the OIDC identity provider [`IDP`], adding shadow users, and lets its client use
/// the JWT bearer grant.
fn sim_with_idp(ci: &AssertionIssuer) -> Sim {
    start_sim_with(|config| {
        config.oidc_providers = vec![OidcProvider {
            origin: IDP.into(),
            relying_party_id: RELYING_PARTY.into(),
            user_name_claim: None,
            issuer: ci.trusted(),
        }];
        config.client_id = Some(USER_CLIENT.into());
        config.jwt_bearer_clients = vec![USER_CLIENT.into()];
    })
}

/// The source of [`APP`] for the user of `assertion`, asked for by the sim's client.
fn user_source(sim: &Sim, assertion: &str) -> Value {
    let info = sim.info();
    keyless_source(
        sim,
        json!({"client_id": info.client_id, "client_secret": info.client_secret, "user_assertion": assertion}),
    )
}

#[test]
fn a_deploy_and_a_check_log_in_as_the_user_of_a_signed_assertion() {
    let ci = AssertionIssuer::generate(CI);
    let sim = sim_with_idp(&ci);
    let put = put_dir(&sim);
    // As Concourse makes it with `audience: [cf-deploy]`: no jti, the pipeline as subject.
    let assertion = ci.idtoken_without_jti("main", "shop", RELYING_PARTY, 3600);
    let source = user_source(&sim, &assertion);
    let run = out_keyless(&put, &source, &assertion);
    assert_eq!(run.status, 0, "out failed: {}", run.last_line());
    assert!(apps(&sim).contains(&(APP.to_owned(), "STARTED".to_owned())), "{:?}", apps(&sim));
    let check = run_resource("check", &[], &check_request(&source, None), &[]);
    assert_eq!(check.status, 0, "check failed: {}", check.stderr);
    assert_not_printed(&check, &assertion);
    let versions: Value = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(versions.as_array().map(Vec::len), Some(1), "{versions}");
    let answers = token_answers(&sim);
    assert!(!answers.is_empty() && answers.iter().all(|status| *status == 200), "{answers:?}");
}

/// Runs `out` for the user of `assertion`, which the UAA must refuse, and checks the failure contract and that the
/// Cloud Controller was asked nothing beyond discovery.
fn user_refused(sim: Sim, assertion: &str, expected: &str) {
    let put = put_dir(&sim);
    sim.reset_request_log();
    let run = out_keyless(&put, &user_source(&sim, assertion), assertion);
    run.assert_clean_failure(expected);
    assert!(apps(&sim).is_empty(), "an app was created: {:?}", apps(&sim));
    let cc: Vec<_> = resource_requests(&sim).into_iter().filter(|r| r.listener == "api" && r.path != "/").collect();
    assert!(cc.is_empty(), "the Cloud Controller was asked: {cc:?}");
}

#[test]
fn an_expired_user_assertion_is_not_sent_and_the_line_says_when_it_expired() {
    let ci = AssertionIssuer::generate(CI);
    user_refused(
        sim_with_idp(&ci),
        &ci.idtoken("main", "shop", RELYING_PARTY, -30),
        "the user assertion of client 'concourse-login' expired at ",
    );
}

#[test]
fn a_user_assertion_of_an_untrusted_issuer_is_refused_naming_the_issuer() {
    let ci = AssertionIssuer::generate(CI);
    let rogue = AssertionIssuer::generate("https://rogue-ci.example.com");
    user_refused(
        sim_with_idp(&ci),
        &rogue.idtoken("main", "shop", RELYING_PARTY, 3600),
        "(401 unauthorized: Unable to map issuer, https://rogue-ci.example.com , to a single registered provider): \
         the issuer 'https://rogue-ci.example.com' is not trusted",
    );
}

#[test]
fn a_user_assertion_without_the_relying_party_in_its_audience_is_refused_naming_it() {
    let ci = AssertionIssuer::generate(CI);
    let sim = sim_with_idp(&ci);
    let token_endpoint = token_endpoint(&sim);
    user_refused(
        sim,
        &ci.idtoken("main", "shop", &token_endpoint, 3600),
        "(401 invalid_token: Some parties were not in the token audience: cf-deploy): its audience",
    );
}
