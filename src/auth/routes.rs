//! The sign-in endpoints under `/.guichet/`: start, callback, logout (RP-initiated and
//! back-channel) and the assertion keys. Handlers stay thin: every check lives in `oidc`,
//! `claims` and `session`.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::oidc::{Expected, OidcError};
use super::pending::{self, PKCE_VERIFIER, RETURN_TO};
use super::session::{Kind, NewSession, SessionError, hash_id};
use super::{
    AGENT_CALLBACK_PATH, AGENT_LOGIN_PATH, Auth, CITIZEN_CALLBACK_PATH, CITIZEN_LOGIN_PATH, LOGOUT_CALLBACK_PATH,
    LOGOUT_PATH, claims, clear_cookie, cookie_value, safe_return_path, set_cookie,
};
use std::sync::Arc;

use super::session::Session;
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, AuditEvent, Ident, Operation};
use crate::clock::random_hex;
use crate::error::GatewayError;
use crate::pages::{AGENT_SPACE_PATH, Chrome, HOME_PATH, PRIVACY_CENTRE_PATH};
use crate::routing::acr_level;
use crate::store::{PendingLogin, StoreError};

/// How long a sign-in or a logout may stay under way.
const PENDING_LIFETIME: time::Duration = time::Duration::minutes(10);
pub use crate::pages::LOGGED_OUT_PATH;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CITIZEN_LOGIN_PATH, get(start_citizen))
        .route(AGENT_LOGIN_PATH, get(start_agent))
        .route(CITIZEN_CALLBACK_PATH, get(callback_citizen))
        .route(AGENT_CALLBACK_PATH, get(callback_agent))
        .route(LOGOUT_PATH, get(logout_page).post(logout))
        .route(LOGOUT_CALLBACK_PATH, get(logout_callback))
        .route("/.guichet/oidc/backchannel-logout", post(backchannel_citizen))
        .route("/.guichet/oidc/agent/backchannel-logout", post(backchannel_agent))
        .route("/.guichet/jwks.json", get(jwks))
        .route(LOGGED_OUT_PATH, get(logged_out))
}

/// Why a sign-in step failed, for the log (never shown, never personal).
#[derive(Debug, thiserror::Error)]
enum SignInError {
    #[error("no provider configured for this kind of sign-in")]
    NoProvider,
    #[error("no provider serves eidas{0} or higher")]
    NoProviderForLevel(u8),
    #[error("the pending sign-in names provider `{0}`, which is no longer configured")]
    ProviderGone(String),
    #[error("no state in the callback")]
    NoState,
    #[error("the callback's state was not started in this browser (no matching sign-in cookie)")]
    StateNotBound,
    #[error("unknown or already used sign-in state")]
    UnknownState,
    #[error("sign-in state expired")]
    ExpiredState,
    #[error("the state belongs to a sign-in of the other kind (citizen/agent)")]
    WrongKind,
    #[error("a sealed value of the pending sign-in does not open")]
    Seal(#[from] pending::SealError),
    #[error("provider returned error `{0}`")]
    Provider(String),
    #[error("no code in the callback")]
    NoCode,
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error(transparent)]
    Claims(#[from] claims::ClaimError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] crate::clock::RandomError),
}

impl SignInError {
    fn to_gateway(&self, kind: Kind, retry: Retry) -> GatewayError {
        let agent = kind == Kind::Agent;
        let Retry { return_to, acr } = retry;
        match self {
            Self::NoProvider => GatewayError::NotFound,
            Self::Session(SessionError::Store(_)) | Self::Store(_) => GatewayError::StoreUnavailable,
            Self::Provider(e) => GatewayError::SignInFailed { agent, cancelled: e == "access_denied", return_to, acr },
            _ => GatewayError::SignInFailed { agent, cancelled: false, return_to, acr },
        }
    }
}

/// What the "try again" link of a failed sign-in keeps: where the person was going and the
/// level the route needs, as soon as they are known.
#[derive(Debug, Default)]
struct Retry {
    return_to: Option<String>,
    acr: Option<u8>,
}

async fn start_citizen(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    start_kind(&app.auth, Kind::Citizen, &headers, &q, citizen_landing(&app, &headers)).await
}

async fn start_agent(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    start_kind(&app.auth, Kind::Agent, &headers, &q, AGENT_SPACE_PATH).await
}

/// Where a citizen's sign-in without `retour` lands: the home page when a route serves `/`
/// on this host, else "Mes données" (the gateway serves no home page of its own).
fn citizen_landing(app: &App, headers: &HeaderMap) -> &'static str {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| {
        // Without the port, as the route table compares hosts (IPv6 literals keep their brackets).
        match h.rfind(':') {
            Some(i) if !h[i..].contains(']') => &h[..i],
            _ => h,
        }
    });
    if app.proxy.routes().find(host, HOME_PATH).is_some() { HOME_PATH } else { PRIVACY_CENTRE_PATH }
}

