//! Counters of a running pipeline job: per step records in, out and dead-lettered, and the
//! time spent; per partition the records read and the last checkpoint. Lock-free to update
//! from partition threads; read by the status API and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// One step's counters.
#[derive(Debug, Default)]
pub struct StepCounters {
    records_in: AtomicU64,
    records_out: AtomicU64,
    dead_lettered: AtomicU64,
    batches: AtomicU64,
    nanos: AtomicU64,
}

impl StepCounters {
    pub fn add_in(&self, n: usize) {
        self.records_in.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn add_out(&self, n: usize) {
        self.records_out.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub fn add_dead(&self, n: usize) {
        self.dead_lettered.fetch_add(n as u64, Ordering::Relaxed);
    }
    /// Records the time one batch took in the step.
    pub fn add_time(&self, d: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StepStats {
        StepStats {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            batch_seconds: self.nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// A step's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct StepStats {
    pub records_in: u64,
    pub records_out: u64,
    pub dead_lettered: u64,
    /// Batches handled, and the seconds they took in all.
    pub batches: u64,
    pub batch_seconds: f64,
}

impl StepStats {
    /// Adds another node's counters of the same step.
    pub fn add(&mut self, other: &StepStats) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.dead_lettered += other.dead_lettered;
        self.batches += other.batches;
        self.batch_seconds += other.batch_seconds;
    }
}

/// How many recent dead letters a job keeps for the status (and the console).
pub const RECENT_DEAD_LETTERS: usize = 20;

/// The counters of one job (a pipeline's partitions on one node), and a sample of its most
/// recent dead letters (bounded; the dead-letter sink has them all).
#[derive(Debug, Default)]
pub struct JobMetrics {
    steps: Mutex<BTreeMap<String, Arc<StepCounters>>>,
    recent_dead: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// The counters once a second, the last [`HISTORY_SECONDS`].
    history: Mutex<std::collections::VecDeque<Sample>>,
}

/// Seconds of counters a node keeps per job, for the console's throughput chart.
pub const HISTORY_SECONDS: usize = 300;

/// A job's counters at one second: per step, records in, out and dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub t: u64,
    pub steps: BTreeMap<String, [u64; 3]>,
}

impl JobMetrics {
    /// The counters of step `id` (made on first use).
    pub fn step(&self, id: &str) -> Arc<StepCounters> {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.entry(id.to_string()).or_default().clone()
    }

    /// Remembers the last of `letters` (dead letters as written to the dead-letter sink).
    pub fn note_dead(&self, letters: &[crate::pipeline::transform::Record]) {
        let skip = letters.len().saturating_sub(RECENT_DEAD_LETTERS);
        let mut recent = self.recent_dead.lock().unwrap_or_else(|p| p.into_inner());
        for letter in &letters[skip..] {
            let text = crate::pipeline::json::to_json(&letter.value);
            if let Ok(v) = serde_json::from_str(&text) {
                recent.push_back(v);
            }
        }
        while recent.len() > RECENT_DEAD_LETTERS {
            recent.pop_front();
        }
    }

    /// The most recent dead letters, oldest first.
    pub fn recent_dead(&self) -> Vec<serde_json::Value> {
        let recent = self.recent_dead.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().cloned().collect()
    }

    /// Keeps the counters as they are at second `t` (once per second).
    pub fn sample(&self, t: u64) {
        let steps = self
            .snapshot()
            .into_iter()
            .map(|(id, s)| (id, [s.records_in, s.records_out, s.dead_lettered]))
            .collect();
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if history.back().is_some_and(|last| last.t >= t) {
            return;
        }
        history.push_back(Sample { t, steps });
        while history.len() > HISTORY_SECONDS {
            history.pop_front();
        }
    }

    /// The kept samples, oldest first.
    pub fn history(&self) -> Vec<Sample> {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        history.iter().cloned().collect()
    }

    pub fn snapshot(&self) -> BTreeMap<String, StepStats> {
        let steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps
            .iter()
            .map(|(k, v)| (k.clone(), v.snapshot()))
            .collect()
    }
}
