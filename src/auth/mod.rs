//! Who is asking: citizens signed in through a FranceConnect-style provider, agents through a
//! ProConnect-style one, server-side sessions, and the identity handed to upstreams
//! (per-upstream pseudonym, allowed claims, signed assertion). See docs/authentication.md.

pub mod assertion;
pub mod claims;
pub mod counter;
pub mod duties;
pub mod gate;
pub mod http;
pub mod jose;
pub mod jwe;
pub mod oidc;
pub mod pending;
pub mod pseudonym;
pub mod routes;
pub mod sealed;
pub mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use anyhow::Context as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret as _, SecretString};
use time::OffsetDateTime;

use self::assertion::{AssertionFacts, AssertionKey};
use self::oidc::{Provider, ProviderInit};
use self::pseudonym::Pseudonyms;
use self::session::{Kind, RevokeTarget, Session, SessionError, SessionService};
use crate::clock::{Clock, Random, random_hex};
use crate::config::{AuthSettings, Validated};
use crate::policy::Sector;
use crate::routing::Route;
use crate::store::Store;

/// The sign-in and sign-out paths live with every other own-page path (`crate::pages`); the
/// citizen sign-in start takes `?retour=`, the same-origin path to come back to.
pub use crate::pages::{
    AGENT_CALLBACK_PATH, AGENT_LOGIN_PATH, CITIZEN_CALLBACK_PATH, CITIZEN_LOGIN_PATH, LOGOUT_CALLBACK_PATH, LOGOUT_PATH,
};
/// The pseudonym context of the consent ledger (route names cannot start with `.`).
const CONSENT_PSEUDONYM_CONTEXT: &str = ".guichet-consent";
/// Context of the field-owner pseudonym (leading dot: no route name can take it).
const FIELD_PSEUDONYM_CONTEXT: &str = ".guichet-fields";
/// Prefix of the cookies binding sign-ins under way to the browser that started them (one
/// per `state`, see `pending`).
pub const LOGIN_COOKIE: &str = "__Host-guichet-login";

pub static X_GUICHET_SUBJECT: HeaderName = HeaderName::from_static("x-guichet-subject");
pub static X_GUICHET_ASSERTION: HeaderName = HeaderName::from_static("x-guichet-assertion");
const CLAIM_HEADER_PREFIX: &str = "x-guichet-claim-";
/// Prefix of an encoded claim value (RFC 8187 `ext-value` syntax).
pub const ENCODED_VALUE_PREFIX: &str = "utf-8''";
/// Cached assertions are signed again when they have less than this left.
const ASSERTION_RENEW_BEFORE: time::Duration = time::Duration::seconds(30);
const MAX_CACHED_ASSERTIONS: usize = 50_000;

/// Identity headers by (session id hash, route name).
type AssertionCache = HashMap<(String, Arc<str>), Arc<IdentityHeaders>>;

/// The identity headers of one session on one route, signed once and cached.
#[derive(Debug)]
pub struct IdentityHeaders {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    expires_at: OffsetDateTime,
}

/// The sign-in service shared by the proxy phases and the `/.guichet/` handlers.
#[derive(Debug)]
pub struct Auth {
    pub settings: AuthSettings,
    pub sessions: SessionService,
    /// Citizens' providers in configuration order (FranceConnect, FranceConnect+…).
    pub citizens: Vec<Provider>,
    pub agent: Option<Provider>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    /// The gateway's own origin (`server.public_url`): issuer of assertions.
    pub public_url: String,
    /// The commune every page's header names (`[commune]`).
    pub commune: Arc<crate::config::CommuneSettings>,
    /// The roles opening each area of the pages: the header's links.
    pub areas: gate::AreaRoles,
    pseudonyms: Pseudonyms,
    key: AssertionKey,
    /// The consent receipts' signing key: never the assertion key (one key, one use).
    receipt_key: AssertionKey,
    /// Earlier receipt keys: published so that older receipts verify, never used to sign.
    retired_receipt_keys: Vec<AssertionKey>,
    /// The CSRF tokens' MAC key: never the pseudonym key (one key, one use).
    csrf: Pseudonyms,
    /// The CSRF key before the last `guichet keys rotate-csrf`: its tokens are still accepted
    /// until the next rotation, so forms open during a rotation still post.
    previous_csrf: Option<Pseudonyms>,
    /// The key FranceConnect+ encrypts to, when a provider encrypts its tokens.
    decryption: Option<Arc<jwe::DecryptionKey>>,
    assertions: Mutex<AssertionCache>,
}