/// Starts a sign-in of `kind`, coming back to `retour` (a same-origin path) or to `landing`.
async fn start_kind(
    auth: &Auth,
    kind: Kind,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    landing: &str,
) -> Response {
    let return_to = q.get("retour").and_then(|r| safe_return_path(r));
    let needed = q.get("niveau").and_then(|n| acr_level(n));
    match start(auth, kind, headers, return_to.as_deref().unwrap_or(landing), needed.unwrap_or(1)).await {
        Ok(resp) => resp,
        Err(e) => fail(kind, &e, Retry { return_to, acr: needed }),
    }
}

/// Starts a sign-in with the provider serving the level needed: remembers state, nonce, the
/// provider, and — sealed with the state — the PKCE verifier and where to come back, binds
/// the state to this browser with its own short-lived cookie (several tabs may sign in at
/// once), and sends the browser to the provider.
async fn start(
    auth: &Auth,
    kind: Kind,
    headers: &HeaderMap,
    return_to: &str,
    needed: u8,
) -> Result<Response, SignInError> {
    if auth.provider(kind).is_none() {
        return Err(SignInError::NoProvider);
    }
    let (provider, level) = auth.provider_for_level(kind, needed).ok_or(SignInError::NoProviderForLevel(needed))?;
    let acr = format!("eidas{level}");
    let rng = auth.random.as_ref();
    let state = random_hex::<32>(rng)?;
    let nonce = random_hex::<32>(rng)?;
    let discovered = provider.discovered().await?;
    let verifier = match discovered.supports_pkce() {
        true => Some(random_hex::<32>(rng)?),
        false => None,
    };
    let pending = PendingLogin {
        state_hash: hash_id(&state),
        kind: kind.as_str().to_owned(),
        provider: provider.name.clone(),
        nonce: nonce.clone(),
        sealed_pkce_verifier: verifier.as_deref().map(|v| pending::seal(&state, PKCE_VERIFIER, v)).transpose()?,
        sealed_return_to: pending::seal(&state, RETURN_TO, return_to)?,
        acr: acr.clone(),
        expires_at: auth.clock.now() + PENDING_LIFETIME,
    };
    auth.store.sessions().insert_pending_login(&pending).await?;
    let url = provider.authorize_url(&state, &nonce, &acr, verifier.as_deref()).await?;
    let mut resp = redirect(&url);
    for old in pending::cookies_to_drop(headers) {
        resp.headers_mut().append(header::SET_COOKIE, clear_cookie(&old));
    }
    let cookie = set_cookie(&pending::cookie_name(&state), &state, Some(PENDING_LIFETIME.whole_seconds()));
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(resp)
}

async fn callback_citizen(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    callback(&app, Kind::Citizen, &headers, &q).await
}

async fn callback_agent(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    callback(&app, Kind::Agent, &headers, &q).await
}

async fn callback(app: &App, kind: Kind, headers: &HeaderMap, q: &HashMap<String, String>) -> Response {
    let auth = &app.auth;
    let old_session = cookie_value(headers, &auth.settings.cookie_name).map(str::to_owned);
    let bound = q.get("state").and_then(|state| pending::bound_cookie(headers, state));
    let mut retry = Retry::default();
    let duties = super::duties::Duties::of(&app.settings, &app.policies.load());
    let mut resp = match finish(auth, kind, bound.is_some(), q, &mut retry, &duties).await {
        Ok((cookie, return_to, session, dpo_dropped)) => {
            journal(app, &session, Operation::SignIn { acr: Ident::new(session.acr.clone()).ok() }).await;
            if session.kind == Kind::Citizen {
                crate::rights::propagation::refresh_recorded(app, &session).await;
            }
            if dpo_dropped {
                journal_dpo_dropped(app, &session, &duties.dpo_role).await;
            }
            // A new id at every sign-in (no fixation), and never two identities in one
            // browser: whatever session was there ends now.
            if let Some(old) = old_session
                && let Err(e) = auth.sessions.revoke(&old).await
            {
                tracing::warn!(error = %e, "cannot end the previous session");
            }
            let mut r = redirect(&return_to);
            r.headers_mut().append(header::SET_COOKIE, set_cookie(&auth.settings.cookie_name, &cookie, None));
            r
        }
        Err(e) => fail(kind, &e, retry),
    };
    // Only this sign-in's cookie ends: sign-ins started in other tabs go on.
    if let Some(name) = bound {
        resp.headers_mut().append(header::SET_COOKIE, clear_cookie(&name));
    }
    resp
}

