//! The Raft log and vote, stored in the node's redb database ([`tables::RAFT_LOG`],
//! [`tables::RAFT_META`]).
//!
//! Appends are group-committed: `append` puts the entries in an in-memory overlay (visible to
//! readers at once) and queues them for the database writer ([`super::writer`]), which
//! writes every queued append in one transaction with one fsync and only then tells Raft
//! they are flushed.
//!
//! Durability: appended entries are reported flushed only after an fsynced commit;
//! truncations, purges and votes are fsynced before they return — what Raft's safety needs.
//! The committed index is a hint for faster recovery: it is written with the writer's next
//! transaction and becomes durable with the next fsynced one.
//! On open, a stored vote loses its "granted" mark ([`forget_vote_grant`]): a restarted
//! node never resumes leadership it can no longer vouch for.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, Vote};
use redb::{Durability, ReadableDatabase, ReadableTable};

use super::tables::{self, raft_meta};
use super::writer::{blocking, DbWriter, Entry, Pending, StoreError, WriteOp};
use super::{decode, encode, LogId, NodeId, StorageError, TypeConfig};

/// The Raft log store of a node. Clones share the database writer and its overlay.
#[derive(Clone)]
pub struct LogStore {
    writer: DbWriter,
}

impl LogStore {
    /// Opens the log store, creating its tables, and forgets whether the stored vote was
    /// granted by a quorum ([`forget_vote_grant`]); durable when this returns.
    pub(crate) fn open(writer: DbWriter) -> Result<Self, crate::Error> {
        let open = || -> Result<Option<Vote<NodeId>>, StoreError> {
            let mut txn = writer.db().begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(tables::RAFT_LOG)?;
            let forgotten = {
                let mut meta = txn.open_table(tables::RAFT_META)?;
                let stored: Option<Vote<NodeId>> = match meta.get(raft_meta::VOTE)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                match stored.and_then(forget_vote_grant) {
                    Some(vote) => {
                        meta.insert(raft_meta::VOTE, encode(&vote)?.as_slice())?;
                        Some(vote)
                    }
                    None => None,
                }
            };
            txn.commit()?;
            Ok(forgotten)
        };
        if let Some(vote) = open().map_err(crate::Error::storage)? {
            tracing::info!(
                %vote,
                "restarting without the leadership this vote granted: a new election decides"
            );
        }
        Ok(Self { writer })
    }

    fn read_meta<T: for<'de> serde::Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let txn = self.writer.db().begin_read()?;
        let table = txn.open_table(tables::RAFT_META)?;
        match table.get(key)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// The entries in the range if the overlay holds every one of them.
    fn overlay_only(&self, start: Bound<u64>, end: Bound<u64>) -> Option<Vec<Entry>> {
        let first = match start {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.checked_add(1)?,
            Bound::Unbounded => return None,
        };
        let overlay = self.writer.overlay();
        let entries: Vec<Entry> = overlay
            .range((start, end))
            .map(|(_, p)| p.entry.clone())
            .collect();
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.log_id.index == first + i as u64);
        let last_wanted = match end {
            Bound::Included(i) => Some(i),
            Bound::Excluded(i) => i.checked_sub(1),
            Bound::Unbounded => overlay.last_key_value().map(|(k, _)| *k),
        };
        let complete = match (entries.last(), last_wanted) {
            (Some(e), Some(l)) => e.log_id.index == l,
            (None, Some(l)) => l < first,
            _ => false,
        };
        (contiguous && complete && (!entries.is_empty() || last_wanted.is_some()))
            .then_some(entries)
    }

    /// Entries in the range: the overlay is read first, then the database, so an entry the
    /// writer moves from one to the other in between is still seen.
    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StoreError> {
        let pending: Vec<Entry> = self
            .writer
            .overlay()
            .range((start, end))
            .map(|(_, p)| p.entry.clone())
            .collect();
        let disk_end = match pending.first() {
            Some(first) => Bound::Excluded(first.log_id.index),
            None => end,
        };
        let txn = self.writer.db().begin_read()?;
        let table = txn.open_table(tables::RAFT_LOG)?;
        let mut out = Vec::new();
        for item in table.range::<u64>((start, disk_end))? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        out.extend(pending);
        Ok(out)
    }
}

