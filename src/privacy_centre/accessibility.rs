//! `/.guichet/accessibilite`: the accessibility statement (décret 2019-768, RGAA 4.1 model),
//! generated from `[commune.accessibility]`, linked from every page's footer.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use crate::app::AppState;
use crate::auth::routes::own_page;
use crate::config::AccessibilitySettings;
use crate::pages::{ACCESSIBILITY_PATH, Chrome, accessibility_status};

pub fn routes() -> Router<AppState> {
    Router::new().route(ACCESSIBILITY_PATH, get(statement))
}

/// The own pages the statement covers (the sample the browser tests check with axe).
const PAGES_CHECKED: [&str; 6] = [
    "Mes données",
    "Faire une demande (3 étapes)",
    "Vos accords",
    "Vos données personnelles (notices)",
    "Connexion et déconnexion",
    "Pages d'erreur",
];

#[derive(Template)]
#[template(path = "privacy_centre/accessibility.html")]
struct StatementPage<'a> {
    chrome: &'a Chrome,
    status: &'static str,
    a: &'a AccessibilitySettings,
    pages: &'a [&'a str],
}

async fn statement(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let session = app.auth.identify(&headers).await.ok().flatten();
    let chrome = app.auth.chrome(session.as_deref());
    let page = StatementPage {
        chrome: &chrome,
        status: accessibility_status(&chrome.commune),
        a: &chrome.commune.accessibility,
        pages: &PAGES_CHECKED,
    };
    own_page(&app.auth, StatusCode::OK, &page, &chrome)
}
