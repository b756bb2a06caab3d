//! The hash chain and its canonical encoding (version 1).
//!
//! An entry's *body* is its [`AuditEvent`] as canonical JSON: object keys sorted (serde_json's
//! `Value` keeps them in a `BTreeMap`), no whitespace, UTF-8, integers only (times are Unix
//! microseconds), absent options written as `null`. The bytes that are hashed for entry `n`
//! frame the body with its sequence number, so a row moved to another number no longer fits:
//!
//! ```text
//! link(n) = "guichet-audit-v1" 0x00 ‖ seq as i64 big-endian ‖ len(body) as u32 big-endian ‖ body
//! h(0)    = SHA-256("guichet-audit-v1-genesis")
//! h(n)    = SHA-256(h(n-1) ‖ link(n))
//! ```
//!
//! A new encoding would get a new version tag, so old entries keep verifying.

use ring::digest;

use super::event::AuditEvent;

/// A SHA-256 value.
pub type Hash = [u8; 32];

const LINK_TAG: &[u8] = b"guichet-audit-v1\0";
const GENESIS_TAG: &[u8] = b"guichet-audit-v1-genesis";

/// The value chained before the first entry.
pub fn genesis() -> Hash {
    to_hash(digest::digest(&digest::SHA256, GENESIS_TAG))
}

/// The canonical body of an event (see the module documentation).
pub fn canonical_body(event: &AuditEvent) -> Result<String, serde_json::Error> {
    // Through `Value`: its map is ordered by key, which makes the output independent of the
    // order fields are declared in.
    serde_json::to_string(&serde_json::to_value(event)?)
}

/// `h(n)` from `h(n-1)`, the entry's sequence number and its canonical body.
pub fn next_hash(prev: &Hash, seq: i64, body: &str) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(LINK_TAG);
    ctx.update(&seq.to_be_bytes());
    ctx.update(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    ctx.update(body.as_bytes());
    to_hash(ctx.finish())
}

fn to_hash(d: digest::Digest) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

/// Lowercase hex, as stored.
pub fn hash_hex(h: &Hash) -> String {
    crate::clock::hex(h)
}

/// Parses a stored hash; `None` when it is not 64 hex digits.
pub fn parse_hash(s: &str) -> Option<Hash> {
    decode_hex(s)?.try_into().ok()
}

/// Decodes lowercase hex; `None` on any other character or an odd length.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some(hex_digit(*hi)? << 4 | hex_digit(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::Operation;

    #[test]
    fn canonical_bodies_have_sorted_keys_and_no_whitespace() {
        let e = AuditEvent::system(Operation::ConfigLoaded, time::macros::datetime!(2026-11-28 12:00 UTC));
        let body = canonical_body(&e).unwrap();
        assert_eq!(
            body,
            r#"{"activity":null,"actor":{"id":"guichet","kind":"system"},"at":1795867200000000,"operation":{"type":"config_loaded"},"outcome":"success","purpose":null,"request_id":null,"role":"system","subject":null}"#
        );
    }

    #[test]
    fn the_sequence_number_is_part_of_the_hash() {
        let g = genesis();
        assert_ne!(next_hash(&g, 1, "{}"), next_hash(&g, 2, "{}"));
        assert_ne!(next_hash(&g, 1, "{}"), next_hash(&next_hash(&g, 1, "{}"), 1, "{}"));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = genesis();
        assert_eq!(parse_hash(&hash_hex(&h)), Some(h));
        assert_eq!(parse_hash("zz"), None);
        assert_eq!(parse_hash(&"G".repeat(64)), None);
    }
}
