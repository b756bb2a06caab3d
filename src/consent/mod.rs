//! What citizens agreed to: the consent ledger, its enforcement and its pages. Declared after
//! `auth` (it needs to know who is asking) and before `policy` in request order: the proxy's
//! consent phase runs right after the policy decision, reading the purpose it found. See
//! docs/consent.md.
//!
//! - [`state`]: the pure current-state function (table-tested);
//! - [`receipt`]: the signed receipt of an event (Kantara v1.1 / ISO/IEC TS 27560 fields);
//! - [`pages`]: `/.guichet/consentement/` for citizens and agents;
//! - this module: [`ConsentService`] — recording (through the audit journal, acknowledged),
//!   reading, and the cache that keeps the store off the hot path.

pub mod pages;
pub mod receipt;
pub mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use ring::digest;
use time::OffsetDateTime;
use tokio::time::Instant;

pub use state::{Event, State};

use crate::audit::ledger::{self, LedgerBreak};
use crate::audit::{Actor, Audit, AuditError, AuditEvent, Channel, Ident, IdentityCheck, Operation, Outcome, Verifier};
use crate::clock::{Clock, hex};
use crate::policy::model::ActivityFile;
use crate::store::{ConsentRow, Store, StoreError};

/// How long a cached ledger is trusted before it is read again: a withdrawal recorded on
/// another instance takes effect here within this delay (< 2 s), like sessions.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);
/// Most citizens kept in the cache; beyond, stale entries (then all) are dropped.
const MAX_CACHED: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("no such consent-based purpose")]
    UnknownPurpose,
    #[error("an identifier cannot be journaled")]
    BadIdent,
    #[error("a ledger row does not decode")]
    Corrupt,
    /// A row does not match its journal entry or signature: refused, fail closed.
    #[error("the consent ledger does not verify: {0}")]
    Tampered(crate::audit::ledger::LedgerBreak),
}

#[derive(Debug)]
struct Cached {
    events: Arc<[Event]>,
    checked: Instant,
}

/// One consent-based purpose, with what a consent event must record about it.
#[derive(Debug, Clone)]
pub struct ConsentPurpose {
    pub activity: Arc<ActivityFile>,
    pub purpose: String,
    pub notice_text: String,
    pub notice_version: String,
    /// SHA-256 of the exact notice text, hex.
    pub notice_sha256: String,
    /// Digest of the activity's whole policy file (see [`policy_version`]).
    pub policy_version: String,
}

/// Who records an event, through which channel, and how the citizen was identified.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub actor: Actor,
    pub role: Ident,
    pub channel: Channel,
    pub identified_by: IdentityCheck,
    pub request_id: Option<Ident>,
}

/// The consent service shared by the proxy's consent phase and the pages.
#[derive(Debug)]
pub struct ConsentService {
    store: Store,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<Arc<str>, Cached>>,
    /// The checkpoint key's public halves: ledger rows are signed with it.
    verifier: Verifier,
    /// Rows refused on load (a metric: any increase is an alert).
    rejected: Counter,
}

impl ConsentService {
    pub fn new(store: Store, clock: Arc<dyn Clock>, verifier: Verifier, rejected: Counter) -> Self {
        Self { store, clock, cache: Mutex::new(HashMap::new()), verifier, rejected }
    }

    /// [`ConsentService::state`] in a sector: under the sector's `subject`, else (never given
    /// there) under `earlier`, the v1 subject consents given before the activity had a sector
    /// were recorded under (`state::current_in_sector`).
    pub async fn state_in_sector(
        &self,
        subject: &str,
        earlier: Option<&str>,
        activity: &str,
        purpose: &str,
        notice_version: &str,
    ) -> Result<State, ConsentError> {
        let state = self.state(subject, activity, purpose, notice_version).await?;
        match earlier {
            Some(earlier) if state == State::Never && earlier != subject => {
                self.state(earlier, activity, purpose, notice_version).await
            }
            _ => Ok(state),
        }
    }

    /// The state of (`activity`, `purpose`) for `subject` against the notice version in force:
    /// from the cache while it is fresh, else from the store.
    pub async fn state(
        &self,
        subject: &str,
        activity: &str,
        purpose: &str,
        notice_version: &str,
    ) -> Result<State, ConsentError> {
        let events = match self.cached(subject) {
            Some(events) => events,
            None => self.reload(subject).await?,
        };
        Ok(state::current(&events, activity, purpose, notice_version, self.clock.now()))
    }

