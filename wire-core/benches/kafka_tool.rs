//! The connector benchmark's Kafka helper (bench/connectors/run.sh), with the same rdkafka
//! as Wire:
//!
//!   kafka_tool create BOOTSTRAP TOPIC PARTITIONS      creates TOPIC
//!   kafka_tool produce BOOTSTRAP TOPIC PARTITIONS N   creates TOPIC and writes N JSON records
//!   kafka_tool consume BOOTSTRAP TOPIC N              reads N records into nothing (the raw
//!                                                     consumer rate), prints seconds=S
//!   kafka_tool count BOOTSTRAP TOPIC                  prints how many messages a consumer
//!                                                     can read now (sum of high watermarks)

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["produce", bootstrap, topic, partitions, n] => produce(
            bootstrap,
            topic,
            partitions.parse().map_err(|e| format!("partitions: {e}"))?,
            n.parse().map_err(|e| format!("n: {e}"))?,
        ),
        ["create", bootstrap, topic, partitions] => create(
            bootstrap,
            topic,
            partitions.parse().map_err(|e| format!("partitions: {e}"))?,
        ),
        ["consume", bootstrap, topic, n] => {
            consume(bootstrap, topic, n.parse().map_err(|e| format!("n: {e}"))?)
        }
        ["count", bootstrap, topic] => count(bootstrap, topic),
        _ => Err(
            "usage: kafka_tool produce BOOTSTRAP TOPIC PARTITIONS N | consume BOOTSTRAP TOPIC N | count BOOTSTRAP TOPIC"
                .into(),
        ),
    }
}

/// Messages a consumer can read now: the sum over partitions of high - low watermark.
fn count(bootstrap: &str, topic: &str) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut total = 0i64;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            total += high - low;
        }
    }
    println!("{total}");
    Ok(())
}

fn produce(bootstrap: &str, topic: &str, partitions: i32, n: u64) -> Result<(), String> {
    create(bootstrap, topic, partitions)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()
        .map_err(|e| e.to_string())?;
    let users = 1000;
    for i in 0..n {
        let payload = format!(
            "{{\"id\":{i},\"user\":\"user-{}\",\"amount\":{}.{:02},\"tags\":[\"a\",\"b\"]}}",
            i % users,
            i % 10,
            i % 100
        );
        let key = format!("user-{}", i % users);
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| e.to_string())
}

fn create(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .map_err(|e| e.to_string())?;
    for r in results {
        r.map_err(|(t, e)| format!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn consume(bootstrap: &str, topic: &str, n: u64) -> Result<(), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "wire-bench-raw")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0usize;
    while seen < n {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| e.to_string())?;
            bytes += rdkafka::Message::payload(&m).map_or(0, |p| p.len());
            seen += 1;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {seen} of {n} records in 300 s"));
        }
    }
    println!(
        "seconds={:.3} records={seen} bytes={bytes}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
