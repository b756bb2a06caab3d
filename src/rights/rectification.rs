//! Rectification (Art. 16): `POST /.guichet/api/v1/rights/{id}/corrections` with
//! `{"fields": {"email": "nouvelle@adresse.fr"}}` gives the corrected values of a rectification
//! request's activity. Each is a declared field of the activity, sealed (or pseudonymised) by
//! the gateway exactly as the proxy would have sent it, so the application stores it as it
//! stores any value; the request then goes to the application (`corrections` in the JWS).
//! Identity claims from the identity provider (names, birth date and place) are not the town
//! hall's to correct: the answer says where civil-status data is corrected instead.
//! JSON bodies only, like the rest of the citizen API (no cross-site form can post here).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::request::{Right, Status};
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
    let activity_id = request.activity.clone().unwrap_or_default();
    let target = app.rights.target(&id, &activity_id).await.ok().flatten();
    let waiting = request.right == Right::Rectification
        && request.status == Status::WaitingOnApplications
        && target.as_ref().is_some_and(|t| t.state == super::propagation::AWAITING_CORRECTIONS);
    let (Some(target), true) = (target, waiting) else {
        return problem(&GatewayError::Unprocessable("this request does not wait for corrections"), "not waiting");
    };
    let set = app.policies.load();
    let Some(activity) = set.activity(&activity_id) else {
        return problem(&GatewayError::NotFound, "the activity is gone");
    };
    let subject = target.field_subject.unwrap_or_default();
    let (sealed, identity) = match seal_all(&app, activity, &subject, &body.fields).await {
        Ok(done) => done,
        Err(e) => return problem(&e, "corrections refused"),
    };
    if !sealed.is_empty() {
        let sent = send(&app, &id, &activity_id, &sealed).await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot send corrections");
            return problem(&GatewayError::StoreUnavailable, "cannot send corrections");
        }
    }
    let names: Vec<&String> = sealed.keys().collect();
    let note = (!identity.is_empty()).then_some(CIVIL_STATUS);
    Json(json!({ "id": id, "sent": names, "identity_fields": identity, "identity_note": note })).into_response()
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
            (Protection::Pass, _) => value.clone(),
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
