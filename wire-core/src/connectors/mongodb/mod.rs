//! MongoDB (the official driver): collections as a source, a collection as a sink.
//!
//! - Partitioning: each collection is a split; the configured collections are dealt over
//!   the pipeline's partitions (the i-th to partition i mod n). A sink partition writes its
//!   own batches.
//! - Resume position: a token per collection, in Wire's checkpoints. `mode: change_stream`
//!   (replica sets and sharded clusters) first copies the collection ordered by `_id`, then
//!   follows the change stream opened before the copy began; its token is the last `_id`
//!   copied and the stream's resume token. `mode: poll` (servers without change streams,
//!   such as FerretDB or a standalone `mongod`) reads the documents whose `poll_field` (and
//!   then `_id`) is past the last one read, every `poll_interval`; its token is that pair.
//!   Polling sees inserts and updates that move the field forward, not deletes, and misses a
//!   document that commits later with a smaller value than one already read: give it a field
//!   the writers set from a sequence.
//! - Delivery: at-least-once from the source (a restart replays what came after the last
//!   checkpoint); the sink upserts by `_id` (from the document, `id_field`, or derived from
//!   the record's source position), so a replay overwrites instead of adding copies:
//!   idempotent, effectively exactly-once. A checkpoint waits until every write before it
//!   was acknowledged; a document the server refuses goes to the dead-letter sink with the
//!   server's reason; a server that does not answer blocks the sink, which retries.
//!
//! Documents become records as relaxed extended JSON (`{"$oid": ...}`, `{"$date": ...}`), and
//! records become documents through the same notation, so MongoDB → Kafka → MongoDB keeps
//! the types. The record key is the document's `_id` (a string as is, an ObjectId as hex).
//! Tested against FerretDB 1.24 (SQLite), which has no change streams, scans the collection
//! for each `_id` an `update` names (so replays there are slow; inserts are fast) and hangs
//! on an `update` of 100 or more existing documents: give its sinks `max_docs` below 100.
//!
//! TLS (`tls=true` in the URI) goes through rustls; `mongodb+srv://` URIs are refused: this
//! build leaves out the DNS SRV resolver (list the hosts in a `mongodb://` URI instead).

pub mod config;
pub mod convert;
pub mod sink;
pub mod source;

use super::ConnectorInfo;

pub const INFO: ConnectorInfo = ConnectorInfo {
    name: "mongodb",
    summary: "documents from MongoDB collections (change streams or polling) and into a collection",
    partitioning: "one split per collection, dealt over the partitions",
    resume: "a token per collection: the change stream's resume token, or the last (field, _id) polled",
    delivery: "at-least-once from the source; the sink upserts by _id (idempotent), refused documents to dead letters",
    source: Some(config::check_source),
    sink: Some(config::check_sink),
    open_source: Some(source::open),
    open_sink: Some(sink::open),
    source_config: Some(super::schema::<config::MongoSourceConfig>),
    sink_config: Some(super::schema::<config::MongoSinkConfig>),
};
