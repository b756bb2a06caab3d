//! Request paths as the applications behind the gateway read them (docs/proxy.md, "How the
//! gateway reads names and paths", "Paths").
//!
//! - [`read`] is the receive phase's view of a request path. It refuses what no two stacks
//!   agree on (malformed percent-encoding, control characters, dot segments and the reserved
//!   prefix in any spelling) and returns the **canonical path**: RFC 3986 §6.2.2 (unreserved
//!   characters decoded, other percent-encodings in uppercase hex, bytes outside printable
//!   ASCII encoded) with repeated slashes merged. Routes and activity rules match it ASCII
//!   case-insensitively, and it is the path sent upstream, so the application reads exactly
//!   what was matched.
//! - [`normalise`] is the same form with dot segments removed (§5.2.4); return paths use it,
//!   since a browser resolves them before following a redirect.
//! - [`readings`] and [`file_readings`] are the other paths a modelled stack may serve for a
//!   canonical path (nginx, Apache, Tomcat/Spring, IIS, PHP's `PATH_INFO`, Rails formats);
//!   the policy engine refuses a request that one of them reads as a claimed path that the
//!   canonical path itself is not.
//! - [`is_ambiguous`]: spellings that stacks read differently (an encoded `/` or `\`, a raw
//!   `\`, `;` parameters, an encoded `%`, a segment ending in a dot or a space); refused on
//!   claimed paths.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a path is refused; every variant is a 400 with nothing forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadPercent,
    Control,
    DotSegment,
    AboveRoot,
    Reserved,
}

impl PathError {
    /// What the client is told (the problem's detail).
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotAbsolute => "the request target must be a path",
            Self::BadPercent => "the path has a malformed percent-encoding",
            Self::Control => "the path contains a NUL or control character",
            Self::DotSegment => "the path contains . or .. segments",
            Self::AboveRoot => "the path climbs above the root",
            Self::Reserved => "the path names the gateway's reserved prefix",
        }
    }
}

/// The gateway's own prefix as a folded reading (lowercase): `/.guichet` and under it.
fn is_reserved_reading(folded: &str) -> bool {
    folded == "/.guichet" || folded.starts_with(crate::routing::RESERVED_PREFIX)
}

/// The reserved prefix in any letter case, for plain paths.
fn is_reserved_any_case(path: &str) -> bool {
    const P: &str = "/.guichet";
    path.get(..P.len()).is_some_and(|head| head.eq_ignore_ascii_case(P))
        && matches!(path.as_bytes().get(P.len()), None | Some(b'/'))
}

const fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn push_encoded(out: &mut String, b: u8) {
    let digit = |n: u8| char::from_digit(u32::from(n), 16).map_or('0', |c| c.to_ascii_uppercase());
    out.push('%');
    out.push(digit(b >> 4));
    out.push(digit(b & 0xF));
}

/// True for a dot segment (`.` or `..`) given its length and how many of its bytes are dots.
const fn is_dot_segment(len: usize, dots: usize) -> bool {
    (len == 1 || len == 2) && dots == len
}

/// Already canonical and read alike by every modelled stack: printable ASCII without `%`,
/// `\` or `;`, no empty or dot segment, no segment ending in a dot. Most requests take this
/// path, in one pass and without allocating.
pub fn is_plain(path: &str) -> bool {
    let (mut prev, mut len, mut dots) = (0u8, 0usize, 0usize);
    for &b in path.as_bytes() {
        if matches!(b, b'%' | b'\\' | b';') || !b.is_ascii_graphic() {
            return false;
        }
        if b == b'/' {
            if prev == b'/' || is_dot_segment(len, dots) || (len > 0 && prev == b'.') {
                return false;
            }
            (len, dots) = (0, 0);
        } else {
            len += 1;
            dots += usize::from(b == b'.');
        }
        prev = b;
    }
    !is_dot_segment(len, dots) && prev != b'.'
}

