//! The Kafka source: a `BaseConsumer` per pipeline partition, assigned (not subscribed) the
//! topic partitions that are its splits, so the group never rebalances them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::config::{Format, KafkaSourceConfig, Start};
use crate::connectors::{BadInput, ReadState, Source, SourceBatch, SourceContext};
use crate::pipeline::transform::{Position, Record};

/// How long a read waits for the first message.
const POLL: Duration = Duration::from_millis(100);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KafkaSource {
    consumer: BaseConsumer,
    step: Arc<str>,
    splits: BTreeMap<(String, i32), Arc<str>>,
    positions: BTreeMap<String, u64>,
    format: Format,
    /// JSON messages go out as text ([`Record::raw`]), checked but not parsed.
    raw: bool,
    last_warning: Option<Instant>,
    last_commit: Instant,
}

/// How often the offsets read are committed to the consumer group, for monitoring tools
/// (resuming never reads them: Wire's checkpoints hold the positions).
const GROUP_COMMIT_EVERY: Duration = Duration::from_secs(5);

/// Every (topic, partition) of `topics`, sorted.
fn partitions_of(consumer: &BaseConsumer, topics: &[String]) -> Result<Vec<(String, i32)>, String> {
    let mut all = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| format!("reading the metadata of topic '{topic}': {e}"))?;
        for t in metadata.topics() {
            if let Some(e) = t.error() {
                return Err(format!("topic '{topic}': {e:?}"));
            }
            if t.partitions().is_empty() {
                return Err(format!("topic '{topic}' does not exist"));
            }
            all.extend(t.partitions().iter().map(|p| (topic.clone(), p.id())));
        }
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// Opens partition `ctx.partition` of a Kafka source.
pub fn open(
    config: &serde_json::Value,
    ctx: &SourceContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Source>> {
    let c: KafkaSourceConfig = crate::connectors::typed(config)?;
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &c.bootstrap_servers)
        .set(
            "group.id",
            c.group_id
                .clone()
                .unwrap_or_else(|| format!("wire-{}-{}", ctx.pipeline, ctx.step)),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set(
            "auto.offset.reset",
            match c.start {
                Start::Earliest => "earliest",
                Start::Latest => "latest",
            },
        );
    for (k, v) in &c.properties {
        cc.set(k, v);
    }
    let consumer: BaseConsumer = cc
        .create()
        .map_err(|e| format!("creating a Kafka consumer: {e}"))?;
    let all = partitions_of(&consumer, &c.topics)?;
    let mut tpl = TopicPartitionList::new();
    let mut splits = BTreeMap::new();
    // A split not read again before the next checkpoint must keep its place in it.
    let mut positions = BTreeMap::new();
    let mut unresumed = TopicPartitionList::new();
    for (i, (topic, partition)) in all.into_iter().enumerate() {
        if i as u32 % ctx.partitions.max(1) != ctx.partition {
            continue;
        }
        let split = format!("{topic}/{partition}");
        let resume = ctx
            .resume
            .get(&split)
            .and_then(crate::pipeline::checkpoint::Offset::num);
        if let Some(o) = resume {
            positions.insert(split.clone(), o);
        }
        splits.insert((topic.clone(), partition), Arc::<str>::from(split));
        let offset = match (resume, c.start_timestamp_ms) {
            (Some(o), _) => Offset::Offset(o as i64),
            (None, Some(ts)) => {
                // Resolved to offsets below, all in one request.
                unresumed
                    .add_partition_offset(&topic, partition, Offset::Offset(ts))
                    .map_err(|e| e.to_string())?;
                continue;
            }
            (None, None) => match c.start {
                Start::Earliest => Offset::Beginning,
                Start::Latest => Offset::End,
            },
        };
        tpl.add_partition_offset(&topic, partition, offset)
            .map_err(|e| e.to_string())?;
    }
    if unresumed.count() > 0 {
        let found = consumer
            .offsets_for_times(unresumed, METADATA_TIMEOUT)
            .map_err(|e| format!("finding offsets for start_timestamp_ms: {e}"))?;
        for e in found.elements() {
            let offset = match e.offset() {
                Offset::Invalid => Offset::End,
                o => o,
            };
            tpl.add_partition_offset(e.topic(), e.partition(), offset)
                .map_err(|e| e.to_string())?;
        }
    }
    consumer
        .assign(&tpl)
        .map_err(|e| format!("assigning partitions: {e}"))?;
    Ok(Box::new(KafkaSource {
        consumer,
        step: ctx.step.into(),
        splits,
        positions,
        format: c.format,
        raw: ctx.raw,
        last_warning: None,
        last_commit: Instant::now(),
    }))
}

/// The split name of a topic partition (shared by its records).
fn split_of(
    splits: &mut BTreeMap<(String, i32), Arc<str>>,
    topic: &str,
    partition: i32,
) -> Arc<str> {
    splits
        .entry((topic.to_string(), partition))
        .or_insert_with(|| format!("{topic}/{partition}").into())
        .clone()
}

impl KafkaSource {
    /// Commits the offsets read so far to the consumer group, without waiting.
    fn commit_to_group(&self) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), split) in &self.splits {
            if let Some(next) = self.positions.get(&**split) {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next as i64));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = self
                .consumer
                .commit(&tpl, rdkafka::consumer::CommitMode::Async)
            {
                tracing::debug!(step = %self.step, error = %e, "kafka: committing group offsets");
            }
        }
    }
}

