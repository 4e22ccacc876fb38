//! Configuration of a simulated Cloud Foundry: every flag of the `cf-sim` binary, also used in-process.
//!
//! `SimConfig::default()` is what the binary does with no flags: every listener on a free loopback port, no route
//! propagation delay, short staging and job delays, CF's token TTL and paging defaults, and freshly generated
//! credentials, so a leaked secret is easy to spot in a test's output.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "cf-sim", version, about = "A local Cloud Foundry: CC v3 API, UAA, router and Log Cache")]
pub struct SimConfig {
    /// Listen address of the Cloud Controller API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub api_listen: SocketAddr,
    /// Listen address of UAA (the token endpoint is `{uaa}/oauth/token`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub uaa_listen: SocketAddr,
    /// Listen address of the Log Cache read API.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub log_cache_listen: SocketAddr,
    /// Listen address of the HTTP router (gorouter).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub router_listen: SocketAddr,
    /// The shared default app domain.
    #[arg(long, default_value = "apps.sim.internal")]
    pub domain: String,
    /// More shared domains, e.g. a test-only domain for temporary routes. Repeatable.
    #[arg(long = "extra-domain", value_name = "DOMAIN")]
    pub extra_domains: Vec<String>,
    /// The organization created at start.
    #[arg(long, default_value = "sim-org")]
    pub organization: String,
    /// The space created in that organization at start.
    #[arg(long, default_value = "sim-space")]
    pub space: String,
    /// More spaces to create, as `ORG/SPACE` (the org is created when missing). Repeatable.
    #[arg(long = "extra-space", value_name = "ORG/SPACE")]
    pub extra_spaces: Vec<String>,
    /// User name for the password grant (default: generated).
    #[arg(long)]
    pub username: Option<String>,
    /// Password of that user (default: generated).
    #[arg(long)]
    pub password: Option<String>,
    /// More users, as `NAME:PASSWORD`. Repeatable.
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    pub extra_users: Vec<String>,
    /// Client id for the client_credentials grant (default: generated).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Secret of that client (default: generated).
    #[arg(long)]
    pub client_secret: Option<String>,
    /// More clients, as `ID:SECRET`. Repeatable.
    #[arg(long = "client", value_name = "ID:SECRET")]
    pub extra_clients: Vec<String>,
    /// A client without a secret that authenticates with client assertions from another issuer: UAA's federated
    /// client credential (`jwt_creds` of the client: iss, sub and an optional aud), as
    /// `ID,ISSUER,SUBJECT[,AUDIENCE]`. Repeatable.
    #[arg(long = "jwt-client", value_name = "ID,ISSUER,SUBJECT[,AUDIENCE]", value_parser = JwtClient::parse)]
    pub jwt_clients: Vec<JwtClient>,
    /// The public keys of an assertion issuer, as `ISSUER=JWKS_FILE` (the JSON Web Key Set its discovery
    /// document's `jwks_uri` serves, which UAA fetches). Repeatable.
    #[arg(long = "trusted-issuer", value_name = "ISSUER=JWKS_FILE", value_parser = TrustedIssuer::parse_flag)]
    pub trusted_issuers: Vec<TrustedIssuer>,
    /// Client assertions must carry a `jti`, as in UAA releases without cloudfoundry/uaa#3577 (Concourse's idtoken
    /// has one only from concourse/concourse#9693).
    #[arg(long)]
    pub client_assertion_requires_jti: bool,
    /// An OpenID Connect identity provider (`oidc1.0`) whose ID tokens UAA takes as the assertion of the JWT bearer
    /// grant, as `ORIGIN,ISSUER,RELYING_PARTY_ID,JWKS_FILE[,USER_NAME_CLAIM]`: its origin key, `issuer`,
    /// `relyingPartyId`, the keys its token key URL serves, and `attributeMappings.user_name` (default `sub`).
    /// Repeatable.
    #[arg(long = "oidc-provider", value_name = "ORIGIN,ISSUER,RP,JWKS[,CLAIM]", value_parser = OidcProvider::parse_flag)]
    pub oidc_providers: Vec<OidcProvider>,
    /// The OIDC providers add no shadow user at a user's first login (`addShadowUserOnLogin: false`): the user must
    /// exist (`--oidc-user`).
    #[arg(long)]
    pub no_shadow_users: bool,
    /// A user of an OIDC provider that exists before any login, as `ORIGIN:NAME`. Repeatable.
    #[arg(long = "oidc-user", value_name = "ORIGIN:NAME")]
    pub oidc_users: Vec<String>,
    /// A client (`--client-id` or `--client`) allowed the JWT bearer grant
    /// (`urn:ietf:params:oauth:grant-type:jwt-bearer` among its `authorized_grant_types`). Repeatable.
    #[arg(long = "jwt-bearer-client", value_name = "ID")]
    pub jwt_bearer_clients: Vec<String>,
    /// Tokens carry none of the policy server's scopes (users get `network.write`, clients `network.admin`
    /// otherwise): a deploying identity that may not manage network policies.
    #[arg(long)]
    pub no_network_scopes: bool,
    /// How long route and instance changes take to reach the router, in ms.
    #[arg(long, default_value_t = 0)]
    pub route_propagation_delay_ms: u64,
    /// How long staging takes, in ms.
    #[arg(long, default_value_t = 50)]
    pub staging_delay_ms: u64,
    /// How long a package upload or copy stays in processing, in ms.
    #[arg(long, default_value_t = 20)]
    pub package_processing_delay_ms: u64,
    /// How long an async job stays PROCESSING before it runs, in ms.
    #[arg(long, default_value_t = 20)]
    pub job_delay_ms: u64,
    /// Access token lifetime in seconds (cf-deployment's `cf` client uses 1200).
    #[arg(long, default_value_t = 1200)]
    pub token_ttl_secs: u64,
    /// Refresh token lifetime in seconds.
    #[arg(long, default_value_t = 2_592_000)]
    pub refresh_token_ttl_secs: u64,
    /// Server default `per_page` for every list (CC's default is 50).
    #[arg(long, default_value_t = 50)]
    pub default_per_page: usize,
    /// Grace period between SIGTERM and SIGKILL when an instance is stopped, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub stop_grace_ms: u64,
    /// Default health check timeout in seconds, when a process sets none (Diego's default is 60).
    #[arg(long, default_value_t = 60)]
    pub health_check_timeout_secs: u64,
    /// Interval of liveness and readiness checks once an instance runs, when a process sets none, in ms.
    #[arg(long, default_value_t = 1000)]
    pub health_check_interval_ms: u64,
    /// Delay before a crashed instance is restarted; doubles with each further crash, in ms.
    #[arg(long, default_value_t = 500)]
    pub crash_restart_delay_ms: u64,
    /// Upper bound of the crash restart delay, in ms.
    #[arg(long, default_value_t = 8000)]
    pub max_crash_restart_delay_ms: u64,
    /// Serve API, UAA and Log Cache over HTTPS with a certificate generated at start.
    #[arg(long)]
    pub tls: bool,
    /// Directory for packages, droplets, the resource cache and instance directories (default: a temporary one).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Largest package (sum of uncompressed file sizes) CC accepts, in bytes.
    #[arg(long, default_value_t = 1_073_741_824)]
    pub max_package_size: u64,
    /// Smallest file that enters the resource cache, in bytes (CC's `resource_pool.minimum_size`).
    #[arg(long, default_value_t = 65_536)]
    pub resource_min_size: u64,
    /// Largest file that enters the resource cache, in bytes (CC's `resource_pool.maximum_size`).
    #[arg(long, default_value_t = 536_870_912)]
    pub resource_max_size: u64,
    /// Log envelopes kept per source (app) in Log Cache.
    #[arg(long, default_value_t = 10_000)]
    pub log_buffer_size: usize,
    /// The router sends no `http` timers to Log Cache (gorouter with `router.send_http_start_stop_server_event` and
    /// `router.send_http_start_stop_client_event` false), so Log Cache has no traffic figures.
    #[arg(long)]
    pub no_http_timers: bool,
    /// Memory limit of the default organization quota every org has, in MB (default: unlimited).
    #[arg(long)]
    pub org_memory_limit_mb: Option<u64>,
    /// Memory limit of a space quota applied to `--space`, in MB (default: no space quota).
    #[arg(long)]
    pub space_memory_limit_mb: Option<u64>,
    /// The CC API version to present, as `X.Y.Z`: shown in `GET /` (CC's `GET /v3` names none), and the answers
    /// take that version's shapes (e.g. no `relationships.current_droplet` of apps before 3.175.0).
    #[arg(long, default_value = "3.228.0", value_parser = CcApiVersion::parse)]
    pub cc_api_version: CcApiVersion,
    /// CC's `maximum_health_check_timeout` in seconds (config/cloud_controller.yml sets 180).
    #[arg(long, default_value_t = 180)]
    pub maximum_health_check_timeout: u64,
    /// Latency added to every answer of the CC API, UAA and Log Cache (not the router, not the admin API), in ms:
    /// the round trip and processing time of a real foundation (50–300 ms). The answer waits after the request is
    /// processed.
    #[arg(long, default_value_t = 0)]
    pub api_latency_ms: u64,
    /// A uniformly random extra latency of up to this many ms on each of those answers.
    #[arg(long, default_value_t = 0)]
    pub api_latency_jitter_ms: u64,
    /// Where to find the files of a docker image, as `IMAGE=DIR`; the image then runs like a droplet. Repeatable.
    #[arg(long = "docker-image", value_name = "IMAGE=DIR")]
    pub docker_images: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::parse_from(["cf-sim"])
    }
}

