//! Reading the file and the environment, and remembering where each key came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::{Table, Value};

use super::problems::{ConfigError, Origin, Problem};
use super::{Loaded, Settings};

/// Prefix of environment overrides; `__` separates levels (`GUICHET_SERVER__LISTEN`).
pub const ENV_PREFIX: &str = "GUICHET_";
/// Variables with the prefix that are not settings.
const ENV_NOT_SETTINGS: &[&str] = &["GUICHET_CONFIG", "GUICHET_LOG"];

/// Key path → origin, for naming file lines and environment variables in messages.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    file: Option<PathBuf>,
    keys: HashMap<String, Origin>,
}

impl SourceMap {
    pub fn empty() -> Self {
        Self::default()
    }

    /// Where `key` was set; falls back to its nearest parent that was set (a table header),
    /// then to the default.
    pub fn origin(&self, key: &str) -> Origin {
        let mut k = key;
        loop {
            if let Some(o) = self.keys.get(k) {
                return o.clone();
            }
            match k.rfind(['.', '[']).and_then(|i| k.get(..i)) {
                Some(parent) => k = parent,
                None => return Origin::Default,
            }
        }
    }

    pub fn problem(&self, key: &str, message: impl Into<String>) -> Problem {
        Problem { key: key.to_owned(), origin: self.origin(key), message: message.into() }
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

pub(super) fn load<I>(path: Option<&Path>, env: I) -> Result<Loaded, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let (loaded, problems) = load_lenient(path, env)?;
    if problems.is_empty() { Ok(loaded) } else { Err(ConfigError { problems }) }
}

/// Every unknown key and wrong type of the file (at most [`every::MAX_PROBLEMS`]), each at its
/// line, and the text with those entries blanked out (lines unchanged), which reads.
fn file_problems(path: &Path, text: &str) -> (String, Vec<Problem>) {
    let mut text = text.to_owned();
    let mut problems = Vec::new();
    let mut blanked: Vec<String> = Vec::new();
    while problems.len() < super::every::MAX_PROBLEMS {
        let Err(e) = toml::from_str::<Settings>(&text) else { break };
        // A key blanked for being wrong is then missing: already reported.
        if blanked.iter().any(|k| e.message().starts_with(&format!("missing field `{k}`"))) {
            break;
        }
        problems.push(file_error(path, &text, &e));
        match e.span().and_then(|s| super::every::blank_entry_at(&text, s.start)) {
            Some((next, key)) => {
                text = next;
                blanked.push(key);
            }
            None => break,
        }
    }
    (text, problems)
}

/// Reads like [`load`], but keeps going past the file's unknown keys and wrong types: returns
/// the configuration without them, and them as problems (`guichet check` then validates the
/// rest, to report everything at once).
pub(super) fn load_lenient<I>(path: Option<&Path>, env: I) -> Result<(Loaded, Vec<Problem>), ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut problems = Vec::new();
    let mut source = SourceMap::default();
    let mut table = Table::new();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::single(Problem {
                key: String::new(),
                origin: Origin::Default,
                message: format!("cannot read configuration file {}: {e}", path.display()),
            })
        })?;
        // A first pass straight from the text gives serde errors (unknown keys, wrong types)
        // with their exact line.
        let (text, found) = file_problems(path, &text);
        problems = found;
        table = toml::from_str::<Table>(&text).map_err(|e| ConfigError::single(file_error(path, &text, &e)))?;
        index_file(path, &text, &mut source);
        source.file = Some(path.to_owned());
    }
    let overrides = apply_env(&mut table, env, &mut source)?;
    let settings = Settings::deserialize(table).map_err(|e| {
        ConfigError::single(Problem {
            key: String::new(),
            origin: Origin::Env { var: overrides.join(", ") },
            message: e.message().to_owned(),
        })
    })?;
    Ok((Loaded { settings, source }, problems))
}

fn file_error(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let (line, column) = e.span().map_or((1, 1), |s| line_col(text, s.start));
    Problem {
        key: String::new(),
        origin: Origin::File { path: path.to_owned(), line, column },
        message: e.message().trim_end().to_owned(),
    }
}

pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.len(), |i| before.len() - i - 1) + 1;
    (line, column)
}

