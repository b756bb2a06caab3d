//! Notices by e-mail, sent to a REAL SMTP server on loopback (Debian's python3-aiosmtpd,
//! `tests/smtp/server.py`) and read back as it received them: every kind in French with both
//! bodies and a subject that says nothing personal, retries while the relay is down, exactly
//! once with two runners, STARTTLS required unless plain is allowed on loopback, and the
//! address kept out of jobs, logs and what applications receive.
//!
//! Without python3-aiosmtpd these tests are reported as `ignored` with the reason (build.rs).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guichet::clock::Clock as _;
use guichet::jobs::{Jobs, Outcome};
use guichet::notify::{Address, Notice, Queued, Source};
use guichet::store::JobRow;
use serde_json::Value;
use tempfile::TempDir;
use time::macros::{date, datetime};

use crate::helpers::{Backend, TestApp, free_port, spawn_app};

/// Runs `NAME(Backend)` on both engines, ignored with the reason when the SMTP server or
/// PostgreSQL is not available here.
macro_rules! with_smtp_on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            #[cfg_attr(not(guichet_smtp_tests), ignore = "e-mail test: install Debian's python3-aiosmtpd to run it")]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test]
            #[cfg_attr(not(guichet_smtp_tests), ignore = "e-mail test: install Debian's python3-aiosmtpd to run it")]
            #[cfg_attr(
                all(guichet_smtp_tests, not(guichet_pg_tests)),
                ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it"
            )]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    )*};
}
pub(crate) use with_smtp_on_both_stores;

/// Settings that send the DPO's alerts to the SMTP server at `relay`, with a signed checkpoint
/// after every entry: the tests jump the injected clock ahead of the real-time checkpoint
/// timer, and the journal must stay covered across the jump.
pub(crate) fn dpo_alerts_to(
    relay: std::net::SocketAddr,
) -> impl FnOnce(&mut guichet::config::Settings, std::net::SocketAddr) {
    move |s, _| {
        s.notify.smtp_host = Some(relay.ip().to_string());
        s.notify.smtp_port = relay.port();
        s.notify.allow_plain_on_loopback = true;
        s.notify.dpo_address = Some("dpo@mairie.example.fr".into());
        s.audit.checkpoint_every_entries = 1;
    }
}

/// The real SMTP server, killed when dropped.
pub(crate) struct SmtpServer {
    child: Child,
    dir: TempDir,
}

impl SmtpServer {
    /// Listens on `addr` (plain SMTP, or STARTTLS required with `tls` = (cert, key)).
    pub(crate) async fn start(addr: SocketAddr, tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script).arg(addr.port().to_string()).arg(dir.path());
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "the SMTP server did not start on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, dir }
    }

    /// What arrived, in arrival order.
    pub(crate) fn received(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()).collect()
    }

    pub(crate) async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FROM: &str = "Mairie de Démoville <ne-pas-repondre@demoville.example>";
const SUBJECT: &str = "sub_notify_1";
const ADDRESS: &str = "angela.dubois@exemple.fr";

/// A gateway sending through the relay at `relay`, plain SMTP allowed (loopback) or not.
async fn app(backend: Backend, relay: SocketAddr, plain: bool, ca: Option<PathBuf>) -> TestApp {
    let app = spawn_app()
        .backend(backend)
        .with(move |s, _| {
            s.notify.smtp_host = Some(relay.ip().to_string());
            s.notify.smtp_port = relay.port();
            s.notify.allow_plain_on_loopback = plain;
            s.notify.smtp_ca_file = ca;
            s.notify.from = FROM.into();
            s.notify.commune_name = "Mairie de Démoville".into();
            s.notify.letter_return_address = vec!["1 place de la Mairie".into(), "00000 Démoville".into()];
        })
        .start()
        .await;
    app.clock.advance(datetime!(2027-03-01 09:30 UTC) - app.clock.now());
    app
}

