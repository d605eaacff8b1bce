//! Status, health and cluster membership routes.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use crate::cluster::JoinRequest;
use crate::node::{Node, NodeStatus};

#[utoipa::path(
    get,
    path = "/status",
    tag = "cluster",
    summary = "This node's role, term, log and the members",
    responses((status = 200, description = "The node's status", body = crate::node::NodeStatus), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn status(State(node): State<Node>) -> Result<Json<NodeStatus>, ApiError> {
    Ok(Json(node.cluster().status().await?))
}

#[utoipa::path(
    get,
    path = "/health",
    tag = "cluster",
    summary = "200 while the process serves requests",
    responses((status = 200, description = "Serving", body = crate::http::openapi::StatusWord)),
    security(())
)]
pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/ready",
    tag = "cluster",
    summary = "200 once a leader is known",
    responses((status = 200, description = "Ready", body = crate::http::openapi::StatusWord), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody)),
    security(())
)]
pub async fn ready(State(node): State<Node>) -> Result<impl IntoResponse, ApiError> {
    if node.is_ready() {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no leader known yet",
        ))
    }
}

#[utoipa::path(
    get,
    path = "/cluster/members",
    tag = "cluster",
    summary = "The members",
    responses((status = 200, description = "The members", body = crate::http::openapi::Members), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn members(State(node): State<Node>) -> Result<impl IntoResponse, ApiError> {
    let status = node.cluster().status().await?;
    Ok(Json(json!({"members": status.members})))
}

#[utoipa::path(
    post,
    path = "/cluster/join",
    tag = "cluster",
    summary = "Add or update a member (on the leader)",
    request_body = crate::cluster::JoinRequest,
    responses((status = 200, description = "A member now", body = crate::http::openapi::Joined), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflicts with the cluster's state", body = crate::http::openapi::ErrorBody), (status = 415, description = "not JSON", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn join(
    State(node): State<Node>,
    req: Result<Json<JoinRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Json(req) = req?;
    let id = req.node_id;
    node.cluster().join(req).await?;
    Ok(Json(json!({"joined": id})))
}

fn member_id(id: Result<Path<String>, PathRejection>) -> Result<u64, ApiError> {
    let Path(id) = id?;
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("member id '{id}' is not a positive integer")))
}

#[utoipa::path(
    post,
    path = "/cluster/members/{id}/drain",
    tag = "cluster",
    summary = "Drain a member: hand its partitions off",
    params(("id" = u64, Path, description = "The member's node id")),
    responses((status = 200, description = "Draining", body = crate::http::openapi::Drained), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
/// Starts draining a member: its partitions are handed off and it takes no new ones.
pub async fn drain(
    State(node): State<Node>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = member_id(id)?;
    let changed = node.cluster().drain(id, true).await?;
    Ok(Json(
        json!({"node": id, "draining": true, "changed": changed}),
    ))
}

#[utoipa::path(
    delete,
    path = "/cluster/members/{id}/drain",
    tag = "cluster",
    summary = "End the draining of a member",
    params(("id" = u64, Path, description = "The member's node id")),
    responses((status = 200, description = "Not draining", body = crate::http::openapi::Drained), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
/// Ends the draining of a member.
pub async fn undrain(
    State(node): State<Node>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let id = member_id(id)?;
    let changed = node.cluster().drain(id, false).await?;
    Ok(Json(
        json!({"node": id, "draining": false, "changed": changed}),
    ))
}

#[utoipa::path(
    delete,
    path = "/cluster/members/{id}",
    tag = "cluster",
    summary = "Remove a member (voter or learner)",
    params(("id" = u64, Path, description = "The member's node id")),
    responses((status = 200, description = "Removed", body = crate::http::openapi::Removed), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflicts with the cluster's state", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn remove(
    State(node): State<Node>,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Path(id) = id?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("member id '{id}' is not a positive integer"))
    })?;
    node.cluster().remove(id).await?;
    Ok(Json(json!({"removed": id})))
}
