//! The pure decision: which activity and purpose a request serves. No I/O, no clock; built
//! once per policy set (patterns compiled at load time) and called on every request.
//!
//! Path patterns, segment by segment (the same segment semantics as `routing`), against the
//! canonical path (`canonical::path`), letters compared case-insensitively:
//! - `/cantine` matches exactly `/cantine` (a single trailing `/` in the request is ignored);
//! - `{name}` matches any one non-empty segment (`/cantine/{id}`);
//! - a final `*` segment matches the path before it and everything under it, on segment
//!   boundaries (`/cantine/*` matches `/cantine`, `/cantine/12`, not `/cantines`).
//!
//! A request is also matched in the other ways applications may read its path
//! (`canonical::path::readings` and `file_readings`): when one of those readings is claimed
//! differently from the path itself, or when a claimed path is spelled ambiguously, the
//! request is refused rather than passed as unclaimed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderValue, Method};

use super::model::{ActivityFile, Field, LegalBasis};
use crate::canonical::path as canonical;

/// One segment of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A fixed segment: canonical (compared ASCII case-insensitively with canonical paths)
    /// and folded (compared with readings).
    Literal {
        canonical: Box<str>,
        folded: Box<str>,
    },
    Param,
}

/// Which form of a path is matched: the canonical path or a folded reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Canonical,
    Folded,
}

impl Segment {
    fn accepts(&self, got: &str, form: Form) -> bool {
        match (self, form) {
            (Self::Param, _) => true,
            (Self::Literal { canonical, .. }, Form::Canonical) => canonical.eq_ignore_ascii_case(got),
            (Self::Literal { folded, .. }, Form::Folded) => **folded == *got,
        }
    }
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
    /// Parses a pattern, explaining what is wrong in plain words. Fixed segments are kept in
    /// canonical form (`%63antine` is `cantine`).
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
            } else {
                segments.push(literal(pattern, seg)?);
            }
        }
        if segments.first().is_some_and(|s| s.accepts(".guichet", Form::Canonical)) {
            return Err(format!("`{pattern}` is inside the gateway's reserved prefix /.guichet/"));
        }
        Ok(Self { segments, prefix })
    }

    /// True when `path` (canonical) matches; allocation-free.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_in(path, Form::Canonical)
    }

    fn matches_in(&self, path: &str, form: Form) -> bool {
        let mut got = path_segments(path);
        for want in &self.segments {
            match got.next() {
                Some(g) if want.accepts(g, form) => {}
                _ => return false,
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
                (Some(Segment::Literal { folded: x, .. }), Some(Segment::Literal { folded: y, .. })) if x != y => {
                    return false;
                }
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
                Segment::Literal { canonical, .. } => canonical,
                Segment::Param => "x",
            });
        }
        if out.is_empty() { "/".to_owned() } else { out }
    }
}

/// A fixed segment of `pattern`, in canonical form; refused when requests could only reach
/// it spelled ambiguously (they would be refused) or through a dot segment.
fn literal(pattern: &str, seg: &str) -> Result<Segment, String> {
    let bad =
        || format!("in `{pattern}`, the segment `{seg}` is not allowed: write a name, `{{param}}` or a final `*`");
    if seg.is_empty() || seg.contains(['*', '{', '}', '?', '#', '/']) {
        return Err(bad());
    }
    let path = format!("/{seg}");
    // `read` also refuses the reserved prefix, which is only wrong as the first segment
    // (checked by the caller).
    if matches!(canonical::read(&path), Err(e) if e != canonical::PathError::Reserved) {
        return Err(bad());
    }
    let canonical = canonical::normalise(&path).map_err(|_| bad())?.into_owned();
    let canonical = canonical.strip_prefix('/').unwrap_or(&canonical);
    if canonical.is_empty() || canonical.contains('/') || canonical::is_ambiguous(&format!("/{canonical}")) {
        return Err(bad());
    }
    Ok(Segment::Literal { folded: canonical::fold_segment(canonical).into(), canonical: canonical.into() })
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
    /// Undeclared body members and query parameters are refused (the activity's `strict`).
    pub strict: bool,
    /// The activity's sector: which of the citizen's pseudonyms own its fields and consents.
    pub sector: super::Sector,
    /// Anonymous requests' encrypted fields are sealed under their record's own key (the
    /// activity's `anonymous = "sealed"`) instead of sending the sender to sign in.
    pub anonymous_sealed: bool,
    /// Agent roles that may enter the encrypted fields for their assisted citizen.
    pub assisted_entry: Arc<[String]>,
    /// The request fields' JSON paths, compiled on first use ([`Processing::json_paths`]).
    pub compiled_json: super::model::Derived<Option<crate::proxy::json_fields::Paths>>,
}