/// Splits `A<sep>B` flags such as `NAME:PASSWORD`.
pub(crate) fn split_pair<'a>(value: &'a str, sep: char, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    value
        .split_once(sep)
        .filter(|(a, _)| !a.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{what} must look like A{sep}B, got {value:?}"))
}

/// A UAA client trusting assertions of one issuer about one subject (UAA's `ClientJwtCredential`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtClient {
    pub client_id: String,
    /// The assertion's `iss`, compared as a string.
    pub issuer: String,
    /// The assertion's `sub`, compared as a string.
    pub subject: String,
    /// The audience the assertion must name; without one, UAA's token endpoint URL.
    pub audience: Option<String>,
}

impl JwtClient {
    /// Parses `ID,ISSUER,SUBJECT[,AUDIENCE]`.
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = value.split(',').collect();
        match parts[..] {
            [id, issuer, subject, ref audience @ ..]
                if audience.len() <= 1 && [id, issuer, subject].iter().all(|p| !p.is_empty()) =>
            {
                Ok(JwtClient {
                    client_id: id.to_owned(),
                    issuer: issuer.to_owned(),
                    subject: subject.to_owned(),
                    audience: audience.first().filter(|a| !a.is_empty()).map(|a| (*a).to_owned()),
                })
            }
            _ => anyhow::bail!("--jwt-client must look like ID,ISSUER,SUBJECT[,AUDIENCE], got {value:?}"),
        }
    }
}

