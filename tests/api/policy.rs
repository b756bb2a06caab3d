//! Enforcement: requests are matched to an activity and purpose, denied by default, and the
//! policy set reloads without dropping requests.

use std::time::Duration;

use crate::helpers::{TestApp, route, spawn_app};

const CANTINE: &str = include_str!("../../policies/cantine.toml");

/// An app whose only route carries personal data, with the canteen activity.
async fn app_with_canteen() -> TestApp {
    spawn_app()
        .without_default_route()
        .with_policies(&[("cantine.toml", CANTINE)])
        .with(|s, up| {
            let mut r = route("mairie", "/", &format!("http://{up}"));
            r.no_personal_data = false;
            s.routes.push(r);
        })
        .start()
        .await
}

#[tokio::test]
async fn a_claimed_request_is_forwarded_with_its_purpose() {
    let app = app_with_canteen().await;
    let resp =
        app.client.post(app.url("/api/inscriptions")).header("x-guichet-purpose", "forged/x").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = app.upstream.last();
    let purposes: Vec<_> = got.headers.get_all("x-guichet-purpose").iter().collect();
    assert_eq!(purposes, ["cantine/inscription"]);
}

#[tokio::test]
async fn an_unclaimed_request_is_denied_by_default_with_a_french_page() {
    let app = app_with_canteen().await;
    let resp = app.client.get(app.url("/api/echo")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("Ce service n"));
    // A claimed path with a method no rule lists is refused, not passed as unclaimed.
    let resp = app.client.delete(app.url("/api/inscriptions")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD, POST");
    assert!(resp.text().await.unwrap().contains("method-not-allowed"));
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn a_public_route_forwards_what_no_activity_claims_without_a_purpose() {
    let app = spawn_app().with_policies(&[("cantine.toml", CANTINE)]).start().await;
    assert_eq!(app.get("/anything").await.status(), 200);
    assert!(app.upstream.last().headers.get("x-guichet-purpose").is_none());
    assert_eq!(app.get("/cantine").await.status(), 200);
    assert_eq!(app.upstream.last().headers["x-guichet-purpose"], "cantine/inscription");
}

#[tokio::test]
async fn an_invalid_policy_set_stops_the_start() {
    let broken = CANTINE.replace("legal_reference = ", "# legal_reference = ");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cantine.toml"), broken).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["policy", "check", "--dir"])
        .arg(dir.path())
        .env_remove("GUICHET_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cantine.toml:"), "{stderr}");
    assert!(stderr.contains("add `legal_reference`"), "{stderr}");
}

/// An encrypted field without `label` cannot be offered on the citizen's rectification screen:
/// `guichet policy check` says so as a warning, and the set stays valid.
#[test]
fn policy_check_warns_about_an_encrypted_field_without_a_label() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let check = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_guichet"))
            .args(["policy", "check", "--config"])
            .arg(root.join("guichet.example.toml"))
            .arg("--dir")
            .arg(dir.path())
            .env_remove("GUICHET_CONFIG")
            .output()
            .unwrap()
    };
    let warning = "activity `cantine`, field `diet`: encrypted but without `label`";
    let out = check();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(warning), "the shipped canteen labels `diet`");
    let cantine = dir.path().join("cantine.toml");
    let text = std::fs::read_to_string(&cantine).unwrap();
    let unlabelled = text.replacen("label = \"Régime alimentaire de l'enfant\"\n", "", 1);
    assert_ne!(unlabelled, text);
    std::fs::write(&cantine, unlabelled).unwrap();
    let out = check();
    assert!(out.status.success(), "a warning, not an error: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("warning: {warning}")), "{stdout}");
    assert!(stdout.contains("policies are valid"), "{stdout}");
}

#[tokio::test]
async fn reload_applies_a_valid_set_and_refuses_an_invalid_one_under_load() {
    let app = app_with_canteen().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop) = (app.client.clone(), app.url("/cantine"), stop.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = client.get(&url).send().await.expect("no dropped connection");
                assert_eq!(resp.status(), 200, "every request keeps succeeding");
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Valid: a second activity becomes enforceable.
    let etat_civil = include_str!("../../policies/etat-civil.toml");
    std::fs::write(app.policies_dir.join("etat-civil.toml"), etat_civil).unwrap();
    app.state.reload_policies().unwrap();
    assert_eq!(app.state.policies.load().activities.len(), 2);
    // Invalid: refused, the previous set stays.
    std::fs::write(app.policies_dir.join("broken.toml"), "version = 1\nid = \"x\"\n").unwrap();
    assert!(app.state.reload_policies().is_err());
    assert_eq!(app.state.policies.load().activities.len(), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        assert!(l.await.unwrap() > 0);
    }
    assert_eq!(app.get("/etat-civil").await.status(), 200);
    let metrics = app.metrics().await;
    assert!(metrics.contains("guichet_policy_reloads_total{outcome=\"applied\"} 1"), "{metrics}");
    assert!(metrics.contains("guichet_policy_reloads_total{outcome=\"refused\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_file_change_is_picked_up_by_the_watcher() {
    let app = spawn_app().with_policy_watch().start().await;
    assert!(app.state.policies.load().activities.is_empty());
    std::fs::write(app.policies_dir.join("cantine.toml"), CANTINE).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.state.policies.load().activities.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the change was not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.get("/cantine").await.status(), 200);
    assert_eq!(app.upstream.last().headers["x-guichet-purpose"], "cantine/inscription");
}
