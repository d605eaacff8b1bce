//! Registered: a source or sink written in the host program — a Python class given to
//! `wire.sources.python` / `wire.sinks.python`, or a Rust factory — registered by name in
//! the node's process, and named by a spec as `{"type": "registered", "config": {"name"}}`.
//!
//! - Partitioning: the source's splits (its `splits()`) spread over the partitions, split
//!   `i` to partition `i % partitions`; every sink partition writes through the same object.
//! - Resume position: per split, the position (any JSON value) the source returned with its
//!   last batch before the checkpoint.
//! - Delivery: at-least-once; a sink's batches after the last checkpoint are written again
//!   after a restart, and its `flush` is called before each checkpoint.
//!
//! Registrations are per process: every node the process hosts can run them, and a spec
//! naming one that is not registered is refused where it is validated.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    check_config, ConnectorError, ConnectorInfo, ConnectorResult, Sink, SinkContext, Source,
    SourceContext,
};
use crate::pipeline::spec::SpecError;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "registered",
    summary:
        "a source or sink registered in the node's process by name (a Python class, a Rust factory)",
    partitioning:
        "the source's splits spread over the partitions (split i to partition i % partitions)",
    resume: "per split, the position the source gave with its last batch before the checkpoint",
    delivery: "at-least-once (the sink is flushed before each checkpoint)",
    source: Some(check_source),
    sink: Some(check_sink),
    open_source: Some(open_source),
    open_sink: Some(open_sink),
    source_config: Some(super::schema::<RegisteredConfig>),
    sink_config: Some(super::schema::<RegisteredConfig>),
};

/// `type: registered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisteredConfig {
    /// The name the source or sink was registered under.
    pub name: String,
}

/// Opens a partition of a registered source.
pub type SourceFactory =
    Arc<dyn Fn(&SourceContext<'_>) -> ConnectorResult<Box<dyn Source>> + Send + Sync>;
/// Opens a partition of a registered sink.
pub type SinkFactory =
    Arc<dyn Fn(&SinkContext<'_>) -> ConnectorResult<Box<dyn Sink>> + Send + Sync>;

static SOURCES: Mutex<BTreeMap<String, SourceFactory>> = Mutex::new(BTreeMap::new());
static SINKS: Mutex<BTreeMap<String, SinkFactory>> = Mutex::new(BTreeMap::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registers (or replaces) the source `name` in this process.
pub fn register_source(name: &str, factory: SourceFactory) {
    lock(&SOURCES).insert(name.to_string(), factory);
}

/// Registers (or replaces) the sink `name` in this process.
pub fn register_sink(name: &str, factory: SinkFactory) {
    lock(&SINKS).insert(name.to_string(), factory);
}

fn check(config: &Value, path: &str, known: &dyn Fn(&str) -> bool, what: &str) -> Vec<SpecError> {
    match check_config::<RegisteredConfig>(config, path) {
        Ok(c) if known(&c.name) => Vec::new(),
        Ok(c) => vec![SpecError::new(
            format!("{path}.name"),
            format!(
                "no {what} '{}' is registered in this node's process (register it with wire.{what}s.python in the process that hosts the node)",
                c.name
            ),
        )],
        Err(e) => vec![e],
    }
}

fn check_source(config: &Value, path: &str) -> Vec<SpecError> {
    check(config, path, &|n| lock(&SOURCES).contains_key(n), "source")
}

fn check_sink(config: &Value, path: &str) -> Vec<SpecError> {
    check(config, path, &|n| lock(&SINKS).contains_key(n), "sink")
}

fn open_source(config: &Value, ctx: &SourceContext<'_>) -> ConnectorResult<Box<dyn Source>> {
    let c: RegisteredConfig = super::typed(config)?;
    let factory = lock(&SOURCES).get(&c.name).cloned().ok_or_else(|| {
        ConnectorError::invalid(format!(
            "no source '{}' is registered in this process",
            c.name
        ))
    })?;
    factory(ctx)
}

fn open_sink(config: &Value, ctx: &SinkContext<'_>) -> ConnectorResult<Box<dyn Sink>> {
    let c: RegisteredConfig = super::typed(config)?;
    let factory = lock(&SINKS).get(&c.name).cloned().ok_or_else(|| {
        ConnectorError::invalid(format!(
            "no sink '{}' is registered in this process",
            c.name
        ))
    })?;
    factory(ctx)
}
