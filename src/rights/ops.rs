//! Steps a handler takes after a request has started, shared by the DPO API and the command
//! line: lifting an Art. 18 restriction, closing a task an agent did by hand ("à traiter à
//! la main") with its answer, and telling the citizen once their answer can be read.

use super::contract::{AppAnswer, AppStatus};
use super::request::Status;
use super::service::{By, RightsError, RightsRequest};
use crate::app::App;

/// How an agent answered a task done by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOutcome {
    /// What was asked is done in the application.
    Completed,
    /// The application's service refused (the answer says why).
    Refused,
}

/// Tells the citizen their answer can be read, when `r` has one (completed, partly
/// completed, refused): for an access or portability request done, "your data is ready"
/// (not sent if they see it ready first, `notify::export_ready`); otherwise "the answer is
/// ready". Calling it again for the same request sends nothing more.
pub async fn tell_if_answered(app: &App, r: &RightsRequest) {
    match r.status {
        Status::Completed | Status::PartlyCompleted if super::export::Exports::check(r).is_ok() => {
            crate::notify::export_ready(app, r).await;
        }
        Status::Completed | Status::PartlyCompleted | Status::Refused => crate::notify::answer_ready(app, r).await,
        _ => {}
    }
}

/// Lifts the restriction `request_id` put in place (journaled `restriction_lifted`; each
/// application with an endpoint is told). Returns how many activities were lifted.
pub async fn lift(app: &App, request_id: &str, by: &By) -> Result<usize, RightsError> {
    super::restriction::lift(app, request_id, by).await
}

/// Closes the task an agent did by hand for (`request_id`, `activity`) with its answer, then
/// completes the request when every activity has answered. Only an open task can be closed:
/// anything else is `NotFound` (nothing to close) or a conflict (already answered).
pub async fn close_task(
    app: &App,
    request_id: &str,
    activity: &str,
    outcome: TaskOutcome,
    answer: &str,
    by: &By,
) -> Result<RightsRequest, RightsError> {
    let request = app.rights.get(request_id).await?;
    let task = app.rights.target(request_id, activity).await?.ok_or(RightsError::NotFound)?;
    if task.state != "manual" {
        return Err(RightsError::Conflict);
    }
    let status = match outcome {
        TaskOutcome::Completed => AppStatus::Completed,
        TaskOutcome::Refused => AppStatus::Refused,
    };
    let answered = AppAnswer {
        request_id: format!("{request_id}.{activity}"),
        status,
        reason: Some(answer.trim().to_owned()),
        records: None,
    };
    if !app.rights.record_app_answer(request_id, activity, &answered).await? {
        return Err(RightsError::Conflict);
    }
    app.rights.journal_activity_step(&request, activity, "task_done", by).await?;
    super::propagation::settle(app, request_id).await
}
