//! Protocol upgrades through the gateway: a WebSocket session to the upstream's echo.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::spawn_app;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message, failing the test rather than hanging.
async fn next(ws: &mut Ws) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("no WebSocket message within 5 s")
}

#[tokio::test]
async fn websocket_text_and_binary_messages_are_echoed_through_the_gateway() {
    let app = spawn_app().start().await;

    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr)).await.unwrap();
    assert_eq!(resp.status(), 101);

    ws.send(Message::text("bonjour")).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::text("echo: bonjour"));

    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    ws.send(Message::binary(payload.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::binary(payload));

    // Several messages in flight keep their order.
    for i in 0..10 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..10 {
        assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::text(format!("echo: m{i}")));
    }

    ws.close(None).await.unwrap();
    // After our close, the session ends: the peer's close frame or the end of the stream, and
    // no further data.
    loop {
        match next(&mut ws).await {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(other)) => panic!("unexpected message after close: {other:?}"),
            Some(Err(e)) => panic!("the session did not close cleanly: {e}"),
        }
    }
    // Only the upgrade request went over HTTP.
    assert_eq!(app.upstream.hits(), 1);
}

#[tokio::test]
async fn websocket_upgrade_headers_reach_the_upstream_but_reserved_headers_do_not() {
    let app = spawn_app().start().await;
    let mut req = format!("ws://{}/ws", app.addr).into_client_request().unwrap();
    req.headers_mut().insert("x-guichet-subject", "forged-admin".parse().unwrap());
    req.headers_mut().insert("X-Guichet-Roles", "admin".parse().unwrap());

    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::text("echo: ping"));

    let got = app.upstream.last();
    assert_eq!(got.path_and_query, "/ws");
    let h = |name: &str| got.headers.get(name).map(|v| v.to_str().unwrap().to_ascii_lowercase());
    assert_eq!(h("upgrade").as_deref(), Some("websocket"));
    assert_eq!(h("connection").as_deref(), Some("upgrade"));
    assert!(got.headers.contains_key("sec-websocket-key"));
    assert!(!got.headers.contains_key("x-guichet-subject"), "a client-sent X-Guichet-Subject reached the upstream");
    assert!(!got.headers.contains_key("x-guichet-roles"), "a client-sent X-Guichet-Roles reached the upstream");
    assert!(h("forwarded").is_some_and(|f| f.contains("proto=http")));
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_sessions_are_independent() {
    let app = spawn_app().start().await;
    let url = format!("ws://{}/ws", app.addr);
    let (mut a, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(url.as_str()).await.unwrap();

    a.send(Message::text("from a")).await.unwrap();
    b.send(Message::text("from b")).await.unwrap();

    assert_eq!(next(&mut b).await.unwrap().unwrap(), Message::text("echo: from b"));
    assert_eq!(next(&mut a).await.unwrap().unwrap(), Message::text("echo: from a"));
    assert_eq!(app.upstream.hits(), 2);
    a.close(None).await.unwrap();
    b.close(None).await.unwrap();
}

#[tokio::test]
async fn tmp_direct_close() {
    let up = crate::helpers::TestUpstream::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", up.addr)).await.unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::text("echo: x"));
    ws.close(None).await.unwrap();
    let m = next(&mut ws).await;
    panic!("direct: {m:?}");
}
