//! Key bytes that are wiped from memory when dropped and never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::clock::{Random, RandomError};

/// 256 bits of key material. `Debug` is redacted; the bytes are zeroized on drop (including
/// when a cache evicts the key).
#[derive(Clone)]
pub struct Key256(Zeroizing<[u8; 32]>);

impl Key256 {
    pub const LEN: usize = 32;

    /// A fresh key from the injected random source.
    pub fn generate(rng: &dyn Random) -> Result<Self, RandomError> {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(k.as_mut_slice())?;
        Ok(Self(k))
    }

    /// Copies `bytes` when they are exactly 32 long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(arr)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;

    #[test]
    fn debug_never_shows_the_bytes() {
        let k = Key256::from_slice(&[0xab; 32]).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains("171") && !shown.contains("ab"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn generated_keys_differ_and_wrong_lengths_are_refused() {
        let rng = SystemRandom::new();
        assert_ne!(Key256::generate(&rng).unwrap().expose(), Key256::generate(&rng).unwrap().expose());
        assert!(Key256::from_slice(&[0; 31]).is_none());
    }
}
