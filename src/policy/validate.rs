//! The rules a policy set must follow before anything is enforced. Each rule has a failing
//! fixture under `tests/fixtures/policies/<rule>/` and a test expecting its message.

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderValue, Method};

use super::engine::{CompiledRoute, PathPattern, PolicySet, Processing};
use super::load::Parsed;
use super::model::{
    ActivityFile, AnonymousFields, BasisChoice, ControllerKind, FieldLocation, LegalBasis, POLICY_VERSION,
    RetentionEnd, RetentionStart,
};
use super::notice::Period;
use super::{PolicyError, PolicyProblem};
use crate::config::RouteSettings;
use crate::routing::RouteTable;

const BASES: &str = "consent, contract, legal_obligation, vital_interests, public_task, legitimate_interests";

/// Checks every rule on every file and returns all problems at once, or the compiled set.
pub fn validate(
    parsed: &[Parsed],
    routes: &RouteTable,
    settings: &[RouteSettings],
    origin: &str,
) -> Result<PolicySet, PolicyError> {
    let mut problems = Vec::new();
    let mut compiled: Vec<(usize, CompiledRoute, String)> = Vec::new();
    let mut ids = HashSet::new();
    for (i, p) in parsed.iter().enumerate() {
        if !ids.insert(p.activity.id.as_str()) {
            problems
                .push(p.problem("id", format!("the activity id `{}` is already used by another file", p.activity.id)));
        }
        check_activity(p, &mut problems);
        if let Some(route) = &p.activity.rights_route
            && !settings.iter().any(|r| r.name == *route)
        {
            problems.push(p.problem("rights_route", format!("no configured route is named `{route}`")));
        }
        compiled.extend(compile_routes(p, &mut problems).into_iter().map(|(r, key)| (i, r, key)));
    }
    check_overlaps(parsed, &compiled, &mut problems);
    check_coverage(&compiled, routes, settings, origin, &mut problems);
    check_route_sectors(parsed, &compiled, routes, &mut problems);
    if !problems.is_empty() {
        return Err(PolicyError { problems });
    }
    let mut activities: Vec<Arc<ActivityFile>> = parsed.iter().map(|p| Arc::new(p.activity.clone())).collect();
    activities.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(PolicySet::new(
        activities,
        compiled.into_iter().map(|(_, r, _)| r).collect(),
        settings.iter().filter(|r| r.no_personal_data).map(|r| Arc::from(r.name.as_str())).collect(),
    ))
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_activity(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let a = &p.activity;
    if a.version != POLICY_VERSION {
        problems.push(p.problem(
            "version",
            format!("version {} is not supported; this binary reads policy version {POLICY_VERSION}", a.version),
        ));
    }
    if !is_identifier(&a.id) {
        problems.push(p.problem("id", format!("the id `{}` must use only lowercase letters, digits and -", a.id)));
    }
    if a.purposes.is_empty() {
        problems.push(p.problem("id", "the activity declares no purpose: add at least one [[purposes]]"));
    }
    check_purposes(p, problems);
    check_categories(p, problems);
    check_fields(p, problems);
    check_rights_keys(p, problems);
    check_entry_keys(p, problems);
    check_falc(p, problems);
}

/// `anonymous = "sealed"` and `assisted_entry`: who may send encrypted fields without being
/// the signed-in citizen they belong to (docs/policies.md, "Anonymous forms and assisted entry").
fn check_entry_keys(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    use super::model::{Direction, Protection};
    let a = &p.activity;
    let encrypted: Vec<&super::model::Field> =
        a.fields.iter().filter(|f| f.protection == Protection::Encrypt && f.direction != Direction::Response).collect();
    if a.anonymous == AnonymousFields::Sealed {
        if encrypted.is_empty() {
            problems.push(p.problem(
                "anonymous",
                "`anonymous = \"sealed\"` needs an encrypted request field: without one there is nothing to seal",
            ));
        }
        for f in encrypted.iter().filter(|f| f.visible_to.is_empty()) {
            problems.push(p.problem(
                "anonymous",
                format!(
                    "field `{}`: with `anonymous = \"sealed\"` an anonymous record is read only by the roles in \
                     `visible_to` (its sender has no account to read it back): name at least one role",
                    f.name
                ),
            ));
        }
        let consent = a.purposes.iter().any(|x| matches!(x.legal_basis, Some(BasisChoice::One(LegalBasis::Consent))));
        if consent {
            problems.push(p.problem(
                "anonymous",
                "`anonymous = \"sealed\"` cannot serve a purpose resting on consent: an anonymous sender gives none",
            ));
        }
    }
    let mut seen = HashSet::new();
    for (i, role) in a.assisted_entry.iter().enumerate() {
        let bad = role.trim().is_empty() || role.trim() != role || role.chars().any(char::is_control);
        if bad || !seen.insert(role.as_str()) {
            problems.push(p.problem(
                &format!("assisted_entry[{i}]"),
                format!("`{role}` is not a role name (empty, spaces around it, or given twice)"),
            ));
        }
    }
    if !a.assisted_entry.is_empty() && encrypted.is_empty() {
        problems.push(p.problem(
            "assisted_entry",
            "`assisted_entry` needs an encrypted request field: the other fields need no citizen's key",
        ));
    }
}

/// The easy-to-read notice keeps to the FALC rules the citizen pages keep to.
fn check_falc(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let Some(text) = &p.activity.notice.falc else { return };
    if super::falc::paragraphs(text).is_empty() {
        problems.push(p.problem("notice.falc", "the FALC notice is empty: write it or remove the key"));
    }
    for problem in super::falc::problems(text) {
        problems.push(p.problem("notice.falc", format!("the FALC notice is not easy to read: {problem}")));
    }
}

/// The rights keys: an endpoint the gateway can reach without leaking requests in clear, and
/// erasure on withdrawal only where there is a consent to withdraw.
fn check_rights_keys(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let a = &p.activity;
    if let Some(url) = &a.rights_endpoint {
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|l| url.starts_with(l));
        let path = url.starts_with('/') && !url.starts_with("//");
        if !(url.starts_with("https://") || loopback || path) || url.parse::<http::Uri>().is_err() {
            problems.push(p.problem(
                "rights_endpoint",
                "the rights endpoint must be a path on the application's upstream (`/droits`) or an https:// URL \
                 (http:// only on the loopback)",
            ));
        }
    }
    if a.rights_route.is_some() && a.rights_endpoint.is_none() {
        problems.push(p.problem("rights_route", "`rights_route` needs a `rights_endpoint`"));
    }
    let consent = a.purposes.iter().any(|x| matches!(x.legal_basis, Some(BasisChoice::One(LegalBasis::Consent))));
    if a.erase_on_withdrawal && !consent {
        problems.push(p.problem(
            "erase_on_withdrawal",
            "`erase_on_withdrawal` needs a purpose resting on consent: there is no consent to withdraw",
        ));
    }
}

