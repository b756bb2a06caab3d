//! The DPO's side of the rights API, under `/.guichet/api/v1/rights/queue`: the open requests
//! oldest first with their due date, one request in full, and the steps a handler takes —
//! start, pause and resume the clock over an identity doubt, extend, refuse, complete. For
//! agents holding `auth.dpo_role` or one of `rights.handler_roles`; JSON only (no cross-site
//! form can post here); every step is journaled by the service with the agent and role.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::Date;

use super::agent_api::agent_with_role;
use super::api::{RequestView, is_json, problem, rights_problem, view_on};
use super::request::{DocumentKind, IdentityProof, Refusal, Status};
use super::service::{By, RightsError, RightsRequest, parse_date};
use crate::app::{App, AppState};
use crate::clock::paris_date;
use crate::error::GatewayError;

pub const QUEUE_API: &str = "/.guichet/api/v1/rights/queue";
/// The tasks agents do by hand ("à traiter à la main"), oldest first.
pub const TASKS_API: &str = "/.guichet/api/v1/rights/tasks";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(QUEUE_API, get(queue))
        .route("/.guichet/api/v1/rights/queue/{id}", get(show))
        .route("/.guichet/api/v1/rights/queue/{id}/start", post(start))
        .route("/.guichet/api/v1/rights/queue/{id}/pause", post(pause))
        .route("/.guichet/api/v1/rights/queue/{id}/resume", post(resume))
        .route("/.guichet/api/v1/rights/queue/{id}/extend", post(extend))
        .route("/.guichet/api/v1/rights/queue/{id}/refuse", post(refuse))
        .route("/.guichet/api/v1/rights/queue/{id}/complete", post(complete))
        .route("/.guichet/api/v1/rights/queue/{id}/lift", post(lift))
        .route(TASKS_API, get(tasks))
        .route("/.guichet/api/v1/rights/queue/{id}/tasks/{activity}/done", post(task_done))
}

/// A request as its handler sees it: the citizen's view plus who filed it, how identity was
/// established, the pause and the extensions.
#[derive(Debug, Serialize)]
pub struct HandlerView {
    #[serde(flatten)]
    pub request: RequestView,
    /// The pseudonymous subject id (never a name).
    pub subject: String,
    pub agent: Option<String>,
    pub identity: IdentityView,
    pub paused: bool,
    pub days_left: i64,
    pub extensions: Vec<ExtensionView>,
    /// A lifted restriction: what each application answered to the `restriction_lifted`
    /// notice (the detail of one request only; absent from lists).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifted: Vec<LiftedView>,
}

/// An application's answer to a `restriction_lifted` notice (kept as proof it was told).
#[derive(Debug, Serialize)]
pub struct LiftedView {
    pub activity: String,
    /// `completed`, `refused`, `pending` or `in_progress`.
    pub status: String,
    #[serde(with = "time::serde::rfc3339")]
    pub answered_at: time::OffsetDateTime,
}

/// The answers to `r`'s `restriction_lifted` notices, for its detail.
pub async fn lifted_views(app: &App, r: &RightsRequest) -> Result<Vec<LiftedView>, RightsError> {
    if r.right != super::request::Right::Restriction {
        return Ok(Vec::new());
    }
    let answers = app.rights.lifted_answers(&r.id).await?;
    Ok(answers
        .into_iter()
        .filter_map(|(activity, status, at)| {
            Some(LiftedView { activity, status, answered_at: crate::audit::event::from_micros(at)? })
        })
        .collect())
}

/// How identity was established, flattened for the API (`method` + `acr` or `document`).
#[derive(Debug, Serialize)]
pub struct IdentityView {
    pub method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentKind>,
}

#[derive(Debug, Serialize)]
pub struct ExtensionView {
    pub months: u8,
    pub reason: String,
    pub notice_sent_on: String,
}

fn handler_view(app: &App, r: &RightsRequest) -> HandlerView {
    handler_view_on(paris_date(app.clock.now()), r)
}

/// A request as its handler sees it on `today` (the command line's view too).
pub fn handler_view_on(today: Date, r: &RightsRequest) -> HandlerView {
    let identity = match &r.identity {
        IdentityProof::SignIn { acr } => IdentityView { method: "sign_in", acr: Some(acr.clone()), document: None },
        IdentityProof::Document { kind } => IdentityView { method: "document", acr: None, document: Some(*kind) },
    };
    HandlerView {
        request: view_on(today, r),
        subject: r.subject.clone(),
        agent: r.agent.clone(),
        identity,
        paused: r.deadline.paused_since().is_some(),
        days_left: r.deadline.days_left(today),
        extensions: r
            .deadline
            .extensions()
            .iter()
            .map(|e| ExtensionView {
                months: e.months,
                reason: e.reason.clone(),
                notice_sent_on: e.notice_sent_on.to_string(),
            })
            .collect(),
        lifted: Vec::new(),
    }
}

/// The signed-in handler (DPO or handler role), or the problem to answer.
async fn handler(app: &App, headers: &HeaderMap) -> Result<By, Response> {
    let settings = &app.settings;
    let allowed: Vec<&str> = std::iter::once(settings.auth.dpo_role.as_str())
        .chain(settings.rights.handler_roles.iter().map(String::as_str))
        .collect();
    let what = "the agent has no role allowing to handle rights requests";
    agent_with_role(app, headers, &allowed, what).await
}

/// A handler for a POST: JSON content only, then the role.
async fn handler_post(app: &App, headers: &HeaderMap) -> Result<By, Response> {
    if !is_json(headers) {
        return Err(problem(
            &GatewayError::BadRequest("this call takes application/json"),
            "handler call without JSON",
        ));
    }
    handler(app, headers).await
}

