//! HTTP/1.1 toward upstreams, without I/O: the request head as bytes, the response head parsed
//! (`httparse`, as in hyper), and the response body's framing decoded (RFC 9112 §6–7).
//!
//! A response whose framing is ambiguous (several differing `Content-Length`s, a transfer
//! coding that does not end in `chunked`, `Transfer-Encoding` beside `Content-Length`) is
//! either refused or read to the connection's end, and its connection is never reused: bytes
//! left over from one response must never be read as the start of another citizen's.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::proxy::headers::list_items;

/// The most headers an upstream response may carry.
const MAX_HEADERS: usize = 128;

/// The largest response head read; beyond it the response is refused.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;

/// The longest chunk-size line (size, extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;

/// What an upstream sent that is not HTTP/1.1 as this gateway reads it.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("the upstream sent an invalid response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("the upstream's response head is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("the upstream sent an invalid header")]
    Header,
    #[error("the upstream's Content-Length is invalid or ambiguous")]
    ContentLength,
    #[error("the upstream sent an invalid chunk")]
    Chunk,
    #[error("the upstream switched protocols unasked")]
    UnaskedSwitch,
    #[error("the upstream closed the connection before the message was complete")]
    Incomplete,
    #[error("reading from the upstream failed")]
    Io(#[source] std::io::Error),
}

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header (a GET).
    Empty,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// From what the body knows of its size: an exact size is sent as `Content-Length`, an
    /// unknown one chunked. An empty body is announced only where a body is expected.
    pub fn of(method: &Method, exact: Option<u64>, had_length: bool) -> Self {
        match exact {
            Some(0) if !had_length && !expects_body(method) => Self::Empty,
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }

    /// Whether body bytes follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Self::Empty | Self::Length(0))
    }
}

fn expects_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// Writes the request head: the gateway's own header lines (`added`, each ending in CRLF,
/// `proxy::headers::Added`) first, then the request's. `headers` must not hold
/// `Content-Length` or `Transfer-Encoding` (the framing is written from `framing`); values
/// are already free of CR and LF (`HeaderValue` refuses them, `Added` writes only such
/// values), so nothing here can split the request.
pub fn encode_head(
    method: &Method,
    target: &str,
    added: &[u8],
    headers: &HeaderMap,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    out.extend_from_slice(added);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of a chunk of `len` bytes (chunked request bodies only: bodies of unknown length).
pub fn chunk_head(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// A parsed response head and how its body is framed.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Decoder,
    /// The connection can carry another request once this body has been read.
    pub reusable: bool,
}

/// Parses a response head off the front of `buf`, skipping interim (1xx) responses. `None`
/// when more bytes are needed. `upgrade` says whether a 101 was asked for.
pub fn parse_head(buf: &mut BytesMut, method: &Method, upgrade: bool) -> Result<Option<Head>, CodecError> {
    loop {
        // Left uninitialised: the parser writes only the slots it fills (as in hyper).
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut slots)? {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial if buf.len() > MAX_HEAD_BYTES => return Err(CodecError::HeadTooLarge),
                httparse::Status::Partial => return Ok(None),
            };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| CodecError::Header)?;
        if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
            return Err(CodecError::UnaskedSwitch);
        }
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        let connection = ConnectionOptions::of(parsed.headers);
        // `Connection` and `Keep-Alive` are hop-by-hop: when `Connection` holds only the usual
        // options (nginx's `keep-alive` on every answer), both are left out of the map here
        // instead of being added, then found and removed by the response's strip. Otherwise
        // (names listed, an upgrade) the strip removes what it must.
        let skip = |name: &str| {
            connection.plain && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        };
        let names: Vec<(HeaderName, usize, usize)> = parsed
            .headers
            .iter()
            .filter(|h| !skip(h.name))
            .map(|h| Ok((HeaderName::from_bytes(h.name.as_bytes())?, offset(buf, h.value)?, h.value.len())))
            .collect::<Result<_, CodecError>>()?;
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(names.len());
        for (name, start, len) in names {
            // httparse's values lie inside the head it measured; checked rather than trusted,
            // since `slice` panics outside it.
            if start + len > head.len() {
                return Err(CodecError::Header);
            }
            let value = head.slice(start..start + len);
            headers.append(name, HeaderValue::from_maybe_shared(value).map_err(|_| CodecError::Header)?);
        }
        return finish_head(status, headers, method, http10 || connection.close).map(Some);
    }
}

/// What a response's `Connection` headers say, read from the parsed head.
struct ConnectionOptions {
    /// `close` is among its options.
    close: bool,
    /// It holds no option but `keep-alive` and `close` (or there is none).
    plain: bool,
}

