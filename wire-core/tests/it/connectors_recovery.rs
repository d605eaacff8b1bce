//! Connectors through failures, against real servers: a `wire node` killed with `kill -9`
//! mid-run (Kafka → OpenSearch and Kafka → MongoDB: every document once after the restart),
//! and a Kafka broker, an OpenSearch node or a MongoDB-protocol server stopped mid-run and
//! started again (the pipeline blocks and recovers, losing nothing). The outage tests run servers of their own
//! (tests/services/*.sh with their own ports and data), so other tests are not disturbed.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::elasticsearch::{documents, opensearch};
use crate::kafka::{broker, consume_all_from, create_topic_on, produce_to, topic, wait_read};
use crate::pipelines_run::{committed_lines, wait_state};
use crate::support::{
    checkpointed_positions, create_pipeline, eventually, free_port, get_json, http, service,
    wait_stalled, Embedded, Proc,
};

/// A server this test owns: a tests/services script run with its own ports and run dir.
struct OwnService {
    script: &'static str,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
    address: String,
}

impl OwnService {
    fn start(script: &'static str, ports: &[&str]) -> OwnService {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![(
            "WIRE_SERVICES_RUN".to_string(),
            dir.path().display().to_string(),
        )];
        for name in ports {
            env.push((name.to_string(), free_port().to_string()));
        }
        let mut s = OwnService {
            script,
            env,
            _dir: dir,
            address: String::new(),
        };
        s.address = s.run("start");
        s
    }

    fn run(&self, action: &str) -> String {
        service(self.script, action, &self.env)
    }
}

impl Drop for OwnService {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| service(self.script, "clean", &self.env));
    }
}

/// The documents `index` holds (refreshed first), if the cluster answers.
async fn doc_count(url: &str, index: &str) -> Option<u64> {
    let _ = http().post(format!("{url}/{index}/_refresh")).send().await;
    let r: Value = http()
        .get(format!("{url}/{index}/_count"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    r["count"].as_u64()
}

fn orders(from: u64, to: u64) -> Vec<(String, Vec<u8>)> {
    (from..to)
        .map(|i| (format!("k{i}"), json!({"id": i}).to_string().into_bytes()))
        .collect()
}

async fn wait_ready(p: &Proc) {
    eventually(Duration::from_secs(20), "node ready", || async {
        let r = http().get(p.url("/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_opensearch_is_exactly_once_across_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let input = topic("kill9");
    create_topic_on(broker(), &input, 2).await;
    produce_to(broker(), &input, &orders(0, 3000));
    let index = input.to_lowercase();
    let mut node = Proc::start(root.path(), 1, &["--bootstrap".into()]);
    wait_ready(&node).await;
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "k2es",
            "checkpoint_interval": "300ms",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topics": [input]}}],
            "transforms": [{"type": "jq", "config": {"filter": ".indexed = true"}}],
            "sinks": [{"type": "elasticsearch", "config": {"url": opensearch(), "index": index, "max_docs": 250}}]
        }),
    )
    .await;
    eventually(Duration::from_secs(60), "some documents", || async {
        (!documents(&index).await.is_empty()).then_some(())
    })
    .await;
    node.kill9();
    produce_to(broker(), &input, &orders(3000, 6000));
    node.restart(&[]);
    wait_ready(&node).await;
    // Done when the committed checkpoint covers all 6000 offsets: the sink flushed
    // everything before it, and no replay can follow it.
    let status_url = node.url("/pipelines/k2es");
    let docs = eventually(
        Duration::from_secs(90),
        "all documents, all checkpointed",
        || async {
            (checkpointed_positions(&status_url).await? == 6000).then_some(())?;
            let docs = documents(&index).await;
            (docs.len() >= 6000).then_some(docs)
        },
    )
    .await;
    let again = documents(&index).await;
    assert_eq!(
        again.len(),
        6000,
        "replays overwrote, none added: {}",
        docs.len()
    );
    let ids: BTreeSet<u64> = again
        .iter()
        .map(|(_, d)| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, (0..6000).collect());
    assert!(again.iter().all(|(_, d)| d["indexed"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_broker_outage_blocks_the_pipeline_and_it_recovers_losing_nothing() {
    let kafka = OwnService::start("kafka.sh", &["KAFKA_PORT", "KAFKA_CONTROLLER_PORT"]);
    let (input, output) = (topic("outage-in"), topic("outage-out"));
    create_topic_on(&kafka.address, &input, 2).await;
    create_topic_on(&kafka.address, &output, 1).await;
    produce_to(&kafka.address, &input, &orders(0, 2000));
    let node = Embedded::start().await;
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "outage",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": kafka.address, "topics": [input]}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": kafka.address, "topic": output}}]
        }),
    )
    .await;
    wait_read(&node, "outage", 500).await;
    // The outage lasts from the stop until the broker is back (its start waits until it
    // serves): both the source and the sink go through it.
    kafka.run("stop");
    kafka.run("start");
    produce_to(&kafka.address, &input, &orders(2000, 4000));
    let got = consume_all_from(&kafka.address, &output, 4000);
    let ids: BTreeSet<u64> = got.iter().map(|(_, v)| v["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        (0..4000).collect(),
        "nothing lost ({} messages)",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opensearch_outage_blocks_the_sink_and_it_recovers_losing_nothing() {
    let search = OwnService::start(
        "opensearch.sh",
        &["OPENSEARCH_PORT", "OPENSEARCH_TRANSPORT_PORT"],
    );
    let node = Embedded::start().await;
    let index = topic("outage").to_lowercase();
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "es-outage",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "generator", "config": {"count": 3000, "rate": 400}}],
            "sinks": [{"type": "elasticsearch", "config": {"url": search.address, "index": index,
                       "max_docs": 100, "flush_interval": "100ms"}}]
        }),
    )
    .await;
    eventually(Duration::from_secs(30), "some documents", || async {
        (doc_count(&search.address, &index).await? > 200).then_some(())
    })
    .await;
    // While the cluster is down the sink cannot flush: the generator (400/s) is held back
    // and stops reading.
    search.run("stop");
    let stalled_at = wait_stalled(&node.url("/pipelines/es-outage")).await;
    assert!(
        stalled_at < 3000,
        "blocked before the end: {stalled_at} read"
    );
    search.run("start");
    eventually(Duration::from_secs(90), "every document", || async {
        (doc_count(&search.address, &index).await? == 3000).then_some(())
    })
    .await;
    let status = eventually(Duration::from_secs(30), "finished", || async {
        let s = get_json(&node.url("/pipelines/es-outage")).await;
        (s["state"] == "finished").then_some(s)
    })
    .await;
    assert_eq!(status["steps"]["source0"]["records_out"], 3000);
    // Finished: its last checkpoint flushed everything, and nothing runs any more.
    assert_eq!(
        doc_count(&search.address, &index).await,
        Some(3000),
        "no copies"
    );
}

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_mongodb_is_exactly_once_across_kill_9() {
    use crate::mongo::{count, database, ferretdb, find_all, int_ids};
    let root = tempfile::tempdir().unwrap();
    let input = topic("kill9-mongo");
    create_topic_on(broker(), &input, 2).await;
    produce_to(broker(), &input, &orders(0, 3000));
    let db = database("kill9");
    let mut node = Proc::start(root.path(), 1, &["--bootstrap".into()]);
    wait_ready(&node).await;
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "k2m",
            "checkpoint_interval": "300ms",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topics": [input]}}],
            "sinks": [{"type": "mongodb", "config": {"uri": ferretdb(), "database": db,
                       "collection": "orders", "id_field": "id", "max_docs": 50}}]
        }),
    )
    .await;
    eventually(Duration::from_secs(60), "some documents", || async {
        (count(ferretdb(), &db, "orders").await? > 0).then_some(())
    })
    .await;
    node.kill9();
    produce_to(broker(), &input, &orders(3000, 6000));
    node.restart(&[]);
    wait_ready(&node).await;
    let status_url = node.url("/pipelines/k2m");
    eventually(
        Duration::from_secs(120),
        "all documents, all checkpointed",
        || async {
            (checkpointed_positions(&status_url).await? == 6000).then_some(())?;
            (count(ferretdb(), &db, "orders").await? >= 6000).then_some(())
        },
    )
    .await;
    let docs = find_all(ferretdb(), &db, "orders").await;
    let ids = int_ids(&docs);
    assert_eq!(
        ids,
        (0..6000).collect::<Vec<i64>>(),
        "each once, none added by replays"
    );
}

