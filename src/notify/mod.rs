//! The one notification channel: every notice to a citizen (request received, deadline
//! extended, answer ready, retention before deletion, consent receipt) is recorded here, then
//! sent by a durable `notify.send` job through SMTP (or, in the demo, written to an outbox),
//! or printed as a letter by an agent for a citizen without e-mail. See docs/notify.md.
//!
//! - A notice row holds references, dates and labels only. The citizen's address lives in one
//!   place (`notify_contact`), is read when sending, and is never put in a job, a log line or
//!   anything forwarded to an application.
//! - One event makes one message: the message id is a digest of what it is about, and the
//!   job's dedup key is the message id, so hooks may be called again without a second e-mail.

pub mod outbox;
pub mod render;
pub mod smtp;

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use zeroize::Zeroizing;

use crate::app::App;
use crate::auth::session::Session;
use crate::clock::{Clock, paris_date};
use crate::config::NotifySettings;
use crate::consent::ConsentPurpose;
use crate::crypto::token::FieldContext;
use crate::crypto::{CryptoError, Vault};
use crate::jobs::{Handler, JobError, Jobs, NewJob};
use crate::rights::service::RightsRequest;
use crate::store::{JobRow, NoticeRow, Store, StoreError};

/// The job kind that sends one message.
pub const SEND_JOB: &str = "notify.send";
/// How long "your data is ready" waits before it is sent: a citizen still on the page sees
/// the download there (the export was ready at once), and the message is then not sent.
pub const EXPORT_READY_DELAY: time::Duration = time::Duration::minutes(10);
/// The status of a notice the citizen no longer needs: they saw what it would tell.
pub const SEEN: &str = "seen";
/// The recipient id of the DPO's alerts: its address is `notify.dpo_address`, never stored.
pub const DPO_SUBJECT: &str = "guichet:dpo";

/// The status of a notice an agent printed and posted as a letter.
pub const POSTED: &str = "posted";
/// The kinds a citizen without e-mail gets by letter. Not consent receipts (the signed
/// receipt and its printable version are on the consent page, or handed over at the counter),
/// nor the DPO's alerts.
const LETTER_KINDS: [&str; 5] = ["request_received", "deadline_extended", "answer_ready", "export_ready", "retention"];

/// A notice waiting for an agent to print and post its letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingLetter {
    /// The message id (a digest: it names neither the citizen nor the event).
    pub id: String,
    /// The citizen's pseudonymous subject.
    pub subject: String,
    pub notice: Notice,
    /// When the notice was recorded.
    pub created_at: OffsetDateTime,
}

/// What a citizen is told. Labels are stored as shown, so a message sent again reads the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A rights request was recorded (Art. 12(3): the citizen knows its reference and date).
    RequestReceived { reference: String, right: String, due_on: Date },
    /// The answer will take longer, and why (Art. 12(3), within the first month).
    DeadlineExtended { reference: String, reason: String, due_on: Date },
    /// The answer can be read in the privacy centre or asked for at the counter.
    AnswerReady { reference: String },
    /// The data an access or portability request asked for can be downloaded: sent when the
    /// export became ready after the citizen left, not when they saw it ready (`export_ready`).
    ExportReady { reference: String },
    /// Data about the citizen will be deleted at the end of its retention period.
    Retention { activity: String, deletion_on: Date },
    /// A consent was given or withdrawn (a copy of the receipt).
    ConsentReceipt { activity: String, purpose: String, given: bool, at: OffsetDateTime, receipt: i64 },
    /// To the DPO (not a citizen): an alert condition holds (`alerts`). Counts only; one
    /// message per condition and day.
    DpoAlert { condition: String, count: u64, on: Date },
}

impl Notice {
    /// The stored kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RequestReceived { .. } => "request_received",
            Self::DeadlineExtended { .. } => "deadline_extended",
            Self::AnswerReady { .. } => "answer_ready",
            Self::ExportReady { .. } => "export_ready",
            Self::Retention { .. } => "retention",
            Self::ConsentReceipt { .. } => "consent_receipt",
            Self::DpoAlert { .. } => "dpo_alert",
        }
    }

    /// What makes two notices the same event (one message per event and citizen).
    fn event_key(&self) -> String {
        match self {
            Self::RequestReceived { reference, .. }
            | Self::AnswerReady { reference }
            | Self::ExportReady { reference } => reference.clone(),
            Self::DeadlineExtended { reference, due_on, .. } => format!("{reference}/{due_on}"),
            Self::Retention { activity, deletion_on } => format!("{activity}/{deletion_on}"),
            Self::ConsentReceipt { receipt, .. } => receipt.to_string(),
            Self::DpoAlert { condition, on, .. } => format!("{condition}/{on}"),
        }
    }
}