/// Every check, in the order the brief gives; returns the new session's cookie value and the
/// path to go back to. Nothing is created unless all pass. `retry` learns where the person
/// was going as soon as the pending sign-in is found, for the "try again" link.
async fn finish(
    auth: &Auth,
    kind: Kind,
    bound: bool,
    q: &HashMap<String, String>,
    retry: &mut Retry,
    duties: &super::duties::Duties,
) -> Result<(String, String, Arc<Session>, bool), SignInError> {
    auth.provider(kind).ok_or(SignInError::NoProvider)?;
    let state = q.get("state").ok_or(SignInError::NoState)?;
    if !bound {
        return Err(SignInError::StateNotBound);
    }
    let pending = auth.store.sessions().take_pending_login(&hash_id(state)).await?.ok_or(SignInError::UnknownState)?;
    let now = auth.clock.now();
    if pending.kind != kind.as_str() {
        return Err(SignInError::WrongKind);
    }
    let return_to = pending::open(state, RETURN_TO, &pending.sealed_return_to)?;
    // The base level needs no `niveau` in the link.
    *retry = Retry { return_to: Some(return_to.clone()), acr: acr_level(&pending.acr).filter(|l| *l > 1) };
    if pending.expires_at < now {
        return Err(SignInError::ExpiredState);
    }
    let provider = auth
        .provider_named(kind, &pending.provider)
        .ok_or_else(|| SignInError::ProviderGone(pending.provider.clone()))?;
    let pkce_verifier =
        pending.sealed_pkce_verifier.as_deref().map(|v| pending::open(state, PKCE_VERIFIER, v)).transpose()?;
    if let Some(error) = q.get("error") {
        // The code reaches the log: keep OAuth's error-code alphabet only, so a crafted
        // callback cannot write arbitrary text (or a person's data) there.
        let code: String = error.chars().take(64).filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        return Err(SignInError::Provider(code));
    }
    let code = q.get("code").ok_or(SignInError::NoCode)?;
    let tokens = provider.exchange(code, pkce_verifier.as_deref()).await?;
    let expected = Expected { nonce: &pending.nonce, min_acr: acr_level(&pending.acr).unwrap_or(1) };
    let id = provider.verify_id_token(&tokens.id_token, &tokens.access_token, &expected, now).await?;
    let userinfo = provider.userinfo(&tokens.access_token, &id.sub).await?;
    let (claims, roles, dpo_dropped) = match kind {
        Kind::Citizen => (claims::citizen(&userinfo)?, Vec::new(), false),
        Kind::Agent => {
            let c = claims::agent(&userinfo)?;
            let (roles, dropped) = duties.apply(claims::roles(&c, &auth.settings.agent_roles));
            (c, roles, dropped)
        }
    };
    let new = NewSession {
        kind,
        issuer: provider.issuer().to_owned(),
        subject: id.sub,
        provider_sid: id.sid,
        acr: id.acr,
        claims,
        roles,
        id_token: id.raw,
    };
    let (cookie, session) = auth.sessions.create(new).await?;
    tracing::info!(kind = kind.as_str(), provider = %provider.name, "signed in");
    Ok((cookie, return_to, session, dpo_dropped))
}

