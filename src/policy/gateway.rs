//! The gateway's own processing (Art. 30(1)): sessions, the audit journal, the consent ledger,
//! rights requests, notification addresses and — on routes that send them — client
//! addresses. Built in, generated from the configuration (its retentions and the routes that
//! send addresses), and added to every output of the register so the DPO's register is
//! complete. Never part of enforcement: it claims no route.

use std::sync::Arc;
use std::time::Duration;

use super::engine::PolicySet;
use super::model::{
    ActivityFile, Category, Contact, Controller, ControllerKind, LegalBasis, Purpose, Recipient, RecipientKind,
    Retention, RetentionEnd, RetentionStart,
};
use crate::config::{ClientAddress, Settings};

/// The reference of the gateway's entry in the register.
pub const ID: &str = "passerelle-guichet";

/// A calendar month as the configuration counts it (`audit.retention.keep`).
const MONTH: u64 = 2_630_016;

/// `set` with the gateway's own activity added, for the register only.
pub fn register_set(set: &PolicySet, settings: &Settings) -> PolicySet {
    set.with_activity(Arc::new(activity(set, settings)))
}

/// The gateway's processing as an activity. The controller and the DPO are those of the town
/// hall's activities (the gateway serves the same controller); the commune's name otherwise.
pub fn activity(set: &PolicySet, settings: &Settings) -> ActivityFile {
    let (controller, dpo) = match set.activities.first() {
        Some(a) => (a.controller.clone(), a.dpo.clone()),
        None => (
            Controller {
                organisation: settings.commune.name.clone(),
                kind: ControllerKind::PublicAuthority,
                address: String::new(),
                contact: String::new(),
                joint_controllers: Vec::new(),
                representative: None,
            },
            Contact { name: "Délégué à la protection des données".into(), contact: String::new() },
        ),
    };
    let auth = &settings.auth;
    let mut categories = vec![
        category(
            "session",
            "Session de connexion : pseudonyme, niveau de garantie, attributs d'identité du fournisseur (scellés)",
            format!(
                "{} au plus, {} sans activité",
                hours_or_minutes(auth.session_absolute_timeout),
                hours_or_minutes(auth.session_idle_timeout)
            ),
            RetentionStart::Collection,
            "auth.session_absolute_timeout, auth.session_idle_timeout",
        ),
        category(
            "journal",
            "Journal d'audit : identifiants pseudonymes, actions, dates (jamais de valeur en clair)",
            format!("{} mois", settings.audit.retention.keep.as_secs().div_ceil(MONTH)),
            RetentionStart::Collection,
            "audit.retention.keep (6 à 12 mois, recommandation CNIL sur la journalisation)",
        ),
        category(
            "consentements",
            "Preuves des consentements donnés et retirés (registre signé)",
            "la durée de prescription".to_owned(),
            RetentionStart::Event,
            "art. 7(1) RGPD : la mairie doit pouvoir prouver le consentement",
        ),
        category(
            "demandes-droits",
            "Demandes d'exercice des droits et leurs réponses",
            "la durée de prescription".to_owned(),
            RetentionStart::CaseClosed,
            "art. 12 RGPD : preuve de la réponse dans les délais",
        ),
        category(
            "adresse-notification",
            "Adresse e-mail de notification (scellée)",
            "jusqu'à l'effacement demandé".to_owned(),
            RetentionStart::LastActivity,
            "docs/notify.md",
        ),
    ];
    if let Some(c) = categories.get_mut(2).and_then(|c| c.retention.as_mut()) {
        c.event = Some("retrait".into());
        c.event_label = Some("le retrait du consentement".into());
    }
    let sending: Vec<String> = settings
        .routes
        .iter()
        .filter(|r| r.client_address != ClientAddress::None)
        .map(|r| format!("{} ({})", r.name, r.client_address.as_str()))
        .collect();
    if !sending.is_empty() {
        let mut c = category(
            "adresse-client",
            &format!("Adresse IP du client, transmise aux applications des routes : {}", sending.join(", ")),
            "aucune conservation par la passerelle".to_owned(),
            RetentionStart::Collection,
            "routes[].client_address",
        );
        c.client_address = true;
        categories.push(c);
    }
    ActivityFile {
        version: super::model::POLICY_VERSION,
        id: ID.into(),
        name: "Passerelle Guichet : connexion, journal, consentements et droits".into(),
        description: "La passerelle vous connecte aux services de la mairie, garde la preuve de vos accords et \
                      traite vos demandes sur vos données."
            .into(),
        controller,
        dpo,
        purposes: vec![Purpose {
            id: "securite-et-preuve".into(),
            description: "Vous connecter, protéger vos données, prouver vos accords et répondre à vos demandes".into(),
            legal_basis: Some(super::model::BasisChoice::One(LegalBasis::LegalObligation)),
            legal_reference: Some("RGPD art. 5(2), 7(1), 12, 30 et 32".into()),
            optional: false,
            alternative: None,
            if_not_provided: None,
        }],
        data_subjects: vec!["Usagers des services en ligne".into(), "Agents de la mairie".into()],
        categories,
        fields: Vec::new(),
        recipients: vec![Recipient {
            name: "Délégué à la protection des données (journal et registre)".into(),
            kind: RecipientKind::Internal,
        }],
        transfers: Vec::new(),
        consent: None,
        security_measures: vec![
            "Sessions côté serveur, attributs d'identité scellés".into(),
            "Journal chaîné et signé, identifiants pseudonymes".into(),
            "TLS 1.2 ou 1.3, HSTS, clés séparées par usage".into(),
        ],
        routes: Vec::new(),
        rights_endpoint: None,
        rights_route: None,
        erase_on_withdrawal: false,
        restriction_visible_to: Vec::new(),
        notice: Default::default(),
        strict: None,
        sector: super::Sector::General,
        anonymous: Default::default(),
        assisted_entry: Vec::new(),
    }
}

