//! Elimination lists (bordereaux d'élimination, docs/retention.md): public records whose
//! policy ends in `archive_review` are never destroyed by a run alone (Code du patrimoine
//! L212-2, R212-14). A run puts each such record on the list of its run and producing service
//! and moves it to `review`; the archivist gives the visa (every line not refused is approved)
//! or refuses lines (the record goes to `kept`, for good). Approved lines are destroyed by the
//! next run, through the one `forget` operation, and the application is told.

use std::collections::BTreeMap;

use super::planner::Phase;
use super::run::record_hash;
use super::{RetentionError, RetentionService};
use crate::app::App;
use crate::audit::{AuditEvent, Ident, Operation};
use crate::policy::notice::Period;
use crate::rights::contract::RequestType;
use crate::store::{EliminationLineRow, EliminationListRow, RecordKey, RetentionRow, RunItemRow};

/// A list with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EliminationList {
    pub list: EliminationListRow,
    pub lines: Vec<EliminationLineRow>,
}

impl EliminationList {
    /// Lines the archivist has not decided yet.
    pub fn undecided(&self) -> usize {
        self.lines.iter().filter(|l| l.decision.is_none()).count()
    }
}

/// One group of the bordereau: the records of one typology (activity and category).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BordereauGroup {
    pub activity: String,
    pub typology: String,
    /// The DUA as declared (`1 year`, plus the intermediate archive if any).
    pub dua: String,
    pub legal_basis: String,
    pub first_on: String,
    pub last_on: String,
    pub count: usize,
    pub approved: usize,
    pub refused: usize,
}

/// The bordereau d'élimination of a list, as the archives administration expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bordereau {
    pub reference: String,
    pub producing_service: String,
    pub created_on: String,
    pub groups: Vec<BordereauGroup>,
    /// "Vu et approuvé" — by whom and when, once given.
    pub visa: Option<(String, String)>,
    pub visa_reference: Option<String>,
}

/// Proposed final fate of every line (sort final).
pub const PROPOSED_FATE: &str = "Destruction";

impl RetentionService {
    /// Lists still waiting for the archivist's visa (for the DPO console).
    pub async fn pending_elimination_lists(&self) -> Result<Vec<EliminationListRow>, RetentionError> {
        Ok(self.store().lists().await?.into_iter().filter(|l| l.visa_at_us.is_none()).collect())
    }

    /// Every list, newest first.
    pub async fn elimination_lists(&self) -> Result<Vec<EliminationListRow>, RetentionError> {
        Ok(self.store().lists().await?)
    }

    pub async fn elimination_list(&self, reference: &str) -> Result<Option<EliminationList>, RetentionError> {
        let store = self.store();
        let Some(list) = store.list(reference).await? else { return Ok(None) };
        let lines = store.lines(reference).await?;
        Ok(Some(EliminationList { list, lines }))
    }
}

/// Proposes a record at the end of its DUA for elimination: on its run's list, then in
/// phase `review`. True when this call moved the record (false: another run did first).
pub async fn propose(app: &App, run_id: &str, row: &RetentionRow) -> Result<bool, RetentionError> {
    // The line first: a run killed in between leaves it, and the record is on one list only.
    put_on_list(app, run_id, row).await?;
    let key: RecordKey = (row.subject.clone(), row.activity.clone(), row.category.clone());
    let now = crate::audit::event::to_micros(app.clock.now());
    Ok(app.retention.store().advance(&key, &row.phase, Phase::Review.as_str(), Some("archive_review"), now).await?)
}

