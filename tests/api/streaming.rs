//! Bodies stream through the gateway: constant memory for huge transfers (checked on the real
//! binary), body limits enforced while streaming, and stalled bodies cut by the idle timeout.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::helpers::{GatewayProcess, TestUpstream, init, spawn_app};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const CHUNK: usize = 64 * 1024;

/// A stream of `total` zero bytes in 64 KiB chunks (the same chunk shared, so the test process
/// itself stays small).
fn zeros(total: u64) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Sync + 'static {
    let chunk = Bytes::from(vec![0u8; CHUNK]);
    let full = total / CHUNK as u64;
    let rest = usize::try_from(total % CHUNK as u64).unwrap();
    let tail = (rest > 0).then(|| chunk.slice(..rest));
    futures_util::stream::iter((0..full).map(move |_| Ok(chunk.clone())).chain(tail.map(Ok)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_a_gigabyte_each_way_streams_through_the_real_binary_in_flat_memory() {
    const TOTAL: u64 = 512 * MIB;
    const PEAK_LIMIT: u64 = 96 * MIB;
    init();
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(dir.path(), upstream.addr, "warn").await;
    let client = reqwest::Client::new();
    let baseline = gw.peak_rss();

    // Upload without Content-Length: the gateway cannot know the size in advance.
    let resp = client
        .post(format!("http://{}/count", gw.addr))
        .body(reqwest::Body::wrap_stream(zeros(TOTAL)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let counted: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(counted["bytes"], TOTAL, "the upstream must receive every byte");
    let got = upstream.last();
    assert!(got.headers.get("content-length").is_none(), "the upload was streamed, not measured first");
    let after_upload = gw.peak_rss();

    let resp = client.get(format!("http://{}/download/{TOTAL}", gw.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.iter().all(|b| *b == 0));
        received += chunk.len() as u64;
    }
    assert_eq!(received, TOTAL, "the client must receive every byte");
    let peak = gw.peak_rss();

    assert!(
        peak < PEAK_LIMIT,
        "gateway peak RSS {} MiB (start {} MiB, after upload {} MiB) exceeds {} MiB: bodies are buffered",
        peak / MIB,
        baseline / MIB,
        after_upload / MIB,
        PEAK_LIMIT / MIB
    );
}

/// The answer's head as a raw client reads it (up to its blank line), within ten seconds.
async fn answer_head(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let read_head = async {
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_head).await.expect("an answer in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn chunked_upload_over_the_route_limit_is_refused_with_413() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().with(|s, _| s.routes[0].max_body_bytes = Some(MIB)).start().await;

    // A client that reads while it sends, as browsers do: the gateway answers as soon as the
    // limit is passed and closes the connection, and a client that only reads once it has
    // sent everything (reqwest) may see its next write fail first.
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(app.addr).await.unwrap().into_split();
    let head = format!("POST /count HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n", app.addr);
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..(2 * MIB / (64 * 1024)) {
            wr.write_all(b"10000\r\n").await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let answer = answer_head(&mut rd).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let _ = writer.await;
}

#[tokio::test]
async fn chunked_upload_at_the_route_limit_passes() {
    let app = spawn_app().with(|s, _| s.routes[0].max_body_bytes = Some(MIB)).start().await;

    let resp = app.client.post(app.url("/count")).body(reqwest::Body::wrap_stream(zeros(MIB))).send().await.unwrap();

    assert_eq!(resp.status(), 200);
    let counted: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(counted["bytes"], MIB);
}

#[tokio::test]
async fn declared_content_length_over_the_limit_is_refused_before_reaching_the_upstream() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().with(|s, _| s.routes[0].max_body_bytes = Some(MIB)).start().await;

    // Only the head: the refusal rests on the declared length, before any byte of the body is
    // read. (A client that sends the body meanwhile may find the connection closed under its
    // writes before it reads the answer; that race made this test flaky with reqwest.)
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!("POST /count HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n", app.addr, 2 * MIB);
    tcp.write_all(head.as_bytes()).await.unwrap();
    let answer = answer_head(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(app.upstream.hits(), 0, "the upstream must not be contacted for an oversized declared body");
}

#[tokio::test]
async fn a_client_still_sending_a_refused_body_reads_the_413() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app().with(|s, _| s.routes[0].max_body_bytes = Some(MIB)).start().await;

    // The gateway answers on the declared length, before reading the body. A client that
    // sends all of it before reading (reqwest does, many browsers do for uploads) must still
    // be able to send it and read the answer: the gateway reads and discards the rest
    // (lingering close) instead of closing under the client's writes.
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(app.addr).await.unwrap().into_split();
    let head = format!("POST /count HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n", app.addr, 2 * MIB);
    wr.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    for i in 0..(2 * MIB / (64 * 1024)) {
        // Pauses let the answer, and a close of the gateway's, reach the client in between.
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Err(e) = wr.write_all(&chunk).await {
            panic!("write {i} of the body failed ({e}): the gateway closed the connection under it");
        }
    }
    let answer = answer_head(&mut rd).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(app.upstream.hits(), 0, "nothing of the refused body reaches the upstream");
}

#[tokio::test]
async fn stalled_response_body_is_cut_by_the_idle_timeout() {
    let app = spawn_app().with(|s, _| s.routes[0].timeouts.idle_body = Duration::from_millis(300)).start().await;
    let started = Instant::now();

    let resp = app.get("/stall-body").await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("no first chunk");
    assert_eq!(first.unwrap().unwrap(), "first");

    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the gateway kept the stalled response open instead of cutting it");
    assert!(matches!(end, Some(Err(_))), "a cut body must end in an error, not look complete: {end:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
