//! `/.guichet/consentement/`: the citizen's consent page (one control per purpose, nothing
//! pre-selected, giving and withdrawing one button each), receipts, one-time codes for the
//! assisted channel, and the agents' form. Server-rendered, no JavaScript. Every form carries
//! the session's CSRF token (`Auth::csrf_token`); a POST without it is refused before anything
//! is read or recorded.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{ConsentError, ConsentPurpose, Recorder, State as ConsentState, consent_purposes, find_purpose};
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Channel, Ident, IdentityCheck};
use crate::auth::routes::{own_page, page, redirect};
use crate::auth::session::{Kind, Session};
use crate::clock::random_hex;
use crate::error::GatewayError;
use crate::pages::{Chrome, french_time};
use crate::rights::erasure::ConsentChanger;
use crate::rights::request::{DocumentKind, IdentityProof};
use crate::server::RequestId;

use crate::pages::CONSENT_AGENT_PATH as AGENT_PATH;
pub use crate::pages::CONSENT_PATH;
/// How long a one-time code for the assisted channel stays valid.
const CODE_LIFETIME: time::Duration = time::Duration::minutes(15);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/consentement", get(show).post(choose))
        .route(CONSENT_PATH, get(show).post(choose))
        .route("/.guichet/consentement/recu/{seq}", get(receipt))
        .route("/.guichet/consentement/recu/{seq}/imprimer", get(printable_receipt))
        .route("/.guichet/consentement/code", axum::routing::post(new_code))
        .route(AGENT_PATH, get(agent_form).post(agent_record))
}

/// One purpose as the page shows it.
struct PurposeView {
    activity: String,
    activity_name: String,
    purpose: String,
    description: String,
    notice_text: String,
    notice_version: String,
    alternative: String,
    given: bool,
    since: Option<String>,
    /// Sequence number of the latest event, for its receipt.
    last_seq: Option<i64>,
}

struct HistoryLine {
    seq: i64,
    what: &'static str,
    activity: String,
    when: String,
}

#[derive(Template)]
#[template(path = "consent/page.html")]
struct ConsentPage<'a> {
    chrome: &'a Chrome,
    purposes: &'a [PurposeView],
    history: &'a [HistoryLine],
    csrf: &'a str,
    return_to: &'a str,
    code: Option<&'a str>,
    done: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent/agent.html")]
struct AgentPage<'a> {
    chrome: &'a Chrome,
    purposes: &'a [ConsentPurpose],
    csrf: &'a str,
    message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent/sign_in.html")]
struct SignInFirst {
    chrome: Chrome,
    /// The sign-in start, coming back to this page with its query.
    sign_in: String,
}

/// A consent receipt as a person reads it, beside the signed JWS.
struct ReceiptView {
    seq: i64,
    what: &'static str,
    activity: String,
    purpose: String,
    when: String,
    channel: &'static str,
    notice_version: String,
    controller: String,
}

#[derive(Template)]
#[template(path = "consent/receipt.html")]
struct ReceiptPage {
    chrome: Chrome,
    r: ReceiptView,
}

#[derive(Deserialize)]
struct ShowQuery {
    retour: Option<String>,
    fait: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceForm {
    jeton: Option<String>,
    activite: String,
    finalite: String,
    choix: String,
    retour: Option<String>,
}

#[derive(Deserialize)]
struct CodeForm {
    jeton: Option<String>,
}

#[derive(Deserialize)]
struct AgentForm {
    jeton: Option<String>,
    code: String,
    activite_finalite: String,
    choix: String,
    canal: String,
    verification: String,
}

fn request_id(headers: &HeaderMap, ext: Option<&RequestId>) -> Option<Ident> {
    let _ = headers;
    ext.and_then(|r| Ident::new(r.0.to_string()).ok())
}

async fn session_of(app: &App, headers: &HeaderMap, kind: Kind) -> Result<Option<Arc<Session>>, Response> {
    match app.auth.identify(headers).await {
        Ok(s) => Ok(s.filter(|s| s.kind == kind)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            Err(GatewayError::StoreUnavailable.respond(true, None, None))
        }
    }
}

async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(q): Query<ShowQuery>,
) -> Response {
    let session = match session_of(&app, &headers, Kind::Citizen).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            // Signing in brings the person back here, with where they were going.
            let here = uri.path_and_query().map_or(CONSENT_PATH, |p| p.as_str());
            let sign_in = crate::error::sign_in_url(false, None, Some(here));
            return page(StatusCode::OK, &SignInFirst { chrome: app.auth.chrome(None), sign_in });
        }
        Err(r) => return r,
    };
    let return_to = q.retour.as_deref().and_then(crate::auth::safe_return_path).unwrap_or_default();
    render_citizen_page(&app, &session, &return_to, None, q.fait.as_deref()).await
}

