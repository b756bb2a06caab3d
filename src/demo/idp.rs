//! The demonstration identity provider of `guichet demo`: a real, minimal OpenID Connect
//! provider (discovery, authorize, token, signed userinfo, JWKS, end session) so the
//! gateway's production relying-party code is what runs. Loopback only, labelled
//! "démonstration" on every page, and only started by `guichet demo` (never by `serve`).
//! Two issuers: `/citoyen/api/v2` (FranceConnect-like) and `/agent/api/v2` (ProConnect-like).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::jose;
use crate::auth::oidc::{at_hash_of, pkce_challenge};
use crate::clock::{Clock, SystemRandom, hex, random_hex};

pub const CLIENT_ID: &str = "guichet-demo";
pub const CLIENT_SECRET: &str = "demo-secret-not-for-production";

/// One pick-list entry: an id, a label and the claims it gives.
struct Person {
    id: &'static str,
    label: &'static str,
    claims: Value,
}

fn citizens() -> Vec<Person> {
    let p = |id, label, given: &str, family: &str, gender, birthdate, birthplace, country| Person {
        id,
        label,
        claims: json!({ "given_name": given, "family_name": family, "gender": gender, "birthdate": birthdate,
                        "birthplace": birthplace, "birthcountry": country, "email": format!("{id}@demo.invalid") }),
    };
    let mut list = vec![
        p(
            "test",
            "Angela DUBOIS (identité de référence)",
            "Angela Claire Louise",
            "DUBOIS",
            "female",
            "1962-08-24",
            "75107",
            "99100",
        ),
        p("compose", "Noms composés", "Jean-Philippe Marie", "MARTIN-LEGRAND", "male", "1975-11-02", "69123", "99100"),
        p(
            "accents",
            "Accents et caractères spéciaux",
            "Éloïse Françoise",
            "DE L'ÉGLISE-ÇAVA",
            "female",
            "1988-02-29",
            "13055",
            "99100",
        ),
        p("sans-nom", "Sans nom de famille", "Mohamed", "", "male", "1990-01-01", "", "99350"),
        p("mineur", "Une mineure", "Léa", "PETIT", "female", "2014-06-15", "33063", "99100"),
        p("algerie", "Né en Algérie", "Karim", "BENALI", "male", "1970-01-01", "", "99352"),
        p("portugal", "Née au Portugal", "Maria", "DA SILVA", "female", "1983-07-01", "", "99139"),
        p("belgique", "Né en Belgique", "Lucas", "JANSSENS", "male", "1995-12-01", "", "99131"),
        p("corse", "Né en Corse", "Paul", "CASANOVA", "male", "1958-04-30", "2A115", "99100"),
        p(
            "long",
            "Nom de famille très long",
            "Anne",
            "DE LA TOUR D'AUVERGNE-LAURAGUAIS DE MONTMORENCY-BEAUFORT",
            "female",
            "1966-09-09",
            "75056",
            "99100",
        ),
    ];
    if let Some(Value::Object(c)) = list.get_mut(0).map(|p| &mut p.claims) {
        c.insert("preferred_username".into(), json!("MERCIER"));
    }
    list
}

/// The SIRET and email domain the demo's role rules recognise.
pub const DEMO_SIRET: &str = "21750001600019";
pub const DEMO_DOMAIN: &str = "mairie-demo.fr";

