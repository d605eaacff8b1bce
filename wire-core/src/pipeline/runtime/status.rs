//! What `GET /pipelines/{name}` reports: the replicated record (spec, version, desired
//! state), where each partition runs, and — from the node that runs it — its live state,
//! position, lag and counters.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::live::{JobState, JobStatus, PartitionLive};
use super::metrics::StepStats;
use crate::consensus::NodeId;
use crate::pipeline::catalog::PartitionMove;
use crate::pipeline::PipelineRecord;

/// A node's report of the job it runs for a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobReport {
    pub version: u64,
    pub state: JobState,
    pub partitions: BTreeMap<u32, PartitionLive>,
    pub steps: BTreeMap<String, StepStats>,
    /// Its most recent dead letters (a bounded sample), oldest first.
    #[serde(default)]
    pub dead_letters: Vec<serde_json::Value>,
    /// Its counters once a second, the last minutes.
    #[serde(default)]
    pub history: Vec<super::metrics::Sample>,
}

impl JobReport {
    pub fn of(status: &JobStatus) -> JobReport {
        JobReport {
            version: status.version,
            state: status.state(),
            partitions: status.partitions(),
            steps: status.metrics.snapshot(),
            dead_letters: status.metrics.recent_dead(),
            history: status.metrics.history(),
        }
    }
}

/// A pipeline's records at one second, summed over its nodes: read by its sources, written
/// by its sinks, dead-lettered by any step (totals since the jobs started).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throughput {
    /// Seconds since the Unix epoch.
    pub t: u64,
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
}

/// The nodes' samples summed per second, over the seconds every reporting node sampled
/// (a second some node missed would look like a drop).
fn throughput(
    spec: &crate::pipeline::PipelineSpec,
    reports: &BTreeMap<NodeId, Answer>,
) -> Vec<Throughput> {
    let histories: Vec<&Vec<super::metrics::Sample>> = reports
        .values()
        .filter_map(|r| r.as_ref().and_then(|r| r.as_ref()))
        .map(|r| &r.history)
        .filter(|h| !h.is_empty())
        .collect();
    let Some(first) = histories.first() else {
        return Vec::new();
    };
    let sources: BTreeSet<String> = spec
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| s.id.clone().unwrap_or_else(|| format!("source{i}")))
        .collect();
    let sinks: BTreeSet<String> = spec
        .sinks
        .iter()
        .enumerate()
        .map(|(i, s)| s.id.clone().unwrap_or_else(|| format!("sink{i}")))
        .collect();
    let mut out = Vec::new();
    for sample in first.iter() {
        let at: Vec<&super::metrics::Sample> = histories
            .iter()
            .filter_map(|h| h.iter().find(|s| s.t == sample.t))
            .collect();
        if at.len() != histories.len() {
            continue;
        }
        let mut point = Throughput {
            t: sample.t,
            records_in: 0,
            records_out: 0,
            dead_lettered: 0,
        };
        for s in at {
            for (id, [records_in, records_out, dead]) in &s.steps {
                if sources.contains(id) {
                    point.records_in += records_out;
                }
                if sinks.contains(id) {
                    point.records_out += records_in;
                }
                point.dead_lettered += dead;
            }
        }
        out.push(point);
    }
    out
}

/// One partition in a pipeline's status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub partition: u32,
    /// The node it is assigned to (none while unassigned).
    pub node: Option<NodeId>,
    /// `running`, `finished`, `failed`, `stopped`, `starting`, `unassigned` or `unknown`
    /// (its node did not answer).
    pub state: String,
    /// The node it is being handed off to (after its final checkpoint here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<NodeId>,
    /// Its last move: from where, to where and why (a node silent, draining, balancing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_move: Option<PartitionMove>,
    #[serde(flatten)]
    pub live: PartitionLive,
}

/// A pipeline's whole status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    #[serde(flatten)]
    pub record: PipelineRecord,
    /// `running`, `paused`, `finished`, `failed`, `starting` or `unassigned`.
    pub state: String,
    /// Why a job failed or stopped, per node.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<String>,
    /// Whether a failed job will be restarted (an I/O failure) rather than wait for an
    /// update or resume (a record failed a step whose policy is `fail`).
    #[serde(default)]
    pub retrying: bool,
    pub partitions: Vec<PartitionStatus>,
    /// Counters per step, summed over nodes.
    pub steps: BTreeMap<String, StepStats>,
    /// The most recent dead letters the nodes running it kept (newest first, at most
    /// [`super::metrics::RECENT_DEAD_LETTERS`]); the dead-letter sink has them all.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub dead_letters: Vec<serde_json::Value>,
    /// The records in, out and dead-lettered once a second over the last minutes, as the
    /// nodes running it kept them (for the console's chart).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub throughput: Vec<Throughput>,
}

fn state_name(s: &JobState) -> &'static str {
    match s {
        JobState::Starting => "starting",
        JobState::Running => "running",
        JobState::Finished => "finished",
        JobState::Failed { .. } => "failed",
        JobState::Stopped { .. } => "stopped",
    }
}

/// What an owning node said of its job: `None` when it did not answer; `Some(None)` when it
/// runs no job for the pipeline (yet).
pub type Answer = Option<Option<JobReport>>;

