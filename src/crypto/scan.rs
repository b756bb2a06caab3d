//! Finding `gch2.` (and older `gch1.`) tokens in arbitrary text (JSON, HTML, CSV, plain
//! text), whole or as a stream of chunks. A token is `gch` + a version + `.` + a 22-character
//! key id + `.` + a base64url run of a plausible length, not glued to a preceding token
//! character, and not followed by one.
//!
//! The streaming scanner keeps back at most `MAX_TOKEN_LEN` bytes at the end of a chunk, and
//! only when they could be the beginning of a token, so a token split across chunks is still
//! found while memory stays bounded.

use super::token::{KEY_ID_LEN, MAX_SEALED_CHARS, MIN_SEALED_CHARS, VERSIONS, is_token_byte};

/// A piece of the scanned text, in order: text to copy, or a token to replace.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a [u8]),
    Token(&'a str),
}

enum At {
    /// A complete token ends at this offset.
    Token(usize),
    /// The buffer ends while the bytes could still become a token.
    Unfinished,
    No,
}

/// One position of a token's fixed-length head.
#[derive(Clone, Copy)]
enum Want {
    Byte(u8),
    Version,
    KeyId,
}

/// What starts at `i`, given the byte before `buf` (`prev`) and whether more bytes may come.
fn token_at(buf: &[u8], i: usize, prev: Option<u8>, more: bool) -> At {
    let before = if i == 0 { prev } else { buf.get(i - 1).copied() };
    if before.is_some_and(|b| is_token_byte(b) || b == b'.') {
        return At::No;
    }
    let unfinished = if more { At::Unfinished } else { At::No };
    let shape = b"gch"
        .iter()
        .map(|&b| Want::Byte(b))
        .chain([Want::Version, Want::Byte(b'.')])
        .chain((0..KEY_ID_LEN).map(|_| Want::KeyId))
        .chain(std::iter::once(Want::Byte(b'.')));
    let mut j = i;
    for want in shape {
        let Some(&b) = buf.get(j) else { return unfinished };
        let ok = match want {
            Want::Byte(w) => b == w,
            Want::Version => VERSIONS.contains(&b),
            Want::KeyId => is_token_byte(b),
        };
        if !ok {
            return At::No;
        }
        j += 1;
    }
    let start = j;
    while buf.get(j).is_some_and(|&b| is_token_byte(b)) {
        j += 1;
        if j - start > MAX_SEALED_CHARS {
            return At::No;
        }
    }
    if j == buf.len() && more {
        return At::Unfinished;
    }
    let n = j - start;
    // A base64 text of length 4k+1 cannot exist.
    if n >= MIN_SEALED_CHARS && n % 4 != 1 { At::Token(j) } else { At::No }
}

/// Walks `buf`, calling `out` with text and tokens in order; returns the offset from which
/// bytes were held back because they could start a token continued by the next chunk.
fn scan<'a>(buf: &'a [u8], prev: Option<u8>, more: bool, out: &mut impl FnMut(Piece<'a>)) -> usize {
    let mut copied = 0;
    let mut i = 0;
    while let Some(off) = buf.get(i..).and_then(|rest| rest.iter().position(|&b| b == b'g')) {
        i += off;
        match token_at(buf, i, prev, more) {
            At::Token(end) => {
                emit_text(buf, copied, i, out);
                if let Some(t) = buf.get(i..end).and_then(|t| std::str::from_utf8(t).ok()) {
                    out(Piece::Token(t));
                }
                copied = end;
                i = end;
            }
            At::Unfinished => {
                emit_text(buf, copied, i, out);
                return i;
            }
            At::No => i += 1,
        }
    }
    emit_text(buf, copied, buf.len(), out);
    buf.len()
}

fn emit_text<'a>(buf: &'a [u8], from: usize, to: usize, out: &mut impl FnMut(Piece<'a>)) {
    if let Some(t) = buf.get(from..to).filter(|t| !t.is_empty()) {
        out(Piece::Text(t));
    }
}

/// Calls `out` with every piece of a complete text.
pub fn scan_all<'a>(text: &'a [u8], out: &mut impl FnMut(Piece<'a>)) {
    scan(text, None, false, out);
}

/// Every token in a complete text, in order.
pub fn find_tokens(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    scan_all(text.as_bytes(), &mut |p| {
        if let Piece::Token(t) = p {
            found.push(t);
        }
    });
    found
}

/// Copies `text`, replacing each token by what `replace` returns for it.
pub fn replace_tokens(text: &str, mut replace: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    scan_all(text.as_bytes(), &mut |p| match p {
        Piece::Text(t) => out.push_str(&String::from_utf8_lossy(t)),
        Piece::Token(t) => out.push_str(&replace(t)),
    });
    out
}

/// A scanner for a body that arrives in chunks. It holds back at most
/// [`MAX_TOKEN_LEN`](super::token::MAX_TOKEN_LEN) bytes
/// between chunks.
#[derive(Debug, Default)]
pub struct StreamScanner {
    carry: Vec<u8>,
    prev: Option<u8>,
    joined: Vec<u8>,
}

