//! Rectification (Art. 16): `POST /.guichet/api/v1/rights/{id}/corrections` with
//! `{"fields": {"email": "nouvelle@adresse.fr"}}` gives the corrected values of a rectification
//! request's activity. Each is a declared field of the activity, sealed (or pseudonymised) by
//! the gateway exactly as the proxy would have sent it, so the application stores it as it
//! stores any value; the request then goes to the application (`corrections` in the JWS).
//! Identity claims from the identity provider (names, birth date and place) are not the town
//! hall's to correct: the answer says where civil-status data is corrected instead.
//! JSON bodies only, like the rest of the citizen API (no cross-site form can post here).
//! The privacy centre's rectification screen lists the [`correctable`] fields by their policy
//! labels and files the request with the values through [`correct`], as this endpoint does.
//! `pass` fields are not corrected this way: their value would wait in the store in clear.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::{Right, Status};
use super::service::RightsRequest;
use crate::app::{App, AppState};
use crate::auth::session::Kind;
use crate::crypto::FieldContext;
use crate::error::GatewayError;
use crate::policy::model::{ActivityFile, Protection};

/// Claims the identity provider gives (FranceConnect's identity pivot and the like).
const IDENTITY_CLAIMS: &[&str] =
    &["given_name", "family_name", "usual_name", "birthdate", "birthplace", "birthcountry", "gender"];

/// Where civil-status data is corrected (plain French).
pub const CIVIL_STATUS: &str = "Vos nom, prénoms, sexe, date et lieu de naissance viennent de votre compte \
FranceConnect, qui les reçoit de l'état civil. La mairie ne peut pas les corriger ici. Pour les corriger, demandez \
une rectification d'acte à la mairie de votre lieu de naissance ; si vous êtes né à l'étranger, au Service central \
d'état civil, sur service-public.fr.";

pub fn routes() -> Router<AppState> {
    Router::new().route("/.guichet/api/v1/rights/{id}/corrections", post(corrections))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    fields: BTreeMap<String, String>,
}

fn problem(e: &GatewayError, why: &str) -> Response {
    e.respond(false, None, Some(why.to_owned()))
}

async fn corrections(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<Body>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let session = match app.auth.identify(&headers).await {
        Ok(Some(s)) if s.kind == Kind::Citizen => s,
        _ => {
            let e = GatewayError::SignInRequired { agent: false, acr: None, return_to: "/".into() };
            return problem(&e, "corrections without a citizen session");
        }
    };
    let Ok(Json(body)) = body else {
        return problem(&GatewayError::BadRequest("the body must be JSON: {\"fields\": {…}}"), "bad corrections");
    };
    let request = match app.rights.get(&id).await {
        Ok(r) if r.subject == app.auth.consent_subject(&session) => r,
        _ => return problem(&GatewayError::NotFound, "no such request of this citizen"),
    };
    match correct(&app, &request, &body.fields).await {
        Ok(c) => {
            let note = (!c.identity.is_empty()).then_some(CIVIL_STATUS);
            Json(json!({ "id": id, "sent": c.sent, "identity_fields": c.identity, "identity_note": note }))
                .into_response()
        }
        Err(e) => problem(&e, "corrections refused"),
    }
}

/// What [`correct`] did: the fields sent (sealed) to the application, and the identity
/// claims set aside (corrected at the civil registry, not here).
#[derive(Debug, Default)]
pub struct Corrected {
    pub sent: Vec<String>,
    pub identity: Vec<String>,
}

/// The fields of `activity` a citizen may correct online, with their labels: those the policy
/// labels and the gateway seals (a `pass` value would wait in the store in clear), on an
/// activity whose application has a rights endpoint to send them to.
pub fn correctable(activity: &ActivityFile) -> Vec<(&str, &str)> {
    if activity.rights_endpoint.is_none() {
        return Vec::new();
    }
    activity
        .fields
        .iter()
        .filter(|f| f.protection != Protection::Pass)
        .filter_map(|f| Some((f.name.as_str(), f.label.as_deref()?)))
        .collect()
}

/// The fields of `activity` a citizen cannot correct online ([`correctable`] leaves them out):
/// the labels of those the policy names, and whether some have no label at all.
pub fn not_correctable(activity: &ActivityFile) -> (Vec<&str>, bool) {
    let online = correctable(activity);
    let offline = activity.fields.iter().filter(|f| !online.iter().any(|(name, _)| *name == f.name));
    let (labelled, unnamed): (Vec<_>, Vec<_>) = offline.partition(|f| f.label.is_some());
    (labelled.iter().filter_map(|f| f.label.as_deref()).collect(), !unnamed.is_empty())
}

/// Gives a rectification request its corrected values: each is sealed (or pseudonymised) as
/// the proxy seals that field, stored sealed with the request's target, and the request is
/// queued for the application's rights endpoint. The caller has checked `request` is the
/// citizen's own. Values are never logged, nor stored in clear.
pub async fn correct(
    app: &App,
    request: &RightsRequest,
    fields: &BTreeMap<String, String>,
) -> Result<Corrected, GatewayError> {
    let activity_id = request.activity.clone().unwrap_or_default();
    let target = app.rights.target(&request.id, &activity_id).await.ok().flatten();
    let waiting = request.right == Right::Rectification
        && request.status == Status::WaitingOnApplications
        && target.as_ref().is_some_and(|t| t.state == super::propagation::AWAITING_CORRECTIONS);
    let (Some(target), true) = (target, waiting) else {
        return Err(GatewayError::Unprocessable("this request does not wait for corrections"));
    };
    let set = app.policies.load();
    let activity = set.activity(&activity_id).ok_or(GatewayError::NotFound)?;
    let subject = target.field_subject.unwrap_or_default();
    let (sealed, identity) = seal_all(app, activity, &subject, fields).await?;
    if !sealed.is_empty()
        && let Err(e) = send(app, &request.id, &activity_id, &sealed).await
    {
        tracing::warn!(error = %e, "cannot send corrections");
        return Err(GatewayError::StoreUnavailable);
    }
    Ok(Corrected { sent: sealed.keys().cloned().collect(), identity })
}

