//! The pure decision: which activity and purpose a request serves. No I/O, no clock; built
//! once per policy set (patterns compiled at load time) and called on every request.
//!
//! Path patterns, segment by segment (the same segment semantics as `routing`):
//! - `/cantine` matches exactly `/cantine` (a single trailing `/` in the request is ignored);
//! - `{name}` matches any one non-empty segment (`/cantine/{id}`);
//! - a final `*` segment matches the path before it and everything under it, on segment
//!   boundaries (`/cantine/*` matches `/cantine`, `/cantine/12`, not `/cantines`).

use std::sync::Arc;

use http::{HeaderValue, Method};

use super::model::{ActivityFile, Field, LegalBasis};

/// One segment of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends with `*`: also matches everything under the fixed part.
    prefix: bool,
}

/// The segments of a request path, ignoring one trailing slash.
fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let p = p.strip_suffix('/').unwrap_or(p);
    p.split('/').filter(move |_| !p.is_empty())
}

impl PathPattern {
    /// Parses a pattern, explaining what is wrong in plain words.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("the path `{pattern}` must start with /"));
        }
        let raw: Vec<&str> = path_segments(pattern).collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut prefix = false;
        for (i, seg) in raw.iter().enumerate() {
            let last = i + 1 == raw.len();
            if *seg == "*" {
                if !last {
                    return Err(format!("in `{pattern}`, `*` may only be the last segment"));
                }
                prefix = true;
            } else if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                segments.push(Segment::Param);
            } else if seg.is_empty() || seg.contains(['*', '{', '}', '?', '#']) || *seg == "." || *seg == ".." {
                return Err(format!(
                    "in `{pattern}`, the segment `{seg}` is not allowed: write a name, `{{param}}` or a final `*`"
                ));
            } else {
                segments.push(Segment::Literal((*seg).into()));
            }
        }
        if segments.first().is_some_and(|s| *s == Segment::Literal(".guichet".into())) {
            return Err(format!("`{pattern}` is inside the gateway's reserved prefix /.guichet/"));
        }
        Ok(Self { segments, prefix })
    }

    /// True when `path` matches; allocation-free.
    pub fn matches(&self, path: &str) -> bool {
        let mut got = path_segments(path);
        for want in &self.segments {
            match (want, got.next()) {
                (_, None) => return false,
                (Segment::Literal(l), Some(g)) if **l != *g => return false,
                _ => {}
            }
        }
        self.prefix || got.next().is_none()
    }

    /// True when some path matches both patterns.
    pub fn overlaps(&self, other: &Self) -> bool {
        let mut a = self.segments.iter();
        let mut b = other.segments.iter();
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (None, Some(_)) => return self.prefix,
                (Some(_), None) => return other.prefix,
                (Some(Segment::Literal(x)), Some(Segment::Literal(y))) if x != y => return false,
                _ => {}
            }
        }
    }

    /// A path this pattern matches (parameters filled with `x`), to ask the route table where
    /// requests of this pattern go.
    pub fn sample_path(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            out.push_str(match s {
                Segment::Literal(l) => l,
                Segment::Param => "x",
            });
        }
        if out.is_empty() { "/".to_owned() } else { out }
    }
}

/// What a request serves, precomputed once per (activity, purpose): the decide phase only
/// clones an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct Processing {
    pub activity: Arc<str>,
    pub purpose: Arc<str>,
    pub legal_basis: LegalBasis,
    /// The purpose rests on consent: the consent phase must find it given.
    pub consent_required: bool,
    /// Declared personal fields. Empty: nothing personal passes, nothing is revealed.
    pub fields: Arc<[Field]>,
    /// `<activity>/<purpose>`, ready to send upstream as `X-Guichet-Purpose`.
    pub header: HeaderValue,
}

/// One compiled activity route.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// Lowercase host, when the rule names one.
    pub host: Option<Box<str>>,
    pub pattern: PathPattern,
    /// Absent: every method.
    pub methods: Option<Vec<Method>>,
    pub processing: Arc<Processing>,
}

impl CompiledRoute {
    fn matches(&self, facts: &RequestFacts<'_>) -> bool {
        let host_ok = match (&self.host, facts.host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        host_ok && self.methods.as_ref().is_none_or(|m| m.contains(facts.method)) && self.pattern.matches(facts.path)
    }

    /// True when one request could match both rules.
    pub fn overlaps(&self, other: &Self) -> bool {
        let hosts = match (&self.host, &other.host) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        hosts && methods && self.pattern.overlaps(&other.pattern)
    }
}

/// A validated set of activities: what enforcement, the register and the notices read.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Activities in id order.
    pub activities: Vec<Arc<ActivityFile>>,
    pub routes: Vec<CompiledRoute>,
    /// Names of configured routes declared `no_personal_data`.
    pub public_routes: Vec<Arc<str>>,
}

impl PolicySet {
    pub fn activity(&self, id: &str) -> Option<&Arc<ActivityFile>> {
        self.activities.iter().find(|a| a.id == id)
    }
}

