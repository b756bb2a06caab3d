//! JWE decryption for FranceConnect+, which encrypts its ID tokens and userinfo to the relying
//! party's public key (RFC 7516, compact form). One scheme is accepted: `ECDH-ES` key agreement
//! on P-256 with `A256GCM` content encryption (RFC 7518 §4.6 and §5.3) — FranceConnect+ offers
//! it beside RSA-OAEP, and since the relying party publishes the key, it chooses the scheme.
//! Everything else (RSA key transport, key wrapping, other curves or content algorithms,
//! compression) is refused before any cryptography runs.
//!
//! The key agreement uses the `p256` crate (already in the build through `openidconnect`),
//! which checks that the sender's ephemeral point is on the curve; the key derivation (Concat
//! KDF, one SHA-256 round) and AES-256-GCM come from ring.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use p256::{PublicKey, SecretKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::Deserialize;
use serde_json::{Value, json};

/// The only key agreement and content encryption accepted.
pub const ALG: &str = "ECDH-ES";
pub const ENC: &str = "A256GCM";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("not a compact JWE (five parts)")]
    NotJwe,
    #[error("unreadable JWE header")]
    Header,
    #[error("JWE algorithm {0} is not accepted (only ECDH-ES with A256GCM)")]
    Algorithm(String),
    #[error("the JWE was encrypted to another key")]
    OtherKey,
    #[error("the JWE's ephemeral key is not a P-256 point")]
    EphemeralKey,
    #[error("the JWE does not decrypt (wrong key or altered)")]
    Decrypt,
    #[error("{0}")]
    Key(String),
}

/// The relying party's decryption key and its id, published in `/.guichet/jwks.json` with
/// `"use": "enc"`.
pub struct DecryptionKey {
    secret: SecretKey,
    kid: String,
}