impl Auth {
    pub async fn build(
        config: &Validated,
        store: Store,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
    ) -> anyhow::Result<Self> {
        let a = &config.settings.auth;
        let public_url = config.settings.server.public_url.clone().unwrap_or_default();
        let key = match &a.assertion_key_file {
            Some(path) => AssertionKey::from_pem_file(path)?,
            None => AssertionKey::generate()?,
        };
        let pseudonym_key = match &config.auth_secrets.pseudonym_key {
            Some(k) => k.clone(),
            None => stored_pseudonym_key(&store, clock.as_ref(), random.as_ref()).await?,
        };
        let receipt_key = match &a.receipt_key_file {
            Some(path) => AssertionKey::from_pem_file(path)?,
            None => stored_receipt_key(&store, clock.as_ref()).await?,
        };
        let retired_receipt_keys = retired_receipt_keys(&store, &a.retired_receipt_key_files).await?;
        let csrf_key = stored_secret(&store, CSRF_KEY, clock.as_ref(), random.as_ref()).await?;
        let previous_csrf = store
            .meta()
            .get(PREVIOUS_CSRF_KEY)
            .await
            .context("cannot read the previous CSRF key")?
            .map(|k| Pseudonyms::new(k.as_bytes()));
        let decryption = decryption_key(a, &config.settings.data_dir)?;
        let http = http::HttpClient::new()?;
        let provider = |kind: Kind, name: String, p: &crate::config::ProviderSettings, secret: &SecretString| {
            let callback = if kind == Kind::Citizen { CITIZEN_CALLBACK_PATH } else { AGENT_CALLBACK_PATH };
            Provider::new(
                ProviderInit {
                    kind,
                    name,
                    settings: p.clone(),
                    client_secret: secret.clone(),
                    redirect_uri: format!("{public_url}{callback}"),
                    post_logout_redirect_uri: format!("{public_url}{LOGOUT_CALLBACK_PATH}"),
                    skew: a.clock_skew,
                    max_age: a.max_token_age,
                    clock: clock.clone(),
                    decryption: decryption.clone().filter(|_| p.encrypted_tokens),
                },
                http.clone(),
            )
        };
        let secrets = &config.auth_secrets;
        // Same order as `citizen_providers()`: `[auth.citizen]` (when given), then the list.
        let single_secret = a.citizen.as_ref().map(|_| &secrets.citizen_client_secret);
        let citizen_secrets = single_secret.into_iter().chain(&secrets.citizen_providers_client_secrets);
        let citizens = a
            .citizen_providers()
            .into_iter()
            .zip(citizen_secrets)
            .filter_map(|((name, _, p), secret)| Some(provider(Kind::Citizen, name, p, secret.as_ref()?)))
            .collect();
        let agent = match (&a.agent, &secrets.agent_client_secret) {
            (Some(p), Some(secret)) => Some(provider(Kind::Agent, "agent".to_owned(), p, secret)),
            _ => None,
        };
        let sessions = SessionService::new(
            store.clone(),
            clock.clone(),
            random.clone(),
            a.session_idle_timeout,
            a.session_absolute_timeout,
        )
        .context("cannot draw the session cache's key")?;
        Ok(Self {
            settings: a.clone(),
            sessions,
            citizens,
            agent,
            store,
            clock,
            random,
            public_url,
            commune: Arc::new(config.settings.commune.clone()),
            areas: gate::AreaRoles::of(&config.settings),
            pseudonyms: Pseudonyms::new(pseudonym_key.expose_secret().as_bytes()),
            key,
            receipt_key,
            csrf: Pseudonyms::new(csrf_key.expose_secret().as_bytes()),
            previous_csrf,
            retired_receipt_keys,
            decryption,
            assertions: Mutex::new(HashMap::new()),
        })
    }

    /// The agents' provider, or the first citizens' one.
    pub fn provider(&self, kind: Kind) -> Option<&Provider> {
        match kind {
            Kind::Citizen => self.citizens.first(),
            Kind::Agent => self.agent.as_ref(),
        }
    }

    /// The provider a sign-in needing eIDAS level `needed` goes to, and the level to ask it:
    /// the provider whose lowest suitable level is the lowest (FranceConnect for `eidas1`,
    /// FranceConnect+ for `eidas2`), the first configured on a tie.
    pub fn provider_for_level(&self, kind: Kind, needed: u8) -> Option<(&Provider, u8)> {
        match kind {
            Kind::Agent => self.agent.as_ref().map(|p| (p, p.level_for(needed).unwrap_or(needed))),
            Kind::Citizen => {
                self.citizens.iter().filter_map(|p| p.level_for(needed).map(|l| (p, l))).min_by_key(|(_, l)| *l)
            }
        }
    }

