//! A node with a runtime of its own, for hosts that are not async (the Python module, the C
//! ABI): start it, run calls on it from any thread, stop it once. Every call after the stop
//! answers [`Error::Shutdown`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Error, Node, NodeConfig, Result};

/// How long stopping waits for the runtime's last tasks.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Running {
    node: Node,
    runtime: Arc<tokio::runtime::Runtime>,
}

/// A started node and the runtime it runs on.
pub struct HostedNode {
    running: Mutex<Option<Running>>,
}

impl HostedNode {
    /// Starts a node (bootstrapping or joining as `config` says) on a new runtime of
    /// `worker_threads` threads; returns once it serves.
    pub fn start(config: NodeConfig, worker_threads: usize) -> Result<HostedNode> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("wire-node")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                context: "starting the node's runtime".into(),
                source,
            })?;
        let node = runtime.block_on(Node::start(config))?;
        Ok(HostedNode {
            running: Mutex::new(Some(Running {
                node,
                runtime: Arc::new(runtime),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> Result<Running> {
        self.lock().clone().ok_or(Error::Shutdown)
    }

    /// The node, while it runs.
    pub fn node(&self) -> Result<Node> {
        Ok(self.running()?.node)
    }

    /// Whether [`HostedNode::shutdown`] was called.
    pub fn stopped(&self) -> bool {
        self.lock().is_none()
    }

    /// Runs `f` on the node's runtime and waits for it. Never call it from a task of that
    /// runtime.
    pub fn block<T, F>(&self, f: impl FnOnce(Node) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let r = self.running()?;
        r.runtime.block_on(f(r.node.clone()))
    }

    /// Stops the node (every pipeline job takes a final checkpoint, then Raft and storage
    /// close) and its runtime. Idempotent: later calls return at once.
    pub fn shutdown(&self) -> Result<()> {
        let Some(Running { node, runtime }) = self.lock().take() else {
            return Ok(());
        };
        let result = runtime.block_on(node.shutdown());
        drop(node);
        if let Ok(rt) = Arc::try_unwrap(runtime) {
            rt.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
        result
    }
}

impl Drop for HostedNode {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
