//! Paths as applications read them (docs/proxy.md, "How the gateway reads names and paths"):
//! every spelling of a claimed path is either matched to the claiming activity (its fields
//! reach the application as tokens) or refused with nothing forwarded — never passed in clear
//! through the `no_personal_data` route beside it. Return paths after sign-in never lead
//! into the gateway's own pages or off the site.

use guichet::config::RouteAccess;

use crate::auth::{SESSION, cookie, sign_in_at};
use crate::fields::Recorder;
use crate::helpers::{TestApp, route, spawn_app};
use crate::oidc_mock::MockProvider;

const CANTINE: &str = include_str!("../../policies/cantine.toml");
const CANARY: &str = "CanaryLea";

struct Setup {
    app: TestApp,
    mock: MockProvider,
    recorder: Recorder,
    session: String,
}

/// The cantine activity claims `/cantine/*` (its own route) and `/inscriptions` (GET, POST)
/// on a catch-all route declared without personal data; the recorder is behind both; a
/// citizen is signed in.
async fn setup() -> Setup {
    let mock = MockProvider::start().await;
    let recorder = Recorder::default();
    let up = format!("http://{}", recorder.start().await);
    let policy = CANTINE.replace("path = \"/api/inscriptions\"", "path = \"/inscriptions\"");
    let keys = tempfile::tempdir().unwrap();
    let keyring = crate::helpers::test_keys(keys.path());
    let app = spawn_app()
        .without_default_route()
        .with_citizen_provider(mock.issuer())
        .with_policies(&[("cantine.toml", &policy)])
        .with(move |s, _| {
            let mut cantine = route("cantine", "/cantine", &up);
            cantine.access = RouteAccess::Public;
            cantine.no_personal_data = false;
            s.routes.extend([cantine, route("accueil", "/", &up)]);
            s.keys = Some(keyring);
        })
        .start()
        .await;
    // The keyring's directory must outlive the gateway: leak it for the test's duration.
    std::mem::forget(keys);
    let r = sign_in_at(&app, &mock, "/.guichet/connexion?retour=/prive", "sub-angela").await;
    let session = cookie(&r, SESSION).expect("session cookie");
    Setup { app, mock, recorder, session }
}

/// Sends `method raw_path` with the canary in a declared form field, byte for byte (clients
/// and URL libraries would normalise the path first). Returns the status and the response.
async fn send(s: &Setup, method: &str, raw_path: &str) -> (u16, String) {
    let body = format!("child_given_names={CANARY}&school=Jules+Ferry");
    let request = format!(
        "{method} {raw_path} HTTP/1.1\r\nHost: mairie.example.fr\r\nCookie: {SESSION}={}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.session,
        body.len()
    );
    let answer = s.app.raw(request.as_bytes()).await;
    let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, answer)
}

/// What became of one spelling: protected (forwarded with the field as a token, on this
/// path) or refused (nothing forwarded).
#[derive(Debug, PartialEq)]
enum Outcome {
    Protected(String),
    Refused(u16),
}

async fn outcome(s: &Setup, method: &str, raw_path: &str) -> Outcome {
    let before = s.recorder.hits();
    let (status, answer) = send(s, method, raw_path).await;
    let after = s.recorder.hits();
    if (200..300).contains(&status) {
        assert_eq!(after, before + 1, "{raw_path}: forwarded once");
        let (path, body) = s.recorder.last();
        assert!(
            body.contains("gch2.") && !body.contains(CANARY),
            "{raw_path} reached the application in clear: {body}"
        );
        Outcome::Protected(path)
    } else {
        assert_eq!(after, before, "{raw_path}: refused with {status} but forwarded: {answer}");
        assert!(answer.contains("application/problem+json"), "{raw_path}: the gateway's own refusal: {answer}");
        Outcome::Refused(status)
    }
}

