//! A job: the partitions of one pipeline that one node runs. Each partition has a source
//! worker thread (read, run the whole DAG on the batch, route: [`super::source_worker`]) and
//! a sink worker thread (write every sink and the dead-letter sink: [`super::sink_worker`]),
//! joined by a bounded channel: a slow sink blocks its sources, so memory stays bounded. With
//! `key_by`, sources route each record to the sink worker of the partition that owns its key
//! ([`super::routing`]; a keyed pipeline runs all its partitions on one node).
//!
//! Checkpoints are aligned barriers, decided by the job's [`Coordinator`] (a state machine
//! without I/O) and carried out by the driver here:
//!
//! 1. every source worker is asked for a barrier: it finishes its batch, sends the barrier
//!    down every channel it writes to, reports its positions, and pauses;
//! 2. a sink worker that has the barrier from each of its upstreams pre-commits every sink
//!    (durable as pending output of the epoch) and says so;
//! 3. the coordinator commits the checkpoint (all local partitions at once) through the
//!    [`CheckpointLog`]; once committed the sinks publish the epoch's output and the sources
//!    go on.
//!
//! A record is thus in a checkpoint's output exactly when it was read before the checkpoint's
//! positions. Graceful stop takes a final checkpoint first.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc as tmpsc, oneshot};

use super::coordinator::{Action, CheckpointLog, Committed, Coordinator, Identity, Input};
pub use super::live::{JobState, JobStatus, PartitionLive};
use super::plan::Plan;
use super::routing::Router;
use super::sink_worker::{SinkCtl, SinkMsg, SinkPartition};
use super::source_worker::{SourceCtl, SourceWorker, BATCH};
use crate::connectors::read_ahead::{self, ReadAhead};
use crate::connectors::{connector, Sink, SinkContext, Source, SourceContext};
use crate::consensus::NodeId;
use crate::pipeline::checkpoint::{merged_positions, now_ms, Checkpoint, Positions};

/// Batches that may wait in each partition's channel.
const CHANNEL_BATCHES: usize = 4;

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

