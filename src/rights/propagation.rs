//! Propagation to the applications (Art. 19): each activity a request concerns gets a row in
//! `rights_propagation`, and each one with a rights endpoint a durable job (`rights.propagate`)
//! that signs the request as a JWS, POSTs it and stores the answer. An activity without an
//! endpoint waits for an agent ("à traiter à la main"). When every activity has its final
//! answer, the request is completed, or partly completed when one refused.
//! `docs/rights.md` ("The application contract") is what application teams read.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::contract::{AppAnswer, AppRequest, AppStatus, RequestType, SubjectIdentity};
use super::request::{Right, Status};
use super::service::{By, RightsError, RightsRequest, refusal_for};
use crate::app::App;
use crate::audit::Actor;
use crate::auth::session::Session;
use crate::jobs::{Handler, JobError, NewJob};
use crate::policy::model::ActivityFile;
use crate::policy::{PolicySet, Sector};
use crate::store::{JobRow, PropagationRow};

pub const KIND: &str = "rights.propagate";
/// A rectification's state until the citizen gives the corrected values.
pub const AWAITING_CORRECTIONS: &str = "corrections";
/// Where applications POST later statuses; the route's name follows.
/// Where applications POST later answers; `{route}` is the application's route name.
pub const CALLBACK_ROUTE: &str = "/.guichet/api/v1/rights/callbacks/{route}";
/// How long a signed request stays valid: long enough for the retries of a day.
const REQUEST_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The pseudonyms a request is carried under: the field subject (owner of the data keys)
/// and, per configured route, the pseudonym that route's application knows. Computed from
/// the citizen's session when the request is filed, since neither can be derived from the
/// consent subject afterwards. `field` is the `general` sector's (v1) field subject;
/// `sectors` holds the other sectors' field and consent subjects (docs/cryptography.md,
/// "Sector pseudonyms"): kept with the request, the one place where the citizen's sectors
/// are joined, because the citizen filed a request that reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subjects {
    pub field: String,
    pub routes: BTreeMap<String, String>,
    #[serde(default)]
    pub sectors: BTreeMap<String, SectorSubjects>,
}

/// A citizen's pseudonyms inside one sector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectorSubjects {
    pub field: String,
    pub consent: String,
}

impl Subjects {
    pub fn of(app: &App, session: &Session) -> Self {
        let routes =
            app.proxy.routes().iter().map(|r| (r.name.to_string(), app.auth.route_subject(session, &r.name))).collect();
        let sectors = Sector::ALL
            .into_iter()
            .filter(|s| *s != Sector::General)
            .map(|s| {
                let ids = SectorSubjects {
                    field: app.auth.field_subject_in(session, s).to_owned(),
                    consent: app.auth.consent_subject_in(session, s).to_owned(),
                };
                (s.as_str().to_owned(), ids)
            })
            .collect();
        Self { field: app.auth.field_subject(session).to_owned(), routes, sectors }
    }

    /// The field subject that owns new records in `sector` (the v1 one for `general`, or when
    /// the sector's was not recorded: requests filed before sectors existed).
    pub fn field_in(&self, sector: Sector) -> &str {
        self.sectors.get(sector.as_str()).map_or(self.field.as_str(), |s| s.field.as_str())
    }

    /// Every field subject that may own records of an activity in `sector`: the sector's and
    /// the v1 one (records sealed before the activity had a sector), without repeats.
    pub fn fields_for(&self, sector: Sector) -> Vec<&str> {
        let mut out = vec![self.field_in(sector)];
        if out.first() != Some(&self.field.as_str()) {
            out.push(self.field.as_str());
        }
        out
    }

    /// Every field subject of the citizen, `general` first.
    pub fn all_fields(&self) -> Vec<&str> {
        std::iter::once(self.field.as_str()).chain(self.sectors.values().map(|s| s.field.as_str())).collect()
    }

    /// The consent subject of `sector`, when recorded; `general` is the request's own subject.
    pub fn consent_in(&self, sector: Sector) -> Option<&str> {
        self.sectors.get(sector.as_str()).map(|s| s.consent.as_str())
    }
}

