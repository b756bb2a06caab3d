//! `POST /.guichet/api/v1/reveal`: clear values for back-office batch jobs that must print or
//! send letters. A job is configured in `[[keys.reveal_clients]]` with the SHA-256 of its
//! bearer token, one activity, the purposes it may declare and the fields it may reveal. Each
//! call is rate-limited per client and journaled (one entry per citizen concerned) before any
//! value is returned: if the journal cannot take it, nothing is revealed.
//!
//! Request: `{"purpose": "inscription", "items": [{"field": "child_given_names", "token": "gch1.…"}]}`
//! Response: `{"values": [{"token": "gch1.…", "value": "Léa"}, {"token": "…", "value": null}]}`
//! (`null`: the token is unknown, shredded, altered, of another activity, or not of that field).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::FieldContext;
use crate::app::AppState;
use crate::audit::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};
use crate::config::RevealClient;
use crate::error::GatewayError;

pub const REVEAL_PATH: &str = "/.guichet/api/v1/reveal";

/// Most tokens one call may ask for.
pub const MAX_ITEMS: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new().route(REVEAL_PATH, post(reveal))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealRequest {
    pub purpose: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub field: String,
    pub token: String,
}

#[derive(Debug, Serialize)]
struct Revealed {
    token: String,
    value: Option<String>,
}

/// Calls per client in the current minute.
#[derive(Debug, Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    /// Counts one call of `client` at `minute`; false when it is over `per_minute`.
    pub fn allow(&self, client: &str, minute: i64, per_minute: u32) -> bool {
        let Ok(mut w) = self.windows.lock() else { return false };
        let entry = w.entry(client.to_owned()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }
}

fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

/// The configured client whose token the request carries (constant-time comparison of the
/// token's SHA-256 with each configured digest).
fn client<'a>(clients: &'a [RevealClient], headers: &HeaderMap) -> Option<&'a RevealClient> {
    let token = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")?;
    let digest = crate::consent::sha256_hex(token.trim());
    clients.iter().find(|c| {
        crate::auth::oidc::constant_time_eq(c.token_sha256.to_ascii_lowercase().as_bytes(), digest.as_bytes())
    })
}

async fn reveal(State(app): State<AppState>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let clients = app.settings.keys.as_ref().map_or(&[][..], |k| &k.reveal_clients[..]);
    let Some(client) = client(clients, &headers) else {
        return problem(&GatewayError::ClientUnauthorized, "batch reveal without a known client token");
    };
    let minute = app.clock.now().unix_timestamp().div_euclid(60);
    if !app.reveal_limiter.allow(&client.name, minute, client.per_minute) {
        return problem(&GatewayError::RateLimited, "batch reveal rate limit");
    }
    let Ok(req) = serde_json::from_slice::<RevealRequest>(&body) else {
        return problem(&GatewayError::BadRequest("the body must be a reveal request in JSON"), "bad reveal request");
    };
    if req.items.len() > MAX_ITEMS {
        return problem(&GatewayError::BadRequest("at most 1000 items per call"), "too many reveal items");
    }
    if let Err(why) = check_purpose(&app, client, &req) {
        return problem(&GatewayError::Forbidden(why), why);
    }
    let Some(vault) = app.crypto.as_ref() else {
        return problem(&GatewayError::ProtectionUnavailable, "batch reveal without a keyring");
    };
    let withdrawn_mark = consent_based(&app, client, &req.purpose).then(|| format!("withdrawn:{}", req.purpose));
    // A back-office job holds no agent role, so it is never among the roles a policy lets see
    // a restricted citizen's values (Art. 18): the letters a job prints are processing too.
    let marks: Vec<&str> =
        withdrawn_mark.as_deref().into_iter().chain(std::iter::once(crate::rights::restriction::RESTRICTED)).collect();
    let mut hidden: BTreeMap<String, bool> = BTreeMap::new();
    // Open everything first, journal, and only then answer.
    let mut values = Vec::with_capacity(req.items.len());
    let mut by_subject: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in &req.items {
        let value = match vault.openable(&item.token).await {
            Ok(Some(openable)) if openable.activity() == client.activity => {
                let (subject, activity) = (openable.subject(), openable.activity());
                let gone = match hidden.get(subject) {
                    Some(g) => *g,
                    None => match any_mark(&app, subject, activity, &marks).await {
                        Ok(g) => *hidden.entry(subject.to_owned()).or_insert(g),
                        Err(e) => {
                            tracing::warn!(error = %e, "batch reveal: withdrawals or restrictions unavailable");
                            return problem(&GatewayError::StoreUnavailable, "withdrawals unavailable");
                        }
                    },
                };
                if gone {
                    values.push(Revealed { token: item.token.clone(), value: None });
                    continue;
                }
                let ctx = FieldContext { activity, field: &item.field, subject };
                let opened = openable.open(&ctx).ok().map(|v| v.to_string());
                if opened.is_some() {
                    by_subject.entry(subject.to_owned()).or_default().insert(item.field.clone());
                }
                opened
            }
            Ok(_) => None,
            Err(crate::crypto::CryptoError::Store(e)) => {
                tracing::warn!(error = %e, "batch reveal: key store unavailable");
                return problem(&GatewayError::StoreUnavailable, "key store unavailable");
            }
            Err(_) => None,
        };
        values.push(Revealed { token: item.token.clone(), value });
    }
    if let Err(why) = journal(&app, client, &req.purpose, &by_subject).await {
        return problem(&GatewayError::Internal, why);
    }
    Json(serde_json::json!({ "values": values })).into_response()
}

