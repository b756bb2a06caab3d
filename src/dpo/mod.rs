//! The DPO's console (`/.guichet/dpo/`) and the supervision view (`/.guichet/pilotage/`),
//! beside the request path (docs/dpo.md). Pages only: every figure is read through the
//! services (`App::rights`, the consent ledger, the journal, the policies, the key vault),
//! counted by the pure `stats`, drawn by `charts`, exported by `export`.
//!
//! - `pages`: the overview, the rights queue with its actions (HTML forms with CSRF, through
//!   the rights service), the consent ledger and its "prove it" query, the journal browser
//!   and its "verify now"; CSV and ODS exports of each list. For agents holding
//!   `auth.dpo_role`, signed in at `[dpo] min_acr` or above.
//! - `pilotage`: aggregates per service and month for `[dpo] supervision_role`, every count
//!   under 5 suppressed; a printable monthly report; the same figures as JSON under
//!   `/.guichet/api/v1/stats/`.

pub mod charts;
pub mod conservation;
pub mod export;
pub mod pages;
pub mod pilotage;
pub mod stats;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;

use crate::app::{App, AppState};
use crate::audit::{Actor, ActorKind, Ident};
use crate::auth::session::{Kind, Session};
use crate::error::GatewayError;
use crate::rights::service::By;

/// The console's overview.
pub const DPO_PATH: &str = "/.guichet/dpo/";
pub const DPO_REQUESTS_PATH: &str = "/.guichet/dpo/demandes";
pub const DPO_CONSENTS_PATH: &str = "/.guichet/dpo/consentements";
pub const DPO_JOURNAL_PATH: &str = "/.guichet/dpo/journal";
/// The supervision view for directors and elected officials.
pub const SUPERVISION_PATH: &str = "/.guichet/pilotage/";
pub const SUPERVISION_REPORT_PATH: &str = "/.guichet/pilotage/rapport";
/// The supervision figures as JSON, for the city's own dashboards.
pub const STATS_API_PATH: &str = "/.guichet/api/v1/stats/services";

pub fn routes() -> Router<AppState> {
    pages::routes().merge(pilotage::routes()).merge(conservation::routes())
}

/// The lowest sign-in level of an agent on the DPO's pages: `[dpo] min_acr`, else the
/// strongest level the agents' provider declares (`acr_values`), else the level it is asked
/// for by default (`acr`).
pub fn dpo_min_level(app: &App) -> u8 {
    if let Some(level) = app.settings.dpo.min_acr.as_deref().and_then(crate::routing::acr_level) {
        return level;
    }
    let Some(p) = app.auth.provider(Kind::Agent) else { return 1 };
    let declared = p.settings.acr_values.iter().filter_map(|a| crate::routing::acr_level(a)).max();
    declared.or_else(|| crate::routing::acr_level(&p.settings.acr)).unwrap_or(1)
}

/// The signed-in agent holding `role` at `min_level` or above. A browser without a session
/// (or below the level) is sent to the agents' sign-in and back to `return_to`; an API gets
/// 401; anyone else signed in, 403.
async fn agent_with(
    app: &App,
    headers: &HeaderMap,
    role: &str,
    min_level: u8,
    return_to: &str,
    what: &'static str,
    journal_denial: bool,
) -> Result<Arc<Session>, GatewayError> {
    let session = app.auth.identify(headers).await.map_err(|_| GatewayError::StoreUnavailable)?;
    let again = || GatewayError::SignInRequired { agent: true, acr: Some(min_level), return_to: return_to.to_owned() };
    let page = page_name(return_to);
    match session {
        None => Err(again()),
        Some(s) if s.kind == Kind::Agent && s.roles.iter().any(|r| r == role) => {
            let level = crate::routing::acr_level(&s.acr).unwrap_or(0);
            if level < min_level {
                return Err(again());
            }
            // R45: every read of the DPO's and supervision pages is in the journal.
            match app.auth.reader(&s, Some(role)) {
                Some(reader) => app.audit.record_read(&reader, &page, None, None).await,
                None => tracing::warn!("a DPO page read could not be journaled"),
            }
            Ok(s)
        }
        Some(s) => {
            if journal_denial {
                crate::auth::gate::denied(app, &s, &page, &crate::auth::gate::list_ref(&page), None).await;
            }
            Err(GatewayError::Forbidden(what))
        }
    }
}

/// The journal's name of a page: its path under the reserved prefix, dotted (`dpo.demandes`).
fn page_name(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_start_matches("/.guichet/").trim_matches('/');
    let name: String = path
        .chars()
        .map(|c| match c {
            '/' => '.',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':') => c,
            _ => '-',
        })
        .take(64)
        .collect();
    if name.is_empty() { "dpo".to_owned() } else { name }
}

/// The DPO (an agent holding `auth.dpo_role`, signed in strongly enough).
pub async fn dpo_session(app: &App, headers: &HeaderMap, return_to: &str) -> Result<Arc<Session>, GatewayError> {
    let role = app.settings.auth.dpo_role.clone();
    agent_with(
        app,
        headers,
        &role,
        dpo_min_level(app),
        return_to,
        "these pages are for the data protection officer",
        true,
    )
    .await
}

/// A reader of the supervision view: `[dpo] supervision_role`, or the DPO.
pub async fn supervision_session(
    app: &App,
    headers: &HeaderMap,
    return_to: &str,
) -> Result<Arc<Session>, GatewayError> {
    let role = app.settings.dpo.supervision_role.clone();
    match agent_with(app, headers, &role, 1, return_to, "this view is for the supervision role", false).await {
        Err(GatewayError::Forbidden(_)) => dpo_session(app, headers, return_to)
            .await
            .map_err(|_| GatewayError::Forbidden("this view is for the supervision role")),
        other => other,
    }
}

/// The DPO as the journal names them when they act on a request.
pub fn by_dpo(app: &App, session: &Session) -> Result<By, GatewayError> {
    let id = Ident::new(crate::consent::pages::agent_ident(session)).map_err(|_| GatewayError::Internal)?;
    let role = Ident::new(app.settings.auth.dpo_role.clone()).map_err(|_| GatewayError::Internal)?;
    Ok(By { actor: Actor { kind: ActorKind::Agent, id }, role })
}
