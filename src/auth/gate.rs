//! Role gates for the gateway's own pages, journaled (issue 16 item 6): a signed-in person
//! refused for lack of the role leaves a `read` entry with outcome `denied` (who, which
//! page, which role they had; nothing else). Anonymous visitors are sent to sign in and leave
//! nothing: there is no one to name.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::session::{Kind, Session};
use crate::app::App;
use crate::audit::Reader;
use crate::error::GatewayError;

/// A DPO who passed the gate: their session (for the page's chrome and CSRF) and the reader
/// the journal names.
#[derive(Debug)]
pub struct Dpo {
    pub session: Arc<Session>,
    pub reader: Reader,
}

/// The signed-in agent holding `auth.dpo_role`, or the error to answer: sign-in (back to
/// `return_to`) without a session, 403 (journaled as denied on `page`, naming `record_ref`)
/// for anyone else.
pub async fn dpo(
    app: &App,
    headers: &HeaderMap,
    page: &str,
    record_ref: &str,
    return_to: &str,
    request_id: Option<&str>,
) -> Result<Dpo, GatewayError> {
    let session = app.auth.identify(headers).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let role = app.auth.settings.dpo_role.as_str();
    match session {
        None => Err(GatewayError::SignInRequired { agent: true, acr: None, return_to: return_to.to_owned() }),
        Some(s) if s.kind == Kind::Agent && s.roles.iter().any(|r| r == role) => {
            let reader = app.auth.reader(&s, Some(role)).ok_or(GatewayError::Internal)?;
            Ok(Dpo { session: s, reader })
        }
        Some(s) => {
            denied(app, &s, page, record_ref, request_id).await;
            Err(GatewayError::Forbidden("this page is for the data protection officer"))
        }
    }
}

/// The record reference of a list page (`list:dpo.incidents`): what a refusal of a list names.
pub fn list_ref(page: &str) -> String {
    format!("list:{page}")
}

/// Journals that `session`'s person was refused `page` and the record `record_ref` on it
/// (their first role, if any, as role). A reference that is not a journal identifier (a
/// mistyped id in an address) is journaled as the page's list, so the entry always names one.
pub async fn denied(app: &App, session: &Session, page: &str, record_ref: &str, request_id: Option<&str>) {
    let role = if session.kind == Kind::Agent { session.roles.first().map(String::as_str) } else { None };
    let record_ref = if crate::audit::Ident::new(record_ref).is_ok() { record_ref.to_owned() } else { list_ref(page) };
    match app.auth.reader(session, role) {
        Some(reader) => app.audit.record_denied(&reader, page, &record_ref, request_id).await,
        None => tracing::warn!("a refused access could not be journaled: the person's id is not a journal identifier"),
    }
}

/// The roles that open each area of the gateway's pages, read once from the settings: the
/// header's links and the agents' landing page are computed from them, so a person sees a
/// link to each page they may open and to none they would be refused.
#[derive(Debug, Clone, Default)]
pub struct AreaRoles {
    /// Assisted mode: filing rights (`rights.assisted_roles`) or recording consents
    /// (`consent.assisted_roles`) with a citizen at the counter or on the phone.
    pub rights_counter: Vec<String>,
    pub consent_counter: Vec<String>,
    /// The DPO (`auth.dpo_role`).
    pub dpo: String,
    /// The supervision view (`[dpo] supervision_role`).
    pub supervision: String,
    /// The archivist's elimination lists (`[retention] archivist_role`).
    pub archivist: String,
}

impl AreaRoles {
    pub fn of(settings: &crate::config::Settings) -> Self {
        Self {
            rights_counter: settings.rights.assisted_roles.clone(),
            consent_counter: settings.consent.assisted_roles.clone(),
            dpo: settings.auth.dpo_role.clone(),
            supervision: settings.dpo.supervision_role.clone(),
            archivist: settings.retention.archivist_role.clone(),
        }
    }
}

/// True when `session` is an agent's holding `role` (citizens hold no role).
pub fn holds(session: &Session, role: &str) -> bool {
    session.kind == Kind::Agent && session.roles.iter().any(|r| r == role)
}

fn holds_any(session: &Session, roles: &[String]) -> bool {
    roles.iter().any(|r| holds(session, r))
}

/// Which areas the person reading a page may open (all false when nobody is signed in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageRoles {
    pub citizen: bool,
    pub agent: bool,
    /// Files rights requests with a citizen (assisted mode).
    pub rights_counter: bool,
    /// Records consents with a citizen.
    pub consent_counter: bool,
    pub dpo: bool,
    pub supervision: bool,
    /// Gives or refuses the visa on elimination lists.
    pub archivist: bool,
}

impl PageRoles {
    pub fn of(areas: &AreaRoles, session: Option<&Session>) -> Self {
        let Some(s) = session else { return Self::default() };
        Self {
            citizen: s.kind == Kind::Citizen,
            agent: s.kind == Kind::Agent,
            rights_counter: holds_any(s, &areas.rights_counter),
            consent_counter: holds_any(s, &areas.consent_counter),
            dpo: holds(s, &areas.dpo),
            // The DPO may read the supervision view too (`dpo::supervision_session`).
            supervision: holds(s, &areas.supervision) || holds(s, &areas.dpo),
            archivist: holds(s, &areas.archivist),
        }
    }

    /// "Mes données" in the header: for citizens, and for visitors (it leads to sign-in).
    pub fn citizen_area(&self) -> bool {
        !self.agent
    }

    /// "Espace agent" in the header: for agents who work with citizens at the counter.
    pub fn agent_area(&self) -> bool {
        self.rights_counter || self.consent_counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn areas() -> AreaRoles {
        AreaRoles {
            rights_counter: vec!["accueil".into()],
            consent_counter: vec!["agent".into()],
            dpo: "dpo".into(),
            supervision: "direction".into(),
            archivist: "archiviste".into(),
        }
    }

    fn session(kind: Kind, roles: &[&str]) -> Session {
        Session {
            id_hash: "h".into(),
            kind,
            issuer: "https://idp.example".into(),
            subject: "s".into(),
            provider_sid: None,
            acr: "eidas1".into(),
            claims: Default::default(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
            derived: Default::default(),
        }
    }

    #[test]
    fn each_person_gets_the_links_of_their_roles() {
        let a = areas();
        let nobody = PageRoles::of(&a, None);
        assert!(nobody.citizen_area() && !nobody.agent_area() && !nobody.dpo);
        let citizen = PageRoles::of(&a, Some(&session(Kind::Citizen, &["accueil", "dpo"])));
        assert!(citizen.citizen_area() && !citizen.agent_area() && !citizen.dpo, "citizens hold no role");
        let counter = PageRoles::of(&a, Some(&session(Kind::Agent, &["accueil"])));
        assert!(!counter.citizen_area() && counter.agent_area() && counter.rights_counter && !counter.dpo);
        let dpo = PageRoles::of(&a, Some(&session(Kind::Agent, &["dpo"])));
        assert!(dpo.dpo && dpo.supervision && !dpo.agent_area());
        let director = PageRoles::of(&a, Some(&session(Kind::Agent, &["direction"])));
        assert!(director.supervision && !director.dpo && !director.agent_area() && !director.archivist);
        let archivist = PageRoles::of(&a, Some(&session(Kind::Agent, &["archiviste"])));
        assert!(archivist.archivist && !archivist.dpo && !archivist.agent_area());
        let citizen = PageRoles::of(&a, Some(&session(Kind::Citizen, &["archiviste"])));
        assert!(!citizen.archivist, "citizens hold no role");
    }
}
