//! The agents' and the DPO's rights API over real sign-ins (citizen and agent providers): an
//! agent files a request with the code the citizen reads out; the DPO works the queue; every
//! refusal rule holds; sessions without the role change nothing.

use serde_json::{Value, json};

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie};
use crate::consent::{builder, citizen, consent_page, post, token};
use crate::helpers::{Backend, TestApp, TestAppBuilder};
use crate::oidc_mock::MockProvider;
use crate::on_both_stores;

const API: &str = "/.guichet/api/v1/rights";
const ASSISTED: &str = "/.guichet/api/v1/rights/assisted";
const QUEUE: &str = "/.guichet/api/v1/rights/queue";

pub(crate) struct Parties {
    pub app: TestApp,
    pub citizens: MockProvider,
    /// An agent with `etat-civil`, allowed to file assisted requests.
    pub counter: String,
    /// An agent with `dpo`.
    pub dpo: String,
    /// An agent of another organisation, with no role.
    pub outsider: String,
    /// The agents' identity provider, to sign in more agents.
    pub agents: MockProvider,
}

/// The newsletter activity, citizen and agent providers, `etat-civil` allowed to file for
/// citizens and the `dpo` role granted to uid `dpo-1`.
pub(crate) async fn parties(backend: Backend) -> Parties {
    parties_with(backend, |b| b).await
}

/// Like `parties`, with more settings.
pub(crate) async fn parties_with(backend: Backend, tweak: impl FnOnce(TestAppBuilder) -> TestAppBuilder) -> Parties {
    let citizens = MockProvider::start().await;
    let base = tweak(builder(&citizens, backend));
    parties_from(base, citizens).await
}

/// The agents and roles of `parties` on the gateway `base` builds for `citizens`.
pub(crate) async fn parties_from(base: TestAppBuilder, citizens: MockProvider) -> Parties {
    let agents = MockProvider::start().await;
    let app = base
        .with_agent_provider(agents.issuer())
        .with(|s, _| {
            s.rights.assisted_roles = vec!["etat-civil".into()];
            // Tests move the clock by weeks: sessions signed in before must last.
            s.auth.session_idle_timeout = std::time::Duration::from_secs(400 * 86_400);
            s.auth.session_absolute_timeout = std::time::Duration::from_secs(400 * 86_400);
            s.auth.agent_roles.push(guichet::config::RoleRule {
                role: "dpo".into(),
                siret: vec!["21750001600019".into()],
                email_domains: vec![],
                uids: vec!["dpo-1".into()],
            });
        })
        .start()
        .await;
    let sign_in = |info: Value| {
        let (app, agents) = (&app, &agents);
        async move { cookie(&agent_sign_in(app, agents, info, "").await, SESSION).unwrap() }
    };
    let counter = sign_in(agent_info("21750001600019", "lucie@mairie.example.fr")).await;
    let mut dpo_info = agent_info("21750001600019", "dpd@referent.example.fr");
    dpo_info["uid"] = json!("dpo-1");
    let dpo = sign_in(dpo_info).await;
    let outsider = sign_in(agent_info("11111111111111", "x@ailleurs.example.fr")).await;
    Parties { app, citizens, counter, dpo, outsider, agents }
}