    /// The provider a pending sign-in was started with.
    pub fn provider_named(&self, kind: Kind, name: &str) -> Option<&Provider> {
        match kind {
            Kind::Citizen => self.citizens.iter().find(|p| p.name == name),
            Kind::Agent => self.agent.as_ref().filter(|p| p.name == name),
        }
    }

    /// The provider that issued a session's or a logout token's identity.
    pub fn provider_for_issuer(&self, kind: Kind, issuer: &str) -> Option<&Provider> {
        match kind {
            Kind::Citizen => self.citizens.iter().find(|p| p.issuer() == issuer),
            Kind::Agent => self.agent.as_ref().filter(|p| p.issuer() == issuer),
        }
    }

    /// The session named by the request's cookie, if live.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<Option<Arc<Session>>, session::SessionError> {
        match self.session_cookie(headers) {
            Some(v) => self.sessions.resolve(v).await,
            None => Ok(None),
        }
    }

    /// The value of the request's session cookie, if it carries one.
    pub fn session_cookie<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        cookie_value(headers, &self.settings.cookie_name)
    }

    /// Ends the sessions an operator names: all, or one person's, known by the provider's
    /// `sub` or by the pseudonym an upstream received on any of `routes` (an application's
    /// staff only ever see the pseudonym). Other instances notice within
    /// [`session::REVALIDATE_AFTER`].
    pub async fn revoke_sessions(&self, target: &RevokeTarget, routes: &[Arc<str>]) -> Result<u64, SessionError> {
        match target {
            RevokeTarget::All => self.sessions.revoke_all().await,
            RevokeTarget::Subject(id) => {
                self.sessions
                    .revoke_where(|s| {
                        s.subject == *id || routes.iter().any(|route| self.pseudonyms.for_route(s, route) == *id)
                    })
                    .await
            }
        }
    }

    /// The citizen's pseudonym in the consent ledger: the per-upstream pseudonym of a name no
    /// route can have, so it is stable for a person and joins with no application's.
    /// Derived once per session object (`Session::derived`), not per request.
    pub fn consent_subject<'s>(&self, session: &'s Session) -> &'s str {
        session.derived.consent_subject.get_or_init(|| self.pseudonyms.for_route(session, CONSENT_PSEUDONYM_CONTEXT))
    }

    /// The subject that owns a citizen's encrypted fields (data keys, tokens' associated
    /// data): a keyed pseudonym of the provider account, stable across sessions and devices,
    /// never the provider's `sub` itself, so the key table and the journal hold no identifier
    /// an upstream or the provider could link directly. Journal-safe (hex).
    /// Derived once per session object, like the consent subject.
    pub fn field_subject<'s>(&self, session: &'s Session) -> &'s str {
        session.derived.field_subject.get_or_init(|| self.pseudonyms.for_route(session, FIELD_PSEUDONYM_CONTEXT))
    }

    /// The subject that owns `session`'s person's encrypted fields in activities of `sector`
    /// (data keys, tokens' associated data, restriction marks, retention records, reveals in
    /// the journal): a keyed HMAC over the provider account and the sector, so two sectors'
    /// records share no id. `general` is [`Auth::field_subject`] itself (the v1 id), so records
    /// made before sectors existed stay readable (docs/cryptography.md, "Sector pseudonyms").
    pub fn field_subject_in<'s>(&self, session: &'s Session, sector: Sector) -> &'s str {
        match (sector, session.derived.sector_fields.get(sector.index())) {
            (Sector::General, _) | (_, None) => self.field_subject(session),
            (_, Some(cell)) => cell.get_or_init(|| {
                self.pseudonyms.for_route(session, &format!("{FIELD_PSEUDONYM_CONTEXT}/{}", sector.as_str()))
            }),
        }
    }

    /// The citizen's pseudonym in the consent ledger for activities of `sector`; `general` is
    /// [`Auth::consent_subject`], the gateway-wide id rights requests and notices use.
    pub fn consent_subject_in<'s>(&self, session: &'s Session, sector: Sector) -> &'s str {
        match (sector, session.derived.sector_consents.get(sector.index())) {
            (Sector::General, _) | (_, None) => self.consent_subject(session),
            (_, Some(cell)) => cell.get_or_init(|| {
                self.pseudonyms.for_route(session, &format!("{CONSENT_PSEUDONYM_CONTEXT}/{}", sector.as_str()))
            }),
        }
    }

    /// Every field subject of `session`'s person, one per sector ([`Sector::ALL`] order):
    /// what the citizen's own pages read to show all their records.
    pub fn field_subjects(&self, session: &Session) -> Vec<(Sector, String)> {
        Sector::ALL.into_iter().map(|s| (s, self.field_subject_in(session, s).to_owned())).collect()
    }

    /// Every consent subject of `session`'s person, one per sector.
    pub fn consent_subjects(&self, session: &Session) -> Vec<(Sector, String)> {
        Sector::ALL.into_iter().map(|s| (s, self.consent_subject_in(session, s).to_owned())).collect()
    }

    /// `session`'s person as the journal names a reader: an agent by their agent id, a citizen
    /// by their consent pseudonym; with `role` (the one that opened the page), else `agent` or
    /// `citizen`. `None` only if an id is not a journal identifier.
    pub fn reader(&self, session: &Session, role: Option<&str>) -> Option<crate::audit::Reader> {
        use crate::audit::ActorKind;
        match session.kind {
            Kind::Agent => crate::audit::Reader::new(
                ActorKind::Agent,
                &crate::consent::pages::agent_ident(session),
                role.unwrap_or("agent"),
            ),
            Kind::Citizen => {
                crate::audit::Reader::new(ActorKind::Citizen, self.consent_subject(session), role.unwrap_or("citizen"))
            }
        }
    }

    /// The page chrome for `session`'s person: the header's sign-out button posts their CSRF
    /// token; without a session it is a link to the confirmation page.
    pub fn chrome(&self, session: Option<&Session>) -> crate::pages::Chrome {
        crate::pages::Chrome {
            commune: self.commune.clone(),
            csrf: session.map(|s| self.csrf_token(s)),
            roles: gate::PageRoles::of(&self.areas, session),
        }
    }

    /// The CSRF token of `session`'s forms: a keyed tag of the session id (synchronizer token
    /// bound to the session, nothing stored; see docs/consent.md).
    pub fn csrf_token(&self, session: &Session) -> String {
        self.csrf.tag(&["guichet-csrf-v1", &session.id_hash])
    }

    /// True when `token` is `session`'s CSRF token (constant-time comparison).
    pub fn csrf_ok(&self, session: &Session, token: &str) -> bool {
        let of = |key: &Pseudonyms| key.tag(&["guichet-csrf-v1", &session.id_hash]);
        let current = oidc::constant_time_eq(of(&self.csrf).as_bytes(), token.as_bytes());
        let previous =
            self.previous_csrf.as_ref().is_some_and(|k| oidc::constant_time_eq(of(k).as_bytes(), token.as_bytes()));
        current | previous
    }

    /// Signs a consent receipt with the receipt key (verifiable at `/.guichet/jwks.json`).
    pub fn sign_receipt(&self, claims: &serde_json::Value) -> Result<String, jose::JwsError> {
        self.receipt_key.sign_typed("guichet-consent-receipt+jwt", claims)
    }

    /// The public key of consent receipts alone (tests of key separation, auditors).
    /// Earlier receipt keys follow the current one (receipts signed before a rotation verify).
    pub fn receipt_jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> =
            std::iter::once(&self.receipt_key).chain(&self.retired_receipt_keys).flat_map(jwk_list).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The public key of identity assertions alone.
    pub fn assertion_jwks(&self) -> serde_json::Value {
        self.key.jwks()
    }

    /// A tag of `parts` under the pseudonym key (tests of key separation: a CSRF token must
    /// not be one).
    #[doc(hidden)]
    pub fn pseudonym_tag(&self, parts: &[&str]) -> String {
        self.pseudonyms.tag(parts)
    }

    /// The pseudonym the application behind `route` receives for `session`'s person
    /// (`X-Guichet-Subject`): what a rights request names it by.
    pub fn route_subject(&self, session: &Session, route: &str) -> String {
        self.pseudonyms.for_route(session, route)
    }

    /// Signs a rights request to an application with the assertion key, typed so that it can
    /// never pass for an assertion or a receipt.
    pub fn sign_rights_request(&self, claims: &serde_json::Value) -> Result<String, jose::JwsError> {
        self.key.sign_typed(crate::rights::contract::REQUEST_JWS_TYPE, claims)
    }

    /// The public keys upstreams verify assertions with.
    /// The gateway's public keys: the assertion signing key and, when a provider encrypts its
    /// tokens, the key it encrypts to (`"use": "enc"`).
    pub fn jwks(&self) -> serde_json::Value {
        let mut set = self.key.jwks();
        if let Some(keys) = set.get_mut("keys").and_then(|k| k.as_array_mut()) {
            keys.extend(jwk_list(&self.receipt_key));
            keys.extend(self.retired_receipt_keys.iter().flat_map(jwk_list));
            if let Some(d) = &self.decryption {
                keys.push(d.public_jwk());
            }
        }
        set
    }

    /// `X-Guichet-Subject`, `X-Guichet-Claim-*` and `X-Guichet-Assertion` for `session` on
    /// `route` at `now`, from the cache while the assertion has more than 30 s left.
    pub fn identity_headers(
        &self,
        session: &Session,
        route: &Route,
        now: OffsetDateTime,
    ) -> Result<Arc<IdentityHeaders>, jose::JwsError> {
        let cache_key = (session.id_hash.clone(), route.name.clone());
        if let Some(h) = self.assertions.lock().ok().and_then(|c| c.get(&cache_key).cloned())
            && h.expires_at - now > ASSERTION_RENEW_BEFORE
        {
            return Ok(h);
        }
        let built = Arc::new(self.build_identity_headers(session, route, now)?);
        if let Ok(mut c) = self.assertions.lock() {
            if c.len() >= MAX_CACHED_ASSERTIONS {
                c.retain(|_, h| h.expires_at - now > ASSERTION_RENEW_BEFORE);
                if c.len() >= MAX_CACHED_ASSERTIONS {
                    c.clear();
                }
            }
            c.insert(cache_key, built.clone());
        }
        Ok(built)
    }

    fn build_identity_headers(
        &self,
        session: &Session,
        route: &Route,
        now: OffsetDateTime,
    ) -> Result<IdentityHeaders, jose::JwsError> {
        let subject = self.pseudonyms.for_route(session, &route.name);
        let mut headers = Vec::with_capacity(route.claims.len() + 2);
        let mut allowed = serde_json::Map::new();
        for name in &route.claims {
            let Some(value) = session.claims.get(name.as_ref()) else { continue };
            if let (Ok(n), Ok(v)) = (claim_header_name(name), HeaderValue::from_str(&encode_claim_value(value))) {
                headers.push((n, v));
            }
            allowed.insert(name.to_string(), serde_json::Value::String(value.clone()));
        }
        let expires_at = (now + session::to_time(self.settings.assertion_lifetime)).min(session.expires_at);
        let facts = AssertionFacts {
            issuer: &self.public_url,
            route: &route.name,
            subject: &subject,
            kind: session.kind.as_str(),
            acr: &session.acr,
            roles: &session.roles,
            claims: &allowed,
            now,
            expires_at,
        };
        let token = self.key.sign(&assertion::claims(&facts))?;
        if let Ok(v) = HeaderValue::from_str(&subject) {
            headers.push((X_GUICHET_SUBJECT.clone(), v));
        }
        if let Ok(v) = HeaderValue::from_str(&token) {
            headers.push((X_GUICHET_ASSERTION.clone(), v));
        }
        Ok(IdentityHeaders { headers, expires_at })
    }
}

