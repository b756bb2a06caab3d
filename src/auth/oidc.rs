//! OpenID Connect relying party for FranceConnect-v2-style providers, on the `openidconnect`
//! crate: discovery (with `end_session_endpoint` and PKCE methods), the authorization request,
//! the code exchange and ID token verification (algorithms pinned, times from the injected
//! clock, acr, azp, at_hash) go through the crate, over our own hyper client (`http`). Signed
//! userinfo (ES256 and RS256) and back-channel logout tokens, which the crate does not cover,
//! are verified by `jose` with the same key cache. Keys are fetched again when their HTTP
//! cache lifetime ends (bounded to 5 min..24 h) and, at most once a minute, after a signature
//! fails under an unknown or a known `kid` (FranceConnect's key-rotation advice).

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreErrorResponseType,
    CoreGenderClaim, CoreGrantType, CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse, CoreSubjectIdentifierType,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthenticationContextClass,
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken as CrateIdToken, IdTokenClaims, IdTokenFields, IssuerUrl,
    JsonWebKeySet, LogoutProviderMetadata, LogoutRequest, Nonce, OAuth2TokenResponse as _, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadata, RedirectUrl, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::RwLock;

use super::http::{HttpClient, HttpError, Reply};
use super::jose::{self, JwkSet, JwsError, PINNED_ALGS, Verified};
use super::session::Kind;
use crate::clock::Clock;
use crate::config::ProviderSettings;
use crate::routing::acr_level;

