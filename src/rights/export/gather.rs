//! Gathers what the gateway holds on one citizen, through its services, and what each
//! application answered, into an [`Export`].

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::ExportError;
use super::model::{
    ActivityEntry, Application, CategoryInfo, ConsentEntry, Export, FORMAT, Identity, Information, PurposeInfo,
    RequestEntry, RevealEntry, SignIn,
};
use super::records::{lines, open_records};
use crate::app::App;
use crate::audit::{ActorKind, AuditEvent, Operation};
use crate::clock::in_paris;
use crate::policy::model::ActivityFile;
use crate::policy::notice::Notice;
use crate::rights::contract::{AppAnswer, AppStatus};
use crate::rights::propagation::SectorSubjects;
use crate::rights::service::{Answer, RightsRequest};

/// Whose export it is.
#[derive(Clone)]
pub struct Owner {
    /// The pseudonymous subject of the rights request, consents and sign-ins.
    pub subject: String,
    /// The subject owning the citizen's encrypted fields; without it no value is opened.
    pub field_subject: Option<String>,
    /// The citizen's field and consent subjects in the sectors other than `general`, so the
    /// export reaches every sector's records (docs/cryptography.md, "Sector pseudonyms").
    pub sectors: Vec<SectorSubjects>,
    /// The identity claims of the citizen's live session, when the export is made for them.
    pub claims: Option<BTreeMap<String, String>>,
}

impl Owner {
    /// Every subject that may own the citizen's sealed values: the v1 (`general`) field
    /// subject and each sector's. Empty: no value is opened.
    pub fn field_subjects(&self) -> Vec<&str> {
        match &self.field_subject {
            None => Vec::new(),
            Some(v1) => std::iter::once(v1.as_str()).chain(self.sectors.iter().map(|s| s.field.as_str())).collect(),
        }
    }
}

// Pseudonyms link requests and claims are personal data: never in a log line.
impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner").finish_non_exhaustive()
    }
}

/// The export of `request` for `owner`, with the applications' `answers` (activity, answer).
pub async fn gather(
    app: &App,
    request: &RightsRequest,
    owner: &Owner,
    answers: &[(String, AppAnswer)],
) -> Result<Export, ExportError> {
    let now = app.clock.now();
    let (generated_at, generated_at_fr) = when(now);
    let journal = journal_of(app, owner).await?;
    Ok(Export {
        format: FORMAT,
        reference: request.id.clone(),
        right: request.right,
        right_label: request.right.french(),
        generated_at,
        generated_at_fr,
        identity: identity(owner),
        sign_ins: journal.iter().filter_map(sign_in).collect(),
        consents: consents(app, owner).await?,
        reveals: journal.iter().filter_map(reveal).collect(),
        rights_requests: requests(app, &owner.subject).await?,
        activities: activities(app, request, owner, answers).await,
    })
}

/// The instant as RFC 3339 in Paris time, and as a French reader writes it.
pub fn when(t: OffsetDateTime) -> (String, String) {
    let paris = in_paris(t);
    let rfc = paris.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let fr = format!(
        "{:02}/{:02}/{} à {} h {:02}",
        paris.day(),
        u8::from(paris.month()),
        paris.year(),
        paris.hour(),
        paris.minute()
    );
    (rfc, fr)
}

fn identity(owner: &Owner) -> Identity {
    let note = match &owner.claims {
        Some(_) => "Ces informations viennent de votre connexion en cours. Le guichet les garde seulement pendant \
                    votre connexion, chiffrées."
            .to_owned(),
        None => "Le guichet garde vos informations d'identité seulement pendant une connexion, chiffrées avec une clé \
                 que seul votre navigateur a. Connectez-vous pour les voir dans votre export."
            .to_owned(),
    };
    Identity {
        claims: owner.claims.clone(),
        source: "Votre fournisseur d'identité (par exemple FranceConnect), quand vous vous connectez.".to_owned(),
        note,
    }
}

/// The journal entries about this citizen (under both of their pseudonyms), oldest first.
async fn journal_of(app: &App, owner: &Owner) -> Result<Vec<AuditEvent>, ExportError> {
    app.audit.flush().await?;
    let mut rows = app.store.audit().entries_of_subject(&owner.subject).await?;
    if let Some(field) = owner.field_subject.as_deref().filter(|f| *f != owner.subject) {
        rows.extend(app.store.audit().entries_of_subject(field).await?);
    }
    for s in &owner.sectors {
        rows.extend(app.store.audit().entries_of_subject(&s.field).await?);
        rows.extend(app.store.audit().entries_of_subject(&s.consent).await?);
    }
    rows.sort_by_key(|r| r.seq);
    rows.iter().map(|r| serde_json::from_str(&r.body).map_err(|_| ExportError::Corrupt)).collect()
}

fn sign_in(e: &AuditEvent) -> Option<SignIn> {
    let Operation::SignIn { acr } = &e.operation else { return None };
    let (at, at_fr) = when(e.at);
    Some(SignIn { at, at_fr, level: acr.as_ref().map(|a| a.as_str().to_owned()) })
}

