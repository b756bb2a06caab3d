//! The supervision view (`/.guichet/pilotage/`) for directors and elected officials:
//! aggregates only, per service (processing activity) and month, every count under 5
//! suppressed so that no person can be singled out; a printable monthly report; the same
//! figures as JSON for the city's own dashboards (`/.guichet/api/v1/stats/services`).

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::charts::{self, Series};
use super::pages::{Figure, paris_midnight};
use super::stats::{self, ServiceMonth, Shown, YearMonth};
use super::{STATS_API_PATH, SUPERVISION_PATH, SUPERVISION_REPORT_PATH, supervision_session};
use crate::app::{App, AppState};
use crate::audit::{AuditEvent, Channel};
use crate::auth::routes::own_page;
use crate::error::{GatewayError, wants_html};
use crate::pages::{Chrome, french_time};

/// How many months the view and the API cover by default.
const MONTHS_SHOWN: usize = 6;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(SUPERVISION_PATH, get(view))
        .route(SUPERVISION_REPORT_PATH, get(report))
        .route(STATS_API_PATH, get(api))
}

/// The supervision figures, as the page shows them and the API returns them.
#[derive(Debug, Clone, Serialize)]
pub struct Supervision {
    #[serde(with = "time::serde::rfc3339")]
    pub generated_at: OffsetDateTime,
    /// Counts below this are given as `"< 5"`; rates and medians resting on fewer people as
    /// `null`.
    pub threshold: u64,
    pub months: Vec<YearMonth>,
    /// Sign-ins of citizens and agents, town-wide (a sign-in belongs to no one service).
    pub sign_ins: Vec<MonthCount>,
    /// Rights requests per channel, town-wide.
    pub channels: Vec<MonthChannels>,
    pub services: Vec<ServiceMonth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthCount {
    pub month: YearMonth,
    pub count: Shown,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthChannels {
    pub month: YearMonth,
    pub online: Shown,
    pub counter: Shown,
    pub phone: Shown,
    pub post: Shown,
    pub email: Shown,
}

/// Gathers and counts the figures of `months` through the services.
pub async fn supervision(app: &App, months: Vec<YearMonth>) -> anyhow::Result<Supervision> {
    let now = app.clock.now();
    let from = months.first().map_or(now, |m| paris_midnight(m.first_day()));
    let to = months.last().map_or(now, |m| {
        let next = YearMonth::of(m.first_day() + time::Duration::days(31));
        paris_midnight(next.first_day())
    });
    let requests: Vec<_> = app.rights.received_since(from).await?;
    let requests: Vec<_> =
        requests.into_iter().filter(|(r, _)| paris_midnight(r.deadline.received_on()) < to).collect();
    let consents = app.consent.events_between(from, to).await?;
    let sign_ins: Vec<OffsetDateTime> = app
        .audit
        .entries_between(from, to, Some("sign_in"), 1_000_000)
        .await?
        .iter()
        .filter_map(|e| serde_json::from_str::<AuditEvent>(&e.body).ok())
        .map(|e| e.at)
        .collect();
    let set = app.policies.load();
    let activities: Vec<String> = set.activities.iter().map(|a| a.id.clone()).collect();
    let today = crate::clock::paris_date(now);
    let channels = months
        .iter()
        .map(|m| {
            let n = |c: Channel| {
                let count = requests
                    .iter()
                    .filter(|(r, _)| r.channel == c && YearMonth::of(r.deadline.received_on()) == *m)
                    .count();
                Shown::of(count as u64)
            };
            MonthChannels {
                month: *m,
                online: n(Channel::Online),
                counter: n(Channel::Counter),
                phone: n(Channel::Phone),
                post: n(Channel::Post),
                email: n(Channel::Email),
            }
        })
        .collect();
    Ok(Supervision {
        generated_at: now,
        threshold: stats::SUPPRESS_UNDER,
        sign_ins: stats::sign_ins_per_month(&sign_ins, &months)
            .into_iter()
            .map(|(month, count)| MonthCount { month, count })
            .collect(),
        channels,
        services: stats::service_months(&requests, &consents, &months, &activities, today),
        months,
    })
}

fn plotted(s: Shown) -> f64 {
    match s {
        Shown::Count(n) => n as f64,
        Shown::Suppressed => 0.0,
    }
}

fn figures(s: &Supervision) -> anyhow::Result<Vec<Figure>> {
    let labels: Vec<String> = s.months.iter().map(|m| m.short_french()).collect();
    let title = "Demandes de droits par canal et par mois".to_owned();
    let series = |name: &str, f: fn(&MonthChannels) -> Shown| Series {
        name: name.to_owned(),
        values: s.channels.iter().map(|c| plotted(f(c))).collect(),
    };
    let svg = charts::line_chart(
        &title,
        &labels,
        &[
            series("en ligne", |c| c.online),
            series("au guichet", |c| c.counter),
            series("par téléphone", |c| c.phone),
            series("par courrier", |c| c.post),
        ],
    )?;
    let rows = s
        .channels
        .iter()
        .map(|c| {
            vec![
                c.month.short_french(),
                c.online.to_string(),
                c.counter.to_string(),
                c.phone.to_string(),
                c.post.to_string(),
                c.email.to_string(),
            ]
        })
        .collect();
    let channels = Figure {
        id: "canaux",
        title,
        summary: "Comment le public fait ses demandes : en ligne ou en personne. Les nombres inférieurs à 5 sont \
                  masqués (« < 5 ») et tracés à zéro."
            .to_owned(),
        svg,
        table: super::export::Table {
            name: "canaux",
            headers: vec!["Mois", "En ligne", "Guichet", "Téléphone", "Courrier", "Courriel"],
            rows,
        },
        link: SUPERVISION_PATH,
    };
    let title = "Connexions par mois".to_owned();
    let svg = charts::line_chart(
        &title,
        &labels,
        &[Series { name: "connexions".into(), values: s.sign_ins.iter().map(|c| plotted(c.count)).collect() }],
    )?;
    let rows = s.sign_ins.iter().map(|c| vec![c.month.short_french(), c.count.to_string()]).collect();
    let sign_ins = Figure {
        id: "connexions",
        title,
        summary: "Connexions des habitants et des agents, toute la commune. Les nombres inférieurs à 5 sont masqués."
            .to_owned(),
        svg,
        table: super::export::Table { name: "connexions", headers: vec!["Mois", "Connexions"], rows },
        link: SUPERVISION_PATH,
    };
    Ok(vec![channels, sign_ins])
}

/// One service's months, for the tables.
pub struct ServiceTable {
    pub activity: String,
    pub name: String,
    pub months: Vec<ServiceMonth>,
}

fn service_tables(app: &App, s: &Supervision) -> Vec<ServiceTable> {
    let set = app.policies.load();
    let mut out: Vec<ServiceTable> = Vec::new();
    for m in &s.services {
        match out.iter_mut().find(|t| t.activity == m.activity) {
            Some(t) => t.months.push(m.clone()),
            None => out.push(ServiceTable {
                activity: m.activity.clone(),
                name: set.activity(&m.activity).map_or_else(|| "Sans service précisé".to_owned(), |a| a.name.clone()),
                months: vec![m.clone()],
            }),
        }
    }
    out
}

#[derive(Template)]
#[template(path = "dpo/pilotage.html")]
struct SupervisionPage<'a> {
    chrome: &'a Chrome,
    s: &'a Supervision,
    figures: Vec<Figure>,
    services: Vec<ServiceTable>,
    report_month: String,
}

#[derive(Template)]
#[template(path = "dpo/report.html")]
struct ReportPage<'a> {
    chrome: &'a Chrome,
    s: &'a Supervision,
    month: String,
    generated: String,
    services: Vec<ServiceTable>,
}