/// Records the line of every key in the file, using toml_edit's spans.
fn index_file(path: &Path, text: &str, source: &mut SourceMap) {
    let Ok(doc) = toml_edit::Document::parse(text) else { return };
    let mut add = |key: String, offset: usize| {
        let (line, column) = line_col(text, offset);
        source.keys.insert(key, Origin::File { path: path.to_owned(), line, column });
    };
    walk_table(doc.as_table(), "", &mut add);
}

pub(crate) fn walk_table(table: &toml_edit::Table, prefix: &str, add: &mut impl FnMut(String, usize)) {
    for (k, item) in table.iter() {
        let key = if prefix.is_empty() { k.to_owned() } else { format!("{prefix}.{k}") };
        let offset = table.key(k).and_then(toml_edit::Key::span).or_else(|| item.span()).map(|s| s.start);
        if let Some(o) = offset {
            add(key.clone(), o);
        }
        walk_item(item, &key, add);
    }
}

fn walk_item(item: &toml_edit::Item, key: &str, add: &mut impl FnMut(String, usize)) {
    match item {
        toml_edit::Item::Table(t) => {
            if let Some(s) = t.span() {
                add(key.to_owned(), s.start);
            }
            walk_table(t, key, add);
        }
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let k = format!("{key}[{i}]");
                if let Some(s) = t.span() {
                    add(k.clone(), s.start);
                }
                walk_table(t, &k, add);
            }
        }
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => {
            for (k, v) in t.iter() {
                let kk = format!("{key}.{k}");
                if let Some(s) = v.span() {
                    add(kk.clone(), s.start);
                }
            }
        }
        _ => {}
    }
}

/// Applies `GUICHET_A__B=value` overrides; returns the names of the variables applied.
fn apply_env<I>(table: &mut Table, env: I, source: &mut SourceMap) -> Result<Vec<String>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> =
        env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && !ENV_NOT_SETTINGS.contains(&k.as_str())).collect();
    vars.sort();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let value = parse_env_value(&raw);
        let key = set_path(table, &path, value).map_err(|message| {
            ConfigError::single(Problem { key: path.join("."), origin: Origin::Env { var: var.clone() }, message })
        })?;
        source.keys.insert(key, Origin::Env { var: var.clone() });
        applied.push(var);
    }
    Ok(applied)
}

/// Values are read as TOML when they parse as such (numbers, booleans, arrays), else as text.
fn parse_env_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    toml::from_str::<Table>(&doc).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<String, String> {
    let Some((first, rest)) = path.split_first() else {
        return Err("empty variable name".to_owned());
    };
    if rest.is_empty() {
        table.insert(first.clone(), value);
        return Ok(first.clone());
    }
    let entry = table.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
    let sub = set_in_value(entry, rest, value)?;
    Ok(format!("{first}{sub}"))
}

fn set_in_value(target: &mut Value, path: &[String], value: Value) -> Result<String, String> {
    let Some((first, rest)) = path.split_first() else {
        *target = value;
        return Ok(String::new());
    };
    match target {
        Value::Array(items) => {
            let i: usize = first.parse().map_err(|_| format!("`{first}` is not an index into a list"))?;
            let len = items.len();
            let slot = items.get_mut(i).ok_or_else(|| format!("index {i} is past the end of a list of {len}"))?;
            Ok(format!("[{i}]{}", set_in_value(slot, rest, value)?))
        }
        Value::Table(t) => {
            if rest.is_empty() {
                t.insert(first.clone(), value);
                return Ok(format!(".{first}"));
            }
            let entry = t.entry(first.clone()).or_insert_with(|| Value::Table(Table::new()));
            Ok(format!(".{first}{}", set_in_value(entry, rest, value)?))
        }
        _ => Err(format!("`{first}` goes inside a value that is neither a table nor a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("a\nbc\n", 3), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }

    #[test]
    fn env_values_parse_as_toml_or_text() {
        assert_eq!(parse_env_value("42"), Value::Integer(42));
        assert_eq!(parse_env_value("127.0.0.1:80"), Value::String("127.0.0.1:80".into()));
        assert_eq!(parse_env_value("[\"a\"]"), Value::Array(vec![Value::String("a".into())]));
    }
}
