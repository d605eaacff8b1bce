//! The replicated state machine, stored in the node's redb database: cluster members, the
//! user key-value space, and the tables later parts of Wire fill (pipelines, assignments,
//! checkpoints). It applies [`Command`]s deterministically and builds and installs snapshots.
//!
//! Durability: an applied batch changes the in-memory overlay ([`super::sm_overlay`]) and is
//! visible to readers at once; the database writer ([`super::writer`]) writes the changes
//! with its next transaction (usually one holding log appends), durable once a transaction
//! holding log entries (or a vote, or a snapshot) is fsynced. After a crash the state machine may be behind its log, and openraft
//! re-applies the committed entries on start. Snapshots commit with fsync, and the log is
//! purged only behind a durable snapshot, so nothing is ever lost.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::replicated::{
    self, Assignments, Checkpoints, Draining, Kv, Members, Moves, Pipelines, Sessions,
    SnapshotBody, Table,
};
use super::sm_overlay::{Found, SmOverlay};
use super::sm_tables::{SnapshotMetaOf, StoredSnapshot, CURRENT};
use super::tables::{self, sm_meta};
use super::writer::{blocking, DbWriter, StoreError, WriteOp};
use super::{
    decode, encode, Command, CommandResponse, LogId, NodeId, StorageError, StoredMembership,
    TypeConfig, WireNode,
};
use crate::kv::TxnOp;
use crate::pipeline::catalog::{self, CatalogState, PartitionMove};
use crate::pipeline::checkpoint::Checkpoint;
use crate::pipeline::PipelineRecord;

type Entry = openraft::Entry<TypeConfig>;

/// A member as recorded in the replicated `members` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node: WireNode,
    /// Whether the member votes (false: a learner).
    pub voter: bool,
}

/// A page of keys and values, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvPage {
    pub items: Vec<(String, Vec<u8>)>,
    /// Whether more keys match after the last one.
    pub more: bool,
}