/// Where a citizen's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The identity provider's `email` claim.
    IdentityProvider,
    /// Typed by the citizen (or by an agent with them).
    Given,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::IdentityProvider => "identity_provider",
            Self::Given => "given",
        }
    }
}

/// A checked e-mail address. Personal data: `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Address {
    value: String,
    source: Source,
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Address").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Address {
    /// `None` when `value` is not a plain e-mail address.
    pub fn parse(value: &str, source: Source) -> Option<Self> {
        let value = value.trim();
        value.parse::<lettre::Address>().ok()?;
        Some(Self { value: value.to_owned(), source })
    }
}

/// The address notices about this session's citizen go to: the one the citizen typed, else the
/// identity provider's `email` claim. An address typed but not valid is an error (the citizen
/// is told), a claim that is not one is ignored.
pub fn address_of(session: &Session, given: Option<&str>) -> Result<Option<Address>, BadAddress> {
    match given.filter(|g| !g.trim().is_empty()) {
        Some(g) => Address::parse(g, Source::Given).map(Some).ok_or(BadAddress),
        None => Ok(session.claims.get("email").and_then(|e| Address::parse(e, Source::IdentityProvider))),
    }
}

/// The e-mail address typed is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the e-mail address is not valid")]
pub struct BadAddress;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot queue the notice: {0}")]
    Jobs(#[from] crate::jobs::JobsError),
    #[error("a notice could not be encoded")]
    Encode,
    #[error("the address could not be sealed")]
    Seal,
}

/// What became of a notice when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Queued {
    /// An e-mail will be sent by the job `job`.
    Email { message: String, job: String },
    /// No address or no mail relay: an agent prints the letter.
    ByLetter { message: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct SendPayload {
    message: String,
}

/// The notification service (`App::notify`).
pub struct NotifyService {
    store: Store,
    jobs: Arc<Jobs>,
    clock: Arc<dyn Clock>,
    settings: NotifySettings,
    /// Where links in messages point (`notify.link_base`, else `server.public_url`).
    link_base: String,
    mailer: Option<smtp::Mailer>,
    /// Seals the addresses at rest when `[keys]` is configured.
    crypto: Option<Arc<Vault>>,
}

impl std::fmt::Debug for NotifyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyService").field("delivers", &self.settings.delivers()).finish_non_exhaustive()
    }
}

impl NotifyService {
    /// Prepares the SMTP relay's TLS settings (refusing to start on a bad CA file).
    pub fn new(
        store: Store,
        jobs: Arc<Jobs>,
        clock: Arc<dyn Clock>,
        settings: NotifySettings,
        public_url: Option<&str>,
        smtp_password: Option<SecretString>,
        crypto: Option<Arc<Vault>>,
    ) -> anyhow::Result<Self> {
        let mailer = match (&settings.smtp_host, &settings.outbox_dir) {
            (Some(_), None) => Some(smtp::Mailer::build(&settings, smtp_password)?),
            _ => None,
        };
        let link_base = settings.link_base.as_deref().or(public_url).unwrap_or("").trim_end_matches('/').to_owned();
        Ok(Self { store, jobs, clock, settings, link_base, mailer, crypto })
    }

    pub fn settings(&self) -> &NotifySettings {
        &self.settings
    }

    /// Records the address a citizen's notices go to. Without a mail channel nothing is kept:
    /// an address no message can use is not collected (data minimisation).
    pub async fn remember(&self, subject: &str, address: &Address) -> Result<(), NotifyError> {
        if !self.settings.delivers() {
            return Ok(());
        }
        let now = micros(self.clock.now());
        let stored = match &self.crypto {
            Some(vault) => {
                vault.seal(&address_context(subject), &address.value).await.map_err(|_| NotifyError::Seal)?
            }
            None => address.value.clone(),
        };
        self.store.notify().set_contact(subject, &stored, address.source.as_str(), now).await?;
        Ok(())
    }

    async fn has_address(&self, subject: &str) -> Result<bool, NotifyError> {
        if subject == DPO_SUBJECT {
            return Ok(self.settings.dpo_address.is_some());
        }
        Ok(self.store.notify().contact(subject).await?.is_some())
    }