fn answer(app: &App, result: Result<RightsRequest, RightsError>) -> Response {
    match result {
        Ok(r) => Json(handler_view(app, &r)).into_response(),
        Err(e) => rights_problem(&e),
    }
}

fn bad_body(what: &'static str) -> Response {
    problem(&GatewayError::BadRequest(what), "bad handler body")
}

async fn queue(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = handler(&app, &headers).await {
        return r;
    }
    match app.rights.open().await {
        Ok(rs) => Json(serde_json::json!({
            "requests": rs.iter().map(|r| handler_view(&app, r)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => rights_problem(&e),
    }
}

async fn show(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = handler(&app, &headers).await {
        return r;
    }
    let r = match app.rights.get(&id).await {
        Ok(r) => r,
        Err(e) => return rights_problem(&e),
    };
    let mut view = handler_view(&app, &r);
    match lifted_views(&app, &r).await {
        Ok(lifted) => view.lifted = lifted,
        Err(e) => return rights_problem(&e),
    }
    Json(view).into_response()
}

async fn start(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    answer(&app, app.rights.advance(&id, Status::InProgress, None, &by).await)
}

async fn pause(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    answer(&app, app.rights.pause(&id, &by).await)
}

async fn resume(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    answer(&app, app.rights.resume(&id, &by).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtendBody {
    months: u8,
    reason: String,
    /// When the citizen was told (a letter already posted); default: today, the notice being
    /// sent now.
    #[serde(default)]
    notice_sent_on: Option<String>,
}

async fn extend(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<ExtendBody>, JsonRejection>,
) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Json(body)) = body else { return bad_body("the body must be {months, reason, notice_sent_on?}") };
    let notice_on = match body.notice_sent_on.as_deref().map(parse_date) {
        None => paris_date(app.clock.now()),
        Some(Ok(d)) => d,
        Some(Err(_)) => return bad_body("notice_sent_on is a date, YYYY-MM-DD"),
    };
    match app.rights.extend(&id, body.months, body.reason, notice_on, &by).await {
        Ok(r) => {
            // Art. 12(3): the citizen is told of the extension and its reason.
            crate::notify::rights_extended(&app, &r).await;
            Json(handler_view(&app, &r)).into_response()
        }
        Err(e) => rights_problem(&e),
    }
}

async fn refuse(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Refusal>, JsonRejection>,
) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Json(refusal)) = body else {
        return bad_body("the body must be {ground, reason, earlier_requests?, article?}");
    };
    let refused = app.rights.refuse(&id, refusal, &by).await;
    if let Ok(r) = &refused {
        super::ops::tell_if_answered(&app, r).await;
    }
    answer(&app, refused)
}

/// How a request ends well: done, or done in part (what could not be done is in the summary).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Completed,
    PartlyCompleted,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    outcome: Outcome,
    summary: String,
}

async fn complete(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<CompleteBody>, JsonRejection>,
) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Json(body)) = body else { return bad_body("the body must be {outcome, summary}") };
    if body.summary.trim().is_empty() {
        return problem(&GatewayError::Unprocessable("an answer needs its summary for the citizen"), "empty summary");
    }
    let to = match body.outcome {
        Outcome::Completed => Status::Completed,
        Outcome::PartlyCompleted => Status::PartlyCompleted,
    };
    let done = app.rights.advance(&id, to, Some(body.summary), &by).await;
    if let Ok(r) = &done {
        super::ops::tell_if_answered(&app, r).await;
    }
    answer(&app, done)
}

/// Lifts an Art. 18 restriction: the citizen's data is used again, and each application
/// with a rights endpoint is told (`restriction_lifted`).
async fn lift(State(app): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match app.rights.get(&id).await {
        Ok(r) if r.right != super::request::Right::Restriction => {
            return problem(&GatewayError::Unprocessable("only a restriction request can be lifted"), "lift");
        }
        Ok(_) => {}
        Err(e) => return rights_problem(&e),
    }
    match super::ops::lift(&app, &id, &by).await {
        Ok(lifted) => Json(serde_json::json!({ "id": id, "lifted": lifted })).into_response(),
        Err(e) => rights_problem(&e),
    }
}

/// One task an agent must do by hand, as the handlers' API shows it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub request_id: String,
    pub activity: String,
    /// Why it is manual (plain French).
    pub reason: Option<String>,
    pub since: String,
}

pub fn task_view(row: &crate::store::PropagationRow) -> TaskView {
    let since = crate::audit::event::from_micros(row.created_at_us)
        .map_or_else(String::new, |t| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default());
    TaskView { request_id: row.request_id.clone(), activity: row.activity.clone(), reason: row.reason.clone(), since }
}

async fn tasks(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = handler(&app, &headers).await {
        return r;
    }
    match app.rights.manual_tasks().await {
        Ok(rows) => {
            Json(serde_json::json!({ "tasks": rows.iter().map(task_view).collect::<Vec<_>>() })).into_response()
        }
        Err(e) => rights_problem(&e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDoneBody {
    outcome: super::ops::TaskOutcome,
    /// What was done, or why it was refused, in plain French (told to the citizen).
    answer: String,
}

async fn task_done(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path((id, activity)): Path<(String, String)>,
    body: Result<Json<TaskDoneBody>, JsonRejection>,
) -> Response {
    let by = match handler_post(&app, &headers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Json(body)) = body else { return bad_body("the body must be {outcome, answer}") };
    if body.answer.trim().is_empty() {
        return problem(&GatewayError::Unprocessable("a task needs its answer for the citizen"), "empty answer");
    }
    answer(&app, super::ops::close_task(&app, &id, &activity, body.outcome, &body.answer, &by).await)
}
