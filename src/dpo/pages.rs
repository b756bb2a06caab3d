//! The DPO's pages: the overview with its charts, the rights queue and its actions, the
//! consent ledger and its "prove it" query, the journal browser and its "verify now". Every
//! list exports as CSV and ODS (`?format=csv|ods`). Read-only on personal data: the DPO sees
//! pseudonymous ids, never values.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use time::{Date, OffsetDateTime};

use super::charts::{self, Series};
use super::export::{self, Format, Table};
use super::stats::{self, QueueCounts, YearMonth};
use super::{DPO_CONSENTS_PATH, DPO_JOURNAL_PATH, DPO_PATH, DPO_REQUESTS_PATH, by_dpo, dpo_session};
use crate::app::{App, AppState};
use crate::audit::{AuditEvent, Ident, Operation, Outcome};
use crate::auth::routes::own_page;
use crate::auth::session::Session;
use crate::clock::{in_paris, paris_date};
use crate::error::{GatewayError, wants_html};
use crate::pages::{Chrome, french_date, french_time};
use crate::rights::request::{Channel, Refusal, RefusalGround, Right, Status};
use crate::rights::sectors::LinkReason;
use crate::rights::service::{By, RightsError, RightsRequest, parse_date};

/// The breach register, built beside this console (the `incidents` module).
const DPO_INCIDENTS_PATH: &str = "/.guichet/dpo/incidents";
/// Where the DPO shreds an anonymous record (the rights queue's last form).
const DPO_ERASE_RECORD_PATH: &str = "/.guichet/dpo/enregistrements-anonymes";
/// How many months the overview's trends cover.
const MONTHS_SHOWN: usize = 6;
/// Most journal entries one page or export lists (narrow the dates for more).
const JOURNAL_LIMIT: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(DPO_PATH, get(overview))
        .route(DPO_REQUESTS_PATH, get(requests))
        .route("/.guichet/dpo/demandes/{id}", post(act_on_request))
        .route(DPO_ERASE_RECORD_PATH, post(erase_anonymous_record))
        .route(DPO_CONSENTS_PATH, get(consents))
        .route("/.guichet/dpo/consentements/preuve", post(prove))
        .route(DPO_JOURNAL_PATH, get(journal))
        .route("/.guichet/dpo/journal/verifier", post(verify_now))
}

// ---------------------------------------------------------------------------------------
// Shared pieces

/// A chart with its title, what it shows in one sentence, and its data as a table.
#[derive(Debug, Clone)]
pub struct Figure {
    pub id: &'static str,
    pub title: String,
    pub summary: String,
    pub svg: String,
    pub table: Table,
    /// The list the figure comes from.
    pub link: &'static str,
}

pub(super) fn fail(headers: &HeaderMap, e: &GatewayError) -> Response {
    e.respond(wants_html(headers), None, None)
}

pub(super) fn internal(headers: &HeaderMap, cause: impl std::fmt::Display) -> Response {
    GatewayError::Internal.respond(wants_html(headers), None, Some(cause.to_string()))
}

pub(super) fn show(app: &App, session: &Session, status: StatusCode, t: &impl Template) -> Response {
    let chrome = app.auth.chrome(Some(session));
    own_page(&app.auth, status, t, &chrome)
}

pub(super) fn export_or(headers: &HeaderMap, t: &Table, format: Format) -> Response {
    export::download(t, format).unwrap_or_else(|e| internal(headers, e))
}

/// Short French names of the rights, for the DPO (the article beside).
pub fn right_label(r: Right) -> String {
    let name = match r {
        Right::Access => "Accès",
        Right::Portability => "Portabilité",
        Right::Rectification => "Rectification",
        Right::Erasure => "Effacement",
        Right::Restriction => "Limitation",
        Right::Objection => "Opposition",
    };
    format!("{name} (art. {})", r.article())
}

pub fn channel_label(c: Channel) -> &'static str {
    match c {
        Channel::Online => "En ligne",
        Channel::Counter => "Guichet",
        Channel::Phone => "Téléphone",
        Channel::Post => "Courrier",
        Channel::Email => "Courriel",
    }
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "Réussi",
        Outcome::Denied => "Refusé",
        Outcome::Failure => "Échec",
    }
}

fn one_decimal(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.1}").replace('.', ","))
}

/// The start of `d` in Paris, as an instant.
pub fn paris_midnight(d: Date) -> OffsetDateTime {
    let guess = d.midnight().assume_utc();
    d.midnight().assume_offset(in_paris(guess).offset())
}

/// The months shown and the instant the oldest one starts.
fn window(now: OffsetDateTime, n: usize) -> (Vec<YearMonth>, OffsetDateTime) {
    let months = YearMonth::of_time(now).last(n);
    let from = months.first().map_or(now, |m| paris_midnight(m.first_day()));
    (months, from)
}

// ---------------------------------------------------------------------------------------
// Overview

struct QueueRow {
    right: String,
    key: &'static str,
    c: QueueCounts,
}

struct TimeRow {
    right: String,
    answered: u64,
    median: String,
    p90: String,
}

struct JournalState {
    head: i64,
    verified: Option<(String, bool)>,
    checkpoint: Option<(i64, i64, String)>,
}

#[derive(Template)]
#[template(path = "dpo/overview.html")]
struct OverviewPage<'a> {
    chrome: &'a Chrome,
    queue: Vec<QueueRow>,
    total: QueueCounts,
    times: Vec<TimeRow>,
    figures: Vec<Figure>,
    journal: JournalState,
    policies: (usize, String),
    keys: Vec<String>,
    incidents_path: &'static str,
    conservation: ConservationState,
}

/// The overview's retention slot.
struct ConservationState {
    last_run: Option<String>,
    overdue: u64,
    elimination_lists: usize,
}

