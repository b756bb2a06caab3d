//! Every class of spelling that real application stacks read as a declared or reserved name,
//! sent through the gateway to PHP's built-in server and to WSGI servers (`stacks`): the
//! gateway refuses it (nothing forwarded) or strips it, so no canary value reaches a bound
//! variable in clear and no client value reaches a variable named like a reserved header.
//! The same requests sent straight to the stack show that the classes are real: there, the
//! canary lands in the declared or reserved variable.

use reqwest::RequestBuilder;
use serde_json::Value;

use crate::stacks::{Behind, Kind, Stack, behind_gateway, strings};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

/// How a case is sent: extra headers, the query, and a body with its type.
struct Case {
    why: &'static str,
    headers: &'static [(&'static str, &'static str)],
    query: &'static str,
    body: Option<(&'static str, &'static str)>,
    /// What the gateway answers: refused (4xx, nothing forwarded) or forwarded with the
    /// look-alike removed.
    refused: bool,
    /// Where the canary lands, by JSON pointer into what the stack bound, when the request
    /// goes straight to it.
    lands: &'static [(Kind, &'static str)],
}

const fn case(why: &'static str, refused: bool) -> Case {
    Case { why, headers: &[], query: "", body: None, refused, lands: &[] }
}

use Kind::{Gunicorn, Php, Waitress, Wsgiref};

