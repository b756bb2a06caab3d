//! Forwarding behaviour: headers, routes, errors the gateway produces.

use std::time::Duration;

use guichet::config::ClientAddress;

use crate::helpers::{closed_port, route, spawn_app};

#[tokio::test]
async fn forwards_method_path_and_query_to_the_upstream() {
    let app = spawn_app().start().await;
    let resp = app.client.post(app.url("/dossiers/42?tri=date")).body("x").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let got = app.upstream.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path_and_query, "/dossiers/42?tri=date");
    assert_eq!(got.headers["host"], app.upstream.addr.to_string());
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(got.headers["x-request-id"], resp.headers()["x-request-id"]);
}

#[tokio::test]
async fn reserved_x_guichet_headers_never_reach_the_upstream_whatever_their_case() {
    let app = spawn_app().start().await;
    let raw = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nX-Guichet-Subject: forged\r\nx-GUICHET-claim-email: a@b.fr\r\n\
         X-Guichet-Assertion: eyJ\r\nx-guichet-purpose: spoof\r\nX-Guichetless: kept\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let answer = app.raw(raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = app.upstream.last();
    let reserved: Vec<_> = got.headers.keys().filter(|k| k.as_str().starts_with("x-guichet-")).collect();
    assert!(reserved.is_empty(), "reserved headers reached the upstream: {reserved:?}");
    assert_eq!(got.headers["x-guichetless"], "kept");
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_removed() {
    let app = spawn_app().start().await;
    let raw = format!(
        "GET /echo HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive, X-Hop-Secret\r\nX-Hop-Secret: 1\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nUpgrade: h2c\r\nX-End: kept\r\n\r\n",
        app.addr
    );
    let answer = app.raw(raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let h = app.upstream.last().headers;
    for gone in ["x-hop-secret", "keep-alive", "te", "proxy-authorization", "upgrade"] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream");
    }
    assert_ne!(
        h.get("connection").map(|v| v.to_str().unwrap().to_ascii_lowercase()),
        Some("keep-alive, x-hop-secret".into())
    );
    assert_eq!(h["x-end"], "kept");
}

#[tokio::test]
async fn hop_by_hop_response_headers_are_removed() {
    let app = spawn_app().start().await;
    let resp = app.get("/hop").await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    for gone in ["x-private-hop", "keep-alive", "proxy-authenticate", "trailer"] {
        assert!(!h.contains_key(gone), "{gone} reached the client");
    }
    assert_eq!(h["x-end-to-end"], "kept");
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_client_are_replaced() {
    let app = spawn_app().with(|s, _| s.routes[0].client_address = ClientAddress::Full).start().await;
    app.client
        .get(app.url("/echo"))
        .header("x-forwarded-for", "203.0.113.66")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=203.0.113.66")
        .send()
        .await
        .unwrap();
    let h = app.upstream.last().headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], app.addr.to_string());
    let fwd = h["forwarded"].to_str().unwrap();
    assert!(fwd.starts_with("for=127.0.0.1;proto=http;host="), "{fwd}");
    assert!(!fwd.contains("203.0.113.66"));
}

#[tokio::test]
async fn forwarded_headers_from_a_trusted_proxy_are_kept_and_extended() {
    let app = spawn_app()
        .with(|s, _| {
            s.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            s.routes[0].client_address = ClientAddress::Full;
        })
        .start()
        .await;
    app.client
        .get(app.url("/echo"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=203.0.113.7;proto=https")
        .header("x-request-id", "front-proxy-id-1")
        .send()
        .await
        .unwrap();
    let h = app.upstream.last().headers;
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert!(h["forwarded"].to_str().unwrap().starts_with("for=203.0.113.7;proto=https, for=127.0.0.1"));
    assert_eq!(h["x-request-id"], "front-proxy-id-1");
}

#[tokio::test]
async fn an_untrusted_client_cannot_choose_the_request_id() {
    let app = spawn_app().start().await;
    let resp = app.client.get(app.url("/echo")).header("x-request-id", "chosen-by-attacker").send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"], "chosen-by-attacker");
    assert_ne!(app.upstream.last().headers["x-request-id"], "chosen-by-attacker");
}

#[tokio::test]
async fn routes_match_by_host_and_longest_prefix_and_can_strip_it() {
    let app = spawn_app()
        .without_default_route()
        .with(|s, up| {
            let base = format!("http://{up}");
            s.routes.push(route("root", "/", &base));
            let mut api = route("api", "/api", &format!("{base}/v2"));
            api.strip_prefix = true;
            s.routes.push(api);
            let mut hosted = route("hosted", "/", &format!("{base}/hosted"));
            hosted.host = Some("cantine.mairie.test".into());
            s.routes.push(hosted);
        })
        .start()
        .await;
    app.get("/api/users?x=1").await;
    assert_eq!(app.upstream.last().path_and_query, "/v2/users?x=1");
    app.get("/apiary").await;
    assert_eq!(app.upstream.last().path_and_query, "/apiary");
    app.client.get(app.url("/menu")).header("host", "Cantine.Mairie.test:8080").send().await.unwrap();
    assert_eq!(app.upstream.last().path_and_query, "/hosted/menu");
}

#[tokio::test]
async fn no_route_is_a_404_problem() {
    let app = spawn_app().without_default_route().start().await;
    let resp = app.get("/anything").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:guichet:problem:no-route");
    assert_eq!(body["status"], 404);
}

#[tokio::test]
async fn upstream_down_is_a_502_problem_for_apis_and_a_french_page_for_browsers() {
    let dead = closed_port().await;
    let app = spawn_app()
        .without_default_route()
        .with(move |s, _| s.routes.push(route("dead", "/", &format!("http://{dead}"))))
        .start()
        .await;
    let resp = app.get("/x").await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:guichet:problem:upstream-unavailable");
    assert!(body["request_id"].is_string());

    let resp = app.client.get(app.url("/x")).header("accept", "text/html,*/*;q=0.8").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    let page = resp.text().await.unwrap();
    assert!(page.contains("lang=\"fr\""));
    assert!(page.contains("Service indisponible"), "{page}");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let app = spawn_app().with(|s, _| s.routes[0].timeouts.response_headers = Duration::from_millis(300)).start().await;
    let started = std::time::Instant::now();
    let resp = app.get("/slow").await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout did not fire");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "urn:guichet:problem:upstream-timeout");
}

/// The response-head timeout starts once the request has been written: an upload slower than
/// it (but never idle for long) reaches the application whole.
#[tokio::test]
async fn a_slow_upload_is_not_cut_by_the_response_head_timeout() {
    let app = spawn_app().with(|s, _| s.routes[0].timeouts.response_headers = Duration::from_millis(300)).start().await;
    let chunks = futures_util::stream::unfold(0u8, |n| async move {
        if n == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 1000])), n + 1))
    });
    let resp = app.client.post(app.url("/count")).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "an upload of 750 ms was cut by a 300 ms response-head timeout");
    let counted: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(counted["bytes"], 5000);
}

