//! State-machine changes not yet written to redb. Applying a batch updates this overlay and
//! answers at once; the database writer (`writer.rs`) folds the changes into its next
//! transaction — usually one that appends log entries anyway — as etcd batches its backend
//! commits behind its WAL. The Raft log stays the source of durability: after a crash the
//! committed entries past the last written `last_applied` are applied again.
//!
//! Readers look here first (`pending`, then `flushing`, the changes the writer is writing
//! now), then in the database, in that order, so they never miss a change in flight.

use std::collections::BTreeMap;
use std::ops::RangeBounds;

use super::replicated::{Table, TableChanges};
use super::{LogId, StoredMembership};

/// A set of changes to the replicated tables and the state machine's metadata.
#[derive(Debug, Default)]
pub(crate) struct SmChanges {
    pub tables: TableChanges,
    pub last_applied: Option<Option<LogId>>,
    pub membership: Option<StoredMembership>,
}

impl SmChanges {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && self.last_applied.is_none() && self.membership.is_none()
    }

    /// Puts `older` under these changes (newer values win), for changes that failed to write.
    pub fn absorb_older(&mut self, older: SmChanges) {
        self.tables.absorb_older(older.tables);
        if self.last_applied.is_none() {
            self.last_applied = older.last_applied;
        }
        if self.membership.is_none() {
            self.membership = older.membership;
        }
    }
}

/// What a lookup in the overlay found.
pub(crate) enum Found<'a, V> {
    /// The latest value.
    Value(&'a V),
    /// Removed.
    Removed,
    /// Not changed here: read the database.
    Unknown,
}

/// The changes being applied (`pending`) and being written (`flushing`).
#[derive(Debug, Default)]
pub(crate) struct SmOverlay {
    pub pending: SmChanges,
    pub flushing: SmChanges,
}

impl SmOverlay {
    /// The latest change to one row of table `T`.
    pub fn find<T: Table>(&self, key: &T::Key) -> Found<'_, T::Value> {
        for changes in [&self.pending, &self.flushing] {
            match T::changes(&changes.tables).get(key) {
                Some(Some(v)) => return Found::Value(v),
                Some(None) => return Found::Removed,
                None => {}
            }
        }
        Found::Unknown
    }

    /// The latest change to each row of table `T` in `range`.
    pub fn changes_in<T: Table>(
        &self,
        range: impl RangeBounds<T::Key> + Clone,
    ) -> BTreeMap<T::Key, Option<T::Value>> {
        let mut out = BTreeMap::new();
        // `flushing` first, so that `pending` wins.
        for changes in [&self.flushing, &self.pending] {
            for (k, v) in T::changes(&changes.tables).range(range.clone()) {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// Records a change to one row of table `T`.
    pub fn set<T: Table>(&mut self, key: T::Key, value: Option<T::Value>) {
        T::changes_mut(&mut self.pending.tables).insert(key, value);
    }

    pub fn last_applied(&self) -> Option<Option<LogId>> {
        self.pending.last_applied.or(self.flushing.last_applied)
    }

    pub fn membership(&self) -> Option<&StoredMembership> {
        self.pending
            .membership
            .as_ref()
            .or(self.flushing.membership.as_ref())
    }
}
