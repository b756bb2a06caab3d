//! Server-side sessions. The browser holds only a random opaque id (32 bytes, hex) in a
//! `__Host-` cookie; the store keeps its SHA-256. A bounded in-process cache keeps the store
//! off the hot path: an entry is trusted for at most [`REVALIDATE_AFTER`], then read again, so
//! a session revoked on another instance stops working here within that delay (< 2 s), or at
//! once when the store carries notifications (PostgreSQL, see [`SessionService::forget_ended`]).
//!
//! At rest, a session's identity claims and ID token are sealed under a key derived from the
//! cookie value (`auth::sealed`), and an ended session's row is deleted: the store never
//! holds a name, a birth date or an e-mail in clear.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::sealed::{SealError, SessionKey};
use crate::clock::{Clock, Random, RandomError, hex, random_hex};
use crate::store::{Change, SessionRow, Store, StoreError};

/// How long a cached session is trusted before it is read from the store again.
pub const REVALIDATE_AFTER: Duration = Duration::from_secs(1);
/// Most sessions kept in the cache; beyond, stale entries (then all) are dropped.
const MAX_CACHED: usize = 50_000;

/// Who signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Citizen,
    Agent,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Citizen => "citizen",
            Self::Agent => "agent",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "citizen" => Some(Self::Citizen),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }
}

/// Which sessions an operator ends (`guichet sessions revoke`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    All,
    /// One person: the provider's `sub` (the internal account key) or a pseudonym an
    /// upstream received in `X-Guichet-Subject`.
    Subject(String),
}

/// A live session, as the proxy phases see it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub kind: Kind,
    pub issuer: String,
    /// The provider's pairwise `sub`: the account key (never the email).
    pub subject: String,
    pub provider_sid: Option<String>,
    pub acr: String,
    /// Validated identity claims. Personal data: never logged.
    pub claims: BTreeMap<String, String>,
    pub roles: Vec<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// Values derived from the session once, on first use (see [`Derived`]).
    pub derived: Derived,
}

/// Values derived from a session with the gateway's keys, computed at most once per session
/// object: the cache hands the same object to every request for up to [`REVALIDATE_AFTER`],
/// so the consent phase derives the citizen's pseudonym (an HMAC) once rather than per
/// request. Filled only by the `Auth` that resolved the session (one per process, one key).
/// Not part of what a session is: ignored by `==`, never shown by `Debug`.
#[derive(Clone, Default)]
pub struct Derived {
    pub(crate) consent_subject: OnceLock<String>,
    pub(crate) field_subject: OnceLock<String>,
    /// Per-sector field and consent subjects, indexed by `Sector::index` (`general` unused:
    /// it is the two above).
    pub(crate) sector_fields: [OnceLock<String>; crate::policy::Sector::ALL.len()],
    pub(crate) sector_consents: [OnceLock<String>; crate::policy::Sector::ALL.len()],
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

/// What a successful sign-in establishes.
#[derive(Clone)]
pub struct NewSession {
    pub kind: Kind,
    pub issuer: String,
    pub subject: String,
    pub provider_sid: Option<String>,
    pub acr: String,
    pub claims: BTreeMap<String, String>,
    pub roles: Vec<String>,
    pub id_token: String,
}

// Sessions hold the account key, identity claims and the ID token: `Debug` shows only what
// is safe in a log line.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("kind", &self.kind)
            .field("acr", &self.acr)
            .field("roles", &self.roles)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession").field("kind", &self.kind).field("acr", &self.acr).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error("stored session is corrupt")]
    Corrupt,
    #[error(transparent)]
    Sealed(#[from] SealError),
}

/// Columns of a session row whose value is sealed under the cookie's key.
const CLAIMS: &str = "claims";
const ID_TOKEN: &str = "id_token";

#[derive(Debug, Clone)]
struct Cached {
    session: Arc<Session>,
    last_seen: OffsetDateTime,
    checked: Instant,
}

#[derive(Debug)]
pub struct SessionService {
    store: Store,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    idle: time::Duration,
    absolute: time::Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

/// SHA-256 of a cookie value, hex: what the store and the cache are keyed by.
pub fn hash_id(cookie_value: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cookie_value.as_bytes()).as_ref())
}