/// Stopping: idle keep-alive connections are closed at once, a request in flight is served to
/// its end (within the grace period), then its connection closes too.
#[tokio::test]
async fn stopping_closes_idle_connections_at_once_and_lets_requests_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().start().await;
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"POST /count HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"}") {
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(buf.get(..n).unwrap());
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));

    let chunks = futures_util::stream::unfold(0u8, |n| async move {
        if n == 5 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a'; 1000])), n + 1))
    });
    let upload = tokio::spawn(app.client.post(app.url("/count")).body(reqwest::Body::wrap_stream(chunks)).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.stop());

    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the idle connection was not closed");
    assert!(!upload.is_finished(), "the idle connection was closed only after the upload, at the grace's end");
    let resp = upload.await.unwrap().expect("the upload in flight was cut");
    assert_eq!(resp.status(), 200);
    let counted: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(counted["bytes"], 5000);
    stopping.await.unwrap();
}

/// Each pooled connection keeps one response-head timer, moved on for every request: it must
/// still fire for a slow answer after fast ones, after the connection sat idle past a
/// deadline, and never for the fast requests around it.
#[tokio::test]
async fn the_response_head_timeout_holds_for_every_request_on_a_pooled_connection() {
    let app = spawn_app().with(|s, _| s.routes[0].timeouts.response_headers = Duration::from_millis(300)).start().await;
    for _ in 0..3 {
        assert_eq!(app.get("/echo").await.status(), 200);
    }
    // Idle in the pool past the last request's deadline: its timer comes due unobserved.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get("/echo").await.status(), 200, "a stale deadline failed a fast request");
    let started = std::time::Instant::now();
    let resp = app.get("/slow").await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5), "the timeout did not fire on a reused connection");
    for _ in 0..3 {
        assert_eq!(app.get("/echo").await.status(), 200, "a request after the timeout failed");
    }
}

#[tokio::test]
async fn an_unreachable_upstream_connect_times_out_as_504() {
    // 192.0.2.0/24 (TEST-NET-1) is never routed; with no network here the connect either hangs
    // (timeout → 504) or fails at once (→ 502). Both are gateway errors; never a hang.
    let app = spawn_app()
        .without_default_route()
        .with(|s, _| {
            let mut r = route("blackhole", "/", "http://192.0.2.1:81");
            r.timeouts.connect = Duration::from_millis(200);
            s.routes.push(r);
        })
        .start()
        .await;
    let resp = tokio::time::timeout(Duration::from_secs(5), app.get("/")).await.expect("the gateway hung");
    assert!(resp.status() == 504 || resp.status() == 502, "{}", resp.status());
}