impl Processing {
    /// The fields the request side transforms (`pass` fields and response-only fields
    /// need nothing), in declaration order.
    pub fn request_fields(&self) -> impl Iterator<Item = &super::model::Field> {
        self.fields.iter().filter(|f| {
            f.direction != super::model::Direction::Response && f.protection != super::model::Protection::Pass
        })
    }

    /// The JSON paths of the request fields declared in JSON bodies, in their order, compiled
    /// once for every request of the activity; `None` when a declared pointer is invalid.
    pub fn json_paths(&self) -> Option<&crate::proxy::json_fields::Paths> {
        self.compiled_json
            .get_or_init(|| {
                let json = self.request_fields().filter(|f| f.locations.contains(&super::model::FieldLocation::Json));
                let segments: Option<Vec<&[String]>> = json.map(super::model::Field::json_segments).collect();
                segments.map(|s| crate::proxy::json_fields::Paths::new(&s))
            })
            .as_ref()
    }
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
    fn host_ok(&self, host: Option<&str>) -> bool {
        match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        }
    }

    /// A rule listing GET also covers HEAD: applications answer HEAD as GET without a body.
    fn method_ok(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.contains(method) || (*method == Method::HEAD && m.contains(&Method::GET)))
    }

    /// True when one request could match both rules.
    pub fn overlaps(&self, other: &Self) -> bool {
        let hosts = match (&self.host, &other.host) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => {
                a.iter().chain(b).chain([Method::HEAD].iter()).any(|m| self.method_ok(m) && other.method_ok(m))
            }
            _ => true,
        };
        hosts && methods && self.pattern.overlaps(&other.pattern)
    }
}

/// A validated set of activities: what enforcement, the register and the notices read.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Activities in the order they were loaded. Read-only after [`PolicySet::new`], which
    /// indexes them by id; [`PolicySet::with_activity`] adds one.
    pub activities: Vec<Arc<ActivityFile>>,
    /// Read-only after [`PolicySet::new`]: the matcher's index points into it.
    routes: Vec<CompiledRoute>,
    /// Names of configured routes declared `no_personal_data`.
    pub public_routes: Vec<Arc<str>>,
    index: RouteIndex,
    /// The activities ordered by id: finding one costs the same with ten activities or a
    /// thousand (the reveal phase looks one up on every response of a route with fields).
    by_id: Vec<Arc<ActivityFile>>,
}

impl PolicySet {
    /// A set whose rules are indexed by their first fixed segment, so that deciding on a path
    /// costs the same with ten activities or a thousand.
    pub fn new(activities: Vec<Arc<ActivityFile>>, routes: Vec<CompiledRoute>, public_routes: Vec<Arc<str>>) -> Self {
        let index = RouteIndex::build(&routes);
        let mut by_id = activities.clone();
        by_id.sort_by(|a, b| a.id.cmp(&b.id));
        Self { activities, routes, public_routes, index, by_id }
    }

    /// This set with `activity` added (the register's entry for the gateway itself), indexed
    /// like the others.
    pub fn with_activity(&self, activity: Arc<ActivityFile>) -> Self {
        let mut activities = self.activities.clone();
        activities.push(activity);
        Self::new(activities, self.routes.clone(), self.public_routes.clone())
    }

    pub fn activity(&self, id: &str) -> Option<&Arc<ActivityFile>> {
        let at = self.by_id.binary_search_by(|a| a.id.as_str().cmp(id)).ok()?;
        self.by_id.get(at)
    }

