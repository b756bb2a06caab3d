//! Assisted entry (`/.guichet/guichet-agent/usager`): an agent holding a role some activity's
//! `assisted_entry` lists chooses the citizen they help at the counter or on the phone, from
//! the one-time code the citizen reads out (made on their consent page, which also recorded
//! their field pseudonym). The choice is a cookie sealed under the agent's session
//! (`auth::counter`); while it lasts, the declared fields the agent sends to that activity's
//! application are sealed under the citizen's key, each entry journaled with the channel
//! (`proxy::pipeline`, phase `protect`). Once a citizen is chosen, the page links each form of
//! those services the agent can open (`entry_forms`). "Terminer" ends it.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::app::{App, AppState};
use crate::audit::Channel;
use crate::auth::counter::AssistedCitizen;
use crate::auth::routes::own_page;
use crate::auth::session::{Kind, Session};
use crate::config::RouteAccess;
use crate::error::{GatewayError, sign_in_url};
use crate::pages::{ASSISTED_ENTRY_END_PATH, ASSISTED_ENTRY_PATH, Chrome, french_time, redirect};
use crate::policy::model::{ActivityFile, Direction, Protection, RouteRule};
use crate::routing::Route;

pub fn routes() -> Router<AppState> {
    Router::new().route(ASSISTED_ENTRY_PATH, get(show).post(choose)).route(ASSISTED_ENTRY_END_PATH, post(end))
}

/// The channels an agent enters data on.
const CHANNELS: [(&str, Channel, &str); 2] =
    [("counter", Channel::Counter, "Au guichet"), ("phone", Channel::Phone, "Par téléphone")];

#[derive(Debug, Default, Deserialize)]
struct ChooseForm {
    jeton: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    canal: String,
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    choisi: Option<String>,
}

#[derive(Template)]
#[template(path = "privacy_centre/assisted_entry.html")]
struct EntryPage<'a> {
    chrome: &'a Chrome,
    csrf: &'a str,
    message: Option<&'a str>,
    /// The selection in force: its channel's words and when it ends.
    current: Option<(&'static str, String)>,
    just_chosen: bool,
    /// The services whose fields the agent may enter.
    services: &'a [String],
    /// Their forms, linked once a citizen is chosen.
    forms: &'a [FormLink],
}

/// A service's form the agent opens for the chosen citizen.
struct FormLink {
    service: String,
    href: String,
}

/// True when `session` holds a role some active activity lets enter fields for a citizen.
pub fn may_enter(app: &App, session: &Session) -> bool {
    !entry_services(app, session).is_empty()
}

/// The names of the activities whose `assisted_entry` lists one of the agent's roles.
fn entry_services(app: &App, session: &Session) -> Vec<String> {
    entry_activities(app, session).iter().map(|a| a.name.clone()).collect()
}

/// The activities whose `assisted_entry` lists one of the agent's roles.
fn entry_activities(app: &App, session: &Session) -> Vec<Arc<ActivityFile>> {
    if session.kind != Kind::Agent {
        return Vec::new();
    }
    let set = app.policies.load();
    set.activities.iter().filter(|a| a.assisted_entry.iter().any(|r| session.roles.contains(r))).cloned().collect()
}

/// The forms the agent may open for the chosen citizen: for each activity whose encrypted
/// fields they may enter, every rule a browser opens (`form_path`) on a route that is not an
/// API and that the agent may use (a citizens' route refuses agents, so entering there is
/// impossible).
fn entry_forms(app: &App, session: &Session) -> Vec<FormLink> {
    let routes = app.proxy.routes();
    entry_activities(app, session)
        .iter()
        .filter(|a| a.fields.iter().any(|f| f.protection == Protection::Encrypt && f.direction != Direction::Response))
        .flat_map(|a| {
            a.routes
                .iter()
                .filter_map(form_path)
                .filter(|path| routes.find(None, path).is_some_and(|r| agent_may_open(r, session)))
                .map(|href| FormLink { service: a.name.clone(), href })
        })
        .collect()
}

/// Where a browser opens a rule's form: its path, `/prefix/` for `/prefix/*`. None for a rule
/// without GET, with a `{param}` (no one address) or with a host of its own (the assisted
/// citizen's cookie is the gateway's host's only).
fn form_path(rule: &RouteRule) -> Option<String> {
    let get = rule.methods.as_ref().is_none_or(|m| m.iter().any(|m| m.eq_ignore_ascii_case("GET")));
    if !get || rule.host.is_some() || rule.path.contains('{') {
        return None;
    }
    Some(rule.path.strip_suffix('*').unwrap_or(&rule.path).to_owned())
}

/// Whether the proxy lets this agent through `route` (`proxy::pipeline::authorize`), to a page.
fn agent_may_open(route: &Route, session: &Session) -> bool {
    let roles = || {
        if route.roles.is_empty() {
            !session.roles.is_empty()
        } else {
            session.roles.iter().any(|r| route.roles.contains(r))
        }
    };
    !route.api
        && match route.access {
            RouteAccess::Public => true,
            RouteAccess::Agent => roles(),
            RouteAccess::Citizen => false,
        }
}

