//! Async jobs: an operation answered with 202 and a `Location` to a job that stays PROCESSING for the configured
//! delay (so clients really poll), then runs and turns COMPLETE or FAILED with CF errors and warnings.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::present;
use crate::shared::{Ctx, Knobs};
use crate::state::{Job, JobState};

pub fn routes() -> Router<Ctx> {
    Router::new().route("/v3/jobs/{guid}", get(get_job))
}

async fn get_job(State(ctx): State<Ctx>, Path(guid): Path<String>) -> ApiResult<Json<Value>> {
    let state = ctx.state();
    let job = state.jobs.get(&guid).ok_or_else(|| ApiError::not_found("Job"))?;
    Ok(Json(present::job(&ctx.urls.api, job)))
}

/// The work of a job: its warnings on success.
pub type Work = Box<dyn FnOnce(&Ctx) -> Result<Vec<String>, ApiError> + Send>;

/// Creates a job for `operation`, schedules `work` and answers 202 with its location.
pub fn enqueue(ctx: &Ctx, operation: &str, resource_link: Option<(String, String)>, work: Work) -> Response {
    let guid = {
        let mut state = ctx.state();
        let common = state.common();
        let guid = common.guid.clone();
        state.jobs.insert(
            guid.clone(),
            Job {
                common,
                operation: operation.to_string(),
                state: JobState::Processing,
                errors: Vec::new(),
                warnings: Vec::new(),
                resource_link,
            },
        );
        guid
    };
    let delay = Knobs::ms(&ctx.knobs.job_delay_ms);
    let task_ctx = ctx.clone();
    let job_guid = guid.clone();
    ctx.runtime.spawn(async move {
        tokio::time::sleep(delay).await;
        let result = work(&task_ctx);
        let mut state = task_ctx.state();
        if let Some(mut job) = state.jobs.remove(&job_guid) {
            match result {
                Ok(warnings) => {
                    job.state = JobState::Complete;
                    job.warnings = warnings;
                }
                Err(error) => {
                    job.state = JobState::Failed;
                    job.errors = vec![error];
                }
            }
            state.touch(&mut job.common);
            state.jobs.insert(job_guid, job);
        }
    });
    (StatusCode::ACCEPTED, [(header::LOCATION, format!("{}/v3/jobs/{guid}", ctx.urls.api))]).into_response()
}
