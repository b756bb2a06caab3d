//! Checking a consent ledger row against what vouches for it: the journal entry it copies,
//! and its own signature by the checkpoint key. Enforcement runs it on every row it loads
//! (a row that fails is refused, fail closed) and `guichet audit verify` on every row.
//!
//! A row passes when every column says what its hashed body says, its signature (if any) is
//! good, and the journal entry (while retention has not pruned it) has the same body and hash.
//! Rows written before rows were signed (migration 0006) pass on their journal entry alone;
//! a row with neither is refused.

use super::chain;
use super::checkpoint::{LedgerRow as Signed, Verifier};
use super::event::{AuditEvent, Operation};
use crate::store::LedgerRow;

/// Why a ledger row is refused. Names the row by its sequence number only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerBreak {
    #[error("consent ledger row {seq}: column `{column}` differs from its hashed body (altered)")]
    Column { seq: i64, column: &'static str },
    #[error("consent ledger row {seq}: not a consent event (altered)")]
    Unreadable { seq: i64 },
    #[error("consent ledger row {seq}: bad signature (altered)")]
    BadSignature { seq: i64 },
    #[error("consent ledger row {seq}: signed by unknown key {key_id}")]
    UnknownKey { seq: i64, key_id: String },
    #[error("consent ledger row {seq}: differs from journal entry {seq} (altered)")]
    EntryMismatch { seq: i64 },
    #[error("consent ledger row {seq}: neither signed nor backed by a journal entry (forged)")]
    Unverifiable { seq: i64 },
    #[error("journal entry {seq}: a consent event with no consent ledger row (row deleted)")]
    MissingRow { seq: i64 },
}

impl LedgerBreak {
    pub fn seq(&self) -> i64 {
        match self {
            Self::Column { seq, .. }
            | Self::Unreadable { seq }
            | Self::BadSignature { seq }
            | Self::UnknownKey { seq, .. }
            | Self::EntryMismatch { seq }
            | Self::Unverifiable { seq }
            | Self::MissingRow { seq } => *seq,
        }
    }
}

/// Checks one row (see the module documentation).
pub fn check(l: &LedgerRow, verifier: &Verifier) -> Result<(), LedgerBreak> {
    let row = &l.row;
    let seq = row.seq;
    columns_agree(l)?;
    let signed = match (&row.key_id, &row.signature) {
        (Some(key_id), Some(sig)) => {
            if !verifier.knows(key_id) {
                return Err(LedgerBreak::UnknownKey { seq, key_id: key_id.clone() });
            }
            let hash = chain::parse_hash(&row.hash).ok_or(LedgerBreak::BadSignature { seq })?;
            let sig = chain::decode_hex(sig).ok_or(LedgerBreak::BadSignature { seq })?;
            if !verifier.verify_row(key_id, &Signed { seq, hash: &hash, body: &row.body }, &sig) {
                return Err(LedgerBreak::BadSignature { seq });
            }
            true
        }
        (None, None) => false,
        _ => return Err(LedgerBreak::BadSignature { seq }),
    };
    match (&l.entry_body, &l.entry_hash) {
        (Some(body), Some(hash)) if *body == row.body && *hash == row.hash => Ok(()),
        (Some(_), _) | (_, Some(_)) => Err(LedgerBreak::EntryMismatch { seq }),
        (None, None) if signed => Ok(()),
        (None, None) => Err(LedgerBreak::Unverifiable { seq }),
    }
}

/// Every column must say what the hashed body says: enforcement reads the columns.
fn columns_agree(l: &LedgerRow) -> Result<(), LedgerBreak> {
    let row = &l.row;
    let seq = row.seq;
    let event: AuditEvent = serde_json::from_str(&row.body).map_err(|_| LedgerBreak::Unreadable { seq })?;
    let given = match event.operation {
        Operation::ConsentGiven { .. } => 1,
        Operation::ConsentWithdrawn { .. } => 0,
        _ => return Err(LedgerBreak::Unreadable { seq }),
    };
    let column = |column| Err(LedgerBreak::Column { seq, column });
    if row.given != given {
        return column("given");
    }
    if event.subject.as_ref().map(|s| s.as_str()) != Some(row.subject.as_str()) {
        return column("subject");
    }
    if event.activity.as_ref().map(|s| s.as_str()) != Some(row.activity.as_str()) {
        return column("activity");
    }
    if event.purpose.as_ref().map(|s| s.as_str()) != Some(row.purpose.as_str()) {
        return column("purpose");
    }
    if event.at_micros() != row.at_us {
        return column("at_us");
    }
    Ok(())
}
