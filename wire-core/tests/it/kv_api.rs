//! The key-value API over HTTP on one in-process node: round trips, pagination,
//! transactions, binary values.

use serde_json::{json, Value};

use crate::support::{get_json, get_text, http, json, post_json, Embedded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_round_trip() {
    let n = Embedded::start().await;
    let c = http();

    // A put answers after commit with its index; the key reads back at every consistency.
    let r = c
        .put(n.url("/kv/users/42"))
        .body("ada")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["existed"], false);
    assert!(body["index"].as_u64().unwrap() > 0);
    for consistency in ["linearizable", "leader", "local"] {
        let r = c
            .get(n.url(&format!("/kv/users/42?consistency={consistency}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "ada");
    }

    // Overwrite reports that the key existed; binary values survive byte for byte.
    let binary: Vec<u8> = (0u8..=255).collect();
    let r = c
        .put(n.url("/kv/users/42"))
        .body(binary.clone())
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["existed"], true);
    let got = c
        .get(n.url("/kv/users/42"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), binary.as_slice());

    // Delete, then the key is gone; deleting again says nothing was deleted.
    let r: Value = json(c.delete(n.url("/kv/users/42"))).await;
    assert_eq!(r["deleted"], true);
    let r = c.get(n.url("/kv/users/42")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r: Value = json(c.delete(n.url("/kv/users/42"))).await;
    assert_eq!(r["deleted"], false);

    // The key named `txn` is an ordinary key despite the /kv/txn route.
    c.put(n.url("/kv/txn")).body("t").send().await.unwrap();
    assert_eq!(get_text(&n.url("/kv/txn")).await, "t");

    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_paginates_by_prefix() {
    let n = Embedded::start().await;
    let c = http();
    for i in 0..25 {
        c.put(n.url(&format!("/kv/p/{i:02}")))
            .body(format!("v{i}"))
            .send()
            .await
            .unwrap();
    }
    c.put(n.url("/kv/q/other")).body("x").send().await.unwrap();
    c.put(n.url("/kv/bin"))
        .body(vec![0xffu8, 0xfe])
        .send()
        .await
        .unwrap();

    // Walk the prefix in pages of 10: 10 + 10 + 5, in key order, nothing outside the prefix.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = n.url("/kv?prefix=p/&limit=10");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = c.get(url).send().await.unwrap().json().await.unwrap();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["key"].as_str().unwrap().to_string());
        }
        if page["more"] == false {
            assert!(page["next_after"].is_null());
            break;
        }
        after = Some(page["next_after"].as_str().unwrap().to_string());
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("p/{i:02}")).collect();
    assert_eq!(seen, expected);

    // Non-UTF-8 values come back as base64.
    let page: Value = get_json(&n.url("/kv?prefix=bin")).await;
    assert_eq!(page["items"][0]["value_base64"], "//4=");
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_runs_one_branch_atomically() {
    let n = Embedded::start().await;
    let c = http();
    c.put(n.url("/kv/balance/a"))
        .body("10")
        .send()
        .await
        .unwrap();

    // All compares hold: the success branch runs (both writes).
    let txn = json!({
        "compare": [
            {"op": "equals", "key": "balance/a", "value": "10"},
            {"op": "absent", "key": "balance/b"}
        ],
        "success": [
            {"op": "put", "key": "balance/a", "value": "5"},
            {"op": "put", "key": "balance/b", "value_base64": "NQ=="}
        ],
        "failure": [{"op": "put", "key": "failed", "value": "1"}]
    });
    let r: Value = post_json(&n.url("/kv/txn"), &txn).await;
    assert_eq!(r["succeeded"], true);
    assert_eq!(get_text(&n.url("/kv/balance/a")).await, "5");
    assert_eq!(get_text(&n.url("/kv/balance/b")).await, "5");

    // The same transaction again: a compare fails, only the failure branch runs.
    let r: Value = post_json(&n.url("/kv/txn"), &txn).await;
    assert_eq!(r["succeeded"], false);
    assert_eq!(get_text(&n.url("/kv/balance/a")).await, "5");
    assert_eq!(get_text(&n.url("/kv/failed")).await, "1");

    // An invalid op anywhere rejects the whole transaction; nothing is written.
    let bad = json!({
        "compare": [{"op": "exists", "key": "balance/a"}],
        "success": [
            {"op": "delete", "key": "balance/a"},
            {"op": "put", "key": "", "value": "x"}
        ]
    });
    let r = c.post(n.url("/kv/txn")).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["detail"].as_str().unwrap().contains("success[1].key"),
        "{body}"
    );
    assert_eq!(get_text(&n.url("/kv/balance/a")).await, "5");
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_api_matches_http() {
    let n = Embedded::start().await;
    n.node.kv().put("lib", b"rust".to_vec()).await.unwrap();
    let c = http();
    assert_eq!(get_text(&n.url("/kv/lib")).await, "rust");
    c.put(n.url("/kv/lib")).body("http").send().await.unwrap();
    let got = n
        .node
        .kv()
        .get("lib", wire_core::Consistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"http"[..]));
    n.node.shutdown().await.unwrap();
    // After shutdown, calls fail cleanly instead of hanging.
    let err = n.node.kv().put("lib", b"late".to_vec()).await.unwrap_err();
    assert!(matches!(err, wire_core::Error::Shutdown), "{err}");
}
