//! Files: reads JSON lines or CSV from a file or a glob of files; writes JSON lines or CSV
//! part files into a directory.
//!
//! - Partitioning: as a source, each matched file is a split: dealt round-robin over the
//!   partitions from the sorted matches (with `tail`, placed by a hash of its path, so that
//!   new files do not move old ones); as a sink, each partition writes its own part files.
//! - Resume position: the byte offset in each file up to which every record was delivered.
//! - Delivery: the sink writes part files and commits them at checkpoints, so file → file
//!   pipelines are exactly-once across restarts; as a source, at-least-once into other sinks.

pub mod config;
pub mod sink;
pub mod source;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "file",
    summary:
        "JSON lines or CSV files: a file or glob as a source, part files in a directory as a sink",
    partitioning: "source: one split per file; sink: part files per partition",
    resume: "byte offset per file",
    delivery:
        "exactly-once for file sinks (part files committed at checkpoints); at-least-once otherwise",
    source: Some(config::check_source),
    sink: Some(config::check_sink),
    open_source: Some(source::open),
    open_sink: Some(sink::open),
    source_config: Some(super::schema::<config::FileSourceConfig>),
    sink_config: Some(super::schema::<config::FileSinkConfig>),
};