/// The pseudonym key kept in the store when none is configured: generated once, shared by
/// every instance on the same store, so pseudonyms survive restarts.
async fn stored_pseudonym_key(store: &Store, clock: &dyn Clock, random: &dyn Random) -> anyhow::Result<SecretString> {
    let fresh = random_hex::<32>(random)?;
    let key = store
        .meta()
        .get_or_init("auth.pseudonym_key", &fresh, clock.now())
        .await
        .context("cannot read the pseudonym key from the store")?;
    Ok(SecretString::from(key))
}

/// The receipt key when none is configured: generated once, kept in the store (PKCS#8,
/// base64url) and shared by every instance, so a receipt verifies for as long as it is kept.
async fn stored_receipt_key(store: &Store, clock: &dyn Clock) -> anyhow::Result<AssertionKey> {
    let fresh = crate::crypto::b64(&AssertionKey::generate_pkcs8()?);
    let kept = store
        .meta()
        .get_or_init(RECEIPT_KEY, &fresh, clock.now())
        .await
        .context("cannot read the receipt key from the store")?;
    let der = crate::crypto::unb64(&kept).ok_or_else(|| anyhow::anyhow!("the stored receipt key is damaged"))?;
    Ok(AssertionKey::from_pkcs8(&der)?)
}

/// The store's meta rows of the signing and MAC keys kept there.
const RECEIPT_KEY: &str = "consent.receipt_key";
const RETIRED_RECEIPT_KEYS: &str = "consent.receipt_keys_retired";
const CSRF_KEY: &str = "auth.csrf_key";
const PREVIOUS_CSRF_KEY: &str = "auth.csrf_key_previous";

