//! The tamper-evident journal of security- and privacy-relevant events (R45–R47): sign-in
//! and sign-out, consent, reveals, policy reloads, key operations, admin, DPO and rights
//! actions. Not one entry per proxied request: per-request facts go to logs and metrics.
//!
//! - [`event`]: what an entry says (typed, pseudonymous, no free text);
//! - [`chain`]: canonical encoding and SHA-256 chaining;
//! - [`checkpoint`]: Ed25519-signed checkpoints and the signing key;
//! - [`sink`]: the single batching writer per process;
//! - [`verify`]: re-checks everything and names the first break;
//! - [`retention`]: pruning to the configured window, anchored on a checkpoint.
//!
//! Design and guarantees: `docs/audit.md`. The consent ledger reuses this mechanism.

pub mod access;
pub mod chain;
pub mod checkpoint;
pub mod event;
pub mod ledger;
pub mod retention;
pub mod sink;
pub mod verify;
pub mod witness;

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use access::Reader;
pub use checkpoint::{KeyError, Signer, Verifier};
pub use event::{Actor, ActorKind, AuditEvent, Channel, Ident, IdentityCheck, KeyAction, Operation, Outcome};
pub use sink::SinkSettings;
pub use verify::{Break, Report};

use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// Events waiting for the writer before `record` makes its callers wait.
const QUEUE_CAPACITY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot encode the audit event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the audit journal writer has stopped")]
    Closed,
    #[error("cannot write the audit journal: {0}")]
    Store(#[source] Arc<StoreError>),
}

/// The journal service: queue events, or append and wait for the commit.
#[derive(Debug)]
pub struct Audit {
    tx: mpsc::Sender<sink::Command>,
    /// For the journal's read side (a citizen's "who saw my data").
    store: Store,
    task: Mutex<Option<JoinHandle<()>>>,
    verifier: Verifier,
    /// Times the entries built here (reads, refusals).
    clock: Arc<dyn Clock>,
}