fn check_purposes(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let a = &p.activity;
    let mut seen = HashSet::new();
    for (i, purpose) in a.purposes.iter().enumerate() {
        let key = format!("purposes[{i}]");
        let id = &purpose.id;
        if !is_identifier(id) {
            problems.push(p.problem(
                &format!("{key}.id"),
                format!("the purpose id `{id}` must use only lowercase letters, digits and -"),
            ));
        }
        if !seen.insert(id.as_str()) {
            problems.push(p.problem(&format!("{key}.id"), format!("the purpose id `{id}` is used twice")));
        }
        let basis = match &purpose.legal_basis {
            None => {
                problems.push(p.problem(
                    &key,
                    format!("purpose `{id}` has no legal basis: add `legal_basis`, one of {BASES} (Art. 6(1))"),
                ));
                continue;
            }
            Some(BasisChoice::Several(list)) if list.len() != 1 => {
                let names: Vec<&str> = list.iter().map(|b| b.as_str()).collect();
                problems.push(p.problem(
                    &format!("{key}.legal_basis"),
                    format!(
                        "purpose `{id}` has {} legal bases ({}): a purpose rests on exactly one basis of Art. 6(1); \
                         split it into several purposes",
                        list.len(),
                        names.join(", ")
                    ),
                ));
                continue;
            }
            Some(BasisChoice::Several(list)) => match list.first() {
                Some(b) => *b,
                None => continue,
            },
            Some(BasisChoice::One(b)) => *b,
        };
        let has_reference = purpose.legal_reference.as_deref().is_some_and(|r| !r.trim().is_empty());
        if basis.needs_legal_reference() && !has_reference {
            problems.push(p.problem(
                &format!("{key}.legal_basis"),
                format!(
                    "purpose `{id}` rests on {} (Art. 6(1)({})): add `legal_reference`, the text of law it rests on \
                     (Art. 6(3)), for example \"Code de l'éducation, art. L131-13\"",
                    basis.as_str(),
                    basis.letter()
                ),
            ));
        }
        if basis == LegalBasis::LegitimateInterests && a.controller.kind == ControllerKind::PublicAuthority {
            problems.push(p.problem(
                &format!("{key}.legal_basis"),
                format!(
                    "purpose `{id}` rests on legitimate interests (Art. 6(1)(f)), which a public authority may not use \
                     for its tasks: use public_task or legal_obligation with its legal_reference"
                ),
            ));
        }
        if basis == LegalBasis::Consent {
            let has_alternative = purpose.alternative.as_deref().is_some_and(|t| !t.trim().is_empty());
            if !purpose.optional || !has_alternative {
                problems.push(p.problem(
                    &key,
                    format!(
                        "purpose `{id}` rests on consent, so it must be optional: set `optional = true` and describe in \
                         `alternative` how to get the service without it (Recital 43)"
                    ),
                ));
            }
            if a.consent.is_none() {
                problems.push(p.problem(
                    &key,
                    format!(
                        "purpose `{id}` rests on consent but the activity has no consent notice: add [consent] with \
                         `text` and `version`"
                    ),
                ));
            }
        }
    }
}

