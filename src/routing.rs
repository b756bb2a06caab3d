//! Which application a request is for: the route table compiled from `[[routes]]`.
//!
//! Matching: a route with a `host` beats one without; then the longest `path_prefix` wins.
//! Prefixes match on segment boundaries (`/app` matches `/app` and `/app/x`, not `/apple`),
//! against the canonical path (`canonical::path`), letters compared case-insensitively like
//! activity rules (docs/proxy.md, "Paths").

use std::path::PathBuf;
use std::sync::Arc;

use http::Uri;
use http::uri::{Authority, Scheme};

use crate::config::{RouteAccess, RouteSettings, TimeoutSettings};

/// Reserved prefix: everything under it is served by the gateway itself, never proxied.
pub const RESERVED_PREFIX: &str = "/.guichet/";

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: Arc<str>,
    pub host: Option<String>,
    pub prefix: String,
    pub upstream: Upstream,
    pub strip_prefix: bool,
    pub timeouts: TimeoutSettings,
    pub max_body_bytes: u64,
    // Sign-in (issue 3).
    pub access: RouteAccess,
    /// eIDAS level required on a citizen route (1, 2 or 3).
    pub min_acr: Option<u8>,
    pub roles: Vec<String>,
    pub claims: Vec<Arc<str>>,
    pub api: bool,
    /// What the application learns of the client's address (docs/proxy.md).
    pub client_address: crate::config::ClientAddress,
    /// `Strict-Transport-Security` on proxied responses too (TLS on only).
    pub hsts: bool,
    /// The gateway's bar is inserted into this route's HTML pages (`proxy::bar`).
    pub privacy_bar: bool,
}

/// The eIDAS level of an `acr` value (`eidas1` → 1); `None` for anything else.
pub fn acr_level(acr: &str) -> Option<u8> {
    match acr {
        "eidas1" => Some(1),
        "eidas2" => Some(2),
        "eidas3" => Some(3),
        _ => None,
    }
}

/// Where a route forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Base path without trailing slash ("" for the root).
    pub base_path: String,
    pub ca_file: Option<PathBuf>,
    /// `Host` for requests to this upstream, built once rather than per request.
    pub host_header: http::HeaderValue,
}

