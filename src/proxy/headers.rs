//! Header hygiene at the hop: hop-by-hop removal (RFC 9110 §7.6.1), the reserved
//! `X-Guichet-*` namespace, and `Forwarded` / `X-Forwarded-*`. Reserved and forwarding names
//! are recognised by their CGI key (`canonical::names`): `X_Guichet_Subject` or
//! `x.forwarded.for` reach CGI-style applications as the real names, so they go too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

use crate::canonical::names;

/// Headers reserved for what the gateway asserts; any a client sends is dropped, in any
/// spelling an application reads as one of them ([`names::is_reserved_header`]).
pub use names::RESERVED_HEADER_PREFIX;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// True when the request asks to switch protocols (WebSocket and other HTTP/1.1 upgrades).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

/// True when `Connection` lists `token` (in any case, in any of its values).
pub fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| list_items(v.as_bytes()))
        .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The items of a comma-separated header value (`Connection: keep-alive, close`), trimmed,
/// empty ones skipped; on bytes, since this runs on most requests and answers.
pub fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// A `Connection` option that names no header (RFC 9110 §7.6.1).
pub fn is_connection_option(token: &[u8]) -> bool {
    ["keep-alive", "close", "upgrade"].iter().any(|o| token.eq_ignore_ascii_case(o.as_bytes()))
}

/// Removes hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Proxy-*`, and `Upgrade` unless an upgrade is under way
/// (then `Connection: upgrade` and `Upgrade` are kept).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    strip(headers, Strip { keep_upgrade, ..Strip::default() });
}

/// What one pass of [`strip`] removes besides the hop-by-hop headers.
#[derive(Debug, Clone, Copy)]
pub struct Strip {
    pub hop_by_hop: bool,
    /// Keep `Upgrade` (and answer with `Connection: upgrade`): a protocol switch is under way.
    pub keep_upgrade: bool,
    /// The reserved `X-Guichet-*` names.
    pub reserved: bool,
    /// `Forwarded` and `X-Forwarded-*`, when they come from a peer that is not trusted.
    pub forwarded: bool,
    /// `Host` and `X-Request-Id`, which the gateway then writes itself ([`Added`]).
    pub replaced: bool,
}

impl Default for Strip {
    fn default() -> Self {
        Self { hop_by_hop: true, keep_upgrade: false, reserved: false, forwarded: false, replaced: false }
    }
}

/// Removes, in one pass over the names, every header `what` asks for. A request carrying none
/// of them (the usual case) costs one scan and no allocation.
pub fn strip(headers: &mut HeaderMap, what: Strip) {
    let upgrade = if what.hop_by_hop && what.keep_upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    let doomed = |name: &HeaderName| {
        let n = name.as_str();
        (what.hop_by_hop && is_hop_by_hop(n))
            || (what.reserved && names::is_reserved_header(n))
            || (what.forwarded && is_forwarding(n))
            || (what.replaced && is_replaced(n))
    };
    // Collected first (a map cannot be changed while its names are read), without allocating
    // for the few that most messages carry (an upstream's `Connection: keep-alive`).
    let mut few: [Option<HeaderName>; 4] = Default::default();
    let mut more = Vec::new();
    let mut connection = false;
    for (i, name) in headers.keys().filter(|n| doomed(n)).enumerate() {
        connection |= name == header::CONNECTION;
        match few.get_mut(i) {
            Some(slot) => *slot = Some(name.clone()),
            None => more.push(name.clone()),
        }
    }
    // The names `Connection` lists are hop-by-hop too; looked up only when it is there.
    if connection {
        more.extend(connection_named(headers));
    }
    for name in few.iter().flatten().chain(&more) {
        headers.remove(name);
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The names listed in `Connection` (RFC 9110 §7.6.1), which are hop-by-hop too. The usual
/// options (`keep-alive`, `close`, `upgrade`) are hop-by-hop names already or name no header,
/// so they are skipped without building a name.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| list_items(v.as_bytes()))
        .filter(|t| !is_connection_option(t))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect()
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(name, "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade")
        || name.starts_with("proxy-")
}

/// `Forwarded` and `X-Forwarded-*` by their CGI key (lengths first: this runs on every
/// header of a request from an untrusted peer).
fn is_forwarding(name: &str) -> bool {
    match name.len() {
        9 => name == "forwarded",
        15 => names::same_cgi_key(name, "x-forwarded-for"),
        16 => names::same_cgi_key(name, "x-forwarded-host"),
        17 => names::same_cgi_key(name, "x-forwarded-proto"),
        _ => false,
    }
}

/// The names the gateway writes itself on every request upstream. Exact names only: `Host`
/// has no other spelling an application reads as the host, and `X-Request-Id` is no claim.
fn is_replaced(name: &str) -> bool {
    match name.len() {
        4 => name == "host",
        12 => name == "x-request-id",
        _ => false,
    }
}

/// Header lines the gateway adds to a request on its way upstream, written straight into
/// the request head after the request line (`upstream::codec::encode_head`) instead of being
/// inserted into the request's map: a map insertion hashes the name and may grow the map,
/// and the head is written from the map anyway. Only names the strip has removed from the
/// request go here (the reserved `X-Guichet-*`, the forwarding headers from an untrusted
/// peer, `Host`, `X-Request-Id`), so no name is sent twice.
#[derive(Debug, Default)]
pub struct Added {
    lines: Vec<u8>,
}

impl Added {
    pub fn new() -> Self {
        Self { lines: Vec::with_capacity(256) }
    }

    /// Room for `additional` more bytes of lines.
    pub fn reserve(&mut self, additional: usize) {
        self.lines.reserve(additional);
    }

    /// Adds `name: value`; the value is a header value already (no CR, LF or other control).
    pub fn push(&mut self, name: &HeaderName, value: &HeaderValue) {
        self.push_line(name, value.as_bytes());
    }

    fn push_line(&mut self, name: &HeaderName, value: &[u8]) {
        self.lines.extend_from_slice(name.as_str().as_bytes());
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// The lines, each ending in CRLF.
    pub fn as_bytes(&self) -> &[u8] {
        &self.lines
    }

    /// The same headers set in `headers` (a protocol upgrade goes through hyper's client,
    /// which writes its head from the map).
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for line in self.lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
            let (name, value) = line.split_at(colon);
            let value = value.get(1..).unwrap_or_default().trim_ascii();
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                headers.append(n, v);
            }
        }
    }
}

