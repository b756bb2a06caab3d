//! The tamper-evident audit journal: every kind of tampering is detected at the right entry,
//! pruning keeps the chain verifiable, concurrent writers form one chain, and acknowledged
//! entries survive a SIGKILL of the real binary.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use guichet::audit::verify::{Checks, Report, verify, verify_with};
use guichet::audit::{
    Actor, ActorKind, Audit, AuditEvent, Break, Ident, Operation, Outcome, Signer, SinkSettings, chain, retention,
};
use guichet::clock::FixedClock;
use guichet::config::Loaded;
use guichet::store::Store;
use secrecy::SecretString;
use tempfile::TempDir;

use crate::consent;
use crate::helpers::{Backend, intruder_sql, open_migrated_store, spawn_app, try_sql};

const T0: time::OffsetDateTime = time::macros::datetime!(2026-11-28 12:00 UTC);

/// A store with a running journal writer, a fixed clock and a key of its own.
struct Journal {
    store: Store,
    url: SecretString,
    audit: Audit,
    signer_path: std::path::PathBuf,
    witness: std::path::PathBuf,
    clock: FixedClock,
    _dir: TempDir,
}

fn settings(checkpoint_every_entries: i64, witness: &std::path::Path) -> SinkSettings {
    SinkSettings {
        batch_max_entries: 256,
        batch_max_delay: Duration::from_millis(5),
        checkpoint_every_entries,
        checkpoint_every: Duration::from_secs(300),
        witness: Some(witness.to_owned()),
    }
}

impl Journal {
    async fn start(backend: Backend, checkpoint_every_entries: i64) -> Self {
        let (store, url, dir) = open_migrated_store(backend).await;
        let signer_path = dir.path().join("keys/audit.p8");
        let (signer, _) = Signer::load_or_generate(&signer_path).unwrap();
        let clock = FixedClock::at(T0);
        let witness = dir.path().join("witness/checkpoints.witness");
        let audit =
            Audit::start(store.clone(), signer, Arc::new(clock.clone()), settings(checkpoint_every_entries, &witness));
        Self { store, url, audit, signer_path, witness, clock, _dir: dir }
    }

    /// A second writer on the same store and key, as another instance would be.
    async fn second_writer(&self) -> Audit {
        let store = Store::connect(&self.url, &guichet::store::StoreOptions::default()).await.unwrap();
        let signer = Signer::load(&self.signer_path).unwrap();
        Audit::start(store, signer, Arc::new(self.clock.clone()), settings(100, &self.witness))
    }

    async fn append(&self, n: usize) {
        for i in 0..n {
            self.audit.append_sync(sign_in(i, &self.clock)).await.unwrap();
        }
    }

    async fn verify(&self) -> Report {
        verify(&self.store, &Signer::load(&self.signer_path).unwrap().verifier()).await.unwrap()
    }

    async fn broken(&self) -> Break {
        let report = self.verify().await;
        let summary = report.summary();
        report.broken.unwrap_or_else(|| panic!("tampering not detected: {summary}"))
    }

    /// Everything `guichet audit verify` checks, as seen `later` after the journal's clock.
    async fn verify_all(&self, later: time::Duration) -> Report {
        use guichet::clock::Clock as _;
        let now = guichet::audit::event::to_micros(self.clock.now() + later);
        let checks = Checks { coverage: Some((now, Duration::from_secs(300))), witness: Some(self.witness.clone()) };
        verify_with(&self.store, &Signer::load(&self.signer_path).unwrap().verifier(), &checks).await.unwrap()
    }

    async fn broken_all(&self, later: time::Duration) -> Break {
        let report = self.verify_all(later).await;
        let summary = report.summary();
        report.broken.unwrap_or_else(|| panic!("tampering not detected: {summary}"))
    }

    /// SQL as an intruder who can write the store (through the triggers' bypass).
    async fn sql(&self, sql: &str) {
        intruder_sql(&self.url, sql).await;
    }
}

fn sign_in(i: usize, clock: &FixedClock) -> AuditEvent {
    use guichet::clock::Clock as _;
    AuditEvent {
        operation: Operation::SignIn { acr: Ident::new("eidas1").ok() },
        actor: Actor { kind: ActorKind::Citizen, id: Ident::new(format!("sub-{i:04}")).unwrap() },
        role: Ident::new("citizen").unwrap(),
        activity: Ident::new("etat-civil").ok(),
        purpose: None,
        subject: Ident::new(format!("sub-{i:04}")).ok(),
        outcome: Outcome::Success,
        request_id: Ident::new(format!("req-{i}")).ok(),
        at: clock.now(),
        record_ref: None,
    }
}

