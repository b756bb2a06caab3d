//! Signed checkpoints. Every `every_entries` entries (and at least every `every` while
//! entries arrive) the writer signs the chain's state with Ed25519, so rewriting the chain
//! after the fact — even recomputing every hash — is detected by anyone holding the public
//! key. Pruning anchors the remaining chain on such a checkpoint.
//!
//! The key is a PKCS#8 file (DER, or PEM as `openssl genpkey -algorithm ed25519` writes it),
//! never in the store the journal lives in: whoever can write the journal's tables must not
//! also be able to re-sign them. When the configured file does not exist, `serve` generates
//! one (mode 0600). Several instances must share the same file.
//!
//! Rotation ([`rotate`], `guichet audit rotate-checkpoint-key`) replaces the key file with a
//! new key and appends the old public key to the retired-key list beside it
//! (`<key file>.retired`), so checkpoints signed before still verify. The old private key is
//! not kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;

use super::chain::Hash;

const MESSAGE_TAG: &[u8] = b"guichet-audit-checkpoint-v1\0";
const LEDGER_ROW_TAG: &[u8] = b"guichet-consent-row-v1\0";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the audit signing key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the audit signing key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an Ed25519 PKCS#8 key")]
    Invalid { path: PathBuf },
    #[error("the system random number generator failed")]
    Random,
    #[error("{path}, line {line}: not `KEY_ID PUBLIC_KEY_HEX RETIRED_AT` of an Ed25519 key")]
    BadRetired { path: PathBuf, line: usize },
}

/// The checkpoint signing key, with the public keys it replaced.
pub struct Signer {
    key: Ed25519KeyPair,
    key_id: String,
    retired: Vec<PublicKey>,
}

/// A public key checkpoints are checked against, named by its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PublicKey {
    key_id: String,
    bytes: Vec<u8>,
}

impl PublicKey {
    fn new(bytes: &[u8]) -> Self {
        Self { key_id: key_id(bytes), bytes: bytes.to_vec() }
    }
}

/// What [`rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub retired_key_id: String,
    pub new_key_id: String,
    /// Where the retired public key was appended.
    pub retired_file: PathBuf,
}

/// The retired public keys of the key at `key_file`: `<key_file>.retired`.
pub fn retired_keys_path(key_file: &Path) -> PathBuf {
    let mut name = key_file.as_os_str().to_owned();
    name.push(".retired");
    PathBuf::from(name)
}

