//! The Elasticsearch sink against a real OpenSearch 2.19 node (tests/services/opensearch.sh
//! starts one from Maven Central jars): Kafka → jq → OpenSearch across a pause with every
//! document once, and a mapping conflict that sends exactly the bad documents to dead
//! letters with the server's reason; file → OpenSearch with ids from a field and an index
//! per record field, replayed without copies.

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

use crate::kafka::{broker, create_topic, produce, set_state, topic, wait_read};
use crate::pipelines_run::{committed_lines, wait_state};
use crate::support::{create_pipeline, error_paths, eventually, http, service, Embedded};

/// The node's URL, starting it (once per test run) with the project's script.
pub fn opensearch() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| service("opensearch.sh", "start", &[]))
}

async fn put(path: &str, body: Value) {
    let r = http()
        .put(format!("{}{path}", opensearch()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

/// Every document of `index` (refreshed first), by id.
pub async fn documents(index: &str) -> Vec<(String, Value)> {
    let base = opensearch();
    http()
        .post(format!("{base}/{index}/_refresh"))
        .send()
        .await
        .unwrap();
    let r: Value = http()
        .post(format!("{base}/{index}/_search"))
        .json(&json!({"size": 10000, "query": {"match_all": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["hits"]["hits"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_opensearch_once_each_with_mapping_conflicts_to_dead_letters() {
    let node = Embedded::start().await;
    let input = topic("es-orders");
    create_topic(&input, 2).await;
    let index = input.to_lowercase();
    put(
        &format!("/{index}"),
        json!({"mappings": {"properties": {"amount": {"type": "integer"}}}}),
    )
    .await;
    let message = |i: u64| {
        // Every 97th order has an amount the mapping refuses.
        let amount = if i % 97 == 5 {
            json!("n/a")
        } else {
            json!(i % 10)
        };
        (
            format!("k{i}"),
            json!({"id": i, "amount": amount}).to_string().into_bytes(),
        )
    };
    produce(&input, &(0..2000).map(message).collect::<Vec<_>>());
    let dead = node.dir.path().join("dead");
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "k2es",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topics": [input]}}],
            "transforms": [{"type": "jq", "config": {"filter": ".seen = true"}}],
            "sinks": [{"type": "elasticsearch", "config": {"url": opensearch(), "index": index, "max_docs": 300}}],
            "dead_letter": {"type": "file", "config": {"path": dead}}
        }),
    )
    .await;
    wait_read(&node, "k2es", 500).await;
    set_state(&node, "k2es", "pause").await;
    wait_state(&node.url("/pipelines/k2es"), "paused").await;
    produce(&input, &(2000..4000).map(message).collect::<Vec<_>>());
    set_state(&node, "k2es", "resume").await;

    let bad: BTreeSet<u64> = (0..4000).filter(|i| i % 97 == 5).collect();
    let good: BTreeSet<u64> = (0..4000).filter(|i| !bad.contains(i)).collect();
    let docs = eventually(
        Duration::from_secs(60),
        "every document indexed",
        || async {
            let docs = documents(&index).await;
            (docs.len() >= good.len()).then_some(docs)
        },
    )
    .await;
    let ids: Vec<u64> = docs
        .iter()
        .map(|(_, d)| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), good.len(), "each document once");
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), good);
    assert!(docs.iter().all(|(_, d)| d["seen"] == true));

    let letters: Vec<Value> = eventually(Duration::from_secs(30), "dead letters", || async {
        let lines = committed_lines(&dead);
        (lines.len() >= bad.len()).then(|| {
            lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
    })
    .await;
    let dead_ids: BTreeSet<u64> = letters
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l["raw"].as_str().unwrap()).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(letters.len(), bad.len(), "exactly the bad documents");
    assert_eq!(dead_ids, bad);
    for l in &letters {
        assert_eq!(l["step"], "sink0");
        assert!(
            l["error"]
                .as_str()
                .unwrap()
                .contains("mapper_parsing_exception"),
            "{l}"
        );
        assert!(l["split"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{input}/")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_to_opensearch_with_ids_from_a_field_and_an_index_per_kind() {
    let node = Embedded::start().await;
    let prefix = topic("es-files").to_lowercase();
    let input = node.dir.path().join("events.jsonl");
    let text: String = (0..3000)
        .map(|i| {
            format!(
                "{{\"key\": \"e{i}\", \"kind\": \"{}\", \"n\": {i}}}\n",
                ["Click", "View"][i % 2]
            )
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let spec = |name: &str| {
        json!({
            "name": name,
            "sources": [{"type": "file", "config": {"path": input}}],
            "sinks": [{"type": "elasticsearch", "config": {
                "url": opensearch(), "index": format!("{prefix}-{{kind}}"), "id_field": "key",
                "flush_interval": "100ms"}}]
        })
    };
    create_pipeline(&node.url("/pipelines"), &spec("f2es")).await;
    wait_state(&node.url("/pipelines/f2es"), "finished").await;
    // The same input again through a second pipeline: ids from the field overwrite.
    create_pipeline(&node.url("/pipelines"), &spec("f2es-again")).await;
    wait_state(&node.url("/pipelines/f2es-again"), "finished").await;
    for (kind, parity) in [("click", 0), ("view", 1)] {
        let docs = documents(&format!("{prefix}-{kind}")).await;
        assert_eq!(docs.len(), 1500, "{kind}: no copies");
        assert!(docs
            .iter()
            .all(|(id, d)| *id == d["key"] && d["n"].as_u64().unwrap() % 2 == parity));
    }

    // Bad configs name their place.
    let r = http()
        .post(node.url("/pipelines"))
        .json(&json!({
            "name": "bad-es",
            "sources": [{"type": "generator"}],
            "sinks": [{"type": "elasticsearch", "config": {"url": "localhost:9200", "index": "Events-{kind"}}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    let paths: BTreeSet<&str> = error_paths(&body).into_iter().collect();
    assert_eq!(
        paths,
        BTreeSet::from(["sinks[0].config.url", "sinks[0].config.index"]),
        "{body}"
    );
}
