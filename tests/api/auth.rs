//! Sign-in against the mock provider: every negative case of the brief is refused with no
//! session and no identity upstream; the positive path gives the upstream only a
//! per-upstream pseudonym, the allowed claims and a verifiable assertion.

use std::collections::HashMap;
use std::sync::Arc;

use guichet::auth::jose::{self, JwkSet, PINNED_ALGS};
use guichet::auth::session::RevokeTarget;
use guichet::clock::Clock as _;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::oidc_mock::{Faults, MockProvider, Sig};

pub(crate) fn angela() -> Value {
    json!({
        "given_name": "Angela Claire Louise", "family_name": "DUBOIS", "birthdate": "1962-08-24",
        "gender": "female", "birthplace": "75107", "birthcountry": "99100", "email": "angela@example.fr"
    })
}

async fn setup(faults: Faults) -> (TestApp, MockProvider) {
    let mock = MockProvider::start().await;
    mock.set_faults(faults);
    let app = spawn_app().with_citizen_provider(mock.issuer()).start().await;
    (app, mock)
}

/// `Set-Cookie` values of a response.
pub(crate) fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// The value a response sets for cookie `name` (empty when it clears it).
pub fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    set_cookies(r)
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(|v| v.split(';').next().unwrap().to_owned()))
}

pub const SESSION: &str = "__Host-guichet-session";
pub const LOGIN: &str = "__Host-guichet-login";

/// The `name=value` of the sign-in cookie a response sets (one cookie per sign-in under way,
/// named `__Host-guichet-login-…`).
pub fn login_cookie(r: &reqwest::Response) -> Option<String> {
    set_cookies(r)
        .iter()
        .filter(|c| c.starts_with(&format!("{LOGIN}-")))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .find(|pair| !pair.ends_with('='))
}

struct Started {
    params: HashMap<String, String>,
    login_cookie: String,
}

async fn start(app: &TestApp, path: &str) -> Started {
    let r = app.get(path).await;
    assert_eq!(r.status(), 303, "start of sign-in");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let login_cookie = login_cookie(&r).expect("login cookie");
    Started { params, login_cookie }
}

async fn callback(app: &TestApp, query: &str, cookies: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/.guichet/oidc/callback?{query}"))).header("cookie", cookies).send().await.unwrap()
}

/// The callback of sign-in `s` with `code`, from a browser that also holds `session`.
async fn callback_holding(app: &TestApp, s: &Started, code: &str, session: &str) -> reqwest::Response {
    let q = format!("code={code}&state={}", s.params["state"]);
    callback(app, &q, &format!("{}; {SESSION}={session}", s.login_cookie)).await
}

/// The whole sign-in: start, the provider's code, the callback. Returns the callback response.
pub(crate) async fn sign_in_at(app: &TestApp, mock: &MockProvider, start_path: &str, sub: &str) -> reqwest::Response {
    sign_in_with(app, mock, start_path, sub, angela()).await
}

/// The whole sign-in, the provider answering `userinfo` for `sub`.
pub(crate) async fn sign_in_with(
    app: &TestApp,
    mock: &MockProvider,
    start_path: &str,
    sub: &str,
    userinfo: Value,
) -> reqwest::Response {
    let s = start(app, start_path).await;
    let code = mock.issue_code(&s.params, sub, userinfo);
    let q = format!("code={code}&state={}", s.params["state"]);
    callback(app, &q, &s.login_cookie).await
}

async fn sign_in(app: &TestApp, mock: &MockProvider) -> reqwest::Response {
    sign_in_at(app, mock, "/.guichet/connexion?retour=/prive/dossier", "sub-angela").await
}

async fn live_sessions(app: &TestApp) -> i64 {
    app.state.store.sessions().count_live(app.clock.now()).await.unwrap()
}

fn any_identity_upstream(app: &TestApp) -> bool {
    app.upstream.received().iter().any(|r| r.headers.keys().any(|k| k.as_str().starts_with("x-guichet-")))
}

