//! Deterministic keyed tokens (HMAC-SHA-256), each under its own key (one key, one usage):
//!
//! - `pseudonymize`: `gchp1.<base64url(mac)>`, irreversible; equal values give equal tokens
//!   within one (activity, field), so an upstream can compare or deduplicate without learning
//!   the value.
//! - `blind_index`: `gchb1.<base64url(mac)>`, stored by the upstream beside an encrypted
//!   value so an exact-match search can be rewritten into it (issue 5 item 6).
//!
//! Both bind activity and field, so the same value in two fields gives unrelated tokens.
//! Normalisation (case, spaces) is the caller's choice, made per field by the policy.

use ring::hmac;

use super::secret::Key256;
use super::{b64, push_framed};

pub const PSEUDONYM_PREFIX: &str = "gchp1.";
pub const BLIND_INDEX_PREFIX: &str = "gchb1.";

fn mac(key: &Key256, domain: &[u8], activity: &str, field: &str, value: &str) -> String {
    let mut msg = Vec::with_capacity(32 + value.len());
    push_framed(&mut msg, domain);
    push_framed(&mut msg, activity.as_bytes());
    push_framed(&mut msg, field.as_bytes());
    push_framed(&mut msg, value.as_bytes());
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()), &msg);
    b64(tag.as_ref())
}

/// The pseudonym of `value` in (activity, field), under the pseudonymize key.
pub fn pseudonymize(key: &Key256, activity: &str, field: &str, value: &str) -> String {
    format!("{PSEUDONYM_PREFIX}{}", mac(key, b"guichet/pseudonymize/v1", activity, field, value))
}

/// The blind index of `value` in (activity, field), under the blind-index key.
pub fn blind_index(key: &Key256, activity: &str, field: &str, value: &str) -> String {
    format!("{BLIND_INDEX_PREFIX}{}", mac(key, b"guichet/blind-index/v1", activity, field, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(b: u8) -> Key256 {
        Key256::from_slice(&[b; 32]).unwrap()
    }

    #[test]
    fn deterministic_per_key_and_context() {
        let a = pseudonymize(&k(1), "cantine", "nom", "Dupont");
        assert_eq!(a, pseudonymize(&k(1), "cantine", "nom", "Dupont"));
        assert!(a.starts_with(PSEUDONYM_PREFIX));
        assert_eq!(a.len(), PSEUDONYM_PREFIX.len() + 43);
        assert_ne!(a, pseudonymize(&k(2), "cantine", "nom", "Dupont"));
        assert_ne!(a, pseudonymize(&k(1), "cantine", "prenom", "Dupont"));
        assert_ne!(a, pseudonymize(&k(1), "voirie", "nom", "Dupont"));
        assert!(!a.contains("Dupont"));
    }

    #[test]
    fn blind_index_is_a_separate_domain_even_under_the_same_bytes() {
        let p = pseudonymize(&k(1), "cantine", "nom", "Dupont");
        let b = blind_index(&k(1), "cantine", "nom", "Dupont");
        assert_ne!(p.split('.').nth(1), b.split('.').nth(1));
        assert_eq!(b, blind_index(&k(1), "cantine", "nom", "Dupont"));
    }
}
