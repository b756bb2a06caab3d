//! `X-Guichet-Assertion`: a short-lived ES256 JWT telling an upstream who is asking (its
//! pseudonym, the claims the route allows, acr, agent roles), verifiable with the gateway's
//! public keys at `/.guichet/jwks.json`. Signed once per session and route, cached until it
//! nears expiry.

use std::path::Path;

use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::jose::{self, JwsError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Read(String),
    #[error(
        "the key must be an EC P-256 key in PKCS#8 PEM (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
    )]
    NotP256,
    #[error("cannot generate a key")]
    Generate,
}

/// The signing key and its id.
#[derive(Debug)]
pub struct AssertionKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl AssertionKey {
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let der = crate::tls::load_private_key(path).map_err(|e| KeyError::Read(e.to_string()))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else { return Err(KeyError::NotP256) };
        Self::from_pkcs8(pkcs8.secret_pkcs8_der())
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).map_err(|_| KeyError::NotP256)?;
        let kid = jose::es256_kid(&pair);
        Ok(Self { pair, kid })
    }

    /// A fresh key's PKCS#8 document, for keeping it (the receipt key in the store).
    pub fn generate_pkcs8() -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Generate)
    }

    /// A fresh key (demo, tests, or a single instance without a configured key file).
    pub fn generate() -> Result<Self, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS published at `/.guichet/jwks.json`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [jose::es256_public_jwk(&self.pair, &self.kid)] })
    }

    pub fn sign(&self, claims: &Value) -> Result<String, JwsError> {
        self.sign_typed("guichet-assertion+jwt", claims)
    }

    /// Signs `claims` with another `typ` (consent receipts), so one kind of token can never
    /// be mistaken for the other.
    pub fn sign_typed(&self, typ: &str, claims: &Value) -> Result<String, JwsError> {
        jose::sign_es256(&self.pair, &self.kid, typ, claims, &ring::rand::SystemRandom::new())
    }
}

/// What an assertion states.
pub struct AssertionFacts<'a> {
    pub issuer: &'a str,
    pub route: &'a str,
    pub subject: &'a str,
    pub kind: &'a str,
    pub acr: &'a str,
    pub roles: &'a [String],
    pub claims: &'a serde_json::Map<String, Value>,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

pub fn claims(f: &AssertionFacts<'_>) -> Value {
    json!({
        "iss": f.issuer,
        "aud": f.route,
        "sub": f.subject,
        "iat": f.now.unix_timestamp(),
        "nbf": f.now.unix_timestamp() - 5,
        "exp": f.expires_at.unix_timestamp(),
        "guichet_kind": f.kind,
        "acr": f.acr,
        "roles": f.roles,
        "claims": f.claims,
    })
}
