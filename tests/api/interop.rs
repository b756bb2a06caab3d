//! Interoperability with a real, OpenID Certified provider: the `oidc-provider` npm package
//! configured like FranceConnect v2 and ProConnect (`tests/oidc-provider/server.mjs`), on
//! loopback. A cookie-keeping HTTP client plays the browser and follows every redirect, so
//! the whole flow (discovery, PKCE, code, ID token, signed userinfo, logout) is the provider's
//! real behaviour, once with ES256 and once with RS256 signatures.
//!
//! Reported as ignored, with the reason, when Node or `tests/oidc-provider/node_modules` is
//! missing (see build.rs).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use guichet::auth::jose::{self, JwkSet, PINNED_ALGS};
use guichet::clock::{Clock as _, SystemClock};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{TestApp, spawn_app};

/// Must match `tests/oidc-provider/server.mjs`.
const AGENT_CLIENT: &str = "guichet-test-agent-client";
/// The gateway's `server.public_url` in tests: redirects to it are sent to the test app.
const PUBLIC_HOST: &str = "127.0.0.1";

/// `node server.mjs` as a child process, killed when dropped.
struct OidcProvider {
    issuer: String,
    _child: Child,
    _stderr: tempfile::NamedTempFile,
}

impl OidcProvider {
    async fn start(alg: &str) -> Self {
        Self::start_with(alg, &[]).await
    }

    async fn start_with(alg: &str, extra: &[&str]) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider");
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("node")
            .args(["server.mjs", "--port", "0", "--alg", alg])
            .args(extra)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the interoperability test");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await;
        let line = match first {
            Ok(Ok(Some(l))) => l,
            other => panic!(
                "oidc-provider did not start ({other:?}):\n{}",
                std::fs::read_to_string(stderr.path()).unwrap_or_default()
            ),
        };
        let issuer = line.strip_prefix("ready ").expect("`ready <issuer>` on stdout").to_owned();
        Self { issuer, _child: child, _stderr: stderr }
    }
}

/// A browser: keeps cookies (by name, as browsers do across ports of one host) and follows
/// redirects by hand, sending those aimed at the gateway's public URL to the test app.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: Mutex<HashMap<String, String>>,
}

