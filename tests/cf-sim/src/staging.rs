//! Staging, as a binary buildpack does it: unzip the package into a droplet, take the start command from the
//! process's `command` or the `Procfile`'s `web:` line, fail like CF when there is none, and stream realistic
//! staging output to the app's logs with source type STG while it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::logs::Stream;
use crate::shared::{Knobs, Shared};
use crate::state::{BuildState, Common, Droplet, DropletState, Lifecycle};

const NO_APP_DETECTED: &str = "NoAppDetectedError - An app was not successfully detected by any available buildpack";
/// The version the sim's buildpacks report.
pub const BUILDPACK_VERSION: &str = "1.1.0";
const COMPILE_FAILED: &str = "BuildpackCompileFailed - App staging failed in the buildpack compile phase";

/// What staging needs from the state, read once at the start.
struct Job {
    app_guid: String,
    package_guid: String,
    lifecycle: Lifecycle,
    docker_image: Option<String>,
    process_command: Option<String>,
    forced_failure: bool,
}

/// What the bits produced.
struct Staged {
    process_types: BTreeMap<String, String>,
    checksum: String,
    size: u64,
}

fn stg(shared: &Shared, app_guid: &str, message: &str) {
    shared.logs.push(app_guid, "STG", "0", Stream::Out, message);
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// Runs a build that was just created in state STAGING, to STAGED or FAILED.
pub async fn run_build(shared: Arc<Shared>, build_guid: String) {
    let job = {
        let mut state = shared.state();
        let Some(build) = state.builds.get(&build_guid) else { return };
        let (app_guid, package_guid, lifecycle) =
            (build.app_guid.clone(), build.package_guid.clone(), build.lifecycle.clone());
        let docker_image = state.packages.get(&package_guid).and_then(|p| p.docker.as_ref().map(|d| d.image.clone()));
        let process_command = state.app_process(&app_guid, "web").and_then(|p| p.command.clone());
        let forced_failure = state.fail_next_staging.remove(&app_guid);
        Job { app_guid, package_guid, lifecycle, docker_image, process_command, forced_failure }
    };
    let step = Knobs::ms(&shared.knobs.staging_delay_ms) / 4;
    let app = job.app_guid.as_str();
    stg(&shared, app, "Cell sim-cell-0 creating container for instance staging");
    stg(&shared, app, "Cell sim-cell-0 successfully created container for instance staging");
    stg(&shared, app, "Downloading app package...");
    tokio::time::sleep(step).await;
    let droplet_guid = crate::clock::new_guid();
    let droplet_dir = shared.blobs.droplet_dir(&droplet_guid);
    let source = match &job.docker_image {
        Some(image) => Source::Image(image.clone(), docker_dir(&shared, image)),
        None => Source::Zip(shared.blobs.package_zip(&job.package_guid)),
    };
    let size = source.size();
    stg(&shared, app, &format!("Downloaded app package ({})", human_size(size)));
    let buildpack = match &job.lifecycle {
        Lifecycle::Buildpack { buildpacks, .. } => {
            buildpacks.first().cloned().unwrap_or_else(|| "binary_buildpack".into())
        }
        Lifecycle::Docker => String::new(),
    };
    if job.docker_image.is_none() {
        stg(&shared, app, &format!("-----> {buildpack} (sim) version {BUILDPACK_VERSION}"));
    }
    tokio::time::sleep(step).await;
    let outcome = if job.forced_failure {
        Err(COMPILE_FAILED.to_string())
    } else {
        let (dir, command) = (droplet_dir.clone(), job.process_command.clone());
        tokio::task::spawn_blocking(move || stage_bits(&source, &dir, command.as_deref()))
            .await
            .unwrap_or_else(|e| Err(format!("StagerError - {e}")))
    };
    tokio::time::sleep(step).await;
    match outcome {
        Ok(staged) => {
            stg(&shared, app, "Exit status 0");
            stg(&shared, app, "Uploading droplet, build artifacts cache...");
            stg(&shared, app, "Uploading droplet...");
            tokio::time::sleep(step).await;
            stg(&shared, app, &format!("Uploaded droplet ({})", human_size(staged.size)));
            stg(&shared, app, "Uploading complete");
            stg(&shared, app, "Cell sim-cell-0 stopping instance staging");
            stg(&shared, app, "Cell sim-cell-0 destroying container for instance staging");
            let mut state = shared.state();
            let common = Common { guid: droplet_guid.clone(), ..state.common() };
            let (buildpacks, stack) = match &job.lifecycle {
                Lifecycle::Buildpack { stack, .. } => (vec![buildpack.clone()], Some(stack.clone())),
                Lifecycle::Docker => (Vec::new(), None),
            };
            state.droplets.insert(
                droplet_guid.clone(),
                Droplet {
                    common,
                    app_guid: job.app_guid.clone(),
                    package_guid: Some(job.package_guid.clone()),
                    state: DropletState::Staged,
                    error: None,
                    process_types: staged.process_types,
                    checksum: Some(staged.checksum),
                    buildpacks,
                    stack,
                    image: job.docker_image.clone(),
                    lifecycle_type: job.lifecycle.type_name(),
                    execution_metadata: String::new(),
                },
            );
            finish(&mut state, &build_guid, BuildState::Staged, None, Some(droplet_guid));
        }
        Err(error) => {
            let exit = if error.starts_with("NoAppDetectedError") { 222 } else { 223 };
            stg(&shared, app, &format!("**ERROR** {}", error.split(" - ").nth(1).unwrap_or(&error)));
            stg(&shared, app, &format!("Exit status {exit}"));
            stg(&shared, app, "Cell sim-cell-0 stopping instance staging");
            shared.blobs.remove_droplet(&droplet_guid);
            finish(&mut shared.state(), &build_guid, BuildState::Failed, Some(error), None);
        }
    }
}

fn finish(
    state: &mut crate::state::State,
    build_guid: &str,
    result: BuildState,
    error: Option<String>,
    droplet: Option<String>,
) {
    let Some(mut build) = state.builds.remove(build_guid) else { return };
    build.state = result;
    build.error = error;
    build.droplet_guid = droplet;
    state.touch(&mut build.common);
    state.builds.insert(build_guid.to_string(), build);
}

enum Source {
    Zip(PathBuf),
    /// A docker image and the directory the sim runs it from, if one is configured.
    Image(String, Option<PathBuf>),
}

impl Source {
    fn size(&self) -> u64 {
        match self {
            Source::Zip(zip) => std::fs::metadata(zip).map(|m| m.len()).unwrap_or(0),
            Source::Image(..) => 0,
        }
    }
}

fn docker_dir(shared: &Shared, image: &str) -> Option<PathBuf> {
    shared.config.docker_images.iter().find_map(|mapping| {
        let (name, dir) = crate::config::split_pair(mapping, '=', "--docker-image").ok()?;
        (name == image).then(|| PathBuf::from(dir))
    })
}

/// Builds the droplet directory (`<dir>/app`) and its tgz; finds the start commands.
fn stage_bits(source: &Source, dir: &Path, process_command: Option<&str>) -> Result<Staged, String> {
    let app_dir = dir.join("app");
    std::fs::create_dir_all(&app_dir).map_err(|e| format!("StagerError - {e}"))?;
    let result = match source {
        Source::Zip(zip) => crate::blobstore::extract_zip(zip, &app_dir)
            .map_err(|e| format!("StagerError - Staging error: the app package could not be unpacked: {e}")),
        Source::Image(image, Some(image_dir)) => crate::blobstore::link_tree(image_dir, &app_dir)
            .map_err(|e| format!("StagerError - Staging error: image {image}: {e}")),
        Source::Image(image, None) => Err(format!(
            "StagingError - Staging error: staging failed: unable to fetch image {image}: no such image in the sim"
        )),
    };
    let staged = result.and_then(|()| {
        let mut process_types = procfile(&app_dir.join("Procfile"));
        if let Some(command) = process_command {
            process_types.entry("web".into()).or_insert_with(|| command.to_string());
        }
        if process_types.get("web").is_none_or(|c| c.trim().is_empty()) && process_command.is_none() {
            return Err(NO_APP_DETECTED.to_string());
        }
        let staging_info = serde_json::json!({"detected_buildpack": "", "start_command": process_types.get("web")});
        std::fs::write(dir.join("staging_info.yml"), staging_info.to_string())
            .map_err(|e| format!("StagerError - {e}"))?;
        let tgz = dir.with_extension("tgz");
        crate::blobstore::tar_gz(dir, &tgz).map_err(|e| format!("StagerError - {e}"))?;
        let size = std::fs::metadata(&tgz).map(|m| m.len()).unwrap_or(0);
        let checksum = crate::blobstore::sha256_file(&tgz).map_err(|e| format!("StagerError - {e}"))?;
        Ok(Staged { process_types, checksum, size })
    });
    if staged.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    staged
}

/// `type: command` lines of a Procfile.
fn procfile(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (kind, command) = line.split_once(':')?;
            let kind = kind.trim();
            (!kind.is_empty() && !kind.starts_with('#')).then(|| (kind.to_string(), command.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_lines_become_process_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Procfile");
        std::fs::write(&path, "web: ./server --port $PORT\n# comment: x\nworker:  ./work\n").unwrap();
        let types = procfile(&path);
        assert_eq!(types["web"], "./server --port $PORT");
        assert_eq!(types["worker"], "./work");
        assert_eq!(types.len(), 2);
    }
}
