//! The rights service: records requests, applies the legal-basis rules and the deadline
//! clock, and journals every transition. It calls the store's rights repository and the
//! journal; pages, the API and the command line call it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::audit::{Actor, Audit, AuditError, AuditEvent, Ident, Operation, Outcome};
use crate::clock::{Clock, Random, paris_date};
use crate::policy::PolicySet;
use crate::policy::model::{ActivityFile, BasisChoice};
use crate::store::{PropagationRow, RightsRow, Store, StoreError};

use super::contract::{AppAnswer, AppStatus};

use super::deadline::{Deadline, DeadlineError, Extension};
use super::request::{
    Channel, IdentityProof, REMEDIES, Refusal, RefusalGround, Right, Status, TransitionError, check_transition,
};
use super::rules::{Applicability, applicability};

/// Letters that cannot be misread over the phone (Crockford's base 32: no I, L, O, U).
const REFERENCE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

#[derive(Debug, thiserror::Error)]
pub enum RightsError {
    #[error("no such request")]
    NotFound,
    #[error("no processing activity with this id")]
    UnknownActivity,
    #[error("an assisted channel needs the agent who recorded the request")]
    AgentMissing,
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Deadline(#[from] DeadlineError),
    #[error("an earlier request linked to a refusal is not one of this citizen's")]
    EarlierRequestUnknown,
    #[error("the request changed meanwhile; read it again")]
    Conflict,
    #[error("an identifier cannot be journaled")]
    BadIdent,
    #[error("a stored request is unreadable")]
    Corrupt,
    #[error("the random number generator failed")]
    Random,
    #[error("a data key could not be destroyed")]
    Shred,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// A request as the service hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RightsRequest {
    pub id: String,
    pub subject: String,
    pub activity: Option<String>,
    pub right: Right,
    pub channel: Channel,
    pub agent: Option<String>,
    pub identity: IdentityProof,
    pub status: Status,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(skip)]
    pub deadline: Deadline,
    pub answer: Option<Answer>,
}

impl RightsRequest {
    pub fn due_on(&self, today: Date) -> Date {
        self.deadline.due_on(today)
    }

    pub fn is_overdue(&self, today: Date) -> bool {
        !self.status.is_final() && self.deadline.is_overdue(today)
    }
}

/// What the citizen is told at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Answer {
    Refused {
        #[serde(flatten)]
        refusal: Refusal,
        remedies: String,
    },
    Done {
        summary: String,
    },
}

/// A new request, as a citizen or an agent files it.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub subject: String,
    pub activity: Option<String>,
    pub right: Right,
    pub channel: Channel,
    /// The agent's id on assisted channels.
    pub agent: Option<String>,
    pub identity: IdentityProof,
}

/// Who acts on a request (journaled).
#[derive(Debug, Clone)]
pub struct By {
    pub actor: Actor,
    pub role: Ident,
}

#[derive(Debug)]
pub struct RightsService {
    store: Store,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    /// Marks read recently, so the proxy's restriction check on write requests does not
    /// query the store each time (revalidated like the consent cache).
    marks: std::sync::Mutex<lru::LruCache<MarkKey, (std::time::Instant, bool)>>,
}

/// (field subject, activity, kind of mark).
type MarkKey = (String, String, String);

/// How many marks are kept in memory, and for how long one is trusted: a mark set or lifted
/// on another instance is seen within this time (on this instance at once).
const MARKS_CACHED: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};
const MARK_REVALIDATE_AFTER: std::time::Duration = crate::consent::REVALIDATE_AFTER;

impl RightsService {
    pub fn new(store: Store, audit: Arc<Audit>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        let marks = std::sync::Mutex::new(lru::LruCache::new(MARKS_CACHED));
        Self { store, audit, clock, random, marks }
    }

    fn cached_mark(&self, key: &MarkKey) -> Option<bool> {
        let mut marks = self.marks.lock().ok()?;
        marks.get(key).filter(|(at, _)| at.elapsed() < MARK_REVALIDATE_AFTER).map(|(_, v)| *v)
    }

    fn remember_mark(&self, key: MarkKey, value: bool) {
        if let Ok(mut marks) = self.marks.lock() {
            marks.put(key, (std::time::Instant::now(), value));
        }
    }