    /// The address of `subject`, opened; `None` without one, or when its key was destroyed.
    async fn address(&self, subject: &str) -> Result<Option<Zeroizing<String>>, JobError> {
        if subject == DPO_SUBJECT {
            return Ok(self.settings.dpo_address.clone().map(Zeroizing::new));
        }
        let Some(stored) = self.store.notify().contact(subject).await.map_err(|_| STORE_DOWN)? else {
            return Ok(None);
        };
        match &self.crypto {
            Some(vault) if crate::crypto::token::looks_sealed(&stored) => {
                match vault.open(&address_context(subject), &stored).await {
                    Ok(address) => Ok(Some(address)),
                    Err(CryptoError::KeyGone) => Ok(None),
                    Err(_) => Err(JobError::Retry("cannot open the citizen's sealed address")),
                }
            }
            _ => Ok(Some(Zeroizing::new(stored))),
        }
    }

    /// Deletes a citizen's address (erasure; later notices go by letter).
    pub async fn forget(&self, subject: &str) -> Result<bool, NotifyError> {
        Ok(self.store.notify().forget_contact(subject).await?)
    }

    /// Records a notice for `subject` and, when they gave an address and a relay is set up,
    /// queues its sending. Calling it again for the same event changes nothing.
    pub async fn enqueue(&self, notice: &Notice, subject: &str) -> Result<Queued, NotifyError> {
        self.enqueue_after(notice, subject, None).await
    }

    /// [`enqueue`](Self::enqueue), the e-mail going out `delay` from now at the earliest; a
    /// notice [`dismiss`](Self::dismiss)ed meanwhile is not sent.
    pub async fn enqueue_after(
        &self,
        notice: &Notice,
        subject: &str,
        delay: Option<time::Duration>,
    ) -> Result<Queued, NotifyError> {
        let id = message_id(subject, notice);
        let row = NoticeRow {
            id: id.clone(),
            subject: subject.to_owned(),
            kind: notice.kind().to_owned(),
            notice: serde_json::to_string(notice).map_err(|_| NotifyError::Encode)?,
            status: "queued".to_owned(),
            created_at_us: micros(self.clock.now()),
            sent_at_us: None,
        };
        let repo = self.store.notify();
        repo.insert(&row).await?;
        if !self.settings.delivers() || !self.has_address(subject).await? {
            return Ok(Queued::ByLetter { message: id });
        }
        let mut job = NewJob::new(SEND_JOB, SendPayload { message: id.clone() })?.dedup(format!("{SEND_JOB}/{id}"));
        if let Some(delay) = delay {
            job = job.not_before(self.clock.now() + delay);
        }
        let job = self.jobs.enqueue(job).await?;
        Ok(Queued::Email { message: id, job })
    }

    /// Marks `notice` as no longer needed for `subject` (they saw what it would tell): a
    /// message not sent yet is never sent, and one recorded later for the same event neither.
    pub async fn dismiss(&self, notice: &Notice, subject: &str) -> Result<(), NotifyError> {
        let now = micros(self.clock.now());
        let row = NoticeRow {
            id: message_id(subject, notice),
            subject: subject.to_owned(),
            kind: notice.kind().to_owned(),
            notice: serde_json::to_string(notice).map_err(|_| NotifyError::Encode)?,
            status: SEEN.to_owned(),
            created_at_us: now,
            sent_at_us: Some(now),
        };
        let repo = self.store.notify();
        if !repo.insert(&row).await? {
            repo.settle(&row.id, SEEN, now).await?;
        }
        Ok(())
    }

    /// A citizen's notices, newest first.
    pub async fn of_subject(&self, subject: &str) -> Result<Vec<NoticeRow>, NotifyError> {
        Ok(self.store.notify().of_subject(subject).await?)
    }

    /// The notice as its subject line, plain-text and HTML bodies.
    pub fn render(&self, notice: &Notice) -> render::Rendered {
        render::message(notice, &self.settings.commune_name, &self.link_base)
    }

    /// The notice as a printable A4 letter to `postal_address` (lines), dated today.
    pub fn letter(&self, notice: &Notice, postal_address: &[String]) -> String {
        let today = paris_date(self.clock.now());
        render::letter(notice, &self.settings, &self.link_base, postal_address, today)
    }

