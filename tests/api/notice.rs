//! Citizen notices (Art. 13), generated from the policy files.

use crate::helpers::spawn_app;

const ELECTIONS: &str = include_str!("../../policies/liste-electorale.toml");
const NEWSLETTER: &str = include_str!("../../policies/lettre-information.toml");

#[tokio::test]
async fn the_notice_is_accessible_french_html_with_plain_retention() {
    let app = spawn_app().with_policies(&[("a.toml", ELECTIONS), ("b.toml", NEWSLETTER)]).start().await;
    let resp = app
        .client
        .get(app.url("/.guichet/informations/liste-electorale"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\">"));
    assert_eq!(html.matches("<h1>").count(), 1);
    assert!(!html.contains("<script"));
    assert!(html.contains("<th scope=\"col\">"));
    assert!(html.contains("3 ans après votre radiation des listes"), "{html}");
    assert!(html.contains("La loi nous oblige à le faire (Code électoral"), "{html}");
    assert!(html.contains("CNIL"));
    assert!(html.contains("dpo@demoville.example"));
    // The sector, by its French name, and what it means for the citizen.
    assert!(html.contains("Ce service fait partie du domaine « Élections »."), "{html}");
}

#[tokio::test]
async fn the_notice_is_json_on_request_and_the_index_lists_every_activity() {
    let app = spawn_app().with_policies(&[("a.toml", ELECTIONS), ("b.toml", NEWSLETTER)]).start().await;
    let by_suffix: serde_json::Value =
        app.get("/.guichet/informations/lettre-information.json").await.json().await.unwrap();
    let by_accept: serde_json::Value = app
        .client
        .get(app.url("/.guichet/informations/lettre-information"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_suffix, by_accept);
    assert_eq!(by_suffix["consent"]["version"], "2025-01");
    assert!(
        by_suffix["rights"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().contains("Retirer votre accord"))
    );
    let index = app.get("/.guichet/informations").await.text().await.unwrap();
    assert!(index.contains("/.guichet/informations/liste-electorale"));
    assert!(index.contains("/.guichet/informations/lettre-information"));
    // Each service's sector in the list; the newsletter is in no named sector.
    assert!(index.contains("Inscription sur la liste électorale</a> (domaine « Élections »)"), "{index}");
    assert!(index.contains("municipale</a></li>"), "no sector named for the newsletter");
    assert_eq!(by_suffix["sector"], serde_json::Value::Null);
    let elections: serde_json::Value =
        app.get("/.guichet/informations/liste-electorale.json").await.json().await.unwrap();
    assert_eq!(elections["sector"], "Élections");
    assert_eq!(app.get("/.guichet/informations/inconnu").await.status(), 404);
}
