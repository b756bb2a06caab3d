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

async fn journaled_stages(app: &TestApp, request: &str) -> Vec<String> {
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
