//! Forgetting the journal on schedule (R46: a rolling window of 6 to 12 months, longer only
//! with a justification in the configuration). Pruning removes whole runs of entries up to a
//! signed checkpoint that all of them precede; the rest of the chain is then verified from
//! that checkpoint. Entries may therefore outlive the window by up to one checkpoint
//! interval: never less than the window, never a chain that no longer verifies.

use std::time::Duration;

use super::event::{AuditEvent, Operation, to_micros};
use super::{Audit, AuditError};
use crate::clock::Clock;
use crate::store::{Pruned, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Journal(#[from] AuditError),
    #[error("the retention window is too long to compute a cut-off date")]
    Window,
}

/// Removes what is older than `keep` and journals the pruning itself.
pub async fn prune(
    store: &Store,
    audit: &Audit,
    clock: &dyn Clock,
    keep: Duration,
) -> Result<Option<Pruned>, PruneError> {
    let now = clock.now();
    let keep = time::Duration::try_from(keep).map_err(|_| PruneError::Window)?;
    let cutoff = now.checked_sub(keep).ok_or(PruneError::Window)?;
    let pruned = store.audit().prune_before(to_micros(cutoff)).await?;
    if let Some(p) = pruned {
        tracing::info!(entries = p.entries, anchor_seq = p.anchor_seq, "audit journal pruned to its retention window");
        let up_to_seq = u64::try_from(p.anchor_seq).unwrap_or_default();
        audit.append_sync(AuditEvent::system(Operation::JournalPruned { up_to_seq }, now)).await?;
    }
    Ok(pruned)
}
