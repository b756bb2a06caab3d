//! `guichet audit verify`: re-checks every entry's hash from the anchor (genesis, or the
//! signed checkpoint the last pruning left), every checkpoint's signature and position, and
//! the head, in sequence order, and stops at the first break. Then, with [`Checks`]: that no
//! entry older than the checkpoint interval is left uncovered by a signed checkpoint, that
//! every consent ledger row matches its entry and signature, and that the store's checkpoints
//! are the witness's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use super::chain::{self, Hash};
use super::checkpoint::{Signed, Verifier};
use super::event::AuditEvent;
use super::ledger::{self, LedgerBreak};
use crate::line_file::LineFileError;
use crate::store::{CheckpointRow, EntryRow, HeadRow, Store, StoreError};

/// Beyond the checkpoint interval, how long an entry may wait for its checkpoint before
/// `verify` calls it uncovered: the writer's tick, a batch, clocks of several instances.
pub const COVERAGE_GRACE: Duration = Duration::from_secs(5 * 60);

/// The checks beyond the chain itself.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// Now (Unix microseconds) and the checkpoint interval: entries older than the interval
    /// plus [`COVERAGE_GRACE`] must be covered by a signed checkpoint. `None` skips it.
    pub coverage: Option<(i64, Duration)>,
    /// The checkpoint witness file to compare the store's checkpoints with. `None` skips it.
    pub witness: Option<PathBuf>,
}

/// What `verify` could not do at all (as opposed to a [`Break`] it found).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the checkpoint witness: {0}")]
    Witness(#[from] LineFileError),
}

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
    /// Found past the head (its entry, or its number) while the head stayed where it was: no
    /// writer committed it.
    #[error(
        "checkpoint {number}: at entry {seq}, past the journal head (entry {head_seq}, checkpoint \
         {head_number}) (inserted checkpoint)"
    )]
    CheckpointBeyondHead { number: i64, seq: i64, head_seq: i64, head_number: i64 },
    #[error("checkpoint {after} is followed by checkpoint {next} (deleted checkpoint)")]
    CheckpointGap { after: i64, next: i64 },
    #[error("anchor: entry {seq} is not a signed checkpoint (pruning forged)")]
    BadAnchor { seq: i64 },
    #[error("head: counts {head} checkpoints, the last one found is {found} (checkpoints deleted or head altered)")]
    CheckpointCount { head: i64, found: i64 },
    #[error(
        "entry {seq}: older than the checkpoint interval and covered by no signed checkpoint (checkpoints deleted?)"
    )]
    Uncovered { seq: i64 },
    #[error("{0}")]
    Ledger(LedgerBreak),
    #[error("witness: the file {path} is missing while the store holds checkpoints (deleted?)")]
    WitnessMissing { path: String },
    #[error("checkpoint {number}: in the witness but not in the store (deleted checkpoint)")]
    WitnessedButMissing { number: i64 },
    #[error("checkpoint {number}: differs from the witness (altered or rewritten)")]
    WitnessDiffers { number: i64 },
    #[error("checkpoint {number}: not in the witness (inserted, or the witness was not written)")]
    NotWitnessed { number: i64 },
    #[error(
        "checkpoint {number}: the witness holds two different checkpoints with this number (store restored or rewritten)"
    )]
    WitnessConflict { number: i64 },
}

/// What `verify` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The chain starts after this entry (0: genesis; otherwise a pruned-to checkpoint).
    pub anchor_seq: i64,
    pub head_seq: i64,
    pub entries: u64,
    pub checkpoints: u64,
    /// Consent ledger rows checked against their entries and signatures.
    pub ledger_rows: u64,
    /// Checkpoints found identical in the witness (`None`: no witness was checked).
    pub witnessed: Option<u64>,
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
                let witness = match self.witnessed {
                    Some(n) => format!(", {n} checkpoints identical in the witness"),
                    None => String::new(),
                };
                format!(
                    "audit journal intact: {} entries ({}..={}), {} checkpoints verified, anchored on {anchor}, \
                     {} consent ledger rows verified{witness}",
                    self.entries,
                    self.anchor_seq + 1,
                    self.head_seq,
                    self.checkpoints,
                    self.ledger_rows,
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
    /// The first entry after the last checkpoint, and the oldest time among those entries.
    uncovered: Option<(i64, i64)>,
    /// Journal entries that are consent events: each must have its ledger row.
    consent_entries: BTreeSet<i64>,
    prev: Hash,
    expected: i64,
    entries: u64,
    checked_checkpoints: u64,
    /// The first entry found after the head read at the start: committed since, or inserted;
    /// the head read again after the walk tells which.
    beyond: Option<i64>,
}

/// The chain, its checkpoints and the consent ledger (no coverage or witness check).
pub async fn verify(store: &Store, verifier: &Verifier) -> Result<Report, VerifyError> {
    verify_with(store, verifier, &Checks::default()).await
}