/// A running job. Stop it with [`Job::stop`].
pub struct Job {
    pub status: Arc<JobStatus>,
    stop: oneshot::Sender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Job {
    /// Starts the job's threads and coordinator. Errors opening connectors make the job fail
    /// (visible in its state) rather than this call.
    pub fn start(cfg: JobConfig, log: Arc<dyn CheckpointLog>) -> Job {
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
        let task = tokio::spawn(drive(cfg, log, status.clone(), stop_rx));
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

    fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
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
    events: tmpsc::UnboundedSender<Input>,
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
        let events = events.clone();
        let metrics = cfg.metrics.clone();
        let sink_ids: Vec<String> = graph.sinks.iter().map(|s| s.id.clone()).collect();
        let pipeline = cfg.pipeline.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wire-sink-{}-{p}", cfg.pipeline))
            .spawn(move || {
                super::sink_worker::run(
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
            plan: cfg.plan.clone(),
            pipeline: cfg.pipeline.clone(),
            sources,
            router: Router::new(p, parallelism, plan.keyed, routes),
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
        node: cfg.node,
        tenures: cfg
            .checkpoints
            .get(&partition)
            .map_or(&[][..], |c| c.tenures.as_slice()),
    };
    open(config, &ctx).map_err(|e| format!("sink '{step}': {e}"))
}

/// A job's checkpoints committed through a function (the node's write path, a test's log).
pub struct LogFn<F>(pub F);

impl<F, Fut> CheckpointLog for LogFn<F>
where
    F: Fn(Vec<(u32, Checkpoint)>) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Committed, String>> + Send + 'static,
{
    fn commit(
        &self,
        checkpoints: Vec<(u32, Checkpoint)>,
    ) -> Pin<Box<dyn Future<Output = Result<Committed, String>> + Send + 'static>> {
        Box::pin((self.0)(checkpoints))
    }
}

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// Waits for `slot`'s future, or forever when there is none.
async fn wait<T>(slot: &mut Pending<T>) -> T {
    match slot.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Runs a job: starts its workers, feeds the coordinator and carries out its actions.
async fn drive(
    cfg: JobConfig,
    log: Arc<dyn CheckpointLog>,
    status: Arc<JobStatus>,
    stop: oneshot::Receiver<String>,
) {
    let (events_tx, mut events) = tmpsc::unbounded_channel();
    let threads = match spawn_threads(&cfg, &status, events_tx) {
        Ok(t) => t,
        Err(error) => {
            tracing::error!(pipeline = %cfg.pipeline, error = %error, "pipeline could not start");
            status.set_state(JobState::Failed { error, retry: true });
            return;
        }
    };
    let epoch = cfg.checkpoints.values().map(|c| c.epoch).max().unwrap_or(0) + 1;
    let pipeline = cfg.pipeline.clone();
    let me = Identity {
        version: cfg.version,
        node: cfg.node,
        partitions: cfg.partitions.clone(),
    };
    let mut co = Coordinator::new(me, epoch, now_ms);
    status.set_state(JobState::Running);
    tracing::info!(pipeline = %pipeline, partitions = cfg.partitions.len(), "pipeline job running");
    let mut stop = Some(stop);
    let mut ticker = tokio::time::interval(cfg.plan.graph.checkpoint_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut commit: Pending<Result<Committed, String>> = None;
    let mut retry: Pending<()> = None;
    let mut deadline: Pending<()> = None;
    let end = loop {
        let stop_rx = async {
            match stop.as_mut() {
                Some(rx) => rx.await.ok(),
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            _ = ticker.tick() => Input::Tick { progress: threads.progress() },
            Some(ev) = events.recv() => ev,
            reason = stop_rx => {
                stop = None;
                Input::Stop {
                    reason: reason.unwrap_or_else(|| "stopped".into()),
                    progress: threads.progress(),
                }
            }
            answer = wait(&mut commit) => {
                commit = None;
                Input::CommitDone(answer)
            }
            _ = wait(&mut retry) => {
                retry = None;
                Input::RetryDue
            }
            _ = wait(&mut deadline) => {
                deadline = None;
                Input::DeadlinePassed
            }
        };
        let mut ended = None;
        for action in co.step(input) {
            match action {
                Action::Barrier { epoch } => {
                    for (_, ctl) in &threads.sources {
                        let _ = ctl.send(SourceCtl::Barrier { epoch });
                    }
                }
                Action::Commit(checkpoints) => commit = Some(log.commit(checkpoints)),
                Action::RetryCommitAfter { wait, error } => {
                    tracing::warn!(pipeline = %pipeline, error = %error, "checkpoint not committed yet; retrying");
                    retry = Some(Box::pin(tokio::time::sleep(wait)));
                }
                Action::FinalDeadline(after) => {
                    deadline = Some(Box::pin(tokio::time::sleep(after)));
                }
                Action::Publish { epoch } => {
                    for (_, ctl) in &threads.sinks {
                        let _ = ctl.send(SinkCtl::Commit(epoch));
                    }
                    tracing::debug!(pipeline = %pipeline, epoch, "checkpoint committed");
                }
                Action::Record(checkpoints) => {
                    for (p, c) in checkpoints {
                        status.update(p, |live| {
                            live.epoch = c.epoch;
                            live.positions = c.positions;
                            live.last_checkpoint_ms = Some(c.taken_at_ms);
                        });
                    }
                }
                Action::Release => {
                    for (_, ctl) in &threads.sources {
                        let _ = ctl.send(SourceCtl::Release);
                    }
                }
                Action::End(state) => ended = Some(state),
            }
        }
        if let Some(state) = ended {
            break state;
        }
    };
    match &end {
        JobState::Failed { error, .. } => {
            tracing::error!(pipeline = %pipeline, error = %error, "pipeline job failed")
        }
        other => tracing::info!(pipeline = %pipeline, state = ?other, "pipeline job ended"),
    }
    // The workers end first: a sink publishes the last committed epoch before it sees the
    // stop, so `finished` is shown only once all output is visible.
    threads.stop();
    threads.join(Duration::from_secs(5)).await;
    status.set_state(end);
}
