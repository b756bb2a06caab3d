//! Putting a revealed value, or the placeholder, into a response so that it stays inert: the
//! response's syntax (JSON, HTML/XML, CSV, plain text) and charset decide how. The tokens the
//! scanner replaces are base64url, harmless anywhere; the values they stand for are whatever a
//! citizen typed, which the upstream never saw in clear and so could not sanitise.
//!
//! - **JSON**: a token can only sit inside a string; the value is string-escaped (quotes,
//!   backslash, control characters, U+2028/U+2029), non-ASCII as `\uXXXX` unless UTF-8.
//! - **HTML/XML**: `& < > " ' ` escaped everywhere; inside a tag (attribute values, quoted or
//!   not) also whitespace, `=` and `/`, so a value cannot end an unquoted attribute or add one.
//!   A value starting an attribute value with a `javascript:`, `vbscript:` or `data:` scheme
//!   is replaced by the placeholder (the attribute may be a link). Controls become U+FFFD;
//!   non-ASCII becomes numeric references unless the response declares UTF-8. A value inside
//!   `<script>`/`<style>` or CDATA stays inert but shows its escapes.
//! - **CSV** (RFC 4180): the writer follows fields and quotes across chunks. Inside a quoted
//!   field a value's `"` are doubled. An unquoted field is held back until it ends (at most
//!   [`CSV_HOLD_MAX`], then it is quoted on the fly) so that, when a value needs quotes
//!   (delimiter, quote, CR, LF), the whole field is quoted. Formula injection (OWASP): a value
//!   that starts a cell with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` and its field is
//!   quoted, so spreadsheets show it as text (`'+33 6…` shows as `'+33 6…` in a text editor;
//!   that is the accepted cost). The delimiter is the first of `,` `;` tab met outside quotes
//!   (until then any of them ends a field). After a quoted field's closing quote (malformed
//!   CSV) values are not inserted: the placeholder is.
//! - **Plain text**: controls other than tab, CR and LF become U+FFFD.
//!
//! Charsets: UTF-8 (the default when none is declared), US-ASCII, ISO-8859-1/windows-1252 (as
//! browsers read them, WHATWG) and ISO-8859-15. A character the charset cannot carry is a
//! numeric reference (HTML), `\u` escape (JSON) or `?` (CSV, plain text). Responses in another
//! charset are not scanned at all (their tokens stay tokens, which reveal nothing).

use http::HeaderMap;
use http::header;

/// How long an unquoted CSV field may grow while held back before it is quoted on the fly.
pub const CSV_HOLD_MAX: usize = 64 * 1024;

/// The syntax of a scanned response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    /// HTML, XHTML and XML.
    Html,
    Csv,
    Plain,
}

/// The charsets revealed values can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Utf8,
    Ascii,
    /// ISO-8859-1 and windows-1252 (browsers read the former as the latter).
    Windows1252,
    Latin9,
}

/// What a response body is, for the reveal phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextKind {
    pub syntax: Syntax,
    pub charset: Charset,
}

impl TextKind {
    pub const fn new(syntax: Syntax, charset: Charset) -> Self {
        Self { syntax, charset }
    }

    /// The text kinds the reveal phase scans; `None` for anything else (images, PDFs,
    /// compressed bodies, other charsets), which pass untouched.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        if headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity") {
            return None;
        }
        let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let mut parts = ct.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let syntax = match essence.as_str() {
            "application/json" => Syntax::Json,
            e if e.ends_with("+json") => Syntax::Json,
            "text/html" | "application/xhtml+xml" | "application/xml" | "text/xml" => Syntax::Html,
            e if e.ends_with("+xml") => Syntax::Html,
            "text/csv" | "application/csv" => Syntax::Csv,
            "text/plain" => Syntax::Plain,
            _ => return None,
        };
        let declared = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"').to_ascii_lowercase())
        });
        let charset = match declared.as_deref() {
            None | Some("utf-8" | "utf8") => Charset::Utf8,
            Some("us-ascii" | "ascii") => Charset::Ascii,
            Some("iso-8859-1" | "iso8859-1" | "latin1" | "l1" | "windows-1252" | "cp1252") => Charset::Windows1252,
            Some("iso-8859-15" | "iso8859-15" | "latin9" | "l9") => Charset::Latin9,
            Some(_) => return None,
        };
        // Without a declared charset an HTML page may still declare one in a <meta>: numeric
        // references are right in any of them.
        let charset = if declared.is_none() && syntax == Syntax::Html { Charset::Ascii } else { charset };
        Some(Self { syntax, charset })
    }
}