/// The state machine of a node. Clones share the database; a clone serves reads.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    writer: DbWriter,
    snapshot_seq: Arc<AtomicU64>,
    /// Bumped after applying anything that changes pipelines, assignments or members.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl StateMachineStore {
    /// Opens the state machine, creating its tables (durable when this returns).
    pub(crate) fn open(writer: DbWriter) -> Result<Self, crate::Error> {
        let db = writer.db().clone();
        let create = || -> Result<(), StoreError> {
            let txn = db.begin_write()?;
            txn.open_table(tables::SM_META)?;
            txn.open_table(tables::SNAPSHOT)?;
            replicated::create_all(&txn)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(crate::Error::storage)?;
        Ok(Self {
            db,
            writer,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Reads a user key from the local state (as applied on this node).
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::Error> {
        Ok(self.row::<Kv>(&key.to_string())?.map(ByteBuf::into_vec))
    }

    /// One row of table `T`: the overlay's latest change, else the database's.
    fn row<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>, crate::Error> {
        match self.writer.sm().find::<T>(key) {
            Found::Value(v) => return Ok(Some(v.clone())),
            Found::Removed => return Ok(None),
            Found::Unknown => {}
        }
        // Opened after the overlay was consulted: a change written since is in the database.
        let read = || -> Result<Option<T::Value>, StoreError> {
            replicated::get::<T>(&self.db.begin_read()?, key)
        };
        read().map_err(crate::Error::storage)
    }

    /// Lists up to `limit` user keys starting with `prefix` and sorting after `after`, in key
    /// order, from the local state. Returns the page and whether more keys follow it.
    pub fn kv_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvPage, crate::Error> {
        let start = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let changes: Vec<(String, Option<Vec<u8>>)> = self
            .writer
            .sm()
            .changes_in::<Kv>(start.to_string()..)
            .into_iter()
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k, v.map(ByteBuf::into_vec)))
            .collect();
        let read = || -> Result<KvPage, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(Kv::DEF)?;
            let mut disk = table.range::<&str>(start..)?;
            let mut overlay = changes.into_iter().peekable();
            let mut next_disk = || -> Result<Option<(String, Vec<u8>)>, StoreError> {
                match disk.next() {
                    Some(item) => {
                        let (k, v) = item?;
                        let key = k.value();
                        Ok(key
                            .starts_with(prefix)
                            .then(|| (key.to_string(), v.value().to_vec())))
                    }
                    None => Ok(None),
                }
            };
            let mut from_disk = next_disk()?;
            let mut out = Vec::new();
            let mut more = false;
            loop {
                // The smaller key of the two streams; on equal keys the overlay wins.
                let take_overlay = match (&from_disk, overlay.peek()) {
                    (None, None) => break,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((dk, _)), Some((ok, _))) => ok <= dk,
                };
                let (key, value) = if take_overlay {
                    let Some((k, v)) = overlay.next() else { break };
                    if from_disk.as_ref().is_some_and(|(dk, _)| *dk == k) {
                        from_disk = next_disk()?;
                    }
                    match v {
                        Some(v) => (k, v),
                        None => continue,
                    }
                } else {
                    let Some(item) = from_disk.take() else { break };
                    from_disk = next_disk()?;
                    item
                };
                if after == Some(key.as_str()) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push((key, value));
            }
            Ok(KvPage { items: out, more })
        };
        read().map_err(crate::Error::storage)
    }

    /// A pipeline from the local state.
    pub fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>, crate::Error> {
        match self.row::<Pipelines>(&name.to_string())? {
            Some(v) => decode(&v).map(Some).map_err(crate::Error::storage),
            None => Ok(None),
        }
    }

    /// Reads through the overlay and the database as one state: the overlay's lock is held
    /// while the read transaction opens, so no flush falls between the two.
    fn read_merged<T>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction, &SmOverlay) -> Result<T, StoreError>,
    ) -> Result<T, crate::Error> {
        let sm = self.writer.sm();
        let txn = self
            .db
            .begin_read()
            .map_err(|e| crate::Error::storage(StoreError::from(e)))?;
        read(&txn, &sm).map_err(crate::Error::storage)
    }

    /// Which node runs each partition of `pipeline`, from the local state.
    pub fn assignments(&self, pipeline: &str) -> Result<BTreeMap<u32, NodeId>, crate::Error> {
        self.read_merged(|txn, sm| read_assignments(txn, sm, pipeline))
    }

    /// The checkpoint of each partition of `pipeline`, from the local state.
    pub fn checkpoints(&self, pipeline: &str) -> Result<BTreeMap<u32, Checkpoint>, crate::Error> {
        self.read_merged(|txn, sm| read_checkpoints(txn, sm, pipeline))
    }

    /// The pending and last moves of each partition of `pipeline`, from the local state.
    pub fn moves(&self, pipeline: &str) -> Result<BTreeMap<u32, PartitionMove>, crate::Error> {
        self.read_merged(|txn, sm| read_moves(txn, sm, pipeline))
    }

    /// The members being drained, from the local state.
    pub fn draining(&self) -> Result<std::collections::BTreeSet<NodeId>, crate::Error> {
        self.read_merged(|txn, sm| Ok(all_rows::<Draining>(txn, sm)?.into_keys().collect()))
    }

    /// A receiver that changes whenever pipelines, assignments or members may have changed.
    pub fn pipeline_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn note_pipeline_change(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    /// Every pipeline from the local state, by name.
    pub fn pipelines(&self) -> Result<Vec<PipelineRecord>, crate::Error> {
        self.read_merged(|txn, sm| {
            all_rows::<Pipelines>(txn, sm)?
                .values()
                .map(|v| decode::<PipelineRecord>(v).map_err(StoreError::from))
                .collect()
        })
    }

    /// The members as recorded by the last applied membership entry.
    pub fn members(&self) -> Result<Vec<(NodeId, MemberRecord)>, crate::Error> {
        self.read_merged(|txn, sm| {
            all_rows::<Members>(txn, sm)?
                .into_iter()
                .map(|(id, v)| Ok((id, decode(&v)?)))
                .collect()
        })
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let (applied, membership) = {
            let sm = self.writer.sm();
            (sm.last_applied(), sm.membership().cloned())
        };
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(tables::SM_META)?;
        let applied = match (applied, meta.get(sm_meta::LAST_APPLIED)?) {
            (Some(a), _) => a,
            (None, Some(v)) => decode(v.value())?,
            (None, None) => None,
        };
        let membership = match (membership, meta.get(sm_meta::MEMBERSHIP)?) {
            (Some(m), _) => m,
            (None, Some(v)) => decode(v.value())?,
            (None, None) => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Serializes every replicated table from one consistent read and stores the result as the
    /// current snapshot, fsynced: when this returns the snapshot (and all state it covers)
    /// is on disk, so the log behind it may be purged.
    fn build_snapshot_blocking(&self) -> Result<StoredSnapshot, StoreError> {
        let (last_applied, membership, body) = {
            let txn = self.db.begin_read()?;
            let meta = txn.open_table(tables::SM_META)?;
            let last_applied: Option<LogId> = match meta.get(sm_meta::LAST_APPLIED)? {
                Some(v) => decode(v.value())?,
                None => None,
            };
            let membership: StoredMembership = match meta.get(sm_meta::MEMBERSHIP)? {
                Some(v) => decode(v.value())?,
                None => StoredMembership::default(),
            };
            let body = SnapshotBody::read(&txn)?;
            (last_applied, membership, body)
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match &last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, seq),
            None => format!("none-{seq}"),
        };
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: last_applied,
                last_membership: membership,
                snapshot_id,
            },
            data: encode(&body)?,
        };
        self.store_snapshot(&stored)?;
        Ok(stored)
    }

    fn store_snapshot(&self, stored: &StoredSnapshot) -> Result<(), StoreError> {
        let bytes = encode(stored)?;
        let txn = self.db.begin_write()?;
        txn.open_table(tables::SNAPSHOT)?
            .insert(CURRENT, bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    fn current_snapshot_blocking(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::SNAPSHOT)?;
        match table.get(CURRENT)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }
}