async fn an_intact_journal_verifies(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    let report = j.verify().await;
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!((report.entries, report.head_seq), (25, 25));
    assert!(report.checkpoints >= 2, "{}", report.summary());
    assert!(report.summary().starts_with("audit journal intact: 25 entries"), "{}", report.summary());
}

async fn an_altered_body_is_detected_at_its_entry(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.sql("UPDATE audit_entry SET body = replace(body, 'sub-0006', 'sub-0099') WHERE seq = 7").await;
    let b = j.broken().await;
    assert_eq!(b, Break::HashMismatch { seq: 7 });
    assert_eq!(b.to_string(), "entry 7: hash mismatch (altered or reordered)");
}

async fn an_altered_query_column_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.sql("UPDATE audit_entry SET subject = 'someone-else' WHERE seq = 8").await;
    assert_eq!(j.broken().await, Break::ColumnMismatch { seq: 8, column: "subject" });
}

async fn a_deleted_entry_is_detected_as_a_gap(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.sql("DELETE FROM audit_entry WHERE seq = 12").await;
    let b = j.broken().await;
    assert_eq!(b.to_string(), "gap after 11 (deleted entry)");
}

async fn deleting_the_last_entries_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.sql("DELETE FROM audit_entry WHERE seq >= 24").await;
    assert_eq!(j.broken().await, Break::MissingTail { last: 23, head: 25 });
}

async fn a_forged_entry_after_the_head_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    // A well-formed entry, correctly chained: only the head says it was never written.
    let last = j.store.audit().entries_after(24, 1).await.unwrap().remove(0);
    let body = chain::canonical_body(&sign_in(999, &j.clock)).unwrap();
    let hash = chain::hash_hex(&chain::next_hash(&chain::parse_hash(&last.hash).unwrap(), 26, &body));
    j.sql(&format!(
        "INSERT INTO audit_entry (seq, at_us, operation, subject, body, hash) VALUES (26, {}, 'sign_in', 'sub-0999', '{body}', '{hash}')",
        last.at_us
    ))
    .await;
    assert_eq!(j.broken().await.to_string(), "entry 26: after the journal head 25 (inserted entry)");
}

async fn a_forged_entry_with_the_chain_recomputed_is_caught_by_a_checkpoint(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    // The intruder replaces entry 13 and recomputes every hash after it, and the head: the
    // chain is self-consistent again, but the checkpoint signed at entry 20 no longer fits.
    let rows = j.store.audit().entries_after(0, 100).await.unwrap();
    let forged = chain::canonical_body(&sign_in(13, &j.clock)).unwrap().replace("sub-0013", "sub-0666");
    let mut prev = chain::parse_hash(&rows[11].hash).unwrap();
    for row in &rows[12..] {
        let body = if row.seq == 13 { forged.clone() } else { row.body.clone() };
        prev = chain::next_hash(&prev, row.seq, &body);
        let hash = chain::hash_hex(&prev);
        let subject = if row.seq == 13 { "sub-0666" } else { row.subject.as_deref().unwrap() };
        j.sql(&format!(
            "UPDATE audit_entry SET body = '{body}', hash = '{hash}', subject = '{subject}' WHERE seq = {}",
            row.seq
        ))
        .await;
    }
    j.sql(&format!("UPDATE audit_head SET hash = '{}'", chain::hash_hex(&prev))).await;
    let b = j.broken().await;
    assert!(matches!(b, Break::CheckpointMismatch { seq: 20, .. }), "{b}");
    assert!(b.to_string().contains("does not match the chain at entry 20"), "{b}");
}

async fn reordered_entries_are_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.sql("UPDATE audit_entry SET seq = -5 WHERE seq = 5").await;
    j.sql("UPDATE audit_entry SET seq = 5 WHERE seq = 6").await;
    j.sql("UPDATE audit_entry SET seq = 6 WHERE seq = -5").await;
    assert_eq!(j.broken().await, Break::HashMismatch { seq: 5 });
}

async fn a_tampered_checkpoint_signature_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    let cps = j.store.audit().checkpoints().await.unwrap();
    let cp = cps.iter().find(|c| c.seq == 20).unwrap();
    let flipped = if cp.signature.starts_with('0') { "1" } else { "0" };
    j.sql(&format!(
        "UPDATE audit_checkpoint SET signature = '{flipped}' || substr(signature, 2) WHERE number = {}",
        cp.number
    ))
    .await;
    assert_eq!(j.broken().await.to_string(), format!("checkpoint {}: bad signature", cp.number));
}

