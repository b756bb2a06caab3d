//! The field token: `gch2.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>` (and the older
//! `gch1.`, still read).
//!
//! - `gch2` names the format version: the data key is one of a (subject, activity, retention
//!   class) triple, and the associated data binds the class. `gch1` tokens, sealed before
//!   retention classes existed, are under the activity's one *legacy* key and bind no class.
//!   Both have the same shape, so the scanner finds both with one rule.
//! - `<key id>` is the opaque, random id (16 bytes, 22 base64url characters) of the data key.
//!   It is what lets the gateway find the key (and so the owner and the class) again from a
//!   token alone, e.g. in a response page; it reveals nothing about the subject except that
//!   two tokens share a key (which the upstream record shows anyway).
//! - the associated data binds the format, the key id, the activity, the class (`gch2`), the
//!   field and the subject, so a token copied into another field, another record's citizen or
//!   another activity fails to open, and a `gch2` token relabelled `gch1` (or the reverse)
//!   fails too.

use std::fmt;

use zeroize::Zeroizing;

use super::aead::{self, AeadError};
use super::secret::Key256;
use super::{b64, push_framed, unb64};
use crate::clock::Random;

/// The prefix of tokens sealed now: the key is a retention class's.
pub const PREFIX: &str = "gch2.";
/// The prefix of tokens sealed before retention classes (one key per activity), still read.
pub const LEGACY_PREFIX: &str = "gch1.";
/// The versions a token may carry, in the byte after `gch` (both prefixes have one length).
pub const VERSIONS: [u8; 2] = [b'1', b'2'];
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

/// Which token format, and so which key a token needs and what its associated data binds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// `gch1.`: the activity's legacy key, no class in the associated data.
    Legacy,
    /// `gch2.`: a retention class's key, the class in the associated data.
    Classed,
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
    #[error("not a gch1 or gch2 token")]
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
    pub format: Format,
    pub key_id: KeyId,
    sealed: &'a str,
}

/// Whether `text` starts like a field token of either format (a stored value that must be
/// opened rather than used as it is).
pub fn looks_sealed(text: &str) -> bool {
    text.starts_with(PREFIX) || text.starts_with(LEGACY_PREFIX)
}

/// Splits a token; does not need any key.
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    let (format, rest) = if let Some(rest) = token.strip_prefix(PREFIX) {
        (Format::Classed, rest)
    } else {
        (Format::Legacy, token.strip_prefix(LEGACY_PREFIX).ok_or(TokenError::Malformed)?)
    };
    let (kid, sealed) = rest.split_once('.').ok_or(TokenError::Malformed)?;
    let key_id = KeyId::parse(kid).ok_or(TokenError::Malformed)?;
    let ok_len = (MIN_SEALED_CHARS..=MAX_SEALED_CHARS).contains(&sealed.len());
    if !ok_len || !sealed.bytes().all(is_token_byte) {
        return Err(TokenError::Malformed);
    }
    Ok(Parsed { format, key_id, sealed })
}

/// The key a token is sealed under: its id, and the retention class it belongs to (`None`:
/// the activity's legacy key, for `gch1` tokens only).
#[derive(Clone, Copy, Debug)]
pub struct KeyRef<'a> {
    pub id: &'a KeyId,
    pub class: Option<&'a str>,
}

/// The associated data of one key's tokens up to the field: format, key id, activity and
/// class, framed. Built once per key and request; each seal then adds only the field and the
/// subject (the order the tokens already issued were sealed with).
#[derive(Debug, Clone)]
pub struct Binding {
    prefix: Vec<u8>,
    classed: bool,
}

impl Binding {
    pub fn new(key: KeyRef<'_>, activity: &str) -> Self {
        let version: &[u8] = if key.class.is_some() { b"gch2" } else { b"gch1" };
        let parts =
            [Some(version), Some(key.id.as_str().as_bytes()), Some(activity.as_bytes()), key.class.map(str::as_bytes)];
        let mut prefix = Vec::with_capacity(parts.iter().flatten().map(|p| 4 + p.len()).sum());
        for part in parts.into_iter().flatten() {
            push_framed(&mut prefix, part);
        }
        Self { prefix, classed: key.class.is_some() }
    }

