//! Phase `protect` (between consent and `upstream_request`): the personal fields the matched
//! activity declares are replaced, before anything reaches the upstream, by `gch1.` tokens
//! (`encrypt`), `gchp1.` pseudonyms (`pseudonymize`), or left as they are (`pass`).
//!
//! Where values are found: query parameters and headers by name, URL-encoded form fields by
//! name, JSON bodies by JSON pointer (RFC 6901, `/name` when the policy gives none) where a
//! `*` segment means "every element of this array" (`/children/*/name`) and a number the
//! element at that index (`/children/0/name`).
//!
//! Fail closed: when a declared field cannot be protected (malformed JSON, a value of an
//! unexpected shape, a body over the transform limit, an unreadable body type, no keyring, the
//! store down) the request is refused and nothing is forwarded. Routes whose activity declares
//! no field to transform are not touched: their bodies keep streaming.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Request, Uri};
use http_body_util::{BodyExt as _, Limited};
use serde_json::Value;

use super::body::{BodyError, GuardedBody};
use super::error::ProxyError;
use super::json_fields;
use crate::canonical::names;
use crate::crypto::token::{self, TokenError};
use crate::crypto::{CryptoError, FieldContext, SealingKey, Vault};
use crate::error::GatewayError;
use crate::policy::model::{Field, FieldLocation, Protection};

/// `keys.transform_max_bytes` by default (and without a `[keys]` section).
pub const DEFAULT_TRANSFORM_MAX_BYTES: u64 = 1024 * 1024;

/// The most `name=value` pairs read from one query or form body (PHP's `max_input_vars`).
pub const MAX_PAIRS: usize = 1000;
const TOO_MANY_PAIRS: &str = "the query or form has more than 1000 fields";
/// The value length a rewritten JSON body's room is sized for (names, dates, addresses): a
/// longer value only grows the buffer once.
const TYPICAL_VALUE_BYTES: usize = 48;

/// Who the encrypted values belong to, as the identify phase found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A signed-in citizen, by their field pseudonym (`Auth::field_subject`).
    Citizen(String),
    /// An anonymous request on an activity with `anonymous = "sealed"`: its own record, by a
    /// random id ([`RECORD_PREFIX`]) linked to no person, under a key of its own.
    Record(String),
    /// An agent entering fields for the citizen they assist (`auth::counter`), with a role
    /// the activity's `assisted_entry` lists: that citizen's field pseudonym.
    Assisted(String),
    /// An agent without an assisted citizen or without the role: encrypted fields are keyed
    /// to a citizen, whom their request does not name.
    Agent,
    Anonymous,
}

/// How the record ids of anonymous sealed requests start (so a shred meant for a record can
/// never reach a citizen's keys).
pub const RECORD_PREFIX: &str = "anonyme:";

/// Everything the protect phase needs for one request.
pub struct Protector<'a> {
    pub vault: Option<&'a Vault>,
    pub activity: &'a str,
    /// The JSON paths of the request fields declared in JSON bodies, in their order
    /// (`Processing::json_paths`); `None` when a declared pointer is invalid.
    pub json_paths: Option<&'a json_fields::Paths>,
    pub owner: Owner,
    /// The body limit of this request's transform: the smaller of the route's body limit and
    /// `keys.transform_max_bytes`.
    pub max_bytes: u64,
    pub idle: std::time::Duration,
    /// Where an anonymous sender comes back to after signing in.
    pub return_to: String,
    /// The citizen's data keys for this activity, one per retention class the request's
    /// values are in, each looked up once for all the request's values.
    pub sealing_keys: SealingKeys,
}

/// The data keys one request seals with: one per retention class met (a request carries
/// values of a few categories, so a short list searched in order), and the names of the
/// fields sealed (for the journal of assisted entries).
#[derive(Debug, Default)]
pub struct SealingKeys {
    keys: std::sync::Mutex<Vec<SealingKey>>,
    sealed: std::sync::Mutex<Vec<String>>,
}

impl SealingKeys {
    /// Seals into `out` with the request's key of `class`; false when it was not looked up yet.
    fn seal_into(
        &self,
        class: &str,
        ctx: &FieldContext<'_>,
        value: &str,
        out: &mut Vec<u8>,
    ) -> Result<bool, CryptoError> {
        let keys = self.keys.lock().map_err(|_| CryptoError::CachePoisoned)?;
        let Some(key) = keys.iter().find(|k| k.class() == class) else { return Ok(false) };
        key.seal_into(ctx, value, out)?;
        Ok(true)
    }