fn reveal(e: &AuditEvent) -> Option<RevealEntry> {
    let Operation::Reveal { fields } = &e.operation else { return None };
    let (at, at_fr) = when(e.at);
    Some(RevealEntry {
        at,
        at_fr,
        activity: e.activity.as_ref().map(|a| a.as_str().to_owned()),
        purpose: e.purpose.as_ref().map(|p| p.as_str().to_owned()),
        role: e.role.as_str().to_owned(),
        by: if e.actor.kind == ActorKind::Agent { "agent" } else { "automated" },
        fields: fields.iter().map(|f| f.as_str().to_owned()).collect(),
    })
}

async fn consents(app: &App, owner: &Owner) -> Result<Vec<ConsentEntry>, ExportError> {
    let mut rows = app.consent.history(&owner.subject).await?;
    for s in &owner.sectors {
        rows.extend(app.consent.history(&s.consent).await?);
    }
    rows.sort_by_key(|r| r.seq);
    let set = app.policies.load();
    Ok(rows
        .iter()
        .map(|row| {
            let activity = set.activity(&row.activity);
            let receipt = activity.and_then(|a| {
                let claims = crate::consent::receipt::claims(row, a, &app.auth.public_url).ok()?;
                app.auth.sign_receipt(&claims).ok()
            });
            let purpose_label = activity
                .and_then(|a| a.purposes.iter().find(|p| p.id == row.purpose))
                .map_or_else(|| row.purpose.clone(), |p| p.description.clone());
            let at = crate::consent::time_of(row.at_us).unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let (at, at_fr) = when(at);
            ConsentEntry {
                activity: row.activity.clone(),
                purpose: row.purpose.clone(),
                purpose_label,
                event: if row.given == 1 { "given" } else { "withdrawn" },
                at,
                at_fr,
                receipt,
            }
        })
        .collect())
}

async fn requests(app: &App, subject: &str) -> Result<Vec<RequestEntry>, ExportError> {
    Ok(app
        .rights
        .of_subject(subject)
        .await?
        .into_iter()
        .map(|r| {
            let (received_at, received_at_fr) = when(r.received_at);
            RequestEntry {
                right_label: r.right.french(),
                status_label: r.status.french(),
                id: r.id,
                right: r.right,
                activity: r.activity,
                status: r.status,
                received_at,
                received_at_fr,
                answer_text: r.answer.as_ref().map(answer_text),
                answer: r.answer,
            }
        })
        .collect())
}

/// The activities in the request's scope (one, or every active one), each with its
/// information and its application's answer.
async fn activities(
    app: &App,
    request: &RightsRequest,
    owner: &Owner,
    answers: &[(String, AppAnswer)],
) -> Vec<ActivityEntry> {
    let set = app.policies.load();
    let mut out = Vec::new();
    for a in set.activities.iter().filter(|a| request.activity.as_deref().is_none_or(|id| id == a.id)) {
        let answer = answers.iter().find(|(id, _)| *id == a.id).map(|(_, ans)| ans);
        let application = application(app, a, owner, answer).await;
        out.push(ActivityEntry { id: a.id.clone(), name: a.name.clone(), information: information(a), application });
    }
    out
}

async fn application(app: &App, a: &ActivityFile, owner: &Owner, answer: Option<&AppAnswer>) -> Application {
    let (status, status_label) = match (answer.map(|x| x.status), a.rights_endpoint.is_some()) {
        (Some(AppStatus::Completed), _) => ("answered", "Le service a répondu."),
        (Some(AppStatus::Refused), _) => ("refused", "Le service a refusé de répondre."),
        (Some(_), _) | (None, true) => ("pending", "Le service n'a pas encore répondu. Vous recevrez la suite."),
        (None, false) => ("not_connected", "Un agent de la mairie rassemble ces données à la main."),
    };
    let mut application = Application {
        status,
        status_label,
        reason: answer.and_then(|x| x.reason.clone()),
        records: None,
        unreadable_values: 0,
        lines: Vec::new(),
    };
    if let Some(records) = answer.filter(|x| x.status == AppStatus::Completed).and_then(|x| x.records.as_ref()) {
        let (opened, unreadable) = open_records(app.crypto.as_deref(), a, &owner.field_subjects(), records).await;
        application.lines = lines(&opened);
        application.records = Some(opened);
        application.unreadable_values = unreadable;
    }
    application
}

fn information(a: &ActivityFile) -> Information {
    let n = Notice::of(a);
    Information {
        description: n.description,
        controller: format!("{}, {}", n.controller, n.controller_address),
        dpo_contact: format!("{}, {}", n.dpo_name, n.dpo_contact),
        purposes: n
            .purposes
            .into_iter()
            .map(|p| PurposeInfo { description: p.description, legal_basis: p.legal_basis_explained })
            .collect(),
        categories: n.data.into_iter().map(|d| CategoryInfo { name: d.category, retention: d.retention }).collect(),
        recipients: n.recipients.into_iter().map(|r| format!("{} ({})", r.name, r.kind)).collect(),
        transfers: n.transfers,
        source: "Vous-même, quand vous utilisez ce service (en ligne ou au guichet) ; votre identité vient de votre \
                 fournisseur d'identité."
            .to_owned(),
        rights: n.rights,
        how_to_exercise: n.how_to_exercise,
        complaint: n.complaint.to_owned(),
        automated_decision: n.automated_decision.to_owned(),
    }
}

/// The answer of a request in plain French, for the printable page.
pub fn answer_text(a: &Answer) -> String {
    match a {
        Answer::Done { summary } => summary.clone(),
        Answer::Refused { refusal, remedies } => format!("Refusée : {} {}", refusal.reason, remedies),
    }
}
