//! The Art. 30 register, from the example policies: snapshots of JSON, CSV and HTML, the ODS
//! and PIA exports, and the DPO page.

use std::path::Path;
use std::process::Command;

use guichet::config::RoleRule;

use crate::auth::{SESSION, agent_info, agent_sign_in, cookie, signed_in_request};
use crate::helpers::{TestApp, spawn_app};
use crate::oidc_mock::MockProvider;

const REGISTER: &str = "/.guichet/dpo/registre";

fn register(format: &str) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["policy", "register", "--format", format, "--dir"])
        .arg(root.join("policies"))
        .env_remove("GUICHET_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

#[test]
fn json_csv_and_html_match_their_snapshots() {
    insta::assert_snapshot!("register_json", String::from_utf8(register("json")).unwrap());
    insta::assert_snapshot!("register_csv", String::from_utf8(register("csv")).unwrap());
    insta::assert_snapshot!("register_html", String::from_utf8(register("html")).unwrap());
}

#[test]
fn the_register_has_exactly_the_fields_of_article_30() {
    let json: serde_json::Value = serde_json::from_slice(&register("json")).unwrap();
    let entries = json["registre_des_activites_de_traitement"].as_array().unwrap();
    // The six example activities and the gateway's own processing.
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[6]["reference"], "passerelle-guichet");
    let keys: Vec<&str> = entries[0].as_object().unwrap().keys().map(String::as_str).collect();
    // Art. 30(1) (a)–(g) with the reference and name, and the sector.
    assert_eq!(keys.len(), 13, "{keys:?}");
    let sector_of = |r: &str| entries.iter().find(|e| e["reference"] == r).unwrap()["secteur"].clone();
    assert_eq!(sector_of("etat-civil"), "État civil");
    assert_eq!(sector_of("cantine"), "Scolaire");
    assert_eq!(sector_of("lettre-information"), "Général");
    assert_eq!(sector_of("passerelle-guichet"), "Général");
}

#[test]
fn ods_and_pia_exports_are_produced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registre.ods");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO_BIN_EXE_guichet"))
        .args(["policy", "register", "--format", "ods", "--dir"])
        .arg(root.join("policies"))
        .arg("--output")
        .arg(&file)
        .env_remove("GUICHET_CONFIG")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(&bytes[..2], b"PK", "an ODS file is a zip archive");
    // Read it back: a first page listing the activities, then one sheet per activity, as in
    // the CNIL model.
    let wb = spreadsheet_ods::read_ods_buf(&bytes).expect("a readable OpenDocument spreadsheet");
    assert_eq!(wb.num_sheets(), 8, "the index page, one sheet per example activity and the gateway's own");
    let index = wb.sheet(0);
    assert_eq!(index.name(), "Registre");
    let listed: Vec<String> =
        (6u32..12).filter_map(|row| index.value(row, 0).as_str_opt().map(str::to_owned)).collect();
    assert!(listed.iter().any(|r| r == "cantine"), "{listed:?}");
    let cantine = (0..wb.num_sheets()).map(|i| wb.sheet(i)).find(|s| s.name() == "cantine").expect("a cantine sheet");
    let labels: Vec<String> =
        (0u32..30).filter_map(|row| cantine.value(row, 0).as_str_opt().map(str::to_owned)).collect();
    assert!(labels.iter().any(|l| l.contains("Finalité")), "{labels:?}");
    assert!(labels.iter().any(|l| l.contains("effacement")), "{labels:?}");
    assert_eq!(cantine.value(2, 0).as_str_opt(), Some("Secteur"));
    assert_eq!(cantine.value(2, 1).as_str_opt(), Some("Scolaire"));
    assert_eq!(index.value(5, 2).as_str_opt(), Some("Secteur"));
    let pia: serde_json::Value = serde_json::from_slice(&register("pia")).unwrap();
    let first = &pia.as_array().unwrap()[0];
    let refs: Vec<u64> =
        first["answers"].as_array().unwrap().iter().map(|a| a["reference_to"].as_u64().unwrap()).collect();
    for q in [121, 122, 211, 212, 215, 221, 222, 223, 224, 225] {
        assert!(refs.contains(&q), "question {q} is pre-filled");
    }
}

/// A gateway with the cantine policy and agents signing in at `agents`; agents whose email
/// is at `dpo.example.fr` get the `dpo` role.
async fn app_with_a_dpo(agents: &MockProvider) -> TestApp {
    let cantine = include_str!("../../policies/cantine.toml");
    spawn_app()
        .with_policies(&[("cantine.toml", cantine)])
        .with_agent_provider(agents.issuer())
        .with(|s, _| {
            s.auth.agent_roles.push(RoleRule {
                role: "dpo".into(),
                siret: vec![],
                email_domains: vec!["dpo.example.fr".into()],
                uids: vec![],
            });
        })
        .start()
        .await
}

#[tokio::test]
async fn the_dpo_page_shows_the_register_to_the_dpo_only() {
    let agents = MockProvider::start().await;
    let app = app_with_a_dpo(&agents).await;
    // A browser without a session goes to the agents' sign-in, and will come back here.
    let r = app.client.get(app.url(REGISTER)).header("accept", "text/html").send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/.guichet/agent/connexion?retour=%2F.guichet%2Fdpo%2Fregistre");
    // Other clients without a session: 401 problem+json.
    let r = app.client.get(app.url(REGISTER)).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // An agent without the role: 403.
    let r = agent_sign_in(&app, &agents, agent_info("21750001600019", "lucie@mairie.example.fr"), "").await;
    let clerk = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &clerk, REGISTER).await.status(), 403);
    // The DPO reads the register.
    let r = agent_sign_in(&app, &agents, agent_info("21750001600019", "delegue@dpo.example.fr"), "").await;
    let dpo = cookie(&r, SESSION).unwrap();
    let resp = signed_in_request(&app, &dpo, REGISTER).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("<caption>Inscription à la cantine scolaire"));
    assert!(html.contains("<th scope=\"row\">Délais d&#39;effacement (f)</th>") || html.contains("Délais d"), "{html}");
}

#[tokio::test]
async fn the_dpo_role_is_configurable() {
    let agents = MockProvider::start().await;
    let app = spawn_app()
        .with_agent_provider(agents.issuer())
        .with(|s, _| s.auth.dpo_role = "etat-civil".into())
        .start()
        .await;
    let r = agent_sign_in(&app, &agents, agent_info("21750001600019", "lucie@mairie.example.fr"), "").await;
    let agent = cookie(&r, SESSION).unwrap();
    assert_eq!(signed_in_request(&app, &agent, REGISTER).await.status(), 200);
}
