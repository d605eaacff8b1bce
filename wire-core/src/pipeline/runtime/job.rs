//! A job: the partitions of one pipeline that one node runs. Each partition has a source
//! thread (read, run the whole DAG on the batch, route) and a sink thread (write every sink
//! and the dead-letter sink), joined by a bounded channel: a slow sink blocks its sources,
//! so memory stays bounded. With `key_by`, sources route each record to the sink thread of
//! the partition that owns its key (a keyed pipeline runs all its partitions on one node).
//!
//! Checkpoints are aligned barriers, driven by the job's coordinator task:
//!
//! 1. every source thread is asked for a barrier: it finishes its batch, sends the barrier
//!    down every channel it writes to, reports its positions, and pauses;
//! 2. a sink thread that has the barrier from each of its upstreams pre-commits every sink
//!    (durable as pending output of the epoch) and acknowledges;
//! 3. the coordinator proposes the checkpoint (all local partitions, one Raft command); once
//!    committed the sinks publish the epoch's output and the sources go on.
//!
//! A record is thus in a checkpoint's output exactly when it was read before the checkpoint's
//! positions. Graceful stop takes a final checkpoint first.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::plan::Plan;
use crate::connectors::file::source::stable_hash;
use crate::connectors::read_ahead::{self, ReadAhead};
use crate::connectors::{connector, BadInput, ReadState, Sink, SinkContext, Source, SourceContext};
use crate::consensus::{Command, CommandResponse, NodeId};
use crate::pipeline::checkpoint::{merged_positions, now_ms, Checkpoint, Positions};
use crate::pipeline::spec::ErrorPolicy;
use crate::pipeline::transform::{Record, Rejected};

/// Records read per batch.
pub const BATCH: usize = 1024;
/// Batches that may wait in each partition's channel.
const CHANNEL_BATCHES: usize = 4;
/// How long a final checkpoint may take before the job stops without it.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(10);

/// Proposes a command through Raft (the node's write path).
pub type Propose = Arc<
    dyn Fn(Command) -> Pin<Box<dyn Future<Output = crate::Result<CommandResponse>> + Send>>
        + Send
        + Sync,
>;

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

    fn set_state(&self, state: JobState) {
        *lock(&self.state) = state;
    }

    pub fn partitions(&self) -> BTreeMap<u32, PartitionLive> {
        lock(&self.partitions).clone()
    }

    fn update(&self, partition: u32, f: impl FnOnce(&mut PartitionLive)) {
        f(lock(&self.partitions).entry(partition).or_default());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything a job needs to start.
pub struct JobConfig {
    pub pipeline: String,
    pub version: u64,
    /// The pipeline's creation index (names its file output).
    pub incarnation: u64,
    pub node: NodeId,
    /// The partitions this node runs.
    pub partitions: Vec<u32>,
    pub plan: Arc<Plan>,
    /// The committed checkpoints of every partition of the pipeline.
    pub checkpoints: BTreeMap<u32, Checkpoint>,
    pub metrics: Arc<super::metrics::JobMetrics>,
}

enum SourceCtl {
    Barrier {
        epoch: u64,
        reply: oneshot::Sender<Positions>,
    },
    Release,
    Stop,
}

enum SinkCtl {
    Commit(u64),
    Abort,
}

enum SinkMsg {
    Data {
        per_sink: Vec<Vec<Record>>,
        dead: Vec<Record>,
    },
    Barrier(u64),
}

enum Event {
    Failed { error: String, retry: bool },
    Finished(u32),
}

type Ack = (u32, u64, Result<(), String>);

/// A running job. Stop it with [`Job::stop`].
pub struct Job {
    pub status: Arc<JobStatus>,
    stop: oneshot::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Job {
    /// Starts the job's threads and coordinator. Errors opening connectors make the job fail
    /// (visible in its state) rather than this call.
    pub fn start(cfg: JobConfig, propose: Propose) -> Job {
        let status = Arc::new(JobStatus {
            pipeline: cfg.pipeline.clone(),
            version: cfg.version,
            state: Mutex::new(JobState::Starting),
            partitions: Mutex::new(BTreeMap::new()),
            metrics: cfg.metrics.clone(),
        });
        for p in &cfg.partitions {
            let c = cfg.checkpoints.get(p);
            status.update(*p, |live| {
                live.epoch = c.map(|c| c.epoch).unwrap_or(0);
                live.positions = c.map(|c| c.positions.clone()).unwrap_or_default();
                live.last_checkpoint_ms = c.map(|c| c.taken_at_ms);
            });
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(cfg, propose, status.clone(), stop_rx));
        Job {
            status,
            stop: stop_tx,
            task,
        }
    }

    /// Stops the job: a final checkpoint (if anything moved since the last), then every
    /// thread ends. Returns once it has.
    pub async fn stop(self, reason: &str) {
        let _ = self.stop.send(reason.to_string());
        let _ = self.task.await;
    }
}

struct Threads {
    sources: Vec<(u32, Sender<SourceCtl>)>,
    sinks: Vec<(u32, Sender<SinkCtl>)>,
    handles: Vec<std::thread::JoinHandle<()>>,
    progress: Arc<AtomicU64>,
}

impl Threads {
    fn stop(&self) {
        for (_, s) in &self.sources {
            let _ = s.send(SourceCtl::Stop);
        }
        for (_, s) in &self.sinks {
            let _ = s.send(SinkCtl::Abort);
        }
    }

    /// Waits (off the async threads) for every thread to end, for at most `limit`; a thread
    /// stuck in a blocked write is left behind.
    async fn join(self, limit: Duration) {
        let handles = self.handles;
        let joined = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        });
        if tokio::time::timeout(limit, joined).await.is_err() {
            tracing::warn!("pipeline threads did not end in time; leaving them");
        }
    }
}