/// Writes one response: text as it comes, values escaped for where they land.
#[derive(Debug)]
pub struct Writer {
    kind: TextKind,
    html: Html,
    csv: Csv,
}

impl Writer {
    pub fn new(kind: TextKind) -> Self {
        Self { kind, html: Html::default(), csv: Csv::new(kind.charset) }
    }

    /// Upstream text between tokens.
    pub fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match self.kind.syntax {
            Syntax::Html => self.html.text(bytes, out),
            Syntax::Csv => self.csv.text(bytes, out),
            Syntax::Json | Syntax::Plain => out.extend_from_slice(bytes),
        }
    }

    /// A revealed value in place of its token.
    pub fn value(&mut self, value: &str, out: &mut Vec<u8>) {
        self.insert(value, false, out);
    }

    /// The placeholder in place of a token the viewer may not see.
    pub fn placeholder(&mut self, placeholder: &str, out: &mut Vec<u8>) {
        self.insert(placeholder, true, out);
    }

    fn insert(&mut self, value: &str, placeholder: bool, out: &mut Vec<u8>) {
        let charset = self.kind.charset;
        match self.kind.syntax {
            Syntax::Json => json_escape(value, charset, out),
            Syntax::Html => {
                let value = if !placeholder && self.html.starts_attribute() && dangerous_url(value) {
                    crate::proxy::reveal::PLACEHOLDER
                } else {
                    value
                };
                self.html.value(value, charset, out);
            }
            Syntax::Csv => self.csv.value(&encode(&plain(value), charset), starts_formula(value), out),
            Syntax::Plain => out.extend_from_slice(&encode(&plain(value), charset)),
        }
    }

    /// The body ended: what was held back goes out.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.kind.syntax == Syntax::Csv {
            self.csv.finish(out);
        }
    }
}

/// Appends `c` in `charset`; false when the charset has no byte for it.
fn push_char(c: char, charset: Charset, out: &mut Vec<u8>) -> bool {
    if c.is_ascii() {
        out.push(c as u8);
        return true;
    }
    match charset {
        Charset::Utf8 => {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            true
        }
        Charset::Ascii => false,
        Charset::Windows1252 => match single_byte_1252(c) {
            Some(b) => {
                out.push(b);
                true
            }
            None => false,
        },
        Charset::Latin9 => match single_byte_latin9(c) {
            Some(b) => {
                out.push(b);
                true
            }
            None => false,
        },
    }
}

/// windows-1252 bytes 0x80–0x9F (WHATWG), then Latin-1 for U+00A0–U+00FF.
const CP1252_HIGH: [(char, u8); 27] = [
    ('\u{20AC}', 0x80),
    ('\u{201A}', 0x82),
    ('\u{0192}', 0x83),
    ('\u{201E}', 0x84),
    ('\u{2026}', 0x85),
    ('\u{2020}', 0x86),
    ('\u{2021}', 0x87),
    ('\u{02C6}', 0x88),
    ('\u{2030}', 0x89),
    ('\u{0160}', 0x8A),
    ('\u{2039}', 0x8B),
    ('\u{0152}', 0x8C),
    ('\u{017D}', 0x8E),
    ('\u{2018}', 0x91),
    ('\u{2019}', 0x92),
    ('\u{201C}', 0x93),
    ('\u{201D}', 0x94),
    ('\u{2022}', 0x95),
    ('\u{2013}', 0x96),
    ('\u{2014}', 0x97),
    ('\u{02DC}', 0x98),
    ('\u{2122}', 0x99),
    ('\u{0161}', 0x9A),
    ('\u{203A}', 0x9B),
    ('\u{0153}', 0x9C),
    ('\u{017E}', 0x9E),
    ('\u{0178}', 0x9F),
];

fn single_byte_1252(c: char) -> Option<u8> {
    let n = u32::from(c);
    if (0xA0..=0xFF).contains(&n) {
        return u8::try_from(n).ok();
    }
    CP1252_HIGH.iter().find(|(ch, _)| *ch == c).map(|(_, b)| *b)
}

