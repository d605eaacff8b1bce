//! The public HTTP API (axum): status and health, cluster membership, the key-value space,
//! pipelines, and the web console (`/ui`).
//! Every error is JSON `{"error": code, "detail": text}`; see [`error::ApiError`].

pub mod auth;
mod cluster;
pub mod error;
mod kv;
pub mod metrics;
pub mod openapi;
mod pipelines;
mod ui;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
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

/// The public API of `node`: the documented routes (with `/openapi.json`, their
/// contract), the console, and the answers for routes and methods that do not exist.
pub fn router(node: Node) -> Router {
    let (api, doc) = documented().split_for_parts();
    let doc = std::sync::Arc::new(openapi::tidy(doc));
    api
        // The key named `txn` (its path is the transaction's route).
        .route(
            "/kv/txn",
            get(kv::get_txn_key)
                .put(kv::put_txn_key)
                .delete(kv::delete_txn_key),
        )
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
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

/// The documented routes: each handler with its `#[utoipa::path]`, registered and
/// described together.
fn documented() -> utoipa_axum::router::OpenApiRouter<Node> {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::health))
        .routes(routes!(metrics::metrics))
        .routes(routes!(cluster::ready))
        .routes(routes!(cluster::join))
        .routes(routes!(cluster::members))
        .routes(routes!(cluster::remove))
        .routes(routes!(cluster::drain, cluster::undrain))
        .routes(routes!(pipelines::list, pipelines::create))
        .routes(routes!(
            pipelines::get,
            pipelines::update,
            pipelines::delete
        ))
        .routes(routes!(pipelines::pause))
        .routes(routes!(pipelines::resume))
        .routes(routes!(pipelines::connectors))
        .routes(routes!(kv::list))
        .routes(routes!(kv::txn))
        .routes(routes!(kv::get, kv::put, kv::delete))
        .routes(routes!(auth::me))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract says which routes are open, the permission table decides: they agree
    /// for every documented operation.
    #[test]
    fn the_contract_and_the_permission_table_agree_on_open_routes() {
        let (_, doc) = documented().split_for_parts();
        let doc = openapi::tidy(doc);
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            let concrete = path
                .replace("{key}", "a/b")
                .replace("{name}", "p")
                .replace("{id}", "2");
            let ops = [
                (axum::http::Method::GET, &item.get),
                (axum::http::Method::PUT, &item.put),
                (axum::http::Method::POST, &item.post),
                (axum::http::Method::DELETE, &item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                operations += 1;
                let open = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().all(|r| r == &Default::default()));
                assert_eq!(
                    auth::needed(&method, &concrete).is_none(),
                    open,
                    "{method} {path}"
                );
            }
        }
        assert!(operations >= 23, "{operations} operations documented");
    }
}
