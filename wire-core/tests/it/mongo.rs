//! The MongoDB connector against a real MongoDB-protocol server (tests/services/ferretdb.sh
//! starts one: FerretDB 1.24 over SQLite, on 127.0.0.1), checked with an independent driver
//! client: MongoDB → Kafka by polling (stopped mid-run and resumed, new documents tailed),
//! a filtered one-off export by a field of its own, Kafka → MongoDB (upserts: running the
//! whole input again adds nothing; refused documents to dead letters with the server's
//! reason), the change-stream mode on a server that has none, and invalid specs.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Document};
use serde_json::{json, Value};

use crate::kafka::{broker, consume_all_from, create_topic, produce, set_state, topic, wait_read};
use crate::pipelines_run::{committed_lines, wait_state};
use crate::support::{create_pipeline, error_paths, eventually, get_json, http, service, Embedded};

/// The server's URI, starting it (once per test run) with the project's script.
pub fn ferretdb() -> &'static str {
    static URI: OnceLock<String> = OnceLock::new();
    URI.get_or_init(|| service("ferretdb.sh", "start", &[]))
}

/// A database name no other test run uses.
pub fn database(name: &str) -> String {
    topic(name).replace('-', "_")
}

pub async fn client(uri: &str) -> mongodb::Client {
    mongodb::Client::with_uri_str(uri).await.unwrap()
}

/// Every document of a collection, in `_id` order.
pub async fn find_all(uri: &str, db: &str, coll: &str) -> Vec<Document> {
    let c = client(uri).await;
    let mut cursor = c
        .database(db)
        .collection::<Document>(coll)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .unwrap();
    let mut out = Vec::new();
    while cursor.advance().await.unwrap() {
        out.push(cursor.deserialize_current().unwrap());
    }
    out
}

/// The integer `_id` of each document (stored from JSON numbers as int32 or int64).
pub fn int_ids(docs: &[Document]) -> Vec<i64> {
    docs.iter()
        .map(|d| {
            d.get_i64("_id")
                .or(d.get_i32("_id").map(i64::from))
                .unwrap()
        })
        .collect()
}

pub async fn count(uri: &str, db: &str, coll: &str) -> Option<u64> {
    client(uri)
        .await
        .database(db)
        .collection::<Document>(coll)
        .count_documents(doc! {})
        .await
        .ok()
}

