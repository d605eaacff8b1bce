//! The node's single database writer. Every write to the redb database that is on the hot
//! path — Raft log appends, truncations, purges, the state machine's changes and snapshot
//! installs — goes through one thread, which drains its queue and writes each run of appends
//! and state-machine flushes in one transaction. A transaction that holds log entries is
//! fsynced before anyone is told; under concurrent load many client writes share one fsync,
//! and state-machine changes ride along with log appends instead of costing transactions of
//! their own.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::LogFlushed;
use redb::{Database, Durability};

use super::sm_overlay::{SmChanges, SmOverlay};
use super::sm_tables::{install_tables, write_changes, SnapshotMetaOf};
pub(crate) use super::store_error::{blocking, StoreError};
use super::tables::{self, raft_meta};
use super::{encode, LogId, TypeConfig};

pub(crate) type Entry = openraft::Entry<TypeConfig>;
type Done<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

/// What the log writer thread is asked to do, in order.
pub(crate) enum WriteOp {
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
    /// Write the state machine's pending changes now, replying once they are written.
    Flush { done: Done<()> },
    /// Replace the state machine with a snapshot's contents.
    Install {
        meta: SnapshotMetaOf,
        data: Vec<u8>,
        done: Done<()>,
    },
}

/// A recent log entry held in memory: appended and not yet on disk (`bytes` is `Some`), or
/// on disk and not yet applied here (kept so that replication and apply need no disk read).
pub(crate) struct Pending {
    pub(crate) entry: Entry,
    pub(crate) bytes: Option<Vec<u8>>,
}

/// Most flushed entries kept in memory beyond the applied index (a node that cannot apply,
/// for example a follower cut off from the commit index, stops caching past this).
const MAX_CACHED_ENTRIES: usize = 4096;

/// The handle to the writer thread and the state it shares. Clones share both.
#[derive(Clone)]
pub(crate) struct DbWriter {
    shared: Arc<Shared>,
    queue: mpsc::Sender<WriteOp>,
}

impl DbWriter {
    /// Starts the writer thread for `db`; it ends when the last handle is dropped, and then
    /// (the database closed) calls `closed`.
    pub(crate) fn start(
        db: Arc<Database>,
        closed: Box<dyn FnOnce() + Send>,
    ) -> Result<Self, crate::Error> {
        let shared = Arc::new(Shared {
            db,
            overlay: Mutex::new(BTreeMap::new()),
            sm: Mutex::new(SmOverlay::default()),
            committed: Mutex::new(None),
            committed_written: Mutex::new(None),
        });
        let (queue, ops) = mpsc::channel();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("wire-db-writer".into())
            .spawn(move || {
                write_loop(&thread_shared, ops);
                drop(thread_shared);
                closed();
            })
            .map_err(|e| crate::Error::io("starting the database writer", e))?;
        Ok(Self { shared, queue })
    }

    pub(crate) fn db(&self) -> &Arc<Database> {
        &self.shared.db
    }

    /// Log entries appended but not yet known to be on disk.
    pub(crate) fn overlay(&self) -> MutexGuard<'_, BTreeMap<u64, Pending>> {
        lock(&self.shared.overlay)
    }

    /// Remembers the committed id; it is written with the next transaction.
    pub(crate) fn set_committed(&self, committed: Option<LogId>) {
        *lock(&self.shared.committed) = Some(committed);
    }

    /// The committed id given to [`Self::set_committed`] and not yet written, if any.
    pub(crate) fn unwritten_committed(&self) -> Option<Option<LogId>> {
        *lock(&self.shared.committed)
    }

    /// The state machine's unwritten changes.
    pub(crate) fn sm(&self) -> MutexGuard<'_, SmOverlay> {
        lock(&self.shared.sm)
    }

    pub(crate) fn send(&self, op: WriteOp) -> Result<(), StoreError> {
        self.queue.send(op).map_err(|_| StoreError::WriterGone)
    }

    /// Queues an operation and waits for its result.
    pub(crate) async fn call<T>(
        &self,
        make: impl FnOnce(Done<T>) -> WriteOp,
    ) -> Result<T, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(make(done))?;
        wait.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// A poisoned lock means a panic while holding it; the data is still consistent (every
/// mutation under these locks is a single insert, remove or assignment).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the log writer shares with the store.
struct Shared {
    db: Arc<Database>,
    overlay: Mutex<BTreeMap<u64, Pending>>,
    /// State-machine changes not yet written.
    sm: Mutex<SmOverlay>,
    /// The latest committed id given to `save_committed`, not yet written (`Some`).
    committed: Mutex<Option<Option<LogId>>>,
    /// When the committed id was last written.
    committed_written: Mutex<Option<std::time::Instant>>,
}

