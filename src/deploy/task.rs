//! `params.task`: a command run as a Cloud Foundry task on the candidate's droplet, with its env and bound
//! services, after staging and before the candidate starts (database migrations before the new version serves).
//! Its output is streamed from Log Cache into the build log as it runs; a task that fails, or is still running
//! at its `timeout` (then it is cancelled), fails the deploy before the swap, so production is never touched.
//! The journal says phase `task` and names the task, so when the put dies meanwhile the next put's recovery
//! cancels it ([`cancel_left_running`]).

use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};

use super::context::Context;
use super::lock::Lock;
use crate::cf::tasks::{NewTask, Task, TaskState};
use crate::cf::{CfClient, Error, ListParams, Poll, Wait};
use crate::config::TaskParams;
use crate::log;
use crate::record::{Journal, Phase};

/// Runs `task` on the candidate (which has its droplet, env and bindings but is not started) to its end.
pub(crate) async fn run(ctx: &Context, lock: &Lock, task: &TaskParams) -> Result<()> {
    let (cf, app) = (&ctx.cf, &lock.app);
    lock.record(|j| j.phase = Phase::Task).await?;
    let (memory_in_mb, disk_in_mb) = match (task.memory_mb, task.disk_mb) {
        (Some(memory), Some(disk)) => (Some(memory), Some(disk)),
        (memory, disk) => {
            let processes = cf.processes().for_app(&app.guid).await?;
            let web = processes.iter().find(|p| p.kind == "web");
            (memory.or(web.and_then(|w| w.memory_in_mb)), disk.or(web.and_then(|w| w.disk_in_mb)))
        }
    };
    let new = NewTask { name: task.name.clone(), command: task.command.clone(), memory_in_mb, disk_in_mb };
    log::info(format_args!("running the task '{}' on {}: {}", task.name, app.name, task.command));
    let start = crate::cf::logs::now_ns();
    let created =
        cf.tasks().create(&app.guid, &new).await.with_context(|| format!("starting the task '{}'", task.name))?;
    lock.record(|j| j.task = Some(created.guid.clone())).await?;
    let source_type = format!("APP/TASK/{}", task.name);
    let timeout = ctx.within(task.timeout)?;
    let ended = cf
        .logs()
        .follow_while(&app.guid, start, wait_ended(cf, &created.guid, timeout), |line| {
            if line.source_type == source_type {
                log::output(&line.message);
            }
        })
        .await;
    match ended {
        Ok(done) if done.state == TaskState::Succeeded => {
            log::success(format_args!("the task '{}' succeeded", task.name));
            Ok(())
        }
        Ok(done) => {
            let reason = done.result.failure_reason.unwrap_or_else(|| "no reason given".into());
            bail!("the task '{}' failed: {reason}", task.name)
        }
        Err(Error::Timeout { after, .. }) => {
            cf.tasks().cancel(&created.guid).await.context("cancelling the task")?;
            bail!("the task '{}' did not finish within {} and was cancelled", task.name, log::human_duration(after))
        }
        Err(e) => Err(anyhow!(e)).context(format!("waiting for the task '{}'", task.name)),
    }
}

/// Polls the task until SUCCEEDED or FAILED, within `timeout`.
async fn wait_ended(cf: &CfClient, guid: &str, timeout: Duration) -> crate::cf::Result<Task> {
    Wait::new(format!("the task {guid} to finish"), timeout)
        .until(|| async {
            let task = cf.tasks().get(guid).await?;
            Ok(if task.state.is_terminal() { Poll::Ready(task) } else { Poll::Pending })
        })
        .await
}

/// Recovery of a put that died in phase `task`: cancels the task it recorded, or, when it died before CF named
/// the task, every task of the candidate still pending or running (deleting an app cancels its tasks, keeping
/// it as `<app>-failed` would not).
pub(crate) async fn cancel_left_running(cf: &CfClient, candidate_guid: &str, journal: &Journal) -> Result<()> {
    if journal.phase != Phase::Task {
        return Ok(());
    }
    let guids = match &journal.task {
        Some(guid) => vec![guid.clone()],
        None => {
            let running = ListParams::new().filter("states", ["PENDING", "RUNNING"]);
            cf.tasks().for_app(candidate_guid, running).await?.into_iter().map(|t| t.guid).collect()
        }
    };
    for guid in guids {
        let task =
            cf.tasks().cancel(&guid).await.with_context(|| format!("cancelling the dead deploy's task {guid}"))?;
        match task {
            Some(task) if task.state.is_terminal() => {
                log::detail(format_args!("the dead deploy's task '{}' had ended ({:?})", task.name, task.state));
            }
            Some(task) => log::detail(format_args!("cancelled the dead deploy's task '{}' ({guid})", task.name)),
            None => log::detail(format_args!("the dead deploy's task {guid} no longer exists")),
        }
    }
    Ok(())
}
