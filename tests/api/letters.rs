//! "Lettres à envoyer" (`/.guichet/agent/courriers/`): the notices no e-mail carries, for an
//! agent of the assisted mode to print and post. A citizen without e-mail is listed (not one
//! whose notice goes by e-mail, nor a consent receipt), the letter prints with the reference
//! and a blank address block, "Lettre envoyée" takes it off the list and is journaled; agents
//! without the role get 403, and the form needs the session's CSRF token.

use guichet::notify::{Address, Notice, Queued, Source};
use serde_json::Value;
use time::macros::date;

use crate::assisted::{get, text};
use crate::consent::{post, token};
use crate::helpers::Backend;
use crate::on_both_stores;
use crate::rights_agent::parties_with;

const LETTERS: &str = "/.guichet/agent/courriers/";

/// The message id of each "Imprimer la lettre" link of the list, in order.
fn printed(list: &str) -> Vec<String> {
    list.split("href=\"/.guichet/agent/courriers/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn a_notice_for_a_citizen_without_email_is_printed_and_posted(backend: Backend) {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().to_owned();
    // A mail channel is configured: only citizens without an address need a letter.
    let p = parties_with(backend, move |b| b.with(move |s, _| s.notify.outbox_dir = Some(dir))).await;
    let notify = &p.app.state.notify;
    let with_email = "sub_avec_email";
    notify.remember(with_email, &Address::parse("avec.email.l1@exemple.fr", Source::Given).unwrap()).await.unwrap();
    let by_mail = Notice::AnswerReady { reference: "DR-MAIL-0001".into() };
    assert!(matches!(notify.enqueue(&by_mail, with_email).await.unwrap(), Queued::Email { .. }));
    // A consent receipt is not posted: its printable version is on the consent page.
    let receipt = Notice::ConsentReceipt {
        activity: "Lettre".into(),
        purpose: "Envoi".into(),
        given: true,
        at: guichet::clock::Clock::now(&p.app.clock),
        receipt: 7,
    };
    assert!(matches!(notify.enqueue(&receipt, "sub_sans_email").await.unwrap(), Queued::ByLetter { .. }));

    // A citizen without an account files an access request at the counter: no e-mail address.
    let form_page = text(get(&p.app, Some(&p.counter), "/.guichet/guichet-agent/").await, 200).await;
    let t = token(&form_page);
    let form = [
        ("jeton", t.as_str()),
        ("droit", "acces"),
        ("activite", "lettre-information"),
        ("canal", "counter"),
        ("piece", "passeport"),
        ("code", ""),
    ];
    let r = post(&p.app, &p.counter, "/.guichet/guichet-agent/confirmer", &form).await;
    assert_eq!(r.status(), 303);
    let request = p.app.state.rights.open().await.unwrap().remove(0);
    let since = guichet::pages::french_time(guichet::clock::Clock::now(&p.app.clock));
    // Later, a deletion notice for the same citizen: listed after the receipt.
    p.app.clock.advance(time::Duration::days(2));
    let retention = Notice::Retention { activity: "lettre-information".into(), deletion_on: date!(2027 - 06 - 01) };
    notify.enqueue(&retention, &request.subject).await.unwrap();

    // Reached from "Espace agent" by a link.
    let space = text(get(&p.app, Some(&p.counter), "/.guichet/agent/").await, 200).await;
    assert!(space.contains(&format!("href=\"{LETTERS}\">Lettres à envoyer</a>")), "{space}");
    let list = text(get(&p.app, Some(&p.counter), LETTERS).await, 200).await;
    assert!(list.contains(&request.id) && list.contains("Votre demande a bien été reçue"), "{list}");
    assert!(list.contains("information municipale, effacement le 1er juin 2027"), "{list}");
    assert!(list.contains(&since) && !list.contains("UTC"), "{list}");
    assert!(!list.contains("DR-MAIL-0001"), "a notice sent by e-mail is not a letter: {list}");
    assert!(!list.contains("Votre choix est bien enregistré"), "no letter for a consent receipt: {list}");
    assert!(!list.contains(&request.subject), "the citizen's pseudonym is not shown: {list}");
    let ids = printed(&list);
    assert_eq!(ids.len(), 2, "{list}");

    // The letter prints with the reference, an A4 page, and a blank address block.
    let letter_path = format!("{LETTERS}{}", ids[0]);
    let r = get(&p.app, Some(&p.counter), &letter_path).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    let letter = text(r, 200).await;
    assert!(letter.contains(&request.id) && letter.contains("size: A4"), "{letter}");
    assert!(letter.contains("<address class=\"to\"></address>"), "the address is written by hand: {letter}");

    // Without the role: refused, for the list, the letter and the form.
    for who in [&p.dpo, &p.outsider] {
        assert_eq!(get(&p.app, Some(who), LETTERS).await.status(), 403);
        assert_eq!(get(&p.app, Some(who), &letter_path).await.status(), 403);
        let posted = post(&p.app, who, &format!("{letter_path}/envoyee"), &[("jeton", "x")]).await;
        assert_eq!(posted.status(), 403);
    }
    // Not signed in: the agents' sign-in, coming back here.
    let r = get(&p.app, None, LETTERS).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/.guichet/agent/connexion"));
    // Without this session's CSRF token, nothing is recorded.
    let r = post(&p.app, &p.counter, &format!("{letter_path}/envoyee"), &[("jeton", "pas-le-jeton")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(printed(&text(get(&p.app, Some(&p.counter), LETTERS).await, 200).await).len(), 2);

    // "Lettre envoyée": off the list, recorded as posted, journaled with the agent.
    let r = post(&p.app, &p.counter, &format!("{letter_path}/envoyee"), &[("jeton", token(&list).as_str())]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("{LETTERS}?envoyee=1"));
    let after = text(get(&p.app, Some(&p.counter), &format!("{LETTERS}?envoyee=1")).await, 200).await;
    assert!(after.contains("la lettre est envoyée"), "{after}");
    assert_eq!(printed(&after), ids[1..], "{after}");
    let row = notify.of_subject(&request.subject).await.unwrap().into_iter().find(|n| n.id == ids[0]).unwrap();
    assert_eq!(row.status, guichet::notify::POSTED);
    assert_eq!(get(&p.app, Some(&p.counter), &letter_path).await.status(), 404, "no longer waiting");
    let journal = crate::incidents::journal(&p.app).await;
    let posted: Vec<&Value> = journal.iter().filter(|e| e["operation"]["type"] == "letter_posted").collect();
    assert_eq!(posted.len(), 1, "{posted:?}");
    let e = posted[0];
    assert_eq!(e["operation"]["kind"], "request_received");
    assert_eq!((e["actor"]["kind"].as_str(), e["role"].as_str()), (Some("agent"), Some("etat-civil")));
    assert_eq!(e["subject"], request.subject.as_str());
    assert_eq!(e["request_id"], request.id.as_str());
    assert_eq!(e["record_ref"], format!("notice:{}", ids[0]));
    // Posting it again changes nothing and journals nothing more.
    let again = post(&p.app, &p.counter, &format!("{letter_path}/envoyee"), &[("jeton", token(&list).as_str())]).await;
    assert_eq!(again.status(), 303);
    let journal = crate::incidents::journal(&p.app).await;
    assert_eq!(journal.iter().filter(|e| e["operation"]["type"] == "letter_posted").count(), 1);
}

on_both_stores!(a_notice_for_a_citizen_without_email_is_printed_and_posted);

/// An e-mail the relay never took (its sending job dead after its last attempt) did not reach
/// the citizen: the notice is offered as a letter instead. While its job is still trying, it
/// is not (the e-mail may yet go).
async fn an_email_that_never_went_is_offered_as_a_letter(backend: Backend) {
    // A relay nobody listens on: every attempt fails.
    let relay = crate::helpers::free_port();
    let p = parties_with(backend, move |b| {
        b.with(move |s, _| {
            s.notify.smtp_host = Some("127.0.0.1".into());
            s.notify.smtp_port = relay.port();
            s.notify.allow_plain_on_loopback = true;
        })
    })
    .await;
    let (notify, jobs) = (&p.app.state.notify, &p.app.state.jobs);
    let subject = "sub_relais_muet";
    notify.remember(subject, &Address::parse("relais.muet.l2@exemple.fr", Source::Given).unwrap()).await.unwrap();
    let notice = Notice::AnswerReady { reference: "DR-MUET-0001".into() };
    let Queued::Email { job, .. } = notify.enqueue(&notice, subject).await.unwrap() else {
        panic!("an address and a relay: the notice goes by e-mail")
    };
    let list = || async { text(get(&p.app, Some(&p.counter), LETTERS).await, 200).await };
    jobs.run_due(10).await.unwrap();
    assert_ne!(jobs.get(&job).await.unwrap().unwrap().status, "dead");
    assert!(!list().await.contains("DR-MUET-0001"), "still being tried: no letter yet");
    for _ in 0..40 {
        if jobs.get(&job).await.unwrap().unwrap().status == "dead" {
            break;
        }
        p.app.clock.advance(time::Duration::days(1));
        jobs.run_due(10).await.unwrap();
    }
    assert_eq!(jobs.get(&job).await.unwrap().unwrap().status, "dead");
    assert!(list().await.contains("DR-MUET-0001"), "the relay gave up: a letter is the way left");
}

on_both_stores!(an_email_that_never_went_is_offered_as_a_letter);
