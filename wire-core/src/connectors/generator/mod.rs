//! Generator: makes records from a JSON template, at a rate and up to a count — for demos,
//! tests and benchmarks.
//!
//! - Partitioning: the sequence is split evenly; partition `p` of `n` makes numbers
//!   `p, p + n, p + 2n, ...`.
//! - Resume position: the next sequence number.
//! - Delivery: deterministic, so a resumed partition makes exactly the records it had not
//!   delivered.

pub mod config;
pub mod source;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "generator",
    summary: "records made from a JSON template, with a rate and a count",
    partitioning: "sequence numbers split evenly over partitions",
    resume: "next sequence number",
    delivery: "deterministic: a resumed partition regenerates exactly what was not delivered",
    source: Some(config::check_source),
    sink: None,
    open_source: Some(source::open),
    open_sink: None,
    source_config: Some(super::schema::<config::GeneratorConfig>),
    sink_config: None,
};
