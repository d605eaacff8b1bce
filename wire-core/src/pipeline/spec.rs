//! The pipeline spec: what a user writes (JSON or YAML, the same structure from HTTP, the
//! CLI, Python and C) before it is validated into a graph (`validate.rs`).
//!
//! ```yaml
//! name: orders
//! parallelism: 2
//! checkpoint_interval: 5s
//! sources:
//!   - {id: events, type: file, config: {path: events.jsonl}}
//! transforms:
//!   - {id: big, type: jq, inputs: [events], config: {filter: "select(.amount > 5)"}}
//! sinks:
//!   - {id: out, type: file, inputs: [big], config: {path: out/}}
//! dead_letter: {type: file, config: {path: dead/}}
//! ```
//!
//! `id` is optional (steps are then named `source0`, `transform1`, `sink0`, ...), and so is
//! `inputs`: a transform without it reads the step before it (the sources, for the first
//! transform), a sink without it reads the last transform (or the sources).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A problem in a spec, with the place it is at (`transforms[2].inputs[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    pub path: String,
    pub message: String,
}

impl SpecError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What to do with a record that fails to parse or that a step rejects or errors on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// Send it to the pipeline's dead-letter sink with the reason, and go on.
    DeadLetter,
    /// Stop the pipeline with an error status.
    Fail,
}

/// A source: where records come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "empty_object")]
    pub config: Value,
}

/// A transform: a step of the DAG between sources and sinks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    #[serde(default = "empty_object")]
    pub config: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<ErrorPolicy>,
}

/// A sink: where records go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    #[serde(default = "empty_object")]
    pub config: Value,
}

/// The dead-letter sink: a connector without inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Where a record's event time comes from, and how far the watermark trails it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeSpec {
    /// A jq expression on the record as read, giving milliseconds since the Unix epoch (a
    /// number) or an RFC 3339 time (a string); left out, the source's own time (Kafka's
    /// timestamp) or else the time the record was read.
    #[serde(default)]
    pub field: Option<String>,
    /// Bounded out-of-orderness: the watermark trails the newest event time by this much
    /// (default 0s).
    #[serde(default)]
    pub max_delay: Option<String>,
    /// A split that gave nothing for this long stops holding the watermark back (default
    /// 10s).
    #[serde(default)]
    pub idle_after: Option<String>,
}

/// Default number of partitions.
pub const DEFAULT_PARALLELISM: u32 = 1;
/// Default time between checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: &str = "10s";

/// A whole pipeline as written by a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    pub name: String,
    pub parallelism: u32,
    pub checkpoint_interval: String,
    pub sources: Vec<SourceSpec>,
    pub transforms: Vec<TransformSpec>,
    pub sinks: Vec<SinkSpec>,
    pub dead_letter: Option<DeadLetterSpec>,
    /// The policy of steps that do not set their own; `dead_letter` when a dead-letter sink
    /// is configured, else `fail`.
    pub on_error: Option<ErrorPolicy>,
    /// Run every partition on this node (for sources that read the node's local files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u64>,
    /// Event time and watermarks (for windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTimeSpec>,
    /// Most bytes of window state one partition may checkpoint (default 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_state_bytes: Option<u64>,
}

const TOP_LEVEL: &[&str] = &[
    "name",
    "parallelism",
    "checkpoint_interval",
    "sources",
    "transforms",
    "sinks",
    "dead_letter",
    "on_error",
    "node",
    "event_time",
    "max_state_bytes",
];

/// Deserializes `value` as `T`, naming the place of the first problem below `path`.
pub(crate) fn field<T: for<'de> Deserialize<'de>>(
    value: &Value,
    path: &str,
) -> Result<T, SpecError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let place = if inner == "." || inner.is_empty() {
            path.to_string()
        } else if inner.starts_with('[') {
            format!("{path}{inner}")
        } else {
            format!("{path}.{inner}")
        };
        SpecError::new(place, e.into_inner().to_string())
    })
}

fn list<T: for<'de> Deserialize<'de>>(
    top: &serde_json::Map<String, Value>,
    key: &str,
    errors: &mut Vec<SpecError>,
) -> Vec<T> {
    match top.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match field::<T>(item, &format!("{key}[{i}]")) {
                Ok(t) => Some(t),
                Err(e) => {
                    errors.push(e);
                    None
                }
            })
            .collect(),
        Some(_) => {
            errors.push(SpecError::new(key, "must be a list"));
            Vec::new()
        }
    }
}

