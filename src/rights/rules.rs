//! Which right applies to which processing activity, from its legal basis (GDPR Art. 17(3),
//! 20(1), 21(1); CNIL developers' guide, sheet 15). Pure: the rights service asks before it
//! accepts a request for an activity, and the privacy centre shows only the rights that apply.

use crate::policy::model::LegalBasis;

use super::request::Right;

/// What the gateway does with a request for `right` on an activity with a given basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applicability {
    /// The right applies: the request goes ahead.
    Applies,
    /// An authorised agent decides (e.g. objection: compelling legitimate grounds, Art. 21(1)),
    /// and the decision is recorded.
    AgentDecides,
    /// The right does not apply: refused with this article and plain-French reason.
    Refused { article: &'static str, reason: &'static str },
}

const PORTABILITY_BASIS: &str = "La portabilité concerne seulement les données données avec votre accord \
     ou pour un contrat. Ici, la mairie utilise vos données pour une autre raison prévue par la loi.";
const ERASURE_NEEDED: &str = "La mairie doit garder ces données pour respecter la loi ou pour une mission \
     de service public. Elles seront effacées à la fin de la durée de conservation.";
const OBJECTION_CONSENT: &str = "Vous avez donné votre accord pour ce service. Pour arrêter, retirez votre \
     accord : c'est immédiat.";
const OBJECTION_BASIS: &str = "La loi ne permet pas de s'opposer à cette utilisation de vos données, \
     car la mairie en a besoin pour respecter la loi ou pour un contrat avec vous.";
const VITAL_INTERESTS: &str = "Ces données servent à protéger la vie ou la santé d'une personne. \
     La mairie doit les garder tant que ce besoin existe.";

/// Whether `right` applies to an activity whose legal basis is `basis`.
pub fn applicability(right: Right, basis: LegalBasis) -> Applicability {
    use Applicability::*;
    use LegalBasis::*;
    match right {
        // Access, rectification and restriction hold whatever the basis (Art. 15, 16, 18).
        Right::Access | Right::Rectification | Right::Restriction => Applies,
        Right::Portability => match basis {
            Consent | Contract => Applies,
            _ => Refused { article: "Art. 20(1) RGPD", reason: PORTABILITY_BASIS },
        },
        Right::Erasure => match basis {
            Consent | Contract | LegitimateInterests => Applies,
            LegalObligation | PublicTask => Refused { article: "Art. 17(3)(b) RGPD", reason: ERASURE_NEEDED },
            VitalInterests => Refused { article: "Art. 17(1)(a) RGPD", reason: VITAL_INTERESTS },
        },
        Right::Objection => match basis {
            PublicTask | LegitimateInterests => AgentDecides,
            Consent => Refused { article: "Art. 7(3) RGPD", reason: OBJECTION_CONSENT },
            Contract | LegalObligation | VitalInterests => {
                Refused { article: "Art. 21(1) RGPD", reason: OBJECTION_BASIS }
            }
        },
    }
}

/// Whether the right can be offered at all for this basis (refusals are not offered).
pub fn is_offered(right: Right, basis: LegalBasis) -> bool {
    !matches!(applicability(right, basis), Applicability::Refused { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use LegalBasis::*;

    #[test]
    fn the_table_of_rights_by_basis() {
        // Rows: basis; columns: access, portability, rectification, erasure, restriction,
        // objection. 'y' applies, 'a' an agent decides, 'n' refused.
        let table = [
            (Consent, "yyyyyn"),
            (Contract, "yyyyyn"),
            (LegalObligation, "ynynyn"),
            (VitalInterests, "ynynyn"),
            (PublicTask, "ynynya"),
            (LegitimateInterests, "ynyyya"),
        ];
        for (basis, row) in table {
            for (right, want) in Right::ALL.into_iter().zip(row.chars()) {
                let got = match applicability(right, basis) {
                    Applicability::Applies => 'y',
                    Applicability::AgentDecides => 'a',
                    Applicability::Refused { .. } => 'n',
                };
                assert_eq!(got, want, "{right:?} for {basis:?}");
            }
        }
    }

    #[test]
    fn erasure_under_a_legal_obligation_cites_article_17_3_b() {
        let Applicability::Refused { article, reason } = applicability(Right::Erasure, LegalObligation) else {
            panic!("erasure must be refused under a legal obligation");
        };
        assert_eq!(article, "Art. 17(3)(b) RGPD");
        assert!(reason.contains("conservation"));
        assert!(!is_offered(Right::Portability, PublicTask));
        assert!(is_offered(Right::Objection, PublicTask));
    }
}
