//! Consent check micro-benchmarks for issue 6 (item 11: "the consent check on the hot path
//! from cache ≤ 2 µs"). The gateway is built exactly as `serve` builds it
//! (`Application::build_with_policies`: the newsletter activity, a citizen route, SQLite),
//! a citizen session is created and their consent recorded through the journal; then, with
//! the caches warm:
//!
//! - `consent/cached_state`: `ConsentService::state`, the call the proxy's consent phase
//!   makes (cache lookup, freshness test, pure `state::current`, clock read);
//! - `consent/check_consent_phase`: the whole `check_consent` phase of the pipeline for that
//!   citizen on the newsletter purpose (policy set load, notice version lookup, the citizen's
//!   consent pseudonym, the cached state).
//!
//! Each call is polled once (`now_or_never`): it must answer without awaiting, i.e. without
//! touching the store, or the bench stops. The cache is trusted for 1 s, so it is warmed again
//! (untimed) every `CHUNK` calls.
//!
//! - `consent_ledger/*/citizens_N`: the same cached call, and a read from the store, with
//!   10 000 and 1 000 000 other citizens in the ledger (issue 18, item 3: flat).
//!
//! Run: `cargo bench --bench consent`. Record results in docs/performance.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use guichet::app::{AppState, Application, Deps};
use guichet::audit::{Actor, ActorKind, Channel, Ident, IdentityCheck};
use guichet::auth::session::{Kind, NewSession, Session};
use guichet::clock::{SystemClock, SystemRandom};
use guichet::config::{RouteAccess, RouteSettings};
use guichet::consent::{Recorder, State, find_purpose};
use guichet::policy::load::SourceFile;
use guichet::policy::{PolicySource, RequestFacts};
use guichet::proxy::context::{Decision, Identity, RequestContext};
use http::{Method, Uri};
use secrecy::SecretString;

const NEWSLETTER: &str = include_str!("../policies/lettre-information.toml");
const ACTIVITY: &str = "lettre-information";
const PURPOSE: &str = "envoi";
/// Calls timed between two (untimed) cache warm-ups: far below the 1 s the cache is trusted.
const CHUNK: u64 = 20_000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: AppState,
    session: Arc<Session>,
    subject: String,
    notice_version: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut loaded = common::settings(dir.path());
    let s = &mut loaded.settings;
    let mut lettre = RouteSettings::new("lettre", "/lettre-information", "http://127.0.0.1:9");
    lettre.access = RouteAccess::Citizen;
    s.routes.push(lettre);
    let mut config = loaded.validate().unwrap();
    config.store_url = SecretString::from(format!("sqlite://{}", dir.path().join("guichet.db").display()));
    let deps = Deps { clock: Arc::new(SystemClock), random: Arc::new(SystemRandom::new()) };
    let policies = PolicySource::Memory(vec![SourceFile { name: "lettre.toml".into(), text: NEWSLETTER.into() }]);
    let app = rt.block_on(Application::build_with_policies(config, deps, policies)).unwrap().state();

    let new = NewSession {
        kind: Kind::Citizen,
        issuer: "http://127.0.0.1:9/unused".into(),
        subject: "sub-bench".into(),
        provider_sid: None,
        acr: "eidas1".into(),
        claims: BTreeMap::new(),
        roles: vec![],
        id_token: "unused".into(),
    };
    let (_, session) = rt.block_on(app.auth.sessions.create(new)).unwrap();
    let subject = app.auth.consent_subject(&session).to_owned();
    let purpose = find_purpose(&app.policies.load().activities, ACTIVITY, PURPOSE).unwrap();
    let by = Recorder {
        actor: Actor { kind: ActorKind::Citizen, id: Ident::new(subject.clone()).unwrap() },
        role: Ident::new("citizen").unwrap(),
        channel: Channel::Online,
        identified_by: IdentityCheck::SignIn,
        request_id: None,
    };
    rt.block_on(app.consent.record(&app.audit, &subject, &purpose, true, by)).unwrap();
    let notice_version = purpose.notice_version.clone();
    Fixture { rt, app, session, subject, notice_version, _dir: dir }
}

impl Fixture {
    fn warm(&self) {
        self.rt.block_on(self.app.consent.reload(&self.subject)).unwrap();
    }

