//! Key-value operations, as every face (HTTP, CLI, C, Python) calls them: keys and values
//! validated, writes through Raft with typed answers, reads at the consistency asked for.

use super::unexpected;
use crate::consensus::client::{ConsensusClient, Consistency};
use crate::consensus::{Command, CommandResponse, KvPage};
use crate::kv::{self, KvDeleted, KvWritten, Txn, TxnOutcome};
use crate::Result;

/// The key-value service of a node.
#[derive(Clone)]
pub struct KvOps {
    client: ConsensusClient,
}

impl KvOps {
    pub fn new(client: ConsensusClient) -> KvOps {
        KvOps { client }
    }

    /// Sets a user key.
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<KvWritten> {
        kv::validate_key(key)?;
        kv::validate_value(&value)?;
        let outcome = self
            .client
            .write(Command::KvPut {
                key: key.to_string(),
                value,
            })
            .await?;
        match outcome.response {
            CommandResponse::KvPut { existed } => Ok(KvWritten {
                index: outcome.index,
                existed,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a user key.
    pub async fn delete(&self, key: &str) -> Result<KvDeleted> {
        kv::validate_key(key)?;
        let outcome = self
            .client
            .write(Command::KvDelete {
                key: key.to_string(),
            })
            .await?;
        match outcome.response {
            CommandResponse::KvDelete { existed } => Ok(KvDeleted {
                index: outcome.index,
                deleted: existed,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Applies a transaction atomically; the outcome says whether the compares held.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome> {
        txn.validate()?;
        let outcome = self.client.write(Command::KvTxn(txn)).await?;
        match outcome.response {
            CommandResponse::KvTxn { succeeded } => Ok(TxnOutcome {
                succeeded,
                index: outcome.index,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Reads a user key at the given consistency.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Vec<u8>>> {
        kv::validate_key(key)?;
        self.client.read_barrier(consistency).await?;
        self.client.state().kv_get(key)
    }

    /// Lists keys with `prefix` after `after`, at most `limit`; also says whether more follow.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<KvPage> {
        self.client.read_barrier(consistency).await?;
        self.client.state().kv_list(prefix, after, limit)
    }
}