/// An issuer of client assertions and the public keys that verify its signatures.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub keys: Vec<Jwk>,
}

impl TrustedIssuer {
    /// The issuer with the keys of a JSON Web Key Set (`{"keys": [...]}`).
    pub fn from_jwks(issuer: &str, jwks: &str) -> anyhow::Result<Self> {
        #[derive(serde::Deserialize)]
        struct Jwks {
            keys: Vec<Jwk>,
        }
        let jwks: Jwks = serde_json::from_str(jwks)
            .map_err(|e| anyhow::anyhow!("the keys of {issuer} are not a JSON Web Key Set: {e}"))?;
        Ok(TrustedIssuer { issuer: issuer.to_owned(), keys: jwks.keys })
    }

    /// Parses `ISSUER=JWKS_FILE` and reads the file.
    pub fn parse_flag(value: &str) -> anyhow::Result<Self> {
        let (issuer, path) = split_pair(value, '=', "--trusted-issuer")?;
        let jwks = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--trusted-issuer: reading the key set {path:?}: {e}"))?;
        Self::from_jwks(issuer, &jwks)
    }
}

/// An OpenID Connect identity provider of UAA, as the JWT bearer grant uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcProvider {
    /// The origin key its users carry.
    pub origin: String,
    /// `relyingPartyId`: the audience its ID tokens must name.
    pub relying_party_id: String,
    /// The claim `attributeMappings.user_name` names; `sub` when unset.
    pub user_name_claim: Option<String>,
    /// Its `issuer` and the keys that verify its signatures.
    pub issuer: TrustedIssuer,
}

