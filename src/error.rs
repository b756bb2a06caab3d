//! The one place where errors the gateway itself produces become HTTP responses.
//!
//! Which error type belongs where:
//! - `config::ConfigError`: start-up and `guichet check`; never reaches HTTP.
//! - `store::StoreError`: the store; services map it to `GatewayError::StoreUnavailable`.
//! - `proxy::ProxyError`: the forwarding phases, tagged with its side (client, upstream,
//!   internal); converted into `GatewayError` here.
//! - `GatewayError`: everything that is answered to a client. API clients get
//!   `application/problem+json` (RFC 9457); browsers get a short page in plain French.
//!   The cause is never put in the body: it travels in an `ErrorCause` response extension
//!   that the request-logging middleware writes to the log.

use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What a client is told went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// The request is malformed; it was not forwarded.
    BadRequest(&'static str),
    /// No route matches the request.
    NoRoute,
    /// No processing activity covers the request, and its route is not declared without
    /// personal data: denied by default.
    NoProcessingActivity,
    /// An activity claims the address, but none of its rules lists the method: refused, not
    /// passed as unclaimed. `allow` is the `Allow` header's value.
    MethodNotAllowed { allow: String },
    /// A path under the reserved prefix that the gateway does not serve.
    NotFound,
    /// The client stopped sending its body for longer than the idle timeout.
    RequestTimeout,
    /// The request body is larger than the route accepts.
    PayloadTooLarge { limit: u64 },
    /// The request head is larger than `server.max_header_bytes`.
    HeadersTooLarge,
    /// The upstream refused, reset or broke the exchange.
    BadGateway,
    /// The upstream did not answer in time.
    GatewayTimeout,
    /// The store cannot be reached.
    StoreUnavailable,
    /// A bug or an exhausted resource on our side.
    Internal,
    /// The route needs a signed-in citizen (or agent) and the request has none, or one below
    /// the route's eIDAS level: browsers are sent to sign in, APIs get 401.
    SignInRequired { agent: bool, acr: Option<u8>, return_to: String },
    /// Signed in, but not as someone this route admits (wrong role, agent on a citizen route…).
    Forbidden(&'static str),
    /// The request serves a purpose that rests on consent, and the citizen has not given it
    /// (or withdrew it): browsers are sent to the consent page and brought back to
    /// `return_to` (same origin) after giving it; APIs get 403 with a link to that page.
    ConsentRequired { activity: String, purpose: String, return_to: String },
    /// The citizen restricted the processing of their data by this activity (Art. 18): its
    /// write routes are refused for them until the restriction is lifted. Nothing forwarded.
    Restricted,
    /// A sign-in did not complete: the provider refused or cancelled it, or a check failed.
    /// No session was created. The "try again" link goes back to where the citizen was going
    /// (`return_to`) at the level the route needs (`acr`), when they are known.
    SignInFailed { agent: bool, cancelled: bool, return_to: Option<String>, acr: Option<u8> },
    /// A declared personal field could not be protected because of what the client sent
    /// (malformed JSON, a value of an unexpected shape, an unreadable body type). Nothing
    /// was forwarded.
    FieldNotProtectable(&'static str),
    /// What the gateway must parse to protect declared fields is over one of its limits
    /// (nesting depth, number of members or fields: docs/proxy.md). Nothing was forwarded.
    InputOverLimit(&'static str),
    /// A declared personal field could not be protected because the gateway's keys are
    /// unavailable (no keyring configured, key unusable). Nothing was forwarded.
    ProtectionUnavailable,
    /// A back-office client's credential is missing or unknown (batch reveal API).
    ClientUnauthorized,
    /// Too many calls from one client in the current minute.
    RateLimited,
    /// A well-formed request the gateway cannot act on (e.g. a rights-request step that its
    /// status does not allow); the reason is part of the answer.
    Unprocessable(&'static str),
    /// The resource changed since the client read it.
    Conflict(&'static str),
    /// Strict mode: body members or query parameters that no field of the activity declares
    /// (their names, never their values). Nothing was forwarded.
    UndeclaredMembers(Vec<String>),
}

/// The cause behind an error response, for the log only.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NoRoute | Self::NotFound => StatusCode::NOT_FOUND,
            Self::NoProcessingActivity => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::SignInRequired { .. } | Self::SignInFailed { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ConsentRequired { .. } | Self::Restricted => StatusCode::FORBIDDEN,
            Self::FieldNotProtectable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InputOverLimit(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::ProtectionUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::ClientUnauthorized => StatusCode::UNAUTHORIZED,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::UndeclaredMembers(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// Stable machine-readable code; part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad-request",
            Self::NoRoute => "no-route",
            Self::NoProcessingActivity => "no-processing-activity",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::NotFound => "not-found",
            Self::RequestTimeout => "request-timeout",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::HeadersTooLarge => "headers-too-large",
            Self::BadGateway => "upstream-unavailable",
            Self::GatewayTimeout => "upstream-timeout",
            Self::StoreUnavailable => "store-unavailable",
            Self::Internal => "internal-error",
            Self::SignInRequired { .. } => "sign-in-required",
            Self::Forbidden(_) => "forbidden",
            Self::Restricted => "processing-restricted",
            Self::SignInFailed { .. } => "sign-in-failed",
            Self::ConsentRequired { .. } => "consent-required",
            Self::FieldNotProtectable(_) => "field-not-protectable",
            Self::InputOverLimit(_) => "input-over-limit",
            Self::ProtectionUnavailable => "protection-unavailable",
            Self::ClientUnauthorized => "client-unauthorized",
            Self::RateLimited => "rate-limited",
            Self::Unprocessable(_) => "unprocessable",
            Self::Conflict(_) => "conflict",
            Self::UndeclaredMembers(_) => "undeclared-members",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "Malformed request",
            Self::NoRoute => "No application at this address",
            Self::NoProcessingActivity => "No processing activity covers this request",
            Self::MethodNotAllowed { .. } => "Method not allowed at this address",
            Self::NotFound => "Not found",
            Self::RequestTimeout => "The request body stopped arriving",
            Self::PayloadTooLarge { .. } => "Request body too large",
            Self::HeadersTooLarge => "Request headers too large",
            Self::BadGateway => "The application is unavailable",
            Self::GatewayTimeout => "The application did not answer in time",
            Self::StoreUnavailable => "The gateway's store is unavailable",
            Self::Internal => "Internal error",
            Self::SignInRequired { .. } => "Sign-in required",
            Self::Forbidden(_) => "Access denied",
            Self::Restricted => "Processing restricted",
            Self::SignInFailed { .. } => "Sign-in failed",
            Self::ConsentRequired { .. } => "Consent required",
            Self::FieldNotProtectable(_) => "A personal field could not be protected",
            Self::InputOverLimit(_) => "Request content over the gateway's parsing limits",
            Self::ProtectionUnavailable => "Personal-field protection is unavailable",
            Self::ClientUnauthorized => "Unknown client credential",
            Self::RateLimited => "Too many requests",
            Self::Unprocessable(_) => "The request cannot be acted on",
            Self::Conflict(_) => "The resource changed meanwhile",
            Self::UndeclaredMembers(_) => "The request carries data its processing activity does not declare",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadRequest(why) => format!("The request was refused and not forwarded: {why}."),
            Self::PayloadTooLarge { limit } => format!("The body exceeds the limit of {limit} bytes for this address."),
            Self::HeadersTooLarge => "The request line and headers exceed the configured limit.".to_owned(),
            Self::Forbidden(why) => format!("Access denied: {why}."),
            Self::Restricted => {
                "The processing of this person's data by this activity is restricted (GDPR Art. 18); nothing was \
                 forwarded."
                    .into()
            }
            Self::Unprocessable(why) | Self::Conflict(why) => format!("{why}."),
            Self::MethodNotAllowed { allow } => format!(
                "A processing activity covers this address, but not this method; nothing was forwarded. \
                 Allowed: {allow}."
            ),
            Self::FieldNotProtectable(why) => {
                format!("A declared personal field could not be protected, so nothing was forwarded: {why}.")
            }
            Self::InputOverLimit(why) => format!("The request was refused and nothing was forwarded: {why}."),
            Self::ProtectionUnavailable => {
                "The gateway cannot protect the personal fields of this request now, so nothing was forwarded."
                    .to_owned()
            }
            Self::ConsentRequired { activity, purpose, .. } => format!(
                "This request serves the purpose `{purpose}` of `{activity}`, which needs the citizen's consent; \
                 it can be given at the consent page."
            ),
            Self::UndeclaredMembers(names) => {
                format!("Nothing was forwarded: the processing activity declares no field named {}.", names.join(", "))
            }
            other => format!("{}.", other.title()),
        }
    }

    /// (title, explanation, what to do) in plain French for the browser page.
    fn french(&self) -> (&'static str, String, &'static str) {
        const RETRY: &str = "Réessayez dans quelques minutes. Si cela continue, contactez votre mairie.";
        const BACK: &str = "Revenez à la page précédente et réessayez.";
        match self {
            Self::BadRequest(_) => (
                "Demande incorrecte",
                "Votre navigateur a envoyé une demande que nous ne pouvons pas lire.".into(),
                BACK,
            ),
            Self::NoRoute | Self::NotFound => (
                "Page introuvable",
                "Cette adresse ne correspond à aucun service.".into(),
                "Vérifiez l'adresse ou revenez à l'accueil.",
            ),
            Self::NoProcessingActivity => (
                "Ce service n'est pas disponible",
                "Cette adresse ne correspond à aucun service déclaré par la mairie. Pour protéger vos données, \
                 nous n'avons rien transmis."
                    .into(),
                "Vérifiez l'adresse ou revenez à l'accueil. Si cela continue, contactez votre mairie.",
            ),
            Self::MethodNotAllowed { .. } => (
                "Action impossible",
                "Cette page n'accepte pas ce type de demande. Pour protéger vos données, nous n'avons rien transmis."
                    .into(),
                BACK,
            ),
            Self::PayloadTooLarge { limit } => (
                "Envoi trop gros",
                format!("Ce que vous envoyez est trop gros. La limite est de {}.", human_size(*limit)),
                "Envoyez un fichier plus petit, ou en plusieurs fois.",
            ),
            Self::RequestTimeout => ("Envoi interrompu", "Votre envoi s'est arrêté en cours de route.".into(), BACK),
            Self::HeadersTooLarge => (
                "Demande trop grande",
                "Votre navigateur a envoyé trop d'informations avec la demande.".into(),
                "Fermez le navigateur, rouvrez-le, puis réessayez.",
            ),
            Self::BadGateway => {
                ("Service indisponible", "Le service de la mairie ne répond pas pour le moment.".into(), RETRY)
            }
            Self::GatewayTimeout => {
                ("Service trop lent", "Le service de la mairie a mis trop de temps à répondre.".into(), RETRY)
            }
            Self::StoreUnavailable | Self::Internal => {
                ("Erreur technique", "Un problème technique nous empêche de répondre.".into(), RETRY)
            }
            Self::SignInRequired { .. } => (
                "Connexion nécessaire",
                "Vous devez vous connecter pour voir cette page.".into(),
                "Connectez-vous, puis vous reviendrez ici.",
            ),
            Self::Restricted => (
                "Utilisation de vos données limitée",
                "Vous avez demandé de limiter l'utilisation de vos données pour ce service. Tant que la limitation \
                 dure, nous ne transmettons rien à ce service de votre part."
                    .into(),
                "Pour lever la limitation, écrivez au délégué à la protection des données de la mairie.",
            ),
            Self::Forbidden(_) => (
                "Accès refusé",
                "Vous êtes connecté, mais cette page n'est pas pour votre compte.".into(),
                "Si vous pensez que c'est une erreur, déconnectez-vous puis reconnectez-vous avec le bon compte.",
            ),
            Self::ConsentRequired { .. } => (
                "Votre accord est nécessaire",
                "Ce service n'est proposé que si vous êtes d'accord.".into(),
                "Donnez votre accord sur la page « Vos accords », ou continuez sans ce service.",
            ),
            Self::FieldNotProtectable(_) => (
                "Envoi non transmis",
                "Une information personnelle de votre envoi n'a pas pu être protégée. Pour protéger vos données, \
                 nous n'avons rien transmis."
                    .into(),
                BACK,
            ),
            Self::InputOverLimit(_) => (
                "Envoi trop complexe",
                "Votre envoi contient trop d'éléments pour que nous puissions le lire. Pour protéger vos données, \
                 nous n'avons rien transmis."
                    .into(),
                BACK,
            ),
            Self::ProtectionUnavailable => (
                "Service momentanément indisponible",
                "Nous ne pouvons pas protéger vos informations personnelles pour le moment. Pour protéger vos \
                 données, nous n'avons rien transmis."
                    .into(),
                RETRY,
            ),
            Self::ClientUnauthorized => {
                ("Accès refusé", "Cette adresse est réservée aux traitements automatiques de la mairie.".into(), BACK)
            }
            Self::RateLimited => ("Trop de demandes", "Trop de demandes ont été faites en peu de temps.".into(), RETRY),
            Self::Unprocessable(_) => (
                "Demande impossible",
                "Nous ne pouvons pas faire cette action sur votre demande pour le moment.".into(),
                BACK,
            ),
            Self::UndeclaredMembers(_) => (
                "Envoi non transmis",
                "Votre envoi contient des informations que ce service ne doit pas recevoir. Nous n'avons rien \
                 transmis."
                    .into(),
                BACK,
            ),
            Self::Conflict(_) => (
                "Demande modifiée entre-temps",
                "Quelqu'un a modifié cette demande pendant que vous la lisiez.".into(),
                "Rechargez la page, puis réessayez.",
            ),
            Self::SignInFailed { cancelled: true, .. } => (
                "Connexion annulée",
                "La connexion n'a pas abouti. Vous l'avez peut-être annulée.".into(),
                "Vous pouvez réessayer. Rien n'a été enregistré.",
            ),
            Self::SignInFailed { cancelled: false, .. } => (
                "La connexion n'a pas marché",
                "Nous n'avons pas pu vérifier votre identité. Rien n'a été enregistré.".into(),
                "Réessayez. Si cela continue, contactez votre mairie.",
            ),
        }
    }

    /// Renders as HTML for browsers (`html`, see [`wants_html`]) or as problem+json, tagging
    /// the response with `cause` for the log.
    pub fn respond(&self, html: bool, request_id: Option<&str>, cause: Option<String>) -> Response {
        let mut resp = match self {
            Self::SignInRequired { agent, acr, return_to } if html => sign_in_redirect(*agent, *acr, return_to),
            Self::ConsentRequired { return_to, .. } if html => see_other(&consent_url(return_to)),
            _ if html => self.html(request_id),
            _ => self.problem(request_id),
        };
        if let Some(c) = cause {
            resp.extensions_mut().insert(ErrorCause(c));
        }
        if let Self::MethodNotAllowed { allow } = self
            && let Ok(v) = HeaderValue::from_str(allow)
        {
            resp.headers_mut().insert(header::ALLOW, v);
        }
        resp
    }

    fn problem(&self, request_id: Option<&str>) -> Response {
        let body = Problem {
            r#type: format!("urn:guichet:problem:{}", self.code()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
            request_id,
            consent_url: match self {
                Self::ConsentRequired { return_to, .. } => Some(consent_url(return_to)),
                _ => None,
            },
            undeclared: match self {
                Self::UndeclaredMembers(names) => Some(names),
                _ => None,
            },
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = (self.status(), json).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(link) =
            body.consent_url.as_deref().and_then(|u| HeaderValue::from_str(&format!("<{u}>; rel=\"consent\"")).ok())
        {
            resp.headers_mut().insert(header::LINK, link);
        }
        resp
    }

    fn html(&self, request_id: Option<&str>) -> Response {
        let (title, explanation, next_step) = self.french();
        let retry = match self {
            Self::SignInFailed { agent, return_to, acr, .. } => Some(sign_in_url(*agent, *acr, return_to.as_deref())),
            _ => None,
        };
        let reference = request_id.map(crate::pages::spoken_reference);
        if let Some(r) = &reference {
            // The request span carries the full id: this line joins it to what the person reads out.
            tracing::info!(reference = %r, status = self.status().as_u16(), "error page shown");
        }
        let page = ErrorPage {
            chrome: crate::pages::Chrome::public(),
            title,
            explanation: &explanation,
            next_step,
            status: self.status().as_u16(),
            reference: reference.as_deref(),
            retry: retry.as_deref(),
        };
        let body = page.render().unwrap_or_else(|_| format!("{} — {title}", self.status().as_u16()));
        let mut resp = (self.status(), body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl IntoResponse for GatewayError {
    /// Without the request at hand, answer the API form.
    fn into_response(self) -> Response {
        self.problem(None)
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    /// Where the citizen gives the consent a `consent-required` problem is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    consent_url: Option<String>,
    /// The names of an `undeclared-members` problem (never the values).
    #[serde(skip_serializing_if = "Option::is_none")]
    undeclared: Option<&'a [String]>,
}

/// The consent page, coming back to `return_to` afterwards.
fn consent_url(return_to: &str) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("retour", return_to);
    format!("{}?{}", crate::pages::CONSENT_PATH, q.finish())
}

fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: crate::pages::Chrome,
    title: &'a str,
    explanation: &'a str,
    next_step: &'a str,
    status: u16,
    /// The request id as 8 characters a person can read out (`pages::spoken_reference`).
    reference: Option<&'a str>,
    /// A "try again" link (failed sign-in).
    retry: Option<&'a str>,
}

/// Sends a browser to sign in, remembering where it was going (`retour`) and the eIDAS
/// level the route needs (`niveau`).
fn sign_in_redirect(agent: bool, acr: Option<u8>, return_to: &str) -> Response {
    see_other(&sign_in_url(agent, acr, Some(return_to)))
}

/// The sign-in start for citizens or agents, with where to come back (`retour`) and the
/// eIDAS level needed (`niveau`) when known.
pub fn sign_in_url(agent: bool, acr: Option<u8>, return_to: Option<&str>) -> String {
    let start = if agent { crate::pages::AGENT_LOGIN_PATH } else { crate::pages::CITIZEN_LOGIN_PATH };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(r) = return_to {
        q.append_pair("retour", r);
    }
    if let Some(level) = acr {
        q.append_pair("niveau", &format!("eidas{level}"));
    }
    let q = q.finish();
    if q.is_empty() { start.to_owned() } else { format!("{start}?{q}") }
}

/// Browsers ask for HTML first; API clients ask for JSON or nothing in particular.
pub fn wants_html(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).map(HeaderValue::as_bytes) else { return false };
    let html = find(accept, b"text/html");
    let json = find(accept, b"json");
    match (html, json) {
        (Some(h), Some(j)) => h < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Where `needle` first occurs. Accept headers are short, and `str::find` set up a two-way
/// searcher on every request for this.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB { format!("{} Mo", bytes / MIB) } else { format!("{} Ko", bytes.div_ceil(1024)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn field_errors_say_nothing_was_forwarded() {
        for e in [
            GatewayError::FieldNotProtectable("malformed JSON"),
            GatewayError::ProtectionUnavailable,
            GatewayError::InputOverLimit("too deep"),
        ] {
            assert!(e.detail().contains("nothing was forwarded"), "{}", e.detail());
            assert!(e.french().1.contains("rien transmis"));
        }
    }

    #[test]
    fn every_error_maps_to_its_status_and_code() {
        let cases = [
            (GatewayError::BadRequest("x"), 400, "bad-request"),
            (GatewayError::NoRoute, 404, "no-route"),
            (GatewayError::NoProcessingActivity, 403, "no-processing-activity"),
            (GatewayError::NotFound, 404, "not-found"),
            (GatewayError::RequestTimeout, 408, "request-timeout"),
            (GatewayError::PayloadTooLarge { limit: 1 }, 413, "payload-too-large"),
            (GatewayError::HeadersTooLarge, 431, "headers-too-large"),
            (GatewayError::BadGateway, 502, "upstream-unavailable"),
            (GatewayError::GatewayTimeout, 504, "upstream-timeout"),
            (GatewayError::StoreUnavailable, 503, "store-unavailable"),
            (GatewayError::Internal, 500, "internal-error"),
            (GatewayError::SignInRequired { agent: false, acr: None, return_to: "/".into() }, 401, "sign-in-required"),
            (GatewayError::Forbidden("role"), 403, "forbidden"),
            (
                GatewayError::SignInFailed { agent: false, cancelled: true, return_to: None, acr: None },
                401,
                "sign-in-failed",
            ),
            (consent_required(), 403, "consent-required"),
            (GatewayError::FieldNotProtectable("malformed JSON"), 422, "field-not-protectable"),
            (GatewayError::ProtectionUnavailable, 503, "protection-unavailable"),
            (GatewayError::InputOverLimit("too deep"), 413, "input-over-limit"),
            (GatewayError::ClientUnauthorized, 401, "client-unauthorized"),
            (GatewayError::RateLimited, 429, "rate-limited"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status);
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn browsers_get_french_html_and_api_clients_problem_json() {
        let e = GatewayError::BadGateway;
        let html = e.respond(wants_html(&accept("text/html,application/xhtml+xml,*/*;q=0.8")), Some("r1"), None);
        assert_eq!(html.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let api = e.respond(wants_html(&accept("application/json")), Some("r1"), Some("refused".into()));
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert!(api.extensions().get::<ErrorCause>().is_some());
        assert!(!wants_html(&HeaderMap::new()));
    }

    #[test]
    fn sign_in_required_redirects_browsers_and_answers_apis_401() {
        let e = GatewayError::SignInRequired { agent: true, acr: Some(2), return_to: "/a?b=1".into() };
        let page = e.respond(true, None, None);
        assert_eq!(page.status(), 303);
        assert_eq!(page.headers()[header::LOCATION], "/.guichet/agent/connexion?retour=%2Fa%3Fb%3D1&niveau=eidas2");
        let api = e.respond(false, None, None);
        assert_eq!(api.status(), 401);
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/problem+json");
    }

    fn consent_required() -> GatewayError {
        GatewayError::ConsentRequired {
            activity: "lettre-information".into(),
            purpose: "envoi".into(),
            return_to: "/lettre-information/".into(),
        }
    }

    #[test]
    fn consent_required_redirects_browsers_and_answers_apis_403_with_a_link() {
        let page = consent_required().respond(true, None, None);
        assert_eq!(page.status(), 303);
        assert_eq!(page.headers()[header::LOCATION], "/.guichet/consentement/?retour=%2Flettre-information%2F");
        let api = consent_required().respond(false, Some("r1"), None);
        assert_eq!(api.status(), 403);
        assert_eq!(api.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            api.headers()[header::LINK],
            "</.guichet/consentement/?retour=%2Flettre-information%2F>; rel=\"consent\""
        );
    }

    #[test]
    fn failed_sign_in_page_offers_to_try_again() {
        let resp = GatewayError::SignInFailed { agent: false, cancelled: true, return_to: None, acr: None }.respond(
            true,
            Some("r"),
            None,
        );
        assert_eq!(resp.status(), 401);
    }

    #[test]
    fn sizes_read_in_french_units() {
        assert_eq!(human_size(10 * 1024 * 1024), "10 Mo");
        assert_eq!(human_size(1500), "2 Ko");
    }
}
