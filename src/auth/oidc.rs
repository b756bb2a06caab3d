//! OpenID Connect relying party for FranceConnect-v2-style providers: discovery, the
//! authorization request, code exchange, ID token and signed userinfo verification,
//! RP-initiated logout and back-channel logout tokens. Every check of the brief's list is
//! here, in the order the provider's answers arrive; tokens go through `jose` (ES256/RS256).

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use tokio::time::Instant;

use super::http::{HttpClient, HttpError};
use super::jose::{self, JwkSet, JwsError, PINNED_ALGS, Verified};
use super::session::Kind;
use crate::config::ProviderSettings;
use crate::routing::acr_level;

/// At most one JWKS refetch for an unknown `kid` in this interval (a forged kid must not make
/// us hammer the provider).
const JWKS_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Keys are fetched again after this long even when every kid is known.
const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("provider call failed: {0}")]
    Http(#[from] HttpError),
    #[error("token endpoint answered {0}")]
    TokenEndpoint(u16),
    #[error("userinfo endpoint answered {0}")]
    UserinfoEndpoint(u16),
    #[error("token signature: {0}")]
    Jws(#[from] JwsError),
    #[error("ID token refused: {0}")]
    IdToken(&'static str),
    #[error("userinfo refused: {0}")]
    Userinfo(&'static str),
    #[error("logout token refused: {0}")]
    LogoutToken(&'static str),
    #[error("malformed provider answer: {0}")]
    Malformed(&'static str),
}

/// What discovery tells us (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// Checks the shape of an issuer URL (exact-string comparison later, so no trailing slash).
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    let u = url::Url::parse(issuer).map_err(|e| format!("`{issuer}` is not a valid URL ({e})"))?;
    if u.scheme() != "https" && !(u.scheme() == "http" && u.host_str().is_some_and(super::is_loopback_host)) {
        return Err(format!("`{issuer}` must use https:// (plain http only on loopback, for tests)"));
    }
    if issuer.ends_with('/') || u.query().is_some() || u.fragment().is_some() {
        return Err(format!("`{issuer}` must have no trailing slash, query or fragment"));
    }
    Ok(())
}

/// The facts of a verified ID token that the session keeps.
#[derive(Debug, Clone)]
pub struct IdToken {
    pub raw: String,
    pub sub: String,
    pub acr: String,
    pub sid: Option<String>,
}

/// What the callback needs to finish a sign-in it started.
pub struct Expected<'a> {
    pub nonce: &'a str,
    pub min_acr: u8,
}

/// The tokens the code bought.
#[derive(Debug, Deserialize)]
pub struct Tokens {
    pub id_token: String,
    pub access_token: String,
}

#[derive(Debug)]
struct Keys {
    set: Arc<JwkSet>,
    fetched: Option<Instant>,
    forced: Option<Instant>,
}

#[derive(Debug)]
pub struct Provider {
    pub kind: Kind,
    pub settings: ProviderSettings,
    client_secret: SecretString,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    http: HttpClient,
    skew: time::Duration,
    max_age: time::Duration,
    metadata: RwLock<Option<Arc<Metadata>>>,
    keys: RwLock<Keys>,
}

pub struct ProviderInit {
    pub kind: Kind,
    pub settings: ProviderSettings,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    pub skew: Duration,
    pub max_age: Duration,
}

impl Provider {
    pub fn new(init: ProviderInit, http: HttpClient) -> Self {
        Self {
            kind: init.kind,
            settings: init.settings,
            client_secret: init.client_secret,
            redirect_uri: init.redirect_uri,
            post_logout_redirect_uri: init.post_logout_redirect_uri,
            http,
            skew: super::session::to_time(init.skew),
            max_age: super::session::to_time(init.max_age),
            metadata: RwLock::new(None),
            keys: RwLock::new(Keys { set: Arc::new(JwkSet::default()), fetched: None, forced: None }),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Discovery, done on first use and kept (a provider that is down at start does not stop
    /// the gateway; the first sign-in retries).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        if let Some(m) = self.metadata.read().await.as_ref() {
            return Ok(m.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let reply = self.http.get(&url, None).await?;
        if !reply.status.is_success() {
            return Err(OidcError::Discovery(format!("status {}", reply.status.as_u16())));
        }
        let m: Metadata = serde_json::from_slice(&reply.body).map_err(|_| OidcError::Discovery("not JSON".into()))?;
        if m.issuer != self.settings.issuer {
            return Err(OidcError::Discovery(
                "the issuer in the discovery document does not match the configuration".into(),
            ));
        }
        let m = Arc::new(m);
        *self.metadata.write().await = Some(m.clone());
        Ok(m)
    }

    /// Whether PKCE is sent: only when discovery advertises S256 (FranceConnect does not
    /// document PKCE).
    pub fn supports_pkce(m: &Metadata) -> bool {
        m.code_challenge_methods_supported.iter().any(|c| c == "S256")
    }

    /// The authorization request URL.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        acr: &str,
        pkce_challenge: Option<&str>,
    ) -> Result<String, OidcError> {
        let m = self.metadata().await?;
        let mut url =
            url::Url::parse(&m.authorization_endpoint).map_err(|_| OidcError::Malformed("authorization_endpoint"))?;
        let scope = self.scope();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.settings.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("scope", &scope)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("acr_values", acr);
            if self.settings.prompt_login {
                q.append_pair("prompt", "login");
            }
            if let Some(c) = pkce_challenge {
                q.append_pair("code_challenge", c).append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url.into())
    }

    fn scope(&self) -> String {
        let mut scopes = vec!["openid"];
        scopes.extend(self.settings.scopes.iter().map(String::as_str).filter(|s| *s != "openid"));
        scopes.join(" ")
    }

    /// Exchanges the code (it lives 30 s on FranceConnect: called right away).
    pub async fn exchange(&self, code: &str, pkce_verifier: Option<&str>) -> Result<Tokens, OidcError> {
        let m = self.metadata().await?;
        let secret = self.client_secret.expose_secret();
        let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &self.redirect_uri)];
        if let Some(v) = pkce_verifier {
            form.push(("code_verifier", v));
        }
        let basic = self.settings.auth_method == "client_secret_basic";
        if !basic {
            form.push(("client_id", &self.settings.client_id));
            form.push(("client_secret", secret));
        }
        let reply =
            self.http.post_form(&m.token_endpoint, &form, basic.then_some((&*self.settings.client_id, secret))).await?;
        if !reply.status.is_success() {
            return Err(OidcError::TokenEndpoint(reply.status.as_u16()));
        }
        serde_json::from_slice(&reply.body).map_err(|_| OidcError::Malformed("token response"))
    }

    /// Every check the brief lists for an ID token.
    pub async fn verify_id_token(
        &self,
        raw: &str,
        access_token: &str,
        expected: &Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<IdToken, OidcError> {
        let v = self.verify_signature(raw).await?;
        let c = &v.claims;
        self.check_issuer_and_audience(c).map_err(OidcError::IdToken)?;
        let sub = nonempty_str(c, "sub").ok_or(OidcError::IdToken("sub missing"))?;
        let exp = c.get("exp").and_then(Value::as_i64).ok_or(OidcError::IdToken("exp missing"))?;
        if now.unix_timestamp() > exp + self.skew.whole_seconds() {
            return Err(OidcError::IdToken("expired"));
        }
        self.check_iat(c, now).map_err(OidcError::IdToken)?;
        let nonce = c.get("nonce").and_then(Value::as_str).ok_or(OidcError::IdToken("nonce missing"))?;
        if !constant_time_eq(nonce.as_bytes(), expected.nonce.as_bytes()) {
            return Err(OidcError::IdToken("nonce does not match"));
        }
        let acr = c.get("acr").and_then(Value::as_str).ok_or(OidcError::IdToken("acr missing"))?;
        if acr_level(acr).is_none_or(|l| l < expected.min_acr) {
            return Err(OidcError::IdToken("acr below the level asked"));
        }
        if let Some(at_hash) = c.get("at_hash") {
            let want = at_hash_of(access_token);
            if !at_hash.as_str().is_some_and(|h| constant_time_eq(h.as_bytes(), want.as_bytes())) {
                return Err(OidcError::IdToken("at_hash does not match the access token"));
            }
        }
        let sid = c.get("sid").and_then(Value::as_str).map(str::to_owned);
        Ok(IdToken { raw: raw.to_owned(), sub: sub.to_owned(), acr: acr.to_owned(), sid })
    }

    /// Userinfo, as a signed JWT when the provider is configured so (plain JSON refused).
    pub async fn userinfo(&self, access_token: &str, sub: &str) -> Result<Map<String, Value>, OidcError> {
        let m = self.metadata().await?;
        let url = m.userinfo_endpoint.as_deref().ok_or(OidcError::Userinfo("no userinfo endpoint"))?;
        let reply = self.http.get(url, Some(access_token)).await?;
        if !reply.status.is_success() {
            return Err(OidcError::UserinfoEndpoint(reply.status.as_u16()));
        }
        let claims = if reply.content_type.starts_with("application/jwt") {
            let token = std::str::from_utf8(&reply.body).map_err(|_| OidcError::Malformed("userinfo"))?.trim();
            let v = self.verify_signature(token).await?;
            self.check_issuer_and_audience(&v.claims).map_err(OidcError::Userinfo)?;
            v.claims
        } else if self.settings.userinfo_signed {
            return Err(OidcError::Userinfo("unsigned userinfo from a provider configured as signed"));
        } else {
            serde_json::from_slice(&reply.body).map_err(|_| OidcError::Malformed("userinfo"))?
        };
        if claims.get("sub").and_then(Value::as_str) != Some(sub) {
            return Err(OidcError::Userinfo("sub differs from the ID token's"));
        }
        Ok(claims)
    }

    /// A back-channel `logout_token`; returns the `sub` and `sid` it names.
    pub async fn verify_logout_token(
        &self,
        raw: &str,
        now: OffsetDateTime,
    ) -> Result<(Option<String>, Option<String>), OidcError> {
        let v = self.verify_signature(raw).await?;
        let c = &v.claims;
        self.check_issuer_and_audience(c).map_err(OidcError::LogoutToken)?;
        self.check_iat(c, now).map_err(OidcError::LogoutToken)?;
        if c.get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| now.unix_timestamp() > exp + self.skew.whole_seconds())
        {
            return Err(OidcError::LogoutToken("expired"));
        }
        if c.contains_key("nonce") {
            return Err(OidcError::LogoutToken("a logout token must not carry a nonce"));
        }
        let has_event = c.get("events").and_then(Value::as_object).is_some_and(|e| e.contains_key(BACKCHANNEL_EVENT));
        if !has_event {
            return Err(OidcError::LogoutToken("no back-channel logout event"));
        }
        let sub = nonempty_str(c, "sub").map(str::to_owned);
        let sid = nonempty_str(c, "sid").map(str::to_owned);
        if sub.is_none() && sid.is_none() {
            return Err(OidcError::LogoutToken("names neither sub nor sid"));
        }
        Ok((sub, sid))
    }

    /// Where to send the browser to end the provider's session, when it has such an endpoint.
    pub async fn end_session_url(&self, id_token_hint: &str, state: &str) -> Result<Option<String>, OidcError> {
        let m = self.metadata().await?;
        let Some(end) = &m.end_session_endpoint else { return Ok(None) };
        let mut url = url::Url::parse(end).map_err(|_| OidcError::Malformed("end_session_endpoint"))?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", id_token_hint)
            .append_pair("state", state)
            .append_pair("post_logout_redirect_uri", &self.post_logout_redirect_uri);
        Ok(Some(url.into()))
    }

    fn check_issuer_and_audience(&self, c: &Map<String, Value>) -> Result<(), &'static str> {
        if c.get("iss").and_then(Value::as_str) != Some(self.settings.issuer.as_str()) {
            return Err("iss does not match the issuer");
        }
        let client_id = self.settings.client_id.as_str();
        let audiences: Vec<&str> = match c.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err("aud missing"),
        };
        if !audiences.contains(&client_id) {
            return Err("aud does not contain our client_id");
        }
        let azp = c.get("azp").and_then(Value::as_str);
        if (audiences.len() > 1 && azp != Some(client_id)) || azp.is_some_and(|a| a != client_id) {
            return Err("azp is not our client_id");
        }
        Ok(())
    }

    fn check_iat(&self, c: &Map<String, Value>, now: OffsetDateTime) -> Result<(), &'static str> {
        let iat = c.get("iat").and_then(Value::as_i64).ok_or("iat missing")?;
        let now = now.unix_timestamp();
        if iat > now + self.skew.whole_seconds() {
            return Err("iat in the future");
        }
        if iat < now - self.max_age.whole_seconds() {
            return Err("iat too far in the past");
        }
        Ok(())
    }

    /// Verifies with the provider's keys; on an unknown `kid`, fetches the keys again (at
    /// most once per [`JWKS_REFETCH_MIN_INTERVAL`]) and retries once.
    async fn verify_signature(&self, token: &str) -> Result<Verified, OidcError> {
        let keys = self.keys(false).await?;
        match jose::verify(token, &keys, PINNED_ALGS) {
            Err(JwsError::UnknownKid) => {
                let keys = self.keys(true).await?;
                Ok(jose::verify(token, &keys, PINNED_ALGS)?)
            }
            other => Ok(other?),
        }
    }

    async fn keys(&self, unknown_kid: bool) -> Result<Arc<JwkSet>, OidcError> {
        {
            let k = self.keys.read().await;
            let fresh = k.fetched.is_some_and(|t| t.elapsed() < JWKS_MAX_AGE);
            let may_refetch = k.forced.is_none_or(|t| t.elapsed() >= JWKS_REFETCH_MIN_INTERVAL);
            if fresh && (!unknown_kid || !may_refetch) {
                return Ok(k.set.clone());
            }
        }
        let m = self.metadata().await?;
        let reply = self.http.get(&m.jwks_uri, None).await?;
        if !reply.status.is_success() {
            return Err(OidcError::Malformed("JWKS endpoint failed"));
        }
        let set = Arc::new(JwkSet::parse(&reply.body)?);
        let mut k = self.keys.write().await;
        k.set = set.clone();
        k.fetched = Some(Instant::now());
        if unknown_kid {
            k.forced = Some(Instant::now());
        }
        Ok(set)
    }
}

fn nonempty_str<'a>(c: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    c.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (ES256 and RS256 both hash with it).
pub fn at_hash_of(access_token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    jose::b64e(d.as_ref().get(..16).unwrap_or_default())
}

/// PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    jose::b64e(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref())
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_must_be_exact_https_urls() {
        assert!(check_issuer("https://oidc.franceconnect.gouv.fr/api/v2").is_ok());
        assert!(check_issuer("https://oidc.franceconnect.gouv.fr/api/v2/").is_err());
        assert!(check_issuer("http://idp.example.fr").is_err());
        assert!(check_issuer("http://127.0.0.1:9000/api/v2").is_ok());
    }

    #[test]
    fn pkce_and_at_hash_follow_the_rfc_examples() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(at_hash_of("x").len(), 22);
        assert!(constant_time_eq(b"ab", b"ab") && !constant_time_eq(b"ab", b"ac") && !constant_time_eq(b"a", b"ab"));
    }
}
