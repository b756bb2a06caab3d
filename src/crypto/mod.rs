//! How protected data is sealed. Key domains (written down in `docs/cryptography.md` before
//! any code, one key one usage — ANSSI PA-079, R51/R52):
//!
//! | domain | key | protects | where it lives |
//! |---|---|---|---|
//! | KEK | `keyring` version *n* (AES-256) | wraps data keys (AES-256-GCM) | keyring file, age-encrypted, never in the store |
//! | data key | one per (subject, activity, retention class) (AES-256) | field values → `gch2.` tokens (older `gch1.`: one legacy key per (subject, activity)) | store, wrapped only; cache in memory |
//! | pseudonymize | keyring `pseudonymize` (HMAC-SHA-256) | irreversible `gchp1.` tokens | keyring file |
//! | blind index | keyring `blind_index` (HMAC-SHA-256) | exact-match search `gchb1.` tokens | keyring file |
//! | (later) assertion signing | separate key pair | identity assertions to upstreams | not here |
//!
//! Modules, bottom-up: `secret` (key bytes that zeroize), `aead` (AES-256-GCM with a random
//! nonce), `token` (the field token format), `mac` (pseudonyms and blind indexes), `scan`
//! (finding tokens in text and streams), `keyring` (KEKs in an age file), `vault` (the
//! service: data keys, cache, shredding), `admin` (what `guichet keys …` runs).

pub mod admin;
pub mod aead;
pub mod batch;
pub mod keyring;
pub mod mac;
pub mod scan;
pub mod secret;
pub mod token;
pub mod vault;

pub use keyring::{KeyError, Keyring};
pub use token::FieldContext;
pub use vault::{CryptoError, DEFAULT_CLASS, LEGACY_CLASS, SealingKey, Vault};

/// Appends `bytes` preceded by its length (u32, big-endian), so that concatenated fields of
/// associated data or MAC input can never be confused (`"ab" + "c"` ≠ `"a" + "bc"`).
pub(crate) fn push_framed(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// base64url without padding: the alphabet of every token part (safe in URLs, JSON, HTML,
/// CSV and form fields without escaping).
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_separates_fields() {
        let mut a = Vec::new();
        push_framed(&mut a, b"ab");
        push_framed(&mut a, b"c");
        let mut b = Vec::new();
        push_framed(&mut b, b"a");
        push_framed(&mut b, b"bc");
        assert_ne!(a, b);
    }
}