/// Opens every source and sink and starts the threads.
fn spawn_threads(
    cfg: &JobConfig,
    status: &Arc<JobStatus>,
    events: tmpsc::UnboundedSender<Event>,
    acks: tmpsc::UnboundedSender<Ack>,
) -> Result<Threads, String> {
    let plan = &cfg.plan;
    let graph = &plan.graph;
    let parallelism = graph.parallelism;
    let local: Vec<u32> = cfg.partitions.clone();
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let mut sink_ctls = Vec::new();
    let mut data_senders: BTreeMap<u32, SyncSender<SinkMsg>> = BTreeMap::new();
    let upstreams = if plan.keyed { local.len() } else { 1 };
    let others: Positions = merged_positions(cfg.checkpoints.values());

    for &p in &local {
        let committed_epoch = cfg.checkpoints.get(&p).map(|c| c.epoch).unwrap_or(0);
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for step in &graph.sinks {
            sinks.push(open_sink(
                &step.kind,
                &step.config,
                &step.id,
                cfg,
                p,
                committed_epoch,
            )?);
        }
        let dead = match &graph.dead_letter {
            Some(d) => Some(open_sink(
                &d.kind,
                &d.config,
                "dead_letter",
                cfg,
                p,
                committed_epoch,
            )?),
            None => None,
        };
        let (data_tx, data_rx) = mpsc::sync_channel(CHANNEL_BATCHES);
        let (ctl_tx, ctl_rx) = mpsc::channel();
        data_senders.insert(p, data_tx);
        sink_ctls.push((p, ctl_tx));
        let acks = acks.clone();
        let events = events.clone();
        let metrics = cfg.metrics.clone();
        let sink_ids: Vec<String> = graph.sinks.iter().map(|s| s.id.clone()).collect();
        let pipeline = cfg.pipeline.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wire-sink-{}-{p}", cfg.pipeline))
            .spawn(move || {
                sink_loop(
                    SinkPartition {
                        pipeline,
                        partition: p,
                        sink_ids,
                        sinks,
                        dead,
                    },
                    data_rx,
                    ctl_rx,
                    upstreams,
                    acks,
                    events,
                    metrics,
                )
            })
            .map_err(|e| format!("starting a sink thread: {e}"))?;
        handles.push(handle);
    }

    let mut source_ctls = Vec::new();
    for &p in &local {
        // Resume from this partition's checkpoint; splits it has none for (they moved here
        // from another partition) from wherever any partition got.
        let own = cfg
            .checkpoints
            .get(&p)
            .map(|c| c.positions.clone())
            .unwrap_or_default();
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for step in &graph.sources {
            let mut resume = others.get(&step.id).cloned().unwrap_or_default();
            resume.extend(own.get(&step.id).cloned().unwrap_or_default());
            let ctx = SourceContext {
                pipeline: &cfg.pipeline,
                step: &step.id,
                partition: p,
                partitions: parallelism,
                resume: &resume,
            };
            let open = connector(&step.kind)
                .and_then(|c| c.open_source)
                .ok_or_else(|| format!("'{}' cannot be a source", step.kind))?;
            let source = open(&step.config, &ctx).map_err(|e| format!("{}: {e}", step.path))?;
            sources.push(
                if source.read_ahead() && read_ahead::worth_it(local.len()) {
                    let name = format!("wire-read-{}-{p}", cfg.pipeline);
                    Box::new(ReadAhead::start(source, BATCH, name)?)
                } else {
                    source
                },
            );
        }
        let routes: BTreeMap<u32, SyncSender<SinkMsg>> = if plan.keyed {
            data_senders.clone()
        } else {
            data_senders
                .get(&p)
                .map(|s| BTreeMap::from([(p, s.clone())]))
                .unwrap_or_default()
        };
        let (ctl_tx, ctl_rx) = mpsc::channel();
        source_ctls.push((p, ctl_tx));
        let worker = SourceWorker {
            partition: p,
            parallelism,
            plan: cfg.plan.clone(),
            pipeline: cfg.pipeline.clone(),
            sources,
            routes,
            events: events.clone(),
            status: status.clone(),
            progress: progress.clone(),
            counters: graph
                .sources
                .iter()
                .map(|s| cfg.metrics.step(&s.id))
                .collect(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("wire-source-{}-{p}", cfg.pipeline))
            .spawn(move || worker.run(ctl_rx))
            .map_err(|e| format!("starting a source thread: {e}"))?;
        handles.push(handle);
    }
    Ok(Threads {
        sources: source_ctls,
        sinks: sink_ctls,
        handles,
        progress,
    })
}

fn open_sink(
    kind: &str,
    config: &serde_json::Value,
    step: &str,
    cfg: &JobConfig,
    partition: u32,
    committed_epoch: u64,
) -> Result<Box<dyn Sink>, String> {
    let open = connector(kind)
        .and_then(|c| c.open_sink)
        .ok_or_else(|| format!("'{kind}' cannot be a sink"))?;
    let ctx = SinkContext {
        step,
        pipeline: &cfg.pipeline,
        partition,
        committed_epoch,
        incarnation: cfg.incarnation,
    };
    open(config, &ctx).map_err(|e| format!("sink '{step}': {e}"))
}

/// A dead letter as the dead-letter sink receives it.
fn dead_letter(
    pipeline: &str,
    partition: u32,
    step: &str,
    record: Option<&Record>,
    raw: &[u8],
    position: &crate::pipeline::transform::Position,
    reason: &str,
) -> Record {
    let mut v = serde_json::json!({
        "pipeline": pipeline,
        "partition": partition,
        "step": step,
        "source": &*position.source,
        "split": &*position.split,
        "offset": position.offset,
        "error": reason,
        "time_ms": now_ms(),
    });
    match std::str::from_utf8(raw) {
        Ok(text) => v["raw"] = serde_json::Value::String(text.to_string()),
        Err(_) => {
            use base64::Engine;
            v["raw_base64"] =
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
        }
    }
    let value = crate::pipeline::jq::parse_json(v.to_string().as_bytes())
        .unwrap_or_else(|_| jaq_json::Val::Null);
    let mut out = Record::new(value, position.clone());
    if let Some(r) = record {
        out.key = r.key.clone();
    }
    out
}

struct SourceWorker {
    partition: u32,
    parallelism: u32,
    plan: Arc<Plan>,
    pipeline: String,
    sources: Vec<Box<dyn Source>>,
    routes: BTreeMap<u32, SyncSender<SinkMsg>>,
    events: tmpsc::UnboundedSender<Event>,
    status: Arc<JobStatus>,
    progress: Arc<AtomicU64>,
    /// Each source step's counters, in the order of `sources`.
    counters: Vec<Arc<super::metrics::StepCounters>>,
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
        let _ = self.events.send(Event::Failed { error, retry });
    }

    fn run(mut self, ctl: Receiver<SourceCtl>) {
        let mut finished = vec![false; self.sources.len()];
        let mut idle = false;
        let mut failed = false;
        let mut last_lag = std::time::Instant::now() - Duration::from_secs(10);
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
                Ok(SourceCtl::Barrier { epoch, reply }) => {
                    tracing::trace!(partition = self.partition, epoch, "barrier");
                    for route in self.routes.values() {
                        if route.send(SinkMsg::Barrier(epoch)).is_err() {
                            return;
                        }
                    }
                    let _ = reply.send(self.positions());
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
                        self.fail(format!("{} ({}): {e}", step.id, step.path), true);
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
                if let Err((error, retry)) = self.handle(i, batch.records, batch.bad) {
                    self.fail(error, retry);
                    failed = true;
                    break;
                }
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
            if !failed && finished.iter().all(|f| *f) {
                self.status
                    .update(self.partition, |live| live.finished = true);
                let _ = self.events.send(Event::Finished(self.partition));
            }
        }
    }

    /// Runs one batch through the DAG and sends its outputs and dead letters on.
    fn handle(
        &mut self,
        source: usize,
        records: Vec<Record>,
        bad: Vec<BadInput>,
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
            dead.push(dead_letter(
                &self.pipeline,
                self.partition,
                &step.id,
                None,
                &b.raw,
                &b.position,
                &b.reason,
            ));
        }
        let outputs = self.plan.run(source, records);
        if let Some(Rejected {
            record,
            step,
            reason,
        }) = outputs.failure
        {
            return Err((
                format!(
                    "step '{step}' failed on the record at {}:{} and its policy is fail: {reason}",
                    record.position.split, record.position.offset
                ),
                false,
            ));
        }
        for r in &outputs.rejected {
            let raw = r.record.value.to_string();
            dead.push(dead_letter(
                &self.pipeline,
                self.partition,
                &r.step,
                Some(&r.record),
                raw.as_bytes(),
                &r.record.position,
                &r.reason,
            ));
        }
        // Route: by key to the partition that owns it (keyed pipelines), else to our own.
        let sinks = outputs.per_sink.len();
        let mut by_target: BTreeMap<u32, Vec<Vec<Record>>> = BTreeMap::new();
        for (k, records) in outputs.per_sink.into_iter().enumerate() {
            for record in records {
                let target = match (&record.key, self.plan.keyed) {
                    (Some(key), true) => {
                        let t = (stable_hash(key) % u64::from(self.parallelism)) as u32;
                        if self.routes.contains_key(&t) {
                            t
                        } else {
                            self.partition
                        }
                    }
                    _ => self.partition,
                };
                by_target
                    .entry(target)
                    .or_insert_with(|| vec![Vec::new(); sinks])[k]
                    .push(record);
            }
        }
        if !dead.is_empty() {
            by_target
                .entry(self.partition)
                .or_insert_with(|| vec![Vec::new(); sinks]);
        }
        for (target, per_sink) in by_target {
            let dead = if target == self.partition {
                std::mem::take(&mut dead)
            } else {
                Vec::new()
            };
            if let Some(route) = self.routes.get(&target) {
                // Blocks while the sink's channel is full: this is the backpressure.
                route
                    .send(SinkMsg::Data { per_sink, dead })
                    .map_err(|_| ("the sink thread ended".to_string(), true))?;
            }
        }
        Ok(())
    }
}

