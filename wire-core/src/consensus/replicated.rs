//! The replicated tables, listed once. Each is a [`Table`]: its redb definition and how its
//! rows convert between redb's borrowed form and owned keys and values. The list at the
//! bottom (`replicated_tables!`) generates, for every table at once, the overlay's change
//! sets ([`TableChanges`]) and writing them, the snapshot body ([`SnapshotBody`]) with
//! reading and installing it, and creating the tables — so a new replicated table is one
//! `Table` impl and one line in the list, plus the reads and rules that use it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::store_error::StoreError;

/// redb's borrowed form of a stored type.
type Borrowed<'a, T> = <T as redb::Value>::SelfType<'a>;

/// One replicated table.
pub(crate) trait Table: Sized + 'static {
    /// The key, owned (as the overlay and snapshots hold it).
    type Key: Ord + Clone + Debug + Serialize + DeserializeOwned + Send;
    /// The value, owned.
    type Value: Clone + Debug + Serialize + DeserializeOwned + Send;
    /// redb's key and value types.
    type K: redb::Key + 'static;
    type V: redb::Value + 'static;
    const DEF: TableDefinition<'static, Self::K, Self::V>;

    /// redb's form of a key.
    fn borrow_key(k: &Self::Key) -> Borrowed<'_, Self::K>;
    /// redb's form of a value.
    fn borrow_value(v: &Self::Value) -> Borrowed<'_, Self::V>;
    /// A row read from redb, owned.
    fn owned(k: Borrowed<'_, Self::K>, v: Borrowed<'_, Self::V>) -> (Self::Key, Self::Value);
    /// This table's part of a change set.
    fn changes(all: &TableChanges) -> &Changes<Self>;
    fn changes_mut(all: &mut TableChanges) -> &mut Changes<Self>;
}

/// Changes to one table: `Some` written, `None` removed.
pub(crate) type Changes<T> = BTreeMap<<T as Table>::Key, Option<<T as Table>::Value>>;

/// Rows of one table, in key order.
pub(crate) type Rows<T> = Vec<(<T as Table>::Key, <T as Table>::Value)>;

/// Writes one table's changes.
fn write<T: Table>(txn: &WriteTransaction, changes: &Changes<T>) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(T::DEF)?;
    for (k, v) in changes {
        match v {
            Some(v) => table.insert(T::borrow_key(k), T::borrow_value(v))?,
            None => table.remove(T::borrow_key(k))?,
        };
    }
    Ok(())
}

/// One row, from the database.
pub(crate) fn get<T: Table>(
    read: &ReadTransaction,
    key: &T::Key,
) -> Result<Option<T::Value>, StoreError> {
    let table = read.open_table(T::DEF)?;
    let row = table.get(T::borrow_key(key))?;
    Ok(row.map(|v| T::owned(T::borrow_key(key), v.value()).1))
}

/// The rows in `range`, from the database.
pub(crate) fn scan<'k, T: Table>(
    read: &ReadTransaction,
    range: impl RangeBounds<Borrowed<'k, T::K>> + 'k,
) -> Result<Rows<T>, StoreError> {
    let table = read.open_table(T::DEF)?;
    let mut out = Vec::new();
    for item in table.range(range)? {
        let (k, v) = item?;
        out.push(T::owned(k.value(), v.value()));
    }
    Ok(out)
}

/// Every row, from the database.
fn dump<T: Table>(read: &ReadTransaction) -> Result<Rows<T>, StoreError> {
    let table = read.open_table(T::DEF)?;
    let mut out = Vec::new();
    for item in table.iter()? {
        let (k, v) = item?;
        out.push(T::owned(k.value(), v.value()));
    }
    Ok(out)
}

/// Replaces every row with `rows`.
fn replace<T: Table>(txn: &WriteTransaction, rows: &Rows<T>) -> Result<(), StoreError> {
    txn.delete_table(T::DEF)?;
    let mut table = txn.open_table(T::DEF)?;
    for (k, v) in rows {
        table.insert(T::borrow_key(k), T::borrow_value(v))?;
    }
    Ok(())
}

/// Rows from the database with `changes` laid over them (newest last in `changes`).
pub(crate) fn merged<T: Table>(
    rows: Rows<T>,
    changes: impl IntoIterator<Item = (T::Key, Option<T::Value>)>,
) -> BTreeMap<T::Key, T::Value> {
    let mut out: BTreeMap<T::Key, T::Value> = rows.into_iter().collect();
    for (k, v) in changes {
        match v {
            Some(v) => out.insert(k, v),
            None => out.remove(&k),
        };
    }
    out
}

