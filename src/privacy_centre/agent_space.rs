//! "Espace agent" (`/.guichet/agent/`): the page the header links for agents, listing what
//! the signed-in agent may do on the gateway's own pages, each a link (the assisted mode first,
//! for the counter). Computed from the same `auth::gate::PageRoles` as the header, so an agent
//! sees only the pages they would be let in.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::app::AppState;
use crate::auth::gate::{PageRoles, denied};
use crate::auth::routes::own_page;
use crate::auth::session::Kind;
use crate::error::{GatewayError, sign_in_url};
use crate::pages::{AGENT_SPACE_PATH, Chrome, redirect};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/.guichet/agent", get(|| async { redirect(AGENT_SPACE_PATH) }))
        .route(AGENT_SPACE_PATH, get(show))
}

#[derive(Template)]
#[template(path = "privacy_centre/agent_space.html")]
struct AgentSpacePage<'a> {
    chrome: &'a Chrome,
    roles: PageRoles,
    /// Enters declared fields for a citizen (`assisted_entry`).
    entry: bool,
}

async fn show(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = match app.auth.identify(&headers).await {
        Ok(Some(s)) if s.kind == Kind::Agent => s,
        Ok(Some(s)) => {
            denied(&app, &s, AGENT_SPACE_PATH, "page:agent_space", None).await;
            return GatewayError::Forbidden("this page is for the town hall's agents").respond(true, None, None);
        }
        Ok(None) => return redirect(&sign_in_url(true, None, Some(AGENT_SPACE_PATH))),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session");
            return GatewayError::StoreUnavailable.respond(true, None, None);
        }
    };
    let chrome = app.auth.chrome(Some(&session));
    let entry = super::assisted_entry::may_enter(&app, &session);
    let page = AgentSpacePage { chrome: &chrome, roles: chrome.roles, entry };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}