    /// Forgets every cached mark of (`field_subject`, `activity`) after a change.
    fn forget_marks(&self, field_subject: &str, activity: &str) {
        if let Ok(mut marks) = self.marks.lock() {
            let stale: Vec<MarkKey> = marks
                .iter()
                .filter(|((s, a, _), _)| s == field_subject && a == activity)
                .map(|(k, _)| k.clone())
                .collect();
            for k in stale {
                marks.pop(&k);
            }
        }
    }

    /// Records a request. A right that the activity's legal basis excludes is answered at once:
    /// the request is kept, refused with its article, reason and remedies.
    pub async fn create(&self, policies: &PolicySet, new: NewRequest, by: &By) -> Result<RightsRequest, RightsError> {
        if new.channel.is_assisted() && new.agent.is_none() {
            return Err(RightsError::AgentMissing);
        }
        let refusal = match new.activity.as_deref() {
            Some(id) => {
                let activity = policies.activity(id).ok_or(RightsError::UnknownActivity)?;
                refusal_for(new.right, activity)
            }
            None => None,
        };
        let now = self.clock.now();
        let mut request = RightsRequest {
            id: self.reference()?,
            subject: new.subject,
            activity: new.activity,
            right: new.right,
            channel: new.channel,
            agent: new.agent,
            identity: new.identity,
            status: Status::Received,
            received_at: now,
            deadline: Deadline::new(paris_date(now)),
            answer: None,
        };
        self.store.rights().insert(&row_of(&request, now)?).await?;
        self.journal(&request, "received", Outcome::Success, by).await?;
        if let Some(refusal) = refusal {
            request = self.refuse(&request.id, refusal, by).await?;
        }
        Ok(request)
    }

    pub async fn get(&self, id: &str) -> Result<RightsRequest, RightsError> {
        let row = self.store.rights().get(id).await?.ok_or(RightsError::NotFound)?;
        request_of(row)
    }

    /// One citizen's requests, newest first.
    pub async fn of_subject(&self, subject: &str) -> Result<Vec<RightsRequest>, RightsError> {
        self.store.rights().of_subject(subject).await?.into_iter().map(request_of).collect()
    }

    /// Requests not answered yet, oldest first.
    pub async fn open(&self) -> Result<Vec<RightsRequest>, RightsError> {
        self.store.rights().open().await?.into_iter().map(request_of).collect()
    }

    /// Every request received at or after `from`, whatever its status, oldest first, each with
    /// the time of its last change (for an answered request: when it was answered).
    pub async fn received_since(
        &self,
        from: OffsetDateTime,
    ) -> Result<Vec<(RightsRequest, OffsetDateTime)>, RightsError> {
        let from = crate::audit::event::to_micros(from);
        let rows = self.store.rights().received_since(from).await?;
        rows.into_iter()
            .map(|row| {
                let changed = crate::audit::event::from_micros(row.updated_at_us).ok_or(RightsError::Corrupt)?;
                Ok((request_of(row)?, changed))
            })
            .collect()
    }

    /// Moves a request one step (not to `refused`: see [`Self::refuse`]).
    pub async fn advance(
        &self,
        id: &str,
        to: Status,
        summary: Option<String>,
        by: &By,
    ) -> Result<RightsRequest, RightsError> {
        let answer = summary.map(|summary| Answer::Done { summary });
        self.change(id, by, to.as_str(), |r| {
            check_transition(r.status, to, None)?;
            r.status = to;
            if answer.is_some() {
                r.answer = answer;
            }
            Ok(())
        })
        .await
    }

    /// Refuses a request with its ground and plain-French reason; the answer states the remedies.
    pub async fn refuse(&self, id: &str, refusal: Refusal, by: &By) -> Result<RightsRequest, RightsError> {
        self.check_earlier_requests(id, &refusal).await?;
        self.change(id, by, Status::Refused.as_str(), |r| {
            check_transition(r.status, Status::Refused, Some(&refusal))?;
            r.status = Status::Refused;
            r.answer = Some(Answer::Refused { refusal, remedies: REMEDIES.to_owned() });
            Ok(())
        })
        .await
    }