impl Source for KafkaSource {
    fn read(&mut self, max: usize) -> crate::connectors::ConnectorResult<SourceBatch> {
        let mut records = Vec::new();
        let mut bad = Vec::new();
        let mut wait = POLL;
        while records.len() + bad.len() < max {
            let message = match self.consumer.poll(wait) {
                None => break,
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Broker down, leader moving, ...: librdkafka retries; so do we, later.
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                    {
                        tracing::warn!(step = %self.step, error = %e, "kafka consumer");
                        self.last_warning = Some(Instant::now());
                    }
                    break;
                }
            };
            wait = Duration::ZERO;
            let split = split_of(&mut self.splits, message.topic(), message.partition());
            let offset = message.offset().max(0) as u64;
            self.positions.insert(split.to_string(), offset + 1);
            let position = Position {
                source: self.step.clone(),
                split,
                offset: offset.into(),
            };
            let payload = message.payload().unwrap_or_default();
            let (value, raw) = match self.format {
                Format::Raw => (jaq_json::Val::byte_str(payload.to_vec()), None),
                Format::Json if self.raw && crate::pipeline::json::is_json(payload) => (
                    jaq_json::Val::Null,
                    Some(bytes::Bytes::copy_from_slice(payload)),
                ),
                Format::Json => match crate::pipeline::jq::parse_json(payload) {
                    Ok(v) => (v, None),
                    Err(reason) => {
                        bad.push(BadInput {
                            raw: payload.to_vec(),
                            position,
                            reason: format!("invalid JSON: {reason}"),
                        });
                        continue;
                    }
                },
            };
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                h.value.map(|v| v.to_vec()).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            records.push(Record {
                key: message.key().map(|k| k.to_vec()),
                raw,
                value,
                event_time: message.timestamp().to_millis(),
                headers,
                position,
            });
        }
        if self.last_commit.elapsed() >= GROUP_COMMIT_EVERY {
            self.last_commit = Instant::now();
            self.commit_to_group();
        }
        let state = if records.len() + bad.len() >= max {
            ReadState::More
        } else {
            ReadState::Idle
        };
        Ok(SourceBatch {
            records,
            bad,
            state,
        })
    }

    fn positions(&self) -> BTreeMap<String, crate::pipeline::checkpoint::Offset> {
        crate::connectors::numeric_positions(&self.positions)
    }
}
