//! Rights requests after they are filed, through a real application endpoint, real sign-ins
//! and a real SMTP server: a request an agent files at the counter reaches the application
//! under the pseudonym it knows; the citizen is told of an extension (with its reason) and
//! of each answer; a handler lifts a restriction and closes a task done by hand.

use std::time::{Duration, Instant};

use guichet::rights::request::Status;
use serde_json::{Value, json};

use crate::auth::SESSION;
use crate::consent::citizen;
use crate::helpers::{Backend, TestApp, TestAppBuilder, test_keys};
use crate::notify::{SmtpServer, relay_settings, with_smtp_on_both_stores};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;
use crate::openapi::check_documented;
use crate::propagation::{Mode, RightsApp, gateway, pseudonym_seen_by_app, wait_for, wait_received};
use crate::rights_agent::{assisted, code_of, filed_on, journal, parties_from, post_json};

const QUEUE: &str = "/.guichet/api/v1/rights/queue";
const TASKS: &str = "/.guichet/api/v1/rights/tasks";
const ACTIVITY: &str = "lettre-information";
const LIFT_DOC: &str = "/.guichet/api/v1/rights/queue/{id}/lift";
const DONE_DOC: &str = "/.guichet/api/v1/rights/queue/{id}/tasks/{activity}/done";

/// A gateway whose newsletter activity has `rights_app` as its rights endpoint, with the
/// citizen provider, agents and roles of `rights_agent::parties`.
pub(crate) struct Desk {
    pub p: crate::rights_agent::Parties,
    pub rights_app: RightsApp,
    _dir: tempfile::TempDir,
}

pub(crate) async fn desk(backend: Backend, mode: Mode, tweak: impl FnOnce(TestAppBuilder) -> TestAppBuilder) -> Desk {
    let citizens = MockProvider::start().await;
    let (rights_app, addr) = RightsApp::start(mode).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = test_keys(dir.path());
    let secret = dir.path().join("rappel.secret");
    std::fs::write(&secret, "rappel-secret-de-test-0123456789\n").unwrap();
    let base = tweak(gateway(&citizens, backend, addr, "rights_route = \"lettre\"", &keys, secret));
    let p = parties_from(base, citizens).await;
    rights_app.trust(&p.app);
    Desk { p, rights_app, _dir: dir }
}

fn stages(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["operation"]["stage"].as_str().unwrap_or_default().to_owned()).collect()
}

async fn an_erasure_filed_at_the_counter_reaches_the_application(backend: Backend) {
    let d = desk(backend, Mode::AnswerNow, |b| b).await;
    let angela = citizen(&d.p.app, &d.p.citizens, "sub-angela").await;
    let pseudonym = pseudonym_seen_by_app(&d.p.app, &angela).await;
    d.rights_app.keep(&pseudonym, json!({ "email": "gch1.canary-angela" }));
    // Another citizen's pseudonym must never be the one named.
    let bruno = citizen(&d.p.app, &d.p.citizens, "sub-bruno").await;
    let bruno_pseudonym = pseudonym_seen_by_app(&d.p.app, &bruno).await;

    let code = code_of(&d.p.app, &angela).await;
    let r =
        post_json(&d.p.app, Some(&d.p.counter), "/.guichet/api/v1/rights/assisted", &assisted(&code, "erasure")).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&d.p.app, &id, Status::Completed).await;

    let received = d.rights_app.received();
    assert_eq!(received.len(), 1, "delivered exactly once: {received:?}");
    let claims = &received[0];
    assert_eq!(claims["type"], "erasure");
    assert_eq!(claims["subject_identity"]["value"], pseudonym.as_str(), "the pseudonym the application knows");
    assert_ne!(claims["subject_identity"]["value"], bruno_pseudonym.as_str());
    assert!(claims["request_id"].as_str().unwrap().starts_with(&id));
    // The application erased what it kept for her.
    assert!(d.rights_app.received().iter().all(|c| c["type"] == "erasure"));
    // The gateway shredded the key of her fields, not a key derived for someone else.
    let target = d.p.app.state.rights.target(&id, ACTIVITY).await.unwrap().unwrap();
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", format!("{SESSION}={angela}").parse().unwrap());
    let session = d.p.app.state.auth.identify(&headers).await.unwrap().unwrap();
    assert_eq!(target.field_subject.as_deref(), Some(d.p.app.state.auth.field_subject(&session)));
    assert_eq!(target.app_subject.as_deref(), Some(pseudonym.as_str()));
    let request = d.p.app.state.rights.get(&id).await.unwrap();
    assert_eq!(request.channel.as_str(), "counter");
}

