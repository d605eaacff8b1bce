//! The Raft log and vote, stored in the node's redb database ([`tables::RAFT_LOG`],
//! [`tables::RAFT_META`]).
//!
//! Durability: appends, truncations, purges and votes commit with `Durability::Immediate`
//! (fsync) before they report success, which is what Raft's safety needs. The committed index
//! is a hint for faster recovery and is written without fsync; it becomes durable with the
//! next durable commit to the same database.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError, Vote};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::tables::{self, raft_meta};
use super::{decode, encode, LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

/// A failure inside the store, before it is wrapped for openraft.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database: {0}")]
    Db(#[from] redb::Error),
    #[error("encoding: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decoding: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("storage task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

macro_rules! db_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_from!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl StoreError {
    pub(crate) fn into_storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Runs blocking database work off the async runtime's worker threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// The Raft log store of a node. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens the log store on `db`, creating its tables (durable when this returns).
    pub fn open(db: Arc<Database>) -> Result<Self, crate::Error> {
        let create = || -> Result<(), StoreError> {
            let txn = db.begin_write()?;
            txn.open_table(tables::RAFT_LOG)?;
            txn.open_table(tables::RAFT_META)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(crate::Error::storage)?;
        Ok(Self { db })
    }

    fn read_meta<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::RAFT_META)?;
        match table.get(key)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = encode(value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(tables::RAFT_META)?
                .insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::RAFT_LOG)?;
        let mut out = Vec::new();
        for item in table.range::<u64>((start, end))? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let this = self.clone();
        blocking(move || this.read_range(start, end))
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let this = self.clone();
        blocking(move || {
            let last_purged: Option<LogId> = this.read_meta(raft_meta::LAST_PURGED)?;
            let txn = this.db.begin_read()?;
            let table = txn.open_table(tables::RAFT_LOG)?;
            let last = match table.last()? {
                Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable (fsynced) when this returns: a vote must survive a crash.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(raft_meta::VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(raft_meta::VOTE)
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Not fsynced: the committed index only speeds up recovery (entries up to it are
    /// re-applied on start). Losing it loses nothing; the leader re-establishes it.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(raft_meta::COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_meta::<Option<LogId>>(raft_meta::COMMITTED)
            .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))?
            .flatten())
    }

    /// All entries are written in one transaction, fsynced before `callback` is told: Raft
    /// counts this node toward a quorum only for entries on disk. Many pending client writes
    /// arrive here as one batch, so one fsync covers them all.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| {
                StoreError::from(e).into_storage(ErrorSubject::Log(entry.log_id), ErrorVerb::Write)
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        let db = self.db.clone();
        let result = blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(tables::RAFT_LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
        .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = e.into_storage(ErrorSubject::Logs, ErrorVerb::Write);
                callback.log_io_completed(Err(std::io::Error::other(err.to_string())));
                Err(err)
            }
        }
    }

    /// Removes entries at and after `log_id.index`; durable when this returns.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(tables::RAFT_LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    /// Removes entries up to and including `log_id` and records it as the last purged id, in
    /// one durable transaction. Openraft calls this only behind a snapshot.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let marker = encode(&Some(log_id))
            .map_err(|e| StoreError::from(e).into_storage(ErrorSubject::Logs, ErrorVerb::Delete))?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(tables::RAFT_META)?
                .insert(raft_meta::LAST_PURGED, marker.as_slice())?;
            txn.open_table(tables::RAFT_LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