#[derive(Debug, Default, Deserialize)]
struct MonthQuery {
    mois: Option<String>,
}

fn parse_month(s: &str) -> Option<YearMonth> {
    let (y, m) = s.split_once('-')?;
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Some(YearMonth { year: y.parse().ok()?, month })
}

fn fail(headers: &HeaderMap, e: &GatewayError) -> Response {
    e.respond(wants_html(headers), None, None)
}

async fn view(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match supervision_session(&app, &headers, SUPERVISION_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let months = YearMonth::of_time(app.clock.now()).last(MONTHS_SHOWN);
    let result = async {
        let s = supervision(&app, months).await?;
        let figures = figures(&s)?;
        anyhow::Ok((s, figures))
    };
    let (s, figures) = match result.await {
        Ok(x) => x,
        Err(e) => return GatewayError::Internal.respond(wants_html(&headers), None, Some(e.to_string())),
    };
    let chrome = app.auth.chrome(Some(&session));
    let page = SupervisionPage {
        chrome: &chrome,
        services: service_tables(&app, &s),
        report_month: YearMonth::of_time(app.clock.now()).previous().key(),
        s: &s,
        figures,
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}

async fn report(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<MonthQuery>) -> Response {
    let session = match supervision_session(&app, &headers, SUPERVISION_PATH).await {
        Ok(s) => s,
        Err(e) => return fail(&headers, &e),
    };
    let month = match q.mois.as_deref() {
        None => YearMonth::of_time(app.clock.now()).previous(),
        Some(m) => match parse_month(m) {
            Some(m) => m,
            None => return fail(&headers, &GatewayError::BadRequest("the month is written YYYY-MM")),
        },
    };
    let s = match supervision(&app, vec![month]).await {
        Ok(s) => s,
        Err(e) => return GatewayError::Internal.respond(wants_html(&headers), None, Some(e.to_string())),
    };
    let chrome = app.auth.chrome(Some(&session));
    let page = ReportPage {
        chrome: &chrome,
        month: month.short_french(),
        generated: french_time(s.generated_at),
        services: service_tables(&app, &s),
        s: &s,
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}

async fn api(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<MonthQuery>) -> Response {
    if let Err(e) = supervision_session(&app, &headers, SUPERVISION_PATH).await {
        return e.respond(false, None, None);
    }
    let months = match q.mois.as_deref() {
        None => YearMonth::of_time(app.clock.now()).last(MONTHS_SHOWN),
        Some(m) => match parse_month(m) {
            Some(m) => vec![m],
            None => return GatewayError::BadRequest("the month is written YYYY-MM").respond(false, None, None),
        },
    };
    match supervision(&app, months).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => GatewayError::Internal.respond(false, None, Some(e.to_string())),
    }
}
