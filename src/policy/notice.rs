//! The citizen information notice (Art. 13), generated from the same file as enforcement and
//! the register, and the plain-French wording it needs (retention "3 ans après votre
//! radiation des listes", legal bases, rights).

use serde::Serialize;

use super::model::{ActivityFile, BasisChoice, LegalBasis, Retention, RetentionEnd, RetentionStart};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Day,
    Month,
    Year,
}

/// A retention period such as `"3 years"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub count: u32,
    pub unit: Unit,
}

impl Period {
    /// Reads `"<n> <unit>"`; units in English or French, singular or plural.
    pub fn parse(text: &str) -> Result<Self, String> {
        let explain = || {
            format!(
                "`{text}` is not a duration: write a number and a unit, like \"3 years\", \"6 months\" or \"30 days\""
            )
        };
        let mut words = text.split_whitespace();
        let (Some(n), Some(unit), None) = (words.next(), words.next(), words.next()) else {
            return Err(explain());
        };
        let count: u32 = n.parse().map_err(|_| explain())?;
        let unit = match unit.to_lowercase().as_str() {
            "day" | "days" | "jour" | "jours" => Unit::Day,
            "month" | "months" | "mois" => Unit::Month,
            "year" | "years" | "an" | "ans" => Unit::Year,
            _ => return Err(explain()),
        };
        if count == 0 {
            return Err(format!("`{text}` must be longer than zero"));
        }
        Ok(Self { count, unit })
    }

    /// "3 ans", "1 an", "6 mois", "1 jour".
    pub fn french(self) -> String {
        let n = self.count;
        let word = match (self.unit, n) {
            (Unit::Day, 1) => "jour",
            (Unit::Day, _) => "jours",
            (Unit::Month, _) => "mois",
            (Unit::Year, 1) => "an",
            (Unit::Year, _) => "ans",
        };
        format!("{n} {word}")
    }
}

fn period_words(text: &str) -> String {
    Period::parse(text).map_or_else(|_| text.to_owned(), Period::french)
}

/// Retention in plain words: "3 ans après votre radiation des listes. Ensuite, …".
pub fn retention_in_plain_words(r: &Retention) -> String {
    let start = match r.from {
        RetentionStart::Collection => "après leur collecte",
        RetentionStart::LastActivity => "après votre dernier contact avec le service",
        RetentionStart::CaseClosed => "après la clôture de votre dossier",
        RetentionStart::Event => "",
    };
    let mut out = match (r.from, r.event_label.as_deref()) {
        (RetentionStart::Event, Some(label)) => format!("{} après {label}.", period_words(&r.active)),
        _ => format!("{} {start}.", period_words(&r.active)),
    };
    if let Some(i) = &r.intermediate {
        out.push_str(&format!(
            " Puis {} en archive, où seules quelques personnes peuvent les consulter.",
            period_words(i)
        ));
    }
    out.push_str(match r.then {
        RetentionEnd::Destroy => " Ensuite, elles sont détruites.",
        RetentionEnd::Anonymise => " Ensuite, elles sont rendues anonymes.",
        RetentionEnd::ArchiveReview => {
            " Ensuite, les Archives départementales décident si elles sont gardées comme archives publiques ou détruites."
        }
    });
    out
}

/// The legal basis in plain words.
pub fn basis_in_plain_words(basis: LegalBasis, reference: Option<&str>) -> String {
    let reference = reference.map(|r| format!(" ({r})")).unwrap_or_default();
    match basis {
        LegalBasis::Consent => "Votre accord. Vous pouvez le retirer à tout moment.".to_owned(),
        LegalBasis::Contract => "Un contrat entre vous et nous.".to_owned(),
        LegalBasis::LegalObligation => format!("La loi nous oblige à le faire{reference}."),
        LegalBasis::VitalInterests => "Protéger la vie ou la santé d'une personne.".to_owned(),
        LegalBasis::PublicTask => format!("C'est une mission de service public{reference}."),
        LegalBasis::LegitimateInterests => "L'intérêt légitime de l'organisme.".to_owned(),
    }
}

/// The one basis of a purpose (validation guarantees there is exactly one).
pub fn basis_of(choice: Option<&BasisChoice>) -> Option<LegalBasis> {
    match choice? {
        BasisChoice::One(b) => Some(*b),
        BasisChoice::Several(l) => l.first().copied(),
    }
}