macro_rules! replicated_tables {
    ($($field:ident: $table:ident),* $(,)?) => {
        /// Changes to every replicated table.
        #[derive(Debug, Default)]
        pub(crate) struct TableChanges {
            $(pub $field: Changes<$table>,)*
        }

        impl TableChanges {
            pub fn is_empty(&self) -> bool {
                true $(&& self.$field.is_empty())*
            }

            /// Puts `older` under these changes (newer values win).
            pub fn absorb_older(&mut self, older: TableChanges) {
                $(for (k, v) in older.$field {
                    self.$field.entry(k).or_insert(v);
                })*
            }

            /// Writes every change inside the database writer's transaction.
            pub fn write(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
                $(write::<$table>(txn, &self.$field)?;)*
                Ok(())
            }
        }

        $(impl $table {
            #[allow(dead_code)]
            fn of(all: &TableChanges) -> &Changes<$table> {
                &all.$field
            }
            #[allow(dead_code)]
            fn of_mut(all: &mut TableChanges) -> &mut Changes<$table> {
                &mut all.$field
            }
        })*

        /// The contents of a snapshot: every replicated table's rows.
        #[derive(Debug, Default, Serialize, Deserialize)]
        pub(crate) struct SnapshotBody {
            $(pub $field: Rows<$table>,)*
        }

        impl SnapshotBody {
            /// Every table, from one read transaction.
            pub fn read(read: &ReadTransaction) -> Result<SnapshotBody, StoreError> {
                Ok(SnapshotBody { $($field: dump::<$table>(read)?,)* })
            }

            /// Replaces every table with the snapshot's rows.
            pub fn install(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
                $(replace::<$table>(txn, &self.$field)?;)*
                Ok(())
            }
        }

        /// Creates every replicated table.
        pub(crate) fn create_all(txn: &WriteTransaction) -> Result<(), StoreError> {
            $(txn.open_table($table::DEF)?;)*
            Ok(())
        }
    };
}

/// Implements [`Table`] for a table of byte values.
macro_rules! bytes_table {
    ($table:ident, $key:ty, $redb_key:ty, $name:literal, |$k:ident| $borrow:expr, |$rk:ident| $own:expr) => {
        impl Table for $table {
            type Key = $key;
            type Value = ByteBuf;
            type K = $redb_key;
            type V = &'static [u8];
            const DEF: TableDefinition<'static, $redb_key, &'static [u8]> =
                TableDefinition::new($name);
            fn borrow_key($k: &$key) -> Borrowed<'_, $redb_key> {
                $borrow
            }
            fn borrow_value(v: &ByteBuf) -> &[u8] {
                v
            }
            fn owned($rk: Borrowed<'_, $redb_key>, v: &[u8]) -> ($key, ByteBuf) {
                ($own, ByteBuf::from(v))
            }
            fn changes(all: &TableChanges) -> &Changes<Self> {
                Self::of(all)
            }
            fn changes_mut(all: &mut TableChanges) -> &mut Changes<Self> {
                Self::of_mut(all)
            }
        }
    };
}

/// Cluster members: node id -> encoded member record (addresses, voter flag), as of the last
/// applied membership entry.
pub(crate) struct Members;
bytes_table!(Members, u64, u64, "members", |k| *k, |k| k);

/// The user key-value space.
pub(crate) struct Kv;
bytes_table!(Kv, String, &'static str, "kv", |k| k.as_str(), |k| k
    .to_string());

/// Pipeline name -> encoded pipeline record (spec, version, desired state).
pub(crate) struct Pipelines;
bytes_table!(
    Pipelines,
    String,
    &'static str,
    "pipelines",
    |k| k.as_str(),
    |k| k.to_string()
);