impl OidcProvider {
    /// Parses `ORIGIN,ISSUER,RELYING_PARTY_ID,JWKS_FILE[,USER_NAME_CLAIM]` and reads the key set.
    pub fn parse_flag(value: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = value.split(',').collect();
        let (origin, issuer, relying_party_id, path, claim) = match parts[..] {
            [origin, issuer, rp, path] => (origin, issuer, rp, path, None),
            [origin, issuer, rp, path, claim] => (origin, issuer, rp, path, Some(claim)),
            _ => ("", "", "", "", None),
        };
        if [origin, issuer, relying_party_id, path].iter().any(|p| p.is_empty()) {
            anyhow::bail!(
                "--oidc-provider must look like ORIGIN,ISSUER,RELYING_PARTY_ID,JWKS_FILE[,USER_NAME_CLAIM], got {value:?}"
            );
        }
        let jwks = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--oidc-provider: reading the key set {path:?}: {e}"))?;
        Ok(OidcProvider {
            origin: origin.to_owned(),
            relying_party_id: relying_party_id.to_owned(),
            user_name_claim: claim.filter(|c| !c.is_empty()).map(str::to_owned),
            issuer: TrustedIssuer::from_jwks(issuer, &jwks)?,
        })
    }
}

/// One public key of a JSON Web Key Set (RFC 7517): RSA (`n`, `e`) or EC (`crv`, `x`, `y`), base64url.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
}

/// A Cloud Controller v3 API version (`config/version` of cloud_controller_ng), ordered as versions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CcApiVersion(pub u32, pub u32, pub u32);

impl CcApiVersion {
    /// The version of cloud_controller_ng commit 3bbba906, which cf-sim follows.
    pub const LATEST: CcApiVersion = CcApiVersion(3, 228, 0);

    /// Parses `X.Y.Z` (or `X.Y`, patch 0); a v2 or older version is refused.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<u32> = text
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| anyhow::anyhow!("a CC API version looks like 3.228.0, got {text:?}"))?;
        match parts[..] {
            [3, minor, patch] => Ok(CcApiVersion(3, minor, patch)),
            [3, minor] => Ok(CcApiVersion(3, minor, 0)),
            _ => anyhow::bail!("a CC API version looks like 3.228.0, got {text:?}"),
        }
    }

    /// Whether this version is `other` or newer.
    pub fn at_least(self, other: CcApiVersion) -> bool {
        self >= other
    }
}

