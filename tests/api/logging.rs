//! Nothing personal reaches the logs: run the real binary at debug level with JSON logs and
//! look for the secrets a request carried.

use crate::helpers::{GatewayProcess, TestUpstream, init};

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