pub(crate) async fn post_json(app: &TestApp, session: Option<&str>, path: &str, body: &Value) -> reqwest::Response {
    let mut r = app.client.post(app.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(s) = session {
        r = r.header("cookie", format!("{SESSION}={s}"));
    }
    r.send().await.unwrap()
}

pub(crate) async fn get_json(app: &TestApp, session: Option<&str>, path: &str) -> reqwest::Response {
    let mut r = app.client.get(app.url(path));
    if let Some(s) = session {
        r = r.header("cookie", format!("{SESSION}={s}"));
    }
    r.send().await.unwrap()
}

/// The one-time code a signed-in citizen gets on their consent page and reads out.
pub(crate) async fn code_of(app: &TestApp, citizen: &str) -> String {
    let t = token(&consent_page(app, citizen).await);
    let html = post(app, citizen, "/.guichet/consentement/code", &[("jeton", t.as_str())]).await.text().await.unwrap();
    let marker = "id=\"code-agent\" tabindex=\"-1\" autofocus>";
    let at = html.find(marker).expect("the counter code, shown large at the top") + marker.len();
    html[at..].split('<').next().unwrap().trim().to_owned()
}

pub(crate) fn assisted(code: &str, right: &str) -> Value {
    json!({ "code": code, "right": right, "activity": "lettre-information", "channel": "counter", "document": "identity_card" })
}

/// A request filed online by the signed-in citizen `s`; its id.
/// Filed through the service, as the API does but without starting propagation: the DPO's
/// queue is tested from a request just received (propagation has its own tests).
pub(crate) async fn filed(p: &Parties, s: &str, right: &str) -> String {
    filed_on(&p.app, s, right).await
}

/// Like `filed`, on any gateway.
pub(crate) async fn filed_on(app: &TestApp, s: &str, right: &str) -> String {
    use guichet::rights::request::{Channel, IdentityProof, Right};
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("cookie", format!("{SESSION}={s}").parse().unwrap());
    let auth = &app.state.auth;
    let session = auth.identify(&headers).await.unwrap().expect("a citizen session");
    let subject = auth.consent_subject(&session).to_owned();
    let new = guichet::rights::service::NewRequest {
        subject: subject.clone(),
        activity: None,
        right: Right::parse(right).unwrap(),
        channel: Channel::Online,
        agent: None,
        identity: IdentityProof::SignIn { acr: session.acr.clone() },
    };
    let by = guichet::rights::service::By {
        actor: guichet::audit::Actor {
            kind: guichet::audit::ActorKind::Citizen,
            id: guichet::audit::Ident::new(subject.as_str()).unwrap(),
        },
        role: guichet::audit::Ident::new("citizen").unwrap(),
    };
    let policies = app.state.policies.load_full();
    app.state.rights.create(&policies, new, &by).await.unwrap().id
}

async fn problem(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    r.json().await.unwrap()
}

pub(crate) async fn journal(app: &TestApp, request: &str) -> Vec<Value> {
    app.state.audit.flush().await.unwrap();
    let entries = app.state.store.audit().entries_after(0, 10_000).await.unwrap();
    entries
        .iter()
        .filter(|e| e.body.contains(&format!("\"request_id\":\"{request}\"")))
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect()
}

async fn an_agent_files_a_request_with_the_code_the_citizen_reads_out(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;

    // A wrong body is refused before the code is used up.
    let bad = post_json(&p.app, Some(&p.counter), ASSISTED, &json!({ "code": code, "right": "access" })).await;
    problem(bad, 400).await;
    let online = json!({ "code": code, "right": "access", "channel": "online", "document": "passport" });
    problem(post_json(&p.app, Some(&p.counter), ASSISTED, &online).await, 400).await;

    let r = post_json(&p.app, Some(&p.counter), ASSISTED, &assisted(&code.to_lowercase(), "erasure")).await;
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    // Started at once like an online request: it waits on the newsletter's application.
    assert_eq!(
        (created["channel"].as_str(), created["status"].as_str()),
        (Some("counter"), Some("waiting_on_applications"))
    );
    let id = created["id"].as_str().unwrap();

    // The citizen finds it among their own requests.
    let mine: Value = get_json(&p.app, Some(&angela), API).await.json().await.unwrap();
    assert_eq!(mine["requests"][0]["id"], id);
    // The DPO sees who filed it and how identity was checked: the document's kind only.
    let shown: Value = get_json(&p.app, Some(&p.dpo), &format!("{QUEUE}/{id}")).await.json().await.unwrap();
    assert_eq!(shown["identity"], json!({ "method": "document", "document": "identity_card" }));
    assert_eq!(shown["agent"], "agent:agent-sub");
    let entries = journal(&p.app, id).await;
    assert_eq!(entries[0]["actor"], json!({ "kind": "agent", "id": "agent:agent-sub" }));
    assert_eq!(entries[0]["role"], "etat-civil");

    // A code works once.
    let again = post_json(&p.app, Some(&p.counter), ASSISTED, &assisted(&code, "access")).await;
    problem(again, 422).await;
    assert_eq!(p.app.state.rights.open().await.unwrap().len(), 1);
}

async fn an_agent_without_the_role_files_nothing(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let code = code_of(&p.app, &angela).await;
    let body = assisted(&code, "access");
    problem(post_json(&p.app, Some(&p.outsider), ASSISTED, &body).await, 403).await;
    // The DPO handles requests; filing for citizens is another role.
    problem(post_json(&p.app, Some(&p.dpo), ASSISTED, &body).await, 403).await;
    // A citizen cannot file for someone else, nor can anyone without a session.
    problem(post_json(&p.app, Some(&angela), ASSISTED, &body).await, 403).await;
    problem(post_json(&p.app, None, ASSISTED, &body).await, 401).await;
    assert!(p.app.state.rights.open().await.unwrap().is_empty(), "nothing was filed");
    // The refused calls did not use the code up.
    assert_eq!(post_json(&p.app, Some(&p.counter), ASSISTED, &body).await.status(), 201);
}

async fn a_citizen_or_an_agent_without_the_role_cannot_use_the_dpo_endpoints(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let id = filed(&p, &angela, "access").await;
    for who in [Some(angela.as_str()), Some(p.outsider.as_str()), Some(p.counter.as_str()), None] {
        let status = if who.is_some() { 403 } else { 401 };
        problem(get_json(&p.app, who, QUEUE).await, status).await;
        problem(get_json(&p.app, who, &format!("{QUEUE}/{id}")).await, status).await;
        for (action, body) in [
            ("start", json!({})),
            ("pause", json!({})),
            ("extend", json!({ "months": 1, "reason": "Dossier complexe" })),
            ("refuse", json!({ "ground": "decision", "reason": "Non" })),
            ("complete", json!({ "outcome": "completed", "summary": "Fait" })),
        ] {
            let r = post_json(&p.app, who, &format!("{QUEUE}/{id}/{action}"), &body).await;
            problem(r, status).await;
        }
    }
    let r = p.app.state.rights.get(&id).await.unwrap();
    assert_eq!(r.status.as_str(), "received");
    assert_eq!(r.deadline.extended_months(), 0);
    assert_eq!(journal(&p.app, &id).await.len(), 1, "only the filing is journaled");
}

async fn the_dpo_works_the_queue_and_every_step_is_journaled(backend: Backend) {
    let p = parties(backend).await;
    // Signed in first: the provider's tokens are dated by the real clock, not the test's.
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let bruno = citizen(&p.app, &p.citizens, "sub-bruno").await;
    let chloe = citizen(&p.app, &p.citizens, "sub-chloe").await;
    let first = filed(&p, &angela, "access").await;
    p.app.clock.advance(time::Duration::days(2));
    let second = filed(&p, &bruno, "rectification").await;
    p.app.clock.advance(time::Duration::minutes(1));
    let third = filed(&p, &chloe, "restriction").await;

    let q: Value = get_json(&p.app, Some(&p.dpo), QUEUE).await.json().await.unwrap();
    let ids: Vec<&str> = q["requests"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first.as_str(), second.as_str(), third.as_str()], "oldest first");
    assert_eq!(q["requests"][0]["overdue"], false);
    assert_eq!(q["requests"][0]["due_on"].as_str().unwrap().len(), 10);

    let at = |id: &str, action: &str| format!("{QUEUE}/{id}/{action}");
    let start = post_json(&p.app, Some(&p.dpo), &at(&first, "start"), &json!({})).await;
    assert_eq!(start.json::<Value>().await.unwrap()["status"], "in_progress");
    // An identity doubt pauses the clock; 5 days later it runs again, due 5 days later.
    let before: Value = get_json(&p.app, Some(&p.dpo), &format!("{QUEUE}/{first}")).await.json().await.unwrap();
    let paused: Value = post_json(&p.app, Some(&p.dpo), &at(&first, "pause"), &json!({})).await.json().await.unwrap();
    assert_eq!(paused["paused"], true);
    p.app.clock.advance(time::Duration::days(5));
    let resumed: Value = post_json(&p.app, Some(&p.dpo), &at(&first, "resume"), &json!({})).await.json().await.unwrap();
    assert_eq!(resumed["paused"], false);
    let due = |v: &Value| {
        time::Date::parse(v["due_on"].as_str().unwrap(), &time::format_description::well_known::Iso8601::DATE).unwrap()
    };
    assert_eq!(due(&resumed) - due(&before), time::Duration::days(5));

    let extend = json!({ "months": 2, "reason": "Cinq services doivent répondre." });
    let extended: Value = post_json(&p.app, Some(&p.dpo), &at(&first, "extend"), &extend).await.json().await.unwrap();
    assert_eq!(extended["extensions"][0]["months"], 2);
    let received_on = p.app.state.rights.get(&first).await.unwrap().deadline.received_on();
    let three_months = guichet::rights::deadline::add_months(received_on, 3);
    assert_eq!(due(&extended), three_months + time::Duration::days(5));

    let done = json!({ "outcome": "partly_completed", "summary": "Les données de la cantine sont jointes ; l'école n'a rien." });
    let completed: Value = post_json(&p.app, Some(&p.dpo), &at(&first, "complete"), &done).await.json().await.unwrap();
    assert_eq!(completed["status"], "partly_completed");
    assert_eq!(completed["answer"]["kind"], "done");

    // Refused by decision, with the remedies.
    let refusal = json!({ "ground": "decision", "reason": "Les données sont exactes ; aucune correction à faire." });
    let refused: Value = post_json(&p.app, Some(&p.dpo), &at(&second, "refuse"), &refusal).await.json().await.unwrap();
    assert_eq!(refused["status"], "refused");
    assert!(refused["answer"]["remedies"].as_str().unwrap().contains("CNIL"));

    let q: Value = get_json(&p.app, Some(&p.dpo), QUEUE).await.json().await.unwrap();
    assert_eq!(q["requests"].as_array().unwrap().len(), 1, "answered requests leave the queue");
    // Past its due date the last one is flagged overdue.
    p.app.clock.advance(time::Duration::days(40));
    let q: Value = get_json(&p.app, Some(&p.dpo), QUEUE).await.json().await.unwrap();
    assert_eq!(
        (q["requests"][0]["id"].as_str(), q["requests"][0]["overdue"].as_bool()),
        (Some(third.as_str()), Some(true))
    );

    let entries = journal(&p.app, &first).await;
    let stages: Vec<&str> = entries.iter().map(|e| e["operation"]["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["received", "in_progress", "paused", "resumed", "extended", "partly_completed"]);
    for e in &entries[1..] {
        assert_eq!((e["actor"]["kind"].as_str(), e["role"].as_str()), (Some("agent"), Some("dpo")), "{e}");
    }
}

async fn every_refusal_rule_holds(backend: Backend) {
    let p = parties(backend).await;
    let angela = citizen(&p.app, &p.citizens, "sub-angela").await;
    let bruno = citizen(&p.app, &p.citizens, "sub-bruno").await;
    let earlier = filed(&p, &angela, "access").await;
    let id = filed(&p, &angela, "access").await;
    let bruno = filed(&p, &bruno, "access").await;
    let at = |action: &str| format!("{QUEUE}/{id}/{action}");
    let dpo = Some(p.dpo.as_str());

    // Extensions: more than two months, in one go or in two, and without a reason.
    problem(post_json(&p.app, dpo, &at("extend"), &json!({ "months": 3, "reason": "Long" })).await, 422).await;
    problem(post_json(&p.app, dpo, &at("extend"), &json!({ "months": 1, "reason": "  " })).await, 422).await;
    assert_eq!(post_json(&p.app, dpo, &at("extend"), &json!({ "months": 1, "reason": "Long" })).await.status(), 200);
    problem(post_json(&p.app, dpo, &at("extend"), &json!({ "months": 2, "reason": "Long" })).await, 422).await;

    // Refusals: without a reason; unfounded without earlier requests, or with someone else's.
    problem(post_json(&p.app, dpo, &at("refuse"), &json!({ "ground": "decision", "reason": "" })).await, 422).await;
    let excessive = |earlier: Vec<&str>| json!({ "ground": "unfounded_or_excessive", "earlier_requests": earlier, "reason": "Même demande répétée." });
    problem(post_json(&p.app, dpo, &at("refuse"), &excessive(vec![])).await, 422).await;
    problem(post_json(&p.app, dpo, &at("refuse"), &excessive(vec![bruno.as_str()])).await, 422).await;
    problem(post_json(&p.app, dpo, &at("refuse"), &excessive(vec!["DR-0000-0000"])).await, 422).await;
    assert_eq!(p.app.state.rights.get(&id).await.unwrap().status.as_str(), "received", "nothing refused yet");
    let r = post_json(&p.app, dpo, &at("refuse"), &excessive(vec![earlier.as_str()])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["answer"]["earlier_requests"], json!([earlier]));

    // An answered request moves no more; completing needs a summary.
    problem(post_json(&p.app, dpo, &at("start"), &json!({})).await, 422).await;
    let blank = json!({ "outcome": "completed", "summary": " " });
    problem(post_json(&p.app, dpo, &format!("{QUEUE}/{earlier}/complete"), &blank).await, 422).await;
    // Straight from received, completing is not a step.
    let done = json!({ "outcome": "completed", "summary": "Fait" });
    problem(post_json(&p.app, dpo, &format!("{QUEUE}/{earlier}/complete"), &done).await, 422).await;

    // An extension once the due date has passed is refused.
    p.app.clock.advance(time::Duration::days(40));
    let late =
        post_json(&p.app, dpo, &format!("{QUEUE}/{bruno}/extend"), &json!({ "months": 1, "reason": "Tard" })).await;
    let late = problem(late, 422).await;
    assert!(late["detail"].as_str().unwrap().contains("first month"), "{late}");
    assert_eq!(p.app.state.rights.get(&bruno).await.unwrap().deadline.extended_months(), 0);

    // What a cross-site form can send is refused before anything is read; unknown ids are 404.
    let form = p
        .app
        .client
        .post(p.app.url(&format!("{QUEUE}/{bruno}/start")))
        .header("cookie", format!("{SESSION}={}", p.dpo))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    problem(form, 400).await;
    problem(post_json(&p.app, dpo, &format!("{QUEUE}/DR-0000-0000/start"), &json!({})).await, 404).await;
    assert_eq!(p.app.state.rights.get(&bruno).await.unwrap().status.as_str(), "received");
}

on_both_stores!(
    an_agent_files_a_request_with_the_code_the_citizen_reads_out,
    an_agent_without_the_role_files_nothing,
    a_citizen_or_an_agent_without_the_role_cannot_use_the_dpo_endpoints,
    the_dpo_works_the_queue_and_every_step_is_journaled,
    every_refusal_rule_holds,
);