/// Journals that the DPO role was withheld from this sign-in (separation of duties).
async fn journal_dpo_dropped(app: &App, session: &Session, dpo_role: &str) {
    tracing::warn!("an agent's rules grant the DPO role with a revealing or assisted role: DPO role dropped");
    let (Some(reader), Ok(action), Ok(record)) =
        (app.auth.reader(session, None), Ident::new("dpo_role_dropped"), Ident::new(format!("role:{dpo_role}")))
    else {
        return;
    };
    let mut event = AuditEvent::system(Operation::AdminAction { action }, app.clock.now());
    event.actor = reader.actor;
    event.role = reader.role;
    event.outcome = crate::audit::Outcome::Denied;
    event.record_ref = Some(record);
    if let Err(e) = app.audit.record(event).await {
        tracing::warn!(error = %e, "cannot journal the dropped DPO role");
    }
}

/// Journals a sign-in or sign-out under the person's pseudonymous id (citizens: their consent
/// pseudonym; agents: their agent id), queued with the next batch.
async fn journal(app: &App, session: &Session, operation: Operation) {
    let (kind, id, role) = match session.kind {
        Kind::Citizen => (ActorKind::Citizen, app.auth.consent_subject(session).to_owned(), "citizen".to_owned()),
        Kind::Agent => (
            ActorKind::Agent,
            crate::consent::pages::agent_ident(session),
            session.roles.first().cloned().unwrap_or_else(|| "agent".to_owned()),
        ),
    };
    let (Ok(id), Ok(role)) = (Ident::new(id), Ident::new(role)) else { return };
    let mut event = AuditEvent::system(operation, app.clock.now());
    event.actor = Actor { kind, id: id.clone() };
    event.role = role;
    event.subject = Some(id);
    if let Err(e) = app.audit.record(event).await {
        tracing::warn!(error = %e, "cannot journal the sign-in or sign-out");
    }
}

/// `GET /.guichet/deconnexion`: a page with one button that posts the logout with the
/// session's CSRF token. A GET never ends a session: a link or an image on another site
/// must not sign anyone out.
async fn logout_page(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = app.auth.identify(&headers).await.ok().flatten();
    confirm_logout(&app.auth, StatusCode::OK, session.as_deref())
}

fn confirm_logout(auth: &Auth, status: StatusCode, session: Option<&Session>) -> Response {
    let csrf = session.map(|s| auth.csrf_token(s));
    let chrome = auth.chrome(session);
    let resp = page(status, &LogoutConfirm { chrome, csrf: csrf.as_deref(), path: LOGOUT_PATH });
    allow_sign_out_form(auth, resp)
}

/// Every page shown to a signed-in person has a sign-out button in its header, whose POST is
/// redirected to the provider's end-session page: `form-action` must allow the providers'
/// origins (Chromium checks it on redirects).
pub(crate) fn allow_sign_out_form(auth: &Auth, mut resp: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&logout_page_csp(auth)) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// The own pages' policy, with the sign-in providers' origins added to `form-action`.
fn logout_page_csp(auth: &Auth) -> String {
    let origins: Vec<String> = auth
        .citizens
        .iter()
        .chain(auth.agent.as_ref())
        .filter_map(|p| url::Url::parse(p.issuer()).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' {}; \
         frame-ancestors 'none'; base-uri 'none'",
        origins.join(" ")
    )
}

/// `POST /.guichet/deconnexion` (RP-initiated logout), with the CSRF token of the
/// confirmation page: the local session ends first, whatever happens next; then the provider
/// that signed the person in is asked to end its own, with `id_token_hint`, `state` and the
/// registered `post_logout_redirect_uri`. Without a valid token the session stays and the
/// confirmation page is shown again (403).
async fn logout(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let auth = &app.auth;
    let session = auth.identify(&headers).await.ok().flatten();
    if let Some(session) = &session {
        let token = url::form_urlencoded::parse(&body).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        if !token.is_some_and(|t| auth.csrf_ok(session, &t)) {
            tracing::warn!("logout refused: CSRF token missing or wrong");
            return confirm_logout(auth, StatusCode::FORBIDDEN, Some(session));
        }
        journal(&app, session, Operation::SignOut).await;
    }
    let mut target = LOGGED_OUT_PATH.to_owned();
    if let Some(cookie) = cookie_value(&headers, &auth.settings.cookie_name) {
        match provider_logout_url(auth, cookie).await {
            Ok(Some(url)) => target = url,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "provider logout skipped"),
        }
    }
    let mut resp = redirect(&target);
    resp.headers_mut().append(header::SET_COOKIE, clear_cookie(&auth.settings.cookie_name));
    resp
}