/// A refused sign-in: the French "try again" page, no session cookie, no session stored,
/// and the protected route still sends to sign-in without reaching the upstream.
async fn assert_refused(app: &TestApp, r: reqwest::Response) {
    assert_eq!(r.status(), 401, "a refused sign-in answers 401");
    assert!(cookie(&r, SESSION).is_none(), "no session cookie may be set");
    let page = r.text().await.unwrap();
    assert!(page.contains("Réessayer"), "the page offers to try again: {page}");
    assert_eq!(live_sessions(app).await, 0, "no session may exist");
    let r = app.client.get(app.url("/prive")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(!any_identity_upstream(app), "the upstream must never receive an identity");
}

async fn refused_with(faults: Faults) {
    let (app, mock) = setup(faults).await;
    let r = sign_in(&app, &mock).await;
    assert_refused(&app, r).await;
}

fn id_tweak(f: impl Fn(&mut serde_json::Map<String, Value>) + Send + Sync + 'static) -> Faults {
    Faults { id_tweak: Some(Arc::new(f)), ..Faults::default() }
}

fn userinfo_tweak(f: impl Fn(&mut serde_json::Map<String, Value>) + Send + Sync + 'static) -> Faults {
    Faults { userinfo_tweak: Some(Arc::new(f)), ..Faults::default() }
}

// --- The OpenID Foundation RP negative cases, and the brief's extra ones. ---

#[tokio::test]
async fn nonce_invalid() {
    refused_with(id_tweak(|c| {
        c.insert("nonce".into(), json!("0".repeat(64)));
    }))
    .await;
}

#[tokio::test]
async fn id_token_issuer_mismatch() {
    refused_with(id_tweak(|c| {
        c.insert("iss".into(), json!("https://evil.example/api/v2"));
    }))
    .await;
}

#[tokio::test]
async fn id_token_aud_wrong() {
    refused_with(id_tweak(|c| {
        c.insert("aud".into(), json!("another-client"));
    }))
    .await;
}

#[tokio::test]
async fn id_token_aud_missing() {
    refused_with(id_tweak(|c| {
        c.remove("aud");
    }))
    .await;
}

#[tokio::test]
async fn id_token_several_audiences_without_our_azp() {
    refused_with(id_tweak(|c| {
        c.insert("aud".into(), json!([crate::oidc_mock::CLIENT_ID, "other"]));
    }))
    .await;
}

#[tokio::test]
async fn id_token_sub_missing() {
    refused_with(id_tweak(|c| {
        c.remove("sub");
    }))
    .await;
}

#[tokio::test]
async fn id_token_iat_missing() {
    refused_with(id_tweak(|c| {
        c.remove("iat");
    }))
    .await;
}

#[tokio::test]
async fn id_token_bad_sig_rs256() {
    refused_with(Faults { id_sig: Sig::BadRs256, ..Faults::default() }).await;
}

#[tokio::test]
async fn id_token_bad_sig_es256() {
    refused_with(Faults { id_sig: Sig::BadEs256, ..Faults::default() }).await;
}

#[tokio::test]
async fn id_token_sig_hs256() {
    refused_with(Faults { id_sig: Sig::Hs256, ..Faults::default() }).await;
}

#[tokio::test]
async fn id_token_sig_none() {
    refused_with(Faults { id_sig: Sig::None, ..Faults::default() }).await;
}

#[tokio::test]
async fn id_token_kid_absent_multiple_jwks_bad_signature() {
    refused_with(Faults { id_sig: Sig::BadEs256, id_kid_absent: true, extra_ec_key: true, ..Faults::default() }).await;
}

#[tokio::test]
async fn id_token_bad_at_hash() {
    refused_with(id_tweak(|c| {
        c.insert("at_hash".into(), json!("AAAAAAAAAAAAAAAAAAAAAA"));
    }))
    .await;
}

#[tokio::test]
async fn userinfo_bad_sub_claim() {
    refused_with(userinfo_tweak(|c| {
        c.insert("sub".into(), json!("someone-else"));
    }))
    .await;
}

#[tokio::test]
async fn discovery_issuer_not_matching_config() {
    let (app, _mock) =
        setup(Faults { discovery_issuer: Some("https://other.example/api/v2".into()), ..Faults::default() }).await;
    // Refused before the browser is even sent to the provider.
    let r = app.client.get(app.url("/.guichet/connexion")).header("accept", "text/html").send().await.unwrap();
    assert!(r.headers().get("location").is_none());
    assert_refused(&app, r).await;
}

#[tokio::test]
async fn id_token_expired() {
    refused_with(id_tweak(|c| {
        let exp = c["iat"].as_i64().unwrap() - 600;
        c.insert("exp".into(), json!(exp));
    }))
    .await;
}

#[tokio::test]
async fn id_token_iat_far_in_the_past() {
    refused_with(id_tweak(|c| {
        let iat = c["iat"].as_i64().unwrap() - 3 * 3600;
        c.insert("iat".into(), json!(iat));
    }))
    .await;
}

#[tokio::test]
async fn acr_below_the_requested_level() {
    let (app, mock) = setup(id_tweak(|c| {
        c.insert("acr".into(), json!("eidas1"));
    }))
    .await;
    // /fort needs eidas2: the gateway asks for it and must refuse an eidas1 answer.
    let r = app.client.get(app.url("/fort")).header("accept", "text/html").send().await.unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("niveau=eidas2"), "{location}");
    let s = start(&app, &location).await;
    assert_eq!(s.params["acr_values"], "eidas2");
    let code = mock.issue_code(&s.params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    assert_refused(&app, r).await;
}

#[tokio::test]
async fn userinfo_unsigned_when_signed_is_required() {
    refused_with(Faults { userinfo_unsigned: true, ..Faults::default() }).await;
}

#[tokio::test]
async fn userinfo_signed_with_an_alg_outside_the_pinned_set() {
    refused_with(Faults { userinfo_sig: Sig::Hs256, ..Faults::default() }).await;
}

#[tokio::test]
async fn userinfo_with_a_malformed_identity_claim() {
    refused_with(userinfo_tweak(|c| {
        c.insert("birthdate".into(), json!("24/08/1962"));
    }))
    .await;
}

#[tokio::test]
async fn state_mismatch_on_the_callback() {
    let (app, mock) = setup(Faults::default()).await;
    let s = start(&app, "/.guichet/connexion").await;
    let code = mock.issue_code(&s.params, "sub-angela", angela());
    // The state of another browser's sign-in, with this browser's login cookie.
    let other = start(&app, "/.guichet/connexion").await;
    let r = callback(&app, &format!("code={code}&state={}", other.params["state"]), &s.login_cookie).await;
    assert_refused(&app, r).await;
    // And without any login cookie at all.
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), "").await;
    assert_refused(&app, r).await;
}

#[tokio::test]
async fn replayed_callback_and_nonce_are_refused() {
    let (app, mock) = setup(Faults::default()).await;
    let s = start(&app, "/.guichet/connexion").await;
    let code = mock.issue_code(&s.params, "sub-angela", angela());
    let q = format!("code={code}&state={}", s.params["state"]);
    let cookies = s.login_cookie.clone();
    assert_eq!(callback(&app, &q, &cookies).await.status(), 303);
    // Same state and nonce again (and a fresh code for them): single use.
    let code2 = mock.issue_code(&s.params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code2}&state={}", s.params["state"]), &cookies).await;
    assert_eq!(r.status(), 401);
    assert!(cookie(&r, SESSION).is_none());
    assert_eq!(live_sessions(&app).await, 1, "only the first sign-in made a session");
}

#[tokio::test]
async fn callback_error_access_denied() {
    let (app, _mock) = setup(Faults::default()).await;
    let s = start(&app, "/.guichet/connexion").await;
    let q = format!("error=access_denied&error_description=cancelled&state={}", s.params["state"]);
    let r = callback(&app, &q, &s.login_cookie).await;
    assert_eq!(r.status(), 401);
    let r2 = callback(&app, &q, &s.login_cookie).await;
    assert_refused(&app, r2).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("Connexion annulée"), "{page}");
}

// --- Positive cases. ---

pub async fn accepted_with(faults: Faults) -> (TestApp, MockProvider, String) {
    let (app, mock) = setup(faults).await;
    let r = sign_in(&app, &mock).await;
    assert_eq!(r.status(), 303, "sign-in must succeed: {:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/prive/dossier");
    let session = cookie(&r, SESSION).unwrap();
    (app, mock, session)
}

#[tokio::test]
async fn es256_and_rs256_are_both_accepted() {
    accepted_with(Faults::default()).await;
    accepted_with(Faults { id_sig: Sig::Rs256, userinfo_sig: Sig::Rs256, ..Faults::default() }).await;
}

#[tokio::test]
async fn kid_absent_with_a_single_key_is_verified_with_it() {
    accepted_with(Faults { id_kid_absent: true, ..Faults::default() }).await;
}

#[tokio::test]
async fn an_unparseable_key_in_the_jwks_is_skipped() {
    accepted_with(Faults { junk_key: true, ..Faults::default() }).await;
}

#[tokio::test]
async fn key_rotation_refetches_the_jwks_once() {
    let (_app, mock, _) =
        accepted_with(Faults { id_sig: Sig::Rotated, userinfo_sig: Sig::Es256, ..Faults::default() }).await;
    assert_eq!(mock.jwks_fetches(), 2, "one fetch, then one refetch for the unknown kid");
}

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_at_most_once_per_interval() {
    let (app, mock) = setup(Faults { id_sig: Sig::UnknownKid, ..Faults::default() }).await;
    let r = sign_in(&app, &mock).await;
    assert_refused(&app, r).await;
    assert_eq!(mock.jwks_fetches(), 2, "discovery's fetch, then one refetch for the unknown kid");
    let r = sign_in(&app, &mock).await;
    assert_refused(&app, r).await;
    assert_eq!(mock.jwks_fetches(), 2, "a forged kid cannot make the gateway refetch again at once");
}

