//! The MongoDB source: per collection, a copy in (field, `_id`) order, then either the
//! change stream opened before the copy (`change_stream`) or the same query again every
//! `poll_interval` for what moved past the last document read (`poll`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document, RawDocumentBuf};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::options::FullDocumentType;
use mongodb::{Client, Collection};

use super::config::{Mode, MongoSourceConfig};
use super::convert::{from_token_text, get_path, key_of, to_val, token_text};
use crate::connectors::{BadInput, ReadState, Source, SourceBatch, SourceContext};
use crate::pipeline::checkpoint::Offset;
use crate::pipeline::transform::{Position, Record};

const DEFAULT_BATCH: u32 = 1000;
const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// How long a change stream's read waits for new events.
const STREAM_WAIT: Duration = Duration::from_millis(200);
/// How long a server may stay unreachable before the source fails (and its job restarts
/// from the last checkpoint): as long as a sink retries.
const GIVE_UP_AFTER: Duration = crate::connectors::Retry::GIVE_UP_AFTER;
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where a collection's reading stands; its token is what a checkpoint keeps.
#[derive(Debug, Clone, Default, PartialEq)]
struct Place {
    /// The (poll field value, `_id`) of the last document copied or polled.
    after: Option<(Option<Bson>, Bson)>,
    /// The change stream's resume token (`change_stream` mode).
    stream: Option<Bson>,
    /// The copy is complete: follow the stream.
    copied: bool,
}

impl Place {
    fn token(&self) -> String {
        let mut d = Document::new();
        if let Some((field, id)) = &self.after {
            let mut after = Document::new();
            if let Some(f) = field {
                after.insert("field", f.clone());
            }
            after.insert("id", id.clone());
            d.insert("after", after);
        }
        if let Some(s) = &self.stream {
            d.insert("stream", s.clone());
        }
        if self.copied {
            d.insert("copied", true);
        }
        token_text(Bson::Document(d))
    }

    fn parse(text: &str) -> Result<Place, String> {
        let Bson::Document(d) = from_token_text(text)? else {
            return Err("not a document".into());
        };
        let after = match d.get_document("after") {
            Ok(a) => Some((
                a.get("field").cloned(),
                a.get("id").cloned().ok_or("no id")?,
            )),
            Err(_) => None,
        };
        Ok(Place {
            after,
            stream: d.get("stream").cloned(),
            copied: d.get_bool("copied").unwrap_or(false),
        })
    }
}

struct Split {
    name: Arc<str>,
    place: Place,
    /// Whether `place` says anything a checkpoint should keep.
    started: bool,
    /// Caught up: read again after this.
    idle_until: Option<Instant>,
    /// `tail: false` and copied: nothing more to read.
    done: bool,
    stream: Option<ChangeStream<ChangeStreamEvent<Document>>>,
}

pub struct MongoSource {
    runtime: tokio::runtime::Handle,
    config: MongoSourceConfig,
    filter: Document,
    step: Arc<str>,
    client: Option<Client>,
    splits: Vec<Split>,
    next: usize,
    batch: u32,
    poll_interval: Duration,
    failing_since: Option<Instant>,
    last_warning: Option<Instant>,
}

/// Opens a MongoDB source partition: its share of the collections, each resumed from its
/// token. Called on the node's runtime, whose handle the source thread uses; the server is
/// reached on the first read.
pub fn open(
    config: &serde_json::Value,
    ctx: &SourceContext<'_>,
) -> crate::connectors::ConnectorResult<Box<dyn Source>> {
    let c: MongoSourceConfig = crate::connectors::typed(config)?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the mongodb source must be opened on the node's runtime".to_string())?;
    let filter = match &c.filter {
        Some(f) => super::convert::document(&serde_json::Value::Object(f.clone()))?,
        None => Document::new(),
    };
    let mut splits = Vec::new();
    for (i, name) in c.collections.iter().enumerate() {
        if i as u32 % ctx.partitions.max(1) != ctx.partition {
            continue;
        }
        let (place, started) = match ctx.resume.get(name) {
            Some(o) => {
                let text = o
                    .token()
                    .ok_or_else(|| format!("collection {name}: the checkpoint holds a number"))?;
                let place = Place::parse(text)
                    .map_err(|e| format!("collection {name}: unreadable checkpoint token: {e}"))?;
                (place, true)
            }
            None => (Place::default(), false),
        };
        splits.push(Split {
            name: name.as_str().into(),
            place,
            started,
            idle_until: None,
            done: false,
            stream: None,
        });
    }
    let poll_interval = c
        .poll_interval
        .as_deref()
        .map(crate::pipeline::spec::parse_duration)
        .transpose()?
        .unwrap_or(DEFAULT_POLL);
    Ok(Box::new(MongoSource {
        runtime,
        batch: c.batch_size.unwrap_or(DEFAULT_BATCH),
        config: c,
        filter,
        step: ctx.step.into(),
        client: None,
        splits,
        next: 0,
        poll_interval,
        failing_since: None,
        last_warning: None,
    }))
}