    fn keep(&self, key: SealingKey) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.push(key);
        }
    }

    fn note(&self, field: &str) -> Result<(), CryptoError> {
        let mut sealed = self.sealed.lock().map_err(|_| CryptoError::CachePoisoned)?;
        if !sealed.iter().any(|f| f == field) {
            sealed.push(field.to_owned());
        }
        Ok(())
    }

    /// The names of the fields sealed so far, each once, in the order first met; always
    /// empty for a citizen's own fields (nothing needs them).
    pub fn sealed_fields(&self) -> Vec<String> {
        self.sealed.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn refuse(e: GatewayError, why: &'static str) -> ProxyError {
    ProxyError::Fields(e, why)
}

fn shape(why: &'static str) -> ProxyError {
    refuse(GatewayError::FieldNotProtectable(why), why)
}

fn over_limit(why: &'static str) -> ProxyError {
    refuse(GatewayError::InputOverLimit(why), why)
}

fn scan_refusal(e: json_fields::ScanError) -> ProxyError {
    match e {
        json_fields::ScanError::Shape(why) => shape(why),
        json_fields::ScanError::Malformed => shape(e.reason()),
        over => over_limit(over.reason()),
    }
}

fn located(fields: &[&Field], at: FieldLocation) -> bool {
    fields.iter().any(|f| f.locations.contains(&at))
}

impl Protector<'_> {
    /// Runs the phase: query, headers, then the body. Returns the request to forward.
    pub async fn protect(&self, fields: &[&Field], req: Request<Body>) -> Result<Request<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        refuse_body_fields_in_query(fields, &parts.uri)?;
        if located(fields, FieldLocation::Query) {
            self.protect_query(fields, &mut parts).await?;
        }
        if located(fields, FieldLocation::Header) {
            self.protect_headers(fields, &mut parts).await?;
        }
        let in_body = located(fields, FieldLocation::Json) || located(fields, FieldLocation::Form);
        if !in_body || http_body::Body::is_end_stream(&body) {
            return Ok(Request::from_parts(parts, body));
        }
        let kind = BodyKind::of(&parts.headers).ok_or_else(|| {
            shape("the body type cannot be read for its declared personal fields (JSON or URL-encoded form only)")
        })?;
        // A field declared for forms must not slip through in clear inside a JSON body (and
        // the reverse): the body type must be one the activity declares its fields for.
        let declared_here = match kind {
            BodyKind::Json => located(fields, FieldLocation::Json),
            BodyKind::Form => located(fields, FieldLocation::Form),
        };
        if !declared_here {
            return Err(shape("the body type is not one the activity declares its personal fields for"));
        }
        let bytes = self.buffer(&parts.headers, body).await?;
        let rewritten = match kind {
            BodyKind::Json => self.protect_json(fields, &bytes).await?,
            BodyKind::Form => self.protect_form(fields, &bytes).await?,
        };
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
        Ok(Request::from_parts(parts, Body::from(rewritten)))
    }

    fn vault(&self) -> Result<&Vault, ProxyError> {
        self.vault.ok_or_else(|| refuse(GatewayError::ProtectionUnavailable, "no keyring configured for fields"))
    }

    /// The blind index of a searchable field's value (exact-match search; no subject needed,
    /// so an agent's search works).
    fn index(&self, field: &Field, value: &str) -> Result<String, ProxyError> {
        Ok(self.vault()?.blind_index(self.activity, &field.name, value))
    }

    /// The protected form of one value of `field`. A blank value stays as it is: it reveals
    /// nothing but its blankness, and the application's own "required field" check must see
    /// it (docs/cryptography.md).
    async fn value(&self, field: &Field, value: &str) -> Result<String, ProxyError> {
        if is_blank(value) {
            return Ok(value.to_owned());
        }
        match field.protection {
            Protection::Pass => Ok(value.to_owned()),
            Protection::Pseudonymize => Ok(self.vault()?.pseudonymize(self.activity, &field.name, value)),
            Protection::Encrypt => {
                let mut token = Vec::with_capacity(token::token_len(value.len()));
                self.seal_into(field, value, &mut token).await?;
                String::from_utf8(token).map_err(|_| ProxyError::Internal("a token is not text".into()))
            }
        }
    }

    /// Writes the protected form of one value of `field` into a JSON document being
    /// rewritten, as a JSON string; a token is sealed straight into it.
    async fn write_json_value(&self, field: &Field, value: &str, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        if matches!(field.protection, Protection::Encrypt) && !is_blank(value) {
            out.push(b'"');
            self.seal_into(field, value, out).await?;
            out.push(b'"');
            return Ok(());
        }
        json_fields::write_string(out, &self.value(field, value).await?);
        Ok(())
    }

    /// Seals a (non-blank) value of `field` for the request's owner, appending its token to `out`.
    async fn seal_into(&self, field: &Field, value: &str, out: &mut Vec<u8>) -> Result<(), ProxyError> {
        let subject = match &self.owner {
            Owner::Citizen(s) | Owner::Record(s) | Owner::Assisted(s) => s.as_str(),
            Owner::Agent => {
                let e = GatewayError::Forbidden(
                    "encrypted personal fields can only be sent by the citizen they belong to, or by an agent \
                     allowed to enter them for the citizen they assist",
                );
                return Err(refuse(e, "agent sent an encrypted field"));
            }
            Owner::Anonymous => {
                let e = GatewayError::SignInRequired { agent: false, acr: None, return_to: self.return_to.clone() };
                return Err(refuse(e, "anonymous request carries an encrypted field"));
            }
        };
        // Each value under its category's retention class key, so one category can be
        // shredded when its retention ends while the others stay readable.
        let ctx = FieldContext { activity: self.activity, field: &field.name, subject };
        let class = field.retention_class();
        if !matches!(self.owner, Owner::Citizen(_)) {
            // Only a record's id and an assisted entry's journal need them.
            self.sealing_keys.note(&field.name).map_err(crypto_error)?;
        }
        if self.sealing_keys.seal_into(class, &ctx, value, out).map_err(crypto_error)? {
            return Ok(());
        }
        // The request's key of `class`, looked up once per request and class: from the
        // cache without waiting when it can, else from the store, whose large future is
        // boxed so that this one stays small (it is created and moved once per value).
        let vault = self.vault()?;
        let key = match vault.cached_sealing_key(subject, self.activity, class).map_err(crypto_error)? {
            Some(key) => key,
            None => Box::pin(vault.sealing_key(subject, self.activity, class)).await.map_err(crypto_error)?,
        };
        key.seal_into(&ctx, value, out).map_err(crypto_error)?;
        self.sealing_keys.keep(key);
        Ok(())
    }

    async fn protect_query(&self, fields: &[&Field], parts: &mut Parts) -> Result<(), ProxyError> {
        let Some(query) = parts.uri.query() else { return Ok(()) };
        let Some(rewritten) = self.protect_pairs(fields, FieldLocation::Query, query.as_bytes()).await? else {
            return Ok(());
        };
        let path = parts.uri.path();
        let pq = if rewritten.is_empty() { path.to_owned() } else { format!("{path}?{rewritten}") };
        let mut uri = parts.uri.clone().into_parts();
        uri.path_and_query = Some(pq.parse().map_err(|_| ProxyError::BadRequest("the query cannot be rewritten"))?);
        parts.uri = Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest("the query cannot be rewritten"))?;
        Ok(())
    }

    async fn protect_headers(&self, fields: &[&Field], parts: &mut Parts) -> Result<(), ProxyError> {
        for f in fields.iter().filter(|f| f.locations.contains(&FieldLocation::Header)) {
            refuse_other_header_spelling(&parts.headers, &f.name)?;
            let Ok(name) = header::HeaderName::from_bytes(f.name.as_bytes()) else { continue };
            let mut values = parts.headers.get_all(&name).iter();
            let (Some(v), None) = (values.next(), values.next()) else {
                if parts.headers.contains_key(&name) {
                    return Err(shape("a personal header was sent more than once"));
                }
                continue;
            };
            let v = v.to_str().map_err(|_| shape("a personal header is not plain ASCII"))?.to_owned();
            let protected = self.value(f, &v).await?;
            let hv =
                HeaderValue::from_str(&protected).map_err(|_| shape("a personal header cannot carry its token"))?;
            parts.headers.insert(name, hv);
        }
        Ok(())
    }

    /// Rewrites URL-encoded `name=value` pairs (query or form); `None` when no declared field
    /// is present (the original bytes are kept as sent).
    async fn protect_pairs(
        &self,
        fields: &[&Field],
        at: FieldLocation,
        bytes: &[u8],
    ) -> Result<Option<String>, ProxyError> {
        let pairs = read_pairs(fields, at, bytes)?;
        if pairs.iter().all(|p| p.field.is_none()) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(pairs.len() + 1);
        let mut changed = false;
        for Pair { name, value, field } in pairs {
            let Some(f) = field else {
                out.push((name, value));
                continue;
            };
            if is_blank(&value) {
                // Nothing to protect: an empty value stays empty (docs/cryptography.md).
                out.push((name, value));
                continue;
            }
            changed = true;
            if f.searchable && at == FieldLocation::Query {
                // A search: the upstream compares it with the index it stored.
                let index = self.index(f, &value)?;
                out.push((name, index));
                continue;
            }
            let index = f.searchable.then(|| self.index(f, &value)).transpose()?;
            out.push((name.clone(), self.value(f, &value).await?));
            if let Some(index) = index {
                out.push((index_name(&name), index));
            }
        }
        if !changed {
            return Ok(None);
        }
        Ok(Some(write_pairs(&out)))
    }

    async fn protect_form(&self, fields: &[&Field], bytes: &Bytes) -> Result<Bytes, ProxyError> {
        Ok(match self.protect_pairs(fields, FieldLocation::Form, bytes).await? {
            Some(text) => Bytes::from(text),
            None => bytes.clone(),
        })
    }

    /// JSON bodies are rewritten where the declared values are, every other byte copied as
    /// sent (`json_fields`). Activities with a searchable JSON field go through the tree walk
    /// instead, which puts each blind index beside its value and overwrites a
    /// `<name>_index` member the client sent.
    async fn protect_json(&self, fields: &[&Field], bytes: &Bytes) -> Result<Bytes, ProxyError> {
        let mut json = Vec::with_capacity(fields.len());
        json.extend(fields.iter().copied().filter(|f| f.locations.contains(&FieldLocation::Json)));
        let fields = json;
        let malformed = || shape("the JSON body is malformed");
        // The scanner checks the grammar as it goes, on text known to be UTF-8.
        let text = simdutf8::basic::from_utf8(bytes).map_err(|_| malformed())?;
        let paths = self.json_paths.ok_or_else(|| shape("a declared JSON pointer is invalid"))?;
        // A found value names its field by position: the compiled paths must be these fields'.
        if paths.len() != fields.len() {
            return Err(ProxyError::Internal("compiled JSON paths do not match the declared fields".into()));
        }
        // The scan runs for the tree walk too: it bounds depth and size before any tree is
        // built (or dropped, which recurses as deep as the tree).
        let found = json_fields::find_in(text, paths).map_err(scan_refusal)?;
        if fields.iter().any(|f| f.searchable) {
            return self.protect_json_tree(&fields, bytes).await;
        }
        if found.is_empty() {
            return Ok(bytes.clone());
        }
        let room = found.len() * token::token_len(TYPICAL_VALUE_BYTES);
        let mut out = json_fields::Splice::new(bytes, room);
        for f in &found {
            let field = fields.get(f.path).ok_or_else(malformed)?;
            let clear = json_fields::clear_text(text, f).ok_or_else(malformed)?;
            self.write_json_value(field, &clear, out.replace(f)).await?;
        }
        Ok(Bytes::from(out.finish()))
    }

    /// The tree walk: parse, replace, put indexes beside, serialise again.
    async fn protect_json_tree(&self, fields: &[&Field], bytes: &Bytes) -> Result<Bytes, ProxyError> {
        let mut doc: Value = serde_json::from_slice(bytes).map_err(|_| shape("the JSON body is malformed"))?;
        let mut changed = false;
        for f in fields.iter().filter(|f| f.locations.contains(&FieldLocation::Json)) {
            let segments = f.json_segments().ok_or_else(|| shape("a declared JSON pointer is invalid"))?;
            if !f.searchable {
                // The values are replaced where they are found, without building pointers.
                let mut slots = Vec::new();
                find_slots(&mut doc, segments, &mut slots)?;
                for slot in slots {
                    let Some(clear) = take_plain_text(slot)? else { continue };
                    *slot = Value::String(self.value(f, &clear).await?);
                    changed = true;
                }
                continue;
            }
            // Searchable: the index goes beside the value, found again by its pointer.
            let mut targets = Vec::new();
            find_targets(&doc, segments, String::new(), &mut targets)?;
            for at in targets {
                let Some(clear) = doc.pointer(&at).map(plain_text).transpose()?.flatten() else { continue };
                let protected = self.value(f, &clear).await?;
                if let Some(slot) = doc.pointer_mut(&at) {
                    *slot = Value::String(protected);
                    changed = true;
                }
                if f.searchable {
                    let index = self.index(f, &clear)?;
                    put_beside(&mut doc, &at, index)?;
                }
            }
        }
        if !changed {
            return Ok(bytes.clone());
        }
        serde_json::to_vec(&doc).map(Bytes::from).map_err(|e| ProxyError::Internal(e.to_string()))
    }

    /// Reads the whole body, refusing it above the transform limit without forwarding a byte.
    async fn buffer(&self, headers: &http::HeaderMap, body: Body) -> Result<Bytes, ProxyError> {
        buffer(headers, body, self.max_bytes, self.idle).await
    }
}