fn check_categories(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let mut seen = HashSet::new();
    for (i, c) in p.activity.categories.iter().enumerate() {
        let key = format!("categories[{i}]");
        if !seen.insert(c.id.as_str()) {
            problems.push(p.problem(&format!("{key}.id"), format!("the category id `{}` is used twice", c.id)));
        }
        let Some(r) = &c.retention else {
            problems.push(p.problem(
                &key,
                format!(
                    "category `{}` has no retention: add [categories.retention] with `active`, `from` and `then` \
                     (Art. 5(1)(e))",
                    c.id
                ),
            ));
            continue;
        };
        for (sub, value) in [
            ("active", Some(&r.active)),
            ("intermediate", r.intermediate.as_ref()),
            ("notice_before", r.notice_before.as_ref()),
        ] {
            if let Some(Err(e)) = value.map(|v| Period::parse(v)) {
                problems.push(p.problem(&format!("{key}.retention.{sub}"), format!("category `{}`: {e}", c.id)));
            }
        }
        if !r.archive_visible_to.is_empty() && r.intermediate.is_none() {
            problems.push(p.problem(
                &format!("{key}.retention.archive_visible_to"),
                format!("category `{}`: `archive_visible_to` needs an `intermediate` archive period", c.id),
            ));
        }
        if r.then == RetentionEnd::ArchiveReview {
            for (sub, value) in [("producing_service", &r.producing_service), ("source", &r.source)] {
                if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
                    problems.push(p.problem(
                        &format!("{key}.retention.{sub}"),
                        format!(
                            "category `{}`: `then = \"archive_review\"` needs `{sub}` for the elimination list",
                            c.id
                        ),
                    ));
                }
            }
        }
        if r.archive_visible_to.iter().any(|role| role.trim().is_empty()) {
            problems.push(p.problem(
                &format!("{key}.retention.archive_visible_to"),
                format!("category `{}`: a role in `archive_visible_to` is empty", c.id),
            ));
        }
        let named = |v: &Option<String>| v.as_deref().is_some_and(|t| !t.trim().is_empty());
        if r.from == RetentionStart::Event && (!named(&r.event) || !named(&r.event_label)) {
            problems.push(p.problem(
                &format!("{key}.retention.from"),
                format!(
                    "category `{}` counts its retention from an event: name it in `event` and say it in plain French \
                     in `event_label` (\"votre radiation des listes\")",
                    c.id
                ),
            ));
        }
    }
}

