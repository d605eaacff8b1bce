//! The replicated state machine, stored in the node's redb database: cluster members, the
//! user key-value space, and the tables later parts of Wire fill (pipelines, assignments,
//! checkpoints). It applies [`Command`]s deterministically and builds and installs snapshots.
//!
//! Durability: applied batches are written by the database writer ([`super::writer`]) in the
//! same transaction as concurrent log appends; they are visible to readers when the
//! transaction commits, and durable once a transaction holding log entries (or a vote, or a
//! snapshot) is fsynced. After a crash the state machine may be behind its log, and openraft
//! re-applies the committed entries on start. Snapshots commit with fsync, and the log is
//! purged only behind a durable snapshot, so nothing is ever lost.

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
};
use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::tables::{self, sm_meta};
use super::writer::{blocking, DbWriter, StoreError, WriteOp};
use super::{
    decode, encode, Command, CommandResponse, LogId, NodeId, StorageError, StoredMembership,
    TypeConfig, WireNode,
};
use crate::kv::TxnOp;
use crate::pipeline::{DesiredState, PipelineRecord};

type Entry = openraft::Entry<TypeConfig>;
type SnapshotMetaOf = SnapshotMeta<NodeId, WireNode>;

/// A member as recorded in the replicated `members` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub node: WireNode,
    /// Whether the member votes (false: a learner).
    pub voter: bool,
}

/// The contents of a snapshot: every replicated table.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SnapshotBody {
    members: Vec<(u64, ByteBuf)>,
    kv: Vec<(String, ByteBuf)>,
    pipelines: Vec<(String, ByteBuf)>,
    assignments: Vec<((String, u32), u64)>,
    checkpoints: Vec<((String, u32), ByteBuf)>,
}

/// The latest snapshot as kept in [`tables::SNAPSHOT`].
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMetaOf,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

const CURRENT: &str = "current";

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
}