/// Reads a whole request body, refusing it above `max_bytes` without forwarding a byte.
pub async fn buffer(
    headers: &http::HeaderMap,
    body: Body,
    max_bytes: u64,
    idle: std::time::Duration,
) -> Result<Bytes, ProxyError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes) {
        return Err(ProxyError::BodyTooLarge { limit: max_bytes });
    }
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let guarded = GuardedBody::new(body, None, idle);
    match Limited::new(guarded, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge { limit: max_bytes }),
        Err(e) if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::Idle(_))) => Err(ProxyError::ClientIdle),
        Err(_) => Err(ProxyError::BadRequest("the request body could not be read")),
    }
}

/// One `name=value` pair of URL-encoded data, decoded, and the declared field it carries.
#[derive(Debug, Clone)]
pub struct Pair<'f> {
    pub name: String,
    pub value: String,
    pub field: Option<&'f Field>,
}

/// The pairs of URL-encoded data (query or form) at `at`, each with the declared field it
/// carries; refused when ambiguous, over [`MAX_PAIRS`], or carrying a declared field under
/// another spelling.
pub fn read_pairs<'f>(fields: &[&'f Field], at: FieldLocation, bytes: &[u8]) -> Result<Vec<Pair<'f>>, ProxyError> {
    simdutf8::basic::from_utf8(bytes).map_err(|_| shape("URL-encoded data is not valid UTF-8"))?;
    if bytes.contains(&b';') {
        // Some frameworks split pairs on `;` too: `a=1;name=Dupont` would reach them as a
        // `name` the gateway never saw. Browsers always encode it (`%3B`).
        return Err(shape("a raw `;` in URL-encoded data is ambiguous (encode it as %3B)"));
    }
    let mut pairs = Vec::new();
    for (name, value) in url::form_urlencoded::parse(bytes) {
        if pairs.len() == MAX_PAIRS {
            return Err(over_limit(TOO_MANY_PAIRS));
        }
        let field = fields.iter().copied().find(|f| f.name == name && f.locations.contains(&at));
        if field.is_none() {
            // `NOM`, `nom[]`, `_nom` or `no.m` reach some stack as the declared `nom`: in clear.
            refuse_other_spelling(fields, at, &name)?;
        }
        pairs.push(Pair { name: name.into_owned(), value: value.into_owned(), field });
    }
    Ok(pairs)
}

