//! Tasks: a one-off command run on an app's droplet with its env and bindings (`POST /v3/apps/:guid/tasks`),
//! read (`GET /v3/tasks/:guid`), listed per app and cancelled (`POST /v3/tasks/:guid/actions/cancel`). States:
//! PENDING → RUNNING → SUCCEEDED or FAILED (with `result.failure_reason`); CANCELING until a cancel lands.

use serde::{Deserialize, Serialize};

use crate::cf::api::resource;
use crate::cf::api::{Api, Labelled};
use crate::cf::error::Result;
use crate::cf::paginate::ListParams;
use crate::cf::retry::create_id;
use crate::cf::types::{MetadataPatch, null_as_default};
use crate::record::CREATE_ID_LABEL;

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum TaskState {
    Pending,
    Running,
    Canceling,
    Succeeded,
    Failed,
    #[serde(other)]
    Unknown,
}

impl TaskState {
    /// SUCCEEDED or FAILED: the task will not change any more.
    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, TaskState::Succeeded | TaskState::Failed)
    }
}

/// `result` of a task.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub(crate) struct TaskResult {
    #[serde(default)]
    pub(crate) failure_reason: Option<String>,
}

resource! {
    /// A task.
    pub(crate) struct Task at "/v3/tasks", tasks {
        pub(crate) name: String,
        pub(crate) state: TaskState,
        #[serde(default)]
        pub(crate) sequence_id: Option<u64>,
        #[serde(default)]
        pub(crate) memory_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) disk_in_mb: Option<u64>,
        #[serde(default)]
        pub(crate) droplet_guid: Option<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        pub(crate) result: TaskResult,
    }
}

/// What to run: the command, its name (which labels its logs `APP/TASK/<name>`) and its limits (the Cloud
/// Controller's defaults when `None`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct NewTask {
    pub(crate) name: String,
    pub(crate) command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory_in_mb: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) disk_in_mb: Option<u64>,
}

impl Api<Task> {
    /// `POST /v3/apps/:guid/tasks` on the app's current droplet. Carries a create-id label, so after an ambiguous
    /// failure the app's tasks are looked up by it before it is created again: a task is never run twice.
    pub(crate) async fn create(&self, app_guid: &str, task: &NewTask) -> Result<Task> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            task: &'a NewTask,
            metadata: MetadataPatch,
        }
        let id = create_id();
        let body = Body { task, metadata: MetadataPatch::new().label(CREATE_ID_LABEL, &id) };
        let path = format!("/v3/apps/{app_guid}/tasks");
        let find = || async {
            let found =
                self.for_app(app_guid, ListParams::new().label_selector(format!("{CREATE_ID_LABEL}={id}"))).await?;
            Ok(found.into_iter().find(|t| t.metadata().labels.get(CREATE_ID_LABEL).is_some_and(|v| *v == id)))
        };
        self.cf.create_or_find("the task", || self.cf.post(&path, &body), find).await
    }

    /// `GET /v3/apps/:guid/tasks` with `params` (e.g. a `states` filter), every page.
    pub(crate) async fn for_app(&self, app_guid: &str, params: ListParams) -> Result<Vec<Task>> {
        Ok(self.cf.list_all(&format!("/v3/apps/{app_guid}/tasks"), &params).await?.resources)
    }

    /// `POST /v3/tasks/:guid/actions/cancel`. A task that has already ended cannot be cancelled (CC answers 422):
    /// then it is answered as it is; `None` when the task no longer exists (its app was deleted).
    pub(crate) async fn cancel(&self, guid: &str) -> Result<Option<Task>> {
        match self.cf.post(&format!("{}/actions/cancel", self.path_of(guid)), &serde_json::json!({})).await {
            Ok(task) => Ok(Some(task)),
            Err(e) => match self.find(guid).await? {
                Some(task) if !task.state.is_terminal() => Err(e),
                found => Ok(found),
            },
        }
    }
}