/// Everything `guichet audit verify` checks; stops at the first break.
pub async fn verify_with(store: &Store, verifier: &Verifier, checks: &Checks) -> Result<Report, VerifyError> {
    let (mut report, consent_entries) = walk_chain_checked(store, verifier, checks.coverage).await?;
    if report.broken.is_none() {
        report.broken = ledger_rows(store, verifier, &consent_entries, &mut report).await?;
    }
    if report.broken.is_none()
        && let Some(path) = &checks.witness
    {
        report.broken = witness(store, path, checks.coverage, &mut report).await?;
    }
    Ok(report)
}

/// The chain from its anchor to the head, then (with `coverage`) the coverage of its end.
/// A running gateway keeps appending: an entry committed between reading the head and reading
/// the entries looks like an inserted one. So a break found while the head moved is checked
/// again from the new head, as long as the head keeps moving (a busy gateway may append during
/// several walks), at most [`WALKS`] times; an intruder's insertion leaves the head where it
/// was, so its break stands at once.
async fn walk_chain_checked(
    store: &Store,
    verifier: &Verifier,
    coverage: Option<(i64, Duration)>,
) -> Result<(Report, BTreeSet<i64>), StoreError> {
    let mut walk = walk_chain_once(store, verifier, coverage).await?;
    for _ in 1..WALKS {
        if walk.0.broken.is_none() || store.audit().head().await?.seq == walk.0.head_seq {
            break;
        }
        walk = walk_chain_once(store, verifier, coverage).await?;
    }
    Ok(walk)
}

/// Most walks of the chain while appends race them.
const WALKS: usize = 5;

async fn walk_chain_once(
    store: &Store,
    verifier: &Verifier,
    coverage: Option<(i64, Duration)>,
) -> Result<(Report, BTreeSet<i64>), StoreError> {
    let repo = store.audit();
    let head = repo.head().await?;
    let mut walk = Walk {
        verifier,
        prev: chain::genesis(),
        expected: head.anchor_seq + 1,
        checkpoints: repo.checkpoints().await?.into_iter().peekable(),
        head,
        last_checkpoint: None,
        uncovered: None,
        consent_entries: BTreeSet::new(),
        entries: 0,
        checked_checkpoints: 0,
        beyond: None,
    };
    let mut broken = walk.run(store).await?;
    if broken.is_none() {
        broken = walk.committed_since(store).await?;
    }
    if broken.is_none()
        && let (Some((now_us, every)), Some((seq, oldest_us))) = (coverage, walk.uncovered)
        && now_us.saturating_sub(oldest_us) > allowed_age_us(every)
    {
        broken = Some(Break::Uncovered { seq });
    }
    let report = Report {
        anchor_seq: walk.head.anchor_seq,
        head_seq: walk.head.seq,
        entries: walk.entries,
        checkpoints: walk.checked_checkpoints,
        ledger_rows: 0,
        witnessed: None,
        broken,
    };
    Ok((report, walk.consent_entries))
}

/// Every consent ledger row against its entry and signature, and every consent entry of the
/// journal against its row.
async fn ledger_rows(
    store: &Store,
    verifier: &Verifier,
    consent_entries: &BTreeSet<i64>,
    report: &mut Report,
) -> Result<Option<Break>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut after = i64::MIN;
    loop {
        let page = store.consent().checked_events_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.row.seq;
        for row in &page {
            if let Err(b) = ledger::check(row, verifier) {
                return Ok(Some(Break::Ledger(b)));
            }
            seen.insert(row.row.seq);
            report.ledger_rows += 1;
        }
    }
    Ok(consent_entries.difference(&seen).next().map(|&seq| Break::Ledger(LedgerBreak::MissingRow { seq })))
}

/// The store's checkpoints against the witness file: each must be there, identical; each
/// witnessed checkpoint not pruned must be in the store; no number may have been signed twice.
/// A checkpoint younger than the checkpoint interval plus [`COVERAGE_GRACE`] may not be
/// witnessed yet: its writer appends it right after the commit, other instances copy it in at
/// their next tick.
async fn witness(
    store: &Store,
    path: &std::path::Path,
    coverage: Option<(i64, Duration)>,
    report: &mut Report,
) -> Result<Option<Break>, VerifyError> {
    // The file first: a checkpoint reaches it only after its commit, so one signed between the
    // two reads is in the store and not yet witnessed (young, allowed), never the reverse.
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || super::witness::read(&owned))
        .await
        .map_err(|e| LineFileError::Io { path: path.to_owned(), source: std::io::Error::other(e) })??;
    let in_store = store.audit().checkpoints().await?;
    let Some(witnessed) = read else {
        return Ok((!in_store.is_empty()).then(|| Break::WitnessMissing { path: path.display().to_string() }));
    };
    Ok(compare_witness(&in_store, &witnessed, report.anchor_seq, coverage, &mut report.witnessed))
}