fn category(id: &str, name: &str, active: String, from: RetentionStart, source: &str) -> Category {
    Category {
        id: id.into(),
        name: name.into(),
        special: false,
        retention: Some(Retention {
            active,
            from,
            event: None,
            event_label: None,
            intermediate: None,
            then: RetentionEnd::Destroy,
            source: Some(source.into()),
            producing_service: None,
            notice_before: None,
            archive_visible_to: Vec::new(),
        }),
        client_address: false,
        claims: Vec::new(),
    }
}

/// "12 heures", "30 minutes".
fn hours_or_minutes(d: Duration) -> String {
    let minutes = d.as_secs().div_ceil(60);
    if minutes >= 60 && minutes.is_multiple_of(60) {
        let h = minutes / 60;
        format!("{h} heure{}", if h > 1 { "s" } else { "" })
    } else {
        format!("{minutes} minute{}", if minutes > 1 { "s" } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_lists_the_gateways_own_processing_with_its_configured_retentions() {
        let mut settings = Settings::default();
        settings.audit.retention.keep = Duration::from_secs(9 * MONTH);
        let set = register_set(&PolicySet::default(), &settings);
        let json = super::super::register::to_json(&set).unwrap();
        assert!(json.contains(ID), "{json}");
        assert!(json.contains("Journal d'audit") && json.contains("9 mois"), "{json}");
        assert!(json.contains("12 heures au plus, 30 minutes sans activité"), "{json}");
        assert!(!json.contains("Adresse IP"), "no route sends addresses: {json}");

        let mut route = crate::config::RouteSettings::new("voirie", "/voirie", "http://127.0.0.1:1");
        route.client_address = ClientAddress::Truncated;
        settings.routes.push(route);
        let csv = super::super::register::to_csv(&register_set(&PolicySet::default(), &settings)).unwrap();
        assert!(csv.contains("Adresse IP du client, transmise aux applications des routes : voirie (truncated)"));
    }
}
