//! The proxy as named phases around one per-request context (the pingora idea):
//!
//! `receive → route → identify → decide → protect → upstream_request → forward → response_filter → log`
//!
//! Each phase reads what earlier ones put in the [`RequestContext`] and may end the request
//! with a [`ProxyError`]. Sign-in, policy, consent and field encryption plug in as phases here
//! (see docs/ARCHITECTURE.md) without touching forwarding.

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, StatusCode, Uri, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use super::body::{BodyError, GuardedBody, find_body_error};
use super::context::{Decision, Identity, RequestContext};
use super::error::ProxyError;
use super::fields::{self, DEFAULT_TRANSFORM_MAX_BYTES, FieldSettings, Owner, Protector};
use super::headers::{self, Hop, Strip};
use super::reveal::{Revealer, TextKind, Viewer};
use super::upstream::{Pool, PooledBody, UpstreamError, Upstreams};
use crate::auth::Auth;
use crate::auth::session::Kind;
use crate::canonical::path as canonical;
use crate::config::{ClientAddress, RouteAccess};
use crate::consent::ConsentService;
use crate::error::{GatewayError, wants_html};
use crate::metrics::{Metrics, UpstreamErrorLabels};
use crate::policy::{self, PolicySet, RequestFacts};
use crate::routing::{self, Route, RouteTable};
use crate::server::{ConnMeta, RequestId};

static X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");
static X_GUICHET_PURPOSE: header::HeaderName = header::HeaderName::from_static("x-guichet-purpose");
static X_GUICHET_RECORD: header::HeaderName = header::HeaderName::from_static("x-guichet-record");

/// Why a path an application could read as another claimed address is refused.
const AMBIGUOUS_PATH: &str = "the application could read this path as another address (encoded separators, \
                              parameters, another spelling or extension of a declared path): write it plainly";

/// Everything the proxy phases need, built once from the validated configuration.
#[derive(Debug)]
pub struct Proxy {
    routes: RouteTable,
    upstreams: Upstreams,
    trusted_proxies: Vec<IpNet>,
    max_header_bytes: usize,
    metrics: Arc<Metrics>,
    auth: Option<Arc<Auth>>,
    /// The active policy set; swapped whole on reload, so a request keeps the set it loaded.
    policies: Arc<ArcSwap<PolicySet>>,
    consent: Option<Arc<ConsentService>>,
    /// Restrictions of processing (Art. 18): write routes refused, reveals limited.
    rights: Option<Arc<crate::rights::service::RightsService>>,
    /// Retention: citizens' last requests recorded, archived values' reveals limited.
    retention: Option<RetentionHooks>,
    /// Field protection: the vault (absent without `[keys]`, then declared fields fail
    /// closed) and the transform limit.
    fields: FieldSettings,
    /// `Strict-Transport-Security` when the listener terminates TLS: on the gateway's own
    /// answers (errors) always, on the application's when the route asks (`hsts`).
    hsts: Option<HeaderValue>,
}

/// What the proxy needs of the retention engine.
#[derive(Debug)]
struct RetentionHooks {
    recorder: Arc<crate::retention::record::Recorder>,
    service: Arc<crate::retention::RetentionService>,
    clock: Arc<dyn crate::clock::Clock>,
}

/// A request ready to go upstream, with what the later phases need to finish it.
struct Outbound {
    request: Request<Body>,
    /// The gateway's own headers, written straight into the upstream head.
    added: headers::Added,
    client_upgrade: Option<OnUpgrade>,
}

impl Proxy {
    pub fn new(
        routes: RouteTable,
        upstreams: Upstreams,
        trusted_proxies: Vec<IpNet>,
        max_header_bytes: usize,
        metrics: Arc<Metrics>,
        policies: Arc<ArcSwap<PolicySet>>,
    ) -> Self {
        let fields = FieldSettings {
            vault: None,
            transform_max_bytes: DEFAULT_TRANSFORM_MAX_BYTES,
            audit: None,
            clock: Arc::new(crate::clock::SystemClock),
            random: Arc::new(crate::clock::SystemRandom::new()),
        };
        Self {
            routes,
            upstreams,
            trusted_proxies,
            max_header_bytes,
            metrics,
            policies,
            auth: None,
            consent: None,
            rights: None,
            retention: None,
            fields,
            hsts: None,
        }
    }

    /// Sends `Strict-Transport-Security` with this value over TLS (see the field).
    pub fn with_hsts(mut self, value: Option<HeaderValue>) -> Self {
        self.hsts = value;
        self
    }

    /// Enables field protection with this vault and transform limit. Without it, a request
    /// carrying a field to encrypt or pseudonymize is refused (fail closed).
    pub fn with_fields(mut self, fields: FieldSettings) -> Self {
        self.fields = fields;
        self
    }

    /// Enables the identify and authorize phases (without it everyone is anonymous and only
    /// public routes work).
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Enables the consent phase. Without it (or without sign-in) a purpose resting on
    /// consent is never served: nobody can have given it.
    pub fn with_consent(mut self, consent: Arc<ConsentService>) -> Self {
        self.consent = Some(consent);
        self
    }

