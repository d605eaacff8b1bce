//! The typed commands the replicated state machine applies, and their responses. Applying a
//! command is deterministic: it depends only on the command and the state before it.

use serde::{Deserialize, Serialize};

use crate::consensus::NodeId;
use crate::kv::Txn;
use crate::pipeline::catalog::PartitionMove;
use crate::pipeline::checkpoint::Checkpoint;
use crate::pipeline::{DesiredState, PipelineSpec};

/// A change to the replicated state, proposed through Raft.
///
/// Later parts of Wire add variants for pipelines, assignments and checkpoints; the tables
/// they write already exist (see [`super::tables`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Set a user key.
    KvPut {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a user key.
    KvDelete { key: String },
    /// Check conditions, then apply one branch of writes atomically.
    KvTxn(Txn),
    /// Create a pipeline; refused if one of that name exists.
    PipelineCreate { spec: PipelineSpec },
    /// Store a new version of a pipeline's spec (creating it when `upsert`).
    PipelineUpdate { spec: PipelineSpec, upsert: bool },
    /// Change what the cluster should do with a pipeline.
    PipelineSetState { name: String, desired: DesiredState },
    /// Remove a pipeline, with its assignments and checkpoints.
    PipelineDelete { name: String },
    /// The leader's assignment of a pipeline's partitions to nodes, replacing the previous
    /// one; refused when the pipeline is gone or at another version (a stale assigner).
    PipelineAssign {
        name: String,
        version: u64,
        assignments: Vec<(u32, NodeId)>,
        /// Pending hand-offs (and notes of moves made directly).
        #[serde(default)]
        moves: Vec<(u32, PartitionMove)>,
    },
    /// `node` stopped these partitions after their final checkpoints: assign them to the
    /// targets of their pending moves.
    PipelineHandOff {
        name: String,
        node: NodeId,
        partitions: Vec<u32>,
    },
    /// Mark a member as draining (its partitions move away and it takes no new ones) or not.
    SetDraining { node: NodeId, draining: bool },
    /// Checkpoints of partitions that `node` runs, applied all or none: refused when the
    /// pipeline is gone, a partition is not assigned to `node` (it moved: the old owner is
    /// fenced off), or an epoch does not advance.
    Checkpoint {
        name: String,
        /// The job's session (see `PipelineSession`).
        session: u64,
        checkpoints: Vec<(u32, Checkpoint)>,
    },
    /// A job starting: makes `session` the one whose checkpoints the partitions of `owners`
    /// accept; refused unless each is assigned to the node named and the pipeline is at
    /// `version`. Answered with the pipeline's checkpoints.
    PipelineSession {
        name: String,
        session: u64,
        /// The pipeline version the job runs (refused when the pipeline is at another).
        version: u64,
        owners: Vec<(u32, NodeId)>,
    },
    /// Several independent commands proposed as one entry (group commit); each is applied in
    /// order and answered on its own.
    Batch(Vec<Command>),
}

impl Command {
    /// Whether applying it can change what pipelines run where (the supervisor looks again).
    pub fn touches_pipelines(&self) -> bool {
        match self {
            Command::PipelineCreate { .. }
            | Command::PipelineUpdate { .. }
            | Command::PipelineSetState { .. }
            | Command::PipelineDelete { .. }
            | Command::PipelineAssign { .. }
            | Command::PipelineHandOff { .. }
            | Command::SetDraining { .. } => true,
            Command::Batch(commands) => commands.iter().any(Command::touches_pipelines),
            _ => false,
        }
    }
}

impl Command {
    /// Roughly how many bytes the command carries (for sizing batches).
    pub fn approx_size(&self) -> usize {
        match self {
            Command::KvPut { key, value } => key.len() + value.len() + 16,
            Command::KvDelete { key } => key.len() + 16,
            Command::KvTxn(t) => {
                let compares: usize = t
                    .compare
                    .iter()
                    .map(|c| match c {
                        crate::kv::Compare::Equals { key, value } => key.len() + value.len(),
                        other => other.key().len(),
                    })
                    .sum();
                let ops: usize = t
                    .success
                    .iter()
                    .chain(&t.failure)
                    .map(|op| match op {
                        crate::kv::TxnOp::Put { key, value } => key.len() + value.len(),
                        crate::kv::TxnOp::Delete { key } => key.len(),
                    })
                    .sum();
                compares + ops + 16
            }
            Command::PipelineCreate { spec } | Command::PipelineUpdate { spec, .. } => {
                serde_json::to_vec(spec).map(|v| v.len()).unwrap_or(1024)
            }
            Command::PipelineSetState { name, .. } | Command::PipelineDelete { name } => {
                name.len() + 16
            }
            Command::PipelineAssign {
                name,
                assignments,
                moves,
                ..
            } => {
                name.len()
                    + assignments.len() * 16
                    + moves
                        .iter()
                        .map(|(_, m)| m.reason.len() + 32)
                        .sum::<usize>()
                    + 16
            }
            Command::PipelineHandOff {
                name, partitions, ..
            } => name.len() + partitions.len() * 4 + 16,
            Command::SetDraining { .. } => 16,
            Command::PipelineSession { name, owners, .. } => name.len() + owners.len() * 12 + 8,
            Command::Checkpoint {
                name, checkpoints, ..
            } => {
                name.len()
                    + checkpoints
                        .iter()
                        .map(|(_, c)| {
                            c.positions
                                .iter()
                                .map(|(s, splits)| {
                                    s.len() + splits.keys().map(|k| k.len() + 16).sum::<usize>()
                                })
                                .sum::<usize>()
                                + 48
                        })
                        .sum::<usize>()
            }
            Command::Batch(commands) => commands.iter().map(Command::approx_size).sum(),
        }
    }
}

/// What applying a [`Command`] (or a Raft-internal entry) produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// Blank and membership entries.
    None,
    /// A put: whether the key existed before.
    KvPut { existed: bool },
    /// A delete: whether the key existed.
    KvDelete { existed: bool },
    /// A transaction: whether the compares held (the `success` branch ran).
    KvTxn { succeeded: bool },
    /// A pipeline was written: its version now, whether it was new, and whether anything
    /// changed (an update with the spec it already runs changes nothing).
    Pipeline {
        version: u64,
        created: bool,
        #[serde(default = "changed_by_default")]
        changed: bool,
    },
    /// A create found a pipeline of that name (at this version).
    PipelineExists { version: u64 },
    /// The pipeline named does not exist.
    PipelineMissing,
    /// A delete: whether the pipeline existed.
    PipelineDeleted { existed: bool },
    /// Assignments were stored.
    Assigned,
    /// Checkpoints were stored.
    CheckpointSaved,
    /// A session was opened; the checkpoints of its partitions at that point.
    SessionOpened { checkpoints: Vec<(u32, Checkpoint)> },
    /// A member's draining mark: whether it changed.
    Draining { changed: bool },
    /// An assignment or checkpoint was refused, and why.
    Refused { reason: String },
    /// A batch: one response per command, in order.
    Batch(Vec<CommandResponse>),
}

/// Replies from nodes that predate `changed` always changed something.
fn changed_by_default() -> bool {
    true
}
