//! The configs of `type: kafka`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::SpecError;

/// Where a partition with no checkpoint starts reading.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The oldest retained offset.
    #[default]
    Earliest,
    /// Only what is produced from now on.
    Latest,
}

/// How a message's payload becomes a record's value.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A JSON document (a payload that is not goes to the dead-letter sink).
    #[default]
    Json,
    /// The bytes as they are (a byte string).
    Raw,
}

/// `type: kafka` as a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// Topics to read; their partitions are spread over the pipeline's partitions.
    pub topics: Vec<String>,
    /// The consumer group whose offsets are committed for monitoring (default
    /// `wire-<pipeline>-<step>`; resume positions are Wire's checkpoints).
    #[serde(default)]
    pub group_id: Option<String>,
    /// `earliest` (default) or `latest`, for partitions without a checkpoint.
    #[serde(default)]
    pub start: Start,
    /// Start at the first offset at or after this time instead (ms since the epoch).
    #[serde(default)]
    pub start_timestamp_ms: Option<i64>,
    #[serde(default)]
    pub format: Format,
    /// Extra librdkafka settings (`security.protocol`, `fetch.max.bytes`, ...).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Compression codecs this build of librdkafka has.
pub const COMPRESSIONS: &[&str] = &["none", "gzip", "snappy", "lz4"];

/// `type: kafka` as a sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    pub bootstrap_servers: String,
    pub topic: String,
    /// `none`, `gzip`, `snappy` or `lz4` (default `lz4`).
    #[serde(default)]
    pub compression: Option<String>,
    /// How long the producer waits to fill a batch (default 5 ms).
    #[serde(default)]
    pub linger_ms: Option<u64>,
    /// Largest batch in bytes (librdkafka's default when unset).
    #[serde(default)]
    pub batch_size: Option<u64>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn not_blank(value: &str, path: String, errors: &mut Vec<SpecError>) {
    if value.trim().is_empty() {
        errors.push(SpecError::new(path, "must not be empty"));
    }
}

pub fn check_source(config: &Value, path: &str) -> Vec<SpecError> {
    let c: KafkaSourceConfig = match check_config(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    not_blank(
        &c.bootstrap_servers,
        format!("{path}.bootstrap_servers"),
        &mut errors,
    );
    if c.topics.is_empty() {
        errors.push(SpecError::new(
            format!("{path}.topics"),
            "name at least one topic",
        ));
    }
    for (i, t) in c.topics.iter().enumerate() {
        not_blank(t, format!("{path}.topics[{i}]"), &mut errors);
    }
    errors
}

pub fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    let c: KafkaSinkConfig = match check_config(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    not_blank(
        &c.bootstrap_servers,
        format!("{path}.bootstrap_servers"),
        &mut errors,
    );
    not_blank(&c.topic, format!("{path}.topic"), &mut errors);
    if let Some(codec) = &c.compression {
        if !COMPRESSIONS.contains(&codec.as_str()) {
            errors.push(SpecError::new(
                format!("{path}.compression"),
                format!("'{codec}' is not one of {}", COMPRESSIONS.join(", ")),
            ));
        }
    }
    errors
}