/// Opens a client for `uri` (it connects lazily; a server that is down shows on the first
/// command).
pub fn client(runtime: &tokio::runtime::Handle, uri: &str) -> Result<Client, String> {
    runtime.block_on(async {
        let mut options = mongodb::options::ClientOptions::parse(uri)
            .await
            .map_err(|e| format!("mongodb: the URI: {e}"))?;
        options.app_name.get_or_insert_with(|| "wire".to_string());
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        Client::with_options(options).map_err(|e| format!("mongodb: {e}"))
    })
}

/// Whether an error may pass by itself (the server is unreachable, restarting, or stepping
/// down), so the same request is worth sending again.
pub fn transient(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => true,
        ErrorKind::Command(c) => TRANSIENT_CODES.contains(&c.code),
        _ => false,
    }
}

/// Server error codes that say "try again": host unreachable or not found, network timeout,
/// shutting down, interrupted, not primary, node recovering, exceeded time limit, write
/// conflict, and Cosmos DB's request rate too large.
pub const TRANSIENT_CODES: &[i32] = &[
    6, 7, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436, 16500,
];

/// Why a change stream cannot be opened here, in words a user can act on.
fn stream_refused(e: &mongodb::error::Error) -> Option<String> {
    use mongodb::error::ErrorKind;
    match &*e.kind {
        // Not implemented (FerretDB), or only on replica sets (a standalone mongod).
        ErrorKind::Command(c) if matches!(c.code, 238 | 40573 | 40324) => Some(format!(
            "this server has no change streams ({}): use mode: poll",
            c.message
        )),
        _ => None,
    }
}

enum Failure {
    /// Try again shortly.
    Transient(String),
    /// The source cannot go on.
    Fatal(String),
}

impl From<mongodb::error::Error> for Failure {
    fn from(e: mongodb::error::Error) -> Self {
        if let Some(why) = stream_refused(&e) {
            Failure::Fatal(why)
        } else if transient(&e) {
            Failure::Transient(e.to_string())
        } else {
            Failure::Fatal(e.to_string())
        }
    }
}

/// What one read of a split gave.
struct Got {
    records: Vec<Record>,
    bad: Vec<BadInput>,
    /// Nothing more for now.
    caught_up: bool,
}

