//! Erasure (Art. 17) at the gateway: the (citizen, activity) data key is destroyed, so every
//! `gch1.` token sealed under it — in the application's database, its exports and its
//! backups — can no longer be opened; the gateway's own state about that pair that proves
//! nothing is dropped. What the law requires us to keep as proof stays (see [`KEPT`]).
//! A withdrawal of consent does the same, through a job, for activities whose policy sets
//! `erase_on_withdrawal`.

use std::sync::Weak;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::propagation::{Subjects, start};
use super::request::{Channel, IdentityProof, Right};
use super::service::{NewRequest, RightsError};
use crate::app::App;
use crate::auth::session::Session;
use crate::jobs::{Handler, JobError, NewJob};
use crate::store::JobRow;

pub const WITHDRAWAL_KIND: &str = "rights.erase_on_withdrawal";

/// What the answer to an erasure says the gateway keeps, and why (plain French).
pub const KEPT: &str = "Ce que nous gardons, et pourquoi : la preuve de vos accords et de vos retraits (la loi nous \
demande de pouvoir prouver votre accord), le journal des opérations, qui ne contient pas vos informations mais \
seulement des numéros (pour prouver que la mairie a respecté la loi), et cette demande avec sa réponse (pour \
prouver que nous vous avons répondu). Vos informations elles-mêmes sont illisibles partout, y compris dans les \
sauvegardes : la clé qui les protégeait est détruite.";

/// Destroys the data key of (`field_subject`, `activity`) and the marks left on the pair.
/// Idempotent: a key already destroyed, or never made, is fine.
pub async fn erase_at_gateway(app: &App, field_subject: &str, activity: &str) -> Result<(), RightsError> {
    if let Some(vault) = &app.crypto {
        let shredded = vault.shred(field_subject, activity).await.map_err(|e| {
            tracing::error!(error = %e, activity, "cannot destroy a data key for an erasure");
            RightsError::Shred
        })?;
        if let crate::crypto::vault::Shredded::Destroyed { key_ids } = shredded {
            for key_id in &key_ids {
                journal_shred(app, field_subject, activity, key_id).await;
            }
        }
    }
    app.rights.clear_marks(field_subject, activity).await
}

/// What [`erase_record`] destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordErased {
    pub record: String,
    pub activity: String,
    /// Data keys destroyed (0: already shredded, or nothing was ever sealed for it).
    pub keys: usize,
}

/// Crypto-shredding of one anonymous record (activity `anonymous = "sealed"`): `target` is
/// the record id the application was sent (`X-Guichet-Record`) with its `activity`, or any
/// token of the record (which names both). Only record ids are accepted: this path never
/// reaches a citizen's keys (their erasure is a rights request). Journaled like an erasure's
/// shred. Idempotent.
pub async fn erase_record(app: &App, target: &str, activity: Option<&str>) -> Result<RecordErased, RecordError> {
    let vault = app.crypto.as_ref().ok_or(RecordError::NoKeys)?;
    let (record, activity) = if crate::crypto::token::parse(target).is_ok() {
        let (subject, of) = vault.owner_of(target).await.map_err(|_| RecordError::Shred)?.ok_or(RecordError::Gone)?;
        if activity.is_some_and(|a| a != of) {
            return Err(RecordError::OtherActivity);
        }
        (subject, of)
    } else {
        (target.to_owned(), activity.ok_or(RecordError::ActivityMissing)?.to_owned())
    };
    if !record.starts_with(crate::proxy::fields::RECORD_PREFIX) {
        return Err(RecordError::NotARecord);
    }
    let shredded = vault.shred(&record, &activity).await.map_err(|e| {
        tracing::error!(error = %e, activity, "cannot destroy the data key of an anonymous record");
        RecordError::Shred
    })?;
    let mut keys = 0;
    if let crate::crypto::vault::Shredded::Destroyed { key_ids } = shredded {
        for key_id in &key_ids {
            journal_shred(app, &record, &activity, key_id).await;
        }
        keys = key_ids.len();
    }
    Ok(RecordErased { record, activity, keys })
}