/// RFC 3986 §6.2.2.1–2: unreserved characters decoded, other percent-encodings in uppercase
/// hex; bytes that may not appear raw in a path (outside printable ASCII) are encoded, so the
/// result is ASCII.
fn percent_normalise(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|&c| hex(c)), bytes.get(i + 2).and_then(|&c| hex(c)))
            else {
                return Err(PathError::BadPercent);
            };
            let v = (h << 4) | l;
            if is_unreserved(v) {
                out.push(char::from(v))
            } else {
                push_encoded(&mut out, v)
            }
            i += 3;
        } else {
            if b.is_ascii_graphic() {
                out.push(char::from(b))
            } else {
                push_encoded(&mut out, b)
            }
            i += 1;
        }
    }
    Ok(out)
}

/// Merges repeated slashes and, with `resolve`, removes dot segments (RFC 3986 §5.2.4);
/// a `..` above the root is an error, as in nginx.
fn rebuild(path: &str, resolve: bool) -> Result<String, PathError> {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = true;
        match seg {
            "" => {}
            "." if resolve => {}
            ".." if resolve => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segments.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// The RFC 3986 normal form of an absolute path (§6.2.2, dot segments removed per §5.2.4,
/// repeated slashes merged). Borrowed when the path is already plain.
pub fn normalise(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    Ok(Cow::Owned(rebuild(&percent_normalise(raw)?, true)?))
}

/// A request path as the gateway reads it: the canonical path, or why it is refused.
/// Borrowed (no allocation) when the path is already plain.
pub fn read(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return if is_reserved_any_case(raw) { Err(PathError::Reserved) } else { Ok(Cow::Borrowed(raw)) };
    }
    let encoded = percent_normalise(raw)?;
    let decoded = decoded_variants(&encoded);
    for text in &decoded {
        refuse_unreadable(text)?;
    }
    // No dot segment is left in any spelling: only slashes to merge.
    let canonical = rebuild(&encoded, false)?;
    if folded_readings(&decoded).iter().any(|r| is_reserved_reading(r)) {
        return Err(PathError::Reserved);
    }
    Ok(Cow::Owned(canonical))
}

/// Refuses what some stack reads as a control character or a dot segment, whatever the
/// separator (`/`, `\`) or `;` parameters around it: a dot segment could climb out of a
/// route's prefix or an activity's path once the application decodes it (`/a/..;/b` is `/b`
/// to Tomcat, `/a/..%2Fb` is `/b` to nginx).
fn refuse_unreadable(decoded: &str) -> Result<(), PathError> {
    if decoded.chars().any(char::is_control) {
        return Err(PathError::Control);
    }
    for seg in decoded.split(['/', '\\']) {
        let without_params = seg.split(';').next().unwrap_or(seg);
        for s in [seg, without_params] {
            // Windows drops trailing dots and spaces: `.. ` and `...` climb there too.
            if !s.is_empty() && s.bytes().all(|b| b == b'.' || b == b' ') && s.contains('.') {
                return Err(PathError::DotSegment);
            }
        }
    }
    Ok(())
}

/// The path with every percent-encoding decoded once, and twice when that leaves encodings
/// (a stack behind another decodes again: `%252F` is `/` to it).
fn decoded_variants(encoded: &str) -> Vec<String> {
    let once = percent_decode_str(encoded).decode_utf8_lossy().into_owned();
    let mut out = Vec::with_capacity(2);
    if once.contains('%') {
        let twice = percent_decode_str(&once).decode_utf8_lossy().into_owned();
        if twice != once {
            out.push(twice);
        }
    }
    out.insert(0, once);
    out
}

/// Spellings the modelled stacks read differently; refused on a claimed path.
pub fn is_ambiguous(canonical: &str) -> bool {
    canonical.contains([';', '\\'])
        || ["%2F", "%5C", "%25"].iter().any(|e| canonical.contains(e))
        || canonical.split('/').any(|s| s.ends_with('.') || s.ends_with("%20"))
}

/// The other paths a modelled stack may read for a canonical path that is not plain, in
/// folded form (see [`fold_segment`]): every encoding decoded (once and twice), `\` as a
/// separator (IIS, Apache on Windows), `;` parameters kept (nginx, Apache) or dropped
/// (Tomcat, Spring), trailing dots and spaces dropped (Windows), dot segments resolved,
/// repeated slashes merged, letters in lowercase (case-insensitive file systems).
pub fn readings(canonical: &str) -> Vec<String> {
    folded_readings(&decoded_variants(canonical))
}

fn folded_readings(decoded: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(decoded.len() * 2);
    for text in decoded {
        for strip_params in [false, true] {
            let r = fold_path(text, strip_params);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

fn fold_path(decoded: &str, strip_params: bool) -> String {
    let mut segments: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']).skip(1) {
        let seg = if strip_params { seg.split(';').next().unwrap_or(seg) } else { seg };
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => {
                let s = s.trim_end_matches(['.', ' ']);
                if !s.is_empty() {
                    segments.push(fold_decoded(s));
                }
            }
        }
    }
    if segments.is_empty() {
        return "/".to_owned();
    }
    segments.iter().fold(String::new(), |mut out, s| {
        out.push('/');
        out.push_str(s);
        out
    })
}

/// A decoded segment in lowercase (Unicode), with bytes outside printable ASCII and `%`
/// encoded in uppercase hex: one spelling per segment as a case-insensitive stack reads it.
fn fold_decoded(decoded: &str) -> String {
    let lower = decoded.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for &b in lower.as_bytes() {
        if b.is_ascii_graphic() && b != b'%' { out.push(char::from(b)) } else { push_encoded(&mut out, b) }
    }
    out
}

/// A canonical segment in the folded form [`readings`] produce, for comparing with them.
pub fn fold_segment(canonical: &str) -> String {
    fold_decoded(&percent_decode_str(canonical).decode_utf8_lossy())
}

/// A segment naming a file: a name, a dot, an extension (`index.php`, `v1.2`; not `.env`).
fn names_file(seg: &str) -> bool {
    matches!((seg.find('.'), seg.rfind('.')), (Some(first), Some(last)) if first > 0 && last + 1 < seg.len())
}

/// The path without the extension of its last segment (`/a/b.json` → `/a/b`).
fn without_extension(path: &str) -> Option<&str> {
    let start = path.rfind('/')? + 1;
    let seg = path.get(start..)?;
    if !names_file(seg) {
        return None;
    }
    path.get(..start + seg.rfind('.')?)
}

/// After each segment that names a file, the rest of the path (`/index.php/a` → `/a`).
fn path_infos(path: &str) -> impl Iterator<Item = &str> {
    let mut offset = 0;
    path.split('/').filter_map(move |seg| {
        let end = offset + seg.len();
        offset = end + 1;
        if names_file(seg) { path.get(end..).filter(|rest| !rest.is_empty()) } else { None }
    })
}

/// Paths that stacks serving files or scripts read in `path`, as slices of it: the rest
/// after a script (`PATH_INFO`: PHP front controllers, CGI, Apache's `AcceptPathInfo`), and
/// the path without its last extension (Rails formats, Spring's suffix patterns).
pub fn file_readings(path: &str) -> impl Iterator<Item = &str> {
    // Every reading comes from a segment naming a file, which holds a dot; most paths have
    // none, and this runs on every request: such a path is not split at all.
    let readings = if path.as_bytes().contains(&b'.') { usize::MAX } else { 0 };
    std::iter::once(path)
        .chain(path_infos(path))
        .flat_map(move |p| [(p.len() != path.len()).then_some(p), without_extension(p)].into_iter().flatten())
        .take(readings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_paths_are_borrowed_as_they_are() {
        for p in ["/", "/cantine", "/cantine/", "/a/b.c", "/a..b/", "/Cantine/X", "/.well-known/x"] {
            assert!(matches!(read(p), Ok(Cow::Borrowed(q)) if q == p), "{p}");
        }
    }

    #[test]
    fn paths_are_read_in_their_rfc_3986_form_with_slashes_merged() {
        let cases = [
            ("/%63antine", "/cantine"),
            ("/can%74ine/%7e%2d", "/cantine/~-"),
            ("//cantine///inscription", "/cantine/inscription"),
            ("/a%2fb", "/a%2Fb"),
            ("/d%c3%a9marches", "/d%C3%A9marches"),
            ("/a b", "/a%20b"),
            ("/a;jsessionid=1", "/a;jsessionid=1"),
            ("/démarches", "/d%C3%A9marches"),
        ];
        for (raw, want) in cases {
            assert_eq!(read(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn unreadable_paths_are_refused() {
        let cases = [
            ("cantine", PathError::NotAbsolute),
            ("/a%2", PathError::BadPercent),
            ("/a%zz", PathError::BadPercent),
            ("/x%00", PathError::Control),
            ("/x%0a", PathError::Control),
            ("/a/../b", PathError::DotSegment),
            ("/a/%2e%2E/b", PathError::DotSegment),
            ("/./x", PathError::DotSegment),
            ("/a\\..\\b", PathError::DotSegment),
            ("/a/..;/b", PathError::DotSegment),
            ("/a/..%2Fb", PathError::DotSegment),
            ("/a/%252e%252e/b", PathError::DotSegment),
            ("/a/.. /b", PathError::DotSegment),
            ("/%2Eguichet/health/live", PathError::Reserved),
            ("/.GUICHET/x", PathError::Reserved),
            ("//.guichet/x", PathError::Reserved),
            ("/.guichet;x/y", PathError::Reserved),
            ("/.guichet./x", PathError::Reserved),
        ];
        for (raw, want) in cases {
            assert_eq!(read(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn normalise_resolves_dot_segments() {
        assert_eq!(normalise("/a/b/../c").as_deref(), Ok("/a/c"));
        assert_eq!(normalise("/a/%2e%2E/").as_deref(), Ok("/"));
        assert_eq!(normalise("/a/./b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(normalise("/../a"), Err(PathError::AboveRoot));
        assert_eq!(normalise("/a/..%2F.guichet").as_deref(), Ok("/a/..%2F.guichet"));
    }

    #[test]
    fn ambiguous_spellings_are_recognised() {
        for p in ["/a%2Fb", "/a%5Cb", "/a\\b", "/a;x", "/a%25", "/a./b", "/a%20/b"] {
            assert!(is_ambiguous(p), "{p}");
        }
        for p in ["/a/b.c", "/a%20b", "/d%C3%A9"] {
            assert!(!is_ambiguous(p), "{p}");
        }
    }

    #[test]
    fn readings_model_the_stacks() {
        let r = readings("/API;v=1/Inscriptions%2Fx%5Cy./%C3%89t%C3%A9%20");
        assert!(r.contains(&"/api;v=1/inscriptions/x/y/%C3%A9t%C3%A9".to_owned()), "{r:?}");
        assert!(r.contains(&"/api/inscriptions/x/y/%C3%A9t%C3%A9".to_owned()), "{r:?}");
        assert_eq!(readings("/a%252Fb"), ["/a%252fb", "/a/b"]);
        assert_eq!(fold_segment("%C3%89T%C3%89"), "%C3%A9t%C3%A9");
    }

    #[test]
    fn file_readings_are_path_info_and_formats() {
        let r: Vec<&str> = file_readings("/index.php/api/inscriptions.json").collect();
        assert_eq!(r, ["/index.php/api/inscriptions", "/api/inscriptions.json", "/api/inscriptions"]);
        assert_eq!(file_readings("/.well-known/x").count(), 0);
        assert_eq!(file_readings("/cantine").count(), 0);
    }

    /// Characters that make paths interesting: separators, dots, encodings of them, case.
    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("//"),
            Just("."),
            Just(".."),
            Just("a"),
            Just("B"),
            Just("%2e"),
            Just("%2F"),
            Just("%41"),
            Just("%c3%a9"),
            Just(";"),
            Just("\\"),
            Just("%25"),
            Just(" "),
            Just("é"),
            Just("%5c"),
            Just("guichet"),
        ];
        prop::collection::vec(piece, 0..12).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(p in path_strategy()) {
            if let Ok(once) = normalise(&p) {
                let twice = normalise(&once);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()));
            }
            if let Ok(once) = read(&p) {
                let twice = read(&once);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()));
                prop_assert!(once.is_ascii());
            }
        }

        #[test]
        fn readings_are_fixed_points(p in path_strategy()) {
            if let Ok(canonical) = read(&p) {
                for r in readings(&canonical) {
                    prop_assert!(r.starts_with('/'));
                    prop_assert!(!r.contains("//"), "{}", r);
                }
            }
        }
    }
}
