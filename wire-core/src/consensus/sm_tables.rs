//! How the replicated state lies in redb: writing a set of state-machine changes, and
//! installing a snapshot, both inside the database writer's transaction; the snapshot's body
//! and the form it is kept in.

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::sm_overlay::SmChanges;
use super::store_error::StoreError;
use super::tables::{self, sm_meta};
use super::{decode, encode, NodeId, WireNode};

pub(crate) type SnapshotMetaOf = openraft::SnapshotMeta<NodeId, WireNode>;

/// The contents of a snapshot: every replicated table.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SnapshotBody {
    pub(crate) members: Vec<(u64, ByteBuf)>,
    pub(crate) kv: Vec<(String, ByteBuf)>,
    pub(crate) pipelines: Vec<(String, ByteBuf)>,
    pub(crate) assignments: Vec<((String, u32), u64)>,
    pub(crate) checkpoints: Vec<((String, u32), ByteBuf)>,
}

/// The latest snapshot as kept in [`tables::SNAPSHOT`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMetaOf,
    #[serde(with = "serde_bytes")]
    pub(crate) data: Vec<u8>,
}

pub(crate) const CURRENT: &str = "current";

/// Writes a set of state-machine changes into the database writer's transaction.
pub(crate) fn write_changes(txn: &WriteTransaction, changes: &SmChanges) -> Result<(), StoreError> {
    if !changes.kv.is_empty() {
        let mut kv = txn.open_table(tables::KV)?;
        for (k, v) in &changes.kv {
            match v {
                Some(v) => kv.insert(k.as_str(), v.as_slice())?,
                None => kv.remove(k.as_str())?,
            };
        }
    }
    if !changes.pipelines.is_empty() {
        let mut table = txn.open_table(tables::PIPELINES)?;
        for (k, v) in &changes.pipelines {
            match v {
                Some(v) => table.insert(k.as_str(), v.as_slice())?,
                None => table.remove(k.as_str())?,
            };
        }
    }
    if !changes.assignments.is_empty() {
        let mut table = txn.open_table(tables::ASSIGNMENTS)?;
        for ((name, part), v) in &changes.assignments {
            match v {
                Some(node) => table.insert((name.as_str(), *part), *node)?,
                None => table.remove((name.as_str(), *part))?,
            };
        }
    }
    if !changes.checkpoints.is_empty() {
        let mut table = txn.open_table(tables::CHECKPOINTS)?;
        for ((name, part), v) in &changes.checkpoints {
            match v {
                Some(bytes) => table.insert((name.as_str(), *part), bytes.as_slice())?,
                None => table.remove((name.as_str(), *part))?,
            };
        }
    }
    if let Some(members) = &changes.members {
        let mut table = txn.open_table(tables::MEMBERS)?;
        table.retain(|_, _| false)?;
        for (id, record) in members {
            table.insert(*id, record.as_slice())?;
        }
    }
    if changes.last_applied.is_some() || changes.membership.is_some() {
        let mut meta = txn.open_table(tables::SM_META)?;
        if let Some(applied) = &changes.last_applied {
            meta.insert(sm_meta::LAST_APPLIED, encode(applied)?.as_slice())?;
        }
        if let Some(m) = &changes.membership {
            meta.insert(sm_meta::MEMBERSHIP, encode(m)?.as_slice())?;
        }
    }
    Ok(())
}

/// Replaces every replicated table with the snapshot's contents and keeps the snapshot as the
/// current one, inside the database writer's transaction (committed with fsync).
pub(crate) fn install_tables(
    txn: &WriteTransaction,
    meta: SnapshotMetaOf,
    data: Vec<u8>,
) -> Result<(), StoreError> {
    let body: SnapshotBody = decode(&data)?;
    let stored = encode(&StoredSnapshot {
        meta: meta.clone(),
        data,
    })?;
    txn.delete_table(tables::MEMBERS)?;
    txn.delete_table(tables::KV)?;
    txn.delete_table(tables::PIPELINES)?;
    txn.delete_table(tables::ASSIGNMENTS)?;
    txn.delete_table(tables::CHECKPOINTS)?;
    {
        let mut t = txn.open_table(tables::MEMBERS)?;
        for (k, v) in &body.members {
            t.insert(*k, v.as_slice())?;
        }
        let mut t = txn.open_table(tables::KV)?;
        for (k, v) in &body.kv {
            t.insert(k.as_str(), v.as_slice())?;
        }
        let mut t = txn.open_table(tables::PIPELINES)?;
        for (k, v) in &body.pipelines {
            t.insert(k.as_str(), v.as_slice())?;
        }
        let mut t = txn.open_table(tables::ASSIGNMENTS)?;
        for ((name, part), v) in &body.assignments {
            t.insert((name.as_str(), *part), *v)?;
        }
        let mut t = txn.open_table(tables::CHECKPOINTS)?;
        for ((name, part), v) in &body.checkpoints {
            t.insert((name.as_str(), *part), v.as_slice())?;
        }
        let mut m = txn.open_table(tables::SM_META)?;
        m.insert(sm_meta::LAST_APPLIED, encode(&meta.last_log_id)?.as_slice())?;
        m.insert(
            sm_meta::MEMBERSHIP,
            encode(&meta.last_membership)?.as_slice(),
        )?;
        txn.open_table(tables::SNAPSHOT)?
            .insert(CURRENT, stored.as_slice())?;
    }
    Ok(())
}