/// Keeps the pseudonyms a citizen recorded current, at each sign-in: a row recorded earlier
/// (rights request, counter code, address for e-mails) that lacks ids derived now is
/// rewritten. A row written before sectors existed holds no sector's ids, and a sector's
/// records can only be made in a session, so after this no record under a sector id is out
/// of reach of the citizen's requests, of the DPO's join or of retention's lookups
/// (docs/cryptography.md, "Migration"). No row is created here: only the citizen's own act
/// records one.
pub async fn refresh_recorded(app: &App, session: &Session) {
    let subject = app.auth.consent_subject(session);
    let fresh = Subjects::of(app, session);
    let outcome = match app.rights.subjects_of(subject).await {
        Ok(Some(recorded)) if recorded != fresh => app.rights.remember_subjects(subject, &fresh).await,
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = outcome {
        tracing::warn!(error = %e, "cannot bring the recorded pseudonyms up to date at sign-in");
    }
}

/// The job's payload: which (request, activity) to deliver; everything else is in the store.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    request_id: String,
    activity: String,
    /// Set when the job tells the application a restriction ended (no answer is stored).
    #[serde(default)]
    lifted: bool,
}

/// The system acting on a request (journaled as such).
pub fn system() -> By {
    By { actor: Actor::system(), role: Actor::system().id }
}

/// The activities a request concerns: its one activity, or all of them; those whose legal
/// basis excludes the right are left out (the request's answer says so for a single one).
fn in_scope<'s>(set: &'s PolicySet, r: &RightsRequest) -> Vec<&'s Arc<ActivityFile>> {
    set.activities
        .iter()
        .filter(|a| r.activity.as_deref().is_none_or(|id| id == a.id))
        .filter(|a| refusal_for(r.right, a).is_none())
        .collect()
}

/// The configured route whose pseudonym the activity's application knows: `rights_route`,
/// else the route that serves the activity's first `[[routes]]` rule.
pub fn route_of(app: &App, set: &PolicySet, activity: &ActivityFile) -> Option<String> {
    if let Some(r) = &activity.rights_route {
        return Some(r.clone());
    }
    let rule = set.routes().iter().find(|r| *r.processing.activity == *activity.id)?;
    let sample = rule.pattern.sample_path();
    let hosts = std::iter::once(rule.host.as_deref()).chain(app.proxy.routes().iter().map(|r| r.host.as_deref()));
    hosts.filter_map(|h| app.proxy.routes().find(h, &sample)).map(|r| r.name.to_string()).next()
}

/// Starts a request that was not refused: records its targets, does what the gateway itself
/// must (erasure shreds, restriction marks), queues one delivery per activity with an endpoint
/// and moves the request to `waiting_on_applications` (or `completed` when nothing is left).
/// Objections wait for an authorised agent's decision and are not started here.
pub async fn start(app: &App, request: &RightsRequest, subjects: &Subjects) -> Result<RightsRequest, RightsError> {
    start_with(app, request, Some(subjects)).await
}

/// Why an activity's part of a request without pseudonyms is done by hand (plain French,
/// for the handler).
pub const NO_PSEUDONYMS: &str = "Usager sans compte en ligne : l'application ne le connaît pas sous un pseudonyme. \
Retrouvez ses données avec la pièce vue au guichet, puis traitez la demande à la main.";

/// Starts a request the gateway cannot name to the applications: a citizen without an online
/// account identified at the counter (or by a code made before pseudonyms were recorded).
/// Each activity in scope becomes a task done by hand ([`NO_PSEUDONYMS`]), in the handlers'
/// queue with the others; the request waits for them and completes when they are closed.
pub async fn start_by_hand(app: &App, request: &RightsRequest) -> Result<RightsRequest, RightsError> {
    start_with(app, request, None).await
}

