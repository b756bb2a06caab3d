//! Costs that must stay flat as the town grows (issue 18, item 3), each measured at several
//! sizes in one run so that the curve, not the absolute time, is what is read:
//!
//! - `decide/activities/N`: the decide phase with N activities of one route each (10, 100,
//!   1 000), for a claimed path, an unclaimed path and a non-plain spelling: flat (the
//!   compiled matcher indexes rules by their first fixed segment);
//! - `protect/fields_F/body_B`: the real protect phase on a JSON body of B bytes (2 KiB,
//!   64 KiB, 1 MiB) declaring F fields (10, 100, 1 000), of which the body carries ten: linear
//!   in the body, not in fields × body (criterion's throughput is per byte);
//! - `reveal/page_P/tokens_T`: the streaming reveal scan with the opening of each token on a
//!   page of P bytes (100 KiB, 10 MiB) holding T tokens (50, 5 000), in 16 KiB chunks as the
//!   response filter receives them: linear in the page, with the scanner's buffer bounded.
//!
//! Run: `cargo bench --bench scaling`. Record the curves in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::Duration;

mod common;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use guichet::canonical::path;
use guichet::clock::SystemRandom;
use guichet::crypto::secret::Key256;
use guichet::crypto::token::{self, FieldContext, KeyId};
use guichet::crypto::{aead, scan};
use guichet::policy::load::{SourceFile, load};
use guichet::policy::model::Field;
use guichet::policy::{Decision, PolicySource, RequestFacts, decide};
use guichet::routing::RouteTable;
use http::Method;

/// One activity claiming `/service-{i}/*` (docs/policies.md), as small as validation allows.
fn activity(i: usize) -> SourceFile {
    let text = format!(
        r#"version = 1
id = "service-{i}"
name = "Service {i}"
description = "Activité de mesure."

[controller]
organisation = "Mairie de Démoville"
address = "1 place de la Mairie, 99999 Démoville"
contact = "accueil@demoville.example"

[dpo]
name = "Délégué à la protection des données"
contact = "dpo@demoville.example"

[[purposes]]
id = "mesure"
description = "Mesurer la passerelle."
legal_basis = "public_task"
legal_reference = "Code général des collectivités territoriales, art. L2121-29"

[[categories]]
id = "identite"
name = "Identité"
[categories.retention]
active = "1 year"
from = "collection"
then = "destroy"
source = "Mesure"

[[routes]]
path = "/service-{i}/*"
"#
    );
    SourceFile { name: format!("service-{i}.toml"), text }
}

fn decide_scaling(c: &mut Criterion) {
    let mut g = c.benchmark_group("decide");
    for n in [10usize, 100, 1_000] {
        let set = load(&PolicySource::Memory((0..n).map(activity).collect()), &RouteTable::default(), &[]).unwrap();
        // The last activity's path: a linear matcher would try every rule before it.
        let cases = [
            ("claimed", format!("/service-{}/dossiers/12", n - 1)),
            ("unclaimed", "/accueil/actualites/2026".to_owned()),
            ("spelled", format!("/SERVICE-{}//%64ossiers/12", n - 1)),
        ];
        for (name, raw) in cases {
            let canonical = path::read(&raw).unwrap();
            let facts = RequestFacts { route: "app", host: None, path: &canonical, method: &Method::POST };
            if name != "unclaimed" {
                assert!(matches!(decide(&set, &facts), Decision::Processing(_)), "{raw} must be claimed");
            }
            g.bench_with_input(BenchmarkId::new(format!("{name}/activities"), n), &facts, |b, facts| {
                b.iter(|| decide(black_box(&set), black_box(facts)))
            });
        }
    }
    g.finish();
}

/// A JSON object of about `size` bytes carrying ten of the declared fields (`champ_0` to
/// `champ_9`) and ordinary members for the rest.
fn body_of(size: usize) -> bytes::Bytes {
    let mut obj = serde_json::Map::new();
    for i in 0..10 {
        obj.insert(format!("champ_{i}"), serde_json::json!(format!("valeur personnelle numéro {i}")));
    }
    // Long ordinary values: a 1 MiB body stays under the gateway's 10 000 JSON items.
    let filler = "une valeur qui n'est pas personnelle, répétée pour la taille du corps. ".repeat(3);
    let mut i = 0;
    let mut len = serde_json::to_string(&obj).unwrap().len();
    while len < size {
        let key = format!("ordinaire_{i}");
        len += key.len() + filler.len() + 6;
        obj.insert(key, serde_json::json!(filler.as_str()));
        i += 1;
    }
    bytes::Bytes::from(serde_json::to_vec(&obj).unwrap())
}