async fn render_citizen_page(
    app: &App,
    session: &Session,
    return_to: &str,
    code: Option<&str>,
    done: Option<&str>,
) -> Response {
    let set = app.policies.load();
    let result = async {
        // One consent subject per sector: the page reads them all, so the citizen sees every
        // consent whatever its sector (docs/cryptography.md, "Sector pseudonyms").
        let mut rows = Vec::new();
        let mut events = Vec::new();
        for (_, subject) in app.auth.consent_subjects(session) {
            rows.extend(app.consent.history(&subject).await?);
            events.push(app.consent.reload(&subject).await?);
        }
        rows.sort_by_key(|r| r.seq);
        let now = app.clock.now();
        let purposes: Vec<PurposeView> = consent_purposes(&set.activities)
            .into_iter()
            .map(|p| {
                let of = |s: crate::policy::Sector| events.get(s.index()).map_or(&[][..], |e| &e[..]);
                let st = super::state::current_in_sector(
                    of(p.activity.sector),
                    Some(of(crate::policy::Sector::General)),
                    &p.activity.id,
                    &p.purpose,
                    &p.notice_version,
                    now,
                );
                let decl = p.activity.purposes.iter().find(|d| d.id == p.purpose);
                let last = rows.iter().rev().find(|r| r.activity == p.activity.id && r.purpose == p.purpose);
                PurposeView {
                    activity: p.activity.id.clone(),
                    activity_name: p.activity.name.clone(),
                    purpose: p.purpose.clone(),
                    description: decl.map(|d| d.description.clone()).unwrap_or_default(),
                    notice_text: p.notice_text.clone(),
                    notice_version: p.notice_version.clone(),
                    alternative: decl.and_then(|d| d.alternative.clone()).unwrap_or_default(),
                    given: matches!(st, ConsentState::Given { .. }),
                    since: last.and_then(|r| super::time_of(r.at_us)).map(french_time),
                    last_seq: last.map(|r| r.seq),
                }
            })
            .collect();
        let history: Vec<HistoryLine> = rows
            .iter()
            .rev()
            .map(|r| HistoryLine {
                seq: r.seq,
                what: if r.given != 0 { "Accord donné" } else { "Accord retiré" },
                activity: set.activity(&r.activity).map_or_else(|| r.activity.clone(), |a| a.name.clone()),
                when: super::time_of(r.at_us).map(french_time).unwrap_or_default(),
            })
            .collect();
        Ok::<_, ConsentError>((purposes, history))
    }
    .await;
    match result {
        Ok((purposes, history)) => {
            let csrf = app.auth.csrf_token(session);
            let chrome = app.auth.chrome(Some(session));
            own_page(
                &app.auth,
                StatusCode::OK,
                &ConsentPage {
                    chrome: &chrome,
                    purposes: &purposes,
                    history: &history,
                    csrf: &csrf,
                    return_to,
                    code,
                    done,
                },
                &chrome,
            )
        }
        Err(e) => error_page(&e),
    }
}