/// (pipeline, partition) -> encoded checkpoint (source positions, epoch, owner).
pub(crate) struct Checkpoints;
bytes_table!(
    Checkpoints,
    (String, u32),
    (&'static str, u32),
    "checkpoints",
    |k| (k.0.as_str(), k.1),
    |k| (k.0.to_string(), k.1)
);

/// (pipeline, partition) -> encoded `PartitionMove`: a pending hand-off, or the last move.
pub(crate) struct Moves;
bytes_table!(
    Moves,
    (String, u32),
    (&'static str, u32),
    "moves",
    |k| (k.0.as_str(), k.1),
    |k| (k.0.to_string(), k.1)
);

/// Members being drained: node id -> nothing (present: draining).
pub(crate) struct Draining;
bytes_table!(Draining, u64, u64, "draining", |k| *k, |k| k);

/// A table keyed by (pipeline, partition) with a number for each.
macro_rules! partition_number_table {
    ($t:ident, $name:literal) => {
        impl Table for $t {
            type Key = (String, u32);
            type Value = u64;
            type K = (&'static str, u32);
            type V = u64;
            const DEF: TableDefinition<'static, (&'static str, u32), u64> =
                TableDefinition::new($name);
            fn borrow_key(k: &(String, u32)) -> (&str, u32) {
                (k.0.as_str(), k.1)
            }
            fn borrow_value(v: &u64) -> u64 {
                *v
            }
            fn owned(k: (&str, u32), v: u64) -> ((String, u32), u64) {
                ((k.0.to_string(), k.1), v)
            }
            fn changes(all: &TableChanges) -> &Changes<Self> {
                Self::of(all)
            }
            fn changes_mut(all: &mut TableChanges) -> &mut Changes<Self> {
                Self::of_mut(all)
            }
        }
    };
}

/// (pipeline, partition) -> the node it is assigned to.
pub(crate) struct Assignments;
partition_number_table!(Assignments, "assignments");

/// (pipeline, partition) -> the session of the job that may commit its checkpoints (a
/// fencing token: a job opens a session before it reads where to resume, and a checkpoint
/// of an older session is refused).
pub(crate) struct Sessions;
partition_number_table!(Sessions, "sessions");

replicated_tables! {
    members: Members,
    kv: Kv,
    pipelines: Pipelines,
    assignments: Assignments,
    checkpoints: Checkpoints,
    moves: Moves,
    draining: Draining,
    sessions: Sessions,
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    #[test]
    fn changes_write_and_a_snapshot_round_trips_every_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        let mut changes = TableChanges::default();
        changes
            .kv
            .insert("a".into(), Some(ByteBuf::from(b"1".to_vec())));
        changes.kv.insert("gone".into(), None);
        changes.assignments.insert(("p".into(), 3), Some(2));
        changes
            .checkpoints
            .insert(("p".into(), 3), Some(ByteBuf::from(b"cp".to_vec())));
        changes
            .members
            .insert(1, Some(ByteBuf::from(b"m".to_vec())));
        let mut older = TableChanges::default();
        older
            .kv
            .insert("a".into(), Some(ByteBuf::from(b"0".to_vec())));
        older
            .pipelines
            .insert("p".into(), Some(ByteBuf::from(b"spec".to_vec())));
        changes.absorb_older(older);
        assert_eq!(
            changes.kv["a"].as_deref().map(|v| v.as_slice()),
            Some(&b"1"[..])
        );

        let txn = db.begin_write().expect("write");
        create_all(&txn).expect("create");
        changes.write(&txn).expect("write changes");
        txn.commit().expect("commit");

        let read = db.begin_read().expect("read");
        let body = SnapshotBody::read(&read).expect("snapshot");
        assert_eq!(body.kv.len(), 1);
        assert_eq!(body.pipelines.len(), 1);
        assert_eq!(body.assignments, [(("p".to_string(), 3), 2)]);
        assert_eq!(
            scan::<Checkpoints>(&read, ("p", 0)..=("p", u32::MAX))
                .expect("scan")
                .len(),
            1
        );
        assert_eq!(
            get::<Members>(&read, &1)
                .expect("get")
                .as_deref()
                .map(|v| v.as_slice()),
            Some(&b"m"[..])
        );
        drop(read);

        // Installing a snapshot replaces every table.
        let bytes = crate::consensus::encode(&body).expect("encode");
        let back: SnapshotBody = crate::consensus::decode(&bytes).expect("decode");
        let txn = db.begin_write().expect("write");
        let mut more = TableChanges::default();
        more.kv
            .insert("stale".into(), Some(ByteBuf::from(b"x".to_vec())));
        more.write(&txn).expect("write");
        back.install(&txn).expect("install");
        txn.commit().expect("commit");
        let read = db.begin_read().expect("read");
        assert_eq!(get::<Kv>(&read, &"stale".to_string()).expect("get"), None);
        assert!(get::<Kv>(&read, &"a".to_string()).expect("get").is_some());
    }
}
