//! The DPO's alerts (issue 16 item 7, brief R48): four conditions, checked by the periodic
//! `alerts.check` job, exposed as Prometheus gauges (admin listener; the shipped rules in
//! `docs/alerts/guichet.rules.yml` fire on them) and sent to the DPO by e-mail through the
//! notification channel (`notify.dpo_address`), one message per condition and day:
//!
//! | condition | gauge |
//! |---|---|
//! | rights requests past their deadline | `guichet_rights_overdue_requests` |
//! | the journal does not verify | `guichet_audit_verification_failed` |
//! | a breach with under 24 of its 72 hours left, not notified nor decided | `guichet_breach_deadline_near` |
//! | the last retention run failed | `guichet_retention_last_run_failed` (set by retention) |
//!
//! Messages carry counts and a link to the page, never a person or a reference: the subject
//! line is the same for every alert. See docs/alerts.md.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use crate::app::App;
use crate::clock::paris_date;
use crate::jobs::{Handler, JobError, NewJob};
use crate::notify::{DPO_SUBJECT, Notice};
use crate::store::JobRow;

/// The job kind that checks the conditions (and schedules the next check).
pub const CHECK_JOB: &str = "alerts.check";
/// How often the conditions are checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(15 * 60);

/// A condition the DPO is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    RightsOverdue,
    JournalBroken,
    BreachDeadlineNear,
    RetentionFailed,
}

impl Condition {
    pub const ALL: [Condition; 4] =
        [Self::RightsOverdue, Self::JournalBroken, Self::BreachDeadlineNear, Self::RetentionFailed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RightsOverdue => "rights_overdue",
            Self::JournalBroken => "journal_broken",
            Self::BreachDeadlineNear => "breach_deadline_near",
            Self::RetentionFailed => "retention_failed",
        }
    }
}

/// What a check found: a count per condition (0: the condition does not hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Findings {
    pub rights_overdue: u64,
    pub journal_broken: bool,
    pub breach_deadline_near: u64,
    pub retention_failed: bool,
}

impl Findings {
    pub fn count(&self, c: Condition) -> u64 {
        match c {
            Condition::RightsOverdue => self.rights_overdue,
            Condition::JournalBroken => u64::from(self.journal_broken),
            Condition::BreachDeadlineNear => self.breach_deadline_near,
            Condition::RetentionFailed => u64::from(self.retention_failed),
        }
    }
}

/// The sentence of a DPO alert (plain French, counts only) and the page to act on.
pub fn describe(condition: &str, count: u64) -> (std::borrow::Cow<'static, str>, &'static str) {
    let plural = |one: &'static str, many: String| if count == 1 { one.into() } else { many.into() };
    match condition {
        "rights_overdue" => (
            plural(
                "Une demande de droits a dépassé son délai légal.",
                format!("{count} demandes de droits ont dépassé leur délai légal."),
            ),
            "/.guichet/dpo/",
        ),
        "journal_broken" => {
            ("Le journal des opérations ne se vérifie plus. Lancez « guichet audit verify ».".into(), "/.guichet/dpo/")
        }
        "breach_deadline_near" => (
            plural(
                "Une violation de données doit être notifiée à la CNIL dans moins de 24 heures.",
                format!("{count} violations de données doivent être notifiées à la CNIL dans moins de 24 heures."),
            ),
            crate::pages::DPO_INCIDENTS_PATH,
        ),
        _ => (
            "La dernière purge des données conservées a échoué.".into(),
            crate::dpo::conservation::DPO_CONSERVATION_PATH,
        ),
    }
}

/// Checks every condition now: rights requests, the journal (a full verification), the
/// breach register, and the retention gauge.
pub async fn check(app: &App) -> Findings {
    let now = app.clock.now();
    let today = paris_date(now);
    let rights_overdue = match app.rights.open().await {
        Ok(open) => open.iter().filter(|r| r.is_overdue(today)).count() as u64,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: cannot read the rights queue");
            0
        }
    };
    let breach_deadline_near = match crate::incidents::IncidentRegister::of(app).all().await {
        Ok(all) => all.iter().filter(|i| i.deadline_near(now)).count() as u64,
        Err(e) => {
            tracing::warn!(error = %e, "alerts: cannot read the breach register");
            0
        }
    };
    Findings {
        rights_overdue,
        journal_broken: !journal_intact(app, now).await,
        breach_deadline_near,
        retention_failed: app.metrics.alerts.retention_last_run_failed.get() > 0,
    }
}