    /// A refusal as unfounded or excessive (Art. 12(5)) links earlier requests: each must exist,
    /// be the same citizen's, and have come before this one, or it proves nothing.
    async fn check_earlier_requests(&self, id: &str, refusal: &Refusal) -> Result<(), RightsError> {
        let RefusalGround::UnfoundedOrExcessive { earlier_requests } = &refusal.ground else { return Ok(()) };
        let this = self.get(id).await?;
        for earlier in earlier_requests.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match self.get(earlier).await {
                Ok(e) if e.subject == this.subject && e.id != this.id && e.received_at <= this.received_at => {}
                Ok(_) | Err(RightsError::NotFound) => return Err(RightsError::EarlierRequestUnknown),
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    /// The citizen withdraws their own request.
    pub async fn cancel(&self, id: &str, subject: &str, by: &By) -> Result<RightsRequest, RightsError> {
        if self.get(id).await?.subject != subject {
            return Err(RightsError::NotFound);
        }
        self.advance(id, Status::Cancelled, None, by).await
    }

    /// Extends the deadline (Art. 12(3)); the caller has sent the notice on `notice_sent_on`.
    pub async fn extend(
        &self,
        id: &str,
        months: u8,
        reason: String,
        notice_sent_on: Date,
        by: &By,
    ) -> Result<RightsRequest, RightsError> {
        let today = paris_date(self.clock.now());
        self.change(id, by, "extended", |r| {
            not_final(r)?;
            Ok(r.deadline.extend(Extension { months, reason, notice_sent_on }, today)?)
        })
        .await
    }

    /// Pauses the clock while an identity doubt is cleared (Art. 12(6)).
    pub async fn pause(&self, id: &str, by: &By) -> Result<RightsRequest, RightsError> {
        let today = paris_date(self.clock.now());
        self.change(id, by, "paused", |r| {
            not_final(r)?;
            Ok(r.deadline.pause(today)?)
        })
        .await
    }

    pub async fn resume(&self, id: &str, by: &By) -> Result<RightsRequest, RightsError> {
        let today = paris_date(self.clock.now());
        self.change(id, by, "resumed", |r| Ok(r.deadline.resume(today)?)).await
    }

    /// Records where the request goes for one activity (once per (request, activity)).
    pub async fn add_target(&self, row: &PropagationRow) -> Result<bool, RightsError> {
        Ok(self.store.rights_apps().insert(row).await?)
    }

    pub async fn target(&self, request_id: &str, activity: &str) -> Result<Option<PropagationRow>, RightsError> {
        Ok(self.store.rights_apps().get(request_id, activity).await?)
    }

    /// Keeps what an application answered to a `restriction_lifted` notice.
    pub async fn record_lifted(&self, request_id: &str, activity: &str, status: &str) -> Result<(), RightsError> {
        let now = crate::audit::event::to_micros(self.clock.now());
        Ok(self.store.rights_apps().lifted(request_id, activity, status, now).await?)
    }

    /// An application's answer to a `restriction_lifted` notice (status, time in µs).
    pub async fn lifted_answer(&self, request_id: &str, activity: &str) -> Result<Option<(String, i64)>, RightsError> {
        Ok(self.store.rights_apps().lifted_answer(request_id, activity).await?)
    }

    /// What each application told of the end of `request_id`'s restriction answered to that
    /// `restriction_lifted` notice: (activity, status, time in µs), in the targets' order.
    pub async fn lifted_answers(&self, request_id: &str) -> Result<Vec<(String, String, i64)>, RightsError> {
        let mut answers = Vec::new();
        for t in self.targets(request_id).await? {
            if let Some((status, at)) = self.lifted_answer(request_id, &t.activity).await? {
                answers.push((t.activity, status, at));
            }
        }
        Ok(answers)
    }

    pub async fn targets(&self, request_id: &str) -> Result<Vec<PropagationRow>, RightsError> {
        Ok(self.store.rights_apps().of_request(request_id).await?)
    }

    /// Records the pseudonyms `subject`'s requests are carried under (see
    /// [`Subjects`](super::propagation::Subjects)), while the citizen is signed in.
    pub async fn remember_subjects(&self, subject: &str, s: &super::propagation::Subjects) -> Result<(), RightsError> {
        let now = crate::audit::event::to_micros(self.clock.now());
        let routes = to_json(&s.routes)?;
        let sectors = to_json(&s.sectors)?;
        let fields = s.all_fields();
        Ok(self.store.rights_subjects().put(subject, &s.field, &routes, &sectors, &fields, now).await?)
    }

    /// The gateway-wide subject (what requests and notices name) of the citizen who owns
    /// `field`, a field subject of any sector, when that citizen recorded their pseudonyms
    /// (rights request, counter code, address for e-mails): the per-sector lookup through which
    /// retention finds pending requests and the citizen to tell, so that its records carry
    /// only the sector's pseudonym.
    pub async fn subject_of_field(&self, field: &str) -> Result<Option<String>, RightsError> {
        Ok(self.store.rights_subjects().subject_of_field(field).await?)
    }

    /// Whether a restriction or objection request about `activity` is still being decided for
    /// the citizen who owns `field` (a field subject of the activity's sector): Art. 18(1)(d).
    pub async fn pending_restriction_for_field(&self, field: &str, activity: &str) -> Result<bool, RightsError> {
        let Some(subject) = self.subject_of_field(field).await? else { return Ok(false) };
        Ok(self.of_subject(&subject).await?.into_iter().any(|r| {
            use super::request::Right;
            matches!(r.right, Right::Restriction | Right::Objection)
                && !r.status.is_final()
                && r.activity.as_deref().is_none_or(|a| a == activity)
        }))
    }

    /// [`RightsService::pending_restriction_for_field`] for many (field subject, activity)
    /// pairs (a retention run's page): the pairs with such a request pending. One read for the
    /// field subjects, then one per citizen who recorded their pseudonyms.
    pub async fn pending_restrictions_among(
        &self,
        keys: &[(&str, &str)],
    ) -> Result<std::collections::HashSet<(String, String)>, RightsError> {
        use super::request::Right;
        let fields: Vec<&str> = keys.iter().map(|(f, _)| *f).collect();
        let owners: std::collections::HashMap<String, String> =
            self.store.rights_subjects().subjects_of_fields(&fields).await?.into_iter().collect();
        let mut pending: std::collections::HashMap<&str, Vec<Option<String>>> = std::collections::HashMap::new();
        for subject in owners.values() {
            if pending.contains_key(subject.as_str()) {
                continue;
            }
            let open = self
                .of_subject(subject)
                .await?
                .into_iter()
                .filter(|r| matches!(r.right, Right::Restriction | Right::Objection) && !r.status.is_final());
            pending.insert(subject, open.map(|r| r.activity).collect());
        }
        Ok(keys
            .iter()
            .filter(|(field, activity)| {
                let requests = owners.get(*field).and_then(|s| pending.get(s.as_str()));
                requests.is_some_and(|rs| rs.iter().any(|a| a.as_deref().is_none_or(|a| a == *activity)))
            })
            .map(|(f, a)| ((*f).to_owned(), (*a).to_owned()))
            .collect())
    }

    /// The marks of `kind` among (field subject, activity) pairs, read from the store in one
    /// query (a retention run's page; the per-pair cache is for the request path).
    pub async fn marked_among(
        &self,
        keys: &[(&str, &str)],
        kind: &str,
    ) -> Result<std::collections::HashSet<(String, String)>, RightsError> {
        let subjects: Vec<&str> = keys.iter().map(|(s, _)| *s).collect();
        let wanted: std::collections::HashSet<&(&str, &str)> = keys.iter().collect();
        let marked = self.store.rights_apps().marked_among(&subjects, kind).await?;
        Ok(marked.into_iter().filter(|(s, a)| wanted.contains(&(s.as_str(), a.as_str()))).collect())
    }

    /// The pseudonyms recorded for `subject` when they last signed in to the rights API or
    /// asked for a counter code; `None` if they never did.
    pub async fn subjects_of(&self, subject: &str) -> Result<Option<super::propagation::Subjects>, RightsError> {
        let Some((field, routes, sectors)) = self.store.rights_subjects().get(subject).await? else {
            return Ok(None);
        };
        let routes = serde_json::from_str(&routes).map_err(|_| RightsError::Corrupt)?;
        let sectors = serde_json::from_str(&sectors).map_err(|_| RightsError::Corrupt)?;
        Ok(Some(super::propagation::Subjects { field, routes, sectors }))
    }

    /// Per-activity work an agent must do by hand ("à traiter à la main"), oldest first: the
    /// activity has no rights endpoint, or its application refused the request as malformed.
    pub async fn manual_tasks(&self) -> Result<Vec<PropagationRow>, RightsError> {
        Ok(self.store.rights_apps().manual().await?)
    }

    /// Stores an application's answer for one activity of a request. A final answer is kept
    /// once; a second one (an application answering twice) is ignored. Returns whether it
    /// was stored.
    pub async fn record_app_answer(
        &self,
        request_id: &str,
        activity: &str,
        a: &AppAnswer,
    ) -> Result<bool, RightsError> {
        let mut row = outcome_row(request_id, activity, if a.status.is_final() { "answered" } else { "sending" });
        row.status = Some(app_status_str(a.status).to_owned());
        row.reason.clone_from(&a.reason);
        row.records = a.records.as_ref().map(to_json).transpose()?;
        row.answered_at_us = Some(crate::audit::event::to_micros(self.clock.now()));
        Ok(self.store.rights_apps().answer(&row).await?)
    }

    /// Stores a rectification's sealed corrections (JSON) and makes the activity ready to send.
    pub async fn set_corrections(&self, request_id: &str, activity: &str, json: &str) -> Result<bool, RightsError> {
        Ok(self.store.rights_apps().set_corrections(request_id, activity, json).await?)
    }

    /// Puts one activity of a request in the agents' queue, with why.
    pub async fn to_manual(&self, request_id: &str, activity: &str, why: &str) -> Result<bool, RightsError> {
        let mut row = outcome_row(request_id, activity, "manual");
        row.reason = Some(why.to_owned());
        Ok(self.store.rights_apps().answer(&row).await?)
    }

    /// Marks (`field_subject`, `activity`) with `kind` (`restricted`, `withdrawn:<purpose>`).
    pub async fn mark(&self, field_subject: &str, activity: &str, kind: &str) -> Result<(), RightsError> {
        let now = crate::audit::event::to_micros(self.clock.now());
        self.store.rights_apps().mark(field_subject, activity, kind, now).await?;
        self.forget_marks(field_subject, activity);
        Ok(())
    }

    pub async fn unmark(&self, field_subject: &str, activity: &str, kind: &str) -> Result<bool, RightsError> {
        let removed = self.store.rights_apps().unmark(field_subject, activity, kind).await?;
        self.forget_marks(field_subject, activity);
        Ok(removed)
    }

    /// Whether (`field_subject`, `activity`) carries mark `kind`: from memory when read less
    /// than a second ago (the proxy asks on every citizen write request).
    pub async fn is_marked(&self, field_subject: &str, activity: &str, kind: &str) -> Result<bool, RightsError> {
        let key = (field_subject.to_owned(), activity.to_owned(), kind.to_owned());
        if let Some(v) = self.cached_mark(&key) {
            return Ok(v);
        }
        let v = self.store.rights_apps().is_marked(field_subject, activity, kind).await?;
        self.remember_mark(key, v);
        Ok(v)
    }

    /// Drops every mark on (`field_subject`, `activity`): after an erasure nothing is left to
    /// restrict or to keep from being revealed.
    pub async fn clear_marks(&self, field_subject: &str, activity: &str) -> Result<(), RightsError> {
        self.store.rights_apps().clear_marks(field_subject, activity).await?;
        self.forget_marks(field_subject, activity);
        Ok(())
    }

    /// Journals a step that changes no status (a restriction lifted).
    pub async fn journal_step(&self, r: &RightsRequest, stage: &str, by: &By) -> Result<(), RightsError> {
        self.journal(r, stage, Outcome::Success, by).await
    }

    /// What each application answered, by activity, with when: the export reads the records
    /// here. Activities not answered yet are left out.
    pub async fn app_answers(&self, request_id: &str) -> Result<Vec<AppAnswerAt>, RightsError> {
        let rows = self.store.rights_apps().of_request(request_id).await?;
        rows.into_iter().filter_map(|r| answer_of(r).transpose()).collect()
    }

    /// Reads, changes and writes back a request if nobody changed it meanwhile, then journals
    /// the step under `stage`.
    async fn change(
        &self,
        id: &str,
        by: &By,
        stage: &str,
        f: impl FnOnce(&mut RightsRequest) -> Result<(), RightsError>,
    ) -> Result<RightsRequest, RightsError> {
        let mut request = self.get(id).await?;
        let expected = request.status;
        f(&mut request)?;
        let now = self.clock.now();
        if !self.store.rights().update(&row_of(&request, now)?, expected.as_str()).await? {
            return Err(RightsError::Conflict);
        }
        self.journal(&request, stage, Outcome::Success, by).await?;
        Ok(request)
    }

    /// Journals a step on one activity of `r` (a task an agent closed by hand).
    pub async fn journal_activity_step(
        &self,
        r: &RightsRequest,
        activity: &str,
        stage: &str,
        by: &By,
    ) -> Result<(), RightsError> {
        let mut on = r.clone();
        on.activity = Some(activity.to_owned());
        self.journal(&on, stage, Outcome::Success, by).await
    }

    /// Journals step `stage` of `r` (also the export's steps).
    pub async fn journal(&self, r: &RightsRequest, stage: &str, outcome: Outcome, by: &By) -> Result<(), RightsError> {
        let id = |s: &str| Ident::new(s).map_err(|_| RightsError::BadIdent);
        let operation = Operation::RightsRequest { right: id(r.right.as_str())?, stage: id(stage)? };
        let mut event = AuditEvent::system(operation, self.clock.now());
        event.actor = by.actor.clone();
        event.role = by.role.clone();
        event.activity = r.activity.as_deref().map(id).transpose()?;
        event.subject = Some(id(&r.subject)?);
        event.outcome = outcome;
        event.request_id = Some(id(&r.id)?);
        event.record_ref = Some(id(&format!("request:{}", r.id))?);
        self.audit.append_sync(event).await?;
        Ok(())
    }

    /// A new reference such as `DR-7K3M-Q9XP`.
    fn reference(&self) -> Result<String, RightsError> {
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes).map_err(|_| RightsError::Random)?;
        let mut out = String::from("DR-");
        for (i, b) in bytes.iter().enumerate() {
            if i == 4 {
                out.push('-');
            }
            let c = REFERENCE_ALPHABET.get(usize::from(b & 31)).copied().unwrap_or(b'0');
            out.push(char::from(c));
        }
        Ok(out)
    }
}

/// A row carrying only an outcome (what `RightsAppsRepo::answer` writes).
fn outcome_row(request_id: &str, activity: &str, state: &str) -> PropagationRow {
    PropagationRow {
        request_id: request_id.to_owned(),
        activity: activity.to_owned(),
        route: None,
        app_subject: None,
        field_subject: None,
        state: state.to_owned(),
        status: None,
        reason: None,
        records: None,
        corrections: None,
        created_at_us: 0,
        answered_at_us: None,
    }
}

/// One application's answer to one activity of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct AppAnswerAt {
    pub activity: String,
    pub answer: AppAnswer,
    pub at: OffsetDateTime,
}

