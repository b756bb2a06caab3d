//! TLS termination on the public listener: certificates, ALPN (h2 / http/1.1), minimum
//! version, and what a plain-HTTP client gets on the TLS port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use guichet::config::{Loaded, TlsSettings};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::helpers::{TestApp, spawn_app};

/// A self-signed certificate for `localhost`, written as PEM files in a temporary directory.
pub(crate) struct TestCert {
    der: CertificateDer<'static>,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    _dir: TempDir,
}

pub(crate) fn test_cert() -> TestCert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    TestCert { der: ck.cert.der().clone(), cert, key, _dir: dir }
}

/// The gateway with TLS on its public listener, and the certificate it serves.
async fn spawn_tls_app(min_version: &str) -> (TestApp, TestCert) {
    let tc = test_cert();
    let tls = TlsSettings::new(tc.cert.clone(), tc.key.clone(), min_version);
    let app = spawn_app().with(move |s, _| s.server.tls = Some(tls)).start().await;
    (app, tc)
}

/// A reqwest client trusting only `cert`, speaking the given TLS versions and ALPN protocols,
/// with `localhost` resolved to the gateway.
fn tls_client(
    cert: &TestCert,
    addr: SocketAddr,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> reqwest::Client {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .resolve("localhost", addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

static ALL_VERSIONS: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1_ONLY: &[&[u8]] = &[b"http/1.1"];

fn https_url(app: &TestApp, path: &str) -> String {
    format!("https://localhost:{}{path}", app.addr.port())
}

fn header<'a>(r: &'a crate::helpers::Received, name: &str) -> &'a str {
    r.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

#[tokio::test]
async fn requests_over_tls_are_proxied_and_marked_https_for_the_upstream() {
    let (app, cert) = spawn_tls_app("1.2").await;
    let client = tls_client(&cert, app.addr, ALL_VERSIONS, H2_AND_H1);

    let resp = client.get(https_url(&app, "/hello?x=1")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/hello?x=1");
    let got = app.upstream.last();
    assert_eq!(got.path_and_query, "/hello?x=1");
    assert_eq!(header(&got, "x-forwarded-proto"), "https");
    let forwarded = header(&got, "forwarded");
    assert!(forwarded.contains("proto=https"), "forwarded: {forwarded}");
    assert!(!forwarded.contains("proto=http;"), "forwarded: {forwarded}");
}

#[tokio::test]
async fn plain_http_listener_marks_requests_http_not_https() {
    // The counterpart of the test above: without TLS the gateway must not claim https.
    let app = spawn_app().start().await;
    assert_eq!(app.get("/plain").await.status(), 200);
    let got = app.upstream.last();
    assert_eq!(header(&got, "x-forwarded-proto"), "http");
    assert!(header(&got, "forwarded").contains("proto=http"));
    assert!(!header(&got, "forwarded").contains("proto=https"));
}

/// A bare HTTP/1.1 upstream that records each request line and answers 200 "ok", so a test
/// can see which HTTP version the gateway used on the upstream hop.
async fn request_line_upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = lines.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if crate::helpers::read_head(&mut s, &mut buf).await.is_none() {
                    return;
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                seen.lock().unwrap().push(head.lines().next().unwrap_or_default().to_owned());
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    (addr, lines)
}

#[tokio::test]
async fn alpn_h2_client_speaks_http2_to_the_gateway_and_the_upstream_gets_http11() {
    let (app, cert) = spawn_tls_app("1.2").await;
    let client = tls_client(&cert, app.addr, ALL_VERSIONS, H2_AND_H1);

    let resp = client.get(https_url(&app, "/over-h2")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/over-h2");
    assert_eq!(app.upstream.hits(), 1);
    assert_eq!(app.upstream.last().path_and_query, "/over-h2");
}

#[tokio::test]
async fn http2_requests_reach_the_upstream_as_http11() {
    let (raw_upstream, lines) = request_line_upstream().await;
    let tc = test_cert();
    let tls = TlsSettings::new(tc.cert.clone(), tc.key.clone(), "1.2");
    let app = spawn_app()
        .with(move |s, _| {
            s.server.tls = Some(tls);
            s.routes[0].upstream = format!("http://{raw_upstream}");
        })
        .start()
        .await;
    let client = tls_client(&tc, app.addr, ALL_VERSIONS, H2_AND_H1);

    let resp = client.get(https_url(&app, "/raw?q=2")).send().await.unwrap();

    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
    assert_eq!(*lines.lock().unwrap(), vec!["GET /raw?q=2 HTTP/1.1".to_owned()]);
}

#[tokio::test]
async fn http11_only_client_gets_http11() {
    let (app, cert) = spawn_tls_app("1.2").await;
    let client = tls_client(&cert, app.addr, ALL_VERSIONS, H1_ONLY);

    let resp = client.get(https_url(&app, "/over-h1")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["path"], "/over-h1");
    assert_eq!(header(&app.upstream.last(), "x-forwarded-proto"), "https");
}

#[tokio::test]
async fn tls12_client_connects_when_the_minimum_is_12() {
    let (app, cert) = spawn_tls_app("1.2").await;
    let client = tls_client(&cert, app.addr, &[&rustls::version::TLS12], H2_AND_H1);

    let resp = client.get(https_url(&app, "/tls12")).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(app.upstream.last().path_and_query, "/tls12");
}

#[tokio::test]
async fn tls12_client_is_refused_when_the_minimum_is_13() {
    let (app, cert) = spawn_tls_app("1.3").await;
    let old = tls_client(&cert, app.addr, &[&rustls::version::TLS12], H2_AND_H1);
    let new = tls_client(&cert, app.addr, &[&rustls::version::TLS13], H2_AND_H1);

    let refused = old.get(https_url(&app, "/old")).send().await;
    assert!(refused.is_err(), "a TLS 1.2-only client must not connect: {refused:?}");
    assert_eq!(app.upstream.hits(), 0, "nothing may be forwarded for the refused client");

    let resp = new.get(https_url(&app, "/new")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(app.upstream.hits(), 1);
    assert_eq!(app.upstream.last().path_and_query, "/new");
}

#[tokio::test]
async fn client_not_trusting_the_certificate_is_refused() {
    let (app, _) = spawn_tls_app("1.2").await;
    let other = test_cert();
    let client = tls_client(&other, app.addr, ALL_VERSIONS, H2_AND_H1);

    let res = client.get(https_url(&app, "/untrusted")).send().await;

    assert!(res.is_err(), "the handshake must fail against an unknown certificate: {res:?}");
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_not_proxied() {
    let (app, cert) = spawn_tls_app("1.2").await;

    let answer = app.raw(b"GET /plain HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    // Also through an HTTP client, which must fail rather than get an answer.
    let res = app.client.get(app.url("/plain-client")).send().await;

    assert!(!answer.contains("HTTP/1.1 200"), "plain HTTP got an answer: {answer:?}");
    assert!(!answer.contains("/plain"), "plain HTTP got an echo: {answer:?}");
    assert!(res.is_err() || !res.unwrap().status().is_success());
    assert_eq!(app.upstream.hits(), 0, "a plain-HTTP request on the TLS port must not reach the upstream");
    // The listener still serves TLS clients afterwards.
    let client = tls_client(&cert, app.addr, ALL_VERSIONS, H2_AND_H1);
    assert_eq!(client.get(https_url(&app, "/after")).send().await.unwrap().status(), 200);
    assert_eq!(app.upstream.hits(), 1);
}

#[test]
fn validation_reports_a_missing_certificate_file_under_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let tc = test_cert();
    let mut loaded = Loaded::defaults();
    loaded.settings.data_dir = dir.path().to_owned();
    loaded.settings.server.tls = Some(TlsSettings::new(dir.path().join("missing-cert.pem"), tc.key.clone(), "1.2"));

    let err = loaded.validate().unwrap_err();

    assert!(err.problems.iter().any(|p| p.key == "server.tls.cert"), "problems: {err}");
    assert!(!err.problems.iter().any(|p| p.key == "server.tls.key"), "the key file is fine: {err}");
    assert!(err.to_string().contains("missing-cert.pem"), "the message names the file: {err}");
}

#[test]
fn validation_accepts_a_readable_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let tc = test_cert();
    let mut loaded = Loaded::defaults();
    loaded.settings.data_dir = dir.path().to_owned();
    loaded.settings.server.tls = Some(TlsSettings::new(tc.cert.clone(), tc.key.clone(), "1.3"));

    assert!(loaded.validate().is_ok());

    loaded.settings.server.tls = Some(TlsSettings::new(tc.cert.clone(), tc.key.clone(), "1.1"));
    let err = loaded.validate().unwrap_err();
    assert!(err.problems.iter().any(|p| p.key == "server.tls.min_version"), "problems: {err}");
}

/// An https upstream for `localhost` with `cert`: counts finished TLS handshakes and answers
/// every request on a connection with `secure <connection number>`.
async fn https_upstream(cert: &TestCert) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use rustls::pki_types::pem::PemObject as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, count) = (acceptor.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let mut buf = Vec::new();
                loop {
                    if crate::helpers::read_head(&mut tls, &mut buf).await.is_none() {
                        return;
                    }
                    buf.clear();
                    let body = format!("secure {n}");
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if tls.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, handshakes)
}

async fn app_before_https(upstream: SocketAddr, ca: Option<PathBuf>) -> TestApp {
    let url = format!("https://localhost:{}", upstream.port());
    spawn_app()
        .without_default_route()
        .with(move |s, _| {
            let mut r = crate::helpers::route("secure", "/", &url);
            r.upstream_ca_file = ca;
            s.routes.push(r);
        })
        .start()
        .await
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_route_ca_and_pooled() {
    let cert = test_cert();
    let (upstream, handshakes) = https_upstream(&cert).await;
    let app = app_before_https(upstream, Some(cert.cert.clone())).await;
    for _ in 0..3 {
        let resp = app.get("/x").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "secure 1", "one TLS connection, kept alive");
    }
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_https_upstream_with_an_untrusted_certificate_gets_nothing() {
    let cert = test_cert();
    let (upstream, handshakes) = https_upstream(&cert).await;
    let app = app_before_https(upstream, None).await;
    assert_eq!(app.get("/secret?name=Angela").await.status(), 502);
    assert_eq!(handshakes.load(std::sync::atomic::Ordering::SeqCst), 0, "no TLS session, so no request, was made");
}
