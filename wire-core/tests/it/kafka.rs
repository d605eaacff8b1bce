//! The Kafka connector against a real broker (tests/services/kafka.sh starts one: Apache
//! Kafka from Maven Central, KRaft, on 127.0.0.1), checked with an independent rdkafka
//! client: Kafka → jq → Kafka and files → Kafka, each stopped mid-run and resumed, with
//! nothing lost and nothing repeated; bad messages to dead letters with their offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::pipelines_run::{committed_lines, wait_state};
use crate::support::{create_pipeline, error_paths, eventually, get_json, http, service, Embedded};

/// The broker's address, starting it (once per test run) with the project's script.
pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| service("kafka.sh", "start", &[]))
}

/// A topic name no other test run uses.
pub fn topic(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{nanos}")
}

pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(broker(), name, partitions).await
}

pub async fn create_topic_on(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

pub fn produce(topic: &str, messages: &[(String, Vec<u8>)]) {
    produce_to(broker(), topic, messages)
}

pub fn produce_to(bootstrap: &str, topic: &str, messages: &[(String, Vec<u8>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for (key, payload) in messages {
        producer
            .send(BaseRecord::to(topic).key(key).payload(payload))
            .unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// Every message of `topic` (all partitions, from the start) until `want` arrived or 30 s
/// passed: (key, JSON value).
fn consume_all(topic: &str, want: usize) -> Vec<(Option<String>, Value)> {
    consume_all_from(broker(), topic, want)
}

pub fn consume_all_from(bootstrap: &str, topic: &str, want: usize) -> Vec<(Option<String>, Value)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "wire-test-checker")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Read until `want` arrived, then a little more to see anything repeated.
    let mut quiet_until: Option<Instant> = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|q| Instant::now() < q) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            out.push((key, serde_json::from_slice(m.payload().unwrap()).unwrap()));
        }
        if out.len() >= want && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
    out
}

fn orders(from: u64, to: u64) -> Vec<(String, Vec<u8>)> {
    (from..to)
        .map(|i| {
            (
                format!("k{}", i % 7),
                json!({"id": i, "amount": i % 10}).to_string().into_bytes(),
            )
        })
        .collect()
}

pub async fn set_state(node: &Embedded, name: &str, action: &str) {
    let r = http()
        .post(node.url(&format!("/pipelines/{name}/{action}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Waits until the pipeline has read at least `n` records.
pub async fn wait_read(node: &Embedded, name: &str, n: u64) {
    eventually(Duration::from_secs(30), "records read", || async {
        let s = get_json(&node.url(&format!("/pipelines/{name}"))).await;
        let read = s["steps"]["source0"]["records_out"].as_u64().unwrap_or(0);
        (read >= n).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_to_jq_to_kafka_resumes_after_a_pause_losing_and_repeating_nothing() {
    let node = Embedded::start().await;
    let (input, output) = (topic("orders"), topic("big-orders"));
    create_topic(&input, 3).await;
    create_topic(&output, 2).await;
    let mut first = orders(0, 3000);
    first.push(("bad".into(), b"{not json".to_vec()));
    produce(&input, &first);

    let dead = node.dir.path().join("dead");
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "k2k",
            "parallelism": 2,
            "checkpoint_interval": "200ms",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topics": [input]}}],
            "transforms": [{"type": "jq", "config": {"filter": "select(.amount > 4) | .big = true"}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": output}}],
            "dead_letter": {"type": "file", "config": {"path": dead}}
        }),
    )
    .await;
    wait_read(&node, "k2k", 1000).await;
    // Stop mid-run: a pause takes a final checkpoint; more arrives while it is paused.
    set_state(&node, "k2k", "pause").await;
    wait_state(&node.url("/pipelines/k2k"), "paused").await;
    produce(&input, &orders(3000, 6000));
    set_state(&node, "k2k", "resume").await;
    let want: BTreeSet<u64> = (0..6000).filter(|i| i % 10 > 4).collect();
    let got = consume_all(&output, want.len());
    let ids: Vec<u64> = got.iter().map(|(_, v)| v["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), want.len(), "every record once, none repeated");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), want);
    for (key, v) in &got {
        let id = v["id"].as_u64().unwrap();
        assert_eq!(v["big"], true);
        assert_eq!(
            key.as_deref(),
            Some(format!("k{}", id % 7).as_str()),
            "key carried"
        );
    }
    // The bad message went to dead letters with its topic partition and offset.
    let dead_letters: Vec<Value> = eventually(Duration::from_secs(30), "dead letter", || async {
        let lines = committed_lines(&dead);
        (!lines.is_empty()).then(|| {
            lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
    })
    .await;
    assert_eq!(dead_letters.len(), 1, "{dead_letters:?}");
    assert_eq!(dead_letters[0]["raw"], "{not json");
    assert!(dead_letters[0]["split"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{input}/")));
    // Positions are the next offset per topic partition, in Wire's checkpoints: once one
    // covers everything, they add up to the messages in the topic.
    eventually(
        Duration::from_secs(30),
        "checkpoint of every message",
        || async {
            let status = get_json(&node.url("/pipelines/k2k")).await;
            let mut splits = BTreeMap::new();
            for p in status["partitions"].as_array()? {
                for (split, offset) in p["positions"]["source0"].as_object()? {
                    splits.insert(split.clone(), offset.as_u64()?);
                }
            }
            assert!(
                splits.keys().all(|s| s.starts_with(&format!("{input}/"))),
                "{splits:?}"
            );
            (splits.values().sum::<u64>() == 6001).then_some(())
        },
    )
    .await;
    // The consumer group's offsets are committed too, for monitoring tools.
    let group: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", "wire-k2k-source0")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&input, p);
    }
    eventually(
        Duration::from_secs(30),
        "group offsets committed",
        || async {
            let committed = group
                .committed_offsets(tpl.clone(), Duration::from_secs(5))
                .ok()?;
            let sum: i64 = committed
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .sum();
            (sum == 6001).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_to_kafka_after_a_pause_and_bad_configs_are_refused() {
    let node = Embedded::start().await;
    let output = topic("from-files");
    create_topic(&output, 1).await;
    let input = node.dir.path().join("in.jsonl");
    let text: String = (0..20_000).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    std::fs::write(&input, text).unwrap();
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "f2k",
            "checkpoint_interval": "100ms",
            "sources": [{"type": "file", "config": {"path": input}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": output, "compression": "gzip"}}]
        }),
    )
    .await;
    set_state(&node, "f2k", "pause").await;
    wait_state(&node.url("/pipelines/f2k"), "paused").await;
    set_state(&node, "f2k", "resume").await;
    wait_state(&node.url("/pipelines/f2k"), "finished").await;
    let got = consume_all(&output, 20_000);
    let ns: BTreeSet<u64> = got.iter().map(|(_, v)| v["n"].as_u64().unwrap()).collect();
    assert_eq!(got.len(), 20_000, "nothing repeated");
    assert_eq!(ns, (0..20_000).collect());

    // A sink topic that does not exist is said in the status (and retried).
    create_pipeline(
        &node.url("/pipelines"),
        &json!({
            "name": "no-topic",
            "sources": [{"type": "generator", "config": {"count": 10}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": topic("absent")}}]
        }),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "missing topic reported",
        || async {
            let s = get_json(&node.url("/pipelines/no-topic")).await;
            let errors = s["errors"].to_string();
            (errors.contains("does not exist") && s["retrying"] == true).then_some(())
        },
    )
    .await;

    // Bad configs name their place.
    let r = http()
        .post(node.url("/pipelines"))
        .json(&json!({
            "name": "bad",
            "sources": [{"type": "kafka", "config": {"bootstrap_servers": "", "topics": []}}],
            "sinks": [{"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": "t", "compression": "zip"}}]
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
            "sources[0].config.bootstrap_servers",
            "sources[0].config.topics",
            "sinks[0].config.compression"
        ]),
        "{body}"
    );
}
