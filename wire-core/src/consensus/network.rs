//! Node-to-node RPC on the `--raft-addr` listener: Raft messages (append, vote, snapshot
//! chunks) and the node-level calls a follower makes to its leader (forwarded writes,
//! read-index, joins). Framing: HTTP/1.1 POST with a MessagePack body, over pooled
//! keep-alive connections that reconnect on demand; every call carries a timeout.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use openraft::ServerState;

use super::election::{
    answer_pre_vote, ElectionSettings, LeaderContact, PreVoteRequest, VoterView,
};
use super::liveness::Liveness;
use super::{decode, encode, LogStore, NodeId, Raft, TypeConfig, WireNode};

/// The header naming the node a node-to-node call is for.
pub const ADDRESSEE_HEADER: &str = "wire-to";

/// Paths of the Raft message endpoints.
pub mod paths {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const SNAPSHOT: &str = "/raft/snapshot";
    pub const PRE_VOTE: &str = "/raft/pre-vote";
}

/// Why a peer call failed before the peer answered.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No connection could be made: the request was not sent. Back off and retry later.
    #[error("peer {addr} unreachable: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The connection broke after the request was sent: it may or may not have been acted
    /// on.
    #[error("connection to peer {addr} broke: {detail}")]
    Broken { addr: String, detail: String },
    /// The call did not finish in time.
    #[error("peer {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The peer answered with something that is not a valid reply.
    #[error("peer {addr} answered badly: {detail}")]
    Protocol { addr: String, detail: String },
}

/// A client for node-to-node calls; cheap to clone (shares its connection pool).
#[derive(Clone, Debug)]
pub struct PeerClient {
    http: reqwest::Client,
    /// `https` when the cluster speaks TLS.
    scheme: &'static str,
}

impl PeerClient {
    /// Builds a client; `connect_timeout` bounds each connection attempt. With a cluster
    /// `secret`, every call shows it (node-to-node calls, and joins through a public API).
    /// With `tls`, calls go over TLS, trust the cluster's CA and show the node's
    /// certificate.
    pub fn new(
        connect_timeout: Duration,
        secret: Option<&crate::auth::ClusterSecret>,
        tls: Option<&std::sync::Arc<crate::tls::Tls>>,
    ) -> Result<Self, crate::Error> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(secret) = secret {
            let mut value = reqwest::header::HeaderValue::from_str(secret.expose())
                .map_err(|e| crate::Error::Invalid(format!("cluster secret: {e}")))?;
            value.set_sensitive(true);
            headers.insert(crate::auth::SECRET_HEADER, value);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(tls) = tls {
            builder = builder.use_preconfigured_tls(tls.client_config().map_err(|e| {
                crate::Error::Internal(format!("building the peer client's TLS: {e}"))
            })?);
        }
        let http = builder
            .default_headers(headers)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .no_proxy()
            .build()
            .map_err(|e| crate::Error::Internal(format!("building the peer client: {e}")))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        Ok(Self { http, scheme })
    }

    /// The URL of `path` on a peer's listener at `addr`.
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// The underlying HTTP client (for JSON calls to a peer's public API).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs `req` for node `to` at `addr` and decodes the reply. The node at `addr`
    /// refuses a call meant for another ([`ADDRESSEE_HEADER`]): an address the membership
    /// gave to a new node while the old one still runs there must not answer for it.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        to: NodeId,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let body = encode(req).map_err(|e| PeerError::Protocol {
            addr: addr.to_string(),
            detail: format!("encoding request: {e}"),
        })?;
        let result = self
            .http
            .post(self.url(addr, path))
            .header("content-type", "application/msgpack")
            .header(super::PROTOCOL_HEADER, super::PROTOCOL_VERSION.to_string())
            .header(ADDRESSEE_HEADER, to.to_string())
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        let resp = result.map_err(|e| classify(addr, timeout, e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| classify(addr, timeout, e))?;
        if !status.is_success() {
            return Err(PeerError::Protocol {
                addr: addr.to_string(),
                detail: format!("status {status}: {}", String::from_utf8_lossy(&bytes)),
            });
        }
        decode(&bytes).map_err(|e| PeerError::Protocol {
            addr: addr.to_string(),
            detail: format!("decoding reply: {e}"),
        })
    }
}