#[tokio::test]
async fn kid_absent_with_several_keys_is_tried_against_each() {
    accepted_with(Faults { id_kid_absent: true, extra_ec_key: true, ..Faults::default() }).await;
}

#[tokio::test]
async fn hs256_is_refused_even_when_discovery_advertises_it() {
    let (app, mock) = setup(Faults { id_sig: Sig::Hs256, ..Faults::default() }).await;
    let doc: Value = app
        .client
        .get(format!("{}/.well-known/openid-configuration", mock.issuer()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["id_token_signing_alg_values_supported"].as_array().unwrap().contains(&json!("HS256")));
    // The token is a valid HMAC with the client secret: only the pinned algorithms refuse it.
    let r = sign_in(&app, &mock).await;
    assert_refused(&app, r).await;
}

/// A provider registered as encrypting its tokens (FranceConnect+) that sends a merely signed
/// ID token is refused: an attacker who could strip the encryption gains nothing.
#[tokio::test]
async fn an_unencrypted_id_token_from_an_encrypting_provider_is_refused() {
    let mock = MockProvider::start().await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("enc.pem");
    let app = spawn_app()
        .with_citizen_provider(mock.issuer())
        .with(move |s, _| {
            s.auth.citizen.as_mut().unwrap().encrypted_tokens = true;
            s.auth.encryption_key_file = Some(key);
        })
        .start()
        .await;
    let r = sign_in(&app, &mock).await;
    assert_refused(&app, r).await;
    assert!(keys.path().join("enc.pem").exists(), "the decryption key was created");
}

#[tokio::test]
async fn pkce_is_sent_only_when_advertised() {
    let (_app, mock, _) = accepted_with(Faults::default()).await;
    assert!(mock.last_code_verifier().is_some());
    let (_app, mock, _) = accepted_with(Faults { advertise_pkce: false, ..Faults::default() }).await;
    assert!(mock.last_code_verifier().is_none());
}

#[tokio::test]
async fn discovery_is_read_again_after_a_day_and_kept_while_the_provider_fails() {
    let (app, mock) = setup(Faults::default()).await;
    let pkce = |s: &Started| s.params.contains_key("code_challenge");
    assert!(pkce(&start(&app, "/.guichet/connexion").await));
    mock.set_faults(Faults { advertise_pkce: false, ..Faults::default() });
    assert!(pkce(&start(&app, "/.guichet/connexion").await), "the document in hand serves for a day");
    app.clock.advance(time::Duration::hours(24));
    assert!(!pkce(&start(&app, "/.guichet/connexion").await), "read again after a day: no PKCE any more");

    // The next document is unusable (another issuer): sign-in goes on with the one in hand.
    mock.set_faults(Faults {
        advertise_pkce: true,
        discovery_issuer: Some("https://elsewhere.example".into()),
        ..Faults::default()
    });
    app.clock.advance(time::Duration::hours(24));
    assert!(!pkce(&start(&app, "/.guichet/connexion").await), "the previous document still serves");
    // Once the provider is right again, the retry a minute later picks its document up.
    mock.set_faults(Faults::default());
    app.clock.advance(time::Duration::minutes(1));
    assert!(pkce(&start(&app, "/.guichet/connexion").await));
}

#[tokio::test]
async fn authorize_request_follows_franceconnect_rules() {
    let (app, _mock) = setup(Faults::default()).await;
    let s = start(&app, "/.guichet/connexion").await;
    for k in ["state", "nonce"] {
        assert_eq!(s.params[k].len(), 64, "{k} is 32 random bytes in hex");
        assert!(s.params[k].bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_eq!(s.params["acr_values"], "eidas1");
    assert_eq!(s.params["response_type"], "code");
    assert_eq!(s.params["redirect_uri"], "http://127.0.0.1/.guichet/oidc/callback");
    assert_eq!(s.params["code_challenge_method"], "S256");
}

#[tokio::test]
async fn the_client_authenticates_with_client_secret_post_by_default_or_basic() {
    let (_app, mock, _) = accepted_with(Faults::default()).await;
    assert_eq!(mock.last_client_auth(), Some("post"));
    let mock = MockProvider::start().await;
    let app = spawn_app()
        .with_citizen_provider(mock.issuer())
        .with(|s, _| s.auth.citizen.as_mut().unwrap().auth_method = "client_secret_basic".into())
        .start()
        .await;
    assert_eq!(sign_in(&app, &mock).await.status(), 303, "sign-in with client_secret_basic");
    assert_eq!(mock.last_client_auth(), Some("basic"));
}

#[tokio::test]
async fn prompt_login_is_sent_only_when_configured() {
    let (app, _mock) = setup(Faults::default()).await;
    assert!(!start(&app, "/.guichet/connexion").await.params.contains_key("prompt"));
    let mock = MockProvider::start().await;
    let app = spawn_app()
        .with_citizen_provider(mock.issuer())
        .with(|s, _| s.auth.citizen.as_mut().unwrap().prompt_login = true)
        .start()
        .await;
    assert_eq!(start(&app, "/.guichet/connexion").await.params["prompt"], "login");
}

pub async fn signed_in_request(app: &TestApp, session: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("accept", "text/html")
        .header("cookie", format!("theme=dark; {SESSION}={session}"))
        .header("x-guichet-subject", "FORGED")
        .header("x-guichet-claim-given-name", "FORGED")
        .header("x-guichet-assertion", "FORGED")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_upstream_receives_pseudonym_allowed_claims_and_a_verifiable_assertion() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    let r = signed_in_request(&app, &session, "/prive/dossier").await;
    assert_eq!(r.status(), 200);
    let got = app.upstream.last();
    let h = &got.headers;
    let subject = h["x-guichet-subject"].to_str().unwrap();
    assert_eq!(subject.len(), 64);
    assert_ne!(subject, "sub-angela");
    assert_eq!(h["x-guichet-claim-given-name"], "Angela Claire Louise");
    assert_eq!(h["x-guichet-claim-family-name"], "DUBOIS");
    assert!(h.get("x-guichet-claim-email").is_none(), "email is not allowed on this route");
    assert!(h.get_all("x-guichet-subject").iter().all(|v| v != "FORGED"));
    assert_eq!(h.get_all("x-guichet-claim-given-name").iter().count(), 1);
    assert_eq!(h["cookie"], "theme=dark", "the session cookie never goes upstream");
    // The assertion verifies with the gateway's published keys.
    let jwks = app.get("/.guichet/jwks.json").await.bytes().await.unwrap();
    let keys = JwkSet::parse(&jwks).unwrap();
    let assertion = h["x-guichet-assertion"].to_str().unwrap();
    let v = jose::verify(assertion, &keys, PINNED_ALGS).unwrap();
    assert_eq!(v.claims["sub"], subject);
    assert_eq!(v.claims["aud"], "prive");
    assert_eq!(v.claims["acr"], "eidas1");
    assert_eq!(v.claims["claims"]["birthdate"], "1962-08-24");
    assert!(v.claims["claims"].get("gender").is_none());
    // Signed once per session and route: the next request carries the same assertion.
    signed_in_request(&app, &session, "/prive/autre-page").await;
    assert_eq!(app.upstream.last().headers["x-guichet-assertion"], assertion);
}

#[tokio::test]
async fn public_routes_learn_nothing_and_spoofed_headers_never_pass() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    let r = signed_in_request(&app, &session, "/public").await;
    assert_eq!(r.status(), 200);
    assert!(!any_identity_upstream(&app));
}

#[tokio::test]
async fn pseudonyms_differ_between_upstreams_and_stay_stable_across_sign_ins() {
    let (app, mock, first) = accepted_with(Faults::default()).await;
    signed_in_request(&app, &first, "/prive").await;
    let prive = app.upstream.last().headers["x-guichet-subject"].clone();
    signed_in_request(&app, &first, "/autre").await;
    let autre = app.upstream.last().headers["x-guichet-subject"].clone();
    assert_ne!(prive, autre);
    let r = sign_in(&app, &mock).await;
    let second = cookie(&r, SESSION).unwrap();
    assert_ne!(first, second);
    signed_in_request(&app, &second, "/prive").await;
    assert_eq!(app.upstream.last().headers["x-guichet-subject"], prive);
}

#[tokio::test]
async fn session_cookie_attributes() {
    let (app, mock) = setup(Faults::default()).await;
    let r = sign_in(&app, &mock).await;
    let set = set_cookies(&r);
    let session = set.iter().find(|c| c.starts_with(SESSION)).unwrap();
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(session.contains(attr), "{session} lacks {attr}");
    }
    assert!(!session.contains("Domain"), "__Host- cookies have no Domain");
    let value = cookie(&r, SESSION).unwrap();
    assert_eq!(value.len(), 64);
    assert!(set.iter().any(|c| c.starts_with(&format!("{LOGIN}-")) && c.contains("=;") && c.contains("Max-Age=0")));
}

#[tokio::test]
async fn no_session_fixation() {
    let (app, mock, planted) = accepted_with(Faults::default()).await;
    // The attacker's valid session id is planted in the victim's browser; the victim signs in.
    let s = start(&app, "/.guichet/connexion").await;
    let code = mock.issue_code(&s.params, "sub-victim", angela());
    let r = callback_holding(&app, &s, &code, &planted).await;
    let fresh = cookie(&r, SESSION).unwrap();
    assert_ne!(fresh, planted, "a new id at sign-in");
    let r = signed_in_request(&app, &planted, "/prive").await;
    assert_eq!(r.status(), 303, "the planted id no longer works");
}

#[tokio::test]
async fn return_paths_stay_on_this_site() {
    for evil in ["//evil.example/x", "/\\evil.example", "https://evil.example/", "/%2F%2Fevil.example", "%2F%5Cevil"] {
        let (app, mock) = setup(Faults::default()).await;
        let enc: String = url::form_urlencoded::byte_serialize(evil.as_bytes()).collect();
        let r = sign_in_at(&app, &mock, &format!("/.guichet/connexion?retour={enc}"), "sub-angela").await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/", "{evil}");
    }
}

#[tokio::test]
async fn apis_get_401_problem_json_and_browsers_a_redirect_back() {
    let (app, _mock) = setup(Faults::default()).await;
    let r = app.client.get(app.url("/api/dossiers")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = app.client.get(app.url("/prive/x?y=1")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/.guichet/connexion?retour=%2Fprive%2Fx%3Fy%3D1");
    let r = app.client.get(app.url("/prive/x")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn idle_timeout_ends_the_session() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200);
    app.clock.advance(time::Duration::minutes(31));
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
    assert_eq!(live_sessions(&app).await, 0);
}

#[tokio::test]
async fn absolute_timeout_ends_an_active_session() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    for _ in 0..(12 * 60 / 20 - 1) {
        app.clock.advance(time::Duration::minutes(20));
        assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200);
    }
    app.clock.advance(time::Duration::minutes(21));
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
}

/// The CSRF token of the logout confirmation page that `session` is shown.
pub async fn logout_token(client: &reqwest::Client, base: &str, session: &str) -> String {
    let page = client
        .get(format!("{base}/.guichet/deconnexion"))
        .header("cookie", format!("{SESSION}={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no CSRF field in:\n{html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// Logout as the confirmation page's button does it: POST with the page's CSRF token.
pub async fn logout_with(client: &reqwest::Client, base: &str, session: &str) -> reqwest::Response {
    let token = logout_token(client, base, session).await;
    client
        .post(format!("{base}/.guichet/deconnexion"))
        .header("cookie", format!("{SESSION}={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={token}"))
        .send()
        .await
        .unwrap()
}

async fn logout_ends_the_session_and_checks_the_state(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    let r = sign_in(&app, &mock).await;
    let session = cookie(&r, SESSION).unwrap();
    let r = logout_with(&app.client, &app.url(""), &session).await;
    assert_eq!(r.status(), 303);
    assert_eq!(cookie(&r, SESSION).as_deref(), Some(""), "the cookie is cleared");
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.path().ends_with("/session/end"));
    let q: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], "http://127.0.0.1/.guichet/oidc/logout-callback");
    // The local session is gone before the provider answers.
    assert_eq!(live_sessions(&app).await, 0);
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
    // A wrong or missing state is detected.
    let bad = app.get("/.guichet/oidc/logout-callback?state=forged").await;
    assert_eq!(bad.status(), 400);
    assert_eq!(app.get("/.guichet/oidc/logout-callback").await.status(), 400);
    let ok = app.get(&format!("/.guichet/oidc/logout-callback?state={}", q["state"])).await;
    assert_eq!(ok.status(), 200);
    assert!(ok.text().await.unwrap().contains("Vous êtes déconnecté"));
    // The state works once.
    assert_eq!(app.get(&format!("/.guichet/oidc/logout-callback?state={}", q["state"])).await.status(), 400);
}

crate::on_both_stores!(logout_ends_the_session_and_checks_the_state);

/// A provider's back-channel logout call.
async fn back_channel_logout(app: &TestApp, token: String) -> reqwest::Result<reqwest::Response> {
    app.client
        .post(app.url("/.guichet/oidc/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
}

#[tokio::test]
async fn back_channel_logout_ends_the_named_sessions() {
    let (app, mock, session) = accepted_with(Faults::default()).await;
    let post = |token: String| back_channel_logout(&app, token);
    // Refused: a nonce, no event, a wrong audience.
    for bad in [
        mock.logout_token("sub-angela", |c| {
            c.insert("nonce".into(), json!("n"));
        }),
        mock.logout_token("sub-angela", |c| {
            c.remove("events");
        }),
        mock.logout_token("sub-angela", |c| {
            c.insert("aud".into(), json!("other"));
        }),
    ] {
        assert_eq!(post(bad).await.unwrap().status(), 400);
    }
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200);
    assert_eq!(post(mock.logout_token("sub-angela", |_| {})).await.unwrap().status(), 200);
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
    assert_eq!(live_sessions(&app).await, 0);
}

async fn sessions_live_in_the_store(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    let r = sign_in(&app, &mock).await;
    assert_eq!(r.status(), 303);
    let session = cookie(&r, SESSION).unwrap();
    assert_eq!(live_sessions(&app).await, 1);
    // Only the hash is stored.
    let row = app.state.store.sessions().get(&guichet::auth::session::hash_id(&session)).await.unwrap().unwrap();
    assert_eq!(row.subject, "sub-angela");
    assert_ne!(row.id_hash, session);
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200);
}

crate::on_both_stores!(sessions_live_in_the_store);

#[tokio::test]
async fn a_revoked_session_stops_working_on_another_instance_within_two_seconds() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200);
    // Another instance revokes it directly in the shared store.
    let hash = guichet::auth::session::hash_id(&session);
    app.state.store.sessions().delete(&hash).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
}

