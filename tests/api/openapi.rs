//! The OpenAPI document (`docs/openapi.json`, served at `/.guichet/api/v1/openapi.json`) is
//! checked against the real gateway: every operation it documents is called as its
//! `x-guichet-caller` with its example (success), then without credentials, as the wrong
//! caller, with a body a cross-site form could send and with an unknown id (problems); each
//! answer's status must be documented and its body must match the documented schema. Every
//! path the source routes under `/.guichet/api/v1/` is documented, every documented one is
//! served, and methods not documented are refused (405). Adding an operation means adding it
//! to the document only (with the placeholders `$request` and `$code` it may use).

use guichet::rights::request::Status;
use serde_json::{Value, json};

use crate::auth::SESSION;
use crate::helpers::{Backend, test_keys};
use crate::on_both_stores;
use crate::rights_agent::{Parties, code_of, filed, parties_with};

const DOC: &str = include_str!("../../docs/openapi.json");
const PREFIX: &str = "/.guichet/api/v1/";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const REVEAL_TOKEN: &str = "courrier-0123456789abcdef";

fn doc() -> Value {
    serde_json::from_str(DOC).unwrap()
}

/// Validates `instance` against `schema`, whose `$ref`s point into the document's components.
fn check_schema(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let wrapped = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::options().should_validate_formats(true).build(&wrapped).unwrap();
    let errors: Vec<String> = validator.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{instance:#}");
}

/// Checks a real answer of an operation marked `x-guichet-checked-by` in the test it names:
/// `status` must be documented for `method path`, and `body` (as `media`) match its schema.
pub(crate) fn check_documented(method: &str, path: &str, status: u16, media: &str, body: &Value) {
    let doc = doc();
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not documented");
    let schema = &op["responses"][status.to_string()]["content"][media]["schema"];
    assert!(schema.is_object(), "{method} {path}: {status} with {media} is not documented");
    check_schema(&doc, schema, body, &format!("{method} {path} → {status}"));
}

/// Checks a real answer of an operation marked `x-guichet-checked-by`, in the test it names:
/// its status must be documented for `method path`, its media type too when the documented
/// answer has a body, and a JSON body must match the schema. The answer is handed back
/// unchanged for the test's own assertions.
pub(crate) async fn checked(method: &str, path: &str, r: reqwest::Response) -> reqwest::Response {
    let (status, headers) = (r.status(), r.headers().clone());
    let bytes = r.bytes().await.unwrap();
    let doc = doc();
    let documented = &doc["paths"][path][method]["responses"][status.as_str()];
    assert!(documented.is_object(), "{method} {path}: status {status} is not documented");
    let has_body = documented["content"].as_object().is_some_and(|c| !c.is_empty());
    if has_body {
        let ct = headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let media = ct.split(';').next().unwrap().trim().to_owned();
        let content = &documented["content"][&media];
        assert!(content.is_object(), "{method} {path}: {status} with {media} is not documented");
        if media.ends_with("json") {
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            check_schema(&doc, &content["schema"], &body, &format!("{method} {path} → {status}"));
        }
    }
    let mut back = axum::http::Response::builder().status(status);
    for (name, value) in &headers {
        back = back.header(name, value);
    }
    reqwest::Response::from(back.body(bytes).unwrap())
}

struct World {
    p: Parties,
    citizen: String,
    _keys: tempfile::TempDir,
}

async fn world(backend: Backend) -> World {
    let keys = tempfile::tempdir().unwrap();
    let keyring = test_keys(keys.path());
    let p = parties_with(backend, move |b| {
        b.with_policies(&[("cantine.toml", include_str!("../../policies/cantine.toml"))]).with(move |s, _| {
            let mut k = keyring;
            k.reveal_clients.push(guichet::config::RevealClient {
                name: "courrier".into(),
                token_sha256: guichet::consent::sha256_hex(REVEAL_TOKEN),
                activity: "cantine".into(),
                purposes: vec!["inscription".into()],
                fields: vec!["child_given_names".into()],
                per_minute: 1000,
            });
            s.keys = Some(k);
        })
    })
    .await;
    let citizen = crate::consent::citizen(&p.app, &p.citizens, "sub-angela").await;
    World { p, citizen, _keys: keys }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Caller {
    Citizen,
    Assisted,
    Handler,
    Reveal,
    Anyone,
    Nobody,
}

impl Caller {
    fn of(op: &Value) -> Self {
        match op["x-guichet-caller"].as_str() {
            Some("citizen") => Self::Citizen,
            Some("assisted") => Self::Assisted,
            Some("handler") => Self::Handler,
            Some("reveal") => Self::Reveal,
            Some("anyone") => Self::Anyone,
            other => panic!("unknown x-guichet-caller {other:?}"),
        }
    }

    /// Someone signed in who is not allowed: an agent for citizen calls, a citizen for agent calls.
    fn wrong(self) -> Option<Self> {
        match self {
            Self::Citizen => Some(Self::Handler),
            Self::Assisted | Self::Handler => Some(Self::Citizen),
            _ => None,
        }
    }
}

struct Call<'a> {
    method: &'a str,
    path: String,
    caller: Caller,
    content_type: &'a str,
    body: Option<String>,
}

async fn send(w: &World, c: &Call<'_>) -> reqwest::Response {
    let app = &w.p.app;
    let mut r = app.client.request(c.method.to_uppercase().parse().unwrap(), app.url(&c.path));
    r = match c.caller {
        Caller::Citizen => r.header("cookie", format!("{SESSION}={}", w.citizen)),
        Caller::Assisted => r.header("cookie", format!("{SESSION}={}", w.p.counter)),
        Caller::Handler => r.header("cookie", format!("{SESSION}={}", w.p.dpo)),
        Caller::Reveal => r.bearer_auth(REVEAL_TOKEN),
        Caller::Anyone | Caller::Nobody => r,
    };
    if let Some(b) = &c.body {
        r = r.header("content-type", c.content_type).body(b.clone());
    }
    r.send().await.unwrap()
}

/// Checks that the answer's status is documented for `op` and its body matches; the status.
async fn check_answer(doc: &Value, op: &Value, what: &str, r: reqwest::Response) -> u16 {
    let status = r.status().as_u16();
    let documented = &op["responses"][status.to_string()];
    assert!(documented.is_object(), "{what}: status {status} is not documented");
    let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let media = ct.split(';').next().unwrap().trim().to_owned();
    let schema = &documented["content"][&media]["schema"];
    assert!(schema.is_object(), "{what}: {status} with {media} is not documented");
    let body: Value = r.json().await.unwrap();
    check_schema(doc, schema, &body, &format!("{what} → {status}"));
    status
}

/// A fresh request of the citizen, brought to the status the operation needs (`x-guichet-given`).
async fn fresh_request(w: &World, op: &Value) -> String {
    let id = filed(&w.p, &w.citizen, "access").await;
    let rights = &w.p.app.state.rights;
    let by = guichet::rights::service::By {
        actor: guichet::audit::Actor::system(),
        role: guichet::audit::Ident::new("test").unwrap(),
    };
    match op["x-guichet-given"].as_str() {
        None | Some("received") => {}
        Some("in_progress") => drop(rights.advance(&id, Status::InProgress, None, &by).await.unwrap()),
        Some("paused") => drop(rights.pause(&id, &by).await.unwrap()),
        Some(other) => panic!("unknown x-guichet-given {other}"),
    }
    id
}

/// The example with its placeholders filled: a fresh request id, a fresh one-time code.
async fn fill(w: &World, text: &str, request: &str) -> String {
    let mut text = text.replace("$request", request);
    if text.contains("$code") {
        text = text.replace("$code", &code_of(&w.p.app, &w.citizen).await);
    }
    text
}

async fn every_documented_operation_answers_as_documented(backend: Backend) {
    let w = world(backend).await;
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let served: Value = w.p.app.get("/.guichet/api/v1/openapi.json").await.json().await.unwrap();
    assert_eq!(served, doc, "the served document is the committed one");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{} {path}", method.to_uppercase());
            // Operations whose example needs more than a filed request (an export's secret
            // link, an application's secret) name the test module that checks their answers.
            if op.get("x-guichet-checked-by").is_some() {
                continue;
            }
            let caller = Caller::of(op);
            let request = fresh_request(&w, op).await;
            let id_example = op["parameters"][0]["example"].as_str().unwrap_or("");
            let path_for = |id: &str| path.replace("{id}", id);
            let example = &op["requestBody"]["content"]["application/json"]["example"];
            let body = if example.is_null() { None } else { Some(fill(&w, &example.to_string(), &request).await) };
            let at = fill(&w, &path_for(id_example), &request).await;
            let call = |caller, path: String, content_type, body: Option<String>| Call {
                method: method.as_str(),
                path,
                caller,
                content_type,
                body,
            };

            // Success, as the documented caller with the example.
            let r = send(&w, &call(caller, at.clone(), "application/json", body.clone())).await;
            let status = check_answer(&doc, op, &what, r).await;
            assert!((200..300).contains(&status), "{what}: the example got {status}");
            if caller == Caller::Anyone {
                checked += 1;
                continue;
            }
            // Without credentials, and as the wrong kind of caller.
            let r = send(&w, &call(Caller::Nobody, at.clone(), "application/json", body.clone())).await;
            assert!(matches!(check_answer(&doc, op, &what, r).await, 401), "{what} without credentials");
            if let Some(wrong) = caller.wrong() {
                let r = send(&w, &call(wrong, at.clone(), "application/json", body.clone())).await;
                assert!(matches!(check_answer(&doc, op, &what, r).await, 401 | 403), "{what} as {wrong:?}");
            }
            // What a cross-site form can send (with a session cookie; bearer calls need no such care).
            if body.is_some() && caller != Caller::Reveal {
                let r = send(&w, &call(caller, at.clone(), "text/plain", body.clone())).await;
                assert_eq!(check_answer(&doc, op, &what, r).await, 400, "{what} with text/plain");
            }
            // An id that does not exist.
            if path.contains("{id}") {
                let fresh = fresh_request(&w, op).await;
                let body = match &body {
                    Some(_) => Some(fill(&w, &example.to_string(), &fresh).await),
                    None => None,
                };
                let r = send(&w, &call(caller, path_for("DR-0000-0000"), "application/json", body)).await;
                assert_eq!(check_answer(&doc, op, &what, r).await, 404, "{what} with an unknown id");
            }
            checked += 1;
        }
    }
    assert!(checked >= 15, "{checked} operations checked");
}