/// The public JWKs of one key.
fn jwk_list(key: &AssertionKey) -> Vec<serde_json::Value> {
    key.jwks().get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default()
}

/// Earlier receipt keys: those `guichet keys rotate-receipt` kept in the store, then the
/// configured files.
async fn retired_receipt_keys(store: &Store, files: &[std::path::PathBuf]) -> anyhow::Result<Vec<AssertionKey>> {
    let mut keys = Vec::new();
    for der in stored_retired_receipt_keys(store).await? {
        let der = crate::crypto::unb64(&der)
            .ok_or_else(|| anyhow::anyhow!("a retired receipt key in the store is damaged"))?;
        keys.push(AssertionKey::from_pkcs8(&der)?);
    }
    for path in files {
        keys.push(
            AssertionKey::from_pem_file(path)
                .with_context(|| format!("auth.retired_receipt_key_files: {}", path.display()))?,
        );
    }
    Ok(keys)
}

async fn stored_retired_receipt_keys(store: &Store) -> anyhow::Result<Vec<String>> {
    let Some(text) = store.meta().get(RETIRED_RECEIPT_KEYS).await.context("cannot read the retired receipt keys")?
    else {
        return Ok(Vec::new());
    };
    serde_json::from_str(&text).context("the list of retired receipt keys in the store is damaged")
}

