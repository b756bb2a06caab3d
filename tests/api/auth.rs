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
    let login_cookie = cookie(&r, LOGIN).expect("login cookie");
    Started { params, login_cookie }
}

async fn callback(app: &TestApp, query: &str, cookies: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/.guichet/oidc/callback?{query}"))).header("cookie", cookies).send().await.unwrap()
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
    callback(app, &q, &format!("{LOGIN}={}", s.login_cookie)).await
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
    let r = callback(&app, &format!("code={code}&state={}", s.params["state"]), &format!("{LOGIN}={}", s.login_cookie))
        .await;
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
    let r =
        callback(&app, &format!("code={code}&state={}", other.params["state"]), &format!("{LOGIN}={}", s.login_cookie))
            .await;
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
    let cookies = format!("{LOGIN}={}", s.login_cookie);
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
    let r = callback(&app, &q, &format!("{LOGIN}={}", s.login_cookie)).await;
    assert_eq!(r.status(), 401);
    let r2 = callback(&app, &q, &format!("{LOGIN}={}", s.login_cookie)).await;
    assert_refused(&app, r2).await;
    let page = r.text().await.unwrap();
    assert!(page.contains("Connexion annulée"), "{page}");
}

// --- Positive cases. ---

async fn accepted_with(faults: Faults) -> (TestApp, MockProvider, String) {
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

#[tokio::test]
async fn pkce_is_sent_only_when_advertised() {
    let (_app, mock, _) = accepted_with(Faults::default()).await;
    assert!(mock.last_code_verifier().is_some());
    let (_app, mock, _) = accepted_with(Faults { advertise_pkce: false, ..Faults::default() }).await;
    assert!(mock.last_code_verifier().is_none());
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
    assert!(set.iter().any(|c| c.starts_with(&format!("{LOGIN}=;")) && c.contains("Max-Age=0")));
}

#[tokio::test]
async fn no_session_fixation() {
    let (app, mock, planted) = accepted_with(Faults::default()).await;
    // The attacker's valid session id is planted in the victim's browser; the victim signs in.
    let s = start(&app, "/.guichet/connexion").await;
    let code = mock.issue_code(&s.params, "sub-victim", angela());
    let r = callback(
        &app,
        &format!("code={code}&state={}", s.params["state"]),
        &format!("{LOGIN}={}; {SESSION}={planted}", s.login_cookie),
    )
    .await;
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

async fn logout_ends_the_session_and_checks_the_state(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = spawn_app().backend(backend).with_citizen_provider(mock.issuer()).start().await;
    let r = sign_in(&app, &mock).await;
    let session = cookie(&r, SESSION).unwrap();
    let r = app
        .client
        .get(app.url("/.guichet/deconnexion"))
        .header("cookie", format!("{SESSION}={session}"))
        .send()
        .await
        .unwrap();
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

#[tokio::test]
async fn back_channel_logout_ends_the_named_sessions() {
    let (app, mock, session) = accepted_with(Faults::default()).await;
    let post = |token: String| {
        app.client
            .post(app.url("/.guichet/oidc/backchannel-logout"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("logout_token={token}"))
            .send()
    };
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

/// Runs `guichet sessions revoke ARGS` as an operator would, on `app`'s store. Awaited, not
/// blocking: the instance under test shares this test's runtime, and a blocked runtime would
/// freeze one of its SQLite transactions mid-way, holding the write lock the command needs.
async fn revoke_command(app: &TestApp, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guichet.toml");
    let toml = format!(
        "version = 1\ndata_dir = {data:?}\n\n[store]\nurl = {url:?}\n\n[[routes]]\nname = \"app\"\n\
         path_prefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\nno_personal_data = true\n",
        data = dir.path().display().to_string(),
        url = secrecy::ExposeSecret::expose_secret(&app.store_url),
    );
    std::fs::write(&config, toml).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["sessions", "revoke", "--config"])
        .arg(&config)
        .args(args)
        .env_remove("GUICHET_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
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
    let r = app.get("/.guichet/agent/connexion?retour=/agents").await;
    assert_eq!(r.status(), 303);
    let url = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(params["redirect_uri"], "http://127.0.0.1/.guichet/oidc/agent/callback");
    let login = cookie(&r, LOGIN).unwrap();
    let code = mock.issue_code(&params, "agent-sub", info);
    app.client
        .get(app.url(&format!("/.guichet/oidc/agent/callback?code={code}&state={}", params["state"])))
        .header("cookie", format!("{LOGIN}={login}; {cookies}"))
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
    let r = callback(
        &app,
        &format!("code={code}&state={}", s.params["state"]),
        &format!("{LOGIN}={}; {SESSION}={agent}", s.login_cookie),
    )
    .await;
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
