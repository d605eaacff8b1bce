//! Configuration of the file connector.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::{parse_duration, SpecError};

/// How records are laid out in a file.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON value per line.
    #[default]
    Jsonl,
    /// Comma-separated values; each row becomes a JSON object keyed by the header.
    Csv,
}

/// `type: file` as a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A file path, or a glob such as `logs/*.jsonl`.
    pub path: String,
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: FileFormat,
    /// Keep reading as files grow and new files match, instead of finishing at their end.
    #[serde(default)]
    pub tail: bool,
}

/// Default size at which a part file is rotated.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;

/// `type: file` as a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The directory part files are written into (created if missing).
    pub path: String,
    /// `jsonl` (default) or `csv`.
    #[serde(default)]
    pub format: FileFormat,
    /// Rotate a part file once it holds this many bytes (default 64 MiB).
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Rotate a part file after this long, such as `5m` (default: only by size).
    #[serde(default)]
    pub rotate_interval: Option<String>,
}

pub fn check_source(config: &Value, path: &str) -> Vec<SpecError> {
    match check_config::<FileSourceConfig>(config, path) {
        Ok(c) if c.path.trim().is_empty() => {
            vec![SpecError::new(format!("{path}.path"), "must not be empty")]
        }
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}

pub fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    let c = match check_config::<FileSinkConfig>(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    if c.path.trim().is_empty() {
        errors.push(SpecError::new(format!("{path}.path"), "must not be empty"));
    }
    if c.rotate_bytes == Some(0) {
        errors.push(SpecError::new(
            format!("{path}.rotate_bytes"),
            "must be positive",
        ));
    }
    if let Some(interval) = &c.rotate_interval {
        if let Err(e) = parse_duration(interval) {
            errors.push(SpecError::new(format!("{path}.rotate_interval"), e));
        }
    }
    errors
}
