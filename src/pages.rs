//! What every page the gateway serves itself shares: the addresses of its own pages (one list,
//! imported by `error`, `auth`, `consent`, `policy` and `privacy_centre`), the page chrome of
//! the one base layout (`templates/base.html`: the commune's name, "Mes données", "Se
//! déconnecter", footer), and how times and references are written for people. Bottom-level:
//! it depends on `config` and nothing above it.

use std::sync::{Arc, RwLock};

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::{Date, OffsetDateTime};

use crate::config::CommuneSettings;

pub const HOME_PATH: &str = "/";
pub const CITIZEN_LOGIN_PATH: &str = "/.guichet/connexion";
pub const AGENT_LOGIN_PATH: &str = "/.guichet/agent/connexion";
pub const CITIZEN_CALLBACK_PATH: &str = "/.guichet/oidc/callback";
pub const AGENT_CALLBACK_PATH: &str = "/.guichet/oidc/agent/callback";
pub const LOGOUT_PATH: &str = "/.guichet/deconnexion";
pub const LOGOUT_CALLBACK_PATH: &str = "/.guichet/oidc/logout-callback";
pub const LOGGED_OUT_PATH: &str = "/.guichet/deconnecte";
pub const CONSENT_PATH: &str = "/.guichet/consentement/";
pub const CONSENT_CODE_PATH: &str = "/.guichet/consentement/code";
pub const CONSENT_AGENT_PATH: &str = "/.guichet/consentement/agent";
/// Followed by the event's sequence number (the signed JWS), or by it and `/imprimer`.
pub const CONSENT_RECEIPT_PREFIX: &str = "/.guichet/consentement/recu/";
pub const NOTICES_PATH: &str = "/.guichet/informations";
/// The DPO's register page; also a sign-in return path (see `auth::safe_return_path`).
pub const REGISTER_PATH: &str = "/.guichet/dpo/registre";
/// The citizen's hub, "Mes données".
pub const PRIVACY_CENTRE_PATH: &str = "/.guichet/mes-donnees/";
/// Followed by a right (`acces`, `effacement`…): the three screens of a procedure.
pub const PROCEDURE_PREFIX: &str = "/.guichet/mes-donnees/droits/";
/// Followed by a request's reference: the last screen and printable receipt.
pub const REQUEST_PREFIX: &str = "/.guichet/mes-donnees/demandes/";
pub const ACCESSIBILITY_PATH: &str = "/.guichet/accessibilite";
/// The DPO's breach register (Art. 33(5)); followed by `/nouveau`, or a reference and
/// `/modifier`, `/cnil`, `/cnil.json`.
pub const DPO_INCIDENTS_PATH: &str = "/.guichet/dpo/incidents";
/// "Espace agent": what the signed-in agent may do, linked from the header.
pub const AGENT_SPACE_PATH: &str = "/.guichet/agent/";
/// The agent's assisted mode: a citizen's right filed with them at the counter or on the phone.
pub const ASSISTED_PATH: &str = "/.guichet/guichet-agent/";
/// Screen 2 of the assisted mode posts here to file the request.
pub const ASSISTED_CONFIRM_PATH: &str = "/.guichet/guichet-agent/confirmer";
/// Assisted entry: the agent chooses the citizen whose fields they enter (`auth::counter`).
pub const ASSISTED_ENTRY_PATH: &str = "/.guichet/guichet-agent/usager";
/// Posted to end the assisted entry's choice.
pub const ASSISTED_ENTRY_END_PATH: &str = "/.guichet/guichet-agent/usager/fin";
/// Followed by a request's reference: the assisted mode's printable receipt.
pub const ASSISTED_REQUEST_PREFIX: &str = "/.guichet/guichet-agent/demandes/";
/// The notices waiting for a letter, for an agent of the assisted mode to print and post;
/// followed by a message id (the printable letter), and `/envoyee` (posted).
pub const LETTERS_PATH: &str = "/.guichet/agent/courriers/";
/// The stylesheet of the bar inserted into applications' pages (`proxy::bar`).
pub const BAR_STYLESHEET_PATH: &str = "/.guichet/barre.css";

/// The commune named by pages rendered where no application state is at hand (error pages):
/// installed by `Application::build`. Handlers use `Auth::chrome`, from their own settings.
static COMMUNE: RwLock<Option<Arc<CommuneSettings>>> = RwLock::new(None);