#[tokio::test]
async fn every_spelling_of_a_claimed_path_is_protected_or_refused() {
    let s = setup().await;
    // The harness can see a canary in clear: the catch-all route forwards unclaimed bodies as they are.
    let (status, _) = send(&s, "POST", "/autre-chose").await;
    assert_eq!(status, 200);
    assert!(s.recorder.last().1.contains(CANARY), "the public route forwards unclaimed bodies untouched");
    let before_spellings = s.recorder.hits();

    let protected = |p: &str| Outcome::Protected(p.to_owned());
    let cases: &[(&str, Outcome)] = &[
        ("/cantine/inscription", protected("/cantine/inscription")),
        // Decoded unreserved letters, repeated slashes: the application gets the canonical path.
        ("/cantine/%69nscription", protected("/cantine/inscription")),
        ("/%63antine/inscription", protected("/cantine/inscription")),
        ("//cantine//inscription", protected("/cantine/inscription")),
        ("/inscription%73", protected("/inscriptions")),
        ("/%69nscriptions/", protected("/inscriptions/")),
        // Another letter case: matched like the declared path, forwarded as sent.
        ("/CANTINE/inscription", protected("/CANTINE/inscription")),
        ("/Inscriptions", protected("/Inscriptions")),
        // Dot segments in any spelling.
        ("/cantine/./inscription", Outcome::Refused(400)),
        ("/x/../cantine/inscription", Outcome::Refused(400)),
        ("/x/%2e%2E/cantine/inscription", Outcome::Refused(400)),
        ("/x/..;/cantine/inscription", Outcome::Refused(400)),
        ("/x/..%2Fcantine/inscription", Outcome::Refused(400)),
        ("/x/..%5Ccantine/inscription", Outcome::Refused(400)),
        // `;` parameters (Tomcat and Spring drop them).
        ("/cantine;x=1/inscription", Outcome::Refused(400)),
        ("/cantine/inscription;jsessionid=1", Outcome::Refused(400)),
        ("/inscriptions;v=2", Outcome::Refused(400)),
        // Encoded separators, backslashes, encoded percent, NUL.
        ("/cantine%2Finscription", Outcome::Refused(400)),
        ("/cantine%5Cinscription", Outcome::Refused(400)),
        ("/cantine/%2569nscription", Outcome::Refused(400)),
        ("/inscription%2573", Outcome::Refused(400)),
        ("/cantine/inscription%00", Outcome::Refused(400)),
        // Trailing dots and spaces (Windows).
        ("/cantine/inscription.", Outcome::Refused(400)),
        ("/inscriptions%20", Outcome::Refused(400)),
        ("/inscriptions.", Outcome::Refused(400)),
        // Extensions (Rails formats) and scripts (PHP's PATH_INFO).
        ("/inscriptions.json", Outcome::Refused(400)),
        ("/index.php/inscriptions", Outcome::Refused(400)),
        ("/index.php/cantine/inscription", Outcome::Refused(400)),
        // A method no rule lists.
        ("/inscriptions", Outcome::Refused(405)),
    ];
    for (raw, want) in cases {
        let method = if *want == Outcome::Refused(405) { "PUT" } else { "POST" };
        assert_eq!(&outcome(&s, method, raw).await, want, "{method} {raw}");
    }
    assert!(s.recorder.hits() > before_spellings, "the protected spellings were forwarded");
}

#[tokio::test]
async fn a_backslash_is_never_read_as_a_separator_of_a_claimed_path() {
    let s = setup().await;
    for raw in ["/cantine\\inscription", "/x\\..\\cantine\\inscription", "/inscriptions\\"] {
        let o = outcome(&s, "POST", raw).await;
        assert_eq!(o, Outcome::Refused(400), "{raw}");
    }
}