async fn handlers_lift_a_restriction_and_the_application_is_told(backend: Backend) {
    let d = desk(backend, Mode::AnswerNow, |b| b).await;
    let angela = citizen(&d.p.app, &d.p.citizens, "sub-angela").await;
    let pseudonym = pseudonym_seen_by_app(&d.p.app, &angela).await;
    let r = crate::propagation::post_json(
        &d.p.app,
        &angela,
        "/.guichet/api/v1/rights",
        &json!({ "right": "restriction", "activity": ACTIVITY }),
    )
    .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&d.p.app, &id, Status::Completed).await;
    let field = d.p.app.state.rights.target(&id, ACTIVITY).await.unwrap().unwrap().field_subject.unwrap();
    assert!(guichet::rights::restriction::is_restricted(&d.p.app.state, &field, ACTIVITY).await.unwrap());

    // A citizen, a counter agent and a non-restriction request lift nothing.
    let lift = format!("{QUEUE}/{id}/lift");
    assert_eq!(post_json(&d.p.app, Some(&angela), &lift, &json!({})).await.status(), 403);
    assert_eq!(post_json(&d.p.app, Some(&d.p.counter), &lift, &json!({})).await.status(), 403);
    let other = filed_on(&d.p.app, &angela, "access").await;
    let not_restriction = post_json(&d.p.app, Some(&d.p.dpo), &format!("{QUEUE}/{other}/lift"), &json!({})).await;
    assert_eq!(not_restriction.status(), 422);
    let problem: Value = not_restriction.json().await.unwrap();
    check_documented("post", LIFT_DOC, 422, "application/problem+json", &problem);
    assert!(guichet::rights::restriction::is_restricted(&d.p.app.state, &field, ACTIVITY).await.unwrap());

    let r = post_json(&d.p.app, Some(&d.p.dpo), &lift, &json!({})).await;
    assert_eq!(r.status(), 200);
    let lifted: Value = r.json().await.unwrap();
    assert_eq!(lifted["lifted"], 1);
    check_documented("post", LIFT_DOC, 200, "application/json", &lifted);
    assert!(!guichet::rights::restriction::is_restricted(&d.p.app.state, &field, ACTIVITY).await.unwrap());
    wait_received(&d.rights_app, 2).await;
    let told = &d.rights_app.received()[1];
    assert_eq!(told["type"], "restriction_lifted");
    assert_eq!(told["subject_identity"]["value"], pseudonym.as_str());
    let entries = journal(&d.p.app, &id).await;
    let lifted = entries.iter().find(|e| e["operation"]["stage"] == "restriction_lifted").expect("journaled");
    assert_eq!(lifted["role"], "dpo");
    // The request's detail shows what the application answered to the notice.
    wait_lifted_answer(&d.p.app, &id).await;
    let as_dpo = |path: &str| d.p.app.client.get(d.p.app.url(path)).header("cookie", format!("{SESSION}={}", d.p.dpo));
    let detail: Value = as_dpo(&format!("{QUEUE}/{id}")).send().await.unwrap().json().await.unwrap();
    check_documented("get", "/.guichet/api/v1/rights/queue/{id}", 200, "application/json", &detail);
    assert_eq!(detail["lifted"][0]["activity"], ACTIVITY, "{detail}");
    assert_eq!(detail["lifted"][0]["status"], "completed", "{detail}");
    assert!(detail["lifted"][0]["answered_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{detail}");
    // Lists leave it out; another request's detail has none.
    let list: Value = as_dpo(QUEUE).send().await.unwrap().json().await.unwrap();
    assert!(list["requests"].as_array().unwrap().iter().all(|r| r.get("lifted").is_none()), "{list}");
    let other_detail: Value = as_dpo(&format!("{QUEUE}/{other}")).send().await.unwrap().json().await.unwrap();
    assert!(other_detail.get("lifted").is_none());
    // So does its card on the DPO's page of requests.
    let page = as_dpo("/.guichet/dpo/demandes?statut=toutes").header("accept", "text/html");
    let page = page.send().await.unwrap().text().await.unwrap();
    let card = page.split("<section").find(|c| c.contains(&format!("id=\"d-{id}\""))).expect("the request's card");
    assert!(
        card.contains("<li>Fin du gel : Lettre d&#39;information municipale : l&#39;application a appliqué"),
        "{card}"
    );
    let other_card = page.split("<section").find(|c| c.contains(&format!("id=\"d-{other}\""))).unwrap();
    assert!(!other_card.contains("Fin du gel"), "{other_card}");
    // Lifted twice: nothing more to lift, the application is not told again.
    let again = post_json(&d.p.app, Some(&d.p.dpo), &lift, &json!({})).await;
    assert_eq!(again.json::<Value>().await.unwrap()["lifted"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.rights_app.received().len(), 2);
}

/// Waits (at most 10 s) until the application's answer to `id`'s `restriction_lifted`
/// notice is kept.
async fn wait_lifted_answer(app: &TestApp, id: &str) {
    for _ in 0..200 {
        if app.state.rights.lifted_answer(id, ACTIVITY).await.unwrap().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no answer to the restriction_lifted notice of {id}");
}

async fn handlers_close_a_task_done_by_hand_and_the_request_completes(backend: Backend) {
    let d = desk(backend, Mode::Reject, |b| b).await;
    let angela = citizen(&d.p.app, &d.p.citizens, "sub-angela").await;
    let r = crate::propagation::post_json(
        &d.p.app,
        &angela,
        "/.guichet/api/v1/rights",
        &json!({ "right": "access", "activity": ACTIVITY }),
    )
    .await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    // The application rejects the request: an agent does it by hand.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = d.p.app.state.rights.target(&id, ACTIVITY).await.unwrap().unwrap();
        if t.state == "manual" {
            break;
        }
        assert!(Instant::now() < deadline, "the task never became manual");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tasks: Value = crate::rights_agent::get_json(&d.p.app, Some(&d.p.dpo), TASKS).await.json().await.unwrap();
    assert_eq!(tasks["tasks"][0]["request_id"], id.as_str());
    assert_eq!(tasks["tasks"][0]["activity"], ACTIVITY);
    assert_eq!(crate::rights_agent::get_json(&d.p.app, Some(&d.p.counter), TASKS).await.status(), 403);

    let done = format!("{QUEUE}/{id}/tasks/{ACTIVITY}/done");
    let body = json!({ "outcome": "completed", "answer": "Vos données vous ont été remises au guichet." });
    assert_eq!(post_json(&d.p.app, Some(&d.p.counter), &done, &body).await.status(), 403);
    let empty = json!({ "outcome": "completed", "answer": " " });
    assert_eq!(post_json(&d.p.app, Some(&d.p.dpo), &done, &empty).await.status(), 422);
    let unknown = format!("{QUEUE}/{id}/tasks/etat-civil/done");
    let unknown = post_json(&d.p.app, Some(&d.p.dpo), &unknown, &body).await;
    assert_eq!(unknown.status(), 404);
    check_documented("post", DONE_DOC, 404, "application/problem+json", &unknown.json().await.unwrap());
    assert_eq!(d.p.app.state.rights.get(&id).await.unwrap().status, Status::WaitingOnApplications);

    let r = post_json(&d.p.app, Some(&d.p.dpo), &done, &body).await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["status"], "completed");
    check_documented("post", DONE_DOC, 200, "application/json", &view);
    let request = d.p.app.state.rights.get(&id).await.unwrap();
    assert_eq!(request.status, Status::Completed);
    let summary = serde_json::to_string(&request.answer).unwrap();
    assert!(summary.contains("fait"), "{summary}");
    let t = d.p.app.state.rights.target(&id, ACTIVITY).await.unwrap().unwrap();
    assert_eq!((t.state.as_str(), t.status.as_deref()), ("answered", Some("completed")));
    assert_eq!(t.reason.as_deref(), Some("Vos données vous ont été remises au guichet."));
    let entries = journal(&d.p.app, &id).await;
    let task = entries.iter().find(|e| e["operation"]["stage"] == "task_done").expect("journaled");
    assert_eq!((task["role"].as_str(), task["activity"].as_str()), (Some("dpo"), Some(ACTIVITY)));
    assert!(stages(&entries).contains(&"completed".to_owned()), "{entries:?}");
    // Closed once: a second answer changes nothing.
    let again = post_json(&d.p.app, Some(&d.p.dpo), &done, &body).await;
    assert_eq!(again.status(), 409);
    check_documented("post", DONE_DOC, 409, "application/problem+json", &again.json().await.unwrap());
    let tasks: Value = crate::rights_agent::get_json(&d.p.app, Some(&d.p.dpo), TASKS).await.json().await.unwrap();
    assert_eq!(tasks["tasks"], json!([]));
}

on_both_stores!(
    an_erasure_filed_at_the_counter_reaches_the_application,
    handlers_lift_a_restriction_and_the_application_is_told,
    handlers_close_a_task_done_by_hand_and_the_request_completes,
);

/// Runs due jobs until `n` messages about rights requests arrived at the relay (or 10 s
/// passed); the receipt of the consent given on the way is left out.
async fn messages(app: &TestApp, smtp: &SmtpServer, n: usize) -> Vec<Value> {
    let about_rights = || -> Vec<Value> {
        smtp.received().into_iter().filter(|m| m["subject"] != "Votre choix est bien enregistré").collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while about_rights().len() < n && Instant::now() < deadline {
        app.state.jobs.run_due(10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    about_rights()
}

async fn the_citizen_is_told_of_an_extension_and_of_each_answer(backend: Backend) {
    const ADDRESS: &str = "angela.dubois@exemple.fr";
    let relay = crate::helpers::free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let d = desk(backend, Mode::AnswerNow, |b| b.with(move |s, _| relay_settings(s, relay))).await;
    let angela = citizen(&d.p.app, &d.p.citizens, "sub-angela").await;
    pseudonym_seen_by_app(&d.p.app, &angela).await;

    // An access request the application answers at once: received, then answer ready.
    let body = json!({ "right": "access", "activity": ACTIVITY, "email": ADDRESS });
    let r = crate::propagation::post_json(&d.p.app, &angela, "/.guichet/api/v1/rights", &body).await;
    assert_eq!(r.status(), 201);
    let first = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    wait_for(&d.p.app, &first, Status::Completed).await;
    // "Your data is ready" waits a little (a citizen still on the page needs none); the API
    // client did not look at it, so it goes out then. The receipt is sent first (moving the
    // clock past a send's lease would let a second runner send it again).
    assert_eq!(messages(&d.p.app, &smtp, 1).await.len(), 1);
    let subject = d.p.app.state.rights.get(&first).await.unwrap().subject;
    wait_notice(&d.p.app, &subject, "export_ready").await;
    no_job_running(&d.p.app).await;
    d.p.app.clock.advance(guichet::notify::EXPORT_READY_DELAY);
    let got = messages(&d.p.app, &smtp, 2).await;
    let subjects: Vec<&str> = got.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(got.len(), 2, "{subjects:?}");
    assert!(subjects.contains(&"Votre demande a bien été reçue"), "{subjects:?}");
    assert!(subjects.contains(&"Vos données sont prêtes"), "{subjects:?}");
    let ready = got.iter().find(|m| m["subject"] == "Vos données sont prêtes").unwrap();
    assert!(ready["text"].as_str().unwrap().contains(&first));
    assert_eq!(ready["rcpt_tos"], json!([ADDRESS]));

    // The DPO extends a second request: the notice gives the reason; then refuses it.
    let second = filed_on(&d.p.app, &angela, "rectification").await;
    let reason = "Cinq services sont concernés par votre demande";
    let r = post_json(
        &d.p.app,
        Some(&d.p.dpo),
        &format!("{QUEUE}/{second}/extend"),
        &json!({ "months": 1, "reason": reason }),
    )
    .await;
    assert_eq!(r.status(), 200);
    let got = messages(&d.p.app, &smtp, 3).await;
    assert_eq!(got.len(), 3);
    let extended = &got[2];
    assert_eq!(extended["subject"], "Votre demande prend plus de temps");
    let text = extended["text"].as_str().unwrap();
    assert!(text.contains(reason) && text.contains(&second), "{text}");

    let refusal = json!({ "ground": "decision", "reason": "Les données sont déjà exactes." });
    assert_eq!(post_json(&d.p.app, Some(&d.p.dpo), &format!("{QUEUE}/{second}/refuse"), &refusal).await.status(), 200);
    let got = messages(&d.p.app, &smtp, 4).await;
    assert_eq!(got.len(), 4);
    assert_eq!(got[3]["subject"], "La réponse à votre demande est prête");
    assert!(got[3]["text"].as_str().unwrap().contains(&second));
    // One message per event: asking again sends nothing more.
    guichet::notify::answer_ready(&d.p.app.state, &d.p.app.state.rights.get(&second).await.unwrap()).await;
    assert_eq!(messages(&d.p.app, &smtp, 5).await.len(), 4);
}

with_smtp_on_both_stores!(the_citizen_is_told_of_an_extension_and_of_each_answer);

/// The "ready" messages about the real SMTP server: `(subject, text)` of each "Vos données sont
/// prêtes" received.
fn data_ready(smtp: &SmtpServer) -> Vec<String> {
    smtp.received()
        .into_iter()
        .filter(|m| m["subject"] == "Vos données sont prêtes")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits (at most 10 s) until a notice of `kind` is recorded for `subject`.
/// Waits until no job is being run (by the gateway's own loop or the test): a message can
/// reach the relay before its job is marked done, and moving the clock past the job's lease
/// then would let the next runner send it again (at-least-once delivery, as designed).
async fn no_job_running(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.state.jobs.counts().await.unwrap().running > 0 {
        assert!(Instant::now() < deadline, "a job still runs after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_notice(app: &TestApp, subject: &str, kind: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.state.notify.of_subject(subject).await.unwrap().iter().any(|n| n.kind == kind) {
        assert!(Instant::now() < deadline, "no {kind} notice recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The "ready" messages once `n` arrived (running the due jobs meanwhile), or after 10 s.
async fn data_ready_after(app: &TestApp, smtp: &SmtpServer, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while data_ready(smtp).len() < n && Instant::now() < deadline {
        app.state.jobs.run_due(20).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    data_ready(smtp)
}

/// Runs the jobs due now a few times (the send jobs of notices due).
async fn run_jobs(app: &TestApp) {
    for _ in 0..5 {
        app.state.jobs.run_due(20).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// "Your data is ready" (its own notice, not "the answer is ready") reaches a citizen whose
/// export became ready after she left the procedure, with the reference and where to
/// download; a citizen who saw the export ready on the last screen gets no such message.
async fn data_ready_is_sent_when_the_export_comes_after_the_citizen_left(backend: Backend) {
    const ADDRESS: &str = "angela.prete@exemple.fr";
    let relay = crate::helpers::free_port();
    let smtp = SmtpServer::start(relay, None).await;
    let d = desk(backend, Mode::Accept, |b| b.with(move |s, _| relay_settings(s, relay))).await;
    let app = &d.p.app;
    let angela = citizen(app, &d.p.citizens, "sub-angela").await;
    pseudonym_seen_by_app(app, &angela).await;
    let session = crate::assisted::session_of(app, &angela).await;
    let subject = app.state.auth.consent_subject(&session).to_owned();
    let address = guichet::notify::Address::parse(ADDRESS, guichet::notify::Source::Given).unwrap();
    app.state.notify.remember(&subject, &address).await.unwrap();

    // The application answers later: she reads "ready by <date>" and leaves.
    let receipt = crate::assisted::through_the_procedure(app, &angela, "acces").await;
    let later = receipt.rsplit('/').next().unwrap().to_owned();
    wait_received(&d.rights_app, 1).await;
    wait_for(app, &later, Status::WaitingOnApplications).await;
    let page =
        crate::assisted::text(crate::assisted::get(app, Some(&angela), &format!("{receipt}?nouvelle=1")).await, 200)
            .await;
    assert!(page.contains("Nous vous envoyons un message"), "{page}");
    let answer = guichet::rights::contract::AppAnswer {
        request_id: format!("{later}.{ACTIVITY}"),
        status: guichet::rights::contract::AppStatus::Completed,
        reason: None,
        records: Some(json!({})),
    };
    guichet::rights::propagation::record(&app.state, &later, ACTIVITY, &answer).await.unwrap();
    assert_eq!(app.state.rights.get(&later).await.unwrap().status, Status::Completed);
    run_jobs(app).await;
    assert!(data_ready(&smtp).is_empty(), "not before the short wait");
    no_job_running(app).await;
    app.clock.advance(guichet::notify::EXPORT_READY_DELAY);
    let ready = data_ready_after(app, &smtp, 1).await;
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert!(ready[0].contains(&later), "{}", ready[0]);
    assert!(ready[0].contains(&format!("/.guichet/mes-donnees/demandes/{later}")), "{}", ready[0]);
    assert!(ready[0].contains("Télécharger mes données"), "{}", ready[0]);
    let sent = smtp.received();
    let m = sent.iter().find(|m| m["subject"] == "Vos données sont prêtes").unwrap();
    assert_eq!(m["rcpt_tos"], json!([ADDRESS]));
    assert!(m["html"].as_str().unwrap().contains(&later));
    // Not "the answer is ready" as well: one message for one event.
    assert!(sent.iter().all(|m| m["subject"] != "La réponse à votre demande est prête"));

    // The application answers at once: she sees "ready" on the last screen, no message.
    d.rights_app.set_mode(Mode::AnswerNow);
    let receipt = crate::assisted::through_the_procedure(app, &angela, "acces").await;
    let instant = receipt.rsplit('/').next().unwrap().to_owned();
    wait_for(app, &instant, Status::Completed).await;
    let page =
        crate::assisted::text(crate::assisted::get(app, Some(&angela), &format!("{receipt}?nouvelle=1")).await, 200)
            .await;
    assert!(page.contains("Vos données sont prêtes"), "{page}");
    no_job_running(app).await;
    app.clock.advance(guichet::notify::EXPORT_READY_DELAY + time::Duration::minutes(1));
    run_jobs(app).await;
    assert_eq!(data_ready(&smtp).len(), 1, "no message for the export she saw ready");
    let rows = app.state.notify.of_subject(&subject).await.unwrap();
    let seen: Vec<_> = rows.iter().filter(|r| r.kind == "export_ready").map(|r| r.status.as_str()).collect();
    assert_eq!(seen.len(), 2, "{rows:?}");
    assert!(seen.contains(&guichet::notify::SEEN) && seen.contains(&"sent"), "{seen:?}");
}

with_smtp_on_both_stores!(data_ready_is_sent_when_the_export_comes_after_the_citizen_left);

mod command_line {
    //! `guichet rights …` through the real binary on the store of a gateway that keeps
    //! serving and writing meanwhile: no "database is locked", no hang on a store whose
    //! requests are 40 days old, and the handler's steps (lift, task done) as in the API.

    use std::time::Duration;

    use guichet::audit::Actor;
    use guichet::clock::Clock as _;
    use guichet::rights::request::{Channel, IdentityProof, Right, Status};
    use guichet::rights::service::{By, NewRequest};
    use serde_json::{Value, json};

    use super::{ACTIVITY, desk};
    use crate::consent::citizen;
    use crate::helpers::{Backend, TestApp};
    use crate::on_both_stores;
    use crate::propagation::{Mode, post_json};

    /// Runs the real binary on `conf`; a run that does not end within a minute is a hang.
    async fn guichet(conf: &str, args: &[&str]) -> (Option<i32>, String, String) {
        let out = crate::cli::rights::guichet_within_a_minute(&[args, &["--config", conf]].concat()).await;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    async fn filed_online(app: &TestApp, session: &str, right: &str) -> String {
        let r =
            post_json(app, session, "/.guichet/api/v1/rights", &json!({ "right": right, "activity": ACTIVITY })).await;
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
    }

    async fn wait_manual(app: &TestApp, id: &str) {
        for _ in 0..200 {
            if app.state.rights.target(id, ACTIVITY).await.unwrap().is_some_and(|t| t.state == "manual") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{id} never waited for an agent");
    }

    async fn the_command_line_works_beside_a_serving_gateway(backend: Backend) {
        let d = desk(backend, Mode::Reject, |b| b).await;
        let dir = tempfile::tempdir().unwrap();
        let conf = crate::cli::rights::config_for(&d.p.app, dir.path());
        let angela = citizen(&d.p.app, &d.p.citizens, "sub-angela").await;
        crate::propagation::pseudonym_seen_by_app(&d.p.app, &angela).await;
        // The gateway's requests were received 40 days ago: the first month is over.
        let now = guichet::clock::SystemClock.now();
        d.p.app.clock.advance(now - time::Duration::days(40) - d.p.app.clock.now());
        let old = crate::cli::rights::file(&d.p.app, "sub_old", Right::Access).await;
        let restriction = filed_online(&d.p.app, &angela, "restriction").await;
        let access = filed_online(&d.p.app, &angela, "access").await;
        wait_manual(&d.p.app, &access).await;
        wait_manual(&d.p.app, &restriction).await;
        d.p.app.clock.advance(now - d.p.app.clock.now());

        // The gateway keeps writing to the store while the command line runs.
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let writer = {
            let state = d.p.app.state.clone();
            tokio::spawn(async move {
                let mut n = 0u32;
                while !*stopped.borrow_and_update() {
                    let by = By { actor: Actor::system(), role: Actor::system().id };
                    let new = NewRequest {
                        subject: format!("sub_busy_{n}"),
                        activity: None,
                        right: Right::Access,
                        channel: Channel::Online,
                        agent: None,
                        identity: IdentityProof::SignIn { acr: "eidas1".into() },
                    };
                    state.rights.create(&state.policies.load(), new, &by).await.unwrap();
                    n += 1;
                    tokio::task::yield_now().await;
                }
                n
            })
        };

        let (code, _, err) = guichet(&conf, &["rights", "extend", &old, "--months", "1", "--reason", "Tard"]).await;
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("first month"), "{err}");
        assert!(!err.contains("locked"), "{err}");

        let (code, out, err) = guichet(&conf, &["rights", "lift", &restriction]).await;
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("1 activity lifted."), "{out}");
        let field = d.p.app.state.rights.target(&restriction, ACTIVITY).await.unwrap().unwrap().field_subject.unwrap();
        assert!(!guichet::rights::restriction::is_restricted(&d.p.app.state, &field, ACTIVITY).await.unwrap());
        let (code, _, err) = guichet(&conf, &["rights", "lift", &access]).await;
        assert_eq!(code, Some(1));
        assert!(err.contains("only a restriction request"), "{err}");
        // The command queued the notice for the application, as the API does; the serving
        // gateway's job runner delivers it once due. The command line stamped it with the
        // real time, ahead of this gateway's frozen clock: move the clock past it.
        d.p.app.clock.advance(time::Duration::minutes(2));
        super::wait_lifted_answer(&d.p.app, &restriction).await;
        let told = d.rights_app.received();
        assert!(told.iter().any(|c| c["type"] == "restriction_lifted"), "{told:?}");
        // `show` gives the application's answer to the notice (this one refuses with a 400).
        let (code, out, err) = guichet(&conf, &["rights", "show", &restriction]).await;
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains(&format!("restriction lifted, {ACTIVITY} answered: refused")), "{out}");
        let (_, out, _) = guichet(&conf, &["rights", "show", &restriction, "--json"]).await;
        let shown: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(shown["lifted"][0]["status"], "refused", "{shown}");

        let (code, out, _) = guichet(&conf, &["rights", "task", "list"]).await;
        assert_eq!(code, Some(0));
        assert!(out.contains(&access) && out.contains(ACTIVITY), "{out}");
        let (code, _, err) = guichet(&conf, &["rights", "task", "done", &access, ACTIVITY, "--answer", " "]).await;
        assert_eq!(code, Some(1));
        assert!(err.contains("--answer"), "{err}");
        let answer = "Vos données vous ont été remises au guichet.";
        let (code, out, err) =
            guichet(&conf, &["rights", "task", "done", &access, ACTIVITY, "--answer", answer, "--json"]).await;
        assert_eq!(code, Some(0), "{err}");
        let view: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(view["status"], "completed");
        assert_eq!(d.p.app.state.rights.get(&access).await.unwrap().status, Status::Completed);
        let (code, _, err) = guichet(&conf, &["rights", "task", "done", &access, ACTIVITY, "--answer", answer]).await;
        assert_eq!(code, Some(1), "closed once: {err}");

        stop.send(true).unwrap();
        assert!(writer.await.unwrap() > 0, "the gateway wrote meanwhile");
        // Each step journaled with the operator.
        d.p.app.state.audit.flush().await.unwrap();
        let entries = d.p.app.state.store.audit().entries_after(0, 100_000).await.unwrap();
        let stages: Vec<String> = entries
            .iter()
            .map(|e| serde_json::from_str::<Value>(&e.body).unwrap())
            .filter(|b| b["actor"]["id"] == "operator")
            .map(|b| b["operation"]["stage"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(stages.contains(&"restriction_lifted".to_owned()), "{stages:?}");
        assert!(stages.contains(&"task_done".to_owned()), "{stages:?}");
    }

    on_both_stores!(the_command_line_works_beside_a_serving_gateway);
}
