//! Reveal on the way back (part of `response_filter`): in text responses (JSON, HTML, CSV,
//! plain text) of an activity with declared fields, every `gch1.` token is replaced by its
//! value when the viewer may see it — the citizen it belongs to, or an agent holding a role
//! the field's `visible_to` lists — and by [`PLACEHOLDER`] otherwise. The body keeps
//! streaming: the scanner holds back at most one token's length between chunks, so a token
//! split across chunks is still found. Values and the placeholder are written for where they
//! land (`proxy::escape`: JSON strings, HTML text and attributes, CSV fields, charsets). Every reveal to an agent is journaled (agent, field,
//! subject pseudonym, activity, purpose, time), never the value.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

pub use super::escape::TextKind;
use super::escape::Writer;

use crate::audit::{Actor, ActorKind, Audit, AuditEvent, Ident, Operation, Outcome};
use crate::clock::Clock;
use crate::crypto::scan::{Piece, StreamScanner, scan_all};
use crate::crypto::{FieldContext, Vault};
use crate::policy::Processing;
use crate::policy::model::{Field, Protection};
use crate::retention::reveal::Verdict;

/// What a viewer sees in place of a value they may not see (or that no longer exists).
pub const PLACEHOLDER: &str = "[donnée protégée]";

/// What a value or the placeholder keeps as it is in a response header: RFC 3986 unreserved
/// characters. The rest is percent-encoded (UTF-8), so a value can break neither the header
/// nor a URL it sits in (a `Location` carrying a token).
const HEADER_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Who is looking at the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A citizen, by their field pseudonyms for the activity's sector
    /// (`Auth::field_subject_in`) and, when the sector is not `general`, their v1 (`general`)
    /// one, which owns what was sealed before the activity had a sector.
    Citizen(Vec<String>),
    /// An agent, by journal id, with their roles.
    Agent {
        id: String,
        roles: Vec<String>,
    },
    Anonymous,
}