async fn choose(
    State(app): State<AppState>,
    headers: HeaderMap,
    rid: Option<axum::Extension<RequestId>>,
    Form(f): Form<ChoiceForm>,
) -> Response {
    let session = match session_of(&app, &headers, Kind::Citizen).await {
        Ok(Some(s)) => s,
        Ok(None) => return GatewayError::Forbidden("sign in first").respond(true, None, None),
        Err(r) => return r,
    };
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        tracing::warn!("consent form refused: missing or wrong CSRF token");
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let given = match f.choix.as_str() {
        "donner" => true,
        "retirer" => false,
        _ => return GatewayError::BadRequest("unknown choice").respond(true, None, None),
    };
    let set = app.policies.load();
    let Some(purpose) = find_purpose(&set.activities, &f.activite, &f.finalite) else {
        return GatewayError::BadRequest("unknown purpose").respond(true, None, None);
    };
    let subject = app.auth.consent_subject_in(&session, purpose.activity.sector);
    let by = Recorder {
        actor: Actor {
            kind: ActorKind::Citizen,
            id: match Ident::new(subject) {
                Ok(i) => i,
                Err(_) => return GatewayError::Internal.respond(true, None, None),
            },
        },
        role: Ident::new("citizen").unwrap_or_else(|_| Actor::system().id),
        channel: Channel::Online,
        identified_by: IdentityCheck::SignIn,
        request_id: request_id(&headers, rid.as_deref()),
    };
    let who = ConsentChanger::online(&app, &session);
    match record_change(&app, subject, Some(&who), &purpose, given, by).await {
        Ok(seq) => {
            crate::notify::consent_receipt(&app, &session, &purpose, given, seq).await;
            let back = f.retour.as_deref().and_then(crate::auth::safe_return_path).filter(|_| given);
            let target = back.unwrap_or_else(|| format!("{CONSENT_PATH}?fait={seq}"));
            redirect(&target)
        }
        Err(e) => error_page(&e),
    }
}

/// The signed-in citizen's session and their consent event `seq`, or the page to answer instead (another
/// citizen's event is "not found", like one that does not exist).
async fn own_event(
    app: &App,
    headers: &HeaderMap,
    seq: i64,
) -> Result<(Arc<Session>, crate::store::ConsentRow), Response> {
    let session = match session_of(app, headers, Kind::Citizen).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(GatewayError::Forbidden("sign in first").respond(true, None, None)),
        Err(r) => return Err(r),
    };
    let mine = app.auth.consent_subjects(&session);
    match app.store.consent().event(seq).await {
        Ok(Some(r)) if mine.iter().any(|(_, s)| *s == r.subject) => Ok((session.clone(), r)),
        Ok(_) => Err(GatewayError::NotFound.respond(true, None, None)),
        Err(e) => Err(error_page(&e.into())),
    }
}

async fn receipt(State(app): State<AppState>, headers: HeaderMap, Path(seq): Path<i64>) -> Response {
    let (_, row) = match own_event(&app, &headers, seq).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let set = app.policies.load();
    let Some(activity) = set.activity(&row.activity) else { return GatewayError::NotFound.respond(true, None, None) };
    let signed = super::receipt::claims(&row, activity, &app.auth.public_url)
        .map_err(|e| e.to_string())
        .and_then(|c| app.auth.sign_receipt(&c).map_err(|e| e.to_string()));
    match signed {
        Ok(jws) => {
            let mut resp = (StatusCode::OK, jws).into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/jose"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"recu-consentement-{seq}.jws\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Err(cause) => GatewayError::Internal.respond(true, None, Some(cause)),
    }
}

/// The receipt as a page a person reads and prints; the signed JWS stays the proof.
async fn printable_receipt(State(app): State<AppState>, headers: HeaderMap, Path(seq): Path<i64>) -> Response {
    let (session, row) = match own_event(&app, &headers, seq).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let set = app.policies.load();
    let activity = set.activity(&row.activity);
    let purpose = activity
        .and_then(|a| a.purposes.iter().find(|p| p.id == row.purpose))
        .map_or_else(|| row.purpose.clone(), |p| p.description.clone());
    let (channel, notice_version) = how_given(&row.body);
    let r = ReceiptView {
        seq: row.seq,
        what: if row.given != 0 { "accord donné" } else { "accord retiré" },
        activity: activity.map_or_else(|| row.activity.clone(), |a| a.name.clone()),
        purpose,
        when: super::time_of(row.at_us).map(french_time).unwrap_or_default(),
        channel: channel_words(channel),
        notice_version,
        controller: activity.map(|a| a.controller.organisation.clone()).unwrap_or_default(),
    };
    let chrome = app.auth.chrome(Some(&session));
    own_page(&app.auth, StatusCode::OK, &ReceiptPage { chrome: chrome.clone(), r }, &chrome)
}

/// The channel and notice version of a ledger row, from its journal entry.
fn how_given(body: &str) -> (Channel, String) {
    match serde_json::from_str::<crate::audit::AuditEvent>(body).map(|e| e.operation) {
        Ok(
            crate::audit::Operation::ConsentGiven { channel, notice_version, .. }
            | crate::audit::Operation::ConsentWithdrawn { channel, notice_version, .. },
        ) => (channel, notice_version.to_string()),
        _ => (Channel::Online, String::new()),
    }
}

fn channel_words(channel: Channel) -> &'static str {
    match channel {
        Channel::Counter => "au guichet, avec un agent",
        Channel::Phone => "par téléphone, avec un agent",
        Channel::Post | Channel::Email => "par courrier",
        Channel::Online => "en ligne, par vous-même",
    }
}

