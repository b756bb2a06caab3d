//! Server-side sessions. The browser holds only a random opaque id (32 bytes, hex) in a
//! `__Host-` cookie; the store keeps its SHA-256. A bounded in-process cache keeps the store
//! off the hot path: an entry is trusted for at most [`REVALIDATE_AFTER`], then read again, so
//! a session revoked on another instance stops working here within that delay (< 2 s), or at
//! once when the store carries notifications (PostgreSQL, see [`SessionService::forget_ended`]).
//!
//! The cache is keyed by a keyed 128-bit SipHash-1-3 of the cookie value under a random key
//! drawn once per [`SessionService`], not by the SHA-256: a hit costs ~400 instructions (hash
//! and map) instead of ~4 600 (docs/performance.md). Each entry keeps its session's SHA-256
//! (`id_hash`, what the store and other instances' notices name) and a second map finds an
//! entry by it.
//!
//! At rest, a session's identity claims and ID token are sealed under a key derived from the
//! cookie value (`auth::sealed`), and an ended session's row is deleted: the store never
//! holds a name, a birth date or an e-mail in clear.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use siphasher::sip128::SipHasher13;
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

/// What the cache is keyed by: the keyed SipHash of a cookie value ([`CookieHasher`]).
type CacheKey = u128;

/// Derives cache keys from cookie values. The 128-bit key is random, drawn once per service
/// and never shown (`Debug` hides it): a cache key reveals nothing about the cookie, and a
/// client cannot choose cookies whose keys collide. Cookies are 256 random bits, so two
/// live sessions sharing a cache key is as likely as guessing a 128-bit secret.
struct CookieHasher(SipHasher13);

impl CookieHasher {
    fn new(random: &dyn Random) -> Result<Self, RandomError> {
        let mut key = [0u8; 16];
        random.fill(&mut key)?;
        Ok(Self(SipHasher13::new_with_key(&key)))
    }

    fn key_of(&self, cookie_value: &str) -> CacheKey {
        self.0.hash(cookie_value.as_bytes()).as_u128()
    }
}

impl std::fmt::Debug for CookieHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieHasher(..)")
    }
}

/// Hashes a [`CacheKey`] to its low 64 bits for the map: the key is already a keyed hash, so
/// hashing it again (std's SipHash) would only spend instructions on every request.
#[derive(Default)]
struct LowBits(u64);

impl Hasher for LowBits {
    fn finish(&self) -> u64 {
        self.0
    }

    // Only `u128`s are hashed (below); any other input still hashes, by folding its bytes.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        // Truncation wanted: the low half of a uniformly distributed key.
        self.0 = n as u64;
    }
}

/// The cached sessions, by cache key, and the cache key of each by its `id_hash`: ends are
/// announced by `id_hash` (local revocations, other instances' notices), and must reach the
/// entry without the cookie. Invariant: both maps name the same entries.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<CacheKey, Cached, BuildHasherDefault<LowBits>>,
    by_id_hash: HashMap<String, CacheKey>,
}

impl Cache {
    fn get(&self, key: CacheKey) -> Option<Cached> {
        self.entries.get(&key).cloned()
    }

    /// Stores `entry` under `key`, first making room when the cache holds `max` entries:
    /// entries not checked for [`REVALIDATE_AFTER`] go, then all if that was not enough.
    fn insert(&mut self, key: CacheKey, entry: Cached, max: usize) {
        if self.entries.len() >= max {
            self.entries.retain(|_, e| e.checked.elapsed() < REVALIDATE_AFTER);
            if self.entries.len() >= max {
                self.entries.clear();
            }
            let entries = &self.entries;
            self.by_id_hash.retain(|_, k| entries.contains_key(k));
        }
        self.index(key, &entry.session.id_hash);
        if let Some(old) = self.entries.insert(key, entry) {
            self.unindex_replaced(key, &old);
        }
    }

