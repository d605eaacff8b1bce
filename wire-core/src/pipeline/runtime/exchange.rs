//! The exchange: how the partitions of one keyed job, spread over several nodes, talk. A
//! record goes to the partition that owns its key wherever that partition runs, and the
//! checkpoint protocol's messages go between the job's coordinator and the nodes that joined
//! it.
//!
//! Both ride on the node-to-node listener (the one Raft uses): a connection is an HTTP
//! request upgraded to a raw byte stream (`Upgrade: wire-exchange`), then length-prefixed
//! MessagePack frames. One listener means one port to open and, later, one TLS setup for
//! every node-to-node byte; the upgrade takes the connection out of HTTP, so a data stream
//! costs a frame header per batch, not a request.
//!
//! - **Data links**: one per (sending node, receiving node) of a job session, carrying
//!   batches and barriers, each tagged with the partition it is for. Back-pressure is TCP's:
//!   the receiver hands a batch to the partition's bounded sink channel and reads no more
//!   until it is taken, the sender's bounded queue fills, its source threads block. A link
//!   that breaks fails the job (every partition goes back to its last checkpoint).
//! - **Control links**: one from each joining node to the coordinator's node, for the job
//!   attempt both computed from the same catalog state ([`attempt_id`]).
//!
//! A job session is a random number the coordinator draws and opens in the catalog (see
//! `pipeline::catalog`); data links carry it, so a stale sender from an older session of
//! the same pipeline never feeds a newer one.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc as tmpsc;

use super::coordinator::Input;
use super::live::JobState;
use super::sink_worker::SinkMsg;
use crate::consensus::NodeId;
use crate::pipeline::checkpoint::{Checkpoint, Offset, Positions};
use crate::pipeline::transform::{Position, Record};
use jaq_json::{Num, Val};

/// The path of the upgrade request on the node-to-node listener.
pub const PATH: &str = "/internal/exchange";
const UPGRADE: &str = "wire-exchange";
/// Largest frame accepted (a frame holds at most [`FRAME_RECORDS`] records).
const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Records per data frame at most.
const FRAME_RECORDS: usize = 128;
/// How often an idle link says it is alive.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// Silence after which a link counts as lost (a peer that died without closing it).
pub const SILENCE: Duration = Duration::from_secs(10);
/// Wait between attempts to reach a job that is not there yet.
pub const RETRY: Duration = Duration::from_millis(100);

/// A byte stream both ways.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
pub type Stream = Box<dyn Duplex>;

// ---- frames ----

/// Writes one frame, its structs as maps (field names): checkpoints skip empty fields, which
/// only named encoding can tell.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> io::Result<()> {
    let body = rmp_serde::to_vec_named(msg).map_err(|e| io::Error::other(e.to_string()))?;
    write_body(w, &body).await
}

/// Writes one data frame, compactly (records carry no field names: their types skip no
/// field).
async fn write_data_frame<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    frame: &DataFrame,
) -> io::Result<()> {
    let body = rmp_serde::to_vec(frame).map_err(|e| io::Error::other(e.to_string()))?;
    write_body(w, &body).await
}

async fn write_body<W: AsyncWrite + Unpin + ?Sized>(w: &mut W, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::other(format!("a frame of {} bytes is too large", body.len())))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(body).await
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized, T: DeserializeOwned>(
    r: &mut R,
) -> io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::other(format!(
            "a frame of {len} bytes is too large"
        )));
    }
    // Grown as the bytes arrive, not allocated from the header up front.
    let mut body = Vec::with_capacity(len.min(1 << 20));
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a frame cut short",
        ));
    }
    rmp_serde::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::other(format!("a malformed frame: {e}")))
}

/// A value as it crosses the network: every kind of value as it is (byte strings stay
/// bytes, floats stay floats, decimals and big integers keep their digits).
#[derive(Debug, Serialize, Deserialize)]
enum WireVal {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A decimal or big integer, as its text.
    Digits(String),
    Text(ByteBuf),
    Bytes(ByteBuf),
    Arr(Vec<WireVal>),
    Obj(Vec<(WireVal, WireVal)>),
}

