//! The register of retention evidence for the DPO (`/.guichet/dpo/conservation`): per
//! activity and category, the declared duration, the last run that acted on it, the records
//! destroyed and anonymised (summed from the runs' journal entries: ended records leave the
//! retention service's listing), those still kept and the overdue ones (past their limit, not
//! yet handled: held, or an action failed; from the records under way); then each run's
//! evidence. Read through the services only (policies, `App::retention`, the journal).

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use time::OffsetDateTime;

use super::export::{self, Format, Table};
use super::pages::{export_or, fail, internal, show};
use crate::app::{App, AppState};
use crate::audit::{AuditEvent, Operation};
use crate::pages::{Chrome, french_date, french_time};
use crate::retention::planner::{self, Action, Phase, Record, Rule};
use crate::store::RecordKey;

pub const DPO_CONSERVATION_PATH: &str = "/.guichet/dpo/conservation";
/// How many runs the evidence table lists, newest first.
const RUNS_SHOWN: usize = 24;
/// Most run entries summed (one a day is 27 years of them).
const RUNS_READ: i64 = 10_000;
/// Records read per batch while counting.
const BATCH: i64 = 500;

pub fn routes() -> Router<AppState> {
    Router::new().route(DPO_CONSERVATION_PATH, get(conservation))
}

/// An elimination list (public archives, records in `review`) waiting for the archivist's
/// visa before its records are destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EliminationList {
    pub id: String,
    pub activity: String,
    pub records: u64,
    pub since: OffsetDateTime,
}

/// The elimination lists waiting for the archivist's visa, for the overview (through the
/// retention service; the archivist decides on `/.guichet/archives/`).
pub async fn pending_elimination_lists(app: &App) -> anyhow::Result<Vec<EliminationList>> {
    let mut pending = Vec::new();
    for row in app.retention.pending_elimination_lists().await? {
        let records = match app.retention.elimination_list(&row.reference).await? {
            Some(list) => u64::try_from(list.lines.len()).unwrap_or(u64::MAX),
            None => 0,
        };
        let since = crate::audit::event::from_micros(row.created_at_us).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        pending.push(EliminationList { id: row.reference, activity: row.producing_service, records, since });
    }
    Ok(pending)
}

/// What became of the records of one category.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub destroyed: u64,
    pub anonymised: u64,
    /// Still held by the gateway (active, intermediate archive, review or kept for good).
    pub kept: u64,
    /// Past their limit and not handled yet.
    pub overdue: u64,
}

/// One line of the register: an activity's category.
#[derive(Debug, Clone)]
pub struct Line {
    pub activity: String,
    pub category: String,
    pub declared: String,
    pub last_run: Option<OffsetDateTime>,
    pub counts: Counts,
}

/// One run's evidence, from its journal entry.
#[derive(Debug, Clone)]
pub struct RunLine {
    pub seq: i64,
    pub run: String,
    pub at: OffsetDateTime,
    pub actions: String,
    pub skipped_holds: u64,
    pub overdue: u64,
}

/// The register and the recent runs.
#[derive(Debug, Clone, Default)]
pub struct Register {
    pub lines: Vec<Line>,
    pub runs: Vec<RunLine>,
}

impl Register {
    pub fn overdue(&self) -> u64 {
        self.lines.iter().map(|l| l.counts.overdue).sum()
    }
}

type Key = (String, String);

/// Reads the register: declared categories from the policies, records from retention, runs
/// from the journal.
pub async fn register(app: &App) -> anyhow::Result<Register> {
    let set = app.policies.load_full();
    let mut lines: BTreeMap<Key, Line> = BTreeMap::new();
    let mut rules: BTreeMap<Key, Rule> = BTreeMap::new();
    for a in &set.activities {
        for c in &a.categories {
            let Some(r) = &c.retention else { continue };
            let key = (a.id.clone(), c.id.clone());
            if let Some(rule) = Rule::of(r) {
                rules.insert(key.clone(), rule);
            }
            let declared = crate::policy::notice::retention_in_plain_words(r);
            lines.insert(key.clone(), line(&key, declared));
        }
    }
    let today = crate::retention::run::today(app);
    let mut after: Option<RecordKey> = None;
    loop {
        let rows = app.retention.page(after.as_ref(), BATCH).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.subject.clone(), last.activity.clone(), last.category.clone()));
        for row in &rows {
            let key = (row.activity.clone(), row.category.clone());
            let l = lines.entry(key.clone()).or_insert_with(|| line(&key, "Non déclarée".to_owned()));
            if row.phase != Phase::Ended.as_str() {
                l.counts.kept += 1;
            }
            let (Some(rule), Some(phase)) = (rules.get(&key), Phase::parse(&row.phase)) else { continue };
            let record = Record {
                phase,
                clocks: crate::retention::run::clocks(row),
                noticed_for: crate::retention::run::noticed_for(row),
            };
            let due = planner::plan(rule, &record, today);
            if matches!(due, Some(Action::Destroy | Action::Anonymise | Action::ArchiveReview)) {
                l.counts.overdue += 1;
            }
        }
    }
    let mut runs = runs(app).await?;
    // Runs are newest first: the first that names a category is its last action.
    for r in &runs {
        for (key, action, count) in &r.1 {
            let l = lines.entry(key.clone()).or_insert_with(|| line(key, "Non déclarée".to_owned()));
            l.last_run.get_or_insert(r.0.at);
            match action.as_str() {
                "destroy" => l.counts.destroyed += count,
                "anonymise" => l.counts.anonymised += count,
                _ => {}
            }
        }
    }
    runs.truncate(RUNS_SHOWN);
    Ok(Register { lines: lines.into_values().collect(), runs: runs.into_iter().map(|r| r.0).collect() })
}

