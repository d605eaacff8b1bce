//! Stdout: writes each record as a line of JSON to the node's standard output — for demos.
//!
//! - Partitioning: every partition writes to the same stream, a whole line at a time.
//! - Resume position: none (a sink).
//! - Delivery: at-least-once; lines after the last checkpoint may repeat after a restart.

pub mod config;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "stdout",
    summary: "one JSON line per record on the node's standard output",
    partitioning: "all partitions share the stream, line by line",
    resume: "none (sink only)",
    delivery: "at-least-once",
    source: None,
    sink: Some(config::check_sink),
    open_source: None,
    open_sink: Some(open),
    source_config: None,
    sink_config: Some(super::schema::<config::StdoutConfig>),
};

use std::io::Write;

use crate::connectors::{Sink, SinkContext};
use crate::pipeline::transform::Record;

/// Writes lines to the process's standard output; blocks when nobody reads it (a stalled
/// reader stalls the pipeline, which is what backpressure means).
pub struct StdoutSink {
    prefix: String,
}

impl Sink for StdoutSink {
    /// A line is the record's JSON text: text kept from the source goes out as it is.
    fn takes_raw(&self) -> bool {
        true
    }

    fn write(&mut self, records: &[Record]) -> crate::connectors::ConnectorResult<()> {
        let mut text: Vec<u8> = Vec::new();
        for r in records {
            text.extend_from_slice(self.prefix.as_bytes());
            r.write_json(&mut text);
            text.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        Ok(out
            .write_all(&text)
            .map_err(|e| format!("writing to stdout: {e}"))?)
    }

    fn pre_commit(&mut self, _epoch: u64) -> crate::connectors::ConnectorResult<()> {
        Ok(std::io::stdout()
            .lock()
            .flush()
            .map_err(|e| format!("flushing stdout: {e}"))?)
    }
}

/// Opens the stdout sink (the registry's entry point).
pub fn open(
    config: &serde_json::Value,
    _ctx: &SinkContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Sink>> {
    let config: config::StdoutConfig = crate::connectors::typed(config)?;
    Ok(Box::new(StdoutSink {
        prefix: config.prefix.unwrap_or_default(),
    }))
}
