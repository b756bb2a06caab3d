//! Sectors (*secteurs*): the closed list of administrative domains a processing activity
//! belongs to. Inside the gateway, the pseudonyms that own a citizen's encrypted fields, their
//! consent events and the journal entries about them are derived per sector
//! (`auth::Auth::field_subject_in`, `consent_subject_in`), so that two sectors' records cannot
//! be joined without the pseudonym key (docs/cryptography.md, "Sector pseudonyms").

use std::fmt;

use serde::{Deserialize, Serialize};

/// One sector. Policies name it by its slug (`sector = "etat_civil"`); absent: `general`.
/// An unknown slug is refused when the policy is loaded (`guichet policy check`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sector {
    /// Everything not in a named sector; its pseudonyms are the gateway's first ones (v1),
    /// so records made before sectors existed stay readable unchanged.
    #[default]
    General,
    EtatCivil,
    Social,
    Scolaire,
    Elections,
    Voirie,
}

impl Sector {
    /// Every sector, in a fixed order (the index of [`Sector::index`]).
    pub const ALL: [Sector; 6] =
        [Sector::General, Sector::EtatCivil, Sector::Social, Sector::Scolaire, Sector::Elections, Sector::Voirie];

    /// The slug written in policies and mixed into the sector's pseudonyms.
    pub fn as_str(self) -> &'static str {
        match self {
            Sector::General => "general",
            Sector::EtatCivil => "etat_civil",
            Sector::Social => "social",
            Sector::Scolaire => "scolaire",
            Sector::Elections => "elections",
            Sector::Voirie => "voirie",
        }
    }

    /// The sector's name in French, as the register shows it.
    pub fn label(self) -> &'static str {
        match self {
            Sector::General => "Général",
            Sector::EtatCivil => "État civil",
            Sector::Social => "Social",
            Sector::Scolaire => "Scolaire",
            Sector::Elections => "Élections",
            Sector::Voirie => "Voirie",
        }
    }

    /// Position in [`Sector::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The sector named by `slug`, if it is one of the list.
    pub fn parse(slug: &str) -> Option<Sector> {
        Sector::ALL.into_iter().find(|s| s.as_str() == slug)
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sector_round_trips_through_its_slug_and_sits_at_its_index() {
        for (i, s) in Sector::ALL.into_iter().enumerate() {
            assert_eq!(Sector::parse(s.as_str()), Some(s));
            assert_eq!(s.index(), i);
        }
        assert_eq!(Sector::parse("fiscalite"), None);
        assert_eq!(Sector::default(), Sector::General);
    }
}