/// The journal verifies (chain, signatures, coverage, witness), as `guichet audit verify`.
async fn journal_intact(app: &App, now: OffsetDateTime) -> bool {
    let a = &app.settings.audit;
    let checks = crate::audit::verify::Checks {
        coverage: Some((crate::audit::event::to_micros(now), a.checkpoint_every)),
        witness: Some(a.witness_path(&app.settings.data_dir)),
    };
    match crate::audit::verify::verify_with(&app.store, app.audit.verifier(), &checks).await {
        Ok(report) if report.is_intact() => true,
        Ok(report) => {
            tracing::error!(summary = %report.summary(), "alerts: the audit journal does not verify");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "alerts: cannot verify the audit journal");
            false
        }
    }
}

/// Sets the gauges from `f` and tells the DPO of every condition that holds (once a day
/// each: the notice's id is made of the condition and the Paris date).
pub async fn publish(app: &App, f: &Findings) {
    let g = &app.metrics.alerts;
    g.rights_overdue.set(i64::try_from(f.rights_overdue).unwrap_or(i64::MAX));
    g.journal_verification_failed.set(i64::from(f.journal_broken));
    g.breach_deadline_near.set(i64::try_from(f.breach_deadline_near).unwrap_or(i64::MAX));
    let now = app.clock.now();
    g.last_check.set(now.unix_timestamp());
    let on = paris_date(now);
    for c in Condition::ALL {
        let count = f.count(c);
        if count == 0 {
            continue;
        }
        let notice = Notice::DpoAlert { condition: c.as_str().to_owned(), count, on };
        if let Err(e) = app.notify.enqueue(&notice, DPO_SUBJECT).await {
            tracing::warn!(error = %e, condition = c.as_str(), "alerts: cannot queue the DPO's e-mail");
        }
    }
}

/// Checks and publishes once (what the job does; also for tests and the demo).
pub async fn run_check(app: &App) -> Findings {
    let f = check(app).await;
    publish(app, &f).await;
    f
}

/// Enqueues the check of the slot after `now` (and the current one with `now_too`): one job per
/// slot across every instance sharing the store, whoever enqueues it.
pub async fn schedule(app: &App, now_too: bool) -> Result<(), crate::jobs::JobsError> {
    let now = app.clock.now();
    let every = i64::try_from(CHECK_EVERY.as_secs()).unwrap_or(900);
    let slot = now.unix_timestamp().div_euclid(every);
    let next = slot + 1;
    let at = OffsetDateTime::from_unix_timestamp(next * every).unwrap_or(now);
    app.jobs
        .enqueue(NewJob::new(CHECK_JOB, ())?.dedup(format!("{CHECK_JOB}/{next}")).not_before(at).max_attempts(1))
        .await?;
    if now_too {
        app.jobs.enqueue(NewJob::new(CHECK_JOB, ())?.dedup(format!("{CHECK_JOB}/{slot}")).max_attempts(1)).await?;
    }
    Ok(())
}

/// The `alerts.check` handler: checks, publishes, schedules the next check.
pub struct CheckHandler {
    app: Weak<App>,
}

/// The handler to register. `serve` schedules the first check ([`schedule`]).
pub fn check_handler(app: &Arc<App>) -> Arc<dyn Handler> {
    Arc::new(CheckHandler { app: Arc::downgrade(app) })
}

impl Handler for CheckHandler {
    fn kind(&self) -> &'static str {
        CHECK_JOB
    }

    fn run<'a>(&'a self, _job: &'a JobRow) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let app = self.app.upgrade().ok_or(JobError::Retry("the gateway is stopping"))?;
            run_check(&app).await;
            schedule(&app, false).await.map_err(|_| JobError::Retry("cannot schedule the next alert check"))
        })
    }
}
