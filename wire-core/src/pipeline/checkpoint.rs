//! Checkpoints: how far a partition got, as the replicated `checkpoints` table keeps it. A
//! checkpoint is proposed through Raft only once every sink has made durable (pre-committed)
//! everything read before the positions it names, so a partition restarted from it loses
//! nothing; a file sink's pending output of the same epoch is published once it commits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::consensus::NodeId;

/// Source step id -> split (a file path, a topic partition) -> offset to resume at.
pub type Positions = BTreeMap<String, BTreeMap<String, u64>>;

/// One partition's checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Counts up from 1 within a pipeline's life; a sink's output of epoch `e` is committed
    /// together with checkpoint `e`.
    pub epoch: u64,
    /// The pipeline version that ran when it was taken.
    pub version: u64,
    /// The node that took it.
    pub node: NodeId,
    /// Where to resume.
    pub positions: Positions,
    /// Milliseconds since the Unix epoch when it was taken.
    pub taken_at_ms: u64,
}

/// The positions of all `checkpoints`, merged: a split that moved between partitions (the
/// parallelism changed) resumes from the furthest offset any partition recorded for it.
pub fn merged_positions<'a>(checkpoints: impl IntoIterator<Item = &'a Checkpoint>) -> Positions {
    let mut out = Positions::new();
    for c in checkpoints {
        for (source, splits) in &c.positions {
            let entry = out.entry(source.clone()).or_default();
            for (split, offset) in splits {
                let o = entry.entry(split.clone()).or_insert(0);
                *o = (*o).max(*offset);
            }
        }
    }
    out
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
