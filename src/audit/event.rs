//! What the journal records: typed events, never free text. Every string an event carries is
//! an [`Ident`] (letters, digits and `.`, `-`, `_`, `:` only, at most 128 characters), so a
//! name, an e-mail address or a sentence cannot slip into the journal in clear: people appear
//! only as pseudonymous subject ids or agent ids.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Longest identifier accepted in an event.
pub const IDENT_MAX: usize = 128;

/// An identifier safe to journal (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ident(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a journal identifier: 1 to {IDENT_MAX} characters among A-Z a-z 0-9 . - _ :")]
pub struct BadIdent;

impl Ident {
    pub fn new(s: impl Into<String>) -> Result<Self, BadIdent> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= IDENT_MAX
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if ok { Ok(Self(s)) } else { Err(BadIdent) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Ident {
    type Error = BadIdent;
    fn try_from(s: String) -> Result<Self, BadIdent> {
        Self::new(s)
    }
}

impl From<Ident> for String {
    fn from(i: Ident) -> Self {
        i.0
    }
}

impl std::fmt::Display for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A citizen, by the pseudonymous subject id.
    Citizen,
    /// A municipal agent (or the DPO), by the agent id of their identity provider.
    Agent,
    /// The gateway itself (start-up, scheduled jobs, command line).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Ident,
}

impl Actor {
    /// The gateway acting on its own.
    pub fn system() -> Self {
        Self { kind: ActorKind::System, id: Ident("guichet".to_owned()) }
    }
}

/// How a consent or a request reached the gateway (R5: "how").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Online,
    Counter,
    Phone,
    Post,
    /// A rights request sent by e-mail (consent is never taken this way).
    Email,
}

impl Channel {
    pub const ALL: [Channel; 5] = [Self::Online, Self::Counter, Self::Phone, Self::Post, Self::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Counter => "counter",
            Self::Phone => "phone",
            Self::Post => "post",
            Self::Email => "email",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Assisted channels are recorded by an agent, who is then named.
    pub fn is_assisted(self) -> bool {
        !matches!(self, Self::Online)
    }
}

/// How the citizen behind a consent event was identified (R5: "who", without collecting
/// more than needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityCheck {
    /// Signed in through the citizens' identity provider (online channel).
    SignIn,
    /// A one-time code the signed-in citizen generated and read out to the agent.
    OneTimeCode,
    /// The one-time code, and the agent also saw an identity document (counter).
    OneTimeCodeAndDocument,
}

impl IdentityCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::OneTimeCode => "one_time_code",
            Self::OneTimeCodeAndDocument => "one_time_code_and_document",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyAction {
    Generate,
    Rotate,
    Destroy,
}

/// What happened, with the facts each kind needs (all identifiers, no values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Operation {
    SignIn {
        acr: Option<Ident>,
    },
    SignOut,
    /// The actor is the citizen (online) or the agent who recorded it (assisted channels).
    ConsentGiven {
        channel: Channel,
        identified_by: IdentityCheck,
        notice_version: Ident,
        notice_sha256: Ident,
        policy_version: Ident,
    },
    ConsentWithdrawn {
        channel: Channel,
        identified_by: IdentityCheck,
        notice_version: Ident,
        notice_sha256: Ident,
        policy_version: Ident,
    },
    /// Personal fields shown in clear to an agent: the field names, never the values.
    Reveal {
        fields: Vec<Ident>,
    },
    PolicyReload {
        policy_version: Ident,
    },
    ConfigLoaded,
    KeyOperation {
        action: KeyAction,
        key_id: Ident,
    },
    AdminAction {
        action: Ident,
    },
    DpoAction {
        action: Ident,
    },
    RightsRequest {
        right: Ident,
        stage: Ident,
    },
    /// Retention removed the journal up to and including `up_to_seq`.
    JournalPruned {
        up_to_seq: u64,
    },
    /// Written only by the diagnostic command `guichet audit selftest-burst`.
    Diagnostic,
    /// A DPO or supervision page (or export) was read, or refused when `outcome` is `denied`
    /// (R45 "consultation"): `page` names it (`dpo.incidents`), `record_ref` the record shown.
    Read {
        page: Ident,
    },
    /// A retention run's evidence: what it did per activity, category and action (holds
    /// skipped as `held`), and the SHA-256 over the hashed ids of the records acted on.
    RetentionRun {
        run: Ident,
        lines: Vec<RetentionCount>,
        records_sha256: Ident,
        skipped_holds: u64,
        /// Records past their end of life the run left as they were (held, or an action
        /// failed): what the DPO must follow up. Written only when some are, so entries of
        /// runs with none read as before.
        #[serde(default, skip_serializing_if = "is_zero")]
        overdue: u64,
        /// The elimination lists (bordereaux) this run's records were put on, by reference.
        /// Written only when there are some, so entries of runs with none read as before.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        elimination_lists: Vec<Ident>,
    },
    /// Values in intermediate archive shown to an agent, with the typed reason they gave.
    ArchiveReveal {
        fields: Vec<Ident>,
        reason: Ident,
    },
    /// An agent printed and posted the letter of a notice for a citizen without e-mail
    /// (`kind`: the notice's kind; `record_ref`: `notice:<message id>`).
    LetterPosted {
        kind: Ident,
    },
    /// Personal fields an agent entered for the citizen they assist (`subject`), sealed under
    /// that citizen's key: the field names and the channel, never the values.
    AssistedEntry {
        fields: Vec<Ident>,
        channel: Channel,
    },
    /// The gateway's own records deleted once their duration passed: counts per kind only.
    OwnDataPurge {
        lines: Vec<PurgeCount>,
    },
}

