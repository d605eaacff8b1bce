//! Cluster membership, as every face calls it: entering the cluster at start (bootstrap or
//! join through peers), adding and removing members on the leader wherever it is, the
//! node's view of the cluster, and the leadership hand-off before a clean shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cluster::calls;
use crate::cluster::{plan_join, JoinPlan, JoinRequest};
use crate::config::NodeConfig;
use crate::consensus::client::ConsensusClient;
use crate::consensus::liveness::{Liveness, MemberLiveness};
use crate::consensus::proposer::fatal;
use crate::consensus::{Command, CommandResponse, NodeId, WireNode};
use crate::discovery::{Finder, Registration};
use crate::{Error, Result};

/// The leader as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaderInfo {
    pub id: NodeId,
    pub http_addr: String,
}

/// A member as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberInfo {
    pub id: NodeId,
    pub http_addr: String,
    pub raft_addr: String,
    pub voter: bool,
    /// Whether the leader heard from it within `failover_after_ms` (none: no leader known).
    pub alive: Option<bool>,
    /// Milliseconds since the leader last heard from it.
    pub last_heard_ms: Option<u64>,
    /// Whether it is being drained.
    pub draining: bool,
    /// Pipeline partitions assigned to it.
    pub partitions: u64,
}

/// A log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogPosition {
    pub term: u64,
    pub index: u64,
}

/// What `GET /status` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// The membership service of a node.
#[derive(Clone)]
pub struct ClusterOps {
    client: ConsensusClient,
    /// This node's advertised addresses.
    me: WireNode,
    config: NodeConfig,
    liveness: Liveness,
    /// Where to find the other nodes, when discovery is configured.
    finder: Option<Finder>,
    /// This node's registration with the discovery (etcd), removed at shutdown.
    registration: Arc<std::sync::Mutex<Option<Registration>>>,
}

/// How one join attempt ended, when not joined.
enum Attempt {
    /// The cluster said no (a 4xx): trying again will not help.
    Refused(Error),
    /// Not now (unreachable, no leader yet): try again.
    Failed(String),
}

impl ClusterOps {
    pub fn new(
        client: ConsensusClient,
        me: WireNode,
        config: NodeConfig,
        liveness: Liveness,
        finder: Option<Finder>,
    ) -> ClusterOps {
        ClusterOps {
            client,
            me,
            config,
            liveness,
            finder,
            registration: Arc::default(),
        }
    }

    /// Every member's liveness as this node sees it, which it knows only while it leads.
    pub fn local_liveness(&self) -> Result<BTreeMap<NodeId, MemberLiveness>> {
        let members: Vec<NodeId> = self
            .client
            .metrics()
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect();
        let failover_after = Duration::from_millis(self.config.failover_after_ms);
        self.liveness
            .view(self.client.id(), members, failover_after)
            .ok_or(Error::NotLeader {
                leader: self.client.current_leader(),
            })
    }

    /// Marks member `id` as draining (its partitions are handed off to the others, it gets
    /// no new ones) or not; whether that changed anything.
    pub async fn drain(&self, id: NodeId, draining: bool) -> Result<bool> {
        self.client.check_running()?;
        let known = self
            .client
            .metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if !known {
            return Err(Error::NotFound(format!("member {id}")));
        }
        let outcome = self
            .client
            .write(Command::SetDraining { node: id, draining })
            .await?;
        match outcome.response {
            CommandResponse::Draining { changed } => Ok(changed),
            other => Err(Error::Internal(format!("unexpected answer {other:?}"))),
        }
    }

    /// Every member's liveness as the leader sees it (asked of the leader when this node
    /// does not lead); empty when no leader answers within a second.
    pub async fn liveness(&self) -> BTreeMap<NodeId, MemberLiveness> {
        if let Ok(view) = self.local_liveness() {
            return view;
        }
        let Some(leader) = self.client.current_leader() else {
            return BTreeMap::new();
        };
        self.client
            .ask_member::<(), BTreeMap<NodeId, MemberLiveness>>(
                leader,
                calls::paths::LIVENESS,
                &(),
                Duration::from_secs(1),
            )
            .await
            .unwrap_or_default()
    }

