//! Pipeline operations, as every face calls them: specs validated against this node's
//! connectors and transforms, the catalog changed through Raft with typed answers, and a
//! pipeline's status assembled from the catalog and the live reports of the nodes that run
//! its partitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::unexpected;
use crate::cluster::calls;
use crate::consensus::client::{ConsensusClient, Consistency};
use crate::consensus::proposer::WriteOutcome;
use crate::consensus::{Command, CommandResponse, NodeId};
use crate::pipeline::runtime::status::{self, JobReport, PipelineStatus};
use crate::pipeline::runtime::supervisor::Runtime;
use crate::pipeline::transform::Transform;
use crate::pipeline::{DesiredState, PipelineGraph, PipelineRecord, PipelineSpec};
use crate::{Error, Result};

/// The result of writing a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineWritten {
    pub name: String,
    pub version: u64,
    /// Whether the pipeline is new.
    pub created: bool,
    /// Whether the call changed anything (applying the spec a pipeline already runs does
    /// not: no new version, no restart).
    pub changed: bool,
}

/// Every pipeline's record, as every face answers a listing: `{"pipelines": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineRecord>,
}

/// A pipeline's desired state, set: `{"name", "version", "desired"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredSet {
    pub name: String,
    pub version: u64,
    pub desired: DesiredState,
}

fn written(name: &str, outcome: WriteOutcome) -> Result<PipelineWritten> {
    match outcome.response {
        CommandResponse::Pipeline {
            version,
            created,
            changed,
        } => Ok(PipelineWritten {
            name: name.to_string(),
            version,
            created,
            changed,
        }),
        CommandResponse::PipelineExists { version } => Err(Error::Conflict(format!(
            "pipeline '{name}' already exists (version {version}); update it instead"
        ))),
        CommandResponse::PipelineMissing => Err(Error::NotFound(format!("pipeline '{name}'"))),
        CommandResponse::Refused { reason } => Err(Error::Conflict(reason)),
        other => Err(unexpected(other)),
    }
}

/// The pipeline service of a node.
#[derive(Clone)]
pub struct PipelineOps {
    client: ConsensusClient,
    runtime: Arc<Runtime>,
}

impl PipelineOps {
    pub fn new(client: ConsensusClient, runtime: Arc<Runtime>) -> PipelineOps {
        PipelineOps { client, runtime }
    }

    /// Validates a spec against this node's connectors and transforms.
    pub fn validate_spec(&self, spec: &PipelineSpec) -> Result<PipelineGraph> {
        self.runtime.validate_spec(spec)
    }

    /// Registers a transform under `name`, usable as `type: name` in any spec run on this
    /// node; replaces one registered before under that name. A built-in name is refused.
    pub fn register_transform(&self, name: &str, transform: Arc<dyn Transform>) -> Result<()> {
        self.runtime.register_transform(name, transform)
    }

    /// Registers a keyed function (state per key) under `name`, usable as `{"type":
    /// "reduce", "config": {"function": name}}` after a `key_by`.
    pub fn register_keyed(
        &self,
        name: &str,
        function: Arc<dyn crate::pipeline::reduce::KeyedFunction>,
    ) -> Result<()> {
        self.runtime.register_keyed(name, function)
    }

    /// Whether `name` can name a registered transform (not built in; letters, digits, '-',
    /// '_' or '.').
    pub fn check_transform_name(name: &str) -> Result<()> {
        Runtime::check_transform_name(name)
    }

    /// This node's pipeline runtime (its jobs' live status).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Creates a pipeline; refused if one of that name exists.
    pub async fn create(&self, spec: PipelineSpec) -> Result<PipelineWritten> {
        self.runtime.validate_spec(&spec)?;
        let name = spec.name.clone();
        let outcome = self.client.write(Command::PipelineCreate { spec }).await?;
        written(&name, outcome)
    }

    /// Stores a new version of a pipeline (creating it when `upsert`); its partitions restart
    /// from their checkpoints. The spec it already runs changes nothing (`changed: false`).
    pub async fn update(&self, spec: PipelineSpec, upsert: bool) -> Result<PipelineWritten> {
        self.runtime.validate_spec(&spec)?;
        let name = spec.name.clone();
        let outcome = self
            .client
            .write(Command::PipelineUpdate { spec, upsert })
            .await?;
        written(&name, outcome)
    }

    /// Pauses or resumes a pipeline.
    pub async fn set_state(&self, name: &str, desired: DesiredState) -> Result<DesiredSet> {
        let outcome = self
            .client
            .write(Command::PipelineSetState {
                name: name.to_string(),
                desired,
            })
            .await?;
        let written = written(name, outcome)?;
        Ok(DesiredSet {
            name: written.name,
            version: written.version,
            desired,
        })
    }

    /// Deletes a pipeline.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let outcome = self
            .client
            .write(Command::PipelineDelete {
                name: name.to_string(),
            })
            .await?;
        match outcome.response {
            CommandResponse::PipelineDeleted { existed: true } => Ok(()),
            CommandResponse::PipelineDeleted { existed: false } => {
                Err(Error::NotFound(format!("pipeline '{name}'")))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A pipeline, read at the given consistency.
    pub async fn get(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Option<PipelineRecord>> {
        self.client.read_barrier(consistency).await?;
        self.client.state().pipeline(name)
    }

    /// A pipeline's status: its record, where each partition runs, and each owning node's
    /// live report (asked over the Raft listener; a node that does not answer within a
    /// second shows its partitions as `unknown`).
    pub async fn status(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Option<PipelineStatus>> {
        let Some(record) = self.get(name, consistency).await? else {
            return Ok(None);
        };
        let assignments = self.client.state().assignments(name)?;
        let checkpoints = self.client.state().checkpoints(name)?;
        let owners: BTreeSet<NodeId> = assignments.values().copied().collect();
        let mut reports = BTreeMap::new();
        for owner in owners {
            let report = if owner == self.client.id() {
                Some(self.runtime.job(name).map(|s| JobReport::of(&s)))
            } else {
                self.client
                    .ask_member::<String, Option<JobReport>>(
                        owner,
                        calls::paths::JOB_REPORT,
                        &name.to_string(),
                        Duration::from_secs(1),
                    )
                    .await
                    .ok()
            };
            reports.insert(owner, report);
        }
        let moves = self.client.state().moves(name)?;
        Ok(Some(status::assemble(
            record,
            &assignments,
            &checkpoints,
            &moves,
            &reports,
        )))
    }

    /// Every pipeline, by name, read at the given consistency.
    pub async fn list(&self, consistency: Consistency) -> Result<PipelineList> {
        self.client.read_barrier(consistency).await?;
        Ok(PipelineList {
            pipelines: self.client.state().pipelines()?,
        })
    }
}