    /// Enables restriction enforcement (Art. 18).
    pub fn with_rights(mut self, rights: Arc<crate::rights::service::RightsService>) -> Self {
        self.rights = Some(rights);
        self
    }

    /// Enables retention: last requests recorded, archived values revealed with a reason only.
    pub fn with_retention(
        mut self,
        recorder: Arc<crate::retention::record::Recorder>,
        service: Arc<crate::retention::RetentionService>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Self {
        self.retention = Some(RetentionHooks { recorder, service, clock });
        self
    }

    pub fn routes(&self) -> &RouteTable {
        &self.routes
    }

    /// Journals a signed-in person refused a route for lack of its role (outcome `denied`,
    /// page `route:NAME`); sign-in redirects are not refusals. Off the served path: only on
    /// the error branch of `authorize`.
    async fn journal_refusal(&self, ctx: &RequestContext, route: &Route, e: &ProxyError) {
        let ProxyError::Access(GatewayError::Forbidden(_), _) = e else { return };
        let (Some(audit), Some(auth)) = (&self.fields.audit, &self.auth) else { return };
        let session = match &ctx.identity {
            Identity::Citizen(s) | Identity::Agent(s) => s,
            Identity::Anonymous => return,
        };
        let role = if session.kind == crate::auth::session::Kind::Agent { session.roles.first() } else { None };
        let Some(reader) = auth.reader(session, role.map(String::as_str)) else { return };
        let page = format!("route:{}", route.name);
        audit.record_denied(&reader, &page, &page, Some(&ctx.request_id)).await;
    }

    /// Runs every phase; gateway errors become responses here. Returns the response and the
    /// route's name for the request log and metrics. The connection's facts and the request id
    /// come as arguments, not request extensions: each extension is an allocation.
    pub async fn handle(&self, req: Request<Body>, conn: ConnMeta, rid: RequestId) -> (Response, Option<Arc<str>>) {
        let mut ctx = RequestContext::new(rid.0, conn.peer, conn.tls, wants_html(req.headers()));
        ctx.request_id_header = Some(rid.1);
        let (mut resp, own) = match self.run(&mut ctx, req).await {
            Ok(r) => (r, false),
            Err(e) => (self.fail(&ctx, &e), true),
        };
        if let Some(v) = self.hsts.as_ref().filter(|_| ctx.tls)
            && (own || ctx.route.as_ref().is_some_and(|r| r.hsts))
        {
            resp.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        (resp, log(&ctx))
    }

    async fn run(&self, ctx: &mut RequestContext, req: Request<Body>) -> Result<Response, ProxyError> {
        self.receive(ctx, &req)?;
        let route = self.route(ctx, req.uri())?;
        self.identify(ctx, req.headers()).await?;
        if let Err(e) = authorize(ctx, &route, req.uri()) {
            // Boxed: a refusal's journal entry waits on the journal, and its future would
            // otherwise make every request's larger.
            Box::pin(self.journal_refusal(ctx, &route, &e)).await;
            return Err(e);
        }
        self.decide(ctx, &req)?;
        let processing = ctx.decision.as_ref().and_then(Decision::processing);
        let (needs_consent, has_fields) =
            processing.map_or((false, false), |p| (p.consent_required, !p.fields.is_empty()));
        // The consent and protect phases wait on the store and read bodies: their futures are
        // large, so they are boxed, and only built where the activity needs them; the plain
        // proxied request's future stays small (it is moved several times per request).
        if needs_consent {
            Box::pin(self.check_consent(ctx, req.uri())).await?;
        }
        if processing.is_some() && !req.method().is_safe() && matches!(ctx.identity, Identity::Citizen(_)) {
            Box::pin(self.check_restriction(ctx)).await?;
        }
        self.note_activity(ctx, &route);
        let archive_reason = if has_fields { crate::retention::reveal::reason_of(req.headers()) } else { None };
        let pool = self.upstreams.get(&route.name).ok_or_else(|| ProxyError::Internal("no pool for route".into()))?;
        let req = if has_fields { Box::pin(self.protect(ctx, &route, req)).await? } else { req };
        let out = self.upstream_request(ctx, &route, req)?;
        let client_upgrade = out.client_upgrade;
        let mut resp = forward(pool, &route, out.request, &out.added, client_upgrade.is_some()).await?;
        let mut revealer = self.revealer(ctx, archive_reason);
        if let Some(r) = revealer.as_mut().filter(|_| Revealer::headers_hold_tokens(resp.headers())) {
            // Boxed like the other phases that only some responses need: its future is large
            // (it may wait on the vault), and most responses carry no token in their headers.
            Box::pin(r.headers(resp.headers_mut())).await;
        }
        let bar = route.privacy_bar.then(|| super::bar::html(!matches!(ctx.identity, Identity::Anonymous)));
        response_filter(&route, resp, client_upgrade, revealer, bar)
    }

    /// Retention's trigger "last request on the activity's routes": at most one fact per
    /// citizen, activity and day leaves here, queued without waiting (`retention::record`).
    fn note_activity(&self, ctx: &RequestContext, route: &Route) {
        let (Some(r), Some(auth), Some(p), Identity::Citizen(session)) =
            (&self.retention, &self.auth, ctx.decision.as_ref().and_then(Decision::processing), &ctx.identity)
        else {
            return;
        };
        let field = auth.field_subject_in(session, p.sector);
        let now = ctx.now_or(r.clock.as_ref());
        if !r.recorder.first_today(field, &p.activity, now) {
            return;
        }
        r.recorder.record(crate::retention::record::Seen {
            // The sector's pseudonym only: the record must not join the citizen's sectors.
            field_subject: field.to_owned(),
            route: route.name.to_string(),
            // A public route's application never receives the pseudonym (`add_identity`):
            // keeping it would only join the sectors that share the route.
            app_subject: (route.access != RouteAccess::Public).then(|| auth.route_subject(session, &route.name)),
            activity: p.activity.to_string(),
            at_us: crate::audit::event::to_micros(now),
        });
    }

    /// An anonymous record's retention clock: its categories start now, under the record id
    /// (which is also what the application knows it by, `X-Guichet-Record`), so retention
    /// destroys or anonymises its sealed values at their declared end like a citizen's.
    /// Written before the request goes on (a record is seen once: a dropped fact would never
    /// come again); a record whose clock cannot be written is not forwarded.
    async fn note_record(&self, route: &Route, p: &policy::Processing, record: &str) -> Result<(), ProxyError> {
        let Some(r) = &self.retention else { return Ok(()) };
        let mut categories: Vec<String> = p.fields.iter().map(|f| f.category.clone()).collect();
        categories.sort();
        categories.dedup();
        let seen = crate::retention::record::Seen {
            field_subject: record.to_owned(),
            route: route.name.to_string(),
            app_subject: Some(record.to_owned()),
            activity: p.activity.to_string(),
            at_us: crate::audit::event::to_micros(r.clock.now()),
        };
        r.service.seen(&seen, &categories).await.map_err(|_| {
            ProxyError::Fields(GatewayError::StoreUnavailable, "cannot start an anonymous record's retention clock")
        })
    }

    /// Phase 1: is this a request we can read and may forward at all?
    fn receive(&self, ctx: &mut RequestContext, req: &Request<Body>) -> Result<(), ProxyError> {
        let size = headers::head_size(req.method(), req.uri(), req.headers());
        if size > self.max_header_bytes {
            return Err(ProxyError::HeadersTooLarge { size, limit: self.max_header_bytes });
        }
        if req.method() == Method::CONNECT {
            return Err(ProxyError::BadRequest("the CONNECT method is not supported"));
        }
        ctx.host = host_of(req)?;
        // One reading of the path for every later phase (docs/proxy.md, "Paths").
        ctx.canonical_path = match canonical::read(req.uri().path()) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(p)) => Some(p),
            Err(e) => return Err(ProxyError::BadRequest(e.reason())),
        };
        ctx.upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade_request(req.headers());
        Ok(())
    }

