//! The rights-request aggregate: which right, how it arrived, and the statuses it may go
//! through. Pure: the service stores it and journals every transition.

use serde::{Deserialize, Serialize};

/// The rights of GDPR Art. 15–21 that a citizen can exercise through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// Art. 15.
    Access,
    /// Art. 20.
    Portability,
    /// Art. 16.
    Rectification,
    /// Art. 17.
    Erasure,
    /// Art. 18.
    Restriction,
    /// Art. 21.
    Objection,
}

impl Right {
    pub const ALL: [Right; 6] =
        [Self::Access, Self::Portability, Self::Rectification, Self::Erasure, Self::Restriction, Self::Objection];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Portability => "portability",
            Self::Rectification => "rectification",
            Self::Erasure => "erasure",
            Self::Restriction => "restriction",
            Self::Objection => "objection",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The GDPR article.
    pub fn article(self) -> u8 {
        match self {
            Self::Access => 15,
            Self::Portability => 20,
            Self::Rectification => 16,
            Self::Erasure => 17,
            Self::Restriction => 18,
            Self::Objection => 21,
        }
    }

    /// Plain French, as a citizen says it.
    pub fn french(self) -> &'static str {
        match self {
            Self::Access => "Voir mes données",
            Self::Portability => "Récupérer mes données dans un fichier",
            Self::Rectification => "Corriger mes données",
            Self::Erasure => "Effacer mes données",
            Self::Restriction => "Geler l'utilisation de mes données",
            Self::Objection => "M'opposer à l'utilisation de mes données",
        }
    }
}

pub use crate::audit::Channel;

/// The kind of identity document an agent checked (the kind only: never a copy, R14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    IdentityCard,
    Passport,
    ResidencePermit,
    DrivingLicence,
    Other,
}

/// How the requester's identity was established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum IdentityProof {
    /// Signed in with the citizen identity provider, at this eIDAS level.
    SignIn { acr: String },
    /// An agent looked at a document at the counter.
    Document { kind: DocumentKind },
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Received,
    InProgress,
    WaitingOnApplications,
    Completed,
    PartlyCompleted,
    Refused,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Self::Received,
        Self::InProgress,
        Self::WaitingOnApplications,
        Self::Completed,
        Self::PartlyCompleted,
        Self::Refused,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::InProgress => "in_progress",
            Self::WaitingOnApplications => "waiting_on_applications",
            Self::Completed => "completed",
            Self::PartlyCompleted => "partly_completed",
            Self::Refused => "refused",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// No transition leaves a final status.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::PartlyCompleted | Self::Refused | Self::Cancelled)
    }

    /// Plain French for the citizen's list of requests.
    pub fn french(self) -> &'static str {
        match self {
            Self::Received => "Reçue",
            Self::InProgress => "En cours",
            Self::WaitingOnApplications => "En attente des services",
            Self::Completed => "Terminée",
            Self::PartlyCompleted => "Terminée en partie",
            Self::Refused => "Refusée",
            Self::Cancelled => "Annulée",
        }
    }
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError {
    NotAllowed { from: &'static str, to: &'static str },
    RefusalWithoutReason,
    ExcessiveWithoutEarlierRequests,
}

impl TransitionError {
    /// The one wording of each refusal (the API's problem detail too).
    pub fn message(&self) -> &'static str {
        match self {
            Self::NotAllowed { .. } => "this step is not allowed from the request's current status",
            Self::RefusalWithoutReason => "a refusal needs its reason",
            Self::ExcessiveWithoutEarlierRequests => {
                "a request refused as unfounded or excessive must link the earlier requests"
            }
        }
    }
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed { from, to } => write!(f, "a request cannot go from {from} to {to}"),
            other => f.write_str(other.message()),
        }
    }
}

impl std::error::Error for TransitionError {}

/// Whether `from → to` is one of the allowed steps:
/// received → in progress → waiting on applications → completed / partly completed / refused,
/// back from waiting to in progress when an application answers, a refusal straight from
/// received (a right that does not apply), and cancellation by the citizen before the end.
pub fn allowed(from: Status, to: Status) -> bool {
    use Status::*;
    matches!(
        (from, to),
        (Received, InProgress | Refused | Cancelled)
            | (InProgress, WaitingOnApplications | Completed | PartlyCompleted | Refused | Cancelled)
            | (WaitingOnApplications, InProgress | Completed | PartlyCompleted | Refused | Cancelled)
    )
}

