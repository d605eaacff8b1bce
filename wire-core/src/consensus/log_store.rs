//! The Raft log and vote, stored in the node's redb database ([`tables::RAFT_LOG`],
//! [`tables::RAFT_META`]).
//!
//! Appends are group-committed: `append` puts the entries in an in-memory overlay (visible to
//! readers at once) and queues them for the log writer thread, which writes every queued
//! append in one transaction with one fsync and only then tells Raft they are flushed. Under
//! concurrent load many client writes share one fsync.
//!
//! Durability: appended entries are reported flushed only after an fsynced commit; truncations,
//! purges and votes are fsynced before they return — what Raft's safety needs. The committed
//! index is a hint for faster recovery and is written without fsync; it becomes durable with
//! the next durable commit to the same database.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex};

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
    #[error("the log writer has stopped")]
    WriterGone,
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

/// What the log writer thread is asked to do, in order.
enum WriteOp {
    /// Entries `first..=last` are in the overlay; write them, then call back.
    Append {
        first: u64,
        last: u64,
        callback: LogFlushed<TypeConfig>,
    },
    /// Remove entries at and after `from`.
    Truncate {
        from: u64,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
    /// Remove entries up to and including `log_id`, remembering it as the last purged id.
    Purge {
        log_id: LogId,
        done: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// An appended entry not yet known to be on disk.
struct Pending {
    entry: Entry,
    bytes: Vec<u8>,
}

/// The Raft log store of a node. Clones share the database, the overlay and the writer.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    overlay: Arc<Mutex<BTreeMap<u64, Pending>>>,
    writer: mpsc::Sender<WriteOp>,
}

impl LogStore {
    /// Opens the log store on `db`, creating its tables (durable when this returns), and
    /// starts its writer thread (which ends when the last clone is dropped).
    pub fn open(db: Arc<Database>) -> Result<Self, crate::Error> {
        let create = || -> Result<(), StoreError> {
            let txn = db.begin_write()?;
            txn.open_table(tables::RAFT_LOG)?;
            txn.open_table(tables::RAFT_META)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(crate::Error::storage)?;
        let overlay = Arc::new(Mutex::new(BTreeMap::new()));
        let (writer, queue) = mpsc::channel();
        let (thread_db, thread_overlay) = (db.clone(), overlay.clone());
        std::thread::Builder::new()
            .name("wire-log-writer".into())
            .spawn(move || write_loop(thread_db, thread_overlay, queue))
            .map_err(|e| crate::Error::io("starting the log writer", e))?;
        Ok(Self {
            db,
            overlay,
            writer,
        })
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Pending>> {
        // A poisoned lock means a panic while holding it; the map itself is still consistent
        // (every mutation is a single insert or remove).
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
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

    /// Entries in the range: the overlay is read first, then the database, so an entry the
    /// writer moves from one to the other in between is still seen.
    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreError> {
        let pending: Vec<Entry> = self
            .overlay()
            .range((start, end))
            .map(|(_, p)| p.entry.clone())
            .collect();
        let first_pending = pending.first().map(|e| e.log_id.index);
        let disk_end = match first_pending {
            Some(first) => Bound::Excluded(first),
            None => end,
        };
        let txn = self.db.begin_read()?;
        let table = txn.open_table(tables::RAFT_LOG)?;
        let mut out = Vec::new();
        for item in table.range::<u64>((start, disk_end))? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        out.extend(pending);
        Ok(out)
    }

    async fn queue<T>(
        &self,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, StoreError>>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.writer
            .send(make(done))
            .map_err(|_| StoreError::WriterGone)?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// The log writer thread: drains the queue, writes each run of appends in one fsynced
/// transaction, then reports them flushed; truncations and purges run in queue order.
fn write_loop(
    db: Arc<Database>,
    overlay: Arc<Mutex<BTreeMap<u64, Pending>>>,
    queue: mpsc::Receiver<WriteOp>,
) {
    let lock = || overlay.lock().unwrap_or_else(|p| p.into_inner());
    while let Ok(first) = queue.recv() {
        let mut ops: VecDeque<WriteOp> = VecDeque::from([first]);
        while let Ok(op) = queue.try_recv() {
            ops.push_back(op);
        }
        while let Some(op) = ops.pop_front() {
            match op {
                WriteOp::Append {
                    first,
                    last,
                    callback,
                } => {
                    let (mut lo, mut hi) = (first, last);
                    let mut callbacks = vec![callback];
                    while let Some(WriteOp::Append { .. }) = ops.front() {
                        if let Some(WriteOp::Append {
                            first,
                            last,
                            callback,
                        }) = ops.pop_front()
                        {
                            lo = lo.min(first);
                            hi = hi.max(last);
                            callbacks.push(callback);
                        }
                    }
                    let batch: Vec<(u64, LogId, Vec<u8>)> = lock()
                        .range(lo..=hi)
                        .map(|(i, p)| (*i, p.entry.log_id, p.bytes.clone()))
                        .collect();
                    let written = (|| -> Result<(), StoreError> {
                        let txn = db.begin_write()?;
                        {
                            let mut table = txn.open_table(tables::RAFT_LOG)?;
                            for (index, _, bytes) in &batch {
                                table.insert(*index, bytes.as_slice())?;
                            }
                        }
                        txn.commit()?;
                        Ok(())
                    })();
                    match written {
                        Ok(()) => {
                            let mut o = lock();
                            for (index, log_id, _) in &batch {
                                if o.get(index).map(|p| p.entry.log_id) == Some(*log_id) {
                                    o.remove(index);
                                }
                            }
                            drop(o);
                            for cb in callbacks {
                                cb.log_io_completed(Ok(()));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "writing the raft log failed");
                            for cb in callbacks {
                                cb.log_io_completed(Err(std::io::Error::other(e.to_string())));
                            }
                        }
                    }
                }
                WriteOp::Truncate { from, done } => {
                    let result = (|| -> Result<(), StoreError> {
                        let txn = db.begin_write()?;
                        txn.open_table(tables::RAFT_LOG)?
                            .retain_in(from.., |_, _| false)?;
                        txn.commit()?;
                        Ok(())
                    })();
                    let _ = done.send(result);
                }
                WriteOp::Purge { log_id, done } => {
                    let result = (|| -> Result<(), StoreError> {
                        let marker = encode(&Some(log_id))?;
                        let txn = db.begin_write()?;
                        txn.open_table(tables::RAFT_META)?
                            .insert(raft_meta::LAST_PURGED, marker.as_slice())?;
                        txn.open_table(tables::RAFT_LOG)?
                            .retain_in(..=log_id.index, |_, _| false)?;
                        txn.commit()?;
                        Ok(())
                    })();
                    let _ = done.send(result);
                }
            }
        }
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
        let pending_last = self.overlay().last_key_value().map(|(_, p)| p.entry.log_id);
        let this = self.clone();
        blocking(move || {
            let last_purged: Option<LogId> = this.read_meta(raft_meta::LAST_PURGED)?;
            let txn = this.db.begin_read()?;
            let table = txn.open_table(tables::RAFT_LOG)?;
            let on_disk = match table.last()? {
                Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
                None => None,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: pending_last.or(on_disk).or(last_purged),
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
        let this = self.clone();
        blocking(move || this.read_meta(raft_meta::VOTE))
            .await
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
        let this = self.clone();
        Ok(
            blocking(move || this.read_meta::<Option<LogId>>(raft_meta::COMMITTED))
                .await
                .map_err(|e| e.into_storage(ErrorSubject::Store, ErrorVerb::Read))?
                .flatten(),
        )
    }

    /// Returns at once with the entries visible to readers; `callback` is told once the log
    /// writer has fsynced them (together with whatever else was queued meanwhile).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut range: Option<(u64, u64)> = None;
        {
            let mut overlay = self.overlay();
            for entry in entries {
                let bytes = encode(&entry).map_err(|e| {
                    StoreError::from(e)
                        .into_storage(ErrorSubject::Log(entry.log_id), ErrorVerb::Write)
                })?;
                let index = entry.log_id.index;
                range = Some(match range {
                    None => (index, index),
                    Some((lo, hi)) => (lo.min(index), hi.max(index)),
                });
                overlay.insert(index, Pending { entry, bytes });
            }
        }
        let Some((first, last)) = range else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        self.writer
            .send(WriteOp::Append {
                first,
                last,
                callback,
            })
            .map_err(|_| StoreError::WriterGone.into_storage(ErrorSubject::Logs, ErrorVerb::Write))
    }

    /// Removes entries at and after `log_id.index`; durable when this returns.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.overlay().retain(|index, _| *index < log_id.index);
        self.queue(|done| WriteOp::Truncate {
            from: log_id.index,
            done,
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    /// Removes entries up to and including `log_id` and records it as the last purged id, in
    /// one durable transaction queued behind earlier appends. Openraft calls this only behind
    /// a snapshot.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.queue(|done| WriteOp::Purge { log_id, done })
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