/// A partition's sinks, as its sink thread holds them.
struct SinkPartition {
    pipeline: String,
    partition: u32,
    sink_ids: Vec<String>,
    sinks: Vec<Box<dyn Sink>>,
    dead: Option<Box<dyn Sink>>,
}

impl SinkPartition {
    /// Sends what sink `k` refused for good to the dead-letter sink.
    fn divert(
        &mut self,
        k: usize,
        counters: &[Arc<super::metrics::StepCounters>],
    ) -> Result<(), String> {
        let rejected = self.sinks[k].take_rejected();
        if rejected.is_empty() {
            return Ok(());
        }
        counters[k].add_dead(rejected.len());
        let letters: Vec<Record> = rejected
            .iter()
            .map(|(r, why)| {
                let raw = crate::pipeline::json::to_json(&r.value);
                dead_letter(
                    &self.pipeline,
                    self.partition,
                    &self.sink_ids[k],
                    Some(r),
                    raw.as_bytes(),
                    &r.position,
                    why,
                )
            })
            .collect();
        self.write_dead(&letters).map_err(|e| match e {
            None => format!(
                "sink '{}' refused {} records ({}) and there is no dead-letter sink",
                self.sink_ids[k],
                rejected.len(),
                rejected[0].1
            ),
            Some(e) => e,
        })
    }

