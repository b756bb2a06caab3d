//! `guichet audit verify`: re-checks every entry's hash from the anchor (genesis, or the
//! signed checkpoint the last pruning left), every checkpoint's signature and position, and
//! the head, in sequence order, and stops at the first break.

use super::chain::{self, Hash};
use super::checkpoint::{Signed, Verifier};
use super::event::AuditEvent;
use crate::store::{CheckpointRow, EntryRow, HeadRow, Store, StoreError};

/// Entries read per query.
const PAGE: i64 = 2000;

/// The first thing found wrong, by sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("entry {seq}: hash mismatch (altered or reordered)")]
    HashMismatch { seq: i64 },
    #[error("entry {seq}: column `{column}` differs from the hashed entry (altered)")]
    ColumnMismatch { seq: i64, column: &'static str },
    #[error("entry {seq}: not a valid journal event (altered)")]
    Unreadable { seq: i64 },
    #[error("gap after {after} (deleted entry)")]
    Gap { after: i64 },
    #[error("entry {seq}: after the journal head {head} (inserted entry)")]
    BeyondHead { seq: i64, head: i64 },
    #[error("entries after {last} missing: the head is at {head} (deleted entries)")]
    MissingTail { last: i64, head: i64 },
    #[error("head: hash differs from entry {seq} (head altered)")]
    HeadMismatch { seq: i64 },
    #[error("checkpoint {number}: bad signature")]
    BadSignature { number: i64 },
    #[error("checkpoint {number}: signed by unknown key {key_id}")]
    UnknownKey { number: i64, key_id: String },
    #[error("checkpoint {number}: does not match the chain at entry {seq} (chain rewritten)")]
    CheckpointMismatch { number: i64, seq: i64 },
    #[error("checkpoint {number}: refers to entry {seq}, which is missing")]
    CheckpointOrphan { number: i64, seq: i64 },
    #[error("checkpoint {after} is followed by checkpoint {next} (deleted checkpoint)")]
    CheckpointGap { after: i64, next: i64 },
    #[error("anchor: entry {seq} is not a signed checkpoint (pruning forged)")]
    BadAnchor { seq: i64 },
}

/// What `verify` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The chain starts after this entry (0: genesis; otherwise a pruned-to checkpoint).
    pub anchor_seq: i64,
    pub head_seq: i64,
    pub entries: u64,
    pub checkpoints: u64,
    pub broken: Option<Break>,
}

impl Report {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }

    /// One line for the operator.
    pub fn summary(&self) -> String {
        match &self.broken {
            Some(b) => format!("audit journal BROKEN: {b}"),
            None => {
                let anchor = match self.anchor_seq {
                    0 => "genesis".to_owned(),
                    s => format!("signed checkpoint at entry {s}"),
                };
                format!(
                    "audit journal intact: {} entries ({}..={}), {} checkpoints verified, anchored on {anchor}",
                    self.entries,
                    self.anchor_seq + 1,
                    self.head_seq,
                    self.checkpoints
                )
            }
        }
    }
}

/// Walks the chain in order, keeping what the next entry must fit.
struct Walk<'a> {
    verifier: &'a Verifier,
    head: HeadRow,
    checkpoints: std::iter::Peekable<std::vec::IntoIter<CheckpointRow>>,
    last_checkpoint: Option<i64>,
    prev: Hash,
    expected: i64,
    entries: u64,
    checked_checkpoints: u64,
}

pub async fn verify(store: &Store, verifier: &Verifier) -> Result<Report, StoreError> {
    let repo = store.audit();
    let head = repo.head().await?;
    let mut walk = Walk {
        verifier,
        prev: chain::genesis(),
        expected: head.anchor_seq + 1,
        checkpoints: repo.checkpoints().await?.into_iter().peekable(),
        head,
        last_checkpoint: None,
        entries: 0,
        checked_checkpoints: 0,
    };
    let broken = walk.run(store).await?;
    Ok(Report {
        anchor_seq: walk.head.anchor_seq,
        head_seq: walk.head.seq,
        entries: walk.entries,
        checkpoints: walk.checked_checkpoints,
        broken,
    })
}

