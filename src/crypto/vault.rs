//! The crypto service the gateway holds (`App::crypto`): data keys per (subject, activity,
//! retention class), created on first use, wrapped in the store, unwrapped into a bounded cache; sealing and
//! opening field tokens; pseudonyms and blind indexes; crypto-shredding and reconciliation.
//!
//! A shred on one instance reaches every other instance sharing the store within
//! [`SHRED_VISIBLE_WITHIN`]: each shred sets a random *shred generation* in the store (same
//! transaction as the deletion); every vault reads it about once a second
//! ([`Vault::watch_shreds`], a background task) and empties its key cache when it changed. The
//! cache is trusted only for [`CACHE_TRUSTED_FOR`] after the start of the last successful read;
//! past that (task late or stopped, store unreachable), the next use reads the generation
//! first, so the bound holds without a store query per request.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::keyring::{KeyError, Keyring};
use super::mac;
use super::secret::Key256;
use super::token::{self, FieldContext, KeyId, KeyRef, TokenError};
use crate::clock::{Clock, Random, RandomError, random_hex};
use crate::config::KeysSettings;
use crate::store::{DataKeyRow, Store, StoreError, Tombstone};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The token's data key was destroyed (crypto-shredding) or never existed here.
    #[error("the data key of this token no longer exists")]
    KeyGone,
    #[error("activity, field and subject must be non-empty and free of control characters")]
    InvalidName,
    #[error("cannot use the tombstone file {path}: {source}")]
    Tombstones { path: PathBuf, source: std::io::Error },
    /// A line of the tombstone file is torn or was edited: it is never skipped.
    #[error(
        "{0}. A shred whose line was torn by a crash did not complete (remove only that last line); \
         any other damage: restore the file from its backup, then run `guichet keys reconcile`"
    )]
    TombstoneDamaged(crate::line_file::LineFileError),
    /// `serve` refuses to start: the tombstone file does not vouch for every erasure.
    #[error("{0}")]
    TombstonesUnhealthy(String),
    #[error("the data key cache is unusable (a thread panicked while holding it)")]
    CachePoisoned,
    #[error("a sealing key was used for another subject or activity")]
    WrongOwner,
}

/// The retention class of the values sealed where no category says otherwise (the notify
/// contact address, callers that know no category). Retention classes derived from a rule
/// (`policy::retention_class`) never take this name.
pub const DEFAULT_CLASS: &str = "default";
/// The class column of an activity's legacy key (made before retention classes): it opens
/// the `gch1.` tokens sealed under it and never seals again.
pub const LEGACY_CLASS: &str = "";

/// An unwrapped data key with who it belongs to, as cached: shared (`Arc`) between the cache
/// and the requests using it, so a lookup copies no key and no name; its bytes are wiped when
/// the last holder drops it.
struct Entry {
    key_id: KeyId,
    subject: String,
    activity: String,
    /// [`LEGACY_CLASS`] for the activity's legacy key.
    class: String,
    key: Key256,
    loaded_at: OffsetDateTime,
}

impl Entry {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef { id: &self.key_id, class: self.class_of_tokens() }
    }

    /// The class bound in its tokens' associated data; `None` for the legacy key.
    fn class_of_tokens(&self) -> Option<&str> {
        (self.class != LEGACY_CLASS).then_some(self.class.as_str())
    }
}

/// One (subject, activity, retention class) data key, held for the length of one request (never cached
/// beyond it: a shred elsewhere reaches the next request through the vault's cache rules).
pub struct SealingKey {
    entry: Arc<Entry>,
    schedule: super::aead::SealKey,
    /// The associated data its tokens share, laid out once for the request's seals.
    binding: token::Binding,
    random: Arc<BufferedRandom>,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealingKey").field("key_id", &self.entry.key_id.as_str()).finish_non_exhaustive()
    }
}

impl SealingKey {
    /// Seals `value` in `ctx`, which must name this key's subject and activity.
    pub fn seal(&self, ctx: &FieldContext<'_>, value: &str) -> Result<String, CryptoError> {
        let mut token = Vec::with_capacity(token::token_len(value.len()));
        self.seal_into(ctx, value, &mut token)?;
        String::from_utf8(token).map_err(|_| CryptoError::Token(TokenError::Malformed))
    }

    /// [`Self::seal`], appending the token to `out` (the body being rewritten).
    pub fn seal_into(&self, ctx: &FieldContext<'_>, value: &str, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if ctx.subject != self.entry.subject || ctx.activity != self.entry.activity {
            return Err(CryptoError::WrongOwner);
        }
        // Subject and activity were checked when the key was looked up; they are equal.
        check_name(ctx.field)?;
        let key_ref = self.entry.key_ref();
        Ok(token::seal_into(&self.schedule, key_ref, &self.binding, ctx, value, self.random.as_ref(), out)?)
    }

    /// The retention class this key seals.
    pub fn class(&self) -> &str {
        &self.entry.class
    }
}

/// A token with its key, ready for tries ([`Vault::openable`]).
pub struct OpenableToken {
    token: token::Decoded,
    entry: Arc<Entry>,
    schedule: super::aead::SealKey,
}

impl std::fmt::Debug for OpenableToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenableToken").field("key_id", &self.token.key_id().as_str()).finish_non_exhaustive()
    }
}

impl OpenableToken {
    /// Whose data the token holds: the pseudonymous subject and the activity of its key.
    pub fn subject(&self) -> &str {
        &self.entry.subject
    }

    pub fn activity(&self) -> &str {
        &self.entry.activity
    }

