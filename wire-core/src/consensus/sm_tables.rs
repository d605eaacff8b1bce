//! Writing a set of state-machine changes and installing a snapshot, both inside the
//! database writer's transaction, and the form the current snapshot is kept in.

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};

use super::replicated::SnapshotBody;
use super::sm_overlay::SmChanges;
use super::store_error::StoreError;
use super::tables::{self, sm_meta};
use super::{decode, encode, NodeId, WireNode};

pub(crate) type SnapshotMetaOf = openraft::SnapshotMeta<NodeId, WireNode>;

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
    changes.tables.write(txn)?;
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
    body.install(txn)?;
    let mut m = txn.open_table(tables::SM_META)?;
    m.insert(sm_meta::LAST_APPLIED, encode(&meta.last_log_id)?.as_slice())?;
    m.insert(
        sm_meta::MEMBERSHIP,
        encode(&meta.last_membership)?.as_slice(),
    )?;
    txn.open_table(tables::SNAPSHOT)?
        .insert(CURRENT, stored.as_slice())?;
    Ok(())
}