    /// Appends the whole associated data of `field` of `subject` to `buf`.
    fn write(&self, field: &str, subject: &str, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.prefix);
        push_framed(buf, field.as_bytes());
        push_framed(buf, subject.as_bytes());
    }

    fn associated_data(&self, ctx: &FieldContext<'_>) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.prefix.len() + 8 + ctx.field.len() + ctx.subject.len());
        self.write(ctx.field, ctx.subject, &mut aad);
        aad
    }
}

/// Seals `value` for `ctx` under the data key whose schedule is `key` (built once for the
/// several fields of a request). A key with a class gives a `gch2` token; the legacy form
/// (no class) exists only so tests can make the tokens older gateways wrote.
pub fn seal(
    key: &aead::SealKey,
    key_ref: KeyRef<'_>,
    ctx: &FieldContext<'_>,
    value: &str,
    rng: &dyn Random,
) -> Result<String, TokenError> {
    let mut token = Vec::with_capacity(token_len(value.len()));
    seal_into(key, key_ref, &Binding::new(key_ref, ctx.activity), ctx, value, rng, &mut token)?;
    String::from_utf8(token).map_err(|_| TokenError::Malformed)
}

/// Length of the token of a value of `len` bytes.
pub const fn token_len(len: usize) -> usize {
    PREFIX.len() + KEY_ID_LEN + 1 + b64_len(aead::OVERHEAD + len)
}

/// [`seal`], appending the token to `out` (a request body being rewritten) instead of
/// allocating it: the nonce and value are written there, sealed in place with the associated
/// data laid out behind them, then replaced by their base64. `binding` must be `key_ref`'s in
/// `ctx`'s activity. On an error, `out` is cut back to what it held.
pub fn seal_into(
    key: &aead::SealKey,
    key_ref: KeyRef<'_>,
    binding: &Binding,
    ctx: &FieldContext<'_>,
    value: &str,
    rng: &dyn Random,
    out: &mut Vec<u8>,
) -> Result<(), TokenError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(TokenError::TooLong);
    }
    if binding.classed != key_ref.class.is_some() {
        return Err(TokenError::Malformed);
    }
    let start = out.len();
    out.reserve(token_len(value.len()) + binding.prefix.len() + 8 + ctx.field.len() + ctx.subject.len());
    let written = (|| -> Result<(), TokenError> {
        out.extend_from_slice(if binding.classed { PREFIX } else { LEGACY_PREFIX }.as_bytes());
        out.extend_from_slice(key_ref.id.as_str().as_bytes());
        out.push(b'.');
        let raw_start = out.len();
        let mut nonce = [0u8; aead::NONCE_LEN];
        rng.fill(&mut nonce).map_err(TokenError::Random)?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(value.as_bytes());
        let aad_start = out.len();
        binding.write(ctx.field, ctx.subject, out);
        let (sealed, aad) = out
            .get_mut(raw_start..)
            .and_then(|b| b.split_at_mut_checked(aad_start - raw_start))
            .ok_or(TokenError::Malformed)?;
        let body = sealed.get_mut(aead::NONCE_LEN..).unwrap_or_default();
        let tag = key.seal_in_place(nonce, aad, body)?;
        out.truncate(aad_start);
        out.extend_from_slice(&tag);
        // The raw bytes are followed by their base64, which then moves over them.
        let raw_end = out.len();
        let encoded = super::B64.encoded_length(raw_end - raw_start);
        out.resize(raw_end + encoded, 0);
        let (raw, text) = out
            .get_mut(raw_start..)
            .and_then(|b| b.split_at_mut_checked(raw_end - raw_start))
            .ok_or(TokenError::Malformed)?;
        let written = super::B64.encode(raw, base64_simd::Out::from_slice(text)).len();
        out.copy_within(raw_end..raw_end + written, raw_start);
        out.truncate(raw_start + written);
        Ok(())
    })();
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Opens a parsed token in `ctx` with its data key, of retention class `class` (`None`: the
/// activity's legacy key). A `gch2` token needs a class key, a `gch1` token the legacy key.
pub fn open(
    key: &Key256,
    class: Option<&str>,
    parsed: &Parsed<'_>,
    ctx: &FieldContext<'_>,
) -> Result<Zeroizing<String>, TokenError> {
    open_decoded(&aead::SealKey::new(key)?, class, &decode(parsed)?, ctx)
}

/// A token's sealed bytes decoded from base64, once for several tries (a reader that does
/// not know a token's field tries it against each field it may belong to).
pub struct Decoded {
    format: Format,
    key_id: KeyId,
    sealed: Vec<u8>,
}

impl Decoded {
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }
}

