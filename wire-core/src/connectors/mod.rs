//! Connectors: where records come from and go to. Each connector is a folder whose `mod.rs`
//! says what it reads or writes, its unit of partitioning, its resume position and its
//! delivery guarantee; [`connector`] is the one registry that maps a spec's `type` to it
//! (adding a connector is one folder plus one line in [`CONNECTORS`]).
//!
//! A connector's folder holds everything it needs: `config.rs` (its typed config, whose JSON
//! Schema `GET /connectors` lists), the source and sink, its `INFO`, and its unit tests.
//! Outside the folder: the line in [`CONNECTORS`]; a Python helper in `python/wire/sources.py`
//! or `sinks.py` (optional — `wire.sources.connector(type, **config)` reaches any connector —
//! and when present checked against the schema by `tests/python/test_connectors.py`); and,
//! when it needs a server in tests, `tests/services/<name>.sh` (`start`/`stop`/`env`), which
//! `make test-rust` stops by convention.

pub mod elasticsearch;
pub mod file;
pub mod generator;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mongodb")]
pub mod mongodb;
pub mod read_ahead;
pub mod registered;
pub mod stdout;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::pipeline::checkpoint::Offset;
use crate::pipeline::spec::SpecError;
use crate::pipeline::transform::{Position, Record};

/// Where a source partition starts: which step and partition it is, and the offsets it
/// resumes from (split -> offset, from the last checkpoint).
#[derive(Debug, Clone)]
pub struct SourceContext<'a> {
    pub pipeline: &'a str,
    pub step: &'a str,
    pub partition: u32,
    pub partitions: u32,
    pub resume: &'a BTreeMap<String, Offset>,
    /// Every step that reads the source takes JSON text: a source of JSON may hand records
    /// over unparsed ([`Record::raw`]), checked to be JSON.
    pub raw: bool,
}

impl SourceContext<'_> {
    /// The resume offsets of a source that counts (its splits' numbers; tokens, which it
    /// never wrote, are left out).
    pub fn numeric_resume(&self) -> BTreeMap<String, u64> {
        self.resume
            .iter()
            .filter_map(|(split, o)| Some((split.clone(), o.num()?)))
            .collect()
    }
}

/// The positions of a source that counts, as a checkpoint keeps them.
pub fn numeric_positions(offsets: &BTreeMap<String, u64>) -> BTreeMap<String, Offset> {
    offsets
        .iter()
        .map(|(split, n)| (split.clone(), Offset::Num(*n)))
        .collect()
}

/// Where a sink partition writes: its pipeline and partition, and the last epoch whose
/// checkpoint committed (pending output up to it is published on open, the rest dropped).
#[derive(Debug, Clone)]
pub struct SinkContext<'a> {
    pub step: &'a str,
    pub pipeline: &'a str,
    pub partition: u32,
    pub committed_epoch: u64,
    /// Tells apart a pipeline from an earlier one of the same name (its creation index).
    pub incarnation: u64,
    /// The node that runs this partition now.
    pub node: u64,
    /// Which node committed which epochs: `(node, first, last)` (see `Checkpoint::tenures`).
    pub tenures: &'a [(u64, u64, u64)],
}

/// Why a connector failed. The job that runs it fails with the message; `kind` says whether
/// restarting it from its last checkpoint may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectorError {
    pub kind: ConnectorErrorKind,
    pub message: String,
}

/// What kind of failure a [`ConnectorError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorErrorKind {
    /// A server, file or disk failed or could not be reached: retrying may help.
    Unavailable,
    /// The config or the destination's settings cannot work: retrying will not help until
    /// the pipeline is changed.
    Invalid,
}