/// Puts a status together from the record, the assignments, the checkpoints and what each
/// owning node answered.
pub fn assemble(
    record: PipelineRecord,
    assignments: &BTreeMap<u32, NodeId>,
    checkpoints: &BTreeMap<u32, crate::pipeline::checkpoint::Checkpoint>,
    moves: &BTreeMap<u32, PartitionMove>,
    reports: &BTreeMap<NodeId, Answer>,
) -> PipelineStatus {
    let mut partitions = Vec::new();
    let mut steps: BTreeMap<String, StepStats> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut retrying = false;
    let mut dead_letters: Vec<serde_json::Value> = Vec::new();
    for (node, report) in reports {
        if let Some(Some(r)) = report {
            dead_letters.extend(r.dead_letters.iter().cloned());
            for (id, s) in &r.steps {
                steps.entry(id.clone()).or_default().add(s);
            }
            match &r.state {
                JobState::Failed { error, retry } => {
                    retrying |= *retry;
                    errors.push(format!("node {node}: {error}"))
                }
                JobState::Stopped { reason } => errors.push(format!("node {node}: {reason}")),
                _ => {}
            }
        }
    }
    let paused = record.desired == crate::pipeline::DesiredState::Paused;
    for p in 0..record.spec.parallelism {
        let node = assignments.get(&p).copied();
        let answer = node.and_then(|n| reports.get(&n));
        let (state, live) = match (node, answer) {
            (None, _) => ("unassigned".to_string(), PartitionLive::default()),
            (Some(_), Some(Some(Some(r)))) if r.version == record.version => (
                state_name(&r.state).to_string(),
                r.partitions.get(&p).cloned().unwrap_or_default(),
            ),
            // Its node runs no job for it: stopped by the pause, or not started yet.
            (Some(_), Some(Some(None))) if paused => {
                ("paused".to_string(), PartitionLive::default())
            }
            (Some(_), Some(Some(_))) => ("starting".to_string(), PartitionLive::default()),
            (Some(_), _) => ("unknown".to_string(), PartitionLive::default()),
        };
        let mut live = live;
        if live.epoch == 0 {
            if let Some(c) = checkpoints.get(&p) {
                live.epoch = c.epoch;
                live.positions = c.positions.clone();
                live.last_checkpoint_ms = Some(c.taken_at_ms);
            }
        }
        if live.state_bytes.is_none() {
            // The last checkpoint's state (a finished or stopped job reports none).
            if let Some(c) = checkpoints.get(&p) {
                live.state_bytes = c.state.as_ref().map(|s| s.len() as u64);
            }
        }
        let m = moves.get(&p);
        partitions.push(PartitionStatus {
            partition: p,
            node,
            state,
            moving_to: m.filter(|m| !m.done).map(|m| m.to),
            last_move: m.filter(|m| m.done).cloned(),
            live,
        });
    }
    let all = |s: &str| !partitions.is_empty() && partitions.iter().all(|p| p.state == s);
    let any = |s: &str| partitions.iter().any(|p| p.state == s);
    let state = if paused {
        // Paused once its partitions stopped (after their final checkpoint); until then
        // they still read and write.
        if any("running") || any("starting") {
            "pausing"
        } else {
            "paused"
        }
    } else if any("failed") {
        "failed"
    } else if all("finished") {
        "finished"
    } else if any("unassigned") {
        "unassigned"
    } else if partitions
        .iter()
        .all(|p| p.state == "running" || p.state == "finished")
    {
        "running"
    } else {
        "starting"
    };
    dead_letters.sort_by_key(|d| std::cmp::Reverse(d["time_ms"].as_u64().unwrap_or(0)));
    dead_letters.truncate(super::metrics::RECENT_DEAD_LETTERS);
    let throughput = throughput(&record.spec, reports);
    PipelineStatus {
        record,
        state: state.to_string(),
        errors,
        retrying,
        partitions,
        steps,
        dead_letters,
        throughput,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::runtime::metrics::Sample;

    fn report(history: Vec<Sample>) -> Answer {
        Some(Some(JobReport {
            version: 1,
            state: JobState::Running,
            partitions: BTreeMap::new(),
            steps: BTreeMap::new(),
            dead_letters: Vec::new(),
            history,
        }))
    }

    fn sample(t: u64, read: u64, written: u64, dead: u64) -> Sample {
        Sample {
            t,
            steps: BTreeMap::from([
                ("gen".to_string(), [0, read, 0]),
                ("jq".to_string(), [read, written, dead]),
                ("sink0".to_string(), [written, written, 0]),
            ]),
        }
    }

    /// Nodes' samples are summed per second: sources' records out are read, sinks'
    /// records in are written; a second one node missed is left out.
    #[test]
    fn throughput_sums_the_nodes_over_the_seconds_all_sampled() {
        let spec = crate::pipeline::PipelineSpec::parse(
            r#"{"name": "p", "sources": [{"id": "gen", "type": "generator", "config": {}}],
                "transforms": [{"id": "jq", "type": "jq", "config": {"filter": "."}}],
                "sinks": [{"type": "stdout", "inputs": ["jq"]}]}"#,
        )
        .expect("spec");
        let reports = BTreeMap::from([
            (1, report(vec![sample(10, 5, 4, 1), sample(11, 9, 8, 1)])),
            (2, report(vec![sample(9, 1, 1, 0), sample(11, 20, 18, 2)])),
            (3, None),
        ]);
        assert_eq!(
            throughput(&spec, &reports),
            [Throughput {
                t: 11,
                records_in: 29,
                records_out: 26,
                dead_lettered: 3
            }]
        );
        assert!(throughput(&spec, &BTreeMap::new()).is_empty());
    }
}