fn classify(addr: &str, timeout: Duration, e: reqwest::Error) -> PeerError {
    if e.is_timeout() {
        PeerError::Timeout {
            addr: addr.to_string(),
            timeout,
        }
    } else if e.is_connect() {
        PeerError::Unreachable {
            addr: addr.to_string(),
            detail: e.to_string(),
        }
    } else {
        PeerError::Broken {
            addr: addr.to_string(),
            detail: e.to_string(),
        }
    }
}

/// Creates a connection handle per target for openraft.
#[derive(Clone)]
pub struct Network {
    client: PeerClient,
    reach: Reachability,
}

impl Network {
    /// Sends Raft messages with `client`, noting in `liveness` every peer that answers.
    pub fn new(client: PeerClient, liveness: Liveness) -> Self {
        Self {
            client,
            reach: Reachability {
                last: Arc::default(),
                liveness,
            },
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &WireNode) -> Connection {
        Connection {
            client: self.client.clone(),
            target,
            addr: node.raft_addr.clone(),
            reach: self.reach.clone(),
        }
    }
}

/// Which peers answered their last message: logs one line when a peer stops answering and
/// one when it answers again, however many messages fail in between.
#[derive(Clone)]
struct Reachability {
    last: Arc<Mutex<BTreeMap<NodeId, bool>>>,
    liveness: Liveness,
}

impl Reachability {
    fn note(&self, target: NodeId, addr: &str, reached: bool, error: Option<&PeerError>) {
        if reached {
            self.liveness.heard(target);
        }
        let before = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target, reached);
        match (before, reached) {
            (Some(true) | None, false) => {
                tracing::warn!(peer = target, %addr, error = ?error.map(ToString::to_string), "peer unreachable")
            }
            (Some(false), true) => tracing::info!(peer = target, %addr, "peer reachable again"),
            _ => {}
        }
    }
}

/// Sends Raft messages to one peer.
pub struct Connection {
    client: PeerClient,
    target: NodeId,
    addr: String,
    reach: Reachability,
}

impl Connection {
    /// Sends one message; `quiet_on_failure` holds an unreachable peer's failure until the
    /// call's time is up (for empty appends: heartbeats and leadership checks).
    async fn send<Req, Resp, E>(
        &self,
        path: &str,
        req: &Req,
        option: &RPCOption,
        quiet_on_failure: bool,
    ) -> Result<Resp, RPCError<NodeId, WireNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let started = tokio::time::Instant::now();
        let result = self
            .client
            .call::<Req, Result<Resp, RaftError<NodeId, E>>>(
                self.target,
                &self.addr,
                path,
                req,
                option.hard_ttl(),
            )
            .await;
        self.reach.note(
            self.target,
            &self.addr,
            result.is_ok(),
            result.as_ref().err(),
        );
        let reply = match result {
            Ok(reply) => reply,
            Err(e @ PeerError::Unreachable { .. }) if quiet_on_failure => {
                // A refused connection fails at once; report it when the call's time is up
                // instead, so that a quorum's answers to a leadership check come first and
                // openraft does not log this peer's failure once per read.
                tokio::time::sleep_until(started + option.soft_ttl()).await;
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
            Err(
                e @ (PeerError::Unreachable { .. }
                | PeerError::Broken { .. }
                | PeerError::Timeout { .. }),
            ) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e @ PeerError::Protocol { .. }) => {
                return Err(RPCError::Network(NetworkError::new(&e)))
            }
        };
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, WireNode, RaftError<NodeId>>> {
        let heartbeat = rpc.entries.is_empty();
        self.send(paths::APPEND, &rpc, &option, heartbeat).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, WireNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(paths::SNAPSHOT, &rpc, &option, false).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, WireNode, RaftError<NodeId>>> {
        self.send(paths::VOTE, &rpc, &option, false).await
    }
}

/// A MessagePack reply body.
pub(crate) struct Msgpack<T>(pub T);

impl<T: Serialize> IntoResponse for Msgpack<T> {
    fn into_response(self) -> Response {
        match encode(&self.0) {
            Ok(bytes) => (
                [(axum::http::header::CONTENT_TYPE, "application/msgpack")],
                bytes,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("encoding reply: {e}"),
            )
                .into_response(),
        }
    }
}

/// A MessagePack request body; a body that does not decode is answered 400 naming the
/// problem.
pub(crate) struct MsgpackBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MsgpackBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        decode(&bytes).map(MsgpackBody).map_err(|e| {
            (StatusCode::BAD_REQUEST, format!("malformed request: {e}")).into_response()
        })
    }
}