// --- Admin revocation (`guichet sessions revoke`). ---

#[tokio::test]
async fn an_operator_revokes_a_person_by_the_pseudonym_an_application_saw() {
    let (app, mock, session) = accepted_with(Faults::default()).await;
    let other = cookie(&sign_in_at(&app, &mock, "/.guichet/connexion", "sub-other").await, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &session, "/autre").await.status(), 200);
    let pseudonym = app.upstream.last().headers["x-guichet-subject"].to_str().unwrap().to_owned();
    let routes: Vec<Arc<str>> = app.state.proxy.routes().iter().map(|r| r.name.clone()).collect();
    let target = RevokeTarget::Subject(pseudonym);
    assert_eq!(app.state.auth.revoke_sessions(&target, &routes).await.unwrap(), 1);
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303, "ends at once here");
    assert_eq!(signed_in_request(&app, &other, "/prive").await.status(), 200, "others keep theirs");
    let unknown = RevokeTarget::Subject("0".repeat(64));
    assert_eq!(app.state.auth.revoke_sessions(&unknown, &routes).await.unwrap(), 0);
}

/// Runs `guichet sessions revoke ARGS` as an operator would, on `app`'s store.
async fn revoke_command(app: &TestApp, args: &[&str]) -> String {
    let mut command = vec!["sessions", "revoke"];
    command.extend_from_slice(args);
    crate::helpers::admin_command(app, &command).await
}