/// Replaces the key at `key_file` with a new one, after appending its public half (key id,
/// hex, `retired_at`) to [`retired_keys_path`]. The new key is written beside the file and
/// renamed over it, so the file always holds a whole key; the old private key is gone.
pub fn rotate(key_file: &Path, retired_at: time::OffsetDateTime) -> Result<Rotation, KeyError> {
    let old = Signer::load(key_file)?;
    let rng = ring::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
    let new = Signer::from_file_bytes(doc.as_ref()).ok_or_else(|| KeyError::Invalid { path: key_file.to_owned() })?;
    let retired_file = retired_keys_path(key_file);
    let when = retired_at
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|_| KeyError::Invalid { path: retired_file.clone() })?;
    let line = format!("{} {} {when}\n", old.key_id, crate::clock::hex(old.key.public_key().as_ref()));
    let write = |path: &Path, e| KeyError::Write { path: path.to_owned(), source: e };
    append_synced(&retired_file, line.as_bytes()).map_err(|e| write(&retired_file, e))?;
    let mut staged = key_file.as_os_str().to_owned();
    staged.push(".new");
    let staged = PathBuf::from(staged);
    // A leftover from an interrupted rotation never signed anything: replace it.
    let _ = std::fs::remove_file(&staged);
    crate::line_file::write_new_private(&staged, doc.as_ref()).map_err(|e| write(&staged, e))?;
    std::fs::rename(&staged, key_file).map_err(|e| write(key_file, e))?;
    if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| write(dir, e))?;
    }
    Ok(Rotation { retired_key_id: old.key_id, new_key_id: new.key_id, retired_file })
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the key at `path` and the retired public keys listed beside it.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        let mut signer = Self::from_file_bytes(&bytes).ok_or_else(|| KeyError::Invalid { path: path.to_owned() })?;
        signer.retired = read_retired(&retired_keys_path(path))?;
        Ok(signer)
    }

    /// Loads the key at `path`, generating it first when the file does not exist. Returns
    /// whether it was generated.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        match crate::line_file::write_new_private(path, doc.as_ref()) {
            Ok(()) => {}
            // Another instance created it first: use theirs, so both sign with one key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok((Self::load(path)?, false)),
            Err(source) => return Err(KeyError::Write { path: path.to_owned(), source }),
        }
        Ok((Self::load(path)?, true))
    }

    fn from_file_bytes(bytes: &[u8]) -> Option<Self> {
        let der = if bytes.starts_with(b"-----BEGIN") {
            PrivatePkcs8KeyDer::from_pem_slice(bytes).ok()?.secret_pkcs8_der().to_vec()
        } else {
            bytes.to_vec()
        };
        // "maybe_unchecked" also accepts PKCS#8 v1 (no public key inside), as OpenSSL writes.
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).ok()?;
        let key_id = key_id(key.public_key().as_ref());
        Some(Self { key, key_id, retired: Vec::new() })
    }

    /// A short, stable name for the public key, stored with each checkpoint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public keys: this one and the retired ones.
    pub fn verifier(&self) -> Verifier {
        let mut keys = vec![PublicKey::new(self.key.public_key().as_ref())];
        keys.extend(self.retired.iter().cloned());
        Verifier { keys }
    }

    pub fn sign(&self, cp: &Signed) -> Vec<u8> {
        self.key.sign(&cp.message()).as_ref().to_vec()
    }

    /// Signs one consent ledger row (see [`LedgerRow`]).
    pub fn sign_row(&self, row: &LedgerRow<'_>) -> Vec<u8> {
        self.key.sign(&row.message()).as_ref().to_vec()
    }
}

/// The public halves, which is all `guichet audit verify` needs: the current key first, then
/// the retired ones.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<PublicKey>,
}

impl Verifier {
    /// The current key's id.
    pub fn key_id(&self) -> &str {
        self.keys.first().map_or("", |k| k.key_id.as_str())
    }

    /// Whether checkpoints signed by `key_id` can be checked (current or retired key).
    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.key_id == key_id)
    }

    /// Whether `sig` is a signature of `cp` by the known key `key_id`.
    pub fn verify(&self, key_id: &str, cp: &Signed, sig: &[u8]) -> bool {
        self.verify_message(key_id, &cp.message(), sig)
    }

    /// Whether `sig` is a signature of the ledger row `row` by the known key `key_id`.
    pub fn verify_row(&self, key_id: &str, row: &LedgerRow<'_>, sig: &[u8]) -> bool {
        self.verify_message(key_id, &row.message(), sig)
    }

    fn verify_message(&self, key_id: &str, message: &[u8], sig: &[u8]) -> bool {
        self.keys
            .iter()
            .filter(|k| k.key_id == key_id)
            .any(|k| signature::UnparsedPublicKey::new(&signature::ED25519, &k.bytes).verify(message, sig).is_ok())
    }
}

/// The retired-key list at `path` (none when the file does not exist). Each line:
/// `KEY_ID PUBLIC_KEY_HEX RETIRED_AT`; the key id must be the public key's.
fn read_retired(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(KeyError::Read { path: path.to_owned(), source }),
    };
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || KeyError::BadRetired { path: path.to_owned(), line: n + 1 };
        let mut parts = line.split_whitespace();
        let (Some(id), Some(hex)) = (parts.next(), parts.next()) else { return Err(bad()) };
        let key =
            super::chain::decode_hex(hex).filter(|b| b.len() == 32).map(|b| PublicKey::new(&b)).ok_or_else(bad)?;
        if key.key_id != id {
            return Err(bad());
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Appends `bytes` to `path` (created if missing) and syncs it to disk.
fn append_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What a checkpoint signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub number: i64,
    pub seq: i64,
    pub hash: Hash,
    pub at_us: i64,
}

