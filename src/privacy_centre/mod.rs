//! `/.guichet/mes-donnees/`, the citizen's hub: the services that use their data (what, why,
//! on what ground, how long, who receives it, and only the rights that apply), their consents,
//! their rights requests, and who saw their data. Each right opens a procedure of three
//! screens (`procedure`). The accessibility statement lives here too (`accessibility`).
//!
//! Pages only: everything is read and written through the services (`App::policies`,
//! `App::consent`, `App::rights`, `App::audit`), never the store.

mod accessibility;
mod agent_space;
mod assisted;
pub mod assisted_entry;
mod letters;
mod procedure;

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;

use crate::app::{App, AppState};
use crate::auth::routes::own_page;
use crate::auth::session::{Kind, Session};
use crate::clock::paris_date;
use crate::error::{GatewayError, sign_in_url};
use crate::pages::{Chrome, PRIVACY_CENTRE_PATH, french_date, french_time, redirect};
use crate::policy::model::{ActivityFile, LegalBasis};
use crate::policy::notice::{Notice, basis_of};
use crate::rights::request::Right;
use crate::rights::rules::is_offered;
use crate::rights::service::{Answer, RightsRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/mes-donnees", get(|| async { redirect(PRIVACY_CENTRE_PATH) }))
        .route(PRIVACY_CENTRE_PATH, get(hub))
        .merge(procedure::routes())
        .merge(accessibility::routes())
        .merge(assisted::routes())
        .merge(assisted_entry::routes())
        .merge(agent_space::routes())
        .merge(letters::routes())
        .route(crate::pages::BAR_STYLESHEET_PATH, get(bar_stylesheet))
}

/// The stylesheet of the bar inserted into applications' pages (`proxy::bar`): a file, so
/// the applications' CSP needs no inline style. Cached for a day: it holds nothing personal.
async fn bar_stylesheet() -> Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse as _;
    let mut resp = crate::proxy::bar::STYLESHEET.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    resp
}

/// A right as the pages name it: its address segment and plain words.
#[derive(Debug, Clone, Copy)]
struct RightLink {
    slug: &'static str,
    label: &'static str,
}

fn slug(right: Right) -> &'static str {
    match right {
        Right::Access => "acces",
        Right::Portability => "portabilite",
        Right::Rectification => "rectification",
        Right::Erasure => "effacement",
        Right::Restriction => "limitation",
        Right::Objection => "opposition",
    }
}

fn right_of_slug(s: &str) -> Option<Right> {
    Right::ALL.into_iter().find(|r| slug(*r) == s)
}

fn link(right: Right) -> RightLink {
    RightLink { slug: slug(right), label: right.french() }
}

/// The legal bases of an activity's purposes (several per purpose count by their first, as
/// the notice shows them).
fn bases(a: &ActivityFile) -> Vec<LegalBasis> {
    a.purposes.iter().filter_map(|p| basis_of(p.legal_basis.as_ref())).collect()
}

/// The rights offered for an activity: those that at least one of its purposes' bases
/// allows (as `RightsService::create` accepts them), never the ones that would be refused.
fn offered_rights(a: &ActivityFile) -> Vec<Right> {
    let bases = bases(a);
    Right::ALL.into_iter().filter(|r| bases.is_empty() || bases.iter().any(|b| is_offered(*r, *b))).collect()
}

/// One service that uses the citizen's data, as the hub shows it.
struct ActivityView {
    id: String,
    notice: Notice,
    /// What the gateway recorded for this person here, in plain words.
    recorded: Vec<&'static str>,
    rights: Vec<RightLink>,
}

struct ConsentLine {
    activity: String,
    given: bool,
    when: String,
}

struct RequestLine {
    id: String,
    right: &'static str,
    activity: String,
    /// How it was made: online, or with an agent (assisted channels).
    channel: &'static str,
    received: String,
    status: &'static str,
    due: String,
    answer: Option<String>,
}

struct RevealLine {
    when: String,
    service: String,
    role: String,
    purpose: String,
    what: String,
}

#[derive(Template)]
#[template(path = "privacy_centre/hub.html")]
struct HubPage<'a> {
    chrome: &'a Chrome,
    mine: &'a [ActivityView],
    others: &'a [(String, String)],
    consents: &'a [ConsentLine],
    requests: &'a [RequestLine],
    reveals: &'a [RevealLine],
    general: &'a [RightLink],
}