impl WireVal {
    fn of(v: &Val) -> WireVal {
        match v {
            Val::Null => WireVal::Null,
            Val::Bool(b) => WireVal::Bool(*b),
            Val::Num(Num::Int(i)) => WireVal::Int(*i as i64),
            Val::Num(Num::Float(f)) => WireVal::Float(*f),
            Val::Num(Num::Dec(d)) => WireVal::Digits(d.to_string()),
            Val::Num(n @ Num::BigInt(_)) => WireVal::Digits(n.to_string()),
            Val::TStr(s) => WireVal::Text(ByteBuf::from(s.to_vec())),
            Val::BStr(s) => WireVal::Bytes(ByteBuf::from(s.to_vec())),
            Val::Arr(items) => WireVal::Arr(items.iter().map(WireVal::of).collect()),
            Val::Obj(map) => WireVal::Obj(
                map.iter()
                    .map(|(k, v)| (WireVal::of(k), WireVal::of(v)))
                    .collect(),
            ),
        }
    }

    fn into_val(self) -> Val {
        match self {
            WireVal::Null => Val::Null,
            WireVal::Bool(b) => Val::Bool(b),
            WireVal::Int(i) => match isize::try_from(i) {
                Ok(i) => Val::Num(Num::Int(i)),
                Err(_) => Val::Num(Num::Dec(jaq_json::Rc::new(i.to_string()))),
            },
            WireVal::Float(f) => Val::Num(Num::Float(f)),
            WireVal::Digits(d) => Val::Num(
                Num::from_str_radix(&d, 10).unwrap_or_else(|| Num::Dec(jaq_json::Rc::new(d))),
            ),
            WireVal::Text(b) => Val::TStr(Box::new(bytes::Bytes::from(b.into_vec()))),
            WireVal::Bytes(b) => Val::BStr(Box::new(bytes::Bytes::from(b.into_vec()))),
            WireVal::Arr(items) => Val::Arr(
                items
                    .into_iter()
                    .map(WireVal::into_val)
                    .collect::<Vec<_>>()
                    .into(),
            ),
            WireVal::Obj(pairs) => {
                let mut map =
                    jaq_json::Map::with_capacity_and_hasher(pairs.len(), Default::default());
                for (k, v) in pairs {
                    map.insert(k.into_val(), v.into_val());
                }
                Val::Obj(map.into())
            }
        }
    }
}

/// A record as it crosses the network.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRecord {
    key: Option<ByteBuf>,
    value: WireVal,
    event_time: Option<i64>,
    headers: Vec<(String, ByteBuf)>,
    source: String,
    split: String,
    offset: Offset,
}

impl WireRecord {
    pub fn from_record(r: &Record) -> WireRecord {
        WireRecord {
            key: r.key.clone().map(ByteBuf::from),
            value: WireVal::of(&r.value),
            event_time: r.event_time,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), ByteBuf::from(v.clone())))
                .collect(),
            source: r.position.source.to_string(),
            split: r.position.split.to_string(),
            offset: r.position.offset.clone(),
        }
    }

    pub fn into_record(self) -> Record {
        Record {
            key: self.key.map(ByteBuf::into_vec),
            raw: None,
            value: self.value.into_val(),
            event_time: self.event_time,
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.into_vec()))
                .collect(),
            position: Position {
                source: self.source.into(),
                split: self.split.into(),
                offset: self.offset,
            },
        }
    }
}

fn wire(records: &[Record]) -> Vec<WireRecord> {
    records.iter().map(WireRecord::from_record).collect()
}

fn unwire(records: Vec<WireRecord>) -> Vec<Record> {
    records.into_iter().map(WireRecord::into_record).collect()
}

