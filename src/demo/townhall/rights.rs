//! The demo town hall's rights endpoint, as an application team would write it from
//! `docs/rights.md`: verify the gateway's JWS against its published keys, then answer access
//! with the records kept for that pseudonym (tokens stay tokens: the gateway opens them for
//! the citizen) and erasure by deleting them.

use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use super::{AppState, SharedState, Store, Stored, lock};
use crate::auth::http::HttpClient;
use crate::auth::jose::{self, JwkSet, PINNED_ALGS};
use crate::rights::contract::REQUEST_JWS_TYPE;

#[derive(Debug)]
pub(super) struct Endpoint {
    jwks_url: String,
    http: HttpClient,
}

impl Endpoint {
    pub(super) fn new(gateway_url: &str) -> anyhow::Result<Self> {
        let jwks_url = format!("{}/.guichet/jwks.json", gateway_url.trim_end_matches('/'));
        Ok(Self { jwks_url, http: HttpClient::new()? })
    }

    /// The request's claims when its signature verifies against the gateway's keys.
    async fn verify(&self, jws: &str) -> Option<serde_json::Map<String, Value>> {
        let reply = self.http.get(&self.jwks_url, None).await.ok()?;
        let keys = JwkSet::parse(&reply.body).ok()?;
        let verified = jose::verify(jws, &keys, PINNED_ALGS).ok()?;
        (verified.header.typ.as_deref() == Some(REQUEST_JWS_TYPE)).then_some(verified.claims)
    }
}

pub(super) async fn answer(State(state): State<SharedState>, body: String) -> Response {
    let Some(endpoint) = &state.rights else { return StatusCode::NOT_FOUND.into_response() };
    let Some(claims) = endpoint.verify(body.trim()).await else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let pseudonym =
        claims.get("subject_identity").and_then(|s| s.get("value")).and_then(Value::as_str).unwrap_or_default();
    let records = match (text("type").as_str(), text("activity").as_str()) {
        ("access" | "portability", "cantine") => Some(json!(mine(&state.canteen, pseudonym))),
        ("access" | "portability", "etat-civil") => Some(json!(mine(&state.civil_status, pseudonym))),
        ("erasure", activity) => {
            let n = erase(&state, activity, pseudonym);
            Some(json!({ "deleted": n }))
        }
        _ => None,
    };
    Json(json!({ "request_id": text("request_id"), "status": "completed", "records": records })).into_response()
}

/// The records whose request carried this pseudonym.
fn mine<K: Clone + serde::Serialize>(store: &Mutex<Store<K>>, pseudonym: &str) -> Vec<Value> {
    lock(store)
        .records
        .iter()
        .filter(|r| is_of(r, pseudonym))
        .map(|r| json!({ "id": r.id, "fields": r.fields }))
        .collect()
}

fn is_of<K>(record: &Stored<K>, pseudonym: &str) -> bool {
    !pseudonym.is_empty()
        && record.received_headers.as_map().get("x-guichet-subject").map(String::as_str) == Some(pseudonym)
}

fn erase(state: &AppState, activity: &str, pseudonym: &str) -> usize {
    fn drop_mine<K>(store: &Mutex<Store<K>>, pseudonym: &str) -> usize {
        let mut s = lock(store);
        let before = s.records.len();
        s.records.retain(|r| !is_of(r, pseudonym));
        before - s.records.len()
    }
    match activity {
        "cantine" => drop_mine(&state.canteen, pseudonym),
        "etat-civil" => drop_mine(&state.civil_status, pseudonym),
        _ => 0,
    }
}
