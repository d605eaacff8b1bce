//! Each node's supervisor, and the leader's assigner. Both wake when the replicated state
//! says pipelines, assignments or members changed (and once a second regardless):
//!
//! - the assigner (on the leader only) records where each partition runs;
//! - the supervisor (on every node) starts a job for the partitions assigned to it of each
//!   running pipeline, stops jobs whose pipeline was paused, updated, deleted or moved, and
//!   restarts failed jobs with backoff — except a job stopped by a record that failed a
//!   `fail`-policy step, which waits for the pipeline to be updated or resumed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::assign::{place, Members, Want};
use super::coordinator::{CheckpointLog, Committed, LogFuture, Opened};
use super::exchange::{Exchange, Peers};
use super::job::{Job, JobConfig};
use super::live::{JobState, JobStatus};
use super::metrics::JobMetrics;
use super::plan::{Function, Plan, Registry};
use crate::consensus::client::{ConsensusClient, Consistency};
use crate::consensus::{Command, CommandResponse, NodeId};
use crate::ops::cluster::ClusterOps;
use crate::pipeline::checkpoint::Checkpoint;
use crate::pipeline::reduce::KeyedFunction;
use crate::pipeline::transform::Transform;
use crate::pipeline::{self, DesiredState, PipelineGraph, PipelineRecord, PipelineSpec};
use crate::{Error, Result};

/// Longest wait before restarting a failed job.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A node's pipeline runtime: its registered transforms and the jobs it runs.
#[derive(Default)]
pub struct Runtime {
    pub registry: Registry,
    /// The links between the parts of keyed jobs on different nodes.
    pub exchange: Arc<Exchange>,
    jobs: Mutex<BTreeMap<String, Arc<JobStatus>>>,
    stop: Mutex<Option<watch::Sender<bool>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Bumped on every registration: a job that failed for a missing transform is retried
    /// at once rather than after its backoff.
    registrations: std::sync::atomic::AtomicU64,
    registered: tokio::sync::Notify,
}

impl Runtime {
    /// The live status of the job this node runs for `pipeline`, if any.
    pub fn job(&self, pipeline: &str) -> Option<Arc<JobStatus>> {
        lock(&self.jobs).get(pipeline).cloned()
    }

    /// Every job this node runs.
    pub fn jobs(&self) -> Vec<Arc<JobStatus>> {
        lock(&self.jobs).values().cloned().collect()
    }

    /// Says that a transform was registered (the supervisor retries failed jobs now).
    pub fn transform_registered(&self) {
        self.registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.registered.notify_one();
    }