async fn provider_logout_url(auth: &Auth, cookie: &str) -> Result<Option<String>, SignInError> {
    let Some(row) = auth.sessions.revoke(cookie).await? else { return Ok(None) };
    let kind = if row.kind == Kind::Agent.as_str() { Kind::Agent } else { Kind::Citizen };
    let Some(provider) = auth.provider_for_issuer(kind, &row.issuer) else { return Ok(None) };
    let state = random_hex::<32>(auth.random.as_ref())?;
    let Some(url) = provider.end_session_url(&row.id_token, &state).await? else { return Ok(None) };
    auth.store.sessions().insert_pending_logout(&hash_id(&state), auth.clock.now() + PENDING_LIFETIME).await?;
    Ok(Some(url))
}

/// The provider sends the browser back here with the `state` we gave it: a missing or
/// unknown state is reported (the local session is already gone either way).
async fn logout_callback(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let auth = &app.auth;
    let confirmed = match q.get("state") {
        Some(state) => match auth.store.sessions().take_pending_logout(&hash_id(state)).await {
            Ok(Some(expires_at)) => expires_at >= auth.clock.now(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the logout state");
                false
            }
        },
        None => false,
    };
    if !confirmed {
        tracing::warn!("logout came back with a missing or unknown state");
    }
    let status = if confirmed { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    page(status, &LoggedOut { chrome: auth.chrome(None), confirmed })
}

async fn logged_out(State(app): State<AppState>) -> Response {
    page(StatusCode::OK, &LoggedOut { chrome: app.auth.chrome(None), confirmed: true })
}

#[derive(serde::Deserialize)]
struct BackchannelForm {
    logout_token: String,
}

async fn backchannel_citizen(State(app): State<AppState>, Form(f): Form<BackchannelForm>) -> Response {
    backchannel(&app.auth, Kind::Citizen, &f.logout_token).await
}

async fn backchannel_agent(State(app): State<AppState>, Form(f): Form<BackchannelForm>) -> Response {
    backchannel(&app.auth, Kind::Agent, &f.logout_token).await
}

/// OpenID Connect Back-Channel Logout 1.0 §2.8: 200 when done, 400 with a JSON error else.
async fn backchannel(auth: &Auth, kind: Kind, token: &str) -> Response {
    let result = async {
        // The token's (unverified) issuer picks which of the providers verifies it.
        let provider = super::oidc::peek_issuer(token)
            .and_then(|iss| auth.provider_for_issuer(kind, &iss))
            .or_else(|| auth.provider(kind))
            .ok_or(SignInError::NoProvider)?;
        let (sub, sid) = provider.verify_logout_token(token, auth.clock.now()).await?;
        let n = auth.sessions.revoke_provider_sessions(provider.issuer(), sub.as_deref(), sid.as_deref()).await?;
        Ok::<u64, SignInError>(n)
    }
    .await;
    let (status, body) = match result {
        Ok(n) => {
            tracing::info!(sessions = n, "back-channel logout");
            (StatusCode::OK, String::new())
        }
        Err(e) => {
            tracing::warn!(error = %e, "back-channel logout refused");
            (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#.to_owned())
        }
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status != StatusCode::OK {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    resp
}

async fn jwks(State(app): State<AppState>) -> Response {
    let mut resp = axum::Json(app.auth.jwks()).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

#[derive(Template)]
#[template(path = "auth/logged_out.html")]
struct LoggedOut {
    chrome: Chrome,
    confirmed: bool,
}

/// The logout confirmation: one button when signed in (`csrf`), otherwise a short notice.
#[derive(Template)]
#[template(path = "auth/logout.html")]
struct LogoutConfirm<'a> {
    chrome: Chrome,
    csrf: Option<&'a str>,
    path: &'a str,
}

pub(crate) use crate::pages::{redirect, render as page};

/// An own page with the base layout's header: when `chrome` carries a session, its sign-out
/// button needs the providers' origins in `form-action`.
pub(crate) fn own_page(auth: &Auth, status: StatusCode, t: &impl Template, chrome: &Chrome) -> Response {
    let resp = page(status, t);
    if chrome.csrf.is_some() { allow_sign_out_form(auth, resp) } else { resp }
}

fn fail(kind: Kind, e: &SignInError, retry: Retry) -> Response {
    tracing::info!(kind = kind.as_str(), reason = %e, "sign-in refused");
    e.to_gateway(kind, retry).respond(true, None, Some(e.to_string()))
}
