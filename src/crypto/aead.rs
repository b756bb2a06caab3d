//! AES-256-GCM through `ring`, with a 96-bit random nonce written in front of the
//! ciphertext: `nonce ‖ ciphertext ‖ tag`.
//!
//! Nonce strategy: random, 96 bits, drawn from the injected CSPRNG for every seal. NIST SP
//! 800-38D bounds a key used with random nonces to 2^32 seals; data keys belong to one
//! (subject, activity) and seal a handful of fields per request, and KEKs wrap one data key
//! per pair, so both stay many orders of magnitude below (see `docs/cryptography.md`).

pub use ring::aead::NONCE_LEN;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::secret::Key256;
use crate::clock::{Random, RandomError};

/// Bytes added to every plaintext: the nonce in front, the tag behind.
pub const OVERHEAD: usize = NONCE_LEN + 16;

#[derive(Debug, thiserror::Error)]
pub enum AeadError {
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Wrong key, wrong associated data, or altered bytes: GCM cannot tell which, by design.
    #[error("the ciphertext does not open with this key and context")]
    Unreadable,
}

fn key(k: &Key256) -> Result<LessSafeKey, AeadError> {
    // The key schedule is rebuilt per call (about 100 ns): only the raw bytes are kept, in
    // zeroizing memory, since ring does not promise to wipe its expanded keys.
    UnboundKey::new(&AES_256_GCM, k.expose()).map(LessSafeKey::new).map_err(|_| AeadError::Unreadable)
}

/// Seals `plaintext` bound to `aad`; returns `nonce ‖ ciphertext ‖ tag`.
pub fn seal(k: &Key256, aad: &[u8], plaintext: &[u8], rng: &dyn Random) -> Result<Vec<u8>, AeadError> {
    SealKey::new(k)?.seal(aad, plaintext, rng)
}

/// A data key with its AES key schedule built, for the seals of one request (the protect
/// phase seals every declared field of a body with the same key) or the tries of one token
/// (a reader tries it against each field it may belong to). It lives no longer than that;
/// the raw key stays in zeroizing memory (`ring` does not promise to wipe a schedule).
pub struct SealKey(LessSafeKey);

impl SealKey {
    pub fn new(k: &Key256) -> Result<Self, AeadError> {
        key(k).map(Self)
    }

    /// As [`seal`], in one allocation.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8], rng: &dyn Random) -> Result<Vec<u8>, AeadError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)?;
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body = out.get_mut(NONCE_LEN..).ok_or(AeadError::Unreadable)?;
        let tag = self.seal_in_place(nonce, aad, body)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Encrypts `body` in place under `nonce` (which the caller drew at random and keeps in
    /// front of it) bound to `aad`; returns the tag to write behind it.
    pub fn seal_in_place(&self, nonce: [u8; NONCE_LEN], aad: &[u8], body: &mut [u8]) -> Result<[u8; 16], AeadError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .map_err(|_| AeadError::Unreadable)?;
        <[u8; 16]>::try_from(tag.as_ref()).map_err(|_| AeadError::Unreadable)
    }
}

/// Opens what `seal` produced with the same key and `aad`.
pub fn open(k: &Key256, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
    SealKey::new(k)?.open(aad, sealed)
}

impl SealKey {
    /// As [`open`], with the schedule already built.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AeadError> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(AeadError::Unreadable)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AeadError::Unreadable)?;
        let mut buf = Zeroizing::new(body.to_vec());
        let plain_len = self.0.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| AeadError::Unreadable)?.len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    fn k(b: u8) -> Key256 {
        Key256::from_slice(&[b; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let rng = SystemRandom::new();
        let a = seal(&k(1), b"ctx", b"Dupont", &rng).unwrap();
        let b = seal(&k(1), b"ctx", b"Dupont", &rng).unwrap();
        assert_ne!(a, b, "random nonces make equal values look different");
        assert_eq!(a.len(), 6 + OVERHEAD);
        assert_eq!(open(&k(1), b"ctx", &a).unwrap().as_slice(), b"Dupont");
    }

    #[test]
    fn wrong_key_context_or_bytes_do_not_open() {
        let rng = SystemRandom::new();
        let mut s = seal(&k(1), b"ctx", b"Dupont", &rng).unwrap();
        assert!(open(&k(2), b"ctx", &s).is_err());
        assert!(open(&k(1), b"other", &s).is_err());
        assert!(open(&k(1), b"ctx", &s[..10]).is_err());
        let last = s.len() - 1;
        s[last] ^= 1;
        assert!(open(&k(1), b"ctx", &s).is_err());
    }
}