/// Runs due jobs here until `job` was tried `attempts` times and is not running (the gateway's
/// own runner loop takes jobs too, so which runner sends a message is not known).
async fn tried(app: &TestApp, job: &str, attempts: i64) -> JobRow {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        app.state.jobs.run_due(10).await.unwrap();
        let j = app.state.jobs.get(job).await.unwrap().unwrap();
        if j.attempts >= attempts && j.status != "running" {
            return j;
        }
        assert!(Instant::now() < deadline, "job not tried {attempts} times: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queues `notice` for `subject`; returns the sending job's id.
async fn queue(app: &TestApp, notice: &Notice, subject: &str) -> String {
    match app.state.notify.enqueue(notice, subject).await.unwrap() {
        Queued::Email { job, .. } => job,
        other => panic!("no e-mail queued: {other:?}"),
    }
}

async fn remember(app: &TestApp, subject: &str, address: &str) {
    app.state.notify.remember(subject, &Address::parse(address, Source::Given).unwrap()).await.unwrap();
}

fn every_kind(n: i64) -> Vec<Notice> {
    vec![
        Notice::RequestReceived {
            reference: format!("DR-7K3M-Q9X{n}"),
            right: "Voir mes données".into(),
            due_on: date!(2027 - 04 - 01),
        },
        Notice::DeadlineExtended {
            reference: format!("DR-7K3M-Q9X{n}"),
            reason: "Votre demande concerne beaucoup de dossiers.".into(),
            due_on: date!(2027 - 06 - 01),
        },
        Notice::AnswerReady { reference: format!("DR-7K3M-Q9X{n}") },
        Notice::Retention { activity: "Cantine scolaire".into(), deletion_on: date!(2027 - 03 - 31) },
        Notice::ConsentReceipt {
            activity: "Lettre d'information".into(),
            purpose: "Recevoir la lettre d'information".into(),
            given: true,
            at: datetime!(2027-03-01 09:30 UTC),
            receipt: 40 + n,
        },
        Notice::ExportReady { reference: format!("DR-7K3M-Q9X{n}") },
    ]
}

async fn each_notice_kind_arrives_in_french_with_both_bodies(backend: Backend) {
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let app = app(backend, relay, true, None).await;
    remember(&app, SUBJECT, ADDRESS).await;
    for notice in every_kind(1) {
        let job = queue(&app, &notice, SUBJECT).await;
        assert_eq!(tried(&app, &job, 1).await.status, "done");
    }

    let got = smtp.wait_for(6).await;
    assert_eq!(got.len(), 6);
    let subjects: HashSet<&str> = got.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    let expected: HashSet<&str> = [
        "Votre demande a bien été reçue",
        "Votre demande prend plus de temps",
        "La réponse à votre demande est prête",
        "Des informations vont être effacées",
        "Votre choix est bien enregistré",
        "Vos données sont prêtes",
    ]
    .into();
    assert_eq!(subjects, expected);
    for m in &got {
        assert_eq!(m["rcpt_tos"], serde_json::json!([ADDRESS]));
        assert_eq!(m["to"], ADDRESS);
        assert_eq!(m["from"], FROM);
        assert_eq!(m["mail_from"], "ne-pas-repondre@demoville.example");
        let subject = m["subject"].as_str().unwrap();
        for sensitive in ["DR-", "Cantine", "lettre", "angela", "DUBOIS"] {
            assert!(!subject.contains(sensitive), "the subject `{subject}` tells `{sensitive}`");
        }
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(text.starts_with("Bonjour,"), "{text}");
        assert!(text.contains("Mairie de Démoville"), "{text}");
        assert!(html.contains("<html lang=\"fr\">") && html.contains(subject), "{html}");
        assert!(m["message_id"].as_str().unwrap().ends_with("@demoville.example>"), "{m}");
        // Short sentences (FALC): no line of the text body has more than 20 words.
        for line in text.lines() {
            assert!(line.split_whitespace().count() <= 20, "too long: {line}");
        }
    }
    let by_subject = |s: &str| got.iter().find(|m| m["subject"] == s).unwrap()["text"].as_str().unwrap().to_owned();
    let received = by_subject("Votre demande a bien été reçue");
    assert!(received.contains("DR-7K3M-Q9X1") && received.contains("1er avril 2027"), "{received}");
    assert!(received.contains("Voir mes données"), "{received}");
    let extended = by_subject("Votre demande prend plus de temps");
    assert!(extended.contains("beaucoup de dossiers") && extended.contains("1er juin 2027"), "{extended}");
    let retention = by_subject("Des informations vont être effacées");
    assert!(retention.contains("Cantine scolaire") && retention.contains("31 mars 2027"), "{retention}");
    let consent = by_subject("Votre choix est bien enregistré");
    // 09:30 UTC on 1 March is 10:30 in Paris (winter time).
    assert!(consent.contains("Vous avez dit oui") && consent.contains("1er mars 2027 à 10 h 30"), "{consent}");

    let ready = by_subject("Vos données sont prêtes");
    assert!(ready.contains("DR-7K3M-Q9X1") && ready.contains("Télécharger mes données"), "{ready}");
    assert!(ready.contains("/.guichet/mes-donnees/demandes/DR-7K3M-Q9X1"), "{ready}");

    let rows = app.state.notify.of_subject(SUBJECT).await.unwrap();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r.status == "sent" && r.sent_at_us.is_some()), "{rows:?}");
    for r in &rows {
        assert!(!r.notice.contains(ADDRESS), "the address is stored in a notice: {}", r.notice);
    }
}

