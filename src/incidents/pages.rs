//! The breach register's pages for the DPO under `/.guichet/dpo/incidents`: the list (every
//! incident, never-notified ones with their reason, the 72-hour deadline), a form to record
//! one, its page, a form to correct it, and the CNIL form export (printable HTML and JSON).
//! Agents holding `auth.dpo_role` only; every read and refusal journaled; forms carry the
//! session's CSRF token; no JavaScript. Times typed in the forms are Paris times.

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::cnil::{self, Organisation};
use super::model::{Incident, IncidentFacts, Invalid, Nature};
use super::{IncidentError, IncidentRegister};
use crate::app::{App, AppState};
use crate::auth::gate::{self, Dpo};
use crate::error::{GatewayError, wants_html};
use crate::pages::{Chrome, DPO_INCIDENTS_PATH, french_time, redirect, render};
use crate::server::RequestId;

/// How the journal names these pages.
const PAGE_LIST: &str = "dpo.incidents";
const PAGE_SHOW: &str = "dpo.incident";
const PAGE_EXPORT: &str = "dpo.incident.cnil";

pub fn routes() -> Router<AppState> {
    let p = DPO_INCIDENTS_PATH;
    Router::new()
        .route(p, get(list).post(create))
        .route(&format!("{p}/nouveau"), get(new_form))
        .route(&format!("{p}/{{id}}"), get(show).post(update))
        .route(&format!("{p}/{{id}}/modifier"), get(edit_form))
        .route(&format!("{p}/{{id}}/cnil"), get(export_html))
        .route(&format!("{p}/{{id}}/cnil.json"), get(export_json))
        .route(&format!("{p}/{{id}}/cnil.ods"), get(export_ods))
}

fn request_id(req_headers: &Request) -> Option<String> {
    req_headers.extensions().get::<RequestId>().map(|r| r.0.to_string())
}

/// The gate, answering the refusal itself.
/// `id` is the incident asked for (the refusal names it), `None` on the list and new forms.
async fn dpo(app: &App, headers: &HeaderMap, page: &str, id: Option<&str>, rid: Option<&str>) -> Result<Dpo, Response> {
    let record_ref = id.map_or_else(|| gate::list_ref(PAGE_LIST), super::model::record_ref);
    gate::dpo(app, headers, page, &record_ref, DPO_INCIDENTS_PATH, rid)
        .await
        .map_err(|e| e.respond(wants_html(headers), rid, None))
}

fn page(app: &App, status: StatusCode, t: &impl Template) -> Response {
    crate::auth::routes::allow_sign_out_form(&app.auth, render(status, t))
}

fn failure(e: &IncidentError, headers: &HeaderMap, rid: Option<&str>) -> Response {
    let g = match e {
        IncidentError::NotFound => GatewayError::NotFound,
        IncidentError::Store(_) | IncidentError::Audit(_) => GatewayError::StoreUnavailable,
        _ => GatewayError::Internal,
    };
    g.respond(wants_html(headers), rid, Some(e.to_string()))
}

fn link(id: &str) -> String {
    format!("{DPO_INCIDENTS_PATH}/{id}")
}

struct Row {
    id: String,
    link: String,
    aware: String,
    deadline: String,
    state: String,
    urgent: bool,
    reason: Option<String>,
}

#[derive(Template)]
#[template(path = "incidents/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    new_path: String,
}

async fn list(State(app): State<AppState>, req: Request) -> Response {
    let rid = request_id(&req);
    let dpo = match dpo(&app, req.headers(), PAGE_LIST, None, rid.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let register = IncidentRegister::of(&app);
    let all = match register.all().await {
        Ok(all) => all,
        Err(e) => return failure(&e, req.headers(), rid.as_deref()),
    };
    let now = register.now();
    let rows = all
        .iter()
        .map(|i| Row {
            id: i.id.clone(),
            link: link(&i.id),
            aware: french_time(i.facts.aware_at),
            deadline: french_time(i.deadline()),
            state: cnil::french_state(i.notification(now)),
            urgent: i.deadline_near(now),
            reason: i.facts.cnil_not_notified_reason.clone(),
        })
        .collect();
    app.audit.record_read(&dpo.reader, PAGE_LIST, None, rid.as_deref()).await;
    let chrome = app.auth.chrome(Some(&dpo.session));
    page(&app, StatusCode::OK, &ListPage { chrome, rows, new_path: format!("{DPO_INCIDENTS_PATH}/nouveau") })
}

#[derive(Template)]
#[template(path = "incidents/show.html")]
struct ShowPage<'a> {
    chrome: Chrome,
    i: &'a Incident,
    saved: bool,
    state: String,
    urgent: bool,
    deadline: String,
    aware: String,
    started: String,
    natures: Vec<&'static str>,
    cnil_at: String,
    people_at: String,
    recorded: String,
    updated: String,
    list_path: &'static str,
    edit_path: String,
    cnil_path: String,
    cnil_json_path: String,
}

