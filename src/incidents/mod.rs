//! The breach register (GDPR Art. 33(5), brief R55–R56; docs/incidents.md): every personal
//! data breach, notified or not, with its facts, effects and remedial action, whether and when
//! the CNIL and the people were told, and why not or why late. The 72 hours run from
//! awareness on the injected clock; `alerts` warns the DPO when fewer than 24 are left.
//!
//! - [`model`]: the entry, its checks and its deadline (pure);
//! - [`cnil`]: the export shaped on the CNIL notification form (JSON, printable HTML);
//! - [`pages`]: `/.guichet/dpo/incidents` for the DPO (list, new, show, edit; CSRF, no JS);
//! - [`cli`]: `guichet incident list|show|export|record`.
//!
//! Every change is journaled (`dpo_action` `incident_recorded` / `incident_updated`, with
//! `record_ref` `incident:INC-…`), acknowledged before the DPO is told it is saved.

pub mod cli;
pub mod cnil;
pub mod model;
pub mod pages;

use std::sync::Arc;

pub use model::{Incident, IncidentFacts, Invalid, Nature, Notification};

use crate::audit::{Audit, AuditError, AuditEvent, Ident, Operation, Reader};
use crate::clock::{Clock, Random, random_hex};
use crate::store::{IncidentRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("the incident does not hold: {}", list(.0))]
    Invalid(Vec<Invalid>),
    #[error("no incident with this reference")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("a stored incident is unreadable")]
    Corrupt,
    #[error("the random number generator failed")]
    Random,
}

fn list(problems: &[Invalid]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// The register service. Cheap to build: pages and commands make one when they need it.
#[derive(Debug, Clone)]
pub struct IncidentRegister {
    store: Store,
    audit: Arc<Audit>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
}

impl IncidentRegister {
    pub fn new(store: Store, audit: Arc<Audit>, clock: Arc<dyn Clock>, random: Arc<dyn Random>) -> Self {
        Self { store, audit, clock, random }
    }

    /// The register of the running gateway.
    pub fn of(app: &crate::app::App) -> Self {
        Self::new(app.store.clone(), app.audit.clone(), app.clock.clone(), app.random.clone())
    }

    /// Commits what was journaled and stops the journal writer (one-off commands).
    pub async fn shutdown(&self) {
        self.audit.shutdown().await;
    }

    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    /// Records a new incident for `by` and journals it (acknowledged).
    pub async fn record(&self, by: &Reader, facts: IncidentFacts) -> Result<Incident, IncidentError> {
        let now = self.clock.now();
        let facts = checked(facts, now)?;
        let incident = Incident { id: self.reference()?, facts, recorded_at: now, updated_at: now };
        if !self.store.incidents().insert(&row_of(&incident)?).await? {
            // 40 random bits taken twice: say so rather than overwrite.
            return Err(IncidentError::Random);
        }
        self.journal(by, "incident_recorded", &incident.id).await?;
        Ok(incident)
    }

    /// Replaces the facts of incident `id` (a correction, or the notification once made).
    pub async fn update(&self, by: &Reader, id: &str, facts: IncidentFacts) -> Result<Incident, IncidentError> {
        let now = self.clock.now();
        let facts = checked(facts, now)?;
        let mut incident = self.get(id).await?.ok_or(IncidentError::NotFound)?;
        incident.facts = facts;
        incident.updated_at = now;
        let row = row_of(&incident)?;
        if !self.store.incidents().update(&row.id, &row.facts, row.aware_at_us, row.updated_at_us).await? {
            return Err(IncidentError::NotFound);
        }
        self.journal(by, "incident_updated", &incident.id).await?;
        Ok(incident)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Incident>, IncidentError> {
        self.store.incidents().get(id).await?.map(|r| incident_of(&r)).transpose()
    }

    /// Every incident, the most recently discovered first; those never notified stay listed.
    pub async fn all(&self) -> Result<Vec<Incident>, IncidentError> {
        self.store.incidents().all().await?.iter().map(incident_of).collect()
    }

    /// Journals that `by` exported incident `id` (the CNIL form); R45 "export".
    pub async fn journal_export(&self, by: &Reader, id: &str) -> Result<(), IncidentError> {
        self.journal(by, "incident_exported", id).await
    }

    async fn journal(&self, by: &Reader, action: &str, id: &str) -> Result<(), IncidentError> {
        let action = Ident::new(action).map_err(|_| IncidentError::Corrupt)?;
        let mut event = AuditEvent::system(Operation::DpoAction { action }, self.clock.now());
        event.actor = by.actor.clone();
        event.role = by.role.clone();
        event.record_ref = Ident::new(model::record_ref(id)).ok();
        self.audit.append_sync(event).await?;
        Ok(())
    }

    /// `INC-7K3M-Q9XP`: 40 random bits in letters that cannot be misread.
    fn reference(&self) -> Result<String, IncidentError> {
        let seed = random_hex::<16>(self.random.as_ref()).map_err(|_| IncidentError::Random)?;
        Ok(format!("INC-{}", crate::pages::spoken_reference(&seed)))
    }
}

fn checked(facts: IncidentFacts, now: time::OffsetDateTime) -> Result<IncidentFacts, IncidentError> {
    let facts = facts.normalised();
    let problems = facts.problems(now);
    if problems.is_empty() { Ok(facts) } else { Err(IncidentError::Invalid(problems)) }
}

fn row_of(i: &Incident) -> Result<IncidentRow, IncidentError> {
    Ok(IncidentRow {
        id: i.id.clone(),
        facts: serde_json::to_string(&i.facts).map_err(|_| IncidentError::Corrupt)?,
        aware_at_us: crate::audit::event::to_micros(i.facts.aware_at),
        recorded_at_us: crate::audit::event::to_micros(i.recorded_at),
        updated_at_us: crate::audit::event::to_micros(i.updated_at),
    })
}

fn incident_of(r: &IncidentRow) -> Result<Incident, IncidentError> {
    let time = |us| crate::audit::event::from_micros(us).ok_or(IncidentError::Corrupt);
    Ok(Incident {
        id: r.id.clone(),
        facts: serde_json::from_str(&r.facts).map_err(|_| IncidentError::Corrupt)?,
        recorded_at: time(r.recorded_at_us)?,
        updated_at: time(r.updated_at_us)?,
    })
}