impl Walk<'_> {
    async fn run(&mut self, store: &Store) -> Result<Option<Break>, StoreError> {
        if let Err(b) = self.start_at_anchor() {
            return Ok(Some(b));
        }
        let mut after = self.head.anchor_seq;
        loop {
            let page = store.audit().entries_after(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for row in &page {
                if let Err(b) = self.entry(row) {
                    return Ok(Some(b));
                }
            }
        }
        Ok(self.finish().err())
    }

    /// Without pruning the chain starts at genesis; after it, at a checkpoint that must be
    /// the first one kept and must carry a good signature.
    fn start_at_anchor(&mut self) -> Result<(), Break> {
        let seq = self.head.anchor_seq;
        if seq == 0 {
            return Ok(());
        }
        let anchor = chain::parse_hash(&self.head.anchor_hash).ok_or(Break::BadAnchor { seq })?;
        match self.checkpoints.peek() {
            Some(cp) if cp.seq == seq && chain::parse_hash(&cp.hash) == Some(anchor) => {}
            _ => return Err(Break::BadAnchor { seq }),
        }
        self.prev = anchor;
        self.next_checkpoints_at(seq)
    }

    fn entry(&mut self, row: &EntryRow) -> Result<(), Break> {
        if row.seq != self.expected && self.expected <= self.head.seq {
            return Err(Break::Gap { after: self.expected - 1 });
        }
        if row.seq > self.head.seq {
            return Err(Break::BeyondHead { seq: row.seq, head: self.head.seq });
        }
        self.checkpoints_before(row.seq)?;
        let hash = chain::next_hash(&self.prev, row.seq, &row.body);
        if chain::hash_hex(&hash) != row.hash {
            return Err(Break::HashMismatch { seq: row.seq });
        }
        columns_agree(row)?;
        self.prev = hash;
        self.expected += 1;
        self.entries += 1;
        self.next_checkpoints_at(row.seq)
    }

    /// Checks the checkpoints at `seq`, which the chain has just reached.
    fn next_checkpoints_at(&mut self, seq: i64) -> Result<(), Break> {
        while let Some(cp) = self.checkpoints.next_if(|cp| cp.seq == seq) {
            self.checkpoint(&cp)?;
        }
        Ok(())
    }

    /// A checkpoint left behind (its entry is missing) is a break.
    fn checkpoints_before(&mut self, seq: i64) -> Result<(), Break> {
        match self.checkpoints.peek() {
            Some(cp) if cp.seq < seq => Err(Break::CheckpointOrphan { number: cp.number, seq: cp.seq }),
            _ => Ok(()),
        }
    }

    fn checkpoint(&mut self, cp: &CheckpointRow) -> Result<(), Break> {
        let number = cp.number;
        if let Some(last) = self.last_checkpoint
            && number != last + 1
        {
            return Err(Break::CheckpointGap { after: last, next: number });
        }
        if !self.verifier.knows(&cp.key_id) {
            return Err(Break::UnknownKey { number, key_id: cp.key_id.clone() });
        }
        let hash = chain::parse_hash(&cp.hash).ok_or(Break::BadSignature { number })?;
        let signed = Signed { number, seq: cp.seq, hash, at_us: cp.at_us };
        let signature = chain::decode_hex(&cp.signature).ok_or(Break::BadSignature { number })?;
        if !self.verifier.verify(&cp.key_id, &signed, &signature) {
            return Err(Break::BadSignature { number });
        }
        if hash != self.prev {
            return Err(Break::CheckpointMismatch { number, seq: cp.seq });
        }
        self.last_checkpoint = Some(number);
        self.checked_checkpoints += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Break> {
        let last = self.expected - 1;
        if last < self.head.seq {
            return Err(Break::MissingTail { last, head: self.head.seq });
        }
        if let Some(cp) = self.checkpoints.peek() {
            return Err(Break::CheckpointOrphan { number: cp.number, seq: cp.seq });
        }
        if chain::hash_hex(&self.prev) != self.head.hash {
            return Err(Break::HeadMismatch { seq: last });
        }
        Ok(())
    }
}

/// The copies kept beside the body for queries must say what the hashed body says.
fn columns_agree(row: &EntryRow) -> Result<(), Break> {
    let seq = row.seq;
    let event: AuditEvent = serde_json::from_str(&row.body).map_err(|_| Break::Unreadable { seq })?;
    if event.operation.name() != row.operation {
        return Err(Break::ColumnMismatch { seq, column: "operation" });
    }
    if event.subject.as_ref().map(|s| s.as_str()) != row.subject.as_deref() {
        return Err(Break::ColumnMismatch { seq, column: "subject" });
    }
    if event.at_micros() != row.at_us {
        return Err(Break::ColumnMismatch { seq, column: "at_us" });
    }
    Ok(())
}