/// ISO-8859-15: Latin-1 but for eight positions (€, Š, š, Ž, ž, Œ, œ, Ÿ).
const LATIN9_CHANGED: [(char, u8); 8] = [
    ('\u{20AC}', 0xA4),
    ('\u{0160}', 0xA6),
    ('\u{0161}', 0xA8),
    ('\u{017D}', 0xB4),
    ('\u{017E}', 0xB8),
    ('\u{0152}', 0xBC),
    ('\u{0153}', 0xBD),
    ('\u{0178}', 0xBE),
];

fn single_byte_latin9(c: char) -> Option<u8> {
    if let Some((_, b)) = LATIN9_CHANGED.iter().find(|(ch, _)| *ch == c) {
        return Some(*b);
    }
    let n = u32::from(c);
    let b = u8::try_from(n).ok().filter(|b| *b >= 0xA0)?;
    // The Latin-1 characters whose bytes ISO-8859-15 gave to the eight above.
    (!LATIN9_CHANGED.iter().any(|(_, taken)| *taken == b)).then_some(b)
}

/// `text` in `charset`, `?` for what it cannot carry (CSV and plain text have no escape).
fn encode(text: &str, charset: Charset) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if !push_char(c, charset, &mut out) {
            out.push(b'?');
        }
    }
    out
}

/// A control character that has no business in displayed text (tab, LF and CR are kept).
fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Plain text and CSV: stray controls (terminal escapes, NUL…) become U+FFFD.
fn plain(value: &str) -> String {
    value.chars().map(|c| if is_stray_control(c) { '\u{FFFD}' } else { c }).collect()
}

fn json_escape(value: &str, charset: Charset, out: &mut Vec<u8>) {
    for c in value.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => push_u_escapes(c, out),
            c => {
                if !push_char(c, charset, out) {
                    push_u_escapes(c, out);
                }
            }
        }
    }
}

/// `\uXXXX`, as a surrogate pair beyond the BMP.
fn push_u_escapes(c: char, out: &mut Vec<u8>) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
    }
}

/// `javascript:`, `vbscript:` and `data:` URLs, as a browser reads them (leading spaces and
/// controls skipped, tabs and newlines removed, any case).
fn dangerous_url(value: &str) -> bool {
    let scheme: String = value
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .take_while(|c| *c != ':')
        .take(16)
        .collect::<String>()
        .to_ascii_lowercase();
    let has_colon = value.contains(':');
    has_colon && matches!(scheme.as_str(), "javascript" | "vbscript" | "data")
}

/// Where an HTML/XML text is, as far as escaping needs to know.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum HtmlAt {
    #[default]
    Data,
    /// Just after `<`.
    Lt,
    /// After `<!`, counting the dashes of a comment opening.
    Bang(u8),
    /// Inside a tag (its name or attributes), in a quoted value when `Some`.
    Tag(Option<u8>),
    /// Inside `<!-- … -->`, counting the dashes just seen.
    Comment(u8),
}

#[derive(Debug, Default)]
struct Html {
    at: HtmlAt,
    /// The last few text bytes since the last value (is a token the start of an attribute value?).
    tail: Vec<u8>,
}