/// The state an applied batch reads and changes: the overlay first, then the database.
struct ApplyView<'a> {
    changes: &'a mut SmOverlay,
    read: &'a redb::ReadTransaction,
}

impl ApplyView<'_> {
    /// One row of table `T`: the overlay's latest change, else the database's.
    fn row<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>, StoreError> {
        match self.changes.find::<T>(key) {
            Found::Value(v) => Ok(Some(v.clone())),
            Found::Removed => Ok(None),
            Found::Unknown => replicated::get::<T>(self.read, key),
        }
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.row::<Kv>(&key.to_string())?.map(ByteBuf::into_vec))
    }

    fn kv_exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.row::<Kv>(&key.to_string())?.is_some())
    }

    fn kv_set(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.changes
            .set::<Kv>(key.to_string(), value.map(ByteBuf::from));
    }

    /// Records the members of membership `m`, removing those it no longer has.
    fn set_members(
        &mut self,
        m: &openraft::Membership<NodeId, WireNode>,
    ) -> Result<(), StoreError> {
        let now = member_records(m)?;
        for id in all_rows::<Members>(self.read, self.changes)?.into_keys() {
            if !now.iter().any(|(n, _)| *n == id) {
                self.changes.set::<Members>(id, None);
            }
        }
        for (id, record) in now {
            self.changes.set::<Members>(id, Some(ByteBuf::from(record)));
        }
        Ok(())
    }
}

/// The catalog's rules read and change the overlay over the database.
impl CatalogState for ApplyView<'_> {
    type Error = StoreError;

    fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>, StoreError> {
        match self.row::<Pipelines>(&name.to_string())? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    fn assignments(&self, pipeline: &str) -> Result<BTreeMap<u32, NodeId>, StoreError> {
        read_assignments(self.read, self.changes, pipeline)
    }

    fn checkpoints(&self, pipeline: &str) -> Result<BTreeMap<u32, Checkpoint>, StoreError> {
        read_checkpoints(self.read, self.changes, pipeline)
    }

    fn set_pipeline(&mut self, record: &PipelineRecord) -> Result<(), StoreError> {
        self.changes.set::<Pipelines>(
            record.spec.name.clone(),
            Some(ByteBuf::from(encode(record)?)),
        );
        Ok(())
    }

    fn remove_pipeline(&mut self, name: &str) {
        self.changes.set::<Pipelines>(name.to_string(), None);
    }

    fn set_assignment(&mut self, name: &str, partition: u32, node: Option<NodeId>) {
        self.changes
            .set::<Assignments>((name.to_string(), partition), node);
    }

    fn moves(&self, name: &str) -> Result<BTreeMap<u32, PartitionMove>, StoreError> {
        read_moves(self.read, self.changes, name)
    }

    fn set_move(
        &mut self,
        name: &str,
        partition: u32,
        m: Option<&PartitionMove>,
    ) -> Result<(), StoreError> {
        let bytes = m.map(encode).transpose()?.map(ByteBuf::from);
        self.changes
            .set::<Moves>((name.to_string(), partition), bytes);
        Ok(())
    }

    fn set_checkpoint(
        &mut self,
        name: &str,
        partition: u32,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let bytes = checkpoint.map(encode).transpose()?.map(ByteBuf::from);
        self.changes
            .set::<Checkpoints>((name.to_string(), partition), bytes);
        Ok(())
    }

    fn sessions(&self, name: &str) -> Result<BTreeMap<u32, u64>, StoreError> {
        partition_rows::<Sessions>(self.read, self.changes, name)
    }

    fn set_session(&mut self, name: &str, partition: u32, session: Option<u64>) {
        self.changes
            .set::<Sessions>((name.to_string(), partition), session);
    }
}