async fn start_with(
    app: &App,
    request: &RightsRequest,
    subjects: Option<&Subjects>,
) -> Result<RightsRequest, RightsError> {
    if request.status != Status::Received || request.right == Right::Objection {
        return Ok(request.clone());
    }
    let set = app.policies.load_full();
    let now = crate::audit::event::to_micros(app.clock.now());
    let mut jobs = Vec::new();
    for activity in in_scope(&set, request) {
        let route = route_of(app, &set, activity);
        let endpoint = activity.rights_endpoint.is_some() && route.is_some();
        let waits_for_corrections = request.right == Right::Rectification;
        let reason = match (subjects, endpoint) {
            (None, _) => Some(NO_PSEUDONYMS.to_owned()),
            (Some(_), false) => Some("Pas de point de contact pour les droits : à traiter à la main.".to_owned()),
            (Some(_), true) => None,
        };
        let row = PropagationRow {
            request_id: request.id.clone(),
            activity: activity.id.clone(),
            app_subject: subjects.zip(route.as_ref()).and_then(|(s, r)| s.routes.get(r).cloned()),
            route,
            field_subject: subjects.map(|s| s.field_in(activity.sector).to_owned()),
            state: match (endpoint && subjects.is_some(), waits_for_corrections) {
                (true, false) => "sending",
                (true, true) => AWAITING_CORRECTIONS,
                (false, _) => "manual",
            }
            .to_owned(),
            status: None,
            reason,
            records: None,
            corrections: None,
            created_at_us: now,
            answered_at_us: None,
        };
        app.rights.add_target(&row).await?;
        // The gateway's own part (keys, marks) is under the field subjects: none without them.
        let fields = subjects.map(|s| s.fields_for(activity.sector)).into_iter().flatten();
        match request.right {
            Right::Erasure => {
                for field in fields {
                    super::erasure::erase(app, field, &activity.id).await?;
                }
            }
            Right::Restriction => {
                for field in fields {
                    super::restriction::restrict(app, field, &activity.id).await?;
                }
            }
            _ => {}
        }
        if row.state == "sending" {
            jobs.push(activity.id.clone());
        }
    }
    // The contact address is the gateway's own data, kept for notices about every activity:
    // only an erasure of everything removes it (the answer then goes by letter or is read in
    // the privacy centre).
    if request.right == Right::Erasure && request.activity.is_none() {
        app.notify.forget(&request.subject).await.map_err(|e| {
            tracing::error!(error = %e, "cannot forget the contact address for an erasure");
            RightsError::Shred
        })?;
    }
    let by = system();
    let r = app.rights.advance(&request.id, Status::InProgress, None, &by).await?;
    let r = app.rights.advance(&r.id, Status::WaitingOnApplications, None, &by).await?;
    for activity in jobs {
        enqueue(app, &request.id, &activity, false).await?;
    }
    settle(app, &r.id).await
}

/// Queues the delivery of (request, activity); idempotent on that pair.
pub async fn enqueue(app: &App, request_id: &str, activity: &str, lifted: bool) -> Result<(), RightsError> {
    let payload = Payload { request_id: request_id.to_owned(), activity: activity.to_owned(), lifted };
    let suffix = if lifted { ":lifted" } else { "" };
    let job = NewJob::new(KIND, payload)
        .map_err(|_| RightsError::Corrupt)?
        .dedup(format!("{KIND}:{request_id}:{activity}{suffix}"));
    app.jobs.enqueue(job).await.map_err(|e| match e {
        crate::jobs::JobsError::Store(s) => RightsError::Store(s),
        _ => RightsError::Random,
    })?;
    Ok(())
}

/// Completes the request once every activity has a final answer: `completed` when all did
/// what was asked, `partly_completed` when one refused. Leaves it waiting otherwise (an
/// application still working, or an agent's task open). Two instances settling at once: one
/// wins, the other sees the request already final.
pub async fn settle(app: &App, request_id: &str) -> Result<RightsRequest, RightsError> {
    let request = app.rights.get(request_id).await?;
    if request.status != Status::WaitingOnApplications {
        return Ok(request);
    }
    let targets = app.rights.targets(request_id).await?;
    if targets.iter().any(|t| t.state != "answered") {
        return Ok(request);
    }
    let refused = targets.iter().any(|t| t.status.as_deref() == Some("refused"));
    let to = if refused { Status::PartlyCompleted } else { Status::Completed };
    let set = app.policies.load();
    let summary = summary(&set, &request, &targets);
    match app.rights.advance(request_id, to, Some(summary), &system()).await {
        Ok(r) => {
            super::ops::tell_if_answered(app, &r).await;
            Ok(r)
        }
        Err(RightsError::Conflict | RightsError::Transition(_)) => app.rights.get(request_id).await,
        Err(e) => Err(e),
    }
}

