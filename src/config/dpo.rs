//! `[dpo]`: the DPO's console and the supervision view (docs/dpo.md).

use serde::Deserialize;

/// Who may open the console and the supervision view, and how strongly they signed in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoSettings {
    /// Lowest sign-in level (`eidas1`, `eidas2`, `eidas3`) of an agent on the DPO's pages.
    /// Default: the strongest level the agents' provider offers, so the console that reads
    /// the whole journal asks for the best proof of identity there is.
    #[serde(default)]
    pub min_acr: Option<String>,
    /// The agent role that opens the supervision view (`/.guichet/pilotage/`): aggregates
    /// only, for directors and elected officials.
    #[serde(default = "default_supervision_role")]
    pub supervision_role: String,
}

fn default_supervision_role() -> String {
    "supervision".to_owned()
}

impl Default for DpoSettings {
    fn default() -> Self {
        Self { min_acr: None, supervision_role: default_supervision_role() }
    }
}