/// A citizen asks for a code to read out to an agent (counter, phone).
async fn new_code(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<CodeForm>) -> Response {
    let session = match session_of(&app, &headers, Kind::Citizen).await {
        Ok(Some(s)) => s,
        Ok(None) => return GatewayError::Forbidden("sign in first").respond(true, None, None),
        Err(r) => return r,
    };
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let code = match random_hex::<4>(app.random.as_ref()) {
        Ok(c) => c.to_ascii_uppercase(),
        Err(_) => return GatewayError::Internal.respond(true, None, None),
    };
    let subject = app.auth.consent_subject(&session);
    if let Err(e) = app.consent.new_code(subject, &code, CODE_LIFETIME).await {
        return error_page(&e);
    }
    // A rights request an agent files with this code reaches the applications under these.
    let subjects = crate::rights::propagation::Subjects::of(&app, &session);
    if let Err(e) = app.rights.remember_subjects(subject, &subjects).await {
        tracing::warn!(error = %e, "cannot record the pseudonyms for assisted rights requests");
        return GatewayError::StoreUnavailable.respond(true, None, None);
    }
    render_citizen_page(&app, &session, "", Some(&code), None).await
}

/// The agent may record consents for citizens: signed in as an agent with an assisted role.
fn assisted_agent(app: &App, session: &Session) -> bool {
    session.roles.iter().any(|r| app.settings.consent.assisted_roles.contains(r))
}

async fn agent_session(app: &App, headers: &HeaderMap) -> Result<Arc<Session>, Response> {
    match session_of(app, headers, Kind::Agent).await? {
        Some(s) if assisted_agent(app, &s) => Ok(s),
        Some(s) => {
            crate::auth::gate::denied(app, &s, "consent.agent", "list:consent.agent", None).await;
            Err(GatewayError::Forbidden("the agent has no role allowing to record consents").respond(true, None, None))
        }
        None => Err(GatewayError::SignInRequired { agent: true, acr: None, return_to: AGENT_PATH.into() }
            .respond(true, None, None)),
    }
}

async fn agent_form(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match agent_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let set = app.policies.load();
    let purposes = consent_purposes(&set.activities);
    let csrf = app.auth.csrf_token(&session);
    let chrome = app.auth.chrome(Some(&session));
    own_page(
        &app.auth,
        StatusCode::OK,
        &AgentPage { chrome: &chrome, purposes: &purposes, csrf: &csrf, message: None },
        &chrome,
    )
}

