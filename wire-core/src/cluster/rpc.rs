//! The node-level calls on the Raft listener: a follower forwards writes, read-index requests,
//! joins, removals and leadership hand-offs to the leader here. Bodies are MessagePack; the
//! reply is `Result<T, RemoteFailure>`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};

use super::JoinRequest;
use crate::consensus::network::{Msgpack, MsgpackBody};
use crate::consensus::{Command, NodeId};
use crate::node::Node;
use crate::{Error, ErrorKind};

/// Paths of the node-level endpoints.
pub mod paths {
    pub const WRITE: &str = "/internal/write";
    pub const READ_INDEX: &str = "/internal/read-index";
    pub const JOIN: &str = "/internal/join";
    pub const REMOVE: &str = "/internal/remove";
    pub const CAMPAIGN: &str = "/internal/campaign";
    pub const JOB_REPORT: &str = "/internal/job-report";
}

/// An [`Error`] as it crosses between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RemoteFailure {
    NotLeader(Option<NodeId>),
    Invalid(String),
    InvalidSpec(Vec<crate::pipeline::SpecError>),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Other(String),
}

impl From<Error> for RemoteFailure {
    fn from(e: Error) -> Self {
        match e {
            Error::NotLeader { leader } => RemoteFailure::NotLeader(leader),
            Error::InvalidSpec(errors) => RemoteFailure::InvalidSpec(errors),
            Error::Invalid(s) => RemoteFailure::Invalid(s),
            Error::NotFound(s) => RemoteFailure::NotFound(s),
            Error::Conflict(s) => RemoteFailure::Conflict(s),
            Error::Unavailable(s) => RemoteFailure::Unavailable(s),
            Error::Shutdown => RemoteFailure::Unavailable("the leader is shutting down".into()),
            // The rest by kind, so that a new variant lands somewhere sensible.
            e => match e.kind() {
                ErrorKind::BadRequest | ErrorKind::InvalidConfig | ErrorKind::TooLarge => {
                    RemoteFailure::Invalid(e.to_string())
                }
                ErrorKind::NotFound => RemoteFailure::NotFound(e.to_string()),
                ErrorKind::Conflict => RemoteFailure::Conflict(e.to_string()),
                ErrorKind::Unavailable | ErrorKind::ShuttingDown => {
                    RemoteFailure::Unavailable(e.to_string())
                }
                ErrorKind::InvalidSpec
                | ErrorKind::Storage
                | ErrorKind::Io
                | ErrorKind::Internal => RemoteFailure::Other(e.to_string()),
            },
        }
    }
}

impl From<RemoteFailure> for Error {
    fn from(f: RemoteFailure) -> Self {
        match f {
            RemoteFailure::NotLeader(leader) => Error::NotLeader { leader },
            RemoteFailure::Invalid(s) => Error::Invalid(s),
            RemoteFailure::InvalidSpec(errors) => Error::InvalidSpec(errors),
            RemoteFailure::NotFound(s) => Error::NotFound(s),
            RemoteFailure::Conflict(s) => Error::Conflict(s),
            RemoteFailure::Unavailable(s) => Error::Unavailable(s),
            RemoteFailure::Other(s) => Error::Internal(format!("on the leader: {s}")),
        }
    }
}

fn reply<T: Serialize>(r: Result<T, Error>) -> Response {
    Msgpack(r.map_err(RemoteFailure::from)).into_response()
}

async fn write(State(node): State<Node>, MsgpackBody(cmd): MsgpackBody<Command>) -> Response {
    reply(node.write_local(cmd).await)
}

async fn read_index(
    State(node): State<Node>,
    MsgpackBody(linearizable): MsgpackBody<bool>,
) -> Response {
    reply(node.read_index_local(linearizable).await)
}

async fn join(State(node): State<Node>, MsgpackBody(req): MsgpackBody<JoinRequest>) -> Response {
    reply(node.join_local(req).await)
}

async fn remove(State(node): State<Node>, MsgpackBody(id): MsgpackBody<NodeId>) -> Response {
    reply(node.remove_local(id).await)
}

async fn campaign(State(node): State<Node>) -> Response {
    reply(node.campaign().await)
}

async fn job_report(State(node): State<Node>, MsgpackBody(name): MsgpackBody<String>) -> Response {
    let report = node
        .runtime()
        .job(&name)
        .map(|s| crate::pipeline::runtime::status::JobReport::of(&s));
    reply(Ok::<_, Error>(report))
}

/// The node-level endpoints, served on the `--raft-addr` listener beside Raft's own.
pub fn routes(node: Node) -> Router {
    Router::new()
        .route(paths::WRITE, post(write))
        .route(paths::READ_INDEX, post(read_index))
        .route(paths::JOIN, post(join))
        .route(paths::REMOVE, post(remove))
        .route(paths::CAMPAIGN, post(campaign))
        .route(paths::JOB_REPORT, post(job_report))
        .with_state(node)
}
