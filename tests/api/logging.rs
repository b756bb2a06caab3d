//! Nothing personal reaches the logs: run the real binary at debug level with JSON logs and
//! look for the secrets a request carried.

use std::collections::HashMap;
use std::sync::Arc;

use guichet::clock::{Clock as _, SystemClock};
use serde_json::json;

use crate::auth::{SESSION, cookie, login_cookie};
use crate::helpers::{GatewayProcess, TestUpstream, init};
use crate::oidc_mock::{CLIENT_ID, CLIENT_SECRET, Faults, MockProvider};

#[tokio::test]
async fn query_strings_cookies_authorization_paths_and_bodies_are_never_logged() {
    init();
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = GatewayProcess::start(dir.path(), upstream.addr, "debug").await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{}/dossiers/Dupont-Jean?nom=Martin&naissance=1980-02-29", gw.addr))
        .header("cookie", "session=COOKIE-SECRET-42")
        .header("authorization", "Bearer TOKEN-SECRET-43")
        .header("x-guichet-subject", "FORGED-SUBJECT-44")
        .body("email=claire.petit@example.fr")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    // A failing request too: error causes are logged, and must not carry the request either.
    let dead = client.get(format!("http://{}/.guichet/nothing?nom=Martin", gw.addr)).send().await.unwrap();
    assert_eq!(dead.status(), 404);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gw.stop();

    let log = gw.log();
    assert!(log.contains(&request_id), "the request was not logged at all:\n{log}");
    for secret in [
        "Martin",
        "1980-02-29",
        "Dupont-Jean",
        "COOKIE-SECRET-42",
        "TOKEN-SECRET-43",
        "FORGED-SUBJECT-44",
        "claire.petit",
    ] {
        assert!(!log.contains(secret), "`{secret}` reached the log:\n{log}");
    }
    for line in log.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

/// A citizen provider and a citizen route `/prive` receiving three claims.
pub(crate) fn sign_in_config(issuer: &str, upstream: std::net::SocketAddr) -> String {
    format!(
        r#"[auth.citizen]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "identite_pivot"]

[[routes]]
name = "prive"
path_prefix = "/prive"
upstream = "http://{upstream}"
no_personal_data = true
access = "citizen"
claims = ["given_name", "family_name", "birthdate"]
"#
    )
}

/// The real binary runs on the system clock: the mock's tokens must carry real times.
pub(crate) fn real_time_tokens() -> Faults {
    real_time_tokens_and(|_| {})
}

/// Real times, then `tweak` on the ID token's claims.
fn real_time_tokens_and(
    tweak: impl Fn(&mut serde_json::Map<String, serde_json::Value>) + Send + Sync + 'static,
) -> Faults {
    Faults {
        id_tweak: Some(Arc::new(move |c| {
            let now = SystemClock.now().unix_timestamp();
            c.insert("iat".into(), json!(now));
            c.insert("auth_time".into(), json!(now));
            c.insert("exp".into(), json!(now + 60));
            tweak(c);
        })),
        ..Faults::default()
    }
}

#[tokio::test]
async fn identity_claims_session_ids_tokens_and_assertions_are_never_logged() {
    init();
    let upstream = TestUpstream::start().await;
    let mock = MockProvider::start().await;
    mock.set_faults(real_time_tokens());
    let dir = tempfile::tempdir().unwrap();
    let extra = sign_in_config(&mock.issuer(), upstream.addr);
    let mut gw = GatewayProcess::start_with(dir.path(), upstream.addr, "debug", &extra).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", gw.addr);

    let ProcessSignIn { session, login, params, code } =
        sign_in_process(&client, &base, &mock, "sub-zephirine-7731", zephirine()).await;

    // A signed-in request: the upstream gets the identity headers.
    let r = client.get(format!("{base}/prive/dossier")).header("cookie", format!("{SESSION}={session}")).send().await;
    assert_eq!(r.unwrap().status(), 200);
    let assertion = upstream.last().headers["x-guichet-assertion"].to_str().unwrap().to_owned();
    let pseudonym = upstream.last().headers["x-guichet-subject"].to_str().unwrap().to_owned();

    // Logout: the redirect carries the ID token as `id_token_hint`.
    let r = crate::auth::logout_with(&client, &base, &session).await;
    let end = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: HashMap<String, String> = end.query_pairs().into_owned().collect();
    let id_token = q["id_token_hint"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gw.stop();

    let log = gw.log();
    assert!(log.contains("\"signed in\""), "the sign-in was not logged at all:\n{log}");
    assert!(log.contains("\"route\":\"prive\""), "the signed-in request was not logged at all:\n{log}");
    for secret in IDENTITY_SECRETS.into_iter().chain([
        "sub-zephirine-7731",
        &pseudonym,
        &session,
        login.split_once('=').unwrap().1,
        &params["state"],
        &params["nonce"],
        &code,
        &q["state"],
        &id_token,
        &assertion,
    ]) {
        assert!(!log.contains(secret), "`{secret}` reached the log:\n{log}");
    }
}

/// What the test citizen gives the provider (identity claims and e-mail address).
pub(crate) fn zephirine() -> serde_json::Value {
    json!({
        "given_name": "Zéphirine Ombeline", "family_name": "QUENEHERVE", "birthdate": "1931-07-13",
        "gender": "female", "birthplace": "2A115", "birthcountry": "99100", "email": "zephirine.q@example.fr"
    })
}

/// Pieces of `zephirine()` that must never reach a log (the first name also JSON-escaped).
pub(crate) const IDENTITY_SECRETS: [&str; 6] =
    ["Zéphirine", "Z\\u00e9phirine", "QUENEHERVE", "1931-07-13", "2A115", "zephirine.q"];

/// A whole sign-in at a gateway process, and what went through the browser on the way.
pub(crate) struct ProcessSignIn {
    pub session: String,
    pub login: String,
    pub params: HashMap<String, String>,
    pub code: String,
}

/// Signs in at the gateway process at `base`, the provider answering `userinfo` for `sub`.
pub(crate) async fn sign_in_process(
    client: &reqwest::Client,
    base: &str,
    mock: &MockProvider,
    sub: &str,
    userinfo: serde_json::Value,
) -> ProcessSignIn {
    let r = client.get(format!("{base}/.guichet/connexion?retour=/prive")).send().await.unwrap();
    let login = login_cookie(&r).unwrap();
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let params: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    let code = mock.issue_code(&params, sub, userinfo);
    let r = client
        .get(format!("{base}/.guichet/oidc/callback?code={code}&state={}", params["state"]))
        .header("cookie", login.clone())
        .send()
        .await
        .unwrap();
    let Some(session) = cookie(&r, SESSION).filter(|_| r.status() == 303) else {
        panic!("sign-in must succeed: {} {:?}", r.status(), r.text().await);
    };
    ProcessSignIn { session, login, params, code }
}

/// The `reason` of every "sign-in refused" line of a JSON log.
fn refusal_reasons(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "sign-in refused")
        .map(|v| v["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn sign_in_refusals_name_the_real_cause() {
    init();
    let upstream = TestUpstream::start().await;
    let mock = MockProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = sign_in_config(&mock.issuer(), upstream.addr);
    let mut gw = GatewayProcess::start_with(dir.path(), upstream.addr, "info", &extra).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", gw.addr);
    // One sign-in: start, then the callback with `code` (a code the mock issued when `None`).
    let attempt = |code: Option<&'static str>, with_cookie: bool| {
        let (client, base, mock) = (client.clone(), base.clone(), mock.clone());
        async move {
            let r = client.get(format!("{base}/.guichet/connexion?retour=/prive")).send().await.unwrap();
            let login = login_cookie(&r).unwrap();
            let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
            let params: HashMap<String, String> = authorize.query_pairs().into_owned().collect();
            let code = code.map_or_else(|| mock.issue_code(&params, "sub-x", crate::auth::angela()), str::to_owned);
            let cookie = if with_cookie { login } else { String::new() };
            let r = client
                .get(format!("{base}/.guichet/oidc/callback?code={code}&state={}", params["state"]))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
    };
    mock.set_faults(real_time_tokens_and(|c| drop(c.remove("sub"))));
    attempt(None, true).await;
    mock.set_faults(Faults { id_sig: crate::oidc_mock::Sig::BadEs256, ..real_time_tokens() });
    attempt(None, true).await;
    mock.set_faults(real_time_tokens());
    attempt(Some("a-code-the-provider-never-issued"), true).await;
    attempt(None, false).await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gw.stop();

    let log = gw.log();
    let reasons = refusal_reasons(&log);
    assert_eq!(reasons.len(), 4, "{log}");
    assert_eq!(reasons[0], "ID token refused: sub missing", "not a token-endpoint failure");
    assert!(reasons[1].starts_with("ID token refused: signature"), "{}", reasons[1]);
    assert_eq!(reasons[2], "token endpoint: the provider refused the code: invalid_grant");
    assert!(reasons[3].contains("not started in this browser"), "{}", reasons[3]);
}