    /// Opens the token in `ctx`; fails when it was sealed for another field, subject or
    /// activity, or altered.
    pub fn open(&self, ctx: &FieldContext<'_>) -> Result<Zeroizing<String>, CryptoError> {
        check_ctx(ctx)?;
        Ok(token::open_decoded(&self.schedule, self.entry.class_of_tokens(), &self.token, ctx)?)
    }
}

/// Random bytes read from the system in blocks rather than one system call per nonce (or per
/// request): one block per vault, shared by every request's seals. The bytes are the same
/// system randomness, each handed out once and wiped as it is; the block is wiped on drop.
/// Only nonces come from it, and nonces are no secret (each token carries its own).
struct BufferedRandom {
    source: Arc<dyn Random>,
    block: std::sync::Mutex<(Zeroizing<[u8; RANDOM_BLOCK]>, usize)>,
}

const RANDOM_BLOCK: usize = 4096;

impl std::fmt::Debug for BufferedRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BufferedRandom")
    }
}

impl BufferedRandom {
    fn new(source: Arc<dyn Random>) -> Self {
        // Starts "used up": the first fill reads a block.
        Self { source, block: std::sync::Mutex::new((Zeroizing::new([0; RANDOM_BLOCK]), RANDOM_BLOCK)) }
    }
}

impl Random for BufferedRandom {
    fn fill(&self, dest: &mut [u8]) -> Result<(), RandomError> {
        if dest.len() > RANDOM_BLOCK {
            return self.source.fill(dest);
        }
        let mut guard = self.block.lock().map_err(|_| RandomError)?;
        let (block, used) = &mut *guard;
        if RANDOM_BLOCK - *used < dest.len() {
            self.source.fill(&mut block[..])?;
            *used = 0;
        }
        let end = *used + dest.len();
        let chunk = block.get_mut(*used..end).ok_or(RandomError)?;
        dest.copy_from_slice(chunk);
        // Handed out once: never served again, even by mistake.
        chunk.fill(0);
        *used = end;
        Ok(())
    }
}

/// Every how many generation reads [`Vault::watch_shreds`] also counts the store's
/// tombstones, to catch a restore that left the generation as it was.
const RESTORE_CHECK_EVERY_TICKS: u32 = 10;

/// How often [`Vault::watch_shreds`] reads the shred generation.
pub const SHRED_POLL_EVERY: Duration = Duration::from_secs(1);
/// How long the key cache is trusted after the start of the last successful generation read.
pub const CACHE_TRUSTED_FOR: Duration = Duration::from_millis(1500);
/// The promise: a key destroyed on one instance is used by no instance sharing the store
/// after this delay (the trust window plus the time of one store read).
pub const SHRED_VISIBLE_WITHIN: Duration = Duration::from_secs(2);

/// Unwrapped keys by key id, and key ids by owner. Both bounded; evicted keys are zeroized
/// when dropped (`Key256`).
struct Cache {
    by_id: LruCache<String, Arc<Entry>>,
    /// Key ids by [`owner_key`].
    by_owner: LruCache<Vec<u8>, String>,
    /// The shred generation last read from the store (`Some(None)`: read, no shred yet).
    generation: Option<Option<String>>,
    /// When the last successful read of the generation started.
    checked: Option<Instant>,
    /// Bumped whenever the cache is emptied: a key read from the store before a clear is not
    /// cached after it (it may be the key a concurrent shred just destroyed).
    epoch: u64,
}

impl Cache {
    fn clear(&mut self) {
        self.by_id.clear();
        self.by_owner.clear();
        self.epoch = self.epoch.wrapping_add(1);
    }

    fn trusted(&self) -> bool {
        self.checked.is_some_and(|at| at.elapsed() < CACHE_TRUSTED_FOR)
    }
}

/// What `shred` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shredded {
    /// The keys existed and are destroyed (one for a class; every class's and the legacy
    /// key for a whole activity); their tombstones were written.
    Destroyed { key_ids: Vec<String> },
    /// There was no key: nothing was ever sealed there, or it was shredded before.
    NoKey,
}

/// The tombstone file against the store (`guichet check`, `keys status`, `serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TombstoneHealth {
    pub path: PathBuf,
    /// Tombstones in the file; `None` when it is missing (or damaged).
    pub in_file: Option<usize>,
    pub in_store: usize,
    /// Erasures the store records that the file lacks.
    pub missing_from_file: usize,
    /// The first damaged line, when there is one.
    pub damaged: Option<String>,
}

impl TombstoneHealth {
    /// What is wrong, with the way out; `None` when the file can be relied on.
    pub fn problem(&self) -> Option<String> {
        let path = self.path.display();
        if let Some(d) = &self.damaged {
            return Some(format!(
                "the tombstone file is damaged: {d}. A line torn by a crash (the last one) records a shred that \
                 did not complete: remove that line. Any other damage: restore {path} from its backup. Then run \
                 `guichet keys reconcile`."
            ));
        }
        match self.in_file {
            None if self.in_store > 0 => Some(format!(
                "the tombstone file {path} is missing while the store records {} erasure(s): restore it from its \
                 backup (it protects erasures against a restore of the store), or run `guichet keys reconcile` to \
                 write it again from the store",
                self.in_store
            )),
            Some(_) if self.missing_from_file > 0 => Some(format!(
                "the tombstone file {path} lacks {} erasure(s) the store records (an older copy of the file?): run \
                 `guichet keys reconcile` to copy them into it",
                self.missing_from_file
            )),
            _ => None,
        }
    }

