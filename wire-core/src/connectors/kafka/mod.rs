//! Kafka (rdkafka): topics as a source, a topic as a sink.
//!
//! - Partitioning: the topics' partitions, sorted by (topic, partition), are dealt over the
//!   pipeline's partitions (the i-th to partition i mod n); each Kafka partition is a split
//!   `topic/partition`.
//! - Resume position: the next offset of each split, in Wire's checkpoints (never the
//!   consumer group's committed offsets, which are committed every few seconds only so that
//!   monitoring tools see the group's lag). Without a checkpoint: `start` (`earliest` or
//!   `latest`) or `start_timestamp_ms`.
//! - Delivery: the source replays from the checkpoint; the sink is an idempotent producer
//!   whose checkpoint waits until the broker acknowledged everything written before it
//!   (at-least-once into Kafka: a restart may write the records after the last checkpoint
//!   again).
//!
//! Record key, headers and timestamp are carried from the message and onto it.

pub mod config;
pub mod sink;
pub mod source;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "kafka",
    summary: "Kafka topics: messages as records (JSON or raw), with key, headers and timestamp",
    partitioning: "topic partitions dealt over pipeline partitions; a split per topic partition",
    resume: "the next offset of each topic partition, in Wire's checkpoints",
    delivery: "source: replay from the checkpoint; sink: idempotent producer, acknowledged before each checkpoint (at-least-once)",
    source: Some(config::check_source),
    sink: Some(config::check_sink),
    open_source: Some(source::open),
    open_sink: Some(sink::open),
    source_config: Some(super::schema::<config::KafkaSourceConfig>),
    sink_config: Some(super::schema::<config::KafkaSinkConfig>),
};