/// The signed-in agent allowed to enter fields, or where to send them.
async fn entering_agent(app: &App, headers: &HeaderMap) -> Result<std::sync::Arc<Session>, Response> {
    match app.auth.identify(headers).await {
        Ok(Some(s)) if may_enter(app, &s) => Ok(s),
        Ok(Some(s)) => {
            crate::auth::gate::denied(app, &s, ASSISTED_ENTRY_PATH, "page:assisted_entry", None).await;
            Err(GatewayError::Forbidden("the agent has no role allowing to enter data for a citizen")
                .respond(true, None, None))
        }
        Ok(None) => Err(redirect(&sign_in_url(true, None, Some(ASSISTED_ENTRY_PATH)))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            Err(GatewayError::StoreUnavailable.respond(true, None, None))
        }
    }
}

fn channel_words(c: Channel) -> &'static str {
    CHANNELS.iter().find(|(_, ch, _)| *ch == c).map_or("Au guichet", |(_, _, l)| l)
}

fn page(app: &App, headers: &HeaderMap, session: &Session, message: Option<&str>, just_chosen: bool) -> Response {
    let current = app.auth.assisted_citizen(headers, session).map(|c| {
        let until = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.expires_us) * 1000)
            .map(french_time)
            .unwrap_or_default();
        (channel_words(c.channel), until)
    });
    let csrf = app.auth.csrf_token(session);
    let chrome = app.auth.chrome(Some(session));
    let services = entry_services(app, session);
    let forms = if current.is_some() { entry_forms(app, session) } else { Vec::new() };
    let page =
        EntryPage { chrome: &chrome, csrf: &csrf, message, current, just_chosen, services: &services, forms: &forms };
    let status = if message.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    own_page(&app.auth, status, &page, &chrome)
}

async fn show(State(app): State<AppState>, headers: HeaderMap, Query(q): Query<ShowQuery>) -> Response {
    match entering_agent(&app, &headers).await {
        Ok(session) => page(&app, &headers, &session, None, q.choisi.is_some()),
        Err(r) => r,
    }
}

/// Checks the session's CSRF token; the refusal otherwise.
fn csrf_refused(app: &App, session: &Session, jeton: Option<&str>) -> Option<Response> {
    if jeton.is_some_and(|t| app.auth.csrf_ok(session, t)) {
        return None;
    }
    Some(GatewayError::Forbidden("the form is out of date; reload the page").respond(true, None, None))
}

async fn choose(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<ChooseForm>) -> Response {
    let session = match entering_agent(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refused(&app, &session, f.jeton.as_deref()) {
        return r;
    }
    let Some(&(_, channel, _)) = CHANNELS.iter().find(|(v, _, _)| *v == f.canal) else {
        return page(&app, &headers, &session, Some("Choisissez comment l'usager vous parle."), false);
    };
    if f.code.trim().is_empty() {
        return page(&app, &headers, &session, Some("Écrivez le code que l'usager vous lit."), false);
    }
    let consent_subject = match app.consent.redeem_code(&f.code).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let message = "Ce code ne marche pas : il est faux, déjà utilisé ou trop ancien. Demandez un nouveau code.";
            return page(&app, &headers, &session, Some(message), false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot redeem a one-time code");
            return GatewayError::StoreUnavailable.respond(true, None, None);
        }
    };
    let subjects = match app.rights.subjects_of(&consent_subject).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            let message = "Ce code ne marche pas : il est faux, déjà utilisé ou trop ancien. Demandez un nouveau code.";
            return page(&app, &headers, &session, Some(message), false);
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a citizen's pseudonyms");
            return GatewayError::StoreUnavailable.respond(true, None, None);
        }
    };
    let sector_fields = subjects.sectors.into_iter().map(|(sector, ids)| (sector, ids.field)).collect();
    let citizen = AssistedCitizen {
        field_subject: subjects.field,
        sector_fields,
        channel,
        expires_us: app.auth.assisted_until(),
    };
    let Some(cookie) = app.auth.select_assisted(&headers, &session, &citizen) else {
        return GatewayError::Internal.respond(true, None, Some("cannot seal the assisted citizen".into()));
    };
    let mut r = redirect(&format!("{ASSISTED_ENTRY_PATH}?choisi=1"));
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r
}

async fn end(State(app): State<AppState>, headers: HeaderMap, Form(f): Form<ChooseForm>) -> Response {
    let session = match entering_agent(&app, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refused(&app, &session, f.jeton.as_deref()) {
        return r;
    }
    let mut r = redirect(ASSISTED_ENTRY_PATH);
    r.headers_mut().append(header::SET_COOKIE, app.auth.end_assisted());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, methods: Option<&[&str]>, host: Option<&str>) -> RouteRule {
        RouteRule {
            host: host.map(str::to_owned),
            path: path.to_owned(),
            methods: methods.map(|m| m.iter().map(|s| (*s).to_owned()).collect()),
            purpose: None,
        }
    }

    /// A form is an address a browser opens: a prefix rule's prefix, an exact path; not a
    /// rule without GET, with a parameter or with a host of its own.
    #[test]
    fn a_rules_form_is_where_a_browser_opens_it() {
        let cases = [
            (rule("/voirie/signalements/*", None, None), Some("/voirie/signalements/")),
            (rule("/inscription", Some(&["get", "POST"]), None), Some("/inscription")),
            (rule("/inscription", Some(&["POST"]), None), None),
            (rule("/dossiers/{id}", None, None), None),
            (rule("/voirie/*", None, Some("voirie.mairie.example")), None),
        ];
        for (r, expected) in cases {
            assert_eq!(form_path(&r).as_deref(), expected, "{}", r.path);
        }
    }
}