/// What the decide phase knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Name of the configured route the request matched.
    pub route: &'a str,
    /// Host without port.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub method: &'a Method,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The request serves this purpose of this activity.
    Processing(Arc<Processing>),
    /// No activity claims it, and its route is declared without personal data.
    Public,
    /// No activity claims it: denied by default.
    Deny,
}

/// Matches a request to its activity and purpose. Activity rules win over a route's
/// `no_personal_data` declaration; a valid set has no overlapping rules, so the first match
/// is the only one.
pub fn decide(set: &PolicySet, facts: &RequestFacts<'_>) -> Decision {
    if let Some(r) = set.routes.iter().find(|r| r.matches(facts)) {
        return Decision::Processing(r.processing.clone());
    }
    if set.public_routes.iter().any(|p| **p == *facts.route) { Decision::Public } else { Decision::Deny }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processing(activity: &str, purpose: &str) -> Arc<Processing> {
        Arc::new(Processing {
            activity: activity.into(),
            purpose: purpose.into(),
            legal_basis: LegalBasis::PublicTask,
            consent_required: false,
            fields: Arc::from(Vec::new()),
            header: HeaderValue::from_str(&format!("{activity}/{purpose}")).unwrap(),
        })
    }

    fn rule(host: Option<&str>, path: &str, methods: Option<&[Method]>, p: &Arc<Processing>) -> CompiledRoute {
        CompiledRoute {
            host: host.map(Into::into),
            pattern: PathPattern::parse(path).unwrap(),
            methods: methods.map(<[Method]>::to_vec),
            processing: p.clone(),
        }
    }

    #[test]
    fn patterns_match_segment_by_segment() {
        let cases = [
            ("/cantine", "/cantine", true),
            ("/cantine", "/cantine/", true),
            ("/cantine", "/cantine/1", false),
            ("/cantine/*", "/cantine", true),
            ("/cantine/*", "/cantine/1/2", true),
            ("/cantine/*", "/cantines", false),
            ("/cantine/{id}", "/cantine/12", true),
            ("/cantine/{id}", "/cantine", false),
            ("/cantine/{id}", "/cantine/12/x", false),
            ("/*", "/anything/at/all", true),
            ("/", "/", true),
            ("/", "/x", false),
            ("/api/inscriptions", "/api/inscriptions", true),
            ("/api/inscriptions", "/api/inscriptions2", false),
        ];
        for (pattern, path, expected) in cases {
            assert_eq!(PathPattern::parse(pattern).unwrap().matches(path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn bad_patterns_are_explained() {
        for bad in ["cantine", "/a/*/b", "/a/b*", "/.guichet/x", "/a/../b"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overlaps_are_found() {
        let cases = [
            ("/a/*", "/a/b", true),
            ("/a/{x}", "/a/b", true),
            ("/a", "/a/b", false),
            ("/a/*", "/b/*", false),
            ("/*", "/b", true),
            ("/a/{x}/c", "/a/b/d", false),
        ];
        for (a, b, expected) in cases {
            let (pa, pb) = (PathPattern::parse(a).unwrap(), PathPattern::parse(b).unwrap());
            assert_eq!(pa.overlaps(&pb), expected, "{a} vs {b}");
            assert_eq!(pb.overlaps(&pa), expected, "{b} vs {a}");
        }
    }

    #[test]
    fn decision_table() {
        let canteen = processing("cantine", "inscription");
        let civil = processing("etat-civil", "delivrance");
        let roads = processing("voirie", "signalement");
        let set = PolicySet {
            activities: Vec::new(),
            routes: vec![
                rule(None, "/cantine/*", None, &canteen),
                rule(None, "/api/inscriptions", Some(&[Method::GET, Method::POST]), &canteen),
                rule(None, "/etat-civil/*", None, &civil),
                rule(Some("voirie.mairie.fr"), "/*", None, &roads),
            ],
            public_routes: vec!["accueil".into()],
        };
        let p = |a: &Arc<Processing>| Decision::Processing(a.clone());
        let cases: [(&str, Option<&str>, &str, Method, Decision); 9] = [
            ("cantine", None, "/cantine", Method::GET, p(&canteen)),
            ("cantine", Some("x"), "/cantine/3", Method::POST, p(&canteen)),
            ("api", None, "/api/inscriptions", Method::POST, p(&canteen)),
            ("api", None, "/api/inscriptions", Method::DELETE, Decision::Deny),
            ("api", None, "/api/echo", Method::GET, Decision::Deny),
            ("etat-civil", None, "/etat-civil/", Method::GET, p(&civil)),
            ("accueil", None, "/", Method::GET, Decision::Public),
            ("accueil", Some("VOIRIE.mairie.fr"), "/carte", Method::GET, p(&roads)),
            ("accueil", Some("autre.fr"), "/cantines", Method::GET, Decision::Public),
        ];
        for (route, host, path, method, expected) in cases {
            let facts = RequestFacts { route, host, path, method: &method };
            assert_eq!(decide(&set, &facts), expected, "{route} {host:?} {method} {path}");
        }
    }
}