/// Whether (`subject`, `activity`) carries one of `marks` (consent withdrawn, restricted).
async fn any_mark(
    app: &AppState,
    subject: &str,
    activity: &str,
    marks: &[&str],
) -> Result<bool, crate::rights::service::RightsError> {
    for mark in marks {
        if app.rights.is_marked(subject, activity, mark).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the declared purpose rests on consent: then a citizen who withdrew it has no
/// value revealed for it any more (Art. 7(3)).
fn consent_based(app: &AppState, client: &RevealClient, purpose: &str) -> bool {
    let set = app.policies.load();
    set.activity(&client.activity).is_some_and(|a| {
        a.purposes.iter().any(|p| {
            p.id == purpose
                && matches!(
                    p.legal_basis,
                    Some(crate::policy::model::BasisChoice::One(crate::policy::model::LegalBasis::Consent))
                )
        })
    })
}

/// The declared purpose must be one the client may declare and one the activity's policy
/// has; every field asked for must be one the client may reveal and an encrypted field of
/// the activity.
fn check_purpose(app: &AppState, client: &RevealClient, req: &RevealRequest) -> Result<(), &'static str> {
    if !client.purposes.contains(&req.purpose) {
        return Err("this client may not declare this purpose");
    }
    let set = app.policies.load();
    let activity = set.activity(&client.activity).ok_or("the client's activity is not in the policies")?;
    if !activity.purposes.iter().any(|p| p.id == req.purpose) {
        return Err("the activity's policy has no such purpose");
    }
    let encrypted = |name: &str| {
        activity.fields.iter().any(|f| f.name == name && f.protection == crate::policy::model::Protection::Encrypt)
    };
    if req.items.iter().any(|i| !client.fields.contains(&i.field) || !encrypted(&i.field)) {
        return Err("a field asked for is not one this client may reveal");
    }
    Ok(())
}

/// One journal entry per citizen whose values were revealed, committed before the answer.
async fn journal(
    app: &AppState,
    client: &RevealClient,
    purpose: &str,
    by_subject: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), &'static str> {
    let actor = Ident::new(format!("batch:{}", client.name)).map_err(|_| "client name not journal-safe")?;
    for (subject, fields) in by_subject {
        let fields: Vec<Ident> = fields.iter().filter_map(|f| Ident::new(f.clone()).ok()).collect();
        let mut event = AuditEvent::system(Operation::Reveal { fields }, app.clock.now());
        event.actor = Actor { kind: ActorKind::System, id: actor.clone() };
        event.role = Ident::new("batch-reveal").map_err(|_| "role")?;
        event.activity = Ident::new(client.activity.clone()).ok();
        event.purpose = Ident::new(purpose.to_owned()).ok();
        event.subject = Ident::new(subject.clone()).ok();
        event.outcome = Outcome::Success;
        app.audit.append_sync(event).await.map_err(|e| {
            tracing::warn!(error = %e, "batch reveal could not be journaled");
            "the journal is unavailable"
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_counts_per_client_and_minute() {
        let l = RateLimiter::default();
        assert!(l.allow("a", 1, 2) && l.allow("a", 1, 2));
        assert!(!l.allow("a", 1, 2), "third call in the minute");
        assert!(l.allow("b", 1, 2), "another client has its own count");
        assert!(l.allow("a", 2, 2), "a new minute starts again");
    }
}
