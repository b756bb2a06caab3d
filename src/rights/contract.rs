//! The contract between the gateway and an application's rights endpoint (Art. 19), shaped on
//! OpenDSR: what the gateway sends (a JWS over [`AppRequest`]), what the application answers
//! at once or later through the status callback ([`AppAnswer`]). `docs/rights.md` describes it
//! for application teams. Only types live here: the client that sends requests and the
//! callback endpoint build on them.

use serde::{Deserialize, Serialize};

/// The JWS `typ` of a signed request, so that no other token the gateway signs can be replayed
/// as one.
pub const REQUEST_JWS_TYPE: &str = "guichet-rights+jwt";

/// What a request asks of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestType {
    Access,
    Portability,
    Rectification,
    Erasure,
    Restriction,
    /// A restriction ends: the application may process the data again.
    RestrictionLifted,
    Objection,
    /// Retention: the record left the active base for the intermediate archive; the
    /// application keeps it apart, for the roles the policy names only.
    Archived,
    /// Retention: the application anonymises the record (the gateway forgot who it was).
    Anonymisation,
}

/// The subject as this application knows them: the pairwise pseudonym it receives in
/// `X-Guichet-Subject`, never the gateway's internal id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectIdentity {
    /// Always `"pseudonym"` today.
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The claims of the JWS the gateway POSTs to the application's rights endpoint
/// (`Content-Type: application/jose`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRequest {
    /// Unique per (request, activity): `DR-7K3M-Q9XP.cantine`. Applications deduplicate on it.
    pub request_id: String,
    #[serde(rename = "type")]
    pub request_type: RequestType,
    /// Always `"gdpr"`.
    pub regulation: String,
    /// RFC 3339.
    pub submitted_time: String,
    pub subject_identity: SubjectIdentity,
    /// The processing activity concerned (policy id).
    pub activity: String,
    /// Where the application POSTs later statuses (authenticated with its callback secret).
    pub status_callback_url: String,
    /// Rectification only: declared field name → corrected value, already sealed as a `gch1.`
    /// token exactly as the application would receive it through the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrections: Option<serde_json::Map<String, serde_json::Value>>,
    /// Why the gateway sends it when it is not a citizen's request: `"retention"` (the
    /// retention period of `category` ended; docs/retention.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Retention only: the data category concerned (policy id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// JWT registered claims: the application's route name, issued-at and expiry (unix seconds).
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// Where the application is with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppStatus {
    Pending,
    InProgress,
    Completed,
    Refused,
}

impl AppStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Refused)
    }
}

/// The application's answer: the body of its response (200 final, 202 not yet) or of a
/// callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppAnswer {
    pub request_id: String,
    pub status: AppStatus,
    /// Why it refused (plain French, shown to the citizen), or a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Access and portability: the application's records about the subject, any JSON; values
    /// it stores as `gch1.` tokens stay tokens here and the gateway opens them for the export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<serde_json::Value>,
}