impl ConnectorError {
    pub fn unavailable(message: impl Into<String>) -> ConnectorError {
        ConnectorError {
            kind: ConnectorErrorKind::Unavailable,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ConnectorError {
        ConnectorError {
            kind: ConnectorErrorKind::Invalid,
            message: message.into(),
        }
    }

    /// Whether restarting the job may help.
    pub fn retryable(&self) -> bool {
        self.kind == ConnectorErrorKind::Unavailable
    }

    /// The same error, its message prefixed with `context: `.
    pub fn context(self, context: impl std::fmt::Display) -> ConnectorError {
        ConnectorError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

/// A failure described only by text is taken as one retrying may help with.
impl From<String> for ConnectorError {
    fn from(message: String) -> ConnectorError {
        ConnectorError::unavailable(message)
    }
}

impl From<&str> for ConnectorError {
    fn from(message: &str) -> ConnectorError {
        ConnectorError::unavailable(message)
    }
}

impl From<std::io::Error> for ConnectorError {
    fn from(e: std::io::Error) -> ConnectorError {
        ConnectorError::unavailable(e.to_string())
    }
}

/// What connectors return.
pub type ConnectorResult<T> = Result<T, ConnectorError>;

/// Input a source could not turn into a record: its raw bytes, where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadInput {
    pub raw: Vec<u8>,
    pub position: Position,
    pub reason: String,
}

/// Whether a source has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadState {
    /// More is there: read again at once.
    More,
    /// Nothing now (a paced generator, a tailed file): read again shortly.
    Idle,
    /// Everything was read: the partition's input is complete.
    Finished,
}

/// What one read returned.
#[derive(Debug)]
pub struct SourceBatch {
    pub records: Vec<Record>,
    pub bad: Vec<BadInput>,
    pub state: ReadState,
}

/// One partition of a source step. Runs on the partition's own thread; may block on I/O.
pub trait Source: Send {
    /// Reads up to `max` records (bad input counts toward `max`).
    fn read(&mut self, max: usize) -> ConnectorResult<SourceBatch>;
    /// Split -> offset to resume at so that nothing returned so far is read again.
    fn positions(&self) -> BTreeMap<String, Offset>;
    /// How much input is known to be left (bytes, records), if the source can tell.
    fn lag(&self) -> Option<u64> {
        None
    }
    /// Whether reading is work worth a thread of its own (parsing on the partition's thread,
    /// not waiting on a client library's): the runtime may then run it through
    /// [`read_ahead::ReadAhead`].
    fn read_ahead(&self) -> bool {
        false
    }
}

/// One partition of a sink step. Runs on the partition's sink thread; may block on I/O
/// (a sink that blocks slows the source: every hop is bounded).
pub trait Sink: Send {
    /// Writes records of the current epoch.
    fn write(&mut self, records: &[Record]) -> ConnectorResult<()>;
    /// Makes everything written durable as the output of `epoch`; called before that
    /// epoch's checkpoint is proposed.
    fn pre_commit(&mut self, epoch: u64) -> ConnectorResult<()>;
    /// Publishes the output of every epoch up to `epoch`, once its checkpoint committed.
    fn commit(&mut self, epoch: u64) -> ConnectorResult<()> {
        let _ = epoch;
        Ok(())
    }
    /// Records the destination refused for good since the last call (a document a search
    /// cluster will not index), with the reason: they go to the dead-letter sink. Asked
    /// after every `write` and `pre_commit`.
    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        Vec::new()
    }
    /// Whether `write` takes records whose value is still JSON text ([`Record::raw`]); if
    /// not (the default), they are parsed before they reach it.
    fn takes_raw(&self) -> bool {
        false
    }
}

/// Opens partition `ctx.partition` of a source from its (validated) config.
pub type OpenSource =
    fn(config: &Value, ctx: &SourceContext<'_>) -> ConnectorResult<Box<dyn Source>>;
/// Opens partition `ctx.partition` of a sink from its (validated) config.
pub type OpenSink = fn(config: &Value, ctx: &SinkContext<'_>) -> ConnectorResult<Box<dyn Sink>>;

/// Checks a connector's `config` (found at `path`), returning every problem.
pub type ConfigCheck = fn(config: &Value, path: &str) -> Vec<SpecError>;

/// What the registry knows of a connector, also listed by the API.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorInfo {
    /// The `type` a spec names it by.
    pub name: &'static str,
    /// What it reads or writes.
    pub summary: &'static str,
    /// How its work is split over a pipeline's partitions.
    pub partitioning: &'static str,
    /// The position a restarted partition resumes from.
    pub resume: &'static str,
    /// What delivery it guarantees.
    pub delivery: &'static str,
    /// Checks a source config; `None` when it cannot be a source.
    #[serde(skip)]
    pub source: Option<ConfigCheck>,
    /// Checks a sink config; `None` when it cannot be a sink.
    #[serde(skip)]
    pub sink: Option<ConfigCheck>,
    /// Opens a source partition (present when `source` is).
    #[serde(skip)]
    pub open_source: Option<OpenSource>,
    /// Opens a sink partition (present when `sink` is).
    #[serde(skip)]
    pub open_sink: Option<OpenSink>,
    /// The JSON Schema of its `config` as a source (listed by `GET /connectors`; the Python
    /// helpers are checked against it).
    #[serde(serialize_with = "schema_of")]
    pub source_config: Option<fn() -> schemars::Schema>,
    /// The JSON Schema of its `config` as a sink.
    #[serde(serialize_with = "schema_of")]
    pub sink_config: Option<fn() -> schemars::Schema>,
}

/// The JSON Schema of a typed connector config.
pub fn schema<T: schemars::JsonSchema>() -> schemars::Schema {
    schemars::SchemaGenerator::default().into_root_schema_for::<T>()
}

fn schema_of<S: serde::Serializer>(
    f: &Option<fn() -> schemars::Schema>,
    s: S,
) -> Result<S::Ok, S::Error> {
    f.map(|f| f()).serialize(s)
}

/// Every connector, by name.
pub const CONNECTORS: &[ConnectorInfo] = &[
    elasticsearch::INFO,
    file::INFO,
    generator::INFO,
    #[cfg(feature = "kafka")]
    kafka::INFO,
    #[cfg(feature = "mongodb")]
    mongodb::INFO,
    registered::INFO,
    stdout::INFO,
];

/// The connector a spec's `type` names.
pub fn connector(name: &str) -> Option<&'static ConnectorInfo> {
    CONNECTORS.iter().find(|c| c.name == name)
}

/// A document id derived from where `r` came from and that it is the `nth` output of its
/// input: the same again when the input is replayed, so an idempotent sink overwrites.
pub fn derived_id(r: &Record, nth: usize) -> String {
    let p = &r.position;
    let key = format!("{}\0{}\0{}", p.source, p.split, p.offset);
    format!("{:016x}-{nth}", crate::hash::stable_hash(key.as_bytes()))
}

/// Each record with its ordinal among the outputs of one input (consecutive records with
/// the same position): 0, 1, ... for a flat_map's outputs, 0 for a record of its own.
pub fn output_ordinals(records: &[Record]) -> impl Iterator<Item = (usize, &Record)> {
    let mut nth = 0;
    records.iter().enumerate().map(move |(i, r)| {
        nth = match i.checked_sub(1).map(|j| &records[j].position) {
            Some(prev) if *prev == r.position => nth + 1,
            _ => 0,
        };
        (nth, r)
    })
}

/// How a sink that blocks on an unavailable server paces its retries: 100 ms doubling to
/// 5 s between attempts, for up to 5 minutes, after which it fails (and its job restarts
/// from the last checkpoint, sending the same records again).
pub struct Retry {
    started: std::time::Instant,
    backoff: std::time::Duration,
}

impl Retry {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(100);
    const MAX: std::time::Duration = std::time::Duration::from_secs(5);
    pub const GIVE_UP_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