    /// One line for `guichet check` and `guichet keys status`.
    pub fn summary(&self) -> String {
        match (self.problem(), self.in_file) {
            (Some(p), _) => format!("tombstones: PROBLEM: {p}"),
            (None, None) => format!("tombstones: {} (not created yet; no erasure recorded)", self.path.display()),
            (None, Some(n)) => format!(
                "tombstones: {} erasure(s) in {} and {} in the store: consistent",
                n,
                self.path.display(),
                self.in_store
            ),
        }
    }
}

/// What `reconcile` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Keys found in the store although a tombstone lists them (e.g. after a restore), now destroyed.
    pub redestroyed: u64,
    /// Tombstones known on one side only (file or store), now written to the other.
    pub tombstones_restored: u64,
}

pub struct Vault {
    keyring: Keyring,
    store: Store,
    cache: Mutex<Cache>,
    /// One generation read at a time (the watcher, or a request finding the cache untrusted).
    checking: tokio::sync::Mutex<()>,
    ttl: Duration,
    tombstones: PathBuf,
    /// Key ids known destroyed (the tombstone file, the store's tombstones, this vault's
    /// shreds): a key row with one of these ids is never used, whatever the store says (an
    /// older store restored under a running instance), and is destroyed again. Kept as
    /// [`fingerprint`]s: the set lives as long as the process and grows by one entry per
    /// shred, so each entry is 16 bytes rather than the id's string (a retention run of
    /// 100 000 shreds adds about 2 MiB instead of about 9).
    destroyed: Mutex<HashSet<u128>>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    /// The nonces of every seal, read from `random` a block at a time.
    nonces: Arc<BufferedRandom>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("keyring", &self.keyring).finish_non_exhaustive()
    }
}

fn check_name(s: &str) -> Result<(), CryptoError> {
    // Names are printable ASCII in practice: one pass over the bytes, without an early exit
    // so that it checks many at once, and characters decoded only when a byte is not that.
    let unusual = s.bytes().fold(false, |seen, b| seen | !(0x20..0x7f).contains(&b));
    let control = unusual && s.chars().any(char::is_control);
    if s.is_empty() || control { Err(CryptoError::InvalidName) } else { Ok(()) }
}

fn check_owner(subject: &str, activity: &str, class: &str) -> Result<(), CryptoError> {
    check_name(subject)?;
    check_name(activity)?;
    check_name(class)
}

/// The cache's key for (subject, activity, class): the three names framed, so no two owners
/// share one whatever characters they hold.
fn owner_key(subject: &str, activity: &str, class: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(12 + subject.len() + activity.len() + class.len());
    for part in [subject, activity, class] {
        super::push_framed(&mut key, part.as_bytes());
    }
    key
}

fn check_ctx(ctx: &FieldContext<'_>) -> Result<(), CryptoError> {
    check_name(ctx.activity)?;
    check_name(ctx.field)?;
    check_name(ctx.subject)
}