    /// The notices waiting for a letter, oldest first: no e-mail could carry them (no address,
    /// no mail channel, the address erased before sending, or a sending job that gave up). "Your data is ready" waits
    /// [`EXPORT_READY_DELAY`] first, as the e-mail does: a citizen still on the page saw it.
    pub async fn waiting_letters(&self) -> Result<Vec<WaitingLetter>, NotifyError> {
        let now = self.clock.now();
        let rows = self.store.notify().waiting_letters(&LETTER_KINDS).await?;
        let letters = rows.into_iter().filter_map(|row| {
            let Ok(notice) = serde_json::from_str::<Notice>(&row.notice) else {
                tracing::warn!(message = %row.id, "a stored notice is unreadable; no letter for it");
                return None;
            };
            let created_at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.created_at_us) * 1000).ok()?;
            let due = match notice {
                Notice::ExportReady { .. } => created_at + EXPORT_READY_DELAY,
                _ => created_at,
            };
            (due <= now).then_some(WaitingLetter { id: row.id, subject: row.subject, notice, created_at })
        });
        Ok(letters.collect())
    }

    /// The notice `id` if it is waiting for a letter.
    pub async fn waiting_letter(&self, id: &str) -> Result<Option<WaitingLetter>, NotifyError> {
        Ok(self.waiting_letters().await?.into_iter().find(|l| l.id == id))
    }

    /// Records that the letter of `letter` was posted: it leaves the list, and no e-mail is
    /// sent for it later. False when it was no longer waiting (posted by another agent).
    pub async fn letter_posted(&self, letter: &WaitingLetter) -> Result<bool, NotifyError> {
        let now = micros(self.clock.now());
        Ok(self.store.notify().settle_letter(&letter.id, POSTED, now).await?)
    }

    /// Sends one queued message (the `notify.send` job). A message already sent is not sent again.
    async fn deliver(&self, job: &JobRow) -> Result<(), JobError> {
        let payload: SendPayload =
            serde_json::from_str(&job.payload).map_err(|_| JobError::Permanent("invalid notify.send payload"))?;
        let repo = self.store.notify();
        let Some(row) = repo.get(&payload.message).await.map_err(|_| STORE_DOWN)? else {
            return Err(JobError::Permanent("the notice no longer exists"));
        };
        if row.status != "queued" {
            return Ok(());
        }
        let notice: Notice =
            serde_json::from_str(&row.notice).map_err(|_| JobError::Permanent("a stored notice is unreadable"))?;
        let now = micros(self.clock.now());
        let Some(to) = self.address(&row.subject).await? else {
            // The address was erased meanwhile: the letter is the way left.
            repo.settle(&row.id, "undeliverable", now).await.map_err(|_| STORE_DOWN)?;
            tracing::info!(message = %row.id, kind = %row.kind, "notice left for a letter: no address any more");
            return Ok(());
        };
        let rendered = self.render(&notice);
        let mail = smtp::compose(&self.settings.from, &to, &row.id, &rendered, self.clock.now())?;
        match (&self.settings.outbox_dir, &self.mailer) {
            (Some(dir), _) => outbox::write(dir, &row.id, &to, &rendered, self.clock.now()).await?,
            (None, Some(mailer)) => mailer.send(mail).await?,
            (None, None) => return Err(JobError::Retry("no mail relay is configured")),
        }
        repo.settle(&row.id, "sent", now).await.map_err(|_| STORE_DOWN)?;
        tracing::info!(message = %row.id, kind = %row.kind, "notice sent");
        Ok(())
    }
}

/// Where an address is sealed: its own activity and field, so a token of it opens nowhere else.
fn address_context(subject: &str) -> FieldContext<'_> {
    FieldContext { activity: "notify", field: "email", subject }
}

const STORE_DOWN: JobError = JobError::Retry("the store is unavailable");

/// One message per event and citizen: a digest, so the id says nothing about either.
fn message_id(subject: &str, notice: &Notice) -> String {
    let digest = crate::consent::sha256_hex(&format!("{subject}\n{}\n{}", notice.kind(), notice.event_key()));
    digest.chars().take(32).collect()
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// The `notify.send` handler. Holds the application weakly, like every handler.
pub struct SendHandler {
    app: Weak<App>,
}

/// The handler to register on a job runner (the gateway's, or a second one in tests).
pub fn send_handler(app: &Arc<App>) -> Arc<dyn Handler> {
    Arc::new(SendHandler { app: Arc::downgrade(app) })
}

impl Handler for SendHandler {
    fn kind(&self) -> &'static str {
        SEND_JOB
    }

    fn run<'a>(&'a self, job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            app.notify.deliver(job).await
        })
    }
}

// Hooks: one call from each place where something happens that the citizen must be told.
// They never fail their caller: the event is recorded already; a notice that cannot be
// queued is logged (without personal data) for an operator.

