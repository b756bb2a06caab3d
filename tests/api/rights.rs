//! The rights service on both engines: requests recorded with their channel and deadline,
//! the legal-basis rules answering at once, the state machine, extensions and pauses, each
//! step journaled.

use guichet::audit::{Actor, ActorKind, Ident};
use guichet::clock::Clock;
use guichet::rights::request::{Channel, DocumentKind, IdentityProof, Refusal, RefusalGround, Right, Status};
use guichet::rights::service::{Answer, By, NewRequest, RightsError};
use time::macros::{date, datetime};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_stores;

const SUBJECT: &str = "sub_5f1c2a";

async fn app(backend: Backend) -> TestApp {
    let app = spawn_app()
        .backend(backend)
        .with_policies(&[
            ("cantine.toml", include_str!("../../policies/cantine.toml")),
            ("lettre-information.toml", include_str!("../../policies/lettre-information.toml")),
            ("etat-civil.toml", include_str!("../../policies/etat-civil.toml")),
        ])
        .start()
        .await;
    // 23:30 UTC on 31 January is already 1 February in Paris: the month counts from there.
    app.clock.advance(datetime!(2027-01-31 23:30 UTC) - app.clock.now());
    app
}

fn citizen() -> By {
    By {
        actor: Actor { kind: ActorKind::Citizen, id: Ident::new(SUBJECT).unwrap() },
        role: Ident::new("citizen").unwrap(),
    }
}

fn agent() -> By {
    By {
        actor: Actor { kind: ActorKind::Agent, id: Ident::new("agent_42").unwrap() },
        role: Ident::new("accueil").unwrap(),
    }
}

fn online(right: Right, activity: Option<&str>) -> NewRequest {
    NewRequest {
        subject: SUBJECT.into(),
        activity: activity.map(str::to_owned),
        right,
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: "eidas1".into() },
    }
}

