//! Key-encryption keys (KEKs) and the two MAC keys, in one file encrypted with `age` to an
//! X25519 identity (or a passphrase). The file lives outside the store and outside the
//! store's backups: a stolen store backup holds only wrapped data keys.
//!
//! KEKs are versioned. The current version wraps new data keys; older versions stay until
//! every data key they wrapped has been re-wrapped (`guichet keys rotate`), then may be
//! retired (`guichet keys retire`), which removes their bytes from the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use age::secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::aead;
use super::secret::Key256;
use super::token::KeyId;
use super::{b64, push_framed, unb64};
use crate::clock::{Random, RandomError};
use crate::config::KeysSettings;

const FORMAT: &str = "guichet-keyring/1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the keyring file {path} does not exist; create it with `guichet keys init`")]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} already exists; refusing to overwrite a keyring (data keys wrapped by it would be lost)")]
    Exists { path: PathBuf },
    #[error("cannot use the age identity in {path}: {reason}")]
    Identity { path: PathBuf, reason: String },
    #[error("`keys`: give `identity_file` (an age X25519 identity) or `passphrase` / `passphrase_file`")]
    NoUnlock,
    #[error(
        "the keyring {path} cannot be opened with the configured identity or passphrase \
         (wrong identity, or a damaged file)"
    )]
    WrongIdentity { path: PathBuf },
    #[error("the keyring {path} is damaged or not a Guichet keyring: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot encrypt the keyring: {0}")]
    Encrypt(String),
    #[error("KEK version {0} is not in the keyring")]
    UnknownVersion(u32),
    #[error("KEK version {0} is the current version and cannot be retired; rotate first")]
    CurrentVersion(u32),
    #[error("KEK version {version} still wraps {count} data key(s); finish `guichet keys rotate --resume` first")]
    VersionInUse { version: u32, count: u64 },
    #[error("a data key does not unwrap under KEK version {0} (altered row, or wrong keyring)")]
    Unwrap(u32),
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// One KEK version as shown by `keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekInfo {
    pub version: u32,
    pub created_at: OffsetDateTime,
    pub current: bool,
}

struct Kek {
    key: Key256,
    created_at: OffsetDateTime,
}

/// The decrypted keyring. `Debug` shows versions only.
pub struct Keyring {
    keks: BTreeMap<u32, Kek>,
    retired: BTreeSet<u32>,
    current: u32,
    pseudonymize: Key256,
    blind_index: Key256,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .field("retired", &self.retired)
            .finish_non_exhaustive()
    }
}

/// The keyring as written inside the age envelope. Wiped from memory when dropped.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KeyringFile {
    format: String,
    current: u32,
    keks: Vec<KekEntry>,
    retired: Vec<u32>,
    pseudonymize_key: String,
    blind_index_key: String,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct KekEntry {
    version: u32,
    key: String,
    #[zeroize(skip)]
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

/// How the keyring file is opened and sealed.
enum Unlock {
    X25519(Box<age::x25519::Identity>),
    Passphrase(SecretString),
}

impl Unlock {
    fn from_settings(s: &KeysSettings) -> Result<Self, KeyError> {
        match (&s.identity_file, &s.passphrase, &s.passphrase_file) {
            (Some(path), None, None) => read_identity(path).map(|i| Self::X25519(Box::new(i))),
            (None, Some(p), None) => Ok(Self::Passphrase(p.clone())),
            (None, None, Some(path)) => {
                let text = Zeroizing::new(read(path)?);
                Ok(Self::Passphrase(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned())))
            }
            _ => Err(KeyError::NoUnlock),
        }
    }

    fn decrypt(&self, bytes: &[u8]) -> Result<Vec<u8>, age::DecryptError> {
        match self {
            Self::X25519(id) => age::decrypt(id.as_ref(), bytes),
            Self::Passphrase(p) => age::decrypt(&age::scrypt::Identity::new(p.clone()), bytes),
        }
    }

    fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, KeyError> {
        let r = match self {
            Self::X25519(id) => age::encrypt(&id.to_public(), plain),
            Self::Passphrase(p) => age::encrypt(&age::scrypt::Recipient::new(p.clone()), plain),
        };
        r.map_err(|e| KeyError::Encrypt(e.to_string()))
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => KeyError::Missing { path: path.to_owned() },
        _ => KeyError::Read { path: path.to_owned(), source },
    })
}