impl std::fmt::Debug for DecryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl DecryptionKey {
    /// Reads the key from `path` (PKCS#8 PEM, EC P-256), or creates it there when the file does
    /// not exist; returns whether it was created.
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), JweError> {
        if path.exists() {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| JweError::Key(format!("cannot read {}: {e}", path.display())))?;
            return Ok((Self::from_pem(&pem)?, false));
        }
        let key = Self::generate()?;
        let pem = key
            .secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| JweError::Key("cannot encode the decryption key".into()))?;
        match crate::line_file::write_new_private(path, pem.as_bytes()) {
            Ok(()) => Ok((key, true)),
            // Another instance created it first: use theirs, so both decrypt with one key.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_generate(path),
            Err(e) => Err(JweError::Key(format!("cannot write {}: {e}", path.display()))),
        }
    }

    pub fn from_pem(pem: &str) -> Result<Self, JweError> {
        let secret = SecretKey::from_pkcs8_pem(pem)
            .map_err(|_| JweError::Key("the decryption key must be an EC P-256 key in PKCS#8 PEM".into()))?;
        Ok(Self::from_secret(secret))
    }

    fn generate() -> Result<Self, JweError> {
        let rng = ring::rand::SystemRandom::new();
        // A uniformly random 32-byte string is a valid scalar except with negligible
        // probability; try again in that case.
        for _ in 0..8 {
            let mut bytes = [0u8; 32];
            ring::rand::SecureRandom::fill(&rng, &mut bytes).map_err(|_| JweError::Key("no randomness".into()))?;
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                return Ok(Self::from_secret(secret));
            }
        }
        Err(JweError::Key("cannot generate a decryption key".into()))
    }

    fn from_secret(secret: SecretKey) -> Self {
        let (x, y) = coordinates(&secret.public_key());
        // RFC 7638 thumbprint, as for the signing key.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()));
        Self { secret, kid }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as published for providers.
    pub fn public_jwk(&self) -> Value {
        let (x, y) = coordinates(&self.secret.public_key());
        json!({ "kty": "EC", "crv": "P-256", "x": x, "y": y, "use": "enc", "alg": ALG, "kid": self.kid })
    }

    /// Decrypts a compact JWE and returns its plaintext (for FranceConnect+, a signed JWT that
    /// is then verified like any other).
    pub fn decrypt(&self, compact: &str) -> Result<Vec<u8>, JweError> {
        let parts: Vec<&str> = compact.trim().split('.').collect();
        let [header_b64, encrypted_key, iv, ciphertext, tag] = parts.as_slice() else {
            return Err(JweError::NotJwe);
        };
        let header: Header =
            B64.decode(header_b64).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or(JweError::Header)?;
        header.check(&self.kid)?;
        // Direct key agreement: there is no wrapped key.
        if !encrypted_key.is_empty() {
            return Err(JweError::Algorithm("ECDH-ES with a wrapped key".into()));
        }
        let epk = header.epk.point()?;
        let shared = (epk.to_projective() * *self.secret.to_nonzero_scalar()).to_affine();
        let z = shared.to_sec1_point(false);
        let z = z.x().ok_or(JweError::EphemeralKey)?;
        let cek = concat_kdf(z, &header)?;
        let iv: [u8; 12] = decode(iv)?.try_into().map_err(|_| JweError::Decrypt)?;
        let mut in_out = decode(ciphertext)?;
        in_out.extend_from_slice(&decode(tag)?);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).map_err(|_| JweError::Decrypt)?);
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(header_b64.as_bytes()), &mut in_out)
            .map_err(|_| JweError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

/// Whether `token` is a compact JWE rather than a JWS (five parts instead of three).
pub fn is_jwe(token: &str) -> bool {
    token.trim().split('.').count() == 5
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    enc: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    zip: Option<String>,
    #[serde(default)]
    apu: Option<String>,
    #[serde(default)]
    apv: Option<String>,
    epk: Epk,
}

impl Header {
    fn check(&self, our_kid: &str) -> Result<(), JweError> {
        if self.alg != ALG {
            return Err(JweError::Algorithm(self.alg.clone()));
        }
        if self.enc != ENC {
            return Err(JweError::Algorithm(self.enc.clone()));
        }
        if self.zip.is_some() {
            return Err(JweError::Algorithm("compressed content (zip)".into()));
        }
        if self.kid.as_deref().is_some_and(|k| k != our_kid) {
            return Err(JweError::OtherKey);
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct Epk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

impl Epk {
    /// The sender's ephemeral public key, refused unless it is a point of P-256 (an invalid
    /// point would leak bits of our key: the invalid-curve attack).
    fn point(&self) -> Result<PublicKey, JweError> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(JweError::EphemeralKey);
        }
        let (x, y) = (decode(&self.x)?, decode(&self.y)?);
        if x.len() != 32 || y.len() != 32 {
            return Err(JweError::EphemeralKey);
        }
        let mut sec1 = Vec::with_capacity(65);
        sec1.push(4);
        sec1.extend_from_slice(&x);
        sec1.extend_from_slice(&y);
        PublicKey::from_sec1_bytes(&sec1).map_err(|_| JweError::EphemeralKey)
    }
}

/// The content key: Concat KDF (NIST SP 800-56A) with SHA-256, one round for 256 bits, the
/// other info being the `enc` name, `apu`, `apv` and the key length (RFC 7518 §4.6.2).
fn concat_kdf(z: &[u8], header: &Header) -> Result<[u8; 32], JweError> {
    let apu = header.apu.as_deref().map(decode).transpose()?.unwrap_or_default();
    let apv = header.apv.as_deref().map(decode).transpose()?.unwrap_or_default();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    for part in [ENC.as_bytes(), &apu, &apv] {
        let len = u32::try_from(part.len()).map_err(|_| JweError::Header)?;
        ctx.update(&len.to_be_bytes());
        ctx.update(part);
    }
    ctx.update(&256u32.to_be_bytes());
    let mut cek = [0u8; 32];
    cek.copy_from_slice(ctx.finish().as_ref());
    Ok(cek)
}

fn decode(part: &str) -> Result<Vec<u8>, JweError> {
    B64.decode(part).map_err(|_| JweError::Header)
}

fn coordinates(public: &PublicKey) -> (String, String) {
    let point = public.to_sec1_point(false);
    let x = point.x().map(|x| B64.encode(x)).unwrap_or_default();
    let y = point.y().map(|y| B64.encode(y)).unwrap_or_default();
    (x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encrypts like a provider would (a fresh ephemeral key per message); `tweak` edits the
    /// header before it is encoded.
    fn encrypt_to(key: &DecryptionKey, plain: &[u8], tweak: impl FnOnce(&mut Value)) -> String {
        let ephemeral = DecryptionKey::generate().unwrap();
        let (x, y) = coordinates(&ephemeral.secret.public_key());
        let mut header =
            json!({ "alg": ALG, "enc": ENC, "kid": key.kid, "epk": { "kty": "EC", "crv": "P-256", "x": x, "y": y } });
        tweak(&mut header);
        let header_b64 = B64.encode(header.to_string());
        let recipient = key.secret.public_key();
        let shared = (recipient.to_projective() * *ephemeral.secret.to_nonzero_scalar()).to_affine();
        let z = shared.to_sec1_point(false);
        let parsed: Header = serde_json::from_value(header).unwrap();
        let cek = concat_kdf(z.x().unwrap(), &parsed).unwrap();
        let iv = [7u8; 12];
        let mut in_out = plain.to_vec();
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek).unwrap());
        let tag = sealing
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(header_b64.as_bytes()), &mut in_out)
            .unwrap();
        format!("{header_b64}..{}.{}.{}", B64.encode(iv), B64.encode(&in_out), B64.encode(tag.as_ref()))
    }

    #[test]
    fn a_token_encrypted_to_our_key_decrypts() {
        let key = DecryptionKey::generate().unwrap();
        let jwe = encrypt_to(&key, b"header.claims.signature", |_| {});
        assert!(is_jwe(&jwe));
        assert_eq!(key.decrypt(&jwe).unwrap(), b"header.claims.signature");
        let no_kid = encrypt_to(&key, b"x.y.z", |h| {
            h.as_object_mut().unwrap().remove("kid");
        });
        assert_eq!(key.decrypt(&no_kid).unwrap(), b"x.y.z");
    }

    #[test]
    fn a_token_for_another_key_or_altered_does_not_decrypt() {
        let (ours, theirs) = (DecryptionKey::generate().unwrap(), DecryptionKey::generate().unwrap());
        assert_eq!(ours.decrypt(&encrypt_to(&theirs, b"a.b.c", |_| {})), Err(JweError::OtherKey));
        let unnamed = encrypt_to(&theirs, b"a.b.c", |h| {
            h.as_object_mut().unwrap().remove("kid");
        });
        assert_eq!(ours.decrypt(&unnamed), Err(JweError::Decrypt));
        let jwe = encrypt_to(&ours, b"a.b.c", |_| {});
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let mut ciphertext = B64.decode(&parts[3]).unwrap();
        ciphertext[0] ^= 1;
        parts[3] = B64.encode(ciphertext);
        assert_eq!(ours.decrypt(&parts.join(".")), Err(JweError::Decrypt));
    }

    #[test]
    fn other_schemes_and_bad_ephemeral_keys_are_refused_before_any_cryptography() {
        let key = DecryptionKey::generate().unwrap();
        let with = |f: fn(&mut Value)| key.decrypt(&encrypt_to(&key, b"a.b.c", f));
        assert_eq!(with(|h| h["alg"] = json!("RSA-OAEP")), Err(JweError::Algorithm("RSA-OAEP".into())));
        assert_eq!(with(|h| h["enc"] = json!("A128CBC-HS256")), Err(JweError::Algorithm("A128CBC-HS256".into())));
        assert!(matches!(with(|h| h["zip"] = json!("DEF")), Err(JweError::Algorithm(_))));
        // A point off the curve (the invalid-curve attack) and another curve.
        assert_eq!(with(|h| h["epk"]["y"] = json!(B64.encode([1u8; 32]))), Err(JweError::EphemeralKey));
        assert_eq!(with(|h| h["epk"]["crv"] = json!("P-384")), Err(JweError::EphemeralKey));
        assert_eq!(key.decrypt("a.b.c"), Err(JweError::NotJwe));
    }

    #[test]
    fn the_key_is_kept_in_its_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/enc.pem");
        let (first, created) = DecryptionKey::load_or_generate(&path).unwrap();
        assert!(created);
        let (again, created) = DecryptionKey::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(first.kid(), again.kid());
        assert_eq!(first.public_jwk()["use"], "enc");
        assert!(DecryptionKey::from_pem("not a key").is_err());
    }
}