/// Everything one response's reveal needs.
pub struct Revealer {
    pub vault: Arc<Vault>,
    pub audit: Option<Arc<Audit>>,
    pub clock: Arc<dyn Clock>,
    pub processing: Arc<Processing>,
    pub viewer: Viewer,
    pub request_id: Arc<str>,
    /// (subject, field) pairs already journaled for this response: one entry each, however
    /// many times the page repeats the value.
    journaled: HashSet<(String, String)>,
    /// Restrictions (Art. 18): the rights service to ask, the roles the policy lets see a
    /// restricted citizen's values, and the answers already read for this response.
    restrictions: Option<(Arc<crate::rights::service::RightsService>, Vec<String>)>,
    restricted: std::collections::HashMap<String, bool>,
    /// Retention: archived values only for the archive roles with a reason, forgotten ones
    /// for nobody.
    archive: Option<crate::retention::reveal::ArchiveCheck>,
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
        Self {
            vault,
            audit,
            clock,
            processing,
            viewer,
            request_id,
            journaled: HashSet::new(),
            restrictions: None,
            restricted: std::collections::HashMap::new(),
            archive: None,
        }
    }

    /// Values whose retention moved on are limited as `retention::reveal` says.
    pub fn with_archive(mut self, archive: crate::retention::reveal::ArchiveCheck) -> Self {
        self.archive = Some(archive);
        self
    }

    /// Agents see a restricted citizen's values only with one of `roles`.
    pub fn with_restrictions(mut self, rights: Arc<crate::rights::service::RightsService>, roles: Vec<String>) -> Self {
        self.restrictions = Some((rights, roles));
        self
    }

    /// False when `subject` restricted this activity and the agent has none of the roles the
    /// policy allows; a failure to read counts as restricted (the placeholder is safe).
    async fn restriction_allows(&mut self, subject: &str) -> bool {
        let Viewer::Agent { roles, .. } = &self.viewer else { return true };
        let Some((rights, allowed)) = &self.restrictions else { return true };
        if roles.iter().any(|r| allowed.contains(r)) {
            return true;
        }
        if let Some(known) = self.restricted.get(subject) {
            return !known;
        }
        let marked = rights
            .is_marked(subject, &self.processing.activity, crate::rights::restriction::RESTRICTED)
            .await
            .unwrap_or(true);
        self.restricted.insert(subject.to_owned(), marked);
        !marked
    }

    /// Wraps a response body of `kind` so its tokens are revealed or masked as it streams.
    pub fn body<B>(self, kind: TextKind, body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let frames = http_body_util::BodyDataStream::new(body);
        // Boxed: the stream moves its state in and out of each step, a pointer is cheap to move.
        let state = Box::new(BodyState { r: self, frames, scanner: StreamScanner::new(), writer: Writer::new(kind) });
        let stream = futures_util::stream::unfold(Some(state), |state| async move {
            let mut s = state?;
            let (pieces, ended) = match s.frames.next().await {
                Some(Ok(chunk)) => (owned_pieces(|mut out| s.scanner.push(&chunk, &mut out)), false),
                Some(Err(e)) => return Some((Err(e.into()), None)),
                None => (owned_pieces(|mut out| s.scanner.finish(&mut out)), true),
            };
            let st = &mut *s;
            let out = if pieces.iter().any(|p| matches!(p, Owned::Token(_))) {
                // Opening tokens waits on the vault: a large future, boxed only when needed.
                Box::pin(st.r.render(pieces, &mut st.writer, ended)).await
            } else {
                text_only(pieces, &mut st.writer, ended)
            };
            Some((Ok::<_, Box<dyn std::error::Error + Send + Sync>>(out), (!ended).then_some(s)))
        });
        Body::from_stream(stream)
    }

    /// Whether any response header holds a token: only then is [`Revealer::headers`] worth
    /// its future (opening tokens waits on the vault, whose futures are large).
    pub fn headers_hold_tokens(headers: &HeaderMap) -> bool {
        headers.values().any(|v| has_token_prefix(v.as_bytes()))
    }

    /// Tokens in the response's headers (a `Location` or a custom header carrying one),
    /// revealed or masked as in the body, written percent-encoded.
    pub async fn headers(&mut self, headers: &mut HeaderMap) {
        let mut names: Vec<HeaderName> = Vec::new();
        for (name, value) in headers.iter() {
            if has_token_prefix(value.as_bytes()) && !names.contains(name) {
                names.push(name.clone());
            }
        }
        for name in names {
            let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
            headers.remove(&name);
            for value in values {
                let revealed = self.header_value(value.as_bytes()).await;
                headers.append(name.clone(), revealed);
            }
        }
    }

    async fn header_value(&mut self, raw: &[u8]) -> HeaderValue {
        let pieces = owned_pieces(|mut out| scan_all(raw, &mut out));
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        for p in pieces {
            match p {
                Owned::Text(t) => out.extend_from_slice(&t),
                Owned::Token(t) => {
                    let shown = self.reveal(&t).await;
                    let text = shown.as_deref().map_or(PLACEHOLDER, String::as_str);
                    out.extend(utf8_percent_encode(text, HEADER_KEEP).flat_map(str::bytes));
                }
            }
        }
        // The bytes around tokens came from a valid header value and the rest is ASCII; should
        // it not parse, nothing of the original is kept.
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The pieces of one chunk, tokens replaced; at the end, what the writer held back.
    async fn render(&mut self, pieces: Vec<Owned>, writer: &mut Writer, last: bool) -> Bytes {
        let mut out = Vec::new();
        for p in pieces {
            match p {
                Owned::Text(t) => writer.text(&t, &mut out),
                Owned::Token(t) => match self.reveal(&t).await {
                    Some(value) => writer.value(&value, &mut out),
                    None => writer.placeholder(PLACEHOLDER, &mut out),
                },
            }
        }
        if last {
            writer.finish(&mut out);
        }
        Bytes::from(out)
    }

    /// The clear value, when this viewer may see it. Unknown, shredded or foreign tokens,
    /// and any failure, give `None`: the placeholder is the safe answer.
    async fn reveal(&mut self, token: &str) -> Option<Zeroizing<String>> {
        let openable = self.vault.openable(token).await.ok()??;
        let (subject, activity) = (openable.subject(), openable.activity());
        if activity != &*self.processing.activity {
            return None;
        }
        if !self.restriction_allows(subject).await {
            return None;
        }
        let processing = self.processing.clone();
        let candidates = processing.fields.iter().filter(|f| f.protection == Protection::Encrypt);
        for field in candidates {
            let verdict = self.archive_verdict(subject, field).await;
            match &verdict {
                Verdict::Placeholder => continue,
                Verdict::Open if !self.may_see(subject, field) => continue,
                _ => {}
            }
            let ctx = FieldContext { activity, field: &field.name, subject };
            if let Ok(value) = openable.open(&ctx) {
                // A reveal to an agent that cannot be journaled does not happen.
                return self.journal(subject, field, &verdict).await.then_some(value);
            }
        }
        None
    }

    async fn archive_verdict(&mut self, subject: &str, field: &Field) -> Verdict {
        let Some(archive) = self.archive.as_mut() else { return Verdict::Open };
        let (own, roles) = match &self.viewer {
            Viewer::Citizen(mine) => (Some(mine.iter().any(|m| m == subject)), &[][..]),
            Viewer::Agent { roles, .. } => (None, roles.as_slice()),
            Viewer::Anonymous => (Some(false), &[][..]),
        };
        archive.verdict(subject, &field.category, own, roles).await
    }

    fn may_see(&self, subject: &str, field: &Field) -> bool {
        match &self.viewer {
            Viewer::Citizen(mine) => mine.iter().any(|m| m == subject),
            Viewer::Agent { roles, .. } => roles.iter().any(|r| field.visible_to.contains(r)),
            Viewer::Anonymous => false,
        }
    }

    /// Journals a reveal to an agent (citizens seeing their own data are not journaled);
    /// false when it could not be, and the value must not be shown.
    async fn journal(&mut self, subject: &str, field: &Field, verdict: &Verdict) -> bool {
        let Viewer::Agent { id, roles } = &self.viewer else { return true };
        let key = (subject.to_owned(), field.name.clone());
        if self.journaled.contains(&key) {
            return true;
        }
        let Some(audit) = &self.audit else {
            tracing::warn!("a reveal to an agent was refused: no journal to record it in");
            return false;
        };
        let role = match verdict {
            Verdict::Archived { role, .. } => role.clone(),
            _ => roles.iter().find(|r| field.visible_to.contains(r)).cloned().unwrap_or_else(|| "agent".into()),
        };
        let (Ok(agent), Ok(role), Ok(field_id), Ok(subject)) =
            (Ident::new(id.clone()), Ident::new(role), Ident::new(field.name.clone()), Ident::new(subject))
        else {
            tracing::warn!("a reveal was refused: an identifier is not journal-safe");
            return false;
        };
        let operation = match verdict {
            Verdict::Archived { reason, .. } => match Ident::new(reason.as_str()) {
                Ok(reason) => Operation::ArchiveReveal { fields: vec![field_id], reason },
                Err(_) => return false,
            },
            _ => Operation::Reveal { fields: vec![field_id] },
        };
        let mut event = AuditEvent::system(operation, self.clock.now());
        event.actor = Actor { kind: ActorKind::Agent, id: agent };
        event.role = role;
        event.activity = Ident::new(self.processing.activity.to_string()).ok();
        event.purpose = Ident::new(self.processing.purpose.to_string()).ok();
        event.subject = Some(subject);
        event.outcome = Outcome::Success;
        event.request_id = Ident::new(self.request_id.to_string()).ok();
        match audit.record(event).await {
            Ok(()) => {
                self.journaled.insert(key);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "a reveal was refused: it could not be journaled");
                false
            }
        }
    }
}

