//! Phase 1 of a put: everything that can be checked without Cloud Foundry — input paths, the manifest and its
//! vars, the droplet's start command, the smoke-test program — so a mistake fails before anything is touched.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use crate::bits::{AppBits, find_input};
use crate::config::AppSource;
use crate::manifest::{AppManifest, Vars};
use crate::protocol::OutRequest;
use crate::verify::smoke;

/// Where the candidate's code comes from, resolved on disk.
#[derive(Debug)]
pub(crate) enum Payload {
    /// A directory or archive to package, upload and stage.
    App(AppBits),
    /// A droplet tarball to upload as is (no staging), with its process types.
    Droplet { tgz: PathBuf, process_types: BTreeMap<String, String> },
    /// A docker image.
    Docker { image: String, username: Option<String>, password: Option<String> },
    /// Nothing given: production's current droplet is copied (a redeploy with new settings).
    Production,
    /// `restage`: production's current package, staged again into the candidate.
    Restage,
}

impl Payload {
    pub(crate) fn describe(&self) -> String {
        match self {
            Payload::App(bits) => format!("app bits from {}", bits.param()),
            Payload::Droplet { tgz, .. } => format!("droplet {}", tgz.display()),
            Payload::Docker { image, .. } => format!("docker image {image}"),
            Payload::Production => "production's current droplet".into(),
            Payload::Restage => "production's current package, restaged".into(),
        }
    }
}

/// What phase 1 found.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) payload: Payload,
    /// The user's manifest, vars resolved, our app selected.
    pub(crate) manifest: Option<AppManifest>,
}

/// Checks the put's inputs; nothing here talks to Cloud Foundry.
pub(crate) fn prepare(request: &OutRequest) -> Result<Prepared> {
    let params = &request.params;
    let dir = &request.dir;
    let named = [("path", bits_param(&params.source)), ("droplet", droplet_param(&params.source))];
    for (key, param) in named.into_iter().chain([("manifest", params.manifest.as_deref())]) {
        if let Some(param) = param {
            input_present(dir, key, param)?;
        }
    }
    for file in &params.vars_files {
        input_present(dir, "vars_files", file)?;
    }
    let production = &request.source.names.production;
    let manifest = match &params.manifest {
        Some(param) => {
            let path = find_input(dir, "manifest", param)?;
            let vars = Vars::load(dir, &params.vars_files, &params.vars)?;
            Some((AppManifest::load(&path, param, &vars, production)?, path))
        }
        None => {
            if !params.vars.is_empty() || !params.vars_files.is_empty() {
                bail!("params.vars and params.vars_files fill in a manifest, but params.manifest is not set");
            }
            None
        }
    };

    let payload = match &params.source {
        AppSource::Bits(path) => Payload::App(AppBits::resolve(dir, path)?),
        AppSource::Droplet(param) => {
            let tgz = find_input(dir, "droplet", param)?;
            let process_types = droplet_process_types(&tgz, param)?;
            Payload::Droplet { tgz, process_types }
        }
        AppSource::Docker { image, username, password } => {
            Payload::Docker { image: image.clone(), username: username.clone(), password: password.clone() }
        }
        AppSource::Restage => match &manifest {
            Some((m, _)) if m.path().is_some() || m.docker_image().is_some() => bail!(
                "params.restage rebuilds production's current package; the manifest's path and docker image cannot be used with it"
            ),
            _ => Payload::Restage,
        },
        AppSource::Unspecified => match &manifest {
            Some((m, _)) if m.docker_image().is_some() => Payload::Docker {
                image: m.docker_image().unwrap_or_default().to_owned(),
                username: m.docker_username().map(str::to_owned),
                password: None,
            },
            Some((m, path)) if m.path().is_some() => {
                let manifest_dir = path.parent().unwrap_or(dir);
                if let Some(rel) = inside(dir, &manifest_dir.join(m.path().unwrap_or_default())) {
                    input_present(dir, "manifest's path", &rel)?;
                }
                Payload::App(AppBits::resolve(manifest_dir, m.path().unwrap_or_default()).with_context(|| {
                    format!("the 'path' of manifest {}", params.manifest.as_deref().unwrap_or_default())
                })?)
            }
            _ => Payload::Production,
        },
    };

    let manifest = manifest.map(|(m, _)| m);
    if manifest.as_ref().is_some_and(AppManifest::no_route) {
        if !params.verify.is_empty() {
            bail!("params.verify sends HTTP checks to the candidate's route, but the manifest says no-route");
        }
        if params.kpi.is_some() {
            bail!("params.kpi probes the candidate's route, but the manifest says no-route");
        }
    }
    Ok(Prepared { payload, manifest })
}