async fn the_revoke_command_ends_sessions_on_running_instances_within_two_seconds(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    let angela = cookie(&sign_in(&app, &mock).await, SESSION).unwrap();
    let other = cookie(&sign_in_at(&app, &mock, "/.guichet/connexion", "sub-other").await, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &angela, "/prive").await.status(), 200);
    // By the internal id (the provider's `sub`), from another process.
    assert_eq!(revoke_command(&app, &["--subject", "sub-angela"]).await, "1 session revoked.\n");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(signed_in_request(&app, &angela, "/prive").await.status(), 303);
    assert_eq!(signed_in_request(&app, &other, "/prive").await.status(), 200);
    // Everyone.
    assert_eq!(revoke_command(&app, &["--all"]).await, "1 session revoked.\n");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(signed_in_request(&app, &other, "/prive").await.status(), 303);
    assert_eq!(live_sessions(&app).await, 0);
}

crate::on_both_stores!(the_revoke_command_ends_sessions_on_running_instances_within_two_seconds);

#[test]
fn the_revoke_command_needs_exactly_one_target() {
    for args in [&["sessions", "revoke"][..], &["sessions", "revoke", "--all", "--subject", "x"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
    }
}

// --- Agents. ---

pub fn agent_info(siret: &str, email: &str) -> Value {
    json!({ "given_name": "Lucie", "usual_name": "MARTIN", "email": email, "uid": "agent-1", "siret": siret, "idp_id": "fia1" })
}

pub async fn agent_sign_in(app: &TestApp, mock: &MockProvider, info: Value, cookies: &str) -> reqwest::Response {
    agent_sign_in_at(app, mock, "/.guichet/agent/connexion?retour=/agents", info, cookies).await
}

/// An agent's whole sign-in started at `start_path`. Returns the callback response.
pub async fn agent_sign_in_at(
    app: &TestApp,
    mock: &MockProvider,
    start_path: &str,
    info: Value,
    cookies: &str,
) -> reqwest::Response {
    let r = app.get(start_path).await;
    assert_eq!(r.status(), 303);
    let url = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["redirect_uri"], "http://127.0.0.1/.guichet/oidc/agent/callback");
    let login = login_cookie(&r).unwrap();
    let code = mock.issue_code(&params, "agent-sub", info);
    app.client
        .get(app.url(&format!("/.guichet/oidc/agent/callback?code={code}&state={}", params["state"])))
        .header("cookie", format!("{login}; {cookies}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn agents_get_roles_from_rules_and_one_browser_holds_one_identity() {
    let citizens = MockProvider::start().await;
    let agents = MockProvider::start().await;
    let app = spawn_app().with_citizen_provider(citizens.issuer()).with_agent_provider(agents.issuer()).start().await;
    // Not signed in: sent to the agents' sign-in.
    let r = app.client.get(app.url("/agents")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.headers()["location"], "/.guichet/agent/connexion?retour=%2Fagents");
    // An agent of another organisation signs in but has no role: 403.
    let r = agent_sign_in(&app, &agents, agent_info("11111111111111", "x@mairie.example.fr"), "").await;
    let outsider = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &outsider, "/agents").await.status(), 403);
    // The town hall's agent gets `etat-civil` and reaches the route with the allowed claims.
    let r = agent_sign_in(&app, &agents, agent_info("21750001600019", "lucie@mairie.example.fr"), "").await;
    let agent = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &agent, "/agents").await.status(), 200);
    let h = app.upstream.last().headers;
    assert_eq!(h["x-guichet-claim-usual-name"], "MARTIN");
    assert!(h.get("x-guichet-claim-siret").is_none());
    // An agent session is not a citizen session.
    assert_eq!(signed_in_request(&app, &agent, "/prive").await.status(), 403);
    // Signing in as a citizen in the same browser ends the agent session.
    let s = start(&app, "/.guichet/connexion").await;
    let code = citizens.issue_code(&s.params, "sub-angela", angela());
    let r = callback_holding(&app, &s, &code, &agent).await;
    let citizen = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &agent, "/agents").await.status(), 303, "the agent session ended");
    assert_eq!(signed_in_request(&app, &citizen, "/agents").await.status(), 403);
}