async fn show(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let dpo = match dpo(&app, req.headers(), PAGE_SHOW, Some(&id), rid.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let register = IncidentRegister::of(&app);
    let incident = match register.get(&id).await.and_then(|i| i.ok_or(IncidentError::NotFound)) {
        Ok(i) => i,
        Err(e) => return failure(&e, req.headers(), rid.as_deref()),
    };
    app.audit.record_read(&dpo.reader, PAGE_SHOW, Some(&incident.record_ref()), rid.as_deref()).await;
    let now = register.now();
    let f = &incident.facts;
    let when = |t: Option<OffsetDateTime>| t.map_or_else(|| "Non".to_owned(), french_time);
    let saved = req.uri().query().is_some_and(|q| q.split('&').any(|p| p == "enregistre=1"));
    let base = link(&incident.id);
    let view = ShowPage {
        chrome: app.auth.chrome(Some(&dpo.session)),
        i: &incident,
        saved,
        state: cnil::french_state(incident.notification(now)),
        urgent: incident.deadline_near(now),
        deadline: french_time(incident.deadline()),
        aware: french_time(f.aware_at),
        started: f.started_at.map_or_else(|| "Inconnue".to_owned(), french_time),
        natures: f.nature.iter().map(|n| n.french()).collect(),
        cnil_at: when(f.cnil_notified_at),
        people_at: when(f.people_informed_at),
        recorded: french_time(incident.recorded_at),
        updated: french_time(incident.updated_at),
        list_path: DPO_INCIDENTS_PATH,
        edit_path: format!("{base}/modifier"),
        cnil_path: format!("{base}/cnil"),
        cnil_json_path: format!("{base}/cnil.json"),
    };
    page(&app, StatusCode::OK, &view)
}

async fn export_html(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    export(&app, &id, req.headers(), rid, Export::Html).await
}

async fn export_json(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    export(&app, &id, req.headers(), rid, Export::Json).await
}

async fn export_ods(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    export(&app, &id, req.headers(), rid, Export::Ods).await
}

/// The shapes of the CNIL form export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Export {
    Html,
    Json,
    Ods,
}

async fn export(app: &App, id: &str, headers: &HeaderMap, rid: Option<String>, shape: Export) -> Response {
    let dpo = match dpo(app, headers, PAGE_EXPORT, Some(id), rid.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let register = IncidentRegister::of(app);
    let incident = match register.get(id).await.and_then(|i| i.ok_or(IncidentError::NotFound)) {
        Ok(i) => i,
        Err(e) => return failure(&e, headers, rid.as_deref()),
    };
    if let Err(e) = register.journal_export(&dpo.reader, &incident.id).await {
        return failure(&e, headers, rid.as_deref());
    }
    let org = Organisation::of(&app.policies.load(), &app.settings.commune.name);
    let now = register.now();
    if shape == Export::Ods {
        let mut resp = match cnil::to_ods(&incident, &org, now) {
            Ok(body) => (StatusCode::OK, body).into_response(),
            Err(e) => return GatewayError::Internal.respond(true, rid.as_deref(), Some(e.to_string())),
        };
        let h = resp.headers_mut();
        let mime = "application/vnd.oasis.opendocument.spreadsheet";
        h.insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(mime));
        h.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("attachment; filename=\"{}-cnil.ods\"", incident.id))
        {
            h.insert(axum::http::header::CONTENT_DISPOSITION, v);
        }
        return resp;
    }
    if shape == Export::Json {
        let mut resp = axum::Json(cnil::to_json(&incident, &org, now)).into_response();
        resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
        return resp;
    }
    let chrome = app.auth.chrome(Some(&dpo.session));
    match cnil::to_html(&incident, &org, &chrome, now) {
        Ok(body) => {
            let mut resp = (StatusCode::OK, body).into_response();
            let h = resp.headers_mut();
            h.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
            crate::auth::routes::allow_sign_out_form(&app.auth, resp)
        }
        Err(e) => GatewayError::Internal.respond(true, rid.as_deref(), Some(e.to_string())),
    }
}

/// The form's fields as typed (kept to show them again with the problems).
#[derive(Debug, Default, Clone)]
struct Values {
    aware_at: String,
    started_at: String,
    nature: Vec<String>,
    description: String,
    people_categories: String,
    people_count: String,
    record_categories: String,
    record_count: String,
    consequences: String,
    measures: String,
    cnil_notified_at: String,
    delay_reason: String,
    cnil_not_notified_reason: String,
    people_informed_at: String,
    people_not_informed_reason: String,
    csrf: String,
}

