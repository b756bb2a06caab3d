//! A FranceConnect-like OpenID provider for tests, with fault switches: it signs what the
//! test tells it to (wrong alg, bad signature, missing claims, rotated keys…). Fault
//! injection lives here, never in the production binary; signing reuses `guichet::auth::jose`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guichet::auth::jose::{b64e, es256_public_jwk};
use guichet::auth::oidc::at_hash_of;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// How the mock signs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Es256,
    Rs256,
    /// HMAC with the client secret (FC v1 style): must be refused.
    Hs256,
    /// `alg: none`, empty signature.
    None,
    /// ES256 header, signature of other bytes.
    BadEs256,
    /// RS256 header, signature of other bytes.
    BadRs256,
    /// ES256 signed by a key whose kid is not in the JWKS until it is fetched again.
    Rotated,
    /// ES256 signed by a key whose kid is never published.
    UnknownKid,
}

type Tweak = Arc<dyn Fn(&mut Map<String, Value>) + Send + Sync>;

/// What the mock does wrong; all off by default.
#[derive(Clone)]
pub struct Faults {
    pub id_sig: Sig,
    pub userinfo_sig: Sig,
    pub userinfo_unsigned: bool,
    pub id_kid_absent: bool,
    /// Publish a second EC key (so a kid-less token is ambiguous).
    pub extra_ec_key: bool,
    /// Publish an unparseable key beside the good ones.
    pub junk_key: bool,
    pub discovery_issuer: Option<String>,
    pub advertise_pkce: bool,
    pub id_tweak: Option<Tweak>,
    pub userinfo_tweak: Option<Tweak>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            id_sig: Sig::Es256,
            userinfo_sig: Sig::Es256,
            userinfo_unsigned: false,
            id_kid_absent: false,
            extra_ec_key: false,
            junk_key: false,
            discovery_issuer: None,
            advertise_pkce: true,
            id_tweak: None,
            userinfo_tweak: None,
        }
    }
}

struct Keys {
    /// The key behind kid `ec1`: `replace_key` swaps it for a fresh one under the same kid.
    ec: Mutex<Arc<EcdsaKeyPair>>,
    ec_extra: EcdsaKeyPair,
    rotated: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

struct Grant {
    nonce: String,
    sub: String,
    acr: String,
    userinfo: Value,
    code_challenge: Option<String>,
}

struct Inner {
    issuer: String,
    client_id: String,
    client_secret: String,
    keys: Keys,
    faults: Mutex<Faults>,
    grants: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashMap<String, String>>,
    jwks_fetches: Mutex<u32>,
    /// `Cache-Control` of the JWKS answer, when set.
    jwks_cache_control: Mutex<Option<String>>,
    /// The time tokens are issued at (Unix seconds): the tests' fixed clock by default.
    now: Mutex<i64>,
    /// The code verifier received at the token endpoint, if any.
    last_code_verifier: Mutex<Option<String>>,
    /// How the client authenticated at the token endpoint last: `post` or `basic`.
    last_client_auth: Mutex<Option<&'static str>>,
}

#[derive(Clone)]
pub struct MockProvider {
    inner: Arc<Inner>,
}

pub const CLIENT_ID: &str = "guichet-test-client";
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789";

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn rsa_key() -> RsaKeyPair {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rsa_test_key.pem");
    let PrivateKeyDer::Pkcs8(der) = PrivateKeyDer::from_pem_file(path).unwrap() else { panic!("PKCS#8 expected") };
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap()
}

fn rsa_jwk(k: &RsaKeyPair, kid: &str) -> Value {
    let c: ring::rsa::PublicKeyComponents<Vec<u8>> = k.public().into();
    json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": b64e(&c.n), "e": b64e(&c.e) })
}

impl MockProvider {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            issuer: format!("http://{addr}/api/v2"),
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            keys: Keys { ec: Mutex::new(Arc::new(ec_key())), ec_extra: ec_key(), rotated: ec_key(), rsa: rsa_key() },
            faults: Mutex::new(Faults::default()),
            grants: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            jwks_fetches: Mutex::new(0),
            jwks_cache_control: Mutex::new(None),
            now: Mutex::new(guichet_now()),
            last_code_verifier: Mutex::new(None),
            last_client_auth: Mutex::new(None),
        });
        let app = Router::new()
            .route("/api/v2/.well-known/openid-configuration", get(discovery))
            .route("/api/v2/jwks", get(jwks))
            .route("/api/v2/token", post(token))
            .route("/api/v2/userinfo", get(userinfo))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { inner }
    }

    pub fn issuer(&self) -> String {
        self.inner.issuer.clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.inner.faults.lock().unwrap() = f;
    }

    /// Replaces the key behind kid `ec1` (same kid, new key material), as a provider that
    /// rotates without changing key ids would.
    pub fn replace_key(&self) {
        *self.inner.keys.ec.lock().unwrap() = Arc::new(ec_key());
    }

    pub fn set_jwks_cache_control(&self, value: &str) {
        *self.inner.jwks_cache_control.lock().unwrap() = Some(value.to_owned());
    }

    /// Issues tokens at this time (Unix seconds) from now on.
    pub fn set_now(&self, t: i64) {
        *self.inner.now.lock().unwrap() = t;
    }

    pub fn jwks_fetches(&self) -> u32 {
        *self.inner.jwks_fetches.lock().unwrap()
    }

    pub fn last_client_auth(&self) -> Option<&'static str> {
        *self.inner.last_client_auth.lock().unwrap()
    }

    pub fn last_code_verifier(&self) -> Option<String> {
        self.inner.last_code_verifier.lock().unwrap().clone()
    }

    /// What the provider's login page would do: a code for `sub` with these userinfo claims,
    /// bound to the authorization request's nonce, acr and PKCE challenge.
    pub fn issue_code(&self, authorize: &HashMap<String, String>, sub: &str, userinfo: Value) -> String {
        let code = guichet::clock::random_hex::<16>(&guichet::clock::SystemRandom::new()).unwrap();
        let acr = authorize.get("acr_values").cloned().unwrap_or_else(|| "eidas1".into());
        let grant = Grant {
            nonce: authorize["nonce"].clone(),
            sub: sub.into(),
            acr,
            userinfo,
            code_challenge: authorize.get("code_challenge").cloned(),
        };
        self.inner.grants.lock().unwrap().insert(code.clone(), grant);
        code
    }

    /// A back-channel logout token for `sub` (signed ES256 by the good key).
    pub fn logout_token(&self, sub: &str, tweak: impl Fn(&mut Map<String, Value>)) -> String {
        let now = *self.inner.now.lock().unwrap();
        let mut c = json!({
            "iss": self.inner.issuer, "aud": self.inner.client_id, "iat": now, "exp": now + 120,
            "jti": "j1", "sub": sub,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} }
        })
        .as_object()
        .unwrap()
        .clone();
        tweak(&mut c);
        sign(&self.inner, Sig::Es256, false, &Value::Object(c))
    }
}