/// Applies a batch of committed entries to the overlay, recording the last applied id and
/// membership with them. The caller holds the overlay's lock and opened `read` after taking
/// it, so the two together are one consistent state.
fn apply_entries(
    changes: &mut SmOverlay,
    read: &redb::ReadTransaction,
    entries: Vec<Entry>,
) -> Result<Vec<CommandResponse>, StoreError> {
    let mut view = ApplyView { changes, read };
    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        let response = match entry.payload {
            EntryPayload::Blank => CommandResponse::None,
            EntryPayload::Normal(command) => {
                apply_command(&mut view, &command, entry.log_id.index)?
            }
            EntryPayload::Membership(m) => {
                view.set_members(&m)?;
                view.changes.pending.membership =
                    Some(StoredMembership::new(Some(entry.log_id), m));
                CommandResponse::None
            }
        };
        view.changes.pending.last_applied = Some(Some(entry.log_id));
        responses.push(response);
    }
    Ok(responses)
}

/// Applies one command; `index` is its log index.
fn apply_command(
    view: &mut ApplyView<'_>,
    command: &Command,
    index: u64,
) -> Result<CommandResponse, StoreError> {
    Ok(match command {
        Command::KvPut { key, value } => {
            let existed = view.kv_exists(key)?;
            view.kv_set(key, Some(value.clone()));
            CommandResponse::KvPut { existed }
        }
        Command::KvDelete { key } => {
            let existed = view.kv_exists(key)?;
            view.kv_set(key, None);
            CommandResponse::KvDelete { existed }
        }
        Command::KvTxn(t) => {
            let mut succeeded = true;
            for c in &t.compare {
                let current = view.kv_get(c.key())?;
                if !c.holds(current.as_deref()) {
                    succeeded = false;
                    break;
                }
            }
            let ops = if succeeded { &t.success } else { &t.failure };
            for op in ops {
                match op {
                    TxnOp::Put { key, value } => view.kv_set(key, Some(value.clone())),
                    TxnOp::Delete { key } => view.kv_set(key, None),
                }
            }
            CommandResponse::KvTxn { succeeded }
        }
        Command::Batch(commands) => {
            let mut responses = Vec::with_capacity(commands.len());
            for c in commands {
                responses.push(apply_command(view, c, index)?);
            }
            CommandResponse::Batch(responses)
        }
        Command::PipelineCreate { spec } => catalog::create(view, spec, index)?,
        Command::PipelineUpdate { spec, upsert } => catalog::update(view, spec, *upsert, index)?,
        Command::PipelineSetState { name, desired } => {
            catalog::set_state(view, name, *desired, index)?
        }
        Command::PipelineDelete { name } => catalog::delete(view, name)?,
        Command::PipelineAssign {
            name,
            version,
            assignments,
            moves,
        } => catalog::assign(view, name, *version, assignments, moves)?,
        Command::PipelineHandOff {
            name,
            node,
            partitions,
        } => catalog::hand_off(view, name, *node, partitions)?,
        Command::SetDraining { node, draining } => {
            let was = view.row::<Draining>(node)?.is_some();
            let value = draining.then(|| ByteBuf::from(Vec::new()));
            view.changes.set::<Draining>(*node, value);
            CommandResponse::Draining {
                changed: was != *draining,
            }
        }
        Command::Checkpoint {
            name,
            session,
            checkpoints,
        } => catalog::checkpoint(view, name, *session, checkpoints)?,
        Command::PipelineSession {
            name,
            session,
            version,
            owners,
        } => catalog::open_session(view, name, *session, *version, owners)?,
    })
}

/// Every row of table `T`: the database's, under the overlay's changes.
fn all_rows<T: Table>(
    read: &redb::ReadTransaction,
    overlay: &SmOverlay,
) -> Result<BTreeMap<T::Key, T::Value>, StoreError> {
    let rows = replicated::scan::<T>(read, ..)?;
    Ok(replicated::merged::<T>(rows, overlay.changes_in::<T>(..)))
}