/// Where the gateway sets its own headers: straight into the upstream head ([`Added`]), or
/// into a map (a trusted proxy's chain, tests).
pub trait SetHeader {
    /// Sets `name` to `value`, skipped when `value` is no valid header value (a host or
    /// address the gateway could not check, as `HeaderValue::from_str` refuses it).
    fn set(&mut self, name: &HeaderName, value: &str);
}

impl SetHeader for HeaderMap {
    fn set(&mut self, name: &HeaderName, value: &str) {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.insert(name, v);
        }
    }
}

impl SetHeader for Added {
    fn set(&mut self, name: &HeaderName, value: &str) {
        // What `HeaderValue::from_str` accepts: visible ASCII, space and tab.
        if value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
            self.push_line(name, value.as_bytes());
        }
    }
}

/// What the gateway knows about the client side of the hop.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub host: &'a str,
}

/// True when `Forwarded` and `X-Forwarded-*` from this peer may be kept and extended.
pub fn is_trusted(peer: SocketAddr, trusted: &[IpNet]) -> bool {
    let ip = canonical_ip(peer.ip());
    trusted.iter().any(|n| n.contains(&ip))
}

/// Sets `Forwarded` and `X-Forwarded-For/-Proto/-Host`. From a trusted proxy, incoming values
/// are kept and extended; from anyone else they must already be gone (the proxy removes them
/// with [`strip`], in the same pass as the hop-by-hop headers), so nothing is looked up.
pub fn add_forwarded(headers: &mut HeaderMap, hop: Hop<'_>, from_trusted: bool) {
    if !from_trusted {
        write_forwarded(headers, hop);
        return;
    }
    let (ip, element) = forwarded_for(hop);
    let proto = if hop.tls { "https" } else { "http" };
    append_list(headers, &X_FORWARDED_FOR, ip);
    set_if_absent(headers, &X_FORWARDED_PROTO, proto);
    set_if_absent(headers, &X_FORWARDED_HOST, hop.host);
    append_list(headers, &header::FORWARDED, element);
}

/// [`add_forwarded`] for a peer that is not trusted: its forwarding headers are gone (the
/// strip), the gateway's are the only ones.
pub fn write_forwarded(out: &mut impl SetHeader, hop: Hop<'_>) {
    let (ip, element) = forwarded_for(hop);
    out.set(&X_FORWARDED_FOR, &ip);
    out.set(&header::FORWARDED, &element);
    out.set(&X_FORWARDED_PROTO, if hop.tls { "https" } else { "http" });
    out.set(&X_FORWARDED_HOST, hop.host);
}

