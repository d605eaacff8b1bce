//! Wire's integration tests, one binary with a module per topic (linking once keeps the
//! suite fast). Multi-node tests start real `wire node` processes on 127.0.0.1.

mod support;

mod bad_input;
mod cli;
mod cluster;
#[cfg(feature = "kafka")]
mod connectors_recovery;
mod discovery;
#[cfg(feature = "kafka")]
mod elasticsearch;
mod examples;
mod failover;
#[cfg(feature = "kafka")]
mod kafka;
mod kv_api;
#[cfg(all(feature = "kafka", feature = "mongodb"))]
mod mongo;
mod pipelines_api;
mod pipelines_durable;
mod pipelines_run;
mod security;
mod storage_suite;
mod tls;
