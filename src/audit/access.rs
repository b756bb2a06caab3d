//! Journaling reads and refusals (R45 "consultation", issue 16 item 6): every DPO and
//! supervision page or export read, and every refusal of a role-gated page or route, leaves
//! an entry. Pages call [`Audit::record_read`](super::Audit::record_read) once they have
//! decided to answer, and [`Audit::record_denied`](super::Audit::record_denied) when they
//! refuse someone signed in (anonymous visitors are sent to sign in: no one to name).
//!
//! ```ignore
//! let reader = app.auth.reader(&session, "dpo");
//! app.audit.record_read(&reader, "dpo.incidents", Some("incident:INC-7K3M-Q9XP"), request_id).await;
//! ```
//!
//! The entry is `{"type": "read", "page": …}` with the actor, the role that opened the page,
//! the pseudonymous `record_ref` of the record shown (none for a list) and the request id.
//! Queued like every `record`: a read is not acknowledged to anyone.

use super::event::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};

/// Who reads: the journal's actor and the role that opened the page (`agent` or `citizen`
/// when refused for lack of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reader {
    pub actor: Actor,
    pub role: Ident,
}

impl Reader {
    /// A reader from journal-safe strings; `None` when one is not an identifier (the caller
    /// then journals nothing rather than something misleading, and logs it).
    pub fn new(kind: ActorKind, id: &str, role: &str) -> Option<Self> {
        Some(Self { actor: Actor { kind, id: Ident::new(id).ok()? }, role: Ident::new(role).ok()? })
    }
}

/// The entry for a read (or a refused read) of `page` at `at`.
pub fn read_event(
    reader: &Reader,
    page: &str,
    record_ref: Option<&str>,
    outcome: Outcome,
    request_id: Option<&str>,
    at: time::OffsetDateTime,
) -> Option<AuditEvent> {
    let mut event = AuditEvent::system(Operation::Read { page: Ident::new(page).ok()? }, at);
    event.actor = reader.actor.clone();
    event.role = reader.role.clone();
    event.outcome = outcome;
    event.record_ref = record_ref.and_then(|r| Ident::new(r).ok());
    event.request_id = request_id.and_then(|r| Ident::new(r).ok());
    Some(event)
}