/// The peer's address as `X-Forwarded-For` writes it, and this hop's `Forwarded` element.
fn forwarded_for(hop: Hop<'_>) -> (String, String) {
    let peer_ip = canonical_ip(hop.peer.ip());
    let proto = if hop.tls { "https" } else { "http" };
    let mut ip = String::with_capacity(40);
    push_ip(&mut ip, peer_ip);
    let mut element = String::with_capacity(24 + ip.len() + hop.host.len());
    push_for(&mut element, peer_ip, &ip);
    element.push_str(";proto=");
    element.push_str(proto);
    element.push_str(";host=");
    push_quoted_if_needed(&mut element, hop.host);
    (ip, element)
}

/// The client as the first trusted proxy saw it, read before the forwarding headers go: the
/// rightmost `X-Forwarded-For` address that is not a trusted proxy (the leftmost when all are),
/// and the scheme and host the client used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOrigin {
    pub ip: IpAddr,
    pub proto: Option<&'static str>,
    pub host: Option<String>,
}

/// What a trusted proxy in front says of the client (call only for a trusted peer).
pub fn client_origin(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> ClientOrigin {
    let chain: Vec<IpAddr> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(canonical_ip)
        .collect();
    let ip = chain
        .iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .or_else(|| chain.first())
        .copied()
        .unwrap_or_else(|| canonical_ip(peer.ip()));
    let first = |name: &HeaderName| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(str::trim)
    };
    let proto = match first(&X_FORWARDED_PROTO) {
        Some(p) if p.eq_ignore_ascii_case("https") => Some("https"),
        Some(p) if p.eq_ignore_ascii_case("http") => Some("http"),
        _ => None,
    };
    let host = first(&X_FORWARDED_HOST).filter(|h| !h.is_empty()).map(str::to_owned);
    ClientOrigin { ip, proto, host }
}

/// The network part of an address: IPv4 /24, IPv6 /48 (the CNIL's usual truncation).
pub fn truncate(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            IpAddr::V6(Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    }
}

/// Sets the forwarding headers for a route that sends `none` or a `truncated` address: one
/// hop, from the client (as `origin` tells, behind a trusted proxy) to the gateway, so no
/// address of the chain survives. Call after [`strip`] removed every incoming one.
pub fn add_forwarded_minimised(out: &mut impl SetHeader, hop: Hop<'_>, origin: Option<&ClientOrigin>, truncated: bool) {
    let proto = origin.and_then(|o| o.proto).unwrap_or(if hop.tls { "https" } else { "http" });
    let host = origin.and_then(|o| o.host.as_deref()).unwrap_or(hop.host);
    let mut element = String::with_capacity(48 + host.len());
    if truncated {
        let ip = truncate(origin.map_or(hop.peer.ip(), |o| o.ip));
        let mut text = String::with_capacity(40);
        push_ip(&mut text, ip);
        push_for(&mut element, ip, &text);
        element.push(';');
        out.set(&X_FORWARDED_FOR, &text);
    }
    element.push_str("proto=");
    element.push_str(proto);
    element.push_str(";host=");
    push_quoted_if_needed(&mut element, host);
    out.set(&header::FORWARDED, &element);
    out.set(&X_FORWARDED_PROTO, proto);
    out.set(&X_FORWARDED_HOST, host);
}

/// `for=<ip>` of a `Forwarded` element, an IPv6 address bracketed and quoted (RFC 7239 §6).
fn push_for(element: &mut String, ip: IpAddr, text: &str) {
    element.push_str("for=");
    match ip {
        IpAddr::V4(_) => element.push_str(text),
        IpAddr::V6(_) => {
            element.push_str("\"[");
            element.push_str(text);
            element.push_str("]\"");
        }
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Writes an address as `Display` would; IPv4 by hand, since formatting machinery was a
/// visible share of each proxied request's cost (docs/performance.md).
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u8(out, octet);
            }
        }
        IpAddr::V6(v6) => out.push_str(&v6.to_string()),
    }
}