/// What a data link carries.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataFrame {
    /// What exchange steps put out: (step, records), run through the steps after them
    /// where they land.
    Exchanged {
        to: u32,
        batches: Vec<(u32, Vec<WireRecord>)>,
    },
    Barrier {
        to: u32,
        epoch: u64,
    },
    Watermark {
        to: u32,
        from: u32,
        watermark: Option<i64>,
    },
    /// Nothing to send for a while: the link is alive.
    Ping,
    /// The sender is done (its job ended): not a failure.
    Close,
}

impl DataFrame {
    /// The frames for `msg` to partition `to`: records of a batch in frames of at most
    /// about [`FRAME_RECORDS`] records. Only what exchange steps put out and barriers cross
    /// nodes (a partition's own output never leaves it).
    fn of(to: u32, msg: &SinkMsg) -> Vec<DataFrame> {
        match msg {
            SinkMsg::Exchanged(batches) => {
                let mut frames = Vec::new();
                for (step, records) in batches {
                    for chunk in records.chunks(FRAME_RECORDS) {
                        frames.push(DataFrame::Exchanged {
                            to,
                            batches: vec![(*step as u32, wire(chunk))],
                        });
                    }
                }
                frames
            }
            SinkMsg::Barrier(epoch) => vec![DataFrame::Barrier { to, epoch: *epoch }],
            SinkMsg::Watermark { from, watermark } => vec![DataFrame::Watermark {
                to,
                from: *from,
                watermark: *watermark,
            }],
            SinkMsg::Data { .. } => Vec::new(),
        }
    }
}

/// What a joining node tells the coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToCoordinator {
    Positions {
        partition: u32,
        epoch: u64,
        positions: Positions,
        read: u64,
    },
    SinkReady {
        partition: u32,
        epoch: u64,
    },
    State {
        partition: u32,
        epoch: u64,
        state: ByteBuf,
    },
    Finished {
        partition: u32,
        read: u64,
    },
    Failed {
        error: String,
        retry: bool,
    },
    /// How much its sources read so far (sent every [`PING_EVERY`]: it is also the
    /// heartbeat).
    Progress(u64),
    /// Its node wants the job stopped (after a final checkpoint).
    Stop {
        reason: String,
    },
}

impl ToCoordinator {
    /// What to tell the coordinator of a local worker's report (none for the driver's own
    /// inputs).
    pub fn from_input(input: Input) -> Option<ToCoordinator> {
        Some(match input {
            Input::Positions {
                partition,
                epoch,
                positions,
                read,
            } => ToCoordinator::Positions {
                partition,
                epoch,
                positions,
                read,
            },
            Input::SinkReady { partition, epoch } => ToCoordinator::SinkReady { partition, epoch },
            Input::State {
                partition,
                epoch,
                state,
            } => ToCoordinator::State {
                partition,
                epoch,
                state: ByteBuf::from(state),
            },
            Input::Finished { partition, read } => ToCoordinator::Finished { partition, read },
            Input::Failed { error, retry } => ToCoordinator::Failed { error, retry },
            _ => return None,
        })
    }
}

/// How a job ended, as the coordinator tells the nodes that joined it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Ended {
    Stopped { reason: String },
    Finished,
    Failed { error: String, retry: bool },
}

impl Ended {
    pub fn of(state: &JobState) -> Ended {
        match state {
            JobState::Finished => Ended::Finished,
            JobState::Failed { error, retry } => Ended::Failed {
                error: error.clone(),
                retry: *retry,
            },
            JobState::Stopped { reason } => Ended::Stopped {
                reason: reason.clone(),
            },
            other => Ended::Stopped {
                reason: format!("the coordinator ended in state {other:?}"),
            },
        }
    }

    pub fn state(self) -> JobState {
        match self {
            Ended::Stopped { reason } => JobState::Stopped { reason },
            Ended::Finished => JobState::Finished,
            Ended::Failed { error, retry } => JobState::Failed { error, retry },
        }
    }
}

