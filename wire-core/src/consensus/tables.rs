//! Every redb table of a node's database, defined once. One database file per node
//! (`<data-dir>/wire.redb`) holds the Raft log and vote and the replicated state machine.

use redb::TableDefinition;

/// The Raft log: log index -> encoded `openraft::Entry`.
pub const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft log metadata: `vote`, `committed`, `last_purged` -> encoded value.
pub const RAFT_META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

/// State machine metadata: `last_applied`, `membership` -> encoded value.
pub const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// The latest snapshot: `current` -> encoded `StoredSnapshot`.
pub const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

// The replicated tables (members, kv, pipelines, assignments, checkpoints) are defined in
// `replicated.rs`, with everything that handles them all at once.

/// Keys of [`RAFT_META`].
pub mod raft_meta {
    pub const VOTE: &str = "vote";
    pub const COMMITTED: &str = "committed";
    pub const LAST_PURGED: &str = "last_purged";
}

/// Keys of [`SM_META`].
pub mod sm_meta {
    pub const LAST_APPLIED: &str = "last_applied";
    pub const MEMBERSHIP: &str = "membership";
}
