//! The election driver of a node ([`super::election`] has the rules): ticks the election
//! timer, asks the other voters for pre-votes over the node-to-node RPC, starts a real
//! election with a quorum of them, and counts what happened for `/metrics`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;

use super::election::{
    is_quorum, ElectionSettings, ElectionTimer, LeaderContact, PreVoteRequest, PreVoteResponse,
};
use super::network::{paths, PeerClient};
use super::{LogStore, NodeId, Raft};

/// Counters of elections, leadership and reads, for `/metrics`.
#[derive(Debug, Default)]
pub struct RaftCounters {
    /// Pre-vote rounds this node asked for.
    pub pre_votes: AtomicU64,
    /// Elections this node started (after a quorum of pre-votes).
    pub elections: AtomicU64,
    /// Times the leader this node knows of changed (to another node or to none).
    pub leader_changes: AtomicU64,
    /// Linearizable reads this node could not confirm as leader (no quorum in time).
    pub read_index_failures: AtomicU64,
}

/// What the driver needs; see [`Elector::run`].
pub struct Elector {
    pub id: NodeId,
    pub raft: Raft,
    pub log: LogStore,
    pub peers: PeerClient,
    pub contact: LeaderContact,
    pub settings: ElectionSettings,
    pub counters: Arc<RaftCounters>,
}

impl Elector {
    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let tick = (self.settings.heartbeat / 2).max(Duration::from_millis(10));
        let mut timer = ElectionTimer::new(self.settings, seed(self.id));
        let mut leader = None;
        let mut vote = None;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let (state, known_leader, configs, addrs, known_vote) = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                let membership = m.membership_config.membership();
                let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
                let addrs: Vec<(NodeId, String)> = membership
                    .voter_ids()
                    .filter(|v| *v != self.id)
                    .filter_map(|v| membership.get_node(&v).map(|n| (v, n.raft_addr.clone())))
                    .collect();
                (m.state, m.current_leader, configs, addrs, m.vote)
            };
            if vote != Some(known_vote) {
                // A new term or vote: draw a new timeout (as etcd does on every term change),
                // so that the node that lost the last race does not keep its long draw.
                timer.new_term();
                vote = Some(known_vote);
            }
            if known_leader != leader {
                if leader.is_some() || known_leader.is_some() {
                    self.counters.leader_changes.fetch_add(1, Ordering::Relaxed);
                }
                tracing::info!(from = ?leader, to = ?known_leader, "leader changed");
                leader = known_leader;
            }
            let voter = configs.iter().any(|c| c.contains(&self.id));
            let following = state == ServerState::Follower && known_leader.is_some();
            if state == ServerState::Leader || state == ServerState::Shutdown || !voter {
                timer.settle();
                continue;
            }
            if following && self.contact.last().elapsed() < self.settings.min {
                timer.settle();
            }
            let now = Instant::now();
            if !timer.due(now, self.contact.last(), addrs.is_empty()) {
                continue;
            }
            timer.attempted(now);
            self.counters.pre_votes.fetch_add(1, Ordering::Relaxed);
            let granted = self.pre_vote(&configs, &addrs).await;
            // While the pre-vote was out, this node may have voted for another candidate or
            // seen a newer term or a new leader: campaigning now would only depose the winner.
            let moved = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                m.vote != known_vote || m.current_leader != known_leader
            } || self.contact.last() > now;
            if moved {
                tracing::debug!("the term moved during the pre-vote: not campaigning");
            } else if is_quorum(&configs, &granted) {
                self.counters.elections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(granted = ?granted, "a quorum granted a pre-vote: campaigning");
                if let Err(e) = self.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "starting an election failed");
                }
            } else {
                tracing::debug!(
                    granted = ?granted,
                    next_in = ?timer.timeout(),
                    "pre-vote not granted by a quorum"
                );
            }
        }
    }

    /// Asks every other voter at once; returns who granted, this node included, as soon as
    /// they make a quorum of `configs` (or every answer is in).
    async fn pre_vote(
        &self,
        configs: &[BTreeSet<NodeId>],
        voters: &[(NodeId, String)],
    ) -> BTreeSet<NodeId> {
        let mut granted = BTreeSet::from([self.id]);
        let last_log_id = match self.log.last_log_id().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "reading the last log id for a pre-vote");
                return BTreeSet::new();
            }
        };
        let req = PreVoteRequest {
            candidate: self.id,
            last_log_id,
        };
        let timeout = self.settings.min / 2;
        let mut calls = tokio::task::JoinSet::new();
        for (id, addr) in voters.iter().cloned() {
            let peers = self.peers.clone();
            let req = req.clone();
            calls.spawn(async move {
                let reply = peers
                    .call::<PreVoteRequest, PreVoteResponse>(
                        id,
                        &addr,
                        paths::PRE_VOTE,
                        &req,
                        timeout,
                    )
                    .await;
                match reply {
                    Ok(r) if r.refused.is_none() => Some(id),
                    Ok(r) => {
                        tracing::debug!(voter = id, refused = ?r.refused, "pre-vote refused");
                        None
                    }
                    Err(e) => {
                        tracing::debug!(voter = id, error = %e, "pre-vote not answered");
                        None
                    }
                }
            });
        }
        while !is_quorum(configs, &granted) {
            match calls.join_next().await {
                Some(Ok(Some(id))) => {
                    granted.insert(id);
                }
                Some(_) => {}
                None => break,
            }
        }
        granted
    }
}

/// A per-node seed for the timer, so that nodes draw different timeouts.
fn seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