/// URL-encoded data from pairs, as browsers encode forms.
pub fn write_pairs(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

/// The body types whose fields the phase can find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

impl BodyKind {
    pub fn of(headers: &http::HeaderMap) -> Option<Self> {
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let essence = ct.split(';').next().unwrap_or("").trim();
        let json_suffix = essence.len().checked_sub(5).and_then(|at| essence.get(at..));
        if essence.eq_ignore_ascii_case("application/json")
            || json_suffix.is_some_and(|s| s.eq_ignore_ascii_case("+json"))
        {
            Some(Self::Json)
        } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Some(Self::Form)
        } else {
            None
        }
    }
}

fn crypto_error(e: CryptoError) -> ProxyError {
    match e {
        CryptoError::Store(err) => {
            tracing::warn!(error = %err, "cannot reach the key store to protect a field");
            refuse(GatewayError::StoreUnavailable, "key store unavailable")
        }
        CryptoError::Token(TokenError::TooLong) => shape("a personal value is longer than 8 KiB"),
        other => {
            tracing::warn!(error = %other, "cannot protect a personal field");
            refuse(GatewayError::ProtectionUnavailable, "field key unavailable")
        }
    }
}

/// True when a value holds nothing to protect: empty, or only ASCII whitespace.
fn is_blank(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_whitespace() || b == b'\x0b')
}