impl ConnectionOptions {
    fn of(headers: &[httparse::Header<'_>]) -> Self {
        let mut options = Self { close: false, plain: true };
        let values = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection"));
        for token in values.flat_map(|h| list_items(h.value)) {
            if token.eq_ignore_ascii_case(b"close") {
                options.close = true;
            } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                options.plain = false;
            }
        }
        options
    }
}

/// Where `value` starts inside `buf` (httparse hands out slices of it).
fn offset(buf: &[u8], value: &[u8]) -> Result<usize, CodecError> {
    let start = (value.as_ptr() as usize).checked_sub(buf.as_ptr() as usize).ok_or(CodecError::Header)?;
    if start + value.len() > buf.len() {
        return Err(CodecError::Header);
    }
    Ok(start)
}

impl From<http::header::InvalidHeaderName> for CodecError {
    fn from(_: http::header::InvalidHeaderName) -> Self {
        Self::Header
    }
}

/// `closes`: the answer is HTTP/1.0 or its `Connection` says `close`.
fn finish_head(status: StatusCode, mut headers: HeaderMap, method: &Method, closes: bool) -> Result<Head, CodecError> {
    let mut reusable = !closes;
    let no_body = *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS;
    let body = if no_body {
        Decoder::Done
    } else if headers.contains_key(TRANSFER_ENCODING) {
        // Transfer-Encoding wins over Content-Length (RFC 9112 §6.3), but a message carrying
        // both may be an attempt at desynchronisation: read it, never reuse the connection.
        if headers.remove(CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        if last_coding_is_chunked(&headers)? {
            Decoder::chunked()
        } else {
            reusable = false;
            Decoder::UntilClose
        }
    } else if let Some((n, repeated)) = content_length(&headers)? {
        if repeated {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        Decoder::Length(n)
    } else {
        reusable = false;
        Decoder::UntilClose
    };
    if matches!(body, Decoder::Length(0)) {
        return Ok(Head { status, headers, body: Decoder::Done, reusable });
    }
    Ok(Head { status, headers, body, reusable })
}

/// True when the last transfer coding is `chunked` and appears once; an error when
/// `chunked` is not last (the length then depends on the connection's end, but a coding
/// applied after `chunked` is a malformed message).
fn last_coding_is_chunked(headers: &HeaderMap) -> Result<bool, CodecError> {
    let mut codings = Vec::new();
    for v in headers.get_all(TRANSFER_ENCODING) {
        let v = v.to_str().map_err(|_| CodecError::Header)?;
        codings.extend(v.split(',').map(str::trim).filter(|c| !c.is_empty()));
    }
    let chunked = codings.iter().filter(|c| c.eq_ignore_ascii_case("chunked")).count();
    match (chunked, codings.last()) {
        (0, _) => Ok(false),
        (1, Some(last)) if last.eq_ignore_ascii_case("chunked") => Ok(true),
        _ => Err(CodecError::Chunk),
    }
}

/// Every `Content-Length` value (repeated headers, comma lists) must be the same number; says
/// whether it was written more than once (then it is rewritten once for the client).
fn content_length(headers: &HeaderMap) -> Result<Option<(u64, bool)>, CodecError> {
    let mut found: Option<u64> = None;
    let mut count = 0;
    for v in headers.get_all(CONTENT_LENGTH) {
        let v = v.to_str().map_err(|_| CodecError::ContentLength)?;
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CodecError::ContentLength);
            }
            let n: u64 = part.parse().map_err(|_| CodecError::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(CodecError::ContentLength);
            }
            found = Some(n);
            count += 1;
        }
    }
    Ok(found.map(|n| (n, count > 1)))
}

/// Reads a response body off a buffer the caller fills from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoder {
    /// `Content-Length`: bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// No framing: the body ends when the upstream closes the connection.
    UntilClose,
    Done,
}

/// Where a chunked body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers { seen: usize },
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// More bytes are needed from the connection.
    More,
    End,
}

impl Decoder {
    fn chunked() -> Self {
        Self::Chunked(Chunk::Size)
    }

    /// The body's size when the framing says it.
    pub fn exact_len(&self) -> Option<u64> {
        match self {
            Self::Length(n) => Some(*n),
            Self::Done => Some(0),
            Self::Chunked(_) | Self::UntilClose => None,
        }
    }

