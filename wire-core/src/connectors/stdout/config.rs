//! Configuration of the stdout sink.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::SpecError;

/// `type: stdout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// Put this text before each line (default none).
    #[serde(default)]
    pub prefix: Option<String>,
}

pub fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    match check_config::<StdoutConfig>(config, path) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}