fn compare_witness(
    in_store: &[CheckpointRow],
    witnessed: &BTreeMap<i64, Vec<CheckpointRow>>,
    anchor_seq: i64,
    coverage: Option<(i64, Duration)>,
    count: &mut Option<u64>,
) -> Option<Break> {
    if let Some((&number, _)) = witnessed.iter().find(|(_, v)| v.len() > 1) {
        return Some(Break::WitnessConflict { number });
    }
    let mut same = 0;
    for cp in in_store {
        match witnessed.get(&cp.number).and_then(|v| v.first()) {
            Some(w) if w == cp => same += 1,
            Some(_) => return Some(Break::WitnessDiffers { number: cp.number }),
            None if may_wait_for_witness(cp, coverage) => {}
            None => return Some(Break::NotWitnessed { number: cp.number }),
        }
    }
    // Pruning deletes the checkpoints before its anchor: those may be missing from the store.
    let first_kept = if anchor_seq == 0 { i64::MIN } else { in_store.first().map_or(i64::MAX, |c| c.number) };
    if let Some(&number) = witnessed.keys().find(|n| **n >= first_kept && !in_store.iter().any(|c| c.number == **n)) {
        return Some(Break::WitnessedButMissing { number });
    }
    *count = Some(same);
    None
}

/// A checkpoint younger than the interval plus [`COVERAGE_GRACE`] (with `coverage`, which
/// gives now and the interval): its witness line may not be written yet.
fn may_wait_for_witness(cp: &CheckpointRow, coverage: Option<(i64, Duration)>) -> bool {
    coverage.is_some_and(|(now_us, every)| now_us.saturating_sub(cp.at_us) <= allowed_age_us(every))
}

/// How old, in microseconds, an entry may be without a checkpoint covering it, or a checkpoint
/// without its witness line: the checkpoint interval plus [`COVERAGE_GRACE`].
fn allowed_age_us(every: Duration) -> i64 {
    i64::try_from((every + COVERAGE_GRACE).as_micros()).unwrap_or(i64::MAX)
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
                if self.beyond.is_some() {
                    return Ok(self.finish().err());
                }
            }
        }
        Ok(self.finish().err())
    }

    /// What was found after the head read at the start (an entry, a checkpoint) must be under
    /// the head read now: a writer commits an entry or checkpoint with the head that counts
    /// it, an intruder's insertion leaves the head behind it.
    async fn committed_since(&mut self, store: &Store) -> Result<Option<Break>, StoreError> {
        let later: Vec<CheckpointRow> = self.checkpoints.by_ref().collect();
        if self.beyond.is_none() && later.is_empty() {
            return Ok(None);
        }
        let now = store.audit().head().await?;
        if let Some(seq) = self.beyond.filter(|&seq| seq > now.seq) {
            return Ok(Some(Break::BeyondHead { seq, head: now.seq }));
        }
        Ok(later.iter().find(|cp| cp.seq > now.seq || cp.number > now.checkpoint_number).map(|cp| {
            Break::CheckpointBeyondHead {
                number: cp.number,
                seq: cp.seq,
                head_seq: now.seq,
                head_number: now.checkpoint_number,
            }
        }))
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
            self.beyond = Some(row.seq);
            return Ok(());
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
        if row.operation == "consent_given" || row.operation == "consent_withdrawn" {
            self.consent_entries.insert(row.seq);
        }
        self.uncovered = Some(match self.uncovered {
            Some((seq, oldest)) => (seq, oldest.min(row.at_us)),
            None => (row.seq, row.at_us),
        });
        self.next_checkpoints_at(row.seq)
    }

    /// Checks the checkpoints at `seq`, which the chain has just reached.
    fn next_checkpoints_at(&mut self, seq: i64) -> Result<(), Break> {
        // A checkpoint numbered after the head's was signed since the head was read.
        let counted = self.head.checkpoint_number;
        while let Some(cp) = self.checkpoints.next_if(|cp| cp.seq == seq && cp.number <= counted) {
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
        self.uncovered = None;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Break> {
        let last = self.expected - 1;
        if last < self.head.seq {
            return Err(Break::MissingTail { last, head: self.head.seq });
        }
        // Those signed since the head was read are left for `committed_since`.
        if let Some(cp) =
            self.checkpoints.peek().filter(|cp| cp.seq <= self.head.seq && cp.number <= self.head.checkpoint_number)
        {
            return Err(Break::CheckpointOrphan { number: cp.number, seq: cp.seq });
        }
        if chain::hash_hex(&self.prev) != self.head.hash {
            return Err(Break::HeadMismatch { seq: last });
        }
        let found = self.last_checkpoint.unwrap_or(0);
        if found != self.head.checkpoint_number {
            return Err(Break::CheckpointCount { head: self.head.checkpoint_number, found });
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