/// What the citizen reads at the end: one line per activity, then what the gateway keeps.
fn summary(set: &PolicySet, r: &RightsRequest, targets: &[PropagationRow]) -> String {
    let mut lines: Vec<String> = targets
        .iter()
        .map(|t| {
            let name = set.activity(&t.activity).map_or(t.activity.as_str(), |a| a.name.as_str());
            match (t.status.as_deref(), t.reason.as_deref()) {
                (Some("refused"), Some(why)) => format!("{name} : refusé. {why}"),
                (Some("refused"), None) => format!("{name} : refusé."),
                _ => format!("{name} : fait."),
            }
        })
        .collect();
    if targets.is_empty() {
        lines.push("Aucun service ne détient de données vous concernant pour cette demande.".to_owned());
    }
    if r.right == Right::Erasure {
        lines.push(super::erasure::KEPT.to_owned());
    }
    lines.join("\n")
}

/// Builds the claims the application receives.
fn app_request(app: &App, r: &RightsRequest, row: &PropagationRow, kind: RequestType) -> Option<AppRequest> {
    let route = row.route.clone()?;
    let now = app.clock.now();
    let exp = now + REQUEST_LIFETIME;
    let corrections = row.corrections.as_deref().and_then(|c| serde_json::from_str(c).ok());
    Some(AppRequest {
        request_id: format!("{}.{}", r.id, row.activity),
        request_type: kind,
        regulation: "gdpr".to_owned(),
        submitted_time: r.received_at.format(&time::format_description::well_known::Rfc3339).ok()?,
        subject_identity: SubjectIdentity { kind: "pseudonym".to_owned(), value: row.app_subject.clone()? },
        activity: row.activity.clone(),
        status_callback_url: format!(
            "{}{}",
            app.auth.public_url.trim_end_matches('/'),
            CALLBACK_ROUTE.replace("{route}", &route)
        ),
        corrections,
        reason: None,
        category: None,
        aud: route,
        iat: now.unix_timestamp(),
        exp: exp.unix_timestamp(),
    })
}

pub fn request_type(right: Right) -> RequestType {
    match right {
        Right::Access => RequestType::Access,
        Right::Portability => RequestType::Portability,
        Right::Rectification => RequestType::Rectification,
        Right::Erasure => RequestType::Erasure,
        Right::Restriction => RequestType::Restriction,
        Right::Objection => RequestType::Objection,
    }
}

/// The `rights.propagate` handler. Holds the application weakly: the runner never keeps it
/// alive.
pub struct Propagate {
    pub app: Weak<App>,
}

impl Handler for Propagate {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            let p: Payload =
                serde_json::from_str(&job.payload).map_err(|_| JobError::Permanent("unreadable payload"))?;
            deliver(&app, &p).await
        })
    }
}