/// Why an anonymous record could not be shredded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the configuration has no `[keys]`: nothing is sealed")]
    NoKeys,
    #[error("this token's key no longer exists (already shredded?) or is unknown")]
    Gone,
    #[error("give the activity (--activity) with a record id")]
    ActivityMissing,
    #[error("the token belongs to another activity than the one given")]
    OtherActivity,
    #[error("not an anonymous record (ids start with `anonyme:`): a citizen's data is erased by a rights request")]
    NotARecord,
    #[error("the data key could not be destroyed")]
    Shred,
}

/// A granted erasure of (`field_subject`, `activity`): each retention record of the pair is
/// ended through the one "forget" operation retention uses (R29), so no run later acts on a
/// category that is gone and the register counts it as destroyed; then every data key of the
/// activity is destroyed, including categories that had no record yet. Idempotent.
pub async fn erase(app: &App, field_subject: &str, activity: &str) -> Result<(), RightsError> {
    let records = app.retention.records(field_subject, activity).await.map_err(|e| {
        tracing::error!(error = %e, activity, "cannot read the retention records for an erasure");
        RightsError::Shred
    })?;
    let ended = crate::retention::Phase::Ended.as_str();
    for row in records.iter().filter(|r| r.phase != ended) {
        crate::retention::forget(app, field_subject, activity, &row.category, "erasure").await.map_err(|e| {
            tracing::error!(error = %e, activity, "cannot end a retention record for an erasure");
            RightsError::Shred
        })?;
    }
    erase_at_gateway(app, field_subject, activity).await
}

/// Journals a destroyed data key (`key_operation` `destroy`, `record_ref` `key:ID`): the
/// erasure's own entries say why; this one says which key went.
pub(crate) async fn journal_shred(app: &App, field_subject: &str, activity: &str, key_id: &str) {
    use crate::audit::{AuditEvent, Ident, KeyAction, Operation};
    let Ok(id) = Ident::new(format!("data-key:{key_id}")) else { return };
    let mut event =
        AuditEvent::system(Operation::KeyOperation { action: KeyAction::Destroy, key_id: id.clone() }, app.clock.now());
    event.activity = Ident::new(activity).ok();
    event.subject = Ident::new(field_subject).ok();
    event.record_ref = Some(id);
    if let Err(e) = app.audit.record(event).await {
        tracing::warn!(error = %e, "cannot journal a destroyed data key");
    }
}

/// What the withdrawal job carries: pseudonymous ids only.
#[derive(Debug, Serialize, Deserialize)]
struct Withdrawal {
    /// The consent subject (who the erasure request is filed for).
    subject: String,
    activity: String,
    /// The sign-in level of an online withdrawal (jobs queued before `identity` existed).
    #[serde(default)]
    acr: String,
    subjects: Subjects,
    /// How the withdrawal reached the gateway; absent: online.
    #[serde(default)]
    channel: Option<Channel>,
    /// The agent who recorded a withdrawal on an assisted channel.
    #[serde(default)]
    agent: Option<String>,
    /// How the citizen's identity was established; absent: signed in at `acr`.
    #[serde(default)]
    identity: Option<IdentityProof>,
}

/// Who changed a consent, as the rights side needs it: the consent subject, the pseudonyms
/// their data and applications know, and how the change reached the gateway. Online it comes
/// from the session; at the counter from the pseudonyms recorded when the citizen asked for
/// the one-time code (`rights_subject`), since the agent has no session of the citizen.
#[derive(Debug, Clone)]
pub struct ConsentChanger {
    pub consent_subject: String,
    pub subjects: Subjects,
    pub channel: Channel,
    /// The agent's journal id on an assisted channel.
    pub agent: Option<String>,
    pub identity: IdentityProof,
}

