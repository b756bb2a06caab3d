//! Idle keep-alive connections (`server.keepalive_timeout`, docs/configuration.md): a client
//! connection that waits for its next request longer than the timeout is closed, and one that
//! keeps sending requests, or waits on a slow answer, is not.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{read_head, spawn_app};

const GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: gateway.test\r\n\r\n";

/// Reads one whole response (`Content-Length` framing) off `s`; its head.
async fn response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), read_head(s, &mut buf)).await.unwrap().expect("no answer");
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("a Content-Length");
    while buf.len() < n + len {
        let mut chunk = [0u8; 4096];
        let k = s.read(&mut chunk).await.unwrap();
        assert!(k > 0, "closed in the middle of an answer");
        buf.extend_from_slice(&chunk[..k]);
    }
    head
}

/// True when the gateway closes `s` within `within` (end of stream or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(within, s.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn keepalive_idle_connection_is_closed_after_the_configured_timeout() {
    let app = spawn_app().with(|s, _| s.server.keepalive_timeout = Duration::from_millis(500)).start().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
    // Far longer than the timeout, shorter than the 30 s default: closed by the setting.
    assert!(closed_within(&mut s, Duration::from_secs(20)).await, "the idle connection stays open");
}

#[tokio::test]
async fn keepalive_a_connection_that_sends_nothing_is_closed_after_the_timeout() {
    let app = spawn_app().with(|s, _| s.server.keepalive_timeout = Duration::from_millis(500)).start().await;
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(20)).await, "a silent connection stays open");
    // A connection that speaks in time is served as before.
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn keepalive_connection_in_use_is_not_closed() {
    let app = spawn_app().with(|s, _| s.server.keepalive_timeout = Duration::from_secs(1)).start().await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    // Requests one after the other for longer than the timeout, on one connection.
    for _ in 0..8 {
        s.write_all(GET).await.unwrap();
        assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(app.upstream.hits(), 8);
}

#[tokio::test]
async fn keepalive_timeout_does_not_cut_a_request_waiting_for_a_slow_upstream() {
    // An upstream that answers 3 s after the head arrives: three times the gateway's timeout.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(n) = read_head(&mut conn, &mut buf).await {
                    buf.drain(..n);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow";
                    if conn.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let base = format!("http://{upstream}");
    let app = spawn_app()
        .without_default_route()
        .with(move |s, _| {
            s.server.keepalive_timeout = Duration::from_secs(1);
            s.routes.push(crate::helpers::route("special", "/", &base));
        })
        .start()
        .await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"), "the slow answer arrives");
    // And the connection is still usable afterwards.
    s.write_all(GET).await.unwrap();
    assert!(response(&mut s).await.starts_with("HTTP/1.1 200"));
}
