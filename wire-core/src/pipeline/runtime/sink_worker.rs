//! A partition's sink worker: one thread that writes every sink and the dead-letter sink of
//! the partition. Data comes down one bounded channel from the partition's upstream sources
//! (every local source of a keyed pipeline, else its own), so a slow sink blocks them. A
//! barrier from every upstream means the epoch's input is complete: the sinks pre-commit
//! (make it durable as pending output), the coordinator hears `SinkReady`, and the sinks
//! publish the epoch when told it is committed.

use std::sync::mpsc::Receiver;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::coordinator::Input;
use super::dead_letter;
use super::metrics::{JobMetrics, StepCounters};
use super::plan::{PartitionState, Plan};
use crate::connectors::{ConnectorError, ConnectorResult, Sink};
use crate::pipeline::transform::Record;
use std::collections::BTreeMap;

/// What the sources send a sink worker.
pub enum SinkMsg {
    /// A batch's records per sink (in the pipeline's sink order) and its dead letters.
    Data {
        per_sink: Vec<Vec<Record>>,
        dead: Vec<Record>,
    },
    /// What exchange steps put out for this partition: (step, records), to run through the
    /// steps after them here.
    Exchanged(Vec<(usize, Vec<Record>)>),
    /// Source partition `from` will send no record older than this (ms) any more; `None`:
    /// it is idle and holds nobody back.
    Watermark {
        from: u32,
        watermark: Option<i64>,
    },
    Barrier(u64),
}

/// What the driver tells a sink worker after it pre-committed.
pub enum SinkCtl {
    /// Publish the output of this (committed) epoch.
    Commit(u64),
    Abort,
}

/// A partition's sinks, as its sink thread holds them.
pub struct SinkPartition {
    pub pipeline: String,
    pub partition: u32,
    /// Runs the steps after an exchange on the records that land here.
    pub plan: Arc<Plan>,
    /// Its windows (restored from its checkpoint).
    pub state: PartitionState,
    /// The watermark of each upstream source partition (`None`: idle).
    pub watermarks: BTreeMap<u32, Option<i64>>,
    /// This partition's watermark: the least of its upstreams'.
    pub watermark: i64,
    pub max_state_bytes: u64,
    /// Where its watermark and open windows are shown.
    pub status: Arc<super::live::JobStatus>,
    pub sink_ids: Vec<String>,
    pub sinks: Vec<Box<dyn Sink>>,
    pub dead: Option<Box<dyn Sink>>,
}

impl SinkPartition {
    /// Sends what sink `k` refused for good to the dead-letter sink.
    fn divert(&mut self, k: usize, counters: &[Arc<StepCounters>]) -> ConnectorResult<()> {
        let rejected = self.sinks[k].take_rejected();
        if rejected.is_empty() {
            return Ok(());
        }
        counters[k].add_dead(rejected.len());
        let letters = self.letters(k, &rejected);
        self.write_dead(&letters).map_err(|e| match e {
            None => ConnectorError::invalid(format!(
                "sink '{}' refused {} records ({}) and there is no dead-letter sink",
                self.sink_ids[k],
                rejected.len(),
                rejected[0].1
            )),
            Some(e) => e,
        })
    }

    /// The dead letters of records sink `k` could not take, with the reasons.
    fn letters(&self, k: usize, refused: &[(Record, String)]) -> Vec<Record> {
        refused
            .iter()
            .map(|(r, why)| {
                dead_letter::letter(
                    &self.pipeline,
                    self.partition,
                    &self.sink_ids[k],
                    Some(r),
                    &r.json(),
                    &r.position,
                    why,
                )
            })
            .collect()
    }

    /// Writes dead letters; `Err(None)` when there is no dead-letter sink.
    fn write_dead(&mut self, letters: &[Record]) -> Result<(), Option<ConnectorError>> {
        match &mut self.dead {
            Some(d) => {
                d.write(letters)
                    .map_err(|e| Some(e.context("dead-letter sink")))?;
                self.status.metrics.note_dead(letters);
                Ok(())
            }
            None => Err(None),
        }
    }

    /// Makes the epoch's output durable in every sink, diverting what they refuse.
    fn pre_commit(&mut self, epoch: u64, counters: &[Arc<StepCounters>]) -> ConnectorResult<()> {
        for k in 0..self.sinks.len() {
            self.sinks[k]
                .pre_commit(epoch)
                .map_err(|e| e.context(format!("sink '{}'", self.sink_ids[k])))?;
            self.divert(k, counters)?;
        }
        if let Some(d) = &mut self.dead {
            d.pre_commit(epoch)
                .map_err(|e| e.context("dead-letter sink"))?;
        }
        Ok(())
    }

