//! The gateway's bar in applications' pages ("Mes données · Se déconnecter", `privacy_bar`),
//! over real upstreams: the demo town-hall application (HTML pages and a JSON API) and PHP's
//! built-in server. Inserted right after `<body…>` when the route opts in, never when it does
//! not, never into anything but HTML; the stylesheet it needs is served by the gateway.

use crate::helpers::{TestApp, route, spawn_app};
use crate::stacks::{Kind, Stack};

const BAR: &str = "<nav class=\"guichet-barre\"";

/// A gateway in front of the demo town hall on `/`, with the bar on or off.
async fn in_front_of_the_demo(bar: bool) -> TestApp {
    let townhall = guichet::demo::start_townhall("http://127.0.0.1:9").await.unwrap();
    spawn_app()
        .without_default_route()
        .with(move |s, _| {
            let mut r = route("accueil", "/", &format!("http://{townhall}"));
            r.no_personal_data = true;
            r.privacy_bar = bar;
            s.routes.push(r);
        })
        .start()
        .await
}

async fn body_of(app: &TestApp, path: &str) -> (String, String) {
    let r = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (ct, r.text().await.unwrap())
}

#[tokio::test]
async fn the_bar_goes_into_html_pages_of_a_route_that_opts_in() {
    let app = in_front_of_the_demo(true).await;
    let (ct, home) = body_of(&app, "/").await;
    assert!(ct.starts_with("text/html"));
    let after_body = home.split("<body").nth(1).and_then(|rest| rest.split_once('>')).map(|(_, r)| r).unwrap();
    assert!(after_body.starts_with("<link rel=\"stylesheet\" href=\"/.guichet/barre.css\">"), "{home}");
    assert!(after_body.contains(BAR) && after_body.contains("href=\"/.guichet/mes-donnees/\">Mes données</a>"));
    assert_eq!(home.matches(BAR).count(), 1, "once");
    // Not signed in: nothing to sign out of. No script and no inline style (CSP-safe).
    assert!(!after_body.split("</nav>").next().unwrap().contains("Se déconnecter"));
    let bar = after_body.split("</nav>").next().unwrap();
    assert!(!bar.contains("<script") && !bar.contains("style="), "{bar}");
    // The rest of the page is the application's, whole.
    assert!(home.trim_end().ends_with("</html>"), "{home}");
    // The stylesheet is the gateway's.
    let (ct, css) = body_of(&app, "/.guichet/barre.css").await;
    assert_eq!(ct, "text/css; charset=utf-8");
    assert!(css.contains(".guichet-barre"));
}

#[tokio::test]
async fn without_the_key_or_on_json_there_is_no_bar() {
    let off = in_front_of_the_demo(false).await;
    let (_, home) = body_of(&off, "/").await;
    assert!(!home.contains("guichet-barre"), "off by default");
    // JSON from the same application, with the bar on: byte for byte what it sent.
    let on = in_front_of_the_demo(true).await;
    let (ct, json) = body_of(&on, "/api/inscriptions").await;
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(json, "[]");
}

#[tokio::test]
#[cfg_attr(not(guichet_php_tests), ignore = "real-stack test: install php-cli (Debian) to run it")]
async fn php_answers_are_not_html_and_get_no_bar() {
    let stack = Stack::start(Kind::Php).await;
    let up = format!("http://{}", stack.addr);
    let app = spawn_app()
        .without_default_route()
        .with(move |s, _| {
            let mut r = route("php", "/", &up);
            r.no_personal_data = true;
            r.privacy_bar = true;
            s.routes.push(r);
        })
        .start()
        .await;
    let (ct, body) = body_of(&app, "/page?x=%3Cbody%3E").await;
    assert_eq!(ct, "application/json");
    assert!(!body.contains("guichet-barre"), "{body}");
    assert!(body.contains("<body>"), "the application's own text is left as it was: {body}");
}