impl std::fmt::Display for CcApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cc_api_versions_parse_and_order() {
        assert_eq!(SimConfig::default().cc_api_version, CcApiVersion::LATEST);
        assert_eq!(CcApiVersion::parse("3.174.0").unwrap().to_string(), "3.174.0");
        assert!(CcApiVersion::parse("3.99").unwrap() < CcApiVersion::parse("3.175.0").unwrap());
        assert!(CcApiVersion::parse("2.200.0").is_err());
        assert!(CcApiVersion::parse("three").is_err());
        let config = SimConfig::parse_from(["cf-sim", "--cc-api-version", "3.160.0"]);
        assert_eq!(config.cc_api_version, CcApiVersion(3, 160, 0));
    }

    #[test]
    fn jwt_clients_and_trusted_issuers_parse() {
        let jwks = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(jwks.path(), r#"{"keys":[{"kty":"EC","crv":"P-256","x":"eA","y":"eQ","kid":"k1"}]}"#).unwrap();
        let config = SimConfig::parse_from([
            "cf-sim",
            "--jwt-client",
            "deployer,https://ci.example.com,main/deploy,https://uaa.example.com/oauth/token",
            "--jwt-client",
            "other,https://ci.example.com,main/other",
            "--trusted-issuer",
            &format!("https://ci.example.com={}", jwks.path().display()),
        ]);
        assert_eq!(config.jwt_clients[0].subject, "main/deploy");
        assert_eq!(config.jwt_clients[0].audience.as_deref(), Some("https://uaa.example.com/oauth/token"));
        assert_eq!(config.jwt_clients[1].audience, None);
        assert_eq!(config.trusted_issuers[0].issuer, "https://ci.example.com");
        assert_eq!(config.trusted_issuers[0].keys[0].kid.as_deref(), Some("k1"));
        assert!(JwtClient::parse("deployer,https://ci.example.com").is_err());
        assert!(JwtClient::parse("a,b,c,d,e").is_err());
        assert!(TrustedIssuer::parse_flag("https://ci.example.com=/no/such/file").is_err());
        assert!(TrustedIssuer::from_jwks("i", r#"{"keys":{}}"#).is_err());
    }

    #[test]
    fn oidc_providers_and_their_users_parse() {
        let jwks = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(jwks.path(), r#"{"keys":[{"kty":"EC","crv":"P-256","x":"eA","y":"eQ"}]}"#).unwrap();
        let path = jwks.path().display();
        let config = SimConfig::parse_from([
            "cf-sim",
            "--oidc-provider",
            &format!("concourse,https://ci.example.com,cf-deploy,{path}"),
            "--oidc-provider",
            &format!("other,https://other.example.com,rp,{path},pipeline"),
            "--no-shadow-users",
            "--oidc-user",
            "concourse:main/shop",
            "--jwt-bearer-client",
            "deployer",
        ]);
        let [concourse, other] = &config.oidc_providers[..] else { panic!("{:?}", config.oidc_providers) };
        assert_eq!((concourse.origin.as_str(), concourse.relying_party_id.as_str()), ("concourse", "cf-deploy"));
        assert_eq!(concourse.issuer.issuer, "https://ci.example.com");
        assert_eq!(concourse.user_name_claim, None);
        assert_eq!(other.user_name_claim.as_deref(), Some("pipeline"));
        assert!(config.no_shadow_users);
        assert_eq!(config.oidc_users, ["concourse:main/shop"]);
        assert_eq!(config.jwt_bearer_clients, ["deployer"]);
        assert!(OidcProvider::parse_flag(&format!("o,https://ci.example.com,{path}")).is_err());
        assert!(OidcProvider::parse_flag(&format!("o,,rp,{path}")).is_err());
        assert!(OidcProvider::parse_flag(&format!("o,i,rp,{path},a,b")).is_err());
    }

    #[test]
    fn api_latency_flags_default_to_none() {
        let config = SimConfig::default();
        assert_eq!((config.api_latency_ms, config.api_latency_jitter_ms), (0, 0));
        let config = SimConfig::parse_from(["cf-sim", "--api-latency-ms", "150", "--api-latency-jitter-ms", "30"]);
        assert_eq!((config.api_latency_ms, config.api_latency_jitter_ms), (150, 30));
    }
}