/// A pipeline's rows of a table keyed by (pipeline, partition): the database's, under the
/// overlay's changes.
fn partition_rows<T: Table<Key = (String, u32), K = (&'static str, u32)>>(
    read: &redb::ReadTransaction,
    overlay: &SmOverlay,
    pipeline: &str,
) -> Result<BTreeMap<u32, T::Value>, StoreError> {
    let rows = replicated::scan::<T>(read, (pipeline, 0u32)..=(pipeline, u32::MAX))?;
    let owned = (pipeline.to_string(), 0u32)..=(pipeline.to_string(), u32::MAX);
    let changes = overlay.changes_in::<T>(owned);
    Ok(replicated::merged::<T>(rows, changes)
        .into_iter()
        .map(|((_, part), v)| (part, v))
        .collect())
}

fn read_assignments(
    read: &redb::ReadTransaction,
    overlay: &SmOverlay,
    pipeline: &str,
) -> Result<BTreeMap<u32, NodeId>, StoreError> {
    partition_rows::<Assignments>(read, overlay, pipeline)
}

fn read_moves(
    read: &redb::ReadTransaction,
    overlay: &SmOverlay,
    pipeline: &str,
) -> Result<BTreeMap<u32, PartitionMove>, StoreError> {
    partition_rows::<Moves>(read, overlay, pipeline)?
        .into_iter()
        .map(|(part, bytes)| Ok((part, decode(&bytes)?)))
        .collect()
}

fn read_checkpoints(
    read: &redb::ReadTransaction,
    overlay: &SmOverlay,
    pipeline: &str,
) -> Result<BTreeMap<u32, Checkpoint>, StoreError> {
    partition_rows::<Checkpoints>(read, overlay, pipeline)?
        .into_iter()
        .map(|(part, bytes)| Ok((part, decode(&bytes)?)))
        .collect()
}

/// The members table's rows for a membership.
fn member_records(
    m: &openraft::Membership<NodeId, WireNode>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let voters: std::collections::BTreeSet<NodeId> = m.voter_ids().collect();
    m.nodes()
        .map(|(id, node)| {
            let record = MemberRecord {
                node: node.clone(),
                voter: voters.contains(id),
            };
            Ok((*id, encode(&record)?))
        })
        .collect()
}

