//! The safe side of the C ABI: the table of live node handles and every node operation as a
//! Rust function returning `Result<_, Failure>`. `ffi.rs` turns C arguments into these calls.
//!
//! A handle given to C is a number, never an address: a freed or made-up handle is looked up
//! and not found, so use after free and double free are reported, never dereferenced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wire_core::kv::Txn;
use wire_core::pipeline::{DesiredState, PipelineSpec};
use wire_core::{Consistency, NodeOptions};

use crate::status::{wire_status, Failure};

/// A node hosted by a C program.
pub struct Hosted {
    node: wire_core::HostedNode,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static HANDLES: Mutex<Option<HashMap<u64, Arc<Hosted>>>> = Mutex::new(None);
static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Stores a hosted node; returns its handle number (never 0, never reused).
pub fn insert(hosted: Hosted) -> u64 {
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock(&HANDLES)
        .get_or_insert_with(HashMap::new)
        .insert(id, Arc::new(hosted));
    id
}

/// The node of a live handle.
pub fn get(id: u64) -> Result<Arc<Hosted>, Failure> {
    lock(&HANDLES)
        .as_ref()
        .and_then(|h| h.get(&id).cloned())
        .ok_or_else(|| {
            Failure::new(
                wire_status::WIRE_ERR_INVALID_HANDLE,
                "not a live wire_node handle (NULL, freed, or never returned by wire_node_start)",
            )
        })
}

/// Removes a handle; the node shuts down once no call uses it any more.
pub fn remove(id: u64) -> Result<Arc<Hosted>, Failure> {
    lock(&HANDLES)
        .as_mut()
        .and_then(|h| h.remove(&id))
        .ok_or_else(|| {
            Failure::new(
                wire_status::WIRE_ERR_INVALID_HANDLE,
                "not a live wire_node handle (already freed, NULL, or never returned by wire_node_start)",
            )
        })
}

/// Node options from JSON or TOML text (the keys of `wire node --config`).
pub fn options(text: &str) -> Result<NodeOptions, Failure> {
    let parsed = if text.trim_start().starts_with('{') {
        NodeOptions::from_json(text)
    } else {
        NodeOptions::from_toml(text)
    };
    parsed.map_err(|e| Failure::from(wire_core::Error::Config(vec![e])))
}

fn spec(text: &str) -> Result<PipelineSpec, Failure> {
    PipelineSpec::parse(text).map_err(|errors| Failure::from(wire_core::Error::InvalidSpec(errors)))
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, Failure> {
    serde_json::to_string(v)
        .map_err(|e| Failure::new(wire_status::WIRE_ERR_INTERNAL, e.to_string()))
}

impl Hosted {
    /// Starts a node (bootstrapping or joining as its options say) on a runtime of its own.
    pub fn start(config: &str) -> Result<Hosted, Failure> {
        let options = options(config)?;
        let threads = options.worker_threads.unwrap_or(2);
        let config = options
            .validate()
            .map_err(|errors| Failure::from(wire_core::Error::Config(errors)))?;
        Ok(Hosted {
            node: wire_core::HostedNode::start(config, threads)?,
        })
    }

    fn block<T, F>(&self, f: impl FnOnce(wire_core::Node) -> F) -> Result<T, Failure>
    where
        F: std::future::Future<Output = wire_core::Result<T>>,
    {
        Ok(self.node.block(f)?)
    }

    pub fn node(&self) -> Result<wire_core::Node, Failure> {
        Ok(self.node.node()?)
    }

    /// Stops the node (pipelines take a final checkpoint). Idempotent.
    pub fn shutdown(&self) -> Result<(), Failure> {
        Ok(self.node.shutdown()?)
    }

    pub fn status(&self) -> Result<String, Failure> {
        json(&self.block(|n| async move { n.cluster().status().await })?)
    }

    pub fn kv_put(&self, key: &str, value: Vec<u8>) -> Result<(), Failure> {
        self.block(|n| async move { n.kv().put(key, value).await })?;
        Ok(())
    }

    pub fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, Failure> {
        self.block(|n| async move { n.kv().get(key, Consistency::default()).await })
    }

    /// Whether the key existed.
    pub fn kv_delete(&self, key: &str) -> Result<bool, Failure> {
        Ok(self
            .block(|n| async move { n.kv().delete(key).await })?
            .deleted)
    }

    /// A page as `GET /kv` answers it.
    pub fn kv_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<String, Failure> {
        if limit == 0 || limit > wire_core::kv::MAX_LIST_LIMIT {
            return Err(Failure::new(
                wire_status::WIRE_ERR_INVALID_ARGUMENT,
                format!(
                    "limit: must be between 1 and {}",
                    wire_core::kv::MAX_LIST_LIMIT
                ),
            ));
        }
        let page = self.block(|n| async move {
            n.kv()
                .list(prefix, after, limit, Consistency::default())
                .await
        })?;
        json(&wire_core::http::kv_page_json(page))
    }

    /// A transaction given as the JSON of `POST /kv/txn`; whether its compares held.
    pub fn kv_txn(&self, body: &str) -> Result<bool, Failure> {
        let txn: Txn = wire_core::http::kv_txn_from_json(body)
            .map_err(|e| Failure::new(wire_status::WIRE_ERR_INVALID_ARGUMENT, e))?;
        Ok(self
            .block(|n| async move { n.kv().txn(txn).await })?
            .succeeded)
    }

    /// Creates or updates a pipeline from JSON or YAML; answers as `PUT /pipelines/{name}`.
    pub fn pipeline_apply(&self, text: &str) -> Result<String, Failure> {
        let spec = spec(text)?;
        json(&self.block(|n| async move { n.pipelines().update(spec, true).await })?)
    }

    pub fn pipeline_list(&self) -> Result<String, Failure> {
        json(&self.block(|n| async move { n.pipelines().list(Consistency::default()).await })?)
    }

    pub fn pipeline_status(&self, name: &str) -> Result<String, Failure> {
        match self
            .block(|n| async move { n.pipelines().status(name, Consistency::default()).await })?
        {
            Some(status) => json(&status),
            None => Err(Failure::from(wire_core::Error::NotFound(format!(
                "pipeline '{name}'"
            )))),
        }
    }

    pub fn pipeline_set_running(&self, name: &str, running: bool) -> Result<(), Failure> {
        let desired = if running {
            DesiredState::Running
        } else {
            DesiredState::Paused
        };
        self.block(|n| async move { n.pipelines().set_state(name, desired).await })?;
        Ok(())
    }

    pub fn pipeline_delete(&self, name: &str) -> Result<(), Failure> {
        self.block(|n| async move { n.pipelines().delete(name).await })
    }
}

impl Drop for Hosted {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
