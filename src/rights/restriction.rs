//! Restriction of processing (Art. 18): a granted restriction marks (citizen, activity)
//! restricted. While it lasts the proxy refuses the activity's write routes for that citizen
//! (nothing is forwarded) and reveals their values only to the roles the policy names in
//! `restriction_visible_to`. Lifting it removes the mark and tells the application
//! (`restriction_lifted`).

use super::request::Right;
use super::service::{By, RightsError};
use crate::app::App;

pub const RESTRICTED: &str = "restricted";

pub async fn restrict(app: &App, field_subject: &str, activity: &str) -> Result<(), RightsError> {
    app.rights.mark(field_subject, activity, RESTRICTED).await
}

/// Whether (`field_subject`, `activity`) is restricted now.
pub async fn is_restricted(app: &App, field_subject: &str, activity: &str) -> Result<bool, RightsError> {
    app.rights.is_marked(field_subject, activity, RESTRICTED).await
}

/// The (field subject, activity) pairs among `keys` restricted now, in one read.
pub async fn restricted_among(
    app: &App,
    keys: &[(&str, &str)],
) -> Result<std::collections::HashSet<(String, String)>, RightsError> {
    app.rights.marked_among(keys, RESTRICTED).await
}

/// Lifts the restrictions a restriction request put in place and tells each application.
/// Returns how many activities were lifted.
pub async fn lift(app: &App, request_id: &str, by: &By) -> Result<usize, RightsError> {
    let request = app.rights.get(request_id).await?;
    if request.right != Right::Restriction {
        return Err(RightsError::NotFound);
    }
    // The v1 (`general`) field subject was marked too where the activity has a sector
    // (`Subjects::fields_for`): records sealed before the sector existed are restricted as well.
    let legacy = app.rights.subjects_of(&request.subject).await?.map(|s| s.field);
    let mut lifted = 0;
    for t in app.rights.targets(request_id).await? {
        let Some(subject) = t.field_subject.as_deref() else { continue };
        let mut removed = app.rights.unmark(subject, &t.activity, RESTRICTED).await?;
        if let Some(v1) = legacy.as_deref().filter(|v1| *v1 != subject) {
            removed |= app.rights.unmark(v1, &t.activity, RESTRICTED).await?;
        }
        if !removed {
            continue;
        }
        lifted += 1;
        if t.route.is_some() && t.app_subject.is_some() {
            super::propagation::enqueue(app, request_id, &t.activity, true).await?;
        }
    }
    app.rights.journal_step(&request, "restriction_lifted", by).await?;
    Ok(lifted)
}