fn agents() -> Vec<Person> {
    let a = |id, label, given, usual, email: &str, siret| Person {
        id,
        label,
        claims: json!({ "given_name": given, "usual_name": usual, "email": email, "uid": id, "siret": siret, "idp_id": "demo" }),
    };
    vec![
        a(
            "lucie",
            "Lucie MARTIN, état civil (rôles etat-civil, officier-etat-civil)",
            "Lucie",
            "MARTIN",
            "lucie.martin@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "hugo",
            "Hugo ROUX, voirie (rôles agent-voirie, equipe-intervention)",
            "Hugo",
            "ROUX",
            "hugo.roux@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "sophie",
            "Sophie LEROY, service scolaire (rôle agent-scolaire)",
            "Sophie",
            "LEROY",
            "sophie.leroy@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "marc",
            "Marc PETIT, cuisine centrale (rôle cuisine-centrale)",
            "Marc",
            "PETIT",
            "marc.petit@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "samir",
            "Samir BENALI, CCAS (rôles travailleur-social, accueil-ccas)",
            "Samir",
            "BENALI",
            "samir.benali@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "julie",
            "Julie GARNIER, élections (rôle agent-elections)",
            "Julie",
            "GARNIER",
            "julie.garnier@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "emma",
            "Emma FONTAINE, communication (rôle service-communication)",
            "Emma",
            "FONTAINE",
            "emma.fontaine@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "claire",
            "Claire MOREAU, accueil de la mairie (rôles accueil, courrier)",
            "Claire",
            "MOREAU",
            "claire.moreau@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "nadia",
            "Nadia BERGER, déléguée à la protection des données (rôle dpo)",
            "Nadia",
            "BERGER",
            "nadia.berger@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "anne",
            "Anne DUBOIS, archiviste (rôle archiviste)",
            "Anne",
            "DUBOIS",
            "anne.dubois@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "elise",
            "Élise MOREAU, adjointe au maire (rôle supervision)",
            "Élise",
            "MOREAU",
            "elise.moreau@mairie-demo.fr",
            DEMO_SIRET,
        ),
        a(
            "externe",
            "Inès FAURE, autre administration (aucun rôle)",
            "Inès",
            "FAURE",
            "ines.faure@prefecture-demo.fr",
            "11000101300017",
        ),
    ]
}

struct Grant {
    variant: String,
    person: String,
    nonce: String,
    acr: String,
    challenge: Option<String>,
}

struct Idp {
    base: String,
    redirect_base: String,
    key: EcdsaKeyPair,
    kid: String,
    clock: Arc<dyn Clock>,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, (String, String)>>,
}

/// A started demo provider: its citizen and agent issuers.
pub struct DemoIdp {
    pub citizen_issuer: String,
    pub agent_issuer: String,
}

/// Starts the provider on a free port of `ip`, which must be loopback. `gateway` is the
/// gateway's public URL: the only redirect target it accepts.
pub async fn start(ip: std::net::IpAddr, gateway: &str, clock: Arc<dyn Clock>) -> anyhow::Result<DemoIdp> {
    if !ip.is_loopback() {
        anyhow::bail!("the demonstration identity provider only listens on loopback");
    }
    let listener =
        TcpListener::bind(SocketAddr::new(ip, 0)).await.context("cannot start the demo identity provider")?;
    let addr = listener.local_addr()?;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let kid = jose::es256_kid(&key);
    let base = format!("http://{addr}");
    let idp = Arc::new(Idp {
        base: base.clone(),
        redirect_base: gateway.to_owned(),
        key,
        kid,
        clock,
        codes: Mutex::new(HashMap::new()),
        tokens: Mutex::new(HashMap::new()),
    });
    let app = Router::new()
        .route("/{variant}/api/v2/.well-known/openid-configuration", get(discovery))
        .route("/{variant}/api/v2/authorize", get(authorize).post(choose))
        .route("/{variant}/api/v2/token", axum::routing::post(token))
        .route("/{variant}/api/v2/userinfo", get(userinfo))
        .route("/{variant}/api/v2/jwks", get(jwks))
        .route("/{variant}/api/v2/session/end", get(end_session))
        .with_state(idp);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "demo identity provider stopped");
        }
    });
    Ok(DemoIdp { citizen_issuer: format!("{base}/citoyen/api/v2"), agent_issuer: format!("{base}/agent/api/v2") })
}

fn known(variant: &str) -> bool {
    variant == "citoyen" || variant == "agent"
}