impl Vault {
    pub fn new(
        keyring: Keyring,
        store: Store,
        settings: &KeysSettings,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> Self {
        let cap = NonZeroUsize::new(settings.cache_size).unwrap_or(NonZeroUsize::MIN);
        Self {
            keyring,
            store,
            cache: Mutex::new(Cache {
                by_id: LruCache::new(cap),
                by_owner: LruCache::new(cap),
                generation: None,
                checked: None,
                epoch: 0,
            }),
            checking: tokio::sync::Mutex::new(()),
            ttl: settings.cache_ttl,
            tombstones: settings.tombstones_path(),
            destroyed: Mutex::new(HashSet::new()),
            clock,
            nonces: Arc::new(BufferedRandom::new(random.clone())),
            random,
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Seals `value` in `ctx` under the [`DEFAULT_CLASS`] key, for values that belong to no
    /// declared category (the notify contact address).
    pub async fn seal(&self, ctx: &FieldContext<'_>, value: &str) -> Result<String, CryptoError> {
        self.seal_in_class(ctx, DEFAULT_CLASS, value).await
    }

    /// Seals `value` in `ctx` under the key of retention class `class` (a `gch2.` token),
    /// creating the (subject, activity, class) key on first use.
    pub async fn seal_in_class(&self, ctx: &FieldContext<'_>, class: &str, value: &str) -> Result<String, CryptoError> {
        check_ctx(ctx)?;
        check_name(class)?;
        let e = self.key_for_owner(ctx.subject, ctx.activity, class).await?;
        let schedule = super::aead::SealKey::new(&e.key).map_err(TokenError::from)?;
        Ok(token::seal(&schedule, e.key_ref(), ctx, value, self.random.as_ref())?)
    }

    /// The data key of (subject, activity, class), created on first use, to seal the values of
    /// one request in that class with one cache lookup and one system call for their nonces.
    pub async fn sealing_key(&self, subject: &str, activity: &str, class: &str) -> Result<SealingKey, CryptoError> {
        check_owner(subject, activity, class)?;
        let entry = self.key_for_owner(subject, activity, class).await?;
        self.sealing_key_of(entry)
    }

    /// [`Vault::sealing_key`] when the cache can answer at once (the usual case after a
    /// citizen's first request); `None` when the store must be read. No future is built:
    /// the store lookup's is large, and moving it costs more than the cached answer.
    pub fn cached_sealing_key(
        &self,
        subject: &str,
        activity: &str,
        class: &str,
    ) -> Result<Option<SealingKey>, CryptoError> {
        check_owner(subject, activity, class)?;
        if self.trusted_epoch().is_none() {
            return Ok(None);
        }
        self.cached_owner(subject, activity, class).map(|e| self.sealing_key_of(e)).transpose()
    }

    fn sealing_key_of(&self, entry: Arc<Entry>) -> Result<SealingKey, CryptoError> {
        let schedule = super::aead::SealKey::new(&entry.key).map_err(token::TokenError::from)?;
        let binding = token::Binding::new(entry.key_ref(), &entry.activity);
        Ok(SealingKey { entry, schedule, binding, random: self.nonces.clone() })
    }

    /// Opens a token in `ctx` (`gch2.` under its class key, `gch1.` under the activity's
    /// legacy key). Fails when the token was made for another field, subject or activity, was
    /// altered, or its key was shredded.
    pub async fn open(&self, ctx: &FieldContext<'_>, tok: &str) -> Result<Zeroizing<String>, CryptoError> {
        self.openable(tok).await?.ok_or(CryptoError::KeyGone)?.open(ctx)
    }

    /// A token made ready to be tried against the fields it may belong to: parsed, decoded,
    /// its key found and scheduled once (a token does not name its field: a reader tries the
    /// activity's encrypted fields in turn). `None` when its key no longer exists (shredded,
    /// or never ours). Keep it no longer than the reading of this token.
    pub async fn openable(&self, tok: &str) -> Result<Option<OpenableToken>, CryptoError> {
        let parsed = token::parse(tok)?;
        let Some(entry) = self.key_by_id(&parsed.key_id).await? else { return Ok(None) };
        let schedule = super::aead::SealKey::new(&entry.key).map_err(TokenError::from)?;
        Ok(Some(OpenableToken { token: token::decode(&parsed)?, entry, schedule }))
    }

    /// The retention class of a token's key ([`LEGACY_CLASS`] for a `gch1.` token), when the
    /// key still exists.
    pub async fn class_of(&self, tok: &str) -> Result<Option<String>, CryptoError> {
        let parsed = token::parse(tok)?;
        Ok(self.key_by_id(&parsed.key_id).await?.map(|e| e.class.clone()))
    }

    /// The classes (subject, activity) has a key for, [`LEGACY_CLASS`] included when the
    /// activity still has its legacy key: what is left to shred there.
    pub async fn classes(&self, subject: &str, activity: &str) -> Result<Vec<String>, CryptoError> {
        let rows = self.store.keys().find_all_of(subject, activity).await?;
        Ok(rows.into_iter().filter(|r| !self.is_destroyed(&r.key_id)).map(|r| r.class).collect())
    }

    /// Whose token this is (subject, activity), for the reveal phase: it then decides, from
    /// the policy, which of the activity's fields to try and whether the viewer may see it.
    pub async fn owner_of(&self, tok: &str) -> Result<Option<(String, String)>, CryptoError> {
        let parsed = token::parse(tok)?;
        Ok(self.key_by_id(&parsed.key_id).await?.map(|e| (e.subject.clone(), e.activity.clone())))
    }

    /// The irreversible pseudonym of a value (HMAC-SHA-256 under the pseudonymize key).
    pub fn pseudonymize(&self, activity: &str, field: &str, value: &str) -> String {
        mac::pseudonymize(self.keyring.pseudonymize_key(), activity, field, value)
    }

    /// The blind index of a value (HMAC-SHA-256 under the blind-index key).
    pub fn blind_index(&self, activity: &str, field: &str, value: &str) -> String {
        mac::blind_index(self.keyring.blind_index_key(), activity, field, value)
    }

    /// The cached data key of (subject, activity, class), from the store or newly created.
    async fn key_for_owner(&self, subject: &str, activity: &str, class: &str) -> Result<Arc<Entry>, CryptoError> {
        let epoch = self.trust_cache().await?;
        if let Some(e) = self.cached_owner(subject, activity, class) {
            return Ok(e);
        }
        let row = match self.store.keys().find_by_owner(subject, activity, class).await? {
            Some(row) if self.is_destroyed(&row.key_id) => {
                // A destroyed key came back (store restored): destroy it again, seal under a new one.
                self.destroy_again(&row).await?;
                self.create_key(subject, activity, class).await?
            }
            Some(row) => row,
            None => self.create_key(subject, activity, class).await?,
        };
        self.remember(&row, epoch)
    }

    async fn key_by_id(&self, key_id: &KeyId) -> Result<Option<Arc<Entry>>, CryptoError> {
        let epoch = self.trust_cache().await?;
        if let Some(e) = self.cached_id(key_id.as_str()) {
            return Ok(Some(e));
        }
        match self.store.keys().find_by_id(key_id.as_str()).await? {
            Some(row) if self.is_destroyed(&row.key_id) => {
                self.destroy_again(&row).await?;
                Ok(None)
            }
            Some(row) => self.remember(&row, epoch).map(Some),
            None => Ok(None),
        }
    }

    fn is_destroyed(&self, key_id: &str) -> bool {
        // A poisoned lock cannot vouch for anything: treat the key as destroyed (fail closed).
        self.destroyed.lock().map_or(true, |d| d.contains(&fingerprint(key_id)))
    }

    fn mark_destroyed<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut d) = self.destroyed.lock() {
            d.extend(ids.into_iter().map(fingerprint));
        }
    }

    /// Deletes again a key row that a tombstone lists (the store went back in time).
    async fn destroy_again(&self, row: &DataKeyRow) -> Result<(), CryptoError> {
        let t = Tombstone { key_id: row.key_id.clone(), activity: row.activity.clone(), shredded_at: self.clock.now() };
        self.store.keys().shred(&t, &self.new_generation()?).await?;
        tracing::error!(activity = %row.activity, key_id = %row.key_id,
            "a destroyed data key was back in the store (older store restored?): destroyed again");
        Ok(())
    }

    /// Makes sure the cache reflects every shred older than [`SHRED_VISIBLE_WITHIN`]: when the
    /// last generation read is too old, reads it now. Returns the cache epoch to remember keys
    /// under.
    async fn trust_cache(&self) -> Result<u64, CryptoError> {
        if let Some(epoch) = self.trusted_epoch() {
            return Ok(epoch);
        }
        let _one = self.checking.lock().await;
        // Another task may have read it while this one waited.
        if let Some(epoch) = self.trusted_epoch() {
            return Ok(epoch);
        }
        self.read_generation().await?;
        Ok(self.trusted_epoch().unwrap_or(u64::MAX))
    }

    fn trusted_epoch(&self) -> Option<u64> {
        let c = self.cache.lock().ok()?;
        c.trusted().then_some(c.epoch)
    }

    /// Reads the shred generation and empties the cache when it changed (a key was destroyed
    /// on some instance, or the store was restored). Returns whether it changed.
    pub async fn check_shreds(&self) -> Result<bool, CryptoError> {
        let _one = self.checking.lock().await;
        self.read_generation().await
    }

    async fn read_generation(&self) -> Result<bool, CryptoError> {
        let started = Instant::now();
        let current = self.store.keys().shred_generation().await?;
        let mut c = self.cache.lock().map_err(|_| CryptoError::CachePoisoned)?;
        let changed = c.generation.as_ref() != Some(&current);
        if changed {
            c.clear();
            c.generation = Some(current);
        }
        c.checked = Some(c.checked.map_or(started, |at| at.max(started)));
        Ok(changed)
    }

    /// Reads the shred generation every [`SHRED_POLL_EVERY`] until `stop` turns true, so that
    /// keys destroyed on other instances leave this one's cache. `serve` runs it.
    pub async fn watch_shreds(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SHRED_POLL_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut ticks = 0u32;
        loop {
            tokio::select! {
                _ = tick.tick() => match self.check_shreds().await {
                    Ok(changed) => {
                        ticks = ticks.wrapping_add(1);
                        if changed {
                            tracing::debug!("shred generation changed: data key cache emptied");
                        }
                        if changed || ticks.is_multiple_of(RESTORE_CHECK_EVERY_TICKS) {
                            self.reconcile_if_store_went_back().await;
                        }
                        if failing {
                            tracing::info!("the shred generation can be read again");
                        }
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e,
                                "cannot read the shred generation; cached data keys are not used until it can");
                        }
                        failing = true;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }

    /// Re-applies the tombstones when the store holds fewer than this vault knows of (an
    /// older store restored in place under the running instance). Errors are logged: the
    /// keys it knows destroyed stay refused meanwhile (`is_destroyed`).
    async fn reconcile_if_store_went_back(&self) {
        let known = self.destroyed.lock().map_or(0, |d| d.len());
        let in_store = match self.store.keys().tombstone_count().await {
            Ok(n) => usize::try_from(n).unwrap_or(0),
            Err(_) => return,
        };
        if in_store >= known {
            return;
        }
        tracing::error!(
            known,
            in_store,
            "the store holds fewer erasures than this instance knows of \
            (restored from an older backup?): re-applying the tombstones"
        );
        if let Err(e) = self.reconcile().await {
            tracing::error!(error = %e, "cannot re-apply the tombstones; run `guichet keys reconcile`");
        }
    }

    async fn create_key(&self, subject: &str, activity: &str, class: &str) -> Result<DataKeyRow, CryptoError> {
        let rng = self.random.as_ref();
        let key_id = KeyId::generate(rng)?;
        let key = Key256::generate(rng)?;
        let (version, wrapped) = self.keyring.wrap(&key_id, subject, activity, &key, rng)?;
        let row = DataKeyRow {
            key_id: key_id.to_string(),
            subject: subject.to_owned(),
            activity: activity.to_owned(),
            class: class.to_owned(),
            kek_version: i64::from(version),
            wrapped,
            created_at: self.clock.now(),
        };
        if self.store.keys().insert_if_absent(&row).await? {
            return Ok(row);
        }
        // Another request or instance created it first: use theirs.
        self.store.keys().find_by_owner(subject, activity, class).await?.ok_or(CryptoError::KeyGone)
    }

    /// Unwraps a stored row and caches it, unless the cache was emptied since `epoch` (when
    /// the row was read): then a shred may have destroyed it meanwhile, and it is used once.
    fn remember(&self, row: &DataKeyRow, epoch: u64) -> Result<Arc<Entry>, CryptoError> {
        if self.is_destroyed(&row.key_id) {
            return Err(CryptoError::KeyGone);
        }
        let e = Arc::new(self.unwrap_row(row)?);
        if let Ok(mut c) = self.cache.lock()
            && c.epoch == epoch
            && c.trusted()
        {
            c.by_owner.put(owner_key(&e.subject, &e.activity, &e.class), row.key_id.clone());
            c.by_id.put(row.key_id.clone(), Arc::clone(&e));
        }
        Ok(e)
    }

    fn fresh(&self, e: &Entry) -> bool {
        self.clock.now() - e.loaded_at < self.ttl
    }

    fn cached_id(&self, key_id: &str) -> Option<Arc<Entry>> {
        let mut c = self.cache.lock().ok()?;
        let e = Arc::clone(c.by_id.get(key_id)?);
        if self.fresh(&e) {
            Some(e)
        } else {
            c.by_id.pop(key_id);
            None
        }
    }

    fn cached_owner(&self, subject: &str, activity: &str, class: &str) -> Option<Arc<Entry>> {
        let owner = owner_key(subject, activity, class);
        let mut c = self.cache.lock().ok()?;
        let key_id = c.by_owner.get(owner.as_slice())?.clone();
        let e = Arc::clone(c.by_id.get(&key_id)?);
        if self.fresh(&e) {
            Some(e)
        } else {
            c.by_id.pop(&key_id);
            None
        }
    }

    fn evict(&self, key_id: &str) {
        if let Ok(mut c) = self.cache.lock()
            && let Some(e) = c.by_id.pop(key_id)
        {
            c.by_owner.pop(owner_key(&e.subject, &e.activity, &e.class).as_slice());
        }
    }

    /// Crypto-shredding of a whole activity: destroys every data key of (subject, activity)
    /// — each retention class's and the legacy key — as a rights erasure needs. Every token
    /// sealed under them, wherever it was copied, can no longer be opened.
    pub async fn shred(&self, subject: &str, activity: &str) -> Result<Shredded, CryptoError> {
        check_name(subject)?;
        check_name(activity)?;
        let rows = self.store.keys().find_all_of(subject, activity).await?;
        self.destroy(rows).await
    }

    /// Crypto-shredding of one retention class: destroys the (subject, activity, class) key
    /// only, so the categories of that class become unreadable while the activity's other
    /// classes still open. The cost is one row and one line, whatever the number of tokens.
    /// The activity's legacy key (`gch1.` tokens, sealed before classes existed) is not
    /// touched: it ends with the activity ([`Vault::shred`], see docs/cryptography.md).
    pub async fn shred_class(&self, subject: &str, activity: &str, class: &str) -> Result<Shredded, CryptoError> {
        check_owner(subject, activity, class)?;
        let rows = self.store.keys().find_by_owner(subject, activity, class).await?;
        self.destroy(rows.into_iter().collect()).await
    }

    /// Crypto-shredding of many retention classes at once (a retention run's batch): each
    /// (subject, activity, class) as [`Vault::shred_class`], but the tombstones of the whole
    /// batch are appended to the file with one fsync and the keys deleted in one store
    /// transaction with one new shred generation; the keys are found with one read for the
    /// whole batch. One result per owner, in order.
    pub async fn shred_classes(&self, owners: &[(&str, &str, &str)]) -> Result<Vec<Shredded>, CryptoError> {
        for (subject, activity, class) in owners {
            check_owner(subject, activity, class)?;
        }
        let subjects: Vec<&str> = owners.iter().map(|(s, _, _)| *s).collect();
        let mut by_owner: HashMap<(String, String, String), DataKeyRow> = HashMap::new();
        for row in self.store.keys().find_of_subjects(&subjects).await? {
            by_owner.insert((row.subject.clone(), row.activity.clone(), row.class.clone()), row);
        }
        let mut rows = Vec::with_capacity(owners.len());
        let mut found = Vec::with_capacity(owners.len());
        for (subject, activity, class) in owners {
            let owner = ((*subject).to_owned(), (*activity).to_owned(), (*class).to_owned());
            let row = by_owner.remove(&owner);
            found.push(row.as_ref().map(|r| r.key_id.clone()));
            rows.extend(row);
        }
        self.destroy(rows).await?;
        Ok(found
            .into_iter()
            .map(|k| k.map_or(Shredded::NoKey, |id| Shredded::Destroyed { key_ids: vec![id] }))
            .collect())
    }

    /// Destroys `rows`. The tombstones (key id and activity only) go first to the file outside
    /// the store (one append, one fsync), then to the store in one transaction with the
    /// deletions and a new shred generation, so a crash in between is finished by `reconcile`.
    async fn destroy(&self, rows: Vec<DataKeyRow>) -> Result<Shredded, CryptoError> {
        if rows.is_empty() {
            return Ok(Shredded::NoKey);
        }
        let now = self.clock.now();
        let ts: Vec<Tombstone> = rows
            .iter()
            .map(|r| Tombstone { key_id: r.key_id.clone(), activity: r.activity.clone(), shredded_at: now })
            .collect();
        append_tombstones(&self.tombstones, &ts).await?;
        self.mark_destroyed(ts.iter().map(|t| t.key_id.as_str()));
        self.store.keys().shred_many(&ts, &self.new_generation()?).await?;
        for t in &ts {
            self.evict(&t.key_id);
            tracing::info!(activity = %t.activity, key_id = %t.key_id, "data key destroyed");
        }
        self.store.announce(&crate::store::Change::Shred).await;
        Ok(Shredded::Destroyed { key_ids: ts.into_iter().map(|t| t.key_id).collect() })
    }

    /// A fresh random shred generation (128 bits, hex): never equal to an earlier one, even
    /// after the store was restored to an older generation.
    fn new_generation(&self) -> Result<String, CryptoError> {
        Ok(random_hex::<16>(self.random.as_ref())?)
    }

    /// Re-destroys every key that a tombstone lists, from the file or the store, and makes
    /// both lists whole again. `serve` runs it at start (after [`Vault::startup_check`]), every
    /// instance again when it sees the store go back in time ([`Vault::watch_shreds`]), and
    /// `guichet keys reconcile` on demand. A damaged line of the file is an error.
    pub async fn reconcile(&self) -> Result<Reconciled, CryptoError> {
        let in_file = read_tombstones(&self.tombstones).await?.unwrap_or_default();
        let in_store = self.store.keys().tombstones().await?;
        let stored: HashSet<&str> = in_store.iter().map(|t| t.key_id.as_str()).collect();
        let filed: HashSet<&str> = in_file.iter().map(|t| t.key_id.as_str()).collect();
        self.mark_destroyed(stored.iter().chain(filed.iter()).copied());
        let mut report = Reconciled::default();
        let missing_from_file: Vec<Tombstone> =
            in_store.iter().filter(|t| !filed.contains(t.key_id.as_str())).cloned().collect();
        append_tombstones(&self.tombstones, &missing_from_file).await?;
        report.tombstones_restored += missing_from_file.len() as u64;
        // Known to the file only: the store lost them (restored); `shred` inserts the
        // tombstone and deletes the key if it is there.
        for t in in_file.iter().filter(|t| !stored.contains(t.key_id.as_str())) {
            if self.store.keys().shred(t, &self.new_generation()?).await? {
                report.redestroyed += 1;
            }
            report.tombstones_restored += 1;
            self.evict(&t.key_id);
        }
        // Known to both, yet the key row is back (a partial restore of the key table).
        for t in self.store.keys().tombstoned_keys().await? {
            if self.store.keys().shred(&t, &self.new_generation()?).await? {
                report.redestroyed += 1;
            }
            self.evict(&t.key_id);
        }
        if report != Reconciled::default() {
            tracing::warn!(
                redestroyed = report.redestroyed,
                tombstones_restored = report.tombstones_restored,
                "keys reconciled with their tombstones (was the store restored from a backup?)"
            );
        }
        Ok(report)
    }

    /// How the tombstone file and the store's tombstones compare.
    pub async fn tombstone_health(&self) -> Result<TombstoneHealth, CryptoError> {
        let in_store = self.store.keys().tombstones().await?;
        let path = self.tombstones.clone();
        let in_file = match read_tombstones(&path).await {
            Ok(f) => f,
            Err(CryptoError::TombstoneDamaged(e)) => {
                return Ok(TombstoneHealth {
                    path,
                    in_file: None,
                    in_store: in_store.len(),
                    missing_from_file: 0,
                    damaged: Some(e.to_string()),
                });
            }
            Err(e) => return Err(e),
        };
        let missing_from_file = match &in_file {
            Some(f) => {
                let filed: HashSet<&str> = f.iter().map(|t| t.key_id.as_str()).collect();
                in_store.iter().filter(|t| !filed.contains(t.key_id.as_str())).count()
            }
            None => in_store.len(),
        };
        Ok(TombstoneHealth {
            path,
            in_file: in_file.map(|f| f.len()),
            in_store: in_store.len(),
            missing_from_file,
            damaged: None,
        })
    }

    /// What `serve` checks before it starts: the tombstone file must be readable and hold
    /// every erasure the store records (otherwise it no longer protects against a restore of
    /// the store, and someone must find out why). A missing file on a store with no erasure is
    /// created. Then reconciles (a restored store gets its erasures back from the file).
    pub async fn startup_check(&self) -> Result<Reconciled, CryptoError> {
        let h = self.tombstone_health().await?;
        if let Some(problem) = h.problem() {
            return Err(CryptoError::TombstonesUnhealthy(problem));
        }
        if h.in_file.is_none() {
            create_tombstone_file(&self.tombstones).await?;
        }
        self.reconcile().await
    }

    /// How many data keys each KEK version wraps.
    pub async fn usage(&self) -> Result<Vec<(u32, u64)>, CryptoError> {
        let rows = self.store.keys().count_by_kek_version().await?;
        Ok(rows
            .into_iter()
            .map(|(v, n)| (u32::try_from(v).unwrap_or(u32::MAX), u64::try_from(n).unwrap_or(0)))
            .collect())
    }

    /// Re-wraps every data key not under the current KEK, `batch` keys per transaction, and
    /// calls `progress(done, remaining_at_start)` after each committed batch; `Break` stops
    /// there. Interrupted, it resumes where it stopped: rows record their KEK version.
    pub async fn rewrap_all(
        &self,
        batch: usize,
        mut progress: impl FnMut(u64, u64) -> ControlFlow<()>,
    ) -> Result<u64, CryptoError> {
        let current = self.keyring.current_version();
        let total: u64 = self.usage().await?.iter().filter(|(v, _)| *v != current).map(|(_, n)| n).sum();
        let limit = i64::try_from(batch.max(1)).unwrap_or(i64::MAX);
        let mut done = 0u64;
        loop {
            let rows = self.store.keys().not_wrapped_by(i64::from(current), limit).await?;
            if rows.is_empty() {
                return Ok(done);
            }
            let mut updates = Vec::with_capacity(rows.len());
            for row in &rows {
                let e = self.unwrap_row(row)?;
                let (to, wrapped) =
                    self.keyring.wrap(&e.key_id, &row.subject, &row.activity, &e.key, self.random.as_ref())?;
                updates.push((row.key_id.clone(), row.kek_version, i64::from(to), wrapped));
            }
            done += self.store.keys().rewrap(&updates).await?;
            if progress(done, total).is_break() {
                return Ok(done);
            }
        }
    }

    fn unwrap_row(&self, row: &DataKeyRow) -> Result<Entry, CryptoError> {
        let key_id = KeyId::parse(&row.key_id).ok_or(TokenError::Malformed)?;
        let version = u32::try_from(row.kek_version).map_err(|_| KeyError::UnknownVersion(u32::MAX))?;
        let key = self.keyring.unwrap(version, &key_id, &row.subject, &row.activity, &row.wrapped)?;
        Ok(Entry {
            key_id,
            subject: row.subject.clone(),
            activity: row.activity.clone(),
            class: row.class.clone(),
            key,
            loaded_at: self.clock.now(),
        })
    }
}

/// One line per tombstone: `key_id<TAB>activity<TAB>RFC 3339 time`, checksummed, appended
/// in one write after a newline if the last write was torn, and synced (`line_file`), so an
/// acknowledged shred survives a crash and a damaged line is found.
/// A key id as [`Vault`] remembers it destroyed: the first 128 bits of its SHA-256. Two ids
/// share one with probability about n²/2¹²⁹ (nil for any number of keys a gateway holds); a
/// shared one would only refuse a live key, never open a destroyed one.
fn fingerprint(key_id: &str) -> u128 {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_id.as_bytes());
    u128::from_le_bytes(digest.as_ref().first_chunk::<16>().copied().unwrap_or_default())
}

async fn append_tombstones(path: &Path, ts: &[Tombstone]) -> Result<(), CryptoError> {
    if ts.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = ts
        .iter()
        .map(|t| {
            let at = t.shredded_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
            format!("{}\t{}\t{at}", t.key_id, t.activity)
        })
        .collect();
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || crate::line_file::append(&owned, &lines))
        .await
        .map_err(|e| CryptoError::Tombstones { path: path.to_owned(), source: std::io::Error::other(e) })?
        .map_err(|e| line_file_error(path, e))
}

/// Creates an empty tombstone file (mode 0600), as `keys init` and a first `serve` do.
pub async fn create_tombstone_file(path: &Path) -> Result<(), CryptoError> {
    let err = |source| CryptoError::Tombstones { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let mut opts = tokio::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let f = opts.open(path).await.map_err(err)?;
    f.sync_all().await.map_err(err)
}

fn line_file_error(path: &Path, e: crate::line_file::LineFileError) -> CryptoError {
    match e {
        crate::line_file::LineFileError::Io { source, .. } => CryptoError::Tombstones { path: path.to_owned(), source },
        damaged => CryptoError::TombstoneDamaged(damaged),
    }
}

/// The tombstones of the file, or `None` when it does not exist. A line that does not parse
/// (torn, edited) is an error naming it, never skipped: skipping it would let a restore bring
/// that erasure back. Lines written before checksums existed are accepted when whole.
async fn read_tombstones(path: &Path) -> Result<Option<Vec<Tombstone>>, CryptoError> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || read_tombstones_now(&owned))
        .await
        .map_err(|e| CryptoError::Tombstones { path: path.to_owned(), source: std::io::Error::other(e) })?
}

