//! Elasticsearch / OpenSearch: documents through the bulk API (a sink).
//!
//! - Partitioning: each pipeline partition sends its own bulk requests.
//! - Resume position: none (a sink). Document ids come from a field (`id_field`) or from the
//!   record's source position, so records replayed after a restart overwrite the documents
//!   they wrote before instead of adding copies: idempotent, effectively exactly-once.
//! - Delivery: a checkpoint waits until every document before it is acknowledged. Per item
//!   of a bulk answer: retryable failures (429, 503, `es_rejected_execution_exception`) are
//!   sent again with backoff, those items only; permanent ones (a mapping conflict, any
//!   other 4xx) go to the dead-letter sink with the server's reason. A cluster that does not
//!   answer blocks the sink, which retries, rather than dropping anything.
//!
//! It speaks the bulk API over the node's HTTP client (reqwest): one endpoint, whose answer
//! is read item by item here; see `sink.rs`.

pub mod config;
pub mod sink;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "elasticsearch",
    summary: "documents into Elasticsearch or OpenSearch through the bulk API",
    partitioning: "each partition sends its own bulk requests",
    resume: "none (sink only); ids from a field or the source position make replays overwrite",
    delivery: "idempotent writes acknowledged before each checkpoint; per-item retry, permanent item errors to dead letters",
    source: None,
    sink: Some(config::check_sink),
    open_source: None,
    open_sink: Some(sink::open),
    source_config: None,
    sink_config: Some(super::schema::<config::ElasticsearchSinkConfig>),
};
