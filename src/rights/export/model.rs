//! What an export holds, as `donnees.json` serialises it (schema:
//! `docs/schemas/export.schema.json`) and `donnees.html` shows it. Fields marked
//! `serde(skip)` are wordings for the printable page only.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::rights::request::{Right, Status};
use crate::rights::service::Answer;

/// The version of the JSON format; a change that breaks readers gets a new one.
pub const FORMAT: &str = "guichet-export/1";

#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub format: &'static str,
    /// The rights request this export answers.
    pub reference: String,
    pub right: Right,
    #[serde(skip)]
    pub right_label: &'static str,
    /// RFC 3339, Paris time.
    pub generated_at: String,
    #[serde(skip)]
    pub generated_at_fr: String,
    pub identity: Identity,
    pub sign_ins: Vec<SignIn>,
    pub consents: Vec<ConsentEntry>,
    pub reveals: Vec<RevealEntry>,
    pub rights_requests: Vec<RequestEntry>,
    pub activities: Vec<ActivityEntry>,
}

/// The identity claims the gateway keeps during a session (sealed under the session cookie:
/// readable only while the citizen is signed in).
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub claims: Option<BTreeMap<String, String>>,
    pub source: String,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignIn {
    pub at: String,
    #[serde(skip)]
    pub at_fr: String,
    /// The eIDAS level of the sign-in (`eidas1`…), when known.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsentEntry {
    pub activity: String,
    pub purpose: String,
    #[serde(skip)]
    pub purpose_label: String,
    /// `given` or `withdrawn`.
    pub event: &'static str,
    pub at: String,
    #[serde(skip)]
    pub at_fr: String,
    /// The signed receipt (compact JWS, checkable against `/.guichet/jwks.json`).
    pub receipt: Option<String>,
}

/// One time an agent or a back-office job saw the citizen's values in clear: never the agent's
/// name, only their role.
#[derive(Debug, Clone, Serialize)]
pub struct RevealEntry {
    pub at: String,
    #[serde(skip)]
    pub at_fr: String,
    pub activity: Option<String>,
    pub purpose: Option<String>,
    pub role: String,
    /// `agent` or `automated` (a back-office job).
    pub by: &'static str,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestEntry {
    pub id: String,
    pub right: Right,
    #[serde(skip)]
    pub right_label: &'static str,
    pub activity: Option<String>,
    pub status: Status,
    #[serde(skip)]
    pub status_label: &'static str,
    pub received_at: String,
    #[serde(skip)]
    pub received_at_fr: String,
    pub answer: Option<Answer>,
    #[serde(skip)]
    pub answer_text: Option<String>,
}

/// One processing activity: the Art. 15(1) information and what its application answered.
#[derive(Debug, Clone, Serialize)]
pub struct ActivityEntry {
    pub id: String,
    pub name: String,
    pub information: Information,
    pub application: Application,
}

/// Art. 15(1)(a)–(h), worded as the activity's notice words it (`policy::notice`).
#[derive(Debug, Clone, Serialize)]
pub struct Information {
    pub description: String,
    pub controller: String,
    pub dpo_contact: String,
    pub purposes: Vec<PurposeInfo>,
    pub categories: Vec<CategoryInfo>,
    pub recipients: Vec<String>,
    pub transfers: String,
    pub source: String,
    pub rights: Vec<String>,
    pub how_to_exercise: String,
    pub complaint: String,
    pub automated_decision: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurposeInfo {
    pub description: String,
    pub legal_basis: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryInfo {
    pub name: String,
    pub retention: String,
}

/// Where the application stands, and its records with the citizen's values in clear.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    /// `answered`, `refused`, `pending` (not answered yet) or `not_connected` (no rights
    /// endpoint: an agent answers by hand).
    pub status: &'static str,
    #[serde(skip)]
    pub status_label: &'static str,
    pub reason: Option<String>,
    pub records: Option<serde_json::Value>,
    /// Values that could not be opened for this citizen (another person's, or erased).
    pub unreadable_values: u32,
    #[serde(skip)]
    pub lines: Vec<(String, String)>,
}