#[tokio::test]
async fn an_unlisted_method_on_a_claimed_path_gets_405_with_allow() {
    let s = setup().await;
    for (method, raw) in [("PUT", "/inscriptions"), ("DELETE", "/INSCRIPTIONS/"), ("PATCH", "/%69nscriptions")] {
        let before = s.recorder.hits();
        let (status, answer) = send(&s, method, raw).await;
        assert_eq!(status, 405, "{method} {raw}: {answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("allow: get, head, post"), "{answer}");
        assert!(lower.contains("application/problem+json") && answer.contains("method-not-allowed"), "{answer}");
        assert_eq!(s.recorder.hits(), before, "nothing forwarded");
    }
    // HEAD is answered like the GET the rule lists.
    let r = s.app.client.head(s.app.url("/inscriptions")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn sign_in_comes_back_only_to_same_origin_paths_outside_the_gateways_pages() {
    let s = setup().await;
    let cases = [
        ("/a/../.guichet/deconnexion", "/"),
        ("/%2e%2e/.guichet/x", "/"),
        ("/a/%2E%2E/.guichet/deconnexion", "/"),
        ("/a/..%2F.guichet/deconnexion", "/"),
        ("/a/..;/.guichet/deconnexion", "/"),
        ("/.GUICHET/deconnexion", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example/x", "/"),
        ("/%5Cevil.example", "/"),
        ("/%2F%2Fevil.example", "/"),
        ("https://evil.example/", "/"),
        ("/cantine/./x/../inscription?y=1", "/cantine/inscription?y=1"),
        ("/%63antine//inscription", "/cantine/inscription"),
    ];
    for (retour, want) in cases {
        let q: String = url::form_urlencoded::byte_serialize(retour.as_bytes()).collect();
        let r = sign_in_at(&s.app, &s.mock, &format!("/.guichet/connexion?retour={q}"), "sub-angela").await;
        assert_eq!(r.status(), 303, "{retour}");
        assert_eq!(r.headers()["location"], want, "{retour}");
    }
}

#[tokio::test]
async fn the_consent_page_returns_only_to_safe_paths() {
    let s = setup().await;
    for (retour, shown) in [("/a/../.guichet/deconnexion", false), ("/cantine/./x/../inscription", true)] {
        let q: String = url::form_urlencoded::byte_serialize(retour.as_bytes()).collect();
        let page = s
            .app
            .client
            .get(s.app.url(&format!("/.guichet/consentement/?retour={q}")))
            .header("cookie", format!("{SESSION}={}", s.session))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // The header's sign-out is on every page: the return link and field must not be it.
        assert!(!page.contains("value=\"/.guichet/deconnexion") && !page.contains("/a/../"), "{retour}: {page}");
        assert_eq!(page.contains("Revenir au service"), shown, "{retour}");
        assert_eq!(page.contains("/cantine/inscription"), shown, "{retour}");
    }
}

#[tokio::test]
async fn a_sign_in_asked_on_a_spelled_path_comes_back_to_its_canonical_form() {
    let s = setup().await;
    let r = s.app.client.get(s.app.url("/prive/%64ossier?x=1")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.contains("retour=%2Fprive%2Fdossier%3Fx%3D1"), "{location}");
}

/// Real stacks: the application behind the gateway (tests/stacks, see `stacks`) binds every
/// request it receives, whatever its path; a catch-all route declared without personal data
/// sends it everything the `dossier` activity does not claim. No spelling of the claimed
/// `/dossier/depot` may make it bind the canary in clear.
mod real_stacks {
    use super::*;
    use crate::stacks::{DOSSIER, Kind, Stack, strings};

    async fn behind(kind: Kind) -> (TestApp, Stack, tempfile::TempDir) {
        let stack = Stack::start(kind).await;
        let keys = tempfile::tempdir().unwrap();
        let keyring = crate::helpers::test_keys(keys.path());
        let up = format!("http://{}", stack.addr);
        let app = spawn_app()
            .without_default_route()
            .with_policies(&[("dossier.toml", DOSSIER)])
            .with(move |s, _| {
                s.routes.push(route("accueil", "/", &up));
                s.keys = Some(keyring);
            })
            .start()
            .await;
        (app, stack, keys)
    }

    /// Sends the canary in the declared `nom`, in the query and the form, on `raw_path` as
    /// written; returns the status.
    async fn send(app: &TestApp, raw_path: &str) -> u16 {
        let body = "nom=CANARI-F&commentaire=en+clair";
        let request = format!(
            "POST {raw_path}?nom=CANARI-Q HTTP/1.1\r\nHost: mairie.example.fr\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = app.raw(request.as_bytes()).await;
        answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    async fn no_spelling_of_a_claimed_path_binds_the_canary(kind: Kind) {
        let (app, stack, _keys) = behind(kind).await;
        // The harness sees clear values: an unclaimed path binds the canary as sent.
        assert_eq!(send(&app, "/ailleurs").await, 200);
        let seen = stack.bound();
        assert!(strings(&seen[0]).iter().any(|s| s.contains("CANARI-F")), "{kind:?} bound {seen:?}");

        let spellings = [
            ("/dossier/depot", true),
            ("/%64ossier/depot", true),
            ("//dossier//depot", true),
            ("/DOSSIER/Depot", true),
            ("/dossier/depot.json", true),
            ("/x/../dossier/depot", false),
            ("/x/%2e%2e/dossier/depot", false),
            ("/x/..;/dossier/depot", false),
            ("/x%2F..%2Fdossier/depot", false),
            ("/dossier;x=1/depot", false),
            ("/dossier/depot;jsessionid=1", false),
            ("/dossier%2Fdepot", false),
            ("/dossier%5Cdepot", false),
            ("/dossier/%2564epot", false),
            ("/index.php/dossier/depot", false),
            ("/dossier/depot.", false),
            ("/dossier/depot%20", false),
            ("/dossier/depot%00", false),
        ];
        for (raw, forwarded) in spellings {
            let before = stack.bound().len();
            let status = send(&app, raw).await;
            let bound = stack.bound();
            let new = bound.get(before..).unwrap_or_default();
            if forwarded {
                assert_eq!(status, 200, "{kind:?} {raw}");
                assert_eq!(new.len(), 1, "{kind:?} {raw}: {new:?}");
                assert!(new[0]["post"]["nom"].to_string().contains("gchp1."), "{kind:?} {raw}: {}", new[0]);
            } else {
                assert_eq!(status, 400, "{kind:?} {raw}");
                assert!(new.is_empty(), "{kind:?} {raw}: refused but the application bound {new:?}");
            }
            for b in new {
                assert!(strings(b).iter().all(|s| !s.contains("CANARI")), "{kind:?} {raw} bound the canary: {b}");
            }
        }
    }

    #[tokio::test]
    #[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
    async fn php_never_binds_the_canary_for_any_spelling_of_a_claimed_path() {
        no_spelling_of_a_claimed_path_binds_the_canary(Kind::Php).await;
    }

    #[tokio::test]
    #[cfg_attr(not(guichet_waitress_tests), ignore = "real-stack test: install python3-waitress (Debian) to run it")]
    async fn waitress_never_binds_the_canary_for_any_spelling_of_a_claimed_path() {
        no_spelling_of_a_claimed_path_binds_the_canary(Kind::Waitress).await;
    }

    #[tokio::test]
    #[cfg_attr(not(guichet_gunicorn_tests), ignore = "real-stack test: install gunicorn (Debian) to run it")]
    async fn gunicorn_never_binds_the_canary_for_any_spelling_of_a_claimed_path() {
        no_spelling_of_a_claimed_path_binds_the_canary(Kind::Gunicorn).await;
    }

    #[tokio::test]
    #[cfg_attr(not(guichet_wsgiref_tests), ignore = "real-stack test: needs /usr/bin/python3 (Debian python3)")]
    async fn wsgiref_never_binds_the_canary_for_any_spelling_of_a_claimed_path() {
        no_spelling_of_a_claimed_path_binds_the_canary(Kind::Wsgiref).await;
    }
}