/// Refuses a form or query name that a modelled application stack would bind to a declared
/// field (other letter case, PHP's mangling, brackets, dots, Spring's markers, ASP.NET's
/// prefix: `canonical::names::ParamName`) without being its exact declared spelling, and a
/// name holding a control character: either would reach the application in clear.
fn refuse_other_spelling(fields: &[&Field], at: FieldLocation, name: &str) -> Result<(), ProxyError> {
    if names::has_control(name) {
        return Err(shape("a parameter name holds a control character"));
    }
    let sent = names::Sent::of(name);
    if fields.iter().any(|f| f.locations.contains(&at) && sent.binds_into(f.param_name())) {
        return Err(shape(super::json_fields::OTHER_SPELLING));
    }
    Ok(())
}

/// Refuses, in the query, a field declared for the body only (a form field, or a JSON member
/// named by the field's name) in any spelling: Rack merges the query into the body's
/// parameters (the query wins), PHP's `$_REQUEST` and ASP.NET's binding read both, so it would
/// reach the application in clear. Blank values reveal nothing and pass.
fn refuse_body_fields_in_query(fields: &[&Field], uri: &Uri) -> Result<(), ProxyError> {
    let Some(query) = uri.query() else { return Ok(()) };
    let in_body_only = |f: &&&Field| {
        !f.locations.contains(&FieldLocation::Query)
            && (f.locations.contains(&FieldLocation::Form)
                || (f.locations.contains(&FieldLocation::Json) && f.json_pointer.is_none()))
    };
    if !fields.iter().any(|f| in_body_only(&f)) {
        return Ok(());
    }
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if is_blank(&value) {
            continue;
        }
        let sent = names::Sent::of(&name);
        if fields.iter().filter(in_body_only).any(|f| f.name == name || sent.binds_into(f.param_name())) {
            return Err(shape("a personal field declared for the body was sent in the query"));
        }
    }
    Ok(())
}

