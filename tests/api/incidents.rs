//! The breach register (Art. 33(5)), the complete journal of reads and refusals, separation of
//! duties and the DPO's alerts (issue 16 items 5–7). Pages are driven as a browser would,
//! with the agent's sign-in through the mock provider and the injected clock.

use std::path::Path;

use guichet::audit::Outcome;
use guichet::config::RoleRule;
use guichet::incidents::{IncidentFacts, IncidentRegister, Nature};
use serde_json::Value;
use time::macros::datetime;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, signed_in_request};
use crate::cli::guichet;
use crate::helpers::{Backend, TestApp, free_port, spawn_app};
use crate::oidc_mock::MockProvider;

const LIST: &str = "/.guichet/dpo/incidents";
const SIRET: &str = "21750001600019";
const DPO_EMAIL: &str = "delegue@dpo.example.fr";
const CLERK_EMAIL: &str = "lucie@mairie.example.fr";

fn dpo_rule(role: &str) -> RoleRule {
    RoleRule { role: role.into(), siret: vec![], email_domains: vec!["dpo.example.fr".into()], uids: vec![] }
}

async fn app_with_a_dpo(backend: Backend, agents: &MockProvider) -> TestApp {
    let cantine = include_str!("../../policies/cantine.toml");
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[("cantine.toml", cantine)])
        .with_agent_provider(agents.issuer())
        .with(|s, _| s.auth.agent_roles.push(dpo_rule("dpo")))
        .start()
        .await;
    app.clock.advance(datetime!(2026-12-03 10:00 UTC) - guichet::clock::Clock::now(&app.clock));
    app
}

/// Signs in at the app's current (injected) time.
async fn sign_in(app: &TestApp, agents: &MockProvider, email: &str) -> String {
    agents.set_now(guichet::clock::Clock::now(&app.clock).unix_timestamp());
    let r = agent_sign_in(app, agents, agent_info(SIRET, email), "").await;
    cookie(&r, SESSION).unwrap()
}

/// Every journal entry's body, oldest first (after flushing what is queued).
pub(crate) async fn journal(app: &TestApp) -> Vec<Value> {
    app.state.audit.flush().await.unwrap();
    let rows = app.state.store.audit().entries_after(0, 10_000).await.unwrap();
    rows.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect()
}

pub(crate) fn entries<'a>(journal: &'a [Value], op: &str, name_key: &str, name: &str) -> Vec<&'a Value> {
    journal.iter().filter(|e| e["operation"]["type"] == op && e["operation"][name_key] == name).collect()
}

fn csrf_of(html: &str) -> String {
    let start = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn post(app: &TestApp, session: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    app.client
        .post(app.url(path))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "text/html")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn form<'a>(csrf: &'a str, aware: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("aware_at", aware),
        ("nature", "confidentiality"),
        ("description", "Courriel envoyé au mauvais destinataire"),
        ("people_categories", "Familles inscrites à la cantine"),
        ("people_count", "12"),
        ("record_categories", "Coordonnées, régimes alimentaires"),
        ("record_count", "12"),
        ("consequences", "Hameçonnage possible"),
        ("measures", "Demande d'effacement au destinataire"),
    ]
}

