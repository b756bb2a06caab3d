//! The archivist's pages under `/.guichet/archives/`: the elimination lists, one list with
//! its lines (visa, or refusal with a reason, of the list or of one line), and its bordereau
//! as printable HTML and as ODS. Agents holding `retention.archivist_role` only (403,
//! journaled, for anyone else); every read journaled; forms carry the session's CSRF token;
//! no JavaScript. Lines show hashed record ids, never a citizen.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::elimination::{self, Bordereau, DecisionError, EliminationList};
use crate::app::{App, AppState};
use crate::audit::Reader;
use crate::auth::session::{Kind, Session};
use crate::error::{GatewayError, wants_html};
use crate::pages::{Chrome, redirect, render};
use crate::server::RequestId;

pub const ARCHIVES_PATH: &str = "/.guichet/archives";
/// The archivist's home: the lists (a sign-in comes back here).
pub const ARCHIVES_HOME: &str = "/.guichet/archives/";
const PAGE_LIST: &str = "archives.lists";
const PAGE_SHOW: &str = "archives.list";
const PAGE_BORDEREAU: &str = "archives.bordereau";

pub fn routes() -> Router<AppState> {
    let p = ARCHIVES_PATH;
    Router::new()
        .route(&format!("{p}/"), get(list))
        .route(&format!("{p}/{{reference}}"), get(show).post(decide))
        .route(&format!("{p}/{{reference}}/bordereau"), get(bordereau_html))
        .route(&format!("{p}/{{reference}}/bordereau.ods"), get(bordereau_ods))
        .route(API_PATH, get(api_list))
        .route("/.guichet/api/v1/retention/eliminations/{reference}", get(api_show))
        .route("/.guichet/api/v1/retention/eliminations/{reference}/visa", post(api_visa))
        .route("/.guichet/api/v1/retention/eliminations/{reference}/refuse", post(api_refuse))
}

/// The JSON API (docs/openapi.json), for the archivist's session: the lists read, and the
/// visa and refusals written through the same service calls as the page and the CLI.
pub const API_PATH: &str = "/.guichet/api/v1/retention/eliminations";

/// The signed-in archivist.
pub struct Archivist {
    pub session: Arc<Session>,
    pub reader: Reader,
}

/// The gate: sign-in without a session, 403 (journaled as denied) for anyone but an agent
/// holding the archivist role.
pub async fn archivist(app: &App, headers: &HeaderMap, page: &str, rid: Option<&str>) -> Result<Archivist, Response> {
    let html = wants_html(headers);
    let session =
        app.auth.identify(headers).await.map_err(|_| GatewayError::StoreUnavailable.respond(html, rid, None))?;
    let role = app.settings.retention.archivist_role.as_str();
    match session {
        None => Err(GatewayError::SignInRequired { agent: true, acr: None, return_to: ARCHIVES_HOME.to_owned() }
            .respond(html, rid, None)),
        Some(s) if s.kind == Kind::Agent && s.roles.iter().any(|r| r == role) => {
            let reader =
                app.auth.reader(&s, Some(role)).ok_or_else(|| GatewayError::Internal.respond(html, rid, None))?;
            Ok(Archivist { session: s, reader })
        }
        Some(s) => {
            crate::auth::gate::denied(app, &s, page, &crate::auth::gate::list_ref(page), rid).await;
            Err(GatewayError::Forbidden("this page is for the archivist").respond(html, rid, None))
        }
    }
}

fn request_id(req: &Request) -> Option<String> {
    req.extensions().get::<RequestId>().map(|r| r.0.to_string())
}

fn page(app: &App, status: StatusCode, t: &impl Template) -> Response {
    crate::auth::routes::allow_sign_out_form(&app.auth, render(status, t))
}

fn failure(headers: &HeaderMap, rid: Option<&str>, e: &dyn std::fmt::Display) -> Response {
    GatewayError::StoreUnavailable.respond(wants_html(headers), rid, Some(e.to_string()))
}

fn french_day(us: Option<i64>) -> String {
    us.and_then(super::date_of).map(crate::pages::french_date).unwrap_or_default()
}

struct ListRow {
    reference: String,
    link: String,
    service: String,
    created: String,
    state: String,
}

#[derive(Template)]
#[template(path = "archives/list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<ListRow>,
}