/// The smoke-test program in the put's inputs, if the params name one (a deploy and a rollback both run it).
pub(crate) fn smoke_test(request: &OutRequest) -> Result<Option<PathBuf>> {
    let resolve = |path: &str| {
        input_present(&request.dir, "smoke_test.path", path)?;
        smoke::resolve(&request.dir, path)
    };
    request.params.smoke_test.as_ref().map(|s| resolve(&s.path)).transpose()
}

fn bits_param(source: &AppSource) -> Option<&str> {
    match source {
        AppSource::Bits(path) => Some(path),
        _ => None,
    }
}

fn droplet_param(source: &AppSource) -> Option<&str> {
    match source {
        AppSource::Droplet(path) => Some(path),
        _ => None,
    }
}

/// `path` relative to `dir`, `..` resolved without touching the disk (the manifest's `path` may lead into
/// another input: `../build/app.jar`); `None` when it leaves `dir`.
fn inside(dir: &Path, path: &Path) -> Option<String> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.strip_prefix(dir).ok()?.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>().join("/"))
}

/// The input (a directory of the put directory, which Concourse mounts one per input) that `param` starts with
/// must be there: Concourse 8 mounts only the inputs a put's params name (`put.inputs: detect`) or its
/// `inputs:` list, so a missing one is named with what to do, rather than "no such file". A path starting with a
/// glob, an absolute one or one leaving the put directory is left to the checks that follow.
fn input_present(dir: &Path, key: &str, param: &str) -> Result<()> {
    let Some(input) = param.split('/').find(|part| !part.is_empty() && *part != ".") else {
        return Ok(());
    };
    if param.starts_with('/') || input == ".." || input.contains(['*', '?', '[']) || dir.join(input).exists() {
        return Ok(());
    }
    let mut present: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    present.sort();
    let present = if present.is_empty() { "none".to_owned() } else { present.join(", ") };
    let missing = if param.contains(['*', '?', '[']) { "matched no files" } else { "does not exist" };
    bail!(
        "params.{key} '{param}' {missing}: input '{input}' is not in this put (it has: {present}); Concourse 8 \
         mounts only the inputs a put's params name (put.inputs: detect): name '{input}' in params or add it to the \
         put's inputs:"
    )
}

/// The process types of a droplet tarball: from the `metadata.json` a `get` with `download_droplet` wrote next
/// to it, or from the `staging_info.yml` every CF droplet carries.
fn droplet_process_types(tgz: &Path, param: &str) -> Result<BTreeMap<String, String>> {
    if !tgz.is_file() {
        bail!("params.droplet '{param}' does not exist or is not a file ({})", tgz.display());
    }
    let beside = tgz.with_file_name("metadata.json");
    if let Ok(text) = std::fs::read_to_string(&beside) {
        let metadata: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("params.droplet: {} is not valid JSON", beside.display()))?;
        if let Some(types) = metadata.get("process_types").and_then(|t| t.as_object()) {
            let types: BTreeMap<String, String> =
                types.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect();
            if types.contains_key("web") {
                return Ok(types);
            }
        }
    }
    let start_command = staging_info_start_command(tgz)
        .with_context(|| format!("params.droplet '{param}' is not a readable droplet tarball"))?
        .ok_or_else(|| {
            anyhow!(
                "params.droplet '{param}': cannot tell the droplet's start command (no metadata.json with process_types beside it, and no staging_info.yml inside)"
            )
        })?;
    Ok(BTreeMap::from([("web".to_owned(), start_command)]))
}