impl Html {
    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(bytes);
        for &b in bytes {
            self.at = Self::step(self.at, b);
        }
        let keep = bytes.len().min(16);
        self.tail.extend_from_slice(bytes.get(bytes.len() - keep..).unwrap_or_default());
        let excess = self.tail.len().saturating_sub(16);
        self.tail.drain(..excess);
    }

    fn step(at: HtmlAt, b: u8) -> HtmlAt {
        match at {
            HtmlAt::Data if b == b'<' => HtmlAt::Lt,
            HtmlAt::Data => HtmlAt::Data,
            HtmlAt::Lt if b.is_ascii_alphabetic() || b == b'/' || b == b'?' => HtmlAt::Tag(None),
            HtmlAt::Lt if b == b'!' => HtmlAt::Bang(0),
            HtmlAt::Lt => Self::step(HtmlAt::Data, b),
            HtmlAt::Bang(0) if b == b'-' => HtmlAt::Bang(1),
            HtmlAt::Bang(_) if b == b'-' => HtmlAt::Comment(0),
            HtmlAt::Bang(_) => Self::step(HtmlAt::Tag(None), b),
            HtmlAt::Comment(n) if b == b'-' => HtmlAt::Comment(n.saturating_add(1)),
            HtmlAt::Comment(n) if b == b'>' && n >= 2 => HtmlAt::Data,
            HtmlAt::Comment(_) => HtmlAt::Comment(0),
            HtmlAt::Tag(None) if b == b'"' || b == b'\'' => HtmlAt::Tag(Some(b)),
            HtmlAt::Tag(None) if b == b'>' => HtmlAt::Data,
            HtmlAt::Tag(Some(q)) if b == q => HtmlAt::Tag(None),
            HtmlAt::Tag(q) => HtmlAt::Tag(q),
        }
    }

    fn in_tag(&self) -> bool {
        matches!(self.at, HtmlAt::Tag(_) | HtmlAt::Lt | HtmlAt::Bang(_))
    }

    /// Whether a token here begins an attribute value (`=`, spaces, an optional quote).
    fn starts_attribute(&self) -> bool {
        if !self.in_tag() {
            return false;
        }
        let mut t = self.tail.as_slice();
        if let Some((&last, rest)) = t.split_last()
            && (last == b'"' || last == b'\'')
        {
            t = rest;
        }
        let end = t.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        t.get(..end).and_then(|t| t.last()) == Some(&b'=')
    }

    fn value(&mut self, value: &str, charset: Charset, out: &mut Vec<u8>) {
        let in_tag = self.in_tag();
        for c in value.chars() {
            let c = if c.is_control() && !c.is_ascii_whitespace() { '\u{FFFD}' } else { c };
            match c {
                '&' => out.extend_from_slice(b"&amp;"),
                '<' => out.extend_from_slice(b"&lt;"),
                '>' => out.extend_from_slice(b"&gt;"),
                '"' => out.extend_from_slice(b"&quot;"),
                '\'' => out.extend_from_slice(b"&#39;"),
                '`' => out.extend_from_slice(b"&#96;"),
                c if in_tag && (c.is_ascii_whitespace() || c == '=' || c == '/') => {
                    out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes());
                }
                c => {
                    if !push_char(c, charset, out) {
                        out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes());
                    }
                }
            }
        }
        self.tail.clear();
    }
}

/// Where a CSV writer is within the current field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Unquoted: its output is held back until it ends (it may have to be quoted).
    Unquoted,
    /// Unquoted but too long to hold: re-emitted inside an added opening quote, its quotes
    /// doubled; the closing quote is added where it ends.
    Requoted,
    /// Inside a quoted field.
    Quoted,
    /// Inside a quoted field, just after a `"` (the closing one, or the first of `""`).
    QuoteSeen,
    /// After a quoted field's closing quote, before the next delimiter (malformed CSV when
    /// anything comes here).
    Closed,
}

#[derive(Debug)]
struct Csv {
    delimiter: Option<u8>,
    field: Field,
    /// Nothing yet in the current field's content: a value here starts the cell.
    empty: bool,
    held: Vec<u8>,
    /// The held field must be quoted when it ends.
    quote_held: bool,
    /// At the start of the text, how many bytes of a UTF-8 byte order mark were seen.
    bom: Option<usize>,
    /// The response's charset, for the placeholder (encoded when needed: most responses
    /// never need it, and every response of a revealing route builds a writer).
    charset: Charset,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// The characters that require a CSV field to be quoted (any likely delimiter counts).
fn needs_quotes(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, b'"' | b',' | b';' | b'\t' | b'\r' | b'\n'))
}