fn to_snapshot(stored: StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: stored.meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Write every applied change first: the snapshot is read from the database.
        self.writer
            .call(|done| WriteOp::Flush { done })
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        let this = self.clone();
        let stored = blocking(move || this.build_snapshot_blocking())
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        tracing::info!(snapshot = %stored.meta.snapshot_id, bytes = stored.data.len(), "built snapshot");
        Ok(to_snapshot(stored))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let this = self.clone();
        blocking(move || this.read_applied())
            .await
            .map_err(|e| e.into_storage(ErrorSubject::StateMachine, ErrorVerb::Read))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let touches = entries.iter().any(|e| match &e.payload {
            EntryPayload::Normal(c) => c.touches_pipelines(),
            EntryPayload::Membership(_) => true,
            EntryPayload::Blank => false,
        });
        // Inline: the batch touches memory and redb's page cache for microseconds; a thread
        // hand-off per batch would cost more than the work.
        let apply = || -> Result<Vec<CommandResponse>, StoreError> {
            let mut sm = self.writer.sm();
            let read = self.db.begin_read()?;
            apply_entries(&mut sm, &read, entries)
        };
        let responses =
            apply().map_err(|e| e.into_storage(ErrorSubject::StateMachine, ErrorVerb::Write))?;
        if touches {
            self.note_pipeline_change();
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let meta_owned = meta.clone();
        let data = snapshot.into_inner();
        self.writer
            .call(|done| WriteOp::Install {
                meta: meta_owned,
                data,
                done,
            })
            .await
            .map_err(|e| {
                e.into_storage(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                )
            })?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
        self.note_pipeline_change();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let this = self.clone();
        let stored = blocking(move || this.current_snapshot_blocking())
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        Ok(stored.map(to_snapshot))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry};

    use super::*;

    fn entry(index: u64, command: Command) -> Entry<TypeConfig> {
        Entry {
            log_id: openraft::LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(command),
        }
    }

    fn put(key: &str, value: &str) -> Command {
        Command::KvPut {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn keys(page: &KvPage) -> Vec<(&str, &str)> {
        page.items
            .iter()
            .map(|(k, v)| (k.as_str(), std::str::from_utf8(v).unwrap_or("?")))
            .collect()
    }

    /// A checkpoint proposed again after its answer was lost is saved (once); another
    /// checkpoint of the same epoch is refused.
    #[tokio::test]
    async fn a_replayed_checkpoint_is_saved_once_and_a_rival_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("wire.redb")).unwrap());
        let (_log, mut sm) = super::super::open_stores(db).unwrap();
        let spec = crate::pipeline::PipelineSpec::parse(
            r#"{"name": "p", "sources": [{"type": "generator", "config": {}}],
                "sinks": [{"type": "stdout", "inputs": ["source0"]}]}"#,
        )
        .unwrap();
        let checkpoint = |taken_at_ms| Checkpoint {
            epoch: 1,
            version: 1,
            node: 1,
            positions: Default::default(),
            taken_at_ms,
            tenures: Vec::new(),
            state: None,
        };
        let save = |c: Checkpoint| Command::Checkpoint {
            name: "p".into(),
            session: 5,
            checkpoints: vec![(0, c)],
        };
        let responses = sm
            .apply(vec![
                entry(1, Command::PipelineCreate { spec }),
                entry(
                    2,
                    Command::PipelineAssign {
                        name: "p".into(),
                        version: 1,
                        assignments: vec![(0, 1)],
                        moves: Vec::new(),
                    },
                ),
                entry(
                    3,
                    Command::PipelineSession {
                        name: "p".into(),
                        session: 5,
                        version: 1,
                        owners: vec![(0, 1)],
                    },
                ),
                entry(4, save(checkpoint(10))),
                entry(5, save(checkpoint(10))),
                entry(6, save(checkpoint(11))),
            ])
            .await
            .unwrap();
        assert_eq!(
            responses[2],
            CommandResponse::SessionOpened {
                checkpoints: Vec::new()
            }
        );
        assert_eq!(responses[3], CommandResponse::CheckpointSaved);
        assert_eq!(responses[4], CommandResponse::CheckpointSaved, "a replay");
        assert!(
            matches!(&responses[5], CommandResponse::Refused { reason } if reason.contains("epoch")),
            "{:?}",
            responses[5]
        );
        let stored = &sm.checkpoints("p").unwrap()[&0];
        assert_eq!(stored.as_proposed(), checkpoint(10));
        assert_eq!(
            stored.tenures,
            [(1, 1, 1)],
            "the catalog keeps who committed which epochs"
        );
    }

    /// Reads see one state whether a change is still in memory or already in the database.
    #[tokio::test]
    async fn reads_merge_unwritten_changes_with_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("wire.redb")).unwrap());
        let (_log, mut sm) = super::super::open_stores(db).unwrap();

        // a, c, e written to the database; then b added, c deleted, e changed in memory.
        sm.apply(vec![
            entry(1, put("k/a", "1")),
            entry(2, put("k/c", "1")),
            entry(3, put("k/e", "1")),
        ])
        .await
        .unwrap();
        sm.writer
            .call(|done| WriteOp::Flush { done })
            .await
            .unwrap();
        let responses = sm
            .apply(vec![
                entry(4, put("k/b", "2")),
                entry(5, Command::KvDelete { key: "k/c".into() }),
                entry(6, put("k/e", "2")),
                entry(7, put("other", "x")),
            ])
            .await
            .unwrap();
        assert_eq!(
            responses,
            [
                CommandResponse::KvPut { existed: false },
                CommandResponse::KvDelete { existed: true },
                CommandResponse::KvPut { existed: true },
                CommandResponse::KvPut { existed: false },
            ]
        );
        let check = |sm: &StateMachineStore| {
            let all = sm.kv_list("k/", None, 10).unwrap();
            assert_eq!(keys(&all), [("k/a", "1"), ("k/b", "2"), ("k/e", "2")]);
            assert!(!all.more);
            let first = sm.kv_list("k/", None, 2).unwrap();
            assert_eq!(keys(&first), [("k/a", "1"), ("k/b", "2")]);
            assert!(first.more);
            let rest = sm.kv_list("k/", Some("k/b"), 2).unwrap();
            assert_eq!(keys(&rest), [("k/e", "2")]);
            assert_eq!(sm.kv_get("k/c").unwrap(), None);
            assert_eq!(sm.kv_get("k/e").unwrap().as_deref(), Some(&b"2"[..]));
        };
        check(&sm);
        assert_eq!(
            sm.writer.sm().last_applied().flatten().map(|l| l.index),
            Some(7)
        );

        // Once written, the database alone gives the same answers.
        sm.writer
            .call(|done| WriteOp::Flush { done })
            .await
            .unwrap();
        assert!(sm.writer.sm().pending.is_empty() && sm.writer.sm().flushing.is_empty());
        check(&sm);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(7));
    }
}