    /// Times `iters` calls of `one`, warming the cache (untimed) every [`CHUNK`] calls.
    fn timed(&self, iters: u64, mut one: impl FnMut()) -> Duration {
        let mut total = Duration::ZERO;
        let mut left = iters;
        while left > 0 {
            let n = left.min(CHUNK);
            self.warm();
            let start = Instant::now();
            for _ in 0..n {
                one();
            }
            total += start.elapsed();
            left -= n;
        }
        total
    }

    /// The request context the phases before `check_consent` leave for a GET of the
    /// newsletter route by this citizen.
    fn context(&self) -> RequestContext {
        let mut ctx = RequestContext::new(Arc::from("bench"), "127.0.0.1:40000".parse().unwrap(), false, true);
        ctx.host = "127.0.0.1".into();
        ctx.identity = Identity::Citizen(self.session.clone());
        let set = self.app.policies.load();
        let facts = RequestFacts {
            route: "lettre",
            host: Some("127.0.0.1"),
            path: "/lettre-information/",
            method: &Method::GET,
        };
        ctx.decision = match guichet::policy::decide(&set, &facts) {
            guichet::policy::Decision::Processing(p) => Some(Decision::Processing(p)),
            _ => panic!("the newsletter route must be a processing of the newsletter activity"),
        };
        ctx
    }
}

fn consent_check(c: &mut Criterion) {
    let f = fixture();
    let ctx = f.context();
    let uri: Uri = "/lettre-information/".parse().unwrap();
    // Both answer "given" from memory before anything is timed.
    f.warm();
    let state = f.app.consent.state(&f.subject, ACTIVITY, PURPOSE, &f.notice_version).now_or_never();
    assert!(matches!(state, Some(Ok(State::Given { .. }))), "{state:?}");
    assert!(matches!(f.app.proxy.check_consent(&ctx, &uri).now_or_never(), Some(Ok(()))));

    let mut g = c.benchmark_group("consent");
    g.bench_function("cached_state", |b| {
        b.iter_custom(|iters| {
            f.timed(iters, || {
                let s = f.app.consent.state(black_box(&f.subject), ACTIVITY, PURPOSE, &f.notice_version);
                let s = s.now_or_never().expect("the consent state left the cache");
                black_box(s.unwrap());
            })
        })
    });
    g.bench_function("check_consent_phase", |b| {
        b.iter_custom(|iters| {
            f.timed(iters, || {
                let r = f.app.proxy.check_consent(black_box(&ctx), &uri).now_or_never();
                r.expect("the consent phase left the cache").unwrap();
            })
        })
    });
    g.finish();
}

/// Adds ledger rows for `n` other citizens (one consent each), straight into the store's
/// table: only their number matters here, and the journal would take minutes to write them.
/// Sequence numbers far above the journal's own.
fn other_citizens(f: &Fixture, from: u64, n: u64) {
    let url = format!("sqlite://{}", f._dir.path().join("guichet.db").display());
    f.rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let sql = format!(
            "WITH RECURSIVE i(n) AS (SELECT {from} UNION ALL SELECT n + 1 FROM i WHERE n < {last}) \
             INSERT INTO consent_event (seq, subject, activity, purpose, given, at_us, body, hash) \
             SELECT 1000000000 + n, printf('autre-%d', n), '{ACTIVITY}', '{PURPOSE}', 1, 0, '{{}}', 'x' FROM i",
            last = from + n - 1
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        pool.close().await;
    });
}

/// The consent check with 10 000 and 1 000 000 other citizens in the ledger: from the cache
/// (a map lookup: flat) and from the store (`reload`, one indexed read: logarithmic).
fn ledger_scaling(c: &mut Criterion) {
    let f = fixture();
    let mut g = c.benchmark_group("consent_ledger");
    let mut seeded = 0u64;
    for n in [10_000u64, 1_000_000] {
        other_citizens(&f, seeded + 1, n - seeded);
        seeded = n;
        f.warm();
        g.bench_function(format!("cached_state/citizens_{n}"), |b| {
            b.iter_custom(|iters| {
                f.timed(iters, || {
                    let s = f.app.consent.state(black_box(&f.subject), ACTIVITY, PURPOSE, &f.notice_version);
                    black_box(s.now_or_never().expect("the consent state left the cache").unwrap());
                })
            })
        });
        g.bench_function(format!("reload_from_store/citizens_{n}"), |b| {
            b.iter(|| f.rt.block_on(f.app.consent.reload(black_box(&f.subject))).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, consent_check, ledger_scaling);
criterion_main!(benches);