fn has_token_prefix(value: &[u8]) -> bool {
    value.windows(crate::crypto::token::PREFIX.len()).any(|w| w == crate::crypto::token::PREFIX.as_bytes())
}

/// A scanned piece that owns its bytes, so tokens can be resolved across awaits.
enum Owned {
    Text(Vec<u8>),
    Token(String),
}

/// What [`Revealer::body`] keeps between chunks.
struct BodyState<B> {
    r: Revealer,
    frames: http_body_util::BodyDataStream<B>,
    scanner: StreamScanner,
    writer: Writer,
}

/// [`Revealer::render`] for pieces without a token: nothing to wait for.
fn text_only(pieces: Vec<Owned>, writer: &mut Writer, last: bool) -> Bytes {
    let mut out = Vec::new();
    for p in pieces {
        if let Owned::Text(t) = p {
            writer.text(&t, &mut out);
        }
    }
    if last {
        writer.finish(&mut out);
    }
    Bytes::from(out)
}

fn owned_pieces(scan: impl FnOnce(&mut dyn FnMut(Piece<'_>))) -> Vec<Owned> {
    let mut pieces = Vec::new();
    scan(&mut |p| match p {
        Piece::Text(t) => pieces.push(Owned::Text(t.to_vec())),
        Piece::Token(t) => pieces.push(Owned::Token(t.to_owned())),
    });
    pieces
}
