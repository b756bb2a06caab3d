//! Telling an application what retention did, through the rights contract (docs/rights.md):
//! the same signed JWS its rights endpoint already receives, with the type `archived`,
//! `erasure` or `anonymisation`, `reason: "retention"` and the category. Delivered by the
//! durable `retention.tell` job, deduplicated per (record, type), so a run killed and run
//! again tells each application once. A final answer is not awaited: any 2xx acknowledges.

use std::sync::Weak;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::jobs::{Handler, JobError, NewJob};
use crate::rights::contract::{AppRequest, RequestType, SubjectIdentity};
use crate::rights::propagation::{CALLBACK_ROUTE, endpoint_url, timeout_of};
use crate::store::{JobRow, RetentionRow};

pub const KIND: &str = "retention.tell";
const LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// What the job carries: pseudonymous ids only.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tell {
    reference: String,
    activity: String,
    category: String,
    route: String,
    app_subject: String,
    #[serde(rename = "type")]
    kind: RequestType,
    at_us: i64,
}

/// The reference applications deduplicate on: stable for one record and type.
pub fn reference(row: &RetentionRow, kind: RequestType) -> String {
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    let digest = crate::consent::sha256_hex(&format!("{}\n{}\n{}\n{kind}", row.subject, row.activity, row.category));
    format!("RT-{}", digest.get(..12).unwrap_or_default().to_uppercase())
}

/// Queues the message for the record's application; nothing when the activity has no rights
/// endpoint or the gateway never learned the application's pseudonym.
pub async fn enqueue(app: &App, row: &RetentionRow, kind: RequestType) -> Result<bool, crate::jobs::JobsError> {
    let Some(job) = job(app, row, kind)? else { return Ok(false) };
    app.jobs.enqueue(job).await?;
    Ok(true)
}

/// Queues the messages of a run's batch in one store transaction, each as [`enqueue`].
pub async fn enqueue_many(app: &App, rows: &[&RetentionRow], kind: RequestType) -> Result<(), crate::jobs::JobsError> {
    let mut jobs = Vec::new();
    for row in rows {
        jobs.extend(job(app, row, kind)?);
    }
    app.jobs.enqueue_many(&jobs).await?;
    Ok(())
}

/// The job telling the record's application, deduplicated per (record, type); `None` when
/// the application cannot be told.
fn job(app: &App, row: &RetentionRow, kind: RequestType) -> Result<Option<NewJob>, crate::jobs::JobsError> {
    let has_endpoint = app.policies.load().activity(&row.activity).is_some_and(|a| a.rights_endpoint.is_some());
    let (true, Some(route), Some(app_subject)) = (has_endpoint, row.route.clone(), row.app_subject.clone()) else {
        return Ok(None);
    };
    let reference = reference(row, kind);
    let tell = Tell {
        reference: reference.clone(),
        activity: row.activity.clone(),
        category: row.category.clone(),
        route,
        app_subject,
        kind,
        at_us: crate::audit::event::to_micros(app.clock.now()),
    };
    Ok(Some(NewJob::new(KIND, &tell)?.dedup(format!("{KIND}:{reference}"))))
}

pub struct TellApplication {
    pub app: Weak<App>,
}

impl Handler for TellApplication {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            let t: Tell = serde_json::from_str(&job.payload).map_err(|_| JobError::Permanent("unreadable payload"))?;
            deliver(&app, &t).await
        })
    }
}

async fn deliver(app: &App, t: &Tell) -> Result<(), JobError> {
    let endpoint = app
        .policies
        .load()
        .activity(&t.activity)
        .and_then(|a| a.rights_endpoint.clone())
        .and_then(|e| endpoint_url(app, Some(&t.route), &e))
        .ok_or(JobError::Permanent("the activity has no rights endpoint any more"))?;
    let now = app.clock.now();
    let submitted = crate::audit::event::from_micros(t.at_us)
        .and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok())
        .ok_or(JobError::Permanent("unreadable time"))?;
    let claims = AppRequest {
        request_id: format!("{}.{}", t.reference, t.activity),
        request_type: t.kind,
        regulation: "gdpr".to_owned(),
        submitted_time: submitted,
        subject_identity: SubjectIdentity { kind: "pseudonym".to_owned(), value: t.app_subject.clone() },
        activity: t.activity.clone(),
        status_callback_url: format!(
            "{}{}",
            app.auth.public_url.trim_end_matches('/'),
            CALLBACK_ROUTE.replace("{route}", &t.route)
        ),
        corrections: None,
        reason: Some("retention".to_owned()),
        category: Some(t.category.clone()),
        aud: t.route.clone(),
        iat: now.unix_timestamp(),
        exp: (now + LIFETIME).unix_timestamp(),
    };
    let claims = serde_json::to_value(&claims).map_err(|_| JobError::Permanent("unencodable request"))?;
    let jws = app.auth.sign_rights_request(&claims).map_err(|_| JobError::Retry("cannot sign the request"))?;
    let timeout = timeout_of(app, Some(&t.route));
    match app.rights_http.post(&endpoint, "application/jose", jws.into_bytes(), timeout).await {
        Ok(r) if r.status.is_success() => Ok(()),
        Ok(r) if r.status.is_client_error() => Err(JobError::Permanent("the application refused the retention notice")),
        Ok(_) => Err(JobError::Retry("the application failed (5xx)")),
        Err(crate::auth::http::HttpError::Url) => Err(JobError::Permanent("invalid rights endpoint")),
        Err(_) => Err(JobError::Retry("the application is unreachable")),
    }
}