fn push_u8(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + (n / 10) % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

fn push_quoted_if_needed(out: &mut String, host: &str) {
    let is_token = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
    };
    if host.bytes().all(is_token) {
        out.push_str(host);
        return;
    }
    out.push('"');
    // A host with a port (`mairie.fr:8080`) is the usual reason to quote; quotes and
    // backslashes inside are dropped rather than escaped.
    if host.bytes().any(|b| b == b'"' || b == b'\\') {
        out.extend(host.chars().filter(|c| !matches!(c, '"' | '\\')));
    } else {
        out.push_str(host);
    }
    out.push('"');
}

/// A header value that takes over the string's buffer instead of copying it.
fn shared_value(s: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok()
}

/// Appends to a comma-separated list header, merging repeated lines into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, item: String) {
    let existing: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    let joined = if existing.is_empty() { item } else { format!("{}, {item}", existing.join(", ")) };
    if let Some(v) = shared_value(joined) {
        headers.insert(name, v);
    }
}

fn set_if_absent(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if !headers.contains_key(name)
        && let Ok(v) = HeaderValue::from_str(value)
    {
        headers.insert(name, v);
    }
}

/// Size of the request head as the client sent it (request line and header lines).
pub fn head_size(method: &http::Method, uri: &http::Uri, headers: &HeaderMap) -> usize {
    let line = method.as_str().len() + uri.path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    headers.iter().fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the proxy does with `X-Guichet-*` (in its one pass, with the hop-by-hop headers).
    fn strip_reserved(headers: &mut HeaderMap) {
        strip(headers, Strip { hop_by_hop: false, reserved: true, ..Strip::default() });
    }

    /// What the proxy does with forwarding headers: strip untrusted ones, then add its own.
    fn set_forwarded(headers: &mut HeaderMap, hop: Hop<'_>, trusted: &[IpNet]) {
        let from_trusted = is_trusted(hop.peer, trusted);
        strip(headers, Strip { hop_by_hop: false, forwarded: !from_trusted, ..Strip::default() });
        add_forwarded(headers, hop, from_trusted);
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_by_connection_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "y"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrades_keep_upgrade_and_connection() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn reserved_headers_go_whatever_the_case() {
        let mut h = map(&[("X-Guichet-Subject", "forged"), ("x-GUICHET-claim-email", "a@b"), ("x-guichetx", "kept")]);
        strip_reserved(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-guichetx"));
    }

    #[test]
    fn spellings_that_applications_read_as_reserved_or_forwarding_headers_go() {
        let mut h = map(&[
            ("X_Guichet_Subject", "forged"),
            ("x-guichet_assertion", "forged"),
            ("X.Guichet.Purpose", "forged"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("x.forwarded.host", "evil"),
            ("X_Forwarded_Proto", "https"),
            ("x_guichetx", "kept"),
            ("x_forwarded_forx", "kept"),
        ]);
        strip(&mut h, Strip { hop_by_hop: false, reserved: true, forwarded: true, ..Strip::default() });
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x_forwarded_forx", "x_guichetx"]);
    }

    #[test]
    fn forwarded_headers_are_replaced_unless_from_a_trusted_proxy() {
        let hop = Hop { peer: "192.0.2.1:1234".parse().unwrap(), tls: true, host: "mairie.fr" };
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        set_forwarded(&mut h, hop, &[]);
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "mairie.fr");
        assert_eq!(h["forwarded"], "for=192.0.2.1;proto=https;host=mairie.fr");

        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        let hop = Hop { peer: "10.0.0.2:1".parse().unwrap(), tls: false, host: "m" };
        set_forwarded(&mut h, hop, &["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    #[test]
    fn ipv4_addresses_are_written_as_display_writes_them() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "192.168.1.20", "1.22.103.4"] {
            let mut out = String::new();
            push_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip);
        }
    }

    #[test]
    fn one_pass_strips_hop_by_hop_reserved_and_untrusted_forwarding_headers() {
        let mut h = map(&[
            ("connection", "x-named"),
            ("x-named", "1"),
            ("x-guichet-subject", "forged"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
            ("host", "evil.example"),
            ("x-request-id", "chosen-by-the-client"),
            ("accept", "*/*"),
            ("x-request-idx", "kept"),
        ]);
        strip(&mut h, Strip { hop_by_hop: true, keep_upgrade: false, reserved: true, forwarded: true, replaced: true });
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-request-idx"]);
    }

    #[test]
    fn added_lines_hold_only_valid_values_and_read_back_as_the_same_headers() {
        let mut added = Added::new();
        added.push(&header::HOST, &HeaderValue::from_static("app:8080"));
        added.set(&X_FORWARDED_HOST, "mairie.fr");
        // A value no header may hold is skipped, never written (it would split the head).
        added.set(&X_FORWARDED_PROTO, "https\r\nx-guichet-subject: forged");
        added.set(&header::FORWARDED, "for=\u{7f}");
        assert_eq!(added.as_bytes(), b"host: app:8080\r\nx-forwarded-host: mairie.fr\r\n");
        let mut h = map(&[("accept", "*/*")]);
        added.apply_to(&mut h);
        assert_eq!(h.len(), 3);
        assert_eq!(h["host"], "app:8080");
        assert_eq!(h["x-forwarded-host"], "mairie.fr");
    }

    #[test]
    fn connection_tokens_are_found_in_any_case_and_list_position() {
        let h = map(&[("connection", "keep-alive"), ("connection", "TE,  Close ")]);
        assert!(connection_has_token(&h, "close"));
        assert!(connection_has_token(&h, "keep-alive"));
        assert!(!connection_has_token(&h, "upgrade"));
        assert!(!connection_has_token(&map(&[("connection", "closed")]), "close"));
        assert!(!connection_has_token(&HeaderMap::new(), "close"));
    }

    #[test]
    fn forwarding_headers_survive_a_strip_that_does_not_ask_for_them() {
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-guichet-role", "x")]);
        strip(&mut h, Strip { reserved: true, ..Strip::default() });
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert!(!h.contains_key("x-guichet-role"));
    }

    /// A route without `client_address`: the application learns neither the client's address
    /// nor the chain of proxies, only the scheme and host.
    fn minimised(h: &mut HeaderMap, hop: Hop<'_>, trusted: &[IpNet], truncated: bool) {
        let origin = is_trusted(hop.peer, trusted).then(|| client_origin(h, hop.peer, trusted));
        strip(h, Strip { hop_by_hop: false, forwarded: true, ..Strip::default() });
        add_forwarded_minimised(h, hop, origin.as_ref(), truncated);
    }

    #[test]
    fn no_address_reaches_a_route_that_does_not_declare_it() {
        let hop = Hop { peer: "192.0.2.77:1234".parse().unwrap(), tls: true, host: "mairie.fr" };
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        minimised(&mut h, hop, &[], false);
        assert!(!h.contains_key("x-forwarded-for"));
        assert_eq!(h["forwarded"], "proto=https;host=mairie.fr");
        assert_eq!(h["x-forwarded-proto"], "https");
        let hop = Hop { peer: "10.0.0.2:1".parse().unwrap(), tls: false, host: "m" };
        let mut h = map(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        minimised(&mut h, hop, &["10.0.0.0/8".parse().unwrap()], false);
        assert!(!h.contains_key("x-forwarded-for"), "{h:?}");
        assert_eq!(h["forwarded"], "proto=https;host=m");
    }

    #[test]
    fn truncated_addresses_keep_the_network_only() {
        assert_eq!(truncate("203.0.113.77".parse().unwrap()).to_string(), "203.0.113.0");
        assert_eq!(truncate("2001:db8:abcd:12:1::7".parse().unwrap()).to_string(), "2001:db8:abcd::");
        assert_eq!(truncate("::ffff:198.51.100.9".parse().unwrap()).to_string(), "198.51.100.0");
        let hop = Hop { peer: "10.0.0.2:1".parse().unwrap(), tls: false, host: "m" };
        let mut h = map(&[("x-forwarded-for", "198.51.100.23, 10.0.0.9"), ("x-forwarded-host", "mairie.fr")]);
        minimised(&mut h, hop, &["10.0.0.0/8".parse().unwrap()], true);
        assert_eq!(h["x-forwarded-for"], "198.51.100.0");
        assert_eq!(h["forwarded"], "for=198.51.100.0;proto=http;host=mairie.fr");
        let hop = Hop { peer: "[2001:db8:1:2:3::1]:80".parse().unwrap(), tls: true, host: "m" };
        let mut h = HeaderMap::new();
        minimised(&mut h, hop, &[], true);
        assert_eq!(h["forwarded"], "for=\"[2001:db8:1::]\";proto=https;host=m");
    }

    #[test]
    fn ipv6_peers_are_quoted_in_forwarded() {
        let hop = Hop { peer: "[2001:db8::1]:80".parse().unwrap(), tls: false, host: "m:8080" };
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, hop, &[]);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http;host=\"m:8080\"");
    }
}
