//! Keeps `pipeline-examples/` valid: every example pipeline is parsed, and each `source` of a resource of this
//! type, each put's `params` and `get_params`, and each get's `params` goes through the resource's own strict
//! parsing (`Source::parse`, `OutParams::parse`, `InParams::parse`), so an unknown or misspelt key, a wrong type
//! or a combination the resource rejects fails this test. `((var))` placeholders are first replaced with
//! plausible values. Each example must also have a job that uses the resource.
//!
//! Each put is also checked under Concourse 8's default `put.inputs: detect`: the inputs it mounts are
//! computed as Concourse computes them, and every file the put reads — its path params and the files its
//! smoke test opens ([`SMOKE_TEST_READS`]) — must be in one of them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cf_blue_green_resource::config::{InParams, OutParams, Source};
use serde_json::{Value, json};

/// The image `resource_types` point at; a resource type whose `source.repository` ends with it is this resource.
const IMAGE: &str = "cf-blue-green-resource";

/// Values for the `((vars))` that must be more than any string: URLs, certificates, numbers. Every other var
/// becomes the string `<name>-value`.
fn var_value(name: &str) -> Value {
    match name {
        "cf-prod.api" => json!("https://api.sys.prod.example.com"),
        "cf.ca_cert" | "cf-prod.ca_cert" => {
            json!("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUexample\n-----END CERTIFICATE-----\n")
        }
        "idtoken:token" => json!(idtoken()),
        other => json!(format!("{other}-value")),
    }
}

/// A token shaped like the one Concourse's `idtoken` var source gives (a compact JWS with its claims); the
/// signature is never checked here.
fn idtoken() -> String {
    use base64::Engine;
    let b64 = |json: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string());
    let claims = json!({"iss": "https://ci.example.com", "sub": "main/myapp", "aud": ["cf-deploy"],
        "iat": 1_767_225_600, "exp": 1_767_229_200, "team": "main", "pipeline": "myapp", "job": "deploy"});
    format!("{}.{}.c2lnbmF0dXJl", b64(json!({"alg": "RS256", "kid": "1"})), b64(claims))
}

/// The files each example's smoke-test program opens besides itself (as the example's comments say), by the
/// program's path. Concourse cannot see them in the params, so a put running one of these needs its inputs.
const SMOKE_TEST_READS: &[(&str, &[&str])] =
    &[("app-src/ci/smoke-test.sh", &["version/number"]), ("app-src/ci/smoke-test-staging.sh", &[])];

/// The inputs Concourse mounts for a put with `inputs: detect` (its default from Concourse 8):
/// `detectInputsFromParam` in `atc/exec/put_inputs.go`. Every string value in the params, at any depth (map
/// keys are not looked at), names one: the string itself, or when it has a `/`, its first segment that is not
/// `.` or `..`. Names that are no artifact of the build are skipped there ("false positive").
fn detect(params: &Value) -> BTreeSet<String> {
    match params {
        Value::String(text) => {
            let mut name = text.as_str();
            if text.contains('/') {
                name = text.split('/').find(|part| *part != "." && *part != "..").unwrap_or(text);
            }
            BTreeSet::from([name.to_owned()])
        }
        Value::Object(map) => map.values().flat_map(detect).collect(),
        Value::Array(items) => items.iter().flat_map(detect).collect(),
        _ => BTreeSet::new(),
    }
}

/// The inputs a put mounts: `None` for all of them (`inputs: all`), else their names (`atc/exec/put_step.go`:
/// no `inputs` or `detect` detects, `all` mounts all, a list mounts those, anything else none).
fn mounted(step: &Value, raw_params: &Value) -> Option<BTreeSet<String>> {
    match step.get("inputs") {
        None => Some(detect(raw_params)),
        Some(Value::String(choice)) if choice == "detect" => Some(detect(raw_params)),
        Some(Value::String(choice)) if choice == "all" => None,
        Some(Value::Array(names)) => {
            Some(names.iter().filter_map(Value::as_str).map(|n| n.trim().to_owned()).collect())
        }
        Some(_) => Some(BTreeSet::new()),
    }
}

