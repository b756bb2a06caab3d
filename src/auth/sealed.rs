//! A session's identity claims and ID token, sealed at rest under a key only the browser can
//! rebuild. The key is an HMAC of the session's cookie value (256 random bits the store never
//! sees: it keeps only the value's SHA-256), so neither the store, nor its backups, nor
//! someone who also holds the gateway's keyring can read who a session belongs to. The
//! gateway opens them when the browser presents its cookie, which is the only moment it needs
//! them. See docs/authentication.md ("What the store keeps").
//!
//! Format: `gchs1.<base64url(nonce ‖ ciphertext ‖ tag)>`, AES-256-GCM, associated data =
//! label ‖ session id hash ‖ field name (each framed), so a value moved to another session's
//! row or another column does not open.

use ring::hmac;

use crate::clock::Random;
use crate::crypto::aead;
use crate::crypto::secret::Key256;
use crate::crypto::{b64, push_framed, unb64};

const PREFIX: &str = "gchs1.";
const KEY_LABEL: &[u8] = b"guichet/session-seal/v1";
const AAD_LABEL: &[u8] = b"gchs1";

/// A sealed value could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[error("a session's sealed identity does not open with its cookie")]
pub struct SealError;

/// The sealing key of the session whose cookie value is `cookie`.
pub struct SessionKey(Key256);

impl SessionKey {
    pub fn of_cookie(cookie: &str) -> Result<Self, SealError> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
        let tag = hmac::sign(&key, KEY_LABEL);
        Key256::from_slice(tag.as_ref()).map(Self).ok_or(SealError)
    }

    /// Seals `value`, bound to the session (`id_hash`) and the column (`field`).
    pub fn seal(&self, id_hash: &str, field: &str, value: &str, rng: &dyn Random) -> Result<String, SealError> {
        let sealed = aead::seal(&self.0, &aad(id_hash, field), value.as_bytes(), rng).map_err(|_| SealError)?;
        Ok(format!("{PREFIX}{}", b64(&sealed)))
    }

    /// Opens what [`SessionKey::seal`] produced for the same session and column.
    pub fn open(&self, id_hash: &str, field: &str, sealed: &str) -> Result<String, SealError> {
        let bytes = sealed.strip_prefix(PREFIX).and_then(unb64).ok_or(SealError)?;
        let plain = aead::open(&self.0, &aad(id_hash, field), &bytes).map_err(|_| SealError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError)
    }
}

fn aad(id_hash: &str, field: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + id_hash.len() + field.len() + 12);
    push_framed(&mut aad, AAD_LABEL);
    push_framed(&mut aad, id_hash.as_bytes());
    push_framed(&mut aad, field.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    #[test]
    fn opens_only_with_the_same_cookie_session_and_column() {
        let rng = SystemRandom::new();
        let k = SessionKey::of_cookie("cookie-a").unwrap();
        let sealed = k.seal("hash-a", "claims", r#"{"family_name":"DUBOIS"}"#, &rng).unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("DUBOIS"));
        assert_eq!(k.open("hash-a", "claims", &sealed).unwrap(), r#"{"family_name":"DUBOIS"}"#);
        assert!(SessionKey::of_cookie("cookie-b").unwrap().open("hash-a", "claims", &sealed).is_err());
        assert!(k.open("hash-b", "claims", &sealed).is_err(), "another session's row");
        assert!(k.open("hash-a", "id_token", &sealed).is_err(), "another column");
        assert!(k.open("hash-a", "claims", r#"{"family_name":"DUBOIS"}"#).is_err(), "clear text is refused");
    }
}