/// `guichet keys rotate-receipt`: a new receipt key in the store; the old one is kept, never
/// to sign again, so that its receipts still verify. Returns the new key's id. Instances pick
/// the new key up when they restart.
pub async fn rotate_receipt_key(store: &Store, clock: &dyn Clock) -> anyhow::Result<String> {
    let now = clock.now();
    let current = store.meta().get(RECEIPT_KEY).await.context("cannot read the receipt key")?;
    if let Some(current) = current {
        let mut retired = stored_retired_receipt_keys(store).await?;
        retired.push(current);
        store.meta().set(RETIRED_RECEIPT_KEYS, &serde_json::to_string(&retired)?, now).await?;
    }
    let fresh = AssertionKey::generate_pkcs8()?;
    store.meta().set(RECEIPT_KEY, &crate::crypto::b64(&fresh), now).await?;
    Ok(AssertionKey::from_pkcs8(&fresh)?.kid().to_owned())
}

/// `guichet keys rotate-csrf`: a new CSRF key; the current one becomes the previous one, still
/// accepted until the next rotation (forms open during the rotation still post).
pub async fn rotate_csrf_key(store: &Store, clock: &dyn Clock, random: &dyn Random) -> anyhow::Result<()> {
    let now = clock.now();
    if let Some(current) = store.meta().get(CSRF_KEY).await.context("cannot read the CSRF key")? {
        store.meta().set(PREVIOUS_CSRF_KEY, &current, now).await?;
    }
    store.meta().set(CSRF_KEY, &random_hex::<32>(random)?, now).await?;
    Ok(())
}

/// A 256-bit secret generated once and kept in the store under `name` (the CSRF key).
async fn stored_secret(
    store: &Store,
    name: &str,
    clock: &dyn Clock,
    random: &dyn Random,
) -> anyhow::Result<SecretString> {
    let fresh = random_hex::<32>(random)?;
    let key =
        store.meta().get_or_init(name, &fresh, clock.now()).await.with_context(|| format!("cannot read {name}"))?;
    Ok(SecretString::from(key))
}

/// `given_name` → `x-guichet-claim-given-name` (underscores are dropped by some servers).
fn claim_header_name(claim: &str) -> Result<HeaderName, ::http::header::InvalidHeaderName> {
    HeaderName::from_bytes(format!("{CLAIM_HEADER_PREFIX}{}", claim.replace('_', "-")).as_bytes())
}

