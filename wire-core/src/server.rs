//! Starting a node: its listeners serve the HTTP API (`http`) and, on the node-to-node
//! listener, Raft's messages with the node-level calls (`cluster::rpc`); then it enters its
//! cluster and runs its share of the pipelines. Kept apart from `node.rs` so that the node
//! does not depend on the routes that call it.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::NodeConfig;
use crate::consensus::{network, protocol_mismatch, PROTOCOL_HEADER};
use crate::node::{Node, Opened};
use crate::tls::ClientCerts;
use crate::Result;

impl Node {
    /// Starts a node: opens (or creates) its database, binds both listeners, starts Raft,
    /// then bootstraps or joins as configured. Returns once the node serves requests (and,
    /// with `join`, once it is a member).
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let Opened {
            node,
            endpoint,
            http_listener,
            raft_listener,
        } = Node::open(config).await?;
        let raft_app = network::raft_routes(endpoint)
            .merge(crate::cluster::rpc::routes(node.clone()))
            .merge(crate::pipeline::runtime::exchange::routes(
                node.runtime().exchange.clone(),
            ))
            .layer(axum::middleware::from_fn(same_protocol))
            .layer(axum::middleware::from_fn_with_state(
                node.id(),
                for_this_node,
            ))
            .layer(axum::middleware::from_fn_with_state(
                node.gate().clone(),
                from_a_node,
            ))
            .layer(axum::extract::DefaultBodyLimit::max(network::MAX_RPC_BYTES));
        if let Err(e) = node
            .serve(raft_listener, raft_app, ClientCerts::Required)
            .and_then(|()| {
                node.serve(
                    http_listener,
                    crate::http::router(node.clone()),
                    ClientCerts::Optional,
                )
            })
        {
            let _ = node.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            node_id = node.id(),
            http_addr = %node.http_addr(),
            raft_addr = %node.raft_addr(),
            "node started"
        );
        node.enter().await?;
        Ok(node)
    }
}

/// Refuses a node-to-node call meant for another node (421): after a member was removed and
/// its address given to a new one, the old process must not answer for the new member (a
/// leader that took its answers for the new node's could not make sense of the log).
async fn for_this_node(
    axum::extract::State(me): axum::extract::State<crate::consensus::NodeId>,
    request: Request,
    next: Next,
) -> Response {
    let to = request
        .headers()
        .get(network::ADDRESSEE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<crate::consensus::NodeId>().ok());
    match to {
        Some(to) if to != me => {
            tracing::warn!(path = %request.uri().path(), to, "refused a call meant for another node");
            (
                StatusCode::MISDIRECTED_REQUEST,
                format!("this is node {me}, not node {to}: the membership has another node at this address"),
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

/// Refuses a node-to-node call without the cluster's secret (401), when the cluster has one.
async fn from_a_node(
    axum::extract::State(gate): axum::extract::State<crate::auth::Gate>,
    request: Request,
    next: Next,
) -> Response {
    let shown = request
        .headers()
        .get(crate::auth::SECRET_HEADER)
        .map(|v| v.as_bytes());
    if gate.node_call_allowed(shown) {
        return next.run(request).await;
    }
    let why = if shown.is_some() {
        "node-to-node call with a wrong cluster secret"
    } else {
        "node-to-node call without the cluster secret"
    };
    tracing::warn!(path = %request.uri().path(), "refused: {why}");
    (StatusCode::UNAUTHORIZED, why).into_response()
}

/// Refuses a node-to-node call from a peer of another protocol version (400, naming both).
async fn same_protocol(request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok());
    match protocol_mismatch(header) {
        None => next.run(request).await,
        Some(why) => {
            tracing::warn!(path = %request.uri().path(), "{why}");
            (StatusCode::BAD_REQUEST, why).into_response()
        }
    }
}
