//! The field token: `gch1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>`.
//!
//! - `gch1` names the format version. A future format gets a new prefix (`gch2`) and both are
//!   read during a migration; nothing else in the token needs to change.
//! - `<key id>` is the opaque, random id (16 bytes, 22 base64url characters) of the data key
//!   of one (subject, activity) pair. It is what lets the gateway find the key again from a
//!   token alone, e.g. in a response page; it reveals nothing about the subject except that
//!   two tokens belong to the same pair (which the upstream record shows anyway).
//! - the associated data binds the format, the key id, the activity, the field and the
//!   subject, so a token copied into another field, another record's citizen or another
//!   activity fails to open.

use std::fmt;

use zeroize::Zeroizing;

use super::aead::{self, AeadError};
use super::secret::Key256;
use super::{b64, push_framed, unb64};
use crate::clock::Random;

pub const PREFIX: &str = "gch1.";
/// Length of a key id in the token (16 bytes in base64url).
pub const KEY_ID_LEN: usize = 22;
/// Largest value a token may carry. Personal fields are names, dates, addresses; a bound
/// keeps the streaming scanner's carry-over buffer small.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Shortest and longest base64url ciphertext part (empty value … `MAX_VALUE_BYTES`).
pub const MIN_SEALED_CHARS: usize = b64_len(aead::OVERHEAD);
pub const MAX_SEALED_CHARS: usize = b64_len(aead::OVERHEAD + MAX_VALUE_BYTES);
/// Longest whole token.
pub const MAX_TOKEN_LEN: usize = PREFIX.len() + KEY_ID_LEN + 1 + MAX_SEALED_CHARS;

const fn b64_len(bytes: usize) -> usize {
    (bytes * 4).div_ceil(3)
}

/// Where a value lives: which processing activity, which declared field, whose data.
/// `subject` is the gateway's pseudonymous subject id, never a name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldContext<'a> {
    pub activity: &'a str,
    pub field: &'a str,
    pub subject: &'a str,
}

impl fmt::Debug for FieldContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The subject id is pseudonymous but still links requests: keep it out of logs.
        f.debug_struct("FieldContext")
            .field("activity", &self.activity)
            .field("field", &self.field)
            .field("subject", &"[redacted]")
            .finish()
    }
}

/// The opaque id of one data key.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(String);

impl KeyId {
    /// A fresh random id.
    pub fn generate(rng: &dyn Random) -> Result<Self, crate::clock::RandomError> {
        let mut b = [0u8; 16];
        rng.fill(&mut b)?;
        Ok(Self(b64(&b)))
    }

    /// Accepts only the exact shape `generate` produces.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == KEY_ID_LEN && s.bytes().all(is_token_byte)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The characters of every token part (base64url).
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("not a gch1 token")]
    Malformed,
    #[error("the value is longer than {MAX_VALUE_BYTES} bytes")]
    TooLong,
    #[error("the token does not open in this context (other field, subject or activity, or altered)")]
    Unreadable,
    #[error(transparent)]
    Random(#[from] crate::clock::RandomError),
}

impl From<AeadError> for TokenError {
    fn from(e: AeadError) -> Self {
        match e {
            AeadError::Random(r) => Self::Random(r),
            AeadError::Unreadable => Self::Unreadable,
        }
    }
}

/// A token split into its parts (not yet opened).
#[derive(Debug)]
pub struct Parsed<'a> {
    pub key_id: KeyId,
    sealed: &'a str,
}

/// Splits a token; does not need any key.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
    let (kid, sealed) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    let key_id = KeyId::parse(kid).ok_or(TokenError::Malformed)?;
    let ok_len = (MIN_SEALED_CHARS..=MAX_SEALED_CHARS).contains(&sealed.len());
    if !ok_len || !sealed.bytes().all(is_token_byte) {
        return Err(TokenError::Malformed);
    }
    Ok(Parsed { key_id, sealed })
}

fn associated_data(key_id: &KeyId, ctx: &FieldContext<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    push_framed(&mut aad, b"gch1");
    push_framed(&mut aad, key_id.as_str().as_bytes());
    push_framed(&mut aad, ctx.activity.as_bytes());
    push_framed(&mut aad, ctx.field.as_bytes());
    push_framed(&mut aad, ctx.subject.as_bytes());
    aad
}

