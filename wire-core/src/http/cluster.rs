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

pub async fn status(State(node): State<Node>) -> Result<Json<NodeStatus>, ApiError> {
    Ok(Json(node.cluster().status().await?))
}

pub async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

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

pub async fn members(State(node): State<Node>) -> Result<impl IntoResponse, ApiError> {
    let status = node.cluster().status().await?;
    Ok(Json(json!({"members": status.members})))
}

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
