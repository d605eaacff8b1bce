//! A pipeline as the replicated state keeps it: its spec, version and desired state.

use serde::{Deserialize, Serialize};

use super::spec::PipelineSpec;

/// What the cluster should be doing with a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    /// Run its partitions.
    Running,
    /// Keep its partitions stopped at their last checkpoint until resumed.
    Paused,
}

/// One row of the replicated `pipelines` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineRecord {
    pub spec: PipelineSpec,
    /// 1 when created; each update adds one.
    pub version: u64,
    pub desired: DesiredState,
    /// The log index of the last change.
    pub updated_index: u64,
    /// The log index at which the pipeline was created: tells apart a pipeline from an
    /// earlier one of the same name (a file sink names its output by it).
    #[serde(default)]
    pub created_index: u64,
}
