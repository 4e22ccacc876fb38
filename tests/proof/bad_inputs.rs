//! The bad input table: requests a pipeline author (or a broken foundation) can send check, in and out —
//! malformed JSON, wrong types, unknown keys, credentials wrong or missing, an organization, space or app that
//! does not exist, inputs that match nothing or too much, broken manifests and vars files, a certificate that
//! is not trusted, an API that does not answer or answers too late. Each must exit 1 with stdout empty and one
//! error line naming the problem, and leave Cloud Foundry exactly as it was (the sim's state dump is
//! compared before and after).

use std::time::Instant;

use cf_sim::{Fault, FaultAction, Sim};
use serde_json::{Value, json};

use crate::util::archive::zip_dir;
use crate::util::deploy::{BUILD_ENV, PutDir, deploy, manifest};
use crate::util::sim::{sample_app_dir, source, start_sim_with};
use crate::util::{run_resource, summary};

/// Which foundation a case runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The plain sim with `myapp` in production.
    Sim,
    /// A second sim serving HTTPS with its own CA.
    Tls,
}

struct Case {
    name: &'static str,
    binary: &'static str,
    /// The request on stdin (not necessarily JSON).
    stdin: String,
    /// argv[1]; `None` for check, the put or get directory otherwise.
    dir: Option<String>,
    env: Vec<(&'static str, String)>,
    /// Parts of the error line.
    expect: Vec<String>,
    /// A value of the request that must appear in no output (one the secrets scan does not know of).
    unprinted: Option<&'static str>,
    target: Target,
    fault: Option<Fault>,
}

struct Fixtures {
    sim: Sim,
    tls: Sim,
    put: PutDir,
    get_dir: tempfile::TempDir,
    /// The version production runs.
    version: Value,
    /// A droplet of another app.
    other_droplet: String,
}

impl Fixtures {
    fn source(&self) -> Value {
        source(&self.sim, "myapp")
    }

