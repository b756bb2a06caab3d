//! Signed checkpoints. Every `every_entries` entries (and at least every `every` while
//! entries arrive) the writer signs the chain's state with Ed25519, so rewriting the chain
//! after the fact — even recomputing every hash — is detected by anyone holding the public
//! key. Pruning anchors the remaining chain on such a checkpoint.
//!
//! The key is a PKCS#8 file (DER, or PEM as `openssl genpkey -algorithm ed25519` writes it),
//! never in the store the journal lives in: whoever can write the journal's tables must not
//! also be able to re-sign them. When the configured file does not exist, `serve` generates
//! one (mode 0600). Several instances must share the same file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use ring::signature::{self, Ed25519KeyPair, KeyPair as _};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject as _;

use super::chain::Hash;

const MESSAGE_TAG: &[u8] = b"guichet-audit-checkpoint-v1\0";

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
}

/// The checkpoint signing key.
pub struct Signer {
    key: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        Self::from_file_bytes(&bytes).ok_or_else(|| KeyError::Invalid { path: path.to_owned() })
    }

    /// Loads the key at `path`, generating it first when the file does not exist. Returns
    /// whether it was generated.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), KeyError> {
        if path.exists() {
            return Ok((Self::load(path)?, false));
        }
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Random)?;
        match write_new_private_file(path, doc.as_ref()) {
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
        Some(Self { key, key_id })
    }

    /// A short, stable name for the public key, stored with each checkpoint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verifier(&self) -> Verifier {
        Verifier { public_key: self.key.public_key().as_ref().to_vec(), key_id: self.key_id.clone() }
    }

    pub fn sign(&self, cp: &Signed) -> Vec<u8> {
        self.key.sign(&cp.message()).as_ref().to_vec()
    }
}

/// The public half, which is all `guichet audit verify` needs.
#[derive(Debug, Clone)]
pub struct Verifier {
    public_key: Vec<u8>,
    key_id: String,
}

impl Verifier {
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn verify(&self, cp: &Signed, sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.public_key).verify(&cp.message(), sig).is_ok()
    }
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

fn key_id(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    crate::clock::hex(d.as_ref().get(..8).unwrap_or_default())
}

/// Creates `path` (and its directory) readable by its owner only; fails if it exists.
fn write_new_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

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
        assert!(again.verifier().verify(&cp, &sig));
        assert!(!again.verifier().verify(&Signed { seq: 999, ..cp }, &sig));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(Signer::load(&path), Err(KeyError::Invalid { .. })));
    }
}