/// Checkpoints copied in beyond an idle head: one past its last entry, one numbered past the
/// head's count at its last entry. Nothing is appending, so neither can have been committed
/// since the head was read.
async fn a_checkpoint_inserted_beyond_an_idle_head_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    let head = j.store.audit().head().await.unwrap();
    let copy = |number: i64, seq: i64| {
        format!(
            "INSERT INTO audit_checkpoint (number, seq, hash, at_us, key_id, signature) \
             SELECT {number}, {seq}, hash, at_us, key_id, signature FROM audit_checkpoint WHERE number = {}",
            head.checkpoint_number
        )
    };
    let past_seq = (head.checkpoint_number + 1, head.seq + 3);
    j.sql(&copy(past_seq.0, past_seq.1)).await;
    let beyond = |(number, seq): (i64, i64)| Break::CheckpointBeyondHead {
        number,
        seq,
        head_seq: head.seq,
        head_number: head.checkpoint_number,
    };
    assert_eq!(j.broken().await, beyond(past_seq));

    j.sql(&format!("DELETE FROM audit_checkpoint WHERE number = {}", past_seq.0)).await;
    assert!(j.verify().await.is_intact(), "the copy removed, the journal is whole again");
    let past_count = (head.checkpoint_number + 1, head.seq);
    j.sql(&copy(past_count.0, past_count.1)).await;
    let b = j.broken().await;
    assert_eq!(b, beyond(past_count));
    assert_eq!(
        b.to_string(),
        format!(
            "checkpoint {}: at entry {}, past the journal head (entry {}, checkpoint {}) (inserted checkpoint)",
            past_count.0, head.seq, head.seq, head.checkpoint_number
        )
    );
}

async fn a_checkpoint_signed_with_another_key_is_refused(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(5).await;
    std::fs::remove_file(&j.signer_path).unwrap();
    Signer::load_or_generate(&j.signer_path).unwrap();
    assert!(matches!(j.broken().await, Break::UnknownKey { .. }));
}

async fn pruning_keeps_the_rest_of_the_chain_verifiable(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(35).await;
    j.clock.advance(time::Duration::days(200));
    j.append(5).await;
    let keep = Duration::from_secs(183 * 24 * 3600);

    let pruned = retention::prune(&j.store, &j.audit, &j.clock, keep).await.unwrap().unwrap();

    // Old entries go up to the last checkpoint they all precede (entry 30), not beyond.
    assert_eq!(pruned.anchor_seq, 30);
    assert_eq!(pruned.entries, 30);
    let report = j.verify().await;
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(report.anchor_seq, 30);
    assert_eq!(report.entries, 11, "5 old + 5 new + the pruning's own entry");
    assert!(retention::prune(&j.store, &j.audit, &j.clock, keep).await.unwrap().is_none());

    // The anchor cannot be moved to pretend more was pruned.
    j.sql("DELETE FROM audit_checkpoint WHERE seq = 30").await;
    assert_eq!(j.broken().await, Break::BadAnchor { seq: 30 });
}

async fn two_writers_appending_at_once_form_one_chain(backend: Backend) {
    const TOTAL: usize = 10_000;
    let j = Journal::start(backend, 100).await;
    let other = Arc::new(j.second_writer().await);
    let mine = Arc::new(j.audit);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TOTAL {
        let writer = if i % 2 == 0 { mine.clone() } else { other.clone() };
        let event = sign_in(i, &j.clock);
        // Half acknowledged, half batched: both paths share the one chain.
        tasks.spawn(async move {
            if i % 4 < 2 {
                writer.append_sync(event).await.map(Some)
            } else {
                writer.record(event).await.map(|()| None)
            }
        });
    }
    let mut acked = BTreeSet::new();
    while let Some(r) = tasks.join_next().await {
        if let Some(seq) = r.unwrap().unwrap() {
            assert!(acked.insert(seq), "sequence number {seq} acknowledged twice");
        }
    }
    mine.shutdown().await;
    other.shutdown().await;

    let report = verify(&j.store, &Signer::load(&j.signer_path).unwrap().verifier()).await.unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(report.entries, TOTAL as u64);
    assert_eq!(report.head_seq, TOTAL as i64);
    assert_eq!(acked.len(), TOTAL / 2);
}

async fn the_gateway_journals_its_start_and_flushes_queued_events(backend: Backend) {
    let app = spawn_app().backend(backend).start().await;
    let audit = &app.state.audit;
    audit
        .record(AuditEvent::system(Operation::PolicyReload { policy_version: Ident::new("v2").unwrap() }, T0))
        .await
        .unwrap();
    audit.flush().await.unwrap();
    let rows = app.state.store.audit().entries_after(0, 1000).await.unwrap();
    let ops: Vec<&str> = rows.iter().map(|r| r.operation.as_str()).collect();
    // Background jobs started with the gateway (retention, alerts) may journal their own runs
    // in between on a slow machine; what matters is the start first and the flushed event.
    assert_eq!(ops.first(), Some(&"config_loaded"), "{ops:?}");
    assert!(ops.contains(&"policy_reload"), "{ops:?}");
    let report = verify(&app.state.store, audit.verifier()).await.unwrap();
    assert!(report.is_intact(), "{}", report.summary());
}

