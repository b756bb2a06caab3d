//! Per-upstream pseudonyms: HMAC-SHA256 over the internal subject id (provider issuer and
//! pairwise `sub`) and the route's name. Stable for a person and an application; different
//! between applications, so no two of them can join their users.

use ring::hmac;

use super::session::Session;
use crate::clock::hex;

#[derive(Debug)]
pub struct Pseudonyms {
    key: hmac::Key,
}

impl Pseudonyms {
    pub fn new(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// The pseudonym of `session`'s person for the upstream named `route` (64 hex chars).
    pub fn for_route(&self, session: &Session, route: &str) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed fields: no two different inputs produce the same byte string.
        for part in ["guichet-subject-v1", session.kind.as_str(), &session.issuer, &session.subject, route] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        hex(ctx.sign().as_ref())
    }

    /// A keyed tag over length-prefixed `parts` (CSRF tokens): unforgeable without the key.
    pub fn tag(&self, parts: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        hex(ctx.sign().as_ref())
    }
}