/// Puts a record reaching the end of its DUA on its run's list for its producing service.
async fn put_on_list(app: &App, run_id: &str, row: &RetentionRow) -> Result<(), RetentionError> {
    let set = app.policies.load();
    let service = set
        .activity(&row.activity)
        .and_then(|a| a.categories.iter().find(|c| c.id == row.category))
        .and_then(|c| c.retention.as_ref())
        .and_then(|r| r.producing_service.clone())
        .unwrap_or_else(|| "Service producteur non déclaré".to_owned());
    let now = app.clock.now();
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    let stamp = now.format(format).map_err(|_| RetentionError::Journal)?;
    let store = app.retention.store();
    let mut reference = None;
    for n in 1..=50u32 {
        let candidate = if n == 1 { format!("BE-{stamp}") } else { format!("BE-{stamp}-{n}") };
        let list = EliminationListRow {
            reference: candidate,
            run_id: run_id.to_owned(),
            producing_service: service.clone(),
            created_at_us: crate::audit::event::to_micros(now),
            visa_by: None,
            visa_at_us: None,
            visa_reference: None,
        };
        if let Some(r) = store.list_for(&list).await? {
            reference = Some(r);
            break;
        }
    }
    let reference = reference.ok_or(RetentionError::Journal)?;
    let key: RecordKey = (row.subject.clone(), row.activity.clone(), row.category.clone());
    let last = [row.last_activity_at_us, row.event_at_us, row.withdrawn_at_us]
        .into_iter()
        .flatten()
        .fold(row.collected_at_us, i64::max);
    let line = EliminationLineRow {
        reference,
        subject: row.subject.clone(),
        activity: row.activity.clone(),
        category: row.category.clone(),
        record_hash: record_hash(&key),
        first_at_us: row.collected_at_us,
        last_at_us: last,
        decision: None,
        reason: None,
        decided_by: None,
        decided_at_us: None,
        destroyed_at_us: None,
    };
    store.add_line(&line).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no such elimination list")]
    UnknownList,
    #[error("no such line on this list")]
    UnknownLine,
    #[error("the list already has its visa")]
    AlreadyDecided,
    #[error("a refusal needs a reason")]
    NoReason,
    #[error(transparent)]
    Retention(#[from] RetentionError),
}

impl From<crate::store::StoreError> for DecisionError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Retention(e.into())
    }
}

/// The archivist's visa: every line not refused is approved, and will be destroyed by the
/// next run. Journaled.
pub async fn visa(
    app: &App,
    reference: &str,
    agent: &str,
    visa_reference: Option<&str>,
) -> Result<usize, DecisionError> {
    let store = app.retention.store();
    let list = store.list(reference).await?.ok_or(DecisionError::UnknownList)?;
    if list.visa_at_us.is_some() {
        return Err(DecisionError::AlreadyDecided);
    }
    let now = crate::audit::event::to_micros(app.clock.now());
    let approved = store.decide(reference, None, "approved", None, agent, now).await?;
    if !store.visa(reference, agent, visa_reference.filter(|r| !r.trim().is_empty()), now).await? {
        return Err(DecisionError::AlreadyDecided);
    }
    journal(app, agent, reference, "elimination_visa").await?;
    Ok(approved.len())
}

/// The archivist refuses the elimination of one line (by its record hash) or of every line
/// not decided yet: those records are kept for good (phase `kept`), never destroyed.
pub async fn refuse(
    app: &App,
    reference: &str,
    record_hash: Option<&str>,
    agent: &str,
    reason: &str,
) -> Result<usize, DecisionError> {
    if reason.trim().is_empty() {
        return Err(DecisionError::NoReason);
    }
    let store = app.retention.store();
    let list = store.list(reference).await?.ok_or(DecisionError::UnknownList)?;
    if list.visa_at_us.is_some() {
        return Err(DecisionError::AlreadyDecided);
    }
    let now = crate::audit::event::to_micros(app.clock.now());
    let refused = store.decide(reference, record_hash, "refused", Some(reason.trim()), agent, now).await?;
    if refused.is_empty() && record_hash.is_some() {
        return Err(DecisionError::UnknownLine);
    }
    for line in &refused {
        let key: RecordKey = (line.subject.clone(), line.activity.clone(), line.category.clone());
        store.advance(&key, Phase::Review.as_str(), Phase::Kept.as_str(), None, now).await?;
    }
    journal(app, agent, reference, "elimination_refusal").await?;
    Ok(refused.len())
}

async fn journal(app: &App, agent: &str, reference: &str, action: &str) -> Result<(), RetentionError> {
    use crate::audit::event::{Actor, ActorKind};
    let ident = |s: &str| Ident::new(s.to_owned()).map_err(|_| RetentionError::Journal);
    let mut event = AuditEvent::system(Operation::DpoAction { action: ident(action)? }, app.clock.now());
    event.actor = Actor { kind: ActorKind::Agent, id: ident(agent)? };
    event.role = ident(&app.settings.retention.archivist_role)?;
    event.record_ref = Some(ident(&format!("elimination:{reference}"))?);
    app.audit.append_sync(event).await.map_err(|_| RetentionError::Journal)?;
    Ok(())
}