fn protect_scaling(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = common::bench_vault(&rt, dir.path());
    let mut g = c.benchmark_group("protect");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n_fields in [10usize, 100, 1_000] {
        let fields: Vec<Field> = (0..n_fields).map(|i| common::encrypted(&format!("champ_{i}"))).collect();
        let refs: Vec<&Field> = fields.iter().collect();
        let paths = common::json_paths(&refs);
        let protector = || common::protector(&vault, "service", &paths, 2 << 20);
        for (label, size) in [("2KiB", 2 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
            let body = body_of(size);
            let request = || {
                http::Request::post("/service/demande")
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body.clone()))
                    .unwrap()
            };
            // The first request creates the data key; the bench measures the cached path.
            rt.block_on(protector().protect(&refs, request())).unwrap();
            g.throughput(Throughput::Bytes(body.len() as u64));
            g.bench_function(BenchmarkId::new(format!("fields_{n_fields}"), label), |b| {
                b.iter(|| rt.block_on(protector().protect(&refs, request())).unwrap())
            });
        }
    }
    g.finish();
}

const CLASS: Option<&str> = Some("r-0123456789abcdef");

fn ctx() -> FieldContext<'static> {
    FieldContext { activity: "service", field: "nom", subject: "sub-0123456789abcdef" }
}

/// An HTML page of about `size` bytes holding `tokens` tokens spread evenly in table cells.
fn page(size: usize, tokens: usize, key: &Key256, kid: &KeyId, rng: &SystemRandom) -> String {
    let seal_key = aead::SealKey::new(key).unwrap();
    let filler = "<p>Texte ordinaire de la page, sans donnée personnelle, répété pour la taille.</p>\n";
    let mut html = String::with_capacity(size + 4096);
    html.push_str("<!doctype html><html><body><table>");
    let per_token = size / tokens;
    for i in 0..tokens {
        let t = token::seal(&seal_key, token::KeyRef { id: kid, class: CLASS }, &ctx(), &format!("Dupont {i}"), rng)
            .unwrap();
        html.push_str(&format!("<tr><td>Dossier {i}</td><td>{t}</td></tr>\n"));
        while html.len() < per_token * (i + 1) {
            html.push_str(filler);
        }
    }
    html.push_str("</table></body></html>");
    html
}

fn reveal_scaling(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let key = Key256::generate(&rng).unwrap();
    let kid = KeyId::generate(&rng).unwrap();
    let mut g = c.benchmark_group("reveal");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for (label, size) in [("100KiB", 100 << 10), ("10MiB", 10 << 20)] {
        for tokens in [50usize, 5_000] {
            let html = page(size, tokens, &key, &kid, &rng);
            g.throughput(Throughput::Bytes(html.len() as u64));
            g.bench_function(BenchmarkId::new(format!("page_{label}"), format!("tokens_{tokens}")), |b| {
                b.iter(|| {
                    let mut s = scan::StreamScanner::new();
                    let (mut opened, mut out) = (0usize, 0usize);
                    let mut piece = |p: scan::Piece<'_>| match p {
                        scan::Piece::Token(t) => {
                            let shown = token::parse(t)
                                .ok()
                                .and_then(|p| token::open(&key, CLASS, &p, &ctx()).ok())
                                .map_or_else(|| "[donnée protégée]".to_owned(), |v| v.to_string());
                            opened += 1;
                            out += shown.len();
                        }
                        scan::Piece::Text(t) => out += t.len(),
                    };
                    for chunk in black_box(html.as_bytes()).chunks(16 * 1024) {
                        s.push(chunk, &mut piece);
                    }
                    s.finish(&mut piece);
                    assert_eq!(opened, tokens);
                    out
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, decide_scaling, protect_scaling, reveal_scaling);
criterion_main!(benches);