impl MongoSource {
    fn collection(&self, name: &str) -> Result<Collection<RawDocumentBuf>, Failure> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => return Err(Failure::Transient("not connected".into())),
        };
        Ok(client.database(&self.config.database).collection(name))
    }

    fn poll_field(&self) -> Option<&str> {
        match self.config.mode {
            Mode::Poll => self.config.poll_field.as_deref().filter(|f| *f != "_id"),
            Mode::ChangeStream => None,
        }
    }

    /// The next documents of split `i` after its place, in (field, `_id`) order.
    fn scan(&mut self, i: usize, max: usize) -> Result<Got, Failure> {
        let field = self.poll_field().map(str::to_string);
        let coll = self.collection(&self.splits[i].name)?;
        let limit = (max as u32).clamp(1, self.batch);
        let mut conditions = Vec::new();
        if !self.filter.is_empty() {
            conditions.push(self.filter.clone());
        }
        if let Some(f) = &field {
            conditions.push(doc! { f.as_str(): {"$exists": true} });
        }
        match (&self.splits[i].place.after, &field) {
            (Some((_, id)), None) => conditions.push(doc! {"_id": {"$gt": id.clone()}}),
            (Some((Some(v), id)), Some(f)) => conditions.push(doc! {"$or": [
                { f.as_str(): {"$gt": v.clone()} },
                { f.as_str(): v.clone(), "_id": {"$gt": id.clone()} },
            ]}),
            _ => {}
        }
        let filter = match conditions.len() {
            0 => Document::new(),
            1 => conditions.remove(0),
            _ => doc! {"$and": conditions},
        };
        let sort = match &field {
            Some(f) => doc! { f.as_str(): 1, "_id": 1 },
            None => doc! {"_id": 1},
        };
        let raws: Vec<RawDocumentBuf> = self.runtime.block_on(async {
            let mut cursor = coll
                .find(filter)
                .sort(sort)
                .limit(i64::from(limit))
                .batch_size(limit)
                .await?;
            let mut out = Vec::new();
            while cursor.advance().await? {
                out.push(cursor.current().to_raw_document_buf());
            }
            Ok::<_, mongodb::error::Error>(out)
        })?;
        let caught_up = raws.len() < limit as usize;
        let mut got = Got {
            records: Vec::with_capacity(raws.len()),
            bad: Vec::new(),
            caught_up,
        };
        let split = self.splits[i].name.clone();
        for raw in raws {
            let (doc, why) = match Document::try_from(raw.as_ref()) {
                Ok(d) => (Some(d), None),
                Err(e) => (None, Some(format!("an unreadable document: {e}"))),
            };
            let id = match &doc {
                Some(d) => d.get("_id").cloned(),
                None => raw
                    .get("_id")
                    .ok()
                    .flatten()
                    .and_then(|v| Bson::try_from(v.to_raw_bson()).ok()),
            };
            let Some(id) = id else {
                return Err(Failure::Fatal(format!(
                    "collection {split}: a document without a readable _id"
                )));
            };
            let field_value = match (&field, &doc) {
                (Some(f), Some(d)) => get_path(d, f).cloned(),
                _ => None,
            };
            let place = &mut self.splits[i].place;
            place.after = Some((field_value, id.clone()));
            self.splits[i].started = true;
            let position = Position {
                source: self.step.clone(),
                split: split.clone(),
                offset: Offset::Token(self.splits[i].place.token()),
            };
            let value = match (doc, why) {
                (Some(d), _) if self.config.mode == Mode::ChangeStream => {
                    to_val(Bson::Document(doc! {
                        "operationType": "snapshot",
                        "ns": {"db": self.config.database.as_str(), "coll": &*split},
                        "documentKey": {"_id": id.clone()},
                        "fullDocument": d,
                    }))
                }
                (Some(d), _) => to_val(Bson::Document(d)),
                (None, Some(why)) => Err(why),
                (None, None) => Err("an unreadable document".into()),
            };
            match value {
                Ok(value) => {
                    let mut r = Record::new(value, position);
                    r.key = Some(key_of(&id));
                    got.records.push(r);
                }
                Err(reason) => got.bad.push(BadInput {
                    raw: raw.into_bytes(),
                    position,
                    reason,
                }),
            }
        }
        Ok(got)
    }

    /// Split `i`'s change stream, opened after its token (or now, to start).
    fn ensure_stream(&mut self, i: usize) -> Result<(), Failure> {
        if self.splits[i].stream.is_some() {
            return Ok(());
        }
        let coll = self
            .collection(&self.splits[i].name)?
            .clone_with_type::<Document>();
        let token = match &self.splits[i].place.stream {
            Some(t) => Some(
                mongodb::bson::from_bson::<ResumeToken>(t.clone())
                    .map_err(|e| Failure::Fatal(format!("an unreadable resume token: {e}")))?,
            ),
            None => None,
        };
        let stream = self.runtime.block_on(async {
            let mut watch = coll
                .watch()
                .full_document(FullDocumentType::UpdateLookup)
                .max_await_time(STREAM_WAIT);
            if let Some(t) = token {
                watch = watch.resume_after(t);
            }
            watch.await
        })?;
        let split = &mut self.splits[i];
        if split.place.stream.is_none() {
            // Opened before the copy: every change after it begins is in the stream.
            let token = stream
                .resume_token()
                .ok_or_else(|| Failure::Transient("the change stream gave no token yet".into()))?;
            split.place.stream = Some(
                mongodb::bson::to_bson(&token)
                    .map_err(|e| Failure::Fatal(format!("a resume token: {e}")))?,
            );
            split.started = true;
        }
        split.stream = Some(stream);
        Ok(())
    }

    /// The next events of split `i`'s change stream.
    fn follow(&mut self, i: usize, max: usize) -> Result<Got, Failure> {
        self.ensure_stream(i)?;
        let split = self.splits[i].name.clone();
        let mut got = Got {
            records: Vec::new(),
            bad: Vec::new(),
            caught_up: false,
        };
        let Some(mut stream) = self.splits[i].stream.take() else {
            return Ok(got);
        };
        let limit = max.clamp(1, self.batch as usize);
        while got.records.len() + got.bad.len() < limit {
            let event = match self.runtime.block_on(stream.next_if_any()) {
                Ok(Some(e)) => e,
                Ok(None) => {
                    got.caught_up = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let token = mongodb::bson::to_bson(&event.id)
                .map_err(|e| Failure::Fatal(format!("a resume token: {e}")))?;
            self.splits[i].place.stream = Some(token);
            let position = Position {
                source: self.step.clone(),
                split: split.clone(),
                offset: Offset::Token(self.splits[i].place.token()),
            };
            let id = event
                .document_key
                .as_ref()
                .and_then(|k| k.get("_id"))
                .cloned();
            let time = event.wall_time.map(|t| t.timestamp_millis());
            match mongodb::bson::to_bson(&event)
                .map_err(|e| e.to_string())
                .and_then(to_val)
            {
                Ok(value) => {
                    let mut r = Record::new(value, position);
                    r.key = id.as_ref().map(key_of);
                    r.event_time = time;
                    got.records.push(r);
                }
                Err(reason) => got.bad.push(BadInput {
                    raw: format!("{event:?}").into_bytes(),
                    position,
                    reason,
                }),
            }
        }
        self.splits[i].stream = Some(stream);
        Ok(got)
    }

    fn read_split(&mut self, i: usize, max: usize) -> Result<Got, Failure> {
        match self.config.mode {
            Mode::Poll => self.scan(i, max),
            Mode::ChangeStream => {
                self.ensure_stream(i)?;
                if self.splits[i].place.copied {
                    return self.follow(i, max);
                }
                let mut got = self.scan(i, max)?;
                if got.caught_up {
                    self.splits[i].place.copied = true;
                    // Not caught up: the stream is next.
                    got.caught_up = !self.config.tail;
                }
                Ok(got)
            }
        }
    }

    fn failed(&mut self, why: String) -> Result<SourceBatch, String> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GIVE_UP_AFTER {
            return Err(format!("mongodb: unreachable for {GIVE_UP_AFTER:?}: {why}"));
        }
        if self.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(error = %why, "mongodb source: retrying");
            self.last_warning = Some(Instant::now());
        }
        // A stream that failed is opened again from its token.
        for s in &mut self.splits {
            s.stream = None;
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(SourceBatch {
            records: Vec::new(),
            bad: Vec::new(),
            state: ReadState::Idle,
        })
    }
}