impl StreamScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently held back (never more than `MAX_TOKEN_LEN`).
    pub fn held(&self) -> usize {
        self.carry.len()
    }

    /// Scans the next chunk; pieces that are complete go to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut impl FnMut(Piece<'_>)) {
        self.joined.clear();
        self.joined.append(&mut self.carry);
        self.joined.extend_from_slice(chunk);
        let keep_from = scan(&self.joined, self.prev, true, out);
        let (done, kept) = self.joined.split_at(keep_from.min(self.joined.len()));
        if let Some(&last) = done.last() {
            self.prev = Some(last);
        }
        self.carry.extend_from_slice(kept);
    }

    /// The body ended: whatever was held back is scanned as final.
    pub fn finish(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        let rest = std::mem::take(&mut self.carry);
        scan(&rest, self.prev, false, out);
        self.prev = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemRandom;
    use crate::crypto::secret::Key256;
    use crate::crypto::token::{self, FieldContext, KeyId, MAX_TOKEN_LEN};

    fn tok(value: &str) -> String {
        let rng = SystemRandom::new();
        let ctx = FieldContext { activity: "a", field: "f", subject: "s" };
        let key = crate::crypto::aead::SealKey::new(&Key256::generate(&rng).unwrap()).unwrap();
        let kid = KeyId::generate(&rng).unwrap();
        let class = value.len().is_multiple_of(2).then_some("r-class");
        token::seal(&key, token::KeyRef { id: &kid, class }, &ctx, value, &rng).unwrap()
    }

    fn page(tokens: &[String]) -> String {
        format!(
            "<p>Nom : {}</p>\n{{\"prenom\":\"{}\"}}\nligne;{};fin gch1.pas-un-jeton gch3.{} xgch1.{}",
            tokens[0],
            tokens[1],
            tokens[2],
            &tokens[1][5..],
            &tokens[0][5..]
        )
    }

    #[test]
    fn finds_tokens_in_html_json_and_csv_but_not_lookalikes() {
        let t: Vec<String> = ["Dupont", "Jeanne", "12 rue de la Paix"].iter().map(|v| tok(v)).collect();
        let text = page(&t);
        // Both formats are found ("Dupont" and "Jeanne" are gch2, the address gch1).
        assert_eq!(t.iter().map(|t| &t[..5]).collect::<Vec<_>>(), ["gch2.", "gch2.", "gch1."]);
        assert_eq!(find_tokens(&text), vec![t[0].as_str(), t[1].as_str(), t[2].as_str()]);
        let replaced = replace_tokens(&text, |_| "[donnée protégée]".to_owned());
        assert!(!replaced.contains(&t[1]));
        assert_eq!(replaced.matches("[donnée protégée]").count(), 3);
        assert!(replaced.contains("gch1.pas-un-jeton"));
    }

    #[test]
    fn a_token_glued_to_more_token_characters_is_not_a_token() {
        let t = tok("Dupont");
        assert_ne!(find_tokens(&format!("{t}A")), vec![t.as_str()]);
        assert!(find_tokens(&format!("a{t}")).is_empty());
        assert_eq!(find_tokens(&format!("({t})")), vec![t.as_str()]);
    }

    fn stream(text: &[u8], cuts: &[usize]) -> (Vec<String>, Vec<u8>, usize) {
        let mut s = StreamScanner::new();
        let mut tokens = Vec::new();
        let mut rebuilt = Vec::new();
        let mut max_held = 0;
        let mut sink = |p: Piece<'_>| match p {
            Piece::Text(t) => rebuilt.extend_from_slice(t),
            Piece::Token(t) => {
                tokens.push(t.to_owned());
                rebuilt.extend_from_slice(t.as_bytes());
            }
        };
        let mut from = 0;
        for &c in cuts {
            s.push(&text[from..c], &mut sink);
            max_held = max_held.max(s.held());
            from = c;
        }
        s.push(&text[from..], &mut sink);
        s.finish(&mut sink);
        (tokens, rebuilt, max_held)
    }

    #[test]
    fn tokens_split_across_chunks_are_found_at_every_cut() {
        let t: Vec<String> = ["Dupont", "Jeanne", "12 rue de la Paix"].iter().map(|v| tok(v)).collect();
        let text = page(&t);
        let whole: Vec<String> = find_tokens(&text).into_iter().map(str::to_owned).collect();
        for cut in 0..=text.len() {
            let (tokens, rebuilt, _) = stream(text.as_bytes(), &[cut]);
            assert_eq!(tokens, whole, "cut at {cut}");
            assert_eq!(rebuilt, text.as_bytes(), "cut at {cut}");
        }
        // One byte at a time.
        let cuts: Vec<usize> = (1..text.len()).collect();
        let (tokens, rebuilt, max_held) = stream(text.as_bytes(), &cuts);
        assert_eq!(tokens, whole);
        assert_eq!(rebuilt, text.as_bytes());
        assert!(max_held <= MAX_TOKEN_LEN);
    }

    #[test]
    fn the_carry_over_stays_bounded_on_hostile_input() {
        // An endless base64 run after a token-like start must not be held forever.
        let mut s = StreamScanner::new();
        let mut n = 0usize;
        s.push(b" gch1.AAAAAAAAAAAAAAAAAAAAAA.", &mut |_| {});
        for _ in 0..100 {
            s.push(&[b'A'; 1000], &mut |p| {
                if let Piece::Text(t) = p {
                    n += t.len();
                }
            });
            assert!(s.held() <= MAX_TOKEN_LEN, "held {}", s.held());
        }
        s.finish(&mut |_| {});
        assert!(n > 0);
    }
}