pub fn app_status_str(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Pending => "pending",
        AppStatus::InProgress => "in_progress",
        AppStatus::Completed => "completed",
        AppStatus::Refused => "refused",
    }
}

fn answer_of(r: PropagationRow) -> Result<Option<AppAnswerAt>, RightsError> {
    let (Some(status), Some(at)) = (r.status.as_deref(), r.answered_at_us) else { return Ok(None) };
    let status: AppStatus =
        serde_json::from_value(serde_json::Value::String(status.to_owned())).map_err(|_| RightsError::Corrupt)?;
    let records = r.records.as_deref().map(serde_json::from_str).transpose().map_err(|_| RightsError::Corrupt)?;
    Ok(Some(AppAnswerAt {
        answer: AppAnswer { request_id: format!("{}.{}", r.request_id, r.activity), status, reason: r.reason, records },
        at: crate::audit::event::from_micros(at).ok_or(RightsError::Corrupt)?,
        activity: r.activity,
    }))
}

fn not_final(r: &RightsRequest) -> Result<(), RightsError> {
    if r.status.is_final() {
        return Err(TransitionError::NotAllowed { from: r.status.as_str(), to: r.status.as_str() }.into());
    }
    Ok(())
}

/// The refusal a right gets on an activity when none of its purposes' legal bases allows it.
pub fn refusal_for(right: Right, activity: &ActivityFile) -> Option<Refusal> {
    let verdicts: Vec<Applicability> = activity
        .purposes
        .iter()
        .filter_map(|p| match p.legal_basis {
            Some(BasisChoice::One(b)) => Some(applicability(right, b)),
            _ => None,
        })
        .collect();
    if verdicts.iter().any(|v| !matches!(v, Applicability::Refused { .. })) {
        return None;
    }
    verdicts.into_iter().find_map(|v| match v {
        Applicability::Refused { article, reason } => Some(Refusal {
            ground: RefusalGround::NotApplicable { article: article.to_owned() },
            reason: reason.to_owned(),
        }),
        _ => None,
    })
}

