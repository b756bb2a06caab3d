//! An application's records with the citizen's `gch1.` values opened. A token opens only if
//! the vault says it belongs to this citizen and this activity, and then only in one of the
//! activity's encrypted fields (the AEAD binds the field): another person's token, or one of
//! another activity, stays closed and is counted, never shown.

use std::collections::HashMap;

use serde_json::Value;

use crate::crypto::Vault;
use crate::crypto::scan::{find_tokens, replace_tokens};
use crate::crypto::token::FieldContext;
use crate::policy::model::{ActivityFile, Protection};

/// Shown in place of a value that is not this citizen's or can no longer be read.
pub const UNREADABLE: &str = "[valeur illisible]";

/// `records` with this citizen's values in clear, and how many values stayed closed.
pub async fn open_records(
    vault: Option<&Vault>,
    activity: &ActivityFile,
    owners: &[&str],
    records: &Value,
) -> (Value, u32) {
    let mut tokens = Vec::new();
    collect(records, &mut tokens);
    let mut opened: HashMap<String, Option<String>> = HashMap::new();
    for token in tokens {
        if opened.contains_key(&token) {
            continue;
        }
        let value = match vault {
            Some(vault) => open_one(vault, activity, owners, &token).await,
            None => None,
        };
        opened.insert(token, value);
    }
    let unreadable = opened.values().filter(|v| v.is_none()).count();
    let rewritten = rewrite(records, &opened);
    (rewritten, u32::try_from(unreadable).unwrap_or(u32::MAX))
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.extend(find_tokens(s).into_iter().map(str::to_owned)),
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect(i, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn rewrite(v: &Value, opened: &HashMap<String, Option<String>>) -> Value {
    match v {
        Value::String(s) => Value::String(replace_tokens(s, |t| {
            opened.get(t).cloned().flatten().unwrap_or_else(|| UNREADABLE.to_owned())
        })),
        Value::Array(items) => Value::Array(items.iter().map(|i| rewrite(i, opened)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, i)| (k.clone(), rewrite(i, opened))).collect()),
        other => other.clone(),
    }
}

/// The clear value of `token` if one of `owners` (the citizen's field subjects) owns it, in
/// `activity`.
async fn open_one(vault: &Vault, activity: &ActivityFile, owners: &[&str], token: &str) -> Option<String> {
    let openable = vault.openable(token).await.ok()??;
    if !owners.contains(&openable.subject()) || openable.activity() != activity.id {
        return None;
    }
    let subject = openable.subject();
    for field in activity.fields.iter().filter(|f| f.protection == Protection::Encrypt) {
        let ctx = FieldContext { activity: &activity.id, field: &field.name, subject };
        if let Ok(value) = openable.open(&ctx) {
            return Some(value.to_string());
        }
    }
    None
}

/// The records as `path : value` lines for the printable page.
pub fn lines(records: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten(records, String::new(), &mut out);
    out
}

fn flatten(v: &Value, path: String, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, i) in map {
                let p = if path.is_empty() { k.clone() } else { format!("{path} › {k}") };
                flatten(i, p, out);
            }
        }
        Value::Array(items) => {
            for (n, i) in items.iter().enumerate() {
                let p = if path.is_empty() { format!("{}", n + 1) } else { format!("{path} › {}", n + 1) };
                flatten(i, p, out);
            }
        }
        Value::String(s) => out.push((path, s.clone())),
        Value::Null => out.push((path, "(vide)".to_owned())),
        Value::Bool(b) => out.push((path, if *b { "oui" } else { "non" }.to_owned())),
        Value::Number(n) => out.push((path, n.to_string())),
    }
}
