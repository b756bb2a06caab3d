//! The per-request context: what the phases learn about a request, in the order they learn it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::session::Session;
use crate::policy::Processing;
use crate::routing::Route;

/// Who is asking, as the identify phase found from the session cookie.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Identity {
    #[default]
    Anonymous,
    /// A citizen signed in through the citizens' provider (FranceConnect style).
    Citizen(Arc<Session>),
    /// A municipal agent signed in through the agents' provider (ProConnect style).
    Agent(Arc<Session>),
}

impl Identity {
    pub fn session(&self) -> Option<&Arc<Session>> {
        match self {
            Self::Anonymous => None,
            Self::Citizen(s) | Self::Agent(s) => Some(s),
        }
    }
}

/// What the decide phase concluded; later phases (consent, field encryption, audit) read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Forward: the request serves this purpose of this activity (its legal basis and
    /// declared fields travel with it).
    Processing(Arc<Processing>),
    /// Forward: no activity claims the request and its route is declared without personal data.
    Public,
}

impl Decision {
    /// The activity and purpose served, when there is one.
    pub fn processing(&self) -> Option<&Processing> {
        match self {
            Self::Processing(p) => Some(p),
            Self::Public => None,
        }
    }
}

#[derive(Debug)]
pub struct RequestContext {
    pub request_id: Arc<str>,
    /// The same id as a header value, built once per request and shared by every copy.
    pub request_id_header: Option<http::HeaderValue>,
    pub peer: SocketAddr,
    pub tls: bool,
    /// The client prefers HTML: gateway errors are rendered as a French page.
    pub wants_html: bool,
    /// Host the client addressed (with port, as sent).
    pub host: String,
    /// The canonical path (`canonical::path::read`) when it differs from the request's;
    /// `None` for the usual plain path, which is used as it came.
    pub canonical_path: Option<String>,
    pub route: Option<Arc<Route>>,
    pub identity: Identity,
    pub decision: Option<Decision>,
    /// The request asked to switch protocols (WebSocket…).
    pub upgrade: bool,
    /// The record id an anonymous request's encrypted fields were sealed under (activity
    /// `anonymous = "sealed"`), sent upstream as `X-Guichet-Record`.
    pub record: Option<String>,
    /// The wall-clock time, read once when the request carries a session cookie: the
    /// session's check, the identity headers and the day's retention fact all use it (each
    /// read is a vDSO call and a conversion to a date, ~250 instructions).
    pub now: Option<time::OffsetDateTime>,
}

impl RequestContext {
    pub fn new(request_id: Arc<str>, peer: SocketAddr, tls: bool, wants_html: bool) -> Self {
        Self {
            request_id,
            request_id_header: None,
            peer,
            tls,
            wants_html,
            host: String::new(),
            canonical_path: None,
            route: None,
            identity: Identity::Anonymous,
            decision: None,
            upgrade: false,
            record: None,
            now: None,
        }
    }

    /// The request's wall-clock time: [`Self::now`] when it was read, else `clock`'s now.
    pub fn now_or(&self, clock: &dyn crate::clock::Clock) -> time::OffsetDateTime {
        self.now.unwrap_or_else(|| clock.now())
    }

    /// The path every phase matches and forwards: the canonical path of `uri`'s.
    pub fn path<'a>(&'a self, uri: &'a http::Uri) -> &'a str {
        self.canonical_path.as_deref().unwrap_or_else(|| uri.path())
    }

    /// Where a browser comes back after signing in or consenting: the canonical path and
    /// the query.
    pub fn return_to(&self, uri: &http::Uri) -> String {
        let path = self.path(uri);
        match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    }

    pub fn route_name(&self) -> Option<&Arc<str>> {
        self.route.as_ref().map(|r| &r.name)
    }
}