    /// Points `id_hash` at `key`; an entry it pointed at before under another key goes, so
    /// no entry is left that forgetting `id_hash` would miss.
    fn index(&mut self, key: CacheKey, id_hash: &str) {
        match self.by_id_hash.get_mut(id_hash) {
            Some(k) if *k == key => {}
            Some(k) => {
                let before = std::mem::replace(k, key);
                self.entries.remove(&before);
            }
            None => {
                self.by_id_hash.insert(id_hash.to_owned(), key);
            }
        }
    }

    /// After `key`'s entry was replaced by one of another session (never in practice: two
    /// cookies sharing a cache key), the old session's index entry goes too.
    fn unindex_replaced(&mut self, key: CacheKey, old: &Cached) {
        let new_id = self.entries.get(&key).map(|e| e.session.id_hash.as_str());
        if new_id != Some(old.session.id_hash.as_str()) {
            self.by_id_hash.remove(&old.session.id_hash);
        }
    }

    fn remove_key(&mut self, key: CacheKey) {
        if let Some(old) = self.entries.remove(&key) {
            self.by_id_hash.remove(&old.session.id_hash);
        }
    }

    fn remove_id_hash(&mut self, id_hash: &str) {
        if let Some(key) = self.by_id_hash.remove(id_hash) {
            self.entries.remove(&key);
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_id_hash.clear();
    }
}

#[derive(Debug)]
pub struct SessionService {
    store: Store,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    idle: time::Duration,
    absolute: time::Duration,
    cookies: CookieHasher,
    cache: Mutex<Cache>,
}

/// SHA-256 of a cookie value, hex: what the store is keyed by (a session's `id_hash`).
pub fn hash_id(cookie_value: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cookie_value.as_bytes()).as_ref())
}

