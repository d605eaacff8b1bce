//! The MongoDB sink: buffers documents, upserts them by `_id` (an unordered `insert`, then
//! an unordered `update` for those that exist) when the batch is full, old, or a checkpoint
//! comes, and reads the answers per document.

use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;

use super::config::MongoSinkConfig;
use super::convert::{get_path, to_document};
use super::source::{client, transient, TRANSIENT_CODES};
use crate::connectors::{derived_id, output_ordinals, Retry, Sink, SinkContext};
use crate::pipeline::transform::Record;

const DEFAULT_MAX_DOCS: usize = 1000;
/// Bytes per command, well inside MongoDB's 48 MB message limit.
const MAX_BYTES: usize = 8 * 1024 * 1024;
/// MongoDB's limit for one document.
const MAX_DOCUMENT: usize = 16 * 1024 * 1024;

/// A document waiting to be written.
struct Pending {
    record: Record,
    id: Bson,
    doc: Document,
}

pub struct MongoSink {
    runtime: tokio::runtime::Handle,
    config: MongoSinkConfig,
    client: Option<Client>,
    max_docs: usize,
    flush_interval: Option<Duration>,
    pending: Vec<Pending>,
    pending_bytes: usize,
    oldest: Option<Instant>,
    rejected: Vec<(Record, String)>,
}