fn cases() -> Vec<Case> {
    let all = |p: &'static str| -> &'static [(Kind, &'static str)] {
        Box::leak(Box::new([(Php, p), (Waitress, p), (Gunicorn, p), (Wsgiref, p)]))
    };
    vec![
        // Reserved headers spelled with `_` or `.`: CGI keys `HTTP_X_GUICHET_*`.
        Case {
            headers: &[("X_Guichet_Subject", "CANARI-sub")],
            lands: &[
                (Php, "/server/HTTP_X_GUICHET_SUBJECT"),
                (Gunicorn, "/server/HTTP_X_GUICHET_SUBJECT"),
                (Wsgiref, "/server/HTTP_X_GUICHET_SUBJECT"),
            ],
            ..case("a reserved header with `_`", false)
        },
        Case {
            headers: &[("x-guichet_purpose", "CANARI-purpose")],
            lands: &[(Php, "/server/HTTP_X_GUICHET_PURPOSE")],
            ..case("the purpose header with one `_`", false)
        },
        Case {
            headers: &[("X.Guichet.Assertion", "CANARI-assertion")],
            lands: &[(Php, "/server/HTTP_X_GUICHET_ASSERTION")],
            ..case("a reserved header with `.` (PHP's mangling)", false)
        },
        Case {
            headers: &[("X_Forwarded_For", "CANARI-ip")],
            lands: &[(Php, "/server/HTTP_X_FORWARDED_FOR"), (Wsgiref, "/server/HTTP_X_FORWARDED_FOR")],
            ..case("a forwarding header with `_` from an untrusted peer", false)
        },
        // A declared header under another spelling, or twice.
        Case {
            headers: &[("X_Numero_Allocataire", "CANARI-h1")],
            lands: &[
                (Php, "/server/HTTP_X_NUMERO_ALLOCATAIRE"),
                (Gunicorn, "/server/HTTP_X_NUMERO_ALLOCATAIRE"),
                (Wsgiref, "/server/HTTP_X_NUMERO_ALLOCATAIRE"),
            ],
            ..case("a declared header with `_`", true)
        },
        Case {
            headers: &[("x.numero.allocataire", "CANARI-h2")],
            lands: &[(Php, "/server/HTTP_X_NUMERO_ALLOCATAIRE")],
            ..case("a declared header with `.`", true)
        },
        Case {
            headers: &[("x-numero-allocataire", "CANARI-h3"), ("x-numero-allocataire", "CANARI-h4")],
            ..case("a declared header twice", true)
        },
        // Query and form names that stacks bind to a declared field.
        Case { query: "NOM=CANARI-q1", ..case("a declared name in capitals", true) },
        Case {
            query: "nom%5B%5D=CANARI-q2",
            lands: &[(Php, "/get/nom/0")],
            ..case("a declared name as a PHP array", true)
        },
        Case { query: "+nom=CANARI-q3", lands: &[(Php, "/get/nom")], ..case("a leading space (`+`)", true) },
        Case { query: "nom%00x=CANARI-q4", lands: &[(Php, "/get/nom")], ..case("a NUL in the name", true) },
        Case { query: "date.naissance=CANARI-q5", lands: &[(Php, "/get/date_naissance")], ..case("`.` for `_`", true) },
        Case {
            query: "date%20naissance=CANARI-q6",
            lands: &[(Php, "/get/date_naissance")],
            ..case("a space for `_`", true)
        },
        Case {
            query: "date%5Bnaissance=CANARI-q7",
            lands: &[(Php, "/get/date_naissance")],
            ..case("`[` without `]`", true)
        },
        Case { query: "_nom=CANARI-q8", ..case("Spring's `_` marker", true) },
        Case { query: "!nom=CANARI-q9", ..case("Spring's `!` default", true) },
        Case { query: "dossier.nom=CANARI-q10", ..case("ASP.NET's model prefix", true) },
        Case { query: "inscription.courriel=CANARI-q11", ..case("a bracket path written with dots", true) },
        Case {
            query: "inscription%5Bcourriel%5D%5B%5D=CANARI-q12",
            lands: &[(Php, "/get/inscription/courriel/0")],
            ..case("inside a declared bracket path", true)
        },
        Case {
            body: Some((FORM, "date.naissance=CANARI-f1")),
            lands: &[(Php, "/post/date_naissance")],
            ..case("a form name PHP mangles to a declared one", true)
        },
        Case { body: Some((FORM, "Nom=CANARI-f2")), ..case("a form name in another case", true) },
        Case {
            body: Some((FORM, "nom%5Bx%5D=CANARI-f3")),
            lands: &[(Php, "/post/nom/x")],
            ..case("a form name as a PHP hash", true)
        },
        Case {
            query: "prenom_enfant=controle",
            ..case("a JSON-only field by pointer is not a query name (control: passes)", false)
        },
        // JSON: members in another case or form, objects where `*` declares an array.
        Case { body: Some((JSON, r#"{"NOM": "CANARI-j1"}"#)), ..case("a JSON member in capitals", true) },
        Case {
            body: Some((JSON, r#"{"ｎｏｍ": "CANARI-j2"}"#)), ..case("a JSON member in fullwidth letters", true)
        },
        Case {
            body: Some((JSON, r#"{"enfants": {"0": {"prenom": "CANARI-j3"}}}"#)),
            lands: all("/json/enfants/0/prenom"),
            ..case("an index-keyed object where `*` declares an array", true)
        },
        Case {
            body: Some((JSON, r#"{"enfants": {"x": {"prenom": "CANARI-j4"}}}"#)),
            ..case("any object where `*` declares an array", true)
        },
    ]
}

fn request(client: &reqwest::Client, base: &str, c: &Case) -> RequestBuilder {
    let url = if c.query.is_empty() { format!("{base}/dossier/x") } else { format!("{base}/dossier/x?{}", c.query) };
    let mut r = match c.body {
        Some((ct, body)) => client.post(url).header("content-type", ct).body(body),
        None => client.get(url),
    };
    for (k, v) in c.headers {
        r = r.header(*k, *v);
    }
    r
}

async fn no_spelling_reaches_the_application_in_clear(kind: Kind) {
    let behind: Behind = behind_gateway(kind).await;
    let (app, stack) = (&behind.app, &behind.stack);
    let base = format!("http://{}", app.addr);
    for c in cases() {
        let before = stack.bound().len();
        let r = request(&app.client, &base, &c).send().await.unwrap();
        let status = r.status();
        if c.refused {
            assert!(status.is_client_error(), "{kind:?}, {}: {status}", c.why);
            let problem: Value = r.json().await.unwrap();
            assert!(problem["type"].as_str().unwrap().starts_with("urn:guichet:problem:"), "{problem}");
            assert_eq!(stack.bound().len(), before, "{kind:?}, {}: nothing forwarded", c.why);
        } else {
            assert_eq!(status, 200, "{kind:?}, {}", c.why);
            assert_eq!(stack.bound().len(), before + 1, "{kind:?}, {}: forwarded", c.why);
        }
    }
    let bound = stack.bound();
    assert!(!bound.is_empty(), "the forwarded cases reached the stack");
    for b in &bound {
        assert!(strings(b).iter().all(|s| !s.contains("CANARI")), "{kind:?} bound a canary: {b}");
        let reserved = b["server"].as_object().unwrap().keys().filter(|k| k.starts_with("HTTP_X_GUICHET")).count();
        let purpose = b["server"]["HTTP_X_GUICHET_PURPOSE"].as_str();
        // Only the gateway's own purpose header, on these anonymous requests.
        assert!(reserved <= 1 && purpose.is_none_or(|p| p == "dossier/dossier"), "{kind:?}: {b}");
    }
    straight_to_the_stack_the_canaries_land(stack).await;
}

/// The control: without the gateway, each case's canary lands where the case says.
async fn straight_to_the_stack_the_canaries_land(stack: &Stack) {
    let client = reqwest::Client::new();
    let base = format!("http://{}", stack.addr);
    for c in cases() {
        let r = request(&client, &base, &c).send().await.unwrap();
        assert_eq!(r.status(), 200, "{:?}, {}", stack.kind, c.why);
        let bound = stack.bound();
        let last = bound.last().unwrap();
        for (_, pointer) in c.lands.iter().filter(|(k, _)| *k == stack.kind) {
            let there = last.pointer(pointer).map(|v| v.to_string()).unwrap_or_default();
            assert!(there.contains("CANARI"), "{:?}, {}: {pointer} holds {there:?} in {last}", stack.kind, c.why);
        }
    }
}

#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn no_spelling_reaches_php_in_clear() {
    no_spelling_reaches_the_application_in_clear(Kind::Php).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_waitress_tests), ignore = "real-stack test: install python3-waitress (Debian) to run it")]
async fn no_spelling_reaches_waitress_in_clear() {
    no_spelling_reaches_the_application_in_clear(Kind::Waitress).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_gunicorn_tests), ignore = "real-stack test: install gunicorn (Debian) to run it")]
async fn no_spelling_reaches_gunicorn_in_clear() {
    no_spelling_reaches_the_application_in_clear(Kind::Gunicorn).await;
}

#[tokio::test]
#[cfg_attr(not(guichet_wsgiref_tests), ignore = "real-stack test: needs /usr/bin/python3 (Debian python3)")]
async fn no_spelling_reaches_wsgiref_in_clear() {
    no_spelling_reaches_the_application_in_clear(Kind::Wsgiref).await;
}