// --- Housekeeping: what expired is deleted, not merely ignored. ---

/// Rows in `table`, counted straight in the store.
async fn rows(app: &TestApp, table: &str) -> i64 {
    let url = secrecy::ExposeSecret::expose_secret(&app.store_url).to_owned();
    let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    } else {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
    }
}

async fn expired_sign_ins_and_sessions_are_purged(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    assert_eq!(sign_in(&app, &mock).await.status(), 303);
    start(&app, "/.guichet/connexion").await; // a sign-in left unfinished
    assert!(rows(&app, "auth_sessions").await > 0);
    assert!(rows(&app, "auth_pending_logins").await > 0);

    app.state.purge_expired_sign_ins().await.unwrap();
    assert_eq!(rows(&app, "auth_sessions").await, 1, "a live session is kept");

    // Past the absolute timeout (12 h) and the day kept for support questions.
    app.clock.advance(time::Duration::hours(12) + time::Duration::days(1) + time::Duration::minutes(1));
    app.state.purge_expired_sign_ins().await.unwrap();
    assert_eq!(rows(&app, "auth_sessions").await, 0);
    assert_eq!(rows(&app, "auth_pending_logins").await, 0);
}

crate::on_both_stores!(expired_sign_ins_and_sessions_are_purged);

// --- Sign-in as real browsers use it (issue 12). ---

/// Starts a sign-in from a browser that already holds `jar` (its cookies, `; `-joined), and
/// adds the new sign-in cookie to it.
async fn start_in(app: &TestApp, path: &str, jar: &mut Vec<String>) -> (Started, Vec<String>) {
    let r = app.client.get(app.url(path)).header("cookie", jar.join("; ")).send().await.unwrap();
    assert_eq!(r.status(), 303, "start of sign-in");
    let url = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let login_cookie = login_cookie(&r).expect("login cookie");
    let cleared: Vec<String> = set_cookies(&r)
        .iter()
        .filter(|c| c.contains("Max-Age=0"))
        .map(|c| c.split('=').next().unwrap().to_owned())
        .collect();
    jar.retain(|c| !cleared.iter().any(|name| c.starts_with(&format!("{name}="))));
    jar.push(login_cookie.clone());
    (Started { params, login_cookie }, cleared)
}

#[tokio::test]
async fn two_tabs_sign_in_and_both_finish_in_either_order() {
    for second_first in [true, false] {
        let (app, mock) = setup(Faults::default()).await;
        let mut jar = Vec::new();
        let (one, _) = start_in(&app, "/.guichet/connexion?retour=/prive/un", &mut jar).await;
        let (two, _) = start_in(&app, "/.guichet/connexion?retour=/prive/deux", &mut jar).await;
        assert_ne!(one.login_cookie, two.login_cookie, "one cookie per sign-in");
        let order = if second_first {
            [(&two, "/prive/deux"), (&one, "/prive/un")]
        } else {
            [(&one, "/prive/un"), (&two, "/prive/deux")]
        };
        for (s, back) in order {
            let code = mock.issue_code(&s.params, "sub-angela", angela());
            // The browser sends every cookie it holds, both sign-ins' included.
            let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &jar.join("; ")).await;
            assert_eq!(r.status(), 303, "both tabs' sign-ins succeed: {:?}", r.text().await);
            assert_eq!(r.headers()["location"], back);
            let name = s.login_cookie.split('=').next().unwrap();
            let cleared = set_cookies(&r)
                .iter()
                .filter(|c| c.contains("Max-Age=0"))
                .map(|c| c.split('=').next().unwrap().to_owned())
                .collect::<Vec<_>>();
            assert!(cleared.contains(&name.to_owned()), "this sign-in's cookie ends");
            assert_eq!(cleared.iter().filter(|c| c.starts_with(LOGIN)).count(), 1, "the other tab's cookie stays");
        }
    }
}

#[tokio::test]
async fn a_browser_keeps_at_most_five_sign_ins_under_way() {
    let (app, mock) = setup(Faults::default()).await;
    let mut jar = Vec::new();
    let mut started = Vec::new();
    for i in 0..7 {
        let (s, cleared) = start_in(&app, &format!("/.guichet/connexion?retour=/prive/{i}"), &mut jar).await;
        assert_eq!(cleared.len(), usize::from(i >= 5), "start {i} drops the oldest beyond five");
        started.push(s);
    }
    assert_eq!(jar.len(), 5);
    // The oldest sign-in lost its cookie: refused; the newest still finishes.
    let code = mock.issue_code(&started[0].params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code}&state={}", started[0].params["state"]), &jar.join("; ")).await;
    assert_refused(&app, r).await;
    let code = mock.issue_code(&started[6].params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code}&state={}", started[6].params["state"]), &jar.join("; ")).await;
    assert_eq!(r.headers()["location"], "/prive/6");
}

