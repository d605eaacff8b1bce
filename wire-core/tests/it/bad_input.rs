//! Bad input of every kind gets a JSON 4xx that names the problem, and the node stays up.

use serde_json::{json, Value};
use wire_core::consensus::PROTOCOL_VERSION;

use crate::support::{http, Embedded};

async fn expect_error(resp: reqwest::Response, status: u16, code: &str, mention: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.expect("JSON error body");
    assert_eq!(body["error"], code, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.contains(mention),
        "detail {detail:?} should mention {mention:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_and_the_node_stays_up() {
    let n = Embedded::start().await;
    let c = http();

    // Malformed JSON and the wrong content type.
    let r = c
        .post(n.url("/kv/txn"))
        .header("content-type", "application/json")
        .body("{bad")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "JSON").await;
    let r = c.post(n.url("/kv/txn")).body("{}").send().await.unwrap();
    expect_error(r, 415, "unsupported_media_type", "application/json").await;
    let r = c
        .post(n.url("/kv/txn"))
        .json(&json!({"compare": [], "succes": []}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "succes").await;
    let r = c
        .post(n.url("/cluster/join"))
        .json(&json!({"node_id": "x"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "node_id").await;

    // Unknown routes and methods.
    let r = c.get(n.url("/no/such/route")).send().await.unwrap();
    expect_error(r, 404, "not_found", "route").await;
    let r = c.post(n.url("/status")).send().await.unwrap();
    expect_error(r, 405, "method_not_allowed", "method").await;

    // Oversized values and bodies, with the limit stated.
    let big = vec![b'x'; wire_core::kv::MAX_VALUE_BYTES + 1];
    let r = c.put(n.url("/kv/big")).body(big).send().await.unwrap();
    expect_error(r, 413, "too_large", "1048576").await;
    let huge = vec![b'x'; wire_core::http::MAX_BODY_BYTES + 1];
    let r = c.put(n.url("/kv/huge")).body(huge).send().await.unwrap();
    expect_error(r, 413, "too_large", "4194304").await;

    // Bad keys: invalid UTF-8, control characters, too long.
    let r = c.get(n.url("/kv/%FF%FE")).send().await.unwrap();
    expect_error(r, 400, "bad_request", "UTF-8").await;
    let r = c.put(n.url("/kv/a%0Ab")).body("v").send().await.unwrap();
    expect_error(r, 400, "bad_request", "control character").await;
    let long = "k".repeat(wire_core::kv::MAX_KEY_BYTES + 1);
    let r = c
        .put(n.url(&format!("/kv/{long}")))
        .body("v")
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "1024").await;

    // Bad query parameters.
    let r = c
        .get(n.url("/kv/a?consistency=eventual"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "eventual").await;
    let r = c.get(n.url("/kv?limit=many")).send().await.unwrap();
    expect_error(r, 400, "bad_request", "limit").await;
    let r = c.get(n.url("/kv?limit=0")).send().await.unwrap();
    expect_error(r, 400, "bad_request", "limit").await;
    let r = c.get(n.url("/kv?pefix=a")).send().await.unwrap();
    expect_error(r, 400, "bad_request", "pefix").await;
    let r = c
        .delete(n.url("/cluster/members/abc"))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "abc").await;
    let r = c.delete(n.url("/cluster/members/77")).send().await.unwrap();
    expect_error(r, 404, "not_found", "77").await;
    let r = c.delete(n.url("/cluster/members/1")).send().await.unwrap();
    expect_error(r, 409, "conflict", "only voter").await;

    // Joins that conflict with a member, or carry bad addresses.
    let me = n.node.cluster().status().await.unwrap();
    let r = c
        .post(n.url("/cluster/join"))
        .json(&json!({"node_id": 2, "http_addr": me.http_addr, "raft_addr": "127.0.0.1:1"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 409, "conflict", "node 1 already uses").await;
    let r = c
        .post(n.url("/cluster/join"))
        .json(&json!({"node_id": 2, "http_addr": "nowhere", "raft_addr": "127.0.0.1:1"}))
        .send()
        .await
        .unwrap();
    expect_error(r, 400, "bad_request", "http_addr").await;

    // Garbage on the Raft listener is refused, not fatal; so is a call from a peer of
    // another protocol version (or none), with both versions named.
    let raft = format!("http://{}/raft/append", n.node.raft_addr());
    let r = c
        .post(&raft)
        .header("wire-protocol", PROTOCOL_VERSION.to_string())
        .body(vec![0xc1u8, 0x00, 0x13])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let other = (PROTOCOL_VERSION + 1).to_string();
    for version in [None, Some(other.as_str())] {
        let mut call = c.post(&raft).body(vec![0x80u8]);
        if let Some(v) = version {
            call = call.header("wire-protocol", v);
        }
        let r = call.send().await.unwrap();
        assert_eq!(r.status(), 400);
        let why = r.text().await.unwrap();
        assert!(
            why.contains(&format!("Wire protocol {PROTOCOL_VERSION}")),
            "{why}"
        );
    }

    // After all that the node still serves writes and reads.
    let r = c.put(n.url("/kv/still")).body("up").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        c.get(n.url("/kv/still"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "up"
    );
    n.node.shutdown().await.unwrap();
}