fn read_tombstones_now(path: &Path) -> Result<Option<Vec<Tombstone>>, CryptoError> {
    let Some(lines) = crate::line_file::read(path).map_err(|e| line_file_error(path, e))? else { return Ok(None) };
    let mut out = Vec::with_capacity(lines.len());
    for l in lines {
        let t = parse_tombstone(&l.payload).ok_or_else(|| {
            CryptoError::TombstoneDamaged(crate::line_file::LineFileError::Damaged {
                path: path.to_owned(),
                line: l.number,
            })
        })?;
        out.push(t);
    }
    Ok(Some(out))
}

/// What `guichet check` says about the tombstone file, without the store: whether it is
/// whole, and one line for the operator.
pub fn tombstone_file_report(path: &Path) -> (bool, String) {
    match read_tombstones_now(path) {
        Ok(Some(ts)) => (true, format!("tombstones: {} erasure(s) in {}, every line intact", ts.len(), path.display())),
        Ok(None) => (
            true,
            format!(
                "tombstones: {} does not exist: `serve` creates it on a store without erasures and refuses to start \
                 on one with erasures (restore it, or run `guichet keys reconcile`)",
                path.display()
            ),
        ),
        Err(e) => (false, format!("tombstones: PROBLEM: {e}")),
    }
}

fn parse_tombstone(line: &str) -> Option<Tombstone> {
    let mut parts = line.split('\t');
    let key_id = KeyId::parse(parts.next()?)?;
    let activity = parts.next().filter(|a| !a.is_empty())?;
    let at = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let shredded_at = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()?;
    Some(Tombstone { key_id: key_id.to_string(), activity: activity.to_owned(), shredded_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_owners_share_a_cache_key() {
        let owners = [("ab", "c", "d"), ("a", "bc", "d"), ("a", "b", "cd"), ("abc", "", "d"), ("", "abc", "d")];
        let keys: std::collections::HashSet<Vec<u8>> = owners.iter().map(|(s, a, c)| owner_key(s, a, c)).collect();
        assert_eq!(keys.len(), owners.len());
    }

    #[test]
    fn names_with_a_control_character_are_refused_whatever_their_alphabet() {
        for bad in ["", "a\nb", "nom\u{7f}", "\u{0}", "pr\u{e9}nom\u{85}", "\u{9f}"] {
            assert!(matches!(check_name(bad), Err(CryptoError::InvalidName)), "{bad:?}");
        }
        for good in ["nom", "date_naissance", "pr\u{e9}nom", "r-0123456789abcdef", "\u{a0}x", "~"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