/// The intruder deletes the last checkpoints and moves the head's counter back, so the chain
/// and the remaining checkpoints agree: the witness still has them, and the entries they
/// covered are left uncovered past the checkpoint interval.
async fn deleting_the_last_checkpoints_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    // Stopping checkpoints the rest: 4 checkpoints (the first entry, 10, 20, 25), all witnessed.
    j.audit.shutdown().await;
    let report = j.verify_all(time::Duration::hours(1)).await;
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!((report.checkpoints, report.witnessed), (4, Some(4)), "{}", report.summary());

    j.sql("DELETE FROM audit_checkpoint WHERE number >= 3").await;
    // The head still counts 4 checkpoints.
    assert_eq!(j.broken().await, Break::CheckpointCount { head: 4, found: 2 });

    j.sql("UPDATE audit_head SET checkpoint_number = 2, checkpoint_seq = 10").await;
    // The chain alone cannot tell any more…
    assert!(j.verify().await.is_intact());
    // …the witness can…
    let b = j.broken_all(time::Duration::ZERO).await;
    assert_eq!(b, Break::WitnessedButMissing { number: 3 });
    assert_eq!(b.to_string(), "checkpoint 3: in the witness but not in the store (deleted checkpoint)");
    // …and so can time: entries 11.. are older than the interval and covered by nothing.
    assert_eq!(j.broken_all(time::Duration::hours(1)).await, Break::Uncovered { seq: 11 });
    // A witness deleted as well is itself reported.
    std::fs::remove_file(&j.witness).unwrap();
    let b = j.broken_all(time::Duration::ZERO).await;
    assert!(matches!(b, Break::WitnessMissing { .. }), "{b}");
}

async fn deleting_every_checkpoint_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.audit.flush().await.unwrap();
    j.sql("DELETE FROM audit_checkpoint").await;
    j.sql("UPDATE audit_head SET checkpoint_number = 0, checkpoint_seq = 0, checkpoint_at_us = 0").await;
    assert!(j.verify().await.is_intact(), "the chain alone is self-consistent");
    assert_eq!(j.broken_all(time::Duration::ZERO).await, Break::WitnessedButMissing { number: 1 });
    // Without the witness: young entries may wait for their checkpoint, not beyond the
    // interval and its grace.
    std::fs::remove_file(&j.witness).unwrap();
    assert!(j.verify_all(time::Duration::minutes(9)).await.is_intact());
    assert_eq!(j.broken_all(time::Duration::minutes(11)).await, Break::Uncovered { seq: 1 });
}

/// Entries committed long ago and covered by no checkpoint yet (the writer's tick follows the
/// wall clock; the journal's clock moved nine hours): a flush writes the checkpoint that is
/// due, so what verifies next (the DPO's "verify now", an alert check after a flush) finds the
/// journal intact.
async fn a_flush_writes_the_checkpoint_that_is_due(backend: Backend) {
    let j = Journal::start(backend, 1000).await;
    j.append(3).await;
    j.clock.advance(time::Duration::hours(9));
    // The first commit checkpointed entry 1; entries 2 and 3 wait for the next checkpoint.
    assert_eq!(j.broken_all(time::Duration::ZERO).await, Break::Uncovered { seq: 2 });
    j.audit.flush().await.unwrap();
    let report = j.verify_all(time::Duration::ZERO).await;
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!((report.checkpoints, report.witnessed), (2, Some(2)), "{}", report.summary());
    // Flushed again at once: nothing is due, nothing is written.
    j.audit.flush().await.unwrap();
    assert_eq!(j.verify_all(time::Duration::ZERO).await.checkpoints, 2);
}

async fn a_checkpoint_differing_from_the_witness_is_detected(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(25).await;
    j.audit.shutdown().await;
    // The witness line of checkpoint 1 rewritten (with a valid checksum): the two disagree.
    let text = std::fs::read_to_string(&j.witness).unwrap();
    let first = text.lines().next().unwrap();
    let payload = first.rsplit_once("\tc=").unwrap().0;
    let mut fields: Vec<&str> = payload.split(' ').collect();
    fields[4] = "1";
    let forged = guichet::line_file::checksummed(&fields.join(" "));
    std::fs::write(&j.witness, text.replacen(first, &forged, 1)).unwrap();
    assert_eq!(j.broken_all(time::Duration::hours(1)).await, Break::WitnessDiffers { number: 1 });
    // A checkpoint the witness never saw is reported too.
    let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&j.witness, rest).unwrap();
    assert_eq!(j.broken_all(time::Duration::hours(1)).await, Break::NotWitnessed { number: 1 });
    // A torn witness line is an error, never skipped.
    std::fs::write(&j.witness, format!("{text}gcw1 5 30")).unwrap();
    let checks = Checks { coverage: None, witness: Some(j.witness.clone()) };
    let err = verify_with(&j.store, &Signer::load(&j.signer_path).unwrap().verifier(), &checks).await.unwrap_err();
    assert!(err.to_string().contains("line 5: damaged"), "{err}");
}