pub(crate) async fn journaled_stages(app: &TestApp, request: &str) -> Vec<String> {
    app.state.audit.flush().await.unwrap();
    let entries = app.state.store.audit().entries_after(0, 10_000).await.unwrap();
    entries
        .iter()
        .filter(|e| e.body.contains(&format!("\"request_id\":\"{request}\"")))
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            body["operation"]["stage"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn a_request_is_recorded_with_its_deadline_and_journaled(backend: Backend) {
    let app = app(backend).await;
    let rights = &app.state.rights;
    let policies = app.state.policies.load();
    let r = rights.create(&policies, online(Right::Access, Some("cantine")), &citizen()).await.unwrap();
    assert!(r.id.starts_with("DR-") && r.id.len() == 12, "{}", r.id);
    assert_eq!(r.status, Status::Received);
    assert_eq!(r.deadline.received_on(), date!(2027 - 02 - 01));
    assert_eq!(r.due_on(date!(2027 - 02 - 01)), date!(2027 - 03 - 01));
    let back = rights.get(&r.id).await.unwrap();
    assert_eq!(back, r);
    assert_eq!(rights.of_subject(SUBJECT).await.unwrap(), vec![r.clone()]);
    assert!(rights.of_subject("sub_other").await.unwrap().is_empty());

    rights.advance(&r.id, Status::InProgress, None, &agent()).await.unwrap();
    rights.advance(&r.id, Status::WaitingOnApplications, None, &agent()).await.unwrap();
    let done = rights.advance(&r.id, Status::Completed, Some("Export prêt".into()), &agent()).await.unwrap();
    assert_eq!(done.answer, Some(Answer::Done { summary: "Export prêt".into() }));
    assert!(rights.open().await.unwrap().is_empty());
    assert_eq!(
        journaled_stages(&app, &r.id).await,
        ["received", "in_progress", "waiting_on_applications", "completed"]
    );
    // Nothing moves a completed request.
    let e = rights.advance(&r.id, Status::InProgress, None, &agent()).await.unwrap_err();
    assert!(matches!(e, RightsError::Transition(_)), "{e:?}");
}

async fn a_right_the_legal_basis_excludes_is_refused_at_once_with_reason_and_remedies(backend: Backend) {
    let app = app(backend).await;
    let rights = &app.state.rights;
    let policies = app.state.policies.load();
    let r = rights.create(&policies, online(Right::Erasure, Some("etat-civil")), &citizen()).await.unwrap();
    assert_eq!(r.status, Status::Refused);
    let Some(Answer::Refused { refusal, remedies }) = &r.answer else { panic!("no refusal: {r:?}") };
    assert_eq!(refusal.ground, RefusalGround::NotApplicable { article: "Art. 17(3)(b) RGPD".into() });
    assert!(remedies.contains("CNIL") && remedies.contains("tribunal"), "{remedies}");
    assert_eq!(journaled_stages(&app, &r.id).await, ["received", "refused"]);

    let portability = rights.create(&policies, online(Right::Portability, Some("cantine")), &citizen()).await.unwrap();
    assert_eq!(portability.status, Status::Refused);
    // Consent-based: erasure and portability go ahead.
    let erase = rights.create(&policies, online(Right::Erasure, Some("lettre-information")), &citizen()).await.unwrap();
    assert_eq!(erase.status, Status::Received);
    let port =
        rights.create(&policies, online(Right::Portability, Some("lettre-information")), &citizen()).await.unwrap();
    assert_eq!(port.status, Status::Received);
    assert!(matches!(
        rights.create(&policies, online(Right::Access, Some("inconnu")), &citizen()).await,
        Err(RightsError::UnknownActivity)
    ));
}

async fn assisted_requests_name_the_agent_and_refusals_need_their_reason(backend: Backend) {
    let app = app(backend).await;
    let rights = &app.state.rights;
    let policies = app.state.policies.load();
    let mut counter = online(Right::Objection, Some("cantine"));
    counter.channel = Channel::Counter;
    counter.identity = IdentityProof::Document { kind: DocumentKind::IdentityCard };
    assert!(matches!(rights.create(&policies, counter.clone(), &agent()).await, Err(RightsError::AgentMissing)));
    counter.agent = Some("agent_42".into());
    let r = rights.create(&policies, counter, &agent()).await.unwrap();
    assert_eq!((r.status, r.channel, r.agent.as_deref()), (Status::Received, Channel::Counter, Some("agent_42")));
    let blank = Refusal { ground: RefusalGround::Decision, reason: "".into() };
    assert!(matches!(rights.refuse(&r.id, blank, &agent()).await, Err(RightsError::Transition(_))));
    let excessive = Refusal {
        ground: RefusalGround::UnfoundedOrExcessive { earlier_requests: vec![] },
        reason: "Répétée".into(),
    };
    assert!(matches!(rights.refuse(&r.id, excessive, &agent()).await, Err(RightsError::Transition(_))));
    let decided = Refusal {
        ground: RefusalGround::Decision,
        reason: "La cantine doit connaître les allergies pour servir les repas sans danger.".into(),
    };
    let refused = rights.refuse(&r.id, decided, &agent()).await.unwrap();
    assert_eq!(refused.status, Status::Refused);
    assert_eq!(rights.get(&r.id).await.unwrap(), refused);
}

async fn the_citizen_cancels_only_their_own_request(backend: Backend) {
    let app = app(backend).await;
    let rights = &app.state.rights;
    let policies = app.state.policies.load();
    let r = rights.create(&policies, online(Right::Access, None), &citizen()).await.unwrap();
    assert!(matches!(rights.cancel(&r.id, "sub_other", &citizen()).await, Err(RightsError::NotFound)));
    assert_eq!(rights.get(&r.id).await.unwrap().status, Status::Received);
    assert_eq!(rights.cancel(&r.id, SUBJECT, &citizen()).await.unwrap().status, Status::Cancelled);
}

async fn extensions_and_pauses_move_the_stored_deadline(backend: Backend) {
    let app = app(backend).await;
    let rights = &app.state.rights;
    let policies = app.state.policies.load();
    let r = rights.create(&policies, online(Right::Access, None), &citizen()).await.unwrap();
    // An identity doubt pauses the clock for 3 days.
    rights.pause(&r.id, &agent()).await.unwrap();
    app.clock.advance(time::Duration::days(3));
    let resumed = rights.resume(&r.id, &agent()).await.unwrap();
    assert_eq!(resumed.due_on(date!(2027 - 02 - 04)), date!(2027 - 03 - 04));
    let e = rights.extend(&r.id, 2, "  ".into(), date!(2027 - 02 - 04), &agent()).await.unwrap_err();
    assert!(matches!(e, RightsError::Deadline(_)), "{e:?}");
    let extended = rights
        .extend(&r.id, 2, "Cinq services doivent répondre.".into(), date!(2027 - 02 - 04), &agent())
        .await
        .unwrap();
    assert_eq!(extended.due_on(date!(2027 - 02 - 04)), date!(2027 - 05 - 04));
    assert_eq!(rights.get(&r.id).await.unwrap().deadline, extended.deadline, "the deadline is stored");
    // Past the (extended) due date the request is overdue; a late extension is refused.
    let other = rights.create(&policies, online(Right::Rectification, None), &citizen()).await.unwrap();
    app.clock.advance(time::Duration::days(40));
    let late = rights.extend(&other.id, 1, "Trop tard".into(), date!(2027 - 02 - 10), &agent()).await.unwrap_err();
    assert!(matches!(late, RightsError::Deadline(_)), "{late:?}");
    assert!(rights.get(&other.id).await.unwrap().is_overdue(date!(2027 - 03 - 15)));
    assert_eq!(journaled_stages(&app, &r.id).await, ["received", "paused", "resumed", "extended"]);
}

on_both_stores!(
    a_request_is_recorded_with_its_deadline_and_journaled,
    a_right_the_legal_basis_excludes_is_refused_at_once_with_reason_and_remedies,
    assisted_requests_name_the_agent_and_refusals_need_their_reason,
    the_citizen_cancels_only_their_own_request,
    extensions_and_pauses_move_the_stored_deadline,
);

mod api {
    //! The citizen's JSON API over a real sign-in.

    use serde_json::{Value, json};

    use crate::auth::SESSION;
    use crate::consent::{builder, citizen};
    use crate::helpers::{Backend, TestApp};
    use crate::oidc_mock::MockProvider;
    use crate::on_both_stores;

    const API: &str = "/.guichet/api/v1/rights";

    async fn post_json(app: &TestApp, session: Option<&str>, path: &str, body: &Value) -> reqwest::Response {
        let mut r = app.client.post(app.url(path)).header("content-type", "application/json").body(body.to_string());
        if let Some(s) = session {
            r = r.header("cookie", format!("{SESSION}={s}"));
        }
        r.send().await.unwrap()
    }

    async fn get_json(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
        app.client.get(app.url(path)).header("cookie", format!("{SESSION}={session}")).send().await.unwrap()
    }

    /// The newsletter (consent) and civil status (legal obligation) activities, with a citizen
    /// provider.
    async fn app_with_civil_status(backend: Backend) -> (TestApp, MockProvider) {
        let mock = MockProvider::start().await;
        let app = builder(&mock, backend)
            .with_policies(&[("etat-civil.toml", include_str!("../../policies/etat-civil.toml"))])
            .start()
            .await;
        (app, mock)
    }

    async fn count(app: &TestApp, session: &str) -> usize {
        let list: Value = get_json(app, session, API).await.json().await.unwrap();
        list["requests"].as_array().unwrap().len()
    }

    async fn a_citizen_files_lists_reads_and_cancels_their_own_requests(backend: Backend) {
        let (app, mock) = app_with_civil_status(backend).await;
        let angela = citizen(&app, &mock, "sub-angela").await;
        let bruno = citizen(&app, &mock, "sub-bruno").await;

        let r = post_json(&app, Some(&angela), API, &json!({ "right": "access" })).await;
        assert_eq!(r.status(), 201);
        let created: Value = r.json().await.unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        // No activity here has a rights endpoint: the request waits in the agents' queue.
        assert_eq!(created["status"], "waiting_on_applications");
        assert_eq!(created["channel"], "online");
        assert!(created["due_on"].as_str().unwrap().len() == 10, "{created}");
        assert_eq!(created["overdue"], false);

        let shown: Value = get_json(&app, &angela, &format!("{API}/{id}")).await.json().await.unwrap();
        assert_eq!(shown["id"], id.as_str());
        assert_eq!(count(&app, &angela).await, 1);

        // Another citizen neither sees nor cancels it.
        assert_eq!(get_json(&app, &bruno, &format!("{API}/{id}")).await.status(), 404);
        assert_eq!(post_json(&app, Some(&bruno), &format!("{API}/{id}/cancel"), &json!({})).await.status(), 404);
        assert_eq!(count(&app, &bruno).await, 0);

        let cancelled = post_json(&app, Some(&angela), &format!("{API}/{id}/cancel"), &json!({})).await;
        assert_eq!(cancelled.status(), 200);
        assert_eq!(cancelled.json::<Value>().await.unwrap()["status"], "cancelled");
        let again = post_json(&app, Some(&angela), &format!("{API}/{id}/cancel"), &json!({})).await;
        assert_eq!(again.status(), 422);
        assert_eq!(again.headers()["content-type"], "application/problem+json");
    }

    async fn a_right_that_does_not_apply_is_answered_with_its_reason(backend: Backend) {
        let (app, mock) = app_with_civil_status(backend).await;
        let angela = citizen(&app, &mock, "sub-angela").await;
        let r = post_json(&app, Some(&angela), API, &json!({ "right": "erasure", "activity": "etat-civil" })).await;
        assert_eq!(r.status(), 201);
        let refused: Value = r.json().await.unwrap();
        assert_eq!(refused["status"], "refused");
        assert_eq!(refused["answer"]["kind"], "refused");
        assert_eq!(refused["answer"]["article"], "Art. 17(3)(b) RGPD");
        assert!(refused["answer"]["reason"].as_str().unwrap().contains("conservation"));
        assert!(refused["answer"]["remedies"].as_str().unwrap().contains("CNIL"));
        let erase =
            post_json(&app, Some(&angela), API, &json!({ "right": "erasure", "activity": "lettre-information" })).await;
        assert_eq!(erase.json::<Value>().await.unwrap()["status"], "waiting_on_applications");
        let unknown = post_json(&app, Some(&angela), API, &json!({ "right": "access", "activity": "inconnu" })).await;
        assert_eq!(unknown.status(), 422);
    }

    async fn nothing_is_filed_without_a_session_or_from_a_cross_site_form(backend: Backend) {
        let mock = MockProvider::start().await;
        let app = builder(&mock, backend).start().await;
        let angela = citizen(&app, &mock, "sub-angela").await;
        let anonymous = post_json(&app, None, API, &json!({ "right": "access" })).await;
        assert_eq!(anonymous.status(), 401);
        // What a cross-site HTML form can send: url-encoded, with the citizen's cookie.
        let form = app
            .client
            .post(app.url(API))
            .header("cookie", format!("{SESSION}={angela}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("right=access")
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), 400);
        let text = app
            .client
            .post(app.url(API))
            .header("cookie", format!("{SESSION}={angela}"))
            .header("content-type", "text/plain")
            .body(r#"{"right":"access"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(text.status(), 400);
        let bad = post_json(&app, Some(&angela), API, &json!({ "right": "everything" })).await;
        assert_eq!(bad.status(), 400);
        assert_eq!(count(&app, &angela).await, 0, "nothing was filed");
        assert!(app.upstream.received().is_empty(), "nothing under /.guichet/ is proxied");
    }

    on_both_stores!(
        a_citizen_files_lists_reads_and_cancels_their_own_requests,
        a_right_that_does_not_apply_is_answered_with_its_reason,
        nothing_is_filed_without_a_session_or_from_a_cross_site_form,
    );
}