/// Seals `value` for `ctx` under the data key whose schedule is `key` and whose id is
/// `key_id` (the schedule is built once for the several fields of a request).
pub fn seal(
    key: &aead::SealKey,
    key_id: &KeyId,
    ctx: &FieldContext<'_>,
    value: &str,
    rng: &dyn Random,
) -> Result<String, TokenError> {
    use base64::Engine as _;
    if value.len() > MAX_VALUE_BYTES {
        return Err(TokenError::TooLong);
    }
    let sealed = key.seal(&associated_data(key_id, ctx), value.as_bytes(), rng)?;
    let mut token = String::with_capacity(PREFIX.len() + KEY_ID_LEN + 1 + b64_len(sealed.len()));
    token.push_str(PREFIX);
    token.push_str(key_id.as_str());
    token.push('.');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(&sealed, &mut token);
    Ok(token)
}

/// Opens a parsed token with its data key in `ctx`.
pub fn open(key: &Key256, parsed: &Parsed<'_>, ctx: &FieldContext<'_>) -> Result<Zeroizing<String>, TokenError> {
    let sealed = unb64(parsed.sealed).ok_or(TokenError::Malformed)?;
    let plain = aead::open(key, &associated_data(&parsed.key_id, ctx), &sealed)?;
    let text = std::str::from_utf8(&plain).map_err(|_| TokenError::Unreadable)?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    const CTX: FieldContext<'static> = FieldContext { activity: "etat-civil", field: "nom", subject: "sub-1" };

    fn sealed(value: &str) -> (Key256, String) {
        let rng = SystemRandom::new();
        let key = Key256::generate(&rng).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let t = seal(&aead::SealKey::new(&key).unwrap(), &kid, &CTX, value, &rng).unwrap();
        (key, t)
    }

    #[test]
    fn token_has_the_documented_shape_and_round_trips() {
        let (key, t) = sealed("Dupont");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "gch1");
        assert_eq!(parts[1].len(), KEY_ID_LEN);
        assert!(t.bytes().all(|b| is_token_byte(b) || b == b'.'));
        assert_eq!(open(&key, &parse(&t).unwrap(), &CTX).unwrap().as_str(), "Dupont");
    }

    #[test]
    fn a_token_copied_to_another_field_subject_or_activity_does_not_open() {
        let (key, t) = sealed("Dupont");
        let p = parse(&t).unwrap();
        for other in [
            FieldContext { field: "prenom", ..CTX },
            FieldContext { subject: "sub-2", ..CTX },
            FieldContext { activity: "cantine", ..CTX },
        ] {
            assert!(matches!(open(&key, &p, &other), Err(TokenError::Unreadable)), "{other:?}");
        }
    }

    #[test]
    fn a_token_moved_under_another_key_id_does_not_open() {
        let (key, t) = sealed("Dupont");
        let other_kid = KeyId::generate(&SystemRandom::new()).unwrap();
        let moved = format!("{PREFIX}{other_kid}.{}", t.rsplit('.').next().unwrap());
        assert!(open(&key, &parse(&moved).unwrap(), &CTX).is_err());
    }

    #[test]
    fn malformed_and_oversized_are_refused() {
        for bad in
            ["", "gch1.", "gch2.AAAAAAAAAAAAAAAAAAAAAA.AAAA", "gch1.short.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]
        {
            assert!(matches!(parse(bad), Err(TokenError::Malformed)), "{bad}");
        }
        let rng = SystemRandom::new();
        let key = Key256::generate(&rng).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let sk = aead::SealKey::new(&key).unwrap();
        assert!(matches!(seal(&sk, &kid, &CTX, &long, &rng), Err(TokenError::TooLong)));
        let max = seal(&sk, &kid, &CTX, &long[1..], &rng).unwrap();
        assert_eq!(max.len(), MAX_TOKEN_LEN);
        let empty = seal(&sk, &kid, &CTX, "", &rng).unwrap();
        assert_eq!(open(&key, &parse(&empty).unwrap(), &CTX).unwrap().as_str(), "");
    }

    #[test]
    fn field_context_debug_hides_the_subject() {
        let shown = format!("{CTX:?}");
        assert!(!shown.contains("sub-1"), "{shown}");
    }
}