pub fn decode(parsed: &Parsed<'_>) -> Result<Decoded, TokenError> {
    let sealed = unb64(parsed.sealed).ok_or(TokenError::Malformed)?;
    Ok(Decoded { format: parsed.format, key_id: parsed.key_id.clone(), sealed })
}

/// [`open`] with the token decoded and the key's schedule built beforehand.
pub fn open_decoded(
    key: &aead::SealKey,
    class: Option<&str>,
    token: &Decoded,
    ctx: &FieldContext<'_>,
) -> Result<Zeroizing<String>, TokenError> {
    if class.is_some() != (token.format == Format::Classed) {
        return Err(TokenError::Unreadable);
    }
    let key_ref = KeyRef { id: &token.key_id, class };
    let plain = key.open(&Binding::new(key_ref, ctx.activity).associated_data(ctx), &token.sealed)?;
    let text = std::str::from_utf8(&plain).map_err(|_| TokenError::Unreadable)?;
    Ok(Zeroizing::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    const CTX: FieldContext<'static> = FieldContext { activity: "etat-civil", field: "nom", subject: "sub-1" };
    const CLASS: Option<&str> = Some("r-0123456789abcdef");

    fn sealed_in(class: Option<&str>, value: &str) -> (Key256, String) {
        let rng = SystemRandom::new();
        let key = Key256::generate(&rng).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let t = seal(&aead::SealKey::new(&key).unwrap(), KeyRef { id: &kid, class }, &CTX, value, &rng).unwrap();
        (key, t)
    }

    fn sealed(value: &str) -> (Key256, String) {
        sealed_in(CLASS, value)
    }

    #[test]
    fn token_has_the_documented_shape_and_round_trips() {
        for (class, version) in [(CLASS, "gch2"), (None, "gch1")] {
            let (key, t) = sealed_in(class, "Dupont");
            let parts: Vec<&str> = t.split('.').collect();
            assert_eq!(parts.len(), 3);
            assert_eq!(parts[0], version);
            assert_eq!(parts[1].len(), KEY_ID_LEN);
            assert!(t.bytes().all(|b| is_token_byte(b) || b == b'.'));
            let p = parse(&t).unwrap();
            assert_eq!(p.format, if class.is_some() { Format::Classed } else { Format::Legacy });
            assert_eq!(open(&key, class, &p, &CTX).unwrap().as_str(), "Dupont");
        }
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
            assert!(matches!(open(&key, CLASS, &p, &other), Err(TokenError::Unreadable)), "{other:?}");
        }
    }

    #[test]
    fn the_class_is_bound_and_the_format_cannot_be_relabelled() {
        let (key, t) = sealed("Dupont");
        let p = parse(&t).unwrap();
        assert!(matches!(open(&key, Some("r-other"), &p, &CTX), Err(TokenError::Unreadable)));
        assert!(matches!(open(&key, None, &p, &CTX), Err(TokenError::Unreadable)));
        let relabelled = t.replacen("gch2.", "gch1.", 1);
        assert!(open(&key, None, &parse(&relabelled).unwrap(), &CTX).is_err());
        let (legacy_key, legacy) = sealed_in(None, "Dupont");
        let promoted = legacy.replacen("gch1.", "gch2.", 1);
        for class in [None, CLASS] {
            assert!(open(&legacy_key, class, &parse(&promoted).unwrap(), &CTX).is_err());
        }
    }

    #[test]
    fn a_token_moved_under_another_key_id_does_not_open() {
        let (key, t) = sealed("Dupont");
        let other_kid = KeyId::generate(&SystemRandom::new()).unwrap();
        let moved = format!("{PREFIX}{other_kid}.{}", t.rsplit('.').next().unwrap());
        assert!(open(&key, CLASS, &parse(&moved).unwrap(), &CTX).is_err());
    }

    #[test]
    fn malformed_and_oversized_are_refused() {
        for bad in [
            "",
            "gch1.",
            "gch2.",
            "gch3.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "gch2.AAAAAAAAAAAAAAAAAAAAAA.AAAA",
            "gch1.short.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "gch2.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(matches!(parse(bad), Err(TokenError::Malformed)), "{bad}");
        }
        let rng = SystemRandom::new();
        let key = Key256::generate(&rng).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let kr = KeyRef { id: &kid, class: CLASS };
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let sk = aead::SealKey::new(&key).unwrap();
        assert!(matches!(seal(&sk, kr, &CTX, &long, &rng), Err(TokenError::TooLong)));
        let max = seal(&sk, kr, &CTX, &long[1..], &rng).unwrap();
        assert_eq!(max.len(), MAX_TOKEN_LEN);
        let empty = seal(&sk, kr, &CTX, "", &rng).unwrap();
        assert_eq!(open(&key, CLASS, &parse(&empty).unwrap(), &CTX).unwrap().as_str(), "");
    }

    /// A random data key with its schedule and key id, and the randomness that made them.
    fn fresh_key() -> (SystemRandom, Key256, KeyId, aead::SealKey) {
        let rng = SystemRandom::new();
        let key = Key256::generate(&rng).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let sk = aead::SealKey::new(&key).unwrap();
        (rng, key, kid, sk)
    }

    #[test]
    fn a_token_sealed_into_a_buffer_follows_what_it_held_and_opens() {
        let (rng, key, kid, sk) = fresh_key();
        let kr = KeyRef { id: &kid, class: CLASS };
        let binding = Binding::new(kr, CTX.activity);
        let mut out = b"{\"nom\":\"".to_vec();
        seal_into(&sk, kr, &binding, &CTX, "Dupont", &rng, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let token = text.strip_prefix("{\"nom\":\"").expect("what the buffer held stays in front");
        assert_eq!(token.len(), token_len("Dupont".len()));
        assert!(!token.contains("Dupont"));
        assert_eq!(open(&key, CLASS, &parse(token).unwrap(), &CTX).unwrap().as_str(), "Dupont");
    }

    #[test]
    fn a_seal_into_a_buffer_that_fails_leaves_the_buffer_as_it_was() {
        let (rng, _, kid, sk) = fresh_key();
        let kr = KeyRef { id: &kid, class: CLASS };
        let mut out = b"before".to_vec();
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        let binding = Binding::new(kr, CTX.activity);
        assert!(matches!(seal_into(&sk, kr, &binding, &CTX, &long, &rng, &mut out), Err(TokenError::TooLong)));
        // A binding laid out for the legacy format does not seal a classed key's token.
        let legacy = Binding::new(KeyRef { id: &kid, class: None }, CTX.activity);
        assert!(seal_into(&sk, kr, &legacy, &CTX, "Dupont", &rng, &mut out).is_err());
        assert_eq!(out, b"before");
    }

    #[test]
    fn field_context_debug_hides_the_subject() {
        let shown = format!("{CTX:?}");
        assert!(!shown.contains("sub-1"), "{shown}");
    }

    proptest::proptest! {
        /// The parser never panics, accepts only the two prefixes and the documented shape,
        /// and what it accepts it splits back into the same text.
        #[test]
        fn the_parser_accepts_exactly_the_documented_shape(s in "(gch[0-3]\\.)?[A-Za-z0-9_=.-]{0,80}") {
            if let Ok(p) = parse(&s) {
                let prefix = match p.format { Format::Classed => PREFIX, Format::Legacy => LEGACY_PREFIX };
                proptest::prop_assert!(s.starts_with(prefix));
                proptest::prop_assert_eq!(format!("{prefix}{}.{}", p.key_id, p.sealed), s.clone());
                proptest::prop_assert!(p.sealed.len() >= MIN_SEALED_CHARS);
                proptest::prop_assert!(p.sealed.bytes().all(is_token_byte));
            }
        }

        /// Any value round-trips in both formats, and only under its own class.
        #[test]
        fn any_value_round_trips(value in "\\PC{0,40}", legacy in proptest::bool::ANY) {
            let class = if legacy { None } else { CLASS };
            let (key, t) = sealed_in(class, &value);
            let p = parse(&t).unwrap();
            let opened = open(&key, class, &p, &CTX).unwrap();
            proptest::prop_assert_eq!(opened.as_str(), value.as_str());
            let other = if legacy { CLASS } else { None };
            proptest::prop_assert!(open(&key, other, &p, &CTX).is_err());
        }
    }
}
