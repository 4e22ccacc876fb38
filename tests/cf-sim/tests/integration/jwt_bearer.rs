//! UAA's JWT bearer grant at the HTTP level (`POST /oauth/token`, `grant_type=urn:ietf:params:oauth:grant-type:
//! jwt-bearer`): the client authenticates first, then the assertion's user (a shadow user or a pre-created one),
//! then the grant is checked against the client's grant types; the token is a user's, with a refresh token for the
//! same client.

use serde_json::{Value, json};

use crate::common::{Response, send, test_config};
use cf_sim::config::OidcProvider;
use cf_sim::{AssertionIssuer, Sim, SimConfig};

const ISSUER: &str = "https://ci.example.com";
const GRANT: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// `deployer:secret`
const DEPLOYER: &str = "Basic ZGVwbG95ZXI6c2VjcmV0";
/// `other:secret`
const OTHER: &str = "Basic b3RoZXI6c2VjcmV0";

fn sim(ci: &AssertionIssuer, adjust: impl FnOnce(&mut SimConfig)) -> Sim {
    let mut config = SimConfig {
        client_id: Some("deployer".into()),
        client_secret: Some("secret".into()),
        extra_clients: vec!["other:secret".into()],
        jwt_bearer_clients: vec!["deployer".into()],
        oidc_providers: vec![OidcProvider {
            origin: "concourse".into(),
            relying_party_id: "cf-deploy".into(),
            user_name_claim: None,
            issuer: ci.trusted(),
        }],
        ..test_config()
    };
    adjust(&mut config);
    Sim::start(config).unwrap()
}

async fn token(sim: &Sim, basic: &str, form: &str) -> Response {
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("authorization", basic)];
    let url = format!("{}/oauth/token", sim.info().uaa);
    send("POST", &url, &headers, form.as_bytes().to_vec(), None).await.unwrap()
}

async fn bearer(sim: &Sim, basic: &str, assertion: &str) -> Response {
    token(sim, basic, &format!("grant_type={GRANT}&assertion={assertion}")).await
}

fn answer(response: &Response) -> (u16, Value) {
    (response.status, response.json())
}

