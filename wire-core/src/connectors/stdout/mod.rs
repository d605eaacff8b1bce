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
};
