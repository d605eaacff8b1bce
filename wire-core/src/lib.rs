//! Wire's engine: a node that runs a Raft cluster (openraft, storage in redb), serves a
//! replicated key-value space and cluster management over HTTP, and runs stream-processing
//! pipelines (files, Kafka, Elasticsearch, a generator, stdout; jq and registered
//! transforms) with checkpoints through Raft.
//!
//! ```no_run
//! # async fn run() -> wire_core::Result<()> {
//! let config = wire_core::NodeConfig::single("/tmp/wire-doc", 1);
//! let node = wire_core::Node::start(config).await?;
//! node.kv().put("greeting", b"hello".to_vec()).await?;
//! assert_eq!(node.kv().get("greeting", wire_core::Consistency::Linearizable).await?, Some(b"hello".to_vec()));
//! node.shutdown().await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod consensus;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod hash;
pub mod hosted;
pub mod http;
pub mod kv;
pub mod logging;
pub mod node;
pub mod ops;
pub mod pipeline;
mod server;
pub mod tls;

pub use config::{NodeConfig, NodeOptions};
pub use error::{Error, ErrorKind, Result};
pub use hosted::HostedNode;
pub use node::{Consistency, Node, NodeStatus};