impl Upstream {
    /// Parses an upstream base URL, explaining what is wrong in plain words.
    pub fn parse(url: &str, ca_file: Option<PathBuf>) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("`{url}` is not a valid URL ({e})"))?;
        let scheme =
            uri.scheme().cloned().ok_or_else(|| format!("`{url}` has no scheme: write http:// or https://"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("`{url}` must start with http:// or https://"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| format!("`{url}` has no host"))?;
        if authority.host().is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        if authority.as_str().contains('@') {
            return Err(format!("`{url}` must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(format!("`{url}` must not have a query string"));
        }
        if ca_file.is_some() && scheme != Scheme::HTTPS {
            return Err("`upstream_ca_file` only applies to an https:// upstream".to_owned());
        }
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let host_header = http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("`{url}` has a host that cannot be sent in a Host header"))?;
        Ok(Self { scheme, authority, base_path, ca_file, host_header })
    }

    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

impl Route {
    /// Compiles one `[[routes]]` entry; errors name the sub-key at fault.
    pub fn compile(s: &RouteSettings, default_max_body: u64) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        if s.name.trim().is_empty() {
            errors.push(("name", "must not be empty".to_owned()));
        }
        if !s.path_prefix.starts_with('/') {
            errors.push(("path_prefix", format!("`{}` must start with /", s.path_prefix)));
        }
        if s.path_prefix.split('/').any(|seg| seg == ".." || seg == ".") {
            errors.push(("path_prefix", format!("`{}` must not contain . or .. segments", s.path_prefix)));
        }
        let prefix = normalise_prefix(&s.path_prefix);
        if s.path_prefix.starts_with('/') && crate::canonical::path::is_ambiguous(&prefix) {
            errors.push((
                "path_prefix",
                format!(
                    "`{}` must not contain encoded separators, `;`, `\\` or a segment ending in a dot",
                    s.path_prefix
                ),
            ));
        }
        let lower = prefix.to_ascii_lowercase();
        if is_reserved(&lower) || (lower.len() > 1 && RESERVED_PREFIX.starts_with(&format!("{lower}/"))) {
            errors
                .push(("path_prefix", format!("`{}` is inside the reserved prefix {RESERVED_PREFIX}", s.path_prefix)));
        }
        let host = s.host.as_ref().map(|h| h.trim().to_ascii_lowercase());
        if let Some(h) = &host
            && (h.is_empty() || h.parse::<Authority>().is_err() || h.contains(['/', '@']))
        {
            errors.push(("host", format!("`{h}` is not a valid host name")));
        }
        let upstream =
            Upstream::parse(&s.upstream, s.upstream_ca_file.clone()).map_err(|e| errors.push(("upstream", e))).ok();
        for (key, d) in [
            ("timeouts.connect", s.timeouts.connect),
            ("timeouts.response_headers", s.timeouts.response_headers),
            ("timeouts.idle_body", s.timeouts.idle_body),
        ] {
            if d.is_zero() {
                errors.push((key, "must be longer than zero".to_owned()));
            }
        }
        if s.max_body_bytes == Some(0) {
            errors.push(("max_body_bytes", "must be at least 1".to_owned()));
        }
        let min_acr = s.min_acr.as_deref().and_then(acr_level);
        errors.extend(check_access(s));
        match upstream {
            Some(upstream) if errors.is_empty() => Ok(Self {
                name: Arc::from(s.name.as_str()),
                host,
                prefix,
                upstream,
                strip_prefix: s.strip_prefix,
                timeouts: s.timeouts,
                max_body_bytes: s.max_body_bytes.unwrap_or(default_max_body),
                access: s.access,
                min_acr,
                roles: s.roles.clone(),
                claims: s.claims.iter().map(|c| Arc::from(c.as_str())).collect(),
                api: s.api,
                client_address: s.client_address,
                hsts: s.hsts,
                privacy_bar: s.privacy_bar,
            }),
            _ => Err(errors),
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        if self.prefix == "/" {
            return true;
        }
        strip_prefix_any_case(path, &self.prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The path and query to send upstream.
    pub fn upstream_path_and_query(&self, path: &str, query: Option<&str>) -> String {
        let rest = if self.strip_prefix && self.prefix != "/" {
            strip_prefix_any_case(path, &self.prefix).unwrap_or(path)
        } else {
            path
        };
        let rest = if rest.is_empty() { "/" } else { rest };
        let mut out = String::with_capacity(self.upstream.base_path.len() + rest.len() + 1);
        out.push_str(&self.upstream.base_path);
        out.push_str(rest);
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// Claims a route may pass upstream: the FranceConnect identity pivot and ProConnect's.
pub const KNOWN_CLAIMS: &[&str] = &[
    "given_name",
    "family_name",
    "birthdate",
    "gender",
    "birthplace",
    "birthcountry",
    "preferred_username",
    "email",
    "usual_name",
    "uid",
    "siret",
    "siren",
    "organizational_unit",
    "belonging_population",
    "phone",
    "idp_id",
];

fn check_access(s: &RouteSettings) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if let Some(a) = &s.min_acr {
        if acr_level(a).is_none() {
            errors.push(("min_acr", format!("`{a}` is not an eIDAS level: use eidas1, eidas2 or eidas3")));
        }
        if s.access != RouteAccess::Citizen {
            errors.push(("min_acr", "only applies to a route with access = \"citizen\"".to_owned()));
        }
    }
    if !s.roles.is_empty() && s.access != RouteAccess::Agent {
        errors.push(("roles", "only applies to a route with access = \"agent\"".to_owned()));
    }
    if !s.claims.is_empty() && s.access == RouteAccess::Public {
        errors
            .push(("claims", "a public route receives no identity: set access to \"citizen\" or \"agent\"".to_owned()));
    }
    for c in &s.claims {
        if !KNOWN_CLAIMS.contains(&c.as_str()) {
            errors.push(("claims", format!("`{c}` is not a known identity claim ({})", KNOWN_CLAIMS.join(", "))));
        }
    }
    errors
}

/// A prefix in canonical form (`canonical::path::normalise`), without trailing slash.
fn normalise_prefix(p: &str) -> String {
    let canonical = crate::canonical::path::normalise(p).map_or_else(|_| p.to_owned(), std::borrow::Cow::into_owned);
    let t = canonical.trim_end_matches('/');
    if t.is_empty() { "/".to_owned() } else { t.to_owned() }
}

/// `path` without `prefix`, letters compared case-insensitively.
fn strip_prefix_any_case<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let head = path.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { path.get(prefix.len()..) } else { None }
}

/// True for paths the gateway serves itself (`/.guichet` and everything under it).
pub fn is_reserved(path: &str) -> bool {
    path == "/.guichet" || path.starts_with(RESERVED_PREFIX)
}

/// All routes, in matching order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Compiles every route; returns `(key, message)` pairs for all problems, keys relative to
    /// the configuration root (`routes[2].upstream`).
    pub fn compile(settings: &[RouteSettings], default_max_body: u64) -> Result<Self, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut routes = Vec::new();
        for (i, s) in settings.iter().enumerate() {
            match Route::compile(s, default_max_body) {
                Ok(r) => routes.push((i, r)),
                Err(es) => errors.extend(es.into_iter().map(|(k, m)| (format!("routes[{i}].{k}"), m))),
            }
        }
        for (a, (i, ra)) in routes.iter().enumerate() {
            for (j, rb) in routes.iter().skip(a + 1) {
                if ra.name == rb.name {
                    errors.push((
                        format!("routes[{j}].name"),
                        format!("`{}` is already the name of routes[{i}]", rb.name),
                    ));
                }
                if ra.host == rb.host && ra.prefix.eq_ignore_ascii_case(&rb.prefix) {
                    errors.push((
                        format!("routes[{j}].path_prefix"),
                        format!(
                            "duplicate route: routes[{i}] already matches the same host and path prefix `{}`",
                            rb.prefix
                        ),
                    ));
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut routes: Vec<Arc<Route>> = routes.into_iter().map(|(_, r)| Arc::new(r)).collect();
        // Host-specific routes first, then longest prefix: the first match is the best one.
        routes.sort_by(|a, b| b.host.is_some().cmp(&a.host.is_some()).then(b.prefix.len().cmp(&a.prefix.len())));
        Ok(Self { routes })
    }

    /// The route for `host` (without port, any case) and `path`, if any.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && r.matches_path(path)
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(name: &str, host: Option<&str>, prefix: &str, upstream: &str) -> RouteSettings {
        RouteSettings { host: host.map(Into::into), ..RouteSettings::new(name, prefix, upstream) }
    }

    #[test]
    fn host_specific_and_longest_prefix_win() {
        let t = RouteTable::compile(
            &[
                settings("root", None, "/", "http://a"),
                settings("app", None, "/app", "http://b"),
                settings("host", Some("Mairie.example.fr"), "/", "http://c"),
            ],
            10,
        )
        .unwrap();
        assert_eq!(&*t.find(None, "/app/x").unwrap().name, "app");
        assert_eq!(&*t.find(None, "/apple").unwrap().name, "root");
        assert_eq!(&*t.find(None, "/APP/x").unwrap().name, "app", "letters compare in any case");
        assert_eq!(&*t.find(Some("mairie.EXAMPLE.fr"), "/app").unwrap().name, "host");
    }

    #[test]
    fn rejects_duplicates_bad_urls_and_reserved_prefixes() {
        let errs = RouteTable::compile(
            &[
                settings("a", None, "/x", "http://a"),
                settings("a", None, "/x/", "ftp://b"),
                settings("c", None, "/.guichet/x", "http://c"),
                settings("d", None, "/y", "not a url"),
            ],
            10,
        )
        .unwrap_err();
        let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"routes[1].upstream"), "{errs:?}");
        assert!(keys.contains(&"routes[2].path_prefix"), "{errs:?}");
        assert!(keys.contains(&"routes[3].upstream"), "{errs:?}");
    }

    #[test]
    fn builds_upstream_paths() {
        let mut s = settings("a", None, "/app", "http://u:1/base/");
        s.strip_prefix = true;
        let r = Route::compile(&s, 1).unwrap();
        assert_eq!(r.upstream_path_and_query("/app/x", Some("q=1")), "/base/x?q=1");
        assert_eq!(r.upstream_path_and_query("/app", None), "/base/");
        assert_eq!(r.upstream_path_and_query("/App/x", None), "/base/x");
    }
}
