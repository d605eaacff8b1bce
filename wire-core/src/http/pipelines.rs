//! Pipeline routes: create, update, read, list, pause, resume, delete; and the connector
//! registry as data. A spec body is JSON or YAML text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiError;
use super::{consistency, ReadQuery};
use crate::connectors::CONNECTORS;
use crate::node::Node;
use crate::pipeline::{DesiredState, PipelineSpec, BUILTIN_TRANSFORMS};

fn spec_from(body: Result<Bytes, BytesRejection>) -> Result<PipelineSpec, ApiError> {
    let body = body?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::bad_request(format!("the spec is not UTF-8 text: {e}")))?;
    PipelineSpec::parse(text).map_err(ApiError::invalid_spec)
}

#[utoipa::path(
    post,
    path = "/pipelines",
    tag = "pipelines",
    summary = "Create a pipeline",
    request_body(content = String, description = "A pipeline spec, JSON or YAML text (see the README)", content_type = "application/json"),
    responses((status = 201, description = "Created", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflicts with the cluster's state", body = crate::http::openapi::ErrorBody), (status = 413, description = "too large", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn create(
    State(node): State<Node>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let spec = spec_from(body)?;
    let written = node.pipelines().create(spec).await?;
    Ok((StatusCode::CREATED, Json(written)).into_response())
}

#[utoipa::path(
    put,
    path = "/pipelines/{name}",
    tag = "pipelines",
    summary = "Create or update a pipeline",
    params(("name" = String, Path, description = "The pipeline's name")),
    request_body(content = String, description = "A pipeline spec, JSON or YAML text (see the README)", content_type = "application/json"),
    responses((status = 200, description = "Updated", body = Object), (status = 201, description = "Created", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 409, description = "conflicts with the cluster's state", body = crate::http::openapi::ErrorBody), (status = 413, description = "too large", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn update(
    State(node): State<Node>,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    let spec = spec_from(body)?;
    if spec.name != name {
        return Err(ApiError::bad_request(format!(
            "name: the spec is named '{}' but the path names '{name}'",
            spec.name
        )));
    }
    let written = node.pipelines().update(spec, true).await?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(written)).into_response())
}

#[utoipa::path(
    get,
    path = "/pipelines/{name}",
    tag = "pipelines",
    summary = "A pipeline's status: state, partitions, counters, dead letters, throughput",
    params(("name" = String, Path, description = "The pipeline's name"), ("consistency" = Option<String>, Query, description = "linearizable (default), leader or local")),
    responses((status = 200, description = "Its status", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn get(
    State(node): State<Node>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (Path(name), Query(q)) = (name?, query?);
    match node.pipelines().status(&name, consistency(q)?).await? {
        Some(record) => Ok(Json(record).into_response()),
        None => Err(ApiError::not_found(format!("pipeline '{name}' not found"))),
    }
}

#[utoipa::path(
    get,
    path = "/pipelines",
    tag = "pipelines",
    summary = "Every pipeline",
    params(("consistency" = Option<String>, Query, description = "linearizable (default), leader or local")),
    responses((status = 200, description = "The pipelines", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn list(
    State(node): State<Node>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    Ok(Json(node.pipelines().list(consistency(q)?).await?).into_response())
}

async fn set_state(node: Node, name: String, desired: DesiredState) -> Result<Response, ApiError> {
    Ok(Json(node.pipelines().set_state(&name, desired).await?).into_response())
}

#[utoipa::path(
    post,
    path = "/pipelines/{name}/pause",
    tag = "pipelines",
    summary = "Pause a pipeline at its next checkpoint",
    params(("name" = String, Path, description = "The pipeline's name")),
    responses((status = 200, description = "Paused", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn pause(
    State(node): State<Node>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    set_state(node, name, DesiredState::Paused).await
}

#[utoipa::path(
    post,
    path = "/pipelines/{name}/resume",
    tag = "pipelines",
    summary = "Resume a paused pipeline",
    params(("name" = String, Path, description = "The pipeline's name")),
    responses((status = 200, description = "Resumed", body = Object), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn resume(
    State(node): State<Node>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    set_state(node, name, DesiredState::Running).await
}

#[utoipa::path(
    delete,
    path = "/pipelines/{name}",
    tag = "pipelines",
    summary = "Delete a pipeline",
    params(("name" = String, Path, description = "The pipeline's name")),
    responses((status = 200, description = "Deleted", body = crate::http::openapi::Deleted), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn delete(
    State(node): State<Node>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(name) = name?;
    node.pipelines().delete(&name).await?;
    Ok(Json(json!({"deleted": name})).into_response())
}

#[utoipa::path(
    get,
    path = "/connectors",
    tag = "pipelines",
    summary = "The connectors and built-in transforms, with their config schemas",
    responses((status = 200, description = "The registry", body = Object), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody))
)]
pub async fn connectors() -> Response {
    Json(json!({"connectors": CONNECTORS, "transforms": BUILTIN_TRANSFORMS})).into_response()
}