async fn deliver(app: &App, p: &Payload) -> Result<(), JobError> {
    let store_err = |_| JobError::Retry("the store is unavailable");
    let Some(row) = app.rights.target(&p.request_id, &p.activity).await.map_err(store_err)? else {
        return Err(JobError::Permanent("no such request and activity"));
    };
    if row.state == "answered" && !p.lifted {
        return Ok(());
    }
    let request = app.rights.get(&p.request_id).await.map_err(store_err)?;
    if request.status == Status::Cancelled && !p.lifted {
        return Ok(());
    }
    let set = app.policies.load();
    let endpoint = set
        .activity(&p.activity)
        .and_then(|a| a.rights_endpoint.as_deref())
        .and_then(|e| endpoint_url(app, row.route.as_deref(), e));
    let kind = if p.lifted { RequestType::RestrictionLifted } else { request_type(request.right) };
    let (Some(endpoint), Some(claims)) = (endpoint, app_request(app, &request, &row, kind)) else {
        return Err(JobError::Permanent("the activity has no rights endpoint any more"));
    };
    let claims = serde_json::to_value(&claims).map_err(|_| JobError::Permanent("unencodable request"))?;
    let jws = app.auth.sign_rights_request(&claims).map_err(|_| JobError::Retry("cannot sign the request"))?;
    let timeout = timeout_of(app, row.route.as_deref());
    let reply = app.rights_http.post(&endpoint, "application/jose", jws.into_bytes(), timeout).await;
    let reply = match reply {
        Ok(r) => r,
        Err(crate::auth::http::HttpError::Timeout(_)) => return Err(JobError::Retry("the application timed out")),
        Err(crate::auth::http::HttpError::Url) => return Err(JobError::Permanent("invalid rights endpoint")),
        Err(_) => return Err(JobError::Retry("the application is unreachable")),
    };
    let status = reply.status.as_u16();
    if p.lifted {
        // The answer is kept as proof the application was told (Art. 19).
        let kept = match status {
            200..=299 => lifted_status(read_answer(&reply.body, status == 202).status),
            400..=499 => "refused",
            _ => return Err(JobError::Retry("the application failed")),
        };
        app.rights.record_lifted(&p.request_id, &p.activity, kept).await.map_err(store_err)?;
        return if status >= 400 { Err(JobError::Permanent("the application refused the notice")) } else { Ok(()) };
    }
    match status {
        200 | 202 => {
            let answer = read_answer(&reply.body, status == 202);
            record(app, &p.request_id, &p.activity, &answer).await
        }
        201..=299 => {
            let pending =
                AppAnswer { request_id: String::new(), status: AppStatus::Pending, reason: None, records: None };
            record(app, &p.request_id, &p.activity, &pending).await
        }
        400..=499 => {
            let why = "L'application a refusé la demande comme invalide : à traiter à la main.";
            app.rights.to_manual(&p.request_id, &p.activity, why).await.map_err(store_err)?;
            tracing::warn!(request = %p.request_id, activity = %p.activity, status, "application refused a rights request");
            Err(JobError::Permanent("the application refused the request (4xx)"))
        }
        _ => Err(JobError::Retry("the application failed (5xx)")),
    }
}

fn lifted_status(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Pending => "pending",
        AppStatus::InProgress => "in_progress",
        AppStatus::Completed => "completed",
        AppStatus::Refused => "refused",
    }
}

/// The answer in a reply; a 202 with no readable body is "pending".
fn read_answer(body: &[u8], accepted: bool) -> AppAnswer {
    match serde_json::from_slice::<AppAnswer>(body) {
        Ok(a) if !(accepted && a.status.is_final()) => a,
        _ => AppAnswer { request_id: String::new(), status: AppStatus::Pending, reason: None, records: None },
    }
}

/// Stores an answer and settles the request when it was the last one missing.
pub async fn record(app: &App, request_id: &str, activity: &str, answer: &AppAnswer) -> Result<(), JobError> {
    let store_err = |_| JobError::Retry("the store is unavailable");
    let stored = app.rights.record_app_answer(request_id, activity, answer).await.map_err(store_err)?;
    if stored && answer.status.is_final() {
        settle(app, request_id).await.map_err(store_err)?;
    }
    Ok(())
}

/// The endpoint's URL: as written, or, for a path (`/droits`), under the upstream of the
/// application's route — an application behind the gateway usually serves it itself.
pub fn endpoint_url(app: &App, route: Option<&str>, endpoint: &str) -> Option<String> {
    if !endpoint.starts_with('/') {
        return Some(endpoint.to_owned());
    }
    let r = app.proxy.routes().iter().find(|r| Some(&*r.name) == route)?;
    let u = &r.upstream;
    Some(format!("{}://{}{}{endpoint}", u.scheme.as_str(), u.authority, u.base_path))
}

/// The rights endpoint must answer within its route's `response_headers` timeout.
pub fn timeout_of(app: &App, route: Option<&str>) -> Duration {
    route
        .and_then(|name| app.proxy.routes().iter().find(|r| &*r.name == name))
        .map_or(Duration::from_secs(10), |r| r.timeouts.response_headers)
}