    /// Every activity rule, in declaration order.
    pub fn routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// The rules that could match `path` in `form`, in declaration order.
    fn candidates<'s>(&'s self, path: &str, form: Form) -> impl Iterator<Item = &'s CompiledRoute> + 's {
        let keyed = path_segments(path).next().map_or(&[][..], |first| self.index.keyed(first, form));
        merged(keyed, &self.index.unkeyed).filter_map(|i| self.routes.get(i))
    }
}

/// The compiled matcher: rules by their first fixed segment (canonical form lowercased, and
/// folded form), plus the rules a path's first segment cannot rule out.
#[derive(Debug, Clone, Default)]
struct RouteIndex {
    canonical: HashMap<Box<str>, Vec<usize>>,
    folded: HashMap<Box<str>, Vec<usize>>,
    /// Rules that start with a parameter or have no segment (`/`, `/*`).
    unkeyed: Vec<usize>,
}

impl RouteIndex {
    fn build(routes: &[CompiledRoute]) -> Self {
        let mut index = Self::default();
        for (i, r) in routes.iter().enumerate() {
            match r.pattern.segments.first() {
                Some(Segment::Literal { canonical, folded }) => {
                    index.canonical.entry(canonical.to_ascii_lowercase().into()).or_default().push(i);
                    index.folded.entry(folded.clone()).or_default().push(i);
                }
                Some(Segment::Param) | None => index.unkeyed.push(i),
            }
        }
        index
    }

    /// The rules whose first fixed segment accepts `first` in `form` (as `Segment::accepts`).
    fn keyed(&self, first: &str, form: Form) -> &[usize] {
        let found = match form {
            Form::Canonical => {
                let key: Cow<'_, str> = if first.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(first.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(first)
                };
                self.canonical.get(key.as_ref())
            }
            Form::Folded => self.folded.get(first),
        };
        found.map_or(&[], Vec::as_slice)
    }
}

/// Two ascending lists of rule numbers as one ascending sequence.
fn merged<'a>(a: &'a [usize], b: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || match (a.get(i), b.get(j)) {
        (Some(&x), Some(&y)) if x < y => {
            i += 1;
            Some(x)
        }
        (_, Some(&y)) => {
            j += 1;
            Some(y)
        }
        (Some(&x), None) => {
            i += 1;
            Some(x)
        }
        (None, None) => None,
    })
}

/// What the decide phase knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// Name of the configured route the request matched.
    pub route: &'a str,
    /// Host without port.
    pub host: Option<&'a str>,
    /// The canonical path (`canonical::path::read`).
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
    /// An activity claims the path, but none of its rules lists the method: refused (405)
    /// rather than passed as unclaimed. Carries the `Allow` header's value.
    MethodNotAllowed(String),
    /// An application may read the path as a claimed path other than the one it matches, or a
    /// claimed path is spelled in a way stacks read differently: refused (400).
    Ambiguous,
}

/// What one reading of the path is claimed as.
#[derive(Debug, Clone, Copy)]
enum Outcome<'s> {
    Unclaimed,
    Serves(&'s Arc<Processing>),
    /// Claimed, but no rule of the claiming activities lists the method.
    WrongMethod,
}

impl PartialEq for Outcome<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Serves(a), Self::Serves(b)) => Arc::ptr_eq(a, b),
            (Self::Unclaimed, Self::Unclaimed) | (Self::WrongMethod, Self::WrongMethod) => true,
            _ => false,
        }
    }
}

fn outcome<'s>(set: &'s PolicySet, facts: &RequestFacts<'_>, path: &str, form: Form) -> Outcome<'s> {
    let mut claimed = false;
    for r in set.candidates(path, form).filter(|r| r.host_ok(facts.host) && r.pattern.matches_in(path, form)) {
        if r.method_ok(facts.method) {
            return Outcome::Serves(&r.processing);
        }
        claimed = true;
    }
    if claimed { Outcome::WrongMethod } else { Outcome::Unclaimed }
}

