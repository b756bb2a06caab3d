//! Compact JWS (RFC 7515) verification and ES256 signing with `ring`, for every token the
//! gateway handles: ID tokens, signed userinfo, back-channel logout tokens (verified) and the
//! identity assertion sent upstream (signed). One code path pins the algorithms for all of
//! them: ES256 and RS256 only — never `none`, never HS*.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The algorithms a provider's tokens may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Rs256,
}

impl Alg {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

/// Every algorithm Guichet accepts from a provider.
pub const PINNED_ALGS: &[Alg] = &[Alg::Es256, Alg::Rs256];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm `{0}` is not allowed")]
    DisallowedAlg(String),
    #[error("no key with the token's kid")]
    UnknownKid,
    #[error("no key to verify the token with")]
    NoKey,
    #[error("bad signature")]
    BadSignature,
    #[error("cannot sign: {0}")]
    Sign(&'static str),
}

/// One public key from a JWKS.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    key: PublicKey,
}

#[derive(Debug, Clone)]
enum PublicKey {
    /// Uncompressed SEC1 point (0x04 ‖ x ‖ y).
    P256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

impl Jwk {
    fn alg(&self) -> Alg {
        match self.key {
            PublicKey::P256(_) => Alg::Es256,
            PublicKey::Rsa { .. } => Alg::Rs256,
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            PublicKey::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(message, sig).is_ok()
            }
            PublicKey::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig).is_ok()
            }
        }
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// A provider's key set. Keys that cannot be parsed, or are not for signatures, are skipped:
/// one odd key must not stop verification with the good ones.
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    pub fn parse(json: &[u8]) -> Result<Self, JwsError> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<Value>,
        }
        let raw: Raw = serde_json::from_slice(json).map_err(|_| JwsError::Malformed)?;
        let keys = raw.keys.into_iter().filter_map(|v| serde_json::from_value(v).ok()).filter_map(parse_jwk).collect();
        Ok(Self { keys })
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn parse_jwk(raw: RawJwk) -> Option<Jwk> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match raw.kty.as_deref()? {
        "EC" if raw.crv.as_deref() == Some("P-256") => {
            let x = b64(raw.x.as_deref()?).ok()?;
            let y = b64(raw.y.as_deref()?).ok()?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            PublicKey::P256(point)
        }
        "RSA" => {
            let n = b64(raw.n.as_deref()?).ok()?;
            let e = b64(raw.e.as_deref()?).ok()?;
            if n.len() < 256 || e.is_empty() {
                return None;
            }
            PublicKey::Rsa { n, e }
        }
        _ => return None,
    };
    Some(Jwk { kid: raw.kid, key })
}

/// The protected header fields we read.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
}

/// A token whose signature was verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Header,
    pub alg: Alg,
    pub claims: Map<String, Value>,
}

/// Reads the header without trusting it (to pick a key, or to see whether the kid is known).
pub fn peek_header(token: &str) -> Result<Header, JwsError> {
    let (h, _, _) = split(token)?;
    serde_json::from_slice(&b64(h)?).map_err(|_| JwsError::Malformed)
}

/// Verifies `token` with a key of `keys`, accepting only `allowed` algorithms. With a `kid`,
/// only that key is tried; without one, every key of the token's algorithm is tried (the
/// single-key case is the common one).
pub fn verify(token: &str, keys: &JwkSet, allowed: &[Alg]) -> Result<Verified, JwsError> {
    let (h, p, s) = split(token)?;
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| JwsError::Malformed)?;
    let alg = Alg::parse(&header.alg)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| JwsError::DisallowedAlg(header.alg.clone()))?;
    let sig = b64(s)?;
    let message_len = h.len() + 1 + p.len();
    let message = token.as_bytes().get(..message_len).ok_or(JwsError::Malformed)?;
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => {
            let k: Vec<&Jwk> = keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect();
            if k.is_empty() {
                return Err(JwsError::UnknownKid);
            }
            k
        }
        None => keys.keys.iter().collect(),
    };
    let candidates: Vec<&Jwk> = candidates.into_iter().filter(|k| k.alg() == alg).collect();
    if candidates.is_empty() {
        return Err(JwsError::NoKey);
    }
    if !candidates.iter().any(|k| k.verify(message, &sig)) {
        return Err(JwsError::BadSignature);
    }
    let claims = serde_json::from_slice(&b64(p)?).map_err(|_| JwsError::Malformed)?;
    Ok(Verified { header, alg, claims })
}

