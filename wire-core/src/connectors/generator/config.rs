//! Configuration of the generator source.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::SpecError;

/// `type: generator`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Records to make in all (default: without end).
    #[serde(default)]
    pub count: Option<u64>,
    /// Records per second over all partitions (default: as fast as the pipeline takes them).
    #[serde(default)]
    pub rate: Option<u64>,
    /// The record to make; the string `"{{seq}}"` anywhere in it is replaced by the sequence
    /// number (default `{"seq": "{{seq}}"}`).
    #[serde(default)]
    pub template: Option<Value>,
}

pub fn check_source(config: &Value, path: &str) -> Vec<SpecError> {
    match check_config::<GeneratorConfig>(config, path) {
        Ok(c) if c.rate == Some(0) => {
            vec![SpecError::new(format!("{path}.rate"), "must be positive")]
        }
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}