async fn list(State(app): State<AppState>, req: Request) -> Response {
    let rid = request_id(&req);
    let who = match archivist(&app, req.headers(), PAGE_LIST, rid.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lists = match app.retention.elimination_lists().await {
        Ok(l) => l,
        Err(e) => return failure(req.headers(), rid.as_deref(), &e),
    };
    let rows = lists
        .into_iter()
        .map(|l| ListRow {
            link: format!("{ARCHIVES_PATH}/{}", l.reference),
            service: l.producing_service,
            created: french_day(Some(l.created_at_us)),
            state: match l.visa_at_us {
                Some(at) => format!("Visa donné le {}", french_day(Some(at))),
                None => "En attente de votre visa".to_owned(),
            },
            reference: l.reference,
        })
        .collect();
    app.audit.record_read(&who.reader, PAGE_LIST, None, rid.as_deref()).await;
    page(&app, StatusCode::OK, &ListPage { chrome: app.auth.chrome(Some(&who.session)), rows })
}

struct LineRow {
    file: String,
    hash: String,
    typology: String,
    first: String,
    last: String,
    decision: String,
    open: bool,
}

#[derive(Template)]
#[template(path = "archives/show.html")]
struct ShowPage {
    chrome: Chrome,
    b: Bordereau,
    lines: Vec<LineRow>,
    open: bool,
    action: String,
    csrf: String,
    notice: Option<&'static str>,
    problem: Option<&'static str>,
}

/// The archivist and the list `reference`, the read journaled (a refusal is journaled by
/// `archivist`).
async fn read_list(
    app: &App,
    headers: &HeaderMap,
    page: &str,
    reference: &str,
    rid: Option<&str>,
) -> Result<(Archivist, EliminationList), Response> {
    let who = archivist(app, headers, page, rid).await?;
    let list = load(app, headers, reference, rid).await?;
    app.audit.record_read(&who.reader, page, Some(&format!("elimination:{reference}")), rid).await;
    Ok((who, list))
}

async fn load(app: &App, headers: &HeaderMap, reference: &str, rid: Option<&str>) -> Result<EliminationList, Response> {
    match app.retention.elimination_list(reference).await {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(GatewayError::NotFound.respond(wants_html(headers), rid, None)),
        Err(e) => Err(failure(headers, rid, &e)),
    }
}

fn show_page(
    app: &App,
    who: &Archivist,
    list: &EliminationList,
    notice: Option<&'static str>,
    problem: Option<&'static str>,
) -> ShowPage {
    let b = elimination::bordereau(app, list);
    let set = app.policies.load();
    let lines = list
        .lines
        .iter()
        .map(|l| LineRow {
            file: l.record_hash.get(..12).unwrap_or_default().to_uppercase(),
            hash: l.record_hash.clone(),
            typology: set
                .activity(&l.activity)
                .and_then(|a| a.categories.iter().find(|c| c.id == l.category))
                .map_or_else(|| l.category.clone(), |c| c.name.clone()),
            first: french_day(Some(l.first_at_us)),
            last: french_day(Some(l.last_at_us)),
            decision: match (l.decision.as_deref(), l.destroyed_at_us) {
                (Some("approved"), Some(at)) => format!("Détruit le {}", french_day(Some(at))),
                (Some("approved"), None) => "Élimination approuvée".to_owned(),
                (Some(_), _) => format!("Conservé : {}", l.reason.clone().unwrap_or_default()),
                (None, _) => "À décider".to_owned(),
            },
            open: l.decision.is_none() && list.list.visa_at_us.is_none(),
        })
        .collect();
    ShowPage {
        chrome: app.auth.chrome(Some(&who.session)),
        action: format!("{ARCHIVES_PATH}/{}", list.list.reference),
        open: list.list.visa_at_us.is_none(),
        csrf: app.auth.csrf_token(&who.session),
        b,
        lines,
        notice,
        problem,
    }
}

async fn show(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let (who, list) = match read_list(&app, req.headers(), PAGE_SHOW, &reference, rid.as_deref()).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let notice = match req.uri().query() {
        Some("visa=1") => {
            Some("Votre visa est enregistré. Les dossiers approuvés seront détruits au prochain passage.")
        }
        Some("refus=1") => Some("Votre refus est enregistré. Ces dossiers sont conservés."),
        _ => None,
    };
    page(&app, StatusCode::OK, &show_page(&app, &who, &list, notice, None))
}

/// A decision posted from the list's page: `action=visa` (with an optional archives
/// reference) or `action=refuser` (with a reason, for one `line` or for every undecided one).
async fn decide(
    State(app): State<AppState>,
    Path(reference): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let who = match archivist(&app, &headers, PAGE_SHOW, None).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (mut action, mut line, mut reason, mut visa_reference, mut csrf) =
        (String::new(), String::new(), String::new(), String::new(), String::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        let v = v.into_owned();
        match k.as_ref() {
            "action" => action = v,
            "line" => line = v,
            "reason" => reason = v,
            "visa_reference" => visa_reference = v,
            "csrf" => csrf = v,
            _ => {}
        }
    }
    if !app.auth.csrf_ok(&who.session, &csrf) {
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let agent = who.reader.actor.id.as_str().to_owned();
    let done = match action.as_str() {
        "visa" => elimination::visa(&app, &reference, &agent, Some(&visa_reference)).await.map(|_| "visa=1"),
        "refuser" => {
            let line = Some(line.as_str()).filter(|l| !l.is_empty());
            elimination::refuse(&app, &reference, line, &agent, &reason).await.map(|_| "refus=1")
        }
        _ => return GatewayError::BadRequest("unknown action").respond(true, None, None),
    };
    let problem = match done {
        Ok(q) => return redirect(&format!("{ARCHIVES_PATH}/{reference}?{q}")),
        Err(DecisionError::NoReason) => "Pour refuser, écrivez la raison.",
        Err(DecisionError::AlreadyDecided) => "Ce bordereau a déjà son visa. Il ne peut plus être changé.",
        Err(DecisionError::UnknownLine) => "Ce dossier n'est pas sur ce bordereau, ou il est déjà décidé.",
        Err(DecisionError::UnknownList) => return GatewayError::NotFound.respond(true, None, None),
        Err(DecisionError::Retention(e)) => return failure(&headers, None, &e),
    };
    let list = match load(&app, &headers, &reference, None).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    page(&app, StatusCode::UNPROCESSABLE_ENTITY, &show_page(&app, &who, &list, None, Some(problem)))
}

#[derive(Template)]
#[template(path = "archives/bordereau.html")]
struct BordereauPage {
    chrome: Chrome,
    b: Bordereau,
    fate: &'static str,
}

async fn bordereau_html(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let (who, list) = match read_list(&app, req.headers(), PAGE_BORDEREAU, &reference, rid.as_deref()).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let b = elimination::bordereau(&app, &list);
    page(
        &app,
        StatusCode::OK,
        &BordereauPage { chrome: app.auth.chrome(Some(&who.session)), b, fate: elimination::PROPOSED_FATE },
    )
}

async fn bordereau_ods(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let (_, list) = match read_list(&app, req.headers(), PAGE_BORDEREAU, &reference, rid.as_deref()).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let bytes = match elimination::to_ods(&elimination::bordereau(&app, &list)) {
        Ok(b) => b,
        Err(e) => return failure(req.headers(), rid.as_deref(), &e),
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.oasis.opendocument.spreadsheet"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"bordereau-{reference}.ods\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

fn list_json(l: &crate::store::EliminationListRow) -> serde_json::Value {
    serde_json::json!({
        "reference": l.reference,
        "producing_service": l.producing_service,
        "created_on": super::date_of(l.created_at_us).map(|d| d.to_string()),
        "visa": l.visa_at_us.map(|at| serde_json::json!({
            "by": l.visa_by,
            "on": super::date_of(at).map(|d| d.to_string()),
            "reference": l.visa_reference,
        })),
    })
}

async fn api_list(State(app): State<AppState>, req: Request) -> Response {
    let rid = request_id(&req);
    let who = match archivist(&app, req.headers(), PAGE_LIST, rid.as_deref()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let lists = match app.retention.elimination_lists().await {
        Ok(l) => l,
        Err(e) => return failure(req.headers(), rid.as_deref(), &e),
    };
    app.audit.record_read(&who.reader, PAGE_LIST, None, rid.as_deref()).await;
    axum::Json(serde_json::json!({ "lists": lists.iter().map(list_json).collect::<Vec<_>>() })).into_response()
}

async fn api_show(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let rid = request_id(&req);
    let (_, list) = match read_list(&app, req.headers(), PAGE_SHOW, &reference, rid.as_deref()).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    axum::Json(list_body(&app, &list)).into_response()
}

/// A list as the API gives it: the list, its groups (the bordereau) and its lines.
fn list_body(app: &App, list: &EliminationList) -> serde_json::Value {
    let b = elimination::bordereau(app, list);
    let groups: Vec<serde_json::Value> = b
        .groups
        .iter()
        .map(|g| {
            serde_json::json!({
                "activity": g.activity, "typology": g.typology, "first_on": g.first_on, "last_on": g.last_on,
                "count": g.count, "approved": g.approved, "refused": g.refused, "dua": g.dua,
                "legal_basis": g.legal_basis, "proposed_fate": elimination::PROPOSED_FATE,
            })
        })
        .collect();
    let lines: Vec<serde_json::Value> = list
        .lines
        .iter()
        .map(|l| {
            serde_json::json!({
                "record_hash": l.record_hash, "activity": l.activity, "category": l.category,
                "first_on": super::date_of(l.first_at_us).map(|d| d.to_string()),
                "last_on": super::date_of(l.last_at_us).map(|d| d.to_string()),
                "decision": l.decision, "reason": l.reason,
                "destroyed": l.destroyed_at_us.is_some(),
            })
        })
        .collect();
    let mut body = list_json(&list.list);
    if let Some(o) = body.as_object_mut() {
        o.insert("groups".to_owned(), groups.into());
        o.insert("lines".to_owned(), lines.into());
    }
    body
}

/// `POST …/{reference}/visa` body: the archives service's own reference, optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VisaBody {
    #[serde(default)]
    visa_reference: Option<String>,
}

/// `POST …/{reference}/refuse` body: the reason, and one line (its record hash) or, without
/// it, every line not decided yet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefuseBody {
    reason: String,
    #[serde(default)]
    line: Option<String>,
}

/// A decision through the API: JSON only (a cross-site form cannot send it, so no CSRF token
/// is needed, as for the other JSON writes), then the archivist's gate (403 journaled), then
/// the body. The decision itself is journaled by `elimination::visa` / `refuse`.
async fn api_decision<B: serde::de::DeserializeOwned>(
    app: &App,
    req: Request,
) -> Result<(Archivist, B, Option<String>), Response> {
    let rid = request_id(&req);
    if !crate::rights::api::is_json(req.headers()) {
        return Err(GatewayError::BadRequest("this call takes application/json").respond(false, rid.as_deref(), None));
    }
    let who = archivist(app, req.headers(), PAGE_SHOW, rid.as_deref()).await?;
    let bad = || GatewayError::BadRequest("the body must be the JSON documented for this call");
    let bytes = axum::body::to_bytes(req.into_body(), 16 * 1024)
        .await
        .map_err(|_| bad().respond(false, rid.as_deref(), None))?;
    let body = serde_json::from_slice::<B>(&bytes).map_err(|_| bad().respond(false, rid.as_deref(), None))?;
    Ok((who, body, rid))
}

fn decision_problem(e: &DecisionError, rid: Option<&str>) -> Response {
    let error = match e {
        DecisionError::UnknownList => GatewayError::NotFound,
        DecisionError::UnknownLine => {
            GatewayError::Unprocessable("this line is not on this list, or is already decided")
        }
        DecisionError::AlreadyDecided => GatewayError::Conflict("the list already has its visa"),
        DecisionError::NoReason => GatewayError::Unprocessable("a refusal needs a reason"),
        DecisionError::Retention(_) => GatewayError::StoreUnavailable,
    };
    error.respond(false, rid, Some(e.to_string()))
}

/// The list after a decision, with how many lines it decided under `counted`.
async fn decided(app: &App, reference: &str, counted: &str, n: usize, rid: Option<&str>) -> Response {
    match app.retention.elimination_list(reference).await {
        Ok(Some(list)) => {
            let mut body = list_body(app, &list);
            if let Some(o) = body.as_object_mut() {
                o.insert(counted.to_owned(), n.into());
            }
            axum::Json(body).into_response()
        }
        Ok(None) => GatewayError::NotFound.respond(false, rid, None),
        Err(e) => GatewayError::StoreUnavailable.respond(false, rid, Some(e.to_string())),
    }
}

async fn api_visa(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let (who, body, rid) = match api_decision::<VisaBody>(&app, req).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let agent = who.reader.actor.id.as_str().to_owned();
    match elimination::visa(&app, &reference, &agent, body.visa_reference.as_deref()).await {
        Ok(n) => decided(&app, &reference, "approved", n, rid.as_deref()).await,
        Err(e) => decision_problem(&e, rid.as_deref()),
    }
}

async fn api_refuse(State(app): State<AppState>, Path(reference): Path<String>, req: Request) -> Response {
    let (who, body, rid) = match api_decision::<RefuseBody>(&app, req).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let agent = who.reader.actor.id.as_str().to_owned();
    let line = body.line.as_deref().filter(|l| !l.is_empty());
    match elimination::refuse(&app, &reference, line, &agent, &body.reason).await {
        Ok(n) => decided(&app, &reference, "refused", n, rid.as_deref()).await,
        Err(e) => decision_problem(&e, rid.as_deref()),
    }
}