    /// Takes what it can from `buf`: data, the end of the body, or a request for more bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, CodecError> {
        loop {
            match self {
                Self::Done => return Ok(Decoded::End),
                Self::Length(left) => {
                    let Some((data, rest)) = take(buf, *left) else { return Ok(Decoded::More) };
                    *self = if rest == 0 { Self::Done } else { Self::Length(rest) };
                    return Ok(Decoded::Data(data));
                }
                Self::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                Self::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else { return Ok(Decoded::More) };
                        let size = parse_chunk_size(&line)?;
                        *chunk = if size == 0 { Chunk::Trailers { seen: 0 } } else { Chunk::Data(size) };
                    }
                    Chunk::Data(left) => {
                        let Some((data, rest)) = take(buf, *left) else { return Ok(Decoded::More) };
                        *chunk = if rest == 0 { Chunk::DataEnd } else { Chunk::Data(rest) };
                        return Ok(Decoded::Data(data));
                    }
                    Chunk::DataEnd => {
                        let Some(line) = take_line(buf, 2)? else { return Ok(Decoded::More) };
                        if !line.is_empty() {
                            return Err(CodecError::Chunk);
                        }
                        *chunk = Chunk::Size;
                    }
                    // Trailer fields are read and dropped: nothing behind the gateway needs
                    // them, and forwarding them would need their own header hygiene.
                    Chunk::Trailers { seen } => {
                        let Some(line) = take_line(buf, MAX_TRAILERS.saturating_sub(*seen))? else {
                            return Ok(Decoded::More);
                        };
                        if line.is_empty() {
                            *self = Self::Done;
                        } else {
                            *seen += line.len() + 2;
                        }
                    }
                },
            }
        }
    }
}

/// Up to `left` bytes off the front of `buf`, and how many are still to come; `None` when
/// `buf` is empty.
fn take(buf: &mut BytesMut, left: u64) -> Option<(Bytes, u64)> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
    Some((buf.split_to(n).freeze(), left - n as u64))
}

/// One CRLF-terminated line off the front of `buf` (without the CRLF); `None` when it is not
/// all there yet, an error when it grows over `max` bytes.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, CodecError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= max => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        Some(_) => Err(CodecError::Chunk),
        None if buf.len() > max + 1 => Err(CodecError::Chunk),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits, then optional extensions after `;` (ignored).