    /// The cached events of `subject` when checked less than [`REVALIDATE_AFTER`] ago: the hot
    /// path (one lock, one hash lookup, no allocation).
    pub fn cached(&self, subject: &str) -> Option<Arc<[Event]>> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(subject)?;
        (c.checked.elapsed() < REVALIDATE_AFTER).then(|| c.events.clone())
    }

    /// Reads `subject`'s events from the store, checks each against its journal entry and
    /// signature (`audit::ledger`), and caches them. One row that does not verify refuses
    /// the whole history: the state could be anything.
    pub async fn reload(&self, subject: &str) -> Result<Arc<[Event]>, ConsentError> {
        let rows = self.store.consent().checked_events_of(subject).await?;
        let missing = self.store.consent().entry_without_row(subject).await?;
        let checked = rows
            .iter()
            .try_for_each(|r| ledger::check(r, &self.verifier))
            .and_then(|()| missing.map_or(Ok(()), |seq| Err(LedgerBreak::MissingRow { seq })));
        if let Err(b) = checked {
            self.rejected.inc();
            // The row's number and what failed: nothing personal.
            tracing::error!(seq = b.seq(), cause = %b,
                "ALERT: consent ledger row refused; consent-based purposes of this citizen are refused \
                 until the store is repaired (run `guichet audit verify`)");
            return Err(ConsentError::Tampered(b));
        }
        let events: Arc<[Event]> = rows.iter().map(|r| event_of(&r.row)).collect::<Result<Vec<_>, _>>()?.into();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, c| c.checked.elapsed() < REVALIDATE_AFTER);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(subject.into(), Cached { events: events.clone(), checked: Instant::now() });
        }
        Ok(events)
    }

    /// `subject`'s whole history, oldest first, straight from the store.
    pub async fn history(&self, subject: &str) -> Result<Vec<ConsentRow>, ConsentError> {
        Ok(self.store.consent().events_of(subject).await?)
    }

    /// Every event of every citizen recorded in [`from`, `to`), in order (the DPO's ledger).
    pub async fn events_between(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<ConsentRow>, ConsentError> {
        let (from, to) = (crate::audit::event::to_micros(from), crate::audit::event::to_micros(to));
        Ok(self.store.consent().events_between(from, to).await?)
    }

    /// `subject`'s events, oldest first, each with its journal entry (if not pruned) and the
    /// result of checking it against that entry and the ledger signature: the DPO's proof.
    pub async fn proof(
        &self,
        subject: &str,
    ) -> Result<Vec<(crate::store::LedgerRow, Result<(), LedgerBreak>)>, ConsentError> {
        let rows = self.store.consent().checked_events_of(subject).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let checked = ledger::check(&r, &self.verifier);
                (r, checked)
            })
            .collect())
    }

    /// Records a consent given (`given`) or withdrawn for `subject`, through the journal's
    /// acknowledged path: returns the event's sequence number once it is committed (journal
    /// entry and ledger row in one transaction). The local cache forgets `subject` at once, so
    /// the very next request here sees the change.
    pub async fn record(
        &self,
        audit: &Audit,
        subject: &str,
        purpose: &ConsentPurpose,
        given: bool,
        by: Recorder,
    ) -> Result<i64, ConsentError> {
        let id = |s: &str| Ident::new(s).map_err(|_| ConsentError::BadIdent);
        let facts = (by.channel, by.identified_by);
        let (notice_version, notice_sha256, policy_version) =
            (id(&purpose.notice_version)?, id(&purpose.notice_sha256)?, id(&purpose.policy_version)?);
        let operation = if given {
            Operation::ConsentGiven {
                channel: facts.0,
                identified_by: facts.1,
                notice_version,
                notice_sha256,
                policy_version,
            }
        } else {
            Operation::ConsentWithdrawn {
                channel: facts.0,
                identified_by: facts.1,
                notice_version,
                notice_sha256,
                policy_version,
            }
        };
        let mut event = AuditEvent::system(operation, self.clock.now());
        event.actor = by.actor;
        event.role = by.role;
        event.activity = Some(id(&purpose.activity.id)?);
        event.purpose = Some(id(&purpose.purpose)?);
        event.subject = Some(id(subject)?);
        event.outcome = Outcome::Success;
        event.request_id = by.request_id;
        let seq = audit.append_sync(event).await?;
        self.forget(subject);
        self.store.announce(&crate::store::Change::Consent(subject.to_owned())).await;
        Ok(seq)
    }

    /// Drops every cached ledger (notifications from other instances may have been missed).
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Drops `subject` from the cache.
    pub fn forget(&self, subject: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(subject);
        }
    }

    /// Creates a one-time code standing for `subject` for `lifetime`; returns the code.
    pub async fn new_code(&self, subject: &str, code: &str, lifetime: time::Duration) -> Result<(), ConsentError> {
        let expires = crate::audit::event::to_micros(self.clock.now() + lifetime);
        self.store.consent().insert_code(&sha256_hex(&normalise_code(code)), subject, expires).await?;
        Ok(())
    }

    /// The subject a one-time code stands for, the code staying usable (a screen that only
    /// looks ahead, before the code is used for good).
    pub async fn code_subject(&self, code: &str) -> Result<Option<String>, ConsentError> {
        let now = crate::audit::event::to_micros(self.clock.now());
        Ok(self.store.consent().code_subject(&sha256_hex(&normalise_code(code)), now).await?)
    }

    /// The subject a one-time code stands for; the code is used up either way.
    pub async fn redeem_code(&self, code: &str) -> Result<Option<String>, ConsentError> {
        let now = crate::audit::event::to_micros(self.clock.now());
        Ok(self.store.consent().take_code(&sha256_hex(&normalise_code(code)), now).await?)
    }
}

