//! Reveals of values whose retention moved on (used by `proxy::reveal`): in intermediate
//! archive (and in review, or kept), only agents holding a role the category's
//! `archive_visible_to` names see values, and only when the request states a typed reason in
//! `X-Guichet-Archive-Reason` (journaled with the reveal); everyone else gets the placeholder.
//! A forgotten category (ended) shows the placeholder to everyone. The citizen still sees
//! their own archived values (right of access).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use super::{Phase, RetentionService};
use crate::policy::model::ActivityFile;

/// The request header carrying the reason (removed before forwarding, like every
/// `X-Guichet-*` header).
pub const REASON_HEADER: &str = "x-guichet-archive-reason";

/// Why an agent opens archived values, or the DPO joins a citizen's sectors
/// (`rights::sectors::link`): a closed list, so that the journal can say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveReason {
    /// A dispute or court case (contentieux).
    Litigation,
    /// An inspection or audit (contrôle).
    Inspection,
    /// The citizen asked (access, rectification…).
    SubjectRequest,
    /// A text of law requires it.
    LegalObligation,
}

impl ArchiveReason {
    pub const ALL: [ArchiveReason; 4] =
        [Self::Litigation, Self::Inspection, Self::SubjectRequest, Self::LegalObligation];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Litigation => "litigation",
            Self::Inspection => "inspection",
            Self::SubjectRequest => "subject_request",
            Self::LegalObligation => "legal_obligation",
        }
    }

    /// The reason named `s` (its `as_str`), if it is one of the list.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s.trim())
    }

    /// Its French name, as the console's lists show it.
    pub fn french(self) -> &'static str {
        match self {
            Self::Litigation => "Contentieux ou procédure en justice",
            Self::Inspection => "Contrôle (CNIL, audit)",
            Self::SubjectRequest => "Demande de la personne",
            Self::LegalObligation => "Obligation prévue par un texte",
        }
    }
}

/// The reason a request gives, when it is one of the list.
pub fn reason_of(headers: &HeaderMap) -> Option<ArchiveReason> {
    ArchiveReason::parse(headers.get(REASON_HEADER)?.to_str().ok()?)
}

/// What a viewer gets for one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Retention does not limit it (active, or unknown to retention).
    Open,
    /// Archived: shown to this agent for this reason, under this archive role.
    Archived { reason: ArchiveReason, role: String },
    /// Only the placeholder.
    Placeholder,
}

/// Per response: the activity (its categories' archive roles) and the phases read so far.
/// Built for every response of a route with fields, most of which hold no token: it copies
/// nothing until a token is revealed.
pub struct ArchiveCheck {
    service: Arc<RetentionService>,
    activity: Arc<ActivityFile>,
    reason: Option<ArchiveReason>,
    phases: HashMap<String, Option<Vec<(String, Phase)>>>,
}

impl ArchiveCheck {
    pub fn new(service: Arc<RetentionService>, activity: Arc<ActivityFile>, reason: Option<ArchiveReason>) -> Self {
        Self { service, activity, reason, phases: HashMap::new() }
    }

    /// The verdict for a value of `category` owned by `subject`, for a citizen (`Some(own)`:
    /// whether it is theirs) or an agent with `agent_roles`.
    pub async fn verdict(
        &mut self,
        subject: &str,
        category: &str,
        own: Option<bool>,
        agent_roles: &[String],
    ) -> Verdict {
        if !self.phases.contains_key(subject) {
            let read = self.service.phases(subject, &self.activity.id).await;
            if let Err(e) = &read {
                tracing::warn!(error = %e, "cannot read retention phases; the placeholder is shown");
            }
            self.phases.insert(subject.to_owned(), read.ok());
        }
        let Some(Some(phases)) = self.phases.get(subject) else { return Verdict::Placeholder };
        let phase = phases.iter().find(|(c, _)| c == category).map(|(_, p)| *p);
        decide(phase, archive_roles(&self.activity, category), own, agent_roles, self.reason)
    }
}