/// Characters left as they are in an encoded value (RFC 8187 `attr-char`).
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Claim values are sent as they are when they are printable ASCII without surrounding
/// spaces; otherwise (accents, control characters…) as `utf-8''` followed by the
/// percent-encoded UTF-8 bytes (RFC 8187). A plain value that happens to start with `utf-8''`
/// is encoded too, so decoding is never ambiguous.
pub fn encode_claim_value(v: &str) -> String {
    let plain = v.bytes().all(|b| (0x20..0x7f).contains(&b))
        && v.trim() == v
        && !v.to_ascii_lowercase().starts_with(ENCODED_VALUE_PREFIX);
    if plain { v.to_owned() } else { format!("{ENCODED_VALUE_PREFIX}{}", utf8_percent_encode(v, ATTR_CHAR)) }
}

/// The value of cookie `name` (which holds no `=`) in the request's `Cookie` headers: the
/// first of [`cookie_pairs`] so named.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    // Read on every signed-in request: each pair is tested where it lies, not split first.
    cookie_headers(headers).find_map(|h| pairs_in(h).find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')))
}

/// Every (name, value) of the request's `Cookie` headers, in the order the browser sent them.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    cookie_headers(headers).flat_map(pairs_in).filter_map(|pair| pair.split_once('='))
}

/// The request's `Cookie` headers that are visible ASCII; any other is skipped whole.
fn cookie_headers(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers.get_all(::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok())
}

/// The pairs of one `Cookie` header, without the spaces and tabs around them (the only
/// whitespace a visible-ASCII header can hold).
fn pairs_in(header: &str) -> impl Iterator<Item = &str> {
    header.split(';').map(|pair| pair.trim_matches([' ', '\t']))
}

/// Removes the gateway's own cookies from what goes upstream: an application must never see
/// (and so never leak) a session id.
pub fn strip_own_cookies(headers: &mut HeaderMap, session_cookie: &str) {
    let Some(v) = headers.get(::http::header::COOKIE).and_then(|v| v.to_str().ok()) else { return };
    let kept: Vec<&str> = pairs_in(v)
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(k, _)| k);
            name != session_cookie && name != counter::ASSISTED_COOKIE && !pending::is_login_cookie(name)
        })
        .collect();
    if kept.is_empty() {
        headers.remove(::http::header::COOKIE);
    } else if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(::http::header::COOKIE, v);
    }
}

/// `Set-Cookie` for a `__Host-` cookie: Secure, HttpOnly, SameSite=Lax (sent on the
/// provider's top-level redirect back), whole site. `max_age` `None`: until the browser closes.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

pub fn clear_cookie(name: &str) -> HeaderValue {
    set_cookie(name, "", Some(0))
}

/// The gateway's own pages a sign-in may come back to (they check the session themselves),
/// and the prefix of the rights procedures' screens (likewise).
const RETURNABLE_OWN_PAGES: &[&str] = &[
    crate::pages::REGISTER_PATH,
    crate::pages::CONSENT_PATH,
    crate::pages::PRIVACY_CENTRE_PATH,
    crate::pages::CONSENT_AGENT_PATH,
    crate::dpo::DPO_PATH,
    crate::dpo::DPO_REQUESTS_PATH,
    crate::dpo::DPO_CONSENTS_PATH,
    crate::dpo::DPO_JOURNAL_PATH,
    crate::dpo::SUPERVISION_PATH,
    crate::pages::DPO_INCIDENTS_PATH,
    crate::pages::ASSISTED_PATH,
    crate::pages::ASSISTED_ENTRY_PATH,
    crate::pages::AGENT_SPACE_PATH,
    crate::pages::LETTERS_PATH,
    crate::dpo::conservation::DPO_CONSERVATION_PATH,
    crate::retention::pages::ARCHIVES_HOME,
];

fn is_returnable_own_page(path: &str) -> bool {
    RETURNABLE_OWN_PAGES.contains(&path)
        || path.strip_prefix(crate::pages::PROCEDURE_PREFIX).is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'/')
        })
}

/// A return path that stays on this site, in the form the browser will follow: the path is
/// read like a request path (`canonical::path`), dot segments resolved as the browser
/// resolves them, and refused when any reading of it — decoded, `\` as `/`, in any letter
/// case — leaves the site (`//host`, `/\host`, a scheme) or names the gateway's own pages
/// (but those in `RETURNABLE_OWN_PAGES`), or when it is spelled ambiguously. The query is
/// kept as it came.
pub fn safe_return_path(p: &str) -> Option<String> {
    use crate::canonical::path::{self as canonical, PathError};
    if p.len() > 2048 || p.chars().any(char::is_control) || p.contains('\\') {
        return None;
    }
    let (path, rest) = p.find(['?', '#']).map_or((p, ""), |i| p.split_at(i));
    if !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    let resolved = canonical::normalise(path).ok()?;
    match canonical::read(&resolved) {
        Ok(_) => {}
        Err(PathError::Reserved) if is_returnable_own_page(&resolved) => {}
        Err(_) => return None,
    }
    if canonical::is_ambiguous(&resolved) {
        return None;
    }
    Some(format!("{resolved}{rest}"))
}

pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loads (or creates) the key providers encrypt their tokens to, when one does.
fn decryption_key(
    a: &crate::config::AuthSettings,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<jwe::DecryptionKey>>> {
    if !a.needs_decryption_key() {
        return Ok(None);
    }
    let path = a.encryption_key_path(data_dir);
    let (key, created) =
        jwe::DecryptionKey::load_or_generate(&path).map_err(|e| anyhow::anyhow!("`auth.encryption_key_file`: {e}"))?;
    if created {
        tracing::warn!(path = %path.display(), kid = key.kid(),
            "generated the key providers encrypt tokens to; back it up, share it with every instance and register /.guichet/jwks.json with the provider");
    }
    Ok(Some(Arc::new(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_site() {
        for ok in ["/", "/demarches?x=1", "/a/b%20c", "/.guichet/dpo/registre", "/.guichet/agent/", "/a?retour=//x#y"] {
            assert_eq!(safe_return_path(ok).as_deref(), Some(ok), "{ok}");
        }
        // What the browser would follow anyway, in the form it follows it.
        assert_eq!(safe_return_path("/a/./b/../c?x=1").as_deref(), Some("/a/c?x=1"));
        assert_eq!(safe_return_path("/%63antine//x").as_deref(), Some("/cantine/x"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "%2F%2Fevil.example",
            "/%5Cevil.example",
            "/\\/evil.example",
            "/.guichet/deconnexion",
            "/.guichet/dpo/registre/../../deconnexion",
            "/a\nb",
            "",
            "/a/../.guichet/deconnexion",
            "/%2e%2e/.guichet/x",
            "/a/%2E%2E/.guichet/x",
            "/a/..%2F.guichet/x",
            "/.GUICHET/deconnexion",
            "/./.guichet/x",
            "/a/..;/.guichet/x",
            "/..",
            "/%2F/evil.example",
            "/a%00b",
            "/%09/evil.example",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn claim_values_are_encoded_when_not_plain_ascii() {
        assert_eq!(encode_claim_value("DUBOIS"), "DUBOIS");
        assert_eq!(encode_claim_value("Hélène"), "utf-8''H%C3%A9l%C3%A8ne");
        assert_eq!(encode_claim_value("utf-8''x"), "utf-8''utf-8%27%27x");
        assert_eq!(encode_claim_value(" a"), "utf-8''%20a");
        assert_eq!(claim_header_name("given_name").unwrap(), "x-guichet-claim-given-name");
    }

    #[test]
    fn own_cookies_never_go_upstream() {
        let mut h = HeaderMap::new();
        h.insert(
            ::http::header::COOKIE,
            HeaderValue::from_static("a=1; __Host-s=secret; __Host-guichet-login=x; __Host-guichet-login-0a1b=y; b=2"),
        );
        strip_own_cookies(&mut h, "__Host-s");
        assert_eq!(h[::http::header::COOKIE], "a=1; b=2");
        assert_eq!(cookie_value(&h, "b"), Some("2"));
    }

    #[test]
    fn a_cookie_is_found_as_the_pairs_read_it() {
        let headers = [
            &["s=1"][..],
            &["a=1; s=2; s=3"],
            &["sx=1; xs=2; s =3; s"],
            &[" \t s=v=w \t ;b=2"],
            &["a=1", "s=second header"],
            &["s=", "s=later"],
            &["a=\u{e9}; s=1", "s=from the ascii header"],
            &["a", ";;", "b=2"],
        ];
        for values in headers {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(::http::header::COOKIE, HeaderValue::from_bytes(v.as_bytes()).unwrap());
            }
            for name in ["s", "a", "b", "sx", "x"] {
                let expected = cookie_pairs(&h).find(|(k, _)| *k == name).map(|(_, v)| v);
                assert_eq!(cookie_value(&h, name), expected, "{values:?} {name}");
            }
        }
        let mut h = HeaderMap::new();
        h.append(::http::header::COOKIE, HeaderValue::from_static(" \t s=v=w \t ;b=2"));
        assert_eq!(cookie_value(&h, "s"), Some("v=w"), "spaces and tabs around a pair are not its value's");
    }
}