    /// Phase 2: which application is this for?
    fn route(&self, ctx: &mut RequestContext, uri: &Uri) -> Result<Arc<Route>, ProxyError> {
        let host = host_without_port(&ctx.host);
        let route = self.routes.find(Some(host), ctx.path(uri)).cloned().ok_or(ProxyError::NoRoute)?;
        ctx.route = Some(route.clone());
        Ok(route)
    }

    /// Phase 4: which activity and purpose the request serves (policy engine); requests no
    /// activity claims are denied unless their route is declared without personal data.
    /// Consent (a later issue) is checked here too.
    fn decide(&self, ctx: &mut RequestContext, req: &Request<Body>) -> Result<(), ProxyError> {
        let set = self.policies.load();
        let route = ctx.route_name().map_or("", |n| &**n);
        let facts = RequestFacts {
            route,
            host: Some(host_without_port(&ctx.host)),
            path: ctx.path(req.uri()),
            method: req.method(),
        };
        let decision = match policy::decide(&set, &facts) {
            policy::Decision::Processing(p) => Decision::Processing(p),
            policy::Decision::Public => Decision::Public,
            policy::Decision::Deny => return Err(ProxyError::NoProcessingActivity),
            policy::Decision::MethodNotAllowed(allow) => return Err(ProxyError::MethodNotAllowed(allow)),
            policy::Decision::Ambiguous => return Err(ProxyError::BadRequest(AMBIGUOUS_PATH)),
        };
        ctx.decision = Some(decision);
        Ok(())
    }