impl ConsentChanger {
    /// The signed-in citizen changing their own consent online.
    pub fn online(app: &App, session: &Session) -> Self {
        Self {
            consent_subject: app.auth.consent_subject(session).to_owned(),
            subjects: Subjects::of(app, session),
            channel: Channel::Online,
            agent: None,
            identity: IdentityProof::SignIn { acr: session.acr.clone() },
        }
    }
}

/// Called when a consent to a purpose is given or withdrawn, online or at the counter: a
/// withdrawal is marked (the batch reveal API stops revealing that purpose's values), starts
/// the retention clocks, and, when the activity's policy says so, schedules an erasure.
/// Giving consent again lifts the mark.
pub async fn after_consent_change(app: &App, who: &ConsentChanger, activity: &str, purpose: &str, given: bool) {
    let sector = app.policies.load().activity(activity).map(|a| a.sector).unwrap_or_default();
    let field = who.subjects.field_in(sector);
    let kind = format!("withdrawn:{purpose}");
    // The sector's field subject and, for records sealed before the activity had a sector,
    // the v1 one (`Subjects::fields_for`).
    for owner in who.subjects.fields_for(sector) {
        let marked = if given {
            app.rights.unmark(owner, activity, &kind).await.map(drop)
        } else {
            app.rights.mark(owner, activity, &kind).await
        };
        if let Err(e) = marked {
            tracing::warn!(error = %e, "cannot record a consent withdrawal mark");
        }
        // A withdrawal starts the activity's retention clocks (docs/retention.md, "Triggers").
        if !given && let Err(e) = app.retention.withdrawn(owner, activity).await {
            tracing::warn!(error = %e, "cannot record a consent withdrawal for retention");
        }
    }
    let erase = app.policies.load().activity(activity).is_some_and(|a| a.erase_on_withdrawal);
    if given || !erase {
        return;
    }
    let acr = match &who.identity {
        IdentityProof::SignIn { acr } => acr.clone(),
        IdentityProof::Document { .. } => String::new(),
    };
    let w = Withdrawal {
        subject: who.consent_subject.clone(),
        activity: activity.to_owned(),
        acr,
        subjects: who.subjects.clone(),
        channel: Some(who.channel),
        agent: who.agent.clone(),
        identity: Some(who.identity.clone()),
    };
    let at = crate::audit::event::to_micros(app.clock.now());
    let job = NewJob::new(WITHDRAWAL_KIND, &w).map(|j| j.dedup(format!("{WITHDRAWAL_KIND}:{field}:{activity}:{at}")));
    match job {
        Ok(job) => {
            if let Err(e) = app.jobs.enqueue(job).await {
                tracing::error!(error = %e, "cannot schedule the erasure that follows a withdrawal");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot schedule the erasure that follows a withdrawal"),
    }
}

/// The `rights.erase_on_withdrawal` handler: files an erasure request on the citizen's behalf
/// and starts it (the key is shredded, the application told), so the citizen finds it among
/// their requests with its answer.
pub struct EraseOnWithdrawal {
    pub app: Weak<App>,
}

impl Handler for EraseOnWithdrawal {
    fn kind(&self) -> &'static str {
        WITHDRAWAL_KIND
    }

    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            let w: Withdrawal =
                serde_json::from_str(&job.payload).map_err(|_| JobError::Permanent("unreadable payload"))?;
            let set = app.policies.load_full();
            let new = NewRequest {
                subject: w.subject,
                activity: Some(w.activity),
                right: Right::Erasure,
                channel: w.channel.unwrap_or(Channel::Online),
                agent: w.agent,
                identity: w.identity.unwrap_or(IdentityProof::SignIn { acr: w.acr }),
            };
            let retry = |_| JobError::Retry("the store is unavailable");
            let request = app.rights.create(&set, new, &super::propagation::system()).await.map_err(retry)?;
            start(&app, &request, &w.subjects).await.map_err(retry)?;
            Ok(())
        })
    }
}
