//! The configs of `type: mongodb`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::check_config;
use crate::pipeline::spec::{parse_duration, SpecError};

/// How the source follows a collection.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Copy the collection, then follow its change stream (replica sets, sharded clusters).
    #[default]
    ChangeStream,
    /// Copy the collection, then read what moved past the last document read, by
    /// `poll_field` (servers without change streams).
    Poll,
}

/// `type: mongodb` as a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// A `mongodb://` connection string.
    pub uri: String,
    pub database: String,
    /// Collections to read; they are spread over the pipeline's partitions.
    pub collections: Vec<String>,
    /// `change_stream` (default) or `poll`.
    #[serde(default)]
    pub mode: Mode,
    /// In `poll` mode, the field that grows with every insert or update (default `_id`);
    /// documents are read in (field, `_id`) order.
    #[serde(default)]
    pub poll_field: Option<String>,
    /// In `poll` mode, how long to wait once caught up, such as `500ms` (default `1s`).
    #[serde(default)]
    pub poll_interval: Option<String>,
    /// A query (extended JSON) the documents must match, such as `{"status": "paid"}`.
    #[serde(default)]
    pub filter: Option<serde_json::Map<String, Value>>,
    /// Documents per read (default 1000).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Keep following the collection once caught up (default `true`); `false` ends the
    /// partition after the copy, for a one-off export.
    #[serde(default = "yes")]
    pub tail: bool,
}

fn yes() -> bool {
    true
}

/// `type: mongodb` as a sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MongoSinkConfig {
    /// A `mongodb://` connection string.
    pub uri: String,
    pub database: String,
    pub collection: String,
    /// The field (a dotted path) whose value becomes the document's `_id` (default: the
    /// document's own `_id`, else one derived from the record's source position).
    #[serde(default)]
    pub id_field: Option<String>,
    /// Documents per write command (default 1000). FerretDB 1.24 on SQLite hangs on an
    /// `update` of 100 or more documents that already exist: keep it below 100 there.
    #[serde(default)]
    pub max_docs: Option<usize>,
    /// Longest a document waits before its write is sent, such as `1s` (default: until the
    /// batch is full or the next checkpoint).
    #[serde(default)]
    pub flush_interval: Option<String>,
}

fn check_uri(uri: &str, path: &str, errors: &mut Vec<SpecError>) {
    if uri.starts_with("mongodb+srv://") {
        errors.push(SpecError::new(
            format!("{path}.uri"),
            "mongodb+srv:// needs DNS SRV lookups, which this build leaves out: list the hosts in a mongodb:// URI",
        ));
    } else if !uri.starts_with("mongodb://") {
        errors.push(SpecError::new(
            format!("{path}.uri"),
            "must be a mongodb:// connection string",
        ));
    }
}

/// Database and collection names MongoDB accepts.
fn check_name(name: &str, what: &str, path: String, errors: &mut Vec<SpecError>) {
    let bad = if name.is_empty() {
        Some("must not be empty".to_string())
    } else if what == "database" && name.contains(['/', '\\', '.', ' ', '"', '$']) {
        Some("a database name has none of / \\ . space \" $".to_string())
    } else if what == "collection" && (name.contains('$') || name.starts_with("system.")) {
        Some("a collection name has no $ and does not start with system.".to_string())
    } else {
        None
    };
    if let Some(message) = bad {
        errors.push(SpecError::new(path, message));
    }
}

pub fn check_source(config: &Value, path: &str) -> Vec<SpecError> {
    let c: MongoSourceConfig = match check_config(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    check_uri(&c.uri, path, &mut errors);
    check_name(
        &c.database,
        "database",
        format!("{path}.database"),
        &mut errors,
    );
    if c.collections.is_empty() {
        errors.push(SpecError::new(
            format!("{path}.collections"),
            "name at least one collection",
        ));
    }
    for (i, name) in c.collections.iter().enumerate() {
        check_name(
            name,
            "collection",
            format!("{path}.collections[{i}]"),
            &mut errors,
        );
    }
    if c.mode == Mode::ChangeStream {
        for field in ["poll_field", "poll_interval"] {
            if config.get(field).is_some() {
                errors.push(SpecError::new(
                    format!("{path}.{field}"),
                    "only for mode: poll",
                ));
            }
        }
    }
    if let Some(f) = &c.poll_field {
        if f.is_empty() || f.starts_with('$') {
            errors.push(SpecError::new(
                format!("{path}.poll_field"),
                "must be a field name",
            ));
        }
    }
    if let Some(i) = &c.poll_interval {
        if let Err(e) = parse_duration(i) {
            errors.push(SpecError::new(format!("{path}.poll_interval"), e));
        }
    }
    if let Some(filter) = &c.filter {
        if let Err(e) = super::convert::document(&Value::Object(filter.clone())) {
            errors.push(SpecError::new(format!("{path}.filter"), e));
        }
    }
    if c.batch_size == Some(0) {
        errors.push(SpecError::new(
            format!("{path}.batch_size"),
            "must be positive",
        ));
    }
    errors
}

pub fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    let c: MongoSinkConfig = match check_config(config, path) {
        Ok(c) => c,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    check_uri(&c.uri, path, &mut errors);
    check_name(
        &c.database,
        "database",
        format!("{path}.database"),
        &mut errors,
    );
    check_name(
        &c.collection,
        "collection",
        format!("{path}.collection"),
        &mut errors,
    );
    if c.id_field.as_deref() == Some("") {
        errors.push(SpecError::new(
            format!("{path}.id_field"),
            "must not be empty",
        ));
    }
    if c.max_docs == Some(0) {
        errors.push(SpecError::new(
            format!("{path}.max_docs"),
            "must be positive",
        ));
    }
    if let Some(i) = &c.flush_interval {
        if let Err(e) = parse_duration(i) {
            errors.push(SpecError::new(format!("{path}.flush_interval"), e));
        }
    }
    errors
}