/// Refuses a header whose CGI key is a declared header field's but whose name is not
/// (`X_Numero` for `X-Numero`): CGI-style applications read both as the same variable.
fn refuse_other_header_spelling(headers: &http::HeaderMap, declared: &str) -> Result<(), ProxyError> {
    let other = headers.keys().any(|k| {
        let k = k.as_str();
        !k.eq_ignore_ascii_case(declared) && names::same_cgi_key(k, declared)
    });
    if other {
        return Err(shape(super::json_fields::OTHER_SPELLING));
    }
    Ok(())
}

/// The member or form field carrying a searchable field's blind index.
fn index_name(name: &str) -> String {
    format!("{name}_index")
}

/// Puts `index` beside the value at the concrete pointer `at`, as the member
/// `<member>_index` of the same object (an array element has no name to put it beside).
fn put_beside(doc: &mut Value, at: &str, index: String) -> Result<(), ProxyError> {
    let (parent, last) = at.rsplit_once('/').ok_or_else(|| shape("a searchable field has no place in the JSON"))?;
    let member = last.replace("~1", "/").replace("~0", "~");
    match doc.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(index_name(&member), Value::String(index));
            Ok(())
        }
        _ => Err(shape("a searchable field must be a member of a JSON object")),
    }
}

fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The concrete pointers (no `*`) of every value the declared `segments` reach in `v`. An
/// absent member is not an error (the field was not sent); a path that runs into a value of
/// the wrong kind is, because the client's data does not have the declared shape.
fn find_targets(v: &Value, segments: &[String], at: String, out: &mut Vec<String>) -> Result<(), ProxyError> {
    let Some((seg, rest)) = segments.split_first() else {
        out.push(at);
        return Ok(());
    };
    match v {
        Value::Object(m) => {
            refuse_other_case(m, seg)?;
            match m.get(seg) {
                Some(child) => find_targets(child, rest, format!("{at}/{}", escape_segment(seg)), out),
                None => Ok(()),
            }
        }
        Value::Array(items) if seg == "*" => {
            for (i, item) in items.iter().enumerate() {
                find_targets(item, rest, format!("{at}/{i}"), out)?;
            }
            Ok(())
        }
        Value::Array(items) => match seg.parse::<usize>().ok().and_then(|i| items.get(i).map(|item| (i, item))) {
            Some((i, item)) => find_targets(item, rest, format!("{at}/{i}"), out),
            None if seg.parse::<usize>().is_ok() => Ok(()),
            None => Err(shape("an array where the declared path names a member")),
        },
        Value::Null => Ok(()),
        _ => Err(shape("a plain value where the declared path expects an object or array")),
    }
}

