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

/// The path of the upgrade request on the node-to-node listener.
pub const PATH: &str = "/internal/exchange";
const UPGRADE: &str = "wire-exchange";
/// Largest frame accepted (a batch of large records).
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// Wait between attempts to reach a job that is not there yet.
pub const RETRY: Duration = Duration::from_millis(100);

/// A byte stream both ways.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}
pub type Stream = Box<dyn Duplex>;

// ---- frames ----

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> io::Result<()> {
    let body = rmp_serde::to_vec(msg).map_err(|e| io::Error::other(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::other(format!("a frame of {} bytes is too large", body.len())))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&body).await
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
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
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    rmp_serde::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::other(format!("a malformed frame: {e}")))
}

/// A record as it crosses the network.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireRecord {
    key: Option<ByteBuf>,
    /// The value as JSON text.
    value: ByteBuf,
    event_time: Option<i64>,
    headers: Vec<(String, ByteBuf)>,
    source: String,
    split: String,
    offset: Offset,
}

impl WireRecord {
    pub fn from_record(r: &Record) -> WireRecord {
        let mut value = Vec::with_capacity(64);
        crate::pipeline::json::write_json(&r.value, &mut value);
        WireRecord {
            key: r.key.clone().map(ByteBuf::from),
            value: ByteBuf::from(value),
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

    pub fn into_record(self) -> io::Result<Record> {
        let value = crate::pipeline::json::parse_strict(&self.value)
            .ok_or_else(|| io::Error::other("a record whose value is not JSON"))?;
        Ok(Record {
            key: self.key.map(ByteBuf::into_vec),
            value,
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
        })
    }
}

fn wire(records: &[Record]) -> Vec<WireRecord> {
    records.iter().map(WireRecord::from_record).collect()
}

fn unwire(records: Vec<WireRecord>) -> io::Result<Vec<Record>> {
    records.into_iter().map(WireRecord::into_record).collect()
}

/// What a data link carries.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataFrame {
    Batch {
        to: u32,
        per_sink: Vec<Vec<WireRecord>>,
        dead: Vec<WireRecord>,
    },
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
    /// The sender is done (its job ended): not a failure.
    Close,
}

impl DataFrame {
    fn of(to: u32, msg: &SinkMsg) -> DataFrame {
        match msg {
            SinkMsg::Data { per_sink, dead } => DataFrame::Batch {
                to,
                per_sink: per_sink.iter().map(|r| wire(r)).collect(),
                dead: wire(dead),
            },
            SinkMsg::Exchanged(batches) => DataFrame::Exchanged {
                to,
                batches: batches
                    .iter()
                    .map(|(step, records)| (*step as u32, wire(records)))
                    .collect(),
            },
            SinkMsg::Barrier(epoch) => DataFrame::Barrier { to, epoch: *epoch },
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
    Finished {
        partition: u32,
        read: u64,
    },
    Failed {
        error: String,
        retry: bool,
    },
    /// How much its sources read so far.
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
    End(Ended),
}

// ---- the node's registry of running jobs ----

/// A node that connected to a coordinator, before it said hello.
pub struct Joiner {
    pub from: NodeId,
    pub stream: Stream,
}

/// Where a job session takes incoming batches: its local sink workers.
struct Inbound {
    routes: BTreeMap<u32, SyncSender<SinkMsg>>,
    events: tmpsc::UnboundedSender<Input>,
}

/// The node's exchange: the coordinators and sessions it runs, found by the links that
/// connect to it.
#[derive(Default)]
pub struct Exchange {
    coordinators: Mutex<HashMap<(String, u64), tmpsc::UnboundedSender<Joiner>>>,
    sessions: Mutex<HashMap<(String, u64), Arc<Inbound>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Unregisters what it names when dropped (the job ended).
pub struct Registered {
    exchange: Arc<Exchange>,
    key: (String, u64),
    coordinator: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.coordinator {
            lock(&self.exchange.coordinators).remove(&self.key);
        } else {
            lock(&self.exchange.sessions).remove(&self.key);
        }
    }
}

impl Exchange {
    /// Takes the control links of `attempt` of `pipeline` (this node coordinates it).
    pub fn coordinate(
        self: &Arc<Self>,
        pipeline: &str,
        attempt: u64,
    ) -> (Registered, tmpsc::UnboundedReceiver<Joiner>) {
        let (tx, rx) = tmpsc::unbounded_channel();
        let key = (pipeline.to_string(), attempt);
        lock(&self.coordinators).insert(key.clone(), tx);
        let reg = Registered {
            exchange: self.clone(),
            key,
            coordinator: true,
        };
        (reg, rx)
    }

    /// Takes the data links of `session` of `pipeline` into the local sink workers.
    pub fn receive(
        self: &Arc<Self>,
        pipeline: &str,
        session: u64,
        routes: BTreeMap<u32, SyncSender<SinkMsg>>,
        events: tmpsc::UnboundedSender<Input>,
    ) -> Registered {
        let key = (pipeline.to_string(), session);
        lock(&self.sessions).insert(key.clone(), Arc::new(Inbound { routes, events }));
        Registered {
            exchange: self.clone(),
            key,
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

/// What a link request says.
struct Ask {
    kind: &'static str,
    pipeline: String,
    key: u64,
    from: NodeId,
}

const H_KIND: &str = "x-wire-link";
const H_PIPELINE: &str = "x-wire-pipeline";
const H_KEY: &str = "x-wire-key";
const H_FROM: &str = "x-wire-from";

/// Why a link could not be made.
pub enum ConnectError {
    /// The other side does not run that job (yet): try again.
    NotThere,
    Failed(String),
}

/// The node-to-node addresses and client a job connects with.
#[derive(Clone)]
pub struct Peers {
    pub http: reqwest::Client,
    /// Each member's node-to-node address.
    pub addrs: BTreeMap<NodeId, String>,
}

impl Peers {
    async fn connect(
        &self,
        to: NodeId,
        kind: &'static str,
        pipeline: &str,
        key: u64,
        from: NodeId,
    ) -> Result<Stream, ConnectError> {
        let addr = self
            .addrs
            .get(&to)
            .ok_or_else(|| ConnectError::Failed(format!("node {to} is not a member")))?;
        let response = self
            .http
            .post(format!("http://{addr}{PATH}"))
            .header("connection", "upgrade")
            .header("upgrade", UPGRADE)
            .header(
                crate::consensus::PROTOCOL_HEADER,
                crate::consensus::PROTOCOL_VERSION.to_string(),
            )
            .header(H_KIND, kind)
            .header(H_PIPELINE, pipeline)
            .header(H_KEY, key.to_string())
            .header(H_FROM, from.to_string())
            .send()
            .await
            .map_err(|e| ConnectError::Failed(format!("reaching node {to}: {e}")))?;
        match response.status() {
            StatusCode::SWITCHING_PROTOCOLS => {}
            StatusCode::NOT_FOUND => return Err(ConnectError::NotThere),
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
        kind: &'static str,
        pipeline: &str,
        key: u64,
        from: NodeId,
        give_up: impl Fn() -> bool,
    ) -> Result<Option<Stream>, String> {
        loop {
            match self.connect(to, kind, pipeline, key, from).await {
                Ok(s) => return Ok(Some(s)),
                // Not there yet, or not reachable yet: a node restarting, a job starting.
                Err(ConnectError::NotThere) => {}
                Err(ConnectError::Failed(e)) => tracing::debug!(error = %e, "exchange link"),
            }
            if give_up() {
                return Ok(None);
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
    let stream = match peers
        .connect_when_there(to, DATA, &pipeline, session, from, || queue.is_closed())
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => return fail(e),
    };
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, stream);
    let lost = |e: io::Error| format!("lost the exchange link to node {to}: {e}");
    while let Some((target, msg)) = queue.recv().await {
        let frame = DataFrame::of(target, &msg);
        if let Err(e) = write_frame(&mut out, &frame).await {
            return fail(lost(e));
        }
        if queue.is_empty() {
            if let Err(e) = out.flush().await {
                return fail(lost(e));
            }
        }
    }
    let _ = write_frame(&mut out, &DataFrame::Close).await;
    let _ = out.flush().await;
    let _ = out.shutdown().await;
}

/// Feeds one incoming data link to the session's sink workers, on a blocking thread (a full
/// sink channel blocks it, which stops reading the link: back-pressure to the sender).
fn receive_data(mut stream: Stream, inbound: Arc<Inbound>, from: NodeId) {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let fail = |error: String| {
            let _ = inbound.events.send(Input::Failed { error, retry: true });
        };
        loop {
            let frame = match handle.block_on(read_frame::<_, DataFrame>(&mut stream)) {
                Ok(Some(f)) => f,
                Ok(None) => return fail(format!("the exchange link from node {from} ended")),
                Err(e) => return fail(format!("lost the exchange link from node {from}: {e}")),
            };
            let (to, msg) = match frame {
                DataFrame::Close => return,
                DataFrame::Barrier { to, epoch } => (to, SinkMsg::Barrier(epoch)),
                DataFrame::Exchanged { to, batches } => {
                    let batches: io::Result<Vec<(usize, Vec<Record>)>> = batches
                        .into_iter()
                        .map(|(step, records)| Ok((step as usize, unwire(records)?)))
                        .collect();
                    match batches {
                        Ok(b) => (to, SinkMsg::Exchanged(b)),
                        Err(e) => return fail(format!("a bad batch from node {from}: {e}")),
                    }
                }
                DataFrame::Batch { to, per_sink, dead } => {
                    let per_sink: io::Result<Vec<Vec<Record>>> =
                        per_sink.into_iter().map(unwire).collect();
                    match (per_sink, unwire(dead)) {
                        (Ok(per_sink), Ok(dead)) => (to, SinkMsg::Data { per_sink, dead }),
                        (Err(e), _) | (_, Err(e)) => {
                            return fail(format!("a bad batch from node {from}: {e}"))
                        }
                    }
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
            .cloned()
            .map(Target::Coordinator)
    } else {
        lock(&exchange.sessions)
            .get(&key)
            .cloned()
            .map(Target::Session)
    };
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
        let record = Record {
            key: Some(b"k1".to_vec()),
            value: crate::pipeline::json::parse_strict(br#"{"a":[1,2.5,"x"],"b":null}"#)
                .expect("json"),
            event_time: Some(17),
            headers: vec![("h".into(), b"v".to_vec())],
            position: Position {
                source: "in".into(),
                split: "f.json".into(),
                offset: Offset::Num(42),
            },
        };
        let msg = SinkMsg::Data {
            per_sink: vec![vec![record.clone()], vec![]],
            dead: vec![record.clone()],
        };
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &DataFrame::of(3, &msg))
            .await
            .expect("write");
        write_frame(&mut a, &DataFrame::of(3, &SinkMsg::Barrier(9)))
            .await
            .expect("write");
        drop(a);
        let Some(DataFrame::Batch { to, per_sink, dead }) =
            read_frame::<_, DataFrame>(&mut b).await.expect("read")
        else {
            panic!("a batch first");
        };
        assert_eq!(to, 3);
        let back = unwire(per_sink.into_iter().next().expect("sink 0")).expect("records");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, record.key);
        assert_eq!(
            crate::pipeline::json::to_json(&back[0].value),
            crate::pipeline::json::to_json(&record.value)
        );
        assert_eq!(back[0].position, record.position);
        assert_eq!(back[0].event_time, Some(17));
        assert_eq!(back[0].headers, record.headers);
        assert_eq!(dead.len(), 1);
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
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&3u32.to_le_bytes()).await.expect("write");
        a.write_all(b"xyz").await.expect("write");
        assert!(read_frame::<_, DataFrame>(&mut b).await.is_err());
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