    fn registrations(&self) -> u64 {
        self.registrations
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Validates a spec against this node's connectors and transforms.
    pub fn validate_spec(&self, spec: &PipelineSpec) -> Result<PipelineGraph> {
        let registry = self.registry.clone();
        let known = |name: &str| {
            registry
                .read()
                .ok()
                .and_then(|r| r.get(name).map(Function::kind))
        };
        pipeline::validate(spec, &known).map_err(Error::InvalidSpec)
    }

    /// Registers a transform under `name`, usable as `type: name` in any spec run on this
    /// node; replaces one registered before under that name. A built-in name is refused.
    pub fn register_transform(&self, name: &str, transform: Arc<dyn Transform>) -> Result<()> {
        self.register(name, Function::Records(transform))
    }

    /// Registers a keyed function under `name`, usable as `{"type": "reduce", "config":
    /// {"function": name}}` after a `key_by`; replaces anything registered under that name.
    pub fn register_keyed(&self, name: &str, function: Arc<dyn KeyedFunction>) -> Result<()> {
        self.register(name, Function::Keyed(function))
    }

    fn register(&self, name: &str, function: Function) -> Result<()> {
        Self::check_transform_name(name)?;
        self.registry
            .write()
            .map_err(|_| Error::Internal("the transform registry is poisoned".into()))?
            .insert(name.to_string(), function);
        self.transform_registered();
        Ok(())
    }

    /// Whether `name` can name a registered transform (not built in; letters, digits, '-',
    /// '_' or '.').
    pub fn check_transform_name(name: &str) -> Result<()> {
        if pipeline::BUILTIN_TRANSFORMS.contains(&name) {
            return Err(Error::Invalid(format!(
                "'{name}' is a built-in transform; pick another name"
            )));
        }
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::Invalid(format!(
                "transform name '{name}' must be letters, digits, '-', '_' or '.'"
            )));
        }
        Ok(())
    }

    /// Starts the supervisor and the assigner, working through `node`.
    pub fn start(self: &Arc<Self>, node: ConsensusClient, cluster: ClusterOps) {
        let (stop_tx, stop_rx) = watch::channel(false);
        *lock(&self.stop) = Some(stop_tx);
        let sup = tokio::spawn(supervise(self.clone(), node.clone(), stop_rx.clone()));
        let smp = tokio::spawn(sampler(self.clone(), stop_rx.clone()));
        let asg = tokio::spawn(assigner(node, cluster, stop_rx));
        lock(&self.tasks).extend([sup, asg, smp]);
    }

    /// Stops every job (each takes a final checkpoint) and both loops.
    pub async fn stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(true);
        }
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Keeps every job's counters once a second, for the throughput history.
async fn sampler(runtime: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for job in runtime.jobs() {
            job.metrics.sample(now);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits for a change or `tick`, whichever comes first; false once asked to stop.
async fn next_round(
    changes: &mut watch::Receiver<u64>,
    stop: &mut watch::Receiver<bool>,
    tick: Duration,
    also: impl std::future::Future<Output = ()>,
) -> bool {
    tokio::select! {
        _ = changes.changed() => {}
        _ = also => {}
        _ = tokio::time::sleep(tick) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    // Let a burst of changes settle into one round.
    tokio::time::sleep(Duration::from_millis(20)).await;
    !*stop.borrow()
}

fn want(record: &PipelineRecord) -> Want {
    Want {
        parallelism: record.spec.parallelism.max(1),
        pin: record.spec.node,
    }
}

/// Whether a pipeline's records cross between its partitions (one job spans every node
/// that runs one of them).
fn keyed(record: &PipelineRecord) -> bool {
    record
        .spec
        .transforms
        .iter()
        .any(|t| pipeline::EXCHANGE_TRANSFORMS.contains(&t.kind.as_str()))
}

async fn assigner(node: ConsensusClient, cluster: ClusterOps, mut stop: watch::Receiver<bool>) {
    let mut changes = node.state().pipeline_changes();
    loop {
        if node.is_leader() {
            if let Err(e) = assign_round(&node, &cluster).await {
                tracing::debug!(error = %e, "assignment round");
            }
        }
        // Often: a member that falls silent loses its partitions soon after the limit.
        let tick = Duration::from_millis(250);
        if !next_round(&mut changes, &mut stop, tick, std::future::pending()).await {
            return;
        }
    }
}

async fn assign_round(node: &ConsensusClient, cluster: &ClusterOps) -> Result<()> {
    let state = node.state();
    // Only live members take work: a member silent past `failover_after_ms` loses its
    // partitions to the others; a draining one hands its partitions off and gets no more.
    let liveness = cluster.local_liveness()?;
    let draining = state.draining()?;
    let mut members = Members::default();
    for (id, _) in state.members()? {
        match liveness.get(&id) {
            Some(l) if !l.alive => {
                let why = format!("node {id} was silent for {} ms", l.last_heard_ms);
                members.why_not.insert(id, why);
                continue;
            }
            _ => members.live.push(id),
        }
        if draining.contains(&id) {
            members.why_not.insert(id, format!("node {id} is draining"));
        } else {
            members.eligible.push(id);
        }
    }
    let mut load = BTreeMap::new();
    for record in state.pipelines()? {
        let name = &record.spec.name;
        let current = state.assignments(name)?;
        let pending: BTreeMap<u32, NodeId> = state
            .moves(name)?
            .into_iter()
            .filter(|(_, m)| !m.done)
            .map(|(p, m)| (p, m.to))
            .collect();
        let placed = place(&want(&record), &members, &current, &mut load);
        if placed.assignments == current && placed.pending() == pending {
            continue;
        }
        for (p, m) in &placed.moves {
            let verb = if m.done { "moved" } else { "moving" };
            tracing::info!(pipeline = %name, partition = p, from = ?m.from, to = m.to, reason = %m.reason, "{verb} partition");
        }
        let outcome = node
            .write(Command::PipelineAssign {
                name: name.clone(),
                version: record.version,
                assignments: placed.assignments.into_iter().collect(),
                moves: placed.moves.into_iter().collect(),
            })
            .await?;
        if let CommandResponse::Refused { reason } = outcome.response {
            tracing::debug!(pipeline = %name, reason = %reason, "assignment refused");
        }
    }
    Ok(())
}

/// A pipeline this node runs (or ran) partitions of.
struct Slot {
    version: u64,
    /// The job's partitions and where each runs.
    owners: BTreeMap<u32, NodeId>,
    updated_index: u64,
    job: Option<Job>,
    status: Arc<JobStatus>,
    failures: u32,
    retry_at: Instant,
    /// The runtime's registration count when the job started.
    registrations: u64,
}

/// A job's checkpoint log: Raft. The catalog's rules fence off a job whose partitions
/// moved, whose pipeline changed, or whose session a newer job replaced.
struct RaftLog {
    node: ConsensusClient,
    pipeline: String,
    version: u64,
}

impl CheckpointLog for RaftLog {
    fn open(&self, session: u64, owners: Vec<(u32, NodeId)>) -> LogFuture<Opened> {
        let node = self.node.clone();
        let command = Command::PipelineSession {
            name: self.pipeline.clone(),
            session,
            version: self.version,
            owners,
        };
        Box::pin(async move {
            match node.write(command).await {
                Ok(o) => Ok(match o.response {
                    CommandResponse::SessionOpened { checkpoints } => {
                        Opened::Yes(checkpoints.into_iter().collect())
                    }
                    CommandResponse::Refused { reason } => Opened::Fenced(reason),
                    CommandResponse::PipelineMissing => {
                        Opened::Fenced("the pipeline was deleted".into())
                    }
                    other => Opened::Fenced(format!("unexpected answer to a session: {other:?}")),
                }),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn commit(&self, session: u64, checkpoints: Vec<(u32, Checkpoint)>) -> LogFuture<Committed> {
        let node = self.node.clone();
        let command = Command::Checkpoint {
            name: self.pipeline.clone(),
            session,
            checkpoints,
        };
        Box::pin(async move {
            match node.write(command).await {
                Ok(o) => Ok(match o.response {
                    CommandResponse::CheckpointSaved => Committed::Yes,
                    CommandResponse::Refused { reason } => Committed::Fenced(reason),
                    CommandResponse::PipelineMissing => {
                        Committed::Fenced("the pipeline was deleted".into())
                    }
                    other => {
                        Committed::Fenced(format!("unexpected answer to a checkpoint: {other:?}"))
                    }
                }),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

fn failed_status(record: &PipelineRecord, error: String) -> Arc<JobStatus> {
    Arc::new(JobStatus {
        pipeline: record.spec.name.clone(),
        version: record.version,
        state: Mutex::new(JobState::Failed { error, retry: true }),
        partitions: Mutex::new(BTreeMap::new()),
        metrics: Arc::new(JobMetrics::default()),
    })
}

fn start_job(
    runtime: &Runtime,
    node: &ConsensusClient,
    record: &PipelineRecord,
    owners: &BTreeMap<u32, NodeId>,
) -> (Option<Job>, Arc<JobStatus>) {
    let metrics = Arc::new(JobMetrics::default());
    let registry = runtime.registry.clone();
    let built = runtime
        .validate_spec(&record.spec)
        .map_err(|e| e.to_string())
        .and_then(|graph| Plan::build(graph, &registry, &metrics));
    let plan = match built {
        Ok(p) => Arc::new(p),
        Err(error) => {
            tracing::error!(pipeline = %record.spec.name, error = %error, "cannot run pipeline");
            return (None, failed_status(record, error));
        }
    };
    let addrs = match node.state().members() {
        Ok(m) => m
            .into_iter()
            .map(|(id, m)| (id, m.node.raft_addr))
            .collect(),
        Err(e) => return (None, failed_status(record, e.to_string())),
    };
    let job = Job::start(
        JobConfig {
            pipeline: record.spec.name.clone(),
            version: record.version,
            incarnation: record.created_index,
            node: node.id(),
            owners: owners.clone(),
            plan,
            metrics,
            exchange: runtime.exchange.clone(),
            peers: Peers {
                client: node.peers().clone(),
                addrs,
            },
        },
        Arc::new(RaftLog {
            node: node.clone(),
            pipeline: record.spec.name.clone(),
            version: record.version,
        }),
    );
    let status = job.status.clone();
    (Some(job), status)
}

async fn supervise(runtime: Arc<Runtime>, node: ConsensusClient, mut stop: watch::Receiver<bool>) {
    let mut changes = node.state().pipeline_changes();
    let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
    loop {
        if let Err(e) = supervise_round(&runtime, &node, &mut slots).await {
            tracing::warn!(error = %e, "supervisor round");
        }
        let registered = runtime.registered.notified();
        if !next_round(&mut changes, &mut stop, Duration::from_secs(1), registered).await {
            break;
        }
    }
    // Stop every job, each with its final checkpoint, in parallel.
    let mut stops = tokio::task::JoinSet::new();
    for job in std::mem::take(&mut slots)
        .into_values()
        .filter_map(|s| s.job)
    {
        stops.spawn(job.stop("the node is shutting down"));
    }
    while stops.join_next().await.is_some() {}
}

async fn supervise_round(
    runtime: &Runtime,
    node: &ConsensusClient,
    slots: &mut BTreeMap<String, Slot>,
) -> Result<()> {
    let state = node.state();
    let me = node.id();
    let mut wanted: BTreeMap<String, (PipelineRecord, BTreeMap<u32, NodeId>)> = BTreeMap::new();
    // Partitions of mine with a pending move elsewhere: stopped (with a final checkpoint)
    // and then handed off.
    let mut leaving: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for record in state.pipelines()? {
        let name = &record.spec.name;
        let moves = state.moves(name)?;
        let assigned = state.assignments(name)?;
        let (going, mine): (Vec<u32>, Vec<u32>) = assigned
            .iter()
            .filter(|(_, n)| **n == me)
            .map(|(p, _)| *p)
            .partition(|p| moves.get(p).is_some_and(|m| !m.done && m.to != me));
        let owners: BTreeMap<u32, NodeId> = if keyed(&record) {
            // One job over every partition: run once all are placed, and not while one
            // of mine is being handed off (the job stops for it, then starts again).
            let placed = assigned.len() as u32 >= record.spec.parallelism.max(1);
            if placed && going.is_empty() {
                assigned
            } else {
                BTreeMap::new()
            }
        } else {
            mine.iter().map(|p| (*p, me)).collect()
        };
        if !going.is_empty() {
            leaving.insert(name.clone(), going);
        }
        if record.desired == DesiredState::Running && !mine.is_empty() && !owners.is_empty() {
            wanted.insert(name.clone(), (record, owners));
        }
    }
    // Stop what is no longer wanted here, or wanted differently.
    let names: Vec<String> = slots.keys().cloned().collect();
    for name in names {
        let keep = match (slots.get(&name), wanted.get(&name)) {
            (Some(slot), Some((record, owners))) => {
                slot.version == record.version && slot.owners == *owners
            }
            _ => false,
        };
        if !keep {
            if let Some(slot) = slots.remove(&name) {
                if let Some(job) = slot.job {
                    // A keyed job whose nodes changed under it (a node died or handed its
                    // partitions off, whose part of the job already ended) cannot take a
                    // final checkpoint without them: it goes back to its last one.
                    let regrouped = wanted.get(&name).is_some_and(|(record, owners)| {
                        slot.version == record.version && keyed(record) && slot.owners != *owners
                    });
                    if regrouped {
                        job.abort("the nodes of the job changed").await;
                    } else {
                        job.stop("the pipeline was paused, updated, deleted or moved")
                            .await;
                    }
                }
                lock(&runtime.jobs).remove(&name);
            }
        }
    }
    // Nothing runs the leaving partitions now (their final checkpoints are committed):
    // hand them off.
    for (name, partitions) in leaving {
        tracing::info!(pipeline = %name, ?partitions, "handing partitions off");
        let outcome = node
            .write(Command::PipelineHandOff {
                name: name.clone(),
                node: me,
                partitions,
            })
            .await?;
        if let CommandResponse::Refused { reason } = outcome.response {
            tracing::debug!(pipeline = %name, reason = %reason, "hand-off refused");
        }
    }
    for (name, (record, owners)) in wanted {
        let now = Instant::now();
        let restart = match slots.get_mut(&name) {
            None => true,
            Some(slot) => match slot.status.state() {
                JobState::Running => {
                    // It got going: the next failure starts the backoff over.
                    slot.failures = 0;
                    false
                }
                JobState::Failed { retry: true, .. } => {
                    now >= slot.retry_at || slot.registrations != runtime.registrations()
                }
                JobState::Failed { retry: false, .. } => slot.updated_index != record.updated_index,
                // Fenced off while this node still owns the partitions (its checkpoint was
                // refused: a stale job after a pause, say): start over from the checkpoints.
                JobState::Stopped { .. } => {
                    now >= slot.retry_at || slot.updated_index != record.updated_index
                }
                _ => false,
            },
        };
        if !restart {
            continue;
        }
        // A job resumes from the checkpoints in this node's state: first catch up with every
        // committed change (a restarted node may have applied less than was committed).
        node.read_barrier(Consistency::Linearizable).await?;
        let failures = match slots.remove(&name) {
            Some(old) => {
                if let Some(job) = old.job {
                    job.stop("restarting").await;
                }
                match old.status.state() {
                    JobState::Failed { retry: true, .. } => old.failures + 1,
                    _ => 0,
                }
            }
            None => 0,
        };
        let (job, status) = start_job(runtime, node, &record, &owners);
        let backoff =
            Duration::from_millis(250 * 2u64.saturating_pow(failures.min(8))).min(MAX_BACKOFF);
        lock(&runtime.jobs).insert(name.clone(), status.clone());
        slots.insert(
            name,
            Slot {
                version: record.version,
                owners,
                updated_index: record.updated_index,
                job,
                status,
                failures,
                retry_at: now + backoff,
                registrations: runtime.registrations(),
            },
        );
    }
    Ok(())
}
