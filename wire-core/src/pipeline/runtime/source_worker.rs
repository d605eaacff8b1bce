//! A partition's source worker: one thread that reads the partition's sources a batch at a
//! time, runs the whole DAG on the batch and routes the output to the sink workers. Between
//! batches it answers the coordinator: at a barrier it sends the barrier downstream, reports
//! its positions and waits to be released.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::coordinator::Input;
use super::dead_letter;
use super::event_time::EventClock;
use super::live::JobStatus;
use super::metrics::StepCounters;
use super::plan::{Outputs, PartitionState, Plan};
use super::routing::Router;
use crate::connectors::{BadInput, ReadState, Source};
use crate::pipeline::checkpoint::Positions;
use crate::pipeline::spec::ErrorPolicy;
use crate::pipeline::transform::Record;

/// Records read per batch.
pub const BATCH: usize = 1024;

/// What the driver tells a source worker.
pub enum SourceCtl {
    /// Pass barrier `epoch` (see the module doc), then wait for `Release` or `Stop`.
    Barrier {
        epoch: u64,
    },
    Release,
    Stop,
}

pub struct SourceWorker {
    pub partition: u32,
    pub plan: Arc<Plan>,
    pub pipeline: String,
    pub sources: Vec<Box<dyn Source>>,
    pub router: Router,
    pub events: UnboundedSender<Input>,
    pub status: Arc<JobStatus>,
    pub progress: Arc<AtomicU64>,
    /// Each source step's counters, in the order of `sources`.
    pub counters: Vec<Arc<StepCounters>>,
    /// Event times and the watermark, for a pipeline that keeps them.
    pub clock: Option<EventClock>,
    /// Read nothing until released: the other nodes of a keyed job have yet to join (what it
    /// wrote meanwhile could not be checkpointed, and a sink that does not wait for a
    /// checkpoint would show it twice).
    pub held: bool,
}

impl SourceWorker {
    fn positions(&self) -> Positions {
        self.plan
            .graph
            .sources
            .iter()
            .zip(&self.sources)
            .map(|(step, s)| (step.id.clone(), s.positions()))
            .collect()
    }

    fn fail(&self, error: String, retry: bool) {
        let _ = self.events.send(Input::Failed { error, retry });
    }

