//! A personal data breach as the register holds it (GDPR Art. 33(5)): the facts, the effects,
//! the remedial action, and whether, when and why not the CNIL and the people were told. Pure:
//! validation and the 72-hour clock, no store.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Art. 33(1): notify the CNIL within 72 hours of becoming aware, where feasible.
pub const NOTIFY_WITHIN: Duration = Duration::hours(72);
/// A deadline this close (and not notified) raises the `breach_deadline_near` alert.
pub const NEAR_DEADLINE: Duration = Duration::hours(24);
/// Longest free text of one field: a register entry, not a report.
pub const TEXT_MAX: usize = 4000;

/// What the breach touched (the CNIL form's three kinds; several may apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Nature {
    /// Data seen or taken by someone not allowed to.
    Confidentiality,
    /// Data altered.
    Integrity,
    /// Data lost or unreachable.
    Availability,
}

impl Nature {
    pub const ALL: [Nature; 3] = [Self::Confidentiality, Self::Integrity, Self::Availability];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidentiality => "confidentiality",
            Self::Integrity => "integrity",
            Self::Availability => "availability",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// The words of the CNIL's form.
    pub fn french(self) -> &'static str {
        match self {
            Self::Confidentiality => "Perte de confidentialité (données vues ou copiées sans droit)",
            Self::Integrity => "Perte d'intégrité (données modifiées)",
            Self::Availability => "Perte de disponibilité (données perdues ou inaccessibles)",
        }
    }
}

/// What the DPO records or corrects (every field of the register entry but its id and times of
/// recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentFacts {
    /// When the controller became aware of the breach: the 72 hours start here.
    #[serde(with = "time::serde::rfc3339")]
    pub aware_at: OffsetDateTime,
    /// When the breach began, if known.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    pub nature: Vec<Nature>,
    /// What happened (circumstances, origin). No names: categories and numbers only.
    pub description: String,
    /// Categories of people concerned (pupils, families, agents…).
    pub people_categories: String,
    /// Approximate number of people concerned, if known.
    #[serde(default)]
    pub people_count: Option<u64>,
    /// Categories of records concerned (identity, contact details, health…).
    pub record_categories: String,
    /// Approximate number of records concerned, if known.
    #[serde(default)]
    pub record_count: Option<u64>,
    /// Likely consequences for the people.
    pub consequences: String,
    /// Measures taken or proposed, to address the breach and limit its effects.
    pub measures: String,
    /// When the CNIL was notified (the first notification, if in phases).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub cnil_notified_at: Option<OffsetDateTime>,
    /// Why the CNIL is not notified (the breach is unlikely to result in a risk).
    #[serde(default)]
    pub cnil_not_notified_reason: Option<String>,
    /// Why the notification came (or will come) after 72 hours (Art. 33(1)).
    #[serde(default)]
    pub delay_reason: Option<String>,
    /// When the people were told (Art. 34).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub people_informed_at: Option<OffsetDateTime>,
    /// Why the people are not told (no high risk, data unintelligible, disproportionate effort).
    #[serde(default)]
    pub people_not_informed_reason: Option<String>,
}

/// One entry of the register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `INC-XXXX-XXXX`: spoken on the phone, journaled as `incident:INC-…`.
    pub id: String,
    #[serde(flatten)]
    pub facts: IncidentFacts,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Where the CNIL notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    /// Notified within 72 hours of awareness.
    OnTime,
    /// Notified later (a reason for the delay is recorded).
    Late,
    /// Deliberately not notified, with the reason recorded.
    NotNotified,
    /// Not yet notified, nor decided: `left` until the deadline (negative once passed).
    Pending { left: Duration },
}

impl Incident {
    /// `aware_at` + 72 hours.
    pub fn deadline(&self) -> OffsetDateTime {
        self.facts.aware_at + NOTIFY_WITHIN
    }

    pub fn notification(&self, now: OffsetDateTime) -> Notification {
        let f = &self.facts;
        match (f.cnil_notified_at, &f.cnil_not_notified_reason) {
            (Some(at), _) if at <= self.deadline() => Notification::OnTime,
            (Some(_), _) => Notification::Late,
            (None, Some(_)) => Notification::NotNotified,
            (None, None) => Notification::Pending { left: self.deadline() - now },
        }
    }

    /// Not notified nor decided, and less than 24 hours left (or past).
    pub fn deadline_near(&self, now: OffsetDateTime) -> bool {
        matches!(self.notification(now), Notification::Pending { left } if left < NEAR_DEADLINE)
    }

    /// The journal's pseudonymous reference to this entry.
    pub fn record_ref(&self) -> String {
        record_ref(&self.id)
    }
}

pub fn record_ref(id: &str) -> String {
    format!("incident:{id}")
}

/// A field that does not hold: its name (as in the form and the file) and why, in French for
/// the DPO's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub field: &'static str,
    pub why: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.why)
    }
}