impl Audit {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store, signer: Signer, clock: Arc<dyn Clock>, settings: SinkSettings) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let verifier = signer.verifier();
        let writer = sink::Writer {
            store: store.clone(),
            signer: Arc::new(signer),
            clock: clock.clone(),
            settings,
            witnessed: std::sync::atomic::AtomicI64::new(0),
        };
        let task = tokio::spawn(writer.run(rx));
        Self { tx, store, task: Mutex::new(Some(task)), verifier, clock }
    }

    /// Queues `event` for the next batch and returns without waiting for the store.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let entry = pending(&event)?;
        self.tx.send(sink::Command::Append { entry, ack: None }).await.map_err(|_| AuditError::Closed)
    }

    /// Like [`record`](Self::record), from code that cannot wait (policy reloads): fails with
    /// `Closed` when the queue is full rather than waiting.
    pub fn try_record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let entry = pending(&event)?;
        self.tx.try_send(sink::Command::Append { entry, ack: None }).map_err(|_| AuditError::Closed)
    }

    /// Appends `event` and returns its sequence number once it is committed. For actions
    /// acknowledged to a person (consent, withdrawal): they must never be lost.
    pub async fn append_sync(&self, event: AuditEvent) -> Result<i64, AuditError> {
        let entry = pending(&event)?;
        let (ack, done) = oneshot::channel();
        self.tx.send(sink::Command::Append { entry, ack: Some(ack) }).await.map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)?
    }

    /// Returns once everything queued before the call is committed (or given up), and the
    /// checkpoint that is due, if one is, written: the journal then verifies at once.
    pub async fn flush(&self) -> Result<(), AuditError> {
        let (w, done) = oneshot::channel();
        self.tx.send(sink::Command::Flush(w)).await.map_err(|_| AuditError::Closed)?;
        done.await.map_err(|_| AuditError::Closed)
    }

    /// Commits everything queued and stops the writer; later appends fail with `Closed`.
    pub async fn shutdown(&self) {
        let (w, done) = oneshot::channel();
        if self.tx.send(sink::Command::Shutdown(w)).await.is_ok() {
            let _ = done.await;
        }
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Every reveal of `subject`'s values, and every entry an agent made for them (assisted
    /// entry, `entered` set), oldest first: when, to which role, for which activity and
    /// purpose, which fields. Never the agent's id: the citizen sees roles.
    pub async fn reveals_of(&self, subject: &str) -> Result<Vec<Reveal>, AuditError> {
        let mut out = Vec::new();
        let names = [Operation::Reveal { fields: Vec::new() }.name(), "assisted_entry"];
        for name in names {
            let rows = self.store.audit().entries_of_subject_named(subject, name).await;
            for row in rows.map_err(|e| AuditError::Store(Arc::new(e)))? {
                let event: AuditEvent = serde_json::from_str(&row.body)?;
                let (fields, entered) = match event.operation {
                    Operation::Reveal { fields } => (fields, None),
                    Operation::AssistedEntry { fields, channel } => (fields, Some(channel)),
                    _ => continue,
                };
                out.push(Reveal {
                    at: event.at,
                    agent: event.actor.kind == ActorKind::Agent,
                    role: event.role.to_string(),
                    activity: event.activity.map(String::from),
                    purpose: event.purpose.map(String::from),
                    fields: fields.into_iter().map(String::from).collect(),
                    entered,
                });
            }
        }
        out.sort_by_key(|r| r.at);
        Ok(out)
    }

    /// Up to `limit` entries written in [`from`, `to`), newest first, of one operation name
    /// when given (the DPO's journal browser and figures).
    pub async fn entries_between(
        &self,
        from: time::OffsetDateTime,
        to: time::OffsetDateTime,
        operation: Option<&str>,
        limit: i64,
    ) -> Result<Vec<crate::store::EntryRow>, AuditError> {
        let (from, to) = (event::to_micros(from), event::to_micros(to));
        self.store.audit().entries_between(from, to, operation, limit).await.map_err(|e| AuditError::Store(Arc::new(e)))
    }

    /// The newest entry with this operation name, decoded, with its sequence number.
    pub async fn last_named(&self, operation: &str) -> Result<Option<(i64, AuditEvent)>, AuditError> {
        let row = self.store.audit().last_named(operation).await.map_err(|e| AuditError::Store(Arc::new(e)))?;
        row.map(|r| Ok((r.seq, serde_json::from_str(&r.body)?))).transpose()
    }

    /// The journal's head and its last signed checkpoint, if any.
    pub async fn last_checkpoint(&self) -> Result<(i64, Option<crate::store::CheckpointRow>), AuditError> {
        let store_err = |e| AuditError::Store(Arc::new(e));
        let head = self.store.audit().head().await.map_err(store_err)?;
        let last = self.store.audit().checkpoints().await.map_err(store_err)?.into_iter().last();
        Ok((head.seq, last))
    }

    /// Walks the whole journal as `guichet audit verify` does (the DPO's "verify now").
    pub async fn verify(&self, checks: &verify::Checks) -> Result<verify::Report, verify::VerifyError> {
        verify::verify_with(&self.store, &self.verifier, checks).await
    }

    /// Every signed checkpoint still in the store, in order.
    pub async fn checkpoints(&self) -> Result<Vec<crate::store::CheckpointRow>, AuditError> {
        self.store.audit().checkpoints().await.map_err(|e| AuditError::Store(Arc::new(e)))
    }

    /// Journals that `reader` read `page` (a DPO or supervision page or export), showing
    /// `record_ref` if one record. Never fails its caller: a lost entry is logged.
    /// See [`access`].
    pub async fn record_read(&self, reader: &Reader, page: &str, record_ref: Option<&str>, request_id: Option<&str>) {
        self.record_access(reader, page, record_ref, Outcome::Success, request_id).await;
    }

    /// Journals that `reader` was refused `page` (outcome `denied`): a role-gated own page, an
    /// API or a proxied route they lack the role for.
    /// `record_ref` names the record refused (`incident:INC-…`, or `list:PAGE` for a list), so
    /// the DPO sees what was asked for, not only where.
    pub async fn record_denied(&self, reader: &Reader, page: &str, record_ref: &str, request_id: Option<&str>) {
        self.record_access(reader, page, Some(record_ref), Outcome::Denied, request_id).await;
    }

    async fn record_access(
        &self,
        reader: &Reader,
        page: &str,
        record_ref: Option<&str>,
        outcome: Outcome,
        request_id: Option<&str>,
    ) {
        let Some(event) = access::read_event(reader, page, record_ref, outcome, request_id, self.clock.now()) else {
            tracing::warn!("a page read could not be journaled: its name is not a journal identifier");
            return;
        };
        if let Err(e) = self.record(event).await {
            tracing::warn!(error = %e, "cannot journal a page read or refusal");
        }
    }

    /// The public key checkpoints are checked against.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// One reveal of a citizen's values, as the journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reveal {
    pub at: time::OffsetDateTime,
    /// To an agent (true) or to a back-office batch job (false).
    pub agent: bool,
    pub role: String,
    pub activity: Option<String>,
    pub purpose: Option<String>,
    pub fields: Vec<String>,
    /// An agent entered these fields for the citizen (assisted entry), by this channel; `None`
    /// for a reveal.
    pub entered: Option<event::Channel>,
}

fn pending(event: &AuditEvent) -> Result<sink::Pending, AuditError> {
    Ok(sink::Pending {
        at_us: event.at_micros(),
        operation: event.operation.name(),
        subject: event.subject.as_ref().map(|s| s.as_str().to_owned()),
        body: chain::canonical_body(event)?,
        consent: consent_key(event),
    })
}

/// The ledger row a consent event makes; `None` for every other event (and for a consent
/// event missing its subject, activity or purpose, which the consent service never builds).
fn consent_key(event: &AuditEvent) -> Option<sink::ConsentKey> {
    let given = match event.operation {
        Operation::ConsentGiven { .. } => true,
        Operation::ConsentWithdrawn { .. } => false,
        _ => return None,
    };
    Some(sink::ConsentKey {
        subject: event.subject.as_ref()?.as_str().to_owned(),
        activity: event.activity.as_ref()?.as_str().to_owned(),
        purpose: event.purpose.as_ref()?.as_str().to_owned(),
        given,
    })
}
