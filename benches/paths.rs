//! What reading a path costs on the hot path (issue 11, item 7): the receive phase's
//! `canonical::path::read` and the decide phase's `policy::decide` (the canonical path, its
//! file readings, and for paths that are not plain the other readings), with the example
//! policies. `plain/*` is what nearly every request pays; `spelled/*` what a percent-encoded,
//! doubled-slash or non-ASCII path pays.
//!
//! Run: `cargo bench --bench paths`. Record results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use guichet::canonical::path;
use guichet::policy::load::{embedded_examples, load};
use guichet::policy::{PolicySource, RequestFacts, decide};
use guichet::routing::RouteTable;
use http::Method;

const CASES: [(&str, &str); 6] = [
    ("plain/claimed", "/api/inscriptions"),
    ("plain/unclaimed", "/accueil/actualites/2026"),
    ("plain/file", "/static/js/app.3f2a.js"),
    ("spelled/encoded", "/%63antine//inscription"),
    ("spelled/non_ascii", "/d%C3%A9marches/acte-de-naissance"),
    ("spelled/params", "/cantine;jsessionid=1/menu"),
];

fn paths(c: &mut Criterion) {
    let set = load(&PolicySource::Memory(embedded_examples()), &RouteTable::default(), &[]).unwrap();
    let mut g = c.benchmark_group("paths");
    for (name, raw) in CASES {
        g.bench_function(format!("read/{name}"), |b| b.iter(|| path::read(black_box(raw)).map(|p| p.len())));
        let canonical = path::read(raw).unwrap();
        let facts =
            RequestFacts { route: "accueil", host: Some("mairie.example.fr"), path: &canonical, method: &Method::POST };
        g.bench_function(format!("decide/{name}"), |b| b.iter(|| decide(black_box(&set), black_box(&facts))));
    }
    g.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