async fn the_breach_register_records_lists_edits_and_exports_for_the_dpo_only(backend: Backend) {
    let agents = MockProvider::start().await;
    let app = app_with_a_dpo(backend, &agents).await;

    // An agent without the DPO role is refused, and the refusal is journaled without their
    // e-mail, name or session.
    let clerk = sign_in(&app, &agents, CLERK_EMAIL).await;
    assert_eq!(signed_in_request(&app, &clerk, LIST).await.status(), 403);
    let j = journal(&app).await;
    let denied = entries(&j, "read", "page", "dpo.incidents");
    assert_eq!(denied.len(), 1, "{j:?}");
    assert_eq!(denied[0]["outcome"], "denied");
    assert_eq!(denied[0]["actor"]["kind"], "agent");
    let text = denied[0].to_string();
    for secret in ["lucie", "mairie.example.fr", "MARTIN", &clerk] {
        assert!(!text.contains(secret), "{secret} journaled: {text}");
    }

    let dpo = sign_in(&app, &agents, DPO_EMAIL).await;
    let page = signed_in_request(&app, &dpo, &format!("{LIST}/nouveau")).await;
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    // Without the session's CSRF token nothing is recorded.
    assert_eq!(post(&app, &dpo, LIST, &form("forged", "2026-12-03T09:00")).await.status(), 403);
    // A form that does not hold comes back with the field named.
    let mut no_nature = form(&csrf, "2026-12-03T09:00");
    no_nature.retain(|(k, _)| *k != "nature");
    let r = post(&app, &dpo, LIST, &no_nature).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("choisissez au moins une nature"));
    assert!(IncidentRegister::of(&app.state).all().await.unwrap().is_empty());

    // 09:00 in Paris is 08:00 UTC: the 72 hours end on 6 December, 08:00 UTC (09 h 00 Paris).
    let r = post(&app, &dpo, LIST, &form(&csrf, "2026-12-03T09:00")).await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let id = location.trim_start_matches(&format!("{LIST}/")).trim_end_matches("?enregistre=1").to_owned();
    assert!(id.starts_with("INC-") && id.len() == 13, "{location}");
    let list = signed_in_request(&app, &dpo, LIST).await.text().await.unwrap();
    assert!(list.contains(&id), "{list}");
    assert!(list.contains("6 décembre 2026 à 9 h 00"), "the deadline is shown: {list}");
    assert!(list.contains("À notifier : il reste 70 h"), "{list}");

    // 47 hours later, 23 hours are left: highlighted (the DPO signs in again).
    app.clock.advance(time::Duration::hours(47));
    let dpo = sign_in(&app, &agents, DPO_EMAIL).await;
    let clerk = sign_in(&app, &agents, CLERK_EMAIL).await;
    let page = signed_in_request(&app, &dpo, &format!("{LIST}/{id}/modifier")).await.text().await.unwrap();
    assert!(page.contains("value=\"2026-12-03T09:00\""), "the form shows Paris time: {page}");
    let csrf = csrf_of(&page);
    let list = signed_in_request(&app, &dpo, LIST).await.text().await.unwrap();
    assert!(list.contains("<strong>À notifier : il reste 23 h</strong>"), "{list}");

    // Notified within the 72 hours: 09:45 in Paris on 5 December, before now (10:00 there).
    let mut notified = form(&csrf, "2026-12-03T09:00");
    notified.push(("cnil_notified_at", "2026-12-05T09:45"));
    let r = post(&app, &dpo, &format!("{LIST}/{id}"), &notified).await;
    assert_eq!(r.status(), 303);
    let show = signed_in_request(&app, &dpo, &format!("{LIST}/{id}")).await.text().await.unwrap();
    assert!(show.contains("Notifiée à la CNIL dans les 72 heures"), "{show}");

    // Another incident, deliberately not notified: it stays listed with its reason.
    let mut kept = form(&csrf, "2026-12-04T09:00");
    kept.push(("cnil_not_notified_reason", "Données chiffrées, clé non compromise"));
    assert_eq!(post(&app, &dpo, LIST, &kept).await.status(), 303);
    let list = signed_in_request(&app, &dpo, LIST).await.text().await.unwrap();
    assert!(list.contains("Non notifiée à la CNIL (raison notée)"), "{list}");
    assert!(list.contains("Raison : Données chiffrées, clé non compromise"), "{list}");

    // The CNIL form's fields, as JSON and printable.
    let r = signed_in_request(&app, &dpo, &format!("{LIST}/{id}/cnil.json")).await;
    assert_eq!(r.status(), 200);
    let cnil: Value = r.json().await.unwrap();
    assert_eq!(cnil["violation"]["date_prise_de_connaissance"], "2026-12-03T08:00:00Z");
    assert_eq!(cnil["violation"]["date_limite_notification_72h"], "2026-12-06T08:00:00Z");
    assert_eq!(cnil["violation"]["nature"], serde_json::json!(["confidentiality"]));
    assert_eq!(cnil["personnes_concernees"]["nombre_approximatif"], 12);
    assert_eq!(cnil["notification_cnil"]["etat"], "notified_on_time");
    assert_eq!(cnil["notification_cnil"]["date"], "2026-12-05T08:45:00Z");
    assert!(!cnil["organisme"]["delegue_protection_donnees"]["nom"].as_str().unwrap().is_empty());
    let printable = signed_in_request(&app, &dpo, &format!("{LIST}/{id}/cnil")).await.text().await.unwrap();
    assert!(
        printable.contains("Notification d&#39;une violation") || printable.contains("Notification d'une violation")
    );
    assert_eq!(signed_in_request(&app, &clerk, &format!("{LIST}/{id}/cnil.json")).await.status(), 403);
    // The same fields as an ODS spreadsheet: a zip whose content.xml holds them.
    let r = signed_in_request(&app, &dpo, &format!("{LIST}/{id}/cnil.ods")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.oasis.opendocument.spreadsheet");
    let ods = r.bytes().await.unwrap();
    let content = ods_content(&ods);
    for field in [
        "Rubrique du formulaire CNIL",
        "Violation : date de prise de connaissance",
        "Personnes concernées : nombre approximatif",
        "Notifiée à la CNIL dans les 72 heures",
        id.as_str(),
    ] {
        assert!(content.contains(field), "{field} in the ODS: {content}");
    }
    // The clerk is refused the printable form and the ODS too.
    for export in ["cnil", "cnil.ods"] {
        let r = signed_in_request(&app, &clerk, &format!("{LIST}/{id}/{export}")).await;
        assert_eq!(r.status(), 403, "{export}");
        assert!(!r.text().await.unwrap().contains("Rubrique"), "{export}");
    }

    // Every change and every read is journaled with the incident's reference.
    let j = journal(&app).await;
    let record_ref = format!("incident:{id}");
    for action in ["incident_recorded", "incident_updated", "incident_exported"] {
        let found = entries(&j, "dpo_action", "action", action);
        assert!(found.iter().any(|e| e["record_ref"] == record_ref.as_str()), "{action}: {j:?}");
        assert!(found.iter().all(|e| e["actor"]["kind"] == "agent" && e["role"] == "dpo"));
    }
    let reads = entries(&j, "read", "page", "dpo.incident");
    assert!(reads.iter().any(|e| e["record_ref"] == record_ref.as_str() && e["outcome"] == "success"));
    assert!(entries(&j, "read", "page", "dpo.incidents").iter().any(|e| e["outcome"] == "success"));
    // The clerk's three refused exports, each naming the incident asked for.
    let refused = entries(&j, "read", "page", "dpo.incident.cnil");
    assert_eq!(refused.len(), 3, "the clerk's refused exports: {refused:?}");
    assert!(refused.iter().all(|e| e["outcome"] == "denied" && e["record_ref"] == record_ref.as_str()), "{refused:?}");
    // A refused list names the list.
    let lists = entries(&j, "read", "page", "dpo.incidents");
    assert!(lists.iter().any(|e| e["outcome"] == "denied" && e["record_ref"] == "list:dpo.incidents"), "{lists:?}");
}

