//! The one writer per process. Every append goes through a channel to a single task that
//! groups what arrives into one transaction (up to `batch_max_entries`, or `batch_max_delay`
//! after the first entry), so callers never wait for a store write of their own:
//!
//! - [`Audit::record`](super::Audit::record) only queues the event (it waits only when the
//!   queue is full). Such entries can be lost if the process dies before the batch commits:
//!   at most what arrived during the last `batch_max_delay`.
//! - [`Audit::append_sync`](super::Audit::append_sync) returns once the entry is committed,
//!   with its sequence number. The writer commits at once when such an entry is waiting
//!   (group commit: it takes along whatever else is already queued), so acknowledged
//!   actions — consent, withdrawal — are never lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::AuditError;
use super::chain::{self, Hash};
use super::checkpoint::{LedgerRow, Signed, Signer};
use super::event::to_micros;
use crate::clock::Clock;
use crate::store::{CheckpointRow, ConsentRow, EntryRow, Extension, HeadRow, Store};

/// How many times a failed batch is retried before its entries are given up.
const COMMIT_ATTEMPTS: u32 = 3;

/// The writer's tuning, from `[audit]`.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub batch_max_entries: usize,
    pub batch_max_delay: Duration,
    pub checkpoint_every_entries: i64,
    pub checkpoint_every: Duration,
    /// The checkpoint witness file (`audit::witness`); `None` writes none (tests of the
    /// chain alone).
    pub witness: Option<PathBuf>,
}

/// An event already encoded, waiting for its sequence number.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub at_us: i64,
    pub operation: &'static str,
    pub subject: Option<String>,
    pub body: String,
    /// Set for consent events: they are also written to the consent ledger.
    pub consent: Option<ConsentKey>,
}

/// Which ledger row a consent event makes.
#[derive(Debug, Clone)]
pub(super) struct ConsentKey {
    pub subject: String,
    pub activity: String,
    pub purpose: String,
    pub given: bool,
}

pub(super) type Ack = oneshot::Sender<Result<i64, AuditError>>;

pub(super) enum Command {
    Append {
        entry: Pending,
        ack: Option<Ack>,
    },
    /// Commit everything queued before it, then answer.
    Flush(oneshot::Sender<()>),
    /// Commit everything queued, answer, and stop.
    Shutdown(oneshot::Sender<()>),
}

/// What one round of the writer collected.
#[derive(Default)]
struct Batch {
    entries: Vec<Pending>,
    acks: Vec<(usize, Ack)>,
    waiters: Vec<oneshot::Sender<()>>,
    stop: bool,
}

impl Batch {
    /// Someone is waiting for this batch: commit without waiting for more.
    fn is_urgent(&self) -> bool {
        !self.acks.is_empty() || !self.waiters.is_empty() || self.stop
    }

    fn add(&mut self, cmd: Command) {
        match cmd {
            Command::Append { entry, ack } => {
                if let Some(ack) = ack {
                    self.acks.push((self.entries.len(), ack));
                }
                self.entries.push(entry);
            }
            Command::Flush(w) => self.waiters.push(w),
            Command::Shutdown(w) => {
                self.waiters.push(w);
                self.stop = true;
            }
        }
    }
}

pub(super) struct Writer {
    pub store: Store,
    pub signer: Arc<Signer>,
    pub clock: Arc<dyn Clock>,
    pub settings: SinkSettings,
    /// The highest checkpoint number the witness holds (0: none; `i64::MAX`: unreadable, so
    /// nothing is copied from the store into it).
    pub witnessed: AtomicI64,
}

