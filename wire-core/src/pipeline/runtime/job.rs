//! A job: the partitions of one pipeline that run together. Each partition has a source
//! worker thread (read, run the whole DAG on the batch, route: [`super::source_worker`]) and
//! a sink worker thread (write every sink and the dead-letter sink: [`super::sink_worker`]),
//! joined by a bounded channel: a slow sink blocks its sources, so memory stays bounded.
//!
//! A pipeline without `key_by` runs one job per node, over that node's partitions. A keyed
//! pipeline runs one job over all its partitions, wherever they are: sources route each
//! record to the sink worker of the partition that owns its key — through the exchange when
//! that partition runs on another node ([`super::exchange`]) — and the job's coordinator
//! runs on the node of its first partition, which the others join.
//!
//! Checkpoints are aligned barriers, decided by the job's [`Coordinator`] (a state machine
//! without I/O) and carried out by the driver here (and, on the nodes that joined, by the
//! driver there on the coordinator's word):
//!
//! 1. every source worker is asked for a barrier: it finishes its batch, sends the barrier
//!    down every way it writes to, reports its positions, and pauses;
//! 2. a sink worker that has the barrier from each of its upstreams pre-commits every sink
//!    (durable as pending output of the epoch) and says so;
//! 3. the coordinator commits the checkpoint (all the job's partitions at once) through the
//!    [`CheckpointLog`], in the session it opened there when it started; once committed the
//!    sinks publish the epoch's output and the sources go on.
//!
//! A record is thus in a checkpoint's output exactly when it was read before the checkpoint's
//! positions. Graceful stop takes a final checkpoint first. Any failure — a worker's, a lost
//! link, a node that leaves — ends the whole job, and every partition starts again from the
//! last checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::coordinator::{
    Action, CheckpointLog, Committed, Coordinator, Identity, Input, Opened, COMMIT_RETRY,
    FINAL_CHECKPOINT_TIMEOUT,
};
use super::exchange::{
    self, attempt_id, read_frame, write_frame, Ended, Exchange, Joiner, Peers, Registered,
    ToCoordinator, ToParticipant, PING_EVERY, SILENCE,
};
pub use super::live::{JobState, JobStatus, PartitionLive};
use super::plan::{PartitionState, Plan};
use super::routing::{Route, Router};
use super::sink_worker::{SinkCtl, SinkMsg, SinkPartition};
use super::source_worker::{SourceCtl, SourceWorker, BATCH};
use crate::connectors::read_ahead::{self, ReadAhead};
use crate::connectors::{connector, Sink, SinkContext, Source, SourceContext};
use crate::consensus::NodeId;
use crate::pipeline::checkpoint::{merged_positions, now_ms, Checkpoint, Positions};

/// Batches that may wait in each partition's channel.
const CHANNEL_BATCHES: usize = 4;
/// How often a node that joined a job tells the coordinator how much it read.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How long the nodes of a job have to join it before it fails (and starts again, with
/// the members' addresses read anew).
const JOIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a job needs to start.
pub struct JobConfig {
    pub pipeline: String,
    pub version: u64,
    /// The pipeline's creation index (names its file output).
    pub incarnation: u64,
    pub node: NodeId,
    /// The job's partitions and the node each runs on: this node's own for a pipeline whose
    /// partitions are independent, every partition for a keyed one.
    pub owners: BTreeMap<u32, NodeId>,
    pub plan: Arc<Plan>,
    pub metrics: Arc<super::metrics::JobMetrics>,
    pub exchange: Arc<Exchange>,
    pub peers: Peers,
}

impl JobConfig {
    /// The partitions this node runs.
    fn local(&self) -> Vec<u32> {
        self.owners
            .iter()
            .filter(|(_, n)| **n == self.node)
            .map(|(p, _)| *p)
            .collect()
    }

    /// The node the job's coordinator runs on: that of its first partition.
    fn coordinator(&self) -> NodeId {
        self.owners.values().next().copied().unwrap_or(self.node)
    }

    /// The other nodes of the job.
    fn others(&self) -> BTreeSet<NodeId> {
        self.owners
            .values()
            .copied()
            .filter(|n| *n != self.node)
            .collect()
    }