fn claims(access_token: &str) -> Value {
    use base64::Engine;
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idtoken_logs_its_subject_in_as_a_shadow_user_with_a_refresh_token() {
    let ci = AssertionIssuer::generate(ISSUER);
    let sim = sim(&ci, |_| {});
    let ok = bearer(&sim, DEPLOYER, &ci.idtoken("main", "shop", "cf-deploy", 600)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let access = claims(ok.json()["access_token"].as_str().unwrap());
    assert_eq!((&access["user_name"], &access["grant_type"]), (&json!("main/shop"), &json!(GRANT.replace("%3A", ":"))));
    assert_eq!(access["cid"], "deployer");
    // The same subject again is the same user.
    let again = bearer(&sim, DEPLOYER, &ci.idtoken("main", "shop", "cf-deploy", 600)).await;
    assert_eq!(claims(again.json()["access_token"].as_str().unwrap())["user_id"], access["user_id"]);
    let refresh = ok.json()["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = token(&sim, DEPLOYER, &format!("grant_type=refresh_token&refresh_token={refresh}")).await;
    assert_eq!(refreshed.status, 200);
    let wrong_client = token(&sim, OTHER, &format!("grant_type=refresh_token&refresh_token={refresh}")).await;
    assert_eq!(
        answer(&wrong_client),
        (400, json!({"error": "invalid_grant", "error_description": "Wrong client for this refresh token: deployer"}))
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_authenticates_before_the_assertion_and_needs_the_grant_after_it() {
    let ci = AssertionIssuer::generate(ISSUER);
    let sim = sim(&ci, |_| {});
    let rogue = AssertionIssuer::generate("https://rogue.example.com").idtoken("main", "shop", "cf-deploy", 600);
    // deployer:wrong
    let bad_secret = bearer(&sim, "Basic ZGVwbG95ZXI6d3Jvbmc=", &rogue).await;
    assert_eq!(answer(&bad_secret), (401, json!({"error": "unauthorized", "error_description": "Bad credentials"})));
    let untrusted = bearer(&sim, OTHER, &rogue).await;
    assert_eq!(
        answer(&untrusted),
        (
            401,
            json!({"error": "unauthorized",
                "error_description": "Unable to map issuer, https://rogue.example.com , to a single registered provider"})
        )
    );
    let not_allowed = bearer(&sim, OTHER, &ci.idtoken("main", "shop", "cf-deploy", 600)).await;
    assert_eq!(
        answer(&not_allowed),
        (401, json!({"error": "invalid_client", "error_description": "Unauthorized grant type"}))
    );
    let missing = token(&sim, DEPLOYER, &format!("grant_type={GRANT}")).await;
    assert_eq!(answer(&missing), (401, json!({"error": "unauthorized", "error_description": "Assertion is missing"})));
    let expired = bearer(&sim, DEPLOYER, &ci.idtoken("main", "shop", "cf-deploy", -120)).await;
    assert_eq!(
        answer(&expired),
        (401, json!({"error": "invalid_token", "error_description": "Could not verify token signature."}))
    );
    let wrong_audience = bearer(&sim, DEPLOYER, &ci.idtoken("main", "shop", "https://uaa/oauth/token", 600)).await;
    assert_eq!(
        answer(&wrong_audience),
        (
            401,
            json!({"error": "invalid_token", "error_description": "Some parties were not in the token audience: cf-deploy"})
        )
    );
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_shadow_users_only_a_pre_created_user_logs_in() {
    let ci = AssertionIssuer::generate(ISSUER);
    let sim = sim(&ci, |config| {
        config.no_shadow_users = true;
        config.oidc_users = vec!["concourse:main/shop".into()];
    });
    let known = bearer(&sim, DEPLOYER, &ci.idtoken("main", "shop", "cf-deploy", 600)).await;
    assert_eq!(known.status, 200, "{}", String::from_utf8_lossy(&known.body));
    let unknown = bearer(&sim, DEPLOYER, &ci.idtoken("main", "other", "cf-deploy", 600)).await;
    assert_eq!(
        answer(&unknown),
        (
            401,
            json!({"error": "unauthorized",
                "error_description": "The user account must be pre-created. Please contact your system administrator."})
        )
    );
    sim.stop();
}

/// JwtHelper.decode: an empty assertion is UAA's InsufficientAuthenticationException, one nimbus cannot parse (no
/// JWT, a header without `alg`, a registered claim of another type) its InvalidTokenException; a request without
/// client authentication is refused before the grant is looked at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_uaa_cannot_decode_and_a_request_without_a_client_are_refused_as_uaa_refuses_them() {
    let ci = AssertionIssuer::generate(ISSUER);
    let sim = sim(&ci, |_| {});
    let invalid = (401, json!({"error": "invalid_token", "error_description": "Invalid token"}));
    assert_eq!(answer(&bearer(&sim, DEPLOYER, "not-a-jwt").await), invalid);
    let numeric_audience = json!({"iss": ISSUER, "sub": "main/shop", "aud": 7, "exp": 4_102_444_800_u64});
    assert_eq!(answer(&bearer(&sim, DEPLOYER, &ci.sign(&numeric_audience)).await), invalid);
    assert_eq!(
        answer(&bearer(&sim, DEPLOYER, "").await),
        (401, json!({"error": "unauthorized", "error_description": "Unable to decode expected id_token"}))
    );
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let url = format!("{}/oauth/token", sim.info().uaa);
    let form = format!("grant_type={GRANT}&assertion={}", ci.idtoken("main", "shop", "cf-deploy", 600));
    let anonymous = send("POST", &url, &headers, form.into_bytes(), None).await.unwrap();
    assert_eq!(
        answer(&anonymous),
        (
            401,
            json!({"error": "unauthorized", "error_description": "Full authentication is required to access this resource"})
        )
    );
    sim.stop();
}