/// The tests' fixed clock time (see helpers::spawn_app) as a Unix timestamp.
pub fn guichet_now() -> i64 {
    time::macros::datetime!(2026-11-28 12:00 UTC).unix_timestamp()
}

fn sign(inner: &Inner, sig: Sig, no_kid: bool, claims: &Value) -> String {
    let rng = SystemRandom::new();
    let (alg, kid) = match sig {
        Sig::Es256 | Sig::BadEs256 => ("ES256", "ec1"),
        Sig::Rotated => ("ES256", "ec-rotated"),
        Sig::UnknownKid => ("ES256", "ec-never-published"),
        Sig::Rs256 | Sig::BadRs256 => ("RS256", "rsa1"),
        Sig::Hs256 => ("HS256", "hs"),
        Sig::None => ("none", "none"),
    };
    let header =
        if no_kid { json!({ "alg": alg, "typ": "JWT" }) } else { json!({ "alg": alg, "kid": kid, "typ": "JWT" }) };
    let input = format!("{}.{}", b64e(header.to_string().as_bytes()), b64e(claims.to_string().as_bytes()));
    let tampered = format!("{input}x");
    let ec = inner.keys.ec.lock().unwrap().clone();
    let signature: Vec<u8> = match sig {
        Sig::Es256 => ec.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        Sig::Rotated | Sig::UnknownKid => inner.keys.rotated.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        Sig::BadEs256 => ec.sign(&rng, tampered.as_bytes()).unwrap().as_ref().to_vec(),
        Sig::Rs256 | Sig::BadRs256 => {
            let msg = if sig == Sig::Rs256 { input.as_bytes() } else { tampered.as_bytes() };
            let mut out = vec![0; inner.keys.rsa.public().modulus_len()];
            inner.keys.rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut out).unwrap();
            out
        }
        Sig::Hs256 => {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, inner.client_secret.as_bytes());
            ring::hmac::sign(&k, input.as_bytes()).as_ref().to_vec()
        }
        Sig::None => Vec::new(),
    };
    format!("{input}.{}", b64e(&signature))
}