/// What the coordinator tells a node that joined.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToParticipant {
    /// Joined: the session to run in and the checkpoints to resume from.
    Welcome {
        session: u64,
        checkpoints: BTreeMap<u32, Checkpoint>,
    },
    /// Not joined, and why (the node's job restarts and tries again).
    Refused(String),
    Barrier(u64),
    Publish(u64),
    Release,
    /// The checkpoints just committed.
    Committed(Vec<(u32, Checkpoint)>),
    /// The coordinator is alive (sent every [`PING_EVERY`]).
    Ping,
    End(Ended),
}

// ---- the node's registry of running jobs ----

/// A node that connected to a coordinator, before it said hello.
pub struct Joiner {
    pub from: NodeId,
    pub stream: Stream,
}

/// Running jobs by (pipeline, attempt or session), each with its registration number.
type Registry<T> = HashMap<(String, u64), (u64, T)>;

/// Where a job session takes incoming batches: its local sink workers.
struct Inbound {
    routes: BTreeMap<u32, SyncSender<SinkMsg>>,
    /// The steps whose output may arrive (the exchange steps).
    steps: Vec<usize>,
    events: tmpsc::UnboundedSender<Input>,
}

/// The node's exchange: the coordinators and sessions it runs, found by the links that
/// connect to it. Each entry has the number it was registered under, so that a job ending
/// removes its own entry and never a newer job's.
#[derive(Default)]
pub struct Exchange {
    coordinators: Mutex<Registry<tmpsc::UnboundedSender<Joiner>>>,
    sessions: Mutex<Registry<Arc<Inbound>>>,
    registrations: std::sync::atomic::AtomicU64,
    /// The last attempt of each pipeline that finished here (as coordinator).
    finished: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unregisters what it names when dropped (the job ended).
pub struct Registered {
    exchange: Arc<Exchange>,
    key: (String, u64),
    id: u64,
    coordinator: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.coordinator {
            let mut map = lock(&self.exchange.coordinators);
            if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                map.remove(&self.key);
            }
        } else {
            let mut map = lock(&self.exchange.sessions);
            if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
                map.remove(&self.key);
            }
        }
    }
}