/// The ground of a refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ground", rename_all = "snake_case")]
pub enum RefusalGround {
    /// The right does not apply to this activity's legal basis (the article that says so).
    NotApplicable { article: String },
    /// Manifestly unfounded or excessive (Art. 12(5)), proven by the earlier requests.
    UnfoundedOrExcessive { earlier_requests: Vec<String> },
    /// Decided by an authorised agent (e.g. compelling legitimate grounds under Art. 21(1)).
    Decision,
}

/// A refusal as the citizen reads it: the ground, the reason in plain French, and the remedies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    #[serde(flatten)]
    pub ground: RefusalGround,
    pub reason: String,
}

/// The remedies every refusal states (Art. 12(4)).
pub const REMEDIES: &str = "Si vous n'êtes pas d'accord, vous pouvez faire une réclamation auprès de la CNIL \
     (www.cnil.fr/plaintes) ou saisir le tribunal administratif.";

impl Refusal {
    /// Checks what a refusal must carry before it can be recorded.
    pub fn check(&self) -> Result<(), TransitionError> {
        if self.reason.trim().is_empty() {
            return Err(TransitionError::RefusalWithoutReason);
        }
        if let RefusalGround::UnfoundedOrExcessive { earlier_requests } = &self.ground
            && earlier_requests.iter().all(|r| r.trim().is_empty())
        {
            return Err(TransitionError::ExcessiveWithoutEarlierRequests);
        }
        Ok(())
    }
}

/// Checks one step of the state machine, and a refusal's content when the step refuses.
pub fn check_transition(from: Status, to: Status, refusal: Option<&Refusal>) -> Result<(), TransitionError> {
    if !allowed(from, to) {
        return Err(TransitionError::NotAllowed { from: from.as_str(), to: to.as_str() });
    }
    match (to, refusal) {
        (Status::Refused, None) => Err(TransitionError::RefusalWithoutReason),
        (Status::Refused, Some(r)) => r.check(),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_steps_are_allowed() {
        use Status::*;
        let allowed_steps = [
            (Received, InProgress),
            (Received, Refused),
            (Received, Cancelled),
            (InProgress, WaitingOnApplications),
            (InProgress, Completed),
            (InProgress, PartlyCompleted),
            (InProgress, Refused),
            (InProgress, Cancelled),
            (WaitingOnApplications, InProgress),
            (WaitingOnApplications, Completed),
            (WaitingOnApplications, PartlyCompleted),
            (WaitingOnApplications, Refused),
            (WaitingOnApplications, Cancelled),
        ];
        for from in Status::ALL {
            for to in Status::ALL {
                assert_eq!(allowed(from, to), allowed_steps.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
        for s in Status::ALL {
            assert_eq!(s.is_final(), Status::ALL.iter().all(|t| !allowed(s, *t)), "{s:?}");
        }
    }

    #[test]
    fn a_refusal_carries_its_reason_and_proof_of_excess() {
        let no_reason = Refusal { ground: RefusalGround::Decision, reason: " ".into() };
        assert_eq!(
            check_transition(Status::InProgress, Status::Refused, Some(&no_reason)),
            Err(TransitionError::RefusalWithoutReason)
        );
        assert_eq!(
            check_transition(Status::InProgress, Status::Refused, None),
            Err(TransitionError::RefusalWithoutReason)
        );
        let excessive = Refusal {
            ground: RefusalGround::UnfoundedOrExcessive { earlier_requests: vec![] },
            reason: "Quatrième demande identique ce mois-ci.".into(),
        };
        assert_eq!(
            check_transition(Status::Received, Status::Refused, Some(&excessive)),
            Err(TransitionError::ExcessiveWithoutEarlierRequests)
        );
        let proven = Refusal {
            ground: RefusalGround::UnfoundedOrExcessive { earlier_requests: vec!["DR-2026-0001".into()] },
            reason: excessive.reason.clone(),
        };
        assert_eq!(check_transition(Status::Received, Status::Refused, Some(&proven)), Ok(()));
        assert!(matches!(
            check_transition(Status::Completed, Status::Refused, Some(&proven)),
            Err(TransitionError::NotAllowed { .. })
        ));
    }

    #[test]
    fn names_round_trip() {
        for r in Right::ALL {
            assert_eq!(Right::parse(r.as_str()), Some(r));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(!Channel::Online.is_assisted());
        assert!(Channel::Counter.is_assisted());
    }
}