/// The `content.xml` of an ODS file (a zip), as text.
pub fn ods_content(ods: &[u8]) -> String {
    use std::io::Read as _;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(ods)).expect("an ODS file is a zip");
    let mut content = String::new();
    zip.by_name("content.xml").expect("content.xml").read_to_string(&mut content).unwrap();
    content
}

crate::on_both_stores!(the_breach_register_records_lists_edits_and_exports_for_the_dpo_only);

fn facts(aware_at: time::OffsetDateTime) -> IncidentFacts {
    IncidentFacts {
        aware_at,
        started_at: None,
        nature: vec![Nature::Availability],
        description: "Serveur de fichiers chiffré par un rançongiciel".into(),
        people_categories: "Agents".into(),
        people_count: Some(40),
        record_categories: "Dossiers du personnel".into(),
        record_count: None,
        consequences: "Indisponibilité".into(),
        measures: "Restauration depuis la sauvegarde".into(),
        cnil_notified_at: None,
        cnil_not_notified_reason: None,
        delay_reason: None,
        people_informed_at: None,
        people_not_informed_reason: None,
    }
}

async fn reader() -> guichet::audit::Reader {
    guichet::audit::Reader::new(guichet::audit::ActorKind::System, "test", "operator").unwrap()
}

/// A breach deadline near: the gauge says so, and the DPO gets one e-mail a day through the
/// real SMTP server, saying nothing about the breach but that it must be notified.
async fn a_breach_deadline_near_alerts_the_dpo_once_a_day(backend: Backend) {
    let relay = free_port();
    let smtp = crate::notify::SmtpServer::start(relay, None).await;
    // No scheduled retention run: the purge queued at start-up journals its counts under the
    // time it started, and a loaded machine can commit that entry after the clock has moved
    // nine hours and the flush has written its checkpoint, leaving it uncovered for nine hours.
    let app = spawn_app()
        .backend(backend)
        .with(crate::notify::dpo_alerts_to(relay))
        .with(|s, _| s.retention.run_every = std::time::Duration::ZERO)
        .start()
        .await;
    let now = datetime!(2026-12-03 10:00 UTC);
    app.clock.advance(now - guichet::clock::Clock::now(&app.clock));
    let register = IncidentRegister::of(&app.state);
    let incident = register.record(&reader().await, facts(now - time::Duration::hours(40))).await.unwrap();
    let f = guichet::alerts::run_check(&app.state).await;
    assert_eq!(f.breach_deadline_near, 0, "32 hours left");
    assert!(app.metrics().await.contains("guichet_breach_deadline_near 0"));

    app.clock.advance(time::Duration::hours(9));
    app.state.audit.flush().await.unwrap();
    let f = guichet::alerts::run_check(&app.state).await;
    assert_eq!(f.breach_deadline_near, 1, "23 hours left");
    assert!(!f.journal_broken, "the journal verifies");
    let metrics = app.metrics().await;
    assert!(metrics.contains("guichet_breach_deadline_near 1"), "{metrics}");
    assert!(metrics.contains("guichet_retention_last_run_failed 0"), "{metrics}");
    // Checked again the same day: still one message.
    guichet::alerts::run_check(&app.state).await;
    for _ in 0..50 {
        app.state.jobs.run_due(10).await.unwrap();
    }
    let got = smtp.wait_for(2).await;
    assert_eq!(got.len(), 1, "one e-mail per condition and day: {got:?}");
    let m = &got[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["dpo@mairie.example.fr"]));
    assert_eq!(m["subject"], "Alerte de la passerelle : une action est attendue");
    let text = m.to_string();
    assert!(text.contains("notifi"), "{text}");
    assert!(!text.contains(&incident.id), "no reference in the e-mail: {text}");

    // Once notified, the condition is gone.
    let mut done = incident.facts.clone();
    done.cnil_notified_at = Some(guichet::clock::Clock::now(&app.clock));
    register.update(&reader().await, &incident.id, done).await.unwrap();
    assert_eq!(guichet::alerts::run_check(&app.state).await.breach_deadline_near, 0);
}