fn line(key: &Key, declared: String) -> Line {
    Line { activity: key.0.clone(), category: key.1.clone(), declared, last_run: None, counts: Counts::default() }
}

/// The runs, newest first, each with what it did per (activity, category) and action.
async fn runs(app: &App) -> anyhow::Result<Vec<(RunLine, Vec<(Key, String, u64)>)>> {
    let to = app.clock.now() + time::Duration::SECOND;
    let rows = app.audit.entries_between(OffsetDateTime::UNIX_EPOCH, to, Some("retention_run"), RUNS_READ).await?;
    let mut out = Vec::new();
    for row in rows {
        let Ok(e) = serde_json::from_str::<AuditEvent>(&row.body) else { continue };
        let Operation::RetentionRun { run, lines, skipped_holds, overdue, .. } = e.operation else { continue };
        let mut per_action: BTreeMap<String, u64> = BTreeMap::new();
        let mut acted = Vec::new();
        for l in &lines {
            *per_action.entry(action_label(l.action.as_str()).to_owned()).or_default() += l.count;
            if l.action.as_str() != "held" {
                acted.push(((l.activity.to_string(), l.category.to_string()), l.action.to_string(), l.count));
            }
        }
        let actions = if per_action.is_empty() {
            "Aucune action".to_owned()
        } else {
            per_action.iter().map(|(a, n)| format!("{a} : {n}")).collect::<Vec<_>>().join(", ")
        };
        let run = RunLine { seq: row.seq, run: run.to_string(), at: e.at, actions, skipped_holds, overdue };
        out.push((run, acted));
    }
    Ok(out)
}

fn action_label(action: &str) -> &str {
    match action {
        "intermediate" => "mises en archive intermédiaire",
        "notice" => "personnes prévenues",
        "destroy" => "détruits",
        "anonymise" => "anonymisés",
        "archive_review" => "proposés à l'élimination",
        "held" => "gelés",
        other => other,
    }
}

impl export::Cells for Line {
    fn cells(&self) -> Vec<String> {
        let c = self.counts;
        vec![
            self.activity.clone(),
            self.category.clone(),
            self.declared.clone(),
            self.last_run.map(|t| french_date(crate::clock::paris_date(t))).unwrap_or_default(),
            c.destroyed.to_string(),
            c.anonymised.to_string(),
            c.kept.to_string(),
            c.overdue.to_string(),
        ]
    }
}

pub fn table(lines: &[Line]) -> Table {
    let headers = vec![
        "Activité",
        "Catégorie",
        "Durée déclarée",
        "Dernière action",
        "Détruits",
        "Anonymisés",
        "Conservés",
        "En retard",
    ];
    Table::of("conservation", headers, lines)
}

struct RunView {
    seq: i64,
    run: String,
    at: String,
    actions: String,
    skipped_holds: u64,
    overdue: u64,
}

#[derive(Template)]
#[template(path = "dpo/conservation.html")]
struct ConservationPage<'a> {
    chrome: &'a Chrome,
    table: Table,
    overdue: Vec<bool>,
    total_overdue: u64,
    runs: Vec<RunView>,
}

#[derive(Debug, Deserialize)]
struct ConservationQuery {
    format: Option<String>,
}

async fn conservation(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<ConservationQuery>) -> Response {
    let session = match super::dpo_session(&app, &headers, DPO_CONSERVATION_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let reg = match register(&app).await {
        Ok(r) => r,
        Err(e) => return internal(&headers, e),
    };
    let t = table(&reg.lines);
    if let Some(format) = Format::parse(q.format.as_deref()) {
        return export_or(&headers, &t, format);
    }
    let runs = reg
        .runs
        .iter()
        .map(|r| RunView {
            seq: r.seq,
            run: r.run.clone(),
            at: french_time(r.at),
            actions: r.actions.clone(),
            skipped_holds: r.skipped_holds,
            overdue: r.overdue,
        })
        .collect();
    let page = ConservationPage {
        chrome: &app.auth.chrome(Some(&session)),
        overdue: reg.lines.iter().map(|l| l.counts.overdue > 0).collect(),
        total_overdue: reg.overdue(),
        table: t,
        runs,
    };
    show(&app, &session, StatusCode::OK, &page)
}