/// Plain SQL cannot change or remove journal, checkpoint or ledger rows; the retention path
/// still prunes.
async fn the_database_refuses_edits_of_the_journal_outside_retention(backend: Backend) {
    let j = Journal::start(backend, 10).await;
    j.append(35).await;
    for sql in [
        "UPDATE audit_entry SET subject = 'x' WHERE seq = 3",
        "DELETE FROM audit_entry WHERE seq = 35",
        "UPDATE audit_checkpoint SET seq = 1 WHERE number = 1",
        "DELETE FROM audit_checkpoint",
    ] {
        let refused = try_sql(&j.url, sql).await.unwrap_or_else(|| panic!("the database accepted {sql}"));
        assert!(refused.contains("append-only"), "{sql}: {refused}");
    }
    assert!(j.verify().await.is_intact());
    j.clock.advance(time::Duration::days(200));
    j.append(5).await;
    let pruned = retention::prune(&j.store, &j.audit, &j.clock, Duration::from_secs(183 * 24 * 3600)).await.unwrap();
    assert_eq!(pruned.unwrap().anchor_seq, 30);
    // The gate closed with the pruning's transaction.
    assert!(try_sql(&j.url, "DELETE FROM audit_entry").await.is_some());
    assert!(j.verify().await.is_intact());
}

