//! Role gates for the gateway's own pages, journaled (issue 16 item 6): a signed-in person
//! refused for lack of the role leaves a `read` entry with outcome `denied` (who, which
//! page, which role they had; nothing else). Anonymous visitors are sent to sign in and leave
//! nothing: there is no one to name.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::session::{Kind, Session};
use crate::app::App;
use crate::audit::Reader;
use crate::error::GatewayError;

/// A DPO who passed the gate: their session (for the page's chrome and CSRF) and the reader
/// the journal names.
#[derive(Debug)]
pub struct Dpo {
    pub session: Arc<Session>,
    pub reader: Reader,
}

/// The signed-in agent holding `auth.dpo_role`, or the error to answer: sign-in (back to
/// `return_to`) without a session, 403 (journaled as denied on `page`, naming `record_ref`)
/// for anyone else.
pub async fn dpo(
    app: &App,
    headers: &HeaderMap,
    page: &str,
    record_ref: &str,
    return_to: &str,
    request_id: Option<&str>,
) -> Result<Dpo, GatewayError> {
    let session = app.auth.identify(headers).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let role = app.auth.settings.dpo_role.as_str();
    match session {
        None => Err(GatewayError::SignInRequired { agent: true, acr: None, return_to: return_to.to_owned() }),
        Some(s) if s.kind == Kind::Agent && s.roles.iter().any(|r| r == role) => {
            let reader = app.auth.reader(&s, Some(role)).ok_or(GatewayError::Internal)?;
            Ok(Dpo { session: s, reader })
        }
        Some(s) => {
            denied(app, &s, page, record_ref, request_id).await;
            Err(GatewayError::Forbidden("this page is for the data protection officer"))
        }
    }
}

/// The record reference of a list page (`list:dpo.incidents`): what a refusal of a list names.
pub fn list_ref(page: &str) -> String {
    format!("list:{page}")
}

/// Journals that `session`'s person was refused `page` and the record `record_ref` on it
/// (their first role, if any, as role). A reference that is not a journal identifier (a
/// mistyped id in an address) is journaled as the page's list, so the entry always names one.
pub async fn denied(app: &App, session: &Session, page: &str, record_ref: &str, request_id: Option<&str>) {
    let role = if session.kind == Kind::Agent { session.roles.first().map(String::as_str) } else { None };
    let record_ref = if crate::audit::Ident::new(record_ref).is_ok() { record_ref.to_owned() } else { list_ref(page) };
    match app.auth.reader(session, role) {
        Some(reader) => app.audit.record_denied(&reader, page, &record_ref, request_id).await,
        None => tracing::warn!("a refused access could not be journaled: the person's id is not a journal identifier"),
    }
}
