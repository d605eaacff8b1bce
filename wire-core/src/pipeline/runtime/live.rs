//! The live view of a job that the node shows: its state and each partition's last
//! checkpoint, progress and lag. Written by the job's workers and driver, read by status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::pipeline::checkpoint::Positions;

/// What a job is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum JobState {
    Starting,
    Running,
    /// Every source was read to its end and the last checkpoint taken.
    Finished,
    /// Stopped by an error; `retry` says whether restarting may help (an I/O error) or not
    /// (a record failed a step whose policy is `fail`).
    Failed {
        error: String,
        retry: bool,
    },
    /// Stopped on request (pause, update, delete, shutdown) or fenced off.
    Stopped {
        reason: String,
    },
}

/// A partition as the status API shows it.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct PartitionLive {
    /// The epoch of the last committed checkpoint (0: none yet).
    pub epoch: u64,
    /// Where the last committed checkpoint resumes.
    pub positions: Positions,
    pub last_checkpoint_ms: Option<u64>,
    /// Records (and bad inputs) read since the job started.
    pub read: u64,
    /// Input known to be left (bytes of files, records of a counted generator).
    pub lag: Option<u64>,
    /// Whether its sources were read to the end.
    pub finished: bool,
    /// Its event-time watermark (ms since the Unix epoch), for a pipeline with windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
    /// Windows open in it (and keys with dedup or reduce state), for a pipeline with state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_windows: Option<u64>,
    /// The size of the state its last checkpoint carried, and how long encoding it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_micros: Option<u64>,
}

/// The live view of a job, shared with the node.
#[derive(Debug)]
pub struct JobStatus {
    pub pipeline: String,
    pub version: u64,
    pub state: Mutex<JobState>,
    pub partitions: Mutex<BTreeMap<u32, PartitionLive>>,
    pub metrics: Arc<super::metrics::JobMetrics>,
}

impl JobStatus {
    pub fn state(&self) -> JobState {
        lock(&self.state).clone()
    }

    pub(super) fn set_state(&self, state: JobState) {
        *lock(&self.state) = state;
    }

    pub fn partitions(&self) -> BTreeMap<u32, PartitionLive> {
        lock(&self.partitions).clone()
    }

    pub(super) fn update(&self, partition: u32, f: impl FnOnce(&mut PartitionLive)) {
        f(lock(&self.partitions).entry(partition).or_default());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