    pub fn run(mut self, ctl: Receiver<SourceCtl>) {
        if self.held {
            match ctl.recv() {
                Ok(SourceCtl::Release) => {}
                _ => return,
            }
        }
        let mut finished = vec![false; self.sources.len()];
        let mut idle = false;
        let mut failed = false;
        let mut read: u64 = 0;
        let mut last_lag = std::time::Instant::now() - Duration::from_secs(10);
        // What batching steps hold between reads, and a watermark held back behind it.
        let mut held = PartitionState::default();
        let mut watermark: Option<Option<i64>> = None;
        loop {
            let msg = if failed || finished.iter().all(|f| *f) {
                ctl.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else if idle {
                ctl.recv_timeout(Duration::from_millis(5))
            } else {
                ctl.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match msg {
                Ok(SourceCtl::Barrier { epoch }) => {
                    tracing::trace!(partition = self.partition, epoch, "barrier");
                    // Nothing held crosses a barrier: its records' positions are in this
                    // checkpoint.
                    if let Err((e, retry)) = self.flush(&mut held, true, &mut watermark) {
                        self.fail(e, retry);
                        return;
                    }
                    if let Err(e) = self.router.barrier(epoch) {
                        self.fail(e, true);
                        return;
                    }
                    let _ = self.events.send(Input::Positions {
                        partition: self.partition,
                        epoch,
                        positions: self.positions(),
                        read,
                    });
                    match ctl.recv() {
                        Ok(SourceCtl::Release) => continue,
                        _ => return,
                    }
                }
                Ok(SourceCtl::Release) => continue,
                Ok(SourceCtl::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if failed || finished.iter().all(|f| *f) {
                continue;
            }
            idle = true;
            for (i, done) in finished.iter_mut().enumerate() {
                if *done {
                    continue;
                }
                let batch = match self.sources[i].read(BATCH) {
                    Ok(b) => b,
                    Err(e) => {
                        let step = &self.plan.graph.sources[i];
                        let retry = e.retryable();
                        self.fail(format!("{} ({}): {e}", step.id, step.path), retry);
                        failed = true;
                        break;
                    }
                };
                match batch.state {
                    ReadState::More => idle = false,
                    ReadState::Idle => {}
                    ReadState::Finished => *done = true,
                }
                let n = batch.records.len() + batch.bad.len();
                if n == 0 {
                    continue;
                }
                self.progress.fetch_add(n as u64, Ordering::Relaxed);
                if let Err((error, retry)) = self.handle(i, batch.records, batch.bad, &mut held) {
                    self.fail(error, retry);
                    failed = true;
                    break;
                }
                read += n as u64;
                self.status
                    .update(self.partition, |live| live.read += n as u64);
            }
            if last_lag.elapsed() >= Duration::from_secs(1) {
                last_lag = std::time::Instant::now();
                let lag = self
                    .sources
                    .iter()
                    .map(|s| s.lag())
                    .try_fold(0u64, |acc, l| l.map(|l| acc + l));
                self.status.update(self.partition, |live| live.lag = lag);
            }
            if let Some(w) = self.clock.as_mut().and_then(EventClock::due) {
                // Held records would be late behind it: it waits for them.
                watermark = Some(w);
            }
            if !failed {
                let all_read = finished.iter().all(|f| *f);
                if let Err((error, retry)) = self.flush(&mut held, all_read, &mut watermark) {
                    self.fail(error, retry);
                    failed = true;
                }
            }
            if !failed && finished.iter().all(|f| *f) {
                // Read to the end: no record will be older than anything, every window
                // closes before the last checkpoint.
                if self.clock.is_some() {
                    if let Err(e) = self.router.watermark(Some(i64::MAX)) {
                        self.fail(e, true);
                    }
                    // What it closes is output too: counted as progress, so the job
                    // takes a checkpoint after it even when one covered every record.
                    read += 1;
                    self.progress.fetch_add(1, Ordering::Relaxed);
                }
                self.status
                    .update(self.partition, |live| live.finished = true);
                let _ = self.events.send(Input::Finished {
                    partition: self.partition,
                    read,
                });
            }
        }
    }

    /// Hands on what batching steps hold (all of it with `force`, else what waited long
    /// enough), then the watermark held back, once nothing is held.
    fn flush(
        &mut self,
        held: &mut PartitionState,
        force: bool,
        watermark: &mut Option<Option<i64>>,
    ) -> Result<(), (String, bool)> {
        if held.holding() {
            let outputs = self.plan.flush(held, force);
            self.emit(outputs, Vec::new())?;
        }
        if !held.holding() {
            if let Some(w) = watermark.take() {
                self.router.watermark(w).map_err(|e| (e, true))?;
            }
        }
        Ok(())
    }

    /// Sends a run's outputs, its rejects and `dead` on.
    fn emit(&self, outputs: Outputs, mut dead: Vec<Record>) -> Result<(), (String, bool)> {
        if let Some(f) = &outputs.failure {
            return Err((dead_letter::failure(f), false));
        }
        dead.extend(dead_letter::of_rejected(
            &self.pipeline,
            self.partition,
            &outputs.rejected,
        ));
        self.router
            .send(outputs.per_sink, dead, outputs.exchanged)
            .map_err(|e| (e, true))
    }

    /// Runs one batch through the DAG and sends its outputs and dead letters on.
    fn handle(
        &mut self,
        source: usize,
        records: Vec<Record>,
        bad: Vec<BadInput>,
        held: &mut PartitionState,
    ) -> Result<(), (String, bool)> {
        let step = &self.plan.graph.sources[source];
        self.counters[source].add_out(records.len());
        self.counters[source].add_dead(bad.len());
        let mut dead: Vec<Record> = Vec::new();
        if let Some(b) = bad.first() {
            if step.on_error == ErrorPolicy::Fail {
                return Err((
                    format!(
                        "{}: bad input at {}:{}: {}",
                        step.id, b.position.split, b.position.offset, b.reason
                    ),
                    false,
                ));
            }
        }
        for b in &bad {
            dead.push(dead_letter::letter(
                &self.pipeline,
                self.partition,
                &step.id,
                None,
                &b.raw,
                &b.position,
                &b.reason,
            ));
        }
        let records = match self.clock.as_mut() {
            Some(clock) => {
                let (stamped, untimed) = clock.stamp(records);
                for (r, why) in &untimed {
                    dead.push(dead_letter::letter(
                        &self.pipeline,
                        self.partition,
                        &step.id,
                        Some(r),
                        &r.json(),
                        &r.position,
                        why,
                    ));
                }
                self.counters[source].add_dead(untimed.len());
                stamped
            }
            None => records,
        };
        let outputs = self.plan.run(source, records, held);
        self.emit(outputs, dead)
    }
}