fn check_fields(p: &Parsed, problems: &mut Vec<PolicyProblem>) {
    let categories: HashSet<&str> = p.activity.categories.iter().map(|c| c.id.as_str()).collect();
    for (i, f) in p.activity.fields.iter().enumerate() {
        let key = format!("fields[{i}]");
        if !categories.contains(f.category.as_str()) {
            problems.push(p.problem(
                &format!("{key}.category"),
                format!(
                    "field `{}` names the category `{}`, which is not declared in [[categories]]: every field belongs \
                     to a declared category",
                    f.name, f.category
                ),
            ));
        }
        if f.locations.is_empty() {
            problems
                .push(p.problem(&format!("{key}.in"), format!("field `{}` says nowhere where it is carried", f.name)));
        }
        let bad_pointer = f.json_pointer.as_deref().is_some_and(|ptr| !ptr.starts_with('/'));
        if bad_pointer || (f.json_pointer.is_some() && !f.locations.contains(&FieldLocation::Json)) {
            problems.push(p.problem(
                &format!("{key}.json_pointer"),
                format!("field `{}`: `json_pointer` starts with / and only applies to a field carried in json", f.name),
            ));
        }
        if f.searchable && f.protection != super::model::Protection::Encrypt {
            problems.push(p.problem(
                &format!("{key}.searchable"),
                format!(
                    "field `{}`: `searchable` applies to encrypted fields only (a pseudonym is already comparable, \
                     a passed value is in clear)",
                    f.name
                ),
            ));
        }
    }
}

