//! The DPO's one way to join a citizen's sectors (docs/cryptography.md, "Sector pseudonyms"):
//! inside the gateway, a citizen's fields, consents and journal entries are under one
//! pseudonym per sector, and nothing in the store links two of them except the pseudonyms
//! recorded when the citizen filed a rights request or asked for a counter code
//! (`rights_subject`). `link` reads those for one request and journals the step
//! (`sectors_linked:<reason>`) on the request, so every join is explicit, traceable and
//! justified. Reached by `guichet rights link` and the DPO console's rights queue.

use super::service::{By, RightsError};
use crate::app::App;
use crate::policy::Sector;
pub use crate::retention::reveal::ArchiveReason as LinkReason;

/// A citizen's pseudonyms in one sector, as `link` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SectorIds {
    pub sector: Sector,
    /// Owner of the sector's sealed fields, restriction marks, retention records and reveals.
    pub field: String,
    /// Subject of the sector's consent events.
    pub consent: String,
}

/// The per-sector pseudonyms of the citizen of request `id`, `general` first, journaled as
/// the request's step `sectors_linked:<reason>` by `by`. `NotFound` when the request has no
/// recorded pseudonyms (filed before they were recorded, or for a citizen without an account).
pub async fn link(app: &App, id: &str, reason: LinkReason, by: &By) -> Result<Vec<SectorIds>, RightsError> {
    let request = app.rights.get(id).await?;
    let subjects = app.rights.subjects_of(&request.subject).await?.ok_or(RightsError::NotFound)?;
    let ids = Sector::ALL
        .into_iter()
        .map(|sector| SectorIds {
            sector,
            field: subjects.field_in(sector).to_owned(),
            consent: subjects.consent_in(sector).unwrap_or(&request.subject).to_owned(),
        })
        .collect();
    app.rights.journal_step(&request, &format!("sectors_linked:{}", reason.as_str()), by).await?;
    Ok(ids)
}
