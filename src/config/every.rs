//! Every problem of a configuration file, not only the first. The deserializer stops at the
//! first unknown key or wrong type; this module blanks the offending entry out of the text
//! (spaces, newlines kept, so every later line and column stays true) and reads again, until
//! the file reads or nothing more can be blanked.

use std::ops::Range;

use toml_edit::{Item, Table, Value};

/// Most problems one file reports before the rest is left for the next run.
pub const MAX_PROBLEMS: usize = 50;

/// `text` with the entry that contains byte `offset` blanked out, and the entry's key; `None`
/// when no entry contains it.
pub fn blank_entry_at(text: &str, offset: usize) -> Option<(String, String)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let (key, range) = entry_at(doc.as_table(), offset)?;
    let mut bytes = text.as_bytes().to_vec();
    for b in bytes.get_mut(range)? {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    // Whole UTF-8 sequences were replaced by spaces: still valid UTF-8.
    String::from_utf8(bytes).ok().map(|t| (t, key))
}

/// The innermost entry of `table` whose key or value spans `offset`, with its whole range.
fn entry_at(table: &Table, offset: usize) -> Option<(String, Range<usize>)> {
    for (k, item) in table.iter() {
        let key_span = table.key(k).and_then(toml_edit::Key::span);
        let Some(whole) = union(key_span, span_of(item)) else { continue };
        if !whole.contains(&offset) {
            continue;
        }
        return Some(inner_entry(item, offset).unwrap_or((k.to_owned(), whole)));
    }
    None
}

fn inner_entry(item: &Item, offset: usize) -> Option<(String, Range<usize>)> {
    match item {
        Item::Table(t) => entry_at(t, offset),
        Item::ArrayOfTables(a) => a.iter().find_map(|t| entry_at(t, offset)),
        _ => None,
    }
}

/// Everything an item covers: a table's header and every entry under it.
fn span_of(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Table(t) => table_span(t),
        Item::ArrayOfTables(a) => a.iter().map(table_span).fold(None, union),
        Item::Value(v) => value_span(v),
        Item::None => None,
    }
}

fn table_span(t: &Table) -> Option<Range<usize>> {
    t.iter().map(|(k, item)| union(t.key(k).and_then(toml_edit::Key::span), span_of(item))).fold(t.span(), union)
}

fn value_span(v: &Value) -> Option<Range<usize>> {
    v.span()
}

fn union(a: Option<Range<usize>>, b: Option<Range<usize>>) -> Option<Range<usize>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.start.min(b.start)..a.end.max(b.end)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blanks_a_key_value_or_a_whole_table_keeping_lines() {
        let text = "version = 1\nbogus = 2\n[server]\nlisten = \"x\"\n";
        let at = text.find("bogus").unwrap();
        let (t, key) = blank_entry_at(text, at).unwrap();
        assert_eq!(key, "bogus");
        assert_eq!(t.len(), text.len());
        assert_eq!(t.lines().nth(1).unwrap().trim(), "");
        assert_eq!(t.lines().nth(3).unwrap(), "listen = \"x\"");
        let at = text.find("\"x\"").unwrap();
        let (t, key) = blank_entry_at(text, at).unwrap();
        assert_eq!(key, "listen");
        assert!(t.contains("[server]") && !t.contains("listen"));
        let text = "[nope]\na = 1\nb = 2\n[server]\n";
        let (t, key) = blank_entry_at(text, 1).unwrap();
        assert_eq!(key, "nope");
        assert_eq!(t.trim(), "[server]");
    }
}
