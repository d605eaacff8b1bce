//! The consensus client: how the rest of a node reaches the replicated state. Writes are
//! proposed here when this node leads and forwarded to the leader when another node does
//! (packed into shared entries and calls by [`super::proposer`]); reads wait until this
//! node's state is as fresh as the consistency they ask for.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::elector::RaftCounters;
use super::network::{PeerClient, PeerError};
use super::proposer::{self, fatal, Proposer, WriteOutcome};
use super::{Command, NodeId, Raft, RaftMetrics, StateMachineStore, WireNode};
use crate::cluster::calls::{self, RemoteFailure};
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

/// A handle on the cluster's replicated state, as this node sees it. Clones share it.
#[derive(Clone)]
pub struct ConsensusClient {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    raft: Raft,
    state: StateMachineStore,
    peers: PeerClient,
    /// Packs writes into Raft entries (used while this node leads).
    proposer: Proposer,
    /// Packs writes into forwarding calls to the leader (used while another node leads).
    forwarder: OnceLock<Proposer>,
    stopped: AtomicBool,
    request_timeout: Duration,
    /// Elections, leader changes and read-index failures.
    counters: Arc<RaftCounters>,
}

impl ConsensusClient {
    /// A client of `raft` for node `id`; requests give up after `request_timeout`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: StateMachineStore,
        peers: PeerClient,
        request_timeout: Duration,
        counters: Arc<RaftCounters>,
    ) -> ConsensusClient {
        let client = ConsensusClient {
            inner: Arc::new(Inner {
                id,
                proposer: Proposer::start(proposer::to_raft(raft.clone(), request_timeout)),
                raft,
                state,
                peers,
                forwarder: OnceLock::new(),
                stopped: AtomicBool::new(false),
                request_timeout,
                counters,
            }),
        };
        let weak = Arc::downgrade(&client.inner);
        let forward: proposer::Submit = Arc::new(move |command| {
            let weak = weak.clone();
            Box::pin(async move {
                let client = ConsensusClient {
                    inner: weak.upgrade().ok_or(Error::Shutdown)?,
                };
                client.forward(command).await.map(|o| (o.index, o.response))
            })
        });
        let _ = client.inner.forwarder.set(Proposer::start(forward));
        client
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The Raft instance.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The replicated state machine's local view (for reads that need no barrier).
    pub fn state(&self) -> &StateMachineStore {
        &self.inner.state
    }

    /// The client for node-to-node calls.
    pub fn peers(&self) -> &PeerClient {
        &self.inner.peers
    }

    /// Counters of elections, leader changes and read-index failures.
    pub fn counters(&self) -> &Arc<RaftCounters> {
        &self.inner.counters
    }

    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// The leader this node knows of, without copying the metrics.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.inner.raft.metrics().borrow().current_leader
    }

    /// A copy of Raft's metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.inner.raft.metrics().borrow().clone()
    }

    /// Whether this node is the leader now.
    pub fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.id())
    }

    /// Whether the node is stopping or stopped.
    pub fn is_stopped(&self) -> bool {
        self.inner.stopped.load(Ordering::SeqCst)
    }

    /// Refuses every request from now on; false if it already did.
    pub fn stop(&self) -> bool {
        !self.inner.stopped.swap(true, Ordering::SeqCst)
    }

    pub fn check_running(&self) -> Result<()> {
        if self.is_stopped() {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Calls `path` on member `id` over the node-to-node listener; `None` when the member is
    /// unknown, does not answer within `timeout` or answers with an error.
    pub async fn ask_member<Req, Resp>(
        &self,
        id: NodeId,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> std::result::Result<Resp, String>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let node = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
            .ok_or_else(|| format!("node {id} is not a member"))?;
        self.inner
            .peers
            .call::<Req, std::result::Result<Resp, RemoteFailure>>(
                id,
                &node.raft_addr,
                path,
                req,
                timeout,
            )
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| Error::from(e).to_string())
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
    pub async fn on_leader<Req, Resp, F, Fut>(
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
                        leader_id,
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
    pub async fn write_local(&self, command: Command) -> Result<WriteOutcome> {
        self.check_running()?;
        self.inner.proposer.propose(command).await
    }

    /// The index a read must wait for, computed on this node, which must be the leader.
    pub async fn read_index_local(&self, linearizable: bool) -> Result<u64> {
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
}