/// Every file a put reads, with the param that names it: `path`, `droplet` (and the `metadata.json` beside it),
/// `manifest`, `vars_files` and the smoke-test program, plus what the program opens ([`SMOKE_TEST_READS`]).
fn reads(params: &Value) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for key in ["path", "droplet", "manifest"] {
        if let Some(file) = params.get(key).and_then(Value::as_str) {
            files.push((format!("params.{key}"), file.to_owned()));
        }
    }
    for file in list(params, "vars_files").iter().filter_map(Value::as_str) {
        files.push(("params.vars_files".into(), file.to_owned()));
    }
    if let Some(program) = params.pointer("/smoke_test/path").and_then(Value::as_str) {
        files.push(("params.smoke_test.path".into(), program.to_owned()));
        let Some((_, opened)) = SMOKE_TEST_READS.iter().find(|(p, _)| *p == program) else {
            return Err(format!("smoke test {program}: say in SMOKE_TEST_READS which files it opens"));
        };
        files.extend(opened.iter().map(|file| (format!("the smoke test {program}"), (*file).to_owned())));
    }
    Ok(files)
}

/// The input a path in the put directory is in: its first segment that is not `.`.
fn input_of(file: &str) -> &str {
    file.split('/').find(|part| !part.is_empty() && *part != ".").unwrap_or(file)
}

/// Problems of one put under its `inputs`: each file it reads from an input it does not mount.
fn check_put_inputs(step: &Value, raw_params: &Value, params: &Value) -> Vec<String> {
    let files = match reads(params) {
        Ok(files) => files,
        Err(problem) => return vec![problem],
    };
    let Some(mounted) = mounted(step, raw_params) else {
        return Vec::new();
    };
    files
        .into_iter()
        .filter(|(_, file)| !mounted.contains(input_of(file)))
        .map(|(by, file)| {
            format!(
                "{by} reads {file}, but input '{}' is not mounted (inputs {}: {mounted:?}); name it in params or \
                 add it to inputs:",
                input_of(&file),
                if step.get("inputs").is_none_or(|i| i == "detect") { "detected" } else { "listed" },
            )
        })
        .collect()
}

/// What checking one pipeline found.
#[derive(Debug, Default)]
struct Checked {
    /// Names of the resources of this type.
    resources: BTreeSet<String>,
    /// Names of the jobs with a get or put of one of them.
    jobs: BTreeSet<String>,
    /// Every key used in a put's params, get's params or get_params of one of them (top level only).
    param_keys: BTreeSet<String>,
    /// Every `((var))` placeholder the pipeline uses.
    vars: BTreeSet<String>,
}