impl Values {
    fn parse(body: &[u8]) -> Self {
        let mut v = Self::default();
        for (k, value) in url::form_urlencoded::parse(body) {
            let value = value.into_owned();
            match k.as_ref() {
                "aware_at" => v.aware_at = value,
                "started_at" => v.started_at = value,
                "nature" => v.nature.push(value),
                "description" => v.description = value,
                "people_categories" => v.people_categories = value,
                "people_count" => v.people_count = value,
                "record_categories" => v.record_categories = value,
                "record_count" => v.record_count = value,
                "consequences" => v.consequences = value,
                "measures" => v.measures = value,
                "cnil_notified_at" => v.cnil_notified_at = value,
                "delay_reason" => v.delay_reason = value,
                "cnil_not_notified_reason" => v.cnil_not_notified_reason = value,
                "people_informed_at" => v.people_informed_at = value,
                "people_not_informed_reason" => v.people_not_informed_reason = value,
                "csrf" => v.csrf = value,
                _ => {}
            }
        }
        v
    }

    fn of(f: &IncidentFacts) -> Self {
        let local = |t: Option<OffsetDateTime>| t.map(to_local_input).unwrap_or_default();
        let text = |t: &Option<String>| t.clone().unwrap_or_default();
        let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        Self {
            aware_at: to_local_input(f.aware_at),
            started_at: local(f.started_at),
            nature: f.nature.iter().map(|n| n.as_str().to_owned()).collect(),
            description: f.description.clone(),
            people_categories: f.people_categories.clone(),
            people_count: count(f.people_count),
            record_categories: f.record_categories.clone(),
            record_count: count(f.record_count),
            consequences: f.consequences.clone(),
            measures: f.measures.clone(),
            cnil_notified_at: local(f.cnil_notified_at),
            delay_reason: text(&f.delay_reason),
            cnil_not_notified_reason: text(&f.cnil_not_notified_reason),
            people_informed_at: local(f.people_informed_at),
            people_not_informed_reason: text(&f.people_not_informed_reason),
            csrf: String::new(),
        }
    }

    /// The facts, or every field that cannot be read.
    fn facts(&self) -> Result<IncidentFacts, Vec<Invalid>> {
        let mut bad = Vec::new();
        let mut time = |field: &'static str, s: &str, required: bool| match (s.trim(), from_local_input(s)) {
            ("", _) if !required => None,
            (_, Some(t)) => Some(t),
            _ => {
                bad.push(Invalid { field, why: "écrivez une date et une heure" });
                None
            }
        };
        let aware_at = time("aware_at", &self.aware_at, true);
        let started_at = time("started_at", &self.started_at, false);
        let cnil_notified_at = time("cnil_notified_at", &self.cnil_notified_at, false);
        let people_informed_at = time("people_informed_at", &self.people_informed_at, false);
        let mut count = |field: &'static str, s: &str| match s.trim() {
            "" => None,
            n => n.parse::<u64>().map_err(|_| bad.push(Invalid { field, why: "écrivez un nombre" })).ok(),
        };
        let people_count = count("people_count", &self.people_count);
        let record_count = count("record_count", &self.record_count);
        let mut nature = Vec::new();
        for n in &self.nature {
            match Nature::parse(n) {
                Some(n) => nature.push(n),
                None => bad.push(Invalid { field: "nature", why: "cette nature n'existe pas" }),
            }
        }
        let (Some(aware_at), true) = (aware_at, bad.is_empty()) else { return Err(bad) };
        let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.trim().is_empty());
        Ok(IncidentFacts {
            aware_at,
            started_at,
            nature,
            description: self.description.clone(),
            people_categories: self.people_categories.clone(),
            people_count,
            record_categories: self.record_categories.clone(),
            record_count,
            consequences: self.consequences.clone(),
            measures: self.measures.clone(),
            cnil_notified_at,
            cnil_not_notified_reason: opt(&self.cnil_not_notified_reason),
            delay_reason: opt(&self.delay_reason),
            people_informed_at,
            people_not_informed_reason: opt(&self.people_not_informed_reason),
        })
    }
}

/// `2026-12-03T14:05` in Paris time, as a `datetime-local` field shows it.
fn to_local_input(t: OffsetDateTime) -> String {
    let l = crate::clock::in_paris(t);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}", l.year(), u8::from(l.month()), l.day(), l.hour(), l.minute())
}

/// A `datetime-local` value read as Paris time (in the autumn's repeated hour, the first).
fn from_local_input(s: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local = PrimitiveDateTime::parse(s.trim().get(..16)?, &fmt).ok()?;
    let winter = local.assume_offset(UtcOffset::from_hms(1, 0, 0).ok()?);
    let summer = local.assume_offset(UtcOffset::from_hms(2, 0, 0).ok()?);
    let is_summer = |t: OffsetDateTime| crate::clock::in_paris(t).offset().whole_hours() == 2;
    Some(if is_summer(summer) { summer } else { winter })
}