async fn the_same_event_makes_one_message_and_a_citizen_without_address_gets_a_letter(backend: Backend) {
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let app = app(backend, relay, true, None).await;
    remember(&app, SUBJECT, ADDRESS).await;
    let notice = every_kind(2).remove(0);
    let first = queue(&app, &notice, SUBJECT).await;
    assert_eq!(queue(&app, &notice, SUBJECT).await, first);
    assert_eq!(tried(&app, &first, 1).await.status, "done");
    assert_eq!(queue(&app, &notice, SUBJECT).await, first);
    assert_eq!(tried(&app, &first, 1).await.attempts, 1, "a sent notice must not be sent again");
    assert_eq!(smtp.wait_for(1).await.len(), 1);

    // No address: the notice is kept for a letter, and no job is queued.
    let queued = app.state.notify.enqueue(&notice, "sub_without_email").await.unwrap();
    assert!(matches!(queued, Queued::ByLetter { .. }), "{queued:?}");
    assert!(app.state.jobs.run_due(10).await.unwrap().is_empty());
    let letter = app.state.notify.letter(&notice, &["Mme Angela DUBOIS".into(), "3 rue des Lilas".into()]);
    assert!(letter.contains("size: A4") && letter.contains("3 rue des Lilas"), "{letter}");
    assert!(letter.contains("1 place de la Mairie") && letter.contains("Le 1er mars 2027"), "{letter}");
    assert!(letter.contains("DR-7K3M-Q9X2") && letter.contains("<html lang=\"fr\">"), "{letter}");

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.received().len(), 1);
}

async fn a_message_is_retried_until_the_relay_is_back(backend: Backend) {
    let relay = free_port();
    let app = app(backend, relay, true, None).await;
    remember(&app, SUBJECT, ADDRESS).await;
    let id = queue(&app, &every_kind(3).remove(0), SUBJECT).await;
    remember(&app, "sub_erased", "erased@exemple.fr").await;
    let erased = queue(&app, &every_kind(3).remove(0), "sub_erased").await;
    let job = tried(&app, &id, 1).await;
    assert_eq!(job.status, "queued", "{job:?}");
    let error = job.last_error.clone().unwrap_or_default();
    assert_eq!(error, "the mail relay could not take the message");
    assert!(!job.payload.contains(ADDRESS), "{job:?}");

    let smtp = SmtpServer::start(relay, None).await;
    app.state.jobs.run_due(10).await.unwrap();
    assert_eq!(app.state.jobs.get(&id).await.unwrap().unwrap().attempts, 1, "retried before its back-off");
    // An address erased while its message waits: the message is not sent, and not retried.
    assert_eq!(tried(&app, &erased, 1).await.status, "queued");
    assert!(app.state.notify.forget("sub_erased").await.unwrap());
    app.clock.advance(time::Duration::seconds(31));
    assert_eq!(tried(&app, &id, 2).await.status, "done");
    assert_eq!(tried(&app, &erased, 2).await.status, "done");
    assert_eq!(app.state.notify.of_subject("sub_erased").await.unwrap()[0].status, "undeliverable");
    let got = smtp.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.received().len(), 1);
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!([ADDRESS]));
}