async fn overview(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match dpo_session(&app, &headers, DPO_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    match overview_page(&app, &session).await {
        Ok(r) => r,
        Err(e) => internal(&headers, e),
    }
}

async fn overview_page(app: &App, session: &Session) -> anyhow::Result<Response> {
    let now = app.clock.now();
    let today = paris_date(now);
    let (months, from) = window(now, MONTHS_SHOWN);
    let open = app.rights.open().await?;
    let history = app.rights.received_since(from).await?;
    let consents = app.consent.events_between(from, now + time::Duration::SECOND).await?;
    let reveals: Vec<AuditEvent> = app
        .audit
        .entries_between(from, now + time::Duration::SECOND, Some("reveal"), 100_000)
        .await?
        .iter()
        .filter_map(|e| serde_json::from_str(&e.body).ok())
        .collect();
    let queue: Vec<QueueRow> = stats::queue_counts(&open, today)
        .into_iter()
        .map(|(r, c)| QueueRow { right: right_label(r), key: r.as_str(), c })
        .collect();
    let total = queue.iter().fold(QueueCounts::default(), |mut t, q| {
        t.received += q.c.received;
        t.in_progress += q.c.in_progress;
        t.waiting_on_applications += q.c.waiting_on_applications;
        t.overdue += q.c.overdue;
        t.due_this_week += q.c.due_this_week;
        t
    });
    let times = stats::answer_times(&history)
        .into_iter()
        .map(|(r, t)| TimeRow {
            right: right_label(r),
            answered: t.answered,
            median: one_decimal(t.median_days),
            p90: one_decimal(t.p90_days),
        })
        .collect();
    let figures =
        vec![requests_figure(&history, &months)?, consent_figure(&consents, &months)?, reveals_figure(&reveals)?];
    let set = app.policies.load();
    let policies = (set.activities.len(), crate::app::policy_set_version(&set));
    let page = OverviewPage {
        chrome: &app.auth.chrome(Some(session)),
        queue,
        total,
        times,
        figures,
        journal: journal_state(app).await?,
        policies,
        keys: key_status(app).await,
        incidents_path: DPO_INCIDENTS_PATH,
        conservation: conservation_state(app).await?,
    };
    Ok(show(app, session, StatusCode::OK, &page))
}

async fn conservation_state(app: &App) -> anyhow::Result<ConservationState> {
    let reg = super::conservation::register(app).await?;
    Ok(ConservationState {
        last_run: reg.runs.first().map(|r| french_time(r.at)),
        overdue: reg.overdue(),
        elimination_lists: super::conservation::pending_elimination_lists(app).await?.len(),
    })
}

fn month_labels(months: &[YearMonth]) -> Vec<String> {
    months.iter().map(|m| m.short_french()).collect()
}

fn requests_figure(history: &[(RightsRequest, OffsetDateTime)], months: &[YearMonth]) -> anyhow::Result<Figure> {
    let per_month: Vec<u64> = months
        .iter()
        .map(|m| history.iter().filter(|(r, _)| YearMonth::of(r.deadline.received_on()) == *m).count() as u64)
        .collect();
    let labels = month_labels(months);
    let title = "Demandes de droits reçues par mois".to_owned();
    let svg = charts::line_chart(
        &title,
        &labels,
        &[Series { name: "demandes reçues".into(), values: per_month.iter().map(|n| *n as f64).collect() }],
    )?;
    let total: u64 = per_month.iter().sum();
    let summary = format!("{total} demandes reçues en {} mois.", months.len());
    let rows = labels.iter().zip(&per_month).map(|(l, n)| vec![l.clone(), n.to_string()]).collect();
    let table = Table { name: "demandes_par_mois", headers: vec!["Mois", "Demandes reçues"], rows };
    Ok(Figure { id: "demandes-par-mois", title, summary, svg, table, link: DPO_REQUESTS_PATH })
}

fn consent_figure(consents: &[crate::store::ConsentRow], months: &[YearMonth]) -> anyhow::Result<Figure> {
    let series = stats::consent_series(consents, months);
    let mut given = vec![0u64; months.len()];
    let mut withdrawn = vec![0u64; months.len()];
    let mut rows = Vec::new();
    for ((activity, purpose), per_month) in &series {
        for (i, (m, c)) in per_month.iter().enumerate() {
            if let Some(g) = given.get_mut(i) {
                *g += c.given;
            }
            if let Some(w) = withdrawn.get_mut(i) {
                *w += c.withdrawn;
            }
            rows.push(vec![
                format!("{activity} / {purpose}"),
                m.short_french(),
                c.given.to_string(),
                c.withdrawn.to_string(),
                c.rate().map_or_else(|| "—".to_owned(), |r| format!("{r:.0} %")),
            ]);
        }
    }
    let title = "Accords donnés et retirés par mois".to_owned();
    let to_f = |v: &[u64]| v.iter().map(|n| *n as f64).collect();
    let svg = charts::line_chart(
        &title,
        &month_labels(months),
        &[
            Series { name: "accords donnés".into(), values: to_f(&given) },
            Series { name: "accords retirés".into(), values: to_f(&withdrawn) },
        ],
    )?;
    let summary = format!(
        "{} accords donnés et {} retirés en {} mois, pour {} finalités.",
        given.iter().sum::<u64>(),
        withdrawn.iter().sum::<u64>(),
        months.len(),
        series.len()
    );
    let table = Table {
        name: "accords_par_mois",
        headers: vec!["Finalité", "Mois", "Donnés", "Retirés", "Taux d'accord"],
        rows,
    };
    Ok(Figure { id: "accords-par-mois", title, summary, svg, table, link: DPO_CONSENTS_PATH })
}

fn reveals_figure(reveals: &[AuditEvent]) -> anyhow::Result<Figure> {
    let per = stats::reveals_per_activity_role(reveals);
    let mut per_activity: BTreeMap<String, u64> = BTreeMap::new();
    for ((activity, _), n) in &per {
        *per_activity.entry(activity.clone()).or_insert(0) += n;
    }
    let labels: Vec<String> = per_activity.keys().cloned().collect();
    let values: Vec<f64> = per_activity.values().map(|n| *n as f64).collect();
    let title = "Données révélées aux agents, par activité".to_owned();
    let svg = charts::bar_chart(&title, &labels, &values)?;
    let total: u64 = per.values().sum();
    let summary = format!("{total} révélations de données en clair, sur {} activités.", per_activity.len());
    let rows = per.iter().map(|((a, role), n)| vec![a.clone(), role.clone(), n.to_string()]).collect();
    let table = Table { name: "revelations", headers: vec!["Activité", "Rôle de l'agent", "Révélations"], rows };
    Ok(Figure { id: "revelations", title, summary, svg, table, link: DPO_JOURNAL_PATH })
}

/// The action name of a "verify now" in the journal.
const VERIFY_ACTION: &str = "journal_verify";

async fn journal_state(app: &App) -> anyhow::Result<JournalState> {
    let (head, last) = app.audit.last_checkpoint().await?;
    let checkpoint =
        last.and_then(|c| crate::audit::event::from_micros(c.at_us).map(|at| (c.number, c.seq, french_time(at))));
    let recent = app
        .audit
        .entries_between(OffsetDateTime::UNIX_EPOCH, app.clock.now() + time::Duration::SECOND, Some("dpo_action"), 200)
        .await?;
    let verified = recent.iter().find_map(|e| {
        let event: AuditEvent = serde_json::from_str(&e.body).ok()?;
        match &event.operation {
            Operation::DpoAction { action } if action.as_str() == VERIFY_ACTION => {
                Some((french_time(event.at), event.outcome == Outcome::Success))
            }
            _ => None,
        }
    });
    Ok(JournalState { head, verified, checkpoint })
}

async fn key_status(app: &App) -> Vec<String> {
    let Some(vault) = &app.crypto else {
        return vec!["Chiffrement des champs non configuré (pas de section [keys]).".to_owned()];
    };
    let k = vault.keyring();
    let mut lines =
        vec![format!("Clé maîtresse en service : version {} ({} versions).", k.current_version(), k.versions().len())];
    match vault.tombstone_health().await {
        Ok(h) => lines.push(match h.problem() {
            None => "Registre des effacements : cohérent.".to_owned(),
            Some(p) => format!("Registre des effacements : PROBLÈME. {p}"),
        }),
        Err(e) => lines.push(format!("Registre des effacements illisible : {e}")),
    }
    lines
}

// ---------------------------------------------------------------------------------------
// Rights queue

#[derive(Debug, Default, Deserialize)]
struct RequestsQuery {
    droit: Option<String>,
    /// `ouvertes` (default), `toutes`, or a status.
    statut: Option<String>,
    retard: Option<String>,
    format: Option<String>,
}

pub struct RequestLine {
    pub id: String,
    pub right: String,
    pub activity: String,
    pub channel: &'static str,
    pub status: &'static str,
    pub received: String,
    pub due: String,
    pub days_left: i64,
    pub overdue: bool,
    pub soon: bool,
    pub open: bool,
    pub can_start: bool,
    /// A lifted restriction: what each application answered to the notice, in words.
    pub lifted: Vec<String>,
}

fn request_line(r: &RightsRequest, today: Date) -> RequestLine {
    RequestLine {
        id: r.id.clone(),
        right: right_label(r.right),
        activity: r.activity.clone().unwrap_or_else(|| "Toutes".to_owned()),
        channel: channel_label(r.channel),
        status: r.status.french(),
        received: french_date(r.deadline.received_on()),
        due: french_date(r.due_on(today)),
        days_left: r.deadline.days_left(today),
        overdue: r.is_overdue(today),
        soon: stats::due_this_week(r, today) && !r.status.is_final(),
        open: !r.status.is_final(),
        can_start: r.status == Status::Received,
        lifted: Vec::new(),
    }
}

/// The cards of `requests`, each lifted restriction with its applications' answers.
async fn cards(app: &App, requests: &[RightsRequest], today: Date) -> Result<Vec<RequestLine>, RightsError> {
    let mut lines = Vec::with_capacity(requests.len());
    for r in requests {
        let mut line = request_line(r, today);
        line.lifted = lifted_lines(app, r).await?;
        lines.push(line);
    }
    Ok(lines)
}

/// What each application answered when `r`'s restriction was lifted, for its card.
async fn lifted_lines(app: &App, r: &RightsRequest) -> Result<Vec<String>, RightsError> {
    let set = app.policies.load();
    let views = crate::rights::dpo_api::lifted_views(app, r).await?;
    Ok(views
        .iter()
        .map(|v| {
            let name = set.activity(&v.activity).map_or(v.activity.as_str(), |a| a.name.as_str());
            let what = match v.status.as_str() {
                "completed" => "l'application a appliqué la fin du gel",
                "refused" => "l'application a refusé l'avis de fin du gel",
                _ => "l'application traite encore l'avis de fin du gel",
            };
            format!("{name} : {what} ({}).", crate::pages::french_time(v.answered_at))
        })
        .collect())
}

impl export::Cells for RequestLine {
    fn cells(&self) -> Vec<String> {
        let overdue = if self.overdue { "oui" } else { "non" };
        let (c, s) = (self.channel.to_owned(), self.status.to_owned());
        vec![
            self.id.clone(),
            self.right.clone(),
            self.activity.clone(),
            c,
            s,
            self.received.clone(),
            self.due.clone(),
            overdue.to_owned(),
        ]
    }
}

fn requests_table(lines: &[RequestLine]) -> Table {
    let headers = vec!["Référence", "Droit", "Activité", "Canal", "Statut", "Reçue le", "À rendre le", "En retard"];
    Table::of("demandes", headers, lines)
}

#[derive(Template)]
#[template(path = "dpo/requests.html")]
struct RequestsPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    lines: &'a [RequestLine],
    rights: Vec<(&'static str, String)>,
    statuses: Vec<(&'static str, &'static str)>,
    droit: String,
    statut: String,
    retard: bool,
    query: String,
    message: Option<String>,
    /// The closed list of reasons to join a citizen's sectors: (value, French name).
    link_reasons: Vec<(&'static str, &'static str)>,
    /// The citizen's pseudonyms in each sector, after the DPO joined them.
    linked: Option<Linked>,
    /// The activities taking anonymous sealed records: (id, name), for the erase form.
    anonymous: Vec<(String, String)>,
}

/// The result of joining a request's citizen's sectors, as the queue shows it.
pub struct Linked {
    pub id: String,
    pub reason: &'static str,
    /// (sector's French name, field subject, consent subject).
    pub rows: Vec<(&'static str, String, String)>,
}

async fn requests(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<RequestsQuery>) -> Response {
    let session = match dpo_session(&app, &headers, DPO_REQUESTS_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let requests = match request_lines(&app, &q).await {
        Ok(r) => r,
        Err(e) => return internal(&headers, e),
    };
    let today = paris_date(app.clock.now());
    if let Some(format) = Format::parse(q.format.as_deref()) {
        return export_or(&headers, &requests_table(&requests.lines(today)), format);
    }
    let lines = match cards(&app, &requests, today).await {
        Ok(l) => l,
        Err(e) => return internal(&headers, e),
    };
    requests_page(&app, &session, &q, &lines, (None, None), StatusCode::OK)
}

fn requests_page(
    app: &App,
    session: &Session,
    q: &RequestsQuery,
    lines: &[RequestLine],
    (message, linked): (Option<String>, Option<Linked>),
    status: StatusCode,
) -> Response {
    let droit = q.droit.clone().unwrap_or_default();
    let statut = q.statut.clone().unwrap_or_else(|| "ouvertes".to_owned());
    let retard = q.retard.is_some();
    let query =
        format!("droit={}&statut={}{}", percent(&droit), percent(&statut), if retard { "&retard=1" } else { "" });
    let page = RequestsPage {
        chrome: &app.auth.chrome(Some(session)),
        csrf: &app.auth.csrf_token(session),
        lines,
        rights: Right::ALL.iter().map(|r| (r.as_str(), right_label(*r))).collect(),
        statuses: Status::ALL.iter().map(|s| (s.as_str(), s.french())).collect(),
        droit,
        statut,
        retard,
        query,
        message,
        link_reasons: LinkReason::ALL.iter().map(|r| (r.as_str(), r.french())).collect(),
        linked,
        anonymous: app
            .policies
            .load()
            .activities
            .iter()
            .filter(|a| a.anonymous == crate::policy::model::AnonymousFields::Sealed)
            .map(|a| (a.id.clone(), a.name.clone()))
            .collect(),
    };
    show(app, session, status, &page)
}

/// The DPO's session for a form they posted, once its CSRF token `jeton` checks out.
async fn dpo_form_session(
    app: &App,
    headers: &HeaderMap,
    return_to: &str,
    jeton: Option<&str>,
) -> Result<Arc<Session>, GatewayError> {
    let session = dpo_session(app, headers, return_to).await?;
    if !jeton.is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        return Err(GatewayError::Forbidden("the form is out of date; reload the page"));
    }
    Ok(session)
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn request_lines(app: &App, q: &RequestsQuery) -> Result<Vec<RightsRequest>, RightsError> {
    let statut = q.statut.as_deref().unwrap_or("ouvertes");
    let mut list = if statut == "ouvertes" {
        app.rights.open().await?
    } else {
        let (_, from) = window(app.clock.now(), 12);
        let all = app.rights.received_since(from).await?.into_iter().map(|(r, _)| r);
        all.filter(|r| statut == "toutes" || r.status.as_str() == statut).collect()
    };
    let today = paris_date(app.clock.now());
    if let Some(right) = q.droit.as_deref().and_then(Right::parse) {
        list.retain(|r| r.right == right);
    }
    if q.retard.is_some() {
        list.retain(|r| r.is_overdue(today));
    }
    Ok(list)
}

trait IntoLines {
    fn lines(self, today: Date) -> Vec<RequestLine>;
}

impl IntoLines for Vec<RightsRequest> {
    fn lines(self, today: Date) -> Vec<RequestLine> {
        self.iter().map(|r| request_line(r, today)).collect()
    }
}

/// What the DPO does to a request from the queue.
#[derive(Debug, Deserialize)]
struct ActionForm {
    jeton: Option<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    mois: Option<u8>,
    #[serde(default)]
    motif: Option<String>,
    #[serde(default)]
    partiel: Option<String>,
    /// Why the DPO joins the citizen's sectors (`relier`): one of [`LinkReason`].
    #[serde(default)]
    raison: Option<String>,
}

async fn act_on_request(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    let session = match dpo_form_session(&app, &headers, DPO_REQUESTS_PATH, f.jeton.as_deref()).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let by = match by_dpo(&app, &session) {
        Ok(b) => b,
        Err(e) => return fail(&headers, &e),
    };
    let motif = f.motif.clone().unwrap_or_default().trim().to_owned();
    let today = paris_date(app.clock.now());
    if f.action == "relier" {
        return link_sectors(&app, &session, &headers, &id, f.raison.as_deref(), &by).await;
    }
    let result = match f.action.as_str() {
        "prendre" => app.rights.advance(&id, Status::InProgress, None, &by).await,
        "prolonger" if motif.is_empty() => {
            Err(RightsError::Transition(crate::rights::request::TransitionError::RefusalWithoutReason))
        }
        "prolonger" => match app.rights.extend(&id, f.mois.unwrap_or(2), motif.clone(), today, &by).await {
            Ok(r) => {
                crate::notify::rights_extended(&app, &r).await;
                Ok(r)
            }
            Err(e) => Err(e),
        },
        "refuser" => {
            app.rights.refuse(&id, Refusal { ground: RefusalGround::Decision, reason: motif.clone() }, &by).await
        }
        "terminer" if motif.is_empty() => {
            Err(RightsError::Transition(crate::rights::request::TransitionError::RefusalWithoutReason))
        }
        "terminer" => {
            let to = if f.partiel.is_some() { Status::PartlyCompleted } else { Status::Completed };
            app.rights.advance(&id, to, Some(motif.clone()), &by).await
        }
        _ => return fail(&headers, &GatewayError::BadRequest("unknown action")),
    };
    let (message, status) = match result {
        Ok(r) => (format!("La demande {} est à jour : {}.", r.id, r.status.french().to_lowercase()), StatusCode::OK),
        Err(RightsError::NotFound) => ("Cette demande n'existe pas.".to_owned(), StatusCode::NOT_FOUND),
        Err(RightsError::Transition(_) | RightsError::Deadline(_)) if motif.is_empty() => {
            ("Écrivez le motif ou la réponse avant de valider.".to_owned(), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(RightsError::Transition(_) | RightsError::Deadline(_) | RightsError::Conflict) => (
            "Cette action n'est pas possible pour cette demande maintenant.".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return internal(&headers, e),
    };
    queue_after(&app, &session, &headers, (Some(message), None), status).await
}

/// The open requests' queue again, after an action, with what it did.
async fn queue_after(
    app: &App,
    session: &Session,
    headers: &HeaderMap,
    shown: (Option<String>, Option<Linked>),
    status: StatusCode,
) -> Response {
    let today = paris_date(app.clock.now());
    let q = RequestsQuery::default();
    let lines = match request_lines(app, &q).await {
        Ok(requests) => cards(app, &requests, today).await,
        Err(e) => Err(e),
    };
    match lines {
        Ok(l) => requests_page(app, session, &q, &l, shown, status),
        Err(e) => internal(headers, e),
    }
}

/// The DPO joins the sectors of request `id`'s citizen, for a reason of the closed list
/// (required): the same journaled step as `guichet rights link`.
async fn link_sectors(
    app: &App,
    session: &Session,
    headers: &HeaderMap,
    id: &str,
    reason: Option<&str>,
    by: &By,
) -> Response {
    let Some(reason) = reason.and_then(LinkReason::parse) else {
        let message = "Choisissez la raison avant de relier les secteurs.".to_owned();
        return queue_after(app, session, headers, (Some(message), None), StatusCode::UNPROCESSABLE_ENTITY).await;
    };
    let (message, linked, status) = match crate::rights::sectors::link(app, id, reason, by).await {
        Ok(ids) => {
            let rows = ids.into_iter().map(|s| (s.sector.label(), s.field, s.consent)).collect();
            let message = format!("Secteurs reliés pour la demande {id}. Cette action est notée au journal.");
            (message, Some(Linked { id: id.to_owned(), reason: reason.french(), rows }), StatusCode::OK)
        }
        Err(RightsError::NotFound) => (
            "Aucun pseudonyme n'est enregistré pour cette demande : les secteurs ne peuvent pas être reliés."
                .to_owned(),
            None,
            StatusCode::NOT_FOUND,
        ),
        Err(e) => return internal(headers, e),
    };
    queue_after(app, session, headers, (Some(message), linked), status).await
}

/// The DPO shreds one anonymous record.
#[derive(Debug, Deserialize)]
struct EraseRecordForm {
    jeton: Option<String>,
    /// The record id the application was sent (`anonyme:…`) or one of its tokens.
    #[serde(default)]
    enregistrement: String,
    /// The activity, needed with a record id (a token names it).
    #[serde(default)]
    activite: String,
    /// Why, from the closed list ([`LinkReason`]).
    #[serde(default)]
    raison: String,
}

/// Shreds an anonymous record's sealed fields (`rights::erasure::erase_record`, as
/// `guichet rights erase-record` does), for a reason of the closed list, journaled as the
/// DPO's action `erase_record:<reason>` on the record (the key's destruction is journaled too).
async fn erase_anonymous_record(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<EraseRecordForm>,
) -> Response {
    use crate::rights::erasure::RecordError;
    let session = match dpo_form_session(&app, &headers, DPO_REQUESTS_PATH, f.jeton.as_deref()).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let unprocessable = |m: &str| (m.to_owned(), StatusCode::UNPROCESSABLE_ENTITY);
    let target = f.enregistrement.trim();
    let activity = Some(f.activite.trim()).filter(|a| !a.is_empty());
    let (message, status) = match LinkReason::parse(&f.raison) {
        None => unprocessable("Choisissez la raison avant d'effacer."),
        Some(_) if target.is_empty() => unprocessable("Écrivez l'identifiant de l'enregistrement ou un de ses jetons."),
        Some(reason) => match crate::rights::erasure::erase_record(&app, target, activity).await {
            Ok(done) => {
                let action = format!("erase_record:{}", reason.as_str());
                if let Err(e) = journal_dpo_action(&app, &session, &action, Some(&done.record), Outcome::Success).await
                {
                    return internal(&headers, e);
                }
                let what = if done.keys == 0 { "était déjà effacé" } else { "est effacé" };
                (format!("L'enregistrement {} {what}. Cette action est notée au journal.", done.record), StatusCode::OK)
            }
            Err(RecordError::NotARecord) => unprocessable(
                "Ce n'est pas un enregistrement anonyme. Les données d'une personne s'effacent par une demande de droits.",
            ),
            Err(RecordError::ActivityMissing) => unprocessable("Choisissez le service de cet enregistrement."),
            Err(RecordError::OtherActivity) => unprocessable("Ce jeton appartient à un autre service."),
            Err(RecordError::Gone) => {
                ("Aucune clé pour ce jeton : il est déjà effacé, ou inconnu.".to_owned(), StatusCode::NOT_FOUND)
            }
            Err(e @ (RecordError::NoKeys | RecordError::Shred)) => return internal(&headers, e),
        },
    };
    queue_after(&app, &session, &headers, (Some(message), None), status).await
}

// ---------------------------------------------------------------------------------------
// Consent ledger and "prove it"

#[derive(Debug, Default, Deserialize)]
struct ConsentsQuery {
    finalite: Option<String>,
    du: Option<String>,
    au: Option<String>,
    format: Option<String>,
}

pub struct ConsentLine {
    pub seq: i64,
    pub at: String,
    pub subject: String,
    pub activity: String,
    pub purpose: String,
    pub given: bool,
    pub channel: &'static str,
    pub notice_version: String,
}

fn consent_line(row: &crate::store::ConsentRow) -> ConsentLine {
    let event: Option<AuditEvent> = serde_json::from_str(&row.body).ok();
    let (channel, notice_version) = match event.as_ref().map(|e| &e.operation) {
        Some(Operation::ConsentGiven { channel, notice_version, .. })
        | Some(Operation::ConsentWithdrawn { channel, notice_version, .. }) => {
            (channel_label(*channel), notice_version.to_string())
        }
        _ => ("—", "—".to_owned()),
    };
    ConsentLine {
        seq: row.seq,
        at: crate::audit::event::from_micros(row.at_us).map(french_time).unwrap_or_default(),
        subject: row.subject.clone(),
        activity: row.activity.clone(),
        purpose: row.purpose.clone(),
        given: row.given != 0,
        channel,
        notice_version,
    }
}

impl export::Cells for ConsentLine {
    fn cells(&self) -> Vec<String> {
        let choice = if self.given { "donné" } else { "retiré" };
        let (seq, at, subject) = (self.seq.to_string(), self.at.clone(), self.subject.clone());
        let (activity, purpose, notice) = (self.activity.clone(), self.purpose.clone(), self.notice_version.clone());
        vec![seq, at, subject, activity, purpose, choice.to_owned(), self.channel.to_owned(), notice]
    }
}

fn consents_table(lines: &[ConsentLine]) -> Table {
    let headers =
        vec!["N° du journal", "Date", "Pseudonyme", "Activité", "Finalité", "Choix", "Canal", "Version de la notice"];
    Table::of("consentements", headers, lines)
}

/// The answer to "did this citizen consent to this purpose on this date".
pub struct Proof {
    pub subject: String,
    pub purpose: String,
    pub date: String,
    /// Whether consent stood at the end of that day.
    pub consented: bool,
    pub events: Vec<ProofEvent>,
    /// The notice text shown, when the event's text is the one the policy holds today.
    pub notice_text: Option<String>,
    pub looked_up_by_code: bool,
}

pub struct ProofEvent {
    pub line: ConsentLine,
    pub hash: String,
    pub notice_sha256: String,
    pub ledger_ok: bool,
    pub signed_by: Option<String>,
    /// The signed checkpoint covering the entry: number and time.
    pub checkpoint: Option<(i64, String)>,
}

#[derive(Template)]
#[template(path = "dpo/consents.html")]
struct ConsentsPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    lines: &'a [ConsentLine],
    purposes: Vec<(String, String)>,
    finalite: String,
    du: String,
    au: String,
    query: String,
    proof: Option<Proof>,
    message: Option<&'static str>,
}

/// The dates a list covers: `du`..=`au` in Paris days; 30 days up to today by default.
fn date_range(app: &App, du: Option<&str>, au: Option<&str>) -> (Date, Date) {
    let today = paris_date(app.clock.now());
    let to = au.and_then(|d| parse_date(d).ok()).unwrap_or(today);
    let from = du.and_then(|d| parse_date(d).ok()).unwrap_or_else(|| to - time::Duration::days(30));
    (from, to)
}

fn instants(from: Date, to: Date) -> (OffsetDateTime, OffsetDateTime) {
    (paris_midnight(from), paris_midnight(to.next_day().unwrap_or(to)))
}

async fn consent_lines(app: &App, q: &ConsentsQuery) -> anyhow::Result<Vec<ConsentLine>> {
    let (from, to) = date_range(app, q.du.as_deref(), q.au.as_deref());
    let (from, to) = instants(from, to);
    let rows = app.consent.events_between(from, to).await?;
    let wanted = q.finalite.as_deref().filter(|f| !f.is_empty()).and_then(|f| f.split_once('/'));
    Ok(rows
        .iter()
        .filter(|r| wanted.is_none_or(|(a, p)| r.activity == a && r.purpose == p))
        .map(consent_line)
        .collect())
}

async fn consents(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<ConsentsQuery>) -> Response {
    let session = match dpo_session(&app, &headers, DPO_CONSENTS_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let lines = match consent_lines(&app, &q).await {
        Ok(l) => l,
        Err(e) => return internal(&headers, e),
    };
    if let Some(format) = Format::parse(q.format.as_deref()) {
        return export_or(&headers, &consents_table(&lines), format);
    }
    consents_page(&app, &session, &q, &lines, None, None, StatusCode::OK)
}

fn consents_page(
    app: &App,
    session: &Session,
    q: &ConsentsQuery,
    lines: &[ConsentLine],
    proof: Option<Proof>,
    message: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let (from, to) = date_range(app, q.du.as_deref(), q.au.as_deref());
    let set = app.policies.load();
    let purposes = crate::consent::consent_purposes(&set.activities)
        .into_iter()
        .map(|p| (format!("{}/{}", p.activity.id, p.purpose), format!("{} — {}", p.activity.name, p.purpose)))
        .collect();
    let finalite = q.finalite.clone().unwrap_or_default();
    let query = format!("finalite={}&du={from}&au={to}", percent(&finalite));
    let page = ConsentsPage {
        chrome: &app.auth.chrome(Some(session)),
        csrf: &app.auth.csrf_token(session),
        lines,
        purposes,
        finalite,
        du: from.to_string(),
        au: to.to_string(),
        query,
        proof,
        message,
    };
    show(app, session, status, &page)
}

#[derive(Debug, Deserialize)]
struct ProveForm {
    jeton: Option<String>,
    #[serde(default)]
    pseudonyme: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    finalite: String,
    #[serde(default)]
    date: String,
}

async fn prove(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<ProveForm>) -> Response {
    let session = match dpo_form_session(&app, &headers, DPO_CONSENTS_PATH, f.jeton.as_deref()).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let q = ConsentsQuery { finalite: Some(f.finalite.clone()), ..ConsentsQuery::default() };
    let lines = match consent_lines(&app, &q).await {
        Ok(l) => l,
        Err(e) => return internal(&headers, e),
    };
    let answer = |proof, message, status| consents_page(&app, &session, &q, &lines, proof, message, status);
    let (Some((activity, purpose)), Ok(date)) = (f.finalite.split_once('/'), parse_date(f.date.trim())) else {
        return answer(
            None,
            Some("Choisissez une finalité et une date (AAAA-MM-JJ)."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    let by_code = f.pseudonyme.trim().is_empty();
    let subject = if by_code {
        match app.consent.redeem_code(f.code.trim()).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return answer(
                    None,
                    Some("Ce code n'est pas valable (inconnu, déjà utilisé ou expiré)."),
                    StatusCode::UNPROCESSABLE_ENTITY,
                );
            }
            Err(e) => return internal(&headers, e),
        }
    } else {
        f.pseudonyme.trim().to_owned()
    };
    // A code stands for the citizen's gateway-wide subject; the purpose's consents are under
    // their subject for the activity's sector, recorded with the code (docs/policies.md,
    // "Sectors"), and, for consents given before the activity had a sector, the v1 one.
    let mut subjects = vec![subject.clone()];
    if by_code {
        let sector = app.policies.load().activity(activity).map(|a| a.sector).unwrap_or_default();
        match app.rights.subjects_of(&subject).await {
            Ok(recorded) => {
                if let Some(id) = recorded.as_ref().and_then(|r| r.consent_in(sector)) {
                    subjects.insert(0, id.to_owned());
                }
            }
            Err(e) => return internal(&headers, e),
        }
    }
    let Some(subject) = subjects.first().cloned() else { return internal(&headers, "no subject") };
    if let Err(e) = journal_dpo_action(&app, &session, "consent_proof", Some(&subject), Outcome::Success).await {
        return internal(&headers, e);
    }
    match proof(&app, &subjects, activity, purpose, date, by_code).await {
        Ok(p) => answer(Some(p), None, StatusCode::OK),
        Err(e) => internal(&headers, e),
    }
}

/// Journals one of the DPO's own acts (a lookup, a verification) with its outcome.
async fn journal_dpo_action(
    app: &App,
    session: &Session,
    action: &str,
    subject: Option<&str>,
    outcome: Outcome,
) -> anyhow::Result<()> {
    let by = by_dpo(app, session).map_err(|_| anyhow::anyhow!("the DPO cannot be named in the journal"))?;
    let mut event = AuditEvent::system(Operation::DpoAction { action: Ident::new(action)? }, app.clock.now());
    event.actor = by.actor;
    event.role = by.role;
    event.subject = subject.map(Ident::new).transpose()?;
    event.outcome = outcome;
    app.audit.append_sync(event).await?;
    Ok(())
}

/// The proof for the first of `subjects` (the one shown), from the consent events of all of
/// them in ledger order.
async fn proof(
    app: &App,
    subjects: &[String],
    activity: &str,
    purpose: &str,
    date: Date,
    looked_up_by_code: bool,
) -> anyhow::Result<Proof> {
    let end = crate::audit::event::to_micros(paris_midnight(date.next_day().unwrap_or(date)));
    let subject = subjects.first().map_or("", String::as_str);
    let mut rows = Vec::new();
    for s in subjects {
        rows.extend(app.consent.proof(s).await?);
    }
    rows.sort_by_key(|(r, _)| r.row.seq);
    let checkpoints = app.audit.checkpoints().await?;
    let set = app.policies.load();
    let current = crate::consent::find_purpose(&set.activities, activity, purpose);
    let mut events = Vec::new();
    let mut consented = false;
    let mut shown_sha = None;
    for (row, checked) in rows.iter().filter(|(r, _)| r.row.activity == activity && r.row.purpose == purpose) {
        let row_ = &row.row;
        if row_.at_us >= end {
            continue;
        }
        consented = row_.given != 0;
        let event: Option<AuditEvent> = serde_json::from_str(&row_.body).ok();
        let sha = match event.map(|e| e.operation) {
            Some(Operation::ConsentGiven { notice_sha256, .. } | Operation::ConsentWithdrawn { notice_sha256, .. }) => {
                notice_sha256.to_string()
            }
            _ => String::new(),
        };
        shown_sha = Some(sha.clone());
        let checkpoint = checkpoints
            .iter()
            .find(|c| c.seq >= row_.seq)
            .and_then(|c| crate::audit::event::from_micros(c.at_us).map(|at| (c.number, french_time(at))));
        events.push(ProofEvent {
            line: consent_line(row_),
            hash: row_.hash.clone(),
            notice_sha256: sha,
            ledger_ok: checked.is_ok(),
            signed_by: row_.key_id.clone(),
            checkpoint,
        });
    }
    let notice_text = current.filter(|p| shown_sha.as_deref() == Some(p.notice_sha256.as_str())).map(|p| p.notice_text);
    Ok(Proof {
        subject: subject.to_owned(),
        purpose: format!("{activity} / {purpose}"),
        date: french_date(date),
        consented,
        events,
        notice_text,
        looked_up_by_code,
    })
}

// ---------------------------------------------------------------------------------------
// Journal browser

#[derive(Debug, Default, Deserialize)]
struct JournalQuery {
    du: Option<String>,
    au: Option<String>,
    operation: Option<String>,
    activite: Option<String>,
    resultat: Option<String>,
    format: Option<String>,
}

pub struct JournalLine {
    pub seq: i64,
    pub at: String,
    pub operation: String,
    pub actor: String,
    pub role: String,
    pub activity: String,
    pub subject: String,
    pub outcome: &'static str,
}

const OPERATIONS: [&str; 13] = [
    "sign_in",
    "sign_out",
    "consent_given",
    "consent_withdrawn",
    "reveal",
    "policy_reload",
    "config_loaded",
    "key_operation",
    "admin_action",
    "dpo_action",
    "rights_request",
    "journal_pruned",
    "diagnostic",
];

fn operation_detail(op: &Operation) -> String {
    match op {
        Operation::RightsRequest { right, stage } => format!("rights_request ({right}, {stage})"),
        Operation::DpoAction { action } | Operation::AdminAction { action } => format!("{} ({action})", op.name()),
        Operation::Reveal { fields } => {
            let names: Vec<&str> = fields.iter().map(Ident::as_str).collect();
            format!("reveal ({})", names.join(", "))
        }
        other => other.name().to_owned(),
    }
}

fn outcome_key(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Denied => "denied",
        Outcome::Failure => "failure",
    }
}

async fn journal_lines(app: &App, q: &JournalQuery) -> anyhow::Result<Vec<JournalLine>> {
    let (from, to) = date_range(app, q.du.as_deref(), q.au.as_deref());
    let (from, to) = instants(from, to);
    let op = q.operation.as_deref().filter(|o| OPERATIONS.contains(o));
    let rows = app.audit.entries_between(from, to, op, JOURNAL_LIMIT).await?;
    let activity = q.activite.as_deref().map(str::trim).filter(|a| !a.is_empty());
    let outcome = q.resultat.as_deref().filter(|r| !r.is_empty());
    let mut out = Vec::new();
    for row in rows {
        let Ok(e) = serde_json::from_str::<AuditEvent>(&row.body) else { continue };
        if activity.is_some_and(|a| e.activity.as_ref().is_none_or(|x| x.as_str() != a)) {
            continue;
        }
        if outcome.is_some_and(|o| outcome_key(e.outcome) != o) {
            continue;
        }
        out.push(JournalLine {
            seq: row.seq,
            at: french_time(e.at),
            operation: operation_detail(&e.operation),
            actor: e.actor.id.to_string(),
            role: e.role.to_string(),
            activity: e.activity.map(String::from).unwrap_or_default(),
            subject: e.subject.map(String::from).unwrap_or_default(),
            outcome: outcome_label(e.outcome),
        });
    }
    Ok(out)
}

impl export::Cells for JournalLine {
    fn cells(&self) -> Vec<String> {
        let (seq, at, operation, actor) =
            (self.seq.to_string(), self.at.clone(), self.operation.clone(), self.actor.clone());
        let (role, activity, subject) = (self.role.clone(), self.activity.clone(), self.subject.clone());
        vec![seq, at, operation, actor, role, activity, subject, self.outcome.to_owned()]
    }
}

fn journal_table(lines: &[JournalLine]) -> Table {
    let headers = vec!["N°", "Date", "Opération", "Auteur", "Rôle", "Activité", "Pseudonyme", "Résultat"];
    Table::of("journal", headers, lines)
}

#[derive(Template)]
#[template(path = "dpo/journal.html")]
struct JournalPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    lines: &'a [JournalLine],
    operations: &'a [&'a str],
    du: String,
    au: String,
    operation: String,
    activite: String,
    resultat: String,
    query: String,
    limit: i64,
    verification: Option<(bool, String)>,
}

async fn journal(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<JournalQuery>) -> Response {
    let session = match dpo_session(&app, &headers, DPO_JOURNAL_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let lines = match journal_lines(&app, &q).await {
        Ok(l) => l,
        Err(e) => return internal(&headers, e),
    };
    if let Some(format) = Format::parse(q.format.as_deref()) {
        return export_or(&headers, &journal_table(&lines), format);
    }
    journal_page(&app, &session, &q, &lines, None)
}

fn journal_page(
    app: &App,
    session: &Session,
    q: &JournalQuery,
    lines: &[JournalLine],
    verification: Option<(bool, String)>,
) -> Response {
    let (from, to) = date_range(app, q.du.as_deref(), q.au.as_deref());
    let operation = q.operation.clone().unwrap_or_default();
    let activite = q.activite.clone().unwrap_or_default();
    let resultat = q.resultat.clone().unwrap_or_default();
    let query = format!(
        "du={from}&au={to}&operation={}&activite={}&resultat={}",
        percent(&operation),
        percent(&activite),
        percent(&resultat)
    );
    let page = JournalPage {
        chrome: &app.auth.chrome(Some(session)),
        csrf: &app.auth.csrf_token(session),
        lines,
        operations: &OPERATIONS,
        du: from.to_string(),
        au: to.to_string(),
        operation,
        activite,
        resultat,
        query,
        limit: JOURNAL_LIMIT,
        verification,
    };
    show(app, session, StatusCode::OK, &page)
}

#[derive(Debug, Deserialize)]
struct VerifyForm {
    jeton: Option<String>,
}

async fn verify_now(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<VerifyForm>) -> Response {
    let session = match dpo_form_session(&app, &headers, DPO_JOURNAL_PATH, f.jeton.as_deref()).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    // Everything queued is in the store before the walk, so the new entries are checked too.
    if let Err(e) = app.audit.flush().await {
        return internal(&headers, e);
    }
    let s = &app.settings;
    let checks = crate::audit::verify::Checks {
        coverage: Some((crate::audit::event::to_micros(app.clock.now()), s.audit.checkpoint_every)),
        witness: Some(s.audit.witness_path(&s.data_dir)),
    };
    let report = match app.audit.verify(&checks).await {
        Ok(r) => r,
        Err(e) => return internal(&headers, e),
    };
    let outcome = if report.is_intact() { Outcome::Success } else { Outcome::Failure };
    if let Err(e) = journal_dpo_action(&app, &session, VERIFY_ACTION, None, outcome).await {
        return internal(&headers, e);
    }
    let q = JournalQuery::default();
    let lines = match journal_lines(&app, &q).await {
        Ok(l) => l,
        Err(e) => return internal(&headers, e),
    };
    journal_page(&app, &session, &q, &lines, Some((report.is_intact(), report.summary())))
}
