//! Issue 17 (privacy by default): what applications receive is what their activity declares.
//! Client addresses per route (none, truncated, full), strict mode (undeclared members refused
//! before anything is forwarded), claims and addresses tied to data categories in `guichet
//! check`, one key per use (receipts, assertions, CSRF), HTTPS hygiene (HSTS, the redirect
//! listener, no session tickets, pinned groups checked with `openssl s_client`), and the
//! gateway's own processing in the register.

use std::process::Stdio;

use guichet::auth::jose::{self, JwkSet, PINNED_ALGS};
use guichet::config::{ClientAddress, TlsSettings};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;

use crate::helpers::{TestApp, free_port, route, spawn_app};
use crate::stacks::{Behind, DOSSIER, Kind, Stack, behind_gateway_with, server_var, strings};
use crate::tls::{TestCert, test_cert};

// --- 1. Client addresses -------------------------------------------------------------------

async fn app_sending(mode: Option<ClientAddress>) -> TestApp {
    spawn_app()
        .with(move |s, _| {
            if let Some(m) = mode {
                s.routes[0].client_address = m;
            }
        })
        .start()
        .await
}

/// What the application learnt of the client's address, for a request claiming to come
/// through a proxy the gateway does not trust.
async fn forwarding_seen(app: &TestApp) -> (Option<String>, String) {
    let r = app
        .client
        .get(app.url("/echo"))
        .header("x-forwarded-for", "203.0.113.66")
        .header("forwarded", "for=203.0.113.66")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = app.upstream.last().headers;
    let xff = h.get("x-forwarded-for").map(|v| v.to_str().unwrap().to_owned());
    (xff, h["forwarded"].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_route_sends_no_address_by_default_the_network_when_truncated_and_all_when_full() {
    let (xff, fwd) = forwarding_seen(&app_sending(None).await).await;
    assert_eq!(xff, None, "no address by default");
    assert!(!fwd.contains("for=") && fwd.starts_with("proto=http;host="), "{fwd}");

    let (xff, fwd) = forwarding_seen(&app_sending(Some(ClientAddress::Truncated)).await).await;
    assert_eq!(xff.as_deref(), Some("127.0.0.0"));
    assert!(fwd.starts_with("for=127.0.0.0;proto=http"), "{fwd}");

    let (xff, fwd) = forwarding_seen(&app_sending(Some(ClientAddress::Full)).await).await;
    assert_eq!(xff.as_deref(), Some("127.0.0.1"));
    assert!(fwd.starts_with("for=127.0.0.1;"), "{fwd}");
    assert!(!xff.unwrap_or_default().contains("203.0.113.66") && !fwd.contains("203.0.113.66"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_only_a_full_route_keeps_the_chain() {
    let trusted = |mode: ClientAddress| {
        spawn_app().with(move |s, _| {
            s.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            s.routes[0].client_address = mode;
        })
    };
    for (mode, xff, fwd) in [
        (ClientAddress::None, None, "proto=https;host=mairie.example.fr"),
        (ClientAddress::Truncated, Some("198.51.100.0"), "for=198.51.100.0;proto=https;host=mairie.example.fr"),
    ] {
        let app = trusted(mode).start().await;
        app.client
            .get(app.url("/echo"))
            .header("x-forwarded-for", "198.51.100.23")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "mairie.example.fr")
            .header("forwarded", "for=198.51.100.23;proto=https")
            .send()
            .await
            .unwrap();
        let h = app.upstream.last().headers;
        assert_eq!(h.get("x-forwarded-for").map(|v| v.to_str().unwrap()), xff, "{mode:?}");
        assert_eq!(h["forwarded"], fwd, "{mode:?}");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}

/// PHP reads `$_SERVER['HTTP_X_FORWARDED_FOR']` and `HTTP_FORWARDED`: what it bound, per mode.
#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn php_binds_no_truncated_or_full_address_as_the_route_says() {
    for (mode, xff, for_) in [
        (ClientAddress::None, None, None),
        (ClientAddress::Truncated, Some("127.0.0.0"), Some("for=127.0.0.0;")),
        (ClientAddress::Full, Some("127.0.0.1"), Some("for=127.0.0.1;")),
    ] {
        let stack = Stack::start(Kind::Php).await;
        let up = format!("http://{}", stack.addr);
        let app = spawn_app()
            .without_default_route()
            .with(move |s, _| {
                let mut r = route("stack", "/", &up);
                r.client_address = mode;
                s.routes.push(r);
            })
            .start()
            .await;
        let r = app.client.get(app.url("/page")).header("x-forwarded-for", "203.0.113.66").send().await.unwrap();
        assert_eq!(r.status(), 200);
        let bound = stack.bound();
        let got = server_var(&bound, "HTTP_X_FORWARDED_FOR");
        assert_eq!(got.first().map(String::as_str), xff, "{mode:?}: {bound:?}");
        let fwd = server_var(&bound, "HTTP_FORWARDED");
        assert_eq!(fwd.len(), 1, "{bound:?}");
        match for_ {
            Some(f) => assert!(fwd[0].starts_with(f), "{mode:?}: {fwd:?}"),
            None => assert!(!fwd[0].contains("for="), "{mode:?}: {fwd:?}"),
        }
        assert!(strings(&bound[0]).iter().all(|s| !s.contains("203.0.113.66")), "{bound:?}");
    }
}

// --- 2. Strict mode ------------------------------------------------------------------------

fn strict_dossier() -> String {
    let strict = DOSSIER.replacen("\n[controller]", "\nstrict = true\n\n[controller]", 1);
    assert_ne!(strict, DOSSIER);
    strict
}

async fn refused_names(r: reqwest::Response) -> Vec<String> {
    assert_eq!(r.status(), 422);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["type"], "urn:guichet:problem:undeclared-members");
    assert!(!p.to_string().contains("CANARI"), "values are never echoed: {p}");
    serde_json::from_value(p["undeclared"].clone()).unwrap()
}

#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn strict_mode_refuses_undeclared_members_before_anything_reaches_php() {
    let Behind { app, stack, .. } = behind_gateway_with(Kind::Php, &strict_dossier()).await;
    let form = |q: &str, body: &'static str| {
        app.client
            .post(app.url(&format!("/dossier/depot{q}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = form("", "nom=CANARI-1&commentaire=CANARI-2&religion=CANARI-3").await.unwrap();
    assert_eq!(refused_names(r).await, ["commentaire", "religion"]);
    let r = form("?ville=CANARI-4", "nom=CANARI-5").await.unwrap();
    assert_eq!(refused_names(r).await, ["ville"]);
    let json = json!({ "enfants": [{ "prenom": "CANARI-6", "allergie": "CANARI-7" }], "nom": "CANARI-8" });
    let r = app.client.post(app.url("/dossier/depot")).json(&json).send().await.unwrap();
    assert_eq!(refused_names(r).await, ["/enfants/*/allergie"]);
    assert!(stack.bound().is_empty(), "nothing reached the application: {:?}", stack.bound());

    // Declared members only (pass fields too): forwarded, protected.
    let r = form("?nom=CANARI-9", "nom=CANARI-10&inscription%5Bcourriel%5D=CANARI-11").await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let json = json!({ "enfants": [{ "prenom": "CANARI-12" }] });
    let r = app.client.post(app.url("/dossier/depot")).json(&json).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let bound = stack.bound();
    assert_eq!(bound.len(), 2, "{bound:?}");
    assert!(bound.iter().all(|b| strings(b).iter().all(|s| !s.contains("CANARI"))), "{bound:?}");
}

#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn without_strict_mode_an_undeclared_member_still_reaches_the_application() {
    // The counterpart: what strict mode stops is real.
    let Behind { app, stack, .. } = behind_gateway_with(Kind::Php, DOSSIER).await;
    let r = app
        .client
        .post(app.url("/dossier/depot"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("nom=x&commentaire=en+clair")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stack.bound()[0]["post"]["commentaire"], "en clair");
}

// --- 3. Claims and addresses tied to categories (guichet check) -----------------------------

fn guichet(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_guichet")).args(args).env_remove("GUICHET_CONFIG").output().unwrap()
}

/// A configuration with one citizen route serving `dossier` (claims and address as given),
/// and the policy directory holding `policy`.
fn check_setup(policy: &str, route_extra: &str) -> (TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("dossier.toml"), policy).unwrap();
    let conf = dir.path().join("guichet.toml");
    let text = format!(
        "version = 1\ndata_dir = \"{}\"\n[policy]\ndir = \"{}\"\n\n[[routes]]\nname = \"dossier\"\npath_prefix = \
         \"/dossier\"\nupstream = \"http://127.0.0.1:9\"\naccess = \"citizen\"\n{route_extra}\n[server]\npublic_url = \
         \"https://mairie.example.fr\"\n[auth.citizen]\nissuer = \"https://idp.example.fr\"\nclient_id = \"guichet\"\n\
         client_secret = \"secret\"\n",
        dir.path().display(),
        policies.display()
    );
    std::fs::write(&conf, text).unwrap();
    let (c, p) = (conf.display().to_string(), policies.display().to_string());
    (dir, c, p)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn guichet_check_refuses_a_claim_or_an_address_no_category_declares_naming_file_and_line() {
    let policy = strict_dossier();
    let (_d, conf, dir) = check_setup(&policy, "claims = [\"given_name\", \"birthdate\"]\nclient_address = \"full\"\n");
    for args in [&["check", "--config", &conf][..], &["policy", "check", "--config", &conf, "--dir", &dir]] {
        let out = guichet(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("guichet.toml:11:") && err.contains("routes[0].claims"), "{err}");
        assert!(err.contains("route `dossier` sends the identity claim `given_name`"), "{err}");
        assert!(err.contains("`birthdate`"), "{err}");
        assert!(err.contains("guichet.toml:12:") && err.contains("sends the client's address (full)"), "{err}");
    }
    // Declared: the claims in the identity category, the address as a category of its own.
    let declared = policy.replacen(
        "[categories.retention]",
        "claims = [\"given_name\", \"birthdate\"]\n[categories.retention]",
        1,
    ) + "\n[[categories]]\nid = \"adresse\"\nname = \"Adresse IP (tronquée)\"\nclient_address = true\n\
           [categories.retention]\nactive = \"6 months\"\nfrom = \"collection\"\nthen = \"destroy\"\n";
    let (_d, conf, _) = check_setup(&declared, "claims = [\"given_name\", \"birthdate\"]\nclient_address = \"full\"\n");
    let out = guichet(&["check", "--config", &conf]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn policy_check_asks_an_activity_with_fields_to_choose_strict_mode() {
    let (_d, conf, dir) = check_setup(DOSSIER, "");
    let out = guichet(&["policy", "check", "--config", &conf, "--dir", &dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("activity `dossier` declares fields but not `strict`"), "{}", stderr(&out));
    let (_d, conf, dir) = check_setup(&strict_dossier(), "");
    let out = guichet(&["policy", "check", "--config", &conf, "--dir", &dir]);
    assert!(out.status.success(), "{}", stderr(&out));
}

// --- 5. One key, one use --------------------------------------------------------------------

#[tokio::test]
async fn receipts_and_assertions_are_signed_by_different_published_keys() {
    let (app, _mock, session) = crate::auth::accepted_with(crate::oidc_mock::Faults::default()).await;
    let r = crate::auth::signed_in_request(&app, &session, "/prive/dossier").await;
    assert_eq!(r.status(), 200);
    let assertion = app.upstream.last().headers["x-guichet-assertion"].to_str().unwrap().to_owned();
    let auth = &app.state.auth;
    let receipt = auth.sign_receipt(&json!({ "event": "given" })).unwrap();
    let receipt_keys = JwkSet::parse(auth.receipt_jwks().to_string().as_bytes()).unwrap();
    let assertion_keys = JwkSet::parse(auth.assertion_jwks().to_string().as_bytes()).unwrap();
    assert!(jose::verify(&receipt, &receipt_keys, PINNED_ALGS).is_ok());
    assert!(jose::verify(&assertion, &assertion_keys, PINNED_ALGS).is_ok());
    assert!(jose::verify(&receipt, &assertion_keys, PINNED_ALGS).is_err(), "a receipt is not an assertion");
    assert!(jose::verify(&assertion, &receipt_keys, PINNED_ALGS).is_err(), "an assertion is not a receipt");
    // Both published, with distinct ids, each for signing.
    let published: Value = app.get("/.guichet/jwks.json").await.json().await.unwrap();
    let kids: Vec<&str> = published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    let receipt_kid = auth.receipt_jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let assertion_kid = auth.assertion_jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_ne!(receipt_kid, assertion_kid);
    assert!(kids.contains(&receipt_kid.as_str()) && kids.contains(&assertion_kid.as_str()), "{published}");
    assert!(published["keys"].as_array().unwrap().iter().all(|k| k["use"] == "sig" || k["use"] == "enc"));
}

async fn receipt_key_is_kept_in_the_store_and_csrf_is_not_the_pseudonym_key(backend: crate::helpers::Backend) {
    let first = spawn_app().backend(backend).start().await;
    let second = spawn_app().backend(backend).with_store_url(first.store_url.clone()).start().await;
    let kid = |a: &TestApp| a.state.auth.receipt_jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid(&first), kid(&second), "every instance signs receipts with the one stored key");
    let session = a_session();
    let auth = &first.state.auth;
    let token = auth.csrf_token(&session);
    assert_eq!(token, second.state.auth.csrf_token(&session), "one CSRF key per store");
    assert_ne!(token, auth.pseudonym_tag(&["guichet-csrf-v1", "abc"]), "the pseudonym key makes no CSRF token");
}

crate::on_both_stores!(receipt_key_is_kept_in_the_store_and_csrf_is_not_the_pseudonym_key);

/// A session as the CSRF key sees it (only its id matters).
fn a_session() -> guichet::auth::session::Session {
    guichet::auth::session::Session {
        id_hash: "abc".into(),
        kind: guichet::auth::session::Kind::Citizen,
        issuer: "https://fc".into(),
        subject: "s".into(),
        provider_sid: None,
        acr: "eidas1".into(),
        claims: Default::default(),
        roles: vec![],
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        expires_at: time::OffsetDateTime::UNIX_EPOCH,
        derived: Default::default(),
    }
}

/// Both keys rotate without breaking what was issued under the old one: earlier receipts
/// still verify with the published keys, and forms opened before the rotation still post
/// until the next one. Each rotation is journaled as an admin action.
async fn receipt_and_csrf_keys_rotate_without_breaking_earlier_receipts_and_forms(backend: crate::helpers::Backend) {
    let first = spawn_app().backend(backend).start().await;
    let kid = |a: &TestApp| a.state.auth.receipt_jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let session = a_session();
    let old_receipt = first.state.auth.sign_receipt(&json!({ "event": "given" })).unwrap();
    let old_token = first.state.auth.csrf_token(&session);
    let old_kid = kid(&first);

    let said = crate::helpers::admin_command(&first, &["keys", "rotate-receipt"]).await;
    assert!(said.starts_with("New receipt key: ") && !said.contains(&old_kid), "{said}");
    crate::helpers::admin_command(&first, &["keys", "rotate-csrf"]).await;

    // An instance started after the rotation, as every instance is once restarted.
    let restarted = spawn_app().backend(backend).with_store_url(first.store_url.clone()).start().await;
    let auth = &restarted.state.auth;
    assert_ne!(kid(&restarted), old_kid, "receipts are signed with the new key");
    assert!(said.contains(&kid(&restarted)), "{said}");
    let new_receipt = auth.sign_receipt(&json!({ "event": "given" })).unwrap();
    let keys = JwkSet::parse(auth.receipt_jwks().to_string().as_bytes()).unwrap();
    assert!(jose::verify(&old_receipt, &keys, PINNED_ALGS).is_ok(), "an earlier receipt still verifies");
    assert!(jose::verify(&new_receipt, &keys, PINNED_ALGS).is_ok());
    let published: Value = restarted.get("/.guichet/jwks.json").await.json().await.unwrap();
    let kids: Vec<&str> = published["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&kid(&restarted).as_str()), "{published}");

    assert_ne!(auth.csrf_token(&session), old_token, "new forms carry a token of the new key");
    assert!(auth.csrf_ok(&session, &auth.csrf_token(&session)));
    assert!(auth.csrf_ok(&session, &old_token), "a form opened before the rotation still posts");
    assert!(!auth.csrf_ok(&session, "0"));
    // The next rotation ends the first key's tokens.
    crate::helpers::admin_command(&first, &["keys", "rotate-csrf"]).await;
    let again = spawn_app().backend(backend).with_store_url(first.store_url.clone()).start().await;
    assert!(!again.state.auth.csrf_ok(&session, &old_token), "two rotations later, the old token is refused");

    let journaled = "SELECT COUNT(*) FROM audit_entry WHERE operation = 'admin_action' \
                     AND (body LIKE '%rotate_receipt_key%' OR body LIKE '%rotate_csrf_key%')";
    assert_eq!(crate::retention::count(&first.store_url, journaled).await, 3);
}

crate::on_both_stores!(receipt_and_csrf_keys_rotate_without_breaking_earlier_receipts_and_forms);

// --- 7. HTTPS hygiene -----------------------------------------------------------------------

async fn tls_app(c: &TestCert, redirect: Option<std::net::SocketAddr>, hsts_route: bool) -> TestApp {
    let mut tls = TlsSettings::new(c.cert.clone(), c.key.clone(), "1.2");
    tls.redirect_listen = redirect;
    spawn_app()
        .with(move |s, _| {
            s.server.tls = Some(tls);
            s.server.public_url = Some("https://mairie.example.fr".into());
            s.routes[0].hsts = hsts_route;
        })
        .start()
        .await
}

fn insecure_client() -> reqwest::Client {
    crate::helpers::init();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn hsts_on_every_own_page_and_on_proxied_routes_that_ask_for_it() {
    let c = test_cert();
    let client = insecure_client();
    let url = |app: &TestApp, p: &str| format!("https://{}{p}", app.addr);
    let app = tls_app(&c, None, false).await;
    let own = client.get(url(&app, "/.guichet/health/live")).send().await.unwrap();
    assert_eq!(own.headers()["strict-transport-security"], "max-age=63072000");
    let missing = client.get(url(&app, "/.guichet/absent")).send().await.unwrap();
    assert!(missing.headers().contains_key("strict-transport-security"), "own errors too");
    let proxied = client.get(url(&app, "/echo")).send().await.unwrap();
    assert_eq!(proxied.status(), 200);
    assert!(!proxied.headers().contains_key("strict-transport-security"), "the application's choice");
    let app = tls_app(&c, None, true).await;
    let proxied = client.get(url(&app, "/echo")).send().await.unwrap();
    assert_eq!(proxied.headers()["strict-transport-security"], "max-age=63072000");
    // Without TLS the gateway never claims it.
    let plain = spawn_app().start().await;
    assert!(!plain.get("/.guichet/health/live").await.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn the_plain_http_listener_only_redirects_to_https() {
    let c = test_cert();
    let redirect = free_port();
    let app = tls_app(&c, Some(redirect), false).await;
    let r = insecure_client().post(format!("http://{redirect}/cantine/inscription?x=1")).body("nom=Dupont").send();
    let r = r.await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://mairie.example.fr/cantine/inscription?x=1");
    assert_eq!(app.upstream.hits(), 0, "nothing is proxied over plain HTTP");
}

/// `openssl s_client` against the public listener: its output, and whether it succeeded.
async fn s_client(addr: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let mut child = tokio::process::Command::new("openssl")
        // `-ign_eof`: read the answer to the end instead of quitting when the request is sent.
        .args(["s_client", "-ign_eof", "-connect", &addr.to_string(), "-servername", "localhost"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("Debian's openssl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /.guichet/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && text.contains("HTTP/1.1 200"), text)
}

#[tokio::test]
async fn openssl_sees_x25519_or_p256_only_and_no_session_ticket() {
    let c = test_cert();
    let app = tls_app(&c, None, false).await;
    let (ok, text) = s_client(app.addr, &["-tls1_3", "-groups", "X25519"]).await;
    assert!(ok && text.contains("X25519"), "{text}");
    assert!(!text.contains("New Session Ticket"), "no TLS 1.3 ticket: {text}");
    let (ok, text) = s_client(app.addr, &["-tls1_3", "-groups", "P-256"]).await;
    assert!(ok && (text.contains("P-256") || text.contains("prime256v1") || text.contains("secp256r1")), "{text}");
    // TLS 1.2 checks the certificate's curve against the offered groups: P-256 is offered too.
    let (ok, text) = s_client(app.addr, &["-tls1_2", "-groups", "X25519:P-256"]).await;
    assert!(ok, "{text}");
    assert!(!text.contains("TLS session ticket:"), "no TLS 1.2 ticket: {text}");
    for group in ["P-384", "ffdhe2048"] {
        let (ok, text) = s_client(app.addr, &["-tls1_3", "-groups", group]).await;
        assert!(!ok, "{group} must not be offered: {text}");
    }
}

// --- 8. The gateway's own processing in the register ----------------------------------------

#[test]
fn the_register_describes_the_gateways_own_processing() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = guichet(&["policy", "register", "--format", "json", "--dir", root.join("policies").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reg: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = reg["registre_des_activites_de_traitement"].as_array().unwrap();
    let own = entries.iter().find(|e| e["reference"] == "passerelle-guichet").expect("the gateway's entry");
    let categories = own["categories_de_donnees"].to_string();
    for what in ["Session de connexion", "Journal d'audit", "Preuves des consentements", "Demandes d'exercice"] {
        assert!(categories.contains(what), "{what}: {categories}");
    }
    let retention = own["delais_effacement"].to_string();
    assert!(retention.contains("6 mois") && retention.contains("12 heures au plus"), "{retention}");
}