impl Writer {
    pub async fn run(self, mut rx: mpsc::Receiver<Command>) {
        self.read_witness().await;
        let mut tick = tokio::time::interval(self.settings.checkpoint_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    if self.collect_and_commit(cmd, &mut rx).await {
                        break;
                    }
                }
                _ = tick.tick() => self.checkpoint_if_due().await,
            }
        }
    }

    /// Gathers a batch starting with `first`, commits it and answers everyone waiting on it.
    /// Returns whether the writer must stop.
    async fn collect_and_commit(&self, first: Command, rx: &mut mpsc::Receiver<Command>) -> bool {
        let mut batch = Batch::default();
        batch.add(first);
        let deadline = Instant::now() + self.settings.batch_max_delay;
        while batch.entries.len() < self.settings.batch_max_entries || batch.stop {
            let next = if batch.is_urgent() {
                rx.try_recv().ok()
            } else {
                tokio::select! {
                    cmd = rx.recv() => cmd,
                    () = tokio::time::sleep_until(deadline) => None,
                }
            };
            match next {
                Some(cmd) => batch.add(cmd),
                None => break,
            }
            if batch.stop && batch.entries.len() >= self.settings.batch_max_entries {
                // Shutting down with a long queue: commit in batches of the usual size.
                self.commit(std::mem::take(&mut batch.entries), std::mem::take(&mut batch.acks)).await;
            }
        }
        self.commit(batch.entries, batch.acks).await;
        if batch.stop {
            // Leave nothing uncovered behind: `audit verify` refuses entries older than the
            // checkpoint interval that no checkpoint covers.
            self.checkpoint(true).await;
        } else if !batch.waiters.is_empty() {
            // Whoever flushes reads or verifies next (an export, the DPO's "verify now"): the
            // checkpoint that is due is written now, not at the next tick, which follows the
            // wall clock when the journal's clock may have moved further (tests' clocks).
            self.checkpoint(false).await;
        }
        for w in batch.waiters {
            let _ = w.send(());
        }
        batch.stop
    }

    async fn commit(&self, entries: Vec<Pending>, acks: Vec<(usize, Ack)>) {
        if entries.is_empty() {
            return;
        }
        let mut attempt = 1;
        let result = loop {
            match self.append(&entries).await {
                Ok(first_seq) => break Ok(first_seq),
                Err(e) if attempt < COMMIT_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "audit journal write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(first_seq) => {
                for (i, ack) in acks {
                    let _ = ack.send(Ok(first_seq + i64::try_from(i).unwrap_or(i64::MAX)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, lost = entries.len() - acks.len(), refused = acks.len(),
                    "audit journal write failed; entries not written");
                let e = Arc::new(e);
                for (_, ack) in acks {
                    let _ = ack.send(Err(AuditError::Store(e.clone())));
                }
            }
        }
    }

    /// Appends `entries` after the head; returns the first one's sequence number.
    async fn append(&self, entries: &[Pending]) -> Result<i64, crate::store::StoreError> {
        let now_us = to_micros(self.clock.now());
        let ext = self.store.audit().append(|head| self.extend(head, entries, now_us, false)).await?;
        self.witness(&ext).await;
        Ok(ext.entries.first().map_or(ext.head.seq, |e| e.seq))
    }

    /// Writes a checkpoint of the head when entries came after the last one and it is older
    /// than `checkpoint_every` (or at once with `force`).
    async fn checkpoint(&self, force: bool) {
        let now_us = to_micros(self.clock.now());
        match self.store.audit().append(|head| self.extend(head, &[], now_us, force)).await {
            Ok(ext) => self.witness(&ext).await,
            Err(e) => tracing::warn!(error = %e, "audit checkpoint failed; will retry"),
        }
    }

    async fn checkpoint_if_due(&self) {
        self.checkpoint(false).await;
    }

    /// Learns how far the witness goes, so that checkpoints other instances signed meanwhile
    /// can be copied into it.
    async fn read_witness(&self) {
        let Some(path) = self.settings.witness.clone() else { return };
        let read = tokio::task::spawn_blocking(move || super::witness::read(&path)).await;
        let up_to = match read {
            Ok(Ok(Some(cps))) => cps.keys().next_back().copied().unwrap_or(0),
            Ok(Ok(None)) => {
                let n = self.store.audit().head().await.map_or(0, |h| h.checkpoint_number);
                if n > 0 {
                    tracing::error!(
                        checkpoints = n,
                        "the audit checkpoint witness file is missing while the store holds checkpoints: \
                         it is written again from the store (was it deleted?)"
                    );
                }
                0
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the audit checkpoint witness cannot be read; new checkpoints are \
                    still appended to it (run `guichet audit verify`)");
                i64::MAX
            }
            Err(_) => i64::MAX,
        };
        self.witnessed.store(up_to, Ordering::Relaxed);
    }

    /// Copies the checkpoints `ext` committed, and any signed by other instances since the
    /// witness was last written, to the witness file. A failure is logged, not fatal: the
    /// store's checkpoints stand, and `audit verify` reports what the witness lacks.
    async fn witness(&self, ext: &Extension) {
        let Some(path) = self.settings.witness.clone() else { return };
        let before = ext.head.checkpoint_number - i64::try_from(ext.checkpoints.len()).unwrap_or(0);
        let witnessed = self.witnessed.load(Ordering::Relaxed);
        let mut cps = Vec::new();
        if before > witnessed {
            match self.store.audit().checkpoints().await {
                Ok(all) => {
                    let verifier = self.signer.verifier();
                    cps.extend(
                        all.into_iter()
                            .filter(|c| c.number > witnessed && c.number <= before && signed_by(&verifier, c)),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "cannot read checkpoints to witness them; will retry"),
            }
        }
        cps.extend(ext.checkpoints.iter().cloned());
        let Some(last) = cps.iter().map(|c| c.number).max() else { return };
        match tokio::task::spawn_blocking(move || super::witness::append(&path, &cps)).await {
            Ok(Ok(())) => {
                self.witnessed.fetch_max(last, Ordering::Relaxed);
            }
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit checkpoint witness"),
            Err(_) => tracing::error!("cannot write the audit checkpoint witness"),
        }
    }

    /// The pure part of an append: numbers, hashes and checkpoints after `head`.
    fn extend(&self, head: &HeadRow, entries: &[Pending], now_us: i64, force: bool) -> Extension {
        // A head that does not parse means the table was tampered with; chaining on zeros keeps
        // writing possible and `audit verify` reports the break.
        let mut prev: Hash = chain::parse_hash(&head.hash).unwrap_or([0; 32]);
        let mut next = head.clone();
        let mut rows = Vec::with_capacity(entries.len());
        let mut consents = Vec::new();
        let mut checkpoints = Vec::new();
        for e in entries {
            next.seq += 1;
            prev = chain::next_hash(&prev, next.seq, &e.body);
            rows.push(EntryRow {
                seq: next.seq,
                at_us: e.at_us,
                operation: e.operation.to_owned(),
                subject: e.subject.clone(),
                body: e.body.clone(),
                hash: chain::hash_hex(&prev),
            });
            if let Some(k) = &e.consent {
                let signature = self.signer.sign_row(&LedgerRow { seq: next.seq, hash: &prev, body: &e.body });
                consents.push(ConsentRow {
                    seq: next.seq,
                    subject: k.subject.clone(),
                    activity: k.activity.clone(),
                    purpose: k.purpose.clone(),
                    given: i64::from(k.given),
                    at_us: e.at_us,
                    body: e.body.clone(),
                    hash: chain::hash_hex(&prev),
                    key_id: Some(self.signer.key_id().to_owned()),
                    signature: Some(crate::clock::hex(&signature)),
                });
            }
            if next.seq % self.settings.checkpoint_every_entries.max(1) == 0 {
                checkpoints.push(self.sign_checkpoint(&mut next, prev, now_us));
            }
        }
        let every_us = i64::try_from(self.settings.checkpoint_every.as_micros()).unwrap_or(i64::MAX);
        let stale = force || now_us.saturating_sub(next.checkpoint_at_us) >= every_us;
        if next.seq > next.checkpoint_seq && stale {
            checkpoints.push(self.sign_checkpoint(&mut next, prev, now_us));
        }
        next.hash = chain::hash_hex(&prev);
        Extension { entries: rows, consents, checkpoints, head: next }
    }

    fn sign_checkpoint(&self, head: &mut HeadRow, hash: Hash, now_us: i64) -> CheckpointRow {
        head.checkpoint_number += 1;
        head.checkpoint_seq = head.seq;
        head.checkpoint_at_us = now_us;
        let signed = Signed { number: head.checkpoint_number, seq: head.seq, hash, at_us: now_us };
        CheckpointRow {
            number: signed.number,
            seq: signed.seq,
            hash: chain::hash_hex(&hash),
            at_us: now_us,
            key_id: self.signer.key_id().to_owned(),
            signature: crate::clock::hex(&self.signer.sign(&signed)),
        }
    }
}

/// Whether `c` carries a good signature by a known key.
pub(super) fn signed_by(verifier: &super::Verifier, c: &CheckpointRow) -> bool {
    let (Some(hash), Some(sig)) = (chain::parse_hash(&c.hash), chain::decode_hex(&c.signature)) else { return false };
    verifier.verify(&c.key_id, &Signed { number: c.number, seq: c.seq, hash, at_us: c.at_us }, &sig)
}
