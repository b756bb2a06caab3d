//! What a configured route sends its application, held against the data categories of the
//! activities it serves (`guichet check`, `guichet policy check`): an identity claim
//! (`routes[].claims`) or the client's address (`routes[].client_address`) reaches an
//! application only when a category of each activity served there declares it. Problems name
//! the route's key in the configuration file (file:line). And an activity that declares
//! fields must say whether undeclared members are refused (`strict`).

use std::collections::BTreeSet;

use super::engine::PolicySet;
use super::model::{ActivityFile, Protection};
use crate::config::{ClientAddress, Problem, RouteSettings, SourceMap};
use crate::routing::RouteTable;

/// Every problem of the routes' bindings to the activities, at once.
pub fn check(set: &PolicySet, routes: &RouteTable, settings: &[RouteSettings], source: &SourceMap) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, r) in settings.iter().enumerate() {
        let served = activities_of(set, routes, &r.name);
        for claim in &r.claims {
            let why = |ids: &str| format!("no data category of `{ids}` lists it");
            if let Some(whose) = uncovered(&served, |a| covers_claim(a, claim), why) {
                problems.push(source.problem(
                    &format!("routes[{i}].claims"),
                    format!(
                        "route `{}` sends the identity claim `{claim}` to its application, but {whose}: add \
                         `claims = [\"{claim}\"]` to the category it carries, or remove it from the route (Art. 5(1)(c))",
                        r.name
                    ),
                ));
            }
        }
        if r.client_address != ClientAddress::None {
            let declares = |a: &ActivityFile| a.categories.iter().any(|c| c.client_address);
            let why = |ids: &str| format!("`{ids}` declares no category with `client_address = true`");
            if let Some(whose) = uncovered(&served, declares, why) {
                problems.push(source.problem(
                    &format!("routes[{i}].client_address"),
                    format!(
                        "route `{}` sends the client's address ({}) to its application, but {whose}: declare it as a \
                         data category with its retention, or set `client_address = \"none\"`",
                        r.name,
                        r.client_address.as_str()
                    ),
                ));
            }
        }
    }
    problems
}

/// The activities with fields that do not say whether undeclared members are refused: new
/// policies must choose (`strict = true` is the privacy-by-default answer).
pub fn undecided_strict(set: &PolicySet) -> Vec<String> {
    set.activities
        .iter()
        .filter(|a| !a.fields.is_empty() && a.strict.is_none())
        .map(|a| {
            format!(
                "activity `{}` declares fields but not `strict`: add `strict = true` (undeclared body members and \
                 query parameters refused) or, for an application not yet checked, `strict = false`",
                a.id
            )
        })
        .collect()
}

/// What `guichet policy check` warns about without refusing the set: an encrypted field
/// without a `label` cannot be offered on the citizen's rectification screen
/// (`rights::rectification::correctable`), so a correction of it waits for an agent.
pub fn warnings(set: &PolicySet) -> Vec<String> {
    set.activities
        .iter()
        .flat_map(|a| {
            a.fields.iter().filter(|f| f.protection == Protection::Encrypt && f.label.is_none()).map(|f| {
                format!(
                    "activity `{}`, field `{}`: encrypted but without `label`, so citizens cannot correct it \
                     online; add `label = \"…\"` (what citizens call it, in plain French)",
                    a.id, f.name
                )
            })
        })
        .collect()
}

/// Why `served` does not cover something: no activity at all, or the ids of those for which
/// `covers` is false (`why` words them); `None` when every one covers it.
fn uncovered(
    served: &[&ActivityFile],
    covers: impl Fn(&ActivityFile) -> bool,
    why: impl Fn(&str) -> String,
) -> Option<String> {
    if served.is_empty() {
        return Some("no processing activity serves the route".to_owned());
    }
    let ids: Vec<&str> = served.iter().filter(|a| !covers(a)).map(|a| a.id.as_str()).collect();
    (!ids.is_empty()).then(|| why(&ids.join("`, `")))
}

fn covers_claim(a: &ActivityFile, claim: &str) -> bool {
    a.categories.iter().any(|c| c.claims.iter().any(|k| k == claim))
}

/// The activities whose rules the route table sends to the configured route `name` (the
/// same reach as the coverage rule of `validate`).
fn activities_of<'a>(set: &'a PolicySet, routes: &RouteTable, name: &str) -> Vec<&'a ActivityFile> {
    let hosts: Vec<Option<&str>> =
        std::iter::once(None).chain(routes.iter().filter_map(|r| r.host.as_deref()).map(Some)).collect();
    let mut ids = BTreeSet::new();
    for rule in set.routes() {
        let sample = rule.pattern.sample_path();
        let tried: Vec<Option<&str>> = match &rule.host {
            Some(h) => vec![Some(&**h)],
            None => hosts.clone(),
        };
        if tried.into_iter().any(|h| routes.find(h, &sample).is_some_and(|r| &*r.name == name)) {
            ids.insert(rule.processing.activity.clone());
        }
    }
    ids.iter().filter_map(|id| set.activity(id)).map(|a| &**a).collect()
}