pub const CNIL_COMPLAINT: &str = "Si vous pensez que vos droits ne sont pas respectés, vous pouvez faire une \
    réclamation auprès de la CNIL : sur www.cnil.fr, ou par courrier à CNIL, 3 place de Fontenoy, TSA 80715, \
    75334 Paris Cedex 07.";

#[derive(Debug, Clone, Serialize)]
pub struct NoticePurpose {
    pub id: String,
    pub description: String,
    pub legal_basis: &'static str,
    pub legal_basis_explained: String,
    pub optional: bool,
    pub alternative: Option<String>,
    pub if_not_provided: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeData {
    pub category: String,
    pub special: bool,
    pub retention: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeRecipient {
    pub name: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeConsent {
    pub text: String,
    pub version: String,
}

/// Everything Art. 13 asks to tell, for one activity.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub activity: String,
    pub title: String,
    pub description: String,
    /// The sector's French name ("État civil"), `None` for an activity in no named sector.
    pub sector: Option<&'static str>,
    pub controller: String,
    pub controller_address: String,
    pub controller_contact: String,
    pub dpo_name: String,
    pub dpo_contact: String,
    pub purposes: Vec<NoticePurpose>,
    pub data: Vec<NoticeData>,
    pub recipients: Vec<NoticeRecipient>,
    pub transfers: String,
    pub consent: Option<NoticeConsent>,
    pub rights: Vec<String>,
    pub how_to_exercise: String,
    /// The easy-to-read version (FALC) the policy provides, by paragraph; empty without one.
    pub falc: Vec<String>,
    pub complaint: &'static str,
    pub automated_decision: &'static str,
    pub post_mortem: &'static str,
}

impl Notice {
    pub fn of(a: &ActivityFile) -> Self {
        let purposes: Vec<NoticePurpose> = a
            .purposes
            .iter()
            .filter_map(|p| {
                let basis = basis_of(p.legal_basis.as_ref())?;
                Some(NoticePurpose {
                    id: p.id.clone(),
                    description: p.description.clone(),
                    legal_basis: basis.french(),
                    legal_basis_explained: basis_in_plain_words(basis, p.legal_reference.as_deref()),
                    optional: p.optional,
                    alternative: p.alternative.clone(),
                    if_not_provided: p.if_not_provided.clone(),
                })
            })
            .collect();
        let bases: Vec<LegalBasis> = a.purposes.iter().filter_map(|p| basis_of(p.legal_basis.as_ref())).collect();
        let transfers = if a.transfers.is_empty() {
            "Vos données restent dans l'Union européenne.".to_owned()
        } else {
            let list: Vec<String> = a.transfers.iter().map(|t| format!("{} ({})", t.country, t.safeguard)).collect();
            format!("Certaines données sont envoyées hors de l'Union européenne : {}.", list.join(", "))
        };
        Self {
            activity: a.id.clone(),
            title: a.name.clone(),
            description: a.description.clone(),
            sector: (a.sector != super::Sector::General).then(|| a.sector.label()),
            controller: a.controller.organisation.clone(),
            controller_address: a.controller.address.clone(),
            controller_contact: a.controller.contact.clone(),
            dpo_name: a.dpo.name.clone(),
            dpo_contact: a.dpo.contact.clone(),
            purposes,
            data: a
                .categories
                .iter()
                .map(|c| NoticeData {
                    category: c.name.clone(),
                    special: c.special,
                    retention: c.retention.as_ref().map(retention_in_plain_words).unwrap_or_default(),
                })
                .collect(),
            recipients: a
                .recipients
                .iter()
                .map(|r| NoticeRecipient { name: r.name.clone(), kind: r.kind.french() })
                .collect(),
            transfers,
            consent: a.consent.as_ref().map(|c| NoticeConsent { text: c.text.clone(), version: c.version.clone() }),
            rights: rights_in_plain_words(&bases),
            how_to_exercise: format!(
                "Pour exercer vos droits, écrivez au délégué à la protection des données : {}. Vous pouvez aussi venir \
                 au guichet : {}. Nous répondons dans un délai d'un mois.",
                a.dpo.contact, a.controller.address
            ),
            falc: a.notice.falc.as_deref().map(super::falc::paragraphs).unwrap_or_default(),
            complaint: CNIL_COMPLAINT,
            automated_decision: "Aucune décision n'est prise sur vous par un ordinateur seul.",
            post_mortem: "Vous pouvez dire ce que deviennent vos données après votre décès.",
        }
    }
}

/// The rights that apply, given the legal bases (Art. 17(3)(b), 20(3) and 21(1) limit some).
pub fn rights_in_plain_words(bases: &[LegalBasis]) -> Vec<String> {
    let any = |f: &dyn Fn(LegalBasis) -> bool| bases.iter().any(|b| f(*b));
    let mut rights = vec![
        "Voir les données que nous avons sur vous (droit d'accès).".to_owned(),
        "Faire corriger une donnée fausse ou incomplète (droit de rectification).".to_owned(),
        "Demander que vos données soient seulement gardées, sans être utilisées, pendant une vérification \
         (droit à la limitation)."
            .to_owned(),
    ];
    if any(&|b| matches!(b, LegalBasis::Consent | LegalBasis::Contract)) {
        rights.push("Faire effacer vos données (droit à l'effacement).".to_owned());
        rights.push(
            "Recevoir vos données dans un fichier, pour les donner à un autre service (droit à la portabilité)."
                .to_owned(),
        );
    } else {
        rights.push(
            "Faire effacer vos données, seulement dans certains cas : la loi nous demande de les garder pour notre \
             mission (droit à l'effacement)."
                .to_owned(),
        );
    }
    if any(&|b| matches!(b, LegalBasis::PublicTask | LegalBasis::LegitimateInterests)) {
        rights.push(
            "Vous opposer à l'utilisation de vos données, pour une raison liée à votre situation (droit d'opposition)."
                .to_owned(),
        );
    }
    if any(&|b| b == LegalBasis::Consent) {
        rights.push("Retirer votre accord à tout moment. C'est aussi simple que de le donner.".to_owned());
    }
    rights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_in_plain_french() {
        let cases = [
            ("3 years", "3 ans"),
            ("1 year", "1 an"),
            ("6 months", "6 mois"),
            ("30 days", "30 jours"),
            ("1 jour", "1 jour"),
        ];
        for (text, words) in cases {
            assert_eq!(Period::parse(text).unwrap().french(), words);
        }
        for bad in ["3", "three years", "3 weeks", "0 days", "3 years ago"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retention_reads_as_a_sentence() {
        let r = Retention {
            active: "3 years".into(),
            from: RetentionStart::Event,
            event: Some("radiation".into()),
            event_label: Some("votre radiation des listes".into()),
            intermediate: None,
            then: RetentionEnd::ArchiveReview,
            source: None,
            producing_service: None,
            notice_before: None,
            archive_visible_to: Vec::new(),
        };
        let words = retention_in_plain_words(&r);
        assert!(words.starts_with("3 ans après votre radiation des listes."), "{words}");
        let r = Retention {
            from: RetentionStart::LastActivity,
            active: "2 years".into(),
            then: RetentionEnd::Destroy,
            ..r
        };
        assert_eq!(
            retention_in_plain_words(&r),
            "2 ans après votre dernier contact avec le service. Ensuite, elles sont détruites."
        );
    }

    #[test]
    fn rights_follow_the_legal_basis() {
        let public = rights_in_plain_words(&[LegalBasis::PublicTask]);
        assert!(public.iter().any(|r| r.contains("opposition")));
        assert!(!public.iter().any(|r| r.contains("portabilité")));
        let consent = rights_in_plain_words(&[LegalBasis::Consent]);
        assert!(consent.iter().any(|r| r.contains("Retirer votre accord")));
        assert!(consent.iter().any(|r| r.contains("portabilité")));
        let legal = rights_in_plain_words(&[LegalBasis::LegalObligation]);
        assert!(!legal.iter().any(|r| r.contains("opposition")));
    }
}

#[derive(askama::Template)]
#[template(path = "policy/notice.html")]
struct NoticePage<'a> {
    chrome: &'a crate::pages::Chrome,
    n: &'a Notice,
}

#[derive(askama::Template)]
#[template(path = "policy/notice_index.html")]
struct IndexPage<'a> {
    chrome: &'a crate::pages::Chrome,
    notices: &'a [Notice],
}

/// The notice as an accessible French page (no JavaScript).
pub fn to_html(n: &Notice, chrome: &crate::pages::Chrome) -> Result<String, askama::Error> {
    askama::Template::render(&NoticePage { chrome, n })
}

/// The index of every activity's notice.
pub fn index_html(notices: &[Notice], chrome: &crate::pages::Chrome) -> Result<String, askama::Error> {
    askama::Template::render(&IndexPage { chrome, notices })
}