/// Path literals under the API prefix in the source (`"/.guichet/api/v1/…"`).
fn routed_paths() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("\"/.guichet/api/v1/").skip(1) {
                    out.push(format!("{PREFIX}{}", piece.split('"').next().unwrap()));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn every_routed_path_is_documented_and_no_other_method_is_served(backend: Backend) {
    let w = world(backend).await;
    let doc = doc();
    let paths = doc["paths"].as_object().unwrap();
    let routed = routed_paths();
    assert!(routed.len() >= 10, "{routed:?}");
    for p in &routed {
        assert!(paths.contains_key(p), "{p} is routed but not in docs/openapi.json");
    }
    for (path, item) in paths {
        assert!(routed.contains(path), "{path} is documented but routed nowhere");
        let at = path.replace("{id}", "DR-0000-0000").replace("{route}", "inconnue");
        for method in METHODS {
            let r =
                w.p.app
                    .client
                    .request(method.to_uppercase().parse().unwrap(), w.p.app.url(&at))
                    .header("cookie", format!("{SESSION}={}", w.p.dpo))
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap();
            let documented = item.get(method).is_some();
            assert_eq!(r.status() == 405, !documented, "{} {path}: {}", method.to_uppercase(), r.status());
        }
    }
}

on_both_stores!(
    every_documented_operation_answers_as_documented,
    every_routed_path_is_documented_and_no_other_method_is_served,
);