/// Codes are read out loud: case, spaces and dashes do not matter.
pub fn normalise_code(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_uppercase()).collect()
}

/// A ledger row as the state function needs it.
fn event_of(row: &ConsentRow) -> Result<Event, ConsentError> {
    let body: AuditEvent = serde_json::from_str(&row.body).map_err(|_| ConsentError::Corrupt)?;
    let version = match &body.operation {
        Operation::ConsentGiven { notice_version, .. } | Operation::ConsentWithdrawn { notice_version, .. } => {
            notice_version.as_str()
        }
        _ => return Err(ConsentError::Corrupt),
    };
    Ok(Event {
        seq: row.seq,
        activity: row.activity.as_str().into(),
        purpose: row.purpose.as_str().into(),
        given: row.given != 0,
        at: body.at,
        notice_version: version.into(),
    })
}

pub fn sha256_hex(s: &str) -> String {
    hex(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

/// The version of an activity's policy a consent was given under: the first 16 hex digits of
/// the SHA-256 of its canonical JSON (key order fixed by `serde_json::Value`).
pub fn policy_version(a: &ActivityFile) -> String {
    let canonical = serde_json::to_value(a).and_then(|v| serde_json::to_string(&v)).unwrap_or_default();
    sha256_hex(&canonical).chars().take(16).collect()
}

/// Every consent-based purpose of `activities`, in order.
pub fn consent_purposes(activities: &[Arc<ActivityFile>]) -> Vec<ConsentPurpose> {
    let mut out = Vec::new();
    for a in activities {
        let Some(notice) = &a.consent else { continue };
        for p in &a.purposes {
            if crate::policy::notice::basis_of(p.legal_basis.as_ref())
                != Some(crate::policy::model::LegalBasis::Consent)
            {
                continue;
            }
            out.push(ConsentPurpose {
                activity: a.clone(),
                purpose: p.id.clone(),
                notice_text: notice.text.clone(),
                notice_version: notice.version.clone(),
                notice_sha256: sha256_hex(&notice.text),
                policy_version: policy_version(a),
            });
        }
    }
    out
}

/// The consent-based purpose (`activity`, `purpose`) of `activities`.
pub fn find_purpose(activities: &[Arc<ActivityFile>], activity: &str, purpose: &str) -> Option<ConsentPurpose> {
    consent_purposes(activities).into_iter().find(|p| p.activity.id == activity && p.purpose == purpose)
}

/// Microseconds to a time, for display.
pub fn time_of(us: i64) -> Option<OffsetDateTime> {
    crate::audit::event::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_out_loud_normalise() {
        assert_eq!(normalise_code("ab3-k9 x"), "AB3K9X");
    }

    #[test]
    fn the_newsletter_example_is_a_consent_purpose_with_a_stable_policy_version() {
        let set = crate::policy::load(
            &crate::policy::PolicySource::Memory(crate::policy::load::embedded_examples()),
            &crate::routing::RouteTable::default(),
            &[],
        )
        .unwrap();
        let purposes = consent_purposes(&set.activities);
        let p = purposes.iter().find(|p| p.activity.id == "lettre-information").unwrap();
        assert_eq!(p.purpose, "envoi");
        assert_eq!(p.notice_sha256.len(), 64);
        assert_eq!(p.policy_version, policy_version(&p.activity));
        assert_eq!(p.policy_version.len(), 16);
    }
}

#[cfg(test)]
mod measure {
    use super::*;

    /// The consent check from a warm cache (the hot path of the consent phase, without the
    /// pseudonym derivation): it must answer from memory, correctly, every time. It also
    /// prints its cost (`--nocapture`; figures for docs/performance.md come from a release
    /// build) but asserts no timing, which would flake on shared machines.
    #[tokio::test]
    async fn consent_check_answers_from_the_warm_cache() {
        let store = Store::connect(&"sqlite::memory:".to_owned().into(), &Default::default()).await.unwrap();
        store.migrate().await.unwrap();
        let clock = Arc::new(crate::clock::FixedClock::at(time::macros::datetime!(2026-11-28 12:00 UTC)));
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = crate::audit::Signer::load_or_generate(&dir.path().join("k.p8")).unwrap();
        let svc = ConsentService::new(store.clone(), clock, signer.verifier(), Counter::default());
        let subject = "a".repeat(64);
        svc.reload(&subject).await.unwrap();
        // From here on the store is gone: every answer below comes from the cache.
        store.close().await;
        // The cache entry is revalidated after a second of real time: stop well before, so a
        // loaded machine shortens the measurement instead of failing it.
        let start = std::time::Instant::now();
        let mut n = 0u32;
        while n < 100_000 && start.elapsed() < REVALIDATE_AFTER / 2 {
            let events = svc.cached(&subject).expect("a warm cache entry");
            let state = state::current(&events, "lettre-information", "envoi", "2025-01", svc.clock.now());
            assert_eq!(std::hint::black_box(state), state::State::Never);
            n += 1;
        }
        let per = start.elapsed() / n.max(1);
        eprintln!("consent check from cache: {per:?} per check");
    }
}
