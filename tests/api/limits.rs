//! Limits on what the gateway parses (docs/proxy.md, "Limits on what the gateway parses"): no
//! request body, however nested or however many parts it has, can stop the process, and a
//! request over a limit is refused with problem+json, nothing forwarded.

use crate::helpers::{GatewayProcess, TestUpstream, init};

const CANTINE: &str = include_str!("../../policies/cantine.toml");

/// The cantine activity (JSON and form fields declared) on a public route `/cantine`, served
/// by the real binary: a stack overflow aborts a process, and must not abort the test binary.
async fn gateway_with_declared_fields(dir: &std::path::Path, upstream: &TestUpstream) -> GatewayProcess {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/cantine.toml"), crate::helpers::lenient(CANTINE)).unwrap();
    let extra = format!(
        r#"[[routes]]
name = "cantine"
path_prefix = "/cantine"
upstream = "http://{}"
access = "public"
"#,
        upstream.addr
    );
    GatewayProcess::start_with(dir, upstream.addr, "info", &extra).await
}

/// `{"a":{"a":…"x"…}}` nested `depth` levels deep.
fn nested_objects(depth: usize) -> String {
    format!("{}\"x\"{}", "{\"a\":".repeat(depth), "}".repeat(depth))
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

async fn post(client: &reqwest::Client, base: &str, content_type: &str, body: String) -> reqwest::Response {
    client
        .post(format!("{base}/cantine/inscription"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_refused_over_a_limit(r: reqwest::Response, what: &str) {
    let status = r.status().as_u16();
    assert!(status == 413 || status == 422, "{what}: expected 413 or 422, got {status}");
    assert_eq!(r.headers()["content-type"], "application/problem+json", "{what}");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["status"], status, "{what}");
}

#[tokio::test]
async fn a_deeply_nested_json_body_is_refused_and_the_gateway_keeps_serving() {
    init();
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut gw = gateway_with_declared_fields(dir.path(), &upstream).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);

    for (what, body) in [
        ("objects 10 000 deep", nested_objects(10_000)),
        ("arrays 10 000 deep", nested_arrays(10_000)),
        ("arrays 100 000 deep", nested_arrays(100_000)),
        ("objects 65 deep", nested_objects(65)),
    ] {
        let r = client
            .post(format!("{base}/cantine/inscription"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let r = r.unwrap_or_else(|e| panic!("{what}: no answer ({e}); the gateway's log:\n{}", gw.log()));
        assert_refused_over_a_limit(r, what).await;
    }
    assert_eq!(upstream.hits(), 0, "nothing over a limit is forwarded");

    // The process is still there and serving: a second request goes through.
    gw.wait_until_live().await;
    let r = client.get(format!("{base}/cantine/menu")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.hits(), 1);

    // At the limit, a document is read as usual (here: anonymous, so sign-in is asked for
    // the encrypted field, which proves the document was parsed down to its fields).
    let r = post(&client, &base, "application/json", nested_objects(64)).await;
    assert_eq!(r.status(), 200, "64 levels hold no declared field and pass");
    let r = post(&client, &base, "application/json", r#"{"child_family_name":"Dupont"}"#.to_owned()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test]
async fn forms_and_json_bodies_with_too_many_parts_are_refused_and_nothing_is_forwarded() {
    init();
    let upstream = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway_with_declared_fields(dir.path(), &upstream).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", gw.addr);

    let many_pairs = |n: usize| (0..n).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&");
    let r = post(&client, &base, "application/x-www-form-urlencoded", many_pairs(1001)).await;
    assert_refused_over_a_limit(r, "a form of 1001 fields").await;
    let items = (0..10_001).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let r = post(&client, &base, "application/json", format!("{{\"a\":[{items}]}}")).await;
    assert_refused_over_a_limit(r, "a JSON document of 10 002 values").await;
    assert_eq!(upstream.hits(), 0, "nothing over a limit is forwarded");

    // Just under the limits, the same requests are read and forwarded.
    let r = post(&client, &base, "application/x-www-form-urlencoded", many_pairs(1000)).await;
    assert_eq!(r.status(), 200);
    let items = (0..9_999).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let r = post(&client, &base, "application/json", format!("{{\"a\":[{items}]}}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(upstream.hits(), 2);
}
