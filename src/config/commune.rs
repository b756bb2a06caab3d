//! `[commune]`: who the citizen is dealing with, shown in every page's header, and the facts of
//! the accessibility statement (RGAA 4.1 model), which the gateway generates from them.

use serde::Deserialize;

/// The town hall as its pages name it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommuneSettings {
    /// Shown at the top of every page, e.g. "Mairie de Saint-Martin".
    #[serde(default = "default_name")]
    pub name: String,
    /// Address of the logo image, same origin (the pages' CSP allows `img-src 'self'`),
    /// e.g. "/static/logo.svg" served by an application route. Absent: the name alone.
    #[serde(default)]
    pub logo: Option<String>,
    #[serde(default)]
    pub accessibility: AccessibilitySettings,
}

impl Default for CommuneSettings {
    fn default() -> Self {
        Self { name: default_name(), logo: None, accessibility: AccessibilitySettings::default() }
    }
}

fn default_name() -> String {
    "Votre mairie".to_owned()
}

/// The accessibility statement's facts (décret 2019-768; RGAA 4.1 model).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessibilitySettings {
    /// "totale", "partielle" or "non" (the default until an audit is made).
    #[serde(default)]
    pub status: Option<String>,
    /// Share of RGAA criteria met in the last audit, in percent.
    #[serde(default)]
    pub rate: Option<u8>,
    /// Date of the audit, as written in the statement (e.g. "3 décembre 2026").
    #[serde(default)]
    pub audit_date: Option<String>,
    /// Who made the audit.
    #[serde(default)]
    pub audited_by: Option<String>,
    /// Known defects, one sentence each.
    #[serde(default)]
    pub defects: Vec<String>,
    /// Where to report an accessibility defect (e-mail address, postal address or web page).
    #[serde(default)]
    pub contact: Option<String>,
    /// The multi-year plan's address, when published.
    #[serde(default)]
    pub plan: Option<String>,
}