impl StateMachineStore {
    /// Opens the state machine, creating its tables (durable when this returns).
    pub(crate) fn open(writer: DbWriter) -> Result<Self, crate::Error> {
        let db = writer.db().clone();
        let create = || -> Result<(), StoreError> {
            let txn = db.begin_write()?;
            txn.open_table(tables::SM_META)?;
            txn.open_table(tables::SNAPSHOT)?;
            txn.open_table(tables::MEMBERS)?;
            txn.open_table(tables::KV)?;
            txn.open_table(tables::PIPELINES)?;
            txn.open_table(tables::ASSIGNMENTS)?;
            txn.open_table(tables::CHECKPOINTS)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(crate::Error::storage)?;
        Ok(Self {
            db,
            writer,
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Reads a user key from the local state (as applied on this node).
    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::Error> {
        let read = || -> Result<Option<Vec<u8>>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(tables::KV)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
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
        let read = || -> Result<KvPage, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(tables::KV)?;
            let start = match after {
                Some(a) if a >= prefix => a,
                _ => prefix,
            };
            let mut out = Vec::new();
            let mut more = false;
            for item in table.range::<&str>(start..)? {
                let (k, v) = item?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    break;
                }
                if after == Some(key) {
                    continue;
                }
                if out.len() == limit {
                    more = true;
                    break;
                }
                out.push((key.to_string(), v.value().to_vec()));
            }
            Ok(KvPage { items: out, more })
        };
        read().map_err(crate::Error::storage)
    }

    /// A pipeline from the local state.
    pub fn pipeline(&self, name: &str) -> Result<Option<PipelineRecord>, crate::Error> {
        let read = || -> Result<Option<PipelineRecord>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(tables::PIPELINES)?;
            match table.get(name)? {
                Some(v) => Ok(Some(decode(v.value())?)),
                None => Ok(None),
            }
        };
        read().map_err(crate::Error::storage)
    }

    /// Every pipeline from the local state, by name.
    pub fn pipelines(&self) -> Result<Vec<PipelineRecord>, crate::Error> {
        let read = || -> Result<Vec<PipelineRecord>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(tables::PIPELINES)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (_, v) = item?;
                out.push(decode(v.value())?);
            }
            Ok(out)
        };
        read().map_err(crate::Error::storage)
    }

    /// The members as recorded by the last applied membership entry.
    pub fn members(&self) -> Result<Vec<(NodeId, MemberRecord)>, crate::Error> {
        let read = || -> Result<Vec<(NodeId, MemberRecord)>, StoreError> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(tables::MEMBERS)?;
            let mut out = Vec::new();
            for item in table.iter()? {
                let (k, v) = item?;
                out.push((k.value(), decode(v.value())?));
            }
            Ok(out)
        };
        read().map_err(crate::Error::storage)
    }

    fn read_applied(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(tables::SM_META)?;
        let applied = match meta.get(sm_meta::LAST_APPLIED)? {
            Some(v) => decode(v.value())?,
            None => None,
        };
        let membership = match meta.get(sm_meta::MEMBERSHIP)? {
            Some(v) => decode(v.value())?,
            None => StoredMembership::default(),
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
            let mut body = SnapshotBody::default();
            for item in txn.open_table(tables::MEMBERS)?.iter()? {
                let (k, v) = item?;
                body.members.push((k.value(), ByteBuf::from(v.value())));
            }
            for item in txn.open_table(tables::KV)?.iter()? {
                let (k, v) = item?;
                body.kv
                    .push((k.value().to_string(), ByteBuf::from(v.value())));
            }
            for item in txn.open_table(tables::PIPELINES)?.iter()? {
                let (k, v) = item?;
                body.pipelines
                    .push((k.value().to_string(), ByteBuf::from(v.value())));
            }
            for item in txn.open_table(tables::ASSIGNMENTS)?.iter()? {
                let (k, v) = item?;
                let (name, part) = k.value();
                body.assignments.push(((name.to_string(), part), v.value()));
            }
            for item in txn.open_table(tables::CHECKPOINTS)?.iter()? {
                let (k, v) = item?;
                let (name, part) = k.value();
                body.checkpoints
                    .push(((name.to_string(), part), ByteBuf::from(v.value())));
            }
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

    /// Replaces every replicated table with the snapshot's contents and keeps the snapshot as
    /// the current one, in one fsynced transaction.
    fn install_blocking(&self, meta: SnapshotMetaOf, data: Vec<u8>) -> Result<(), StoreError> {
        let body: SnapshotBody = decode(&data)?;
        let stored = encode(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })?;
        let txn = self.db.begin_write()?;
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

/// Applies a batch of committed entries inside the database writer's transaction, recording
/// the last applied id and membership with them.
pub(crate) fn apply_entries(
    txn: &WriteTransaction,
    entries: Vec<Entry>,
) -> Result<Vec<CommandResponse>, StoreError> {
    let mut responses = Vec::with_capacity(entries.len());
    let mut last_applied = None;
    let mut membership = None;
    // Tables are opened once per batch: opening and closing a table per command costs more
    // than the command.
    let mut open = OpenTables {
        txn,
        kv: None,
        pipelines: None,
    };
    for entry in entries {
        last_applied = Some(entry.log_id);
        let response = match entry.payload {
            EntryPayload::Blank => CommandResponse::None,
            EntryPayload::Normal(command) => {
                apply_command(&mut open, &command, entry.log_id.index)?
            }
            EntryPayload::Membership(m) => {
                write_members(txn, &m)?;
                membership = Some(StoredMembership::new(Some(entry.log_id), m));
                CommandResponse::None
            }
        };
        responses.push(response);
    }
    let mut meta = txn.open_table(tables::SM_META)?;
    if let Some(applied) = last_applied {
        meta.insert(sm_meta::LAST_APPLIED, encode(&Some(applied))?.as_slice())?;
    }
    if let Some(m) = membership {
        meta.insert(sm_meta::MEMBERSHIP, encode(&m)?.as_slice())?;
    }
    Ok(responses)
}

type BytesTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;

/// The tables of a batch's transaction, each opened on first use.
struct OpenTables<'t> {
    txn: &'t WriteTransaction,
    kv: Option<BytesTable<'t>>,
    pipelines: Option<BytesTable<'t>>,
}

impl<'t> OpenTables<'t> {
    fn kv(&mut self) -> Result<&mut BytesTable<'t>, StoreError> {
        if self.kv.is_none() {
            self.kv = Some(self.txn.open_table(tables::KV)?);
        }
        self.kv
            .as_mut()
            .ok_or(StoreError::Failed("kv table".into()))
    }

    fn pipelines(&mut self) -> Result<&mut BytesTable<'t>, StoreError> {
        if self.pipelines.is_none() {
            self.pipelines = Some(self.txn.open_table(tables::PIPELINES)?);
        }
        self.pipelines
            .as_mut()
            .ok_or(StoreError::Failed("pipelines table".into()))
    }
}

