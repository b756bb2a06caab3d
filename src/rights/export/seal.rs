//! The archive at rest: AES-256-GCM under a key derived (HKDF-SHA-256) from the download
//! token, which only the citizen's link carries; the store keeps the token's SHA-256. A copy
//! of the database, or an operator reading it, cannot open an export.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};

use crate::clock::Random;

const INFO: &[u8] = b"guichet-export-archive-v1";

#[derive(Debug, thiserror::Error)]
#[error("the export cannot be sealed or opened")]
pub struct SealError;

fn key(token: &str) -> Result<LessSafeKey, SealError> {
    let prk = Salt::new(HKDF_SHA256, b"").extract(token.as_bytes());
    let okm = prk.expand(&[INFO], &AES_256_GCM).map_err(|_| SealError)?;
    let mut bytes = [0u8; 32];
    okm.fill(&mut bytes).map_err(|_| SealError)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError)?;
    Ok(LessSafeKey::new(unbound))
}

/// `nonce || ciphertext || tag`, bound to the export id.
pub fn seal(token: &str, export_id: &str, archive: &[u8], random: &dyn Random) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    random.fill(&mut nonce).map_err(|_| SealError)?;
    let mut out = archive.to_vec();
    key(token)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(export_id.as_bytes()), &mut out)
        .map_err(|_| SealError)?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&out);
    Ok(sealed)
}

pub fn open(token: &str, export_id: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let (nonce, body) = sealed.split_at_checked(NONCE_LEN).ok_or(SealError)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError)?;
    let mut buf = body.to_vec();
    let plain = key(token)?.open_in_place(nonce, Aad::from(export_id.as_bytes()), &mut buf).map_err(|_| SealError)?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    #[test]
    fn only_the_token_and_the_id_open_the_archive() {
        let sealed = seal("tok-a", "EX1", b"archive", &SystemRandom::new()).unwrap_or_default();
        assert_eq!(open("tok-a", "EX1", &sealed).ok().as_deref(), Some(&b"archive"[..]));
        assert!(open("tok-b", "EX1", &sealed).is_err());
        assert!(open("tok-a", "EX2", &sealed).is_err());
        assert!(!sealed.windows(7).any(|w| w == b"archive"));
    }
}