/// The last response of a walk and every URL visited.
struct Walk {
    status: u16,
    url: url::Url,
    body: String,
    visited: Vec<url::Url>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self { app, cookies: Mutex::new(HashMap::new()) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    fn keep_cookies(&self, r: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in r.headers().get_all("set-cookie") {
            let first = v.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = first.split_once('=').unwrap();
            let expired = v.to_str().unwrap().to_ascii_lowercase().contains("max-age=0")
                || v.to_str().unwrap().contains("expires=Thu, 01 Jan 1970");
            if value.is_empty() || expired {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    /// Where a URL really goes: the gateway's public origin means the test app.
    fn resolve(&self, mut u: url::Url) -> url::Url {
        if u.host_str() == Some(PUBLIC_HOST) && u.port().is_none() {
            u.set_port(Some(self.app.addr.port())).unwrap();
        }
        u
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Response {
        let r = req.header("accept", "text/html").header("cookie", self.cookie_header()).send().await.unwrap();
        self.keep_cookies(&r);
        r
    }

    /// Sends `first`, then follows redirects (GET) until a page that is not one.
    async fn walk(&self, first: reqwest::RequestBuilder, from: url::Url) -> Walk {
        let mut r = self.send(first).await;
        let mut url = from;
        let mut visited = vec![url.clone()];
        for _ in 0..20 {
            if !r.status().is_redirection() {
                let status = r.status().as_u16();
                return Walk { status, url, body: r.text().await.unwrap(), visited };
            }
            let location = r.headers()["location"].to_str().unwrap();
            url = self.resolve(url.join(location).unwrap());
            visited.push(url.clone());
            r = self.send(self.app.client.get(url.clone())).await;
        }
        panic!("too many redirects: {visited:?}");
    }

    /// Presses the logout button of our confirmation page `confirm` (a POST with its CSRF
    /// token) and follows the redirects.
    async fn press_logout(&self, confirm: &Walk) -> Walk {
        let csrf = form_value(&confirm.body, "csrf");
        let logout = url::Url::parse(&self.app.url("/.guichet/deconnexion")).unwrap();
        let post = self
            .app
            .client
            .post(logout.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={csrf}"));
        self.walk(post, logout).await
    }

    /// Opens the logout confirmation page and presses its button.
    async fn log_out(&self) -> Walk {
        let confirm = self.get("/.guichet/deconnexion").await;
        self.press_logout(&confirm).await
    }

    async fn get(&self, path: &str) -> Walk {
        let url = url::Url::parse(&self.app.url(path)).unwrap();
        self.walk(self.app.client.get(url.clone()), url).await
    }
}

/// A gateway trusting the real provider, its clock on real time (the provider's tokens
/// carry the real `iat`/`exp`).
async fn gateway(provider: &OidcProvider) -> TestApp {
    let issuer = provider.issuer.clone();
    let app = spawn_app()
        .with_citizen_provider(provider.issuer.clone())
        .with_agent_provider(provider.issuer.clone())
        .with(move |s, _| {
            let agent = s.auth.agent.as_mut().unwrap();
            agent.issuer = issuer;
            agent.client_id = AGENT_CLIENT.into();
            agent.scopes =
                ["openid", "given_name", "usual_name", "email", "uid", "siret", "idp_id"].map(String::from).to_vec();
        })
        .start()
        .await;
    app.clock.advance(SystemClock.now() - app.clock.now());
    app
}

fn query(u: &url::Url) -> HashMap<String, String> {
    u.query_pairs().into_owned().collect()
}

async fn citizen_signs_in_and_out(alg: &str) {
    let provider = OidcProvider::start(alg).await;
    let app = gateway(&provider).await;
    let browser = Browser::new(&app);

    // A protected page: sent to sign-in, through the provider, and back to the page.
    let w = browser.get("/prive/dossier").await;
    assert_eq!(w.status, 200, "sign-in must succeed; visited {:?}:\n{}", w.visited, w.body);
    assert_eq!(w.url.path(), "/prive/dossier");
    let authorize = w.visited.iter().find(|u| u.path().ends_with("/api/v2/authorize")).expect("went to the provider");
    let asked = query(authorize);
    assert_eq!(asked["acr_values"], "eidas1");
    assert_eq!(asked["code_challenge_method"], "S256", "discovery advertises PKCE, so it is used");
    assert_eq!(asked["state"].len(), 64);

    // The upstream got the per-route pseudonym, the allowed claims, a verifiable assertion.
    let h = app.upstream.last().headers;
    let subject = h["x-guichet-subject"].to_str().unwrap().to_owned();
    assert_eq!(subject.len(), 64);
    assert_eq!(h["x-guichet-claim-given-name"], "Angela Claire Louise");
    assert_eq!(h["x-guichet-claim-family-name"], "DUBOIS");
    assert_eq!(h["x-guichet-claim-birthdate"], "1962-08-24");
    assert!(h.get("x-guichet-claim-email").is_none(), "email is not allowed on this route");
    let jwks = app.get("/.guichet/jwks.json").await.bytes().await.unwrap();
    let assertion = h["x-guichet-assertion"].to_str().unwrap();
    let v = jose::verify(assertion, &JwkSet::parse(&jwks).unwrap(), PINNED_ALGS).unwrap();
    assert_eq!(v.claims["sub"], subject.as_str());
    assert_eq!(v.claims["acr"], "eidas1");
    assert_eq!(v.claims["claims"]["family_name"], "DUBOIS");

    // The account key is the provider's pairwise `sub`, never shown upstream.
    let session = browser.cookie("__Host-guichet-session").expect("a session cookie");
    let hash = guichet::auth::session::hash_id(&session);
    let row = app.state.store.sessions().get(&hash).await.unwrap().unwrap();
    assert_eq!(row.subject.len(), 64, "pairwise sub, FranceConnect-style");
    assert_ne!(row.subject, subject);
    assert!(!row.claims.contains("75107"), "claims are sealed at rest");
    let mut cookie = http::HeaderMap::new();
    cookie.insert("cookie", format!("__Host-guichet-session={session}").parse().unwrap());
    let opened = app.state.auth.identify(&cookie).await.unwrap().expect("the session opens with its cookie");
    assert_eq!(
        opened.claims.get("birthplace").map(String::as_str),
        Some("75107"),
        "birthplace came from the signed userinfo"
    );

    // A route asking eidas2: the gateway asks the provider again, which grants it.
    let w = browser.get("/fort").await;
    assert_eq!(w.status, 200, "visited {:?}:\n{}", w.visited, w.body);
    let again = w.visited.iter().find(|u| u.path().ends_with("/api/v2/authorize")).unwrap();
    assert_eq!(query(again)["acr_values"], "eidas2");
    let v = jose::verify(
        app.upstream.last().headers["x-guichet-assertion"].to_str().unwrap(),
        &JwkSet::parse(&jwks).unwrap(),
        PINNED_ALGS,
    )
    .unwrap();
    assert_eq!(v.claims["acr"], "eidas2");

    // Logout: our confirmation page (a GET ends nothing), its button posts with the CSRF
    // token; local session gone, the provider's confirmation, back with the right state.
    let session = browser.cookie("__Host-guichet-session").unwrap();
    let confirm = browser.get("/.guichet/deconnexion").await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(browser.cookie("__Host-guichet-session").is_some(), "a GET does not sign out");
    let w = browser.press_logout(&confirm).await;
    assert!(browser.cookie("__Host-guichet-session").is_none(), "the session cookie is cleared");
    assert_eq!(w.status, 200, "the provider asks to confirm: {}", w.body);
    let end = w.visited.iter().find(|u| u.path().ends_with("/api/v2/session/end")).expect("went to end_session");
    let sent = query(end);
    assert!(sent.contains_key("id_token_hint") && sent.contains_key("state"));
    let xsrf = form_value(&w.body, "xsrf");
    let confirm = w.url.join("/api/v2/session/end/confirm").unwrap();
    let post = app
        .client
        .post(confirm.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("xsrf={xsrf}&logout=yes"));
    let back = browser.walk(post, confirm).await;
    assert_eq!(back.url.path(), "/.guichet/oidc/logout-callback");
    assert_eq!(query(&back.url)["state"], sent["state"], "the provider returned our state");
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.body.contains("Vous êtes déconnecté"));
    let stale = app
        .client
        .get(app.url("/prive"))
        .header("accept", "text/html")
        .header("cookie", format!("__Host-guichet-session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 303, "the old session no longer works");
}

/// The `value` of the `<input name="NAME">` in an HTML form.
fn form_value(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).unwrap_or_else(|| panic!("no {name} field in:\n{html}"));
    let rest = &html[at..];
    let v = &rest[rest.find("value=\"").unwrap() + 7..];
    v[..v.find('"').unwrap()].to_owned()
}

async fn agent_signs_in(alg: &str) {
    let provider = OidcProvider::start(alg).await;
    let app = gateway(&provider).await;
    let browser = Browser::new(&app);
    let w = browser.get("/agents").await;
    assert_eq!(w.status, 200, "agent sign-in must succeed; visited {:?}:\n{}", w.visited, w.body);
    let h = app.upstream.last().headers;
    assert_eq!(h["x-guichet-claim-usual-name"], "LEROY");
    assert_eq!(h["x-guichet-claim-email"], "camille.leroy@mairie.example.fr");
    let jwks = app.get("/.guichet/jwks.json").await.bytes().await.unwrap();
    let v =
        jose::verify(h["x-guichet-assertion"].to_str().unwrap(), &JwkSet::parse(&jwks).unwrap(), PINNED_ALGS).unwrap();
    assert_eq!(v.claims["roles"], serde_json::json!(["etat-civil"]));
    assert_eq!(v.claims["guichet_kind"], "agent");
}

/// FranceConnect (eidas1) and FranceConnect+ (eidas2, eidas3) as two real providers with
/// their own issuers: an eidas1 route signs in at the first, a route needing eidas2 steps up
/// at the second, and logout goes to the one that signed the person in.
async fn citizen_steps_up_to_a_second_provider(alg: &str) {
    let (fc, fc_plus) = (OidcProvider::start(alg).await, OidcProvider::start(alg).await);
    let plus_issuer = fc_plus.issuer.clone();
    let app = spawn_app()
        .with_citizen_provider(fc.issuer.clone())
        .with(move |s, _| crate::auth::add_fc_plus(s, plus_issuer))
        .start()
        .await;
    app.clock.advance(SystemClock.now() - app.clock.now());
    let browser = Browser::new(&app);
    let authorize_at = |w: &Walk| w.visited.iter().find(|u| u.path().ends_with("/api/v2/authorize")).cloned().unwrap();

    let w = browser.get("/prive/dossier").await;
    assert_eq!(w.status, 200, "visited {:?}:\n{}", w.visited, w.body);
    let first = authorize_at(&w);
    assert!(fc.issuer.starts_with(&first.origin().ascii_serialization()), "eidas1 at FranceConnect: {first}");
    assert_eq!(query(&first)["acr_values"], "eidas1");

    let w = browser.get("/fort").await;
    assert_eq!(w.status, 200, "visited {:?}:\n{}", w.visited, w.body);
    let second = authorize_at(&w);
    assert!(fc_plus.issuer.starts_with(&second.origin().ascii_serialization()), "eidas2 at FranceConnect+: {second}");
    assert_eq!(query(&second)["acr_values"], "eidas2");
    let jwks = app.get("/.guichet/jwks.json").await.bytes().await.unwrap();
    let h = app.upstream.last().headers;
    let v =
        jose::verify(h["x-guichet-assertion"].to_str().unwrap(), &JwkSet::parse(&jwks).unwrap(), PINNED_ALGS).unwrap();
    assert_eq!(v.claims["acr"], "eidas2");
    let session = browser.cookie("__Host-guichet-session").unwrap();
    let row = app.state.store.sessions().get(&guichet::auth::session::hash_id(&session)).await.unwrap().unwrap();
    assert_eq!(row.issuer, fc_plus.issuer);

    let w = browser.log_out().await;
    let end = w.visited.iter().find(|u| u.path().ends_with("/api/v2/session/end")).expect("went to end_session");
    assert!(fc_plus.issuer.starts_with(&end.origin().ascii_serialization()), "logout at FranceConnect+: {end}");
}

/// FranceConnect+ encrypts ID tokens and userinfo to the relying party's key: the real
/// provider encrypts them (JWE, ECDH-ES with A256GCM) to the key the gateway publishes, and
/// the gateway decrypts, verifies the signed JWT inside and signs the citizen in with its
/// claims.
async fn citizen_signs_in_at_franceconnect_plus_with_encrypted_tokens(alg: &str) {
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("oidc-encryption-key.pem");
    let (key, _) = guichet::auth::jwe::DecryptionKey::load_or_generate(&key_path).unwrap();
    let fc = OidcProvider::start(alg).await;
    let fc_plus = OidcProvider::start_with(alg, &["--enc-jwk", &key.public_jwk().to_string()]).await;
    let plus_issuer = fc_plus.issuer.clone();
    let app = spawn_app()
        .with_citizen_provider(fc.issuer.clone())
        .with(move |s, _| {
            crate::auth::add_fc_plus(s, plus_issuer);
            s.auth.citizen_providers[0].encrypted_tokens = true;
            s.auth.encryption_key_file = Some(key_path);
        })
        .start()
        .await;
    app.clock.advance(SystemClock.now() - app.clock.now());
    let published: serde_json::Value = app.get("/.guichet/jwks.json").await.json().await.unwrap();
    let enc: Vec<_> = published["keys"].as_array().unwrap().iter().filter(|k| k["use"] == "enc").collect();
    assert_eq!(enc.len(), 1, "the encryption key is published: {published}");
    assert_eq!(enc[0]["kid"], key.kid());

    let browser = Browser::new(&app);
    let w = browser.get("/fort").await;
    assert_eq!(w.status, 200, "visited {:?}:\n{}", w.visited, w.body);
    let session = browser.cookie("__Host-guichet-session").expect("a session from the decrypted tokens");
    let row = app.state.store.sessions().get(&guichet::auth::session::hash_id(&session)).await.unwrap().unwrap();
    assert_eq!(row.issuer, fc_plus.issuer);
    assert_eq!(row.acr, "eidas2");
}

/// Runs one scenario once per signing algorithm the gateway pins.
macro_rules! per_alg {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            #[cfg_attr(
                not(guichet_oidc_provider_tests),
                ignore = "interop with oidc-provider: install Node and run `npm ci --prefix tests/oidc-provider`"
            )]
            async fn es256() {
                super::$name("ES256").await;
            }
            #[tokio::test]
            #[cfg_attr(
                not(guichet_oidc_provider_tests),
                ignore = "interop with oidc-provider: install Node and run `npm ci --prefix tests/oidc-provider`"
            )]
            async fn rs256() {
                super::$name("RS256").await;
            }
        }
    )*};
}

per_alg!(
    citizen_signs_in_and_out,
    agent_signs_in,
    citizen_steps_up_to_a_second_provider,
    citizen_signs_in_at_franceconnect_plus_with_encrypted_tokens,
);
