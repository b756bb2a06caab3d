//! Finds the values that declared JSON paths reach, as byte ranges of the document as sent, so
//! that the protect phase can replace them and copy every other byte unchanged: no tree is
//! built, members keep their order and spacing, and nothing is re-serialised.
//!
//! The document is text (valid UTF-8, checked by the caller); the scanner checks the JSON grammar
//! (RFC 8259, as `serde_json` reads it: the property tests and the fuzz target compare the
//! two) in the same pass that finds the values, so a body is read once. Paths follow
//! `fields::find_targets`: a member name, `*` for every element of an array, or an element's
//! index. Members whose name is written with escapes (`"\u006eom"`) are matched by their
//! decoded name, and a member sent twice is reached twice, so neither spelling nor repetition
//! lets a declared value through in clear.
//!
//! The walk is a loop over an explicit stack, never a recursion, and it enforces the limits on
//! what the gateway parses ([`MAX_DEPTH`], [`MAX_ITEMS`]; docs/proxy.md): however a client
//! nests its document, no thread's stack grows with it.

use std::borrow::Cow;
use std::ops::Range;

/// The deepest nesting of objects and arrays read (PHP's `max_input_nesting_level` is 64 too).
pub const MAX_DEPTH: usize = 64;
/// The most object members and array elements, counted together, in one document.
pub const MAX_ITEMS: usize = 10_000;

/// A value a path reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Index of the path (in the slice given to [`find`]) that reached it.
    pub path: usize,
    /// The value's bytes, quotes included for a string.
    pub span: Range<usize>,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string with no escape: its text is the bytes between the quotes.
    PlainString,
    /// A string with escapes, to be decoded.
    EscapedString,
    /// A number, `true` or `false`: its text is the bytes as sent.
    Literal,
}

/// Why a document does not have the declared shape (messages as in `fields`).
pub type ShapeError = &'static str;