/// At most one JWKS refetch after a signature failure in this interval (a forged kid or
/// signature must not make us hammer the provider).
pub const JWKS_REFETCH_MIN_INTERVAL: time::Duration = time::Duration::minutes(1);
/// How long keys are used when the provider's answer says nothing about caching.
pub const JWKS_DEFAULT_TTL: time::Duration = time::Duration::hours(1);
/// Bounds on the cache lifetime the provider's headers ask for: keys are never kept longer
/// than a day, and never fetched more often than every five minutes on schedule.
pub const JWKS_MIN_TTL: time::Duration = time::Duration::minutes(5);
pub const JWKS_MAX_TTL: time::Duration = time::Duration::hours(24);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The ID token algorithms accepted, whatever discovery advertises: never `none`, never HS*.
const PINNED_ID_TOKEN_ALGS: [CoreJwsSigningAlgorithm; 2] =
    [CoreJwsSigningAlgorithm::EcdsaP256Sha256, CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("discovery failed: {0}")]
    Discovery(String),
    #[error("key set (JWKS) fetch failed: {0}")]
    Jwks(String),
    #[error("token endpoint: {0}")]
    TokenEndpoint(String),
    #[error("userinfo endpoint unreachable: {0}")]
    UserinfoUnreachable(HttpError),
    #[error("userinfo endpoint answered {0}")]
    UserinfoEndpoint(u16),
    #[error("token signature: {0}")]
    Jws(#[from] JwsError),
    #[error("ID token refused: {0}")]
    IdToken(String),
    #[error("userinfo refused: {0}")]
    Userinfo(&'static str),
    #[error("logout token refused: {0}")]
    LogoutToken(&'static str),
    #[error("malformed provider answer: {0}")]
    Malformed(&'static str),
}

/// Discovery fields beyond OpenID Connect Discovery's and RP-Initiated Logout's that we read.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// The discovery document: `ProviderMetadataWithLogout` plus the PKCE methods.
pub type Metadata = ProviderMetadata<
    LogoutProviderMetadata<ExtraMetadata>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// ID token claims beyond the standard ones that we keep.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    /// The provider's session id (back-channel logout names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl AdditionalClaims for ExtraClaims {}

/// An ID token as the token endpoint returned it (not yet verified).
pub type ProviderIdToken =
    CrateIdToken<ExtraClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type ProviderIdTokenClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        openidconnect::EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
/// The crate's client with our claims, an authorization and a token endpoint.
type OidcClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

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
#[derive(Debug)]
pub struct Tokens {
    pub id_token: ProviderIdToken,
    pub access_token: String,
}

/// What discovery gave, and the crate's client built from it.
#[derive(Debug)]
pub struct Discovered {
    pub metadata: Metadata,
    client: OidcClient,
}

impl Discovered {
    /// Whether PKCE is sent: only when discovery advertises S256 (FranceConnect does not
    /// document PKCE).
    pub fn supports_pkce(&self) -> bool {
        let extra = &self.metadata.additional_metadata().additional_metadata;
        extra.code_challenge_methods_supported.iter().any(|c| c == "S256")
    }
}

/// The provider's keys, in the crate's form (ID tokens) and ours (userinfo, logout tokens).
#[derive(Debug, Clone, Default)]
struct KeySets {
    core: Arc<CoreJsonWebKeySet>,
    jose: Arc<JwkSet>,
}

impl KeySets {
    fn from_core(core: CoreJsonWebKeySet) -> Result<Self, OidcError> {
        let json = serde_json::to_vec(&core).map_err(|_| OidcError::Malformed("JWKS"))?;
        let jose = JwkSet::parse(&json)?;
        Ok(Self { core: Arc::new(core), jose: Arc::new(jose) })
    }
}

/// The cached keys, when they must be fetched again, and when a signature failure last made
/// us fetch them (times from the injected clock).
#[derive(Debug, Default)]
struct Keys {
    sets: KeySets,
    fresh_until: Option<OffsetDateTime>,
    last_forced: Option<OffsetDateTime>,
}

#[derive(Debug)]
pub struct Provider {
    pub kind: Kind,
    /// The operator's name for this provider (`franceconnect`, `franceconnect-plus`…):
    /// pending sign-ins remember it, logs show it.
    pub name: String,
    pub settings: ProviderSettings,
    /// The eIDAS levels this provider serves (1..=3), lowest first.
    pub levels: Vec<u8>,
    client_secret: SecretString,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    http: HttpClient,
    skew: time::Duration,
    max_age: time::Duration,
    clock: Arc<dyn Clock>,
    discovered: RwLock<Option<Cached>>,
    keys: RwLock<Keys>,
    /// Set when the provider encrypts its tokens (FranceConnect+): the key they are encrypted
    /// to, and unencrypted tokens are refused.
    decryption: Option<Arc<super::jwe::DecryptionKey>>,
}

/// The discovery document in hand, and when it must be read again (injected clock).
#[derive(Debug, Clone)]
struct Cached {
    discovered: Arc<Discovered>,
    refresh_at: OffsetDateTime,
}

/// How long a discovery document is used before it is read again: a provider that moves an
/// endpoint or starts advertising PKCE is followed within a day, without a restart.
pub const DISCOVERY_TTL: time::Duration = time::Duration::hours(24);
/// After a failed re-discovery, the document in hand serves this long before the next try.
pub const DISCOVERY_RETRY: time::Duration = time::Duration::minutes(1);

pub struct ProviderInit {
    pub kind: Kind,
    pub name: String,
    pub settings: ProviderSettings,
    pub client_secret: SecretString,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    pub skew: Duration,
    pub max_age: Duration,
    pub clock: Arc<dyn Clock>,
    pub decryption: Option<Arc<super::jwe::DecryptionKey>>,
}

impl Provider {
    pub fn new(init: ProviderInit, http: HttpClient) -> Self {
        let levels = served_levels(&init.settings);
        Self {
            kind: init.kind,
            name: init.name,
            levels,
            settings: init.settings,
            client_secret: init.client_secret,
            redirect_uri: init.redirect_uri,
            post_logout_redirect_uri: init.post_logout_redirect_uri,
            http,
            skew: super::session::to_time(init.skew),
            max_age: super::session::to_time(init.max_age),
            clock: init.clock,
            discovered: RwLock::new(None),
            keys: RwLock::new(Keys::default()),
            decryption: init.decryption,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// The level to ask this provider for a route needing at least `needed`: the lowest level
    /// it serves that is at least `needed` and at least its configured `acr`; `None` when it
    /// serves nothing that high.
    pub fn level_for(&self, needed: u8) -> Option<u8> {
        let floor = needed.max(acr_level(&self.settings.acr).unwrap_or(1));
        self.levels.iter().copied().find(|l| *l >= floor).or_else(|| self.levels.iter().copied().find(|l| *l >= needed))
    }

    /// Discovery (the document parsed into the crate's metadata, its issuer compared exactly,
    /// then the keys fetched with their cache lifetime), done on first use and again once a
    /// day: a provider that is down at start does not stop the gateway (the first sign-in
    /// retries), and one that is down when the document is due keeps being used with the
    /// document in hand (tried again a minute later).
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        let now = self.clock.now();
        let held = self.discovered.read().await.clone();
        match held {
            Some(c) if now < c.refresh_at => Ok(c.discovered),
            Some(c) => match self.discover().await {
                Ok(d) => Ok(self.keep(d, now).await),
                Err(e) => {
                    tracing::warn!(provider = %self.name, error = %e,
                        "cannot read the provider's discovery document again; keeping the one in hand");
                    let retry = Cached { discovered: c.discovered.clone(), refresh_at: now + DISCOVERY_RETRY };
                    *self.discovered.write().await = Some(retry);
                    Ok(c.discovered)
                }
            },
            None => {
                let d = self.discover().await?;
                Ok(self.keep(d, now).await)
            }
        }
    }

    async fn keep(&self, d: Arc<Discovered>, now: OffsetDateTime) -> Arc<Discovered> {
        *self.discovered.write().await = Some(Cached { discovered: d.clone(), refresh_at: now + DISCOVERY_TTL });
        d
    }

    /// Reads the discovery document and the keys it names.
    async fn discover(&self) -> Result<Arc<Discovered>, OidcError> {
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| OidcError::Discovery(e.to_string()))?;
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer);
        let reply = self.http.get(&url, None).await.map_err(|e| OidcError::Discovery(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(OidcError::Discovery(format!("the provider answered {}", reply.status.as_u16())));
        }
        let metadata: Metadata = serde_json::from_slice(&reply.body)
            .map_err(|e| OidcError::Discovery(format!("unreadable document ({e})")))?;
        if metadata.issuer() != &issuer {
            return Err(OidcError::Discovery("the document's issuer differs from the configured issuer".into()));
        }
        let token_url = metadata.token_endpoint().cloned().ok_or(OidcError::Malformed("token_endpoint"))?;
        let redirect = RedirectUrl::new(self.redirect_uri.clone()).map_err(|_| OidcError::Malformed("redirect_uri"))?;
        let auth_type = match self.settings.auth_method.as_str() {
            "client_secret_basic" => AuthType::BasicAuth,
            _ => AuthType::RequestBody,
        };
        let client: OidcClient = Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.client_secret.expose_secret().to_owned())),
        )
        .set_token_uri(token_url)
        .set_redirect_uri(redirect)
        .set_auth_type(auth_type);
        let (sets, ttl) = self.fetch_keys(&metadata).await?;
        self.store_keys(sets, ttl, false).await;
        Ok(Arc::new(Discovered { metadata, client }))
    }

    /// The authorization request URL (code flow), with our `state` and `nonce` (32 random
    /// bytes in hex each, not the crate's shorter defaults), `acr_values`, PKCE S256 when a
    /// verifier is given, and `prompt=login` when configured.
    pub async fn authorize_url(
        &self,
        state: &str,
        nonce: &str,
        acr: &str,
        pkce_verifier: Option<&str>,
    ) -> Result<String, OidcError> {
        let d = self.discovered().await?;
        let (state, nonce) = (CsrfToken::new(state.to_owned()), Nonce::new(nonce.to_owned()));
        let mut request = d
            .client
            .authorize_url(AuthenticationFlow::<CoreResponseType>::AuthorizationCode, move || state, move || nonce)
            .add_scopes(self.settings.scopes.iter().filter(|s| *s != "openid").map(|s| Scope::new(s.clone())))
            .add_auth_context_value(AuthenticationContextClass::new(acr.to_owned()));
        if self.settings.prompt_login {
            request = request.add_prompt(CoreAuthPrompt::Login);
        }
        if let Some(v) = pkce_verifier {
            request = request.set_pkce_challenge(pkce_challenge_of(v)?);
        }
        let (url, _, _) = request.url();
        Ok(url.into())
    }

    /// Exchanges the code (it lives 30 s on FranceConnect: called right away), with
    /// `client_secret_post` or `client_secret_basic` as configured.
    pub async fn exchange(&self, code: &str, pkce_verifier: Option<&str>) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let mut request = d.client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = pkce_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(v.to_owned()));
        }
        let response = match &self.decryption {
            Some(key) => request.request_async(&Decrypting { http: &self.http, key }).await.map_err(token_error)?,
            None => request.request_async(&self.http).await.map_err(token_error)?,
        };
        let id_token = response.id_token().cloned().ok_or(OidcError::Malformed("no id_token in the token response"))?;
        Ok(Tokens { id_token, access_token: response.access_token().secret().clone() })
    }

    /// Every check the brief lists for an ID token: the crate verifies the signature (ES256 or
    /// RS256 only, with our cached keys), `iss`, `aud`, `exp`, `iat`, `nonce` and `acr`; `azp`,
    /// `sub` and `at_hash` are checked here. A signature that fails (unknown or known `kid`)
    /// refetches the keys, at most once a minute, and is checked once more.
    pub async fn verify_id_token(
        &self,
        token: &ProviderIdToken,
        access_token: &str,
        expected: &Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<IdToken, OidcError> {
        let d = self.discovered().await?;
        let raw = token.to_string();
        let keys = self.keys().await?;
        let claims = match self.check_id_token(d.metadata.issuer(), token, &keys.core, access_token, expected, now) {
            Err(e) if e.is_signature_failure() => match self.keys_after_failure().await? {
                Some(keys) => self
                    .check_id_token(d.metadata.issuer(), token, &keys.core, access_token, expected, now)
                    .map_err(Check::into_error)?,
                None => return Err(e.into_error()),
            },
            other => other.map_err(Check::into_error)?,
        };
        let sub = claims.subject().as_str();
        if sub.is_empty() {
            return Err(OidcError::IdToken("sub missing".into()));
        }
        let client_id = self.settings.client_id.as_str();
        let azp = claims.authorized_party().map(|a| a.as_str());
        if (claims.audiences().len() > 1 && azp != Some(client_id)) || azp.is_some_and(|a| a != client_id) {
            return Err(OidcError::IdToken("azp is not our client_id".into()));
        }
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned()).unwrap_or_default();
        Ok(IdToken { raw, sub: sub.to_owned(), acr, sid: claims.additional_claims().sid.clone() })
    }

    /// One verification of `token` with `keys`. A kid-less token that several keys of its
    /// algorithm could have signed is tried against each of them.
    fn check_id_token(
        &self,
        issuer: &IssuerUrl,
        token: &ProviderIdToken,
        keys: &CoreJsonWebKeySet,
        access_token: &str,
        expected: &Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<ProviderIdTokenClaims, Check> {
        match self.check_id_token_with(issuer, token, keys.clone(), access_token, expected, now) {
            Err(Check::Claims(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::AmbiguousKeyId(_),
            ))) => keys
                .keys()
                .iter()
                .find_map(|k| {
                    let single = JsonWebKeySet::new(vec![k.clone()]);
                    self.check_id_token_with(issuer, token, single, access_token, expected, now).ok()
                })
                .ok_or(Check::NoKeyVerifies),
            other => other,
        }
    }

    fn check_id_token_with(
        &self,
        issuer: &IssuerUrl,
        token: &ProviderIdToken,
        keys: CoreJsonWebKeySet,
        access_token: &str,
        expected: &Expected<'_>,
        now: OffsetDateTime,
    ) -> Result<ProviderIdTokenClaims, Check> {
        let verifier = self.id_token_verifier(issuer, keys, expected.min_acr, now);
        let claims = token.claims(&verifier, &Nonce::new(expected.nonce.to_owned())).map_err(Check::Claims)?;
        if let Some(at_hash) = claims.access_token_hash() {
            let alg = token.signing_alg().map_err(Check::signature)?;
            let key = token.signing_key(&verifier).map_err(Check::signature)?;
            let want = AccessTokenHash::from_token(&AccessToken::new(access_token.to_owned()), alg, key)
                .map_err(|_| Check::Other("cannot compute at_hash"))?;
            if !constant_time_eq(at_hash.as_bytes(), want.as_bytes()) {
                return Err(Check::Other("at_hash does not match the access token"));
            }
        }
        Ok(claims.clone())
    }

    /// The crate's verifier, configured for FranceConnect: a public-client verifier (so no
    /// shared-secret algorithm can ever be accepted) pinned to ES256/RS256, with our keys, the
    /// injected clock minus the allowed skew for `exp`, our `iat` window, and `acr` at least
    /// the level asked. Several audiences are let through to the `azp` check.
    fn id_token_verifier<'a>(
        &self,
        issuer: &IssuerUrl,
        keys: CoreJsonWebKeySet,
        min_acr: u8,
        now: OffsetDateTime,
    ) -> CoreIdTokenVerifier<'a> {
        let (skew, max_age) = (self.skew.whole_seconds(), self.max_age.whole_seconds());
        let now_secs = now.unix_timestamp();
        let exp_now = chrono::DateTime::from_timestamp(now_secs.saturating_sub(skew), 0)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        CoreIdTokenVerifier::new_public_client(ClientId::new(self.settings.client_id.clone()), issuer.clone(), keys)
            .set_allowed_algs(PINNED_ID_TOKEN_ALGS)
            .set_other_audience_verifier_fn(|_| true)
            .set_time_fn(move || exp_now)
            .set_issue_time_verifier_fn(move |iat| {
                iat_window(iat.timestamp(), now_secs, skew, max_age).map_err(str::to_owned)
            })
            .set_auth_context_verifier_fn(move |acr| match acr {
                None => Err("acr missing".to_owned()),
                Some(a) if acr_level(a.as_str()).is_none_or(|l| l < min_acr) => {
                    Err("acr below the level asked".to_owned())
                }
                Some(_) => Ok(()),
            })
    }

    /// Userinfo, as a signed JWT when the provider is configured so (plain JSON refused),
    /// verified by `jose` for ES256 and RS256 (the crate verifies signed userinfo with RS256
    /// only).
    pub async fn userinfo(&self, access_token: &str, sub: &str) -> Result<Map<String, Value>, OidcError> {
        let d = self.discovered().await?;
        let url = d.metadata.userinfo_endpoint().ok_or(OidcError::Userinfo("no userinfo endpoint"))?;
        let reply = self.http.get(url.as_str(), Some(access_token)).await.map_err(OidcError::UserinfoUnreachable)?;
        if !reply.status.is_success() {
            return Err(OidcError::UserinfoEndpoint(reply.status.as_u16()));
        }
        let claims = if reply.content_type.starts_with("application/jwt") {
            let token = std::str::from_utf8(&reply.body).map_err(|_| OidcError::Malformed("userinfo"))?.trim();
            let token = self.decrypted(token).map_err(OidcError::Userinfo)?;
            let v = self.verify_signature(&token).await?;
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

    /// The signed token inside `token` when this provider encrypts (an unencrypted one is then
    /// refused), `token` itself otherwise.
    fn decrypted(&self, token: &str) -> Result<String, &'static str> {
        let Some(key) = &self.decryption else { return Ok(token.to_owned()) };
        if !super::jwe::is_jwe(token) {
            return Err("unencrypted token from a provider configured as encrypting");
        }
        let plain = key.decrypt(token).map_err(|_| "the encrypted token does not decrypt with our key")?;
        String::from_utf8(plain).map_err(|_| "the encrypted token does not hold a JWT")
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
        let iat = c.get("iat").and_then(Value::as_i64).ok_or(OidcError::LogoutToken("iat missing"))?;
        iat_window(iat, now.unix_timestamp(), self.skew.whole_seconds(), self.max_age.whole_seconds())
            .map_err(OidcError::LogoutToken)?;
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

    /// Where to send the browser to end the provider's session (RP-Initiated Logout: the
    /// crate's `LogoutRequest` with `id_token_hint`, `post_logout_redirect_uri` and `state`),
    /// when it has such an endpoint.
    pub async fn end_session_url(&self, id_token_hint: &str, state: &str) -> Result<Option<String>, OidcError> {
        let d = self.discovered().await?;
        let Some(end) = d.metadata.additional_metadata().end_session_endpoint.clone() else { return Ok(None) };
        let hint: ProviderIdToken = id_token_hint.parse().map_err(|_| OidcError::Malformed("stored ID token"))?;
        let back = PostLogoutRedirectUrl::new(self.post_logout_redirect_uri.clone())
            .map_err(|_| OidcError::Malformed("post_logout_redirect_uri"))?;
        let url = LogoutRequest::from(end)
            .set_id_token_hint(&hint)
            .set_post_logout_redirect_uri(back)
            .set_state(CsrfToken::new(state.to_owned()))
            .http_get_url();
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

    /// Verifies a userinfo or logout token with the provider's keys (`jose`, ES256/RS256); a
    /// signature that fails under an unknown or a known `kid` refetches the keys (at most once
    /// per [`JWKS_REFETCH_MIN_INTERVAL`]) and is checked once more.
    async fn verify_signature(&self, token: &str) -> Result<Verified, OidcError> {
        let keys = self.keys().await?;
        match jose::verify(token, &keys.jose, PINNED_ALGS) {
            Err(e @ (JwsError::UnknownKid | JwsError::BadSignature | JwsError::NoKey)) => {
                match self.keys_after_failure().await? {
                    Some(keys) => Ok(jose::verify(token, &keys.jose, PINNED_ALGS)?),
                    None => Err(e.into()),
                }
            }
            other => Ok(other?),
        }
    }

    /// The cached keys, fetched again once their cache lifetime has passed. When that refresh
    /// fails, the keys in hand are kept a minute longer (a provider's hiccup must not stop
    /// sign-ins that the keys it published still verify).
    async fn keys(&self) -> Result<KeySets, OidcError> {
        let d = self.discovered().await?;
        let now = self.clock.now();
        {
            let k = self.keys.read().await;
            if k.fresh_until.is_some_and(|t| now < t) {
                return Ok(k.sets.clone());
            }
        }
        match self.fetch_keys(&d.metadata).await {
            Ok((sets, ttl)) => {
                self.store_keys(sets.clone(), ttl, false).await;
                Ok(sets)
            }
            Err(e) => {
                let mut k = self.keys.write().await;
                if k.sets.jose.keys.is_empty() {
                    return Err(e);
                }
                tracing::warn!(provider = %self.name, error = %e, "key refresh failed; keeping the keys in hand");
                k.fresh_until = Some(now + JWKS_REFETCH_MIN_INTERVAL);
                Ok(k.sets.clone())
            }
        }
    }

    /// After a signature failure: the keys fetched again, unless that was done less than
    /// [`JWKS_REFETCH_MIN_INTERVAL`] ago (`None`: nothing new to try).
    async fn keys_after_failure(&self) -> Result<Option<KeySets>, OidcError> {
        let d = self.discovered().await?;
        let now = self.clock.now();
        if self.keys.read().await.last_forced.is_some_and(|t| now - t < JWKS_REFETCH_MIN_INTERVAL) {
            return Ok(None);
        }
        // Claimed before the fetch, so concurrent failures make one fetch, not many.
        self.keys.write().await.last_forced = Some(now);
        let (sets, ttl) = self.fetch_keys(&d.metadata).await?;
        self.store_keys(sets.clone(), ttl, true).await;
        Ok(Some(sets))
    }

    /// Fetches the key set at `jwks_uri` and how long it may be kept (its `Cache-Control:
    /// max-age` or `Expires`, within [`JWKS_MIN_TTL`]..[`JWKS_MAX_TTL`]). Unparseable keys are
    /// skipped (the crate's key-set reader), the good ones still verify.
    async fn fetch_keys(&self, metadata: &Metadata) -> Result<(KeySets, time::Duration), OidcError> {
        let reply =
            self.http.get(metadata.jwks_uri().as_str(), None).await.map_err(|e| OidcError::Jwks(e.to_string()))?;
        if !reply.status.is_success() {
            return Err(OidcError::Jwks(format!("the provider answered {}", reply.status.as_u16())));
        }
        let core: CoreJsonWebKeySet =
            serde_json::from_slice(&reply.body).map_err(|e| OidcError::Jwks(format!("unreadable key set ({e})")))?;
        Ok((KeySets::from_core(core)?, cache_lifetime(&reply, self.clock.now())))
    }

    async fn store_keys(&self, sets: KeySets, ttl: time::Duration, forced: bool) {
        let now = self.clock.now();
        let mut k = self.keys.write().await;
        k.sets = sets;
        k.fresh_until = Some(now + ttl);
        if forced {
            k.last_forced = Some(now);
        }
    }
}

/// How long a key set may be used, from the answer's cache headers: `no-store`/`no-cache`
/// and tiny lifetimes give the minimum, missing headers the default, anything else is kept
/// within [`JWKS_MIN_TTL`]..=[`JWKS_MAX_TTL`].
pub fn cache_lifetime(reply: &Reply, now: OffsetDateTime) -> time::Duration {
    let header = |name: http::HeaderName| reply.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let from_cache_control = header(http::header::CACHE_CONTROL).and_then(|cc| {
        let directives: Vec<String> = cc.split(',').map(|d| d.trim().to_ascii_lowercase()).collect();
        if directives.iter().any(|d| d == "no-store" || d == "no-cache") {
            return Some(time::Duration::ZERO);
        }
        directives
            .iter()
            .find_map(|d| d.strip_prefix("max-age="))
            .and_then(|v| v.trim_matches('"').parse::<i64>().ok())
            .map(time::Duration::seconds)
    });
    let from_expires =
        || header(http::header::EXPIRES).map(|e| http_date(&e).map_or(time::Duration::ZERO, |t| t - now));
    from_cache_control.or_else(from_expires).unwrap_or(JWKS_DEFAULT_TTL).clamp(JWKS_MIN_TTL, JWKS_MAX_TTL)
}

/// An HTTP date (IMF-fixdate, RFC 9110 §5.6.7); `None` for the obsolete forms, which then
/// count as already expired.
fn http_date(v: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v.trim(), format).ok().map(time::PrimitiveDateTime::assume_utc)
}

/// The levels a provider serves: its `acr_values`, or every eIDAS level when none are listed
/// (a single provider configured before several were possible keeps serving step-ups).
fn served_levels(settings: &ProviderSettings) -> Vec<u8> {
    let mut levels: Vec<u8> = settings.acr_values.iter().filter_map(|a| acr_level(a)).collect();
    if levels.is_empty() {
        levels = vec![1, 2, 3];
    }
    levels.sort_unstable();
    levels.dedup();
    levels
}

/// The token endpoint's failure, named for what failed: a token response the crate cannot
/// read because of its ID token is an ID token problem, not a token-endpoint one.
/// The token endpoint's client for a provider that encrypts its ID tokens: the answer's
/// `id_token` (a JWE) is replaced by the signed JWT inside before the crate reads and verifies
/// it. An unencrypted or undecryptable ID token fails the exchange.
struct Decrypting<'a> {
    http: &'a HttpClient,
    key: &'a super::jwe::DecryptionKey,
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Decrypting<'_> {
    type Error = DecryptError;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, DecryptError>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut response = self.http.call(request).await.map_err(DecryptError::Http)?;
            if response.status().is_success() {
                let body = decrypt_id_token(response.body(), self.key)?;
                *response.body_mut() = body;
            }
            Ok(response)
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum DecryptError {
    #[error(transparent)]
    Http(HttpError),
    #[error("{0}")]
    IdToken(&'static str),
}

fn decrypt_id_token(body: &[u8], key: &super::jwe::DecryptionKey) -> Result<Vec<u8>, DecryptError> {
    let mut answer: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| DecryptError::IdToken("unreadable token response"))?;
    let Some(Value::String(token)) = answer.get("id_token") else { return Ok(body.to_vec()) };
    if !super::jwe::is_jwe(token) {
        return Err(DecryptError::IdToken("unencrypted ID token from a provider configured as encrypting"));
    }
    let plain = key
        .decrypt(token)
        .map_err(|_| DecryptError::IdToken("the encrypted ID token does not decrypt with our key"))?;
    let inner =
        String::from_utf8(plain).map_err(|_| DecryptError::IdToken("the encrypted ID token does not hold a JWT"))?;
    answer.insert("id_token".into(), Value::String(inner));
    serde_json::to_vec(&answer).map_err(|_| DecryptError::IdToken("unreadable token response"))
}

fn token_error<RE: std::error::Error + 'static>(
    e: openidconnect::RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> OidcError {
    match e {
        openidconnect::RequestTokenError::Parse(error, body) => match id_token_problem(&body) {
            Some(problem) => OidcError::IdToken(problem),
            None => OidcError::TokenEndpoint(format!("unreadable answer at `{}`", error.path())),
        },
        openidconnect::RequestTokenError::ServerResponse(r) => {
            OidcError::TokenEndpoint(format!("the provider refused the code: {}", r.error()))
        }
        openidconnect::RequestTokenError::Request(e) => {
            match (&e as &dyn std::error::Error).downcast_ref::<DecryptError>() {
                Some(DecryptError::IdToken(problem)) => OidcError::IdToken((*problem).to_owned()),
                _ => OidcError::TokenEndpoint(format!("unreachable: {e}")),
            }
        }
        other => OidcError::TokenEndpoint(other.to_string()),
    }
}

/// What is wrong with the ID token of a token response the crate could not read, if the
/// ID token is the cause: a claim every ID token must carry is missing or not of its type.
/// Only claim names are reported, never values.
fn id_token_problem(body: &[u8]) -> Option<String> {
    let response: Value = serde_json::from_slice(body).ok()?;
    let raw = response.get("id_token")?.as_str()?;
    let payload = raw.split('.').nth(1).ok_or("malformed").and_then(|p| jose::b64(p).map_err(|_| "malformed"));
    let Ok(payload) = payload else { return Some("not a compact JWT".into()) };
    let Ok(Value::Object(claims)) = serde_json::from_slice::<Value>(&payload) else {
        return Some("claims are not a JSON object".into());
    };
    for name in ["iss", "sub", "aud", "exp", "iat"] {
        match claims.get(name) {
            None => return Some(format!("{name} missing")),
            Some(Value::String(s)) if s.is_empty() && name == "sub" => return Some("sub missing".into()),
            Some(_) => {}
        }
    }
    Some("claims not readable as an ID token".into())
}

/// Why one verification attempt failed: the crate's reason, or one of ours.
enum Check {
    Claims(ClaimsVerificationError),
    /// A kid-less token that no key of the set verifies.
    NoKeyVerifies,
    Other(&'static str),
}

impl Check {
    /// A failure that newer keys could fix: no key for the `kid`, or a signature the key in
    /// hand does not verify (the provider may have replaced the key behind a known `kid`).
    /// A disallowed algorithm or a bad claim is not one.
    fn is_signature_failure(&self) -> bool {
        matches!(
            self,
            Self::NoKeyVerifies
                | Self::Claims(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey
                        | SignatureVerificationError::CryptoError(_)
                        | SignatureVerificationError::InvalidKey(_)
                ))
        )
    }

    fn signature(e: SignatureVerificationError) -> Self {
        Self::Claims(ClaimsVerificationError::SignatureVerification(e))
    }

    fn into_error(self) -> OidcError {
        match self {
            Self::Claims(ClaimsVerificationError::SignatureVerification(e)) => {
                OidcError::IdToken(format!("signature: {e}"))
            }
            Self::Claims(e) => OidcError::IdToken(e.to_string()),
            Self::NoKeyVerifies => OidcError::IdToken("signature: no key verifies the kid-less token".into()),
            Self::Other(e) => OidcError::IdToken(e.to_owned()),
        }
    }
}

/// `iat` present, not in the future (beyond the skew), not older than the maximum token age.
fn iat_window(iat: i64, now: i64, skew: i64, max_age: i64) -> Result<(), &'static str> {
    if iat > now.saturating_add(skew) {
        return Err("iat in the future");
    }
    if iat < now.saturating_sub(max_age) {
        return Err("iat too far in the past");
    }
    Ok(())
}

