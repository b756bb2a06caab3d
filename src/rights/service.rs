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
use crate::store::{RightsRow, Store, StoreError};

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
    #[error("the request changed meanwhile; read it again")]
    Conflict,
    #[error("an identifier cannot be journaled")]
    BadIdent,
    #[error("a stored request is unreadable")]
    Corrupt,
    #[error("the random number generator failed")]
    Random,
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
}

impl RightsService {
    pub fn new(store: Store, audit: Arc<Audit>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        Self { store, audit, clock, random }
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
        self.change(id, by, Status::Refused.as_str(), |r| {
            check_transition(r.status, Status::Refused, Some(&refusal))?;
            r.status = Status::Refused;
            r.answer = Some(Answer::Refused { refusal, remedies: REMEDIES.to_owned() });
            Ok(())
        })
        .await
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

fn not_final(r: &RightsRequest) -> Result<(), RightsError> {
    if r.status.is_final() {
        return Err(TransitionError::NotAllowed { from: r.status.as_str(), to: r.status.as_str() }.into());
    }
    Ok(())
}

/// The refusal a right gets on an activity when none of its purposes' legal bases allows it.
fn refusal_for(right: Right, activity: &ActivityFile) -> Option<Refusal> {
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

fn parse_date(s: &str) -> Result<Date, RightsError> {
    Date::parse(s, DATE).map_err(|_| RightsError::Corrupt)
}
