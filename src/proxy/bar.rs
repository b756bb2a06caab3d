//! The gateway's bar in applications' pages: on a route that opts in (`privacy_bar`), a small
//! accessible navigation ("Mes données · Se déconnecter") is inserted right after the opening
//! `<body…>` tag of HTML responses, while they stream. CSP-safe: no script and no inline
//! style, only a stylesheet served by the gateway (`/.guichet/barre.css`, same origin).
//! Anything but uncompressed HTML passes untouched, and so does a page without `<body>`.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::HeaderMap;
use http::header;

/// The bar for someone signed in: their data and the sign-out confirmation page (a link, so
/// no CSRF token is ever written into an application's page).
const SIGNED_IN: &[u8] = concat!(
    "<link rel=\"stylesheet\" href=\"/.guichet/barre.css\">",
    "<nav class=\"guichet-barre\" aria-label=\"Vos données à la mairie\"><ul>",
    "<li><a href=\"/.guichet/mes-donnees/\">Mes données</a></li>",
    "<li><a href=\"/.guichet/deconnexion\">Se déconnecter</a></li>",
    "</ul></nav>"
)
.as_bytes();

/// The bar for a visitor who is not signed in: there is nothing to sign out of.
const VISITOR: &[u8] = concat!(
    "<link rel=\"stylesheet\" href=\"/.guichet/barre.css\">",
    "<nav class=\"guichet-barre\" aria-label=\"Vos données à la mairie\"><ul>",
    "<li><a href=\"/.guichet/mes-donnees/\">Mes données</a></li>",
    "</ul></nav>"
)
.as_bytes();

/// The bar's stylesheet, served at `pages::BAR_STYLESHEET_PATH`.
pub const STYLESHEET: &str = include_str!("../../templates/bar.css");

/// The bar to insert for this person.
pub fn html(signed_in: bool) -> &'static [u8] {
    if signed_in { SIGNED_IN } else { VISITOR }
}

/// An uncompressed HTML page (the only responses the bar goes into).
pub fn is_html(headers: &HeaderMap) -> bool {
    if headers.get(header::CONTENT_ENCODING).is_some_and(|v| v.as_bytes() != b"identity") {
        return false;
    }
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "text/html" || essence == "application/xhtml+xml"
}

/// `body` with `bar` inserted after its first `<body…>` tag.
pub fn insert<B>(body: B, bar: &'static [u8]) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut finder = BodyTag::default();
    let stream = http_body_util::BodyDataStream::new(body).map(move |chunk| {
        chunk.map(|c| match finder.push(&c) {
            Some(at) => {
                let mut out = BytesMut::with_capacity(c.len() + bar.len());
                out.extend_from_slice(c.get(..at).unwrap_or_default());
                out.extend_from_slice(bar);
                out.extend_from_slice(c.get(at..).unwrap_or_default());
                out.freeze()
            }
            None => c,
        })
    });
    Body::from_stream(stream)
}

/// Finds the end of the first `<body…>` tag across chunks, byte by byte (quoted attribute
/// values may hold a `>`).
#[derive(Debug, Default)]
struct BodyTag {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes of `<body` matched.
    #[default]
    Seeking,
    Matched(usize),
    /// Inside the tag's attributes, maybe inside a quoted value.
    InTag(Option<u8>),
    Done,
}

const OPEN: &[u8] = b"<body";

impl BodyTag {
    /// Where to insert in `chunk` (just after the tag's `>`), once, when the tag ends in it.
    fn push(&mut self, chunk: &[u8]) -> Option<usize> {
        for (i, &b) in chunk.iter().enumerate() {
            self.state = match self.state {
                State::Done => return None,
                State::Seeking => Self::restart(b),
                State::Matched(n) if n < OPEN.len() => {
                    if OPEN.get(n) == Some(&b.to_ascii_lowercase()) {
                        State::Matched(n + 1)
                    } else {
                        Self::restart(b)
                    }
                }
                State::Matched(_) => match b {
                    b'>' => {
                        self.state = State::Done;
                        return Some(i + 1);
                    }
                    b'/' => State::InTag(None),
                    b if b.is_ascii_whitespace() => State::InTag(None),
                    b => Self::restart(b),
                },
                State::InTag(None) => match b {
                    b'>' => {
                        self.state = State::Done;
                        return Some(i + 1);
                    }
                    b'"' | b'\'' => State::InTag(Some(b)),
                    _ => State::InTag(None),
                },
                State::InTag(Some(q)) => State::InTag(if b == q { None } else { Some(q) }),
            };
        }
        None
    }

    fn restart(b: u8) -> State {
        if b == b'<' { State::Matched(1) } else { State::Seeking }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `page` cut into chunks of `size` bytes, through the finder, joined again.
    fn through(page: &str, size: usize) -> String {
        let mut f = BodyTag::default();
        let mut out = Vec::new();
        for chunk in page.as_bytes().chunks(size) {
            match f.push(chunk) {
                Some(at) => {
                    out.extend_from_slice(&chunk[..at]);
                    out.extend_from_slice(b"[BAR]");
                    out.extend_from_slice(&chunk[at..]);
                }
                None => out.extend_from_slice(chunk),
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_bar_goes_right_after_the_body_tag_whatever_the_chunks() {
        let page = "<!doctype html><html><head><title>x</title></head>\
                    <BODY class=\"a>b\" data-x='<body>'><p>Bonjour</p><body></body></html>";
        let want = page.replacen("'<body>'>", "'<body>'>[BAR]", 1);
        for size in 1..=page.len() {
            assert_eq!(through(page, size), want, "chunks of {size}");
        }
    }

    #[test]
    fn look_alikes_and_pages_without_body_are_left_alone() {
        assert_eq!(through("<bodyguard><p>x</p>", 3), "<bodyguard><p>x</p>");
        assert_eq!(through("<p>no body</p>", 4), "<p>no body</p>");
        assert_eq!(through("<<body>x", 1), "<<body>[BAR]x");
        assert_eq!(through("<body/>x", 2), "<body/>[BAR]x");
    }

    #[test]
    fn only_uncompressed_html_is_touched() {
        let h = |ct: &str, enc: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            if let Some(e) = enc {
                m.insert(header::CONTENT_ENCODING, e.parse().unwrap());
            }
            is_html(&m)
        };
        assert!(h("text/html; charset=utf-8", None));
        assert!(h("TEXT/HTML", Some("identity")));
        assert!(!h("text/html", Some("gzip")));
        assert!(!h("application/json", None));
        assert!(!h("text/plain", None));
        assert!(!is_html(&HeaderMap::new()));
    }
}