async fn discovery(State(inner): State<Arc<Inner>>) -> Response {
    let f = inner.faults.lock().unwrap().clone();
    let base = &inner.issuer;
    let mut doc = json!({
        "issuer": f.discovery_issuer.clone().unwrap_or_else(|| base.clone()),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "HS256"],
        "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
    });
    if f.advertise_pkce {
        doc["code_challenge_methods_supported"] = json!(["S256"]);
    }
    axum::Json(doc).into_response()
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    let f = inner.faults.lock().unwrap().clone();
    let mut fetches = inner.jwks_fetches.lock().unwrap();
    *fetches += 1;
    let ec = inner.keys.ec.lock().unwrap().clone();
    let mut keys = vec![es256_public_jwk(&ec, "ec1"), rsa_jwk(&inner.keys.rsa, "rsa1")];
    if f.extra_ec_key {
        keys.push(es256_public_jwk(&inner.keys.ec_extra, "ec2"));
    }
    if f.junk_key {
        keys.insert(0, json!({ "kty": "EC", "crv": "P-256", "kid": "junk", "x": "not-base64!", "y": "" }));
    }
    // A rotated key appears from the second fetch on, as if the provider had just rotated.
    if f.id_sig == Sig::Rotated && *fetches > 1 {
        keys.push(es256_public_jwk(&inner.keys.rotated, "ec-rotated"));
    }
    let mut resp = axum::Json(json!({ "keys": keys })).into_response();
    if let Some(cc) = inner.jwks_cache_control.lock().unwrap().clone() {
        resp.headers_mut().insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    resp
}

/// `client_secret_post` (id and secret in the form) or `client_secret_basic` (RFC 6749
/// §2.3.1: each form-urlencoded, then HTTP Basic); `None` when neither matches.
fn client_auth(inner: &Inner, headers: &HeaderMap, form: &HashMap<String, String>) -> Option<&'static str> {
    use base64::Engine as _;
    let posted = form.get("client_id").map(String::as_str) == Some(&inner.client_id)
        && form.get("client_secret").map(String::as_str) == Some(&inner.client_secret);
    if posted {
        return Some("post");
    }
    let basic = headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Basic ")?;
    let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(basic).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |v: &str| url::form_urlencoded::parse(format!("v={v}").as_bytes()).next().map(|(_, v)| v.into_owned());
    let matches = decode(id)? == inner.client_id && decode(secret)? == inner.client_secret;
    (matches && !form.contains_key("client_secret")).then_some("basic")
}

async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(method) = client_auth(&inner, &headers, &form) else {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    };
    *inner.last_client_auth.lock().unwrap() = Some(method);
    let Some(grant) = form.get("code").and_then(|c| inner.grants.lock().unwrap().remove(c)) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    };
    *inner.last_code_verifier.lock().unwrap() = form.get("code_verifier").cloned();
    if let Some(challenge) = &grant.code_challenge {
        let ok = form.get("code_verifier").is_some_and(|v| &guichet::auth::oidc::pkce_challenge(v) == challenge);
        if !ok {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
        }
    }
    let f = inner.faults.lock().unwrap().clone();
    let access_token = guichet::clock::random_hex::<16>(&guichet::clock::SystemRandom::new()).unwrap();
    let now = *inner.now.lock().unwrap();
    let mut claims = json!({
        "iss": inner.issuer, "aud": inner.client_id, "sub": grant.sub, "exp": now + 60, "iat": now,
        "auth_time": now, "acr": grant.acr, "nonce": grant.nonce, "at_hash": at_hash_of(&access_token),
        "sid": format!("sid-{}", grant.sub),
    })
    .as_object()
    .unwrap()
    .clone();
    if let Some(t) = &f.id_tweak {
        t(&mut claims);
    }
    let id_token = sign(&inner, f.id_sig, f.id_kid_absent, &Value::Object(claims));
    let mut userinfo = grant.userinfo.as_object().cloned().unwrap_or_default();
    userinfo.insert("sub".into(), json!(grant.sub));
    userinfo.insert("iss".into(), json!(inner.issuer));
    userinfo.insert("aud".into(), json!(inner.client_id));
    inner.tokens.lock().unwrap().insert(access_token.clone(), Value::Object(userinfo).to_string());
    axum::Json(json!({ "access_token": access_token, "token_type": "Bearer", "expires_in": 60, "id_token": id_token }))
        .into_response()
}

async fn userinfo(State(inner): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(stored) = token.and_then(|t| inner.tokens.lock().unwrap().get(t).cloned()) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let f = inner.faults.lock().unwrap().clone();
    let mut claims: Map<String, Value> = serde_json::from_str(&stored).unwrap();
    if let Some(t) = &f.userinfo_tweak {
        t(&mut claims);
    }
    if f.userinfo_unsigned {
        return axum::Json(Value::Object(claims)).into_response();
    }
    let jwt = sign(&inner, f.userinfo_sig, false, &Value::Object(claims));
    ([(header::CONTENT_TYPE, "application/jwt; charset=utf-8")], jwt).into_response()
}