/// Parses a pipeline and checks every use of this resource in it; returns every problem found.
fn check_pipeline(yaml: &str) -> Result<Checked, Vec<String>> {
    let mut pipeline: serde_norway::Value = serde_norway::from_str(yaml).map_err(|e| vec![format!("YAML: {e}")])?;
    pipeline.apply_merge().map_err(|e| vec![format!("YAML merge keys: {e}")])?;
    let mut pipeline: Value = serde_json::to_value(pipeline).map_err(|e| vec![format!("YAML to JSON: {e}")])?;
    // Concourse detects a put's inputs from its params before it fills in the ((vars)).
    let raw = pipeline.clone();
    let mut checked = Checked::default();
    interpolate(&mut pipeline, &mut checked.vars);

    let mut problems = Vec::new();
    let types: BTreeSet<&str> = list(&pipeline, "resource_types")
        .iter()
        .filter(|t| t.pointer("/source/repository").and_then(Value::as_str).is_some_and(|r| r.ends_with(IMAGE)))
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    if types.is_empty() {
        problems.push(format!("no resource_types entry has a source.repository ending in {IMAGE}"));
    }
    for resource in list(&pipeline, "resources") {
        let name = resource.get("name").and_then(Value::as_str).unwrap_or("?");
        if resource.get("type").and_then(Value::as_str).is_some_and(|t| types.contains(t)) {
            checked.resources.insert(name.to_owned());
            let source = resource.get("source").cloned().unwrap_or(Value::Null);
            if let Err(err) = Source::parse(source) {
                problems.push(format!("resource {name}: {err}"));
            }
        }
    }
    if checked.resources.is_empty() {
        problems.push("no resource of this type".into());
    }

    for (job, raw_job) in list(&pipeline, "jobs").iter().zip(list(&raw, "jobs")) {
        let job_name = job.get("name").and_then(Value::as_str).unwrap_or("?");
        let mut uses = 0;
        let raw_steps = job_steps(raw_job);
        for ((at, step), (_, raw_step)) in job_steps(job).into_iter().zip(raw_steps) {
            let (kind, name) = match (step.get("get"), step.get("put")) {
                (Some(Value::String(name)), _) => ("get", name),
                (_, Some(Value::String(name))) => ("put", name),
                _ => continue,
            };
            let resource = step.get("resource").and_then(Value::as_str).unwrap_or(name);
            if !checked.resources.contains(resource) {
                continue;
            }
            uses += 1;
            let at = format!("job {job_name}, {at} ({kind}: {name})");
            let sections: &[(&str, Parser)] = if kind == "put" {
                &[("params", out_params), ("get_params", in_params)]
            } else {
                &[("params", in_params)]
            };
            for (section, parse) in sections {
                let value = step.get(*section).cloned().unwrap_or(Value::Null);
                if let Some(keys) = value.as_object() {
                    checked.param_keys.extend(keys.keys().cloned());
                }
                if let Err(err) = parse(value) {
                    problems.push(format!("{at} {section}: {err}"));
                }
            }
            if kind == "put" {
                let (params, raw_params) = (&step["params"], &raw_step["params"]);
                problems.extend(check_put_inputs(step, raw_params, params).into_iter().map(|p| format!("{at}: {p}")));
            }
        }
        if uses > 0 {
            checked.jobs.insert(job_name.to_owned());
        }
    }
    if checked.jobs.is_empty() && !checked.resources.is_empty() {
        problems.push("no job gets or puts a resource of this type".into());
    }
    if problems.is_empty() { Ok(checked) } else { Err(problems) }
}

/// Every step of a job, with where it is: its plan, then its hooks.
fn job_steps(job: &Value) -> Vec<(String, &Value)> {
    let mut steps = Vec::new();
    for (i, step) in list(job, "plan").iter().enumerate() {
        collect_steps(step, format!("plan[{i}]"), &mut steps);
    }
    for hook in ["on_success", "on_failure", "on_error", "on_abort", "ensure"] {
        if let Some(step) = job.get(hook) {
            collect_steps(step, hook.to_owned(), &mut steps);
        }
    }
    steps
}

/// How one section of a step is checked.
type Parser = fn(Value) -> anyhow::Result<()>;

fn out_params(value: Value) -> anyhow::Result<()> {
    OutParams::parse(value).map(drop)
}

fn in_params(value: Value) -> anyhow::Result<()> {
    InParams::parse(value).map(drop)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// Every step in `step`, itself included, through `do`, `in_parallel`, `aggregate`, `try` and the step hooks.
fn collect_steps<'a>(step: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    for key in ["do", "aggregate"] {
        for (i, inner) in list(step, key).iter().enumerate() {
            collect_steps(inner, format!("{at}.{key}[{i}]"), out);
        }
    }
    if let Some(parallel) = step.get("in_parallel") {
        let steps = match parallel {
            Value::Array(steps) => steps.as_slice(),
            other => list(other, "steps"),
        };
        for (i, inner) in steps.iter().enumerate() {
            collect_steps(inner, format!("{at}.in_parallel[{i}]"), out);
        }
    }
    for key in ["try", "on_success", "on_failure", "on_error", "on_abort", "ensure"] {
        if let Some(inner) = step.get(key) {
            collect_steps(inner, format!("{at}.{key}"), out);
        }
    }
    out.push((at, step));
}

