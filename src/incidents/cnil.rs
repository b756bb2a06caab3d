//! The export shaped on the CNIL's breach notification form (téléservice "Notifier une
//! violation de données personnelles"): one section per part of the form, in its order and
//! words, so the DPO copies it field by field, or prints it for the file (docs/incidents.md
//! maps each field). JSON for tools, printable HTML for people.

use askama::Template;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::model::{Incident, Notification};
use crate::pages::{Chrome, french_time};

/// Who the form names as controller and DPO (from the register's activities).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Organisation {
    pub name: String,
    pub contact: String,
    pub dpo_name: String,
    pub dpo_contact: String,
}

impl Organisation {
    /// The controller and DPO of the first activity in the register, else the commune's name.
    pub fn of(set: &crate::policy::PolicySet, commune: &str) -> Self {
        match set.activities.first() {
            Some(a) => Self {
                name: a.controller.organisation.clone(),
                contact: a.controller.contact.clone(),
                dpo_name: a.dpo.name.clone(),
                dpo_contact: a.dpo.contact.clone(),
            },
            None => Self { name: commune.to_owned(), ..Self::default() },
        }
    }
}

fn rfc3339(t: Option<OffsetDateTime>) -> Value {
    t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()).map_or(Value::Null, Value::String)
}

/// The form's fields as JSON (keys in the form's French terms).
pub fn to_json(i: &Incident, org: &Organisation, now: OffsetDateTime) -> Value {
    let f = &i.facts;
    json!({
        "formulaire": "notification-violation-donnees-personnelles",
        "reference_interne": i.id,
        "organisme": {
            "responsable_du_traitement": org.name,
            "contact": org.contact,
            "delegue_protection_donnees": { "nom": org.dpo_name, "contact": org.dpo_contact },
        },
        "violation": {
            "date_debut": rfc3339(f.started_at),
            "date_prise_de_connaissance": rfc3339(Some(f.aware_at)),
            "date_limite_notification_72h": rfc3339(Some(i.deadline())),
            "nature": f.nature.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            "circonstances": f.description,
        },
        "donnees": {
            "categories": f.record_categories,
            "nombre_approximatif_enregistrements": f.record_count,
        },
        "personnes_concernees": {
            "categories": f.people_categories,
            "nombre_approximatif": f.people_count,
        },
        "consequences_probables": f.consequences,
        "mesures_prises_ou_envisagees": f.measures,
        "notification_cnil": {
            "etat": state(i.notification(now)),
            "date": rfc3339(f.cnil_notified_at),
            "motif_du_retard": f.delay_reason,
            "motif_de_non_notification": f.cnil_not_notified_reason,
        },
        "information_des_personnes": {
            "date": rfc3339(f.people_informed_at),
            "motif_de_non_information": f.people_not_informed_reason,
        },
    })
}

/// The form's fields as (part of the form, value) rows, in the form's order: the ODS export,
/// one line per field the DPO copies. Times in French local time, as on the printable form.
pub fn rows(i: &Incident, org: &Organisation, now: OffsetDateTime) -> Vec<(&'static str, String)> {
    let f = &i.facts;
    let when = |t: Option<OffsetDateTime>| t.map(french_time).unwrap_or_default();
    let count = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
    let text = |t: &Option<String>| t.clone().unwrap_or_default();
    vec![
        ("Référence interne", i.id.clone()),
        ("Organisme : responsable du traitement", org.name.clone()),
        ("Organisme : contact", org.contact.clone()),
        ("Délégué à la protection des données : nom", org.dpo_name.clone()),
        ("Délégué à la protection des données : contact", org.dpo_contact.clone()),
        ("Violation : date de début", when(f.started_at)),
        ("Violation : date de prise de connaissance", french_time(f.aware_at)),
        ("Violation : date limite de notification (72 heures)", french_time(i.deadline())),
        ("Violation : nature", f.nature.iter().map(|n| n.french()).collect::<Vec<_>>().join(", ")),
        ("Violation : circonstances", f.description.clone()),
        ("Données : catégories", f.record_categories.clone()),
        ("Données : nombre approximatif d'enregistrements", count(f.record_count)),
        ("Personnes concernées : catégories", f.people_categories.clone()),
        ("Personnes concernées : nombre approximatif", count(f.people_count)),
        ("Conséquences probables", f.consequences.clone()),
        ("Mesures prises ou envisagées", f.measures.clone()),
        ("Notification à la CNIL : état", french_state(i.notification(now))),
        ("Notification à la CNIL : date", when(f.cnil_notified_at)),
        ("Notification à la CNIL : motif du retard", text(&f.delay_reason)),
        ("Notification à la CNIL : motif de non-notification", text(&f.cnil_not_notified_reason)),
        ("Information des personnes : date", when(f.people_informed_at)),
        ("Information des personnes : motif de non-information", text(&f.people_not_informed_reason)),
    ]
}