async fn discovery(State(idp): State<Arc<Idp>>, Path(variant): Path<String>) -> Response {
    if !known(&variant) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let iss = format!("{}/{variant}/api/v2", idp.base);
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "end_session_endpoint": format!("{iss}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "userinfo_signing_alg_values_supported": ["ES256"],
        "acr_values_supported": ["eidas1", "eidas2", "eidas3"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> Response {
    Html(format!(
        "<!DOCTYPE html><html lang=\"fr\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} — démonstration</title><style>body{{font-family:system-ui,sans-serif;font-size:1.125rem;line-height:1.5;max-width:40rem;margin:2rem auto;padding:0 1rem}}\
         .demo{{background:#fff4d6;border:2px solid #b34000;padding:.5rem 1rem}}button{{font-size:1rem;margin:.25rem 0;padding:.5rem 1rem}}\
         button:focus{{outline:3px solid #0a76f6}}</style></head><body><main>\
         <p class=\"demo\" role=\"note\"><strong>Démonstration.</strong> Ce fournisseur d'identité est factice. Aucune vraie identité n'est utilisée.</p>\
         <h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    ))
    .into_response()
}

async fn authorize(Path(variant): Path<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !known(&variant) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let people = if variant == "agent" { agents() } else { citizens() };
    let hidden: String = ["redirect_uri", "state", "nonce", "acr_values", "code_challenge"]
        .iter()
        .filter_map(|k| q.get(*k).map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v))))
        .collect();
    let buttons: String = people
        .iter()
        .map(|p| {
            format!("<li><button type=\"submit\" name=\"person\" value=\"{}\">{}</button></li>", p.id, esc(p.label))
        })
        .collect();
    let who = if variant == "agent" { "agent" } else { "usager" };
    page(
        &format!("Choisissez un {who} de test"),
        &format!(
            "<p>Cliquez sur une personne pour vous connecter à sa place.</p><form method=\"post\">{hidden}<ul>{buttons}</ul></form>"
        ),
    )
}

async fn choose(
    State(idp): State<Arc<Idp>>,
    Path(variant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let redirect_uri = f.get("redirect_uri").cloned().unwrap_or_default();
    if !known(&variant) || !redirect_uri.starts_with(&format!("{}/.guichet/", idp.redirect_base)) {
        return page("Demande refusée", "<p>L'adresse de retour n'est pas celle de la passerelle.</p>");
    }
    let Ok(code) = random_hex::<16>(&SystemRandom::new()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let grant = Grant {
        variant,
        person: f.get("person").cloned().unwrap_or_default(),
        nonce: f.get("nonce").cloned().unwrap_or_default(),
        acr: f.get("acr_values").cloned().unwrap_or_else(|| "eidas1".into()),
        challenge: f.get("code_challenge").cloned(),
    };
    if let Ok(mut c) = idp.codes.lock() {
        c.insert(code.clone(), grant);
    }
    let state =
        url::form_urlencoded::byte_serialize(f.get("state").map_or("", String::as_str).as_bytes()).collect::<String>();
    Redirect::to(&format!("{redirect_uri}?code={code}&state={state}")).into_response()
}

async fn token(
    State(idp): State<Arc<Idp>>,
    Path(variant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let bad = |e: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": e }))).into_response();
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return bad("invalid_client");
    }
    let grant = f.get("code").and_then(|c| idp.codes.lock().ok().and_then(|mut m| m.remove(c)));
    let Some(g) = grant.filter(|g| g.variant == variant) else { return bad("invalid_grant") };
    if let Some(ch) = &g.challenge
        && f.get("code_verifier").map(|v| pkce_challenge(v)).as_ref() != Some(ch)
    {
        return bad("invalid_grant");
    }
    let Ok(access) = random_hex::<16>(&SystemRandom::new()) else { return bad("server_error") };
    let iss = format!("{}/{variant}/api/v2", idp.base);
    // Pairwise-looking subject: stable per person and client.
    let sub =
        hex(ring::digest::digest(&ring::digest::SHA256, format!("{variant}|{}|{CLIENT_ID}", g.person).as_bytes())
            .as_ref());
    let now = idp.clock.now().unix_timestamp();
    let claims = json!({ "iss": iss, "aud": CLIENT_ID, "sub": sub, "iat": now, "exp": now + 60, "auth_time": now,
                         "acr": g.acr, "nonce": g.nonce, "at_hash": at_hash_of(&access), "sid": format!("demo-{sub}") });
    let Ok(id_token) = jose::sign_es256(&idp.key, &idp.kid, "JWT", &claims, &ring::rand::SystemRandom::new()) else {
        return bad("server_error");
    };
    if let Ok(mut t) = idp.tokens.lock() {
        t.insert(access.clone(), (g.person, sub));
    }
    axum::Json(json!({ "access_token": access, "token_type": "Bearer", "expires_in": 60, "id_token": id_token }))
        .into_response()
}

async fn userinfo(State(idp): State<Arc<Idp>>, Path(variant): Path<String>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some((person, sub)) = token.and_then(|t| idp.tokens.lock().ok().and_then(|m| m.get(t).cloned())) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let people = if variant == "agent" { agents() } else { citizens() };
    let Some(p) = people.into_iter().find(|p| p.id == person) else { return StatusCode::UNAUTHORIZED.into_response() };
    let mut claims = p.claims;
    if let Value::Object(c) = &mut claims {
        c.insert("sub".into(), json!(sub));
        c.insert("iss".into(), json!(format!("{}/{variant}/api/v2", idp.base)));
        c.insert("aud".into(), json!(CLIENT_ID));
    }
    match jose::sign_es256(&idp.key, &idp.kid, "JWT", &claims, &ring::rand::SystemRandom::new()) {
        Ok(jwt) => ([(header::CONTENT_TYPE, "application/jwt")], jwt).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Response {
    axum::Json(json!({ "keys": [jose::es256_public_jwk(&idp.key, &idp.kid)] })).into_response()
}

async fn end_session(State(idp): State<Arc<Idp>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let back = q.get("post_logout_redirect_uri").filter(|u| u.starts_with(&format!("{}/.guichet/", idp.redirect_base)));
    let Some(back) = back else { return page("Vous êtes déconnecté", "<p>Vous pouvez fermer cette page.</p>") };
    let state =
        url::form_urlencoded::byte_serialize(q.get("state").map_or("", String::as_str).as_bytes()).collect::<String>();
    page(
        "Vous êtes déconnecté du fournisseur de démonstration",
        &format!("<p><a href=\"{}?state={state}\">Revenir au site de la mairie</a></p>", esc(back)),
    )
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn refuses_to_listen_beyond_loopback() {
        let clock = std::sync::Arc::new(crate::clock::SystemClock);
        let err = super::start("0.0.0.0".parse().unwrap(), "http://127.0.0.1:8080", clock).await;
        assert!(err.is_err());
    }

    /// Every role an example policy names in `visible_to` is held by a demo agent, so the demo
    /// shows each service's values to someone (civil status, allergies…).
    #[test]
    fn demo_agents_hold_every_role_the_example_policies_name() {
        let idp = super::DemoIdp {
            citizen_issuer: "http://127.0.0.1:1/c".into(),
            agent_issuer: "http://127.0.0.1:1/a".into(),
        };
        let mut settings = crate::config::Loaded::defaults().settings;
        super::super::configure_sign_in(&mut settings, &idp);
        let roles_of = |p: &super::Person| {
            let claims = p.claims.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()));
            crate::auth::claims::roles(&claims.collect(), &settings.auth.agent_roles)
        };
        let held: std::collections::BTreeSet<String> = super::agents().iter().flat_map(roles_of).collect();
        let mut named = 0;
        for file in crate::policy::load::embedded_examples() {
            let doc: toml::Value = toml::from_str(&file.text).unwrap();
            for field in doc.get("fields").and_then(toml::Value::as_array).into_iter().flatten() {
                for role in field.get("visible_to").and_then(toml::Value::as_array).into_iter().flatten() {
                    named += 1;
                    assert!(held.contains(role.as_str().unwrap()), "{}: no demo agent holds {role}", file.name);
                }
            }
        }
        assert!(named > 10, "the examples name roles");
        // The civil-status officer sees civil-status values; the central kitchen the allergies.
        let roles_of = |uid: &str| roles_of(&super::agents().into_iter().find(|p| p.id == uid).unwrap());
        assert!(roles_of("lucie").contains(&"officier-etat-civil".to_owned()));
        assert!(roles_of("marc").contains(&"cuisine-centrale".to_owned()));
        assert!(roles_of("claire").contains(&"accueil".to_owned()));
        assert!(!roles_of("externe").iter().any(|r| r == "officier-etat-civil"), "another administration holds none");
    }
}
