//! Access (Art. 15) and portability (Art. 20) exports: `gather` collects what the gateway
//! holds on the citizen and what each application answered (values opened by `records`),
//! `render` writes the archive, `seal` keeps it encrypted at rest under the download token,
//! `api` delivers it to the signed-in citizen. The applications' answers come from an
//! [`AnswerSource`]: propagation plugs its own in with [`Exports::set_source`].

pub mod api;
pub mod cli;
pub mod gather;
pub mod model;
pub mod records;
pub mod render;
pub mod seal;

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use crate::app::App;
use crate::audit::AuditError;
use crate::auth::session::Session;
use crate::clock::{Clock, Random};
use crate::consent::{ConsentError, sha256_hex};
use crate::rights::contract::AppAnswer;
use crate::rights::propagation::SectorSubjects;
use crate::rights::request::{Right, Status};
use crate::rights::service::{By, RightsError, RightsRequest};
use crate::store::{ExportRow, Store, StoreError};

pub use gather::Owner;
pub use model::Export;

/// How long a download link works.
pub const LINK_LIFETIME: time::Duration = time::Duration::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no such export")]
    NotFound,
    #[error("only access and portability requests are exported")]
    NotExportable,
    #[error("a refused or cancelled request is not exported")]
    Closed,
    #[error("the applications' answers cannot be read: {0}")]
    Answers(String),
    #[error("the export cannot be written")]
    Render,
    #[error("not an age recipient (age1…)")]
    BadRecipient,
    #[error("a stored journal entry or export is unreadable")]
    Corrupt,
    #[error("the random number generator failed")]
    Random,
    #[error(transparent)]
    Rights(#[from] RightsError),
    #[error(transparent)]
    Consent(#[from] ConsentError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Each application's answer to a request: `(activity id, answer)`.
pub type Answers = Vec<(String, AppAnswer)>;

/// Where the applications' answers to an access or portability request come from.
pub trait AnswerSource: Send + Sync + std::fmt::Debug {
    fn answers<'a>(&'a self, request: &'a RightsRequest) -> BoxFuture<'a, Result<Answers, String>>;
}

/// Until propagation is wired: no application has answered; each activity shows as pending
/// or handled by hand.
#[derive(Debug, Default)]
pub struct NoAnswers;

impl AnswerSource for NoAnswers {
    fn answers<'a>(&'a self, _: &'a RightsRequest) -> BoxFuture<'a, Result<Answers, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// The answers propagation recorded (`RightsService::app_answers`): what each application sent
/// back, at once or by callback.
impl AnswerSource for crate::rights::service::RightsService {
    fn answers<'a>(&'a self, request: &'a RightsRequest) -> BoxFuture<'a, Result<Answers, String>> {
        Box::pin(async move {
            let answers = self.app_answers(&request.id).await.map_err(|e| e.to_string())?;
            Ok(answers.into_iter().map(|a| (a.activity, a.answer)).collect())
        })
    }
}

/// An export ready to download.
#[derive(Debug, Clone)]
pub struct Ready {
    pub request_id: String,
    /// The secret of the download link (only in the link: the store keeps its hash).
    pub token: String,
    pub expires_at: OffsetDateTime,
    /// Activities whose application has not answered yet.
    pub pending: Vec<String>,
}

/// The export service: builds archives and keeps ready ones, sealed, until they expire.
#[derive(Debug)]
pub struct Exports {
    store: Store,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    source: RwLock<Arc<dyn AnswerSource>>,
}

impl Exports {
    pub fn new(store: Store, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        Self { store, clock, random, source: RwLock::new(Arc::new(NoAnswers)) }
    }

    /// Where the applications' answers come from from now on.
    pub fn set_source(&self, source: Arc<dyn AnswerSource>) {
        if let Ok(mut s) = self.source.write() {
            *s = source;
        }
    }

    fn source(&self) -> Arc<dyn AnswerSource> {
        self.source.read().map_or_else(|_| Arc::new(NoAnswers) as Arc<dyn AnswerSource>, |s| s.clone())
    }

    /// The request, if it can be exported.
    pub fn check(request: &RightsRequest) -> Result<(), ExportError> {
        if !matches!(request.right, Right::Access | Right::Portability) {
            return Err(ExportError::NotExportable);
        }
        if matches!(request.status, Status::Refused | Status::Cancelled) {
            return Err(ExportError::Closed);
        }
        Ok(())
    }

    /// The export of `request` for `owner`, with the answers the source has now.
    pub async fn build(&self, app: &App, request: &RightsRequest, owner: &Owner) -> Result<Export, ExportError> {
        Self::check(request)?;
        let answers = self.source().answers(request).await.map_err(ExportError::Answers)?;
        gather::gather(app, request, owner, &answers).await
    }

    /// Builds the archive now and keeps it sealed for a download link bound to `session`: it
    /// works for that session only, for [`LINK_LIFETIME`] at most and never past the session.
    pub async fn prepare(
        &self,
        app: &App,
        request: &RightsRequest,
        owner: &Owner,
        session: &Session,
        by: &By,
    ) -> Result<Ready, ExportError> {
        let export = self.build(app, request, owner).await?;
        let archive = render::archive(&export)?;
        let id = crate::clock::random_hex::<12>(self.random.as_ref()).map_err(|_| ExportError::Random)?;
        let token = crate::clock::random_hex::<32>(self.random.as_ref()).map_err(|_| ExportError::Random)?;
        let now = self.clock.now();
        let expires_at = (now + LINK_LIFETIME).min(session.expires_at);
        let sealed = seal::seal(&token, &id, &archive, self.random.as_ref()).map_err(|_| ExportError::Render)?;
        self.store.exports().purge_expired(to_us(now)).await?;
        self.store
            .exports()
            .insert(&ExportRow {
                id,
                request_id: request.id.clone(),
                subject: owner.subject.clone(),
                field_subject: owner.field_subject.clone(),
                session_hash: session.id_hash.clone(),
                token_hash: sha256_hex(&token),
                sealed,
                created_at_us: to_us(now),
                expires_at_us: to_us(expires_at),
                downloads: 0,
            })
            .await?;
        journal(app, request, "export_ready", by).await?;
        // The citizen is getting the data now: "your data is ready" would come too late.
        crate::notify::export_seen(app, request).await;
        let pending = export
            .activities
            .iter()
            .filter(|a| matches!(a.application.status, "pending" | "not_connected"))
            .map(|a| a.id.clone())
            .collect();
        Ok(Ready { request_id: request.id.clone(), token, expires_at, pending })
    }

    /// The archive behind a download link, for the session it was made for; journaled before
    /// it is handed out. Any mismatch (token, request, session, expiry) is `NotFound`.
    pub async fn download(
        &self,
        app: &App,
        request_id: &str,
        token: &str,
        session_hash: &str,
        by: &By,
    ) -> Result<Vec<u8>, ExportError> {
        let row = self.store.exports().by_token_hash(&sha256_hex(token)).await?.ok_or(ExportError::NotFound)?;
        let now = to_us(self.clock.now());
        if row.request_id != request_id || row.session_hash != session_hash || row.expires_at_us <= now {
            return Err(ExportError::NotFound);
        }
        let archive = seal::open(token, &row.id, &row.sealed).map_err(|_| ExportError::NotFound)?;
        let request = app.rights.get(request_id).await?;
        journal(app, &request, "export_downloaded", by).await?;
        self.store.exports().count_download(&row.id).await?;
        Ok(archive)
    }

    /// The subject owning `request`'s citizen's encrypted values, as recorded by an export
    /// they made online: the command line and the counter do not have the citizen's session
    /// to derive it. `None` until then, and no value is opened.
    pub async fn field_subject_of(&self, request: &RightsRequest) -> Result<Option<String>, ExportError> {
        Ok(self.store.exports().field_subject_of(&request.subject).await?)
    }
}

/// The citizen's per-sector subjects, as recorded with their requests' pseudonyms
/// (`rights_subject`): what the command line and the counter have without a session.
pub async fn recorded_sectors(app: &App, request: &RightsRequest) -> Result<Vec<SectorSubjects>, ExportError> {
    let recorded = app.rights.subjects_of(&request.subject).await?;
    Ok(recorded.map(|s| s.sectors.into_values().collect()).unwrap_or_default())
}

/// The per-sector subjects of `session`'s citizen, derived from the session.
pub fn session_sectors(app: &App, session: &Session) -> Vec<SectorSubjects> {
    crate::policy::Sector::ALL
        .into_iter()
        .filter(|s| *s != crate::policy::Sector::General)
        .map(|s| SectorSubjects {
            field: app.auth.field_subject_in(session, s).to_owned(),
            consent: app.auth.consent_subject_in(session, s).to_owned(),
        })
        .collect()
}

fn to_us(t: OffsetDateTime) -> i64 {
    crate::audit::event::to_micros(t)
}

/// One journal entry per export step (ready, downloaded, printed, written by the command line).
pub async fn journal(app: &App, r: &RightsRequest, stage: &str, by: &By) -> Result<(), ExportError> {
    Ok(app.rights.journal(r, stage, crate::audit::Outcome::Success, by).await?)
}