    fn attempt(&self) -> u64 {
        attempt_id(&self.pipeline, self.version, self.incarnation, &self.owners)
    }
}

/// A request to stop a job.
struct StopAsk {
    reason: String,
    /// Take a final checkpoint first (else stop at once: the job goes back to its last).
    checkpoint: bool,
}

/// A running job. Stop it with [`Job::stop`] or [`Job::abort`].
pub struct Job {
    pub status: Arc<JobStatus>,
    stop: oneshot::Sender<StopAsk>,
    task: tokio::task::JoinHandle<()>,
}

impl Job {
    /// Starts the job's coordinator (or joins it). Errors opening connectors make the job
    /// fail (visible in its state) rather than this call.
    pub fn start(cfg: JobConfig, log: Arc<dyn CheckpointLog>) -> Job {
        let status = Arc::new(JobStatus {
            pipeline: cfg.pipeline.clone(),
            version: cfg.version,
            state: Mutex::new(JobState::Starting),
            partitions: Mutex::new(BTreeMap::new()),
            metrics: cfg.metrics.clone(),
        });
        for p in cfg.local() {
            status.update(p, |_| {});
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
        self.end(reason, true).await
    }

    /// Stops the job without a final checkpoint: what it did since the last is done again
    /// by the next job. For a keyed job whose nodes changed, whose final checkpoint could
    /// not complete without the node that left.
    pub async fn abort(self, reason: &str) {
        self.end(reason, false).await
    }

    async fn end(self, reason: &str, checkpoint: bool) {
        let _ = self.stop.send(StopAsk {
            reason: reason.to_string(),
            checkpoint,
        });
        let _ = self.task.await;
    }
}

struct Threads {
    sources: Vec<(u32, Sender<SourceCtl>)>,
    sinks: Vec<(u32, Sender<SinkCtl>)>,
    handles: Vec<std::thread::JoinHandle<()>>,
    progress: Arc<AtomicU64>,
    /// The tasks sending to other nodes.
    links: Vec<tokio::task::JoinHandle<()>>,
    /// Takes this node's incoming links while the job runs.
    inbound: Option<Registered>,
}

impl Threads {
    fn stop(&mut self) {
        // No more incoming links: the sink workers' channels close with their sources.
        self.inbound = None;
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

    fn barrier(&self, epoch: u64) {
        for (_, ctl) in &self.sources {
            let _ = ctl.send(SourceCtl::Barrier { epoch });
        }
    }

    fn publish(&self, epoch: u64) {
        for (_, ctl) in &self.sinks {
            let _ = ctl.send(SinkCtl::Commit(epoch));
        }
    }

    fn release(&self) {
        for (_, ctl) in &self.sources {
            let _ = ctl.send(SourceCtl::Release);
        }
    }

    /// Waits (off the async threads) for every thread to end, for at most `limit`; a thread
    /// stuck in a blocked write is left behind.
    async fn join(self, limit: Duration) {
        let handles = self.handles;
        let mut joined = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        });
        // Once the sources are gone, each link to another node sends what it had and a
        // `Close` (the other side then knows the end was meant). A source blocked on a
        // link that cannot drain (its node is gone or does not read) ends when the link is
        // cut, after a short grace.
        let grace = Duration::from_secs(1).min(limit);
        let done = tokio::time::timeout(grace, &mut joined).await.is_ok();
        let mut links = self.links;
        if done {
            let drained = async {
                for l in &mut links {
                    let _ = l.await;
                }
            };
            if tokio::time::timeout(grace, drained).await.is_ok() {
                return;
            }
        }
        for l in &links {
            l.abort();
        }
        if !done && tokio::time::timeout(limit - grace, joined).await.is_err() {
            tracing::warn!("pipeline threads did not end in time; leaving them");
        }
    }
}