/// Opens a MongoDB sink partition. Called on the node's runtime, whose handle the sink
/// thread uses; the server is reached on the first write.
pub fn open(
    config: &serde_json::Value,
    _ctx: &SinkContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Sink>> {
    let c: MongoSinkConfig = crate::connectors::typed(config)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the mongodb sink must be opened on the node's runtime".to_string())?;
    let flush_interval = c
        .flush_interval
        .as_deref()
        .map(crate::pipeline::spec::parse_duration)
        .transpose()?;
    Ok(Box::new(MongoSink {
        runtime,
        max_docs: c.max_docs.unwrap_or(DEFAULT_MAX_DOCS),
        config: c,
        client: None,
        flush_interval,
        pending: Vec::new(),
        pending_bytes: 0,
        oldest: None,
        rejected: Vec::new(),
    }))
}

/// MongoDB's duplicate key error.
const DUPLICATE_KEY: i32 = 11000;

/// The per-document errors of a write command's reply (index, code, message), if the
/// reply accounts for all `sent` documents (written count plus errors).
fn write_errors(reply: &Document, sent: usize) -> Option<Vec<(usize, i32, String)>> {
    let int = |v: &Bson| v.as_i32().map(i64::from).or(v.as_i64());
    let errors: Vec<(usize, i32, String)> = match reply.get_array("writeErrors") {
        Ok(a) => a
            .iter()
            .filter_map(Bson::as_document)
            .map(|e| {
                let index = e.get("index").and_then(int).unwrap_or(-1);
                let code = e.get_i32("code").unwrap_or(0);
                let message = e.get_str("errmsg").unwrap_or("").to_string();
                (usize::try_from(index).unwrap_or(usize::MAX), code, message)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let written = reply.get("n").and_then(int).unwrap_or(0);
    let complete = usize::try_from(written).is_ok_and(|w| w + errors.len() == sent)
        && errors.iter().all(|(i, _, _)| *i < sent);
    complete.then_some(errors)
}

/// How the server answered for the documents of one command.
enum Answer {
    /// Per document, by its index in the command: the server's error code and message.
    Complete(Vec<(usize, i32, String)>),
    /// The answer does not account for every document (a server that stops at the first
    /// refusal, as FerretDB does): which ones were written is unknown.
    Incomplete,
}

impl MongoSink {
    /// The document for `r`, with its `_id`.
    fn prepare(&self, r: &Record, nth: usize) -> Result<(Bson, Document, usize), String> {
        let mut doc = to_document(&r.value)?;
        if let Some(key) = doc.keys().find(|k| k.starts_with('$')) {
            return Err(format!(
                "a stored document's top-level field names cannot start with $ ('{key}')"
            ));
        }
        let id = match &self.config.id_field {
            Some(path) => get_path(&doc, path)
                .cloned()
                .ok_or_else(|| format!("the id field '{path}' is missing"))?,
            None => match doc.get("_id") {
                Some(id) => id.clone(),
                None => Bson::String(derived_id(r, nth)),
            },
        };
        doc.insert("_id", id.clone());
        let size = mongodb::bson::to_vec(&doc)
            .map_err(|e| e.to_string())?
            .len();
        if size > MAX_DOCUMENT {
            return Err(format!(
                "the document is {size} bytes, over MongoDB's limit of {MAX_DOCUMENT}"
            ));
        }
        Ok((id, doc, size))
    }

    fn add(&mut self, r: &Record, nth: usize) {
        match self.prepare(r, nth) {
            Ok((id, doc, size)) => {
                self.pending_bytes += size;
                self.pending.push(Pending {
                    record: r.clone(),
                    id,
                    doc,
                });
                self.oldest.get_or_insert_with(Instant::now);
            }
            Err(e) => self.rejected.push((r.clone(), e)),
        }
    }

    fn due(&self) -> bool {
        self.pending.len() >= self.max_docs
            || self.pending_bytes >= MAX_BYTES
            || matches!((self.oldest, self.flush_interval), (Some(t), Some(i)) if t.elapsed() >= i)
    }

    /// Runs one write command.
    fn command(&mut self, command: Document) -> Result<Document, String> {
        if self.client.is_none() {
            self.client = Some(client(&self.runtime, &self.config.uri)?);
        }
        let Some(client) = self.client.clone() else {
            return Err("not connected".into());
        };
        let db = client.database(&self.config.database);
        self.runtime
            .block_on(async { db.run_command(command).await })
            .map_err(|e| {
                if transient(&e) {
                    format!("the server did not answer: {e}")
                } else {
                    format!("the write command failed: {e}")
                }
            })
    }

    /// Upserts `docs`: one unordered `insert` (new documents, the usual case, go in at
    /// once), then one unordered `update` replacing by `_id` those that exist already
    /// (duplicate key). Two commands rather than one `update` of all: servers that scan for
    /// each `_id` of an update (FerretDB) stay fast, and a replay costs one more round trip.
    fn send(&mut self, docs: &[Pending]) -> Result<Answer, String> {
        let insert = doc! {
            "insert": self.config.collection.as_str(),
            "documents": docs.iter().map(|p| p.doc.clone()).collect::<Vec<_>>(),
            "ordered": false,
        };
        let reply = self.command(insert)?;
        let Some(errors) = write_errors(&reply, docs.len()) else {
            return Ok(Answer::Incomplete);
        };
        let (existing, mut refused): (Vec<_>, Vec<_>) = errors
            .into_iter()
            .partition(|(_, code, _)| *code == DUPLICATE_KEY);
        if !existing.is_empty() {
            let updates: Vec<Document> = existing
                .iter()
                .map(|(i, _, _)| {
                    let p = &docs[*i];
                    doc! {"q": {"_id": p.id.clone()}, "u": p.doc.clone(), "upsert": true}
                })
                .collect();
            let update = doc! {
                "update": self.config.collection.as_str(),
                "updates": updates,
                "ordered": false,
            };
            let reply = self.command(update)?;
            let Some(errors) = write_errors(&reply, existing.len()) else {
                return Ok(Answer::Incomplete);
            };
            refused.extend(
                errors
                    .into_iter()
                    .map(|(j, code, message)| (existing[j].0, code, message)),
            );
        }
        Ok(Answer::Complete(refused))
    }

    /// Writes everything pending until each document is stored or refused for good.
    fn flush(&mut self) -> crate::connectors::ConnectorResult<()> {
        let mut pace = Retry::new();
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.oldest = None;
        // One command per chunk. A chunk whose answer is incomplete is split in two and
        // sent again at once, down to one document, whose answer is exact (upserts by _id
        // make writing a document twice harmless).
        let mut todo: Vec<Vec<Pending>> = if pending.is_empty() {
            Vec::new()
        } else {
            vec![pending]
        };
        while !todo.is_empty() {
            let mut retry = Vec::new();
            let mut why = None;
            for mut chunk in std::mem::take(&mut todo) {
                match self.send(&chunk) {
                    Ok(Answer::Complete(errors)) => {
                        let mut refused: Vec<Option<(i32, String)>> = vec![None; chunk.len()];
                        for (i, code, message) in errors {
                            refused[i] = Some((code, message));
                        }
                        let mut again = Vec::new();
                        for (p, refused) in chunk.into_iter().zip(refused) {
                            match refused {
                                None => {}
                                Some((code, message)) if TRANSIENT_CODES.contains(&code) => {
                                    why = Some(format!("code {code}: {message}"));
                                    again.push(p);
                                }
                                Some((code, message)) => self.rejected.push((
                                    p.record,
                                    format!(
                                        "mongodb refused the document (code {code}): {message}"
                                    ),
                                )),
                            }
                        }
                        if !again.is_empty() {
                            retry.push(again);
                        }
                    }
                    Ok(Answer::Incomplete) if chunk.len() > 1 => {
                        let back = chunk.split_off(chunk.len() / 2);
                        todo.push(chunk);
                        todo.push(back);
                    }
                    Ok(Answer::Incomplete) => {
                        why = Some("an answer that does not account for the document".into());
                        retry.push(chunk);
                    }
                    // The server is down or overloaded: send the same documents again.
                    Err(e) => {
                        why = Some(e);
                        retry.push(chunk);
                    }
                }
            }
            if !retry.is_empty() {
                let left: usize = retry.iter().map(Vec::len).sum();
                pace.wait("mongodb", left, &why.unwrap_or_default())?;
                todo.extend(retry);
            }
        }
        Ok(())
    }
}

impl Sink for MongoSink {
    fn write(&mut self, records: &[Record]) -> crate::connectors::ConnectorResult<()> {
        for (nth, r) in output_ordinals(records) {
            self.add(r, nth);
            if self.due() {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn pre_commit(&mut self, _epoch: u64) -> crate::connectors::ConnectorResult<()> {
        self.flush()
    }

    fn take_rejected(&mut self) -> Vec<(Record, String)> {
        std::mem::take(&mut self.rejected)
    }
}
