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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::assertion::AssertionKey;

    /// A stand-in for the gateway's `/.guichet/jwks.json`, and its signing key.
    async fn gateway() -> (String, std::sync::Arc<AssertionKey>) {
        let key = std::sync::Arc::new(AssertionKey::generate().unwrap());
        let jwks = key.jwks();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app =
            axum::Router::new().route("/.guichet/jwks.json", axum::routing::get(move || async move { Json(jwks) }));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, key)
    }

    async fn call(app: &axum::Router, body: String) -> (StatusCode, Value) {
        let req = Request::post("/droits").header("content-type", "application/jose").body(Body::from(body)).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    fn request(kind: &str, who: &str) -> Value {
        json!({ "request_id": "DR-TEST-0001.cantine", "type": kind, "activity": "cantine",
                "subject_identity": { "type": "pseudonym", "value": who } })
    }

    #[tokio::test]
    async fn access_returns_the_pseudonyms_records_and_erasure_deletes_them() {
        let (url, key) = gateway().await;
        let app = super::super::router_with_rights(&url).unwrap();
        let form = r#"{"child_given_names":"gch1.a","child_family_name":"gch1.b","child_birth_date":"gch1.c",
            "school":"Jules-Ferry","parent_email":"gch1.d"}"#;
        for who in ["abc", "other"] {
            let req = Request::post("/api/inscriptions")
                .header("content-type", "application/json")
                .header("x-guichet-subject", who)
                .body(Body::from(form))
                .unwrap();
            assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::CREATED);
        }
        let sign = |v: Value| key.sign_typed(REQUEST_JWS_TYPE, &v).unwrap();

        let (status, answer) = call(&app, sign(request("access", "abc"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["status"], "completed");
        assert_eq!(answer["records"].as_array().unwrap().len(), 1, "only this pseudonym's: {answer}");
        assert_eq!(answer["records"][0]["fields"]["parent_email"], "gch1.d");

        let (_, erased) = call(&app, sign(request("erasure", "abc"))).await;
        assert_eq!(erased["records"]["deleted"], 1);
        let (_, after) = call(&app, sign(request("access", "abc"))).await;
        assert_eq!(after["records"], json!([]));
        let (_, other) = call(&app, sign(request("access", "other"))).await;
        assert_eq!(other["records"].as_array().unwrap().len(), 1);

        // Another key, or another kind of token from the right key: refused.
        let stranger = AssertionKey::generate().unwrap().sign_typed(REQUEST_JWS_TYPE, &request("erasure", "other"));
        assert_eq!(call(&app, stranger.unwrap()).await.0, StatusCode::UNAUTHORIZED);
        let assertion = key.sign(&request("erasure", "other")).unwrap();
        assert_eq!(call(&app, assertion).await.0, StatusCode::UNAUTHORIZED);
    }
}