/// OWASP's formula triggers at the start of a cell.
fn starts_formula(value: &str) -> bool {
    value.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

fn push_doubled(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
}

impl Csv {
    fn new(charset: Charset) -> Self {
        Self {
            delimiter: None,
            field: Field::Unquoted,
            empty: true,
            held: Vec::new(),
            quote_held: false,
            bom: Some(0),
            charset,
        }
    }

    fn text(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            if let Some(n) = self.bom {
                // A byte order mark opens the text; it is not part of the first cell.
                if BOM.get(n) == Some(&b) {
                    out.push(b);
                    self.bom = (n + 1 < BOM.len()).then_some(n + 1);
                    continue;
                }
                self.bom = None;
                if n > 0 {
                    // Not a mark after all (and not UTF-8): those bytes were content.
                    self.empty = false;
                }
            }
            match self.field {
                Field::Quoted => {
                    out.push(b);
                    if b == b'"' {
                        self.field = Field::QuoteSeen;
                    } else {
                        self.empty = false;
                    }
                }
                Field::QuoteSeen if b == b'"' => {
                    out.push(b);
                    self.field = Field::Quoted;
                    self.empty = false;
                }
                Field::QuoteSeen => {
                    self.field = Field::Closed;
                    self.unquoted_byte(b, out);
                }
                Field::Unquoted | Field::Requoted | Field::Closed => self.unquoted_byte(b, out),
            }
        }
    }

    fn ends_field(&self, b: u8) -> bool {
        b == b'\n'
            || b == b'\r'
            || match self.delimiter {
                Some(d) => b == d,
                None => matches!(b, b',' | b';' | b'\t'),
            }
    }

    fn unquoted_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.ends_field(b) {
            if self.delimiter.is_none() && b != b'\n' && b != b'\r' {
                self.delimiter = Some(b);
            }
            self.end_field(out);
            out.push(b);
            return;
        }
        match self.field {
            Field::Unquoted if self.empty && b == b'"' => {
                out.append(&mut self.held);
                out.push(b);
                self.field = Field::Quoted;
            }
            Field::Unquoted => {
                self.held.push(b);
                self.empty = false;
                self.spill_if_long(out);
            }
            Field::Requoted => {
                push_doubled(&[b], out);
                self.empty = false;
            }
            Field::Closed | Field::Quoted | Field::QuoteSeen => out.push(b),
        }
    }

    fn spill_if_long(&mut self, out: &mut Vec<u8>) {
        if self.held.len() > CSV_HOLD_MAX {
            out.push(b'"');
            push_doubled(&self.held, out);
            self.held.clear();
            self.field = Field::Requoted;
        }
    }

    fn end_field(&mut self, out: &mut Vec<u8>) {
        match self.field {
            Field::Unquoted if self.quote_held => {
                out.push(b'"');
                push_doubled(&self.held, out);
                out.push(b'"');
                self.held.clear();
            }
            Field::Unquoted => out.append(&mut self.held),
            Field::Requoted => out.push(b'"'),
            Field::Quoted | Field::QuoteSeen | Field::Closed => {}
        }
        self.field = Field::Unquoted;
        self.empty = true;
        self.quote_held = false;
    }

    /// `value` (already in the response's charset); `formula` when it starts with a trigger.
    fn value(&mut self, value: &[u8], formula: bool, out: &mut Vec<u8>) {
        if self.field == Field::QuoteSeen {
            // A token right after a quote: that quote closed the field.
            self.field = Field::Closed;
        }
        let guard: &[u8] = if formula && self.empty { b"'" } else { b"" };
        match self.field {
            Field::Quoted | Field::Requoted => {
                out.extend_from_slice(guard);
                push_doubled(value, out);
            }
            Field::Unquoted => {
                self.held.extend_from_slice(guard);
                self.held.extend_from_slice(value);
                if !guard.is_empty() || needs_quotes(value) {
                    self.quote_held = true;
                }
                self.spill_if_long(out);
            }
            Field::Closed | Field::QuoteSeen => {
                // Outside any field a value could not be quoted: the placeholder (plain
                // ASCII-safe text, no delimiter, no quote) is written instead.
                out.extend_from_slice(&encode(crate::proxy::reveal::PLACEHOLDER, self.charset));
            }
        }
        self.empty = false;
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_field(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn kind(ct: &str) -> Option<TextKind> {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        TextKind::of(&h)
    }

    #[test]
    fn kinds_and_charsets_from_the_content_type() {
        assert_eq!(kind("text/csv"), Some(TextKind::new(Syntax::Csv, Charset::Utf8)));
        assert_eq!(kind("text/csv; charset=\"ISO-8859-1\""), Some(TextKind::new(Syntax::Csv, Charset::Windows1252)));
        assert_eq!(kind("text/html"), Some(TextKind::new(Syntax::Html, Charset::Ascii)));
        assert_eq!(kind("text/html;charset=UTF-8"), Some(TextKind::new(Syntax::Html, Charset::Utf8)));
        assert_eq!(kind("application/ld+json"), Some(TextKind::new(Syntax::Json, Charset::Utf8)));
        assert_eq!(kind("text/plain; charset=iso-8859-15"), Some(TextKind::new(Syntax::Plain, Charset::Latin9)));
        assert_eq!(kind("text/plain; charset=utf-16"), None, "not ASCII-compatible: not scanned");
        assert_eq!(kind("image/png"), None);
    }

    /// Writes `parts` (text, then value, alternately) in `kind`.
    fn write(kind: TextKind, parts: &[&str]) -> String {
        let mut w = Writer::new(kind);
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i % 2 == 0 {
                w.text(p.as_bytes(), &mut out);
            } else {
                w.value(p, &mut out);
            }
        }
        w.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    const CSV: TextKind = TextKind::new(Syntax::Csv, Charset::Utf8);
    const HTML: TextKind = TextKind::new(Syntax::Html, Charset::Utf8);

    /// Parses RFC 4180 CSV (delimiter `d`) into rows of fields, as a spreadsheet would.
    fn parse_csv(text: &str, d: char) -> Vec<Vec<String>> {
        let mut rows = vec![vec![String::new()]];
        let mut chars = text.chars().peekable();
        let mut quoted = false;
        let mut at_start = true;
        while let Some(c) = chars.next() {
            let field = rows.last_mut().unwrap().last_mut().unwrap();
            if quoted {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        field.push('"');
                    } else {
                        quoted = false;
                    }
                } else {
                    field.push(c);
                }
            } else if c == '"' && at_start {
                quoted = true;
                at_start = false;
            } else if c == d {
                rows.last_mut().unwrap().push(String::new());
                at_start = true;
            } else if c == '\n' {
                rows.push(vec![String::new()]);
                at_start = true;
            } else if c != '\r' {
                field.push(c);
                at_start = false;
            }
        }
        rows
    }

    #[test]
    fn csv_values_that_need_quotes_get_their_whole_field_quoted() {
        let v = "Dupont, \"Jo\"\nline 2";
        for (before, after, expected) in [
            // The whole unquoted field, a part of an unquoted field, a quoted field, a part of one.
            ("id,nom,x\n1,", ",x\n", "Dupont, \"Jo\"\nline 2"),
            ("id,nom,x\n1,M. ", " (fils),x\n", "M. Dupont, \"Jo\"\nline 2 (fils)"),
            ("id,nom,x\n1,\"", "\",x\n", "Dupont, \"Jo\"\nline 2"),
            ("id,nom,x\n1,\"M. ", " \"\"fils\"\"\",x\n", "M. Dupont, \"Jo\"\nline 2 \"fils\""),
        ] {
            let out = write(CSV, &[before, v, after]);
            let rows = parse_csv(&out, ',');
            assert_eq!(rows.len(), 3, "{out}");
            assert_eq!(rows[1], ["1", expected, "x"], "{out}");
        }
    }

    #[test]
    fn csv_formula_triggers_are_neutralised_only_at_the_start_of_a_cell() {
        for v in ["=HYPERLINK(\"http://evil\")", "+33 6 12", "-1+1", "@SUM(A1)", "\tx", "\r=1"] {
            for (before, after) in [("a;", ";b\n"), ("a;\"", "\";b\n")] {
                let out = write(CSV, &[before, v, after]);
                let rows = parse_csv(&out, ';');
                assert_eq!(rows[0][1], format!("'{v}"), "{out:?}");
                assert_eq!(rows[0].len(), 3, "{out:?}");
                assert!(out.contains("\"'"), "the guarded cell is quoted: {out:?}");
            }
        }
        // Inside a cell the value does not start it: left as it is.
        let rows = parse_csv(&write(CSV, &["a;M. ", "-dit-", ";b\n"]), ';');
        assert_eq!(rows[0][1], "M. -dit-");
        // A plain value in a plain field is not quoted (the document stays as it was).
        assert_eq!(write(CSV, &["a,", "Léa", ",b\n"]), "a,Léa,b\n");
    }

    #[test]
    fn csv_delimiter_is_the_first_one_seen() {
        // Semicolon-separated: a comma in a value needs quotes, the row keeps 3 fields.
        let out = write(CSV, &["nom;prenom;ville\n", "Dupont, Jean", ";Léa;Paris\n"]);
        let rows = parse_csv(&out, ';');
        assert_eq!(rows[1], ["Dupont, Jean", "Léa", "Paris"], "{out}");
        // A semicolon inside a field of a comma-separated file is content, not a boundary.
        let out = write(CSV, &["a,b\nx;", "v,w", ",z\n"]);
        let rows = parse_csv(&out, ',');
        assert_eq!(rows[1], ["x;v,w", "z"], "{out}");
    }

    #[test]
    fn a_long_unquoted_csv_field_is_quoted_on_the_fly() {
        let long = "y".repeat(CSV_HOLD_MAX + 10);
        let out = write(CSV, &["a,", &format!("{long}\""), " + \"1\",z\n"]);
        let rows = parse_csv(&out, ',');
        assert_eq!(rows[0], ["a", &format!("{long}\" + \"1\""), "z"]);
    }

    #[test]
    fn after_a_closing_quote_the_placeholder_is_written() {
        let out = write(CSV, &["\"a\"", "x,y", ",b\n"]);
        assert_eq!(out, "\"a\"[donnée protégée],b\n");
    }

    #[test]
    fn html_text_and_attributes() {
        let v = "x\" onmouseover=alert(1) <b>O'Neil & `co`</b>";
        let text = write(HTML, &["<p>", v, "</p>"]);
        assert_eq!(text, "<p>x&quot; onmouseover=alert(1) &lt;b&gt;O&#39;Neil &amp; &#96;co&#96;&lt;/b&gt;</p>");
        for (before, after) in [("<input value=\"", "\">"), ("<input value='", "'>"), ("<input value=", ">")] {
            let out = write(HTML, &[before, v, after]);
            let escaped = out.strip_prefix(before).unwrap().strip_suffix(after).unwrap();
            assert!(!escaped.contains([' ', '"', '\'', '<', '>', '=', '`', '/']), "{out}");
        }
        // A link to a script is not revealed at the start of an attribute; elsewhere it is text.
        let out = write(HTML, &["<a href=\"", " JaVa\tScript:alert(1)", "\">"]);
        assert_eq!(out, "<a href=\"[donnée&#32;protégée]\">");
        let out = write(HTML, &["<p>", "javascript:x", "</p>"]);
        assert_eq!(out, "<p>javascript:x</p>");
        // A comment with quotes does not confuse what follows.
        let out = write(HTML, &["<!-- it's --><p>", "a b", "</p>"]);
        assert_eq!(out, "<!-- it's --><p>a b</p>");
        // Controls become U+FFFD; without a declared UTF-8, non-ASCII becomes references.
        let out = write(TextKind::new(Syntax::Html, Charset::Ascii), &["<p>", "Léa\u{1b}", "</p>"]);
        assert_eq!(out, "<p>L&#233;a&#65533;</p>");
    }

    #[test]
    fn json_and_plain_text() {
        let json = TextKind::new(Syntax::Json, Charset::Utf8);
        let out = write(json, &["{\"n\":\"", "a\"b\\c\nd\u{1}\u{2028}é", "\"}"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["n"], "a\"b\\c\nd\u{1}\u{2028}é");
        let ascii = write(TextKind::new(Syntax::Json, Charset::Ascii), &["\"", "é😀", "\""]);
        assert_eq!(ascii, "\"\\u00e9\\ud83d\\ude00\"");
        let plain = write(TextKind::new(Syntax::Plain, Charset::Utf8), &["Nom : ", "Léa\u{1b}[2J\n", "."]);
        assert_eq!(plain, "Nom : Léa\u{fffd}[2J\n.");
    }

    #[test]
    fn values_are_written_in_the_declared_charset() {
        let mut out = Vec::new();
        let mut w = Writer::new(TextKind::new(Syntax::Plain, Charset::Windows1252));
        w.placeholder("[donnée protégée] Cœur €", &mut out);
        assert_eq!(out, b"[donn\xe9e prot\xe9g\xe9e] C\x9cur \x80");
        let mut out = Vec::new();
        let mut w = Writer::new(TextKind::new(Syntax::Csv, Charset::Latin9));
        w.value("Cœur ¤ 日", &mut out);
        w.finish(&mut out);
        assert_eq!(out, b"C\xbdur ? ?");
    }

    #[test]
    fn a_utf8_byte_order_mark_does_not_hide_the_start_of_the_first_cell() {
        let out = write(CSV, &["\u{feff}", "=1+1", ",b\n"]);
        assert_eq!(out, "\u{feff}\"'=1+1\",b\n");
    }
}