/// The command operators run: the witness written by a real process, then checkpoints deleted
/// from the store (the head's counter moved back to match) are reported, exit status 1.
async fn audit_verify_with_the_binary_checks_the_witness(backend: Backend) {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let config = write_config_with(dir.path(), &url, "\n[audit]\ncheckpoint_every_entries = 10\n");
    assert!(guichet(&config, &["audit", "selftest-burst", "25"]).output().unwrap().status.success());
    let witness = dir.path().join("data/audit-witness/checkpoints.witness");
    let lines = std::fs::read_to_string(&witness).unwrap().lines().count();
    assert!(lines >= 3, "every checkpoint is witnessed");
    let out = verify_with_the_binary(&config);
    assert!(out.contains(&format!("{lines} checkpoints identical in the witness")), "{out}");

    intruder_sql(&url, "DELETE FROM audit_checkpoint WHERE number > 1").await;
    intruder_sql(
        &url,
        "UPDATE audit_head SET checkpoint_number = 1, checkpoint_seq = (SELECT seq FROM audit_checkpoint)",
    )
    .await;
    let out = guichet(&config, &["audit", "verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("audit journal BROKEN: checkpoint 2: in the witness but not in the store"), "{stdout}");
}

/// A gateway keeps appending and signing checkpoints while `verify` runs (the DPO's "verify
/// now", the alerts' check): an entry or checkpoint committed between verify's reads must not
/// look inserted or deleted. Here every entry is checkpointed, and the verifications interleave
/// with the appends.
async fn a_journal_verified_while_it_is_appended_is_intact(backend: Backend) {
    let j = Journal::start(backend, 1).await;
    j.append(1).await;
    let done = std::cell::Cell::new(false);
    let appending = async {
        j.append(300).await;
        done.set(true);
    };
    let verifying = async {
        let mut reports = Vec::new();
        // Until the appends are over (at least forty times), so that the verifications
        // interleave with them however fast either runs on the machine.
        while !done.get() || reports.len() < 40 {
            reports.push(j.verify_all(time::Duration::ZERO).await);
            tokio::task::yield_now().await;
        }
        reports
    };
    let ((), reports) = tokio::join!(appending, verifying);
    for report in &reports {
        assert!(report.is_intact(), "{}", report.summary());
    }
    // The verifications did run between appends, not all before or after them.
    let heads: BTreeSet<i64> = reports.iter().map(|r| r.head_seq).collect();
    assert!(heads.len() > 2, "verified at {heads:?}");
}

crate::on_both_stores!(
    a_journal_verified_while_it_is_appended_is_intact,
    audit_verify_with_the_binary_checks_the_witness,
    deleting_the_last_checkpoints_is_detected,
    deleting_every_checkpoint_is_detected,
    a_flush_writes_the_checkpoint_that_is_due,
    a_checkpoint_differing_from_the_witness_is_detected,
    the_database_refuses_edits_of_the_journal_outside_retention,
);

/// A configuration file for the real binary on the store at `url`.
fn write_config(dir: &std::path::Path, url: &SecretString) -> std::path::PathBuf {
    write_config_with(dir, url, "")
}

fn write_config_with(dir: &std::path::Path, url: &SecretString, extra: &str) -> std::path::PathBuf {
    use secrecy::ExposeSecret;
    let path = dir.join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n\n[store]\nurl = {url:?}\n\n[admin]\nenabled = false\n\n[log]\nlevel = \"warn\"\n{extra}",
        data = dir.join("data").display().to_string(),
        url = url.expose_secret(),
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn guichet(config: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"));
    c.args(args).arg("--config").arg(config).env_remove("GUICHET_CONFIG").env_remove("RUST_LOG");
    c
}

fn verify_with_the_binary(config: &std::path::Path) -> String {
    let out = guichet(config, &["audit", "verify"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "verify failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

async fn acknowledged_entries_survive_a_sigkill_mid_burst(backend: Backend) {
    use std::io::BufRead as _;
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let config = write_config(dir.path(), &url);
    let mut child = guichet(&config, &["audit", "selftest-burst", "10000000", "--concurrency", "16"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut acked = BTreeSet::new();
    while acked.len() < 3000 {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("the burst stopped acknowledging");
        acked.insert(line.strip_prefix("acked ").unwrap().parse::<i64>().unwrap());
    }
    child.kill().unwrap(); // SIGKILL: no flush, no shutdown
    let status = child.wait().unwrap();
    assert!(status.code().is_none(), "the burst must have been killed mid-way, not finished: {status}");
    reader.join().unwrap();
    // Lines written before the kill are acknowledgements too.
    acked.extend(lines.try_iter().map(|l| l.strip_prefix("acked ").unwrap().parse::<i64>().unwrap()));

    assert!(verify_with_the_binary(&config).contains("intact"));
    let store = Store::connect(&url, &guichet::store::StoreOptions::default()).await.unwrap();
    let mut present = BTreeSet::new();
    loop {
        let page = store.audit().entries_after(present.last().copied().unwrap_or(0), 5000).await.unwrap();
        if page.is_empty() {
            break;
        }
        present.extend(page.iter().map(|e| e.seq));
    }
    let lost: Vec<_> = acked.difference(&present).take(5).collect();
    assert!(lost.is_empty(), "acknowledged entries lost after SIGKILL: {lost:?}…");

    // After the crash the chain goes on from where it stopped.
    let again = guichet(&config, &["audit", "selftest-burst", "20"]).output().unwrap();
    assert!(again.status.success());
    assert!(verify_with_the_binary(&config).contains("intact"));
}

/// Issue 6, item 8: two gateway instances — each its own `Application` with its own
/// listeners, store pool, caches and journal writer — on one store, 10 000 consent choices
/// posted concurrently through both (real requests: session cookie, CSRF token, the consent
/// page's form), then the whole chain is verified with what `guichet audit verify` runs.
async fn two_gateways_on_one_store_chain_ten_thousand_concurrent_consents(backend: Backend) {
    use futures_util::StreamExt as _;

    const TOTAL: usize = 10_000;
    const CITIZENS: usize = 8;
    /// Requests in flight at once, over both instances.
    const IN_FLIGHT: usize = 64;
    let mock = crate::oidc_mock::MockProvider::start().await;
    // One checkpoint key file for both instances, as a deployment must share it.
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("audit-signing-key.p8");
    // And one witness directory, on storage they share.
    fn shared_key(k: std::path::PathBuf) -> impl FnOnce(&mut guichet::config::Settings, std::net::SocketAddr) {
        move |s, _| {
            s.audit.witness_dir = k.parent().map(|d| d.join("witness"));
            s.audit.signing_key_file = Some(k);
        }
    }
    let a = consent::builder(&mock, backend).with(shared_key(key_file.clone())).start().await;
    let b = consent::builder(&mock, backend)
        .with_store_url(a.store_url.clone())
        .with(shared_key(key_file.clone()))
        .start()
        .await;
    let mut sessions = Vec::new();
    for i in 0..CITIZENS {
        let s = consent::citizen(&a, &mock, &format!("sub-{i}")).await;
        let t = consent::token(&consent::consent_page(&a, &s).await);
        sessions.push((s, t));
    }
    let started_seq = a.state.store.audit().head().await.unwrap().seq;

    // Each acknowledgement: which instance answered, the sequence number it gave, the request id.
    let acks: Vec<(usize, i64, String)> = futures_util::stream::iter(0..TOTAL)
        .map(|i| {
            let (app, instance) = if i % 2 == 0 { (&a, 0) } else { (&b, 1) };
            let (session, token) = &sessions[i % CITIZENS];
            let choice = if (i / CITIZENS) % 2 == 1 { "retirer" } else { "donner" };
            async move {
                let form = [
                    ("jeton", token.as_str()),
                    ("activite", "lettre-information"),
                    ("finalite", "envoi"),
                    ("choix", choice),
                ];
                let r = consent::post(app, session, "/.guichet/consentement/", &form).await;
                assert_eq!(r.status(), 303, "consent choice {i} not acknowledged");
                let location = r.headers()["location"].to_str().unwrap();
                let seq = location.strip_prefix("/.guichet/consentement/?fait=").unwrap().parse().unwrap();
                (instance, seq, r.headers()["x-request-id"].to_str().unwrap().to_owned())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    a.state.audit.flush().await.unwrap();
    b.state.audit.flush().await.unwrap();

    // No sequence number given twice; both instances took part, their appends interleaved.
    let by_seq: std::collections::BTreeMap<i64, (usize, String)> =
        acks.iter().map(|(inst, seq, rid)| (*seq, (*inst, rid.clone()))).collect();
    assert_eq!(by_seq.len(), TOTAL, "a sequence number was acknowledged twice");
    for instance in [0, 1] {
        assert_eq!(acks.iter().filter(|(i, ..)| *i == instance).count(), TOTAL / 2);
    }
    let turns = by_seq.values().zip(by_seq.values().skip(1)).filter(|(x, y)| x.0 != y.0).count();
    assert!(turns > 1, "the two instances never appended in turn: {turns}");

    // The whole chain verifies, from genesis, with every entry numbered without a gap…
    let verifier = Signer::load(&key_file).unwrap().verifier();
    let report = verify(&a.state.store, &verifier).await.unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(report.anchor_seq, 0);
    assert_eq!(report.head_seq as u64, report.entries);
    assert!(report.head_seq >= started_seq + TOTAL as i64);
    assert!(report.checkpoints >= (TOTAL / 1000) as u64, "{}", report.summary());
    // …and the command operators run says so too, once the instances have stopped (their
    // last entries then have their checkpoint), with the shared witness.
    a.state.audit.shutdown().await;
    b.state.audit.shutdown().await;
    let extra = format!(
        "\n[audit]\nsigning_key_file = {:?}\nwitness_dir = {:?}\n",
        key_file.display().to_string(),
        keys.path().join("witness").display().to_string()
    );
    let config = write_config_with(keys.path(), &a.store_url, &extra);
    let out = verify_with_the_binary(&config);
    assert!(out.contains("checkpoints identical in the witness"), "{out}");
    assert!(out.starts_with("audit journal intact"), "{out}");

    // Every acknowledged choice is the entry its sequence number names, made by that request.
    let mut consents = 0;
    let mut after = 0;
    loop {
        let page = a.state.store.audit().entries_after(after, 2000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in page.iter().filter(|e| e.operation.starts_with("consent_")) {
            consents += 1;
            let (_, rid) = by_seq.get(&e.seq).unwrap_or_else(|| panic!("entry {} was never acknowledged", e.seq));
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            assert_eq!(body["request_id"], rid.as_str(), "entry {} is not the acknowledged request's", e.seq);
        }
    }
    assert_eq!(consents, TOTAL, "acknowledged consent entries missing from the journal");
    assert_eq!(a.state.store.consent().count().await.unwrap(), TOTAL as i64);
}

/// `guichet audit rotate-checkpoint-key`: the new key signs later checkpoints, those the
/// retired key signed still verify (its public half is kept beside the key file), the
/// rotation is journaled, and a key missing from the retired list is still refused.
async fn rotating_the_checkpoint_key_keeps_older_checkpoints_verifiable(backend: Backend) {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let config = write_config_with(dir.path(), &url, "\n[audit]\ncheckpoint_every_entries = 10\n");
    let key = dir.path().join("data/audit-signing-key.p8");
    let burst = |n: &str| assert!(guichet(&config, &["audit", "selftest-burst", n]).output().unwrap().status.success());
    burst("25");
    let old = Signer::load(&key).unwrap().key_id().to_owned();

    let out = guichet(&config, &["audit", "rotate-checkpoint-key"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let new = Signer::load(&key).unwrap().key_id().to_owned();
    assert_ne!(new, old);
    assert!(stdout.contains(&format!("{old} retired")) && stdout.contains(&format!("{new} signs")), "{stdout}");
    burst("25");

    // Checkpoints by both keys, and the whole journal verifies.
    assert!(verify_with_the_binary(&config).starts_with("audit journal intact"));
    let store = Store::connect(&url, &guichet::store::StoreOptions::default()).await.unwrap();
    let signers: BTreeSet<String> = store.audit().checkpoints().await.unwrap().into_iter().map(|c| c.key_id).collect();
    assert_eq!(signers, BTreeSet::from([old.clone(), new.clone()]));
    // The rotation itself is in the journal, naming the new key.
    let entries = store.audit().entries_after(0, 1000).await.unwrap();
    let rotation = entries.iter().find(|e| e.operation == "key_operation").expect("the rotation is journaled");
    let body: serde_json::Value = serde_json::from_str(&rotation.body).unwrap();
    assert_eq!(body["operation"]["action"], "rotate");
    assert_eq!(body["operation"]["key_id"], format!("audit-checkpoint:{new}"));

    // Without the retired list, the old checkpoints are signed by an unknown key.
    std::fs::remove_file(dir.path().join("data/audit-signing-key.p8.retired")).unwrap();
    let out = guichet(&config, &["audit", "verify"]).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("signed by unknown key {old}")), "{stdout}");
}

crate::on_both_stores!(
    acknowledged_entries_survive_a_sigkill_mid_burst,
    rotating_the_checkpoint_key_keeps_older_checkpoints_verifiable,
    two_gateways_on_one_store_chain_ten_thousand_concurrent_consents,
    an_intact_journal_verifies,
    an_altered_body_is_detected_at_its_entry,
    an_altered_query_column_is_detected,
    a_deleted_entry_is_detected_as_a_gap,
    deleting_the_last_entries_is_detected,
    a_forged_entry_after_the_head_is_detected,
    a_forged_entry_with_the_chain_recomputed_is_caught_by_a_checkpoint,
    reordered_entries_are_detected,
    a_tampered_checkpoint_signature_is_detected,
    a_checkpoint_inserted_beyond_an_idle_head_is_detected,
    a_checkpoint_signed_with_another_key_is_refused,
    pruning_keeps_the_rest_of_the_chain_verifiable,
    two_writers_appending_at_once_form_one_chain,
    the_gateway_journals_its_start_and_flushes_queued_events,
);

#[test]
fn retention_is_bounded_to_six_to_twelve_months_unless_justified() {
    let problems = |keep: &str, justification: Option<&str>| {
        let mut l = Loaded::defaults();
        l.settings.audit.retention.keep = humantime::parse_duration(keep).unwrap();
        l.settings.audit.retention.justification = justification.map(str::to_owned);
        l.validate().err().map(|e| e.to_string()).unwrap_or_default()
    };
    assert!(problems("3months", None).contains("audit.retention.keep"));
    assert_eq!(problems("6months", None), "");
    assert_eq!(problems("1year", None), "");
    assert!(problems("3years", None).contains("justification"));
    assert_eq!(problems("3years", Some("contrôle interne, délibération 2021-122")), "");
}

/// Many batched and acknowledged appends form one intact, contiguous chain. Also prints what
/// batching costs the caller and what the writer sustains (`--nocapture`; figures for
/// docs/performance.md come from `cargo test --release`), but asserts no timing: timings
/// flake on shared machines.
async fn journal_throughput(backend: Backend) {
    // Below the queue's capacity, so `record` never waits for the writer here.
    const N: usize = 10_000;
    let j = Journal::start(backend, 1000).await;
    let events: Vec<AuditEvent> = (0..N).map(|i| sign_in(i, &j.clock)).collect();
    let started = std::time::Instant::now();
    for e in events {
        j.audit.record(e).await.unwrap();
    }
    let enqueued = started.elapsed();
    j.audit.flush().await.unwrap();
    let committed = started.elapsed();

    let audit = Arc::new(j.audit);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let (audit, clock) = (audit.clone(), j.clock.clone());
        tasks.spawn(async move {
            for k in 0..200 {
                audit.append_sync(sign_in(i * 1000 + k, &clock)).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let sync = started.elapsed();
    eprintln!(
        "{backend:?}: record(): {:.2} µs per call on the caller's side; writer: {:.0} entries/s batched; \
         append_sync, 64 concurrent callers: {:.0} entries/s, {:.2} ms per acknowledged append",
        enqueued.as_secs_f64() * 1e6 / N as f64,
        N as f64 / committed.as_secs_f64(),
        12_800.0 / sync.as_secs_f64(),
        sync.as_secs_f64() * 1e3 / 200.0,
    );
    let report = verify(&j.store, &Signer::load(&j.signer_path).unwrap().verifier()).await.unwrap();
    assert!(report.is_intact(), "{}", report.summary());
    assert_eq!(report.entries, (N + 64 * 200) as u64, "every append is in the chain, none twice");
    assert_eq!(report.head_seq as u64, report.entries, "sequence numbers are contiguous");
}

crate::on_both_stores!(journal_throughput);
