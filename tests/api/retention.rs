//! The retention engine end to end, on both engines with the injected clock: a citizen's
//! requests start the clocks, runs move each category through its phases on its day, each
//! end action happens (and the application is told through its rights endpoint), holds are
//! respected and in the evidence, two instances never act twice on a record, and after
//! `destroy` reveals show the placeholder.

use std::time::Duration;

use guichet::config::RouteAccess;
use guichet::retention::run::{Options, Report};
use guichet::store::RetentionRow;
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use time::Date;
use time::macros::date;

use crate::auth::SESSION;
use crate::consent::{choose, citizen};
use crate::helpers::{Backend, TestApp, TestAppBuilder, route, spawn_app, test_keys};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::propagation::{Mode, NEWSLETTER, RightsApp, wait_received};

const SECRET: &str = "secret-des-evenements-0123456789";
const EVENTS: &str = "/.guichet/api/v1/retention/events";

/// Three categories, one per end: the address is destroyed a year after the last request
/// (with a notice 30 days before), the name goes to intermediate archive for two years then
/// to the archivist, the subscription is anonymised the day after the unsubscription the
/// application reports.
const THREE_ENDS: &str = r#"[[categories]]
id = "contact"
name = "Adresse e-mail"
[categories.retention]
active = "1 year"
from = "last_activity"
then = "destroy"
notice_before = "30 days"

[[categories]]
id = "identite"
name = "Nom"
[categories.retention]
active = "1 year"
from = "last_activity"
intermediate = "2 years"
then = "archive_review"
archive_visible_to = ["archives"]
producing_service = "Service de la communication"
source = "Délibération du conseil municipal (essai)"

[[categories]]
id = "inscription"
name = "Inscription"
[categories.retention]
active = "1 day"
from = "event"
event = "desinscription"
event_label = "votre désinscription"
then = "anonymise"

[[fields]]
name = "email"
category = "contact"
in = ["form", "json", "query"]
protection = "encrypt"
visible_to = ["service-communication"]

"#;

/// Two categories of one activity with different ends: the address a year after the last
/// request, the name three years after.
const TWO_CATEGORIES: &str = r#"[[categories]]
id = "contact"
name = "Adresse e-mail"
[categories.retention]
active = "1 year"
from = "last_activity"
then = "destroy"

[[categories]]
id = "identite"
name = "Nom"
[categories.retention]
active = "3 years"
from = "last_activity"
then = "destroy"

[[fields]]
name = "email"
category = "contact"
in = ["form", "json", "query"]
protection = "encrypt"
visible_to = ["service-communication"]

[[fields]]
name = "nom"
category = "identite"
in = ["form", "json", "query"]
protection = "encrypt"
visible_to = ["service-communication"]

"#;

/// One category, destroyed a year after the last request.
const ONE_CATEGORY: &str = r#"[[categories]]
id = "contact"
name = "Adresse e-mail"
[categories.retention]
active = "1 year"
from = "last_activity"
then = "destroy"

[[fields]]
name = "email"
category = "contact"
in = ["form", "json", "query"]
protection = "encrypt"
visible_to = ["service-communication"]

"#;

struct Setup {
    app: TestApp,
    mock: MockProvider,
    rights_app: RightsApp,
    builder_parts: (std::net::SocketAddr, String, guichet::config::KeysSettings, std::path::PathBuf),
    _dir: TempDir,
}

fn policy(categories: &str, rights_addr: std::net::SocketAddr) -> String {
    let start = NEWSLETTER.find("[[categories]]").unwrap();
    let end = NEWSLETTER.find("[[recipients]]").unwrap();
    let text = format!("{}{categories}{}", &NEWSLETTER[..start], &NEWSLETTER[end..]);
    crate::helpers::lenient(&text).replacen(
        "rights_endpoint = \"/droits\"",
        &format!("rights_endpoint = \"http://{rights_addr}/droits\"\nrights_route = \"lettre\""),
        1,
    )
}