fn split(token: &str) -> Result<(&str, &str, &str), JwsError> {
    let mut it = token.split('.');
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(JwsError::Malformed),
    }
}

pub fn b64(s: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|_| JwsError::Malformed)
}

pub fn b64e(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` as an ES256 compact JWS with `kid` in the header.
pub fn sign_es256(
    key: &EcdsaKeyPair,
    kid: &str,
    typ: &str,
    claims: &Value,
    rng: &dyn ring::rand::SecureRandom,
) -> Result<String, JwsError> {
    let header = serde_json::json!({ "alg": "ES256", "kid": kid, "typ": typ });
    let mut out = b64e(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&b64e(claims.to_string().as_bytes()));
    let sig = key.sign(rng, out.as_bytes()).map_err(|_| JwsError::Sign("ECDSA signing failed"))?;
    out.push('.');
    out.push_str(&b64e(sig.as_ref()));
    Ok(out)
}

/// The public JWK of an ES256 key pair.
pub fn es256_public_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    let x = point.get(1..33).unwrap_or_default();
    let y = point.get(33..65).unwrap_or_default();
    serde_json::json!({ "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid, "x": b64e(x), "y": b64e(y) })
}

/// A key id derived from the public key (RFC 7638-like thumbprint, truncated): stable across
/// restarts for a given key file.
pub fn es256_kid(key: &EcdsaKeyPair) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
    b64e(d.as_ref().get(..12).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn keypair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn set(keys: &[Value]) -> JwkSet {
        JwkSet::parse(serde_json::json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn es256_round_trip_and_tampering() {
        let k = keypair();
        let rng = SystemRandom::new();
        let t = sign_es256(&k, "k1", "JWT", &serde_json::json!({"sub": "x"}), &rng).unwrap();
        let jwks = set(&[es256_public_jwk(&k, "k1")]);
        let v = verify(&t, &jwks, PINNED_ALGS).unwrap();
        assert_eq!(v.claims["sub"], "x");
        assert_eq!(verify(&t, &jwks, &[Alg::Rs256]).unwrap_err(), JwsError::DisallowedAlg("ES256".into()));
        let other = set(&[es256_public_jwk(&keypair(), "k1")]);
        assert_eq!(verify(&t, &other, PINNED_ALGS).unwrap_err(), JwsError::BadSignature);
        let unknown = set(&[es256_public_jwk(&k, "k2")]);
        assert_eq!(verify(&t, &unknown, PINNED_ALGS).unwrap_err(), JwsError::UnknownKid);
    }

    #[test]
    fn none_and_hs256_are_refused_and_junk_keys_skipped() {
        let none = format!("{}.{}.", b64e(br#"{"alg":"none"}"#), b64e(br#"{"sub":"x"}"#));
        assert!(matches!(verify(&none, &JwkSet::default(), PINNED_ALGS), Err(JwsError::DisallowedAlg(_))));
        let hs = format!("{}.{}.c2ln", b64e(br#"{"alg":"HS256"}"#), b64e(br#"{"sub":"x"}"#));
        assert!(matches!(verify(&hs, &JwkSet::default(), PINNED_ALGS), Err(JwsError::DisallowedAlg(_))));
        let s = set(&[
            serde_json::json!({"kty": "EC", "crv": "P-256", "x": "!!"}),
            serde_json::json!({"kty": "oct", "k": "abc"}),
        ]);
        assert!(s.keys.is_empty());
    }
}