async fn two_runners_send_each_message_exactly_once(backend: Backend) {
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let app = app(backend, relay, true, None).await;
    let count = 24;
    let mut jobs = Vec::new();
    for i in 0..count {
        let subject = format!("sub_many_{i}");
        remember(&app, &subject, &format!("citoyen{i}@exemple.fr")).await;
        jobs.push(queue(&app, &every_kind(i).remove(0), &subject).await);
    }
    // Three runners on one store: the gateway's loop, its runner here, and a second instance.
    let s = &app.state;
    let other = Jobs::new(s.store.clone(), s.clock.clone(), s.random.clone()).unwrap();
    other.register(guichet::notify::send_handler(s));
    let (a, b) = tokio::join!(s.jobs.run_due(100), other.run_due(100));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.iter().chain(&b).all(|o| matches!(o, Outcome::Done { .. })), "{a:?} {b:?}");
    for job in &jobs {
        let j = tried(&app, job, 1).await;
        assert_eq!((j.status.as_str(), j.attempts), ("done", 1), "{j:?}");
    }
    let got = smtp.wait_for(usize::try_from(count).unwrap()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = smtp.received();
    assert_eq!(got.len(), got_after.len());
    assert_eq!(got_after.len(), usize::try_from(count).unwrap());
    let recipients: HashSet<String> = got_after.iter().map(|m| m["to"].as_str().unwrap().to_owned()).collect();
    assert_eq!(recipients.len(), usize::try_from(count).unwrap(), "someone got two messages");
}

async fn starttls_is_required_unless_plain_is_allowed_on_loopback(backend: Backend) {
    // A relay without STARTTLS gets nothing when TLS is required.
    let relay = free_port();
    let plain = SmtpServer::start(relay, None).await;
    let app = app(backend, relay, false, None).await;
    remember(&app, SUBJECT, ADDRESS).await;
    let job = queue(&app, &every_kind(4).remove(0), SUBJECT).await;
    let j = tried(&app, &job, 1).await;
    let refused = "the mail relay does not offer what is required (STARTTLS, login)";
    assert_eq!((j.status.as_str(), j.last_error.as_deref()), ("queued", Some(refused)), "{j:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(plain.received().is_empty(), "a message went out without TLS");
    drop(plain);

    // A relay with STARTTLS (certificate signed by the configured CA) gets it, encrypted.
    let certs = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let relay = free_port();
    let tls = SmtpServer::start(relay, Some((&cert, &key))).await;
    let app = self::app(backend, relay, false, Some(cert.clone())).await;
    remember(&app, SUBJECT, ADDRESS).await;
    let job = queue(&app, &every_kind(5).remove(0), SUBJECT).await;
    assert_eq!(tried(&app, &job, 1).await.status, "done");
    let got = tls.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["starttls"], true);
}

with_smtp_on_both_stores!(
    each_notice_kind_arrives_in_french_with_both_bodies,
    the_same_event_makes_one_message_and_a_citizen_without_address_gets_a_letter,
    a_message_is_retried_until_the_relay_is_back,
    two_runners_send_each_message_exactly_once,
    starttls_is_required_unless_plain_is_allowed_on_loopback,
);

#[test]
fn plain_smtp_is_refused_by_the_configuration_away_from_loopback() {
    let mut loaded = guichet::config::Loaded::defaults();
    loaded.settings.notify.smtp_host = Some("smtp.exemple.fr".into());
    loaded.settings.notify.allow_plain_on_loopback = true;
    let e = loaded.validate().unwrap_err().to_string();
    assert!(e.contains("notify.allow_plain_on_loopback"), "{e}");
    let mut loaded = guichet::config::Loaded::defaults();
    loaded.settings.notify.outbox_dir = Some("boite".into());
    loaded.settings.server.listen = "0.0.0.0:8080".parse().unwrap();
    let e = loaded.validate().unwrap_err().to_string();
    assert!(e.contains("notify.outbox_dir"), "{e}");
}

/// The gateway's own `notify` settings for a plain relay on loopback.
pub(crate) fn relay_settings(s: &mut guichet::config::Settings, relay: SocketAddr) {
    s.notify.smtp_host = Some(relay.ip().to_string());
    s.notify.smtp_port = relay.port();
    s.notify.allow_plain_on_loopback = true;
    s.notify.from = FROM.into();
}

