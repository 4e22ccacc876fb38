//! UAA's client authentication by assertion at the HTTP level (`POST /oauth/token`): which requests take the
//! assertion path (`ClientDetailsAuthenticationProvider.isPrivateKeyJwt`), UAA's answers for a client without a
//! secret, a wrong assertion type and a grant such a client may not use, and the OpenID configuration whose
//! `issuer` is the audience an assertion names by default.

use serde_json::json;

use crate::common::{Response, send, test_config};
use cf_sim::config::JwtClient;
use cf_sim::{AssertionIssuer, Sim, SimConfig};

const ISSUER: &str = "https://ci.example.com";
const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

async fn token(uaa: &str, basic: Option<&str>, form: String) -> Response {
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(basic) = basic {
        headers.push(("authorization", basic));
    }
    send("POST", &format!("{uaa}/oauth/token"), &headers, form.into_bytes(), None).await.unwrap()
}

fn unauthorized(description: &str) -> (u16, serde_json::Value) {
    (401, json!({"error": "unauthorized", "error_description": description}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_authenticate_only_secretless_clients_and_only_for_client_credentials() {
    let ci = AssertionIssuer::generate(ISSUER);
    let sim = Sim::start(SimConfig {
        client_id: Some("deployer".into()),
        client_secret: Some("secret".into()),
        jwt_clients: vec![JwtClient {
            client_id: "ci".into(),
            issuer: ISSUER.into(),
            subject: "main/shop".into(),
            audience: None,
        }],
        trusted_issuers: vec![ci.trusted()],
        ..test_config()
    })
    .unwrap();
    let uaa = sim.info().uaa.clone();
    let discovery = send("GET", &format!("{uaa}/.well-known/openid-configuration"), &[], Vec::new(), None).await;
    let issuer = discovery.unwrap().json()["issuer"].clone();
    assert_eq!(issuer, json!(format!("{uaa}/oauth/token")));
    let assertion = ci.idtoken("main", "shop", issuer.as_str().unwrap(), 600);
    let with = |grant: &str, client: &str, assertion_type: &str| {
        format!(
            "grant_type={grant}&client_id={client}&client_assertion_type={assertion_type}&client_assertion={assertion}"
        )
    };

    let ok = token(&uaa, None, with("client_credentials", "ci", ASSERTION_TYPE)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.json()["token_type"], "bearer");
    let ok = token(&uaa, None, with("password", "ci", ASSERTION_TYPE)).await;
    assert_eq!(
        (ok.status, ok.json()),
        (401, json!({"error": "invalid_client", "error_description": "Unauthorized grant type"}))
    );
    let wrong_type = token(&uaa, None, with("client_credentials", "ci", "jwt")).await;
    assert_eq!((wrong_type.status, wrong_type.json()), unauthorized("Bad client_assertion type"));
    // The client with a secret has no federated credential; an unknown client is not found.
    for client in ["deployer", "nobody"] {
        let refused = token(&uaa, None, with("client_credentials", client, ASSERTION_TYPE)).await;
        assert_eq!((refused.status, refused.json()), unauthorized("Bad credentials"), "{client}");
    }
    // No client_id: UAA takes the assertion's sub only when it equals its iss, which a CI token's never does.
    let anonymous =
        format!("grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion={assertion}");
    let refused = token(&uaa, None, anonymous).await;
    assert_eq!((refused.status, refused.json()), unauthorized("Bad credentials"));
    // With an Authorization header or a client_secret the assertion is not looked at: the secret is.
    let ci_secret = format!("{}&client_secret=guess", with("client_credentials", "ci", ASSERTION_TYPE));
    let refused = token(&uaa, None, ci_secret).await;
    assert_eq!((refused.status, refused.json()), unauthorized("Missing credentials"));
    // deployer:secret
    let basic = token(&uaa, Some("Basic ZGVwbG95ZXI6c2VjcmV0"), with("client_credentials", "deployer", "x")).await;
    assert_eq!(basic.status, 200, "{}", String::from_utf8_lossy(&basic.body));
    sim.stop();
}