/// Destroys the approved lines of lists with a visa (run by every run, and callable at once
/// after a visa); returns how many records this call destroyed. Idempotent: a line is
/// marked destroyed once `forget` ended its record.
pub async fn destroy_approved(app: &App, run_id: &str) -> Result<u64, RetentionError> {
    let store = app.retention.store();
    let mut destroyed = 0;
    for line in store.approved_to_destroy().await? {
        let rows = app.retention.records(&line.subject, &line.activity).await?;
        let Some(row) = rows.into_iter().find(|r| r.category == line.category) else { continue };
        if row.phase == Phase::Review.as_str() {
            super::tell::enqueue(app, &row, RequestType::Erasure).await?;
            if super::run::forget(app, &line.subject, &line.activity, &line.category, "retention").await?.ended_now {
                destroyed += 1;
            }
        }
        let now = crate::audit::event::to_micros(app.clock.now());
        store
            .item(&RunItemRow {
                record_hash: line.record_hash.clone(),
                step: "eliminated".to_owned(),
                run_id: run_id.to_owned(),
                activity: line.activity.clone(),
                category: line.category.clone(),
                action: "eliminated".to_owned(),
                at_us: now,
            })
            .await?;
        store.line_destroyed(&line, now).await?;
    }
    Ok(destroyed)
}

/// A day as archives services expect it on a bordereau: ISO 8601, `YYYY-MM-DD`, in Paris.
fn day(us: i64) -> String {
    super::date_of(us).map(|d| d.to_string()).unwrap_or_default()
}

/// The bordereau of a list: lines grouped per typology with extreme dates and counts.
pub fn bordereau(app: &App, list: &EliminationList) -> Bordereau {
    let set = app.policies.load();
    let mut groups: BTreeMap<(String, String), BordereauGroup> = BTreeMap::new();
    for line in &list.lines {
        let activity = set.activity(&line.activity);
        let category = activity.and_then(|a| a.categories.iter().find(|c| c.id == line.category));
        let retention = category.and_then(|c| c.retention.as_ref());
        let group = groups.entry((line.activity.clone(), line.category.clone())).or_insert_with(|| BordereauGroup {
            activity: activity.map_or_else(|| line.activity.clone(), |a| a.name.clone()),
            typology: category.map_or_else(|| line.category.clone(), |c| c.name.clone()),
            dua: retention.map_or_else(String::new, |r| {
                let words = |t: &str| Period::parse(t).map_or_else(|_| t.to_owned(), Period::french);
                match &r.intermediate {
                    Some(i) => format!("{} (puis {} en archive intermédiaire)", words(&r.active), words(i)),
                    None => words(&r.active),
                }
            }),
            legal_basis: retention.and_then(|r| r.source.clone()).unwrap_or_default(),
            first_on: day(line.first_at_us),
            last_on: day(line.last_at_us),
            count: 0,
            approved: 0,
            refused: 0,
        });
        group.first_on = group.first_on.clone().min(day(line.first_at_us));
        group.last_on = group.last_on.clone().max(day(line.last_at_us));
        group.count += 1;
        match line.decision.as_deref() {
            Some("approved") => group.approved += 1,
            Some("refused") => group.refused += 1,
            _ => {}
        }
    }
    Bordereau {
        reference: list.list.reference.clone(),
        producing_service: list.list.producing_service.clone(),
        created_on: day(list.list.created_at_us),
        groups: groups.into_values().collect(),
        visa: list.list.visa_by.clone().zip(list.list.visa_at_us.map(day)),
        visa_reference: list.list.visa_reference.clone(),
    }
}

/// The bordereau as a spreadsheet (ODS), one row per typology.
pub fn to_ods(b: &Bordereau) -> Result<Vec<u8>, crate::dpo::export::ExportError> {
    let headers = vec![
        "Service producteur",
        "Référence du bordereau",
        "Activité",
        "Typologie",
        "Date de début",
        "Date de fin",
        "Nombre de dossiers",
        "Éliminés (visa)",
        "Conservés (refus)",
        "DUA",
        "Référence réglementaire",
        "Sort final proposé",
        "Visa de l'archiviste",
        "Date du visa",
    ];
    let (by, on) = b.visa.clone().unwrap_or_default();
    let rows = b
        .groups
        .iter()
        .map(|g| {
            vec![
                b.producing_service.clone(),
                b.reference.clone(),
                g.activity.clone(),
                g.typology.clone(),
                g.first_on.clone(),
                g.last_on.clone(),
                g.count.to_string(),
                g.approved.to_string(),
                g.refused.to_string(),
                g.dua.clone(),
                g.legal_basis.clone(),
                PROPOSED_FATE.to_owned(),
                by.clone(),
                on.clone(),
            ]
        })
        .collect();
    crate::dpo::export::to_ods(&crate::dpo::export::Table { name: "bordereau", headers, rows })
}
