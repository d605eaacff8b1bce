//! A test fixture: Raft nodes with Wire's real redb stores in one process, joined by an
//! in-memory network whose messages a test can hold back. Nodes start from data dirs a test
//! prepared byte for byte (a crash image), so storage and restart behaviour can be driven
//! deterministically, without sockets or timing luck.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::RaftStateMachine;
use openraft::{Config, Vote};
use redb::Database;

use super::tables::{self, raft_meta};
use super::writer::Entry;
use super::WireNode;
use super::{encode, open_stores_with, LogId, NodeId, Raft, StateMachineStore, TypeConfig};

/// A Raft message in flight, as the network's filter sees it.
pub(crate) enum Message<'a> {
    Append(&'a AppendEntriesRequest<TypeConfig>),
    Vote,
    Snapshot,
}

/// Decides whether a message from `from` to `to` is delivered (`false`: the peer is
/// unreachable for it).
type Filter = dyn Fn(NodeId, NodeId, &Message<'_>) -> bool + Send + Sync;

/// The in-memory network: the nodes that are up, and the filter every message passes.
#[derive(Clone, Default)]
pub(crate) struct MemNet {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft>>>,
    filter: Arc<Mutex<Option<Arc<Filter>>>>,
}

impl MemNet {
    /// Holds back the messages `filter` refuses, until [`Self::deliver_all`].
    pub(crate) fn hold(
        &self,
        filter: impl Fn(NodeId, NodeId, &Message<'_>) -> bool + Send + Sync + 'static,
    ) {
        *self.filter.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(filter));
    }

    /// Delivers every message from now on.
    pub(crate) fn deliver_all(&self) {
        *self.filter.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn route(&self, from: NodeId, to: NodeId, msg: &Message<'_>) -> Option<Raft> {
        let filter = self
            .filter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if filter.is_some_and(|f| !f(from, to, msg)) {
            return None;
        }
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .cloned()
    }

    /// Starts node `id` on the data dir `dir` (its database is `dir/wire.redb`).
    pub(crate) async fn start(&self, id: NodeId, dir: &Path) -> MemNode {
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let db = Arc::new(Database::create(dir.join("wire.redb")).expect("database"));
        let (log, state) = open_stores_with(
            db,
            Box::new(move || {
                let _ = closed_tx.send(());
            }),
        )
        .expect("stores");
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .expect("raft config");
        let network = MemClient {
            net: self.clone(),
            from: id,
        };
        let raft = Raft::new(id, Arc::new(config), network, log, state.clone())
            .await
            .expect("raft");
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, raft.clone());
        MemNode {
            id,
            raft,
            state,
            closed,
            net: self.clone(),
        }
    }
}

/// One node of the in-memory cluster.
pub(crate) struct MemNode {
    pub id: NodeId,
    pub raft: Raft,
    pub state: StateMachineStore,
    closed: std::sync::mpsc::Receiver<()>,
    net: MemNet,
}

impl MemNode {
    /// Takes the node off the network and stops it; returns once its database is closed.
    pub(crate) async fn stop(self) {
        self.net
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
        self.raft.shutdown().await.expect("raft shutdown");
        drop(self.raft);
        drop(self.state);
        let closed = self.closed;
        tokio::task::spawn_blocking(move || closed.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("join")
            .expect("database closed");
    }

    /// A key as applied on this node.
    pub(crate) fn local(&self, key: &str) -> Option<String> {
        self.state
            .kv_get(key)
            .expect("kv read")
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

/// Messages from one node.
pub(crate) struct MemClient {
    net: MemNet,
    from: NodeId,
}

/// A connection from one node to another.
pub(crate) struct MemConnection {
    net: MemNet,
    from: NodeId,
    to: NodeId,
}

impl RaftNetworkFactory<TypeConfig> for MemClient {
    type Network = MemConnection;

    async fn new_client(&mut self, target: NodeId, _node: &WireNode) -> MemConnection {
        MemConnection {
            net: self.net.clone(),
            from: self.from,
            to: target,
        }
    }
}

fn unreachable<E: std::error::Error>(to: NodeId) -> RPCError<NodeId, WireNode, E> {
    let why = std::io::Error::other(format!("node {to} is cut off"));
    RPCError::Unreachable(Unreachable::new(&why))
}

impl RaftNetwork<TypeConfig> for MemConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, WireNode, RaftError<NodeId>>> {
        let raft = self
            .net
            .route(self.from, self.to, &Message::Append(&rpc))
            .ok_or_else(|| unreachable(self.to))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, WireNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self
            .net
            .route(self.from, self.to, &Message::Snapshot)
            .ok_or_else(|| unreachable(self.to))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, WireNode, RaftError<NodeId>>> {
        let raft = self
            .net
            .route(self.from, self.to, &Message::Vote)
            .ok_or_else(|| unreachable(self.to))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.to, e)))
    }
}

/// What a node's data dir holds after a crash, written byte for byte as Wire's stores lay
/// it out.
pub(crate) struct CrashImage<'a> {
    /// The log, in index order.
    pub log: &'a [Entry],
    pub vote: Vote<NodeId>,
    /// The committed hint on disk.
    pub committed: Option<LogId>,
    /// How many of the log's entries the state machine had written.
    pub applied: usize,
}

impl CrashImage<'_> {
    /// Writes the image into a new data dir under `root`, named after `id`.
    pub(crate) async fn write(&self, root: &Path, id: NodeId) -> PathBuf {
        let dir = root.join(format!("node{id}"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let db = Arc::new(Database::create(dir.join("wire.redb")).expect("database"));
        {
            let txn = db.begin_write().expect("write");
            {
                let mut log = txn.open_table(tables::RAFT_LOG).expect("log table");
                for entry in self.log {
                    log.insert(
                        entry.log_id.index,
                        encode(entry).expect("encode").as_slice(),
                    )
                    .expect("insert");
                }
                let mut meta = txn.open_table(tables::RAFT_META).expect("meta table");
                meta.insert(
                    raft_meta::VOTE,
                    encode(&self.vote).expect("encode").as_slice(),
                )
                .expect("vote");
                meta.insert(
                    raft_meta::COMMITTED,
                    encode(&self.committed).expect("encode").as_slice(),
                )
                .expect("committed");
            }
            txn.commit().expect("commit");
        }
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let (log, mut state) = open_stores_with(
            db,
            Box::new(move || {
                let _ = closed_tx.send(());
            }),
        )
        .expect("stores");
        state
            .apply(self.log[..self.applied].iter().cloned())
            .await
            .expect("apply");
        drop((log, state));
        tokio::task::spawn_blocking(move || closed.recv_timeout(Duration::from_secs(10)))
            .await
            .expect("join")
            .expect("database closed");
        dir
    }
}

/// A membership entry at index 0 (as `initialize` writes it) for voters `ids`.
pub(crate) fn membership_entry(ids: &[NodeId]) -> Entry {
    let nodes: BTreeMap<NodeId, WireNode> =
        ids.iter().map(|&id| (id, WireNode::default())).collect();
    let membership = openraft::Membership::new(vec![ids.iter().copied().collect()], nodes);
    Entry {
        log_id: LogId::default(),
        payload: openraft::EntryPayload::Membership(membership),
    }
}