async fn an_address_given_to_the_rights_api_reaches_the_relay_and_no_application(backend: Backend) {
    use crate::auth::SESSION;
    const TYPED: &str = "a.dubois.perso@exemple.fr";
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let mock = crate::oidc_mock::MockProvider::start().await;
    let app = crate::consent::builder(&mock, backend).with(move |s, _| relay_settings(s, relay)).start().await;
    let angela = crate::consent::citizen(&app, &mock, "sub-angela").await;
    let file = |body: Value| {
        app.client
            .post(app.url("/.guichet/api/v1/rights"))
            .header("cookie", format!("{SESSION}={angela}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let bad = file(serde_json::json!({ "right": "access", "email": "pas une adresse" })).await.unwrap();
    assert_eq!(bad.status(), 400);
    let r = file(serde_json::json!({ "right": "access", "email": TYPED })).await.unwrap();
    assert_eq!(r.status(), 201);
    let first = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // Without an address in the body, the typed one stays (not the provider's claim).
    let r = file(serde_json::json!({ "right": "portability" })).await.unwrap();
    assert_eq!(r.status(), 201);
    let second = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while smtp.received().len() < 2 && Instant::now() < deadline {
        app.state.jobs.run_due(10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = smtp.received();
    assert_eq!(got.len(), 2, "{got:?}");
    for m in &got {
        assert_eq!(m["rcpt_tos"], serde_json::json!([TYPED]));
        assert_eq!(m["subject"], "Votre demande a bien été reçue");
    }
    let texts: String = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert!(texts.contains(&first) && texts.contains(&second), "{texts}");

    // What the applications receive never holds the address.
    let r = app.client.get(app.url("/prive/dossier")).header("cookie", format!("{SESSION}={angela}")).send().await;
    assert_eq!(r.unwrap().status(), 200);
    assert!(app.upstream.hits() > 0);
    for seen in app.upstream.received() {
        for (name, value) in &seen.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            assert!(!value.contains(TYPED), "the address reached the application in {name}");
        }
        assert!(!seen.path_and_query.contains("dubois.perso"));
    }
    // Nor any job or the journal.
    app.state.audit.flush().await.unwrap();
    for e in app.state.store.audit().entries_after(0, 10_000).await.unwrap() {
        assert!(!e.body.contains(TYPED), "the address is in the journal: {}", e.body);
    }
}

with_smtp_on_both_stores!(an_address_given_to_the_rights_api_reaches_the_relay_and_no_application);

#[tokio::test]
#[cfg_attr(not(guichet_smtp_tests), ignore = "e-mail test: install Debian's python3-aiosmtpd to run it")]
async fn the_address_and_the_message_never_reach_the_log() {
    use crate::auth::SESSION;
    use crate::helpers::{GatewayProcess, TestUpstream, init};
    init();
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let upstream = TestUpstream::start().await;
    let mock = crate::oidc_mock::MockProvider::start().await;
    mock.set_faults(crate::logging::real_time_tokens());
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "{}\n[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nallow_plain_on_loopback = true\nfrom = \"{FROM}\"\n",
        crate::logging::sign_in_config(&mock.issuer(), upstream.addr),
        relay.port()
    );
    let mut gw = GatewayProcess::start_with(dir.path(), upstream.addr, "debug", &extra).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", gw.addr);
    let userinfo = serde_json::json!({ "given_name": "Zéphirine", "family_name": "QUENEHERVE",
        "birthdate": "1931-07-13", "email": "zephirine.q@example.fr" });
    let session = crate::logging::sign_in_process(&client, &base, &mock, "sub-zephirine-7731", userinfo).await.session;
    let r = client
        .post(format!("{base}/.guichet/api/v1/rights"))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/json")
        .body(r#"{"right":"access"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // `serve` runs the jobs itself: the message arrives without anyone calling the runner.
    let got = smtp.wait_for(1).await;
    assert_eq!(got.len(), 1, "no message arrived");
    assert_eq!(got[0]["rcpt_tos"], serde_json::json!(["zephirine.q@example.fr"]));
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.stop();
    let log = gw.log();
    assert!(log.contains("\"notice sent\""), "the sending was not logged at all:\n{log}");
    for secret in ["zephirine.q", "QUENEHERVE", "sub-zephirine-7731", "Bonjour", "Votre demande"] {
        assert!(!log.contains(secret), "`{secret}` reached the log:\n{log}");
    }
}

#[tokio::test]
async fn the_demo_outbox_shows_the_messages_in_the_browser() {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().to_owned();
    let app = spawn_app()
        .with(move |s, _| {
            s.notify.outbox_dir = Some(dir);
            s.notify.commune_name = "Mairie de Démoville".into();
        })
        .start()
        .await;
    remember(&app, SUBJECT, ADDRESS).await;
    let job = queue(&app, &every_kind(6).remove(2), SUBJECT).await;
    assert_eq!(tried(&app, &job, 1).await.status, "done");
    let list = app.get("/.guichet/demo/boite-mail").await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains("La réponse à votre demande est prête") && list.contains(ADDRESS), "{list}");
    let id = app.state.notify.of_subject(SUBJECT).await.unwrap()[0].id.clone();
    let page = app.get(&format!("/.guichet/demo/boite-mail/{id}")).await.text().await.unwrap();
    assert!(page.contains("DR-7K3M-Q9X6") && page.contains("Mairie de Démoville"), "{page}");
    let html = app.get(&format!("/.guichet/demo/boite-mail/{id}/html")).await.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
    assert_eq!(app.get("/.guichet/demo/boite-mail/..%2f..%2fetc").await.status(), 404);

    // Without an outbox, there is no such page.
    let plain = spawn_app().start().await;
    assert_eq!(plain.get("/.guichet/demo/boite-mail").await.status(), 404);
}

async fn a_consent_given_or_withdrawn_online_sends_its_receipt(backend: Backend) {
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let mock = crate::oidc_mock::MockProvider::start().await;
    let app = crate::consent::builder(&mock, backend).with(move |s, _| relay_settings(s, relay)).start().await;
    // The provider's `email` claim is the address (no address was typed).
    let angela = crate::consent::citizen(&app, &mock, "sub-angela").await;
    assert_eq!(crate::consent::choose(&app, &angela, "donner").await.status(), 303);
    assert_eq!(crate::consent::choose(&app, &angela, "retirer").await.status(), 303);
    let deadline = Instant::now() + Duration::from_secs(10);
    while smtp.received().len() < 2 && Instant::now() < deadline {
        app.state.jobs.run_due(10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = smtp.received();
    assert_eq!(got.len(), 2, "{got:?}");
    let texts: Vec<&str> = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
    for m in &got {
        assert_eq!(m["rcpt_tos"], serde_json::json!(["angela@example.fr"]));
        assert_eq!(m["subject"], "Votre choix est bien enregistré");
    }
    assert!(texts.iter().any(|t| t.contains("Vous avez dit oui.")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("Vous avez retiré votre accord.")), "{texts:?}");
    assert!(texts.iter().all(|t| t.contains("/.guichet/consentement/")), "{texts:?}");
}

with_smtp_on_both_stores!(a_consent_given_or_withdrawn_online_sends_its_receipt);

async fn the_address_is_sealed_at_rest_with_keys_and_lost_with_its_key(backend: Backend) {
    let relay = free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = crate::helpers::test_keys(keys_dir.path());
    let app = spawn_app()
        .backend(backend)
        .with(move |s, _| {
            relay_settings(s, relay);
            s.keys = Some(keys);
        })
        .start()
        .await;
    remember(&app, SUBJECT, ADDRESS).await;
    let stored = app.state.store.notify().contact(SUBJECT).await.unwrap().unwrap();
    assert!(stored.starts_with("gch2.") && !stored.contains("angela"), "stored in clear: {stored}");
    let job = queue(&app, &every_kind(7).remove(0), SUBJECT).await;
    assert_eq!(tried(&app, &job, 1).await.status, "done");
    assert_eq!(smtp.wait_for(1).await[0]["rcpt_tos"], serde_json::json!([ADDRESS]));

    // Its data key destroyed (crypto-shredding), the address is gone: no message, no retry.
    remember(&app, "sub_shredded", "shredded@exemple.fr").await;
    app.state.crypto.as_ref().unwrap().shred("sub_shredded", "notify").await.unwrap();
    let job = queue(&app, &every_kind(7).remove(0), "sub_shredded").await;
    assert_eq!(tried(&app, &job, 1).await.status, "done");
    assert_eq!(app.state.notify.of_subject("sub_shredded").await.unwrap()[0].status, "undeliverable");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(smtp.received().len(), 1);
}

with_smtp_on_both_stores!(the_address_is_sealed_at_rest_with_keys_and_lost_with_its_key);