    /// Phase 4b: a purpose resting on consent is served only with a current consent of the
    /// citizen asking (from the cache, re-read from the store after 1 s at most). Anyone
    /// else is refused: anonymous people are sent to sign in, agents are forbidden. Public so
    /// that `benches/consent.rs` measures exactly this phase.
    pub async fn check_consent(&self, ctx: &RequestContext, uri: &Uri) -> Result<(), ProxyError> {
        let Some(p) = ctx.decision.as_ref().and_then(Decision::processing).filter(|p| p.consent_required) else {
            return Ok(());
        };
        // Only refusals need it: built on demand, not on every allowed request.
        let return_to = || ctx.return_to(uri);
        let session = match &ctx.identity {
            Identity::Citizen(s) => s,
            Identity::Anonymous => {
                let e = GatewayError::SignInRequired { agent: false, acr: None, return_to: return_to() };
                return Err(ProxyError::Access(e, "consent needs a signed-in citizen"));
            }
            Identity::Agent(_) => {
                let e = GatewayError::Forbidden("this purpose rests on a citizen's own consent");
                return Err(ProxyError::Access(e, "agent on a consent purpose"));
            }
        };
        let (Some(auth), Some(consent)) = (&self.auth, &self.consent) else {
            return Err(ProxyError::Internal("consent purpose without the consent service".into()));
        };
        let set = self.policies.load();
        let version = set.activity(&p.activity).and_then(|a| a.consent.as_ref()).map_or("", |c| c.version.as_str());
        let unavailable = |e: crate::consent::ConsentError| {
            tracing::warn!(error = %e, "cannot read the consent ledger");
            ProxyError::Access(GatewayError::StoreUnavailable, "consent ledger unavailable")
        };
        let subject = auth.consent_subject_in(session, p.sector);
        let earlier = Some(auth.consent_subject(session));
        let state =
            consent.state_in_sector(subject, earlier, &p.activity, &p.purpose, version).await.map_err(unavailable)?;
        if state.allows() {
            return Ok(());
        }
        let e = GatewayError::ConsentRequired {
            activity: p.activity.to_string(),
            purpose: p.purpose.to_string(),
            return_to: return_to(),
        };
        Err(ProxyError::Access(e, "consent not given"))
    }