    /// Enters the cluster as configured: bootstraps a new one, joins through peers, or
    /// neither (a restarted member).
    pub async fn enter(&self) -> Result<()> {
        if let Some(finder) = &self.finder {
            return self.enter_by_discovery(finder).await;
        }
        let raft = self.client.raft();
        let initialized = raft.is_initialized().await.map_err(fatal)?;
        if self.config.bootstrap && !initialized {
            let members = BTreeMap::from([(self.client.id(), self.me.clone())]);
            raft.initialize(members)
                .await
                .map_err(|e| Error::Internal(format!("bootstrapping: {e}")))?;
            tracing::info!(node_id = self.client.id(), "bootstrapped a new cluster");
        } else if self.config.bootstrap {
            tracing::info!("data dir already holds a cluster; --bootstrap ignored");
        }
        if !self.config.join.is_empty() {
            self.join_through_peers().await?;
        }
        Ok(())
    }

    /// Joins through the configured `--join` addresses, tried in turn until one accepts.
    async fn join_through_peers(&self) -> Result<()> {
        let want_voter = !self.config.learner;
        {
            let metrics = self.client.metrics();
            let membership = metrics.membership_config.membership();
            let is_voter = membership.voter_ids().any(|v| v == self.client.id());
            if membership.get_node(&self.client.id()) == Some(&self.me) && is_voter == want_voter {
                tracing::info!("already a member with these addresses; not joining again");
                return Ok(());
            }
        }
        let req = self.join_request();
        let timeout = Duration::from_secs(self.config.join_timeout_secs);
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no attempt made");
        loop {
            for addr in &self.config.join {
                match self.join_once(addr, &req, timeout).await {
                    Ok(()) => return Ok(()),
                    Err(Attempt::Refused(e)) => return Err(e),
                    Err(Attempt::Failed(e)) => last_error = e,
                }
                tracing::warn!(error = %last_error, "join attempt failed");
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "could not join through {:?} within {}s; last error: {last_error}",
                    self.config.join,
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn join_request(&self) -> JoinRequest {
        JoinRequest {
            node_id: self.client.id(),
            http_addr: self.me.http_addr.clone(),
            raft_addr: self.me.raft_addr.clone(),
            learner: self.config.learner,
            protocol: crate::consensus::PROTOCOL_VERSION,
        }
    }

    /// One join request through the public API at `addr`.
    async fn join_once(
        &self,
        addr: &str,
        req: &JoinRequest,
        timeout: Duration,
    ) -> std::result::Result<(), Attempt> {
        let peers = self.client.peers();
        let result = peers
            .http()
            .post(peers.url(addr, "/cluster/join"))
            .json(req)
            .timeout(timeout)
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(through = %addr, "joined the cluster");
                Ok(())
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if status.is_client_error() && status.as_u16() != 429 {
                    return Err(Attempt::Refused(Error::Conflict(format!(
                        "join refused by {addr} ({status}): {body}"
                    ))));
                }
                Err(Attempt::Failed(format!("{addr} answered {status}: {body}")))
            }
            Err(e) => Err(Attempt::Failed(format!("{addr}: {e}"))),
        }
    }

    /// Enters the cluster the discovery finds: registers this node where the mode allows
    /// it, joins through any node found that is in a cluster, and when none is and at
    /// least `bootstrap_expect` nodes are found, the lowest id among them bootstraps.
    async fn enter_by_discovery(&self, finder: &Finder) -> Result<()> {
        let me = crate::discovery::Me {
            node_id: self.client.id(),
            http_addr: self.me.http_addr.clone(),
            raft_addr: self.me.raft_addr.clone(),
        };
        if let Some(r) = Registration::start(finder, me) {
            if let Ok(mut slot) = self.registration.lock() {
                *slot = Some(r);
            }
        }
        if self.client.raft().is_initialized().await.map_err(fatal)? {
            tracing::info!("data dir holds a cluster: a restarted member, not discovering");
            return Ok(());
        }
        let expect = self.config.bootstrap_expect.max(1);
        let timeout = Duration::from_secs(self.config.join_timeout_secs);
        let deadline = Instant::now() + timeout;
        let req = self.join_request();
        let call = Duration::from_secs(2);
        let mut last_error = String::from("nothing found yet");
        let mut said = Instant::now();
        loop {
            if said.elapsed() >= Duration::from_secs(5) {
                tracing::info!(last = %last_error, "looking for the cluster");
                said = Instant::now();
            }
            match finder.find().await {
                Err(e) => last_error = format!("discovery: {e}"),
                Ok(found) => {
                    let others: Vec<&String> =
                        found.iter().filter(|a| **a != self.me.http_addr).collect();
                    for addr in &others {
                        match self.join_once(addr, &req, call).await {
                            Ok(()) => return Ok(()),
                            Err(Attempt::Refused(e)) => return Err(e),
                            Err(Attempt::Failed(e)) => last_error = e,
                        }
                    }
                    if found.len() + 1 < expect {
                        last_error = format!(
                            "found {} node(s) ({found:?}), waiting for {expect}",
                            found.len()
                        );
                    }
                    if self.may_bootstrap(&others, expect, call).await {
                        let members = BTreeMap::from([(self.client.id(), self.me.clone())]);
                        self.client
                            .raft()
                            .initialize(members)
                            .await
                            .map_err(|e| Error::Internal(format!("bootstrapping: {e}")))?;
                        tracing::info!(
                            node_id = self.client.id(),
                            found = found.len(),
                            "bootstrapped a new cluster: the lowest id of those discovered"
                        );
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Unavailable(format!(
                    "no cluster formed through discovery within {}s (bootstrap_expect {expect}); last: {last_error}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Whether this node should bootstrap: at least `expect` nodes found (this one
    /// counted), every other answered, none is in a cluster, and this one has the lowest id.
    async fn may_bootstrap(&self, others: &[&String], expect: usize, call: Duration) -> bool {
        let mut ids = vec![self.client.id()];
        for addr in others {
            let peers = self.client.peers();
            let answer = peers
                .http()
                .get(peers.url(addr, "/status"))
                .timeout(call)
                .send()
                .await;
            let status: serde_json::Value = match answer {
                Ok(r) if r.status().is_success() => match r.json().await {
                    Ok(v) => v,
                    Err(_) => return false,
                },
                _ => return false,
            };
            let in_cluster = status["members"].as_array().is_some_and(|m| !m.is_empty());
            match status["node_id"].as_u64() {
                // This node under another address (bound to all interfaces).
                Some(id) if id == self.client.id() => continue,
                Some(_) if in_cluster => return false,
                Some(id) => ids.push(id),
                None => return false,
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.len() >= expect && ids.first() == Some(&self.client.id())
    }

    /// Removes this node's registration (etcd) on a clean shutdown.
    pub async fn deregister(&self) {
        let registration = self.registration.lock().ok().and_then(|mut r| r.take());
        if let Some(r) = registration {
            r.stop().await;
        }
    }

    /// Adds or updates a member, on the leader wherever it is.
    pub async fn join(&self, req: JoinRequest) -> Result<()> {
        self.client.check_running()?;
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
        // A node that has never been in a cluster knows no leader to ask: say so now rather
        // than after the request timeout (discovery asks every node it finds).
        if !self.client.raft().is_initialized().await.map_err(fatal)?
            && self.client.current_leader().is_none()
        {
            return Err(Error::Unavailable(format!(
                "node {} is not in a cluster yet",
                self.client.id()
            )));
        }
        self.client
            .on_leader(calls::paths::JOIN, &req, true, || {
                self.join_local(req.clone())
            })
            .await
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
        let deadline = Instant::now() + Duration::from_secs(self.config.join_timeout_secs);
        loop {
            match change().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(membership_change_error(e)),
            }
        }
    }

    /// Executes a join on this node, which must be the leader.
    pub async fn join_local(&self, req: JoinRequest) -> Result<()> {
        let metrics = self.client.metrics();
        if metrics.current_leader != Some(self.client.id()) {
            return Err(Error::NotLeader {
                leader: metrics.current_leader,
            });
        }
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let plan = plan_join(membership.nodes(), &voters, &req);
        tracing::info!(node_id = req.node_id, plan = ?plan, "join");
        let raft = self.client.raft();
        let id = req.node_id;
        let timeout = Duration::from_secs(self.config.join_timeout_secs);
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
    pub async fn remove(&self, id: NodeId) -> Result<()> {
        self.client.check_running()?;
        self.client
            .on_leader(calls::paths::REMOVE, &id, true, || self.remove_local(id))
            .await
    }

    pub async fn remove_local(&self, id: NodeId) -> Result<()> {
        let metrics = self.client.metrics();
        if metrics.current_leader != Some(self.client.id()) {
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
        let raft = self.client.raft();
        self.membership_retrying(|| raft.change_membership(change.clone(), false))
            .await?;
        tracing::info!(node_id = id, "removed member");
        Ok(())
    }

    /// Starts an election on this node at once (the leader's hand-off asks for it).
    pub async fn campaign(&self) -> Result<()> {
        self.client.check_running()?;
        tracing::info!("leader handed off leadership: campaigning");
        self.client.raft().trigger().elect().await.map_err(fatal)
    }

    /// The node's view of the cluster.
    pub async fn status(&self) -> Result<NodeStatus> {
        let metrics = self.client.metrics();
        let committed = self
            .client
            .raft()
            .with_raft_state(|st| st.committed.map(|c| c.index))
            .await
            .ok()
            .flatten();
        let liveness = self.liveness().await;
        let state = self.client.state();
        let draining = state.draining().unwrap_or_default();
        let mut partitions: BTreeMap<NodeId, u64> = BTreeMap::new();
        for record in state.pipelines().unwrap_or_default() {
            for n in state
                .assignments(&record.spec.name)
                .unwrap_or_default()
                .values()
            {
                *partitions.entry(*n).or_default() += 1;
            }
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, n)| MemberInfo {
                id: *id,
                http_addr: n.http_addr.clone(),
                raft_addr: n.raft_addr.clone(),
                voter: voters.contains(id),
                alive: liveness.get(id).map(|l| l.alive),
                last_heard_ms: liveness.get(id).map(|l| l.last_heard_ms),
                draining: draining.contains(id),
                partitions: partitions.get(id).copied().unwrap_or(0),
            })
            .collect();
        let role = if self.client.is_stopped() {
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
            node_id: self.client.id(),
            http_addr: self.me.http_addr.clone(),
            raft_addr: self.me.raft_addr.clone(),
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

    /// If this node leads and another voter exists, asks the most caught-up voter to take
    /// over, and waits (up to two election timeouts) for it to do so.
    pub async fn hand_off_leadership(&self) {
        let metrics = self.client.metrics();
        if metrics.current_leader != Some(self.client.id()) {
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
            .filter(|v| *v != self.client.id())
            .max_by_key(|v| matched.get(v).copied().unwrap_or(0));
        let Some(target) = target else { return };
        tracing::info!(to = target, "handing off leadership before shutdown");
        self.client.raft().runtime_config().heartbeat(false);
        let timeout = Duration::from_millis(self.config.election_timeout_max_ms);
        let reply = self
            .client
            .ask_member::<(), ()>(target, calls::paths::CAMPAIGN, &(), timeout)
            .await;
        if let Err(e) = reply {
            tracing::warn!(error = %e, "leadership hand-off failed");
            return;
        }
        let waited = self
            .client
            .raft()
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
}
