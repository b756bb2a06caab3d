//! What the store holds at rest: after a whole citizen visit (sign-in, a signed-in request
//! that hands claims to an upstream, a consent form, logout), no identity claim the provider
//! gave is anywhere in the store's bytes — the SQLite file and its WAL, or a `pg_dump` of the
//! schema — neither while the session is live (sealed) nor after logout (row deleted).

use secrecy::ExposeSecret as _;
use serde_json::json;

use crate::auth::{SESSION, cookie, sign_in_with};
use crate::consent::{builder, consent_page, post, token};
use crate::helpers::{Backend, TestApp};
use crate::oidc_mock::MockProvider;

/// Claim values no other part of the store could contain by chance.
const CANARIES: [&str; 4] = ["Canarina Zelie", "CANARYFAMQX", "1901-02-03", "canary.qx7@example.fr"];

fn canary_userinfo() -> serde_json::Value {
    json!({
        "given_name": CANARIES[0], "family_name": CANARIES[1], "birthdate": CANARIES[2],
        "gender": "female", "birthplace": "75107", "birthcountry": "99100", "email": CANARIES[3]
    })
}

/// Every byte the store holds: the SQLite file and its WAL, or the schema's SQL dump.
pub(crate) async fn store_bytes(app: &TestApp) -> Vec<u8> {
    let url = app.store_url.expose_secret().to_owned();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        assert!(bytes.len() > 4096, "the store file was read");
        return bytes;
    }
    let (base, options) = url.split_once('?').unwrap();
    let schema = options.rsplit("search_path%3D").next().unwrap();
    let out = tokio::process::Command::new("pg_dump")
        .args(["--dbname", base, "--schema", schema, "--data-only", "--no-owner"])
        .output()
        .await
        .expect("pg_dump must be installed");
    assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("auth_sessions"), "the dump covers the schema");
    out.stdout
}

fn canaries_in(bytes: &[u8]) -> Vec<&'static str> {
    CANARIES.into_iter().filter(|c| bytes.windows(c.len()).any(|w| w == c.as_bytes())).collect()
}

/// Ends the session the way a browser does: the logout link, and its confirmation form when
/// the gateway asks for one (every hidden field sent back).
async fn log_out(app: &TestApp, session: &str) {
    let cookie_header = format!("{SESSION}={session}");
    let r = app.client.get(app.url("/.guichet/deconnexion")).header("cookie", &cookie_header).send().await.unwrap();
    if r.status() == 303 {
        return;
    }
    let page = r.text().await.unwrap();
    let fields: Vec<(String, String)> = page
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let attr = |name: &str| tag.split(&format!("{name}=\"")).nth(1)?.split('"').next().map(str::to_owned);
            Some((attr("name")?, attr("value")?))
        })
        .collect();
    let r = app
        .client
        .post(app.url("/.guichet/deconnexion"))
        .header("cookie", &cookie_header)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "logout is confirmed");
}

async fn no_claim_in_clear_at_rest(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    let r = sign_in_with(&app, &mock, "/.guichet/connexion?retour=/prive", "sub-canary", canary_userinfo()).await;
    assert_eq!(r.status(), 303, "sign-in succeeds");
    let session = cookie(&r, SESSION).unwrap();

    // The claims are really used: the upstream receives them, read back from the session.
    app.state.auth.sessions.forget_all();
    let r = app.client.get(app.url("/prive")).header("cookie", format!("{SESSION}={session}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.upstream.last().headers["x-guichet-claim-family-name"], CANARIES[1]);

    // A form: consent to the newsletter.
    let t = token(&consent_page(&app, &session).await);
    let form = [
        ("jeton", t.as_str()),
        ("activite", "lettre-information"),
        ("finalite", "envoi"),
        ("choix", "donner"),
        ("retour", "/lettre-information/"),
    ];
    assert_eq!(post(&app, &session, "/.guichet/consentement/", &form).await.status(), 303);

    // Live session: stored, but sealed.
    let rows = app.state.store.sessions().list_all().await.unwrap();
    assert_eq!(rows.len(), 1, "the session is stored");
    assert_eq!(canaries_in(&store_bytes(&app).await), Vec::<&str>::new(), "claims are sealed while live");

    log_out(&app, &session).await;
    assert!(app.state.store.sessions().list_all().await.unwrap().is_empty(), "logout deletes the row");
    assert_eq!(canaries_in(&store_bytes(&app).await), Vec::<&str>::new(), "nothing left after logout");
}

crate::on_both_stores!(no_claim_in_clear_at_rest);

/// Revocation by the operator and by the provider's back-channel deletes the rows too.
async fn revoked_sessions_leave_no_row(backend: Backend) {
    let mock = MockProvider::start().await;
    let app = builder(&mock, backend).start().await;
    for sub in ["sub-a", "sub-b"] {
        let r = sign_in_with(&app, &mock, "/.guichet/connexion", sub, canary_userinfo()).await;
        assert_eq!(r.status(), 303);
    }
    assert_eq!(app.state.store.sessions().list_all().await.unwrap().len(), 2);
    let target = guichet::auth::session::RevokeTarget::Subject("sub-a".into());
    assert_eq!(app.state.auth.revoke_sessions(&target, &[]).await.unwrap(), 1);
    let left = app.state.store.sessions().list_all().await.unwrap();
    assert_eq!(left.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>(), ["sub-b"]);
    let r = app
        .client
        .post(app.url("/.guichet/oidc/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={}", mock.logout_token("sub-b", |_| {})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(app.state.store.sessions().list_all().await.unwrap().is_empty());
}

crate::on_both_stores!(revoked_sessions_leave_no_row);

/// SQLite overwrites what it deletes (the pragma is on for every connection of the
/// gateway): once the WAL is checkpointed, a deleted row's bytes are nowhere in the file.
#[tokio::test]
async fn sqlite_deleted_rows_are_overwritten() {
    let (store, url, _dir) = crate::helpers::open_migrated_store(Backend::Sqlite).await;
    let at = time::macros::datetime!(2026-11-28 12:00 UTC);
    let row = guichet::store::SessionRow {
        id_hash: "h".repeat(64),
        kind: "citizen".into(),
        issuer: "https://idp.example".into(),
        subject: "sub".into(),
        provider_sid: None,
        acr: CANARIES[1].into(),
        claims: "{}".into(),
        roles: "[]".into(),
        id_token: "t".into(),
        created_at: at,
        last_seen_at: at,
        expires_at: at,
        revoked_at: None,
    };
    store.sessions().insert(&row).await.unwrap();
    store.sessions().delete(&row.id_hash).await.unwrap().unwrap();
    store.close().await;
    let pool = sqlx::SqlitePool::connect(url.expose_secret()).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.unwrap();
    pool.close().await;
    let path = url.expose_secret().strip_prefix("sqlite://").unwrap().to_owned();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
    assert_eq!(canaries_in(&bytes), Vec::<&str>::new(), "the deleted row's bytes are gone");
}