    /// Phase 4b': a citizen who restricted the processing of their data by this activity
    /// (Art. 18) cannot change it through the application until the restriction is lifted:
    /// write requests are refused before anything is forwarded. Reads still pass.
    async fn check_restriction(&self, ctx: &RequestContext) -> Result<(), ProxyError> {
        let (Some(p), Identity::Citizen(session)) =
            (ctx.decision.as_ref().and_then(Decision::processing), &ctx.identity)
        else {
            return Ok(());
        };
        let (Some(auth), Some(rights)) = (&self.auth, &self.rights) else { return Ok(()) };
        let subject = auth.field_subject_in(session, p.sector);
        match rights.is_marked(subject, &p.activity, crate::rights::restriction::RESTRICTED).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(ProxyError::Access(GatewayError::Restricted, "processing restricted (Art. 18)")),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read restrictions");
                Err(ProxyError::Access(GatewayError::StoreUnavailable, "restrictions unavailable"))
            }
        }
    }

    /// Phase 4c: the activity's declared personal fields become tokens before anything is
    /// forwarded (`fields` module). Requests with nothing to transform pass untouched, their
    /// bodies still streaming.
    async fn protect(
        &self,
        ctx: &mut RequestContext,
        route: &Route,
        req: Request<Body>,
    ) -> Result<Request<Body>, ProxyError> {
        let Some(p) = ctx.decision.as_ref().and_then(Decision::processing) else { return Ok(req) };
        let mut req = req;
        if p.strict && !p.fields.is_empty() {
            req = self.refuse_undeclared(p, route, req).await?;
        }
        if !p.fields.is_empty() {
            // The reveal phase reads response text: ask the upstream not to compress it.
            req.headers_mut().remove(header::ACCEPT_ENCODING);
        }
        let fields: Vec<_> = p.request_fields().collect();
        if fields.is_empty() {
            return Ok(req);
        }
        let mut assisted = None;
        let owner = match (&ctx.identity, &self.auth) {
            (Identity::Citizen(s), Some(auth)) => Owner::Citizen(auth.field_subject_in(s, p.sector).to_owned()),
            (Identity::Agent(s), Some(auth)) => match assisted_citizen(p, auth, s, req.headers()) {
                Some(c) => {
                    let owner = Owner::Assisted(c.field_subject_in(p.sector).to_owned());
                    assisted = Some((s.clone(), c));
                    owner
                }
                None => Owner::Agent,
            },
            (Identity::Agent(_), None) => Owner::Agent,
            (Identity::Anonymous, _) if p.anonymous_sealed => Owner::Record(self.new_record_id()?),
            _ => Owner::Anonymous,
        };
        // Only an anonymous sender is sent to sign in.
        let return_to = if matches!(owner, Owner::Anonymous) { ctx.return_to(req.uri()) } else { String::new() };
        let protector = Protector {
            vault: self.fields.vault.as_deref(),
            activity: &p.activity,
            json_paths: p.json_paths(),
            owner,
            max_bytes: route.max_body_bytes.min(self.fields.transform_max_bytes),
            idle: route.timeouts.idle_body,
            return_to,
            sealing_keys: Default::default(),
        };
        let req = protector.protect(&fields, req).await?;
        let sealed = protector.sealing_keys.sealed_fields();
        if sealed.is_empty() {
            return Ok(req);
        }
        match (protector.owner, assisted) {
            (Owner::Record(id), _) => {
                self.note_record(route, p, &id).await?;
                ctx.record = Some(id);
            }
            (Owner::Assisted(_), Some((agent, citizen))) => {
                // An entry for a citizen that cannot be journaled is not forwarded.
                self.journal_assisted_entry(ctx, p, &agent, &citizen, sealed).await?;
            }
            _ => {}
        }
        Ok(req)
    }

    /// A fresh record id for an anonymous request's sealed fields: 128 random bits, linked
    /// to nothing (`proxy::fields::RECORD_PREFIX`).
    fn new_record_id(&self) -> Result<String, ProxyError> {
        let hex = crate::clock::random_hex::<16>(self.fields.random.as_ref()).map_err(|_| {
            ProxyError::Fields(GatewayError::ProtectionUnavailable, "no randomness for an anonymous record id")
        })?;
        Ok(format!("{}{hex}", fields::RECORD_PREFIX))
    }

    /// Journals the fields an agent entered for the citizen they assist, with the channel
    /// (synchronously: nothing is forwarded unless it is recorded).
    async fn journal_assisted_entry(
        &self,
        ctx: &RequestContext,
        p: &policy::Processing,
        agent: &crate::auth::session::Session,
        citizen: &crate::auth::counter::AssistedCitizen,
        sealed: Vec<String>,
    ) -> Result<(), ProxyError> {
        use crate::audit::{Actor, ActorKind, AuditEvent, Ident, Operation, Outcome};
        let unjournaled = |why: &'static str| ProxyError::Fields(GatewayError::StoreUnavailable, why);
        let audit = self.fields.audit.as_ref().ok_or_else(|| unjournaled("no journal for an assisted entry"))?;
        let role = agent.roles.iter().find(|r| p.assisted_entry.contains(r)).cloned().unwrap_or_default();
        let fields: Result<Vec<Ident>, _> = sealed.into_iter().map(Ident::new).collect();
        let (Ok(id), Ok(role), Ok(fields), Ok(subject)) = (
            Ident::new(crate::consent::pages::agent_ident(agent)),
            Ident::new(role),
            fields,
            Ident::new(citizen.field_subject_in(p.sector).to_owned()),
        ) else {
            return Err(unjournaled("an assisted entry's identifiers are not journal-safe"));
        };
        let mut event =
            AuditEvent::system(Operation::AssistedEntry { fields, channel: citizen.channel }, self.fields.clock.now());
        event.actor = Actor { kind: ActorKind::Agent, id };
        event.role = role;
        event.activity = Ident::new(p.activity.to_string()).ok();
        event.purpose = Ident::new(p.purpose.to_string()).ok();
        event.subject = Some(subject);
        event.outcome = Outcome::Success;
        event.request_id = Ident::new(ctx.request_id.to_string()).ok();
        audit.append_sync(event).await.map(drop).map_err(|e| {
            tracing::warn!(error = %e, "an assisted entry was refused: it could not be journaled");
            unjournaled("assisted entry not journaled")
        })
    }

    /// Strict mode (`proxy::strict`): a query parameter or body member no field declares
    /// refuses the request with their names. The body is read whole to be checked, within the
    /// transform limit, and goes on as read.
    async fn refuse_undeclared(
        &self,
        p: &policy::Processing,
        route: &Route,
        req: Request<Body>,
    ) -> Result<Request<Body>, ProxyError> {
        use super::strict;
        use crate::policy::model::FieldLocation;
        let refuse =
            |names: Vec<String>| ProxyError::Fields(GatewayError::UndeclaredMembers(names), "undeclared members");
        let (parts, body) = req.into_parts();
        if let Some(q) = parts.uri.query() {
            let names = strict::undeclared_pairs(&p.fields, FieldLocation::Query, q.as_bytes());
            if !names.is_empty() {
                return Err(refuse(names));
            }
        }
        if http_body::Body::is_end_stream(&body) {
            return Ok(Request::from_parts(parts, body));
        }
        let unreadable = "strict mode: only JSON and URL-encoded form bodies can be checked for undeclared members";
        let kind = fields::BodyKind::of(&parts.headers)
            .ok_or(ProxyError::Fields(GatewayError::FieldNotProtectable(unreadable), "strict body type"))?;
        let max = route.max_body_bytes.min(self.fields.transform_max_bytes);
        let bytes = fields::buffer(&parts.headers, body, max, route.timeouts.idle_body).await?;
        let names = match kind {
            fields::BodyKind::Form => strict::undeclared_pairs(&p.fields, FieldLocation::Form, &bytes),
            fields::BodyKind::Json if bytes.iter().all(u8::is_ascii_whitespace) => Vec::new(),
            fields::BodyKind::Json => {
                let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                    ProxyError::Fields(GatewayError::FieldNotProtectable("the JSON body is malformed"), "strict json")
                })?;
                strict::undeclared_json(&p.fields, &doc)
            }
        };
        if !names.is_empty() {
            return Err(refuse(names));
        }
        let mut parts = parts;
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(Request::from_parts(parts, Body::from(bytes)))
    }

    /// What the reveal part of `response_filter` needs, on routes of an activity with
    /// declared fields when a keyring is configured.
    fn revealer(
        &self,
        ctx: &RequestContext,
        archive_reason: Option<crate::retention::reveal::ArchiveReason>,
    ) -> Option<Revealer> {
        let p = match ctx.decision.as_ref()? {
            Decision::Processing(p) if !p.fields.is_empty() => p.clone(),
            _ => return None,
        };
        let vault = self.fields.vault.clone()?;
        let viewer = match (&ctx.identity, &self.auth) {
            (Identity::Citizen(s), Some(auth)) => {
                let mut mine = vec![auth.field_subject_in(s, p.sector).to_owned()];
                if p.sector != crate::policy::Sector::General {
                    mine.push(auth.field_subject(s).to_owned());
                }
                Viewer::Citizen(mine)
            }
            (Identity::Agent(s), _) => {
                Viewer::Agent { id: crate::consent::pages::agent_ident(s), roles: s.roles.clone() }
            }
            _ => Viewer::Anonymous,
        };
        let f = &self.fields;
        let set = self.policies.load();
        let activity = set.activity(&p.activity);
        // Restrictions (Art. 18) limit what agents see; a citizen sees their own values.
        let restricted_roles =
            activity.filter(|_| matches!(viewer, Viewer::Agent { .. })).map(|a| a.restriction_visible_to.clone());
        let archive = activity.and_then(|a| Some((self.retention.as_ref()?, a)));
        let archive = archive
            .map(|(r, a)| crate::retention::reveal::ArchiveCheck::new(r.service.clone(), a.clone(), archive_reason));
        let revealer = Revealer::new(vault, f.audit.clone(), f.clock.clone(), p, viewer, ctx.request_id.clone());
        let revealer = match (&self.rights, restricted_roles) {
            (Some(rights), Some(roles)) => revealer.with_restrictions(rights.clone(), roles),
            _ => revealer,
        };
        Some(match archive {
            Some(a) => revealer.with_archive(a),
            None => revealer,
        })
    }

    /// Phase 5: the request as the upstream will see it.
    fn upstream_request(
        &self,
        ctx: &RequestContext,
        route: &Route,
        mut req: Request<Body>,
    ) -> Result<Outbound, ProxyError> {
        if content_length(req.headers()).is_some_and(|n| n > route.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge { limit: route.max_body_bytes });
        }
        let client_upgrade = ctx.upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // The canonical path goes upstream: the application reads what was matched.
        let path_and_query = route.upstream_path_and_query(ctx.path(&parts.uri), parts.uri.query());
        parts.uri = upstream_uri(route, &path_and_query)?;
        parts.version = Version::HTTP_11;
        let h = &mut parts.headers;
        let trusted = headers::is_trusted(ctx.peer, &self.trusted_proxies);
        // Only a route sending the full address keeps a trusted chain; the others learn at
        // most the client's network, never the proxies' or the client's own address.
        let full = route.client_address == ClientAddress::Full;
        let origin = (trusted && !full).then(|| headers::client_origin(h, ctx.peer, &self.trusted_proxies));
        let keep_chain = trusted && full;
        headers::strip(
            h,
            Strip {
                hop_by_hop: true,
                keep_upgrade: ctx.upgrade,
                reserved: true,
                forwarded: !keep_chain,
                replaced: true,
            },
        );
        // Only after the strip, which removed every name written here: a client can choose
        // neither the purpose, the record, the identity, the host nor the request id that
        // the upstream sees, and none goes twice.
        let mut added = headers::Added::new();
        added.push(&header::HOST, &route.upstream.host_header);
        if let Some(p) = ctx.decision.as_ref().and_then(Decision::processing) {
            added.push(&X_GUICHET_PURPOSE, &p.header);
        }
        // The anonymous record the sealed fields belong to: the application keeps it with the
        // record, so that the DPO can shred that record's key (`guichet rights erase-record`).
        if let Some(record) = ctx.record.as_deref().and_then(|r| HeaderValue::from_str(r).ok()) {
            added.push(&X_GUICHET_RECORD, &record);
        }
        self.add_identity(ctx, route, &mut added)?;
        // The gateway already answered `Expect: 100-continue` to the client.
        h.remove(header::EXPECT);
        merge_cookies(h);
        if let Some(auth) = &self.auth {
            crate::auth::strip_own_cookies(h, &auth.settings.cookie_name);
        }
        let hop = Hop { peer: ctx.peer, tls: ctx.tls, host: &ctx.host };
        match route.client_address {
            ClientAddress::Full if keep_chain => headers::add_forwarded(h, hop, true),
            ClientAddress::Full => headers::write_forwarded(&mut added, hop),
            mode => {
                headers::add_forwarded_minimised(&mut added, hop, origin.as_ref(), mode == ClientAddress::Truncated)
            }
        }
        if let Some(v) = &ctx.request_id_header {
            added.push(&X_REQUEST_ID, v);
        }
        let body = if http_body::Body::is_end_stream(&body) {
            Body::empty()
        } else {
            Body::new(GuardedBody::new(body, Some(route.max_body_bytes), route.timeouts.idle_body))
        };
        Ok(Outbound { request: Request::from_parts(parts, body), added, client_upgrade })
    }

    /// Phase 3: who is asking, from the session cookie (cache first, store when stale).
    async fn identify(&self, ctx: &mut RequestContext, headers: &http::HeaderMap) -> Result<(), ProxyError> {
        ctx.identity = Identity::Anonymous;
        let Some(auth) = &self.auth else { return Ok(()) };
        let Some(cookie) = auth.session_cookie(headers) else { return Ok(()) };
        let now = self.fields.clock.now();
        ctx.now = Some(now);
        let session = auth.sessions.resolve_at(cookie, now).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot read the session");
            ProxyError::Access(GatewayError::StoreUnavailable, "session store unavailable")
        })?;
        if let Some(s) = session {
            ctx.identity = match s.kind {
                Kind::Citizen => Identity::Citizen(s),
                Kind::Agent => Identity::Agent(s),
            };
        }
        Ok(())
    }

    /// Adds `X-Guichet-Subject`, the allowed `X-Guichet-Claim-*` and `X-Guichet-Assertion`
    /// on protected routes (public routes learn nothing about who is asking). Runs after
    /// `headers::strip`, so nothing a client sent under these names survives.
    fn add_identity(&self, ctx: &RequestContext, route: &Route, added: &mut headers::Added) -> Result<(), ProxyError> {
        let (Some(auth), Some(session)) = (&self.auth, ctx.identity.session()) else { return Ok(()) };
        if route.access == RouteAccess::Public {
            return Ok(());
        }
        let identity = auth
            .identity_headers(session, route, ctx.now_or(self.fields.clock.as_ref()))
            .map_err(|e| ProxyError::Internal(e.to_string()))?;
        // Sized once: the assertion alone is longer than the lines' first allocation.
        added.reserve(identity.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum());
        for (name, value) in &identity.headers {
            added.push(name, value);
        }
        Ok(())
    }

    fn fail(&self, ctx: &RequestContext, e: &ProxyError) -> Response {
        if let (Some(kind), Some(route)) = (e.upstream_kind(), ctx.route_name()) {
            self.metrics.upstream_errors.get_or_create(&UpstreamErrorLabels { route: route.to_string(), kind }).inc();
        }
        e.to_gateway().respond(ctx.wants_html, Some(&ctx.request_id), Some(e.to_string()))
    }
}