/// A session id is exactly 64 lowercase hex characters; anything else is not worth a lookup.
fn well_formed(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SessionService {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        idle: Duration,
        absolute: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            random,
            idle: to_time(idle),
            absolute: to_time(absolute),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a session with a fresh id; returns the cookie value and the session.
    pub async fn create(&self, new: NewSession) -> Result<(String, Arc<Session>), SessionError> {
        let id = random_hex::<32>(self.random.as_ref())?;
        let now = self.clock.now();
        let id_hash = hash_id(&id);
        let key = SessionKey::of_cookie(&id)?;
        let claims = serde_json::to_string(&new.claims).map_err(|_| SessionError::Corrupt)?;
        let rng = self.random.as_ref();
        let row = SessionRow {
            claims: key.seal(&id_hash, CLAIMS, &claims, rng)?,
            id_token: key.seal(&id_hash, ID_TOKEN, &new.id_token, rng)?,
            id_hash,
            kind: new.kind.as_str().to_owned(),
            issuer: new.issuer,
            subject: new.subject,
            provider_sid: new.provider_sid,
            acr: new.acr,
            roles: serde_json::to_string(&new.roles).map_err(|_| SessionError::Corrupt)?,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.absolute,
            revoked_at: None,
        };
        self.store.sessions().insert(&row).await?;
        let mut session = shell_of(&row)?;
        session.claims = new.claims;
        let session = Arc::new(session);
        self.remember(&row.id_hash, session.clone(), now);
        Ok((id, session))
    }

    /// The live session behind a cookie value, if any. Served from the cache when the entry
    /// was checked less than [`REVALIDATE_AFTER`] ago; the store is written only to record
    /// activity, at most once per a quarter of the idle timeout (capped at one minute).
    pub async fn resolve(&self, cookie_value: &str) -> Result<Option<Arc<Session>>, SessionError> {
        if !well_formed(cookie_value) {
            return Ok(None);
        }
        let id_hash = hash_id(cookie_value);
        let now = self.clock.now();
        let cached = self.cached(&id_hash);
        let entry = match cached {
            Some(c) if c.checked.elapsed() < REVALIDATE_AFTER => c,
            _ => match self.load(cookie_value, &id_hash).await? {
                Some(c) => c,
                None => {
                    self.forget(&id_hash);
                    return Ok(None);
                }
            },
        };
        if now >= entry.session.expires_at || now - entry.last_seen > self.idle {
            self.forget(&id_hash);
            self.store.sessions().delete(&id_hash).await?;
            return Ok(None);
        }
        if now - entry.last_seen >= self.touch_interval() {
            self.store.sessions().touch(&id_hash, now).await?;
            self.update(&id_hash, Cached { last_seen: now, ..entry.clone() });
        }
        Ok(Some(entry.session))
    }

    /// Ends a session (logout, sign-in over it, admin) by deleting its row; returns the row
    /// it had, claims and ID token opened, so logout can still send the provider its
    /// `id_token_hint`.
    pub async fn revoke(&self, cookie_value: &str) -> Result<Option<SessionRow>, SessionError> {
        if !well_formed(cookie_value) {
            return Ok(None);
        }
        let id_hash = hash_id(cookie_value);
        self.forget(&id_hash);
        let Some(mut row) = self.store.sessions().delete(&id_hash).await? else { return Ok(None) };
        self.store.announce(&Change::SessionEnded(id_hash.clone())).await;
        let key = SessionKey::of_cookie(cookie_value)?;
        row.claims = key.open(&id_hash, CLAIMS, &row.claims)?;
        row.id_token = key.open(&id_hash, ID_TOKEN, &row.id_token)?;
        Ok(Some(row))
    }

    /// Ends the sessions a provider's back-channel logout names; returns how many.
    pub async fn revoke_provider_sessions(
        &self,
        issuer: &str,
        subject: Option<&str>,
        sid: Option<&str>,
    ) -> Result<u64, SessionError> {
        let ended = self.store.sessions().delete_by_subject(issuer, subject, sid).await?;
        for id_hash in &ended {
            self.forget(id_hash);
            self.store.announce(&Change::SessionEnded(id_hash.clone())).await;
        }
        Ok(u64::try_from(ended.len()).unwrap_or(u64::MAX))
    }

    /// Ends every session (admin); returns how many.
    pub async fn revoke_all(&self) -> Result<u64, SessionError> {
        self.forget_all();
        let n = self.store.sessions().delete_all().await?;
        self.store.announce(&Change::AllSessionsEnded).await;
        Ok(n)
    }

    /// Ends the sessions `matches` selects (admin); returns how many. The admin has no
    /// cookie: `matches` sees each session without its (sealed) claims. Rows that no longer
    /// parse are left to expire: they cannot be resolved anyway.
    pub async fn revoke_where(&self, matches: impl Fn(&Session) -> bool) -> Result<u64, SessionError> {
        let mut ended = 0;
        for row in self.store.sessions().list_all().await? {
            if shell_of(&row).is_ok_and(|s| matches(&s)) {
                self.forget(&row.id_hash);
                if self.store.sessions().delete(&row.id_hash).await?.is_some() {
                    self.store.announce(&Change::SessionEnded(row.id_hash.clone())).await;
                    ended += 1;
                }
            }
        }
        Ok(ended)
    }

    /// Drops from the cache a session ended elsewhere (another instance, the admin
    /// command), as the store's notifications report it.
    pub fn forget_ended(&self, id_hash: &str) {
        self.forget(id_hash);
    }

    /// Drops every cached session: all sessions ended, or notifications may have been
    /// missed (the next request of each reads its session again).
    pub fn forget_all(&self) {
        if let Ok(mut c) = self.cache.lock() {
            c.clear();
        }
    }

    fn touch_interval(&self) -> time::Duration {
        let quarter: time::Duration = self.idle / 4;
        quarter.min(time::Duration::minutes(1))
    }

    async fn load(&self, cookie_value: &str, id_hash: &str) -> Result<Option<Cached>, SessionError> {
        let Some(row) = self.store.sessions().get(id_hash).await? else { return Ok(None) };
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        let mut session = shell_of(&row)?;
        let claims = SessionKey::of_cookie(cookie_value)?.open(id_hash, CLAIMS, &row.claims)?;
        session.claims = serde_json::from_str(&claims).map_err(|_| SessionError::Corrupt)?;
        let session = Arc::new(session);
        let entry = Cached { session, last_seen: row.last_seen_at, checked: Instant::now() };
        self.update(id_hash, entry.clone());
        Ok(Some(entry))
    }

    fn cached(&self, id_hash: &str) -> Option<Cached> {
        self.cache.lock().ok()?.get(id_hash).cloned()
    }

    fn remember(&self, id_hash: &str, session: Arc<Session>, now: OffsetDateTime) {
        self.update(id_hash, Cached { session, last_seen: now, checked: Instant::now() });
    }

    fn update(&self, id_hash: &str, entry: Cached) {
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= MAX_CACHED {
                c.retain(|_, e| e.checked.elapsed() < REVALIDATE_AFTER);
                if c.len() >= MAX_CACHED {
                    c.clear();
                }
            }
            c.insert(id_hash.to_owned(), entry);
        }
    }

    fn forget(&self, id_hash: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(id_hash);
        }
    }
}