impl Source for MongoSource {
    fn read(&mut self, max: usize) -> crate::connectors::ConnectorResult<SourceBatch> {
        if self.client.is_none() {
            match client(&self.runtime, &self.config.uri) {
                Ok(c) => self.client = Some(c),
                Err(e) => return Err(e.into()),
            }
        }
        let n = self.splits.len();
        if n == 0 || self.splits.iter().all(|s| s.done) {
            return Ok(SourceBatch {
                records: Vec::new(),
                bad: Vec::new(),
                state: ReadState::Finished,
            });
        }
        let now = Instant::now();
        let ready = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| !self.splits[i].done && self.splits[i].idle_until.is_none_or(|t| t <= now));
        let Some(i) = ready else {
            return Ok(SourceBatch {
                records: Vec::new(),
                bad: Vec::new(),
                state: ReadState::Idle,
            });
        };
        self.next = (i + 1) % n;
        let got = match self.read_split(i, max) {
            Ok(got) => got,
            Err(Failure::Transient(why)) => return Ok(self.failed(why)?),
            Err(Failure::Fatal(why)) => {
                return Err(format!("mongodb: collection {}: {why}", self.splits[i].name).into())
            }
        };
        self.failing_since = None;
        if got.caught_up {
            if self.config.tail {
                self.splits[i].idle_until = Some(Instant::now() + self.poll_interval);
            } else {
                self.splits[i].done = true;
            }
        }
        let more = !got.records.is_empty()
            || !got.bad.is_empty()
            || self
                .splits
                .iter()
                .any(|s| !s.done && s.idle_until.is_none());
        let state = if self.splits.iter().all(|s| s.done) {
            ReadState::Finished
        } else if more {
            ReadState::More
        } else {
            ReadState::Idle
        };
        Ok(SourceBatch {
            records: got.records,
            bad: got.bad,
            state,
        })
    }

    fn positions(&self) -> BTreeMap<String, Offset> {
        self.splits
            .iter()
            .filter(|s| s.started)
            .map(|s| (s.name.to_string(), Offset::Token(s.place.token())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn places_round_trip_through_their_tokens() {
        let id = ObjectId::new();
        for place in [
            Place::default(),
            Place {
                after: Some((None, Bson::ObjectId(id))),
                ..Default::default()
            },
            Place {
                after: Some((Some(Bson::Int64(7)), Bson::String("x".into()))),
                stream: Some(Bson::Document(doc! {"_data": "8263"})),
                copied: true,
            },
        ] {
            assert_eq!(Place::parse(&place.token()).unwrap(), place);
        }
        assert!(Place::parse("[1]").is_err());
    }
}
