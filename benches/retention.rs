//! A retention run at scale (issue 15, item 10): 1 000 000 (citizen, activity, category)
//! retention records on SQLite, of which 10 % are due, and one run over them, as `guichet
//! retention run` does it (`retention::run::run`: the lease, the records read in key order
//! batch by batch, the planner, the hold checks, and for each due record the one `forget`
//! operation, whose class-key shred journals the destroyed key). Prints the time and the
//! peak memory of the run (VmHWM, reset after seeding through /proc/self/clear_refs).
//!
//! Data: the embedded `voirie` policy (two categories: `contact`, destroyed 6 months after the
//! case is closed; `signalement`, anonymised a year after). 500 000 citizens × 2 categories;
//! every fifth citizen's case closed 7 months ago, so their `contact` (100 000 records, 10 %)
//! is due and their `signalement` is not. Every citizen has a data key per retention class
//! (1 000 000 keys), so each shred deletes one key among a million: the cost of a shred does
//! not depend on how many keys, or tokens, exist. Seeding is one SQL statement per table
//! (recursive CTE), copying the class and KEK version of one real key made by the vault.
//!
//! Run: `cargo bench --bench retention [-- CITIZENS]` (default 500 000 citizens, so
//! 1 000 000 records). Results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::time::{Duration, Instant};

use guichet::app::AppState;
use guichet::clock::{Clock as _, SystemClock};
use guichet::crypto::token::FieldContext;
use guichet::retention::run::{Options, run, today};

mod common;

/// (VmHWM, VmRSS) of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap()
}

/// Seeds `citizens` × 2 records and 2 data keys per citizen in one transaction; returns the
/// number of records due (the `contact` of every fifth citizen).
async fn seed(app: &AppState, db: &std::path::Path, citizens: u64) -> u64 {
    // One real key, for the class and KEK version the vault writes.
    let vault = app.crypto.as_ref().unwrap();
    let set = app.policies.load();
    let voirie = set.activity("voirie").expect("the embedded voirie policy");
    let field = voirie.fields.iter().find(|f| f.category == "contact").expect("a contact field");
    let ctx = FieldContext { activity: "voirie", field: &field.name, subject: "probe" };
    vault.seal(&ctx, "valeur").await.unwrap();
    let class_of = |c: &str| guichet::policy::retention_class(voirie, c);
    let (contact_class, report_class) = (class_of("contact"), class_of("signalement"));

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let kek: i64 = sqlx::query_scalar("SELECT kek_version FROM guichet_data_keys WHERE subject = 'probe'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let now = SystemClock.now();
    let collected = micros(now - time::Duration::days(400));
    let closed = micros(now - time::Duration::days(213));
    let last = i64::try_from(citizens).unwrap() - 1;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO retention_record (subject, activity, category, route, app_subject, \
         collected_at_us, last_activity_at_us, event_at_us, withdrawn_at_us, phase, phase_since_us, end_action, \
         notice_deletion_on) \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT printf('bench-%07d', i), 'voirie', c.category, 'voirie', \
                printf('app-%07d', i), ?2, ?2, CASE WHEN i % 5 = 0 THEN ?3 ELSE NULL END, NULL, 'active', ?2, \
                NULL, NULL \
         FROM n, (SELECT 'contact' AS category UNION ALL SELECT 'signalement') AS c",
    )
    .bind(last)
    .bind(collected)
    .bind(closed)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO guichet_data_keys (key_id, subject, activity, class, kek_version, wrapped, created_at) \
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         SELECT printf('bench-%s-%07d', c.class, i), printf('bench-%07d', i), 'voirie', c.class, ?2, \
                randomblob(72), '2026-01-01T00:00:00Z' \
         FROM n, (SELECT ?3 AS class UNION ALL SELECT ?4) AS c",
    )
    .bind(last)
    .bind(kek)
    .bind(&contact_class)
    .bind(&report_class)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    pool.close().await;
    citizens.div_ceil(5)
}

fn main() {
    let citizens: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(500_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let app = common::gateway(dir.path(), "http://127.0.0.1:9").await;
        let t = Instant::now();
        let due = seed(&app, &dir.path().join("guichet.db"), citizens).await;
        println!("retention/seed: {} records ({due} due), {} keys in {:.1} s", citizens * 2, citizens * 2, secs(t.elapsed()));
        let (hwm, rss) = memory();
        println!("retention/memory before the run: peak {hwm:.1} MiB, resident {rss:.1} MiB");
        // The run's own peak: the seeding's is forgotten (Linux: 5 resets VmHWM).
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let t = Instant::now();
        // The memory along the run, every 100 000 records read: flat when the run streams.
        let sample = |read: u64| {
            if read % 100_000 < u64::from(app.settings.retention.batch) {
                let (hwm, rss) = memory();
                println!("retention/memory at {read} records read: peak {hwm:.1} MiB, resident {rss:.1} MiB");
            }
        };
        let report = run(&app, Options { today: today(&app), dry_run: false }, &sample).await.unwrap();
        let took = t.elapsed();
        app.audit.flush().await.unwrap();
        let (hwm, rss) = memory();
        println!(
            "retention/run: {} records read, {} acted on, {} overdue, in {:.1} s ({:.0} records/s, {:.2} ms per action)",
            report.records,
            report.acted,
            report.overdue,
            secs(took),
            report.records as f64 / secs(took),
            secs(took) * 1e3 / report.acted.max(1) as f64,
        );
        println!(
            "retention/memory of the run: peak {hwm:.1} MiB{}, resident after {rss:.1} MiB",
            if reset { "" } else { " (peak not reset: includes the seeding)" }
        );
        assert_eq!(report.acted, due, "every due record acted on once");
    });
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}