/// Replaces Concourse `((var))` placeholders: a value that is exactly one placeholder becomes the var's (typed)
/// value; placeholders inside a longer string are replaced by the value's text.
fn interpolate(value: &mut Value, vars: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            let trimmed = text.trim();
            if let Some(name) = trimmed.strip_prefix("((").and_then(|t| t.strip_suffix("))"))
                && !name.contains("((")
            {
                let name = name.trim().to_owned();
                *value = var_value(&name);
                vars.insert(name);
                return;
            }
            while let Some(start) = text.find("((") {
                let Some(len) = text[start..].find("))") else { break };
                let name = text[start + 2..start + len].trim().to_owned();
                let replacement = match var_value(&name) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                text.replace_range(start..start + len + 2, &replacement);
                vars.insert(name);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| interpolate(item, vars)),
        Value::Object(map) => map.values_mut().for_each(|item| interpolate(item, vars)),
        _ => {}
    }
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline-examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yml" || ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_pipeline_is_valid() {
    let files = examples();
    assert!(files.len() >= 4, "expected the example pipelines in pipeline-examples/, found {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        let yaml = std::fs::read_to_string(file).unwrap();
        match check_pipeline(&yaml) {
            Ok(checked) => eprintln!(
                "{name}: resources {:?}, jobs {:?}, params {:?}",
                checked.resources, checked.jobs, checked.param_keys
            ),
            Err(problems) => failures.extend(problems.into_iter().map(|p| format!("{name}: {p}"))),
        }
    }
    assert!(failures.is_empty(), "invalid example pipelines:\n{}", failures.join("\n"));
}

/// The examples show what the README promises: gates, rollback, build once deploy many, credentials from vars.
#[test]
fn examples_cover_the_documented_features() {
    let mut keys = BTreeSet::new();
    for file in examples() {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let checked = check_pipeline(&yaml).unwrap_or_default();
        keys.extend(checked.param_keys);
        // Credentials only ever come from ((vars)), never written into an example.
        let pipeline: Value = serde_norway::from_str(&yaml).unwrap();
        for resource in list(&pipeline, "resources") {
            if !checked.resources.contains(resource["name"].as_str().unwrap_or_default()) {
                continue;
            }
            for secret in ["password", "client_secret"] {
                if let Some(text) = resource["source"].get(secret).and_then(Value::as_str) {
                    assert!(
                        text.starts_with("((") && text.ends_with("))"),
                        "{}: source.{secret} of {} must be a ((var))",
                        file.display(),
                        resource["name"]
                    );
                }
            }
        }
    }
    for key in [
        "path",
        "manifest",
        "verify",
        "smoke_test",
        "kpi",
        "canary",
        "watch",
        "rollback",
        "droplet",
        "download_droplet",
        "task",
        "restage",
        "hold",
        "promote",
        "abort",
    ] {
        assert!(keys.contains(key), "no example uses `{key}`; keys used: {keys:?}");
    }
}

