//! The node-level calls on the Raft listener: a follower forwards writes, read-index requests,
//! joins, removals and leadership hand-offs to the leader here. Bodies are MessagePack; the
//! reply is `Result<T, RemoteFailure>`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Serialize;

use super::calls::{paths, RemoteFailure};
use super::JoinRequest;
use crate::consensus::network::{Msgpack, MsgpackBody};
use crate::consensus::{Command, NodeId};
use crate::node::Node;
use crate::Error;

fn reply<T: Serialize>(r: Result<T, Error>) -> Response {
    Msgpack(r.map_err(RemoteFailure::from)).into_response()
}

async fn write(State(node): State<Node>, MsgpackBody(cmd): MsgpackBody<Command>) -> Response {
    reply(node.client().write_local(cmd).await)
}

async fn read_index(
    State(node): State<Node>,
    MsgpackBody(linearizable): MsgpackBody<bool>,
) -> Response {
    reply(node.client().read_index_local(linearizable).await)
}

async fn join(State(node): State<Node>, MsgpackBody(req): MsgpackBody<JoinRequest>) -> Response {
    reply(node.cluster().join_local(req).await)
}

async fn remove(State(node): State<Node>, MsgpackBody(id): MsgpackBody<NodeId>) -> Response {
    reply(node.cluster().remove_local(id).await)
}

async fn campaign(State(node): State<Node>) -> Response {
    reply(node.cluster().campaign().await)
}

async fn job_report(State(node): State<Node>, MsgpackBody(name): MsgpackBody<String>) -> Response {
    let report = node
        .runtime()
        .job(&name)
        .map(|s| crate::pipeline::runtime::status::JobReport::of(&s));
    reply(Ok::<_, Error>(report))
}

async fn liveness(State(node): State<Node>) -> Response {
    reply(node.cluster().local_liveness())
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
        .route(paths::LIVENESS, post(liveness))
        .with_state(node)
}
