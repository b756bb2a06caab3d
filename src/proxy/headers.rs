//! Header hygiene at the hop: hop-by-hop removal (RFC 9110 §7.6.1), the reserved
//! `X-Guichet-*` namespace, and `Forwarded` / `X-Forwarded-*`.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

/// Headers reserved for what the gateway asserts; any a client sends is dropped.
pub const RESERVED_HEADER_PREFIX: &str = "x-guichet-";

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// True when the request asks to switch protocols (WebSocket and other HTTP/1.1 upgrades).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers: `Connection` and every header it names, `Keep-Alive`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Proxy-*`, and `Upgrade` unless an upgrade is under way
/// (then `Connection: upgrade` and `Upgrade` are kept).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade = if keep_upgrade { headers.get(header::UPGRADE).cloned() } else { None };
    for name in named {
        headers.remove(&name);
    }
    for name in [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
        &PROXY_CONNECTION,
    ] {
        headers.remove(name);
    }
    remove_prefixed(headers, "proxy-");
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Drops every `X-Guichet-*` header, whatever its case (header names are case-insensitive;
/// the `http` crate stores them lowercased).
pub fn strip_reserved(headers: &mut HeaderMap) {
    remove_prefixed(headers, RESERVED_HEADER_PREFIX);
}

fn remove_prefixed(headers: &mut HeaderMap, prefix: &str) {
    let doomed: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with(prefix)).cloned().collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// What the gateway knows about the client side of the hop.
#[derive(Debug, Clone, Copy)]
pub struct Hop<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub host: &'a str,
}

/// Sets `Forwarded` and `X-Forwarded-For/-Proto/-Host`. From a trusted proxy, incoming values
/// are kept and extended; from anyone else they are replaced, since they could be forged.
pub fn set_forwarded(headers: &mut HeaderMap, hop: Hop<'_>, trusted: &[IpNet]) {
    let peer_ip = canonical_ip(hop.peer.ip());
    let from_trusted = trusted.iter().any(|n| n.contains(&peer_ip));
    let proto = if hop.tls { "https" } else { "http" };
    if !from_trusted {
        for name in [&header::FORWARDED, &X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST] {
            headers.remove(name);
        }
    }
    append_list(headers, &X_FORWARDED_FOR, &peer_ip.to_string());
    set_if_absent(headers, &X_FORWARDED_PROTO, proto);
    set_if_absent(headers, &X_FORWARDED_HOST, hop.host);
    let node = match peer_ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let element = format!("for={node};proto={proto};host={}", quote_if_needed(hop.host));
    append_list(headers, &header::FORWARDED, &element);
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn quote_if_needed(host: &str) -> String {
    if host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.!#$%&'*+^_`|~".contains(&b)) {
        host.to_owned()
    } else {
        format!("\"{}\"", host.replace(['"', '\\'], ""))
    }
}

/// Appends to a comma-separated list header, merging repeated lines into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, item: &str) {
    let existing: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    let joined = if existing.is_empty() { item.to_owned() } else { format!("{}, {item}", existing.join(", ")) };
    if let Ok(v) = HeaderValue::from_str(&joined) {
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
    fn ipv6_peers_are_quoted_in_forwarded() {
        let hop = Hop { peer: "[2001:db8::1]:80".parse().unwrap(), tls: false, host: "m:8080" };
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, hop, &[]);
        assert_eq!(h["forwarded"], "for=\"[2001:db8::1]\";proto=http;host=\"m:8080\"");
    }
}