/// Builds of a deploy job deploy in order only when the job is serial (the resource's lock keeps deploys from
/// overlapping, not in order), and a rollback job never runs beside a deploy when they share a serial group.
#[test]
fn every_deploy_job_is_serial_and_shares_a_serial_group_with_the_rollback_job() {
    for file in examples() {
        let yaml = std::fs::read_to_string(&file).unwrap();
        let checked = check_pipeline(&yaml).unwrap_or_default();
        let pipeline: Value = serde_norway::from_str(&yaml).unwrap();
        let groups = |job: &Value| -> BTreeSet<String> {
            list(job, "serial_groups").iter().filter_map(Value::as_str).map(str::to_owned).collect()
        };
        let (mut deploys, mut rollbacks) = (Vec::new(), Vec::new());
        for job in list(&pipeline, "jobs") {
            let puts: Vec<&Value> = list(job, "plan")
                .iter()
                .flat_map(|step| {
                    let mut steps = Vec::new();
                    collect_steps(step, String::new(), &mut steps);
                    steps
                })
                .map(|(_, step)| step)
                .filter(|step| step.get("put").and_then(Value::as_str).is_some_and(|p| checked.resources.contains(p)))
                .collect();
            if puts.is_empty() {
                continue;
            }
            assert_eq!(
                job["serial"],
                json!(true),
                "{}: job {} puts the resource: serial: true",
                file.display(),
                job["name"]
            );
            if puts.iter().all(|put| put["params"]["rollback"] == json!(true)) {
                rollbacks.push(groups(job));
            } else {
                deploys.push((job["name"].clone(), groups(job)));
            }
        }
        for rollback in &rollbacks {
            for (name, deploy) in &deploys {
                assert!(
                    !deploy.is_disjoint(rollback),
                    "{}: job {name} shares no serial_groups with the rollback job",
                    file.display()
                );
            }
        }
    }
}

// The checker itself: deliberately broken pipelines must fail, each with a message naming the problem.

const TYPES: &str = "
resource_types:
- name: cf-blue-green
  type: registry-image
  source: {repository: example/cf-blue-green-resource}
";

fn pipeline(resources_and_jobs: &str) -> String {
    format!("{TYPES}{resources_and_jobs}")
}

const PROD: &str = "
resources:
- name: prod
  type: cf-blue-green
  source:
    api: https://api.sys.example.com
    username: ((cf.username))
    password: ((cf.password))
    organization: o
    space: s
    app: myapp
";

fn problems(yaml: &str) -> String {
    match check_pipeline(yaml) {
        Ok(checked) => panic!("expected the checker to reject this pipeline; it found {checked:?}"),
        Err(problems) => problems.join("\n"),
    }
}

#[test]
fn checker_accepts_a_valid_pipeline_and_replaces_vars() {
    let yaml = pipeline(&format!("{PROD}jobs:\n- name: deploy\n  plan:\n  - put: prod\n    params: {{path: app}}\n"));
    let checked = check_pipeline(&yaml).unwrap();
    assert_eq!(checked.jobs, BTreeSet::from(["deploy".to_owned()]));
    assert_eq!(checked.vars, BTreeSet::from(["cf.password".to_owned(), "cf.username".to_owned()]));
}

#[test]
fn checker_rejects_an_unknown_source_key() {
    let yaml = pipeline(&format!(
        "{}jobs:\n- name: deploy\n  plan:\n  - put: prod\n",
        PROD.replace("organization: o", "organisation: o")
    ));
    let found = problems(&yaml);
    assert!(
        found.contains("resource prod: source.organisation is not a known key; did you mean organization?"),
        "{found}"
    );
}

#[test]
fn checker_rejects_an_unknown_put_param_nested_in_steps() {
    let yaml = pipeline(&format!(
        "{PROD}jobs:
- name: deploy
  plan:
  - in_parallel:
      steps:
      - do:
        - put: prod
          params:
            path: app
            manfest: app/manifest.yml
"
    ));
    let found = problems(&yaml);
    assert!(
        found.contains(
            "job deploy, plan[0].in_parallel[0].do[0] (put: prod) params: params.manfest is not a known key; \
             did you mean manifest?"
        ),
        "{found}"
    );
}

#[test]
fn checker_rejects_unknown_get_params_and_get_step_params() {
    let yaml = pipeline(&format!(
        "{PROD}jobs:
- name: deploy
  plan:
  - put: prod
    params: {{path: app}}
    get_params: {{download_dropplet: true}}
- name: fetch
  plan:
  - get: current
    resource: prod
    params: {{droplet: true}}
"
    ));
    let found = problems(&yaml);
    assert!(found.contains("(put: prod) get_params: params.download_dropplet is not a known key"), "{found}");
    assert!(found.contains("job fetch, plan[0] (get: current) params: params.droplet is not a known key"), "{found}");
}

