//! Reveal on the way back (part of `response_filter`): in text responses (JSON, HTML, CSV,
//! plain text) of an activity with declared fields, every `gch1.` token is replaced by its
//! value when the viewer may see it — the citizen it belongs to, or an agent holding a role
//! the field's `visible_to` lists — and by [`PLACEHOLDER`] otherwise. The body keeps
//! streaming: the scanner holds back at most one token's length between chunks, so a token
//! split across chunks is still found. Every reveal to an agent is journaled (agent, field,
//! subject pseudonym, activity, purpose, time), never the value.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::HeaderMap;
use http::header;

use crate::audit::{Actor, ActorKind, Audit, AuditEvent, Ident, Operation, Outcome};
use crate::clock::Clock;
use crate::crypto::scan::{Piece, StreamScanner};
use crate::crypto::{FieldContext, Vault};
use crate::policy::Processing;
use crate::policy::model::{Field, Protection};

/// What a viewer sees in place of a value they may not see (or that no longer exists).
pub const PLACEHOLDER: &str = "[donnée protégée]";

/// Who is looking at the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A citizen, by their field pseudonym (`Auth::field_subject`).
    Citizen(String),
    /// An agent, by journal id, with their roles.
    Agent {
        id: String,
        roles: Vec<String>,
    },
    Anonymous,
}

/// How a revealed value must be escaped to stay inert in the response's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Json,
    Html,
    /// Plain text and CSV: inserted as is.
    Plain,
}

impl TextKind {
    /// The text kinds the reveal phase scans; `None` for anything else (images, PDFs,
    /// compressed bodies), which pass untouched.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        if headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity") {
            return None;
        }
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            e if e.ends_with("+json") => Some(Self::Json),
            "text/html" | "application/xhtml+xml" => Some(Self::Html),
            "text/plain" | "text/csv" => Some(Self::Plain),
            _ => None,
        }
    }

    fn escape(self, value: &str) -> String {
        match self {
            Self::Json => {
                let quoted = serde_json::to_string(value).unwrap_or_default();
                quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned()
            }
            Self::Html => html_escape(value),
            Self::Plain => value.to_owned(),
        }
    }
}

fn html_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything one response's reveal needs.
pub struct Revealer {
    pub vault: Arc<Vault>,
    pub audit: Option<Arc<Audit>>,
    pub clock: Arc<dyn Clock>,
    pub processing: Arc<Processing>,
    pub viewer: Viewer,
    kind: TextKind,
    pub request_id: Arc<str>,
    /// (subject, field) pairs already journaled for this response: one entry each, however
    /// many times the page repeats the value.
    journaled: HashSet<(String, String)>,
}

impl Revealer {
    pub fn new(
        vault: Arc<Vault>,
        audit: Option<Arc<Audit>>,
        clock: Arc<dyn Clock>,
        processing: Arc<Processing>,
        viewer: Viewer,
        request_id: Arc<str>,
    ) -> Self {
        let kind = TextKind::Plain;
        Self { vault, audit, clock, processing, viewer, kind, request_id, journaled: HashSet::new() }
    }