/// How often the committed id is written at most.
const COMMITTED_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Shared {
    /// Writes the pending committed id into `txn`, at most every [`COMMITTED_EVERY`]: it is
    /// a recovery hint, and one more table per transaction costs page writes.
    fn write_committed(&self, txn: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut last = lock(&self.committed_written);
        if last.is_some_and(|t| t.elapsed() < COMMITTED_EVERY) {
            return Ok(());
        }
        let pending = lock(&self.committed).take();
        if let Some(committed) = pending {
            txn.open_table(tables::RAFT_META)?
                .insert(raft_meta::COMMITTED, encode(&committed)?.as_slice())?;
            *last = Some(std::time::Instant::now());
        }
        Ok(())
    }
}

/// An operation that joins a shared transaction.
enum RunOp {
    Append {
        first: u64,
        last: u64,
        callback: LogFlushed<TypeConfig>,
    },
    Flush(Done<()>),
}

/// How often the state machine's applied changes are written at most (unless a snapshot
/// needs them sooner). The log is the source of durability, so this only bounds how much is
/// re-applied after a crash; writing less often lets many changes share each B-tree page, as
/// etcd's backend batches its commits behind its WAL.
const SM_FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// The writer thread: drains the queue; each run of appends becomes one transaction,
/// fsynced, carrying the state machine's changes when they are due and the latest committed
/// id; only after the commit are callers told. Truncations, purges and snapshot installs run
/// alone, in queue order, fsynced.
fn write_loop(shared: &Shared, queue: mpsc::Receiver<WriteOp>) {
    let mut last_flush = std::time::Instant::now();
    loop {
        let mut ops: VecDeque<WriteOp> = VecDeque::new();
        match queue.recv_timeout(SM_FLUSH_INTERVAL) {
            Ok(op) => ops.push_back(op),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                shared.write_run(Vec::new(), true);
                return;
            }
        }
        while let Ok(op) = queue.try_recv() {
            ops.push_back(op);
        }
        let due = last_flush.elapsed() >= SM_FLUSH_INTERVAL;
        let mut run = Vec::new();
        while let Some(op) = ops.pop_front() {
            match op {
                WriteOp::Append {
                    first,
                    last,
                    callback,
                } => run.push(RunOp::Append {
                    first,
                    last,
                    callback,
                }),
                WriteOp::Flush { done } => run.push(RunOp::Flush(done)),
                WriteOp::Install { meta, data, done } => {
                    shared.write_run(std::mem::take(&mut run), due);
                    let _ = done.send(shared.install(meta, data));
                }
                WriteOp::Truncate { from, done } => {
                    shared.write_run(std::mem::take(&mut run), due);
                    let _ = done.send(shared.truncate(from));
                }
                WriteOp::Purge { log_id, done } => {
                    shared.write_run(std::mem::take(&mut run), due);
                    let result = shared.purge(log_id);
                    if result.is_ok() {
                        lock(&shared.overlay)
                            .retain(|index, p| *index > log_id.index || p.bytes.is_some());
                    }
                    let _ = done.send(result);
                }
            }
        }
        shared.write_run(run, due);
        if due {
            last_flush = std::time::Instant::now();
        }
    }
}