/// Seals each declared field's value as the proxy would; identity claims are set aside.
async fn seal_all(
    app: &App,
    activity: &ActivityFile,
    subject: &str,
    fields: &BTreeMap<String, String>,
) -> Result<(serde_json::Map<String, Value>, Vec<String>), GatewayError> {
    let mut sealed = serde_json::Map::new();
    let mut identity = Vec::new();
    for (name, value) in fields {
        let Some(field) = activity.fields.iter().find(|f| f.name == *name) else {
            if IDENTITY_CLAIMS.contains(&name.as_str()) {
                identity.push(name.clone());
                continue;
            }
            return Err(GatewayError::Unprocessable("a field is not one the activity declares"));
        };
        let out = match (field.protection, &app.crypto) {
            // Kept in the gateway's store until sent: only sealed values may wait there.
            (Protection::Pass, _) => {
                return Err(GatewayError::Unprocessable("this field is not sealed: an agent corrects it"));
            }
            (Protection::Encrypt, Some(vault)) => {
                let ctx = FieldContext { activity: &activity.id, field: name, subject };
                let class = crate::policy::retention_class(activity, &field.category);
                vault.seal_in_class(&ctx, &class, value).await.map_err(|_| GatewayError::ProtectionUnavailable)?
            }
            (Protection::Pseudonymize, Some(vault)) => vault.pseudonymize(&activity.id, name, value),
            (_, None) => return Err(GatewayError::ProtectionUnavailable),
        };
        sealed.insert(name.clone(), Value::String(out));
    }
    Ok((sealed, identity))
}

async fn send(
    app: &App,
    id: &str,
    activity: &str,
    sealed: &serde_json::Map<String, Value>,
) -> Result<(), super::service::RightsError> {
    let json = serde_json::to_string(sealed).map_err(|_| super::service::RightsError::Corrupt)?;
    app.rights.set_corrections(id, activity, &json).await?;
    super::propagation::enqueue(app, id, activity, false).await
}

/// What the application last said it holds for a citizen's correctable fields: the values it
/// sent back in its answer to the citizen's latest access or portability request covering
/// the activity, opened for that citizen (`owners`, their field subjects), by field name.
#[derive(Debug, Default)]
pub struct CurrentValues {
    /// When the application answered; `None` when no such answer is kept.
    pub answered_at: Option<time::OffsetDateTime>,
    pub values: BTreeMap<String, Vec<String>>,
}

/// The [`CurrentValues`] of `subject`'s (consent subject) data in `activity`. A token opens
/// only if one of `owners` owns it in this activity, and only under the field it was sealed
/// for, so a value is shown beside its own field and nobody else's value is shown. Values the
/// gateway pseudonymises cannot be shown (they do not open).
pub async fn current_values(app: &App, subject: &str, owners: &[&str], activity: &ActivityFile) -> CurrentValues {
    let mut out = CurrentValues::default();
    let Some(vault) = app.crypto.as_deref() else { return out };
    let Some((answered_at_us, records)) = latest_records(app, subject, &activity.id).await else { return out };
    out.answered_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(answered_at_us) * 1000).ok();
    let fields: Vec<&str> = correctable(activity)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| activity.fields.iter().any(|f| f.name == *name && f.protection == Protection::Encrypt))
        .collect();
    let mut tokens = Vec::new();
    collect_strings(&records, &mut tokens);
    for token in tokens.iter().flat_map(|s| crate::crypto::scan::find_tokens(s)) {
        let Ok(Some(openable)) = vault.openable(token).await else { continue };
        if openable.activity() != activity.id || !owners.contains(&openable.subject()) {
            continue;
        }
        for field in &fields {
            let ctx = FieldContext { activity: &activity.id, field, subject: openable.subject() };
            if let Ok(value) = openable.open(&ctx) {
                let seen = out.values.entry((*field).to_owned()).or_default();
                if !seen.iter().any(|v| v.as_str() == value.as_str()) {
                    seen.push(value.to_string());
                }
                break;
            }
        }
    }
    out
}

/// The records of the application's latest completed answer to an access or portability
/// request of `subject` covering `activity`, with when it answered.
async fn latest_records(app: &App, subject: &str, activity: &str) -> Option<(i64, Value)> {
    let requests = app.rights.of_subject(subject).await.ok()?;
    let mut best: Option<(i64, Value)> = None;
    for r in requests.iter().filter(|r| matches!(r.right, Right::Access | Right::Portability)) {
        if r.activity.as_deref().is_some_and(|a| a != activity) {
            continue;
        }
        let Ok(Some(t)) = app.rights.target(&r.id, activity).await else { continue };
        let (Some("completed"), Some(records), Some(at)) = (t.status.as_deref(), t.records, t.answered_at_us) else {
            continue;
        };
        let Ok(records) = serde_json::from_str::<Value>(&records) else { continue };
        if best.as_ref().is_none_or(|(b, _)| at > *b) {
            best = Some((at, records));
        }
    }
    best
}

fn collect_strings<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