    /// Writes a batch's records to the sinks and its dead letters.
    fn write(
        &mut self,
        per_sink: Vec<Vec<Record>>,
        letters: &[Record],
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> ConnectorResult<()> {
        let mut letters = std::borrow::Cow::Borrowed(letters);
        for (k, mut records) in per_sink.into_iter().enumerate() {
            if records.is_empty() {
                continue;
            }
            let started = std::time::Instant::now();
            if !self.sinks[k].takes_raw() {
                // Values the source or a columnar step left as text are parsed here, on the
                // sink's thread; text that does not parse is a dead letter.
                let mut failed = Vec::new();
                records = crate::pipeline::transform::parse_raw(records, &mut failed);
                counters[k].add_dead(failed.len());
                letters.to_mut().extend(self.letters(k, &failed));
            }
            self.sinks[k]
                .write(&records)
                .map_err(|e| e.context(format!("sink '{}'", self.sink_ids[k])))?;
            counters[k].add_in(records.len());
            counters[k].add_time(started.elapsed());
            self.divert(k, counters)?;
        }
        if !letters.is_empty() {
            match self.write_dead(&letters) {
                Ok(()) => dead_counter.add_in(letters.len()),
                Err(e) => {
                    return Err(e.unwrap_or_else(|| {
                        ConnectorError::invalid(
                            "a record was rejected and there is no dead-letter sink",
                        )
                    }))
                }
            }
        }
        Ok(())
    }

    /// Runs records that landed here through the steps after their exchange step, then
    /// writes them; `Err((error, retry))`.
    fn land(
        &mut self,
        batches: Vec<(usize, Vec<Record>)>,
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> Result<(), (String, bool)> {
        for (step, records) in batches {
            let out = self.plan.run_exchanged(step, records, &mut self.state);
            self.emit(out, counters, dead_counter)?;
        }
        if self.plan.stateful() {
            let open = self.state.open();
            self.status
                .update(self.partition, |live| live.open_windows = Some(open));
        }
        Ok(())
    }

    /// Writes what a run of the plan gave: its records, and its rejects as dead letters;
    /// `Err((error, retry))`, not retried when a `fail` step rejected a record.
    fn emit(
        &mut self,
        out: super::plan::Outputs,
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> Result<(), (String, bool)> {
        if let Some(f) = &out.failure {
            return Err((dead_letter::failure(f), false));
        }
        let letters = dead_letter::of_rejected(&self.pipeline, self.partition, &out.rejected);
        self.write(out.per_sink, &letters, counters, dead_counter)
            .map_err(|e| (e.message.clone(), e.retryable()))
    }

    /// Takes an upstream partition's watermark; when the partition's (the least of its
    /// upstreams') moves, the windows it closes emit their results.
    fn watermark(
        &mut self,
        from: u32,
        watermark: Option<i64>,
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> Result<(), (String, bool)> {
        if let Some(w) = self.watermarks.get_mut(&from) {
            *w = match (*w, watermark) {
                (Some(old), Some(new)) => Some(old.max(new)),
                (_, new) => new,
            };
        }
        self.advance(counters, dead_counter)
    }

    /// Hands on what batching steps hold (all of it with `force`, else what waited long
    /// enough); once nothing is held, the watermark moves as its upstreams let it.
    fn flush(
        &mut self,
        force: bool,
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> Result<(), (String, bool)> {
        if !self.state.holding() {
            return Ok(());
        }
        let out = self.plan.flush(&mut self.state, force);
        self.emit(out, counters, dead_counter)?;
        self.advance(counters, dead_counter)
    }

    /// Moves the partition's watermark to the least of its upstreams', unless a batching
    /// step holds records (which would be late behind it).
    fn advance(
        &mut self,
        counters: &[Arc<StepCounters>],
        dead_counter: &StepCounters,
    ) -> Result<(), (String, bool)> {
        if self.state.holding() {
            return Ok(());
        }
        // The least of the upstreams that are not idle (all idle: no move).
        let Some(least) = self.watermarks.values().flatten().copied().min() else {
            return Ok(());
        };
        if least <= self.watermark {
            return Ok(());
        }
        self.watermark = least;
        let out = self.plan.fire(&mut self.state, least);
        let open = self.state.open();
        self.status.update(self.partition, |live| {
            live.watermark = Some(least);
            live.open_windows = Some(open);
        });
        self.emit(out, counters, dead_counter)
    }

    /// The window state to checkpoint, if the pipeline keeps any; `Err` past the budget.
    fn snapshot(&self) -> Result<Option<Vec<u8>>, String> {
        if !self.plan.stateful() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let bytes = self.state.encode()?;
        let micros = started.elapsed().as_micros() as u64;
        let len = bytes.len() as u64;
        self.status.update(self.partition, |live| {
            live.state_bytes = Some(len);
            live.state_micros = Some(micros);
        });
        if bytes.len() as u64 > self.max_state_bytes {
            return Err(format!(
                "the window state of partition {} is {} bytes, over the pipeline's max_state_bytes ({}): use shorter windows, fewer keys or aggregates, or raise max_state_bytes",
                self.partition,
                bytes.len(),
                self.max_state_bytes
            ));
        }
        Ok(Some(bytes))
    }

    fn commit(&mut self, epoch: u64) -> ConnectorResult<()> {
        for (k, sink) in self.sinks.iter_mut().enumerate() {
            sink.commit(epoch)
                .map_err(|e| e.context(format!("sink '{}'", self.sink_ids[k])))?;
        }
        if let Some(d) = &mut self.dead {
            d.commit(epoch).map_err(|e| e.context("dead-letter sink"))?;
        }
        Ok(())
    }
}

pub fn run(
    mut out: SinkPartition,
    data: Receiver<SinkMsg>,
    ctl: Receiver<SinkCtl>,
    upstreams: usize,
    events: UnboundedSender<Input>,
    metrics: Arc<JobMetrics>,
) {
    let counters: Vec<_> = out.sink_ids.iter().map(|id| metrics.step(id)).collect();
    let dead_counter = metrics.step("dead_letter");
    let partition = out.partition;
    let mut barriers = 0;
    // Early window results, every so often (processing time).
    let early_every = out.plan.early_every();
    let mut early_at = early_every.map(|e| std::time::Instant::now() + e);
    let fail = |e: ConnectorError| {
        let _ = events.send(Input::Failed {
            retry: e.retryable(),
            error: e.message,
        });
    };
    loop {
        if let (Some(at), Some(every)) = (early_at, early_every) {
            if std::time::Instant::now() >= at {
                early_at = Some(std::time::Instant::now() + every);
                let early = out.plan.early(&mut out.state);
                if let Err((error, retry)) = out.emit(early, &counters, &dead_counter) {
                    let _ = events.send(Input::Failed { error, retry });
                    return;
                }
            }
        }
        if let Err((error, retry)) = out.flush(false, &counters, &dead_counter) {
            let _ = events.send(Input::Failed { error, retry });
            return;
        }
        // Waiting for data, it still hears an abort: its upstreams may be on other nodes
        // (a link's receiver holds the channel open) and never hang up. It wakes for what a
        // batching step holds, too.
        let mut wait = std::time::Duration::from_millis(50);
        if let Some(at) = out.plan.flush_at(&out.state) {
            wait = wait.min(at.saturating_duration_since(std::time::Instant::now()));
        }
        let msg = match data.recv_timeout(wait) {
            Ok(m) => m,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match ctl.try_recv() {
                Ok(SinkCtl::Abort) | Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                _ => continue,
            },
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match msg {
            SinkMsg::Data {
                per_sink,
                dead: letters,
            } => {
                if let Err(e) = out.write(per_sink, &letters, &counters, &dead_counter) {
                    fail(e);
                    return;
                }
            }
            SinkMsg::Exchanged(batches) => {
                if let Err((error, retry)) = out.land(batches, &counters, &dead_counter) {
                    let _ = events.send(Input::Failed { error, retry });
                    return;
                }
            }
            SinkMsg::Watermark { from, watermark } => {
                if let Err((error, retry)) =
                    out.watermark(from, watermark, &counters, &dead_counter)
                {
                    let _ = events.send(Input::Failed { error, retry });
                    return;
                }
            }
            SinkMsg::Barrier(epoch) => {
                barriers += 1;
                if barriers < upstreams {
                    continue;
                }
                barriers = 0;
                // Nothing held crosses the barrier.
                if let Err((error, retry)) = out.flush(true, &counters, &dead_counter) {
                    let _ = events.send(Input::Failed { error, retry });
                    return;
                }
                if let Err(error) = out.pre_commit(epoch, &counters) {
                    fail(error);
                    return;
                }
                // Every upstream's records before the barrier are in: the state is the
                // checkpoint's.
                match out.snapshot() {
                    Ok(Some(state)) => {
                        let _ = events.send(Input::State {
                            partition,
                            epoch,
                            state,
                        });
                    }
                    Ok(None) => {}
                    Err(error) => {
                        let _ = events.send(Input::Failed {
                            error,
                            retry: false,
                        });
                        return;
                    }
                }
                let _ = events.send(Input::SinkReady { partition, epoch });
                match ctl.recv() {
                    Ok(SinkCtl::Commit(e)) => {
                        if let Err(err) = out.commit(e) {
                            fail(err);
                            return;
                        }
                    }
                    _ => return,
                }
            }
        }
    }
}