/// Phase 3b: may this person use this route at all? Public routes admit everyone; citizen
/// routes a citizen at the route's eIDAS level; agent routes an agent holding one of the
/// route's roles. API routes answer 401 rather than sending to the sign-in page.
fn authorize(ctx: &mut RequestContext, route: &Route, uri: &Uri) -> Result<(), ProxyError> {
    if route.api {
        ctx.wants_html = false;
    }
    let sign_in = |agent: bool, acr: Option<u8>| {
        let return_to = ctx.return_to(uri);
        ProxyError::Access(GatewayError::SignInRequired { agent, acr, return_to }, "sign-in required")
    };
    let forbidden = |why: &'static str| ProxyError::Access(GatewayError::Forbidden(why), why);
    match (route.access, &ctx.identity) {
        (RouteAccess::Public, _) => Ok(()),
        (RouteAccess::Citizen, Identity::Citizen(s)) => {
            let need = route.min_acr.unwrap_or(1);
            match routing::acr_level(&s.acr) {
                Some(level) if level >= need => Ok(()),
                _ => Err(sign_in(false, Some(need))),
            }
        }
        (RouteAccess::Citizen, Identity::Agent(_)) => Err(forbidden("this page is for citizens, not agents")),
        (RouteAccess::Citizen, Identity::Anonymous) => Err(sign_in(false, route.min_acr)),
        (RouteAccess::Agent, Identity::Agent(s)) => {
            let allowed = if route.roles.is_empty() {
                !s.roles.is_empty()
            } else {
                s.roles.iter().any(|r| route.roles.contains(r))
            };
            if allowed { Ok(()) } else { Err(forbidden("the agent has none of the roles this route requires")) }
        }
        (RouteAccess::Agent, Identity::Citizen(_)) => Err(forbidden("this page is for agents")),
        (RouteAccess::Agent, Identity::Anonymous) => Err(sign_in(true, None)),
    }
}

