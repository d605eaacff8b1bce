//! openraft's own storage conformance suite, run against Wire's redb log store and state
//! machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;
use wire_core::consensus::{LogStore, StateMachineStore, StorageError, TypeConfig};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = redb::Database::create(dir.path().join("wire.redb")).expect("database");
        let db = Arc::new(db);
        let (log, sm) = wire_core::consensus::open_stores(db).expect("stores");
        Ok((dir, log, sm))
    }
}

#[test]
fn redb_store_passes_openraft_suite() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
