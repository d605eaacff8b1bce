//! Consensus: the Raft instance every node runs, with its log, vote and state machine stored
//! in one redb database per node, and the node-to-node RPC that carries Raft messages.
//!
//! The engine is openraft 0.9 (`storage-v2`); this module supplies its storage
//! ([`LogStore`], [`StateMachineStore`]) and its network ([`network`]).

pub mod command;
pub mod log_store;
pub mod network;
pub mod proposer;
pub mod state_machine;
pub mod tables;
mod writer;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

pub use command::{Command, CommandResponse};
pub use log_store::LogStore;
pub use state_machine::{KvPage, StateMachineStore};

/// Opens the Raft log store and the state machine of a node on its database, sharing one
/// database writer thread.
pub fn open_stores(
    db: std::sync::Arc<redb::Database>,
) -> Result<(LogStore, StateMachineStore), crate::Error> {
    let writer = writer::DbWriter::start(db)?;
    Ok((
        LogStore::open(writer.clone())?,
        StateMachineStore::open(writer)?,
    ))
}

/// The identity of a node in the cluster.
pub type NodeId = u64;

/// What the cluster knows about a member: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireNode {
    /// The public HTTP API address (`--http-addr`).
    pub http_addr: String,
    /// The node-to-node Raft RPC address (`--raft-addr`).
    pub raft_addr: String,
}

impl fmt::Display for WireNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http={} raft={}", self.http_addr, self.raft_addr)
    }
}

openraft::declare_raft_types!(
    /// Wire's Raft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = WireNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft instance of a node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log id of Wire's Raft log.
pub type LogId = openraft::LogId<NodeId>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;
/// A membership as stored with its log id.
pub type StoredMembership = openraft::StoredMembership<NodeId, WireNode>;
/// Raft metrics of a node.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, WireNode>;

/// Encodes a value for storage or the wire (MessagePack, with field names so that records stay
/// readable across versions that add fields).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value)
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}
