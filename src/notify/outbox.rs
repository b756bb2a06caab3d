//! The demonstration outbox: with `notify.outbox_dir` set, messages are written there (one
//! JSON file each) instead of being sent, and read in the browser at `/.guichet/demo/boite-mail`.
//! The configuration refuses an outbox unless the gateway listens on loopback: the page shows
//! every citizen's messages.

use std::path::{Path, PathBuf};

use askama::Template;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::render::{Rendered, french_date_time};
use crate::app::AppState;
use crate::error::GatewayError;
use crate::jobs::JobError;

pub const OUTBOX_PATH: &str = "/.guichet/demo/boite-mail";

/// One message as the outbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Writes one message (atomically: a reader never sees half a file). Writing the same
/// message again replaces it.
pub async fn write(dir: &Path, id: &str, to: &str, r: &Rendered, at: OffsetDateTime) -> Result<(), JobError> {
    let m = OutboxMessage {
        id: id.to_owned(),
        at,
        to: to.to_owned(),
        subject: r.subject.to_owned(),
        text: r.text.clone(),
        html: r.html.clone(),
    };
    let json = serde_json::to_vec_pretty(&m).map_err(|_| JobError::Permanent("cannot encode the message"))?;
    let cannot = |_| JobError::Retry("cannot write to the outbox directory");
    tokio::fs::create_dir_all(dir).await.map_err(cannot)?;
    let tmp = dir.join(format!(".{id}.tmp"));
    tokio::fs::write(&tmp, json).await.map_err(cannot)?;
    tokio::fs::rename(&tmp, file_of(dir, id)).await.map_err(cannot)
}

fn file_of(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Every message of the outbox, newest first.
pub async fn read_all(dir: &Path) -> Vec<OutboxMessage> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else { return out };
    while let Ok(Some(e)) = entries.next_entry().await {
        let path = e.path();
        if path.extension().is_some_and(|x| x == "json")
            && let Ok(bytes) = tokio::fs::read(&path).await
            && let Ok(m) = serde_json::from_slice::<OutboxMessage>(&bytes)
        {
            out.push(m);
        }
    }
    out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.id.cmp(&b.id)));
    out
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(OUTBOX_PATH, get(list))
        .route("/.guichet/demo/boite-mail/{id}", get(show))
        .route("/.guichet/demo/boite-mail/{id}/html", get(show_html))
}

struct Line {
    id: String,
    at: String,
    to: String,
    subject: String,
}

#[derive(Template)]
#[template(path = "notify/outbox.html")]
struct ListPage {
    lines: Vec<Line>,
}

#[derive(Template)]
#[template(path = "notify/outbox_message.html")]
struct MessagePage {
    m: OutboxMessage,
    at: String,
}

fn not_found() -> Response {
    GatewayError::NotFound.respond(true, None, None)
}

async fn list(State(app): State<AppState>) -> Response {
    let Some(dir) = app.notify.settings().outbox_dir.as_deref() else { return not_found() };
    let lines = read_all(dir)
        .await
        .into_iter()
        .map(|m| Line { at: french_date_time(m.at), id: m.id, to: m.to, subject: m.subject })
        .collect();
    page(ListPage { lines }.render())
}

/// One message of the outbox; `None` without an outbox or such a message.
async fn find(app: &AppState, id: &str) -> Option<OutboxMessage> {
    let dir = app.notify.settings().outbox_dir.as_deref()?;
    // Ids are hex digests; anything else is not a file name to try.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = tokio::fs::read(file_of(dir, id)).await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

async fn show(State(app): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    match find(&app, &id).await {
        Some(m) => page(MessagePage { at: french_date_time(m.at), m }.render()),
        None => not_found(),
    }
}

/// The HTML body as the citizen's mail program would show it.
async fn show_html(State(app): State<AppState>, UrlPath(id): UrlPath<String>) -> Response {
    match find(&app, &id).await {
        Some(m) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], m.html).into_response(),
        None => not_found(),
    }
}

fn page(rendered: askama::Result<String>) -> Response {
    match rendered {
        Ok(body) => Html(body).into_response(),
        Err(_) => GatewayError::Internal.respond(true, None, None),
    }
}