/// One `Processing` per purpose, then every route rule compiled with the purpose it serves.
fn compile_routes(p: &Parsed, problems: &mut Vec<PolicyProblem>) -> Vec<(CompiledRoute, String)> {
    let a = &p.activity;
    let fields: Arc<[super::model::Field]> = Arc::from(a.fields.clone());
    let assisted_entry: Arc<[String]> = Arc::from(a.assisted_entry.clone());
    for f in fields.iter() {
        f.set_class(super::retention_class(a, &f.category));
    }
    let processings: Vec<Arc<Processing>> = a
        .purposes
        .iter()
        .filter_map(|purpose| {
            let basis = match &purpose.legal_basis {
                Some(BasisChoice::One(b)) => *b,
                Some(BasisChoice::Several(l)) if l.len() == 1 => *l.first()?,
                _ => return None,
            };
            let header = HeaderValue::from_str(&format!("{}/{}", a.id, purpose.id)).ok()?;
            Some(Arc::new(Processing {
                activity: Arc::from(a.id.as_str()),
                purpose: Arc::from(purpose.id.as_str()),
                legal_basis: basis,
                consent_required: basis == LegalBasis::Consent,
                fields: fields.clone(),
                header,
                strict: a.is_strict(),
                sector: a.sector,
                anonymous_sealed: a.anonymous == AnonymousFields::Sealed,
                assisted_entry: assisted_entry.clone(),
                compiled_json: Default::default(),
            }))
        })
        .collect();
    let mut out = Vec::new();
    for (i, r) in a.routes.iter().enumerate() {
        let key = format!("routes[{i}]");
        let pattern = PathPattern::parse(&r.path).map_err(|e| problems.push(p.problem(&format!("{key}.path"), e))).ok();
        let methods = match &r.methods {
            None => Some(None),
            Some(list) => list
                .iter()
                .map(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
                .map_err(|_| problems.push(p.problem(&format!("{key}.methods"), "a method name is not valid")))
                .ok(),
        };
        let processing = match (&r.purpose, processings.as_slice()) {
            (None, [only]) => Some(only.clone()),
            (None, _) if a.purposes.len() > 1 => {
                problems.push(p.problem(&key, "the activity has several purposes: say which one in `purpose`"));
                None
            }
            (None, _) => None,
            (Some(id), _) => {
                let found = processings.iter().find(|x| *x.purpose == **id).cloned();
                if found.is_none() && a.purposes.iter().all(|x| x.id != *id) {
                    problems.push(
                        p.problem(&format!("{key}.purpose"), format!("`{id}` is not a purpose of this activity")),
                    );
                }
                found
            }
        };
        let host = r.host.as_ref().map(|h| h.trim().to_ascii_lowercase().into_boxed_str());
        if let (Some(pattern), Some(methods), Some(processing)) = (pattern, methods, processing) {
            out.push((CompiledRoute { host, pattern, methods, processing }, key));
        }
    }
    out
}

fn check_overlaps(parsed: &[Parsed], compiled: &[(usize, CompiledRoute, String)], problems: &mut Vec<PolicyProblem>) {
    for (n, (i, a, key_a)) in compiled.iter().enumerate() {
        for (j, b, key_b) in compiled.iter().skip(n + 1) {
            if !a.overlaps(b) {
                continue;
            }
            let (Some(pa), Some(pb)) = (parsed.get(*i), parsed.get(*j)) else { continue };
            let path_a = pa.activity.routes.get(index_of(key_a)).map_or("?", |r| r.path.as_str());
            let path_b = pb.activity.routes.get(index_of(key_b)).map_or("?", |r| r.path.as_str());
            problems.push(pb.problem(
                &format!("{key_b}.path"),
                format!(
                    "the route `{path_b}` of activity `{}` overlaps the route `{path_a}` of activity `{}` \
                     ({}:{}): no route may be claimed by two activities, one request serves one purpose",
                    pb.activity.id,
                    pa.activity.id,
                    pa.name,
                    pa.index.locate(&format!("{key_a}.path")).0
                ),
            ));
        }
    }
}

fn index_of(key: &str) -> usize {
    key.trim_start_matches("routes[").trim_end_matches(']').parse().unwrap_or(usize::MAX)
}

/// Every configured route is either reached by an activity rule or declared without personal
/// data. An activity rule reaches a route when the route table sends the rule's fixed part there.
fn check_coverage(
    compiled: &[(usize, CompiledRoute, String)],
    routes: &RouteTable,
    settings: &[RouteSettings],
    origin: &str,
    problems: &mut Vec<PolicyProblem>,
) {
    let hosts = route_hosts(routes);
    let reached: HashSet<&str> =
        compiled.iter().flat_map(|(_, rule, _)| reached_routes(rule, routes, &hosts)).map(|r| &*r.name).collect();
    for (i, r) in settings.iter().enumerate() {
        if !r.no_personal_data && !reached.contains(r.name.as_str()) {
            problems.push(PolicyProblem {
                location: None,
                message: format!(
                    "the configured route `{}` (routes[{i}]) is covered by no processing activity in {origin}: add a \
                     [[routes]] rule to the activity it serves, or set `no_personal_data = true` on the route if it \
                     carries no personal data",
                    r.name
                ),
            });
        }
    }
}

/// The hosts a rule without its own host is tried on: none, and each route's host.
fn route_hosts(routes: &RouteTable) -> Vec<Option<&str>> {
    std::iter::once(None).chain(routes.iter().filter_map(|r| r.host.as_deref()).map(Some)).collect()
}

/// The configured routes an activity rule reaches: where the route table sends the rule's
/// fixed part, on the rule's host or, for a rule without one, on any host.
fn reached_routes<'t>(
    rule: &CompiledRoute,
    routes: &'t RouteTable,
    hosts: &[Option<&str>],
) -> Vec<&'t Arc<crate::routing::Route>> {
    let sample = rule.pattern.sample_path();
    let tried: Vec<Option<&str>> = match &rule.host {
        Some(h) => vec![Some(&**h)],
        None => hosts.to_vec(),
    };
    tried.into_iter().filter_map(|h| routes.find(h, &sample)).collect()
}