/// Everything the store holds, as text: `sqlite3 .dump` of the file (and the raw bytes of the
/// file and its WAL), or `pg_dump` of the test's schema.
pub(crate) async fn store_dump(app: &TestApp) -> String {
    let url = secrecy::ExposeSecret::expose_secret(&app.store_url).to_owned();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut all = String::new();
        let out = tokio::process::Command::new("sqlite3").arg(path).arg(".dump").output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        all.push_str(&String::from_utf8_lossy(&out.stdout));
        for suffix in ["", "-wal"] {
            if let Ok(bytes) = std::fs::read(format!("{path}{suffix}")) {
                all.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        all
    } else {
        let (base, options) = url.split_once('?').unwrap();
        let schema = options.rsplit("search_path%3D").next().unwrap();
        let out = tokio::process::Command::new("pg_dump")
            .args(["--data-only", "--schema", schema, base])
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let dump = String::from_utf8(out.stdout).unwrap();
        assert!(dump.contains("auth_pending_logins"), "the dump covers the test's schema");
        dump
    }
}

async fn the_return_path_and_its_query_are_never_in_clear_in_the_store(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    let canary = "CANARI7Q4Z";
    let s = start(&app, &format!("/.guichet/connexion?retour=%2Fprive%2Fdossier%3Fref%3D{canary}")).await;
    let dump = store_dump(&app).await;
    assert!(!dump.contains(canary), "the return path's query is in clear in the store");
    assert!(!dump.contains("/prive/dossier"), "the return path is in clear in the store");
    assert!(!dump.contains(&s.params["state"]), "the state itself is never stored");
    // Still where the citizen comes back to.
    let code = mock.issue_code(&s.params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    assert_eq!(r.headers()["location"], format!("/prive/dossier?ref={canary}"));
}

crate::on_both_stores!(the_return_path_and_its_query_are_never_in_clear_in_the_store);

#[tokio::test]
async fn try_again_keeps_the_return_path_and_the_level() {
    let (app, mock) = setup(id_tweak(|c| {
        c.remove("sub");
    }))
    .await;
    let r = sign_in_at(&app, &mock, "/.guichet/connexion?retour=%2Fprive%2Fdossier%3Fx%3D1", "sub-angela").await;
    assert_eq!(r.status(), 401);
    let page = r.text().await.unwrap();
    assert!(page.contains("href=\"/.guichet/connexion?retour=%2Fprive%2Fdossier%3Fx%3D1\""), "{page}");
    // A step-up: the level is kept too.
    let s = start(&app, "/.guichet/connexion?retour=%2Ffort&niveau=eidas2").await;
    let code = mock.issue_code(&s.params, "sub-angela", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("href=\"/.guichet/connexion?retour=%2Ffort&#38;niveau=eidas2\""), "{page}");
    // A refusal before the pending sign-in is found (no cookie) still offers a plain retry.
    let r = callback(&app, "code=x&state=unknown", "").await;
    assert!(r.text().await.unwrap().contains("href=\"/.guichet/connexion\""));
    // A start that fails (the provider's discovery is wrong) keeps them too.
    let (app, _mock) =
        setup(Faults { discovery_issuer: Some("https://other.example/api/v2".into()), ..Faults::default() }).await;
    let r = app.get("/.guichet/connexion?retour=%2Ffort&niveau=eidas2").await;
    assert_eq!(r.status(), 401);
    let page = r.text().await.unwrap();
    assert!(page.contains("href=\"/.guichet/connexion?retour=%2Ffort&#38;niveau=eidas2\""), "{page}");
}

#[tokio::test]
async fn logout_needs_a_post_with_the_pages_csrf_token() {
    let (app, _mock, session) = accepted_with(Faults::default()).await;
    // A cross-site GET (a link, an image) shows the confirmation page and ends nothing.
    let r = signed_in_request(&app, &session, "/.guichet/deconnexion").await;
    assert_eq!(r.status(), 200);
    assert!(cookie(&r, SESSION).is_none());
    let page = r.text().await.unwrap();
    assert!(page.contains("<form method=\"post\" action=\"/.guichet/deconnexion\">"), "{page}");
    assert!(page.contains("Me déconnecter") && page.contains("lang=\"fr\""));
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200, "still signed in");
    // A forged POST, without the token or with another's: refused, still signed in.
    for body in ["", "csrf=", &format!("csrf={}", "0".repeat(64))] {
        let r = app
            .client
            .post(app.url("/.guichet/deconnexion"))
            .header("cookie", format!("{SESSION}={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert!(cookie(&r, SESSION).is_none());
        assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 200, "still signed in");
    }
    // The page's own button: signed out, sent to the provider.
    let r = logout_with(&app.client, &app.url(""), &session).await;
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"].to_str().unwrap().contains("/session/end"));
    assert_eq!(signed_in_request(&app, &session, "/prive").await.status(), 303);
    // Without a session the page says so and offers no button.
    let r = app.get("/.guichet/deconnexion").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Vous n'êtes pas connecté"));
}

/// Moves the gateway's clock and the mock's token times together.
fn advance(app: &TestApp, mock: &MockProvider, d: time::Duration) {
    app.clock.advance(d);
    mock.set_now(app.clock.now().unix_timestamp());
}

#[tokio::test]
async fn keys_are_fetched_again_when_their_cache_lifetime_ends() {
    // (Cache-Control sent, minutes until the refetch is due)
    for (cache_control, due_minutes) in [("public, max-age=600", 10), ("max-age=30", 5), ("max-age=864000", 24 * 60)] {
        let (app, mock) = setup(Faults::default()).await;
        mock.set_jwks_cache_control(cache_control);
        assert_eq!(sign_in(&app, &mock).await.status(), 303);
        assert_eq!(mock.jwks_fetches(), 1, "{cache_control}");
        advance(&app, &mock, time::Duration::minutes(due_minutes - 1));
        assert_eq!(sign_in(&app, &mock).await.status(), 303);
        assert_eq!(mock.jwks_fetches(), 1, "{cache_control}: still fresh");
        advance(&app, &mock, time::Duration::minutes(2));
        assert_eq!(sign_in(&app, &mock).await.status(), 303);
        assert_eq!(mock.jwks_fetches(), 2, "{cache_control}: fetched again on schedule");
    }
}

#[tokio::test]
async fn a_key_replaced_under_a_known_kid_is_fetched_again_at_most_once_a_minute() {
    let (app, mock, _) = accepted_with(Faults::default()).await;
    assert_eq!(mock.jwks_fetches(), 1);
    // The provider replaces the key behind `ec1`: the signature fails, the keys are fetched
    // again and the sign-in succeeds.
    mock.replace_key();
    assert_eq!(sign_in(&app, &mock).await.status(), 303);
    assert_eq!(mock.jwks_fetches(), 2);
    // Again within the minute: no new fetch, refused.
    mock.replace_key();
    let r = sign_in(&app, &mock).await;
    assert_eq!(r.status(), 401, "the key in hand does not verify, and no refetch is due");
    assert!(cookie(&r, SESSION).is_none());
    assert_eq!(mock.jwks_fetches(), 2, "at most one refetch a minute");
    // A minute later, fetched again.
    advance(&app, &mock, time::Duration::seconds(61));
    assert_eq!(sign_in(&app, &mock).await.status(), 303);
    assert_eq!(mock.jwks_fetches(), 3);
}

// --- FranceConnect (eidas1) and FranceConnect+ (eidas2, eidas3): two providers. ---

/// A gateway with FranceConnect (`[auth.citizen]`, eidas1) and FranceConnect+
/// (`[[auth.citizen_providers]]`, eidas2 and eidas3), each a mock of its own.
async fn setup_fc_and_fc_plus() -> (TestApp, MockProvider, MockProvider) {
    let (fc, fc_plus) = (MockProvider::start().await, MockProvider::start().await);
    let plus_issuer = fc_plus.issuer();
    let app =
        spawn_app().with_citizen_provider(fc.issuer()).with(move |s, _| add_fc_plus(s, plus_issuer)).start().await;
    (app, fc, fc_plus)
}

/// Makes `[auth.citizen]` FranceConnect (eidas1) and adds FranceConnect+ at `plus_issuer`
/// (eidas2, eidas3) with the same client registration details.
pub(crate) fn add_fc_plus(s: &mut guichet::config::Settings, plus_issuer: String) {
    let single = s.auth.citizen.as_mut().unwrap();
    single.name = Some("franceconnect".into());
    single.acr_values = vec!["eidas1".into()];
    let mut plus = single.clone();
    plus.name = Some("franceconnect-plus".into());
    plus.issuer = plus_issuer;
    plus.acr = "eidas2".into();
    plus.acr_values = vec!["eidas2".into(), "eidas3".into()];
    s.auth.citizen_providers.push(plus);
}

/// Starts a sign-in at `path`; returns it and the origin of the provider it went to.
async fn start_at(app: &TestApp, path: &str) -> (Started, String) {
    let r = app.get(path).await;
    assert_eq!(r.status(), 303, "start of sign-in");
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let origin = location.origin().ascii_serialization();
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    (Started { params, login_cookie: login_cookie(&r).unwrap() }, origin)
}

fn origin_of(issuer: &str) -> String {
    url::Url::parse(issuer).unwrap().origin().ascii_serialization()
}

#[tokio::test]
async fn a_route_needing_eidas2_steps_up_to_franceconnect_plus() {
    let (app, fc, fc_plus) = setup_fc_and_fc_plus().await;
    // An eidas1 route: FranceConnect.
    let r = app.client.get(app.url("/prive")).header("accept", "text/html").send().await.unwrap();
    let (s, origin) = start_at(&app, r.headers()["location"].to_str().unwrap()).await;
    assert_eq!(s.params["redirect_uri"], "http://127.0.0.1/.guichet/oidc/callback", "one callback for both");
    assert_eq!(origin, origin_of(&fc.issuer()), "eidas1 goes to FranceConnect");
    assert_eq!(s.params["acr_values"], "eidas1");
    let code = fc.issue_code(&s.params, "sub-fc", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    let low = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &low, "/prive").await.status(), 200);

    // The eidas2 route: the eidas1 session is not enough, FranceConnect+ is asked.
    let r = signed_in_request(&app, &low, "/fort").await;
    assert_eq!(r.status(), 303);
    let (s, origin) = start_at(&app, r.headers()["location"].to_str().unwrap()).await;
    assert_eq!(origin, origin_of(&fc_plus.issuer()), "eidas2 goes to FranceConnect+");
    assert_eq!(s.params["acr_values"], "eidas2");
    let code = fc_plus.issue_code(&s.params, "sub-fc-plus", angela());
    let r = callback_holding(&app, &s, &code, &low).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/fort");
    let high = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &high, "/fort").await.status(), 200);
    let assertion = app.upstream.last().headers["x-guichet-assertion"].to_str().unwrap().to_owned();
    let jwks = app.get("/.guichet/jwks.json").await.bytes().await.unwrap();
    let v = jose::verify(&assertion, &JwkSet::parse(&jwks).unwrap(), PINNED_ALGS).unwrap();
    assert_eq!(v.claims["acr"], "eidas2");
    assert_eq!(signed_in_request(&app, &low, "/prive").await.status(), 303, "the eidas1 session ended");

    // eidas3 also goes to FranceConnect+.
    let (s, origin) = start_at(&app, "/.guichet/connexion?retour=%2Ffort&niveau=eidas3").await;
    assert_eq!((origin, s.params["acr_values"].as_str()), (origin_of(&fc_plus.issuer()), "eidas3"));

    // A back-channel logout from FranceConnect does not touch FranceConnect+'s session; one
    // from FranceConnect+ ends it.
    let post = |token: String| back_channel_logout(&app, token);
    assert_eq!(post(fc.logout_token("sub-fc-plus", |_| {})).await.unwrap().status(), 200);
    assert_eq!(signed_in_request(&app, &high, "/fort").await.status(), 200);
    // Logout goes to the provider that signed the person in.
    let r = logout_with(&app.client, &app.url(""), &high).await;
    let end = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(end.starts_with(&format!("{}/session/end?", fc_plus.issuer())), "{end}");
    // Signed in with FranceConnect+ again, then its back-channel logout ends the session.
    let (s, _) = start_at(&app, "/.guichet/connexion?retour=%2Ffort&niveau=eidas2").await;
    let code = fc_plus.issue_code(&s.params, "sub-fc-plus", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    let again = cookie(&r, SESSION).unwrap();
    assert_eq!(post(fc_plus.logout_token("sub-fc-plus", |_| {})).await.unwrap().status(), 200);
    assert_eq!(signed_in_request(&app, &again, "/fort").await.status(), 303);
}