    /// Writes dead letters; `Err(None)` when there is no dead-letter sink.
    fn write_dead(&mut self, letters: &[Record]) -> Result<(), Option<String>> {
        match &mut self.dead {
            Some(d) => d
                .write(letters)
                .map_err(|e| Some(format!("dead-letter sink: {e}"))),
            None => Err(None),
        }
    }

    /// Makes the epoch's output durable in every sink, diverting what they refuse.
    fn pre_commit(
        &mut self,
        epoch: u64,
        counters: &[Arc<super::metrics::StepCounters>],
    ) -> Result<(), String> {
        for k in 0..self.sinks.len() {
            self.sinks[k]
                .pre_commit(epoch)
                .map_err(|e| format!("sink '{}': {e}", self.sink_ids[k]))?;
            self.divert(k, counters)?;
        }
        if let Some(d) = &mut self.dead {
            d.pre_commit(epoch)
                .map_err(|e| format!("dead-letter sink: {e}"))?;
        }
        Ok(())
    }

    fn commit(&mut self, epoch: u64) -> Result<(), String> {
        for (k, sink) in self.sinks.iter_mut().enumerate() {
            sink.commit(epoch)
                .map_err(|e| format!("sink '{}': {e}", self.sink_ids[k]))?;
        }
        if let Some(d) = &mut self.dead {
            d.commit(epoch)
                .map_err(|e| format!("dead-letter sink: {e}"))?;
        }
        Ok(())
    }
}