impl Signed {
    /// `"guichet-audit-checkpoint-v1" 0x00 ‖ number ‖ seq ‖ hash ‖ at_us` (integers i64 big-endian).
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(MESSAGE_TAG.len() + 8 * 3 + 32);
        m.extend_from_slice(MESSAGE_TAG);
        m.extend_from_slice(&self.number.to_be_bytes());
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(&self.hash);
        m.extend_from_slice(&self.at_us.to_be_bytes());
        m
    }
}

/// What a consent ledger row's signature covers: the journal entry it copies (sequence number,
/// chain hash, canonical body). Every column of the row is read from, or checked against, the
/// body, so the signature covers the whole row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRow<'a> {
    pub seq: i64,
    pub hash: &'a Hash,
    pub body: &'a str,
}

impl LedgerRow<'_> {
    /// `"guichet-consent-row-v1" 0x00 ‖ seq (i64 BE) ‖ hash ‖ body`.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(LEDGER_ROW_TAG.len() + 8 + 32 + self.body.len());
        m.extend_from_slice(LEDGER_ROW_TAG);
        m.extend_from_slice(&self.seq.to_be_bytes());
        m.extend_from_slice(self.hash);
        m.extend_from_slice(self.body.as_bytes());
        m
    }
}

fn key_id(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    crate::clock::hex(d.as_ref().get(..8).unwrap_or_default())
}

/// Creates `path` (and its directory) readable by its owner only; fails if it exists.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_reused_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.p8");
        let (signer, generated) = Signer::load_or_generate(&path).unwrap();
        assert!(generated);
        let (again, generated) = Signer::load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(signer.key_id(), again.key_id());
        let cp = Signed { number: 1, seq: 1000, hash: [7; 32], at_us: 42 };
        let sig = signer.sign(&cp);
        assert!(again.verifier().verify(signer.key_id(), &cp, &sig));
        assert!(!again.verifier().verify(signer.key_id(), &Signed { seq: 999, ..cp }, &sig));
        assert!(!again.verifier().verify("someone-else", &cp, &sig));
    }

    #[test]
    fn after_a_rotation_old_signatures_verify_and_the_new_key_signs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.p8");
        let (old, _) = Signer::load_or_generate(&path).unwrap();
        let cp = Signed { number: 1, seq: 10, hash: [3; 32], at_us: 42 };
        let old_sig = old.sign(&cp);
        let at = time::macros::datetime!(2026-11-28 12:00 UTC);

        let r = rotate(&path, at).unwrap();
        assert_eq!(r.retired_key_id, old.key_id());
        let new = Signer::load(&path).unwrap();
        assert_eq!(new.key_id(), r.new_key_id);
        assert_ne!(new.key_id(), old.key_id());
        let v = new.verifier();
        assert_eq!(v.key_id(), new.key_id());
        assert!(v.knows(old.key_id()) && v.knows(new.key_id()));
        assert!(v.verify(old.key_id(), &cp, &old_sig));
        assert!(v.verify(new.key_id(), &cp, &new.sign(&cp)));
        // A retired key's signature is not taken for the new key's, nor the reverse.
        assert!(!v.verify(new.key_id(), &cp, &old_sig));

        // A second rotation keeps both retired keys.
        let r2 = rotate(&path, at).unwrap();
        let v = Signer::load(&path).unwrap().verifier();
        assert!(v.knows(old.key_id()) && v.knows(&r2.retired_key_id) && v.knows(&r2.new_key_id));
        assert!(v.verify(old.key_id(), &cp, &old_sig));
        let listed = std::fs::read_to_string(retired_keys_path(&path)).unwrap();
        assert_eq!(listed.lines().count(), 2);
        assert!(listed.starts_with(&format!("{} ", old.key_id())) && listed.contains("2026-11-28T12:00:00Z"));
    }

    #[test]
    fn a_retired_line_whose_id_is_not_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.p8");
        Signer::load_or_generate(&path).unwrap();
        rotate(&path, time::macros::datetime!(2026-11-28 12:00 UTC)).unwrap();
        let retired = retired_keys_path(&path);
        let text = std::fs::read_to_string(&retired).unwrap();
        std::fs::write(&retired, format!("0000000000000000{}", &text[16..])).unwrap();
        assert!(matches!(Signer::load(&path), Err(KeyError::BadRetired { line: 1, .. })));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(Signer::load(&path), Err(KeyError::Invalid { .. })));
    }
}