impl IncidentFacts {
    /// Every problem, in form order; empty when the entry can be recorded at `now`.
    pub fn problems(&self, now: OffsetDateTime) -> Vec<Invalid> {
        let mut out = Vec::new();
        let mut bad = |field, why| out.push(Invalid { field, why });
        if self.aware_at > now {
            bad("aware_at", "la date ne peut pas être dans le futur");
        }
        if self.started_at.is_some_and(|s| s > self.aware_at) {
            bad("started_at", "le début ne peut pas être après la découverte");
        }
        if self.nature.is_empty() {
            bad("nature", "choisissez au moins une nature");
        }
        for (field, text) in [
            ("description", &self.description),
            ("people_categories", &self.people_categories),
            ("record_categories", &self.record_categories),
            ("consequences", &self.consequences),
            ("measures", &self.measures),
        ] {
            if text.trim().is_empty() {
                bad(field, "ce champ est obligatoire");
            }
        }
        let texts = [
            ("description", Some(&self.description)),
            ("people_categories", Some(&self.people_categories)),
            ("record_categories", Some(&self.record_categories)),
            ("consequences", Some(&self.consequences)),
            ("measures", Some(&self.measures)),
            ("cnil_not_notified_reason", self.cnil_not_notified_reason.as_ref()),
            ("delay_reason", self.delay_reason.as_ref()),
            ("people_not_informed_reason", self.people_not_informed_reason.as_ref()),
        ];
        for (field, text) in texts {
            if text.is_some_and(|t| t.chars().count() > TEXT_MAX) {
                bad(field, "le texte est trop long (4000 caractères au plus)");
            }
        }
        match self.cnil_notified_at {
            Some(at) if at < self.aware_at => {
                bad("cnil_notified_at", "la notification ne peut pas précéder la découverte")
            }
            Some(at) if at > now => bad("cnil_notified_at", "la date ne peut pas être dans le futur"),
            Some(at) if at > self.aware_at + NOTIFY_WITHIN && blank(self.delay_reason.as_ref()) => {
                bad("delay_reason", "notifiée après 72 heures : donnez la raison du retard");
            }
            Some(_) if !blank(self.cnil_not_notified_reason.as_ref()) => {
                bad("cnil_not_notified_reason", "la CNIL a été notifiée : pas de raison de ne pas notifier");
            }
            _ => {}
        }
        if self.people_informed_at.is_some_and(|at| at > now) {
            bad("people_informed_at", "la date ne peut pas être dans le futur");
        }
        out
    }

    /// Empty optional texts are no text; times in UTC (as exported).
    pub fn normalised(mut self) -> Self {
        self.aware_at = self.aware_at.to_offset(time::UtcOffset::UTC);
        for t in [&mut self.started_at, &mut self.cnil_notified_at, &mut self.people_informed_at] {
            *t = t.map(|t| t.to_offset(time::UtcOffset::UTC));
        }
        for t in [&mut self.cnil_not_notified_reason, &mut self.delay_reason, &mut self.people_not_informed_reason] {
            if blank(t.as_ref()) {
                *t = None;
            }
        }
        self.nature.sort();
        self.nature.dedup();
        self
    }
}

fn blank(t: Option<&String>) -> bool {
    t.is_none_or(|t| t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    pub(crate) fn facts() -> IncidentFacts {
        IncidentFacts {
            aware_at: datetime!(2026-12-01 09:00 UTC),
            started_at: None,
            nature: vec![Nature::Confidentiality],
            description: "Courriel envoyé au mauvais destinataire".into(),
            people_categories: "Familles".into(),
            people_count: Some(12),
            record_categories: "Coordonnées".into(),
            record_count: Some(12),
            consequences: "Hameçonnage possible".into(),
            measures: "Demande d'effacement au destinataire".into(),
            cnil_notified_at: None,
            cnil_not_notified_reason: None,
            delay_reason: None,
            people_informed_at: None,
            people_not_informed_reason: None,
        }
    }

    fn incident(f: IncidentFacts) -> Incident {
        Incident {
            id: "INC-0000-0001".into(),
            facts: f,
            recorded_at: datetime!(2026-12-01 10:00 UTC),
            updated_at: datetime!(2026-12-01 10:00 UTC),
        }
    }

    #[test]
    fn the_deadline_is_72_hours_after_awareness_and_near_under_24_hours() {
        let i = incident(facts());
        assert_eq!(i.deadline(), datetime!(2026-12-04 09:00 UTC));
        assert_eq!(
            i.notification(datetime!(2026-12-02 09:00 UTC)),
            Notification::Pending { left: Duration::hours(48) }
        );
        assert!(!i.deadline_near(datetime!(2026-12-03 09:00 UTC)));
        assert!(i.deadline_near(datetime!(2026-12-03 09:01 UTC)));
        assert!(i.deadline_near(datetime!(2026-12-05 09:00 UTC)), "past the deadline is nearer still");
    }

    #[test]
    fn notified_late_needs_a_reason_and_not_notified_stays_with_its_reason() {
        let now = datetime!(2026-12-10 09:00 UTC);
        let mut f = facts();
        f.cnil_notified_at = Some(datetime!(2026-12-05 09:00 UTC));
        assert_eq!(
            f.problems(now),
            vec![Invalid { field: "delay_reason", why: "notifiée après 72 heures : donnez la raison du retard" }]
        );
        f.delay_reason = Some("Ampleur connue le 4 décembre".into());
        assert!(f.problems(now).is_empty());
        assert_eq!(incident(f).notification(now), Notification::Late);
        let mut f = facts();
        f.cnil_not_notified_reason = Some("Données chiffrées, clé non compromise".into());
        let i = incident(f);
        assert_eq!(i.notification(now), Notification::NotNotified);
        assert!(!i.deadline_near(now), "a decision not to notify raises no alert");
    }

    #[test]
    fn facts_that_cannot_hold_are_refused_with_their_field() {
        let now = datetime!(2026-12-02 09:00 UTC);
        let mut f = facts();
        f.nature.clear();
        f.measures = " ".into();
        f.cnil_notified_at = Some(datetime!(2026-11-30 09:00 UTC));
        let fields: Vec<&str> = f.problems(now).iter().map(|p| p.field).collect();
        assert_eq!(fields, ["nature", "measures", "cnil_notified_at"]);
    }
}