fn read_pipeline(table: &BytesTable<'_>, name: &str) -> Result<Option<PipelineRecord>, StoreError> {
    match table.get(name)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

/// Applies one command to the batch's tables; `index` is the command's log index.
fn apply_command(
    open: &mut OpenTables<'_>,
    command: &Command,
    index: u64,
) -> Result<CommandResponse, StoreError> {
    if let Some(response) = apply_pipeline_command(open, command, index)? {
        return Ok(response);
    }
    let kv = open.kv()?;
    Ok(match command {
        Command::KvPut { key, value } => {
            let existed = kv.insert(key.as_str(), value.as_slice())?.is_some();
            CommandResponse::KvPut { existed }
        }
        Command::KvDelete { key } => {
            let existed = kv.remove(key.as_str())?.is_some();
            CommandResponse::KvDelete { existed }
        }
        Command::KvTxn(t) => {
            let mut succeeded = true;
            for c in &t.compare {
                let current = kv.get(c.key())?;
                if !c.holds(current.as_ref().map(|v| v.value())) {
                    succeeded = false;
                    break;
                }
            }
            let ops = if succeeded { &t.success } else { &t.failure };
            for op in ops {
                match op {
                    TxnOp::Put { key, value } => {
                        kv.insert(key.as_str(), value.as_slice())?;
                    }
                    TxnOp::Delete { key } => {
                        kv.remove(key.as_str())?;
                    }
                }
            }
            CommandResponse::KvTxn { succeeded }
        }
        Command::Batch(commands) => {
            let mut responses = Vec::with_capacity(commands.len());
            for c in commands {
                responses.push(apply_command(open, c, index)?);
            }
            CommandResponse::Batch(responses)
        }
        Command::PipelineCreate { .. }
        | Command::PipelineUpdate { .. }
        | Command::PipelineSetState { .. }
        | Command::PipelineDelete { .. } => CommandResponse::None,
    })
}

/// Applies a pipeline command; `None` for any other command.
fn apply_pipeline_command(
    open: &mut OpenTables<'_>,
    command: &Command,
    index: u64,
) -> Result<Option<CommandResponse>, StoreError> {
    let table = match command {
        Command::PipelineCreate { .. }
        | Command::PipelineUpdate { .. }
        | Command::PipelineSetState { .. }
        | Command::PipelineDelete { .. } => open.pipelines()?,
        _ => return Ok(None),
    };
    fn write(
        table: &mut BytesTable<'_>,
        record: &PipelineRecord,
        created: bool,
    ) -> Result<CommandResponse, StoreError> {
        table.insert(record.spec.name.as_str(), encode(record)?.as_slice())?;
        Ok(CommandResponse::Pipeline {
            version: record.version,
            created,
        })
    }
    let response = match command {
        Command::PipelineCreate { spec } => match read_pipeline(table, &spec.name)? {
            Some(existing) => CommandResponse::PipelineExists {
                version: existing.version,
            },
            None => write(
                table,
                &PipelineRecord {
                    spec: spec.clone(),
                    version: 1,
                    desired: DesiredState::Running,
                    updated_index: index,
                },
                true,
            )?,
        },
        Command::PipelineUpdate { spec, upsert } => match read_pipeline(table, &spec.name)? {
            Some(existing) => write(
                table,
                &PipelineRecord {
                    spec: spec.clone(),
                    version: existing.version + 1,
                    desired: existing.desired,
                    updated_index: index,
                },
                false,
            )?,
            None if *upsert => write(
                table,
                &PipelineRecord {
                    spec: spec.clone(),
                    version: 1,
                    desired: DesiredState::Running,
                    updated_index: index,
                },
                true,
            )?,
            None => CommandResponse::PipelineMissing,
        },
        Command::PipelineSetState { name, desired } => match read_pipeline(table, name)? {
            Some(mut record) => {
                record.desired = *desired;
                record.updated_index = index;
                write(table, &record, false)?
            }
            None => CommandResponse::PipelineMissing,
        },
        Command::PipelineDelete { name } => CommandResponse::PipelineDeleted {
            existed: table.remove(name.as_str())?.is_some(),
        },
        _ => return Ok(None),
    };
    Ok(Some(response))
}

/// Rewrites the members table from a membership entry.
fn write_members(
    txn: &WriteTransaction,
    m: &openraft::Membership<NodeId, WireNode>,
) -> Result<(), StoreError> {
    let voters: std::collections::BTreeSet<NodeId> = m.voter_ids().collect();
    let mut table = txn.open_table(tables::MEMBERS)?;
    table.retain(|_, _| false)?;
    for (id, node) in m.nodes() {
        let record = MemberRecord {
            node: node.clone(),
            voter: voters.contains(id),
        };
        table.insert(*id, encode(&record)?.as_slice())?;
    }
    Ok(())
}

fn to_snapshot(stored: StoredSnapshot) -> Snapshot<TypeConfig> {
    Snapshot {
        meta: stored.meta,
        snapshot: Box::new(Cursor::new(stored.data)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
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
        self.writer
            .call(|done| WriteOp::Apply { entries, done })
            .await
            .map_err(|e| e.into_storage(ErrorSubject::StateMachine, ErrorVerb::Write))
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
        let this = self.clone();
        let meta_owned = meta.clone();
        let data = snapshot.into_inner();
        blocking(move || this.install_blocking(meta_owned, data))
            .await
            .map_err(|e| {
                e.into_storage(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                )
            })?;
        tracing::info!(snapshot = %meta.snapshot_id, "installed snapshot");
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