fn sink_loop(
    mut out: SinkPartition,
    data: Receiver<SinkMsg>,
    ctl: Receiver<SinkCtl>,
    upstreams: usize,
    acks: tmpsc::UnboundedSender<Ack>,
    events: tmpsc::UnboundedSender<Event>,
    metrics: Arc<super::metrics::JobMetrics>,
) {
    let counters: Vec<_> = out.sink_ids.iter().map(|id| metrics.step(id)).collect();
    let dead_counter = metrics.step("dead_letter");
    let partition = out.partition;
    let mut barriers = 0;
    let fail = |error: String| {
        let _ = events.send(Event::Failed { error, retry: true });
    };
    while let Ok(msg) = data.recv() {
        match msg {
            SinkMsg::Data {
                per_sink,
                dead: letters,
            } => {
                for (k, records) in per_sink.iter().enumerate() {
                    if records.is_empty() {
                        continue;
                    }
                    let started = std::time::Instant::now();
                    if let Err(e) = out.sinks[k].write(records) {
                        fail(format!("sink '{}': {e}", out.sink_ids[k]));
                        return;
                    }
                    counters[k].add_in(records.len());
                    counters[k].add_time(started.elapsed());
                    if let Err(e) = out.divert(k, &counters) {
                        fail(e);
                        return;
                    }
                }
                if !letters.is_empty() {
                    match out.write_dead(&letters) {
                        Ok(()) => dead_counter.add_in(letters.len()),
                        Err(e) => {
                            fail(e.unwrap_or_else(|| {
                                "a record was rejected and there is no dead-letter sink".into()
                            }));
                            return;
                        }
                    }
                }
            }
            SinkMsg::Barrier(epoch) => {
                barriers += 1;
                if barriers < upstreams {
                    continue;
                }
                barriers = 0;
                let result = out.pre_commit(epoch, &counters);
                let failed = result.is_err();
                let _ = acks.send((partition, epoch, result));
                if failed {
                    return;
                }
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

/// How a checkpoint attempt ended.
enum Taken {
    /// Committed (or nothing had moved).
    Done,
    /// The job must end: failed, fenced off, or asked to stop meanwhile.
    End(JobState),
}

struct Coordinator {
    cfg: JobConfig,
    propose: Propose,
    status: Arc<JobStatus>,
    threads: Threads,
    events: tmpsc::UnboundedReceiver<Event>,
    acks: tmpsc::UnboundedReceiver<Ack>,
    epoch: u64,
    progress_at_checkpoint: u64,
    finished: BTreeSet<u32>,
}

impl Coordinator {
    /// Takes one checkpoint of every local partition (see the module doc).
    async fn checkpoint(&mut self, stop: &mut Option<oneshot::Receiver<String>>) -> Taken {
        let progress = self.threads.progress.load(Ordering::Relaxed);
        if progress == self.progress_at_checkpoint {
            return Taken::Done;
        }
        let epoch = self.epoch;
        let mut replies = Vec::new();
        for (p, ctl) in &self.threads.sources {
            let (tx, rx) = oneshot::channel();
            if ctl.send(SourceCtl::Barrier { epoch, reply: tx }).is_err() {
                return Taken::End(self.failed_state("a source thread ended"));
            }
            replies.push((*p, rx));
        }
        let mut positions = BTreeMap::new();
        for (p, mut rx) in replies {
            loop {
                tokio::select! {
                    got = &mut rx => match got {
                        Ok(pos) => {
                            positions.insert(p, pos);
                            break;
                        }
                        Err(_) => return Taken::End(self.failed_state("a source thread ended")),
                    },
                    Some(ev) = self.events.recv() => {
                        if let Some(end) = self.on_event(ev) {
                            return Taken::End(end);
                        }
                    }
                }
            }
        }
        self.collect_acks(epoch, positions, stop).await
    }

    fn failed_state(&self, why: &str) -> JobState {
        JobState::Failed {
            error: why.to_string(),
            retry: true,
        }
    }

    /// Handles an event; `Some` when the job must end.
    fn on_event(&mut self, ev: Event) -> Option<JobState> {
        match ev {
            Event::Failed { error, retry } => Some(JobState::Failed { error, retry }),
            Event::Finished(p) => {
                self.finished.insert(p);
                None
            }
        }
    }

    async fn collect_acks(
        &mut self,
        epoch: u64,
        positions: BTreeMap<u32, Positions>,
        stop: &mut Option<oneshot::Receiver<String>>,
    ) -> Taken {
        let mut acked = BTreeSet::new();
        while acked.len() < self.threads.sinks.len() {
            tokio::select! {
                Some((p, e, result)) = self.acks.recv() => {
                    if let Err(error) = result {
                        return Taken::End(JobState::Failed { error, retry: true });
                    }
                    if e == epoch { acked.insert(p); }
                }
                Some(ev) = self.events.recv() => {
                    if let Some(end) = self.on_event(ev) { return Taken::End(end); }
                }
            }
        }
        let checkpoints: Vec<(u32, Checkpoint)> = positions
            .into_iter()
            .map(|(p, positions)| {
                (
                    p,
                    Checkpoint {
                        epoch,
                        version: self.cfg.version,
                        node: self.cfg.node,
                        positions,
                        taken_at_ms: now_ms(),
                    },
                )
            })
            .collect();
        let command = Command::Checkpoint {
            name: self.cfg.pipeline.clone(),
            node: self.cfg.node,
            checkpoints: checkpoints.clone(),
        };
        loop {
            match (self.propose)(command.clone()).await {
                Ok(CommandResponse::CheckpointSaved) => break,
                Ok(CommandResponse::Refused { reason }) => {
                    return Taken::End(JobState::Stopped {
                        reason: format!("checkpoint refused: {reason}"),
                    })
                }
                Ok(CommandResponse::PipelineMissing) => {
                    return Taken::End(JobState::Stopped {
                        reason: "the pipeline was deleted".into(),
                    })
                }
                Ok(other) => {
                    return Taken::End(
                        self.failed_state(&format!("unexpected answer to a checkpoint: {other:?}")),
                    )
                }
                Err(e) => {
                    tracing::warn!(pipeline = %self.cfg.pipeline, error = %e, "checkpoint not committed yet; retrying");
                    let wait = tokio::time::sleep(Duration::from_millis(500));
                    match stop.as_mut() {
                        Some(rx) => tokio::select! {
                            _ = wait => {}
                            _ = rx => {
                                *stop = None;
                                return Taken::End(JobState::Stopped {
                                    reason: "stopped while a checkpoint could not commit".into(),
                                });
                            }
                        },
                        None => wait.await,
                    }
                }
            }
        }
        for (_, ctl) in &self.threads.sinks {
            let _ = ctl.send(SinkCtl::Commit(epoch));
        }
        for (p, c) in checkpoints {
            self.status.update(p, |live| {
                live.epoch = c.epoch;
                live.positions = c.positions;
                live.last_checkpoint_ms = Some(c.taken_at_ms);
            });
        }
        self.epoch += 1;
        self.progress_at_checkpoint = self.threads.progress.load(Ordering::Relaxed);
        tracing::debug!(pipeline = %self.cfg.pipeline, epoch, "checkpoint committed");
        Taken::Done
    }

    /// Lets paused sources go on after a barrier.
    fn release(&self) {
        for (_, ctl) in &self.threads.sources {
            let _ = ctl.send(SourceCtl::Release);
        }
    }
}

async fn run(
    cfg: JobConfig,
    propose: Propose,
    status: Arc<JobStatus>,
    stop: oneshot::Receiver<String>,
) {
    let (events_tx, events) = tmpsc::unbounded_channel();
    let (acks_tx, acks) = tmpsc::unbounded_channel();
    let threads = match spawn_threads(&cfg, &status, events_tx, acks_tx) {
        Ok(t) => t,
        Err(error) => {
            tracing::error!(pipeline = %cfg.pipeline, error = %error, "pipeline could not start");
            status.set_state(JobState::Failed { error, retry: true });
            return;
        }
    };
    let epoch = cfg.checkpoints.values().map(|c| c.epoch).max().unwrap_or(0) + 1;
    let interval = cfg.plan.graph.checkpoint_interval;
    let pipeline = cfg.pipeline.clone();
    let local = cfg.partitions.len();
    let mut co = Coordinator {
        cfg,
        propose,
        status: status.clone(),
        threads,
        events,
        acks,
        epoch,
        progress_at_checkpoint: 0,
        finished: BTreeSet::new(),
    };
    status.set_state(JobState::Running);
    tracing::info!(pipeline = %pipeline, partitions = local, "pipeline job running");
    let mut stop = Some(stop);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let end = loop {
        let stop_rx = async {
            match stop.as_mut() {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ticker.tick() => {
                match co.checkpoint(&mut stop).await {
                    Taken::Done => co.release(),
                    Taken::End(state) => break state,
                }
            }
            Some(ev) = co.events.recv() => {
                if let Some(state) = co.on_event(ev) { break state; }
            }
            reason = stop_rx => {
                stop = None;
                let reason = reason.unwrap_or_else(|| "stopped".into());
                match tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, co.checkpoint(&mut stop)).await {
                    Ok(Taken::Done) => break JobState::Stopped { reason },
                    Ok(Taken::End(state)) => break state,
                    Err(_) => break JobState::Stopped {
                        reason: format!("{reason} (the final checkpoint timed out)"),
                    },
                }
            }
        }
        // The last partition's end may have been seen while a checkpoint waited for its
        // barriers, so this is checked after every branch, not only on the event.
        if co.finished.len() == local {
            match co.checkpoint(&mut stop).await {
                Taken::Done => break JobState::Finished,
                Taken::End(state) => break state,
            }
        }
    };
    match &end {
        JobState::Failed { error, .. } => {
            tracing::error!(pipeline = %pipeline, error = %error, "pipeline job failed")
        }
        other => tracing::info!(pipeline = %pipeline, state = ?other, "pipeline job ended"),
    }
    co.threads.stop();
    status.set_state(end);
    co.threads.join(Duration::from_secs(5)).await;
}