/// Phase 6: send and wait for the response head. The pool enforces the route's response-head
/// timeout from the moment the request has been written, so a slow upload is governed by the
/// body's idle timeout alone (`upstream::Pool::send`).
async fn forward(
    pool: &Arc<Pool>,
    route: &Route,
    mut req: Request<Body>,
    added: &headers::Added,
    upgrade: bool,
) -> Result<Response<PooledBody>, ProxyError> {
    if upgrade {
        // hyper's client writes the head from the map.
        added.apply_to(req.headers_mut());
        // Rare, and its future is large: boxed, so as not to grow every request's.
        let limit = route.timeouts.response_headers;
        return match Box::pin(tokio::time::timeout(limit, pool.send_upgrade(req))).await {
            Ok(answer) => answer.map_err(classify),
            Err(_) => Err(ProxyError::ResponseTimeout),
        };
    }
    pool.send(req, added.as_bytes()).await.map_err(classify)
}

/// Phase 7: the response as the client will see it.
fn response_filter(
    route: &Route,
    mut resp: Response<PooledBody>,
    client_upgrade: Option<OnUpgrade>,
    revealer: Option<Revealer>,
    bar: Option<&'static [u8]>,
) -> Result<Response, ProxyError> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ProxyError::Exchange("upstream switched protocols unasked".into()));
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    let body = GuardedBody::new(body, None, route.timeouts.idle_body);
    // Only routes that reveal or show the bar look at the content type.
    let bar = bar.filter(|_| super::bar::is_html(&parts.headers));
    let body = match revealer.and_then(|r| Some((r, TextKind::of(&parts.headers)?))) {
        Some((revealer, kind)) => {
            // Values and placeholders differ in length from tokens: the body is re-framed.
            parts.headers.remove(header::CONTENT_LENGTH);
            revealer.body(kind, body)
        }
        None if bar.is_none() => return Ok(Response::from_parts(parts, Body::new(body))),
        None => Body::new(body),
    };
    let Some(bar) = bar else { return Ok(Response::from_parts(parts, body)) };
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, super::bar::insert(body, bar)))
}

