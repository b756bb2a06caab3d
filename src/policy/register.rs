//! The record of processing activities (Art. 30(1)), generated from the policy files: as JSON,
//! CSV, HTML (the DPO page), ODS (the CNIL spreadsheet model) and a CNIL PIA export.
//!
//! Each entry holds the fields of Art. 30(1) (a)–(g), labelled as in the CNIL model, and the
//! activity's sector (docs/policies.md, "Sectors"): the DPO sees which activities share the
//! citizen's pseudonyms inside the gateway.

use askama::Template;
use serde::Serialize;

use super::engine::PolicySet;
use super::model::ActivityFile;
use super::notice::{Period, basis_of};

/// Labels of the CNIL model, in the order of Art. 30(1), with the sector after the name;
/// every output uses these.
pub const COLUMNS: [&str; 13] = [
    "Référence",
    "Nom du traitement",
    "Secteur",
    "Responsable du traitement (a)",
    "Délégué à la protection des données (a)",
    "Responsables conjoints et représentant (a)",
    "Finalités et bases légales (b)",
    "Catégories de personnes concernées (c)",
    "Catégories de données (c)",
    "Catégories de destinataires (d)",
    "Transferts hors de l'Union européenne (e)",
    "Délais d'effacement (f)",
    "Mesures de sécurité (g)",
];

/// One activity's register entry: exactly Art. 30(1) (a)–(g), each as plain text lines.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub reference: String,
    pub nom: String,
    /// The sector's French name ("État civil"; "Général" for an activity without one).
    pub secteur: String,
    pub responsable: Vec<String>,
    pub delegue: Vec<String>,
    pub responsables_conjoints_et_representant: Vec<String>,
    pub finalites: Vec<String>,
    pub personnes_concernees: Vec<String>,
    pub categories_de_donnees: Vec<String>,
    pub destinataires: Vec<String>,
    pub transferts: Vec<String>,
    pub delais_effacement: Vec<String>,
    pub mesures_securite: Vec<String>,
}

impl Entry {
    pub fn of(a: &ActivityFile) -> Self {
        let c = &a.controller;
        let mut joint: Vec<String> =
            c.joint_controllers.iter().map(|j| format!("Responsable conjoint : {j}")).collect();
        joint.extend(c.representative.iter().map(|r| format!("Représentant : {r}")));
        Self {
            reference: a.id.clone(),
            nom: a.name.clone(),
            secteur: a.sector.label().to_owned(),
            responsable: vec![c.organisation.clone(), c.address.clone(), c.contact.clone()],
            delegue: vec![a.dpo.name.clone(), a.dpo.contact.clone()],
            responsables_conjoints_et_representant: joint,
            finalites: a
                .purposes
                .iter()
                .map(|p| {
                    let basis = basis_of(p.legal_basis.as_ref())
                        .map(|b| format!("{} (art. 6.1.{})", b.french(), b.letter()))
                        .unwrap_or_default();
                    let reference = p.legal_reference.as_deref().map(|r| format!(" — {r}")).unwrap_or_default();
                    format!("{} — base légale : {basis}{reference}", p.description)
                })
                .collect(),
            personnes_concernees: a.data_subjects.clone(),
            categories_de_donnees: a
                .categories
                .iter()
                .map(|c| if c.special { format!("{} (donnée sensible, art. 9)", c.name) } else { c.name.clone() })
                .collect(),
            destinataires: a.recipients.iter().map(|r| format!("{} : {}", r.kind.french(), r.name)).collect(),
            transferts: if a.transfers.is_empty() {
                vec!["Aucun transfert hors de l'Union européenne".to_owned()]
            } else {
                a.transfers
                    .iter()
                    .map(|t| format!("{} — {} — garanties : {}", t.country, t.recipient, t.safeguard))
                    .collect()
            },
            delais_effacement: a
                .categories
                .iter()
                .filter_map(|c| Some((c, c.retention.as_ref()?)))
                .map(|(c, r)| {
                    let active = Period::parse(&r.active).map_or_else(|_| r.active.clone(), Period::french);
                    let from = match r.from {
                        super::model::RetentionStart::Collection => "la collecte".to_owned(),
                        super::model::RetentionStart::LastActivity => "le dernier contact".to_owned(),
                        super::model::RetentionStart::CaseClosed => "la clôture du dossier".to_owned(),
                        super::model::RetentionStart::Event => {
                            format!("l'événement « {} »", r.event.as_deref().unwrap_or("?"))
                        }
                    };
                    let end = match r.then {
                        super::model::RetentionEnd::Destroy => "destruction",
                        super::model::RetentionEnd::Anonymise => "anonymisation",
                        super::model::RetentionEnd::ArchiveReview => "tri par les Archives (bordereau d'élimination)",
                    };
                    let inter =
                        r.intermediate.as_deref().map(|i| format!(", archive intermédiaire {i}")).unwrap_or_default();
                    let source = r.source.as_deref().map(|s| format!(" [{s}]")).unwrap_or_default();
                    format!("{} : {active} après {from}{inter}, puis {end}{source}", c.name)
                })
                .collect(),
            mesures_securite: a.security_measures.clone(),
        }
    }