/// The roles that may see archived values of `category` (none when it has no rule).
fn archive_roles<'a>(activity: &'a ActivityFile, category: &str) -> &'a [String] {
    let category = activity.categories.iter().find(|c| c.id == category);
    category.and_then(|c| c.retention.as_ref()).map_or(&[][..], |r| r.archive_visible_to.as_slice())
}

/// The rule, pure: `own` is `Some` for a citizen (whether the value is theirs), `None` for
/// an agent with `agent_roles`; `allowed` are the category's archive roles.
pub fn decide(
    phase: Option<Phase>,
    allowed: &[String],
    own: Option<bool>,
    agent_roles: &[String],
    reason: Option<ArchiveReason>,
) -> Verdict {
    match phase {
        None | Some(Phase::Active) => Verdict::Open,
        Some(Phase::Ended) => Verdict::Placeholder,
        Some(_) if own == Some(true) => Verdict::Open,
        Some(_) if own.is_some() => Verdict::Placeholder,
        Some(_) => match (agent_roles.iter().find(|r| allowed.contains(r)), reason) {
            (Some(role), Some(reason)) => Verdict::Archived { reason, role: role.clone() },
            _ => Verdict::Placeholder,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_values_need_an_archive_role_and_a_reason() {
        let archives = vec!["archives".to_owned()];
        let clerk = vec!["accueil".to_owned()];
        let why = Some(ArchiveReason::Litigation);
        let cases = [
            (None, None, &clerk, None, Verdict::Open),
            (Some(Phase::Active), None, &clerk, None, Verdict::Open),
            (Some(Phase::Intermediate), None, &clerk, why, Verdict::Placeholder),
            (Some(Phase::Intermediate), None, &archives, None, Verdict::Placeholder),
            (
                Some(Phase::Intermediate),
                None,
                &archives,
                why,
                Verdict::Archived { reason: ArchiveReason::Litigation, role: "archives".into() },
            ),
            (
                Some(Phase::Review),
                None,
                &archives,
                why,
                Verdict::Archived { reason: ArchiveReason::Litigation, role: "archives".into() },
            ),
            (Some(Phase::Intermediate), Some(true), &clerk, None, Verdict::Open),
            (Some(Phase::Intermediate), Some(false), &archives, why, Verdict::Placeholder),
            (Some(Phase::Ended), Some(true), &archives, why, Verdict::Placeholder),
            (Some(Phase::Ended), None, &archives, why, Verdict::Placeholder),
        ];
        for (phase, own, roles, reason, expected) in cases {
            assert_eq!(
                decide(phase, &archives, own, roles, reason),
                expected,
                "{phase:?} {own:?} {roles:?} {reason:?}"
            );
        }
    }

    #[test]
    fn archive_roles_are_the_category_rule_s() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/policies/retention-archive/a.toml");
        let mut a: ActivityFile = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(archive_roles(&a, "c"), ["archives".to_owned()]);
        assert!(archive_roles(&a, "unknown").is_empty());
        if let Some(r) = a.categories.first_mut().and_then(|c| c.retention.as_mut()) {
            r.archive_visible_to = vec!["archiviste".into(), "juriste".into()];
        }
        assert_eq!(archive_roles(&a, "c"), ["archiviste".to_owned(), "juriste".to_owned()]);
        a.categories.first_mut().unwrap().retention = None;
        assert!(archive_roles(&a, "c").is_empty());
    }

    #[test]
    fn only_listed_reasons_are_read() {
        let mut h = HeaderMap::new();
        h.insert(REASON_HEADER, http::HeaderValue::from_static("litigation"));
        assert_eq!(reason_of(&h), Some(ArchiveReason::Litigation));
        h.insert(REASON_HEADER, http::HeaderValue::from_static("curiosity"));
        assert_eq!(reason_of(&h), None);
    }
}