/// The methods the rules claiming the path list, for `Allow`.
fn allowed_methods(set: &PolicySet, facts: &RequestFacts<'_>) -> String {
    let mut methods: Vec<&str> = Vec::new();
    for r in
        set.candidates(facts.path, Form::Canonical).filter(|r| r.host_ok(facts.host) && r.pattern.matches(facts.path))
    {
        for m in r.methods.iter().flatten() {
            methods.push(m.as_str());
            if *m == Method::GET {
                methods.push(Method::HEAD.as_str());
            }
        }
    }
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// Matches a request to its activity and purpose. `facts.path` is the canonical path
/// (`canonical::path::read`). Activity rules win over a route's `no_personal_data`
/// declaration; a valid set has no overlapping rules, so the first match is the only one.
/// The other readings of the path must not be claimed otherwise (a reading nobody claims is
/// harmless: the request is protected as what its path serves).
pub fn decide(set: &PolicySet, facts: &RequestFacts<'_>) -> Decision {
    let own = outcome(set, facts, facts.path, Form::Canonical);
    let mut claimed = own != Outcome::Unclaimed;
    let mut conflicts = |o: Outcome<'_>| {
        claimed |= o != Outcome::Unclaimed;
        o != Outcome::Unclaimed && o != own
    };
    for r in canonical::file_readings(facts.path) {
        if conflicts(outcome(set, facts, r, Form::Canonical)) {
            return Decision::Ambiguous;
        }
    }
    if !canonical::is_plain(facts.path) {
        for reading in canonical::readings(facts.path) {
            for r in std::iter::once(reading.as_str()).chain(canonical::file_readings(&reading)) {
                if conflicts(outcome(set, facts, r, Form::Folded)) {
                    return Decision::Ambiguous;
                }
            }
        }
        if claimed && canonical::is_ambiguous(facts.path) {
            return Decision::Ambiguous;
        }
    }
    match own {
        Outcome::Serves(p) => Decision::Processing(p.clone()),
        Outcome::WrongMethod => Decision::MethodNotAllowed(allowed_methods(set, facts)),
        Outcome::Unclaimed if set.public_routes.iter().any(|p| **p == *facts.route) => Decision::Public,
        Outcome::Unclaimed => Decision::Deny,
    }
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
            strict: false,
            sector: crate::policy::Sector::General,
            anonymous_sealed: false,
            assisted_entry: Arc::from(Vec::new()),
            compiled_json: Default::default(),
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
    fn activities_are_found_by_id_in_any_order_and_after_an_addition() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/cantine.toml")).unwrap();
        let named = |id: &str| {
            let mut a: ActivityFile = toml::from_str(&text).unwrap();
            a.id = id.to_owned();
            Arc::new(a)
        };
        let ids = ["voirie", "cantine", "urbanisme", "etat-civil", "bibliotheque"];
        let set = PolicySet::new(ids.iter().map(|id| named(id)).collect(), Vec::new(), Vec::new());
        for id in ids {
            assert_eq!(set.activity(id).map(|a| a.id.as_str()), Some(id));
        }
        assert!(set.activity("piscine").is_none());
        assert!(set.activity("").is_none());
        // The register adds the gateway's own activity to a built set.
        let set = set.with_activity(named("passerelle-guichet"));
        assert_eq!(set.activity("passerelle-guichet").map(|a| a.id.as_str()), Some("passerelle-guichet"));
        assert_eq!(set.activity("cantine").map(|a| a.id.as_str()), Some("cantine"));
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
        let set = PolicySet::new(
            Vec::new(),
            vec![
                rule(None, "/cantine/*", None, &canteen),
                rule(None, "/api/inscriptions", Some(&[Method::GET, Method::POST]), &canteen),
                rule(None, "/etat-civil/*", None, &civil),
                rule(Some("voirie.mairie.fr"), "/*", None, &roads),
            ],
            vec!["accueil".into()],
        );
        let p = |a: &Arc<Processing>| Decision::Processing(a.clone());
        let cases: [(&str, Option<&str>, &str, Method, Decision); 9] = [
            ("cantine", None, "/cantine", Method::GET, p(&canteen)),
            ("cantine", Some("x"), "/cantine/3", Method::POST, p(&canteen)),
            ("api", None, "/api/inscriptions", Method::POST, p(&canteen)),
            ("api", None, "/api/inscriptions", Method::DELETE, Decision::MethodNotAllowed("GET, HEAD, POST".into())),
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

    fn spelling_set() -> (PolicySet, Arc<Processing>, Arc<Processing>, Arc<Processing>) {
        let canteen = processing("cantine", "inscription");
        let civil = processing("etat-civil", "delivrance");
        let other = processing("autre", "x");
        let set = PolicySet::new(
            Vec::new(),
            vec![
                rule(None, "/cantine/*", None, &canteen),
                rule(None, "/api/inscriptions", Some(&[Method::GET, Method::POST]), &canteen),
                rule(None, "/démarches/*", None, &civil),
                rule(None, "/public/secret", None, &other),
            ],
            vec!["accueil".into()],
        );
        (set, canteen, civil, other)
    }

    /// What the gateway does with a raw path: `None` when the receive phase refuses it.
    fn gateway(set: &PolicySet, raw: &str, method: &Method) -> Option<Decision> {
        let path = canonical::read(raw).ok()?;
        Some(decide(set, &RequestFacts { route: "accueil", host: None, path: &path, method }))
    }

    #[test]
    fn spellings_of_claimed_paths_are_claimed_or_refused() {
        let (set, canteen, civil, other) = spelling_set();
        let p = |a: &Arc<Processing>| Some(Decision::Processing(a.clone()));
        let ambiguous = Some(Decision::Ambiguous);
        let cases: &[(&str, Option<Decision>)] = &[
            ("/api/%69nscriptions", p(&canteen)),
            ("//api///inscriptions/", p(&canteen)),
            ("/API/Inscriptions", p(&canteen)),
            ("/api/inscriptions;x=1", ambiguous.clone()),
            ("/api;x/inscriptions", ambiguous.clone()),
            ("/api%2Finscriptions", ambiguous.clone()),
            ("/api%5cinscriptions", ambiguous.clone()),
            ("/api\\inscriptions", ambiguous.clone()),
            ("/api/inscriptions.json", ambiguous.clone()),
            ("/index.php/api/inscriptions", ambiguous.clone()),
            ("/api/inscriptions.", ambiguous.clone()),
            ("/api/inscriptions%20", ambiguous.clone()),
            ("/api/%2569nscriptions", ambiguous.clone()),
            ("/api/x/../inscriptions", None),
            ("/api/%2e%2e/api/inscriptions", None),
            ("/x/..%2Fapi/inscriptions", None),
            ("/public/page.html", Some(Decision::Public)),
            ("/static/app.js", Some(Decision::Public)),
            ("/a%2Fb;c", Some(Decision::Public)),
            ("/cantine/menu.pdf", p(&canteen)),
            ("/cantine/index.php/x", p(&canteen)),
            ("/cantine/index.php/public/secret", ambiguous.clone()),
            ("/public/secret.php/cantine", ambiguous.clone()),
            ("/public/SECRET", p(&other)),
            ("/d%C3%A9marches/x", p(&civil)),
            ("/démarches/x", p(&civil)),
            ("/D%C3%89MARCHES/x", ambiguous.clone()),
        ];
        for (raw, want) in cases {
            assert_eq!(&gateway(&set, raw, &Method::POST), want, "{raw}");
        }
    }

    #[test]
    fn an_unlisted_method_on_a_claimed_path_is_not_unclaimed() {
        let (set, canteen, ..) = spelling_set();
        let not_allowed = Some(Decision::MethodNotAllowed("GET, HEAD, POST".into()));
        assert_eq!(gateway(&set, "/api/inscriptions", &Method::PUT), not_allowed);
        assert_eq!(gateway(&set, "/API/inscriptions/", &Method::DELETE), not_allowed);
        assert_eq!(gateway(&set, "/api/inscriptions", &Method::HEAD), Some(Decision::Processing(canteen)));
    }

    #[test]
    fn patterns_are_canonical_and_refuse_ambiguous_segments() {
        let p = PathPattern::parse("/%63antine/{id}").unwrap();
        assert!(p.matches("/cantine/1") && p.matches("/CANTINE/1"));
        for bad in ["/a;b", "/a%2Fb", "/a\\b", "/a.", "/a/%00", "/a/%2e%2e/b", "/.GUICHET/x"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(PathPattern::parse("/Cantine").unwrap().overlaps(&PathPattern::parse("/cantine/*").unwrap()));
    }

    /// How modelled stacks read a raw path (`None`: the stack refuses it). Written apart from
    /// `canonical::path`, from the facts in docs/proxy.md ("Paths"), so that a shortcut
    /// there does not hide here too.
    mod stacks {
        fn decode(s: &str) -> String {
            percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
        }

        /// Merges slashes and resolves dot segments; `None` above the root.
        fn resolve(path: &str) -> Option<String> {
            let mut out: Vec<&str> = Vec::new();
            for seg in path.split('/') {
                match seg {
                    "" | "." => {}
                    ".." => {
                        out.pop()?;
                    }
                    s => out.push(s),
                }
            }
            Some(format!("/{}", out.join("/")))
        }

        /// nginx `$uri`: everything decoded (`%2F` too), slashes merged, dots resolved.
        pub fn nginx(raw: &str) -> Option<String> {
            resolve(&decode(raw))
        }

        /// Apache: unreserved decoded, an encoded slash is a 404.
        pub fn apache(raw: &str) -> Option<String> {
            if raw.to_ascii_lowercase().contains("%2f") {
                return None;
            }
            resolve(&decode(raw))
        }

        /// Tomcat/Spring: `;…` dropped from each raw segment, then decoded; an encoded slash or
        /// a backslash is a 400.
        pub fn tomcat(raw: &str) -> Option<String> {
            let mut segs = Vec::new();
            for seg in raw.split('/') {
                let seg = decode(seg.split(';').next().unwrap_or(""));
                if seg.contains(['/', '\\']) {
                    return None;
                }
                segs.push(seg);
            }
            resolve(&segs.join("/"))
        }

        /// IIS on a case-insensitive file system: decoded, `\` a separator, trailing dots and
        /// spaces dropped, any letter case (lowercased here).
        pub fn iis(raw: &str) -> Option<String> {
            let d = decode(raw).replace('\\', "/");
            let segs: Vec<&str> =
                d.split('/').map(|s| if s == "." || s == ".." { s } else { s.trim_end_matches(['.', ' ']) }).collect();
            resolve(&segs.join("/").to_lowercase())
        }

        /// PHP behind nginx: the front controller routes `PATH_INFO`, what follows `x.php`.
        pub fn php_path_info(raw: &str) -> Option<String> {
            let uri = nginx(raw)?;
            let at = uri.find(".php/")?;
            uri.get(at + 4..).map(ToOwned::to_owned)
        }

        /// Rails: `/x.json` is `/x` with format json.
        pub fn rails(raw: &str) -> Option<String> {
            let uri = nginx(raw)?;
            let last = uri.rfind('/')?;
            let dot = uri.get(last..)?.rfind('.')?;
            (dot > 1).then(|| uri.get(..last + dot).map(ToOwned::to_owned)).flatten()
        }

        pub const ALL: [fn(&str) -> Option<String>; 6] = [nginx, apache, tomcat, iis, php_path_info, rails];
    }

    /// Writes `path` another way: one of the spelling classes stacks read as the same path.
    fn respell(path: &str, kind: u8, at: usize) -> String {
        let letters: Vec<usize> =
            path.char_indices().filter(|(_, c)| c.is_ascii_alphabetic()).map(|(i, _)| i).collect();
        let slashes: Vec<usize> = path.char_indices().filter(|(_, c)| *c == '/').map(|(i, _)| i).collect();
        let pick = |v: &[usize]| v.get(at % v.len().max(1)).copied().unwrap_or(0);
        let (l, sl) = (pick(&letters), pick(&slashes));
        let splice = |i: usize, len: usize, with: &str| format!("{}{with}{}", &path[..i], &path[i + len..]);
        let letter = path.get(l..=l).unwrap_or("a");
        match kind % 14 {
            0 => splice(l, 1, &format!("%{:02x}", letter.as_bytes()[0])),
            1 => splice(l, 1, &format!("%{:02X}", letter.as_bytes()[0])),
            2 => splice(l, 1, &letter.to_ascii_uppercase()),
            3 => splice(sl, 1, "//"),
            4 => splice(sl, 1, "/zz/../"),
            5 => splice(sl, 1, "/%2e/"),
            6 if sl > 0 => splice(sl, 1, "%2F"),
            7 if sl > 0 => splice(sl, 1, "\\"),
            8 => format!("{path};jsessionid=1"),
            9 => splice(sl, 0, ";p=1"),
            10 => format!("{path}.json"),
            11 => format!("/index.php{path}"),
            12 => format!("{path}."),
            13 => splice(l, 1, &format!("%25{:02X}", letter.as_bytes()[0])),
            _ => format!("{path}%20"),
        }
    }

    /// The rules a linear scan would find, in order: what the index must reproduce.
    fn linear<'s>(set: &'s PolicySet, path: &str, form: Form) -> Vec<&'s CompiledRoute> {
        set.routes().iter().filter(|r| r.pattern.matches_in(path, form)).collect()
    }

    proptest::proptest! {
        /// The compiled matcher finds exactly the rules a scan of every rule finds, in the
        /// same order, for both forms, whatever the rules start with (fixed segment in any
        /// case, parameter, nothing) and whatever the path.
        #[test]
        fn the_index_finds_what_a_scan_finds(
            patterns in proptest::collection::vec("(/(ab|AB|Ab|x|[{]p[}]|ac)){0,3}(/[*])?", 1..12),
            paths in proptest::collection::vec("(/(ab|AB|aB|x|y|ac)){0,4}/?", 1..12),
        ) {
            let target = processing("cible", "x");
            let routes: Vec<CompiledRoute> = patterns
                .iter()
                .map(|p| if p.is_empty() { "/" } else { p.as_str() })
                .filter_map(|p| PathPattern::parse(p).ok())
                .map(|pattern| CompiledRoute { host: None, pattern, methods: None, processing: target.clone() })
                .collect();
            let set = PolicySet::new(Vec::new(), routes, Vec::new());
            for path in paths.iter().map(|p| if p.is_empty() { "/" } else { p.as_str() }) {
                for form in [Form::Canonical, Form::Folded] {
                    let indexed: Vec<_> =
                        set.candidates(path, form).filter(|r| r.pattern.matches_in(path, form)).collect();
                    let scanned = linear(&set, path, form);
                    proptest::prop_assert_eq!(indexed.len(), scanned.len(), "{} {:?}", path, form);
                    for (a, b) in indexed.iter().zip(&scanned) {
                        proptest::prop_assert!(std::ptr::eq(*a, *b), "{} {:?}: other order", path, form);
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Every spelling that a modelled stack serves as a claimed path is matched to the
        /// claiming activity or refused, never passed as unclaimed.
        #[test]
        fn no_spelling_of_a_claimed_path_passes_unclaimed(
            segments in proptest::collection::vec("[a-z]{1,6}", 1..4),
            edits in proptest::collection::vec((0u8..15, 0usize..64), 1..4),
        ) {
            let claimed = format!("/{}", segments.join("/"));
            let target = processing("cible", "x");
            let set = PolicySet::new(
                Vec::new(),
                vec![rule(None, &claimed, None, &target)],
                vec!["accueil".into()],
            );
            let mut raw = claimed.clone();
            for (kind, at) in edits {
                raw = respell(&raw, kind, at);
            }
            let served_as_claimed = stacks::ALL.iter().any(|read| read(&raw).is_some_and(|p| p.eq_ignore_ascii_case(&claimed)));
            let outcome = gateway(&set, &raw, &Method::POST);
            if served_as_claimed {
                proptest::prop_assert!(
                    matches!(&outcome, None | Some(Decision::Ambiguous))
                        || outcome == Some(Decision::Processing(target.clone())),
                    "{} (claimed {}) passed as {:?}", raw, claimed, outcome
                );
            }
        }
    }
}
