//! Connectors: where records come from and go to. Each connector is a folder whose `mod.rs`
//! says what it reads or writes, its unit of partitioning, its resume position and its
//! delivery guarantee; [`connector`] is the one registry that maps a spec's `type` to it
//! (adding a connector is one folder plus one line in [`CONNECTORS`]).

pub mod file;
pub mod generator;
pub mod stdout;

use serde::Serialize;
use serde_json::Value;

use crate::pipeline::spec::SpecError;

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
}

/// Every connector, by name.
pub const CONNECTORS: &[ConnectorInfo] = &[file::INFO, generator::INFO, stdout::INFO];

/// The connector a spec's `type` names.
pub fn connector(name: &str) -> Option<&'static ConnectorInfo> {
    CONNECTORS.iter().find(|c| c.name == name)
}

/// Checks `config` against the typed config `T` (unknown fields rejected), naming the place
/// of the problem below `path`.
pub fn check_config<T: for<'de> serde::Deserialize<'de>>(
    config: &Value,
    path: &str,
) -> Result<T, SpecError> {
    crate::pipeline::spec::field(config, path)
}