struct ErrorLine {
    field: &'static str,
    label: &'static str,
    why: &'static str,
}

fn label(field: &str) -> &'static str {
    match field {
        "aware_at" => "Date de la découverte",
        "started_at" => "Date du début",
        "nature" => "Nature",
        "description" => "Ce qui s'est passé",
        "people_categories" => "Catégories de personnes",
        "people_count" => "Nombre de personnes",
        "record_categories" => "Catégories de données",
        "record_count" => "Nombre d'enregistrements",
        "consequences" => "Conséquences probables",
        "measures" => "Mesures",
        "cnil_notified_at" => "Notification à la CNIL",
        "delay_reason" => "Raison du retard",
        "cnil_not_notified_reason" => "Raison de ne pas notifier",
        "people_informed_at" => "Information des personnes",
        _ => "Raison de ne pas informer",
    }
}

#[derive(Template)]
#[template(path = "incidents/form.html")]
struct FormPage {
    chrome: Chrome,
    title: &'static str,
    action: String,
    csrf: String,
    v: Values,
    natures: Vec<(&'static str, &'static str, bool)>,
    errors: Vec<ErrorLine>,
    list_path: &'static str,
}

fn form(app: &App, dpo: &Dpo, action: String, v: Values, errors: &[Invalid], status: StatusCode) -> Response {
    let editing = action != DPO_INCIDENTS_PATH;
    let natures =
        Nature::ALL.iter().map(|n| (n.as_str(), n.french(), v.nature.iter().any(|x| x == n.as_str()))).collect();
    let errors = errors.iter().map(|e| ErrorLine { field: e.field, label: label(e.field), why: e.why }).collect();
    let view = FormPage {
        chrome: app.auth.chrome(Some(&dpo.session)),
        title: if editing { "Modifier la fiche d'une violation" } else { "Noter une violation de données" },
        action,
        csrf: app.auth.csrf_token(&dpo.session),
        v,
        natures,
        errors,
        list_path: DPO_INCIDENTS_PATH,
    };
    page(app, status, &view)
}

async fn new_form(State(app): State<AppState>, req: Request) -> Response {
    let rid = request_id(&req);
    let dpo = match dpo(&app, req.headers(), PAGE_LIST, None, rid.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let v = Values { aware_at: to_local_input(app.clock.now()), ..Values::default() };
    form(&app, &dpo, DPO_INCIDENTS_PATH.to_owned(), v, &[], StatusCode::OK)
}

async fn edit_form(State(app): State<AppState>, Path(id): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let dpo = match dpo(&app, req.headers(), PAGE_SHOW, Some(&id), rid.as_deref()).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match IncidentRegister::of(&app).get(&id).await.and_then(|i| i.ok_or(IncidentError::NotFound)) {
        Ok(i) => {
            app.audit.record_read(&dpo.reader, PAGE_SHOW, Some(&i.record_ref()), rid.as_deref()).await;
            form(&app, &dpo, link(&i.id), Values::of(&i.facts), &[], StatusCode::OK)
        }
        Err(e) => failure(&e, req.headers(), rid.as_deref()),
    }
}

async fn create(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    save(&app, &headers, None, &body).await
}

async fn update(State(app): State<AppState>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    save(&app, &headers, Some(&id), &body).await
}

/// Records (`id` `None`) or corrects an incident from the form; shows the form again with
/// every problem when it does not hold.
async fn save(app: &App, headers: &HeaderMap, id: Option<&str>, body: &[u8]) -> Response {
    let dpo = match dpo(app, headers, PAGE_LIST, id, None).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let v = Values::parse(body);
    if !app.auth.csrf_ok(&dpo.session, &v.csrf) {
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let action = id.map_or_else(|| DPO_INCIDENTS_PATH.to_owned(), link);
    let facts = match v.facts() {
        Ok(f) => f,
        Err(problems) => return form(app, &dpo, action, v, &problems, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let register = IncidentRegister::of(app);
    let saved = match id {
        None => register.record(&dpo.reader, facts).await,
        Some(id) => register.update(&dpo.reader, id, facts).await,
    };
    match saved {
        Ok(i) => redirect(&format!("{}?enregistre=1", link(&i.id))),
        Err(IncidentError::Invalid(problems)) => {
            form(app, &dpo, action, v, &problems, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => failure(&e, headers, None),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn form_times_are_paris_times_both_ways() {
        assert_eq!(from_local_input("2026-12-03T14:05"), Some(datetime!(2026-12-03 13:05 UTC)));
        assert_eq!(from_local_input("2026-07-14T10:00"), Some(datetime!(2026-07-14 08:00 UTC)));
        assert_eq!(to_local_input(datetime!(2026-07-14 08:00 UTC)), "2026-07-14T10:00");
        assert_eq!(from_local_input("14/07/2026"), None);
    }
}