fn staging_info_start_command(tgz: &Path) -> Result<Option<String>> {
    let file = std::fs::File::open(tgz)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().trim_start_matches("./").to_owned();
        if path == "staging_info.yml" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let info: serde_json::Value = serde_norway::from_str(&text)?;
            return Ok(info.get("start_command").and_then(|c| c.as_str()).filter(|c| !c.is_empty()).map(str::to_owned));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{OutParams, Source};
    use crate::protocol::BuildEnv;
    use serde_json::{Value, json};

    fn request(dir: &Path, params: Value) -> OutRequest {
        let source =
            Source::parse(json!({"api": "https://api.example.com", "username": "u", "password": "local-test-pw",
                                          "organization": "o", "space": "s", "app": "myapp"}))
            .unwrap();
        OutRequest {
            source,
            params: OutParams::parse(params).unwrap(),
            dir: dir.to_path_buf(),
            build: BuildEnv::default(),
        }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn manifest_path_key_locates_the_bits_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "repo/ci/manifest.yml", "applications:\n- name: myapp\n  path: ../app\n");
        write(dir.path(), "repo/app/index.html", "hi");
        let prepared = prepare(&request(dir.path(), json!({"manifest": "repo/ci/*.yml"}))).unwrap();
        let Payload::App(bits) = prepared.payload else { panic!("expected app bits") };
        assert!(bits.path().ends_with("repo/app"));
    }

    #[test]
    fn nothing_given_means_production_droplet() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(prepare(&request(dir.path(), json!({}))).unwrap().payload, Payload::Production));
    }

    #[test]
    fn vars_without_manifest_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = prepare(&request(dir.path(), json!({"vars": {"a": 1}}))).unwrap_err();
        assert!(err.to_string().contains("params.manifest is not set"), "{err}");
    }

    #[test]
    fn verify_with_a_no_route_manifest_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "m.yml", "applications:\n- name: myapp\n  no-route: true\n");
        let err = prepare(&request(dir.path(), json!({"manifest": "m.yml", "verify": [{"path": "/"}]}))).unwrap_err();
        assert!(err.to_string().contains("the manifest says no-route"), "{err}");
    }

    #[test]
    fn missing_manifest_names_the_param() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ci")).unwrap();
        let err = prepare(&request(dir.path(), json!({"manifest": "ci/*.yml"}))).unwrap_err();
        assert!(err.to_string().contains("params.manifest 'ci/*.yml' matched no files"), "{err}");
    }

    #[test]
    fn a_missing_input_is_named_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "app-src/manifest.yml", "applications:\n- name: myapp\n");
        let err = prepare(&request(dir.path(), json!({"path": "./build/app.jar", "manifest": "app-src/manifest.yml"})))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "params.path './build/app.jar' does not exist: input 'build' is not in this put (it has: app-src); \
             Concourse 8 mounts only the inputs a put's params name (put.inputs: detect): name 'build' in params or \
             add it to the put's inputs:"
        );
        let err = prepare(&request(dir.path(), json!({"manifest": "app-src/manifest.yml", "vars_files": ["v/x.yml"]})))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("params.vars_files 'v/x.yml' does not exist: input 'v' is not in this put"),
            "{err}"
        );
        let smoke = request(dir.path(), json!({"smoke_test": {"path": "tests/smoke.sh"}}));
        let err = smoke_test(&smoke).unwrap_err();
        assert!(
            err.to_string().starts_with("params.smoke_test.path 'tests/smoke.sh' does not exist: input 'tests' is not"),
            "{err}"
        );
        // The manifest's path leads into another input.
        write(dir.path(), "app-src/ci/m.yml", "applications:\n- name: myapp\n  path: ../../build/app.jar\n");
        let err = prepare(&request(dir.path(), json!({"manifest": "app-src/ci/m.yml"}))).unwrap_err();
        assert!(
            err.to_string().starts_with("params.manifest's path 'build/app.jar' does not exist: input 'build' is not"),
            "{err}"
        );
        // The input is there but not the file: the usual message.
        let err = prepare(&request(dir.path(), json!({"manifest": "app-src/nope.yml"}))).unwrap_err();
        assert!(!err.to_string().contains("is not in this put"), "{err}");
    }

    fn droplet_tgz(dir: &Path, staging_info: Option<&str>) -> PathBuf {
        let path = dir.join("droplet.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let mut add = |name: &str, body: &str| {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, body.as_bytes()).unwrap();
        };
        add("./app/run.sh", "echo hi");
        if let Some(info) = staging_info {
            add("./staging_info.yml", info);
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn droplet_start_command_from_staging_info_or_metadata() {
        let dir = tempfile::tempdir().unwrap();
        droplet_tgz(dir.path(), Some(r#"{"detected_buildpack":"","start_command":"./run.sh"}"#));
        let prepared = prepare(&request(dir.path(), json!({"droplet": "droplet.tgz"}))).unwrap();
        let Payload::Droplet { process_types, .. } = prepared.payload else { panic!("expected a droplet") };
        assert_eq!(process_types["web"], "./run.sh");

        write(dir.path(), "metadata.json", r#"{"process_types": {"web": "./other", "worker": "./work"}}"#);
        let prepared = prepare(&request(dir.path(), json!({"droplet": "droplet.tgz"}))).unwrap();
        let Payload::Droplet { process_types, .. } = prepared.payload else { panic!("expected a droplet") };
        assert_eq!(process_types.len(), 2);
        assert_eq!(process_types["web"], "./other");
    }

    #[test]
    fn droplet_without_start_command_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        droplet_tgz(dir.path(), None);
        let err = prepare(&request(dir.path(), json!({"droplet": "droplet.tgz"}))).unwrap_err();
        assert!(err.to_string().contains("cannot tell the droplet's start command"), "{err}");
        std::fs::write(dir.path().join("droplet.tgz"), "not a tarball").unwrap();
        let err = prepare(&request(dir.path(), json!({"droplet": "droplet.tgz"}))).unwrap_err();
        assert!(format!("{err:#}").contains("is not a readable droplet tarball"), "{err:#}");
    }
}