/// The tree walk's side of `json_fields`' refusals: a declared member in another case, and a
/// non-empty object where the path declares an array (`*`).
fn refuse_other_case(m: &serde_json::Map<String, Value>, seg: &str) -> Result<(), ProxyError> {
    if seg == "*" && !m.is_empty() {
        return Err(shape(super::json_fields::OBJECT_WHERE_ARRAY));
    }
    if m.keys().any(|k| super::json_fields::other_case(k, seg)) {
        return Err(shape(super::json_fields::OTHER_SPELLING));
    }
    Ok(())
}

/// Every value the declared `segments` reach in `v`, to be replaced in place; the same walk
/// and the same refusals as [`find_targets`].
fn find_slots<'v>(v: &'v mut Value, segments: &[String], out: &mut Vec<&'v mut Value>) -> Result<(), ProxyError> {
    let Some((seg, rest)) = segments.split_first() else {
        out.push(v);
        return Ok(());
    };
    match v {
        Value::Object(m) => {
            refuse_other_case(m, seg)?;
            match m.get_mut(seg) {
                Some(child) => find_slots(child, rest, out),
                None => Ok(()),
            }
        }
        Value::Array(items) => {
            if seg == "*" {
                for item in items.iter_mut() {
                    find_slots(item, rest, out)?;
                }
                return Ok(());
            }
            match seg.parse::<usize>() {
                Ok(i) => items.get_mut(i).map_or(Ok(()), |item| find_slots(item, rest, out)),
                Err(_) => Err(shape("an array where the declared path names a member")),
            }
        }
        Value::Null => Ok(()),
        _ => Err(shape("a plain value where the declared path expects an object or array")),
    }
}

/// [`plain_text`], moving a string out of the document instead of copying it (its slot is
/// overwritten with the token next).
fn take_plain_text(v: &mut Value) -> Result<Option<String>, ProxyError> {
    match v {
        Value::String(s) => Ok(Some(std::mem::take(s))),
        other => plain_text(other),
    }
}

/// The text to protect at a declared place: strings as they are, numbers and booleans as
/// their JSON text (the upstream then stores a string token there), `null` left alone.
fn plain_text(v: &Value) -> Result<Option<String>, ProxyError> {
    match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(_) | Value::Bool(_) => Ok(Some(v.to_string())),
        Value::Null => Ok(None),
        Value::Object(_) | Value::Array(_) => Err(shape("an object or array where a personal value is expected")),
    }
}

/// What the proxy needs to protect and reveal fields.
#[derive(Debug, Clone)]
pub struct FieldSettings {
    /// Absent without `[keys]`: declared fields then fail closed and nothing is revealed.
    pub vault: Option<Arc<Vault>>,
    pub transform_max_bytes: u64,
    /// Where reveals to agents are journaled.
    pub audit: Option<Arc<crate::audit::Audit>>,
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Record ids of anonymous sealed requests.
    pub random: Arc<dyn crate::clock::Random>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::pointer_segments;
    use serde_json::json;

    fn targets(doc: &Value, pointer: &str) -> Result<Vec<String>, ProxyError> {
        let mut out = Vec::new();
        find_targets(doc, &pointer_segments(pointer).unwrap(), String::new(), &mut out).map(|()| out)
    }

    #[test]
    fn pointers_reach_nested_members_and_every_array_element() {
        let doc = json!({"child": {"name": "A"}, "kids": [{"name": "B"}, {"name": "C"}, {}], "a/b": "x"});
        assert_eq!(targets(&doc, "/child/name").unwrap(), ["/child/name"]);
        assert_eq!(targets(&doc, "/kids/*/name").unwrap(), ["/kids/0/name", "/kids/1/name"]);
        assert_eq!(targets(&doc, "/kids/1/name").unwrap(), ["/kids/1/name"]);
        assert_eq!(targets(&doc, "/a~1b").unwrap(), ["/a~1b"]);
        assert!(targets(&doc, "/missing/name").unwrap().is_empty());
    }