impl Exchange {
    fn next_id(&self) -> u64 {
        self.registrations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Remembers that `attempt` of `pipeline` ran to its end here: a node of it that missed
    /// the end and asks to join is told so (410) rather than left waiting.
    pub fn finished(&self, pipeline: &str, attempt: u64) {
        lock(&self.finished).insert(pipeline.to_string(), attempt);
    }

    /// Takes the control links of `attempt` of `pipeline` (this node coordinates it).
    pub fn coordinate(
        self: &Arc<Self>,
        pipeline: &str,
        attempt: u64,
    ) -> (Registered, tmpsc::UnboundedReceiver<Joiner>) {
        let (tx, rx) = tmpsc::unbounded_channel();
        let key = (pipeline.to_string(), attempt);
        let id = self.next_id();
        lock(&self.coordinators).insert(key.clone(), (id, tx));
        let reg = Registered {
            exchange: self.clone(),
            key,
            id,
            coordinator: true,
        };
        (reg, rx)
    }

    /// Takes the data links of `session` of `pipeline` into the local sink workers; records
    /// may come only from the exchange steps `steps`.
    pub fn receive(
        self: &Arc<Self>,
        pipeline: &str,
        session: u64,
        routes: BTreeMap<u32, SyncSender<SinkMsg>>,
        steps: Vec<usize>,
        events: tmpsc::UnboundedSender<Input>,
    ) -> Registered {
        let key = (pipeline.to_string(), session);
        let id = self.next_id();
        let inbound = Arc::new(Inbound {
            routes,
            steps,
            events,
        });
        lock(&self.sessions).insert(key.clone(), (id, inbound));
        Registered {
            exchange: self.clone(),
            key,
            id,
            coordinator: false,
        }
    }
}

/// The job attempt all nodes of a keyed job compute alike from the catalog: the coordinator
/// takes control links for it, the others ask for it.
pub fn attempt_id(
    pipeline: &str,
    version: u64,
    incarnation: u64,
    owners: &BTreeMap<u32, NodeId>,
) -> u64 {
    let mut text = format!("{pipeline}\n{version}\n{incarnation}\n");
    for (p, n) in owners {
        text.push_str(&format!("{p}:{n},"));
    }
    crate::hash::stable_hash(text.as_bytes())
}

// ---- connecting ----

/// What a link request says: which kind of link, to which job, from which node.
pub struct Ask {
    /// [`CONTROL`] or [`DATA`].
    pub kind: &'static str,
    pub pipeline: String,
    /// The job attempt (control) or session (data).
    pub key: u64,
    pub from: NodeId,
}

const H_KIND: &str = "x-wire-link";
const H_PIPELINE: &str = "x-wire-pipeline";
const H_KEY: &str = "x-wire-key";
const H_FROM: &str = "x-wire-from";

/// Why a link could not be made.
pub enum ConnectError {
    /// The other side does not run that job (yet): try again.
    NotThere,
    /// The job attempt ran to its end there (a node that missed its end learns it).
    Finished,
    Failed(String),
}

/// What trying to reach a job gave.
pub enum Reached {
    Link(Stream),
    /// The job attempt finished on the other side.
    Finished,
    /// `give_up` said so.
    GaveUp,
}

/// The node-to-node addresses and client a job connects with.
#[derive(Clone)]
pub struct Peers {
    pub client: crate::consensus::network::PeerClient,
    /// Each member's node-to-node address.
    pub addrs: BTreeMap<NodeId, String>,
}

impl Peers {
    async fn connect(&self, to: NodeId, ask: &Ask) -> Result<Stream, ConnectError> {
        let addr = self
            .addrs
            .get(&to)
            .ok_or_else(|| ConnectError::Failed(format!("node {to} is not a member")))?;
        let response = self
            .client
            .http()
            .post(self.client.url(addr, PATH))
            .header("connection", "upgrade")
            .header("upgrade", UPGRADE)
            .header(
                crate::consensus::PROTOCOL_HEADER,
                crate::consensus::PROTOCOL_VERSION.to_string(),
            )
            .header(H_KIND, ask.kind)
            .header(H_PIPELINE, &ask.pipeline)
            .header(H_KEY, ask.key.to_string())
            .header(H_FROM, ask.from.to_string())
            .header(crate::consensus::network::ADDRESSEE_HEADER, to.to_string())
            .send()
            .await
            .map_err(|e| ConnectError::Failed(format!("reaching node {to}: {e}")))?;
        match response.status() {
            StatusCode::SWITCHING_PROTOCOLS => {}
            StatusCode::NOT_FOUND => return Err(ConnectError::NotThere),
            StatusCode::GONE => return Err(ConnectError::Finished),
            other => {
                let body = response.text().await.unwrap_or_default();
                return Err(ConnectError::Failed(format!(
                    "node {to} refused the link ({other}): {body}"
                )));
            }
        }
        let io = response
            .upgrade()
            .await
            .map_err(|e| ConnectError::Failed(format!("upgrading the link to node {to}: {e}")))?;
        Ok(Box::new(io))
    }

