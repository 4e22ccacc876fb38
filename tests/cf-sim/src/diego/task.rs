//! Running a task as Diego does (CC desires it with `lib/cloud_controller/diego/task_recipe_builder.rb`): its own
//! container with a copy of the task's droplet, `sh -c COMMAND` with the app's env, `VCAP_SERVICES`, the task's
//! `VCAP_APPLICATION` and `MEMORY_LIMIT` (`task_environment.rb`), its output logged with the run action's log
//! source `APP/TASK/<name>` (`buildpack/task_action_builder.rb`) and instance `0`, and the container's lifecycle
//! as `CELL`. On exit the task completes as `task_completion_handler.rb` records it: SUCCEEDED, or FAILED with
//! Diego's failure reason (`APP/TASK/<name>: Exited with status N`, as an LRP's crash reason is worded). A task
//! set CANCELING (`task_cancel.rb`) or whose app was deleted (`task_delete.rb`) is killed; a cancelled one ends
//! FAILED with BBS's reason "task was cancelled", one of a deleted app is removed.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use super::instance::{forward_output, signal_group};
use super::launch::app_env;
use crate::logs::Stream;
use crate::shared::Shared;
use crate::state::{Lifecycle, TaskState};

const CELL: &str = "sim-cell-0";
/// How often a running task looks whether it was cancelled or its app deleted.
const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// BBS's failure reason of a cancelled task.
pub const CANCELLED: &str = "task was cancelled";

/// What the container needs, read once when the task starts.
struct TaskSpec {
    task_guid: String,
    app_guid: String,
    source_type: String,
    command: String,
    droplet_dir: PathBuf,
    env: Vec<(String, String)>,
}

/// How a task's process ended.
enum Ending {
    Exited(i32),
    Cancelled,
    AppDeleted,
    NotStarted(String),
}

/// Runs a RUNNING task to its end, in the background.
pub fn spawn(shared: &Arc<Shared>, task_guid: &str) {
    let (shared, guid) = (shared.clone(), task_guid.to_string());
    shared.runtime.clone().spawn(async move { run(&shared, &guid).await });
}

fn spec(shared: &Shared, task_guid: &str) -> Option<TaskSpec> {
    let state = shared.state();
    let task = state.tasks.get(task_guid)?;
    let app = state.apps.get(&task.app_guid)?;
    let version = crate::clock::new_guid();
    let vcap_application = super::launch::vcap_application(
        &state,
        app,
        &shared.urls.api,
        json!({
            "application_version": version,
            "limits": {"disk": crate::cc::tasks::DEFAULT_APP_DISK_MB, "fds": 16384, "mem": task.memory_in_mb},
            "version": version,
        }),
    );
    let mut env = app_env(&state, app);
    env.push(("VCAP_APPLICATION".into(), vcap_application.to_string()));
    env.push(("MEMORY_LIMIT".into(), format!("{}m", task.memory_in_mb)));
    env.push(("CF_API".into(), shared.urls.api.clone()));
    if matches!(app.lifecycle, Lifecycle::Buildpack { .. }) {
        env.push(("LANG".into(), "en_US.UTF-8".into()));
    }
    Some(TaskSpec {
        task_guid: task_guid.to_string(),
        app_guid: app.common.guid.clone(),
        source_type: format!("APP/TASK/{}", task.name),
        command: task.command.clone(),
        droplet_dir: shared.blobs.droplet_dir(&task.droplet_guid),
        env,
    })
}

async fn run(shared: &Arc<Shared>, task_guid: &str) {
    let Some(spec) = spec(shared, task_guid) else { return };
    let cell = |message: String| shared.logs.push(&spec.app_guid, "CELL", "0", Stream::Out, &message);
    cell(format!("Cell {CELL} creating container for instance {task_guid}"));
    let container = shared.blobs.instance_dir(task_guid);
    let ending = match prepare(&spec, &container).await {
        Err(reason) => Ending::NotStarted(reason),
        Ok(mut command) => match command.spawn() {
            Err(error) => Ending::NotStarted(format!("failed to start the process: {error}")),
            Ok(mut child) => {
                cell(format!("Cell {CELL} successfully created container for instance {task_guid}"));
                forward_output(shared, &mut child, &spec.app_guid, &spec.source_type, "0");
                supervise(shared, &spec, &mut child).await
            }
        },
    };
    if let Ending::Exited(code) = ending {
        cell(format!("Exit status {code}"));
    }
    cell(format!("Cell {CELL} successfully destroyed container for instance {task_guid}"));
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(container)).await;
    complete(shared, &spec, ending);
}

/// The container: the droplet copied, the command ready to run in it.
async fn prepare(spec: &TaskSpec, container: &std::path::Path) -> Result<Command, String> {
    let (droplet, dir) = (spec.droplet_dir.clone(), container.to_path_buf());
    let copied = tokio::task::spawn_blocking(move || crate::blobstore::link_tree(&droplet, &dir)).await;
    if !matches!(copied, Ok(Ok(()))) {
        return Err("failed to create container: the droplet could not be copied".into());
    }
    let app_dir = if container.join("app").is_dir() { container.join("app") } else { container.to_path_buf() };
    let tmp = container.join("tmp");
    let _ = std::fs::create_dir_all(&tmp);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .current_dir(app_dir)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CF_INSTANCE_GUID", &spec.task_guid)
        .env("CF_INSTANCE_INDEX", "0")
        .env("CF_INSTANCE_IP", "127.0.0.1")
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    Ok(command)
}

/// Waits for the process to exit, killing its process group when the task is cancelled or its app deleted.
async fn supervise(shared: &Arc<Shared>, spec: &TaskSpec, child: &mut Child) -> Ending {
    let pid = child.id().expect("a just-spawned child has a pid");
    shared.diego.guardian().watch(pid);
    let ending = loop {
        tokio::select! {
            status = child.wait() => {
                let code = status.ok().and_then(|s| s.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|sig| 128 + sig))).unwrap_or(-1);
                break Ending::Exited(code);
            }
            _ = tokio::time::sleep(CANCEL_CHECK_INTERVAL) => {}
        }
        let state = shared.state();
        if !state.apps.contains_key(&spec.app_guid) {
            break Ending::AppDeleted;
        }
        if state.tasks.get(&spec.task_guid).is_none_or(|t| t.state == TaskState::Canceling) {
            break Ending::Cancelled;
        }
    };
    signal_group(pid, libc::SIGKILL);
    let _ = child.wait().await;
    shared.diego.guardian().forget(pid);
    ending
}

/// Records the task's end as CC's completion handler does.
fn complete(shared: &Shared, spec: &TaskSpec, ending: Ending) {
    let mut state = shared.state();
    if matches!(ending, Ending::AppDeleted) || !state.apps.contains_key(&spec.app_guid) {
        state.tasks.remove(&spec.task_guid);
        return;
    }
    let Some(mut task) = state.tasks.get(&spec.task_guid).cloned() else { return };
    let (task_state, reason) = match ending {
        Ending::Exited(0) => (TaskState::Succeeded, None),
        Ending::Exited(code) => (TaskState::Failed, Some(format!("{}: Exited with status {code}", spec.source_type))),
        Ending::Cancelled | Ending::AppDeleted => (TaskState::Failed, Some(CANCELLED.to_string())),
        Ending::NotStarted(reason) => (TaskState::Failed, Some(reason)),
    };
    task.state = task_state;
    task.failure_reason = reason;
    state.touch(&mut task.common);
    state.tasks.insert(spec.task_guid.clone(), task);
}
