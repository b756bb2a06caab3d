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

use super::oidc::{self, Expected, OidcError, Provider};
use super::session::{Kind, NewSession, SessionError, hash_id};
use super::{
    AGENT_CALLBACK_PATH, AGENT_LOGIN_PATH, Auth, CITIZEN_CALLBACK_PATH, CITIZEN_LOGIN_PATH, LOGIN_COOKIE,
    LOGOUT_CALLBACK_PATH, LOGOUT_PATH, claims, clear_cookie, cookie_value, safe_return_path, set_cookie,
};
use std::sync::Arc;

use super::session::Session;
use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, AuditEvent, Ident, Operation};
use crate::clock::random_hex;
use crate::error::GatewayError;
use crate::routing::acr_level;
use crate::store::{PendingLogin, StoreError};

/// How long a sign-in or a logout may stay under way.
const PENDING_LIFETIME: time::Duration = time::Duration::minutes(10);
pub const LOGGED_OUT_PATH: &str = "/.guichet/deconnecte";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(CITIZEN_LOGIN_PATH, get(start_citizen))
        .route(AGENT_LOGIN_PATH, get(start_agent))
        .route(CITIZEN_CALLBACK_PATH, get(callback_citizen))
        .route(AGENT_CALLBACK_PATH, get(callback_agent))
        .route(LOGOUT_PATH, get(logout).post(logout))
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
    #[error("state missing or not the one this browser started with")]
    StateMismatch,
    #[error("unknown, used or expired sign-in state")]
    UnknownState,
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
    fn to_gateway(&self, kind: Kind) -> GatewayError {
        let agent = kind == Kind::Agent;
        match self {
            Self::NoProvider => GatewayError::NotFound,
            Self::Session(SessionError::Store(_)) | Self::Store(_) => GatewayError::StoreUnavailable,
            Self::Provider(e) => GatewayError::SignInFailed { agent, cancelled: e == "access_denied" },
            _ => GatewayError::SignInFailed { agent, cancelled: false },
        }
    }
}

async fn start_citizen(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    start(&app.auth, Kind::Citizen, &q).await.unwrap_or_else(|e| fail(Kind::Citizen, &e, None))
}

async fn start_agent(State(app): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    start(&app.auth, Kind::Agent, &q).await.unwrap_or_else(|e| fail(Kind::Agent, &e, None))
}

/// Starts a sign-in: remembers state, nonce, PKCE verifier and where to come back in the
/// store, binds the state to this browser with a short-lived cookie, and sends the browser
/// to the provider.
async fn start(auth: &Auth, kind: Kind, q: &HashMap<String, String>) -> Result<Response, SignInError> {
    let provider = auth.provider(kind).ok_or(SignInError::NoProvider)?;
    let return_to = q.get("retour").and_then(|r| safe_return_path(r)).unwrap_or_else(|| "/".to_owned());
    let acr = requested_acr(provider, q.get("niveau").map(String::as_str));
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
        nonce: nonce.clone(),
        pkce_verifier: verifier.clone(),
        return_to,
        acr: acr.clone(),
        expires_at: auth.clock.now() + PENDING_LIFETIME,
    };
    auth.store.sessions().insert_pending_login(&pending).await?;
    let url = provider.authorize_url(&state, &nonce, &acr, verifier.as_deref()).await?;
    let mut resp = redirect(&url);
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &state, Some(PENDING_LIFETIME.whole_seconds())));
    Ok(resp)
}

/// The provider's default level, raised to what the route asked (`niveau=eidas2`).
fn requested_acr(provider: &Provider, asked: Option<&str>) -> String {
    let default = provider.settings.acr.clone();
    match asked {
        Some(a) if acr_level(a) > acr_level(&default) => a.to_owned(),
        _ => default,
    }
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
    let mut resp = match finish(auth, kind, headers, q).await {
        Ok((cookie, return_to, session)) => {
            journal(app, &session, Operation::SignIn { acr: Ident::new(session.acr.clone()).ok() }).await;
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
        Err(e) => fail(kind, &e, None),
    };
    resp.headers_mut().append(header::SET_COOKIE, clear_cookie(LOGIN_COOKIE));
    resp
}

/// Every check, in the order the brief gives; returns the new session's cookie value and the
/// path to go back to. Nothing is created unless all pass.
async fn finish(
    auth: &Auth,
    kind: Kind,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(String, String, Arc<Session>), SignInError> {
    let provider = auth.provider(kind).ok_or(SignInError::NoProvider)?;
    let state = q.get("state").ok_or(SignInError::StateMismatch)?;
    let bound = cookie_value(headers, LOGIN_COOKIE).ok_or(SignInError::StateMismatch)?;
    if !oidc::constant_time_eq(state.as_bytes(), bound.as_bytes()) {
        return Err(SignInError::StateMismatch);
    }
    let pending = auth.store.sessions().take_pending_login(&hash_id(state)).await?.ok_or(SignInError::UnknownState)?;
    let now = auth.clock.now();
    if pending.kind != kind.as_str() || pending.expires_at < now {
        return Err(SignInError::UnknownState);
    }
    if let Some(error) = q.get("error") {
        // The code reaches the log: keep OAuth's error-code alphabet only, so a crafted
        // callback cannot write arbitrary text (or a person's data) there.
        let code: String = error.chars().take(64).filter(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        return Err(SignInError::Provider(code));
    }
    let code = q.get("code").ok_or(SignInError::NoCode)?;
    let tokens = provider.exchange(code, pending.pkce_verifier.as_deref()).await?;
    let expected = Expected { nonce: &pending.nonce, min_acr: acr_level(&pending.acr).unwrap_or(1) };
    let id = provider.verify_id_token(&tokens.id_token, &tokens.access_token, &expected, now).await?;
    let userinfo = provider.userinfo(&tokens.access_token, &id.sub).await?;
    let (claims, roles) = match kind {
        Kind::Citizen => (claims::citizen(&userinfo)?, Vec::new()),
        Kind::Agent => {
            let c = claims::agent(&userinfo)?;
            let roles = claims::roles(&c, &auth.settings.agent_roles);
            (c, roles)
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
    tracing::info!(kind = kind.as_str(), "signed in");
    Ok((cookie, pending.return_to, session))
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

/// RP-initiated logout: the local session ends first, whatever happens next; then the
/// provider is asked to end its own, with `id_token_hint`, `state` and the registered
/// `post_logout_redirect_uri`.
async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let auth = &app.auth;
    let mut target = LOGGED_OUT_PATH.to_owned();
    if let Ok(Some(session)) = auth.identify(&headers).await {
        journal(&app, &session, Operation::SignOut).await;
    }
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
    let Some(provider) = auth.provider(kind) else { return Ok(None) };
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
    page(status, &LoggedOut { confirmed })
}

async fn logged_out() -> Response {
    page(StatusCode::OK, &LoggedOut { confirmed: true })
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
        let provider = auth.provider(kind).ok_or(SignInError::NoProvider)?;
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
    confirmed: bool,
}

pub(crate) fn page(status: StatusCode, t: &impl Template) -> Response {
    let body = t.render().unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub(crate) fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn fail(kind: Kind, e: &SignInError, request_id: Option<&str>) -> Response {
    tracing::info!(kind = kind.as_str(), reason = %e, "sign-in refused");
    e.to_gateway(kind).respond(true, request_id, Some(e.to_string()))
}