impl LogStore {
    /// The last purged and the last log id (appended, whether flushed yet or not).
    async fn log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let pending_last = self
            .writer
            .overlay()
            .last_key_value()
            .map(|(_, p)| p.entry.log_id);
        let this = self.clone();
        blocking(move || {
            let last_purged: Option<LogId> = this.read_meta(raft_meta::LAST_PURGED)?;
            let txn = this.writer.db().begin_read()?;
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
    }

    /// The id of the last entry in the log (what a vote compares).
    pub(crate) async fn last_log_id(&self) -> Result<Option<LogId>, crate::Error> {
        Ok(self
            .log_state()
            .await
            .map_err(crate::Error::storage)?
            .last_log_id)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        // Recent entries (replication, apply) are usually all still in the overlay: serve
        // them inline; anything else reads the database off the async threads.
        if let Some(entries) = self.overlay_only(start, end) {
            return Ok(entries);
        }
        let this = self.clone();
        blocking(move || this.read_range(start, end))
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state()
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable (fsynced) when this returns: a vote must survive a crash.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = encode(vote)
            .map_err(|e| StoreError::from(e).into_storage(ErrorSubject::Vote, ErrorVerb::Write))?;
        let db = self.writer.db().clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            txn.open_table(tables::RAFT_META)?
                .insert(raft_meta::VOTE, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        let this = self.clone();
        blocking(move || this.read_meta(raft_meta::VOTE))
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Kept in memory and written with the log writer's next transaction: the committed
    /// index only speeds up recovery (entries up to it are re-applied on start), so it is
    /// never worth a transaction of its own. Losing it loses nothing; the leader
    /// re-establishes it.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.writer.set_committed(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(c) = self.writer.unwritten_committed() {
            return Ok(c);
        }
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
            let mut overlay = self.writer.overlay();
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
                overlay.insert(
                    index,
                    Pending {
                        entry,
                        bytes: Some(bytes),
                    },
                );
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
        self.writer
            .overlay()
            .retain(|index, _| *index < log_id.index);
        self.writer
            .call(|done| WriteOp::Truncate {
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
        self.writer
            .call(|done| WriteOp::Purge { log_id, done })
            .await
            .map_err(|e| e.into_storage(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}

/// The vote a node resumes with after a restart: the same term and candidate, but no longer
/// known to be granted by a quorum (`None` when there is nothing to forget).
///
/// openraft 0.9 restores a node whose stored vote is a granted vote for itself as leader of
/// the same term at once. Such a leader has lost what it knew in memory: which entries are
/// committed (its committed index on disk is only a hint, written behind the commits it
/// acknowledged). Its read index is `max(first entry of its term, committed)`, both of
/// which can lie behind writes it acknowledged before the crash, and its followers confirm
/// its leadership at once, so a "linearizable" read through it returned a value older than
/// acknowledged writes. Without the grant it starts as a follower; an election in a later
/// term decides who leads, and the winner's read index is its own new first entry, which
/// is committed only behind everything acknowledged before.
///
/// Safe for Raft: the node still refuses to vote for anyone else in that term (it voted
/// for this candidate), and its term never goes back. A follower's granted vote for
/// another leader is forgotten too: after a restart it cannot know that leader still
/// leads, and the leader's next message grants it again.
pub(crate) fn forget_vote_grant(vote: Vote<NodeId>) -> Option<Vote<NodeId>> {
    vote.is_committed()
        .then(|| Vote::new(vote.leader_id.term, vote.leader_id.node_id))
}