/// Reads an identity file as `age-keygen` writes it: comment lines, then `AGE-SECRET-KEY-1…`.
pub fn read_identity(path: &Path) -> Result<age::x25519::Identity, KeyError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| KeyError::Identity { path: path.to_owned(), reason: e.to_string() })?,
    );
    let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    let line = line.ok_or_else(|| KeyError::Identity { path: path.to_owned(), reason: "the file is empty".into() })?;
    age::x25519::Identity::from_str(line).map_err(|_| KeyError::Identity {
        path: path.to_owned(),
        reason: "not an age X25519 identity (AGE-SECRET-KEY-1…)".into(),
    })
}

/// Writes a new identity file (mode 0600) and returns its public key (`age1…`).
/// `age` draws the identity from the operating system's generator itself.
pub fn write_new_identity(path: &Path, now: OffsetDateTime) -> Result<String, KeyError> {
    let id = age::x25519::Identity::generate();
    let public = id.to_public().to_string();
    let created = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let text = Zeroizing::new(format!(
        "# Guichet keyring identity. Keep it secret, and out of the store's backups.\n\
         # created: {created}\n# public key: {public}\n{}\n",
        id.to_string().expose_secret()
    ));
    write_new_file(path, text.as_bytes())?;
    Ok(public)
}

/// Creates `path` with owner-only permissions; refuses to replace an existing file.
fn write_new_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: path.to_owned() },
        _ => KeyError::Write { path: path.to_owned(), source },
    })?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|source| KeyError::Write { path: path.to_owned(), source })
}

/// Replaces `path` atomically: a crash leaves either the old or the new keyring, never half.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write_new_file(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|source| KeyError::Write { path: path.to_owned(), source })
}

/// The associated data of a wrapped data key: which key id, whose, which activity, which KEK.
fn wrap_aad(version: u32, key_id: &KeyId, subject: &str, activity: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    push_framed(&mut aad, b"guichet/wrap/v1");
    push_framed(&mut aad, &version.to_be_bytes());
    push_framed(&mut aad, key_id.as_str().as_bytes());
    push_framed(&mut aad, subject.as_bytes());
    push_framed(&mut aad, activity.as_bytes());
    aad
}

impl Keyring {
    /// A new keyring: KEK version 1 and fresh MAC keys.
    pub fn generate(rng: &dyn Random, now: OffsetDateTime) -> Result<Self, KeyError> {
        let kek = Kek { key: Key256::generate(rng)?, created_at: now };
        Ok(Self {
            keks: BTreeMap::from([(1, kek)]),
            retired: BTreeSet::new(),
            current: 1,
            pseudonymize: Key256::generate(rng)?,
            blind_index: Key256::generate(rng)?,
        })
    }

