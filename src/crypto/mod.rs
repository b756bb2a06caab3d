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
pub use vault::{CryptoError, DEFAULT_CLASS, LEGACY_CLASS, OpenableToken, SealingKey, Vault};

/// Appends `bytes` preceded by its length (u32, big-endian), so that concatenated fields of
/// associated data or MAC input can never be confused (`"ab" + "c"` ≠ `"a" + "bc"`).
pub(crate) fn push_framed(buf: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(bytes);
}

/// base64url without padding: the alphabet of every token part (safe in URLs, JSON, HTML,
/// CSV and form fields without escaping). Through `base64-simd`: a token's ciphertext is
/// encoded on every seal and decoded on every reveal, where the `base64` crate's set-up costs
/// more than the few dozen bytes themselves; both refuse the same texts (tested below).
pub(crate) const B64: base64_simd::Base64 = base64_simd::URL_SAFE_NO_PAD;

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode_to_string(bytes)
}

pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    B64.decode_to_vec(text).ok()
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

    fn base64_crate() -> base64::engine::GeneralPurpose {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
    }

    proptest::proptest! {
        #[test]
        fn encodes_as_the_base64_crate_does(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            use base64::Engine as _;
            proptest::prop_assert_eq!(b64(&bytes), base64_crate().encode(&bytes));
        }

        /// Padding, other alphabets, stray characters, impossible lengths and non-zero
        /// trailing bits are refused alike: a token has one spelling only.
        #[test]
        fn decodes_and_refuses_as_the_base64_crate_does(text in "[A-Za-z0-9_=+/. -]{0,40}") {
            use base64::Engine as _;
            proptest::prop_assert_eq!(unb64(&text), base64_crate().decode(&text).ok());
        }

        #[test]
        fn every_last_character_but_one_is_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 1..40)) {
            let text = b64(&bytes);
            let mut others = 0;
            for c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
                let mut t = text.clone().into_bytes();
                if let Some(last) = t.last_mut() { *last = *c; }
                let t = String::from_utf8(t).unwrap();
                if t != text && unb64(&t).is_some_and(|d| d == bytes) { others += 1; }
            }
            proptest::prop_assert_eq!(others, 0);
        }
    }
}