/// The S256 challenge of our verifier (64 hex chars: within RFC 7636's 43..=128, which the
/// crate asserts).
fn pkce_challenge_of(verifier: &str) -> Result<PkceCodeChallenge, OidcError> {
    if !(43..=128).contains(&verifier.len()) {
        return Err(OidcError::Malformed("PKCE verifier length"));
    }
    Ok(PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned())))
}

/// The `iss` claim of a token, read without verifying it: only to pick which provider's
/// keys then verify the whole token.
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = jose::b64(token.split('.').nth(1)?).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

fn nonempty_str<'a>(c: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    c.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// OIDC Core §3.1.3.6: base64url of the left half of SHA-256 (ES256 and RS256 both hash with
/// it). Provider side: the demo provider and the tests' mock put it in their ID tokens.
pub fn at_hash_of(access_token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    jose::b64e(d.as_ref().get(..16).unwrap_or_default())
}

/// PKCE S256 challenge of a verifier. Provider side: the demo provider and the tests' mock
/// check the verifier with it.
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
        let v = "0123456789abcdef".repeat(4);
        assert_eq!(pkce_challenge_of(&v).unwrap().as_str(), pkce_challenge(&v));
        assert!(pkce_challenge_of("short").is_err());
    }

    #[test]
    fn key_cache_lifetime_follows_the_headers_within_bounds() {
        let now = time::macros::datetime!(2026-11-28 12:00 UTC);
        let reply = |pairs: &[(http::HeaderName, &str)]| {
            let mut headers = http::HeaderMap::new();
            for (k, v) in pairs {
                headers.insert(k.clone(), v.parse().unwrap());
            }
            Reply { status: http::StatusCode::OK, headers, content_type: String::new(), body: bytes::Bytes::new() }
        };
        let (cc, exp) = (http::header::CACHE_CONTROL, http::header::EXPIRES);
        let ttl = |pairs: &[(http::HeaderName, &str)]| cache_lifetime(&reply(pairs), now);
        assert_eq!(ttl(&[]), JWKS_DEFAULT_TTL);
        assert_eq!(ttl(&[(cc.clone(), "public, max-age=900")]), time::Duration::minutes(15));
        assert_eq!(ttl(&[(cc.clone(), "max-age=5")]), JWKS_MIN_TTL);
        assert_eq!(ttl(&[(cc.clone(), "no-store")]), JWKS_MIN_TTL);
        assert_eq!(ttl(&[(cc.clone(), "max-age=9999999")]), JWKS_MAX_TTL);
        assert_eq!(ttl(&[(exp.clone(), "Sat, 28 Nov 2026 14:00:00 GMT")]), time::Duration::hours(2));
        assert_eq!(ttl(&[(exp.clone(), "not a date")]), JWKS_MIN_TTL);
        // Cache-Control wins over Expires (RFC 9111 §5.3).
        assert_eq!(ttl(&[(cc, "max-age=600"), (exp, "Sat, 28 Nov 2026 14:00:00 GMT")]), time::Duration::minutes(10));
    }

    #[test]
    fn a_token_response_whose_id_token_lacks_sub_is_an_id_token_problem() {
        let claims = serde_json::json!({ "iss": ISSUER, "aud": CLIENT, "exp": NOW, "iat": NOW });
        let token = format!("{}.sig", unsigned("ES256", Some("k"), &claims));
        let body = serde_json::json!({ "access_token": "a", "token_type": "Bearer", "id_token": token }).to_string();
        assert_eq!(id_token_problem(body.as_bytes()).as_deref(), Some("sub missing"));
        assert_eq!(id_token_problem(br#"{"access_token":"a"}"#), None, "no ID token: not an ID token problem");
    }

    const ISSUER: &str = "https://idp.example.fr/api/v2";
    const CLIENT: &str = "client-1";
    const SECRET: &str = "client-secret-0123456789";
    const NOW: i64 = 1_800_000_000;

    fn provider() -> Provider {
        let settings = ProviderSettings::new(ISSUER, CLIENT, SecretString::from(SECRET));
        let init = ProviderInit {
            kind: Kind::Citizen,
            name: "test".into(),
            clock: Arc::new(crate::clock::SystemClock),
            settings,
            client_secret: SecretString::from(SECRET),
            redirect_uri: "https://gw.example.fr/.guichet/oidc/callback".into(),
            post_logout_redirect_uri: "https://gw.example.fr/.guichet/oidc/logout-callback".into(),
            skew: Duration::from_secs(60),
            max_age: Duration::from_secs(600),
            decryption: None,
        };
        Provider::new(init, HttpClient::new().unwrap())
    }

    fn claims(tweak: impl Fn(&mut Map<String, Value>)) -> Value {
        let mut c = serde_json::json!({
            "iss": ISSUER, "aud": CLIENT, "sub": "s1", "iat": NOW, "exp": NOW + 60,
            "nonce": "n1", "acr": "eidas1", "sid": "sid-1",
        })
        .as_object()
        .unwrap()
        .clone();
        tweak(&mut c);
        Value::Object(c)
    }

    fn unsigned(alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let header = match kid {
            Some(k) => serde_json::json!({ "alg": alg, "kid": k }),
            None => serde_json::json!({ "alg": alg }),
        };
        format!("{}.{}", jose::b64e(header.to_string().as_bytes()), jose::b64e(claims.to_string().as_bytes()))
    }

    fn es256(key: &ring::signature::EcdsaKeyPair, kid: Option<&str>, claims: &Value) -> String {
        let input = unsigned("ES256", kid, claims);
        let sig = key.sign(&ring::rand::SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", jose::b64e(sig.as_ref()))
    }

    fn hs256(kid: Option<&str>, claims: &Value) -> String {
        let input = unsigned("HS256", kid, claims);
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
        format!("{input}.{}", jose::b64e(ring::hmac::sign(&k, input.as_bytes()).as_ref()))
    }

    fn ec_key() -> ring::signature::EcdsaKeyPair {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    /// The EC key, plus a symmetric key holding the client secret: were HS256 allowed, the
    /// crate could verify an HMAC with it.
    fn key_set(key: &ring::signature::EcdsaKeyPair) -> CoreJsonWebKeySet {
        let oct = serde_json::json!({ "kty": "oct", "kid": "hs", "k": jose::b64e(SECRET.as_bytes()) });
        serde_json::from_value(serde_json::json!({ "keys": [jose::es256_public_jwk(key, "ec1"), oct] })).unwrap()
    }

    fn check(p: &Provider, raw: &str, keys: &CoreJsonWebKeySet, min_acr: u8) -> Result<ProviderIdTokenClaims, String> {
        let token: ProviderIdToken = raw.parse().map_err(|e: serde_json::Error| e.to_string())?;
        let issuer = IssuerUrl::new(ISSUER.into()).unwrap();
        let expected = Expected { nonce: "n1", min_acr };
        let now = OffsetDateTime::from_unix_timestamp(NOW).unwrap();
        p.check_id_token(&issuer, &token, keys, "access", &expected, now).map_err(|e| e.into_error().to_string())
    }

    #[test]
    fn the_crate_verifier_accepts_es256_and_pins_the_algorithms() {
        let (p, key) = (provider(), ec_key());
        let keys = key_set(&key);
        let ok = check(&p, &es256(&key, Some("ec1"), &claims(|_| {})), &keys, 1).unwrap();
        assert_eq!(ok.subject().as_str(), "s1");
        assert_eq!(ok.additional_claims().sid.as_deref(), Some("sid-1"));
        // A genuine HMAC with the client secret, and a matching symmetric key in the set.
        let e = check(&p, &hs256(Some("hs"), &claims(|_| {})), &keys, 1).unwrap_err();
        assert!(e.contains("signature: Disallowed signature algorithm") && e.contains("not one of"), "{e}");
        let none = format!("{}.", unsigned("none", None, &claims(|_| {})));
        assert!(check(&p, &none, &keys, 1).is_err());
    }

    #[test]
    fn the_crate_verifier_uses_the_injected_time_and_our_windows() {
        let (p, key) = (provider(), ec_key());
        let keys = key_set(&key);
        let with = |t: &dyn Fn(&mut Map<String, Value>)| check(&p, &es256(&key, Some("ec1"), &claims(t)), &keys, 1);
        // exp 30 s ago is within the 60 s skew; 90 s ago is not.
        assert!(with(&|c| drop(c.insert("exp".into(), (NOW - 30).into()))).is_ok());
        assert!(with(&|c| drop(c.insert("exp".into(), (NOW - 90).into()))).is_err());
        assert!(with(&|c| drop(c.insert("iat".into(), (NOW + 120).into()))).is_err());
        assert!(with(&|c| drop(c.insert("iat".into(), (NOW - 900).into()))).is_err());
        assert!(with(&|c| drop(c.insert("nonce".into(), "other".into()))).is_err());
        assert!(with(&|c| drop(c.remove("acr"))).is_err());
        assert!(with(&|c| drop(c.insert("at_hash".into(), at_hash_of("other").into()))).is_err());
        assert!(with(&|c| drop(c.insert("at_hash".into(), at_hash_of("access").into()))).is_ok());
        let eidas1 = es256(&key, Some("ec1"), &claims(|_| {}));
        assert!(check(&p, &eidas1, &keys, 2).is_err(), "acr below the level asked");
    }
}
