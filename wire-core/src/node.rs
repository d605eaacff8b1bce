//! A Wire node: one redb database, one Raft instance, the public HTTP listener and the
//! node-to-node listener. Every interface (HTTP, CLI, C, Python) goes through [`Node`]: writes
//! are forwarded to the leader, reads wait for the consistency they ask for.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::ListenerExt;
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use redb::Database;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::calls::{self, RemoteFailure};
use crate::cluster::{plan_join, JoinPlan, JoinRequest};
use crate::config::NodeConfig;
use crate::consensus::election::LeaderContact;
use crate::consensus::elector::{Elector, RaftCounters};
use crate::consensus::network::{Network, PeerClient, PeerError, RaftEndpoint};
use crate::consensus::proposer::{self, fatal, Proposer};
use crate::consensus::{
    Command, CommandResponse, KvPage, NodeId, Raft, RaftMetrics, StateMachineStore, WireNode,
};
use crate::kv::{self, KvDeleted, KvWritten, Txn, TxnOutcome};
use crate::pipeline::runtime::status::{self, JobReport, PipelineStatus};
use crate::pipeline::runtime::supervisor::Runtime;
use crate::pipeline::transform::Transform;
use crate::pipeline::{self, DesiredState, PipelineGraph, PipelineRecord, PipelineSpec};
use crate::{Error, Result};

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Sees every write acknowledged before the read began: the leader confirms its
    /// leadership with a quorum (read-index) and this node waits until it has applied that far.
    #[default]
    Linearizable,
    /// Sees what the leader has applied, without the quorum round (stale only across a
    /// leader change).
    Leader,
    /// This node's applied state, possibly stale.
    Local,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "leader" => Ok(Consistency::Leader),
            "local" => Ok(Consistency::Local),
            other => Err(format!(
                "unknown consistency '{other}': use linearizable, leader or local"
            )),
        }
    }
}

pub use crate::consensus::proposer::WriteOutcome;

/// The result of writing a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineWritten {
    pub name: String,
    pub version: u64,
    /// Whether the pipeline is new.
    pub created: bool,
    /// Whether the call changed anything (applying the spec a pipeline already runs does
    /// not: no new version, no restart).
    pub changed: bool,
}

/// Every pipeline's record, as every face answers a listing: `{"pipelines": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineRecord>,
}

/// A pipeline's desired state, set: `{"name", "version", "desired"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredSet {
    pub name: String,
    pub version: u64,
    pub desired: DesiredState,
}

/// The leader as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: NodeId,
    pub http_addr: String,
}

/// A member as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub http_addr: String,
    pub raft_addr: String,
    pub voter: bool,
}

/// A log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub term: u64,
    pub index: u64,
}

/// What `GET /status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub http_addr: String,
    pub raft_addr: String,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<LeaderInfo>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot: Option<LogPosition>,
    pub purged_index: Option<u64>,
    pub members: Vec<MemberInfo>,
}

/// A node opened and not yet serving: what `server.rs` needs to serve it.
pub(crate) struct Opened {
    pub node: Node,
    /// What the Raft endpoints serve.
    pub endpoint: RaftEndpoint,
    pub http_listener: TcpListener,
    pub raft_listener: TcpListener,
}

/// A running node. Clones share it. Call [`Node::shutdown`] to stop it: dropping every handle
/// does not stop its listeners (their tasks hold handles of their own).
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    config: NodeConfig,
    me: WireNode,
    http_addr: SocketAddr,
    raft_addr: SocketAddr,
    raft: Raft,
    state: StateMachineStore,
    peers: PeerClient,
    /// Packs writes into Raft entries (used while this node leads).
    proposer: Proposer,
    /// Packs writes into forwarding calls to the leader (used while another node leads).
    forwarder: std::sync::OnceLock<Proposer>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// The pipeline jobs this node runs, and its registered transforms.
    runtime: Arc<Runtime>,
    /// Elections, leader changes and read-index failures.
    counters: Arc<RaftCounters>,
}

/// A command answered with a response of another kind: a broken invariant of the state
/// machine, reported rather than hidden.
fn unexpected(response: CommandResponse) -> Error {
    Error::Internal(format!("unexpected answer {response:?}"))
}

/// The address others should use to reach a listener bound at `bound`.
fn advertised(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let ip = match bound.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, bound.port()).to_string()
    } else {
        bound.to_string()
    }
}