    fn params(&self) -> Value {
        json!({"path": "app", "manifest": "ci/manifest.yml", "environment_variables": {"APP_VERSION": "bad"}})
    }
}

fn case(name: &'static str, binary: &'static str, stdin: String, expect: impl Into<String>) -> Case {
    Case {
        name,
        binary,
        stdin,
        dir: None,
        env: Vec::new(),
        expect: vec![expect.into()],
        unprinted: None,
        target: Target::Sim,
        fault: None,
    }
}

fn with(mut value: Value, path: &[&str], new: Value) -> Value {
    let mut at = &mut value;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    let last = path[path.len() - 1];
    if new.is_null() {
        at.as_object_mut().unwrap().remove(last);
    } else {
        at[last] = new;
    }
    value
}

fn cases(fx: &Fixtures) -> Vec<Case> {
    let src = fx.source();
    let put = fx.put.path().to_str().unwrap().to_owned();
    let get = fx.get_dir.path().to_str().unwrap().to_owned();
    let check = |name, request: Value, expect: &str| case(name, "check", request.to_string(), expect);
    let fetch = |name, request: Value, expect: &str| Case {
        dir: Some(get.clone()),
        ..case(name, "in", request.to_string(), expect)
    };
    let put_step = |name, request: Value, expect: &str| Case {
        dir: Some(put.clone()),
        ..case(name, "out", request.to_string(), expect)
    };
    let out = |name, params: Value, expect: &str| put_step(name, json!({"source": src, "params": params}), expect);
    let out_source =
        |name, source: Value, expect: &str| put_step(name, json!({"source": source, "params": fx.params()}), expect);
    let params = |path: &[&str], value: Value| with(fx.params(), path, value);
    let version = fx.version.clone();
    let in_request = |source: Value, version: Value| json!({"source": source, "version": version});
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unreachable = with(src.clone(), &["api"], json!(format!("http://127.0.0.1:{closed_port}")));
    let tls_source = with(source(&fx.tls, "myapp"), &["ca_cert"], Value::Null);
    let timeout_env = vec![("CF_BG_REQUEST_TIMEOUT", "1s".to_owned()), ("CF_BG_RETRY_DELAY", "20ms".to_owned())];
    let delay = |method: &str, path: &str| Fault {
        method: Some(method.into()),
        path: path.into(),
        nth: 1,
        times: 0,
        action: FaultAction::Delay { ms: 2500 },
    };

    let mut cases = vec![
        // The request itself.
        case("malformed JSON", "check", "{\"source\": {".into(), "the request on stdin is not valid JSON"),
        fetch("malformed JSON", json!(null), "x"),
        put_step("malformed JSON", json!(null), "x"),
        case("empty stdin", "check", String::new(), "no request on stdin"),
        put_step(
            "a list instead of an object",
            json!([1, 2]),
            "the request on stdin must be a JSON object, not a list",
        ),
        check(
            "an unknown top-level key",
            json!({"source": src, "verison": {}}),
            "the request has an unknown top-level key 'verison'",
        ),
        // Wrong types.
        check(
            "source is a string",
            json!({"source": "myapp"}),
            "source must be an object of keys and values, not a string",
        ),
        out_source(
            "source.api is a number",
            with(src.clone(), &["api"], json!(443)),
            "source.api: invalid type: integer `443`, expected a string",
        ),
        check(
            "source.skip_cert_check is a string",
            with(src.clone(), &["skip_cert_check"], json!("yes")).pipe(|s| json!({"source": s})),
            "source.skip_cert_check: invalid type: string \"yes\", expected a boolean",
        ),
        out("params.drain is not a duration", params(&["drain"], json!("soon")), "params.drain"),
        out(
            "params.keep_previous is a string",
            params(&["keep_previous"], json!("yes")),
            "params.keep_previous must be true, false or a number of versions from 0 to 10, not \"yes\"",
        ),
        out(
            "params.environment_variables is a list",
            params(&["environment_variables"], json!(["A=1"])),
            "params.environment_variables: invalid type: sequence",
        ),
        fetch(
            "version.app_guid is a number",
            in_request(src.clone(), json!({"app_guid": 5, "droplet_guid": "d"})),
            "version is not one of this resource's versions",
        ),
        // Unknown keys.
        check(
            "source.organisation (a typo)",
            json!({"source": with(src.clone(), &["organisation"], json!("sim-org"))}),
            "source.organisation is not a known key; did you mean organization?",
        ),
        out(
            "params.manfest (a typo)",
            params(&["manfest"], json!("ci/manifest.yml")),
            "params.manfest is not a known key; did you mean manifest?",
        ),
        fetch(
            "params.download_dropplet (a typo)",
            json!({"source": src, "version": version, "params": {"download_dropplet": true}}),
            "params.download_dropplet is not a known key; did you mean download_droplet?",
        ),
        // Credentials.
        check(
            "both credential pairs",
            json!({"source": with(with(src.clone(), &["client_id"], json!("ci-client")), &["client_secret"], json!("cs-proof-never-printed"))}),
            "source has both username/password and client_id/client_secret; give exactly one pair",
        ),
        out_source(
            "neither credential pair",
            with(with(src.clone(), &["username"], Value::Null), &["password"], Value::Null),
            "source needs credentials: username and password, client_id and client_secret, client_id and client_assertion, or client_id, client_secret and user_assertion",
        ),
        out_source(
            "a client_assertion that is no JWT",
            with(
                with(with(src.clone(), &["username"], Value::Null), &["password"], Value::Null),
                &["client_id"],
                json!("ci-client"),
            )
            .pipe(|s| with(s, &["client_assertion"], json!("opaque-assertion-proof-never-printed"))),
            "source.client_assertion is not a JWT (three base64url parts with JSON claims, as ((idtoken:token)) gives)",
        ),
        out_source(
            "a username without a password",
            with(src.clone(), &["password"], Value::Null),
            "source is missing required keys: password (source.username is set)",
        ),
        check(
            "a wrong password",
            json!({"source": with(src.clone(), &["password"], json!("wrong-password-proof"))}),
            "rejected the credentials of user",
        ),
        fetch(
            "a wrong password",
            in_request(with(src.clone(), &["password"], json!("wrong-password-proof")), version.clone()),
            "rejected the credentials of user",
        ),
        out_source(
            "a wrong client secret",
            with(
                with(with(src.clone(), &["username"], Value::Null), &["password"], Value::Null),
                &["client_id"],
                json!(fx.sim.info().client_id),
            )
            .pipe(|s| with(s, &["client_secret"], json!("wrong-secret-proof"))),
            "rejected the credentials of client",
        ),
        // Things that do not exist.
        out_source(
            "an unknown organization",
            with(src.clone(), &["organization"], json!("no-such-org")),
            "organization 'no-such-org' not found",
        ),
        out_source(
            "an unknown space",
            with(src.clone(), &["space"], json!("no-such-space")),
            "space 'no-such-space' not found",
        ),
        fetch(
            "an unknown space",
            in_request(with(src.clone(), &["space"], json!("no-such-space")), version.clone()),
            "no-such-space",
        ),
        fetch(
            "an unknown app",
            in_request(
                src.clone(),
                json!({"app_guid": "00000000-0000-4000-8000-000000000000", "droplet_guid": version["droplet_guid"]}),
            ),
            "app 00000000-0000-4000-8000-000000000000 does not exist",
        ),
        fetch(
            "a droplet of another app",
            in_request(src.clone(), json!({"app_guid": version["app_guid"], "droplet_guid": fx.other_droplet})),
            "belongs to app",
        ),
        fetch(
            "a version without droplet_guid",
            in_request(src.clone(), json!({"app_guid": version["app_guid"]})),
            "version is not one of this resource's versions",
        ),
        out(
            "rollback without a previous version",
            json!({"rollback": true}),
            "there is no myapp-previous to roll back to",
        ),
        // Inputs that match nothing or too much.
        out("params.path matching nothing", params(&["path"], json!("build/*.zip")), "matched no files"),
        out("params.path matching two", params(&["path"], json!("twins/*.zip")), "matched 2 entries"),
        out("params.path that does not exist", params(&["path"], json!("no-such-dir")), "no-such-dir"),
        out(
            "params.manifest that does not exist",
            params(&["manifest"], json!("ci/no-such.yml")),
            "params.manifest: cannot read ci/no-such.yml",
        ),
        out("params.manifest matching two", params(&["manifest"], json!("ci/m?.yml")), "matched 2 entries"),
        out(
            "params.droplet that does not exist",
            json!({"droplet": "no-such.tgz"}),
            "params.droplet 'no-such.tgz' does not exist",
        ),
        out(
            "params.smoke_test that does not exist",
            params(&["smoke_test"], json!({"path": "ci/no-such.sh"})),
            "ci/no-such.sh",
        ),
        out(
            "params.path and params.droplet",
            params(&["droplet"], json!("x.tgz")),
            "params.path and params.droplet cannot be combined",
        ),
        out(
            "params.restage with params.path",
            params(&["restage"], json!(true)),
            "params.restage rebuilds production's current package; params.path cannot be used with it",
        ),
        out(
            "params.restage with params.docker_image",
            json!({"restage": true, "docker_image": "example/app:1"}),
            "params.docker_image cannot be used with it",
        ),
        out("params.task without a command", params(&["task"], json!({"name": "db"})), "params.task needs a command"),
        out(
            "params.task.timeout 0",
            params(&["task"], json!({"command": "bin/migrate", "timeout": 0})),
            "params.task.timeout must be at least 1 second",
        ),
        out(
            "params.task.memory that is no size",
            params(&["task"], json!({"command": "bin/migrate", "memory": "lots"})),
            "params.task.memory 'lots' is not a size",
        ),
        out(
            "params.task with params.rollback",
            json!({"rollback": true, "task": {"command": "bin/migrate"}}),
            "params.rollback redeploys the previous app; params.task cannot be used with it",
        ),
        out(
            "params.hold with params.rollback",
            json!({"rollback": true, "hold": true}),
            "params.hold holds a new candidate for approval; params.rollback cannot be used with it",
        ),
        out(
            "params.promote with params.path",
            params(&["promote"], json!(true)),
            "params.promote swaps in the held candidate; params.path cannot be used with it",
        ),
        out(
            "params.promote with params.droplet",
            json!({"promote": true, "droplet": "x.tgz"}),
            "params.promote swaps in the held candidate; params.droplet cannot be used with it",
        ),
        out(
            "params.promote with params.restage",
            json!({"promote": true, "restage": true}),
            "params.promote swaps in the held candidate; params.restage cannot be used with it",
        ),
        out(
            "params.promote with params.task",
            json!({"promote": true, "task": {"command": "bin/migrate"}}),
            "params.promote swaps in the held candidate; params.task cannot be used with it",
        ),
        out(
            "params.promote with params.abort",
            json!({"promote": true, "abort": true}),
            "params.promote and params.abort cannot be combined; give one of them",
        ),
        out(
            "params.promote with params.hold",
            json!({"promote": true, "hold": true}),
            "params.promote swaps in the held candidate; params.hold cannot be used with it",
        ),
        out(
            "params.abort with params.hold",
            json!({"abort": true, "hold": true}),
            "params.abort removes the held candidate; params.hold cannot be used with it",
        ),
        out(
            "params.skip_unchanged with params.rollback",
            json!({"skip_unchanged": true, "rollback": true}),
            "params.rollback redeploys the previous app; params.skip_unchanged cannot be used with it",
        ),
        out(
            "params.skip_unchanged with params.rollback_to",
            json!({"skip_unchanged": true, "rollback_to": 2}),
            "params.rollback_to redeploys a kept version; params.skip_unchanged cannot be used with it",
        ),
        out(
            "params.skip_unchanged with params.promote",
            json!({"skip_unchanged": true, "promote": true}),
            "params.promote swaps in the held candidate; params.skip_unchanged cannot be used with it",
        ),
        out(
            "params.skip_unchanged with params.abort",
            json!({"skip_unchanged": true, "abort": true}),
            "params.abort removes the held candidate; params.skip_unchanged cannot be used with it",
        ),
        out(
            "params.skip_unchanged with params.hold",
            json!({"skip_unchanged": true, "hold": true}),
            "params.hold holds a new candidate for approval; params.skip_unchanged cannot be used with it",
        ),
        out(
            "params.kpi.error_statuses with a class that is none",
            params(&["kpi"], json!({"error_statuses": ["6xx"]})),
            "params.kpi.error_statuses: \"6xx\" is not an HTTP status or class (e.g. \"5xx\", 429)",
        ),
        out(
            "params.kpi.error_statuses empty",
            params(&["kpi"], json!({"error_statuses": []})),
            "params.kpi.error_statuses: must be a non-empty list like [\"5xx\", 429], got []",
        ),
        out(
            "params.canary without a gate",
            params(&["canary"], json!({"duration": "1m"})),
            "params.canary needs a gate: max_error_rate, max_p95_ms, max_p95_ratio or log_patterns",
        ),
        out(
            "params.canary.log_patterns that is no regex",
            params(&["canary"], json!({"log_patterns": ["(unclosed"]})),
            "params.canary.log_patterns[0] is not a valid regular expression",
        ),
        out(
            "params.canary.instances 0 and max_error_rate 5",
            params(&["canary"], json!({"instances": 0, "max_error_rate": 5})),
            "params.canary.instances must be at least 1; params.canary.max_error_rate is a fraction",
        ),
        out(
            "params.canary.on_no_data that is neither fail nor pass",
            params(&["canary"], json!({"max_error_rate": 0.01, "on_no_data": "skip"})),
            "params.canary.on_no_data: unknown variant `skip`",
        ),
        out(
            "params.canary with params.rollback",
            json!({"rollback": true, "canary": {"max_error_rate": 0.01}}),
            "params.rollback redeploys the previous app; params.canary cannot be used with it",
        ),
        out(
            "params.keep_previous negative",
            params(&["keep_previous"], json!(-1)),
            "params.keep_previous must be true, false or a number of versions from 0 to 10, not -1",
        ),
        out(
            "params.keep_previous huge",
            params(&["keep_previous"], json!(1_000_000)),
            "params.keep_previous must be true, false or a number of versions from 0 to 10, not 1000000",
        ),
        out(
            "params.rollback_to with params.path",
            json!({"rollback_to": 2, "path": "app"}),
            "params.rollback_to redeploys a kept version; params.path cannot be used with it",
        ),
        out(
            "params.rollback_to 0",
            json!({"rollback_to": 0}),
            "params.rollback_to must be the number of a kept version",
        ),
        out(
            "params.rollback_to a version not kept",
            json!({"rollback_to": 4}),
            "rollback: there is no myapp-previous-4 to roll back to",
        ),
        out("params.promote with nothing held", json!({"promote": true}), "params.promote: nothing is held"),
        out("params.abort with nothing held", json!({"abort": true}), "params.abort: nothing is held"),
        out(
            "params.health_check.timeout is a string",
            params(&["health_check"], json!({"timeout": "soon"})),
            "params.health_check.timeout: invalid type: string \"soon\", expected a whole number",
        ),
        Case {
            unprinted: Some("987654321"),
            ..out_source(
                "source.password is a number",
                with(src.clone(), &["password"], json!(987654321)),
                "source.password: ",
            )
        },
        out_source(
            "an unknown key holding the password",
            with(src.clone(), &["colour"], src["password"].clone()),
            "source.colour is not a known key",
        ),
        Case {
            expect: vec![
                "source is missing required keys: api, organization, space, app".into(),
                "params.path and params.droplet cannot be combined".into(),
            ],
            ..put_step(
                "problems in source and params together",
                json!({"source": {"username": "ci-user", "password": "pw-proof-never-printed"},
                       "params": {"path": "a", "droplet": "b"}}),
                "",
            )
        },
        // Arguments and versions.
        case(
            "no directory argument",
            "in",
            in_request(src.clone(), version.clone()).to_string(),
            "missing directory argument: usage: in <",
        ),
        case(
            "no directory argument",
            "out",
            json!({"source": src, "params": fx.params()}).to_string(),
            "missing directory argument: usage: out <",
        ),
        Case {
            dir: Some("/nonexistent/put-dir".into()),
            ..case(
                "a put directory that does not exist",
                "out",
                json!({"source": src, "params": fx.params()}).to_string(),
                "the put directory /nonexistent/put-dir does not exist",
            )
        },
        fetch("no version", json!({"source": src}), "version is missing"),
        fetch(
            "a version of another resource type",
            in_request(src.clone(), json!({"timestamp": "2021"})),
            "version is not one of this resource's versions",
        ),
        // Manifests and vars.
        out("a manifest that is not YAML", params(&["manifest"], json!("ci/not-yaml.yml")), "is not valid YAML"),
        out(
            "a manifest with two apps, neither source.app",
            params(&["manifest"], json!("ci/two-apps.yml")),
            "has several applications (web, worker) and none is source.app 'myapp'",
        ),
        out(
            "a manifest with an unresolved var",
            params(&["manifest"], json!("ci/unresolved.yml")),
            "uses vars that have no value: instances",
        ),
        out(
            "a manifest with an invalid route",
            params(&["manifest"], json!("ci/bad-route.yml")),
            "routes[0].route 'https://myapp.example.com' must not have a scheme",
        ),
        out(
            "a manifest route on a domain CF does not have",
            params(&["manifest"], json!("ci/unknown-domain.yml")),
            "route 'myapp.no-such-domain.example': no domain of this Cloud Foundry matches it",
        ),
        out(
            "a manifest with an unknown health check type",
            params(&["manifest"], json!("ci/bad-health.yml")),
            "health-check-type \"banana\" is not one of port, process, http, none",
        ),
        out(
            "a vars file that cannot be read",
            params(&["vars_files"], json!(["ci/vars-dir"])),
            "params.vars_files: cannot read ci/vars-dir",
        ),
        out(
            "a vars file that is not YAML",
            params(&["vars_files"], json!(["ci/vars-bad.yml"])),
            "params.vars_files: ci/vars-bad.yml is not valid YAML",
        ),
        out(
            "vars without a manifest",
            json!({"path": "app", "vars": {"a": 1}}),
            "params.vars and params.vars_files fill in a manifest, but params.manifest is not set",
        ),
        out(
            "params.health_check.type unknown",
            params(&["health_check"], json!({"type": "banana"})),
            "params.health_check.type: unknown variant `banana`",
        ),
        out(
            "params.verify path without a slash",
            params(&["verify"], json!([{"path": "health"}])),
            "params.verify[0].path 'health' must start with /",
        ),
        out(
            "a reserved environment variable",
            params(&["environment_variables", "VCAP_SERVICES"], json!("{}")),
            "'VCAP_SERVICES' cannot be set",
        ),
        // Certificates, reachability, time limits.
        Case {
            target: Target::Tls,
            ..check("a certificate that is not trusted", json!({"source": tls_source}), "certificate")
        },
        Case {
            target: Target::Tls,
            ..out_source("a certificate that is not trusted", tls_source.clone(), "certificate")
        },
        Case {
            target: Target::Tls,
            ..fetch("a certificate that is not trusted", in_request(tls_source.clone(), version.clone()), "certificate")
        },
        check("an unreachable API", json!({"source": unreachable}), "127.0.0.1"),
        out_source("an unreachable API", unreachable.clone(), "127.0.0.1"),
        out_source(
            "source.api is not a URL",
            with(src.clone(), &["api"], json!("api.sys.example.com")),
            "source.api 'api.sys.example.com' is not an http(s) URL",
        ),
        out(
            "a candidate that is not healthy within startup_timeout",
            {
                let mut p = params(&["environment_variables", "HEALTHY"], json!("false"));
                p["health_check"] = json!({"type": "http", "endpoint": "/healthcheck", "timeout": 2});
                p["startup_timeout"] = json!("3s");
                p
            },
            "deploy failed in phase push",
        ),
        Case {
            env: timeout_env.clone(),
            fault: Some(delay("GET", "/")),
            ..check("the API answers after the request timeout", json!({"source": src}), "timed out")
        },
        Case {
            env: timeout_env.clone(),
            fault: Some(delay("POST", "/oauth/token")),
            ..out("UAA answers after the request timeout", fx.params(), "timed out")
        },
        Case {
            env: timeout_env,
            fault: Some(delay("GET", "/v3/apps")),
            ..fetch("CC answers after the request timeout", in_request(src.clone(), version.clone()), "timed out")
        },
    ];
    // Malformed JSON for in and out (built above as placeholders to keep the table in order).
    cases[1].stdin = "{\"source\": ".into();
    cases[1].expect = vec!["the request on stdin is not valid JSON".into()];
    cases[2].stdin = "not json at all".into();
    cases[2].expect = vec!["the request on stdin is not valid JSON".into()];

    // The request checks the three binaries share: each of them refuses the same request the same way.
    let both_pairs = with(with(src.clone(), &["client_id"], json!("ci-client")), &["client_secret"], json!("cs-x"));
    let neither_pair = with(with(src.clone(), &["username"], Value::Null), &["password"], Value::Null);
    let shared = [
        ("empty stdin", String::new(), "no request on stdin"),
        ("a list instead of an object", "[1, 2]".to_owned(), "the request on stdin must be a JSON object, not a list"),
        (
            "a null source",
            json!({"source": null}).to_string(),
            "source is missing required keys: api, organization, space, app; source needs credentials",
        ),
        (
            "source.organisation (a typo)",
            json!({"source": with(src.clone(), &["organisation"], json!("sim-org"))}).to_string(),
            "source.organisation is not a known key; did you mean organization?",
        ),
        (
            "source.skip_cert_check is a string",
            json!({"source": with(src.clone(), &["skip_cert_check"], json!("yes"))}).to_string(),
            "source.skip_cert_check: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "both credential pairs",
            json!({"source": both_pairs}).to_string(),
            "source has both username/password and client_id/client_secret; give exactly one pair",
        ),
        (
            "neither credential pair",
            json!({"source": neither_pair}).to_string(),
            "source needs credentials: username and password, client_id and client_secret, client_id and client_assertion, or client_id, client_secret and user_assertion",
        ),
    ];
    for (name, stdin, expect) in shared {
        for (binary, dir) in [("check", None), ("in", Some(&get)), ("out", Some(&put))] {
            if !cases.iter().any(|c| c.name == name && c.binary == binary) {
                cases.push(Case { dir: dir.cloned(), ..case(name, binary, stdin.clone(), expect) });
            }
        }
    }
    cases
}

/// `value.pipe(f)` is `f(value)`, to keep the table's entries one expression each.
trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl Pipe for Value {}

fn fixtures() -> Fixtures {
    let sim = start_sim_with(|_| {});
    let tls = start_sim_with(|c| c.tls = true);
    let put = PutDir::with_sample_app();
    put.write("ci/manifest.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    let version = deploy(&sim, &put, "myapp", json!({"path": "app", "manifest": "ci/manifest.yml", "drain": "0s"}));
    // Another app, for a droplet that is not production's.
    put.write("ci/other.yml", &manifest(&sim, "other", 1, &["other"], &[]));
    let other = deploy(&sim, &put, "other", json!({"path": "app", "manifest": "ci/other.yml", "drain": "0s"}));

    let domain = sim.info().domain.clone();
    put.write("ci/m1.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    put.write("ci/m2.yml", &manifest(&sim, "myapp", 1, &["myapp"], &[]));
    put.write("ci/not-yaml.yml", "applications:\n- name: myapp\n  routes: [unclosed\n");
    put.write("ci/two-apps.yml", "applications:\n- name: web\n- name: worker\n");
    put.write(
        "ci/unresolved.yml",
        &format!("applications:\n- name: myapp\n  instances: ((instances))\n  routes:\n  - route: myapp.{domain}\n"),
    );
    put.write("ci/bad-route.yml", "applications:\n- name: myapp\n  routes:\n  - route: https://myapp.example.com\n");
    put.write(
        "ci/unknown-domain.yml",
        "applications:\n- name: myapp\n  routes:\n  - route: myapp.no-such-domain.example\n",
    );
    put.write("ci/bad-health.yml", "applications:\n- name: myapp\n  health-check-type: banana\n");
    put.write("ci/vars-bad.yml", "a: [unclosed\n");
    std::fs::create_dir_all(put.path().join("ci/vars-dir")).unwrap();
    let bits = sample_app_dir();
    std::fs::create_dir_all(put.path().join("twins")).unwrap();
    zip_dir(bits.path(), &put.path().join("twins/app-1.zip"));
    zip_dir(bits.path(), &put.path().join("twins/app-2.zip"));
    Fixtures {
        sim,
        tls,
        put,
        get_dir: tempfile::tempdir().unwrap(),
        version,
        other_droplet: other["droplet_guid"].as_str().unwrap().to_owned(),
    }
}

#[test]
fn every_bad_input_fails_in_one_clear_line_and_changes_nothing() {
    let fx = fixtures();
    let cases = cases(&fx);
    assert!(cases.len() >= 40, "the table has {} cases", cases.len());
    let started = Instant::now();
    let mut problems = Vec::new();
    for case in &cases {
        let sim = match case.target {
            Target::Sim => &fx.sim,
            Target::Tls => &fx.tls,
        };
        let before = sim.state_dump();
        sim.clear_faults();
        if let Some(fault) = &case.fault {
            sim.add_fault(fault.clone());
        }
        let args: Vec<&str> = case.dir.iter().map(String::as_str).collect();
        let mut env: Vec<(&str, &str)> = BUILD_ENV.to_vec();
        env.extend(case.env.iter().map(|(k, v)| (*k, v.as_str())));
        let case_started = Instant::now();
        let run = run_resource(case.binary, &args, &case.stdin, &env);
        sim.clear_faults();
        let took = case_started.elapsed();
        let after = sim.state_dump();
        let label = format!("{} {}", case.binary, case.name);
        let errors: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("error:")).collect();
        let mut wrong = Vec::new();
        if run.status != 1 {
            wrong.push(format!("exit {}", run.status));
        }
        if !run.stdout.is_empty() {
            wrong.push(format!("stdout {:?}", run.stdout));
        }
        if errors.len() != 1 || run.last_line() != errors.first().copied().unwrap_or_default() {
            wrong.push(format!("{} error lines, the last line is {:?}", errors.len(), run.last_line()));
        }
        for expect in case.expect.iter().filter(|expect| !run.last_line().contains(expect.as_str())) {
            wrong.push(format!("the error line does not say {expect:?}"));
        }
        if let Some(value) = case.unprinted.filter(|value| run.stdout.contains(value) || run.stderr.contains(value)) {
            wrong.push(format!("the output shows {value:?}"));
        }
        if before != after {
            wrong.push("Cloud Foundry changed".into());
        }
        eprintln!("{label}: {} ({}ms)", run.last_line(), took.as_millis());
        let clean = wrong.is_empty();
        summary::record(
            "bad-inputs",
            json!({"cases": 1, "clean": u32::from(clean), "case": label, "line": run.last_line()}),
        );
        if !clean {
            problems.push(format!("{label}: {}\n  stderr:\n{}", wrong.join("; "), run.stderr));
        }
    }
    eprintln!("{} bad inputs in {:.1}s", cases.len(), started.elapsed().as_secs_f64());
    assert!(
        problems.is_empty(),
        "{} of {} bad inputs were not handled cleanly:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}