mod alert_mail {
    #[tokio::test]
    #[cfg_attr(not(guichet_smtp_tests), ignore = "e-mail test: install Debian's python3-aiosmtpd to run it")]
    async fn sqlite() {
        super::a_breach_deadline_near_alerts_the_dpo_once_a_day(crate::helpers::Backend::Sqlite).await;
    }
    #[tokio::test]
    #[cfg_attr(not(guichet_smtp_tests), ignore = "e-mail test: install Debian's python3-aiosmtpd to run it")]
    #[cfg_attr(
        all(guichet_smtp_tests, not(guichet_pg_tests)),
        ignore = "PostgreSQL store test: set TEST_DATABASE_URL to run it"
    )]
    async fn postgres() {
        super::a_breach_deadline_near_alerts_the_dpo_once_a_day(crate::helpers::Backend::Postgres).await;
    }
}

/// An agent whose rules grant the DPO role and an assisted-channel role keeps the assisted
/// role only (journaled), unless the configuration allows the combination. A route refused
/// for lack of a role is journaled as denied.
async fn the_dpo_role_is_not_combined_with_an_assisted_role(backend: Backend) {
    for allow in [false, true] {
        let agents = MockProvider::start().await;
        let app = spawn_app()
            .backend(backend)
            .with_agent_provider(agents.issuer())
            .with(move |s, _| {
                s.auth.agent_roles.push(dpo_rule("dpo"));
                s.auth.agent_roles.push(dpo_rule("accueil"));
                s.auth.allow_dpo_role_combination = allow;
            })
            .start()
            .await;
        let both = sign_in(&app, &agents, DPO_EMAIL).await;
        let status = signed_in_request(&app, &both, "/.guichet/dpo/registre").await.status();
        let j = journal(&app).await;
        let dropped = entries(&j, "admin_action", "action", "dpo_role_dropped");
        if allow {
            assert_eq!(status, 200);
            assert!(dropped.is_empty());
        } else {
            assert_eq!(status, 403, "the DPO role was dropped");
            assert_eq!(dropped.len(), 1, "{j:?}");
            assert_eq!(dropped[0]["outcome"], "denied");
            assert_eq!(dropped[0]["record_ref"], "role:dpo");
            let refused = entries(&j, "read", "page", "dpo.registre");
            assert_eq!(refused.len(), 1);
            assert_eq!(refused[0]["role"], "accueil");
            // The same agent on a route for `etat-civil`: refused and journaled.
            assert_eq!(signed_in_request(&app, &both, "/agents").await.status(), 403);
            let j = journal(&app).await;
            let route = entries(&j, "read", "page", "route:agents");
            assert_eq!(route.len(), 1);
            assert_eq!(route[0]["outcome"], serde_json::to_value(Outcome::Denied).unwrap());
            assert!(route[0]["request_id"].is_string());
        }
    }
}

crate::on_both_stores!(the_dpo_role_is_not_combined_with_an_assisted_role);