#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_outage_blocks_source_and_sink_and_they_recover_losing_nothing() {
    use crate::mongo::{count, database};
    let server = OwnService::start("ferretdb.sh", &["FERRETDB_PORT"]);
    let uri = server.address.clone();
    let node = Embedded::start().await;
    let db = database("outage");
    // Generator → MongoDB (the sink's side), and that collection → a file (the source's).
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "to-mongo",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "generator", "config": {"count": 3000, "rate": 400,
                         "template": {"_id": "{{seq}}", "n": "{{seq}}"}}}],
            "sinks": [{"type": "mongodb", "config": {"uri": uri, "database": db,
                       "collection": "events", "max_docs": 50, "flush_interval": "100ms"}}]
        }),
    )
    .await;
    let out = node.dir.path().join("copy");
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "from-mongo",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "mongodb", "config": {"uri": uri, "database": db,
                         "collections": ["events"], "mode": "poll", "poll_field": "n",
                         "poll_interval": "100ms"}}],
            "sinks": [{"type": "file", "config": {"path": out}}]
        }),
    )
    .await;
    eventually(Duration::from_secs(30), "some documents", || async {
        (count(&uri, &db, "events").await? > 300).then_some(())
    })
    .await;
    // While the server is down the sink cannot flush: the generator is held back.
    server.run("stop");
    let stalled_at = wait_stalled(&node.url("/pipelines/to-mongo")).await;
    assert!(
        stalled_at < 3000,
        "blocked before the end: {stalled_at} read"
    );
    server.run("start");
    eventually(Duration::from_secs(90), "every document", || async {
        (count(&uri, &db, "events").await? == 3000).then_some(())
    })
    .await;
    wait_state(&node.url("/pipelines/to-mongo"), "finished").await;
    let copied = eventually(Duration::from_secs(60), "every document copied", || async {
        let lines = committed_lines(&out);
        (lines.len() >= 3000).then_some(lines)
    })
    .await;
    let ns: BTreeSet<i64> = copied
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..3000).collect(), "the source lost nothing");
}