async fn agent_record(
    State(app): State<AppState>,
    headers: HeaderMap,
    rid: Option<axum::Extension<RequestId>>,
    Form(f): Form<AgentForm>,
) -> Response {
    let session = match agent_session(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !f.jeton.as_deref().is_some_and(|t| app.auth.csrf_ok(&session, t)) {
        return GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None);
    }
    let channel = match f.canal.as_str() {
        "counter" => Channel::Counter,
        "phone" => Channel::Phone,
        "post" => Channel::Post,
        _ => return GatewayError::BadRequest("unknown channel").respond(true, None, None),
    };
    let identified_by = match f.verification.as_str() {
        "code" => IdentityCheck::OneTimeCode,
        "code_et_piece" => IdentityCheck::OneTimeCodeAndDocument,
        _ => return GatewayError::BadRequest("unknown identity check").respond(true, None, None),
    };
    let given = f.choix == "donner";
    let set = app.policies.load();
    let (activity, purpose) = f.activite_finalite.split_once('/').unwrap_or_default();
    let Some(purpose) = find_purpose(&set.activities, activity, purpose) else {
        return GatewayError::BadRequest("unknown purpose").respond(true, None, None);
    };
    let purposes = consent_purposes(&set.activities);
    let csrf = app.auth.csrf_token(&session);
    let chrome = app.auth.chrome(Some(&session));
    let subject = match app.consent.redeem_code(&f.code).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let msg =
                "Ce code n'est pas valable (inconnu, déjà utilisé ou expiré). Demandez un nouveau code à la personne.";
            return own_page(
                &app.auth,
                StatusCode::UNPROCESSABLE_ENTITY,
                &AgentPage { chrome: &chrome, purposes: &purposes, csrf: &csrf, message: Some(msg) },
                &chrome,
            );
        }
        Err(e) => return error_page(&e),
    };
    let Ok(agent_id) = Ident::new(agent_ident(&session)) else {
        return GatewayError::Internal.respond(true, None, None);
    };
    let role = session
        .roles
        .iter()
        .find(|r| app.settings.consent.assisted_roles.contains(r))
        .and_then(|r| Ident::new(r.clone()).ok())
        .unwrap_or_else(|| Actor::system().id);
    let by = Recorder {
        actor: Actor { kind: ActorKind::Agent, id: agent_id },
        role,
        channel,
        identified_by,
        request_id: request_id(&headers, rid.as_deref()),
    };
    // The pseudonyms recorded when the citizen asked for the code: the withdrawal then reaches
    // the reveal API and the erasure as an online one does.
    let who = match app.rights.subjects_of(&subject).await {
        Ok(Some(subjects)) => Some(ConsentChanger {
            consent_subject: subject.clone(),
            subjects,
            channel,
            agent: Some(by.actor.id.to_string()),
            identity: match identified_by {
                IdentityCheck::OneTimeCodeAndDocument => IdentityProof::Document { kind: DocumentKind::Other },
                _ => IdentityProof::SignIn { acr: "one_time_code".into() },
            },
        }),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the pseudonyms of a consent changed at the counter");
            return GatewayError::StoreUnavailable.respond(true, None, None);
        }
    };
    // The consent subject of the purpose's sector, recorded with the code; a code made before
    // sectors existed only knows the v1 (`general`) subject.
    let subject = who
        .as_ref()
        .and_then(|w| w.subjects.consent_in(purpose.activity.sector))
        .map_or(subject.clone(), str::to_owned);
    match record_change(&app, &subject, who.as_ref(), &purpose, given, by).await {
        Ok(_) => {
            let msg = if given { "L'accord est enregistré." } else { "Le retrait est enregistré." };
            own_page(
                &app.auth,
                StatusCode::OK,
                &AgentPage { chrome: &chrome, purposes: &purposes, csrf: &csrf, message: Some(msg) },
                &chrome,
            )
        }
        Err(e) => error_page(&e),
    }
}

/// Records a consent given or withdrawn, then what follows on the rights side
/// (`rights::erasure::after_consent_change`): one path for the citizen's page and the agents'
/// form, so a withdrawal at the counter stops the reveal API and erases where the policy says
/// so, exactly as online. `who` is `None` only for a code made before the pseudonyms were
/// recorded with it: the consent is recorded, the rest cannot be done (logged).
pub async fn record_change(
    app: &App,
    subject: &str,
    who: Option<&ConsentChanger>,
    purpose: &ConsentPurpose,
    given: bool,
    by: Recorder,
) -> Result<i64, ConsentError> {
    let seq = app.consent.record(&app.audit, subject, purpose, given, by).await?;
    match who {
        Some(who) => {
            crate::rights::erasure::after_consent_change(app, who, &purpose.activity.id, &purpose.purpose, given).await;
        }
        None => tracing::warn!("consent change without recorded pseudonyms: reveal marks and erasure not updated"),
    }
    Ok(seq)
}

/// The agent's id in the journal: the provider's `sub` when it is a journal identifier, else
/// its SHA-256 (never a name or an e-mail address).
pub fn agent_ident(session: &Session) -> String {
    match Ident::new(format!("agent:{}", session.subject)) {
        Ok(i) => i.to_string(),
        Err(_) => format!("agent:{}", super::sha256_hex(&session.subject)),
    }
}

fn error_page(e: &ConsentError) -> Response {
    let g = match e {
        ConsentError::Store(_) | ConsentError::Audit(_) => GatewayError::StoreUnavailable,
        _ => GatewayError::Internal,
    };
    g.respond(true, None, Some(e.to_string()))
}
