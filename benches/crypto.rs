//! Crypto micro-benchmarks for issue 5 (item 9): per-field seal/open, the JSON transform
//! stand-in (2 KiB, 10 fields), the reveal scan of a 100 KiB HTML page with 50 tokens, a token
//! tried against ten fields, and crypto-shredding a subject with 100 and with 100 000 tokens.
//!
//! Run: `cargo bench --bench crypto`. Record results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use guichet::clock::SystemRandom;
use guichet::crypto::secret::Key256;
use guichet::crypto::token::{self, FieldContext, KeyId};
use guichet::crypto::{Vault, aead, mac, scan};

/// The retention class the benchmarks seal in (what the protect phase does since classes).
const CLASS: Option<&str> = Some("r-0123456789abcdef");

const FIELDS: [&str; 10] =
    ["nom", "prenom", "date_naissance", "adresse", "code_postal", "ville", "telephone", "courriel", "nir", "iban"];

fn ctx(field: &str) -> FieldContext<'_> {
    FieldContext { activity: "inscription-scolaire", field, subject: "sub-0123456789abcdef" }
}

fn per_field(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = Key256::generate(&rng).unwrap();
    let kid = KeyId::generate(&rng).unwrap();
    // Built once per request by the protect phase, so outside the measured seal.
    let schedule = aead::SealKey::new(&key).unwrap();
    let mut g = c.benchmark_group("field");
    for value in ["Dupont", "12 rue de la République, 69002 Lyon, appartement 4B, escalier C"] {
        let t = token::seal(&schedule, token::KeyRef { id: &kid, class: CLASS }, &ctx("nom"), value, &rng).unwrap();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("seal", value.len()), value, |b, v| {
            b.iter(|| {
                token::seal(&schedule, token::KeyRef { id: &kid, class: CLASS }, &ctx("nom"), black_box(v), &rng)
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("open", value.len()), &t, |b, t| {
            b.iter(|| token::open(&key, CLASS, &token::parse(black_box(t)).unwrap(), &ctx("nom")).unwrap())
        });
    }
    let mk = Key256::generate(&rng).unwrap();
    g.bench_function("pseudonymize", |b| b.iter(|| mac::pseudonymize(&mk, "a", "nom", black_box("Dupont"))));
    g.bench_function("blind_index", |b| b.iter(|| mac::blind_index(&mk, "a", "nom", black_box("Dupont"))));
    g.finish();
}

/// A 2 KiB JSON form: 10 personal fields among ordinary ones.
fn form_json() -> String {
    let mut obj = serde_json::Map::new();
    for (i, f) in FIELDS.iter().enumerate() {
        obj.insert((*f).to_owned(), serde_json::json!(format!("valeur personnelle numéro {i} pour {f}")));
    }
    let mut i = 0;
    while serde_json::to_string(&obj).unwrap().len() < 2048 {
        obj.insert(format!("champ_ordinaire_{i}"), serde_json::json!("une valeur qui n'est pas personnelle"));
        i += 1;
    }
    serde_json::to_string(&obj).unwrap()
}

fn transform(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = Key256::generate(&rng).unwrap();
    let kid = KeyId::generate(&rng).unwrap();
    let body = form_json();
    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("json_2KiB_10_fields", |b| {
        b.iter(|| {
            let key = aead::SealKey::new(&key).unwrap();
            let mut v: serde_json::Value = serde_json::from_str(black_box(&body)).unwrap();
            for f in FIELDS {
                if let Some(slot) = v.get_mut(f) {
                    let plain = slot.as_str().unwrap_or_default();
                    *slot = serde_json::Value::String(
                        token::seal(&key, token::KeyRef { id: &kid, class: CLASS }, &ctx(f), plain, &rng).unwrap(),
                    );
                }
            }
            serde_json::to_vec(&v).unwrap()
        })
    });
    g.finish();
}

/// A 100 KiB HTML page holding 50 tokens in table cells.
fn page(key: &Key256, kid: &KeyId, rng: &SystemRandom) -> String {
    let mut html = String::from("<!doctype html><html><body><table>");
    for i in 0..50 {
        let t = token::seal(
            &aead::SealKey::new(key).unwrap(),
            token::KeyRef { id: kid, class: CLASS },
            &ctx("nom"),
            &format!("Dupont {i}"),
            rng,
        )
        .unwrap();
        html.push_str(&format!("<tr><td>Dossier {i}</td><td>{t}</td></tr>\n"));
    }
    let filler = "<p>Texte ordinaire de la page, sans donnée personnelle, répété pour la taille.</p>\n";
    while html.len() < 100 * 1024 {
        html.push_str(filler);
    }
    html.push_str("</table></body></html>");
    html
}

fn reveal(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = Key256::generate(&rng).unwrap();
    let kid = KeyId::generate(&rng).unwrap();
    let html = page(&key, &kid, &rng);
    let mut g = c.benchmark_group("reveal");
    g.throughput(Throughput::Bytes(html.len() as u64));
    g.bench_function("scan_only_100KiB_50_tokens", |b| b.iter(|| scan::find_tokens(black_box(&html)).len()));
    g.bench_function("scan_and_open_100KiB_50_tokens", |b| {
        b.iter(|| {
            scan::replace_tokens(black_box(&html), |t| {
                token::parse(t)
                    .ok()
                    .and_then(|p| token::open(&key, CLASS, &p, &ctx("nom")).ok())
                    .map_or_else(|| "[donnée protégée]".to_owned(), |v| v.to_string())
            })
        })
    });
    g.bench_function("stream_16KiB_chunks_100KiB_50_tokens", |b| {
        b.iter(|| {
            let mut s = scan::StreamScanner::new();
            let mut n = 0usize;
            for chunk in black_box(html.as_bytes()).chunks(16 * 1024) {
                s.push(chunk, &mut |p| n += matches!(p, scan::Piece::Token(_)) as usize);
            }
            s.finish(&mut |p| n += matches!(p, scan::Piece::Token(_)) as usize);
            n
        })
    });
    g.finish();
}

/// The real protect phase (`proxy::fields::Protector`) on a 2 KiB JSON request with 10
/// encrypted fields, the citizen's data key cached: what a POST costs in the gateway on top
/// of forwarding.
fn protect_phase(c: &mut Criterion) {
    use guichet::policy::model::Field;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = common::bench_vault(&rt, dir.path());
    let fields: Vec<Field> = FIELDS.iter().map(|f| common::encrypted(f)).collect();
    let refs: Vec<&Field> = fields.iter().collect();
    let paths = common::json_paths(&refs);
    let protector = || common::protector(&vault, "inscription-scolaire", &paths, 1 << 20);
    let body = bytes::Bytes::from(form_json());
    let request = || {
        http::Request::post("/inscriptions")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.clone()))
            .unwrap()
    };
    // The first request creates the data key; the bench measures the cached path.
    rt.block_on(protector().protect(&refs, request())).unwrap();
    let mut g = c.benchmark_group("transform");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("protect_phase_json_2KiB_10_encrypted_fields", |b| {
        b.iter(|| rt.block_on(protector().protect(&refs, request())).unwrap())
    });
    g.finish();
}