    /// Decrypts the configured keyring file. `serve` calls this and refuses to start on error.
    pub fn open(settings: &KeysSettings) -> Result<Self, KeyError> {
        let unlock = Unlock::from_settings(settings)?;
        let path = &settings.keyring;
        let bytes = std::fs::read(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => KeyError::Missing { path: path.clone() },
            _ => KeyError::Read { path: path.clone(), source },
        })?;
        let plain = Zeroizing::new(unlock.decrypt(&bytes).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys
            | age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed => KeyError::WrongIdentity { path: path.clone() },
            other => KeyError::Corrupt { path: path.clone(), reason: other.to_string() },
        })?);
        let corrupt = |reason: &str| KeyError::Corrupt { path: path.clone(), reason: reason.to_owned() };
        let file: KeyringFile = serde_json::from_slice(&plain).map_err(|_| corrupt("unreadable contents"))?;
        Self::from_file(&file).ok_or_else(|| corrupt("inconsistent contents"))
    }

    fn from_file(f: &KeyringFile) -> Option<Self> {
        if f.format != FORMAT {
            return None;
        }
        let key = |s: &str| unb64(s).map(Zeroizing::new).and_then(|b| Key256::from_slice(&b));
        let mut keks = BTreeMap::new();
        for e in &f.keks {
            keks.insert(e.version, Kek { key: key(&e.key)?, created_at: e.created_at });
        }
        keks.contains_key(&f.current).then_some(())?;
        Some(Self {
            keks,
            retired: f.retired.iter().copied().collect(),
            current: f.current,
            pseudonymize: key(&f.pseudonymize_key)?,
            blind_index: key(&f.blind_index_key)?,
        })
    }

    fn to_file(&self) -> KeyringFile {
        KeyringFile {
            format: FORMAT.to_owned(),
            current: self.current,
            keks: self
                .keks
                .iter()
                .map(|(v, k)| KekEntry { version: *v, key: b64(k.key.expose()), created_at: k.created_at })
                .collect(),
            retired: self.retired.iter().copied().collect(),
            pseudonymize_key: b64(self.pseudonymize.expose()),
            blind_index_key: b64(self.blind_index.expose()),
        }
    }

    fn encrypted(&self, settings: &KeysSettings) -> Result<Vec<u8>, KeyError> {
        let unlock = Unlock::from_settings(settings)?;
        let plain = Zeroizing::new(serde_json::to_vec(&self.to_file()).map_err(|e| KeyError::Encrypt(e.to_string()))?);
        unlock.encrypt(&plain)
    }

    /// Writes a new keyring file; refuses to replace one.
    pub fn create(&self, settings: &KeysSettings) -> Result<(), KeyError> {
        write_new_file(&settings.keyring, &self.encrypted(settings)?)
    }

    /// Replaces the keyring file atomically (after a rotation or retirement).
    pub fn save(&self, settings: &KeysSettings) -> Result<(), KeyError> {
        replace_file(&settings.keyring, &self.encrypted(settings)?)
    }

    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Usable versions, oldest first.
    pub fn versions(&self) -> Vec<KekInfo> {
        let info =
            |(v, k): (&u32, &Kek)| KekInfo { version: *v, created_at: k.created_at, current: *v == self.current };
        self.keks.iter().map(info).collect()
    }

    pub fn retired_versions(&self) -> Vec<u32> {
        self.retired.iter().copied().collect()
    }

    /// Adds a KEK version and makes it current; returns it.
    pub fn add_version(&mut self, rng: &dyn Random, now: OffsetDateTime) -> Result<u32, KeyError> {
        let next = self.keks.keys().chain(self.retired.iter()).max().copied().unwrap_or(0).saturating_add(1);
        self.keks.insert(next, Kek { key: Key256::generate(rng)?, created_at: now });
        self.current = next;
        Ok(next)
    }

    /// Removes a version's key bytes. The caller checks first that no data key uses it.
    pub fn retire(&mut self, version: u32) -> Result<(), KeyError> {
        if version == self.current {
            return Err(KeyError::CurrentVersion(version));
        }
        self.keks.remove(&version).ok_or(KeyError::UnknownVersion(version))?;
        self.retired.insert(version);
        Ok(())
    }

    /// Wraps a data key under the current KEK; returns the version used and the wrapped bytes.
    pub fn wrap(
        &self,
        key_id: &KeyId,
        subject: &str,
        activity: &str,
        data_key: &Key256,
        rng: &dyn Random,
    ) -> Result<(u32, Vec<u8>), KeyError> {
        let kek = self.keks.get(&self.current).ok_or(KeyError::UnknownVersion(self.current))?;
        let aad = wrap_aad(self.current, key_id, subject, activity);
        let wrapped = aead::seal(&kek.key, &aad, data_key.expose(), rng).map_err(|e| match e {
            aead::AeadError::Random(r) => KeyError::Random(r),
            aead::AeadError::Unreadable => KeyError::Unwrap(self.current),
        })?;
        Ok((self.current, wrapped))
    }

    /// Unwraps a data key wrapped under `version`.
    pub fn unwrap(
        &self,
        version: u32,
        key_id: &KeyId,
        subject: &str,
        activity: &str,
        wrapped: &[u8],
    ) -> Result<Key256, KeyError> {
        let kek = self.keks.get(&version).ok_or(KeyError::UnknownVersion(version))?;
        let plain = aead::open(&kek.key, &wrap_aad(version, key_id, subject, activity), wrapped)
            .map_err(|_| KeyError::Unwrap(version))?;
        Key256::from_slice(&plain).ok_or(KeyError::Unwrap(version))
    }

    pub(crate) fn pseudonymize_key(&self) -> &Key256 {
        &self.pseudonymize
    }

    pub(crate) fn blind_index_key(&self) -> &Key256 {
        &self.blind_index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    const NOW: OffsetDateTime = time::macros::datetime!(2026-11-28 12:00 UTC);

    fn settings(dir: &Path) -> KeysSettings {
        let mut s = KeysSettings::at(dir.join("keyring.age"));
        s.identity_file = Some(dir.join("identity.txt"));
        s
    }

    fn kid() -> KeyId {
        KeyId::generate(&SystemRandom::new()).unwrap()
    }

    #[test]
    fn created_keyring_reopens_with_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        assert!(write_new_identity(s.identity_file.as_ref().unwrap(), NOW).unwrap().starts_with("age1"));
        let k = Keyring::generate(&SystemRandom::new(), NOW).unwrap();
        k.create(&s).unwrap();
        assert!(matches!(k.create(&s), Err(KeyError::Exists { .. })));
        let reopened = Keyring::open(&s).unwrap();
        assert_eq!(reopened.versions(), k.versions());
        assert_eq!(reopened.pseudonymize_key().expose(), k.pseudonymize_key().expose());

        let mut other = s.clone();
        other.identity_file = Some(dir.path().join("other.txt"));
        write_new_identity(other.identity_file.as_ref().unwrap(), NOW).unwrap();
        let err = Keyring::open(&other).unwrap_err();
        assert!(matches!(err, KeyError::WrongIdentity { .. }), "{err}");
        assert!(err.to_string().contains("keyring.age"));
    }

    #[test]
    fn missing_files_and_bad_identities_have_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path());
        assert!(matches!(Keyring::open(&s), Err(KeyError::Identity { .. })));
        write_new_identity(s.identity_file.as_ref().unwrap(), NOW).unwrap();
        let err = Keyring::open(&s).unwrap_err();
        assert!(matches!(err, KeyError::Missing { .. }));
        assert!(err.to_string().contains("guichet keys init"));
        std::fs::write(dir.path().join("bad.txt"), "# nothing\nAGE-SECRET-KEY-1NOPE\n").unwrap();
        let mut bad = s.clone();
        bad.identity_file = Some(dir.path().join("bad.txt"));
        let err = Keyring::open(&bad).unwrap_err().to_string();
        assert!(err.contains("not an age X25519 identity") && !err.contains("NOPE"), "{err}");
        std::fs::write(&s.keyring, b"not age at all").unwrap();
        assert!(matches!(Keyring::open(&s), Err(KeyError::Corrupt { .. })));
    }

    #[test]
    fn passphrase_keyrings_open_with_the_same_passphrase_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = KeysSettings::at(dir.path().join("keyring.age"));
        s.passphrase = Some(SecretString::from("correct horse battery staple".to_owned()));
        Keyring::generate(&SystemRandom::new(), NOW).unwrap().create(&s).unwrap();
        assert_eq!(Keyring::open(&s).unwrap().current_version(), 1);
        s.passphrase = Some(SecretString::from("wrong".to_owned()));
        assert!(matches!(Keyring::open(&s), Err(KeyError::WrongIdentity { .. })));
    }

    #[test]
    fn wrapping_binds_version_key_id_subject_and_activity() {
        let rng = SystemRandom::new();
        let mut k = Keyring::generate(&rng, NOW).unwrap();
        let dk = Key256::generate(&rng).unwrap();
        let id = kid();
        let (v, w) = k.wrap(&id, "sub-1", "cantine", &dk, &rng).unwrap();
        assert_eq!(v, 1);
        assert_eq!(k.unwrap(1, &id, "sub-1", "cantine", &w).unwrap().expose(), dk.expose());
        assert!(k.unwrap(1, &kid(), "sub-1", "cantine", &w).is_err());
        assert!(k.unwrap(1, &id, "sub-2", "cantine", &w).is_err());
        assert!(k.unwrap(1, &id, "sub-1", "voirie", &w).is_err());
        assert_eq!(k.add_version(&rng, NOW).unwrap(), 2);
        assert!(matches!(k.unwrap(2, &id, "sub-1", "cantine", &w), Err(KeyError::Unwrap(2))));
        assert_eq!(k.wrap(&id, "sub-1", "cantine", &dk, &rng).unwrap().0, 2);
    }

    #[test]
    fn retiring_removes_a_version_but_never_the_current_one() {
        let rng = SystemRandom::new();
        let mut k = Keyring::generate(&rng, NOW).unwrap();
        k.add_version(&rng, NOW).unwrap();
        assert!(matches!(k.retire(2), Err(KeyError::CurrentVersion(2))));
        k.retire(1).unwrap();
        assert!(matches!(k.retire(1), Err(KeyError::UnknownVersion(1))));
        assert_eq!(k.retired_versions(), vec![1]);
        // A retired number is never reused.
        assert_eq!(k.add_version(&rng, NOW).unwrap(), 3);
    }

    #[test]
    fn debug_shows_versions_not_keys() {
        let k = Keyring::generate(&SystemRandom::new(), NOW).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains("versions"));
        assert!(!shown.contains(&b64(k.pseudonymize_key().expose())));
        assert!(!shown.contains(&b64(k.keks[&1].key.expose())));
    }
}