/// The session a row describes, without its claims (sealed: only the cookie opens them).
fn shell_of(row: &SessionRow) -> Result<Session, SessionError> {
    Ok(Session {
        id_hash: row.id_hash.clone(),
        kind: Kind::parse(&row.kind).ok_or(SessionError::Corrupt)?,
        issuer: row.issuer.clone(),
        subject: row.subject.clone(),
        provider_sid: row.provider_sid.clone(),
        acr: row.acr.clone(),
        claims: BTreeMap::new(),
        roles: serde_json::from_str(&row.roles).map_err(|_| SessionError::Corrupt)?,
        created_at: row.created_at,
        expires_at: row.expires_at,
        derived: Derived::default(),
    })
}

pub fn to_time(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_account_key_claims_and_tokens() {
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);
        let s = Session {
            id_hash: "h".into(),
            kind: Kind::Citizen,
            issuer: "https://idp".into(),
            subject: "SUB-SECRET".into(),
            provider_sid: Some("SID-SECRET".into()),
            acr: "eidas1".into(),
            claims: BTreeMap::from([("family_name".to_owned(), "DUBOIS".to_owned())]),
            roles: vec![],
            created_at: at,
            expires_at: at,
            derived: Derived::default(),
        };
        let shown = format!("{s:?}");
        for secret in ["SUB-SECRET", "SID-SECRET", "DUBOIS"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn only_64_hex_ids_are_looked_up() {
        assert!(well_formed(&"a".repeat(64)));
        assert!(!well_formed(&"A".repeat(64)));
        assert!(!well_formed("abc"));
        assert_eq!(hash_id("x").len(), 64);
    }
}