    /// Connects, trying again while the other side does not run the job yet, until `give_up`
    /// says so.
    pub async fn connect_when_there(
        &self,
        to: NodeId,
        ask: &Ask,
        give_up: impl Fn() -> bool,
    ) -> Reached {
        loop {
            match self.connect(to, ask).await {
                Ok(s) => return Reached::Link(s),
                Err(ConnectError::Finished) => return Reached::Finished,
                // Not there yet, or not reachable yet: a node restarting, a job starting.
                Err(ConnectError::NotThere) => {}
                Err(ConnectError::Failed(e)) => tracing::debug!(error = %e, "exchange link"),
            }
            if give_up() {
                return Reached::GaveUp;
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

pub const CONTROL: &str = "control";
pub const DATA: &str = "data";

/// Sends a session's batches for the partitions on node `to`, from a bounded queue the
/// local source threads fill. Ends when every sender is gone (with a `Close` frame) or the
/// link breaks (reported to the job as a failure).
pub async fn send_data(
    peers: Peers,
    to: NodeId,
    pipeline: String,
    session: u64,
    from: NodeId,
    mut queue: tmpsc::Receiver<(u32, SinkMsg)>,
    events: tmpsc::UnboundedSender<Input>,
) {
    let fail = |error: String| {
        let _ = events.send(Input::Failed { error, retry: true });
    };
    let ask = Ask {
        kind: DATA,
        pipeline,
        key: session,
        from,
    };
    let stream = match peers
        .connect_when_there(to, &ask, || queue.is_closed())
        .await
    {
        Reached::Link(s) => s,
        Reached::Finished | Reached::GaveUp => return,
    };
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, stream);
    let lost = |e: io::Error| format!("lost the exchange link to node {to}: {e}");
    loop {
        let frames = match tokio::time::timeout(PING_EVERY, queue.recv()).await {
            Ok(Some((target, msg))) => DataFrame::of(target, &msg),
            Ok(None) => break,
            Err(_) => vec![DataFrame::Ping],
        };
        for frame in &frames {
            if let Err(e) = write_data_frame(&mut out, frame).await {
                return fail(lost(e));
            }
        }
        if queue.is_empty() {
            if let Err(e) = out.flush().await {
                return fail(lost(e));
            }
        }
    }
    let _ = write_data_frame(&mut out, &DataFrame::Close).await;
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// Feeds one incoming data link to the session's sink workers, on a thread of its own (a
/// full sink channel blocks it, which stops reading the link: back-pressure to the sender).
fn receive_data(mut stream: Stream, inbound: Arc<Inbound>, from: NodeId) {
    let handle = tokio::runtime::Handle::current();
    let spawned = std::thread::Builder::new()
        .name(format!("wire-exchange-from-{from}"))
        .spawn(move || {
            let fail = |error: String| {
                let _ = inbound.events.send(Input::Failed { error, retry: true });
            };
            loop {
                let read = handle.block_on(async {
                    tokio::time::timeout(SILENCE, read_frame::<_, DataFrame>(&mut stream)).await
                });
                let frame = match read {
                    Ok(Ok(Some(f))) => f,
                    Ok(Ok(None)) => {
                        return fail(format!("the exchange link from node {from} ended"))
                    }
                    Ok(Err(e)) => {
                        return fail(format!("lost the exchange link from node {from}: {e}"))
                    }
                    Err(_) => {
                        return fail(format!(
                            "the exchange link from node {from} was silent for {} s",
                            SILENCE.as_secs()
                        ))
                    }
                };
                let (to, msg) = match frame {
                    DataFrame::Close => return,
                    DataFrame::Ping => continue,
                    DataFrame::Barrier { to, epoch } => (to, SinkMsg::Barrier(epoch)),
                    DataFrame::Watermark {
                        to,
                        from,
                        watermark,
                    } => (to, SinkMsg::Watermark { from, watermark }),
                    DataFrame::Exchanged { to, batches } => {
                        let mut landed = Vec::with_capacity(batches.len());
                        for (step, records) in batches {
                            let step = step as usize;
                            if !inbound.steps.contains(&step) {
                                return fail(format!(
                                    "node {from} sent records of step {step}, which is no exchange step of this pipeline"
                                ));
                            }
                            landed.push((step, unwire(records)));
                        }
                        (to, SinkMsg::Exchanged(landed))
                    }
                };
                let Some(route) = inbound.routes.get(&to) else {
                    return fail(format!(
                        "node {from} sent records for partition {to}, not run here"
                    ));
                };
                if route.send(msg).is_err() {
                    // The sink worker ended: the job is ending.
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "starting an exchange reader thread");
    }
}

// ---- accepting ----

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn ask(headers: &HeaderMap) -> Result<Ask, String> {
    let kind = match header(headers, H_KIND).as_deref() {
        Some(CONTROL) => CONTROL,
        Some(DATA) => DATA,
        other => return Err(format!("unknown link kind {other:?}")),
    };
    let pipeline = header(headers, H_PIPELINE).ok_or("no pipeline named")?;
    let key = header(headers, H_KEY)
        .and_then(|k| k.parse().ok())
        .ok_or("no job key")?;
    let from = header(headers, H_FROM)
        .and_then(|k| k.parse().ok())
        .ok_or("no sending node")?;
    Ok(Ask {
        kind,
        pipeline,
        key,
        from,
    })
}

/// The exchange's route on the node-to-node listener.
pub fn routes(exchange: Arc<Exchange>) -> Router {
    Router::new().route(PATH, post(accept)).with_state(exchange)
}

async fn accept(State(exchange): State<Arc<Exchange>>, mut request: Request) -> Response {
    let ask = match ask(request.headers()) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let key = (ask.pipeline.clone(), ask.key);
    // Find the job first: a link to a job that is not (or no longer) here is a 404, which
    // the other side retries.
    enum Target {
        Coordinator(tmpsc::UnboundedSender<Joiner>),
        Session(Arc<Inbound>),
    }
    let target = if ask.kind == CONTROL {
        lock(&exchange.coordinators)
            .get(&key)
            .map(|(_, door)| Target::Coordinator(door.clone()))
    } else {
        lock(&exchange.sessions)
            .get(&key)
            .map(|(_, inbound)| Target::Session(inbound.clone()))
    };
    let finished =
        ask.kind == CONTROL && lock(&exchange.finished).get(&ask.pipeline) == Some(&ask.key);
    if target.is_none() && finished {
        return (
            StatusCode::GONE,
            format!("job {} of '{}' finished here", ask.key, ask.pipeline),
        )
            .into_response();
    }
    let Some(target) = target else {
        return (
            StatusCode::NOT_FOUND,
            format!("no {} job {} of '{}' here", ask.kind, ask.key, ask.pipeline),
        )
            .into_response();
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let from = ask.from;
    tokio::spawn(async move {
        let stream: Stream = match upgrade.await {
            Ok(u) => Box::new(hyper_util::rt::TokioIo::new(u)),
            Err(e) => {
                tracing::debug!(error = %e, "exchange upgrade failed");
                return;
            }
        };
        match target {
            Target::Coordinator(door) => {
                let _ = door.send(Joiner { from, stream });
            }
            Target::Session(inbound) => receive_data(stream, inbound, from),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", UPGRADE)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_and_frames_cross_intact() {
        let json = |t: &str| crate::pipeline::json::parse_strict(t.as_bytes()).expect("json");
        let mut value = json(r#"{"a":[1,2.5,"x",12345678901234567890123,1.000],"b":null}"#);
        if let Val::Obj(map) = &mut value {
            // A byte string that is not UTF-8 (a raw Kafka value) stays bytes.
            jaq_json::Rc::make_mut(map).insert(
                Val::TStr(Box::new(bytes::Bytes::from_static(b"raw"))),
                Val::BStr(Box::new(bytes::Bytes::from_static(&[0xff, 0x00, 0xfe]))),
            );
        }
        let record = Record {
            key: Some(b"k1".to_vec()),
            raw: None,
            value,
            event_time: Some(17),
            headers: vec![("h".into(), b"v".to_vec())],
            position: Position {
                source: "in".into(),
                split: "f.json".into(),
                offset: Offset::Num(42),
            },
        };
        // 300 records: three frames of at most FRAME_RECORDS.
        let msg = SinkMsg::Exchanged(vec![(1, vec![record.clone(); 300])]);
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let frames = DataFrame::of(3, &msg);
        assert_eq!(frames.len(), 3);
        for f in frames.iter().chain(&DataFrame::of(3, &SinkMsg::Barrier(9))) {
            write_data_frame(&mut a, f).await.expect("write");
        }
        drop(a);
        let mut got = Vec::new();
        for _ in 0..3 {
            let Some(DataFrame::Exchanged { to, batches }) =
                read_frame::<_, DataFrame>(&mut b).await.expect("read")
            else {
                panic!("records first");
            };
            assert_eq!(to, 3);
            for (step, records) in batches {
                assert_eq!(step, 1);
                got.extend(unwire(records));
            }
        }
        assert_eq!(got.len(), 300);
        let back = &got[0];
        assert_eq!(back.key, record.key);
        assert_eq!(
            back.value, record.value,
            "bytes, big and decimal numbers intact"
        );
        assert_eq!(
            crate::pipeline::json::to_json(&back.value),
            crate::pipeline::json::to_json(&record.value)
        );
        assert_eq!(back.position, record.position);
        assert_eq!(back.event_time, Some(17));
        assert_eq!(back.headers, record.headers);
        assert!(matches!(
            read_frame::<_, DataFrame>(&mut b).await,
            Ok(Some(DataFrame::Barrier { to: 3, epoch: 9 }))
        ));
        assert!(matches!(read_frame::<_, DataFrame>(&mut b).await, Ok(None)));
    }

    #[tokio::test]
    async fn an_oversized_or_malformed_frame_is_an_error_not_a_panic() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&u32::MAX.to_le_bytes()).await.expect("write");
        assert!(read_frame::<_, DataFrame>(&mut b).await.is_err());
        // A length the bytes never reach: an error once the stream ends, not a big buffer.
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&(60u32 << 20).to_le_bytes())
            .await
            .expect("write");
        a.write_all(b"short").await.expect("write");
        drop(a);
        assert!(read_frame::<_, DataFrame>(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&3u32.to_le_bytes()).await.expect("write");
        a.write_all(b"xyz").await.expect("write");
        assert!(read_frame::<_, DataFrame>(&mut b).await.is_err());
    }

    #[tokio::test]
    async fn checkpoints_cross_the_control_link_with_their_state() {
        let c = Checkpoint {
            epoch: 3,
            state: Some(ByteBuf::from(vec![1, 2, 3])),
            ..Default::default()
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &ToParticipant::Committed(vec![(0, c.clone())]))
            .await
            .expect("write");
        match read_frame::<_, ToParticipant>(&mut b).await {
            Ok(Some(ToParticipant::Committed(got))) => assert_eq!(got, vec![(0, c)]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_node_asking_to_join_a_finished_job_is_told_it_finished() {
        let exchange = Arc::new(Exchange::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = routes(exchange.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let peers = Peers {
            client: crate::consensus::network::PeerClient::new(
                std::time::Duration::from_millis(500),
                None,
                None,
            )
            .expect("peer client"),
            addrs: BTreeMap::from([(1, addr.to_string())]),
        };
        let ask = |key| Ask {
            kind: CONTROL,
            pipeline: "p".into(),
            key,
            from: 2,
        };
        exchange.finished("p", 7);
        assert!(matches!(
            peers.connect_when_there(1, &ask(7), || true).await,
            Reached::Finished
        ));
        // Another attempt, not run here: not there (the asker gives up when it says so).
        assert!(matches!(
            peers.connect_when_there(1, &ask(8), || true).await,
            Reached::GaveUp
        ));
        // A coordinator of the attempt takes the link, finished or not.
        let (_reg, mut door) = exchange.coordinate("p", 7);
        assert!(matches!(
            peers.connect_when_there(1, &ask(7), || true).await,
            Reached::Link(_)
        ));
        let joiner = door.recv().await.expect("a joiner");
        assert_eq!(joiner.from, 2);
    }

    #[test]
    fn every_node_computes_the_same_attempt_and_a_new_layout_a_new_one() {
        let owners = BTreeMap::from([(0, 1), (1, 2)]);
        let a = attempt_id("p", 1, 5, &owners);
        assert_eq!(a, attempt_id("p", 1, 5, &owners.clone()));
        assert_ne!(a, attempt_id("p", 1, 5, &BTreeMap::from([(0, 1), (1, 3)])));
        assert_ne!(a, attempt_id("p", 2, 5, &owners));
    }
}