/// Makes `commune` the one every page names from now on.
pub fn install_commune(commune: &CommuneSettings) {
    if let Ok(mut c) = COMMUNE.write() {
        *c = Some(Arc::new(commune.clone()));
    }
}

fn commune() -> Arc<CommuneSettings> {
    COMMUNE.read().ok().and_then(|c| c.clone()).unwrap_or_else(|| Arc::new(CommuneSettings::default()))
}

/// What the base layout needs besides the page's own content.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub commune: Arc<CommuneSettings>,
    /// The session's CSRF token when someone is signed in: "Se déconnecter" is then a button
    /// posting the sign-out; otherwise a link to the confirmation page.
    pub csrf: Option<String>,
    /// The areas the reader may open: the header links to each (`auth::gate::PageRoles`).
    pub roles: crate::auth::gate::PageRoles,
}

impl Chrome {
    /// For a page rendered without the application at hand (error pages), as seen by someone
    /// who is not signed in (or whose session is unknown).
    pub fn public() -> Self {
        Self { commune: commune(), csrf: None, roles: Default::default() }
    }

    /// The compliance status for the footer, in the words of the law (décret 2019-768).
    pub fn accessibility_status(&self) -> &'static str {
        accessibility_status(&self.commune)
    }

    pub fn logout_path(&self) -> &'static str {
        LOGOUT_PATH
    }
}

/// "totalement", "partiellement" or "non" conforme, from `[commune.accessibility] status`.
pub fn accessibility_status(c: &CommuneSettings) -> &'static str {
    match c.accessibility.status.as_deref() {
        Some("totale") => "totalement conforme",
        Some("partielle") => "partiellement conforme",
        _ => "non conforme",
    }
}

/// An own page: HTML, never cached (pages may show personal data).
pub fn render(status: StatusCode, t: &impl Template) -> Response {
    let body = t.render().unwrap_or_default();
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// `3 décembre 2026`, `1er mars 2027`.
pub fn french_date(d: Date) -> String {
    let month = MONTHS.get(usize::from(u8::from(d.month())) - 1).copied().unwrap_or_default();
    match d.day() {
        1 => format!("1er {month} {}", d.year()),
        day => format!("{day} {month} {}", d.year()),
    }
}

/// `3 décembre 2026 à 14 h 05`, in French local time (Europe/Paris).
pub fn french_time(t: OffsetDateTime) -> String {
    let local = crate::clock::in_paris(t);
    format!("{} à {} h {:02}", french_date(local.date()), local.hour(), local.minute())
}

/// Letters that cannot be misread over the phone (Crockford's base 32: no I, L, O, U).
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A short reference a person can read out on the phone for a request id: 8 characters of
/// Crockford base 32 (40 bits of its SHA-256), written `ABCD-EFGH`. The log line of the
/// error carries both, so the full id is found from what the person reads.
pub fn spoken_reference(request_id: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, request_id.as_bytes());
    let bits = digest.as_ref().iter().take(5).fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut out = String::with_capacity(9);
    for i in (0..8).rev() {
        let index = usize::try_from((bits >> (i * 5)) & 31).unwrap_or_default();
        out.push(char::from(CROCKFORD.get(index).copied().unwrap_or(b'0')));
        if i == 4 {
            out.push('-');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_read_in_french_local_time() {
        assert_eq!(french_time(datetime!(2026-12-03 13:05 UTC)), "3 décembre 2026 à 14 h 05");
        assert_eq!(french_time(datetime!(2026-07-14 08:00 UTC)), "14 juillet 2026 à 10 h 00");
    }

    #[test]
    fn references_are_eight_unambiguous_characters() {
        let r = spoken_reference("0123456789abcdef0123456789abcdef");
        assert_eq!(r.len(), 9);
        assert_eq!(r.as_bytes()[4], b'-');
        assert!(r.bytes().filter(|b| *b != b'-').all(|b| CROCKFORD.contains(&b)));
        assert_eq!(r, spoken_reference("0123456789abcdef0123456789abcdef"), "stable");
        assert_ne!(r, spoken_reference("0123456789abcdef0123456789abcdee"));
    }
}