    /// The values in the order of [`COLUMNS`].
    pub fn cells(&self) -> [Vec<String>; 13] {
        [
            vec![self.reference.clone()],
            vec![self.nom.clone()],
            vec![self.secteur.clone()],
            self.responsable.clone(),
            self.delegue.clone(),
            self.responsables_conjoints_et_representant.clone(),
            self.finalites.clone(),
            self.personnes_concernees.clone(),
            self.categories_de_donnees.clone(),
            self.destinataires.clone(),
            self.transferts.clone(),
            self.delais_effacement.clone(),
            self.mesures_securite.clone(),
        ]
    }
}

/// Every entry, in activity id order.
pub fn entries(set: &PolicySet) -> Vec<Entry> {
    set.activities.iter().map(|a| Entry::of(a)).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("cannot write the register as CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write the register as ODS: {0}")]
    Ods(#[from] spreadsheet_ods::OdsError),
    #[error("cannot render the register: {0}")]
    Render(#[from] askama::Error),
    #[error("cannot write the register as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Serialize)]
struct JsonRegister<'a> {
    registre_des_activites_de_traitement: &'a [Entry],
}

pub fn to_json(set: &PolicySet) -> Result<String, RegisterError> {
    let entries = entries(set);
    Ok(serde_json::to_string_pretty(&JsonRegister { registre_des_activites_de_traitement: &entries })?)
}

/// One row per activity; several values in a cell are separated by " ; ".
pub fn to_csv(set: &PolicySet) -> Result<String, RegisterError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for e in entries(set) {
        w.write_record(e.cells().iter().map(|c| c.join(" ; ")))?;
    }
    let bytes = w.into_inner().map_err(|e| RegisterError::Csv(e.into_error().into()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[derive(Template)]
#[template(path = "policy/registre.html")]
struct RegisterPage<'a> {
    chrome: &'a crate::pages::Chrome,
    entries: &'a [Entry],
    columns: &'a [&'a str],
}

/// The DPO's page: one table per activity, label in a row header, value beside it.
/// As a file (`guichet policy register --format html`): the default header, whatever page
/// was rendered last.
pub fn to_html(set: &PolicySet) -> Result<String, RegisterError> {
    let chrome = crate::pages::Chrome { commune: Default::default(), csrf: None, roles: Default::default() };
    to_html_with(set, &chrome)
}

/// The register page with the header of the person reading it.
pub fn to_html_with(set: &PolicySet, chrome: &crate::pages::Chrome) -> Result<String, RegisterError> {
    let entries = entries(set);
    Ok(RegisterPage { chrome, entries: &entries, columns: &COLUMNS }.render()?)
}

/// The CNIL spreadsheet model: a first sheet with the organisation, its DPO and the list of
/// activities, then one sheet per activity with the Art. 30 fields.
pub fn to_ods(set: &PolicySet) -> Result<Vec<u8>, RegisterError> {
    use spreadsheet_ods::{Sheet, WorkBook};
    let entries = entries(set);
    let mut wb = WorkBook::new_empty();
    let mut first = Sheet::new("Registre");
    first.set_value(0, 0, "Registre des activités de traitement");
    let (org, dpo) =
        entries.first().map_or((String::new(), String::new()), |e| (e.responsable.join(", "), e.delegue.join(", ")));
    first.set_value(2, 0, "Organisme");
    first.set_value(2, 1, org);
    first.set_value(3, 0, "Délégué à la protection des données");
    first.set_value(3, 1, dpo);
    first.set_value(5, 0, "Référence");
    first.set_value(5, 1, "Activités de traitement");
    first.set_value(5, 2, "Secteur");
    for (row, e) in (6u32..).zip(&entries) {
        first.set_value(row, 0, e.reference.as_str());
        first.set_value(row, 1, e.nom.as_str());
        first.set_value(row, 2, e.secteur.as_str());
    }
    wb.push_sheet(first);
    for e in &entries {
        let mut sheet = Sheet::new(e.reference.as_str());
        for (row, (label, values)) in (0u32..).zip(COLUMNS.iter().zip(e.cells())) {
            sheet.set_value(row, 0, *label);
            sheet.set_value(row, 1, values.join("\n"));
        }
        wb.push_sheet(sheet);
    }
    Ok(spreadsheet_ods::write_ods_buf(&mut wb, Vec::new())?)
}

/// Answers for the CNIL PIA software's import (question ids of pia_architecture.json).
#[derive(Serialize)]
struct PiaAnswer {
    reference_to: u32,
    data: PiaData,
}

#[derive(Serialize)]
struct PiaData {
    text: String,
    gauge: Option<u8>,
    list: Vec<String>,
}

#[derive(Serialize)]
struct PiaExport {
    pia: PiaHeader,
    answers: Vec<PiaAnswer>,
    measures: Vec<PiaMeasure>,
    evaluations: Vec<()>,
    comments: Vec<()>,
}

#[derive(Serialize)]
struct PiaHeader {
    name: String,
    category: String,
    status: u8,
    author_name: String,
    evaluator_name: String,
    validator_name: String,
    dpos_names: String,
    dpo_status: u8,
    dpo_opinion: String,
    concerned_people_opinion: String,
    concerned_people_status: u8,
    progress: u8,
    is_example: bool,
    is_archive: bool,
}

#[derive(Serialize)]
struct PiaMeasure {
    title: String,
    content: String,
    placeholder: String,
}

fn pia_answer(reference_to: u32, lines: &[String]) -> PiaAnswer {
    PiaAnswer { reference_to, data: PiaData { text: lines.join("\n"), gauge: None, list: Vec::new() } }
}

/// One PIA per activity, pre-filled with what the policy knows (R63): 121 data, 122 life
/// cycle, 211 purposes, 212 legal basis, 215 retention, 221–225 information and rights.
pub fn to_pia(set: &PolicySet) -> Result<String, RegisterError> {
    let pias: Vec<PiaExport> = set
        .activities
        .iter()
        .map(|a| {
            let e = Entry::of(a);
            let notice = super::notice::Notice::of(a);
            let bases: Vec<String> = notice
                .purposes
                .iter()
                .map(|p| format!("{} : {} — {}", p.id, p.legal_basis, p.legal_basis_explained))
                .collect();
            let mut data = e.categories_de_donnees.clone();
            data.extend(e.destinataires.iter().map(|d| format!("Destinataire — {d}")));
            let information = vec![
                format!("Notice générée par Guichet, publiée à /.guichet/informations/{}", a.id),
                notice.how_to_exercise.clone(),
            ];
            let consent = notice.consent.as_ref().map_or_else(
                || vec!["Le traitement ne repose pas sur le consentement.".to_owned()],
                |c| vec![format!("Texte de consentement (version {}) : {}", c.version, c.text)],
            );
            PiaExport {
                pia: PiaHeader {
                    name: a.name.clone(),
                    category: a.id.clone(),
                    status: 0,
                    author_name: String::new(),
                    evaluator_name: String::new(),
                    validator_name: String::new(),
                    dpos_names: a.dpo.name.clone(),
                    dpo_status: 0,
                    dpo_opinion: String::new(),
                    concerned_people_opinion: String::new(),
                    concerned_people_status: 0,
                    progress: 0,
                    is_example: false,
                    is_archive: false,
                },
                answers: vec![
                    pia_answer(121, &data),
                    pia_answer(122, &e.delais_effacement),
                    pia_answer(211, &e.finalites),
                    pia_answer(212, &bases),
                    pia_answer(215, &e.delais_effacement),
                    pia_answer(221, &information),
                    pia_answer(222, &consent),
                    pia_answer(223, &notice.rights),
                    pia_answer(224, &notice.rights),
                    pia_answer(225, &notice.rights),
                ],
                measures: a
                    .security_measures
                    .iter()
                    .map(|m| PiaMeasure { title: m.clone(), content: String::new(), placeholder: String::new() })
                    .collect(),
                evaluations: Vec::new(),
                comments: Vec::new(),
            }
        })
        .collect();
    Ok(serde_json::to_string_pretty(&pias)?)
}