fn gateway(
    mock: &MockProvider,
    backend: Backend,
    policy: &str,
    keys: &guichet::config::KeysSettings,
    dir: &std::path::Path,
) -> TestAppBuilder {
    let secret_file = dir.join("rappel.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let signing_key = dir.join("assertion.pem");
    if !signing_key.exists() {
        std::fs::write(&signing_key, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    }
    let keys = keys.clone();
    spawn_app().backend(backend).with_citizen_provider(mock.issuer()).with_policies(&[("lettre.toml", policy)]).with(
        move |s, up| {
            let mut lettre = route("lettre", "/lettre-information", &format!("http://{up}"));
            lettre.access = RouteAccess::Citizen;
            lettre.no_personal_data = false;
            lettre.rights_callback_secret_file = Some(secret_file);
            lettre.timeouts.response_headers = Duration::from_secs(2);
            s.routes.push(lettre);
            s.keys = Some(keys);
            s.auth.assertion_key_file = Some(signing_key);
            // Runs are driven by the tests.
            s.retention.run_every = Duration::ZERO;
        },
    )
}

async fn setup(backend: Backend, categories: &str) -> Setup {
    let mock = MockProvider::start().await;
    let (rights_app, addr) = RightsApp::start(Mode::AnswerNow).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let text = policy(categories, addr);
    let app = gateway(&mock, backend, &text, &keys, dir.path()).start().await;
    rights_app.trust(&app);
    Setup { app, mock, rights_app, builder_parts: (addr, text, keys, dir.path().to_owned()), _dir: dir }
}

impl Setup {
    /// Another instance on the same store.
    async fn second_instance(&self, backend: Backend) -> TestApp {
        let (_, text, keys, dir) = &self.builder_parts;
        gateway(&self.mock, backend, text, keys, dir).with_store_url(self.app.store_url.clone()).start().await
    }
}

/// A citizen who gave consent and made one request on the activity's routes; returns their
/// session and the pseudonym the application knows them by.
async fn active_citizen(app: &TestApp, mock: &MockProvider, sub: &str) -> (String, String) {
    let session = citizen(app, mock, sub).await;
    assert_eq!(choose(app, &session, "donner").await.status(), 303);
    let r = get(app, &session, "/lettre-information/").await;
    assert_eq!(r.status(), 200);
    let pseudonym = app.upstream.last().headers["x-guichet-subject"].to_str().unwrap().to_owned();
    (session, pseudonym)
}

async fn get(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    app.client.get(app.url(path)).header("cookie", format!("{SESSION}={session}")).send().await.unwrap()
}

/// Every record, once the background writer stored `n` of them (at most 10 s).
async fn records(app: &TestApp, n: usize) -> Vec<RetentionRow> {
    for _ in 0..200 {
        let all = app.state.retention.page(None, 1000).await.unwrap();
        if all.len() >= n {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gateway never recorded {n} retention records");
}

async fn all_rows(app: &TestApp, subject: &str) -> Vec<RetentionRow> {
    app.state.retention.records(subject, "lettre-information").await.unwrap()
}

fn phase_of<'a>(rows: &'a [RetentionRow], category: &str) -> &'a str {
    &rows.iter().find(|r| r.category == category).unwrap().phase
}

async fn run_on(app: &TestApp, today: Date) -> Report {
    guichet::retention::run::run(&app.state, Options { today, dry_run: false }, &|_| {}).await.unwrap()
}

pub(crate) async fn count(url: &SecretString, sql: &str) -> i64 {
    use secrecy::ExposeSecret;
    let url = url.expose_secret();
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

async fn report_event(app: &TestApp, secret: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(EVENTS))
        .header("authorization", format!("Bearer {secret}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

on_both_stores!(
    each_phase_and_each_end_action_happen_on_their_day,
    destroying_the_last_category_leaves_only_the_placeholder,
    one_category_is_destroyed_while_the_other_is_kept,
    holds_are_respected_and_in_the_evidence,
    two_instances_never_act_twice_on_a_record,
);

async fn each_phase_and_each_end_action_happen_on_their_day(backend: Backend) {
    let s = setup(backend, THREE_ENDS).await;
    let (session, pseudonym) = active_citizen(&s.app, &s.mock, "sub-angela").await;
    let rows = records(&s.app, 3).await;
    assert!(rows.iter().all(|r| r.phase == "active" && r.app_subject.as_deref() == Some(&*pseudonym)), "{rows:?}");
    let subject = rows[0].subject.clone();
    // The record names only the sector's pseudonym: the citizen is found to be told through
    // the pseudonyms they recorded (here with a counter code).
    crate::rights_agent::code_of(&s.app, &session).await;
    let consent_subject = s.app.state.rights.subject_of_field(&subject).await.unwrap().expect("recorded");

    // 2026-11-28 + 1 year = 2027-11-28; the notice is due 30 days before.
    assert_eq!(run_on(&s.app, date!(2027 - 10 - 28)).await.acted, 0, "nothing before the notice window");
    assert_eq!(run_on(&s.app, date!(2027 - 10 - 29)).await.acted, 1);
    // The deletion date, 2027-11-28, is stored as (year, day of the year).
    let notices = s.app.state.notify.of_subject(&consent_subject).await.unwrap();
    assert!(notices.iter().any(|n| n.kind == "retention" && n.notice.contains("[2027,332]")), "{notices:?}");
    assert_eq!(phase_of(&all_rows(&s.app, &subject).await, "contact"), "active", "a notice is not a deletion");

    // End of the active year: the address is destroyed, the name archived; the subscription
    // waits for its event.
    let report = run_on(&s.app, date!(2027 - 11 - 28)).await;
    assert_eq!(report.acted, 2, "{report:?}");
    let rows = all_rows(&s.app, &subject).await;
    assert_eq!(
        [phase_of(&rows, "contact"), phase_of(&rows, "identite"), phase_of(&rows, "inscription")],
        ["ended", "intermediate", "active"]
    );
    assert!(rows.iter().find(|r| r.category == "contact").unwrap().app_subject.is_none(), "the link is dropped");
    wait_received(&s.rights_app, 2).await;
    let told = s.rights_app.received();
    let of_type =
        |t: &str| told.iter().find(|c| c["type"] == t).unwrap_or_else(|| panic!("no {t} in {told:?}")).clone();
    let erasure = of_type("erasure");
    assert_eq!((erasure["reason"].as_str(), erasure["category"].as_str()), (Some("retention"), Some("contact")));
    assert_eq!(erasure["subject_identity"]["value"], pseudonym.as_str());
    assert_eq!(of_type("archived")["category"], "identite");

    // The application reports the unsubscription: authenticated, idempotent by event id.
    let event = json!({ "event_id": "evt-1", "activity": "lettre-information", "event": "desinscription",
                        "subject": pseudonym, "occurred_at": "2027-12-01" });
    assert_eq!(report_event(&s.app, "wrong-secret", &event).await.status(), 401);
    let first = report_event(&s.app, SECRET, &event).await;
    assert_eq!(first.status(), 201);
    let again = report_event(&s.app, SECRET, &event).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["duplicate"], true);
    let stranger = json!({ "event_id": "evt-2", "activity": "lettre-information", "event": "desinscription",
                           "subject": "nobody-we-know" });
    assert_eq!(report_event(&s.app, SECRET, &stranger).await.status(), 404);
    let unknown = json!({ "event_id": "evt-3", "activity": "lettre-information", "event": "demenagement",
                          "subject": pseudonym });
    assert_eq!(report_event(&s.app, SECRET, &unknown).await.status(), 422);

    assert_eq!(run_on(&s.app, date!(2027 - 12 - 01)).await.acted, 0, "one day after the event, not before");
    assert_eq!(run_on(&s.app, date!(2027 - 12 - 02)).await.acted, 1);
    let rows = all_rows(&s.app, &subject).await;
    assert_eq!(phase_of(&rows, "inscription"), "ended");
    assert!(rows.iter().find(|r| r.category == "inscription").unwrap().app_subject.is_none(), "link dropped");
    wait_received(&s.rights_app, 3).await;
    assert!(s.rights_app.received().iter().any(|c| c["type"] == "anonymisation" && c["category"] == "inscription"));

    // End of the archive: the name goes to the archivist's review, not to deletion.
    assert_eq!(run_on(&s.app, date!(2029 - 11 - 27)).await.acted, 0);
    assert_eq!(run_on(&s.app, date!(2029 - 11 - 28)).await.acted, 1);
    assert_eq!(phase_of(&all_rows(&s.app, &subject).await, "identite"), "review");
    assert_eq!(run_on(&s.app, date!(2030 - 01 - 01)).await.acted, 0, "a record is acted on once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.rights_app.received().len(), 3, "each application message sent once");

    // Evidence: one journal entry per run, with the counts, never the pseudonyms.
    let url = &s.app.store_url;
    let runs = count(url, "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run'").await;
    assert_eq!(runs, 8);
    let naming =
        format!("SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%{subject}%'");
    assert_eq!(count(url, &naming).await, 0, "the evidence holds hashed ids only");
    let destroy_line =
        "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%\"action\":\"destroy\"%'";
    assert_eq!(count(url, destroy_line).await, 1);
    assert_eq!(count(url, "SELECT COUNT(*) FROM retention_run_item").await, 5);
}

/// R29/R30 with keys per retention class: the address's key is shredded on its day while the
/// name, sealed under another class key of the same citizen and activity, still opens.
async fn one_category_is_destroyed_while_the_other_is_kept(backend: Backend) {
    let s = setup(backend, TWO_CATEGORIES).await;
    let (angela, _) = active_citizen(&s.app, &s.mock, "sub-angela").await;
    let r = get(&s.app, &angela, "/lettre-information/inscrire?email=angela%40exemple.fr&nom=Angela").await;
    assert_eq!(r.status(), 200);
    let stored = s.app.upstream.last().path_and_query;
    let token_of = |name: &str| {
        let at = stored.find(&format!("{name}=")).unwrap() + name.len() + 1;
        stored[at..].split('&').next().unwrap().to_owned()
    };
    let (email, nom) = (token_of("email"), token_of("nom"));
    assert!(email.starts_with("gch2.") && nom.starts_with("gch2."), "{stored}");
    let see = |t: String| {
        let app = &s.app;
        let angela = &angela;
        async move { get(app, angela, &format!("/lettre-information/voir?t={t}")).await.text().await.unwrap() }
    };
    assert!(see(nom.clone()).await.contains("Angela"));
    let subject = records(&s.app, 2).await[0].subject.clone();

    let report = run_on(&s.app, date!(2027 - 11 - 28)).await;
    assert_eq!(report.acted, 1, "only the address ends after a year");
    let rows = all_rows(&s.app, &subject).await;
    assert_eq!(phase_of(&rows, "contact"), "ended");
    assert_eq!(phase_of(&rows, "identite"), "active");
    let after = see(email).await;
    assert!(after.contains("[donnée protégée]") && !after.contains("angela@exemple.fr"), "{after}");
    let kept = see(nom).await;
    assert!(kept.contains("Angela") && !kept.contains("[donnée protégée]"), "the name still opens: {kept}");
}

async fn destroying_the_last_category_leaves_only_the_placeholder(backend: Backend) {
    let s = setup(backend, ONE_CATEGORY).await;
    let (angela, _) = active_citizen(&s.app, &s.mock, "sub-angela").await;
    let r = get(&s.app, &angela, "/lettre-information/inscrire?email=angela%40exemple.fr").await;
    assert_eq!(r.status(), 200);
    let stored = s.app.upstream.last().path_and_query;
    let token = stored.split("email=").nth(1).unwrap().to_owned();
    assert!(token.starts_with("gch2."), "the application holds a token: {stored}");
    let before = get(&s.app, &angela, &format!("/lettre-information/voir?t={token}")).await.text().await.unwrap();
    assert!(before.contains("angela@exemple.fr"), "the citizen sees her own address: {before}");
    let rows = records(&s.app, 1).await;

    let report = run_on(&s.app, date!(2027 - 11 - 28)).await;
    assert_eq!(report.acted, 1);
    assert_eq!(phase_of(&all_rows(&s.app, &rows[0].subject).await, "contact"), "ended");
    let after = get(&s.app, &angela, &format!("/lettre-information/voir?t={token}")).await.text().await.unwrap();
    assert!(after.contains("[donnée protégée]") && !after.contains("angela@exemple.fr"), "{after}");
    wait_received(&s.rights_app, 1).await;
    let told = &s.rights_app.received()[0];
    assert_eq!((told["type"].as_str(), told["reason"].as_str()), (Some("erasure"), Some("retention")));
}

async fn holds_are_respected_and_in_the_evidence(backend: Backend) {
    let s = setup(backend, THREE_ENDS).await;
    active_citizen(&s.app, &s.mock, "sub-angela").await;
    let rows = records(&s.app, 3).await;
    let subject = rows[0].subject.clone();
    s.app.state.retention.hold(&subject, "lettre-information", "Contentieux en cours").await.unwrap();

    let report = run_on(&s.app, date!(2027 - 11 - 28)).await;
    assert_eq!((report.acted, report.skipped_holds), (0, 2), "{report:?}");
    let rows = all_rows(&s.app, &subject).await;
    assert!(rows.iter().all(|r| r.phase == "active" && r.notice_deletion_on.is_none()), "{rows:?}");
    let held =
        "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%\"action\":\"held\"%'";
    assert_eq!(count(&s.app.store_url, held).await, 1, "the skip is in the evidence");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.rights_app.received().is_empty(), "nothing was told to the application");

    assert!(s.app.state.retention.release(&subject, "lettre-information").await.unwrap());
    let report = run_on(&s.app, date!(2027 - 11 - 28)).await;
    assert_eq!((report.acted, report.skipped_holds), (2, 0), "{report:?}");
}

async fn two_instances_never_act_twice_on_a_record(backend: Backend) {
    let s = setup(backend, THREE_ENDS).await;
    for sub in ["sub-a", "sub-b", "sub-c", "sub-d"] {
        active_citizen(&s.app, &s.mock, sub).await;
    }
    records(&s.app, 12).await;
    let other = s.second_instance(backend).await;
    // Long past every end: each citizen's address gets its notice, each name its review.
    let day = date!(2029 - 11 - 28);
    let (a, b) = tokio::join!(
        guichet::retention::run::run(&s.app.state, Options { today: day, dry_run: false }, &|_| {}),
        guichet::retention::run::run(&other.state, Options { today: day, dry_run: false }, &|_| {}),
    );
    let acted = |r: &Result<Report, guichet::retention::RetentionError>| match r {
        Ok(r) => r.acted,
        Err(guichet::retention::RetentionError::Busy) => 0,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(acted(&a) + acted(&b), 8, "{a:?} {b:?}");
    assert_eq!(count(&s.app.store_url, "SELECT COUNT(*) FROM retention_run_item").await, 8);
    let again = run_on(&other, day).await;
    assert_eq!(again.acted, 0, "{again:?}");
}

#[tokio::test]
async fn a_plan_changes_nothing() {
    let s = setup(Backend::Sqlite, THREE_ENDS).await;
    active_citizen(&s.app, &s.mock, "sub-angela").await;
    records(&s.app, 3).await;
    let day = date!(2027 - 11 - 28);
    let plan =
        guichet::retention::run::run(&s.app.state, Options { today: day, dry_run: true }, &|_| {}).await.unwrap();
    let key = |c: &str, a: &str| ("lettre-information".to_owned(), c.to_owned(), "active".to_owned(), a.to_owned());
    assert_eq!(plan.lines.get(&key("contact", "notice")), Some(&1), "{plan:?}");
    assert_eq!(plan.lines.get(&key("identite", "intermediate")), Some(&1), "{plan:?}");
    assert_eq!(plan.lines.get(&key("inscription", "none")), Some(&1), "{plan:?}");
    let rows = records(&s.app, 3).await;
    assert!(rows.iter().all(|r| r.phase == "active" && r.notice_deletion_on.is_none()));
    assert_eq!(count(&s.app.store_url, "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run'").await, 0);
}

on_both_stores!(a_run_killed_half_way_then_run_again_acts_once_per_record);

/// `guichet retention run` (the real binary) is killed with SIGKILL half-way through 3000
/// due records; run again once its lease ran out, it finishes: every record is acted on
/// exactly once, and each application message is queued once.
async fn a_run_killed_half_way_then_run_again_acts_once_per_record(backend: Backend) {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let fixture = include_str!("../fixtures/policies/retention-duration/a.toml")
        .replace("active = \"three years\"", "active = \"1 day\"")
        .replace("then = \"destroy\"", "then = \"anonymise\"")
        .replace(
            "[controller]",
            "rights_endpoint = \"http://127.0.0.1:9/droits\"\nrights_route = \"app\"\n\n[controller]",
        );
    std::fs::write(policies.join("essai.toml"), fixture).unwrap();
    let config = dir.path().join("guichet.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
data_dir = {data:?}

[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1"

[admin]
enabled = false

[store]
url = {url:?}

[policy]
dir = {policies:?}

[retention]
batch = 50
lease = "1s"

[[routes]]
name = "app"
path_prefix = "/"
upstream = "http://127.0.0.1:9"
no_personal_data = true
"#,
            data = dir.path().join("data").display().to_string(),
            url = secrecy::ExposeSecret::expose_secret(&url),
            policies = policies.display().to_string(),
        ),
    )
    .unwrap();
    let guichet = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"));
        c.args(args).arg("--config").arg(&config).env_remove("GUICHET_CONFIG").env_remove("RUST_LOG");
        c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        c
    };
    assert!(guichet(&["migrate"]).status().unwrap().success());
    // Enough records that the run is still going when it is killed after its first batch,
    // however fast the machine (SQLite runs several times faster than PostgreSQL here; the
    // ends of a page are taken in a few transactions).
    let n = if matches!(backend, Backend::Sqlite) { 40_000 } else { 12_000 };
    crate::helpers::raw_sql(
        &url,
        &format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO retention_record (subject, activity, category, route, app_subject, \
             collected_at_us, phase, phase_since_us) \
             SELECT 's' || i, 'essai', 'c', 'app', 'p' || i, 0, 'active', 0 FROM n"
        ),
    )
    .await;

    let mut first = guichet(&["retention", "run"]).spawn().unwrap();
    let items = "SELECT COUNT(*) FROM retention_run_item";
    let mut seen = 0;
    for _ in 0..3000 {
        seen = count(&url, items).await;
        if seen >= 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = count(&url, items).await;
    assert!(seen >= 50 && at_kill < n, "the run was killed half-way: {at_kill} of {n} done");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(guichet(&["retention", "run"]).status().unwrap().success());
    assert_eq!(count(&url, items).await, n, "each record acted on once");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM retention_record WHERE phase = 'ended'").await, n);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM job WHERE kind = 'retention.tell'").await, n, "told once each");
    let runs = count(&url, "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run'").await;
    assert_eq!(runs, 1, "the finishing run's evidence counts the killed run's steps too");
}

on_both_stores!(archive_review_lines_are_destroyed_only_after_the_visa_and_refused_ones_never);

/// Code du patrimoine L212-2: the names reach the end of their DUA and go on one elimination
/// list (the run's, for their producing service); nothing is destroyed while the list waits;
/// the archivist refuses one line (kept for good) and gives the visa: only the approved line
/// is destroyed, by the next run, and its application is told.
async fn archive_review_lines_are_destroyed_only_after_the_visa_and_refused_ones_never(backend: Backend) {
    use guichet::retention::elimination;
    let s = setup(backend, THREE_ENDS).await;
    active_citizen(&s.app, &s.mock, "sub-angela").await;
    active_citizen(&s.app, &s.mock, "sub-bruno").await;
    let rows = records(&s.app, 6).await;
    let mut subjects: Vec<String> = rows.iter().map(|r| r.subject.clone()).collect();
    subjects.dedup();
    assert_eq!(subjects.len(), 2, "{rows:?}");
    run_on(&s.app, date!(2027 - 11 - 28)).await;
    let report = run_on(&s.app, date!(2029 - 11 - 28)).await;
    let key = (
        "lettre-information".to_owned(),
        "identite".to_owned(),
        "intermediate".to_owned(),
        "archive_review".to_owned(),
    );
    assert_eq!(report.lines.get(&key), Some(&2), "{report:?}");

    let retention = &s.app.state.retention;
    let pending = retention.pending_elimination_lists().await.unwrap();
    assert_eq!(pending.len(), 1, "one list per run and producing service: {pending:?}");
    let reference = pending[0].reference.clone();
    assert!(reference.starts_with("BE-"), "{reference}");
    // The run's evidence names the list it produced; the runs that produced none name none.
    let naming = format!(
        "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' \
         AND body LIKE '%\"run\":\"{}\"%' AND body LIKE '%\"elimination_lists\":[\"{reference}\"]%'",
        report.run_id
    );
    assert_eq!(count(&s.app.store_url, &naming).await, 1, "the run's journal entry names its list");
    let any = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%elimination_lists%'";
    assert_eq!(count(&s.app.store_url, any).await, 1, "only the run that produced a list names one");
    assert_eq!(pending[0].producing_service, "Service de la communication");
    let list = retention.elimination_list(&reference).await.unwrap().unwrap();
    assert_eq!(list.lines.len(), 2);
    assert!(list.lines.iter().all(|l| l.category == "identite" && l.decision.is_none()));

    // Without a visa, runs leave the records alone, however late.
    let report = run_on(&s.app, date!(2035 - 01 - 01)).await;
    assert_eq!((report.acted, report.eliminated), (0, 0), "{report:?}");
    for subject in &subjects {
        assert_eq!(phase_of(&all_rows(&s.app, subject).await, "identite"), "review");
    }

    // One line refused (with a reason), then the visa for the rest.
    let refused_line = list.lines.iter().find(|l| l.subject == subjects[1]).unwrap();
    let no_reason = elimination::refuse(&s.app.state, &reference, Some(&refused_line.record_hash), "a.dubois", " ");
    assert!(matches!(no_reason.await, Err(elimination::DecisionError::NoReason)));
    let n = elimination::refuse(
        &s.app.state,
        &reference,
        Some(&refused_line.record_hash),
        "a.dubois",
        "Intérêt historique : à verser aux Archives",
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(phase_of(&all_rows(&s.app, &subjects[1]).await, "identite"), "kept");
    assert_eq!(elimination::visa(&s.app.state, &reference, "a.dubois", Some("AD-2035-17")).await.unwrap(), 1);
    assert!(retention.pending_elimination_lists().await.unwrap().is_empty());
    assert!(matches!(
        elimination::visa(&s.app.state, &reference, "a.dubois", None).await,
        Err(elimination::DecisionError::AlreadyDecided)
    ));
    // The visa alone destroys nothing: the next run does.
    assert_eq!(phase_of(&all_rows(&s.app, &subjects[0]).await, "identite"), "review");

    let report = run_on(&s.app, date!(2035 - 01 - 02)).await;
    assert_eq!(report.eliminated, 1, "{report:?}");
    assert_eq!(phase_of(&all_rows(&s.app, &subjects[0]).await, "identite"), "ended");
    assert_eq!(
        phase_of(&all_rows(&s.app, &subjects[1]).await, "identite"),
        "kept",
        "a refused line is never destroyed"
    );
    // 2 × (erasure of the address, archived name) + the erasure of the approved name.
    wait_received(&s.rights_app, 5).await;
    let erasures: Vec<_> =
        s.rights_app.received().into_iter().filter(|c| c["type"] == "erasure" && c["category"] == "identite").collect();
    assert_eq!(erasures.len(), 1, "{erasures:?}");
    let list = retention.elimination_list(&reference).await.unwrap().unwrap();
    let destroyed: Vec<_> = list.lines.iter().map(|l| (l.decision.as_deref(), l.destroyed_at_us.is_some())).collect();
    assert!(destroyed.contains(&(Some("approved"), true)) && destroyed.contains(&(Some("refused"), false)));

    // Again: nothing more, and the evidence counts the elimination once.
    assert_eq!(run_on(&s.app, date!(2040 - 01 - 01)).await.eliminated, 0);
    assert_eq!(phase_of(&all_rows(&s.app, &subjects[1]).await, "identite"), "kept");
    let url = &s.app.store_url;
    let eliminated = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%\"action\":\"eliminated\"%'";
    assert_eq!(count(url, eliminated).await, 1);
    let decisions = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'dpo_action' AND body LIKE '%elimination_%'";
    assert_eq!(count(url, decisions).await, 2, "the refusal and the visa are journaled");
}

on_both_stores!(
    only_the_archivist_sees_and_decides_elimination_lists,
    an_elimination_list_reads_back_as_ods_and_prints_as_html
);

const ARCHIVES: &str = "/.guichet/archives";

/// THREE_ENDS with an agent provider: `a.dubois@archives.example.fr` is the archivist,
/// `x@mairie.example.fr` an état-civil agent; two citizens' names are on one list.
async fn with_a_list(backend: Backend) -> (Setup, MockProvider, String) {
    let mock = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let (rights_app, addr) = RightsApp::start(Mode::AnswerNow).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let text = policy(THREE_ENDS, addr);
    let app = gateway(&mock, backend, &text, &keys, dir.path())
        .with_agent_provider(agents.issuer())
        .with(|s, _| {
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "archiviste".into(),
                siret: vec![],
                email_domains: vec!["archives.example.fr".into()],
                uids: vec![],
            });
        })
        .start()
        .await;
    rights_app.trust(&app);
    let s = Setup { app, mock, rights_app, builder_parts: (addr, text, keys, dir.path().to_owned()), _dir: dir };
    active_citizen(&s.app, &s.mock, "sub-angela").await;
    active_citizen(&s.app, &s.mock, "sub-bruno").await;
    records(&s.app, 6).await;
    run_on(&s.app, date!(2027 - 11 - 28)).await;
    run_on(&s.app, date!(2029 - 11 - 28)).await;
    let pending = s.app.state.retention.pending_elimination_lists().await.unwrap();
    assert_eq!(pending.len(), 1);
    let reference = pending[0].reference.clone();
    (s, agents, reference)
}

async fn agent_session(app: &TestApp, agents: &MockProvider, siret: &str, email: &str) -> String {
    let r = crate::auth::agent_sign_in(app, agents, crate::auth::agent_info(siret, email), "").await;
    crate::auth::cookie(&r, SESSION).expect("agent session cookie")
}

async fn post_form(app: &TestApp, session: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    app.client
        .post(app.url(path))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

async fn only_the_archivist_sees_and_decides_elimination_lists(backend: Backend) {
    let (s, agents, reference) = with_a_list(backend).await;
    let show = format!("{ARCHIVES}/{reference}");
    let api = "/.guichet/api/v1/retention/eliminations";

    // Without a session: sign-in first; another agent: 403, journaled, nothing decided.
    let anonymous = s.app.client.get(s.app.url(&format!("{ARCHIVES}/"))).send().await.unwrap();
    assert_ne!(anonymous.status(), 200);
    let clerk = agent_session(&s.app, &agents, "21750001600019", "x@mairie.example.fr").await;
    for path in [format!("{ARCHIVES}/"), show.clone(), format!("{show}/bordereau.ods"), api.to_owned()] {
        assert_eq!(get(&s.app, &clerk, &path).await.status(), 403, "{path}");
    }
    let r = post_form(&s.app, &clerk, &show, &[("action", "visa"), ("csrf", "x")]).await;
    assert_eq!(r.status(), 403);
    s.app.state.audit.flush().await.unwrap();
    let denied = "SELECT COUNT(*) FROM audit_entry WHERE body LIKE '%\"archives.%' AND body LIKE '%denied%'";
    assert_eq!(count(&s.app.store_url, denied).await, 5, "each refusal is journaled");
    assert_eq!(s.app.state.retention.pending_elimination_lists().await.unwrap().len(), 1, "still waiting");

    // The archivist: the lists, one list with its forms, a refusal and the visa, no JavaScript.
    let anne = agent_session(&s.app, &agents, "11111111111111", "a.dubois@archives.example.fr").await;
    let r = get(&s.app, &anne, &format!("{ARCHIVES}/")).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains(&reference) && html.contains("En attente de votre visa"), "{html}");
    let html = get(&s.app, &anne, &show).await.text().await.unwrap();
    assert!(html.contains("Donner mon visa") && !html.contains("<script"), "{html}");
    let csrf = csrf_of(&html);
    let r = post_form(&s.app, &anne, &show, &[("action", "visa"), ("csrf", "wrong")]).await;
    assert_eq!(r.status(), 403, "a forged form is refused");
    let list = s.app.state.retention.elimination_list(&reference).await.unwrap().unwrap();
    let line = list.lines[0].record_hash.clone();
    let r = post_form(&s.app, &anne, &show, &[("action", "refuser"), ("line", &line), ("reason", ""), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 422, "a refusal needs a reason");
    assert!(r.text().await.unwrap().contains("écrivez la raison"));
    let form = [("action", "refuser"), ("line", &line), ("reason", "Intérêt historique"), ("csrf", &csrf)];
    assert_eq!(post_form(&s.app, &anne, &show, &form).await.status(), 303);
    let form = [("action", "visa"), ("visa_reference", "AD-2029-4"), ("csrf", &csrf)];
    let r = post_form(&s.app, &anne, &show, &form).await;
    assert_eq!(r.status(), 303);
    assert!(s.app.state.retention.pending_elimination_lists().await.unwrap().is_empty());
    let list = s.app.state.retention.elimination_list(&reference).await.unwrap().unwrap();
    assert!(list.list.visa_by.as_deref().is_some_and(|by| !by.is_empty()));
    assert_eq!(list.list.visa_reference.as_deref(), Some("AD-2029-4"));
    let decisions: Vec<_> = list.lines.iter().map(|l| l.decision.clone().unwrap()).collect();
    assert_eq!(decisions.iter().filter(|d| *d == "refused").count(), 1, "{decisions:?}");
    assert_eq!(decisions.iter().filter(|d| *d == "approved").count(), 1, "{decisions:?}");

    // The read-only API says the same.
    let r = get(&s.app, &anne, api).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["lists"][0]["reference"], reference.as_str());
    assert_eq!(v["lists"][0]["visa"]["reference"], "AD-2029-4");
    let v: Value = get(&s.app, &anne, &format!("{api}/{reference}")).await.json().await.unwrap();
    assert_eq!(v["lines"].as_array().unwrap().len(), 2);
    assert_eq!(v["groups"][0]["count"], 2);
    assert_eq!(get(&s.app, &anne, &format!("{api}/BE-inconnu")).await.status(), 404);
}

async fn an_elimination_list_reads_back_as_ods_and_prints_as_html(backend: Backend) {
    let (s, agents, reference) = with_a_list(backend).await;
    let anne = agent_session(&s.app, &agents, "11111111111111", "a.dubois@archives.example.fr").await;
    let r = get(&s.app, &anne, &format!("{ARCHIVES}/{reference}/bordereau.ods")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.oasis.opendocument.spreadsheet");
    let bytes = r.bytes().await.unwrap();
    let wb = spreadsheet_ods::read_ods_buf(&bytes).expect("a readable OpenDocument spreadsheet");
    let sheet = wb.sheet(0);
    let cell = |row: u32, col: u32| sheet.value(row, col).as_str_opt().unwrap_or_default().to_owned();
    let headers: Vec<String> = (0..14).map(|c| cell(0, c)).collect();
    for h in ["Service producteur", "Typologie", "Date de début", "Date de fin", "Nombre de dossiers", "DUA"] {
        assert!(headers.iter().any(|x| x == h), "{h} in {headers:?}");
    }
    assert_eq!(cell(1, 0), "Service de la communication");
    assert_eq!(cell(1, 1), reference);
    assert_eq!(cell(1, 3), "Nom");
    assert_eq!(cell(1, 6), "2", "two files");
    assert_eq!(cell(1, 9), "1 an (puis 2 ans en archive intermédiaire)");
    assert_eq!(cell(1, 10), "Délibération du conseil municipal (essai)");
    assert_eq!(cell(1, 11), "Destruction");
    assert_eq!(cell(1, 12), "", "no visa yet");

    guichet::retention::elimination::visa(&s.app.state, &reference, "a.dubois", None).await.unwrap();
    let r = get(&s.app, &anne, &format!("{ARCHIVES}/{reference}/bordereau")).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    for expected in [
        "Bordereau d'élimination",
        "Service de la communication",
        reference.as_str(),
        "Délibération du conseil municipal (essai)",
        "Destruction",
        "Vu et approuvé par a.dubois",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    assert!(
        !html.contains(&s.app.state.retention.elimination_list(&reference).await.unwrap().unwrap().lines[0].subject)
    );
}

on_both_stores!(the_archivist_decides_through_the_command_line);

/// `guichet retention eliminations list|show|export|visa|refuse` through the real binary: a
/// run puts three records on one list; one line is refused, the visa approves the others,
/// the next run destroys them and never the refused one.
async fn the_archivist_decides_through_the_command_line(backend: Backend) {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_store_url(backend, dir.path()).await;
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let fixture = include_str!("../fixtures/policies/retention-duration/a.toml")
        .replace("active = \"three years\"", "active = \"1 day\"")
        .replace(
            "then = \"destroy\"",
            "then = \"archive_review\"\nproducing_service = \"Service essai\"\nsource = \"Texte essai\"",
        )
        .replace(
            "[controller]",
            "rights_endpoint = \"http://127.0.0.1:9/droits\"\nrights_route = \"app\"\n\n[controller]",
        );
    std::fs::write(policies.join("essai.toml"), fixture).unwrap();
    let config = dir.path().join("guichet.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\ndata_dir = {data:?}\n\n[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"http://127.0.0.1\"\n\n\
             [admin]\nenabled = false\n\n[store]\nurl = {url:?}\n\n[policy]\ndir = {policies:?}\n\n\
             [[routes]]\nname = \"app\"\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n",
            data = dir.path().join("data").display().to_string(),
            url = secrecy::ExposeSecret::expose_secret(&url),
            policies = policies.display().to_string(),
        ),
    )
    .unwrap();
    let guichet = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_remove("GUICHET_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    guichet(&["migrate"]);
    crate::helpers::raw_sql(
        &url,
        "INSERT INTO retention_record (subject, activity, category, route, app_subject, \
         collected_at_us, phase, phase_since_us) VALUES ('s1', 'essai', 'c', 'app', 'p1', 0, 'active', 0), \
         ('s2', 'essai', 'c', 'app', 'p2', 0, 'active', 0), ('s3', 'essai', 'c', 'app', 'p3', 0, 'active', 0)",
    )
    .await;
    guichet(&["retention", "run"]);
    let listed = guichet(&["retention", "eliminations", "list"]);
    let reference = listed.split('\t').next().unwrap().to_owned();
    assert!(reference.starts_with("BE-") && listed.contains("Service essai\t3 lines\twaiting"), "{listed}");
    let shown = guichet(&["retention", "eliminations", "show", &reference]);
    let line = shown.lines().nth(1).unwrap().split('\t').next().unwrap().to_owned();
    guichet(&[
        "retention",
        "eliminations",
        "refuse",
        &reference,
        "--by",
        "a.dubois",
        "--reason",
        "Intérêt",
        "--line",
        &line,
    ]);
    let visa = guichet(&["retention", "eliminations", "visa", &reference, "--by", "a.dubois"]);
    assert!(visa.contains("2 lines approved"), "{visa}");
    let file = dir.path().join("bordereau.ods");
    guichet(&["retention", "eliminations", "export", &reference, "--out", file.to_str().unwrap()]);
    assert_eq!(&std::fs::read(&file).unwrap()[..2], b"PK");
    assert_eq!(count(&url, "SELECT COUNT(*) FROM retention_record WHERE phase = 'ended'").await, 0, "not before a run");
    guichet(&["retention", "run"]);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM retention_record WHERE phase = 'ended'").await, 2);
    assert_eq!(count(&url, "SELECT COUNT(*) FROM retention_record WHERE phase = 'kept'").await, 1);
    let shown = guichet(&["retention", "eliminations", "show", &reference]);
    assert_eq!(shown.matches("approved\tdestroyed").count(), 2, "{shown}");
    assert!(shown.contains(&format!("{line}\tessai\tc\trefused\n")), "{shown}");
}

on_both_stores!(a_record_past_its_end_waiting_on_its_notice_is_overdue);

/// Issue 16: a record past its end of life counts as overdue whatever keeps it, the notice
/// the policy promises included. The address's end is 2027-11-28; a run that missed the
/// notice window announces a later date, and until then the record is overdue, in the report,
/// the journal and the metric.
async fn a_record_past_its_end_waiting_on_its_notice_is_overdue(backend: Backend) {
    let s = setup(backend, THREE_ENDS).await;
    let (_, _) = active_citizen(&s.app, &s.mock, "sub-angela").await;
    records(&s.app, 3).await;
    let report = run_on(&s.app, date!(2027 - 10 - 01)).await;
    assert_eq!(report.overdue, 0, "before its end: {report:?}");
    let report = run_on(&s.app, date!(2028 - 01 - 15)).await;
    assert_eq!(report.lines.get(&line("contact", "active", "notice")), Some(&1), "{report:?}");
    assert_eq!(report.overdue, 1, "past its end, the notice only now sent: {report:?}");
    let report = run_on(&s.app, date!(2028 - 01 - 20)).await;
    assert_eq!(report.acted, 0, "{report:?}");
    assert_eq!(report.overdue, 1, "waiting for the announced date, still overdue: {report:?}");
    let journaled =
        "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND body LIKE '%\"overdue\":1%'";
    assert_eq!(count(&s.app.store_url, journaled).await, 2, "the two runs past its end journal it, not the first");
    assert_eq!(s.app.state.metrics.retention.overdue.get(), 1, "the metric too");
    // On the announced date (30 days after the notice) the address is destroyed.
    let report = run_on(&s.app, date!(2028 - 02 - 14)).await;
    assert_eq!(report.lines.get(&line("contact", "active", "destroy")), Some(&1), "{report:?}");
    assert_eq!(report.overdue, 0, "{report:?}");
}

fn line(category: &str, phase: &str, action: &str) -> (String, String, String, String) {
    ("lettre-information".to_owned(), category.to_owned(), phase.to_owned(), action.to_owned())
}

on_both_stores!(the_archivist_decides_through_the_json_api);

/// The visa and refusals through the JSON API: the same service calls as the page and the
/// command line. Another agent gets 403 (journaled) and decides nothing; a form post (what a
/// cross-site page could send) is refused; a refusal needs a reason; the decisions are
/// journaled; a second visa is a conflict. The answers are the ones docs/openapi.json states.
async fn the_archivist_decides_through_the_json_api(backend: Backend) {
    use crate::openapi::checked;
    let (s, agents, reference) = with_a_list(backend).await;
    let api = "/.guichet/api/v1/retention/eliminations";
    let (visa, refuse) = (format!("{api}/{reference}/visa"), format!("{api}/{reference}/refuse"));
    let (visa_doc, refuse_doc) = (format!("{api}/{{reference}}/visa"), format!("{api}/{{reference}}/refuse"));
    let post = |session: Option<String>, path: String, content_type: &'static str, body: String| {
        let mut r = s.app.client.post(s.app.url(&path)).header("content-type", content_type).body(body);
        if let Some(session) = session {
            r = r.header("cookie", format!("{SESSION}={session}"));
        }
        r.send()
    };
    let json_post = |session: &str, path: &str, body: Value| {
        post(Some(session.to_owned()), path.to_owned(), "application/json", body.to_string())
    };
    let undecided = || async {
        let list = s.app.state.retention.elimination_list(&reference).await.unwrap().unwrap();
        list.lines.iter().filter(|l| l.decision.is_none()).count()
    };

    // No session, another agent, a form: nothing decided.
    let r = post(None, visa.clone(), "application/json", "{}".to_owned()).await.unwrap();
    assert_eq!(checked("post", &visa_doc, r).await.status(), 401);
    let clerk = agent_session(&s.app, &agents, "21750001600019", "x@mairie.example.fr").await;
    let r = json_post(&clerk, &visa, json!({})).await.unwrap();
    assert_eq!(checked("post", &visa_doc, r).await.status(), 403);
    let r = json_post(&clerk, &refuse, json!({ "reason": "Pas moi" })).await.unwrap();
    assert_eq!(checked("post", &refuse_doc, r).await.status(), 403);
    s.app.state.audit.flush().await.unwrap();
    let denied = "SELECT COUNT(*) FROM audit_entry WHERE body LIKE '%\"archives.list\"%' AND body LIKE '%denied%'";
    assert_eq!(count(&s.app.store_url, denied).await, 2, "each refusal of access is journaled");
    let anne = agent_session(&s.app, &agents, "11111111111111", "a.dubois@archives.example.fr").await;
    let form = post(Some(anne.clone()), visa.clone(), "application/x-www-form-urlencoded", "visa_reference=x".into());
    assert_eq!(checked("post", &visa_doc, form.await.unwrap()).await.status(), 400, "a form cannot decide");
    assert_eq!(undecided().await, 2, "nothing decided yet");
    assert!(s.app.state.retention.pending_elimination_lists().await.unwrap().len() == 1);

    // The archivist: a refusal needs a reason and a line of this list.
    let list = s.app.state.retention.elimination_list(&reference).await.unwrap().unwrap();
    let line = list.lines[0].record_hash.clone();
    let r = json_post(&anne, &refuse, json!({ "reason": " ", "line": line })).await.unwrap();
    assert_eq!(checked("post", &refuse_doc, r).await.status(), 422);
    let r = json_post(&anne, &refuse, json!({ "reason": "Intérêt", "line": "0000" })).await.unwrap();
    assert_eq!(checked("post", &refuse_doc, r).await.status(), 422);
    let r = json_post(&anne, &refuse, json!({ "reason": "Intérêt", "lines": [] })).await.unwrap();
    assert_eq!(checked("post", &refuse_doc, r).await.status(), 400, "unknown members are refused");
    assert_eq!(undecided().await, 2);

    let r = json_post(&anne, &refuse, json!({ "reason": "Intérêt historique", "line": line })).await.unwrap();
    let r = checked("post", &refuse_doc, r).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["refused"], 1, "{v}");
    let refused = v["lines"].as_array().unwrap().iter().find(|l| l["record_hash"] == line.as_str()).unwrap();
    assert_eq!(
        (refused["decision"].as_str(), refused["reason"].as_str()),
        (Some("refused"), Some("Intérêt historique"))
    );
    let subject = &list.lines[0].subject;
    assert_eq!(phase_of(&all_rows(&s.app, subject).await, "identite"), "kept", "a refused line is kept for good");

    let r =
        checked("post", &visa_doc, json_post(&anne, &visa, json!({ "visa_reference": "AD-2029-9" })).await.unwrap())
            .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["approved"].as_u64(), v["visa"]["reference"].as_str()), (Some(1), Some("AD-2029-9")), "{v}");
    assert!(s.app.state.retention.pending_elimination_lists().await.unwrap().is_empty());
    let again = json_post(&anne, &visa, json!({})).await.unwrap();
    assert_eq!(checked("post", &visa_doc, again).await.status(), 409, "a list has one visa");
    let late = json_post(&anne, &refuse, json!({ "reason": "Trop tard" })).await.unwrap();
    assert_eq!(checked("post", &refuse_doc, late).await.status(), 409, "no refusal after the visa");
    let unknown = json_post(&anne, &format!("{api}/BE-inconnu/visa"), json!({})).await.unwrap();
    assert_eq!(checked("post", &visa_doc, unknown).await.status(), 404);

    let url = &s.app.store_url;
    let decisions = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'dpo_action' AND body LIKE '%elimination_%'";
    assert_eq!(count(url, decisions).await, 2, "the refusal and the visa are journaled, once each");
    // The approved line is destroyed by the next run, the refused one never.
    assert_eq!(run_on(&s.app, date!(2029 - 12 - 01)).await.eliminated, 1);
    assert_eq!(phase_of(&all_rows(&s.app, subject).await, "identite"), "kept");
}

on_both_stores!(two_runs_under_a_frozen_clock_have_distinct_ids);

/// The test clock does not move between the two runs: their ids (and so their journal
/// entries) are still told apart, by the injected random part.
async fn two_runs_under_a_frozen_clock_have_distinct_ids(backend: Backend) {
    // No scheduled run racing the two for the lease.
    let app = spawn_app().backend(backend).with(|s, _| s.retention.run_every = Duration::ZERO).start().await;
    let (first, second) = (run_on(&app, date!(2030 - 01 - 01)).await, run_on(&app, date!(2030 - 01 - 01)).await);
    assert!(first.run_id.starts_with("RUN-") && second.run_id.starts_with("RUN-"), "{first:?}");
    assert_ne!(first.run_id, second.run_id, "two runs in the same microsecond");
    let journaled = format!(
        "SELECT COUNT(*) FROM audit_entry WHERE operation = 'retention_run' AND (body LIKE '%{}%' OR body LIKE '%{}%')",
        first.run_id, second.run_id
    );
    app.state.audit.flush().await.unwrap();
    assert_eq!(count(&app.store_url, &journaled).await, 2, "one entry per run");
}