/// One application, one sector: a route that sends the citizen's pseudonym (`access`
/// `citizen` or `agent`) may not be reached by activities of two sectors, or its application
/// would receive one `X-Guichet-Subject` for both and could join the citizen's sectors
/// (docs/policies.md, "Sectors"). Public routes send no pseudonym and keep none in retention
/// records, so several sectors may share them (a portal at `/`).
fn check_route_sectors(
    parsed: &[Parsed],
    compiled: &[(usize, CompiledRoute, String)],
    routes: &RouteTable,
    problems: &mut Vec<PolicyProblem>,
) {
    use crate::config::RouteAccess;
    let hosts = route_hosts(routes);
    // Per route and sector, the first rule (file, key) reaching it, in file order.
    let mut seen: Vec<(&str, super::Sector, usize, &str)> = Vec::new();
    for (i, rule, key) in compiled {
        let sector = rule.processing.sector;
        for route in reached_routes(rule, routes, &hosts) {
            let known = seen.iter().any(|(name, s, ..)| *name == &*route.name && *s == sector);
            if route.access == RouteAccess::Public || known {
                continue;
            }
            let other = seen.iter().find(|(name, ..)| *name == &*route.name).copied();
            seen.push((&route.name, sector, *i, key));
            let Some((_, other, j, other_key)) = other else { continue };
            let (Some(this), Some(that)) = (parsed.get(*i), parsed.get(j)) else { continue };
            problems.push(this.problem(
                &format!("{key}.path"),
                format!(
                    "the route `{}` would serve the sectors `{}` (activity `{}`, {}:{}) and `{}` (activity `{}`): \
                     its application would receive one pseudonym for both and could join them; give each sector \
                     its own route in the configuration",
                    route.name,
                    other.as_str(),
                    that.activity.id,
                    that.name,
                    that.index.locate(&format!("{other_key}.path")).0,
                    sector.as_str(),
                    this.activity.id,
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::load::{PolicySource, load};

    fn route(name: &str, prefix: &str, no_personal_data: bool) -> RouteSettings {
        RouteSettings { no_personal_data, ..RouteSettings::new(name, prefix, "http://127.0.0.1:1") }
    }

    fn check(rule: &str, routes: &[RouteSettings]) -> String {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies").join(rule);
        let table = RouteTable::compile(routes, 1024).unwrap();
        load(&PolicySource::Dir(dir), &table, routes).unwrap_err().to_string()
    }

    /// Every rule: its fixture fails with a message naming the file, the line and the fix.
    #[test]
    fn each_rule_has_a_failing_fixture_with_its_message() {
        let cases = [
            ("unknown-key", "a.toml:6:1: unknown field `colour`"),
            ("unknown-sector", "a.toml:6:10: unknown variant `fiscalite`, expected one of `general`, `etat_civil`"),
            ("version", "a.toml:2:1: version 2 is not supported"),
            ("one-basis", "a.toml:19:1: purpose `p` has 2 legal bases (public_task, consent)"),
            ("no-basis", "a.toml:16:1: purpose `p` has no legal basis"),
            ("legal-reference", "add `legal_reference`, the text of law it rests on"),
            ("legitimate-interest", "which a public authority may not use for its tasks"),
            ("consent-optional", "rests on consent, so it must be optional"),
            ("consent-notice", "has no consent notice"),
            ("retention", "category `c` has no retention"),
            ("retention-duration", "`three years` is not a duration"),
            ("retention-archive", "`archive_visible_to` needs an `intermediate` archive period"),
            ("field-category", "names the category `sante`, which is not declared"),
            ("route-pattern", "`*` may only be the last segment"),
            ("route-overlap", "no route may be claimed by two activities"),
            ("duplicate-id", "the activity id `essai` is already used"),
            ("anonymous-sealed", "field `nom`: with `anonymous = \"sealed\"` an anonymous record is read only by"),
            ("assisted-entry", "`accueil` is not a role name (empty, spaces around it, or given twice)"),
        ];
        for (rule, expected) in cases {
            let shown = check(rule, &[]);
            assert!(shown.contains(expected), "{rule}: expected `{expected}` in:\n{shown}");
            assert!(shown.contains(&format!("{rule}/")), "{rule}: the file is named:\n{shown}");
        }
    }

    #[test]
    fn every_configured_route_needs_an_activity_or_a_declaration() {
        let routes = [route("essai", "/essai", false), route("api", "/api", false), route("accueil", "/", true)];
        let shown = check("route-coverage", &routes);
        assert!(
            shown.contains("the configured route `api` (routes[1]) is covered by no processing activity"),
            "{shown}"
        );
        assert!(!shown.contains("`essai`") && !shown.contains("`accueil`"), "{shown}");
    }

    /// A route sending pseudonyms, reached by two sectors' activities, is refused with both
    /// sectors, both activities and where the first one claims it; a public route, or one
    /// route per sector, is not.
    #[test]
    fn a_route_sending_pseudonyms_serves_one_sector() {
        use crate::config::RouteAccess;
        let citizen =
            |name: &str, prefix: &str| RouteSettings { access: RouteAccess::Citizen, ..route(name, prefix, false) };
        let shown = check("route-sectors", &[citizen("essai", "/essai")]);
        let expected = [
            "b.toml:38:1: the route `essai` would serve the sectors `scolaire` (activity `essai`, ",
            "a.toml:38) and `social` (activity `autre`)",
        ];
        assert!(expected.iter().all(|e| shown.contains(e)), "{shown}");
        assert_eq!(shown.matches("would serve the sectors").count(), 1, "said once: {shown}");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies/route-sectors");
        let fine = |routes: &[RouteSettings]| {
            let table = RouteTable::compile(routes, 1024).unwrap();
            load(&PolicySource::Dir(dir.clone()), &table, routes).map(|_| ())
        };
        assert!(fine(&[route("essai", "/essai", false)]).is_ok(), "a public route sends no pseudonym");
        let apart = [citizen("ecole", "/essai/ecole"), citizen("ccas", "/essai/ccas")];
        assert!(fine(&apart).is_ok(), "one route per sector");
        let agents = RouteSettings { access: RouteAccess::Agent, ..route("essai", "/essai", false) };
        assert!(fine(&[agents]).is_err(), "an agents' route sends pseudonyms too");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies");
        let files: Vec<_> = ["legal-reference", "retention", "field-category"]
            .iter()
            .map(|r| crate::policy::SourceFile {
                name: format!("{r}.toml"),
                text: std::fs::read_to_string(dir.join(r).join("a.toml")).unwrap().replace("essai", r),
            })
            .collect();
        let err = load(&PolicySource::Memory(files), &RouteTable::default(), &[]).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
    }

    /// The rights keys: an endpoint that would send requests in clear, a route that does
    /// not exist, erasure on withdrawal without consent — each refused with its fix.
    #[test]
    fn the_rights_keys_are_checked() {
        let newsletter = include_str!("../../policies/lettre-information.toml");
        let canteen = include_str!("../../policies/cantine.toml");
        let endpoint = "rights_endpoint = \"/droits\"";
        let cases = [
            (newsletter.replace(endpoint, "rights_endpoint = \"http://example.org/droits\""), "must be a path"),
            (newsletter.replace(endpoint, &format!("{endpoint}\nrights_route = \"nulle-part\"")), "`nulle-part`"),
            (canteen.replace(endpoint, &format!("{endpoint}\nerase_on_withdrawal = true")), "no consent to withdraw"),
        ];
        for (text, expected) in cases {
            let files = vec![crate::policy::SourceFile { name: "a.toml".into(), text }];
            let err = load(&PolicySource::Memory(files), &RouteTable::default(), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        }
        let fine = newsletter.replace(endpoint, &format!("{endpoint}\nerase_on_withdrawal = true"));
        let files = vec![crate::policy::SourceFile { name: "a.toml".into(), text: fine }];
        assert!(load(&PolicySource::Memory(files), &RouteTable::default(), &[]).is_ok());
    }

    /// `anonymous` and `assisted_entry`: the shipped voirie policy uses both; a sealed record
    /// nobody could read, a consent purpose, an unknown value, no encrypted field — refused.
    #[test]
    fn the_entry_keys_are_checked() {
        let voirie = include_str!("../../policies/voirie.toml");
        let newsletter = include_str!("../../policies/lettre-information.toml");
        let sealed = "anonymous = \"sealed\"";
        assert!(voirie.contains(sealed) && voirie.contains("assisted_entry = [\"accueil\"]"));
        let with_sealed = |text: &str| text.replacen("version = 1\n", &format!("version = 1\n{sealed}\n"), 1);
        let cases = [
            (voirie.replace(sealed, "anonymous = \"parfois\""), "unknown variant `parfois`"),
            (voirie.replace("visible_to = [\"agent-voirie\"]\n", ""), "field `reporter_name`: with `anonymous"),
            (with_sealed(newsletter), "cannot serve a purpose resting on consent"),
            (voirie.replace("protection = \"encrypt\"", "protection = \"pass\""), "needs an encrypted request field"),
        ];
        for (text, expected) in cases {
            let files = vec![crate::policy::SourceFile { name: "a.toml".into(), text }];
            let err = load(&PolicySource::Memory(files), &RouteTable::default(), &[]).unwrap_err().to_string();
            assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        }
        let files = vec![crate::policy::SourceFile { name: "a.toml".into(), text: voirie.to_owned() }];
        let set = load(&PolicySource::Memory(files), &RouteTable::default(), &[]).unwrap();
        let a = set.activity("voirie").unwrap();
        assert_eq!(a.anonymous, super::super::model::AnonymousFields::Sealed);
        assert_eq!(a.assisted_entry, ["accueil"]);
    }

    #[test]
    fn an_activity_without_fields_passes_nothing_personal() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies/route-coverage/a.toml");
        let text = std::fs::read_to_string(dir).unwrap();
        let without_fields = text
            .replace("[[fields]]\nname = \"nom\"\ncategory = \"c\"\nin = [\"form\"]\nprotection = \"encrypt\"\n", "");
        let file = crate::policy::SourceFile { name: "a.toml".into(), text: without_fields };
        let set = load(&PolicySource::Memory(vec![file]), &RouteTable::default(), &[]).unwrap();
        let r = set.routes().first().unwrap();
        assert!(r.processing.fields.is_empty());
    }

    #[test]
    fn only_encrypted_fields_can_be_searchable() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies/route-coverage/a.toml");
        let text = std::fs::read_to_string(dir).unwrap();
        let load_with = |protection: &str| {
            let text = text
                .replace("protection = \"encrypt\"\n", &format!("protection = \"{protection}\"\nsearchable = true\n"));
            let file = crate::policy::SourceFile { name: "a.toml".into(), text };
            load(&PolicySource::Memory(vec![file]), &RouteTable::default(), &[])
        };
        assert!(load_with("encrypt").is_ok());
        let err = load_with("pseudonymize").unwrap_err();
        assert!(err.to_string().contains("`searchable` applies to encrypted fields only"), "{err}");
    }
}