async fn insert_orders(db: &str, from: i64, to: i64) -> Vec<ObjectId> {
    let docs: Vec<Document> = (from..to)
        .map(|i| doc! {"_id": ObjectId::new(), "n": i, "amount": i % 10})
        .collect();
    let ids = docs
        .iter()
        .map(|d| d.get_object_id("_id").unwrap())
        .collect();
    client(ferretdb())
        .await
        .database(db)
        .collection::<Document>("orders")
        .insert_many(docs)
        .await
        .unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_to_kafka_by_polling_resumes_after_a_pause_losing_and_repeating_nothing() {
    let node = Embedded::start().await;
    let db = database("m2k");
    let output = topic("m2k-out");
    create_topic(&output, 2).await;
    let mut ids = insert_orders(&db, 0, 1500).await;
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "m2k",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "mongodb", "config": {
                "uri": ferretdb(), "database": db, "collections": ["orders"],
                "mode": "poll", "poll_interval": "100ms", "batch_size": 200}}],
            "transforms": [{"type": "jq", "config": {"filter": "select(.amount > 4) | .big = true"}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": output}}]
        }),
    )
    .await;
    wait_read(&node, "m2k", 400).await;
    // Stop mid-run; documents inserted meanwhile are read once it resumes.
    set_state(&node, "m2k", "pause").await;
    wait_state(&node.url("/pipelines/m2k"), "paused").await;
    ids.extend(insert_orders(&db, 1500, 3000).await);
    set_state(&node, "m2k", "resume").await;

    let want: BTreeSet<i64> = (0..3000).filter(|i| i % 10 > 4).collect();
    let got = consume_all_from(broker(), &output, want.len());
    let ns: Vec<i64> = got.iter().map(|(_, v)| v["n"].as_i64().unwrap()).collect();
    let seen: BTreeSet<i64> = ns.iter().copied().collect();
    let missing: Vec<&i64> = want.difference(&seen).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let mut times = std::collections::BTreeMap::<i64, usize>::new();
    for n in &ns {
        *times.entry(*n).or_default() += 1;
    }
    let repeated: Vec<i64> = times
        .into_iter()
        .filter(|(_, t)| *t > 1)
        .map(|(n, _)| n)
        .collect();
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    assert_eq!(ns.len(), want.len());
    for (key, v) in &got {
        let n = v["n"].as_i64().unwrap() as usize;
        let hex = ids[n].to_hex();
        assert_eq!(v["_id"], json!({"$oid": hex}), "the _id as extended JSON");
        assert_eq!(key.as_deref(), Some(hex.as_str()), "keyed by _id");
        assert_eq!(v["big"], true);
    }
    // A checkpoint holds the last _id read as a token.
    let last = ids[2999].to_hex();
    eventually(
        Duration::from_secs(10),
        "the last _id checkpointed",
        || async {
            let status = get_json(&node.url("/pipelines/m2k")).await;
            status["partitions"][0]["positions"]["source0"]["orders"]
                .as_str()
                .is_some_and(|token| token.contains(&last))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_export_by_a_field_of_its_own_reads_each_match_once_and_finishes() {
    let node = Embedded::start().await;
    let db = database("export");
    // Inserted out of seq order, with string ids: order comes from `seq`, not `_id`.
    let docs: Vec<Document> = (0..500)
        .rev()
        .map(|i: i64| doc! {"_id": format!("id-{i:04}"), "seq": i, "kind": if i % 3 == 0 { "a" } else { "b" }})
        .collect();
    client(ferretdb())
        .await
        .database(&db)
        .collection::<Document>("events")
        .insert_many(docs)
        .await
        .unwrap();
    let out = node.dir.path().join("out");
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "export",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "mongodb", "config": {
                "uri": ferretdb(), "database": db, "collections": ["events"],
                "mode": "poll", "poll_field": "seq", "filter": {"kind": "a"},
                "batch_size": 64, "tail": false}}],
            "sinks": [{"type": "file", "config": {"path": out}}]
        }),
    )
    .await;
    let status = wait_state(&node.url("/pipelines/export"), "finished").await;
    assert_eq!(status["steps"]["source0"]["records_out"], 167, "{status}");
    let seqs: Vec<i64> = committed_lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let want: Vec<i64> = (0..500).filter(|i| i % 3 == 0).collect();
    assert_eq!(seqs, want, "each match once, in seq order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_mongodb_upserts_once_each_and_refused_documents_go_to_dead_letters() {
    let node = Embedded::start().await;
    let db = database("k2m");
    let input = topic("k2m-in");
    create_topic(&input, 2).await;
    let mut messages: Vec<(String, Vec<u8>)> = (0..400)
        .map(|i| {
            let v = json!({"id": i, "amount": i % 10, "tags": ["x", "y"], "at": {"$date": "2026-12-02T00:00:00Z"}});
            (format!("k{i}"), v.to_string().into_bytes())
        })
        .collect();
    // FerretDB refuses nested arrays; the sink itself refuses a non-object and an operator.
    messages.push((
        "bad1".into(),
        br#"{"id": 9001, "grid": [[1, 2], [3]]}"#.to_vec(),
    ));
    messages.push(("bad2".into(), b"[1, 2, 3]".to_vec()));
    messages.push(("bad3".into(), br#"{"id": 9002, "$set": {"a": 1}}"#.to_vec()));
    produce(&input, &messages);
    let dead = node.dir.path().join("dead");
    let spec = json!({
        "name": "k2m",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "sources": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topics": [input]}}],
        "sinks": [{"type": "mongodb", "config": {"uri": ferretdb(), "database": db,
                   "collection": "orders", "id_field": "id", "max_docs": 50}}],
        "dead_letter": {"type": "file", "config": {"path": dead}}
    });
    create_pipeline(&node.url("/pipelines"), &spec).await;
    eventually(Duration::from_secs(60), "every document", || async {
        (count(ferretdb(), &db, "orders").await? == 400).then_some(())
    })
    .await;
    let docs = find_all(ferretdb(), &db, "orders").await;
    let ids = int_ids(&docs);
    assert_eq!(ids, (0..400).collect::<Vec<i64>>());
    assert!(
        docs.iter().all(|d| d.get_datetime("at").is_ok()),
        "$date became a date"
    );

    let dead_letters: Vec<Value> = eventually(Duration::from_secs(30), "dead letters", || async {
        let lines = committed_lines(&dead);
        (lines.len() >= 3).then(|| {
            lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
    })
    .await;
    assert_eq!(dead_letters.len(), 3, "{dead_letters:?}");
    let reason = |raw: &str| {
        dead_letters
            .iter()
            .find(|d| d["raw"].as_str().is_some_and(|r| r.contains(raw)))
            .map(|d| d["error"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert!(reason("grid").contains("nested arrays"), "{dead_letters:?}");
    assert!(
        reason("[1,2,3]").contains("JSON object"),
        "{dead_letters:?}"
    );
    assert!(
        reason("$set").contains("cannot start with $"),
        "{dead_letters:?}"
    );

    // The same input from the start again (a new pipeline of the same name): upserts by _id
    // overwrite, so nothing is added.
    let r = http()
        .delete(node.url("/pipelines/k2m"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut again = spec.clone();
    again["transforms"] = json!([{"type": "jq", "config": {"filter": ".again = true"}}]);
    create_pipeline(&node.url("/pipelines"), &again).await;
    eventually(
        Duration::from_secs(60),
        "every document rewritten",
        || async {
            let docs = find_all(ferretdb(), &db, "orders").await;
            docs.iter()
                .all(|d| d.get_bool("again") == Ok(true))
                .then_some(())
        },
    )
    .await;
    assert_eq!(count(ferretdb(), &db, "orders").await, Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_streams_on_a_server_without_them_say_to_poll() {
    let node = Embedded::start().await;
    let db = database("cs");
    insert_orders(&db, 0, 10).await;
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "cs",
            "sources": [{"type": "mongodb", "config": {
                "uri": ferretdb(), "database": db, "collections": ["orders"]}}],
            "sinks": [{"type": "stdout", "config": {}}]
        }),
    )
    .await;
    eventually(Duration::from_secs(30), "the reason reported", || async {
        let s = get_json(&node.url("/pipelines/cs")).await;
        s["errors"]
            .to_string()
            .contains("no change streams")
            .then_some(())
            .filter(|_| s["errors"].to_string().contains("use mode: poll"))
    })
    .await;

    let r = http()
        .post(node.url("/pipelines"))
        .json(&json!({
            "name": "bad",
            "sources": [{"type": "mongodb", "config": {
                "uri": "mongodb+srv://cluster.example", "database": "a.b", "collections": [],
                "poll_interval": "1s", "filter": {"at": {"$date": "yesterday"}}}}],
            "sinks": [{"type": "mongodb", "config": {
                "uri": "http://x", "database": "d", "collection": "", "max_docs": 0}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let paths: BTreeSet<&str> = error_paths(&body).into_iter().collect();
    assert_eq!(
        paths,
        BTreeSet::from([
            "sources[0].config.uri",
            "sources[0].config.database",
            "sources[0].config.collections",
            "sources[0].config.poll_interval",
            "sources[0].config.filter",
            "sinks[0].config.uri",
            "sinks[0].config.collection",
            "sinks[0].config.max_docs",
        ]),
        "{body}"
    );
}