/// Phase 8: the route's name for the request log and metrics (written by the server's
/// `observed`, which sees every request, proxied or not).
fn log(ctx: &RequestContext) -> Option<Arc<str>> {
    ctx.route_name().cloned()
}

async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                tracing::debug!(error = %e, "upgraded connection ended with an error");
            }
        }
        Err(e) => tracing::debug!(error = %e, "protocol upgrade failed"),
    }
}

fn classify(e: UpstreamError) -> ProxyError {
    if let Some(b) = find_body_error(&e) {
        return match b {
            BodyError::TooLarge { limit } => ProxyError::BodyTooLarge { limit: *limit },
            BodyError::Idle(_) => ProxyError::ClientIdle,
            BodyError::Inner(_) => ProxyError::BadRequest("the request body was interrupted"),
        };
    }
    match &e {
        UpstreamError::Connect(inner) if has_timed_out(&**inner) => ProxyError::ConnectTimeout,
        UpstreamError::Connect(_) => ProxyError::Connect(error_chain(&e)),
        UpstreamError::Exchange(_) => ProxyError::Exchange(error_chain(&e)),
        UpstreamError::HeadTimeout => ProxyError::ResponseTimeout,
    }
}

fn has_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// "a: b: c" from an error and its sources (hyper errors carry no request data).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

fn host_of(req: &Request<Body>) -> Result<String, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(ProxyError::BadRequest("the request has several Host headers")),
        (Some(h), None) => {
            let s = h.to_str().map_err(|_| ProxyError::BadRequest("the Host header is not valid"))?;
            s.parse::<Authority>().map_err(|_| ProxyError::BadRequest("the Host header is not valid"))?;
            if s.contains('@') {
                return Err(ProxyError::BadRequest("the Host header is not valid"));
            }
            Ok(s.to_owned())
        }
        (None, _) => req
            .uri()
            .authority()
            .map(ToString::to_string)
            .ok_or(ProxyError::BadRequest("the request has no Host header")),
    }
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    // Bytes, not `rsplit_once`: this runs twice per request and the char searcher showed.
    match host.bytes().rposition(|b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn upstream_uri(route: &Route, path_and_query: &str) -> Result<Uri, ProxyError> {
    let pq = PathAndQuery::try_from(path_and_query)
        .map_err(|_| ProxyError::BadRequest("the request target is not valid"))?;
    Uri::builder()
        .scheme(route.upstream.scheme.clone())
        .authority(route.upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|e| ProxyError::Internal(e.to_string()))
}

/// HTTP/2 clients may split `Cookie` into several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
fn merge_cookies(h: &mut http::HeaderMap) {
    if h.get_all(header::COOKIE).iter().nth(1).is_none() {
        return;
    }
    let joined = h.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect::<Vec<_>>().join(&b"; "[..]);
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// The citizen `agent` assists, when the activity lets one of the agent's roles enter its
/// fields for them (`assisted_entry`) and a selection is in force (`auth::counter`).
fn assisted_citizen(
    p: &policy::Processing,
    auth: &crate::auth::Auth,
    agent: &crate::auth::session::Session,
    headers: &http::HeaderMap,
) -> Option<crate::auth::counter::AssistedCitizen> {
    if !agent.roles.iter().any(|r| p.assisted_entry.contains(r)) {
        return None;
    }
    auth.assisted_citizen(headers, agent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_is_removed() {
        assert_eq!(host_without_port("mairie.fr:8080"), "mairie.fr");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        assert_eq!(host_without_port("mairie.fr"), "mairie.fr");
    }
}