/// Shredding touches one key row and one tombstone, never the tokens: the time must not
/// depend on how many tokens the subject has.
fn shred(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = common::bench_vault(&rt, dir.path());
    let mut g = c.benchmark_group("shred");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let mut next = 0u64;
    for n in [100usize, 100_000] {
        g.bench_with_input(BenchmarkId::new("subject_with_tokens", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    let subject = format!("sub-{next}");
                    let c = FieldContext { activity: "inscription-scolaire", field: "nom", subject: &subject };
                    let tokens = seal_many(&rt, &vault, &c, n);
                    let start = Instant::now();
                    rt.block_on(vault.shred(&subject, "inscription-scolaire")).unwrap();
                    total += start.elapsed();
                    assert!(rt.block_on(vault.open(&c, &tokens[n / 2])).is_err());
                }
                total
            })
        });
    }
    g.finish();
}

/// Seals `n` tokens for the pair. The first one creates the key on the bench's runtime; the
/// rest (cache hits) are sealed on another thread, so the CPU burst of the set-up does not
/// make the scheduler delay the measured thread's wake-ups after its fsyncs.
/// Opening a token whose field is not known, as the reveal phase and the rights pages do:
/// the activity's ten encrypted fields tried in turn, the token belonging to the last. Each
/// try through `Vault::open` finds, decodes and schedules the key again; `Vault::openable`
/// does it once per token.
fn reveal_tries(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = common::bench_vault(&rt, dir.path());
    let last = FIELDS[FIELDS.len() - 1];
    let tok = rt.block_on(vault.seal(&ctx(last), "FR76 3000 6000 0112 3456 7890 189")).unwrap();
    let mut g = c.benchmark_group("reveal");
    g.bench_function("tries_10_fields_vault_open_each", |b| {
        b.iter(|| {
            rt.block_on(async {
                for f in FIELDS {
                    if let Ok(v) = vault.open(&ctx(f), black_box(&tok)).await {
                        return v.len();
                    }
                }
                0
            })
        })
    });
    g.bench_function("tries_10_fields_openable", |b| {
        b.iter(|| {
            rt.block_on(async {
                let openable = vault.openable(black_box(&tok)).await.unwrap().unwrap();
                FIELDS.iter().find_map(|f| openable.open(&ctx(f)).ok()).map_or(0, |v| v.len())
            })
        })
    });
    g.finish();
}

fn seal_many(rt: &tokio::runtime::Runtime, vault: &Vault, c: &FieldContext<'_>, n: usize) -> Vec<String> {
    let first = rt.block_on(vault.seal(c, "Dupont")).unwrap();
    let rest = std::thread::scope(|s| {
        s.spawn(|| {
            let helper = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            helper.block_on(async {
                let mut out = Vec::with_capacity(n);
                for i in 1..n {
                    out.push(vault.seal(c, &format!("Dupont {i}")).await.unwrap());
                }
                out
            })
        })
        .join()
        .unwrap()
    });
    std::iter::once(first).chain(rest).collect()
}

criterion_group!(benches, per_field, transform, protect_phase, reveal, reveal_tries, shred);
criterion_main!(benches);
