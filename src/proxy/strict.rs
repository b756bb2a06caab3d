//! Strict mode (the activity's `strict = true`): on a route whose activity declares fields,
//! every query parameter and body member (URL-encoded form or JSON) must be one a field
//! declares — `pass` fields included, so passing in clear stays an explicit choice. Anything
//! else is refused with 422 and the list of the undeclared names (never their values), before
//! a byte is forwarded (Art. 5(1)(c), Art. 25).
//!
//! Names are compared as field protection compares them (`canonical::names`): a form or query
//! name is declared when a modelled stack binds it into a declared field's name; a JSON
//! member when its folded name is the declared member's at that depth.

use serde_json::Value;

use crate::canonical::names;
use crate::policy::model::{Direction, Field, FieldLocation};

/// The most undeclared names listed in one refusal (the count beyond is not needed to fix it).
const MAX_LISTED: usize = 20;

/// The fields that requests may carry (`request` and `both`).
fn request_side(fields: &[Field]) -> impl Iterator<Item = &Field> {
    fields.iter().filter(|f| f.direction != Direction::Response)
}

/// The URL-encoded names (query or form body) that no field declares at `at`, in order of
/// first appearance, each once.
pub fn undeclared_pairs(fields: &[Field], at: FieldLocation, bytes: &[u8]) -> Vec<String> {
    let declared: Vec<&Field> = request_side(fields).filter(|f| f.locations.contains(&at)).collect();
    let mut out: Vec<String> = Vec::new();
    for (name, _) in url::form_urlencoded::parse(bytes) {
        let known = declared.iter().any(|f| f.name == name || names::Sent::of(&name).binds_into(f.param_name()));
        if !known && !out.iter().any(|n| *n == name) {
            if out.len() == MAX_LISTED {
                break;
            }
            out.push(name.into_owned());
        }
    }
    out
}

/// The JSON members no field declares, as pointers with `*` for array elements
/// (`/children/*/age`), each once. A member inside a declared field's value (a `pass` field
/// holding an object) is declared with it; a member on the way to a declared field is a
/// container and is walked.
pub fn undeclared_json(fields: &[Field], doc: &Value) -> Vec<String> {
    let declared: Vec<&[String]> = request_side(fields)
        .filter(|f| f.locations.contains(&FieldLocation::Json))
        .filter_map(Field::json_segments)
        .collect();
    let mut out = Vec::new();
    walk(doc, &declared, &mut out);
    out
}

/// One step of a document's path: a member name or an array index.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Member(&'a str),
    Index(usize),
}

fn step_matches(step: Step<'_>, declared: &str) -> bool {
    match step {
        Step::Member(m) => m == declared || names::fold(m) == names::fold(declared),
        Step::Index(i) => declared == "*" || declared.parse::<usize>().is_ok_and(|d| d == i),
    }
}

/// How `path` stands to the declared pointers: inside (or at) one, on the way to one, or off.
#[derive(Debug, PartialEq, Eq)]
enum Standing {
    Declared,
    OnTheWay,
    Undeclared,
}

fn standing(path: &[Step<'_>], declared: &[&[String]]) -> Standing {
    let mut on_the_way = false;
    for d in declared {
        let common = path.iter().zip(d.iter()).take_while(|(s, d)| step_matches(**s, d)).count();
        if common == d.len() {
            return Standing::Declared;
        }
        if common == path.len() {
            on_the_way = true;
        }
    }
    if on_the_way { Standing::OnTheWay } else { Standing::Undeclared }
}

/// The JSON walk, with an explicit stack: bodies reach here only after the field scanner
/// bounded their depth, but the walk must not recurse as deep as a client chooses anyway.
fn walk<'v>(doc: &'v Value, declared: &[&[String]], out: &mut Vec<String>) {
    let mut stack: Vec<(Vec<Step<'v>>, &'v Value)> = vec![(Vec::new(), doc)];
    while let Some((path, value)) = stack.pop() {
        let children: Vec<(Step<'v>, &'v Value)> = match value {
            Value::Object(m) => m.iter().map(|(k, v)| (Step::Member(k.as_str()), v)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, v)| (Step::Index(i), v)).collect(),
            _ => continue,
        };
        for (step, child) in children {
            let mut at = path.clone();
            at.push(step);
            match standing(&at, declared) {
                Standing::Declared => {}
                Standing::OnTheWay => stack.push((at, child)),
                Standing::Undeclared => {
                    let name = pointer(&at);
                    if !out.contains(&name) && out.len() < MAX_LISTED {
                        out.push(name);
                    }
                }
            }
        }
    }
}

/// `/a/*/b`: the path as a JSON pointer (RFC 6901 escapes), array indexes written `*`.
fn pointer(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for step in path {
        s.push('/');
        match step {
            Step::Member(m) => s.push_str(&m.replace('~', "~0").replace('/', "~1")),
            Step::Index(_) => s.push('*'),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::Protection;

    fn field(name: &str, at: FieldLocation, pointer: Option<&str>, protection: Protection) -> Field {
        Field {
            name: name.into(),
            category: "c".into(),
            locations: vec![at],
            json_pointer: pointer.map(Into::into),
            direction: Direction::Request,
            protection,
            label: None,
            visible_to: vec![],
            searchable: false,
            compiled_pointer: Default::default(),
            compiled_name: Default::default(),
            compiled_class: Default::default(),
        }
    }

    #[test]
    fn undeclared_form_and_query_names_are_listed_once_declared_ones_in_any_binding_spelling_pass() {
        let fields = [
            field("nom", FieldLocation::Form, None, Protection::Encrypt),
            field("classe", FieldLocation::Form, None, Protection::Pass),
            field("page", FieldLocation::Query, None, Protection::Pass),
        ];
        let form = b"nom=Dupont&classe=CE1&religion=x&religion=y&NOM=z";
        assert_eq!(undeclared_pairs(&fields, FieldLocation::Form, form), ["religion"]);
        assert_eq!(undeclared_pairs(&fields, FieldLocation::Query, b"page=2&nom=x"), ["nom"]);
        assert!(undeclared_pairs(&fields, FieldLocation::Query, b"page=2").is_empty());
    }

    #[test]
    fn undeclared_json_members_are_named_by_pointer_never_by_value() {
        let fields = [
            field("nom", FieldLocation::Json, Some("/enfants/*/nom"), Protection::Encrypt),
            field("adresse", FieldLocation::Json, None, Protection::Pass),
        ];
        let doc = serde_json::json!({
            "enfants": [{ "nom": "Léa", "allergie": "arachide" }, { "NOM": "Tom" }],
            "adresse": { "rue": "1 rue X", "ville": "Y" },
            "religion": "secret-value",
        });
        let mut got = undeclared_json(&fields, &doc);
        got.sort();
        assert_eq!(got, ["/enfants/*/allergie", "/religion"]);
        assert!(!got.iter().any(|n| n.contains("secret-value") || n.contains("arachide")));
    }
}
