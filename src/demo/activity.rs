//! A few months of plausible activity for the demo, so the DPO's console and the supervision
//! view show real charts on first start: rights requests on every channel (most answered,
//! some late), consents to the newsletter given and withdrawn, reveals to agents, sign-ins.
//! Seeded through the services themselves, each with its own fixed clock moved along the
//! days, once, on an empty store. Deterministic: the same town every time.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::app::App;
use crate::audit::{Actor, ActorKind, AuditEvent, Channel, Ident, IdentityCheck, Operation, Outcome};
use crate::clock::{Clock, FixedClock};
use crate::consent::{ConsentService, Recorder, find_purpose};
use crate::rights::request::{DocumentKind, IdentityProof, Right, Status};
use crate::rights::service::{By, NewRequest, RightsService};

/// How many months back the activity starts.
const MONTHS: i64 = 5;

/// A small deterministic generator (a linear congruential one): plausible, reproducible.
struct Dice(u64);

impl Dice {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn ident(s: &str) -> anyhow::Result<Ident> {
    Ident::new(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Seeds the activity when the store holds no rights request and no consent yet.
pub async fn seed_if_empty(app: &App) -> anyhow::Result<bool> {
    let now = app.clock.now();
    let empty = app.rights.received_since(OffsetDateTime::UNIX_EPOCH).await?.is_empty()
        && app.consent.events_between(OffsetDateTime::UNIX_EPOCH, now + Duration::DAY).await?.is_empty();
    if !empty {
        return Ok(false);
    }
    seed(app, now).await?;
    Ok(true)
}

async fn seed(app: &App, now: OffsetDateTime) -> anyhow::Result<()> {
    let start = now - Duration::days(30 * MONTHS);
    let clock = FixedClock::at(start);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let rights = RightsService::new(app.store.clone(), app.audit.clone(), shared.clone(), app.random.clone());
    let consent = ConsentService::new(
        app.store.clone(),
        shared,
        app.audit.verifier().clone(),
        prometheus_client::metrics::counter::Counter::default(),
    );
    let set = app.policies.load();
    let newsletter = find_purpose(&set.activities, "lettre-information", "envoi");
    let activities: Vec<String> = ["cantine", "etat-civil", "voirie", "lettre-information"]
        .into_iter()
        .filter(|a| set.activity(a).is_some())
        .map(str::to_owned)
        .collect();
    let dpo = By { actor: Actor { kind: ActorKind::Agent, id: ident("nadia")? }, role: ident("dpo")? };
    let mut dice = Dice(2026);
    // Requests still open, with the day each is to be answered (None: left open).
    let mut pending: Vec<(String, Option<OffsetDateTime>)> = Vec::new();
    let days = 30 * MONTHS;
    for day in 0..days {
        let at = start + Duration::days(day) + Duration::hours(9);
        clock.advance(at - clock.now());
        answer_due(&rights, &mut pending, at, &dpo).await?;
        for _ in 0..dice.next(3) {
            let Some(activity) = activities.get(usize::try_from(dice.next(activities.len() as u64))?) else { continue };
            let new = new_request(&mut dice, day, activity)?;
            let r = rights.create(&set, new, &dpo).await?;
            if !r.status.is_final() {
                // Most are answered within 2 to 40 days; a few recent ones stay open.
                let wait = Duration::days(2 + i64::try_from(dice.next(38))?);
                let answer = (dice.next(10) > 0).then_some(at + wait);
                pending.push((r.id, answer));
            }
        }
        if let Some(purpose) = &newsletter {
            for _ in 0..dice.next(2) + u64::from(day % 3 == 0) {
                let subject = format!("demo_abonne_{:03}", dice.next(400));
                let given = dice.next(6) > 0;
                let by = Recorder {
                    actor: Actor { kind: ActorKind::Citizen, id: ident(&subject)? },
                    role: ident("citizen")?,
                    channel: Channel::Online,
                    identified_by: IdentityCheck::SignIn,
                    request_id: None,
                };
                consent.record(&app.audit, &subject, purpose, given, by).await?;
            }
        }
        journal_day(app, &mut dice, at).await?;
        if day % 30 == 29 {
            journal_retention_run(app, &mut dice, &set, at + Duration::hours(14)).await?;
        }
    }
    seed_elimination_list(app, &mut dice, now).await?;
    seed_retention_records(app, now).await?;
    app.audit.flush().await?;
    Ok(())
}

/// The day the banner proposes for `guichet demo retention plan --date`: a year on, when
/// every record `seed_retention_records` makes has something due.
pub fn plan_day(today: time::Date) -> time::Date {
    today.saturating_add(Duration::days(366))
}

/// Citizens' records at different points of their retention clocks, none due today (so the
/// demo's own runs leave them), all due by [`plan_day`]: the plan on a simulated day shows
/// each end action. Recorded through the retention service as the gateway records a request
/// and an application's "case closed" event.
async fn seed_retention_records(app: &App, now: OffsetDateTime) -> anyhow::Result<()> {
    use crate::policy::model::RetentionStart;
    let set = app.policies.load();
    let ago = |days: i64| crate::audit::event::to_micros(now - Duration::days(days));
    // (activity, route, records, days since the first is seen, days between two).
    let seeded =
        [("voirie", "api", 6, 30, 40), ("cantine", "cantine", 4, 30, 40), ("ccas-rendez-vous", "api", 4, 400, 60)];
    for (activity, route, count, first, step) in seeded {
        let Some(policy) = set.activity(activity) else { continue };
        let categories: Vec<String> = policy.categories.iter().map(|c| c.id.clone()).collect();
        let closing: Vec<String> = policy
            .categories
            .iter()
            .filter(|c| c.retention.as_ref().is_some_and(|r| r.from == RetentionStart::CaseClosed))
            .map(|c| c.id.clone())
            .collect();
        for n in 0..count {
            let app_subject = format!("demo_dossier_{activity}_{n:02}");
            let seen = crate::retention::record::Seen {
                field_subject: format!("demo_{activity}_{n:02}"),
                route: route.to_owned(),
                app_subject: Some(app_subject.clone()),
                activity: activity.to_owned(),
                at_us: ago(first + step * n),
            };
            app.retention.seen(&seen, &categories).await?;
            if !closing.is_empty() {
                let closed = crate::retention::ReportedEvent {
                    route: route.to_owned(),
                    event_id: format!("demo-{activity}-{n:02}-clos"),
                    activity: activity.to_owned(),
                    event: "case_closed".to_owned(),
                    subject: app_subject,
                    occurred_at_us: ago(10 + 15 * n),
                };
                app.retention.report(&closed, &closing).await?;
            }
        }
    }
    Ok(())
}

/// Twelve état-civil request files at the end of their DUA, on one elimination list waiting
/// for the archivist's visa (Anne DUBOIS), so `/.guichet/archives/` shows one at once.
async fn seed_elimination_list(app: &App, dice: &mut Dice, now: OffsetDateTime) -> anyhow::Result<()> {
    let (activity, category) = ("etat-civil", "identite");
    if app.policies.load().activity(activity).is_none() {
        return Ok(());
    }
    let run_id = format!("RUN-{}", crate::audit::event::to_micros(now));
    for n in 0..12u32 {
        let age = Duration::days(400 + i64::try_from(dice.next(300))?);
        let seen = crate::retention::record::Seen {
            field_subject: format!("demo_acte_{n:02}"),
            route: "etat-civil".to_owned(),
            app_subject: Some(format!("demo_dossier_{n:02}")),
            activity: activity.to_owned(),
            at_us: crate::audit::event::to_micros(now - age),
        };
        app.retention.seen(&seen, &[category.to_owned()]).await?;
        for row in app.retention.records(&seen.field_subject, activity).await? {
            crate::retention::elimination::propose(app, &run_id, &row).await?;
        }
    }
    Ok(())
}

fn new_request(dice: &mut Dice, day: i64, activity: &str) -> anyhow::Result<NewRequest> {
    let right = match dice.next(10) {
        0..=4 => Right::Access,
        5 | 6 => Right::Rectification,
        7 | 8 => Right::Erasure,
        _ => Right::Objection,
    };
    // Most come online; the counter, the phone and the post still matter.
    let channel = match dice.next(20) {
        0..=12 => Channel::Online,
        13..=16 => Channel::Counter,
        17 | 18 => Channel::Phone,
        _ => Channel::Post,
    };
    let identity = if channel == Channel::Online {
        IdentityProof::SignIn { acr: "eidas1".into() }
    } else {
        IdentityProof::Document { kind: DocumentKind::IdentityCard }
    };
    Ok(NewRequest {
        subject: format!("demo_habitant_{day:03}_{:02}", dice.next(100)),
        activity: Some(activity.to_owned()),
        right,
        agent: (channel != Channel::Online).then(|| "lucie".to_owned()),
        channel,
        identity,
    })
}

/// Answers the requests whose day has come.
async fn answer_due(
    rights: &RightsService,
    pending: &mut Vec<(String, Option<OffsetDateTime>)>,
    at: OffsetDateTime,
    dpo: &By,
) -> anyhow::Result<()> {
    let due: Vec<String> =
        pending.iter().filter(|(_, when)| when.is_some_and(|w| w <= at)).map(|(id, _)| id.clone()).collect();
    for id in due {
        let r = rights.get(&id).await?;
        if r.status == Status::Received {
            rights.advance(&id, Status::InProgress, None, dpo).await?;
        }
        rights.advance(&id, Status::Completed, Some("Réponse envoyée.".into()), dpo).await?;
        pending.retain(|(p, _)| *p != id);
    }
    Ok(())
}

/// A monthly retention run's evidence, as `retention::run` journals it: a few records of each
/// declared category destroyed or anonymised, now and then one held. The demo's store holds
/// no retention records (the runs' effect is on the applications' data): these entries only
/// give the DPO's conservation page its history on first start.
async fn journal_retention_run(
    app: &App,
    dice: &mut Dice,
    set: &crate::policy::PolicySet,
    at: OffsetDateTime,
) -> anyhow::Result<()> {
    use crate::audit::event::RetentionCount;
    let mut lines = Vec::new();
    let mut overdue = 0;
    for a in &set.activities {
        for c in a.categories.iter().filter(|c| c.retention.is_some()) {
            let action = match c.retention.as_ref().map(|r| r.then) {
                Some(crate::policy::model::RetentionEnd::Anonymise) => "anonymise",
                Some(crate::policy::model::RetentionEnd::ArchiveReview) => "archive_review",
                _ => "destroy",
            };
            let n = dice.next(6);
            if n > 0 {
                lines.push(RetentionCount {
                    activity: ident(&a.id)?,
                    category: ident(&c.id)?,
                    action: ident(action)?,
                    count: n,
                });
            }
            if dice.next(12) == 0 {
                lines.push(RetentionCount {
                    activity: ident(&a.id)?,
                    category: ident(&c.id)?,
                    action: ident("held")?,
                    count: 1,
                });
                overdue += 1;
            }
        }
    }
    let run = ident(&format!("RUN-{}", crate::audit::event::to_micros(at)))?;
    let digest = ident(&crate::consent::sha256_hex(&run.to_string()))?;
    let operation = Operation::RetentionRun {
        run,
        lines,
        records_sha256: digest,
        skipped_holds: overdue,
        overdue,
        elimination_lists: Vec::new(),
    };
    app.audit.record(AuditEvent::system(operation, at)).await?;
    Ok(())
}

/// A day of sign-ins and reveals to agents, journaled as they would be.
async fn journal_day(app: &App, dice: &mut Dice, at: OffsetDateTime) -> anyhow::Result<()> {
    for i in 0..3 + dice.next(6) {
        let mut e = AuditEvent::system(
            Operation::SignIn { acr: Some(ident("eidas1")?) },
            at + Duration::minutes(i64::try_from(i)? * 7),
        );
        let subject = ident(&format!("demo_habitant_{:03}", dice.next(300)))?;
        e.actor = Actor { kind: ActorKind::Citizen, id: subject.clone() };
        e.role = ident("citizen")?;
        e.subject = Some(subject);
        app.audit.record(e).await?;
    }
    let reveals = [
        ("cantine", "inscription", "agent-scolaire", "sophie", "child_given_names"),
        ("etat-civil", "delivrance", "officier-etat-civil", "lucie", "birth_name"),
    ];
    for (activity, purpose, role, agent, field) in reveals {
        for _ in 0..dice.next(4) {
            let mut e = AuditEvent::system(Operation::Reveal { fields: vec![ident(field)?] }, at + Duration::hours(2));
            e.actor = Actor { kind: ActorKind::Agent, id: ident(agent)? };
            e.role = ident(role)?;
            e.activity = Some(ident(activity)?);
            e.purpose = Some(ident(purpose)?);
            e.subject = Some(ident(&format!("demo_habitant_{:03}", dice.next(300)))?);
            e.outcome = Outcome::Success;
            app.audit.record(e).await?;
        }
    }
    Ok(())
}