/// Why a document cannot be scanned: the wrong shape, or over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanError {
    Shape(ShapeError),
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ITEMS`] members and elements.
    TooManyItems,
    /// Not JSON.
    Malformed,
}

impl ScanError {
    /// The reason, for the client's problem and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Shape(why) => why,
            Self::TooDeep => "the JSON body is nested more than 64 levels deep",
            Self::TooManyItems => "the JSON body has more than 10000 members and elements",
            Self::Malformed => "the JSON body is malformed",
        }
    }
}

impl From<ShapeError> for ScanError {
    fn from(why: ShapeError) -> Self {
        Self::Shape(why)
    }
}

const PLAIN_WHERE_CONTAINER: ShapeError = "a plain value where the declared path expects an object or array";
const ARRAY_WHERE_MEMBER: ShapeError = "an array where the declared path names a member";
const CONTAINER_WHERE_PLAIN: ShapeError = "an object or array where a personal value is expected";
/// A `*` segment declares an array: an object there is refused, whatever its keys, because
/// decoders read objects as lists (PHP's `json_decode(.., true)` turns `{"0":..,"1":..}` into
/// a list; Rails' nested attributes take the values of a hash without `id`; PHP code iterates
/// either with `foreach`), and its members would escape the declared path.
pub const OBJECT_WHERE_ARRAY: ShapeError = "an object where the declared path expects an array";
/// Same message as for form and query data (`fields`).
pub const OTHER_SPELLING: ShapeError = "a personal field was sent under another spelling of its name";

/// Every value each path reaches in the JSON document `doc`, in document order;
/// [`ScanError::Malformed`] when it is not JSON.
pub fn find(doc: &str, paths: &[&[String]]) -> Result<Vec<Found>, ScanError> {
    find_in(doc, &Paths::new(paths))
}

/// Declared paths compiled for [`find_in`]: their segments, and the index a member looks its
/// name up in. Built once per activity (`policy::Processing::json_paths`), not per request.
#[derive(Debug, Clone)]
pub struct Paths {
    segments: Vec<Vec<String>>,
    index: Index,
}

impl Paths {
    pub fn new(paths: &[&[String]]) -> Self {
        Self { segments: paths.iter().map(|p| p.to_vec()).collect(), index: Index::new(paths) }
    }

    /// How many paths: [`Found::path`] indexes them.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// [`find`] with paths compiled beforehand.
pub fn find_in(text: &str, paths: &Paths) -> Result<Vec<Found>, ScanError> {
    let index = &paths.index;
    let paths = paths.segments.as_slice();
    let doc = text.as_bytes();
    let mut s =
        // Room for what an ordinary form needs, so that none of them grows while scanning.
        Scanner {
            text,
            doc,
            paths,
            index,
            pos: 0,
            found: Vec::with_capacity(paths.len()),
            cursors: Vec::with_capacity(2 * paths.len()),
            open: Vec::with_capacity(8),
            items: 0,
        };
    s.cursors.extend((0..paths.len()).map(|path| Cursor { path, depth: 0 }));
    s.value(0)?;
    while let Some(top) = s.open.last().cloned() {
        // The cursors of the container's previous member or element are done with.
        s.cursors.truncate(top.cursors.end);
        if !s.next_item(top.close, !top.started)? {
            s.open.pop();
            continue;
        }
        if let Some(open) = s.open.last_mut() {
            open.started = true;
        }
        s.items += 1;
        if s.items > MAX_ITEMS {
            return Err(ScanError::TooManyItems);
        }
        let inner = s.cursors.len();
        if top.close == b'}' {
            s.member(top.cursors)?;
        } else {
            s.element(top.cursors)?;
        }
        s.value(inner)?;
    }
    s.skip_ws();
    if s.pos != doc.len() {
        return Err(ScanError::Malformed);
    }
    Ok(s.found)
}

/// The declared paths' segments by depth, each under its folded name
/// (`canonical::names::fold`): a member finds the paths it matches, or spells otherwise, with
/// one search instead of a comparison with every path going through its object.
#[derive(Debug, Clone)]
struct Index {
    levels: Vec<Level>,
}

#[derive(Debug, Clone, Default)]
struct Level {
    /// (folded segment, path), sorted by length, then name, then path: the paths sharing a
    /// folded name are side by side, in path order.
    names: Vec<(Box<str>, usize)>,
    /// The paths whose segment at this depth is `*`, in order.
    stars: Vec<usize>,
    /// Bit `n` set when a folded name here is ASCII and `n` bytes long (`n` < 64), and
    /// `long` when one is longer: an ASCII member name of another length matches none, and
    /// costs no lookup (the usual case for the members no field declares).
    ascii_lengths: u64,
    long: bool,
}

impl Index {
    fn new(paths: &[&[String]]) -> Self {
        let mut levels: Vec<Level> = Vec::new();
        for (path, segments) in paths.iter().enumerate() {
            for (depth, seg) in segments.iter().enumerate() {
                if levels.len() <= depth {
                    levels.resize_with(depth + 1, Level::default);
                }
                let Some(level) = levels.get_mut(depth) else { continue };
                if seg == "*" {
                    level.stars.push(path);
                } else {
                    let folded = crate::canonical::names::fold(seg);
                    if folded.is_ascii() {
                        match u32::try_from(folded.len()).ok().and_then(|n| 1u64.checked_shl(n)) {
                            Some(bit) => level.ascii_lengths |= bit,
                            None => level.long = true,
                        }
                    }
                    level.names.push((folded.into(), path));
                }
            }
        }
        for level in &mut levels {
            level.names.sort_unstable_by(|(a, pa), (b, pb)| by_length(a, b).then(pa.cmp(pb)));
        }
        Self { levels }
    }

    /// The paths whose segment at `depth` folds to `folded`, in path order.
    fn named(&self, depth: usize, folded: &str) -> impl Iterator<Item = usize> {
        let names = self.levels.get(depth).map_or(&[][..], |l| l.names.as_slice());
        let start = names.partition_point(|(n, _)| by_length(n, folded).is_lt());
        names.get(start..).unwrap_or_default().iter().take_while(move |(n, _)| **n == *folded).map(|&(_, p)| p)
    }

    /// False when no path's segment at `depth` can be the plain ASCII name of `len` bytes
    /// in any letter case.
    fn may_name_ascii(&self, depth: usize, len: usize) -> bool {
        let Some(level) = self.levels.get(depth) else { return false };
        match u32::try_from(len).ok().and_then(|n| 1u64.checked_shl(n)) {
            Some(bit) => level.ascii_lengths & bit != 0,
            None => level.long,
        }
    }

    fn stars(&self, depth: usize) -> &[usize] {
        self.levels.get(depth).map_or(&[][..], |l| l.stars.as_slice())
    }
}

/// Names ordered by length first: most comparisons of a search end on the lengths.
fn by_length(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// How far one path has matched on the way down to the current value.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    path: usize,
    depth: usize,
}

/// An object or array being read.
#[derive(Debug, Clone)]
struct Open {
    /// `}` or `]`.
    close: u8,
    /// The cursors that reached the container, in `Scanner::cursors`.
    cursors: Range<usize>,
    /// The index of the next element (arrays).
    index: usize,
    /// A member or element was read (a comma must come before the next).
    started: bool,
}

struct Scanner<'a, 'p> {
    /// The document, and the same as bytes (what the scan reads).
    text: &'a str,
    doc: &'a [u8],
    paths: &'p [Vec<String>],
    index: &'p Index,
    pos: usize,
    found: Vec<Found>,
    /// The cursors of every open container, then those of the value being read, as a stack:
    /// at most one cursor per path per level, so `MAX_DEPTH` × paths in all.
    cursors: Vec<Cursor>,
    open: Vec<Open>,
    items: usize,
}

impl Scanner<'_, '_> {
    fn peek(&self) -> u8 {
        self.doc.get(self.pos).copied().unwrap_or(0)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn cursor(&self, i: usize) -> Option<Cursor> {
        self.cursors.get(i).copied()
    }

    /// The segment a cursor is at, `None` when its path ends here.
    fn segment(&self, c: Cursor) -> Option<&String> {
        self.paths.get(c.path).and_then(|p| p.get(c.depth))
    }

    /// Reads the value at `pos` (after whitespace), whose cursors are those from `from` on:
    /// records it where a path ends on it, or opens it when it is an object or array.
    fn value(&mut self, from: usize) -> Result<(), ScanError> {
        self.skip_ws();
        let start = self.pos;
        let mine = self.cursors.get(from..).unwrap_or_default();
        let ended = mine.iter().find(|c| self.paths.get(c.path).is_some_and(|p| p.len() == c.depth)).copied();
        let going_on = mine.iter().any(|c| self.paths.get(c.path).is_some_and(|p| p.len() > c.depth));
        match self.peek() {
            open @ (b'{' | b'[') => {
                if ended.is_some() {
                    return Err(CONTAINER_WHERE_PLAIN.into());
                }
                if open == b'[' {
                    self.check_array(from)?;
                }
                if self.open.len() >= MAX_DEPTH {
                    return Err(ScanError::TooDeep);
                }
                self.pos += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.open.push(Open { close, cursors: from..self.cursors.len(), index: 0, started: false });
                Ok(())
            }
            b'"' => {
                let escaped = self.string()?;
                if going_on {
                    return Err(PLAIN_WHERE_CONTAINER.into());
                }
                let kind = if escaped { Kind::EscapedString } else { Kind::PlainString };
                self.record(ended, start, kind);
                Ok(())
            }
            b'n' => {
                // `null`: nothing to protect, and no path is broken by it.
                self.word(b"null")
            }
            first => {
                match first {
                    b't' => self.word(b"true")?,
                    b'f' => self.word(b"false")?,
                    b'-' | b'0'..=b'9' => self.number()?,
                    _ => return Err(ScanError::Malformed),
                }
                if going_on {
                    return Err(PLAIN_WHERE_CONTAINER.into());
                }
                self.record(ended, start, Kind::Literal);
                Ok(())
            }
        }
    }

    fn record(&mut self, ended: Option<Cursor>, start: usize, kind: Kind) {
        if let Some(c) = ended {
            self.found.push(Found { path: c.path, span: start..self.pos, kind });
        }
    }

    /// Reads a member's name and colon, pushing the cursors that go on into its value. The
    /// cursors of an object all have the same depth and are in path order: the member looks
    /// its folded name up once in the index, then checks which of the paths found reach this
    /// object. The first path (in order) that is a `*` or spells the name otherwise refuses
    /// the document, as comparing the member with each cursor in turn would.
    fn member(&mut self, outer: Range<usize>) -> Result<(), ScanError> {
        let key_start = self.pos;
        if self.peek() != b'"' {
            return Err(ScanError::Malformed);
        }
        let escaped = self.string()?;
        let doc = self.doc;
        let key_range = key_start + 1..self.pos.saturating_sub(1);
        let key = doc.get(key_range.clone()).unwrap_or_default();
        self.skip_ws();
        if self.peek() != b':' {
            return Err(ScanError::Malformed);
        }
        self.pos += 1;
        let here = self.cursors.get(outer.clone()).unwrap_or_default();
        let Some(depth) = here.first().map(|c| c.depth) else { return Ok(()) };
        let reaches = |path: usize| here.binary_search_by_key(&path, |c| c.path).is_ok();
        // PHP's `json_decode` and Rails read an object as a list (docs/cryptography.md).
        let mut refusal =
            self.index.stars(depth).iter().copied().find(|&p| reaches(p)).map(|p| (p, OBJECT_WHERE_ARRAY));
        if !escaped && key.is_ascii() && !self.index.may_name_ascii(depth, key.len()) {
            return refusal.map_or(Ok(()), |(_, e)| Err(e.into()));
        }
        let name = if escaped {
            decode_string(key).map(Cow::Owned)
        } else {
            // Between two quotes of the text: already known UTF-8.
            self.text.get(key_range).map(Cow::Borrowed)
        };
        let Some(name) = name else { return refusal.map_or(Ok(()), |(_, e)| Err(e.into())) };
        let folded = crate::canonical::names::fold(&name);
        let pushed = self.cursors.len();
        for path in self.index.named(depth, &folded) {
            let here = self.cursors.get(outer.clone()).unwrap_or_default();
            if here.binary_search_by_key(&path, |c| c.path).is_err() {
                continue;
            }
            let exact = self.paths.get(path).and_then(|p| p.get(depth)).is_some_and(|seg| *seg == *name);
            if exact {
                self.cursors.push(Cursor { path, depth: depth + 1 });
            } else if refusal.is_none_or(|(first, _)| path < first) {
                refusal = Some((path, OTHER_SPELLING));
            }
        }
        if let Some((_, e)) = refusal {
            self.cursors.truncate(pushed);
            return Err(e.into());
        }
        Ok(())
    }

    /// Pushes the cursors that go on into the next element of the array on top.
    fn element(&mut self, outer: Range<usize>) -> Result<(), ScanError> {
        let Some(top) = self.open.last_mut() else { return Ok(()) };
        let index = top.index;
        top.index += 1;
        for i in outer {
            let Some(c) = self.cursor(i) else { continue };
            let Some(seg) = self.segment(c) else { continue };
            if seg == "*" || seg.parse::<usize>() == Ok(index) {
                self.cursors.push(Cursor { path: c.path, depth: c.depth + 1 });
            }
        }
        Ok(())
    }

    /// An array where a path names a member does not have the declared shape.
    fn check_array(&self, from: usize) -> Result<(), ScanError> {
        for c in self.cursors.get(from..).unwrap_or_default() {
            if let Some(seg) = self.segment(*c)
                && seg != "*"
                && seg.parse::<usize>().is_err()
            {
                return Err(ARRAY_WHERE_MEMBER.into());
            }
        }
        Ok(())
    }

    /// Moves to the next member or element (after its comma); false (past `close`) at the
    /// end of the container. `first`: nothing was read in the container yet.
    fn next_item(&mut self, close: u8, first: bool) -> Result<bool, ScanError> {
        self.skip_ws();
        let next = self.peek();
        if next == close && self.pos < self.doc.len() {
            self.pos += 1;
            return Ok(false);
        }
        if first {
            return Ok(true);
        }
        if next != b',' {
            return Err(ScanError::Malformed);
        }
        self.pos += 1;
        self.skip_ws();
        Ok(true)
    }

    /// Moves past the string at `pos`; true when it holds an escape. Searches for the next
    /// quote, backslash or control character rather than matching byte by byte; every escape
    /// must be one of JSON's.
    fn string(&mut self) -> Result<bool, ScanError> {
        let mut at = self.pos + 1;
        let mut escaped = false;
        loop {
            let rest = self.doc.get(at..).unwrap_or_default();
            let off = string_stop(rest).ok_or(ScanError::Malformed)?;
            match rest.get(off) {
                Some(b'"') => {
                    self.pos = at + off + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    at += off + 1 + escape_len(rest.get(off + 1..).unwrap_or_default())?;
                }
                _ => return Err(ScanError::Malformed),
            }
        }
    }

    /// Moves past `word` (`true`, `false`, `null`), which must be there.
    fn word(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if !self.doc.get(self.pos..).unwrap_or_default().starts_with(word) {
            return Err(ScanError::Malformed);
        }
        self.pos += word.len();
        Ok(())
    }

    /// Moves past a number: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == b'-' {
            self.pos += 1;
        }
        match self.peek() {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return Err(ScanError::Malformed),
        }
        if self.peek() == b'.' {
            self.pos += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.pos += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_ascii_digit() {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), ScanError> {
        let start = self.pos;
        self.digits();
        if self.pos == start { Err(ScanError::Malformed) } else { Ok(()) }
    }
}

/// The first quote, backslash or control character in `text`: eight bytes at a time (strings
/// are most of a body's bytes), the last few byte by byte.
fn string_stop(text: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `x` below `n` (n <= 128). A borrow can flag bytes above a
    // flagged one, never below: the lowest flag is exact.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS;
    let equal = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut start = 0;
    for chunk in text.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else { break };
        let x = u64::from_le_bytes(word);
        let stops = below(x, 0x20) | equal(x, b'"') | equal(x, b'\\');
        if stops != 0 {
            return Some(start + (stops.trailing_zeros() / 8) as usize);
        }
        start += 8;
    }
    let off = text.get(start..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(start + off)
}

/// The length of the escape after a backslash (`n`, `u00e9`, …); refused unless JSON's.
fn escape_len(after: &[u8]) -> Result<usize, ScanError> {
    match after.first() {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(1),
        Some(b'u') if after.get(1..5).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => Ok(5),
        _ => Err(ScanError::Malformed),
    }
}

/// True when `name` is `declared` in another letter case or compatibility form: JSON binders
/// that ignore case (ASP.NET's default, Go's, with Unicode folding) would fill the declared
/// field with it, in clear (`canonical::names::fold`).
pub fn other_case(name: &str, declared: &str) -> bool {
    if name.is_ascii() && declared.is_ascii() {
        return name != declared && name.eq_ignore_ascii_case(declared);
    }
    crate::canonical::names::same_member_otherwise_spelled(name, declared)
}

/// The text to protect of a value found in `doc` (the document as text, checked once): a
/// string's text, or a literal as sent. Values start and end at ASCII bytes, so taking them
/// from the text checks nothing again.
pub fn clear_text<'d>(doc: &'d str, f: &Found) -> Option<Cow<'d, str>> {
    let raw = doc.get(f.span.clone())?;
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    Some(match f.kind {
        Kind::PlainString => Cow::Borrowed(inner),
        Kind::EscapedString => Cow::Owned(decode_string(inner.as_bytes())?),
        Kind::Literal => Cow::Borrowed(raw),
    })
}

/// `doc` with each found value replaced by the JSON string of its token (`tokens[i]` for
/// `found[i]`), every other byte copied as sent.
pub fn splice(doc: &[u8], found: &[Found], tokens: &[String]) -> Vec<u8> {
    let mut out = Splice::new(doc, tokens.iter().map(|t| t.len() + 2).sum());
    for (f, token) in found.iter().zip(tokens) {
        write_string(out.replace(f), token);
    }
    out.finish()
}

/// A document being rewritten: the bytes between the values replaced are copied as sent, and
/// each replacement is written by the caller straight into the output (a token is sealed
/// there, not built apart and copied).
pub struct Splice<'d> {
    doc: &'d [u8],
    out: Vec<u8>,
    copied: usize,
}

impl<'d> Splice<'d> {
    /// `room`: the bytes the replacements are expected to add.
    pub fn new(doc: &'d [u8], room: usize) -> Self {
        Self { doc, out: Vec::with_capacity(doc.len() + room), copied: 0 }
    }

    /// Copies the document up to `f`'s value (found values come in document order) and
    /// skips the value: the output returned is where its replacement, a JSON value, goes.
    pub fn replace(&mut self, f: &Found) -> &mut Vec<u8> {
        self.out.extend_from_slice(self.doc.get(self.copied..f.span.start).unwrap_or_default());
        self.copied = self.copied.max(f.span.end);
        &mut self.out
    }

    /// The rewritten document: the rest copied.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(self.doc.get(self.copied..).unwrap_or_default());
        self.out
    }
}

/// Writes `text` as a JSON string.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text.as_bytes()) {
        // A token's characters (base64url, dots) need no escape in a JSON string.
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// True when every byte is a token's (base64url or a dot): such text goes between quotes as
/// it is. Without an early exit, so that the compiler can check many bytes at once.
fn needs_no_escape(text: &[u8]) -> bool {
    text.iter().fold(true, |ok, &b| ok & (b.is_ascii_alphanumeric() | (b == b'.') | (b == b'_') | (b == b'-')))
}

/// The text of a string with escapes, given the bytes between its quotes.
pub fn decode_string(raw: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::model::pointer_segments;

    #[test]
    fn a_declared_member_in_another_letter_case_is_refused() {
        assert_eq!(texts(r#"{"NOM":"Dupont"}"#, &["/nom"]), Err(OTHER_SPELLING));
        assert_eq!(texts(r#"{"a":{"Nom":"Dupont"}}"#, &["/a/nom"]), Err(OTHER_SPELLING));
        assert_eq!(texts(r#"{"\u004eom":"Dupont"}"#, &["/nom"]), Err(OTHER_SPELLING), "escaped");
        assert_eq!(texts(r#"{"PRÉNOM":"Angela"}"#, &["/prénom"]), Err(OTHER_SPELLING), "non-ASCII");
        assert_eq!(
            texts(r#"{"x":{"NOM":1},"nom":"D"}"#, &["/nom"]).unwrap(),
            [(0, "\"D\"".to_owned())],
            "other levels are free"
        );
        assert!(!other_case("nom", "nom") && !other_case("nomme", "nom"));
        assert_eq!(texts(r#"{"ſsn":"x"}"#, &["/ssn"]), Err(OTHER_SPELLING), "Go folds the long s");
    }

    #[test]
    fn the_index_refuses_on_the_first_path_in_order_as_a_comparison_with_each_would() {
        // The first path (in declaration order) that a member breaks gives the refusal.
        assert_eq!(texts(r#"{"nom":1}"#, &["/Nom", "/nom"]), Err(OTHER_SPELLING));
        assert_eq!(texts(r#"{"nom":1}"#, &["/nom", "/Nom"]), Err(OTHER_SPELLING));
        assert_eq!(texts(r#"{"nom":1}"#, &["/*", "/NOM"]), Err(OBJECT_WHERE_ARRAY));
        assert_eq!(texts(r#"{"nom":1}"#, &["/NOM", "/*"]), Err(OTHER_SPELLING));
        assert_eq!(texts(r#"{"x":1}"#, &["/nom", "/*"]), Err(OBJECT_WHERE_ARRAY), "a star refuses any member");
        // Paths sharing a name at one depth, reached through different objects.
        assert_eq!(
            texts(r#"{"a":{"nom":"A"},"b":{"nom":"B","NOM":"C"}}"#, &["/a/nom", "/b/x"]).unwrap(),
            [(0, r#""A""#.to_owned())],
            "only the paths that reach an object count there"
        );
        assert_eq!(texts(r#"{"a":{"nom":"A"},"b":{"NOM":"B"}}"#, &["/a/nom", "/b/nom"]), Err(OTHER_SPELLING));
        // Names longer than the length mask, and non-ASCII names, are still found and refused.
        let long = "n".repeat(70);
        let pointer = format!("/{long}");
        let doc = format!(r#"{{"{long}":"v","{}":"w"}}"#, long.to_uppercase());
        assert_eq!(texts(&doc, &[pointer.as_str()]), Err(OTHER_SPELLING));
        assert_eq!(texts(&format!(r#"{{"{long}":"v"}}"#), &[pointer.as_str()]).unwrap().len(), 1);
        assert_eq!(texts(r#"{"prénom":"v"}"#, &["/prénom"]).unwrap().len(), 1);
        assert_eq!(texts(r#"{"ssn":"v"}"#, &["/ſsn"]), Err(OTHER_SPELLING), "an ASCII member folding to it");
        // Members of a length no declared name has pass untouched.
        assert_eq!(texts(r#"{"champ_ordinaire":"x","nom":"D"}"#, &["/nom"]).unwrap(), [(0, r#""D""#.to_owned())]);
    }

    #[test]
    fn an_object_where_the_path_declares_an_array_is_refused() {
        let kids = &["/kids/*/nom"];
        assert_eq!(texts(r#"{"kids": {"0": {"nom": "A"}, "1": {"nom": "B"}}}"#, kids), Err(OBJECT_WHERE_ARRAY));
        assert_eq!(texts(r#"{"kids": {"a": {"nom": "A"}}}"#, kids), Err(OBJECT_WHERE_ARRAY));
        assert_eq!(texts(r#"{"kids": {}}"#, kids), Ok(Vec::new()), "an empty object holds nothing");
        assert_eq!(texts(r#"{"kids": {"0": {"nom": "A"}}}"#, &["/kids/0/nom"]).unwrap().len(), 1, "an index is a name");
    }

    fn texts(doc: &str, pointers: &[&str]) -> Result<Vec<(usize, String)>, ShapeError> {
        let found = scan(doc, pointers).map_err(ScanError::reason)?;
        Ok(found.into_iter().map(|f| (f.path, doc[f.span].to_owned())).collect())
    }

    fn scan(doc: &str, pointers: &[&str]) -> Result<Vec<Found>, ScanError> {
        let segs: Vec<Vec<String>> = pointers.iter().map(|p| pointer_segments(p).unwrap()).collect();
        let paths: Vec<&[String]> = segs.iter().map(Vec::as_slice).collect();
        find(doc, &paths)
    }

    #[test]
    fn a_string_ends_at_the_first_quote_backslash_or_control_character_wherever_it_is() {
        for len in 0..40 {
            for stop in [b'"', b'\\', 0x00, 0x1f] {
                let mut text = "aé€z0123".repeat(8).into_bytes();
                text.truncate(len);
                let expected = text.len();
                text.push(stop);
                text.extend_from_slice(b"tail\"");
                assert_eq!(string_stop(&text), Some(expected), "{len} {stop}");
            }
        }
        assert_eq!(string_stop(b"no end here, even after 16 bytes"), None);
        assert_eq!(string_stop(b" !#[]~\x7f"), None, "the bytes around the stops");
        let others: Vec<u8> = (0x20..=0xff).filter(|b| *b != b'"' && *b != b'\\').collect();
        assert_eq!(string_stop(&others), None, "no other byte stops a string");
        for at in 0..others.len() {
            let mut text = others.clone();
            text.insert(at, b'"');
            assert_eq!(string_stop(&text), Some(at));
        }
    }

    #[test]
    fn what_is_not_json_is_refused_in_the_same_pass() {
        for doc in [
            "",
            "   ",
            "[",
            "]",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "[,1]",
            "[1,,2]",
            "[1 2]",
            "{\"a\" 1}",
            "{\"a\":}",
            "{\"a\":1 \"b\":2}",
            "{1:2}",
            "{\"a\"}",
            "tru",
            "nul",
            "nulll",
            "True",
            "01",
            "1.",
            "1e",
            "1e+",
            "-",
            "+1",
            ".5",
            "\"\u{1}\"",
            "\"\\q\"",
            "\"\\u12\"",
            "\"abc",
            "{} x",
            "[]]",
            "\u{feff}[]",
            "[\"a\"\u{0}]",
            "NaN",
        ] {
            assert_eq!(scan(doc, &[]), Err(ScanError::Malformed), "{doc:?}");
            assert!(scan(doc, &["/nom"]).is_err(), "{doc:?}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(doc).is_err(), "serde_json agrees: {doc:?}");
        }
        for doc in [
            "[]",
            "{}",
            " [ 1 , 2 ] ",
            "-0.5e+3",
            "0",
            "1E9",
            "\"\\u00e9\\n\\/\"",
            "{\"a\":[true,false,null]}",
            "{\"nom\" : \"Dupont\" }",
            "\n\t{\"x\":{}}\r\n",
        ] {
            assert!(scan(doc, &[]).is_ok(), "{doc:?}");
        }
    }

    #[test]
    fn members_nested_members_and_array_elements_are_found_as_sent() {
        let doc =
            r#"{ "nom" : "Dupont", "kids": [ {"nom": "A"}, {"nom":"B\"x"}, {} ], "n": 42, "b": true, "z": null }"#;
        assert_eq!(
            texts(doc, &["/nom", "/kids/*/nom", "/n", "/b", "/z", "/absent/x"]).unwrap(),
            [
                (0, r#""Dupont""#.to_owned()),
                (1, r#""A""#.to_owned()),
                (1, r#""B\"x""#.to_owned()),
                (2, "42".to_owned()),
                (3, "true".to_owned())
            ]
        );
        assert_eq!(texts(doc, &["/kids/1/nom"]).unwrap(), [(0, r#""B\"x""#.to_owned())]);
        assert!(texts(doc, &["/kids/9/nom"]).unwrap().is_empty());
    }

    #[test]
    fn escaped_member_names_and_repeated_members_are_reached() {
        let doc = r#"{"\u006eom": "A", "nom": "B", "a/b": {"c": 1.5e3}}"#;
        assert_eq!(
            texts(doc, &["/nom", "/a~1b/c"]).unwrap(),
            [(0, r#""A""#.to_owned()), (0, r#""B""#.to_owned()), (1, "1.5e3".to_owned())]
        );
    }

    #[test]
    fn the_wrong_shape_is_refused_as_the_tree_walk_refuses_it() {
        assert_eq!(texts(r#"{"nom": {"x": 1}}"#, &["/nom"]), Err(CONTAINER_WHERE_PLAIN));
        assert_eq!(texts(r#"{"nom": [1]}"#, &["/nom"]), Err(CONTAINER_WHERE_PLAIN));
        assert_eq!(texts(r#"{"child": "A"}"#, &["/child/nom"]), Err(PLAIN_WHERE_CONTAINER));
        assert_eq!(texts(r#"{"kids": [1]}"#, &["/kids/nom"]), Err(ARRAY_WHERE_MEMBER));
        assert_eq!(texts(r#"{"kids": null}"#, &["/kids/*/nom"]), Ok(Vec::new()));
        assert_eq!(texts(r#"{"kids": [null, "x"]}"#, &["/kids/*/nom"]), Err(PLAIN_WHERE_CONTAINER));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_however_deep() {
        let arrays = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert_eq!(scan(&arrays(MAX_DEPTH), &["/0/1"]), Ok(Vec::new()));
        assert_eq!(scan(&objects(MAX_DEPTH), &["/nom"]), Ok(Vec::new()));
        for n in [MAX_DEPTH + 1, 10_000, 1_000_000] {
            assert_eq!(scan(&arrays(n), &["/1"]), Err(ScanError::TooDeep), "{n}");
            assert_eq!(scan(&objects(n), &["/a/b"]), Err(ScanError::TooDeep), "{n}");
        }
        // With no path at all, the limit holds just the same.
        assert_eq!(scan(&arrays(MAX_DEPTH + 1), &[]), Err(ScanError::TooDeep));
        let path = format!("/{}", vec!["a"; MAX_DEPTH].join("/"));
        assert_eq!(scan(&objects(MAX_DEPTH), &[&path]).unwrap().len(), 1, "the deepest value is reached");
    }

    #[test]
    fn more_items_than_the_limit_are_refused() {
        let items = |n: usize| format!("{{\"a\":[{}]}}", vec!["0"; n].join(","));
        assert!(scan(&items(MAX_ITEMS - 1), &["/a/*"]).is_ok(), "the member and its elements: at the limit");
        assert_eq!(scan(&items(MAX_ITEMS), &["/a/*"]), Err(ScanError::TooManyItems));
        let members = format!("{{{}}}", (0..=MAX_ITEMS).map(|i| format!("\"m{i}\":1")).collect::<Vec<_>>().join(","));
        assert_eq!(scan(&members, &["/nom"]), Err(ScanError::TooManyItems));
        assert_eq!(ScanError::TooDeep.reason(), format!("the JSON body is nested more than {MAX_DEPTH} levels deep"));
        assert_eq!(
            ScanError::TooManyItems.reason(),
            format!("the JSON body has more than {MAX_ITEMS} members and elements")
        );
    }

    #[test]
    fn strings_with_escapes_are_decoded() {
        assert_eq!(decode_string(br"Dupont \u00e9\n").as_deref(), Some("Dupont é\n"));
        assert_eq!(decode_string(br"bad \x"), None);
    }
}