#[tokio::test]
async fn a_code_from_the_other_provider_is_refused() {
    // A sign-in started with FranceConnect is finished at FranceConnect: a code that only
    // FranceConnect+ knows fails there, and nothing is created.
    let (app, _fc, fc_plus) = setup_fc_and_fc_plus().await;
    let (s, _) = start_at(&app, "/.guichet/connexion?retour=%2Fprive").await;
    let code = fc_plus.issue_code(&s.params, "sub-fc-plus", angela());
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &s.login_cookie).await;
    assert_refused(&app, r).await;
}

#[test]
fn a_citizen_route_needs_a_provider_serving_its_level() {
    let mut loaded = guichet::config::Loaded::defaults();
    let s = &mut loaded.settings;
    s.server.public_url = Some("https://demarches.mairie.example.fr".into());
    let mut fc = guichet::config::ProviderSettings::new(
        "https://oidc.franceconnect.gouv.fr/api/v2",
        "client",
        secrecy::SecretString::from("secret"),
    );
    fc.name = Some("franceconnect".into());
    fc.acr_values = vec!["eidas1".into()];
    s.auth.citizen_providers.push(fc.clone());
    let mut route = crate::helpers::route("fort", "/fort", "http://127.0.0.1:9");
    route.access = guichet::config::RouteAccess::Citizen;
    route.min_acr = Some("eidas2".into());
    s.routes.push(route);
    let e = loaded.validate().unwrap_err().to_string();
    assert!(e.contains("routes[0].min_acr") && e.contains("no citizen provider serves eidas2"), "{e}");
    // FranceConnect+ added: valid. A nameless or twice-named entry is not.
    let mut plus = fc.clone();
    plus.issuer = "https://auth.franceconnect.gouv.fr/api/v2".into();
    plus.name = Some("franceconnect-plus".into());
    plus.acr_values = vec!["eidas2".into(), "eidas3".into()];
    loaded.settings.auth.citizen_providers.push(plus.clone());
    assert!(loaded.validate().is_ok());
    plus.name = Some("franceconnect".into());
    loaded.settings.auth.citizen_providers.push(plus.clone());
    plus.name = None;
    loaded.settings.auth.citizen_providers.push(plus);
    let e = loaded.validate().unwrap_err().to_string();
    assert!(e.contains("`franceconnect` names two citizen providers"), "{e}");
    assert!(e.contains("auth.citizen_providers[3].name"), "{e}");
}