fn row_of(r: &RightsRequest, now: OffsetDateTime) -> Result<RightsRow, RightsError> {
    let extensions: Vec<StoredExtension> = r.deadline.extensions().iter().map(StoredExtension::from).collect();
    Ok(RightsRow {
        id: r.id.clone(),
        subject: r.subject.clone(),
        activity: r.activity.clone(),
        right_kind: r.right.as_str().to_owned(),
        channel: r.channel.as_str().to_owned(),
        agent: r.agent.clone(),
        identity: to_json(&r.identity)?,
        status: r.status.as_str().to_owned(),
        received_at_us: crate::audit::event::to_micros(r.received_at),
        received_on: r.deadline.received_on().to_string(),
        paused_days: r.deadline.paused_days(),
        paused_since: r.deadline.paused_since().map(|d| d.to_string()),
        extensions: to_json(&extensions)?,
        answer: r.answer.as_ref().map(to_json).transpose()?,
        updated_at_us: crate::audit::event::to_micros(now),
    })
}

fn request_of(row: RightsRow) -> Result<RightsRequest, RightsError> {
    let corrupt = |_| RightsError::Corrupt;
    let extensions: Vec<StoredExtension> = serde_json::from_str(&row.extensions).map_err(corrupt)?;
    let extensions = extensions.into_iter().map(|e| e.into_extension()).collect::<Result<Vec<_>, _>>()?;
    let deadline = Deadline::restore(
        parse_date(&row.received_on)?,
        row.paused_days,
        row.paused_since.as_deref().map(parse_date).transpose()?,
        extensions,
    );
    Ok(RightsRequest {
        right: Right::parse(&row.right_kind).ok_or(RightsError::Corrupt)?,
        channel: Channel::parse(&row.channel).ok_or(RightsError::Corrupt)?,
        identity: serde_json::from_str(&row.identity).map_err(corrupt)?,
        status: Status::parse(&row.status).ok_or(RightsError::Corrupt)?,
        received_at: crate::audit::event::from_micros(row.received_at_us).ok_or(RightsError::Corrupt)?,
        answer: row.answer.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?,
        deadline,
        id: row.id,
        subject: row.subject,
        activity: row.activity,
        agent: row.agent,
    })
}

/// An extension as stored (dates as ISO 8601 text).
#[derive(Debug, Serialize, Deserialize)]
struct StoredExtension {
    months: u8,
    reason: String,
    notice_sent_on: String,
}

impl From<&Extension> for StoredExtension {
    fn from(e: &Extension) -> Self {
        Self { months: e.months, reason: e.reason.clone(), notice_sent_on: e.notice_sent_on.to_string() }
    }
}

impl StoredExtension {
    fn into_extension(self) -> Result<Extension, RightsError> {
        Ok(Extension { months: self.months, reason: self.reason, notice_sent_on: parse_date(&self.notice_sent_on)? })
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String, RightsError> {
    serde_json::to_string(v).map_err(|_| RightsError::Corrupt)
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// A date written `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<Date, RightsError> {
    Date::parse(s, DATE).map_err(|_| RightsError::Corrupt)
}