#[tokio::test]
async fn oversized_headers_get_431_and_are_not_forwarded() {
    let app = spawn_app().start().await;
    let big = "a".repeat(40 * 1024);
    let resp = app.client.get(app.url("/echo")).header("x-big", big).send().await.unwrap();
    assert_eq!(resp.status(), 431);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_is_not_forwarded() {
    let app = spawn_app().with(|s, _| s.routes[0].max_body_bytes = Some(1000)).start().await;
    let resp = app.client.post(app.url("/count")).body(vec![b'x'; 1001]).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("1000 bytes"));
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_the_upstream() {
    let app = spawn_app().start().await;
    let host = app.addr;
    let cases = [
        format!("GET /echo HTTP/1.1\r\nHost: {host}\r\nHost: other.example\r\nConnection: close\r\n\r\n"),
        "GET /echo HTTP/1.1\r\nConnection: close\r\n\r\n".to_owned(),
        format!("GET /a/%2e%2e/admin HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        format!("GET /%2Eguichet/health/live HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        "THIS IS NOT HTTP\r\n\r\n".to_owned(),
        format!("CONNECT {host} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    ];
    for raw in &cases {
        let answer = app.raw(raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "for {raw:?} got {answer:?}");
    }
    assert_eq!(app.upstream.hits(), 0, "a malformed request reached the upstream");
    let answer = app.raw(cases[0].as_bytes()).await;
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn nothing_under_the_reserved_prefix_is_proxied() {
    let app = spawn_app().start().await;
    for path in ["/.guichet/unknown", "/.guichet", "/.guichet/api/v1/x?y=1"] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    assert_eq!(app.upstream.hits(), 0);
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let app = spawn_app().start().await;
    let resp = app.get("/download/notanumber").await;
    assert_eq!(resp.status(), 400);
    assert_ne!(resp.headers().get("content-type").map(|v| v.to_str().unwrap()), Some("application/problem+json"));
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let app = spawn_app().start().await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2.get(app.url("/echo")).header("cookie", "a=1").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(app.upstream.last().headers["host"], app.upstream.addr.to_string());
}

#[tokio::test]
async fn conflicting_body_framing_is_reframed_never_passed_on() {
    // Content-Length plus Transfer-Encoding is the request-smuggling shape. The wire parser
    // lets chunked win (RFC 9112 §6.3) and the gateway re-frames every body it forwards, so
    // the upstream never sees the conflict and the bytes after the last chunk are not glued
    // onto the forwarded request.
    let app = spawn_app().start().await;
    let raw = format!(
        "POST /count HTTP/1.1\r\nHost: {}\r\nContent-Length: 60\r\nTransfer-Encoding: chunked\r\n\r\n\
         3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        app.addr
    );
    let answer = app.raw(raw.as_bytes()).await;
    assert!(answer.contains("{\"bytes\":3}"), "{answer}");
    let first = &app.upstream.received()[0];
    assert_eq!(first.path_and_query, "/count");
    let both = first.headers.contains_key("content-length") && first.headers.contains_key("transfer-encoding");
    assert!(!both, "the upstream received conflicting framing");
}

/// A bare HTTP/1.1 upstream that counts its connections and either keeps each one open or
/// closes it after one response without saying so (as an upstream's idle timeout does).
async fn counting_upstream(
    close_after_each: bool,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if crate::helpers::read_head(&mut sock, &mut buf).await.is_none() {
                        return;
                    }
                    buf.clear();
                    let body = format!("connection {n}");
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    if sock.write_all(format!("{head}{body}").as_bytes()).await.is_err() {
                        return;
                    }
                    if close_after_each {
                        let _ = sock.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_reused() {
    let (upstream, accepted) = counting_upstream(false).await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    for _ in 0..20 {
        let resp = app.get("/a").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "connection 1");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one pooled connection served every request");
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_without_an_error() {
    let (upstream, accepted) = counting_upstream(true).await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    for i in 1..=5 {
        let resp = app.get("/a").await;
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), format!("connection {i}"));
        // Let the close reach the gateway while its connection is idle in the pool.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    // Back to back, the close may not have arrived yet: the request is then sent again on a
    // new connection only if nothing of it was written to the closed one.
    for i in 0..10 {
        assert_eq!(app.get("/a").await.status(), 200, "back-to-back request {i}");
    }
}

/// What a scripted upstream does with one request: answer these bytes, or close unanswered.
enum Reply {
    Bytes(Vec<u8>),
    Close,
}

/// A bare upstream that reads each request head (and a `Content-Length` body) and replies as
/// `script(connection number, request number on that connection, head)` says. Returns its
/// address and every request head it read, tagged with the connection number.
async fn scripted_upstream<F>(
    script: F,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<(usize, String)>>>)
where
    F: Fn(usize, usize, &str) -> Reply + Send + Sync + 'static,
{
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        let mut connections = 0;
        while let Ok((mut sock, _)) = listener.accept().await {
            connections += 1;
            let (conn, log, script) = (connections, log.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for nth in 1.. {
                    let Some(end) = crate::helpers::read_head(&mut sock, &mut buf).await else { return };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0usize);
                    while buf.len() < end + length {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    buf.drain(..end + length);
                    log.lock().unwrap().push((conn, head.clone()));
                    match script(conn, nth, &head) {
                        Reply::Bytes(b) => {
                            if sock.write_all(&b).await.is_err() {
                                return;
                            }
                        }
                        Reply::Close => return,
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn ok(body: &str) -> Reply {
    Reply::Bytes(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes())
}

#[tokio::test]
async fn bytes_past_the_end_of_an_answer_are_never_read_as_the_next_answer() {
    // An upstream (or something injected into its output) sends a second, forged response
    // glued after the first. Reusing that connection would hand the forged answer to the
    // next request, possibly another citizen's: the connection must be dropped instead.
    let (upstream, seen) = scripted_upstream(|conn, _, _| {
        if conn == 1 {
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"
                    .to_vec(),
            )
        } else {
            ok(&format!("connection {conn}"))
        }
    })
    .await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    assert_eq!(app.get("/a").await.text().await.unwrap(), "ok");
    assert_eq!(app.get("/b").await.text().await.unwrap(), "connection 2", "the forged answer was served");
    assert_eq!(seen.lock().unwrap().iter().map(|(c, _)| *c).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test]
async fn ambiguous_answers_are_refused_or_their_connection_dropped() {
    let (upstream, seen) = scripted_upstream(|conn, _, head| {
        if head.starts_with("GET /two-lengths") {
            Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".to_vec())
        } else if head.starts_with("GET /both") {
            Reply::Bytes(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    .to_vec(),
            )
        } else {
            ok(&format!("connection {conn}"))
        }
    })
    .await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    let resp = app.get("/two-lengths").await;
    assert_eq!(resp.status(), 502);
    assert!(!resp.text().await.unwrap().contains("hello"), "nothing of the doubtful answer reaches the client");
    let both = app.get("/both").await;
    assert_eq!(both.status(), 200);
    assert_eq!(both.text().await.unwrap(), "hello", "chunked wins over Content-Length");
    assert_eq!(app.get("/next").await.text().await.unwrap(), "connection 3", "no doubtful connection is reused");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_get_whose_pooled_connection_closes_unanswered_goes_again_but_a_post_does_not() {
    // The keep-alive race: the upstream closes an idle connection just as a request is
    // written to it. A GET without a body is idempotent and goes again on a new connection;
    // a POST is never sent twice, the client gets a 502.
    let (upstream, seen) =
        scripted_upstream(|conn, nth, _| if nth == 2 { Reply::Close } else { ok(&format!("connection {conn}")) }).await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    assert_eq!(app.get("/one").await.text().await.unwrap(), "connection 1");
    assert_eq!(app.get("/two").await.text().await.unwrap(), "connection 2", "the GET went again");
    let post = app.client.post(app.url("/three")).body("payload").send().await.unwrap();
    assert_eq!(post.status(), 502);
    let heads = seen.lock().unwrap().clone();
    let posts: Vec<_> = heads.iter().filter(|(_, h)| h.starts_with("POST /three")).collect();
    assert_eq!(posts.len(), 1, "the POST was sent once: {heads:?}");
    assert!(posts[0].1.to_ascii_lowercase().contains("content-length: 7"), "{}", posts[0].1);
}

#[tokio::test]
async fn chunked_answers_pass_through_and_keep_their_connection() {
    let (upstream, seen) = scripted_upstream(|_, _, _| {
        Reply::Bytes(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n2\r\nef\r\n0\r\nT: 1\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let app = crate::helpers::spawn_app_before(upstream).await;
    for _ in 0..3 {
        assert_eq!(app.get("/c").await.text().await.unwrap(), "abcdef");
    }
    assert!(seen.lock().unwrap().iter().all(|(c, _)| *c == 1), "chunked answers keep the connection");
}