impl Node {
    /// Opens a node without serving it yet (`server.rs` serves and starts it): its
    /// database, both listeners bound, Raft, the proposers and the election driver.
    pub(crate) async fn open(config: NodeConfig) -> Result<Opened> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::io(format!("creating {}", config.data_dir.display()), e))?;
        let db_path = config.data_dir.join("wire.redb");
        let claim = open_databases::claim(&db_path).await?;
        let db = Database::create(&db_path)
            .map_err(|e| Error::Storage(format!("opening {}: {e}", db_path.display())))?;
        let db = Arc::new(db);
        let (log_store, state) =
            crate::consensus::open_stores_with(db, Box::new(move || drop(claim)))?;

        let http_listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|e| Error::io(format!("binding http_addr {}", config.http_addr), e))?;
        let raft_listener = TcpListener::bind(config.raft_addr)
            .await
            .map_err(|e| Error::io(format!("binding raft_addr {}", config.raft_addr), e))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| Error::io("reading the http address", e))?;
        let raft_addr = raft_listener
            .local_addr()
            .map_err(|e| Error::io("reading the raft address", e))?;
        let me = WireNode {
            http_addr: advertised(http_addr),
            raft_addr: advertised(raft_addr),
        };

        let election = config.election();
        let (raft_timeout_min, raft_lease) = election.raft_timeouts();
        let raft_config = openraft::Config {
            cluster_name: "wire".into(),
            heartbeat_interval: config.heartbeat_ms,
            // Elections are Wire's (consensus::election: pre-vote first); openraft's timeouts
            // set only its lease on votes and how long a vote request may take.
            enable_elect: false,
            election_timeout_min: raft_timeout_min,
            election_timeout_max: raft_lease,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_threshold),
            max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
            // Entries are batches of up to 4 MiB of writes: keep appends to a bounded size.
            max_payload_entries: 128,
            snapshot_max_chunk_size: 1024 * 1024,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Invalid(format!("raft settings: {e}")))?;
        let peers = PeerClient::new(Duration::from_millis(500))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network::new(peers.clone()),
            log_store.clone(),
            state.clone(),
        )
        .await
        .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;

        let (stop, _) = watch::channel(false);
        let config_timeout = config.request_timeout_ms;
        let node = Node {
            inner: Arc::new(NodeInner {
                config,
                me,
                http_addr,
                raft_addr,
                raft: raft.clone(),
                state,
                peers,
                proposer: Proposer::start(proposer::to_raft(
                    raft.clone(),
                    Duration::from_millis(config_timeout),
                )),
                forwarder: std::sync::OnceLock::new(),
                stop,
                tasks: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
                runtime: Arc::new(Runtime::default()),
                counters: Arc::new(RaftCounters::default()),
            }),
        };
        let weak = Arc::downgrade(&node.inner);
        let forward: proposer::Submit = Arc::new(move |command| {
            let weak = weak.clone();
            Box::pin(async move {
                let node = Node {
                    inner: weak.upgrade().ok_or(Error::Shutdown)?,
                };
                node.forward(command).await.map(|o| (o.index, o.response))
            })
        });
        let _ = node.inner.forwarder.set(Proposer::start(forward));
        let contact = LeaderContact::default();
        let endpoint = RaftEndpoint {
            raft: raft.clone(),
            log: log_store.clone(),
            contact: contact.clone(),
            settings: election,
        };
        let elector = Elector {
            id: node.id(),
            raft: raft.clone(),
            log: log_store,
            peers: node.inner.peers.clone(),
            contact,
            settings: election,
            counters: node.inner.counters.clone(),
        };
        let elections = tokio::spawn(elector.run(node.inner.stop.subscribe()));
        if let Ok(mut tasks) = node.inner.tasks.lock() {
            tasks.push(elections);
        }
        Ok(Opened {
            node,
            endpoint,
            http_listener,
            raft_listener,
        })
    }

    /// Enters the cluster (bootstrap or join as configured), then starts running this node's
    /// share of the pipelines; on failure the node is shut down.
    pub(crate) async fn enter(&self) -> Result<()> {
        if let Err(e) = self.enter_cluster().await {
            let _ = self.shutdown().await;
            return Err(e);
        }
        self.inner.runtime.start(self.clone());
        Ok(())
    }

    /// Serves `app` on `listener` until the node stops.
    pub(crate) fn serve(&self, listener: TcpListener, app: axum::Router) {
        let mut stop = self.inner.stop.subscribe();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            // Small request/response exchanges: send each answer at once (no Nagle delay).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "setting TCP_NODELAY");
                }
            });
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "listener failed");
            }
        });
        if let Ok(mut tasks) = self.inner.tasks.lock() {
            tasks.push(task);
        }
    }

    async fn enter_cluster(&self) -> Result<()> {
        let raft = &self.inner.raft;
        let initialized = raft.is_initialized().await.map_err(fatal)?;
        if self.inner.config.bootstrap && !initialized {
            let members = BTreeMap::from([(self.id(), self.inner.me.clone())]);
            raft.initialize(members)
                .await
                .map_err(|e| Error::Internal(format!("bootstrapping: {e}")))?;
            tracing::info!(node_id = self.id(), "bootstrapped a new cluster");
        } else if self.inner.config.bootstrap {
            tracing::info!("data dir already holds a cluster; --bootstrap ignored");
        }
        if !self.inner.config.join.is_empty() {
            self.join_through_peers().await?;
        }
        Ok(())
    }

    /// Joins through the configured `--join` addresses, tried in turn until one accepts.
    async fn join_through_peers(&self) -> Result<()> {
        let want_voter = !self.inner.config.learner;
        {
            let metrics = self.metrics();
            let membership = metrics.membership_config.membership();
            let is_voter = membership.voter_ids().any(|v| v == self.id());
            if membership.get_node(&self.id()) == Some(&self.inner.me) && is_voter == want_voter {
                tracing::info!("already a member with these addresses; not joining again");
                return Ok(());
            }
        }
        let req = JoinRequest {
            node_id: self.id(),
            http_addr: self.inner.me.http_addr.clone(),
            raft_addr: self.inner.me.raft_addr.clone(),
            learner: self.inner.config.learner,
            protocol: crate::consensus::PROTOCOL_VERSION,
        };
        let timeout = Duration::from_secs(self.inner.config.join_timeout_secs);
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt made");
        loop {
            for addr in &self.inner.config.join {
                let result = self
                    .inner
                    .peers
                    .http()
                    .post(format!("http://{addr}/cluster/join"))
                    .json(&req)
                    .timeout(timeout)
                    .send()
                    .await;
                match result {
                    Ok(resp) if resp.status().is_success() => {
                        tracing::info!(through = %addr, "joined the cluster");
                        return Ok(());
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        if status.is_client_error() && status.as_u16() != 429 {
                            return Err(Error::Conflict(format!(
                                "join refused by {addr} ({status}): {body}"
                            )));
                        }
                        last_error = format!("{addr} answered {status}: {body}");
                    }
                    Err(e) => last_error = format!("{addr}: {e}"),
                }
                tracing::warn!(error = %last_error, "join attempt failed");
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "could not join through {:?} within {}s; last error: {last_error}",
                    self.inner.config.join,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The bound address of the public HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.inner.http_addr
    }

    /// The bound address of the node-to-node listener.
    pub fn raft_addr(&self) -> SocketAddr {
        self.inner.raft_addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Counters of elections, leader changes and read-index failures.
    pub fn raft_counters(&self) -> &RaftCounters {
        &self.inner.counters
    }

    /// The Raft instance (for metrics and tests).
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The leader this node knows of, without copying the metrics.
    fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.request_timeout_ms)
    }

    fn check_running(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Waits until a leader is known, up to `deadline`.
    async fn leader(&self, deadline: Instant) -> Result<(NodeId, WireNode)> {
        let mut changes = self.inner.raft.metrics();
        loop {
            self.check_running()?;
            let found = {
                let metrics = changes.borrow_and_update();
                metrics.current_leader.and_then(|id| {
                    metrics
                        .membership_config
                        .membership()
                        .get_node(&id)
                        .map(|node| (id, node.clone()))
                })
            };
            if let Some(found) = found {
                return Ok(found);
            }
            let no_leader = || {
                Error::Unavailable(
                    "no leader: an election is in progress or a quorum of voters is unreachable"
                        .into(),
                )
            };
            // Wake on the next change of Raft's metrics (a leader elected), or at the deadline.
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::Shutdown),
                Err(_) => return Err(no_leader()),
            }
        }
    }

    /// Runs `local` on this node if it leads, or sends `req` to the leader's `path`; retries
    /// while the leader moves or cannot be reached, until the request timeout. A request
    /// that is not `idempotent` is not sent again once it may have reached a leader.
    async fn on_leader<Req, Resp, F, Fut>(
        &self,
        path: &str,
        req: &Req,
        idempotent: bool,
        local: F,
    ) -> Result<Resp>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Resp>>,
    {
        let deadline = Instant::now() + self.request_timeout();
        loop {
            let (leader_id, leader) = self.leader(deadline).await?;
            let result = if leader_id == self.id() {
                local().await
            } else {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let call = self
                    .inner
                    .peers
                    .call::<Req, std::result::Result<Resp, RemoteFailure>>(
                        &leader.raft_addr,
                        path,
                        req,
                        remaining.max(Duration::from_millis(100)),
                    );
                // A leader that stops answering (paused, cut off) is replaced by an election;
                // a call still waiting on it then ends at once rather than at its timeout, so
                // that what comes next goes to the new leader.
                let mut metrics = self.inner.raft.metrics();
                let moved = metrics.wait_for(|m| {
                    m.current_leader.is_some() && m.current_leader != Some(leader_id)
                });
                let reply = tokio::select! {
                    reply = call => reply,
                    _ = moved => {
                        if idempotent {
                            continue;
                        }
                        return Err(Error::Unavailable(format!(
                            "the leader changed (from node {leader_id}) while this request was on its way to it; it may or may not have taken effect"
                        )));
                    }
                };
                match reply {
                    Ok(reply) => reply.map_err(Error::from),
                    // Not sent: safe to send again once a leader is known.
                    Err(e @ PeerError::Unreachable { .. }) => Err(Error::NotLeader {
                        leader: Some(leader_id),
                    })
                    .inspect_err(|_| tracing::debug!(error = %e, "leader unreachable")),
                    // Sent, the answer lost: a write may have been applied, and applying it
                    // again could change its answer (a compare-and-set would report failure).
                    Err(e @ PeerError::Broken { .. }) if idempotent => Err(Error::NotLeader {
                        leader: Some(leader_id),
                    })
                    .inspect_err(|_| tracing::debug!(error = %e, "leader lost mid-request")),
                    Err(e @ PeerError::Broken { .. }) => Err(Error::Unavailable(format!(
                        "{e}; the request may or may not have taken effect"
                    ))),
                    Err(e) => Err(Error::Unavailable(e.to_string())),
                }
            };
            match result {
                Err(Error::NotLeader { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(Error::NotLeader { .. }) => {
                    return Err(Error::Unavailable(format!(
                        "the leader did not settle within {} ms",
                        self.request_timeout().as_millis()
                    )))
                }
                other => return other,
            }
        }
    }

    /// Proposes a command through Raft, on the leader wherever it is; returns once it is
    /// committed and applied on the leader. Concurrent writes share entries (on the leader)
    /// and forwarding calls (on a follower).
    pub async fn write(&self, command: Command) -> Result<WriteOutcome> {
        self.check_running()?;
        match self.inner.forwarder.get() {
            Some(forwarder) if self.current_leader() != Some(self.id()) => {
                forwarder.propose(command).await
            }
            _ => self.forward(command).await,
        }
    }

    /// Sends one (possibly packed) command to the leader, or proposes it here if this node
    /// leads.
    async fn forward(&self, command: Command) -> Result<WriteOutcome> {
        self.on_leader(calls::paths::WRITE, &command, false, || {
            self.write_local(command.clone())
        })
        .await
    }

    /// Proposes a command on this node, which must be the leader; concurrent writes are
    /// packed into shared entries ([`crate::consensus::proposer`]).
    pub(crate) async fn write_local(&self, command: Command) -> Result<WriteOutcome> {
        self.check_running()?;
        self.inner.proposer.propose(command).await
    }

    /// The index a read must wait for, computed on this node, which must be the leader.
    pub(crate) async fn read_index_local(&self, linearizable: bool) -> Result<u64> {
        self.check_running()?;
        if !linearizable {
            let metrics = self.metrics();
            if metrics.current_leader != Some(self.id()) {
                return Err(Error::NotLeader {
                    leader: metrics.current_leader,
                });
            }
            return Ok(metrics.last_applied.map(|l| l.index).unwrap_or(0));
        }
        let timeout = self.request_timeout();
        let confirmed = tokio::time::timeout(timeout, self.inner.raft.get_read_log_id()).await;
        if !matches!(confirmed, Ok(Ok(_))) {
            self.inner
                .counters
                .read_index_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        match confirmed {
            Err(_) => Err(Error::Unavailable(format!(
                "leadership not confirmed by a quorum within {} ms",
                timeout.as_millis()
            ))),
            Ok(Ok((read, _))) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(Error::NotLeader {
                    leader: f.leader_id,
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(Error::Unavailable(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(fatal(f)),
        }
    }

    /// Waits until this node's state is fresh enough for a read at `consistency`.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<()> {
        self.check_running()?;
        let linearizable = match consistency {
            Consistency::Local => return Ok(()),
            Consistency::Leader => false,
            Consistency::Linearizable => true,
        };
        let index = self
            .on_leader(calls::paths::READ_INDEX, &linearizable, true, || {
                self.read_index_local(linearizable)
            })
            .await?;
        self.inner
            .raft
            .wait(Some(self.request_timeout()))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| Error::Unavailable(format!("catching up to index {index}: {e}")))
    }

    /// Sets a user key.
    pub async fn kv_put(&self, key: &str, value: Vec<u8>) -> Result<KvWritten> {
        kv::validate_key(key)?;
        kv::validate_value(&value)?;
        let outcome = self
            .write(Command::KvPut {
                key: key.to_string(),
                value,
            })
            .await?;
        match outcome.response {
            CommandResponse::KvPut { existed } => Ok(KvWritten {
                index: outcome.index,
                existed,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a user key.
    pub async fn kv_delete(&self, key: &str) -> Result<KvDeleted> {
        kv::validate_key(key)?;
        let outcome = self
            .write(Command::KvDelete {
                key: key.to_string(),
            })
            .await?;
        match outcome.response {
            CommandResponse::KvDelete { existed } => Ok(KvDeleted {
                index: outcome.index,
                deleted: existed,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Applies a transaction atomically; the outcome says whether the compares held.
    pub async fn kv_txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let outcome = self.write(Command::KvTxn(txn)).await?;
        match outcome.response {
            CommandResponse::KvTxn { succeeded } => Ok(TxnOutcome {
                succeeded,
                index: outcome.index,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Reads a user key at the given consistency.
    pub async fn kv_get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>> {
        kv::validate_key(key)?;
        self.read_barrier(consistency).await?;
        self.inner.state.kv_get(key)
    }

    /// Lists keys with `prefix` after `after`, at most `limit`; also says whether more follow.
    pub async fn kv_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<KvPage> {
        self.read_barrier(consistency).await?;
        self.inner.state.kv_list(prefix, after, limit)
    }

    /// The replicated state machine's local view (for reads that need no barrier).
    pub fn state(&self) -> &StateMachineStore {
        &self.inner.state
    }

    /// Validates a spec against this node's connectors and transforms.
    pub fn validate_spec(&self, spec: &PipelineSpec) -> Result<PipelineGraph> {
        let registry = self.inner.runtime.registry.clone();
        let known = |name: &str| {
            registry
                .read()
                .map(|r| r.contains_key(name))
                .unwrap_or(false)
        };
        pipeline::validate(spec, &known).map_err(Error::InvalidSpec)
    }

    /// Registers a transform under `name`, usable as `type: name` in any spec run on this
    /// node; replaces one registered before under that name. A built-in name is refused.
    pub fn register_transform(&self, name: &str, transform: Arc<dyn Transform>) -> Result<()> {
        Self::check_transform_name(name)?;
        self.inner
            .runtime
            .registry
            .write()
            .map_err(|_| Error::Internal("the transform registry is poisoned".into()))?
            .insert(name.to_string(), transform);
        self.inner.runtime.transform_registered();
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

    /// This node's pipeline runtime (its jobs' live status).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.id())
    }

    fn pipeline_written(name: &str, outcome: WriteOutcome) -> Result<PipelineWritten> {
        match outcome.response {
            CommandResponse::Pipeline {
                version,
                created,
                changed,
            } => Ok(PipelineWritten {
                name: name.to_string(),
                version,
                created,
                changed,
            }),
            CommandResponse::PipelineExists { version } => Err(Error::Conflict(format!(
                "pipeline '{name}' already exists (version {version}); update it instead"
            ))),
            CommandResponse::PipelineMissing => Err(Error::NotFound(format!("pipeline '{name}'"))),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a pipeline; refused if one of that name exists.
    pub async fn pipeline_create(&self, spec: PipelineSpec) -> Result<PipelineWritten> {
        self.validate_spec(&spec)?;
        let name = spec.name.clone();
        let outcome = self.write(Command::PipelineCreate { spec }).await?;
        Self::pipeline_written(&name, outcome)
    }

    /// Stores a new version of a pipeline (creating it when `upsert`); its partitions restart
    /// from their checkpoints. The spec it already runs changes nothing (`changed: false`).
    pub async fn pipeline_update(
        &self,
        spec: PipelineSpec,
        upsert: bool,
    ) -> Result<PipelineWritten> {
        self.validate_spec(&spec)?;
        let name = spec.name.clone();
        let outcome = self.write(Command::PipelineUpdate { spec, upsert }).await?;
        Self::pipeline_written(&name, outcome)
    }

    /// Pauses or resumes a pipeline.
    pub async fn pipeline_set_state(
        &self,
        name: &str,
        desired: DesiredState,
    ) -> Result<DesiredSet> {
        let outcome = self
            .write(Command::PipelineSetState {
                name: name.to_string(),
                desired,
            })
            .await?;
        let written = Self::pipeline_written(name, outcome)?;
        Ok(DesiredSet {
            name: written.name,
            version: written.version,
            desired,
        })
    }

    /// Deletes a pipeline.
    pub async fn pipeline_delete(&self, name: &str) -> Result<()> {
        let outcome = self
            .write(Command::PipelineDelete {
                name: name.to_string(),
            })
            .await?;
        match outcome.response {
            CommandResponse::PipelineDeleted { existed: true } => Ok(()),
            CommandResponse::PipelineDeleted { existed: false } => {
                Err(Error::NotFound(format!("pipeline '{name}'")))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A pipeline, read at the given consistency.
    pub async fn pipeline_get(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Option<PipelineRecord>> {
        self.read_barrier(consistency).await?;
        self.inner.state.pipeline(name)
    }

    /// A pipeline's status: its record, where each partition runs, and each owning node's
    /// live report (asked over the Raft listener; a node that does not answer within a
    /// second shows its partitions as `unknown`).
    pub async fn pipeline_status(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Option<PipelineStatus>> {
        let Some(record) = self.pipeline_get(name, consistency).await? else {
            return Ok(None);
        };
        let assignments = self.inner.state.assignments(name)?;
        let checkpoints = self.inner.state.checkpoints(name)?;
        let owners: BTreeSet<NodeId> = assignments.values().copied().collect();
        let members = self.metrics().membership_config.membership().clone();
        let mut reports = BTreeMap::new();
        for owner in owners {
            let report = if owner == self.id() {
                Some(self.inner.runtime.job(name).map(|s| JobReport::of(&s)))
            } else {
                match members.get_node(&owner) {
                    Some(n) => self
                        .inner
                        .peers
                        .call::<String, std::result::Result<Option<JobReport>, RemoteFailure>>(
                            &n.raft_addr,
                            calls::paths::JOB_REPORT,
                            &name.to_string(),
                            Duration::from_secs(1),
                        )
                        .await
                        .ok()
                        .and_then(|r| r.ok()),
                    None => None,
                }
            };
            reports.insert(owner, report);
        }
        Ok(Some(status::assemble(
            record,
            &assignments,
            &checkpoints,
            &reports,
        )))
    }

    /// Every pipeline, by name, read at the given consistency.
    pub async fn pipeline_list(&self, consistency: Consistency) -> Result<PipelineList> {
        self.read_barrier(consistency).await?;
        Ok(PipelineList {
            pipelines: self.inner.state.pipelines()?,
        })
    }

    /// Adds or updates a member, on the leader wherever it is.
    pub async fn join(&self, req: JoinRequest) -> Result<()> {
        self.check_running()?;
        for (field, addr) in [("http_addr", &req.http_addr), ("raft_addr", &req.raft_addr)] {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(Error::Invalid(format!(
                    "{field}: '{addr}' is not an IP:port address"
                )));
            }
        }
        if req.node_id == 0 {
            return Err(Error::Invalid("node_id: must be a positive integer".into()));
        }
        self.on_leader(calls::paths::JOIN, &req, true, || {
            self.join_local(req.clone())
        })
        .await
    }

    fn membership_change_error(e: RaftError<NodeId, ClientWriteError<NodeId, WireNode>>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Error::NotLeader {
                leader: f.leader_id,
            },
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                c @ ChangeMembershipError::InProgress(_),
            )) => Error::Unavailable(c.to_string()),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                Error::Conflict(c.to_string())
            }
            RaftError::Fatal(f) => fatal(f),
        }
    }

    /// Runs a membership change, waiting while an earlier change is still being committed
    /// (openraft allows one at a time), up to the join timeout.
    async fn membership_retrying<F, Fut>(&self, change: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<
            Output = std::result::Result<
                openraft::raft::ClientWriteResponse<crate::consensus::TypeConfig>,
                RaftError<NodeId, ClientWriteError<NodeId, WireNode>>,
            >,
        >,
    {
        let deadline = Instant::now() + Duration::from_secs(self.inner.config.join_timeout_secs);
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(Self::membership_change_error(e)),
            }
        }
    }

    /// Executes a join on this node, which must be the leader.
    pub(crate) async fn join_local(&self, req: JoinRequest) -> Result<()> {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id()) {
            return Err(Error::NotLeader {
                leader: metrics.current_leader,
            });
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let plan = plan_join(membership.nodes(), &voters, &req);
        tracing::info!(node_id = req.node_id, plan = ?plan, "join");
        let raft = &self.inner.raft;
        let id = req.node_id;
        let timeout = Duration::from_secs(self.inner.config.join_timeout_secs);
        let promote = match plan {
            JoinPlan::AlreadyMember => return Ok(()),
            JoinPlan::Conflict(reason) => return Err(Error::Conflict(reason)),
            JoinPlan::Promote => true,
            JoinPlan::UpdateAddress { promote } => {
                let nodes = BTreeMap::from([(id, req.node())]);
                self.membership_retrying(|| {
                    raft.change_membership(ChangeMembers::SetNodes(nodes.clone()), true)
                })
                .await?;
                promote
            }
            JoinPlan::Add { promote } => {
                let add = self.membership_retrying(|| raft.add_learner(id, req.node(), true));
                match tokio::time::timeout(timeout, add).await {
                    Err(_) => {
                        return Err(Error::Unavailable(format!(
                            "node {id} did not catch up within {}s",
                            timeout.as_secs()
                        )))
                    }
                    Ok(r) => r?,
                };
                promote
            }
        };
        if promote {
            self.membership_retrying(|| {
                raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            })
            .await?;
        }
        Ok(())
    }

    /// Removes a member (voter or learner), on the leader wherever it is.
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        self.check_running()?;
        self.on_leader(calls::paths::REMOVE, &id, true, || self.remove_local(id))
            .await
    }

    pub(crate) async fn remove_local(&self, id: NodeId) -> Result<()> {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id()) {
            return Err(Error::NotLeader {
                leader: metrics.current_leader,
            });
        }
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(Error::NotFound(format!("member {id}")));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(Error::Conflict(format!(
                    "node {id} is the only voter; removing it would leave no cluster"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        let raft = &self.inner.raft;
        self.membership_retrying(|| raft.change_membership(change.clone(), false))
            .await?;
        tracing::info!(node_id = id, "removed member");
        Ok(())
    }

    /// Starts an election on this node at once (the leader's hand-off asks for it).
    pub(crate) async fn campaign(&self) -> Result<()> {
        self.check_running()?;
        tracing::info!("leader handed off leadership: campaigning");
        self.inner.raft.trigger().elect().await.map_err(fatal)
    }

    /// The node's view of the cluster.
    pub async fn status(&self) -> Result<NodeStatus> {
        let metrics = self.metrics();
        let committed = self
            .inner
            .raft
            .with_raft_state(|st| st.committed.map(|c| c.index))
            .await
            .ok()
            .flatten();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| MemberInfo {
                id: *id,
                http_addr: n.http_addr.clone(),
                raft_addr: n.raft_addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        let role = if self.inner.stopped.load(Ordering::SeqCst) {
            "shutdown"
        } else {
            match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
        };
        Ok(NodeStatus {
            node_id: self.id(),
            http_addr: self.inner.me.http_addr.clone(),
            raft_addr: self.inner.me.raft_addr.clone(),
            role: role.to_string(),
            leader: metrics.current_leader.and_then(|id| {
                membership.get_node(&id).map(|n| LeaderInfo {
                    id,
                    http_addr: n.http_addr.clone(),
                })
            }),
            term: metrics.current_term,
            last_log_index: metrics.last_log_index,
            committed_index: committed,
            applied_index: metrics.last_applied.map(|l| l.index),
            snapshot: metrics.snapshot.map(|s| LogPosition {
                term: s.leader_id.term,
                index: s.index,
            }),
            purged_index: metrics.purged.map(|p| p.index),
            members,
        })
    }

    /// Whether the node takes part in a cluster with a known leader.
    pub fn is_ready(&self) -> bool {
        !self.inner.stopped.load(Ordering::SeqCst) && self.current_leader().is_some()
    }

    /// If this node leads and another voter exists, asks the most caught-up voter to take
    /// over, and waits (up to two election timeouts) for it to do so.
    async fn hand_off_leadership(&self) {
        let metrics = self.metrics();
        if metrics.current_leader != Some(self.id()) {
            return;
        }
        let membership = metrics.membership_config.membership().clone();
        let matched: BTreeMap<NodeId, u64> = metrics
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let target = membership
            .voter_ids()
            .filter(|v| *v != self.id())
            .max_by_key(|v| matched.get(v).copied().unwrap_or(0));
        let Some(target) = target else { return };
        let Some(node) = membership.get_node(&target) else {
            return;
        };
        tracing::info!(to = target, "handing off leadership before shutdown");
        self.inner.raft.runtime_config().heartbeat(false);
        let timeout = Duration::from_millis(self.inner.config.election_timeout_max_ms);
        let reply = self
            .inner
            .peers
            .call::<(), std::result::Result<(), RemoteFailure>>(
                &node.raft_addr,
                calls::paths::CAMPAIGN,
                &(),
                timeout,
            )
            .await;
        if let Err(e) = reply {
            tracing::warn!(error = %e, "leadership hand-off failed");
            return;
        }
        let waited = self
            .inner
            .raft
            .wait(Some(timeout * 2))
            .metrics(
                |m| m.current_leader.is_some() && m.current_leader != Some(m.id),
                "hand-off",
            )
            .await;
        match waited {
            Ok(m) => tracing::info!(leader = ?m.current_leader, "leadership handed off"),
            Err(e) => tracing::warn!(error = %e, "no new leader seen before shutdown"),
        }
    }

    /// Stops the node: hands off leadership if it leads, stops Raft, closes both listeners.
    /// Idempotent.
    pub async fn shutdown(&self) -> Result<()> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        // Jobs take their final checkpoints through Raft: stop them while it still runs.
        self.inner.runtime.stop().await;
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.hand_off_leadership().await;
        let raft_result = self.inner.raft.shutdown().await;
        let _ = self.inner.stop.send(true);
        let tasks = match self.inner.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(node_id = self.id(), "node stopped");
        raft_result.map_err(|e| Error::Internal(format!("stopping raft: {e}")))
    }
}

/// The databases nodes of this process have open. A node stopped and started again in one
/// process (a host restarting an embedded node) must wait for the old database writer to
/// finish its last flush and close the file, which happens just after `shutdown` returns.
mod open_databases {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::{Error, Result};

    static OPEN: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

    /// How long a start waits for a database being closed by this process.
    const WAIT: Duration = Duration::from_secs(10);

    /// Holds a path; dropping it (when the database closed) frees the path.
    pub struct Claim(PathBuf);

    impl Drop for Claim {
        fn drop(&mut self) {
            if let Ok(mut open) = OPEN.lock() {
                open.remove(&self.0);
            }
        }
    }

    pub async fn claim(path: &Path) -> Result<Claim> {
        let key = path
            .parent()
            .and_then(|d| d.canonicalize().ok())
            .map(|d| d.join(path.file_name().unwrap_or_default()))
            .unwrap_or_else(|| path.to_path_buf());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
                if open.insert(key.clone()) {
                    return Ok(Claim(key));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Storage(format!(
                    "opening {}: a node of this process still has it open",
                    path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
