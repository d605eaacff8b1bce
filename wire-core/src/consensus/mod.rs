//! Consensus: the Raft instance every node runs, with its log, vote and state machine stored
//! in one redb database per node, and the node-to-node RPC that carries Raft messages.
//!
//! The engine is openraft 0.9 (`storage-v2`); this module supplies its storage
//! ([`LogStore`], [`StateMachineStore`]) and its network ([`network`]).

pub mod client;
pub mod command;
pub mod election;
pub mod elector;
pub mod liveness;
pub mod log_store;
#[cfg(test)]
pub(crate) mod mem_cluster;
pub mod network;
pub mod proposer;
mod replicated;
#[cfg(test)]
mod restart_tests;
mod sm_overlay;
mod sm_tables;
pub mod state_machine;
mod store_error;
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
    open_stores_with(db, Box::new(|| {}))
}

/// [`open_stores`], calling `closed` once the stores are gone and the database is closed.
pub fn open_stores_with(
    db: std::sync::Arc<redb::Database>,
    closed: Box<dyn FnOnce() + Send>,
) -> Result<(LogStore, StateMachineStore), crate::Error> {
    let writer = writer::DbWriter::start(db, closed)?;
    Ok((
        LogStore::open(writer.clone())?,
        StateMachineStore::open(writer)?,
    ))
}

/// The version of what nodes say to each other: Raft's messages, the commands in the log and
/// the node-level calls. Bump it when any of them changes in a way a node of the previous
/// version would misread: nodes refuse messages and joins from another version with an error
/// that names both, instead of misreading them during a rolling upgrade.
pub const PROTOCOL_VERSION: u32 = 3;

/// The header that carries [`PROTOCOL_VERSION`] on every node-to-node call.
pub const PROTOCOL_HEADER: &str = "wire-protocol";

/// Why a node-to-node call from a peer of another protocol version is refused (`None`: same
/// version). A call without the header comes from a Wire older than versioning.
pub fn protocol_mismatch(header: Option<&str>) -> Option<String> {
    let theirs = header.and_then(|h| h.trim().parse::<u32>().ok());
    (theirs != Some(PROTOCOL_VERSION)).then(|| {
        format!(
            "this node speaks Wire protocol {PROTOCOL_VERSION}, the caller {}: every node of a cluster must speak the same one (upgrade or roll back the odd node)",
            theirs.map_or_else(|| "none (an older or foreign client)".to_string(), |v| v.to_string())
        )
    })
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

#[cfg(test)]
mod tests {
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

    use super::*;
    use crate::cluster::JoinRequest;

    /// A small deterministic generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn try_all(bytes: &[u8]) {
        let _ = decode::<AppendEntriesRequest<TypeConfig>>(bytes);
        let _ = decode::<VoteRequest<NodeId>>(bytes);
        let _ = decode::<InstallSnapshotRequest<TypeConfig>>(bytes);
        let _ = decode::<Command>(bytes);
        let _ = decode::<JoinRequest>(bytes);
    }

    /// Node-to-node messages come off the network: random and corrupted input must decode to
    /// an error, never panic or allocate without bound.
    #[test]
    fn decoding_garbage_never_panics() {
        let valid = encode(&Command::Batch(vec![
            Command::KvPut {
                key: "k".into(),
                value: vec![1, 2, 3],
            },
            Command::KvDelete { key: "d".into() },
        ]))
        .expect("encode");
        assert_eq!(
            decode::<Command>(&valid).expect("round trip"),
            Command::Batch(vec![
                Command::KvPut {
                    key: "k".into(),
                    value: vec![1, 2, 3]
                },
                Command::KvDelete { key: "d".into() },
            ])
        );
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = (rng.next() % 64) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..(1 + rng.next() % 4) {
                    let at = (rng.next() as usize) % b.len();
                    b[at] = rng.next() as u8;
                }
                b.truncate((rng.next() as usize) % (b.len() + 1));
                b
            };
            try_all(&bytes);
        }
        // Length prefixes that promise far more than the input holds.
        try_all(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        try_all(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00]);
        try_all(&[0xdf, 0xff, 0xff, 0xff, 0xff]);
    }
}
