//! State-machine changes not yet written to redb. Applying a batch updates this overlay and
//! answers at once; the database writer (`writer.rs`) folds the changes into its next
//! transaction — usually one that appends log entries anyway — as etcd batches its backend
//! commits behind its WAL. The Raft log stays the source of durability: after a crash the
//! committed entries past the last written `last_applied` are applied again.
//!
//! Readers look here first (`pending`, then `flushing`, the changes the writer is writing
//! now), then in the database, in that order, so they never miss a change in flight.

use std::collections::BTreeMap;

use super::{LogId, StoredMembership};

/// A set of changes: `Some(bytes)` written, `None` removed.
#[derive(Debug, Default)]
pub(crate) struct SmChanges {
    pub kv: BTreeMap<String, Option<Vec<u8>>>,
    /// Encoded pipeline records.
    pub pipelines: BTreeMap<String, Option<Vec<u8>>>,
    /// (pipeline, partition) -> owning node.
    pub assignments: BTreeMap<(String, u32), Option<u64>>,
    /// (pipeline, partition) -> encoded checkpoint.
    pub checkpoints: BTreeMap<(String, u32), Option<Vec<u8>>>,
    /// The whole members table (encoded records), when a membership entry was applied.
    pub members: Option<Vec<(u64, Vec<u8>)>>,
    pub last_applied: Option<Option<LogId>>,
    pub membership: Option<StoredMembership>,
}

impl SmChanges {
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty()
            && self.pipelines.is_empty()
            && self.assignments.is_empty()
            && self.checkpoints.is_empty()
            && self.members.is_none()
            && self.last_applied.is_none()
            && self.membership.is_none()
    }

    /// Puts `older` under these changes (newer values win), for changes that failed to write.
    pub fn absorb_older(&mut self, older: SmChanges) {
        for (k, v) in older.kv {
            self.kv.entry(k).or_insert(v);
        }
        for (k, v) in older.pipelines {
            self.pipelines.entry(k).or_insert(v);
        }
        for (k, v) in older.assignments {
            self.assignments.entry(k).or_insert(v);
        }
        for (k, v) in older.checkpoints {
            self.checkpoints.entry(k).or_insert(v);
        }
        if self.members.is_none() {
            self.members = older.members;
        }
        if self.last_applied.is_none() {
            self.last_applied = older.last_applied;
        }
        if self.membership.is_none() {
            self.membership = older.membership;
        }
    }
}

/// What a lookup in the overlay found.
pub(crate) enum Found<'a> {
    /// The latest value.
    Value(&'a [u8]),
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

fn find<'a>(maps: [&'a BTreeMap<String, Option<Vec<u8>>>; 2], key: &str) -> Found<'a> {
    for map in maps {
        match map.get(key) {
            Some(Some(v)) => return Found::Value(v),
            Some(None) => return Found::Removed,
            None => {}
        }
    }
    Found::Unknown
}

impl SmOverlay {
    pub fn kv(&self, key: &str) -> Found<'_> {
        find([&self.pending.kv, &self.flushing.kv], key)
    }

    pub fn pipeline(&self, name: &str) -> Found<'_> {
        find([&self.pending.pipelines, &self.flushing.pipelines], name)
    }

    pub fn members(&self) -> Option<&Vec<(u64, Vec<u8>)>> {
        self.pending
            .members
            .as_ref()
            .or(self.flushing.members.as_ref())
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

    /// The changes to the kv table in `range`, newest first folded: key -> latest change.
    pub fn kv_range(&self, from: &str, prefix: &str) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = BTreeMap::new();
        for map in [&self.flushing.kv, &self.pending.kv] {
            for (k, v) in
                map.range::<str, _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
            {
                if !k.starts_with(prefix) {
                    break;
                }
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// The changes to one pipeline's rows of a partition-keyed table, newest winning.
    pub fn partition_changes<V: Clone>(
        maps: [&BTreeMap<(String, u32), Option<V>>; 2],
        pipeline: &str,
    ) -> BTreeMap<u32, Option<V>> {
        let mut out = BTreeMap::new();
        for map in maps {
            let from = (pipeline.to_string(), 0u32);
            for ((name, part), v) in map.range(from..) {
                if name != pipeline {
                    break;
                }
                out.insert(*part, v.clone());
            }
        }
        out
    }

    /// Changes to a pipeline's assignments (`flushing` first, so `pending` wins).
    pub fn assignment_changes(&self, pipeline: &str) -> BTreeMap<u32, Option<u64>> {
        Self::partition_changes(
            [&self.flushing.assignments, &self.pending.assignments],
            pipeline,
        )
    }

    /// Changes to a pipeline's checkpoints (`flushing` first, so `pending` wins).
    pub fn checkpoint_changes(&self, pipeline: &str) -> BTreeMap<u32, Option<Vec<u8>>> {
        Self::partition_changes(
            [&self.flushing.checkpoints, &self.pending.checkpoints],
            pipeline,
        )
    }

    /// All pipeline changes, newest winning.
    pub fn pipeline_changes(&self) -> BTreeMap<String, Option<Vec<u8>>> {
        let mut out = self.flushing.pipelines.clone();
        out.extend(self.pending.pipelines.clone());
        out
    }
}