#[test]
fn the_separation_of_duties_is_checked_by_guichet_check() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("cantine.toml"), include_str!("../../policies/cantine.toml")).unwrap();
    let file = dir.path().join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n\n[policy]\ndir = {policies:?}\n\n[[routes]]\nname = \"app\"\n\
         path_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n\n[[auth.agent_roles]]\nrole = \"dpo\"\n\
         email_domains = [\"mairie.fr\"]\n\n[[auth.agent_roles]]\nrole = \"agent-scolaire\"\nsiret = [\"21750001600019\"]\n",
        data = dir.path().display().to_string(),
        policies = policies.display().to_string(),
    );
    std::fs::write(&file, toml).unwrap();
    let out = guichet(&["check", "--config", file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("warning: auth.agent_roles: an agent could get both `dpo` and `agent-scolaire`"),
        "{stdout}"
    );
}

fn cli_config(dir: &Path, extra: &str) -> String {
    let file = dir.join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n\n[store]\nurl = \"sqlite://{data}/guichet.db\"\n\n[[routes]]\nname = \"app\"\n\
         path_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n{extra}",
        data = dir.display().to_string()
    );
    std::fs::write(&file, toml).unwrap();
    file.display().to_string()
}

/// The operator's commands: `incident record|list|export` and `sessions revoke`, each
/// journaled with the record concerned.
#[tokio::test]
async fn incident_and_session_commands_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let conf = cli_config(dir.path(), "");
    let file = dir.path().join("incident.toml");
    std::fs::write(
        &file,
        "aware_at = \"2026-12-01T08:00:00Z\"\nnature = [\"integrity\"]\ndescription = \"Fichier modifié par erreur\"\n\
         people_categories = \"Familles\"\npeople_count = 3\nrecord_categories = \"Adresses\"\n\
         consequences = \"Courriers mal adressés\"\nmeasures = \"Fichier restauré\"\n\
         cnil_not_notified_reason = \"Risque improbable\"\n",
    )
    .unwrap();
    let out = guichet(&["incident", "record", file.to_str().unwrap(), "--config", &conf]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let id = stdout.split_whitespace().nth(1).unwrap().to_owned();
    assert!(id.starts_with("INC-"), "{stdout}");
    let list = guichet(&["incident", "list", "--config", &conf]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(list.contains(&id) && list.contains("not_notified"), "{list}");
    let export = guichet(&["incident", "export", &id, "--config", &conf]);
    let json: Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(json["notification_cnil"]["motif_de_non_notification"], "Risque improbable");
    // The same as an ODS spreadsheet, written to the file given.
    let ods = dir.path().join("cnil.ods");
    let out =
        guichet(&["incident", "export", &id, "--format", "ods", "--out", ods.to_str().unwrap(), "--config", &conf]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let content = ods_content(&std::fs::read(&ods).unwrap());
    assert!(content.contains("Risque improbable") && content.contains(&id), "{content}");
    assert!(!guichet(&["incident", "export", &id, "--format", "ods", "--config", &conf]).status.success(), "no --out");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"aware_at\": \"hier\"}").unwrap();
    let out = guichet(&["incident", "record", bad.to_str().unwrap(), "--config", &conf]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.json:1:"), "the file and line are named");
    let revoke = guichet(&["sessions", "revoke", "--all", "--config", &conf]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));

    let url = format!("sqlite://{}/guichet.db", dir.path().display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM audit_entry WHERE operation IN ('dpo_action', 'admin_action') ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let bodies: Vec<Value> = bodies.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let record_ref = format!("incident:{id}");
    let actions: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| (b["operation"]["action"].as_str().unwrap(), b["record_ref"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("incident_recorded", record_ref.as_str()),
            ("incident_exported", record_ref.as_str()),
            ("incident_exported", record_ref.as_str()),
            ("sessions_revoke", "sessions:all")
        ]
    );
    assert!(bodies.iter().all(|b| b["role"] == "operator"));
}

/// The shipped rules: checked by promtool when Debian's prometheus package is installed (CI
/// installs it), and in any case every metric they use is one the gateway exports.
#[tokio::test]
async fn the_shipped_alert_rules_use_exported_metrics() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts/guichet.rules.yml");
    if let Ok(out) = std::process::Command::new("promtool").arg("check").arg("rules").arg(&rules).output() {
        assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 5 rules found"));
    }
    let app = spawn_app().start().await;
    let metrics = app.metrics().await;
    let text = std::fs::read_to_string(&rules).unwrap();
    let used: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| w.starts_with("guichet_"))
        .collect();
    assert_eq!(used.len(), 5, "{used:?}");
    for m in used {
        assert!(metrics.contains(&format!("# TYPE {m} gauge")), "{m} is not exported: {metrics}");
    }
}