/// Opens every source and sink of this node's partitions and starts the threads, resuming
/// from `checkpoints`.
fn spawn_threads(
    cfg: &JobConfig,
    status: &Arc<JobStatus>,
    checkpoints: &BTreeMap<u32, Checkpoint>,
    session: u64,
    events: tmpsc::UnboundedSender<Input>,
) -> Result<Threads, String> {
    let plan = &cfg.plan;
    let graph = &plan.graph;
    let parallelism = graph.parallelism;
    let local = cfg.local();
    let progress = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let mut sink_ctls = Vec::new();
    let mut data_senders: BTreeMap<u32, SyncSender<SinkMsg>> = BTreeMap::new();
    // Every source partition of a keyed job sends each sink partition a barrier.
    let upstreams = if plan.keyed { cfg.owners.len() } else { 1 };
    let others: Positions = merged_positions(checkpoints.values());

    for &p in &local {
        let committed_epoch = checkpoints.get(&p).map(|c| c.epoch).unwrap_or(0);
        let tenures = checkpoints
            .get(&p)
            .map_or(&[][..], |c| c.tenures.as_slice());
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        for step in &graph.sinks {
            sinks.push(open_sink(
                &step.kind,
                &step.config,
                &step.id,
                cfg,
                p,
                committed_epoch,
                tenures,
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
                tenures,
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
        let plan = cfg.plan.clone();
        let state = match checkpoints.get(&p).and_then(|c| c.state.as_ref()) {
            Some(bytes) => PartitionState::decode(bytes)?,
            None => PartitionState::default(),
        };
        // Its upstreams: every source partition of a keyed job, else its own.
        let watermarks: BTreeMap<u32, Option<i64>> = if plan.keyed {
            cfg.owners.keys().map(|q| (*q, Some(i64::MIN))).collect()
        } else {
            BTreeMap::from([(p, Some(i64::MIN))])
        };
        let max_state_bytes = graph.max_state_bytes;
        let status = status.clone();
        let handle = std::thread::Builder::new()
            .name(format!("wire-sink-{}-{p}", cfg.pipeline))
            .spawn(move || {
                super::sink_worker::run(
                    SinkPartition {
                        pipeline,
                        partition: p,
                        plan,
                        state,
                        watermarks,
                        watermark: i64::MIN,
                        max_state_bytes,
                        status,
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

    // The ways to every partition: channels to the local ones, links to the others' nodes.
    let mut routes: BTreeMap<u32, Route> = data_senders
        .iter()
        .map(|(p, s)| (*p, Route::Local(s.clone())))
        .collect();
    let mut links = Vec::new();
    let mut inbound = None;
    if plan.keyed {
        let remote = cfg.others();
        if !remote.is_empty() {
            let steps = plan
                .exchanges()
                .iter()
                .enumerate()
                .filter(|(_, e)| e.is_some())
                .map(|(i, _)| i)
                .collect();
            inbound = Some(cfg.exchange.receive(
                &cfg.pipeline,
                session,
                data_senders.clone(),
                steps,
                events.clone(),
            ));
        }
        for node in remote {
            let parts = cfg.owners.values().filter(|n| **n == node).count();
            let (tx, rx) = tmpsc::channel(CHANNEL_BATCHES * parts.max(1));
            for (p, _) in cfg.owners.iter().filter(|(_, n)| **n == node) {
                routes.insert(*p, Route::Remote(tx.clone()));
            }
            links.push(tokio::spawn(exchange::send_data(
                cfg.peers.clone(),
                node,
                cfg.pipeline.clone(),
                session,
                cfg.node,
                rx,
                events.clone(),
            )));
        }
    }
    drop(data_senders);

    let mut source_ctls = Vec::new();
    for &p in &local {
        // Resume from this partition's checkpoint; splits it has none for (they moved here
        // from another partition) from wherever any partition got.
        let own = checkpoints
            .get(&p)
            .map(|c| c.positions.clone())
            .unwrap_or_default();
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        for (i, step) in graph.sources.iter().enumerate() {
            let mut resume = others.get(&step.id).cloned().unwrap_or_default();
            resume.extend(own.get(&step.id).cloned().unwrap_or_default());
            let ctx = SourceContext {
                pipeline: &cfg.pipeline,
                step: &step.id,
                partition: p,
                partitions: parallelism,
                resume: &resume,
                // Event times are read from the values as they come in.
                raw: plan.takes_raw(i) && graph.event_time.is_none(),
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
        let my_routes: BTreeMap<u32, Route> = if plan.keyed {
            routes.clone()
        } else {
            routes
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
            router: Router::new(p, parallelism, plan.exchanges(), my_routes),
            events: events.clone(),
            status: status.clone(),
            progress: progress.clone(),
            counters: graph
                .sources
                .iter()
                .map(|s| cfg.metrics.step(&s.id))
                .collect(),
            held: plan.keyed && !cfg.others().is_empty(),
            clock: graph
                .event_time
                .as_ref()
                .map(super::event_time::EventClock::new)
                .transpose()?,
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
        links,
        inbound,
    })
}

fn open_sink(
    kind: &str,
    config: &serde_json::Value,
    step: &str,
    cfg: &JobConfig,
    partition: u32,
    committed_epoch: u64,
    tenures: &[(NodeId, u64, u64)],
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
        tenures,
    };
    open(config, &ctx).map_err(|e| format!("sink '{step}': {e}"))
}

type Pending<T> = Option<Pin<Box<dyn Future<Output = T> + Send>>>;

/// Waits for `slot`'s future, or forever when there is none.
async fn wait<T>(slot: &mut Pending<T>) -> T {
    match slot.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Waits for a stop request, or forever once it was taken.
async fn stop_asked(stop: &mut Option<oneshot::Receiver<StopAsk>>) -> StopAsk {
    let ask = match stop.as_mut() {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    };
    *stop = None;
    ask.unwrap_or_else(|| StopAsk {
        reason: "stopped".into(),
        checkpoint: true,
    })
}

/// A number no other job of the pipeline will draw.
fn new_session() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish().max(1)
}

/// Shows the checkpoints a job resumes from (or just committed) on this node's partitions.
fn show(status: &JobStatus, local: &[u32], checkpoints: &[(u32, Checkpoint)]) {
    for (p, c) in checkpoints {
        if local.contains(p) {
            status.update(*p, |live| {
                live.epoch = c.epoch;
                live.positions = c.positions.clone();
                live.last_checkpoint_ms = Some(c.taken_at_ms);
            });
        }
    }
}

/// Runs a job: coordinates it here, or joins the node that does.
async fn drive(
    cfg: JobConfig,
    log: Arc<dyn CheckpointLog>,
    status: Arc<JobStatus>,
    stop: oneshot::Receiver<StopAsk>,
) {
    let (events_tx, events) = tmpsc::unbounded_channel();
    let mut stop = Some(stop);
    let end = if cfg.coordinator() == cfg.node {
        coordinate(&cfg, log, &status, &mut stop, events_tx, events).await
    } else {
        join(&cfg, &status, &mut stop, events_tx, events).await
    };
    match &end {
        JobState::Failed { error, .. } => {
            tracing::error!(pipeline = %cfg.pipeline, error = %error, "pipeline job failed")
        }
        other => tracing::info!(pipeline = %cfg.pipeline, state = ?other, "pipeline job ended"),
    }
    status.set_state(end);
}

/// Opens the job's session in the checkpoint log, trying again while the outcome is
/// unknown; `Err` is the state to end in.
async fn open_session(
    cfg: &JobConfig,
    log: &dyn CheckpointLog,
    session: u64,
    stop: &mut Option<oneshot::Receiver<StopAsk>>,
) -> Result<BTreeMap<u32, Checkpoint>, JobState> {
    let owners: Vec<(u32, NodeId)> = cfg.owners.iter().map(|(p, n)| (*p, *n)).collect();
    loop {
        tokio::select! {
            answer = log.open(session, owners.clone()) => match answer {
                Ok(Opened::Yes(c)) => return Ok(c),
                Ok(Opened::Fenced(why)) => {
                    return Err(JobState::Stopped { reason: format!("cannot start: {why}") })
                }
                Err(e) => {
                    tracing::warn!(pipeline = %cfg.pipeline, error = %e, "opening a job session; retrying");
                }
            },
            ask = stop_asked(stop) => return Err(JobState::Stopped { reason: ask.reason }),
        }
        tokio::select! {
            _ = tokio::time::sleep(COMMIT_RETRY) => {}
            ask = stop_asked(stop) => return Err(JobState::Stopped { reason: ask.reason }),
        }
    }
}

/// A node that joined the coordinator: where to send it word.
struct Joined {
    tx: tmpsc::UnboundedSender<ToParticipant>,
    progress: u64,
}

/// What the coordinator hears from the nodes that joined it.
enum FromNode {
    Said(NodeId, ToCoordinator),
    Lost(NodeId, String),
}

/// Takes a node that connected: welcomes it into the session and starts the tasks that
/// carry its link.
fn admit(
    joiner: Joiner,
    session: u64,
    checkpoints: &BTreeMap<u32, Checkpoint>,
    heard: &tmpsc::UnboundedSender<FromNode>,
) -> Joined {
    let node = joiner.from;
    let (mut rd, mut wr) = tokio::io::split(joiner.stream);
    let (tx, mut rx) = tmpsc::unbounded_channel::<ToParticipant>();
    let _ = tx.send(ToParticipant::Welcome {
        session,
        checkpoints: checkpoints.clone(),
    });
    let lost = heard.clone();
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            let end = matches!(msg, ToParticipant::End(_));
            if let Err(e) = write_frame(&mut wr, &msg).await {
                let _ = lost.send(FromNode::Lost(node, e.to_string()));
                break;
            }
            if end {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let heard = heard.clone();
    tokio::spawn(async move {
        loop {
            let why = match tokio::time::timeout(SILENCE, read_frame::<_, ToCoordinator>(&mut rd))
                .await
            {
                Ok(Ok(Some(msg))) => {
                    if heard.send(FromNode::Said(node, msg)).is_err() {
                        return;
                    }
                    continue;
                }
                Ok(Ok(None)) => "its link ended".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("silent for {} s", SILENCE.as_secs()),
            };
            let _ = heard.send(FromNode::Lost(node, why));
            return;
        }
    });
    Joined { tx, progress: 0 }
}

/// Runs the job's coordinator on this node; returns the state it ended in.
async fn coordinate(
    cfg: &JobConfig,
    log: Arc<dyn CheckpointLog>,
    status: &Arc<JobStatus>,
    stop: &mut Option<oneshot::Receiver<StopAsk>>,
    events_tx: tmpsc::UnboundedSender<Input>,
    mut events: tmpsc::UnboundedReceiver<Input>,
) -> JobState {
    let expected = cfg.others();
    // Take the others' links before the session opens: an early one waits in the queue.
    let (door_reg, mut door) = if expected.is_empty() {
        (None, None)
    } else {
        let (reg, rx) = cfg.exchange.coordinate(&cfg.pipeline, cfg.attempt());
        (Some(reg), Some(rx))
    };
    let session = new_session();
    let checkpoints = match open_session(cfg, log.as_ref(), session, stop).await {
        Ok(c) => c,
        Err(state) => return state,
    };
    let local = cfg.local();
    let all: Vec<(u32, Checkpoint)> = checkpoints.clone().into_iter().collect();
    show(status, &local, &all);
    let threads = match spawn_threads(cfg, status, &checkpoints, session, events_tx) {
        Ok(t) => t,
        Err(error) => return JobState::Failed { error, retry: true },
    };
    let epoch = checkpoints.values().map(|c| c.epoch).max().unwrap_or(0) + 1;
    let me = Identity {
        version: cfg.version,
        owners: cfg.owners.clone(),
        node: cfg.node,
    };
    let mut co = Coordinator::new(me, epoch, now_ms);
    if expected.is_empty() {
        status.set_state(JobState::Running);
    }
    tracing::info!(pipeline = %cfg.pipeline, partitions = local.len(), nodes = expected.len() + 1, "pipeline job running");
    let join_by = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut ticker = tokio::time::interval(cfg.plan.graph.checkpoint_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut joined: BTreeMap<NodeId, Joined> = BTreeMap::new();
    let (heard_tx, mut heard) = tmpsc::unbounded_channel::<FromNode>();
    let mut commit: Pending<Result<Committed, String>> = None;
    let mut retry: Pending<()> = None;
    let mut deadline: Pending<()> = None;
    let progress = |threads: &Threads, joined: &BTreeMap<NodeId, Joined>| {
        threads.progress() + joined.values().map(|j| j.progress).sum::<u64>()
    };
    let end = loop {
        let next_joiner = async {
            match door.as_mut() {
                Some(d) => d.recv().await,
                None => std::future::pending().await,
            }
        };
        let input = tokio::select! {
            _ = ticker.tick() => Input::Tick { progress: progress(&threads, &joined) },
            _ = ping.tick() => {
                for j in joined.values() {
                    let _ = j.tx.send(ToParticipant::Ping);
                }
                if joined.len() < expected.len() && tokio::time::Instant::now() >= join_by {
                    let missing: Vec<_> = expected.iter().filter(|n| !joined.contains_key(n)).collect();
                    Input::Failed {
                        error: format!("nodes {missing:?} did not join the job within {} s", JOIN_TIMEOUT.as_secs()),
                        retry: true,
                    }
                } else {
                    continue;
                }
            }
            Some(ev) = events.recv() => ev,
            ask = stop_asked(stop) => if ask.checkpoint {
                Input::Stop { reason: ask.reason, progress: progress(&threads, &joined) }
            } else {
                Input::Abort { reason: ask.reason }
            },
            Some(joiner) = next_joiner => {
                let node = joiner.from;
                if !expected.contains(&node) {
                    tracing::warn!(pipeline = %cfg.pipeline, node, "a node outside the job tried to join it");
                    continue;
                }
                match joined.entry(node) {
                    // Its part of the job started over: this one cannot go on with it.
                    std::collections::btree_map::Entry::Occupied(_) => Input::Failed {
                        error: format!("node {node} joined the job twice (its part restarted)"),
                        retry: true,
                    },
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(admit(joiner, session, &checkpoints, &heard_tx));
                        if joined.len() == expected.len() {
                            // Everyone is in: the sources everywhere may start.
                            threads.release();
                            for j in joined.values() {
                                let _ = j.tx.send(ToParticipant::Release);
                            }
                            status.set_state(JobState::Running);
                        }
                        Input::Joined { node }
                    }
                }
            }
            Some(said) = heard.recv() => match said {
                FromNode::Lost(node, why) => Input::Failed {
                    error: format!("lost node {node} of the job: {why}"),
                    retry: true,
                },
                FromNode::Said(node, msg) => match msg {
                    ToCoordinator::Positions { partition, epoch, positions, read } => {
                        Input::Positions { partition, epoch, positions, read }
                    }
                    ToCoordinator::SinkReady { partition, epoch } => Input::SinkReady { partition, epoch },
                    ToCoordinator::State { partition, epoch, state } => Input::State {
                        partition,
                        epoch,
                        state: state.into_vec(),
                    },
                    ToCoordinator::Finished { partition, read } => Input::Finished { partition, read },
                    ToCoordinator::Failed { error, retry } => Input::Failed {
                        error: format!("on node {node}: {error}"),
                        retry,
                    },
                    ToCoordinator::Progress(n) => {
                        if let Some(j) = joined.get_mut(&node) {
                            j.progress = n;
                        }
                        continue;
                    }
                    ToCoordinator::Stop { reason } => Input::Stop {
                        reason: format!("{reason} (on node {node})"),
                        progress: progress(&threads, &joined),
                    },
                },
            },
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
        let tell = |msg: &dyn Fn() -> ToParticipant| {
            for j in joined.values() {
                let _ = j.tx.send(msg());
            }
        };
        let mut ended = None;
        for action in co.step(input) {
            match action {
                Action::Barrier { epoch } => {
                    threads.barrier(epoch);
                    tell(&|| ToParticipant::Barrier(epoch));
                }
                Action::Commit(checkpoints) => commit = Some(log.commit(session, checkpoints)),
                Action::RetryCommitAfter { wait, error } => {
                    tracing::warn!(pipeline = %cfg.pipeline, error = %error, "checkpoint not committed yet; retrying");
                    retry = Some(Box::pin(tokio::time::sleep(wait)));
                }
                Action::FinalDeadline(after) => {
                    deadline = Some(Box::pin(tokio::time::sleep(after)));
                }
                Action::Publish { epoch } => {
                    threads.publish(epoch);
                    tell(&|| ToParticipant::Publish(epoch));
                    tracing::debug!(pipeline = %cfg.pipeline, epoch, "checkpoint committed");
                }
                Action::Record(checkpoints) => {
                    show(status, &local, &checkpoints);
                    tell(&|| ToParticipant::Committed(checkpoints.clone()));
                }
                Action::Release => {
                    threads.release();
                    tell(&|| ToParticipant::Release);
                }
                Action::End(state) => {
                    tell(&|| ToParticipant::End(Ended::of(&state)));
                    ended = Some(state);
                }
            }
        }
        if let Some(state) = ended {
            break state;
        }
    };
    // No more joiners: a node that restarts its part reaches the next job, not this one —
    // or, once this one finished, learns that it did.
    drop(door_reg);
    if end == JobState::Finished && !expected.is_empty() {
        cfg.exchange.finished(&cfg.pipeline, cfg.attempt());
    }
    // The workers end first: a sink publishes the last committed epoch before it sees the
    // stop, so `finished` is shown only once all output is visible.
    let mut threads = threads;
    threads.stop();
    threads.join(Duration::from_secs(5)).await;
    end
}

/// Joins the job's coordinator on another node and runs this node's partitions on its
/// word; returns the state the job ended in.
async fn join(
    cfg: &JobConfig,
    status: &Arc<JobStatus>,
    stop: &mut Option<oneshot::Receiver<StopAsk>>,
    events_tx: tmpsc::UnboundedSender<Input>,
    mut events: tmpsc::UnboundedReceiver<Input>,
) -> JobState {
    let coordinator = cfg.coordinator();
    let give_up = std::time::Instant::now() + JOIN_TIMEOUT;
    let ask = exchange::Ask {
        kind: exchange::CONTROL,
        pipeline: cfg.pipeline.clone(),
        key: cfg.attempt(),
        from: cfg.node,
    };
    let connect = cfg
        .peers
        .connect_when_there(coordinator, &ask, || std::time::Instant::now() >= give_up);
    let stream = tokio::select! {
        s = connect => match s {
            exchange::Reached::Link(s) => s,
            // It ended while this part was away: its output is all committed.
            exchange::Reached::Finished => return JobState::Finished,
            exchange::Reached::GaveUp => return JobState::Failed {
                error: format!(
                    "could not join the job's coordinator on node {coordinator} within {} s",
                    JOIN_TIMEOUT.as_secs()
                ),
                retry: true,
            },
        },
        ask = stop_asked(stop) => return JobState::Stopped { reason: ask.reason },
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let lost = |why: String| JobState::Failed {
        error: format!("lost the job's coordinator on node {coordinator}: {why}"),
        retry: true,
    };
    let welcome = tokio::select! {
        w = tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, read_frame::<_, ToParticipant>(&mut rd)) => w,
        ask = stop_asked(stop) => return JobState::Stopped { reason: ask.reason },
    };
    let (session, checkpoints) = match welcome {
        Ok(Ok(Some(ToParticipant::Welcome {
            session,
            checkpoints,
        }))) => (session, checkpoints),
        Ok(Ok(Some(ToParticipant::Refused(why)))) => return lost(format!("refused: {why}")),
        Ok(Ok(Some(other))) => return lost(format!("said {other:?} first")),
        Ok(Ok(None)) => return lost("it closed the link".into()),
        Ok(Err(e)) => return lost(e.to_string()),
        Err(_) => return lost("no welcome in time".into()),
    };
    let local = cfg.local();
    let all: Vec<(u32, Checkpoint)> = checkpoints.clone().into_iter().collect();
    show(status, &local, &all);
    let threads = match spawn_threads(cfg, status, &checkpoints, session, events_tx) {
        Ok(t) => t,
        Err(error) => {
            let _ = write_frame(
                &mut wr,
                &ToCoordinator::Failed {
                    error: error.clone(),
                    retry: true,
                },
            )
            .await;
            return JobState::Failed { error, retry: true };
        }
    };
    status.set_state(JobState::Running);
    tracing::info!(pipeline = %cfg.pipeline, partitions = local.len(), coordinator, "pipeline job joined");
    let (say, mut said) = tmpsc::unbounded_channel::<ToCoordinator>();
    let (word_tx, mut word) = tmpsc::unbounded_channel::<Result<ToParticipant, String>>();
    let broken = word_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = said.recv().await {
            if let Err(e) = write_frame(&mut wr, &msg).await {
                let _ = broken.send(Err(e.to_string()));
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = tokio::spawn(async move {
        loop {
            let msg = match tokio::time::timeout(SILENCE, read_frame::<_, ToParticipant>(&mut rd))
                .await
            {
                Ok(Ok(Some(m))) => Ok(m),
                Ok(Ok(None)) => Err("it closed the link".to_string()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("silent for {} s", SILENCE.as_secs())),
            };
            let stop = msg.is_err();
            if word_tx.send(msg).is_err() || stop {
                return;
            }
        }
    });
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let mut told = 0;
    let mut told_at = std::time::Instant::now();
    let mut deadline: Pending<()> = None;
    let mut stop_reason = String::new();
    let mut failed: Option<JobState> = None;
    let end = loop {
        tokio::select! {
            w = word.recv() => match w {
                Some(Ok(ToParticipant::Barrier(epoch))) => threads.barrier(epoch),
                Some(Ok(ToParticipant::Publish(epoch))) => threads.publish(epoch),
                Some(Ok(ToParticipant::Release)) => threads.release(),
                Some(Ok(ToParticipant::Committed(c))) => show(status, &local, &c),
                Some(Ok(ToParticipant::End(ended))) => break ended.state(),
                Some(Ok(ToParticipant::Ping)) => {}
                Some(Ok(other)) => tracing::debug!(message = ?other, "unexpected word from the coordinator"),
                Some(Err(why)) => break lost(why),
                None => break lost("its link ended".into()),
            },
            Some(ev) = events.recv() => {
                // A failure here ends the job everywhere: the coordinator hears it and says
                // how the job ended (a link that closed as the job finished is no failure);
                // if it does not within the silence limit, this part ends failed.
                if let Input::Failed { error, retry } = &ev {
                    if failed.is_none() {
                        failed = Some(JobState::Failed { error: error.clone(), retry: *retry });
                        deadline = Some(Box::pin(tokio::time::sleep(SILENCE)));
                    }
                }
                if let Some(msg) = ToCoordinator::from_input(ev) {
                    let _ = say.send(msg);
                }
            }
            _ = ticker.tick() => {
                // Also the heartbeat: sent at least every PING_EVERY.
                let now = threads.progress();
                if now != told || told_at.elapsed() >= PING_EVERY {
                    told = now;
                    told_at = std::time::Instant::now();
                    let _ = say.send(ToCoordinator::Progress(now));
                }
            }
            ask = stop_asked(stop) => {
                if !ask.checkpoint {
                    let error = format!("{} (on node {})", ask.reason, cfg.node);
                    let _ = say.send(ToCoordinator::Failed { error, retry: true });
                    break JobState::Stopped { reason: ask.reason };
                }
                // The coordinator takes the final checkpoint and ends the job everywhere.
                let _ = say.send(ToCoordinator::Progress(threads.progress()));
                let _ = say.send(ToCoordinator::Stop { reason: ask.reason.clone() });
                stop_reason = ask.reason;
                deadline = Some(Box::pin(tokio::time::sleep(FINAL_CHECKPOINT_TIMEOUT + Duration::from_secs(2))));
            }
            _ = wait(&mut deadline) => {
                break failed.take().unwrap_or_else(|| JobState::Stopped {
                    reason: format!("{stop_reason} (the coordinator did not end the job in time)"),
                });
            }
        }
    };
    drop(say);
    let mut threads = threads;
    threads.stop();
    threads.join(Duration::from_secs(5)).await;
    reader.abort();
    let _ = writer.await;
    end
}