/// The form as an ODS spreadsheet (one sheet, "Rubrique" and "Valeur" columns).
pub fn to_ods(
    i: &Incident,
    org: &Organisation,
    now: OffsetDateTime,
) -> Result<Vec<u8>, crate::dpo::export::ExportError> {
    let table = crate::dpo::export::Table {
        name: "notification-cnil",
        headers: vec!["Rubrique du formulaire CNIL", "Valeur"],
        rows: rows(i, org, now).into_iter().map(|(k, v)| vec![k.to_owned(), v]).collect(),
    };
    crate::dpo::export::to_ods(&table)
}

/// The notification's state as a stable word (JSON, CLI).
pub fn state(n: Notification) -> &'static str {
    match n {
        Notification::OnTime => "notified_on_time",
        Notification::Late => "notified_late",
        Notification::NotNotified => "not_notified",
        Notification::Pending { left } if left.is_negative() => "overdue",
        Notification::Pending { .. } => "pending",
    }
}

/// The state in plain French for the pages.
pub fn french_state(n: Notification) -> String {
    match n {
        Notification::OnTime => "Notifiée à la CNIL dans les 72 heures".to_owned(),
        Notification::Late => "Notifiée à la CNIL après 72 heures (retard justifié)".to_owned(),
        Notification::NotNotified => "Non notifiée à la CNIL (raison notée)".to_owned(),
        Notification::Pending { left } if left.is_negative() => {
            format!("Délai de 72 heures dépassé de {} : notifiez ou notez la raison", hours(-left))
        }
        Notification::Pending { left } => format!("À notifier : il reste {}", hours(left)),
    }
}

/// "5 h", "1 h", "moins d'une heure".
pub fn hours(d: time::Duration) -> String {
    match d.whole_hours() {
        0 => "moins d'une heure".to_owned(),
        h => format!("{h} h"),
    }
}

#[derive(Template)]
#[template(path = "incidents/cnil.html")]
struct Printable<'a> {
    chrome: &'a Chrome,
    i: &'a Incident,
    org: &'a Organisation,
    state: String,
    aware: String,
    started: String,
    deadline: String,
    cnil_at: String,
    people_at: String,
    natures: Vec<&'static str>,
    today: String,
}

/// The form as a printable page.
pub fn to_html(
    i: &Incident,
    org: &Organisation,
    chrome: &Chrome,
    now: OffsetDateTime,
) -> Result<String, askama::Error> {
    let f = &i.facts;
    let when = |t: Option<OffsetDateTime>| t.map_or_else(|| "Non".to_owned(), french_time);
    Printable {
        chrome,
        i,
        org,
        state: french_state(i.notification(now)),
        aware: french_time(f.aware_at),
        started: f.started_at.map_or_else(|| "Inconnue".to_owned(), french_time),
        deadline: french_time(i.deadline()),
        cnil_at: when(f.cnil_notified_at),
        people_at: when(f.people_informed_at),
        natures: f.nature.iter().map(|n| n.french()).collect(),
        today: french_time(now),
    }
    .render()
}