/// A session id is exactly 64 lowercase hex characters; anything else is not worth a lookup.
fn well_formed(v: &str) -> bool {
    v.len() == 64 && v.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl SessionService {
    /// Fails only when `random` cannot give the cache's key.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        idle: Duration,
        absolute: Duration,
    ) -> Result<Self, RandomError> {
        Ok(Self {
            cookies: CookieHasher::new(random.as_ref())?,
            store,
            clock,
            random,
            idle: to_time(idle),
            absolute: to_time(absolute),
            cache: Mutex::new(Cache::default()),
        })
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
        self.update(
            self.cookies.key_of(&id),
            Cached { session: session.clone(), last_seen: now, checked: Instant::now() },
        );
        Ok((id, session))
    }

    /// The live session behind a cookie value, if any. Served from the cache when the entry
    /// was checked less than [`REVALIDATE_AFTER`] ago; the store is written only to record
    /// activity, at most once per a quarter of the idle timeout (capped at one minute). A hit
    /// computes no SHA-256: the entry holds its session's `id_hash`.
    pub async fn resolve(&self, cookie_value: &str) -> Result<Option<Arc<Session>>, SessionError> {
        self.resolve_at(cookie_value, self.clock.now()).await
    }

    /// [`Self::resolve`] at `now`, the request's time read by its caller (the proxy reads
    /// the clock once per request).
    pub async fn resolve_at(
        &self,
        cookie_value: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<Session>>, SessionError> {
        if !well_formed(cookie_value) {
            return Ok(None);
        }
        let key = self.cookies.key_of(cookie_value);
        let entry = match self.cached(key) {
            Some(c) if c.checked.elapsed() < REVALIDATE_AFTER => c,
            _ => match self.load(cookie_value, key).await? {
                Some(c) => c,
                None => {
                    self.forget_key(key);
                    return Ok(None);
                }
            },
        };
        let id_hash = &entry.session.id_hash;
        if now >= entry.session.expires_at || now - entry.last_seen > self.idle {
            self.forget_key(key);
            self.store.sessions().delete(id_hash).await?;
            return Ok(None);
        }
        if now - entry.last_seen >= self.touch_interval() {
            self.store.sessions().touch(id_hash, now).await?;
            self.update(key, Cached { last_seen: now, ..entry.clone() });
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

    /// Reads the session behind `cookie_value` from the store (the only place, with
    /// `create`, that computes its SHA-256) and caches it under `key`.
    async fn load(&self, cookie_value: &str, key: CacheKey) -> Result<Option<Cached>, SessionError> {
        let id_hash = hash_id(cookie_value);
        let Some(row) = self.store.sessions().get(&id_hash).await? else { return Ok(None) };
        if row.revoked_at.is_some() {
            return Ok(None);
        }
        let mut session = shell_of(&row)?;
        let claims = SessionKey::of_cookie(cookie_value)?.open(&id_hash, CLAIMS, &row.claims)?;
        session.claims = serde_json::from_str(&claims).map_err(|_| SessionError::Corrupt)?;
        let session = Arc::new(session);
        let entry = Cached { session, last_seen: row.last_seen_at, checked: Instant::now() };
        self.update(key, entry.clone());
        Ok(Some(entry))
    }

    fn cached(&self, key: CacheKey) -> Option<Cached> {
        self.cache.lock().ok()?.get(key)
    }

    fn update(&self, key: CacheKey, entry: Cached) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, entry, MAX_CACHED);
        }
    }

    fn forget(&self, id_hash: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove_id_hash(id_hash);
        }
    }

    fn forget_key(&self, key: CacheKey) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove_key(key);
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

    async fn memory_store() -> Store {
        let store = Store::connect(&"sqlite::memory:".to_owned().into(), &Default::default()).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// One gateway instance on `store`, with its own random cache key.
    fn instance(store: &Store) -> SessionService {
        let clock = Arc::new(crate::clock::FixedClock::at(time::macros::datetime!(2026-11-28 12:00 UTC)));
        let random = Arc::new(crate::clock::SystemRandom::new());
        let (idle, absolute) = (Duration::from_secs(1800), Duration::from_secs(12 * 3600));
        SessionService::new(store.clone(), clock, random, idle, absolute).unwrap()
    }

    fn signed_in(subject: &str) -> NewSession {
        NewSession {
            kind: Kind::Citizen,
            issuer: "https://idp".into(),
            subject: subject.into(),
            provider_sid: None,
            acr: "eidas1".into(),
            claims: BTreeMap::from([("given_name".to_owned(), subject.to_owned())]),
            roles: vec![],
            id_token: "token".into(),
        }
    }

    #[tokio::test]
    async fn a_cached_session_is_served_to_its_own_cookie_only() {
        let store = memory_store().await;
        let svc = instance(&store);
        let (alice, alice_session) = svc.create(signed_in("alice")).await.unwrap();
        let (bob, bob_session) = svc.create(signed_in("bob")).await.unwrap();
        let mut near_alice = alice.clone();
        near_alice.replace_range(63.., if alice.ends_with('0') { "1" } else { "0" });
        for stranger in [near_alice.as_str(), &"0".repeat(64)] {
            assert!(svc.resolve(stranger).await.unwrap().is_none(), "{stranger}");
        }
        // From here on the store is gone and time stands still: only the cache can answer,
        // and a cookie it does not hold reaches the (closed) store.
        store.close().await;
        tokio::time::pause();
        for _ in 0..2 {
            assert!(Arc::ptr_eq(&svc.resolve(&alice).await.unwrap().unwrap(), &alice_session));
            assert!(Arc::ptr_eq(&svc.resolve(&bob).await.unwrap().unwrap(), &bob_session));
        }
        assert!(svc.resolve(&near_alice).await.is_err(), "a cookie the cache does not hold goes to the store");
    }

    #[tokio::test]
    async fn a_session_ended_by_a_notice_is_no_longer_served_from_the_cache() {
        let store = memory_store().await;
        let svc = instance(&store);
        let (cookie, session) = svc.create(signed_in("alice")).await.unwrap();
        // Another instance ends the session: its row goes, and this one hears only its SHA-256.
        store.sessions().delete(&hash_id(&cookie)).await.unwrap();
        tokio::time::pause();
        assert!(svc.resolve(&cookie).await.unwrap().is_some(), "before the notice, the cache still trusts it");
        tokio::time::resume();
        svc.forget_ended(&session.id_hash);
        assert!(svc.resolve(&cookie).await.unwrap().is_none());
        let cache = svc.cache.lock().unwrap();
        assert!(cache.entries.is_empty() && cache.by_id_hash.is_empty());
    }

    #[tokio::test]
    async fn two_instances_key_a_cookie_differently_and_a_revocation_reaches_both() {
        let store = memory_store().await;
        let (here, there) = (instance(&store), instance(&store));
        let (cookie, session) = here.create(signed_in("alice")).await.unwrap();
        let seen_there = there.resolve(&cookie).await.unwrap().unwrap();
        assert_eq!(*seen_there, *session);
        assert_eq!(seen_there.claims, session.claims);
        let (key_here, key_there) = (here.cookies.key_of(&cookie), there.cookies.key_of(&cookie));
        assert_ne!(key_here, key_there);
        assert!(here.cached(key_here).is_some() && there.cached(key_there).is_some());
        // Logout here; the notice carries the SHA-256 to the other instance.
        assert!(here.revoke(&cookie).await.unwrap().is_some());
        there.forget_ended(&session.id_hash);
        assert!(there.resolve(&cookie).await.unwrap().is_none());
        assert!(here.resolve(&cookie).await.unwrap().is_none());
    }

    /// A random source that always gives the same bytes.
    #[derive(Debug)]
    struct Constant(u8);

    impl Random for Constant {
        fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
            dest.fill(self.0);
            Ok(())
        }
    }

    #[test]
    fn the_cache_key_is_drawn_from_the_injected_random() {
        let cookie = "a".repeat(64);
        let (one, same, other) = (Constant(1), Constant(1), Constant(2));
        let key = |r: &Constant| CookieHasher::new(r).unwrap().key_of(&cookie);
        assert_eq!(key(&one), key(&same));
        assert_ne!(key(&one), key(&other));
        assert_ne!(CookieHasher::new(&one).unwrap().key_of(&"b".repeat(64)), key(&one));
        assert_eq!(format!("{:?}", CookieHasher::new(&one).unwrap()), "CookieHasher(..)");
    }

    fn entry(id_hash: &str) -> Cached {
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);
        let session = shell_of(&SessionRow {
            id_hash: id_hash.into(),
            kind: "citizen".into(),
            issuer: String::new(),
            subject: String::new(),
            provider_sid: None,
            acr: String::new(),
            claims: String::new(),
            id_token: String::new(),
            roles: "[]".into(),
            created_at: at,
            last_seen_at: at,
            expires_at: at,
            revoked_at: None,
        })
        .unwrap();
        Cached { session: Arc::new(session), last_seen: at, checked: Instant::now() }
    }

    #[test]
    fn the_cache_finds_every_entry_by_its_id_hash_after_bounding_and_rekeying() {
        let mut cache = Cache::default();
        cache.insert(1, entry("h1"), 2);
        cache.insert(2, entry("h2"), 2);
        // Full of fresh entries: all go, then the new one is kept, in both maps.
        cache.insert(3, entry("h3"), 2);
        assert_eq!(cache.entries.keys().collect::<Vec<_>>(), [&3]);
        assert_eq!(cache.by_id_hash, HashMap::from([("h3".to_owned(), 3)]));
        // The same session under another key replaces its old entry instead of hiding it.
        cache.insert(4, entry("h3"), 10);
        assert_eq!(cache.entries.keys().collect::<Vec<_>>(), [&4]);
        // Another session under a taken key takes its index entry with it.
        cache.insert(4, entry("h4"), 10);
        assert_eq!(cache.by_id_hash, HashMap::from([("h4".to_owned(), 4)]));
        cache.remove_id_hash("h4");
        assert!(cache.entries.is_empty() && cache.by_id_hash.is_empty());
    }
}