    pub fn new() -> Retry {
        Retry {
            started: std::time::Instant::now(),
            backoff: Self::FIRST,
        }
    }

    /// Waits before the next attempt for `left` documents, or gives up with an error
    /// naming `what` and `why` once retrying has lasted too long.
    pub fn wait(&mut self, what: &str, left: usize, why: &str) -> ConnectorResult<()> {
        if self.started.elapsed() >= Self::GIVE_UP_AFTER {
            return Err(ConnectorError::unavailable(format!(
                "{what}: {left} documents not stored after {:?}: {why}",
                Self::GIVE_UP_AFTER
            )));
        }
        tracing::warn!(documents = left, error = %why, "{what}: retrying");
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Self::MAX);
        Ok(())
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new()
    }
}

/// Reads a validated config as its typed struct (a config that passed validation reads).
pub fn typed<T: for<'de> serde::Deserialize<'de>>(config: &Value) -> ConnectorResult<T> {
    check_config(config, "config").map_err(|e| ConnectorError::invalid(e.to_string()))
}

/// Checks `config` against the typed config `T` (unknown fields rejected), naming the place
/// of the problem below `path`.
pub fn check_config<T: for<'de> serde::Deserialize<'de>>(
    config: &Value,
    path: &str,
) -> Result<T, SpecError> {
    crate::pipeline::spec::field(config, path)
}