    /// What `find_slots` reaches, as the values found there.
    fn slots(doc: &mut Value, pointer: &str) -> Result<Vec<Value>, ProxyError> {
        let mut out = Vec::new();
        find_slots(doc, &pointer_segments(pointer).unwrap(), &mut out)
            .map(|()| out.into_iter().map(|v| v.clone()).collect())
    }

    #[test]
    fn slots_are_the_values_the_pointers_reach_and_the_same_shapes_are_refused() {
        let mut doc = json!({"child": {"name": "A"}, "kids": [{"name": "B"}, {"name": "C"}, {}], "a/b": "x", "n": [1]});
        for pointer in ["/child/name", "/kids/*/name", "/kids/1/name", "/a~1b", "/missing/name", "/kids/7/name"] {
            let expected: Vec<Value> =
                targets(&doc, pointer).unwrap().iter().map(|at| doc.pointer(at).unwrap().clone()).collect();
            assert_eq!(slots(&mut doc, pointer).unwrap(), expected, "{pointer}");
        }
        assert_eq!(slots(&mut doc, "/kids/*/name").unwrap(), [json!("B"), json!("C")]);
        assert!(slots(&mut doc, "/child/name/x").is_err());
        assert!(slots(&mut doc, "/n/name").is_err());
        let mut capitals = json!({"child": {"NAME": "A"}});
        assert!(targets(&capitals, "/child/name").is_err(), "another letter case is refused");
        assert!(slots(&mut capitals, "/child/name").is_err(), "by both walks");
        let mut s = json!("Dupont");
        assert_eq!(take_plain_text(&mut s).unwrap().as_deref(), Some("Dupont"));
        assert_eq!(take_plain_text(&mut json!(true)).unwrap().as_deref(), Some("true"));
    }

    #[test]
    fn a_path_through_the_wrong_kind_of_value_is_refused() {
        let doc = json!({"child": "A", "kids": [1]});
        assert!(targets(&doc, "/child/name").is_err());
        assert!(targets(&doc, "/kids/name").is_err());
        assert!(plain_text(&json!({"first": "A"})).is_err());
        assert_eq!(plain_text(&json!(42)).unwrap().as_deref(), Some("42"));
        assert_eq!(plain_text(&Value::Null).unwrap(), None);
        // `*` declares an array: an index-keyed (or any non-empty) object is refused, by both walks.
        let mut indexed = json!({"kids": {"0": {"name": "A"}}});
        assert!(targets(&indexed, "/kids/*/name").is_err());
        assert!(slots(&mut indexed, "/kids/*/name").is_err());
        assert!(targets(&json!({"kids": {}}), "/kids/*/name").unwrap().is_empty());
    }

    #[test]
    fn blank_values_are_those_with_nothing_to_protect() {
        for v in ["", " ", "\t\r\n", "\x0b"] {
            assert!(is_blank(v), "{v:?}");
        }
        for v in ["x", " x ", "\0", "\u{a0}"] {
            assert!(!is_blank(v), "{v:?}");
        }
    }

    #[test]
    fn body_kinds_by_content_type() {
        let mut h = http::HeaderMap::new();
        assert_eq!(BodyKind::of(&h), None);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(BodyKind::of(&h), Some(BodyKind::Json));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert_eq!(BodyKind::of(&h), Some(BodyKind::Form));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=x"));
        assert_eq!(BodyKind::of(&h), None);
        // Media types are case-insensitive (RFC 9110 §8.3.1).
        for json in ["Application/JSON", " application/Problem+JSON ;charset=utf-8", "+json"] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(json));
            assert_eq!(BodyKind::of(&h), Some(BodyKind::Json), "{json}");
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("APPLICATION/X-WWW-FORM-URLENCODED"));
        assert_eq!(BodyKind::of(&h), Some(BodyKind::Form));
        for other in ["json", "application/jsonx", "text/plain", ""] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(other));
            assert_eq!(BodyKind::of(&h), None, "{other}");
        }
    }
}