impl Shared {
    fn truncate(&self, from: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        txn.open_table(tables::RAFT_LOG)?
            .retain_in(from.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    fn purge(&self, log_id: LogId) -> Result<(), StoreError> {
        let marker = encode(&Some(log_id))?;
        let txn = self.db.begin_write()?;
        txn.open_table(tables::RAFT_META)?
            .insert(raft_meta::LAST_PURGED, marker.as_slice())?;
        txn.open_table(tables::RAFT_LOG)?
            .retain_in(..=log_id.index, |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Replaces the state machine with a snapshot, dropping every unwritten change.
    fn install(&self, meta: SnapshotMetaOf, data: Vec<u8>) -> Result<(), StoreError> {
        let mut sm = lock(&self.sm);
        *sm = SmOverlay::default();
        let txn = self.db.begin_write()?;
        install_tables(&txn, meta, data)?;
        txn.commit()?;
        Ok(())
    }

    /// Writes a run of appends in one transaction — with the state machine's pending changes
    /// when `due` or when a flush is waited for — then reports to each caller: success to all
    /// once the commit returns, or the error to all.
    fn write_run(&self, run: Vec<RunOp>, due: bool) {
        let with_changes = due || run.iter().any(|op| matches!(op, RunOp::Flush(_)));
        if run.is_empty() && !with_changes {
            return;
        }
        let mut written: Vec<(u64, LogId)> = Vec::new();
        let mut flushed = Vec::new();
        let mut waiters = Vec::new();
        let mut failure: Option<StoreError> = None;
        // Take the state machine's pending changes: readers still see them (as `flushing`)
        // until the commit below makes them visible in the database.
        let (changes_applied_upto, have_changes) = if with_changes {
            // `flushing` is empty here: it is cleared after every run, or put back into
            // `pending` when a run fails.
            let mut sm = lock(&self.sm);
            sm.flushing = std::mem::take(&mut sm.pending);
            (
                sm.flushing.last_applied.flatten().map(|l| l.index),
                !sm.flushing.is_empty(),
            )
        } else {
            (None, false)
        };
        let nothing_to_write = !have_changes && run.iter().all(|op| matches!(op, RunOp::Flush(_)));
        if nothing_to_write {
            for op in run {
                if let RunOp::Flush(done) = op {
                    let _ = done.send(Ok(()));
                }
            }
            return;
        }
        let mut txn = match self.db.begin_write() {
            Ok(t) => Some(t),
            Err(e) => {
                failure = Some(e.into());
                None
            }
        };
        for op in run {
            match op {
                RunOp::Append {
                    first,
                    last,
                    callback,
                } => {
                    flushed.push(callback);
                    if let Some(t) = &txn {
                        if let Err(e) = self.write_entries(t, first, last, &mut written) {
                            failure = Some(e);
                            txn = None;
                        }
                    }
                }
                RunOp::Flush(done) => waiters.push(done),
            }
        }
        if let Some(mut t) = txn {
            let committed = (|| -> Result<(), StoreError> {
                if have_changes {
                    write_changes(&t, &lock(&self.sm).flushing)?;
                }
                if written.is_empty() {
                    t.set_durability(Durability::None)?;
                }
                self.write_committed(&t)?;
                t.commit()?;
                Ok(())
            })();
            if let Err(e) = committed {
                failure = Some(e);
            }
        }
        tracing::trace!(
            entries = written.len(),
            appends = flushed.len(),
            state_changes = have_changes,
            "write batch"
        );
        match failure {
            None => {
                if with_changes {
                    lock(&self.sm).flushing = SmChanges::default();
                }
                let mut overlay = lock(&self.overlay);
                for (index, log_id) in &written {
                    if let Some(p) = overlay.get_mut(index) {
                        if p.entry.log_id == *log_id {
                            p.bytes = None;
                        }
                    }
                }
                evict(&mut overlay, changes_applied_upto);
                drop(overlay);
                for cb in flushed {
                    cb.log_io_completed(Ok(()));
                }
                for done in waiters {
                    let _ = done.send(Ok(()));
                }
            }
            Some(e) => {
                tracing::error!(error = %e, "database write failed");
                if with_changes {
                    // Keep the unwritten changes for the next attempt (newer ones win).
                    let mut sm = lock(&self.sm);
                    let failed = std::mem::take(&mut sm.flushing);
                    sm.pending.absorb_older(failed);
                }
                for cb in flushed {
                    cb.log_io_completed(Err(std::io::Error::other(e.to_string())));
                }
                for done in waiters {
                    let _ = done.send(Err(StoreError::Failed(e.to_string())));
                }
            }
        }
    }

    fn write_entries(
        &self,
        txn: &redb::WriteTransaction,
        first: u64,
        last: u64,
        written: &mut Vec<(u64, LogId)>,
    ) -> Result<(), StoreError> {
        let mut table = txn.open_table(tables::RAFT_LOG)?;
        for (index, p) in lock(&self.overlay).range(first..=last) {
            if let Some(bytes) = &p.bytes {
                table.insert(*index, bytes.as_slice())?;
                written.push((*index, p.entry.log_id));
            }
        }
        Ok(())
    }
}

/// Drops flushed entries that are applied (up to `applied_upto`), and the oldest flushed
/// entries beyond [`MAX_CACHED_ENTRIES`].
fn evict(overlay: &mut BTreeMap<u64, Pending>, applied_upto: Option<u64>) {
    if let Some(upto) = applied_upto {
        let drop_keys: Vec<u64> = overlay
            .range(..=upto)
            .filter(|(_, p)| p.bytes.is_none())
            .map(|(k, _)| *k)
            .collect();
        for k in drop_keys {
            overlay.remove(&k);
        }
    }
    while overlay.len() > MAX_CACHED_ENTRIES {
        match overlay.first_key_value() {
            Some((k, p)) if p.bytes.is_none() => {
                let k = *k;
                overlay.remove(&k);
            }
            _ => break,
        }
    }
}