/// The signed-in citizen, or where to send the browser: the sign-in, coming back to `uri`.
async fn citizen(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Arc<Session>, Response> {
    match app.auth.identify(headers).await {
        Ok(Some(s)) if s.kind == Kind::Citizen => Ok(s),
        Ok(_) => {
            let here = uri.path_and_query().map_or(PRIVACY_CENTRE_PATH, |p| p.as_str());
            Err(redirect(&sign_in_url(false, None, Some(here))))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            Err(GatewayError::StoreUnavailable.respond(true, None, None))
        }
    }
}

async fn hub(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    let session = match citizen(&app, &headers, &uri).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match hub_page(&app, &session).await {
        Ok(resp) => resp,
        Err(cause) => GatewayError::StoreUnavailable.respond(true, None, Some(cause)),
    }
}

async fn hub_page(app: &App, session: &Session) -> Result<Response, String> {
    let consent_subject = app.auth.consent_subject(session);
    let set = app.policies.load();
    // The citizen's consents and reveals are under one pseudonym per sector: read them all
    // (docs/cryptography.md, "Sector pseudonyms"); requests are under the gateway-wide one.
    let mut history = Vec::new();
    for (_, subject) in app.auth.consent_subjects(session) {
        history.extend(app.consent.history(&subject).await.map_err(|e| e.to_string())?);
    }
    history.sort_by_key(|r| r.seq);
    let requests = app.rights.of_subject(consent_subject).await.map_err(|e| e.to_string())?;
    let mut reveals = Vec::new();
    for (_, subject) in app.auth.field_subjects(session) {
        reveals.extend(app.audit.reveals_of(&subject).await.map_err(|e| e.to_string())?);
    }
    reveals.sort_by_key(|r| r.at);
    let name_of = |id: &str| set.activity(id).map_or_else(|| id.to_owned(), |a| a.name.clone());

    let mut consents: Vec<ConsentLine> = Vec::new();
    let mut seen = BTreeSet::new();
    for row in history.iter().rev() {
        if seen.insert((row.activity.clone(), row.purpose.clone())) {
            consents.push(ConsentLine {
                activity: name_of(&row.activity),
                given: row.given != 0,
                when: crate::consent::time_of(row.at_us).map(french_time).unwrap_or_default(),
            });
        }
    }
    let today = paris_date(app.clock.now());
    let request_lines: Vec<RequestLine> =
        requests.iter().rev().map(|r| request_line(r, today, &name_of(r.activity.as_deref().unwrap_or("")))).collect();
    let reveal_lines: Vec<RevealLine> = reveals
        .iter()
        .rev()
        .map(|r| {
            let activity = r.activity.as_deref().and_then(|id| set.activity(id));
            RevealLine {
                when: french_time(r.at),
                service: activity.map_or_else(|| "Service inconnu".to_owned(), |a| a.name.clone()),
                role: if r.agent {
                    format!("Agent : {}", r.role)
                } else {
                    format!("Traitement automatique : {}", r.role)
                },
                purpose: {
                    let purpose = match r.purpose.as_deref() {
                        // Not a purpose of the policy: the agent read the value to correct it with them.
                        Some(assisted::RECTIFICATION_PURPOSE) => {
                            "Corriger vos données avec vous, à votre demande.".to_owned()
                        }
                        _ => activity
                            .and_then(|a| a.purposes.iter().find(|p| Some(&p.id) == r.purpose.as_ref()))
                            .map_or_else(|| r.purpose.clone().unwrap_or_default(), |p| p.description.clone()),
                    };
                    match r.entered {
                        Some(channel) => format!(
                            "L'agent a saisi vos données pour vous ({}). {purpose}",
                            channel_words(channel).to_lowercase()
                        ),
                        None => purpose,
                    }
                },
                what: fields_in_words(activity, &r.fields),
            }
        })
        .collect();

    let mut recorded: Vec<(String, &'static str)> = Vec::new();
    recorded.extend(history.iter().map(|c| (c.activity.clone(), "votre accord")));
    recorded.extend(requests.iter().filter_map(|r| r.activity.clone().map(|a| (a, "une demande"))));
    recorded.extend(reveals.iter().filter_map(|r| r.activity.clone().map(|a| (a, "une consultation par un agent"))));
    let mut mine = Vec::new();
    let mut others = Vec::new();
    for a in set.activities.iter() {
        let mut what: Vec<&'static str> = recorded.iter().filter(|(id, _)| *id == a.id).map(|(_, w)| *w).collect();
        what.dedup();
        if what.is_empty() {
            others.push((a.id.clone(), a.name.clone()));
        } else {
            let rights = offered_rights(a).into_iter().map(link).collect();
            mine.push(ActivityView { id: a.id.clone(), notice: Notice::of(a), recorded: what, rights });
        }
    }
    let general: Vec<RightLink> = [Right::Access, Right::Rectification].into_iter().map(link).collect();
    let chrome = app.auth.chrome(Some(session));
    let page = HubPage {
        chrome: &chrome,
        mine: &mine,
        others: &others,
        consents: &consents,
        requests: &request_lines,
        reveals: &reveal_lines,
        general: &general,
    };
    Ok(own_page(&app.auth, StatusCode::OK, &page, &chrome))
}

fn request_line(r: &RightsRequest, today: time::Date, activity: &str) -> RequestLine {
    RequestLine {
        id: r.id.clone(),
        right: r.right.french(),
        activity: if r.activity.is_some() { activity.to_owned() } else { "Tous les services".to_owned() },
        channel: channel_words(r.channel),
        received: french_date(paris_date(r.received_at)),
        status: r.status.french(),
        due: french_date(r.due_on(today)),
        answer: r.answer.as_ref().map(answer_words),
    }
}

/// A request's service as people name it: the activity's name, or all of them.
fn service_name(app: &App, activity: Option<&str>) -> String {
    activity.map_or_else(
        || "Tous les services".to_owned(),
        |a| app.policies.load().activity(a).map_or_else(|| a.to_owned(), |x| x.name.clone()),
    )
}

fn channel_words(c: crate::audit::Channel) -> &'static str {
    use crate::audit::Channel;
    match c {
        Channel::Online => "En ligne",
        Channel::Counter => "Au guichet",
        Channel::Phone => "Par téléphone",
        Channel::Post => "Par courrier",
        Channel::Email => "Par e-mail",
    }
}

fn answer_words(a: &Answer) -> String {
    match a {
        Answer::Done { summary } => summary.clone(),
        Answer::Refused { refusal, remedies } => format!("{} {remedies}", refusal.reason),
    }
}

/// The kinds of data revealed, by their category names in the policy (never the values).
fn fields_in_words(activity: Option<&Arc<ActivityFile>>, fields: &[String]) -> String {
    let names: BTreeSet<String> = fields
        .iter()
        .map(|f| {
            activity
                .and_then(|a| {
                    let field = a.fields.iter().find(|x| &x.name == f)?;
                    a.categories.iter().find(|c| c.id == field.category).map(|c| c.name.clone())
                })
                .unwrap_or_else(|| f.clone())
        })
        .collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}