/// What the Raft endpoints serve: the node's Raft instance, and what a pre-vote answer
/// needs besides it.
#[derive(Clone)]
pub struct RaftEndpoint {
    pub raft: Raft,
    /// The node's log (a pre-vote compares the candidate's last log id with it).
    pub log: LogStore,
    /// Touched on every message from a leader this node follows, and on every vote it grants.
    pub contact: LeaderContact,
    pub settings: ElectionSettings,
}

async fn append(
    State(end): State<RaftEndpoint>,
    MsgpackBody(req): MsgpackBody<AppendEntriesRequest<TypeConfig>>,
) -> Response {
    let result = end.raft.append_entries(req).await;
    if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
        end.contact.touch();
    }
    Msgpack(result).into_response()
}

async fn vote(
    State(end): State<RaftEndpoint>,
    MsgpackBody(req): MsgpackBody<VoteRequest<NodeId>>,
) -> Response {
    let result = end.raft.vote(req).await;
    if matches!(&result, Ok(r) if r.vote_granted) {
        end.contact.touch();
    }
    Msgpack(result).into_response()
}

async fn snapshot(
    State(end): State<RaftEndpoint>,
    MsgpackBody(req): MsgpackBody<InstallSnapshotRequest<TypeConfig>>,
) -> Response {
    let result = end.raft.install_snapshot(req).await;
    if result.is_ok() {
        end.contact.touch();
    }
    Msgpack(result).into_response()
}

/// Answers a pre-vote ([`super::election`]); changes nothing on this node.
async fn pre_vote(
    State(end): State<RaftEndpoint>,
    MsgpackBody(req): MsgpackBody<PreVoteRequest>,
) -> Response {
    let last_log_id = match end.log.last_log_id().await {
        Ok(l) => l,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let view = {
        let metrics = end.raft.metrics();
        let m = metrics.borrow();
        VoterView {
            voter: m
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == m.id),
            leading_acked: (m.state == ServerState::Leader)
                .then(|| m.millis_since_quorum_ack.map(Duration::from_millis)),
            since_contact: end.contact.last().elapsed(),
            last_log_id,
        }
    };
    let answer = answer_pre_vote(&req, &view, end.settings.min);
    tracing::debug!(candidate = req.candidate, refused = ?answer.refused, "pre-vote");
    Msgpack(answer).into_response()
}

/// Largest message accepted on the Raft listener: an append of up to
/// `max_payload_entries` entries, each up to a 4 MiB batch of writes, or a snapshot chunk.
pub const MAX_RPC_BYTES: usize = 512 * 1024 * 1024;

/// The Raft message endpoints, to be served on the `--raft-addr` listener.
pub fn raft_routes(endpoint: RaftEndpoint) -> Router {
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::SNAPSHOT, post(snapshot))
        .route(paths::PRE_VOTE, post(pre_vote))
        .with_state(endpoint)
}