#[test]
fn checker_rejects_wrong_types_and_invalid_combinations() {
    let yaml = pipeline(&format!(
        "{PROD}jobs:
- name: deploy
  plan:
  - put: prod
    params: {{path: app, droplet: d/droplet.tgz, drain: soon}}
"
    ));
    let found = problems(&yaml);
    assert!(found.contains("params.drain"), "{found}");
    let yaml =
        pipeline(&format!("{PROD}jobs:\n- name: d\n  plan:\n  - put: prod\n    params: {{rollback: true, path: a}}\n"));
    assert!(problems(&yaml).contains("params.rollback redeploys the previous app"));
}

#[test]
fn checker_rejects_a_pipeline_without_a_job_using_the_resource() {
    let yaml = pipeline(&format!("{PROD}jobs:\n- name: unrelated\n  plan:\n  - task: t\n    file: x/t.yml\n"));
    assert!(problems(&yaml).contains("no job gets or puts a resource of this type"));
    assert!(problems(&pipeline("resources: []\njobs: []\n")).contains("no resource of this type"));
}

#[test]
fn typed_vars_and_placeholders_inside_strings() {
    let mut value = json!({"api": "((cf-prod.api))", "note": "deployed to ((cf.space)) by ((cf.user))", "n": 1});
    let mut vars = BTreeSet::new();
    interpolate(&mut value, &mut vars);
    assert_eq!(value["api"], "https://api.sys.prod.example.com");
    assert_eq!(value["note"], "deployed to cf.space-value by cf.user-value");
    assert_eq!(vars.len(), 3);
}

/// The examples of `atc/exec/put_inputs_test.go`'s kind: every string value at any depth, its first real path
/// segment.
#[test]
fn detect_names_inputs_as_concourse_does() {
    let params = json!({
        "path": "build/myapp-*.jar",
        "manifest": "./app-src/ci/manifest.yml",
        "smoke_test": {"path": "../../tests/run.sh", "args": ["--quick", "fixtures"]},
        "instances": 4,
        "verify": [{"path": "/health"}],
        "plain": "app",
    });
    let names: Vec<String> = detect(&params).into_iter().collect();
    assert_eq!(names, ["", "--quick", "app", "app-src", "build", "fixtures", "tests"]);
}

#[test]
fn checker_rejects_a_put_reading_an_input_it_does_not_mount() {
    let put = |inputs: &str, params: &str| {
        pipeline(&format!("{PROD}jobs:\n- name: deploy\n  plan:\n  - put: prod\n{inputs}    params: {params}\n"))
    };
    // The smoke test opens version/number, which no param names.
    let smoke = "{path: build/app.jar, smoke_test: {path: app-src/ci/smoke-test.sh}}";
    let found = problems(&put("", smoke));
    assert!(
        found.contains(
            "the smoke test app-src/ci/smoke-test.sh reads version/number, but input 'version' is not mounted \
             (inputs detected"
        ),
        "{found}"
    );
    assert!(!found.contains("params.path"), "build is detected from params.path: {found}");
    assert!(check_pipeline(&put("    inputs: [build, app-src, version]\n", smoke)).is_ok());
    assert!(check_pipeline(&put("    inputs: all\n", smoke)).is_ok());
    let found = problems(&put("    inputs: [app-src]\n", "{path: build/app.jar, manifest: app-src/m.yml}"));
    assert!(
        found.contains("params.path reads build/app.jar, but input 'build' is not mounted (inputs listed"),
        "{found}"
    );
    // A smoke test no one said anything about.
    let found = problems(&put("", "{smoke_test: {path: tests/smoke.sh}}"));
    assert!(found.contains("smoke test tests/smoke.sh: say in SMOKE_TEST_READS which files it opens"), "{found}");
}