/// Remembers the address `subject`'s notices go to. Call it before the request is sent to
/// the applications: one that answers at once is told before the request's receipt is sent.
pub async fn remember_address(app: &App, subject: &str, address: &Address) {
    log_failure(app.notify.remember(subject, address).await, "remember the address");
}

/// A rights request was filed: remembers the citizen's address (if any) and sends the receipt.
pub async fn rights_received(app: &App, request: &RightsRequest, address: Option<Address>) {
    if let Some(a) = &address {
        remember_address(app, &request.subject, a).await;
    }
    let today = paris_date(app.clock.now());
    let notice = Notice::RequestReceived {
        reference: request.id.clone(),
        right: request.right.french().to_owned(),
        due_on: request.due_on(today),
    };
    log_failure(app.notify.enqueue(&notice, &request.subject).await, "queue the request receipt");
}

/// The deadline of a request was extended: tells the new date and the reason given.
pub async fn rights_extended(app: &App, request: &RightsRequest) {
    let today = paris_date(app.clock.now());
    let reason = request.deadline.extensions().last().map(|e| e.reason.clone()).unwrap_or_default();
    let notice = Notice::DeadlineExtended { reference: request.id.clone(), reason, due_on: request.due_on(today) };
    log_failure(app.notify.enqueue(&notice, &request.subject).await, "queue the extension notice");
}

/// The data of an access or portability request can be downloaded. Sent after
/// [`EXPORT_READY_DELAY`], unless the citizen saw the download meanwhile ([`export_seen`]):
/// an export ready while the citizen waits needs no message.
pub async fn export_ready(app: &App, request: &RightsRequest) {
    let notice = Notice::ExportReady { reference: request.id.clone() };
    let queued = app.notify.enqueue_after(&notice, &request.subject, Some(EXPORT_READY_DELAY)).await;
    log_failure(queued, "queue the export notice");
}

/// The citizen saw that their data is ready (the last screen of the procedure, or a
/// download): "your data is ready" is not sent.
pub async fn export_seen(app: &App, request: &RightsRequest) {
    let notice = Notice::ExportReady { reference: request.id.clone() };
    log_failure(app.notify.dismiss(&notice, &request.subject).await, "dismiss the export notice");
}

/// The answer to a request can be read.
pub async fn answer_ready(app: &App, request: &RightsRequest) {
    let notice = Notice::AnswerReady { reference: request.id.clone() };
    log_failure(app.notify.enqueue(&notice, &request.subject).await, "queue the answer notice");
}

/// Data of `subject` in `activity` will be deleted on `deletion_on`.
pub async fn retention_notice(app: &App, subject: &str, activity: &str, deletion_on: Date) {
    let notice = Notice::Retention { activity: activity.to_owned(), deletion_on };
    log_failure(app.notify.enqueue(&notice, subject).await, "queue the retention notice");
}

/// A consent was given or withdrawn online (`receipt`: its ledger sequence number). Only by
/// e-mail: the signed receipt and its printable version are on the consent page already.
pub async fn consent_receipt(app: &App, session: &Session, purpose: &ConsentPurpose, given: bool, receipt: i64) {
    if !app.notify.settings().delivers() {
        return;
    }
    let subject = app.auth.consent_subject(session);
    if let Ok(Some(a)) = address_of(session, None) {
        log_failure(app.notify.remember(subject, &a).await, "remember the address");
        // With an address to reach them, the citizen's pseudonyms are recorded, so that a
        // retention record (which names only its sector's pseudonym) finds whom to tell
        // before a deletion (docs/cryptography.md, "Sector pseudonyms").
        let subjects = crate::rights::propagation::Subjects::of(app, session);
        if let Err(e) = app.rights.remember_subjects(subject, &subjects).await {
            tracing::warn!(error = %e, "cannot record the pseudonyms for retention notices");
        }
    }
    let described = purpose.activity.purposes.iter().find(|p| p.id == purpose.purpose);
    let notice = Notice::ConsentReceipt {
        activity: purpose.activity.name.clone(),
        purpose: described.map_or_else(|| purpose.purpose.clone(), |p| p.description.clone()),
        given,
        at: app.clock.now(),
        receipt,
    };
    log_failure(app.notify.enqueue(&notice, subject).await, "queue the consent receipt");
}

fn log_failure<T>(result: Result<T, NotifyError>, what: &'static str) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot {what}; the citizen gets no e-mail for it");
    }
}