fn parse_chunk_size(line: &[u8]) -> Result<u64, CodecError> {
    let end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
    let digits = line.get(..end).unwrap_or_default();
    let digits = digits.strip_suffix(b" ").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 15 {
        return Err(CodecError::Chunk);
    }
    let mut size: u64 = 0;
    for b in digits {
        let d = (*b as char).to_digit(16).ok_or(CodecError::Chunk)?;
        size = (size << 4) | u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<Head>, CodecError> {
        parse_head(&mut BytesMut::from(raw), &Method::GET, false)
    }

    fn decode_all(decoder: &mut Decoder, pieces: &[&[u8]]) -> Result<Vec<u8>, CodecError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(d) => out.extend_from_slice(&d),
                    Decoded::More => break,
                    Decoded::End => return Ok(out),
                }
            }
        }
        Err(CodecError::Incomplete)
    }

    #[test]
    fn request_heads_carry_the_framing_the_body_needs() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("app"));
        let mut out = Vec::new();
        encode_head(&Method::GET, "/a?b=1", b"", &h, RequestFraming::Empty, &mut out);
        assert_eq!(out, b"GET /a?b=1 HTTP/1.1\r\nhost: app\r\n\r\n");
        out.clear();
        encode_head(&Method::POST, "/", b"x-request-id: 7\r\n", &h, RequestFraming::Length(1234567), &mut out);
        assert_eq!(out, b"POST / HTTP/1.1\r\nx-request-id: 7\r\nhost: app\r\ncontent-length: 1234567\r\n\r\n");
        out.clear();
        encode_head(&Method::PUT, "/", b"", &HeaderMap::new(), RequestFraming::Chunked, &mut out);
        assert_eq!(out, b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(RequestFraming::of(&Method::GET, Some(0), false), RequestFraming::Empty);
        assert_eq!(RequestFraming::of(&Method::GET, Some(0), true), RequestFraming::Length(0));
        assert_eq!(RequestFraming::of(&Method::POST, Some(0), false), RequestFraming::Length(0));
        assert_eq!(RequestFraming::of(&Method::POST, None, true), RequestFraming::Chunked);
        assert_eq!(&chunk_head(0x1a2b)[..], b"1a2b\r\n");
        assert_eq!(&chunk_head(0)[..], b"0\r\n");
    }

    #[test]
    fn a_response_head_is_parsed_and_its_body_framed() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello");
        let h = parse_head(&mut buf, &Method::GET, false).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.headers["x-a"], "b");
        assert_eq!(h.body, Decoder::Length(5));
        assert!(h.reusable);
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
        assert!(head("HTTP/1.1 200 OK\r\nContent-").unwrap().is_none(), "partial");
    }

    #[test]
    fn connection_options_decide_reuse_and_the_plain_ones_stay_out_of_the_map() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n";
        let h = head(raw).unwrap().unwrap();
        assert!(h.reusable);
        assert!(!h.headers.contains_key("connection") && !h.headers.contains_key("keep-alive"), "{:?}", h.headers);
        let h = head("HTTP/1.1 200 OK\r\nconnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!h.reusable, "an answer saying close was reused");
        assert!(!h.headers.contains_key("connection"));
        assert!(
            !head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap().reusable
        );
        // Names listed in Connection: everything stays for the strip, which removes them all.
        let raw = "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: close, X-Secret\r\nContent-Length: 0\r\n\r\n";
        let mut h = head(raw).unwrap().unwrap();
        assert!(!h.reusable);
        assert!(h.headers.contains_key("connection") && h.headers.contains_key("x-secret"));
        crate::proxy::headers::strip_hop_by_hop(&mut h.headers, false);
        assert!(!h.headers.contains_key("x-secret") && !h.headers.contains_key("connection"));
    }

    #[test]
    fn interim_responses_are_skipped_and_an_unasked_switch_refused() {
        let h = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        );
        let h = h.unwrap().unwrap();
        assert_eq!(h.status, 204);
        assert_eq!(h.body, Decoder::Done);
        assert!(matches!(head("HTTP/1.1 101 Switching Protocols\r\n\r\n"), Err(CodecError::UnaskedSwitch)));
    }

    #[test]
    fn ambiguous_framing_is_refused_or_never_reused() {
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(CodecError::ContentLength)
        ));
        assert!(matches!(head("HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"), Err(CodecError::ContentLength)));
        assert!(matches!(head("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"), Err(CodecError::ContentLength)));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(CodecError::ContentLength)
        ));
        let same = head("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n").unwrap().unwrap();
        assert_eq!((same.body, same.headers["content-length"].as_bytes()), (Decoder::Length(5), &b"5"[..]));
        let both = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n").unwrap().unwrap();
        assert_eq!(both.body, Decoder::Chunked(Chunk::Size));
        assert!(!both.reusable && !both.headers.contains_key(CONTENT_LENGTH));
        let gzip_only = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap().unwrap();
        assert_eq!((gzip_only.body, gzip_only.reusable), (Decoder::UntilClose, false));
        assert!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        let unframed = head("HTTP/1.1 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((unframed.body, unframed.reusable), (Decoder::UntilClose, false));
        let closing =
            head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(!closing.reusable);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap().reusable);
        assert!(head("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").is_err());
        let mut huge = BytesMut::from("HTTP/1.1 200 OK\r\n");
        huge.extend_from_slice(&vec![b'a'; MAX_HEAD_BYTES + 1]);
        assert!(matches!(parse_head(&mut huge, &Method::GET, false), Err(CodecError::HeadTooLarge)));
    }

    #[test]
    fn bodies_of_head_requests_and_304_are_empty_whatever_the_length_says() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n");
        assert_eq!(parse_head(&mut buf, &Method::HEAD, false).unwrap().unwrap().body, Decoder::Done);
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n").unwrap().unwrap().body,
            Decoder::Done
        );
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire: &[u8] = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n";
        let want = b"helloabcdefghijklmnopqrstuvwxyz".to_vec();
        for split in 1..wire.len() {
            let (a, b) = wire.split_at(split);
            assert_eq!(decode_all(&mut Decoder::chunked(), &[a, b]).unwrap(), want, "split at {split}");
        }
        let bytewise: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(decode_all(&mut Decoder::chunked(), &bytewise).unwrap(), want);
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"\r\n", b"1234567890abcdef0\r\n", &[b'1'; 5000]] {
            assert!(decode_all(&mut Decoder::chunked(), &[bad]).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b"t: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".as_slice(), 3000).flatten());
        assert!(decode_all(&mut Decoder::chunked(), &[&trailers]).is_err(), "unbounded trailers");
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut d = Decoder::Length(5);
        let mut buf = BytesMut::from("helloHTTP/1.1");
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::Data(Bytes::from_static(b"hello")));
        assert_eq!(d.decode(&mut buf).unwrap(), Decoded::End);
        assert_eq!(&buf[..], b"HTTP/1.1", "what follows is left for the caller to judge");
    }
}