/// How many of the gateway's own records of one kind a purge deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeCount {
    pub kind: Ident,
    pub count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One line of a retention run's evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionCount {
    pub activity: Ident,
    pub category: Ident,
    pub action: Ident,
    pub count: u64,
}

impl Operation {
    /// The name stored beside the entry, for the DPO's queries.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SignIn { .. } => "sign_in",
            Self::SignOut => "sign_out",
            Self::ConsentGiven { .. } => "consent_given",
            Self::ConsentWithdrawn { .. } => "consent_withdrawn",
            Self::Reveal { .. } => "reveal",
            Self::PolicyReload { .. } => "policy_reload",
            Self::ConfigLoaded => "config_loaded",
            Self::KeyOperation { .. } => "key_operation",
            Self::AdminAction { .. } => "admin_action",
            Self::DpoAction { .. } => "dpo_action",
            Self::RightsRequest { .. } => "rights_request",
            Self::JournalPruned { .. } => "journal_pruned",
            Self::Diagnostic => "diagnostic",
            Self::Read { .. } => "read",
            Self::RetentionRun { .. } => "retention_run",
            Self::ArchiveReveal { .. } => "archive_reveal",
            Self::AssistedEntry { .. } => "assisted_entry",
            Self::LetterPosted { .. } => "letter_posted",
            Self::OwnDataPurge { .. } => "own_data_purge",
        }
    }
}

/// One journal event (R45: author, time, kind of operation, reference to the data concerned).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub operation: Operation,
    pub actor: Actor,
    pub role: Ident,
    /// Processing activity (policy id) concerned, if any.
    pub activity: Option<Ident>,
    pub purpose: Option<Ident>,
    /// Pseudonymous subject id of the citizen whose data is concerned, if any.
    pub subject: Option<Ident>,
    pub outcome: Outcome,
    pub request_id: Option<Ident>,
    /// UTC, from `App::clock`, kept to the microsecond (both stores hold microseconds).
    #[serde(with = "unix_micros")]
    pub at: OffsetDateTime,
    /// Pseudonymous reference to the record concerned (`incident:INC-…`, `request:DR-…`,
    /// `key:…`, `session:all`), if any. Left out of the body when absent, so entries written
    /// before it existed keep their exact bytes and hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_ref: Option<Ident>,
}

impl AuditEvent {
    /// An event by the gateway itself, with no subject.
    pub fn system(operation: Operation, at: OffsetDateTime) -> Self {
        Self {
            operation,
            actor: Actor::system(),
            role: Ident("system".to_owned()),
            activity: None,
            purpose: None,
            subject: None,
            outcome: Outcome::Success,
            request_id: None,
            at: truncate_to_micros(at),
            record_ref: None,
        }
    }

    /// Microseconds since the Unix epoch, as stored and encoded.
    pub fn at_micros(&self) -> i64 {
        to_micros(self.at)
    }
}

pub fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub fn from_micros(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
}

fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    from_micros(to_micros(t)).unwrap_or(t)
}

/// Times are encoded as an integer number of microseconds: no formatting choices to drift.
mod unix_micros {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::to_micros(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let us = i64::deserialize(d)?;
        super::from_micros(us).ok_or_else(|| serde::de::Error::custom("time out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_refuse_what_could_carry_personal_data_in_clear() {
        assert!(Ident::new("pseudo_3f2a:1").is_ok());
        for bad in ["", "Jean Dupont", "jean@example.fr", "é", &"a".repeat(IDENT_MAX + 1)] {
            assert!(Ident::new(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(serde_json::from_str::<Ident>("\"a b\"").is_err());
    }

    #[test]
    fn events_round_trip_through_json_to_the_microsecond() {
        let at = time::macros::datetime!(2026-11-28 12:00:00.123456789 UTC);
        let e = AuditEvent::system(Operation::ConfigLoaded, at);
        assert_eq!(e.at, time::macros::datetime!(2026-11-28 12:00:00.123456 UTC));
        let back: AuditEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn a_record_ref_is_left_out_when_absent_so_older_bodies_keep_their_bytes() {
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);
        let mut e = AuditEvent::system(Operation::ConfigLoaded, at);
        let body = crate::audit::chain::canonical_body(&e).unwrap();
        assert!(!body.contains("record_ref"), "{body}");
        e.record_ref = Ident::new("incident:INC-1").ok();
        let body = crate::audit::chain::canonical_body(&e).unwrap();
        assert!(body.contains("\"record_ref\":\"incident:INC-1\""), "{body}");
        let back: AuditEvent = serde_json::from_str(&body).unwrap();
        assert_eq!(back, e);
    }
}