impl PipelineSpec {
    /// Parses a spec from JSON or YAML text (JSON when it starts with `{`). Every problem in
    /// the structure is reported, each with its place; a spec that parses may still be
    /// rejected by validation.
    pub fn parse(text: &str) -> Result<PipelineSpec, Vec<SpecError>> {
        let value: Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| vec![SpecError::new("spec", format!("invalid JSON: {e}"))])?
        } else {
            // The YAML parser reads the whole event stream before it checks depth, which takes
            // seconds on deeply nested input: refuse that up front.
            if flow_depth(text) > MAX_NESTING {
                return Err(vec![SpecError::new(
                    "spec",
                    format!("invalid YAML: nested deeper than {MAX_NESTING} levels"),
                )]);
            }
            serde_norway::from_str(text)
                .map_err(|e| vec![SpecError::new("spec", format!("invalid YAML: {e}"))])?
        };
        Self::from_value(&value)
    }

    /// Reads a spec from a JSON value, reporting every structural problem.
    pub fn from_value(value: &Value) -> Result<PipelineSpec, Vec<SpecError>> {
        let Value::Object(top) = value else {
            return Err(vec![SpecError::new("spec", "must be an object")]);
        };
        let mut errors = Vec::new();
        for key in top.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                errors.push(SpecError::new(
                    key.clone(),
                    format!("unknown field; expected one of {}", TOP_LEVEL.join(", ")),
                ));
            }
        }
        let name = match top.get("name") {
            Some(v) => field::<String>(v, "name")
                .map_err(|e| errors.push(e))
                .unwrap_or_default(),
            None => {
                errors.push(SpecError::new("name", "missing"));
                String::new()
            }
        };
        let parallelism = match top.get("parallelism") {
            Some(v) => field::<u32>(v, "parallelism")
                .map_err(|e| errors.push(e))
                .unwrap_or(DEFAULT_PARALLELISM),
            None => DEFAULT_PARALLELISM,
        };
        let checkpoint_interval = match top.get("checkpoint_interval") {
            Some(v) => field::<String>(v, "checkpoint_interval")
                .map_err(|e| errors.push(e))
                .unwrap_or_default(),
            None => DEFAULT_CHECKPOINT_INTERVAL.to_string(),
        };
        let sources = list::<SourceSpec>(top, "sources", &mut errors);
        let transforms = list::<TransformSpec>(top, "transforms", &mut errors);
        let sinks = list::<SinkSpec>(top, "sinks", &mut errors);
        let dead_letter = match top.get("dead_letter") {
            None | Some(Value::Null) => None,
            Some(v) => field::<DeadLetterSpec>(v, "dead_letter")
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let on_error = match top.get("on_error") {
            None | Some(Value::Null) => None,
            Some(v) => field::<ErrorPolicy>(v, "on_error")
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let node = match top.get("node") {
            None | Some(Value::Null) => None,
            Some(v) => field::<u64>(v, "node").map_err(|e| errors.push(e)).ok(),
        };
        let event_time = match top.get("event_time") {
            None | Some(Value::Null) => None,
            Some(v) => field::<EventTimeSpec>(v, "event_time")
                .map_err(|e| errors.push(e))
                .ok(),
        };
        let max_state_bytes = match top.get("max_state_bytes") {
            None | Some(Value::Null) => None,
            Some(v) => field::<u64>(v, "max_state_bytes")
                .map_err(|e| errors.push(e))
                .ok(),
        };
        if errors.is_empty() {
            Ok(PipelineSpec {
                event_time,
                max_state_bytes,
                node,
                name,
                parallelism,
                checkpoint_interval,
                sources,
                transforms,
                sinks,
                dead_letter,
                on_error,
            })
        } else {
            Err(errors)
        }
    }
}

/// Deepest nesting of `[` and `{` accepted in a YAML spec.
const MAX_NESTING: usize = 64;

/// The deepest nesting of flow collections (`[`, `{`) outside quoted strings and comments.
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = '\n';
    for c in text.chars() {
        let after = std::mem::replace(&mut prev, c);
        if comment {
            comment = c != '\n';
            continue;
        }
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' if after.is_whitespace() => comment = true,
                '[' | '{' => {
                    depth += 1;
                    max = max.max(depth);
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// Parses a duration such as `500ms`, `10s`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit: use ms, s, m or h (for example 10s)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' does not start with a whole number"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}': use ms, s, m or h"
            ))
        }
    }
    .ok_or_else(|| format!("'{text}' is too long"))?;
    Ok(std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings_and_comments() {
        assert_eq!(flow_depth("a: [1, {b: [2]}]"), 3);
        assert_eq!(flow_depth("a: '[[[[' # [[[[\nb: \"{{\\\"[\" \nc: x#[["), 2);
        let deep = format!("name: x\nsources: {}{}", "[".repeat(65), "]".repeat(65));
        let errors = PipelineSpec::parse(&deep).unwrap_err();
        assert!(
            errors[0].message.contains("nested deeper than 64"),
            "{errors:?}"
        );
    }
}
