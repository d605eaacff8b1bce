//! The public HTTP API (axum): status and health, cluster membership, the key-value space,
//! pipelines, and the web console (`/ui`).
//! Every error is JSON `{"error": code, "detail": text}`; see [`error::ApiError`].

pub mod auth;
mod cluster;
pub mod error;
mod kv;
pub mod metrics;
mod pipelines;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::node::Node;
use error::ApiError;
pub use kv::page_json as kv_page_json;
pub use kv::txn_from_json as kv_txn_from_json;

/// Query of reads that take a consistency level.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    consistency: Option<String>,
}

/// The consistency a read asks for (linearizable when not given).
fn consistency(q: ReadQuery) -> Result<crate::node::Consistency, ApiError> {
    parse_consistency(q.consistency)
}

fn parse_consistency(c: Option<String>) -> Result<crate::node::Consistency, ApiError> {
    match c {
        None => Ok(Default::default()),
        Some(c) => c
            .parse()
            .map_err(|e: String| ApiError::bad_request(format!("consistency: {e}"))),
    }
}

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The public API of `node`.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/status", get(cluster::status))
        .route("/health", get(cluster::health))
        .route("/metrics", get(metrics::metrics))
        .route("/ready", get(cluster::ready))
        .route("/cluster/join", post(cluster::join))
        .route("/cluster/members", get(cluster::members))
        .route(
            "/cluster/members/{id}",
            axum::routing::delete(cluster::remove),
        )
        .route(
            "/cluster/members/{id}/drain",
            post(cluster::drain).delete(cluster::undrain),
        )
        .route("/pipelines", get(pipelines::list).post(pipelines::create))
        .route(
            "/pipelines/{name}",
            get(pipelines::get)
                .put(pipelines::update)
                .delete(pipelines::delete),
        )
        .route("/pipelines/{name}/pause", post(pipelines::pause))
        .route("/pipelines/{name}/resume", post(pipelines::resume))
        .route("/connectors", get(pipelines::connectors))
        .route("/kv", get(kv::list))
        .route(
            "/kv/txn",
            post(kv::txn)
                .get(kv::get_txn_key)
                .put(kv::put_txn_key)
                .delete(kv::delete_txn_key),
        )
        .route("/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/auth/me", get(auth::me))
        .route("/ui", get(ui::index))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .route("/ui/app.css", get(ui::app_css))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            auth::authorize,
        ))
        .with_state(node)
}
