//! Protocol upgrades through the gateway: a WebSocket session to the upstream's echo.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{spawn_app, spawn_app_before};

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
    // The gateway's own lines reach hyper's client on this path too, each once.
    assert_eq!(h("host"), Some(app.upstream.addr.to_string()));
    assert_eq!(got.headers.get_all("x-request-id").iter().count(), 1);
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

/// A WebSocket echo upstream that completes the closing handshake (the shared test upstream
/// drops the socket on a close frame without answering it), and closes by itself with code
/// 1000 and reason "bye" when sent the text "close".
async fn closing_ws_upstream() -> std::net::SocketAddr {
    use axum::extract::ws::{CloseFrame, Message as AxMessage, WebSocketUpgrade};
    let app = axum::Router::new().route(
        "/ws",
        axum::routing::get(|ws: WebSocketUpgrade| async move {
            ws.on_upgrade(|mut socket| async move {
                // After a client close, the next recv sends tungstenite's queued close reply
                // and ends the stream.
                while let Some(Ok(msg)) = socket.recv().await {
                    let reply = match msg {
                        AxMessage::Text(t) if t.as_str() == "close" => {
                            AxMessage::Close(Some(CloseFrame { code: 1000, reason: "bye".into() }))
                        }
                        AxMessage::Text(t) => AxMessage::Text(format!("echo: {}", t.as_str()).into()),
                        _ => continue,
                    };
                    if socket.send(reply).await.is_err() {
                        break;
                    }
                }
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn client_close_completes_the_closing_handshake_through_the_gateway() {
    let upstream = closing_ws_upstream().await;
    let app = spawn_app_before(upstream).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr)).await.unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap().unwrap(), Message::text("echo: hi"));

    ws.close(None).await.unwrap();

    // The upstream's close reply travels back through the tunnel, then the stream ends.
    assert!(matches!(next(&mut ws).await, Some(Ok(Message::Close(_)))), "no close reply from the upstream");
    assert!(next(&mut ws).await.is_none(), "the session must end after the closing handshake");
}

#[tokio::test]
async fn upstream_close_frame_reaches_the_client_with_its_code_and_reason() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let upstream = closing_ws_upstream().await;
    let app = spawn_app_before(upstream).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", app.addr)).await.unwrap();

    ws.send(Message::text("close")).await.unwrap();

    match next(&mut ws).await {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code, CloseCode::Normal);
            assert_eq!(frame.reason.as_str(), "bye");
        }
        other => panic!("expected the upstream's close frame, got {other:?}"),
    }
    // tungstenite answers the close; the session then ends without error.
    assert!(matches!(next(&mut ws).await, None | Some(Ok(Message::Close(_)))));
}