    /// Wraps a response body of `kind` so its tokens are revealed or masked as it streams.
    pub fn body<B>(mut self, kind: TextKind, body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.kind = kind;
        let frames = http_body_util::BodyDataStream::new(body);
        let state = (self, frames, StreamScanner::new(), false);
        let stream = futures_util::stream::unfold(state, |(mut r, mut frames, mut scanner, ended)| async move {
            if ended {
                return None;
            }
            let (pieces, ended) = match frames.next().await {
                Some(Ok(chunk)) => (owned_pieces(|mut out| scanner.push(&chunk, &mut out)), false),
                Some(Err(e)) => return Some((Err(e.into()), (r, frames, scanner, true))),
                None => (owned_pieces(|mut out| scanner.finish(&mut out)), true),
            };
            let out = r.render(pieces).await;
            Some((Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out), (r, frames, scanner, ended)))
        });
        Body::from_stream(stream)
    }

    async fn render(&mut self, pieces: Vec<Owned>) -> Bytes {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Owned::Text(t) => out.extend_from_slice(&t),
                Owned::Token(t) => out.extend_from_slice(self.replacement(&t).await.as_bytes()),
            }
        }
        Bytes::from(out)
    }

    /// The value of `token` escaped for the response, or the placeholder.
    async fn replacement(&mut self, token: &str) -> String {
        match self.reveal(token).await {
            Some(value) => self.kind.escape(&value),
            None => PLACEHOLDER.to_owned(),
        }
    }

    /// The clear value, when this viewer may see it. Unknown, shredded or foreign tokens,
    /// and any failure, give `None`: the placeholder is the safe answer.
    async fn reveal(&mut self, token: &str) -> Option<String> {
        let (subject, activity) = self.vault.owner_of(token).await.ok()??;
        if activity != *self.processing.activity {
            return None;
        }
        let processing = self.processing.clone();
        let candidates = processing.fields.iter().filter(|f| f.protection == Protection::Encrypt);
        for field in candidates {
            if !self.may_see(&subject, field) {
                continue;
            }
            let ctx = FieldContext { activity: &activity, field: &field.name, subject: &subject };
            if let Ok(value) = self.vault.open(&ctx, token).await {
                self.journal(&subject, field).await;
                return Some(value.to_string());
            }
        }
        None
    }

    fn may_see(&self, subject: &str, field: &Field) -> bool {
        match &self.viewer {
            Viewer::Citizen(me) => me == subject,
            Viewer::Agent { roles, .. } => roles.iter().any(|r| field.visible_to.contains(r)),
            Viewer::Anonymous => false,
        }
    }

    /// Journals a reveal to an agent (citizens seeing their own data are not journaled).
    async fn journal(&mut self, subject: &str, field: &Field) {
        let Viewer::Agent { id, roles } = &self.viewer else { return };
        if !self.journaled.insert((subject.to_owned(), field.name.clone())) {
            return;
        }
        let Some(audit) = &self.audit else { return };
        let role = roles.iter().find(|r| field.visible_to.contains(r)).cloned().unwrap_or_else(|| "agent".into());
        let (Ok(agent), Ok(role), Ok(field_id), Ok(subject)) =
            (Ident::new(id.clone()), Ident::new(role), Ident::new(field.name.clone()), Ident::new(subject))
        else {
            tracing::warn!("a reveal could not be journaled: an identifier is not journal-safe");
            return;
        };
        let mut event = AuditEvent::system(Operation::Reveal { fields: vec![field_id] }, self.clock.now());
        event.actor = Actor { kind: ActorKind::Agent, id: agent };
        event.role = role;
        event.activity = Ident::new(self.processing.activity.to_string()).ok();
        event.purpose = Ident::new(self.processing.purpose.to_string()).ok();
        event.subject = Some(subject);
        event.outcome = Outcome::Success;
        event.request_id = Ident::new(self.request_id.to_string()).ok();
        if let Err(e) = audit.record(event).await {
            tracing::warn!(error = %e, "a reveal could not be journaled");
        }
    }
}

/// A scanned piece that owns its bytes, so tokens can be resolved across awaits.
enum Owned {
    Text(Vec<u8>),
    Token(String),
}

fn owned_pieces(scan: impl FnOnce(&mut dyn FnMut(Piece<'_>))) -> Vec<Owned> {
    let mut pieces = Vec::new();
    scan(&mut |p| match p {
        Piece::Text(t) => pieces.push(Owned::Text(t.to_vec())),
        Piece::Token(t) => pieces.push(Owned::Token(t.to_owned())),
    });
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn only_uncompressed_text_is_scanned() {
        let mut h = HeaderMap::new();
        assert_eq!(TextKind::of(&h), None);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        assert_eq!(TextKind::of(&h), Some(TextKind::Html));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        assert_eq!(TextKind::of(&h), Some(TextKind::Json));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv"));
        assert_eq!(TextKind::of(&h), Some(TextKind::Plain));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert_eq!(TextKind::of(&h), None);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(TextKind::of(&h), None);
    }

    #[test]
    fn revealed_values_are_escaped_for_their_syntax() {
        assert_eq!(TextKind::Html.escape("<b>O'Neil & co</b>"), "&lt;b&gt;O&#39;Neil &amp; co&lt;/b&gt;");
        assert_eq!(TextKind::Json.escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(TextKind::Plain.escape("Léa"), "Léa");
    }
}
