//! Key-value routes: `GET|PUT|DELETE /kv/{key}`, `GET /kv` (list with pagination) and
//! `POST /kv/txn` (atomic compare-and-write across keys).
//!
//! Values travel as the raw request/response body on `/kv/{key}`; in JSON (list, txn) a
//! value is a `value` string when it is UTF-8, or `value_base64` otherwise.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::ApiError;
use super::{consistency, ReadQuery};
use crate::kv::{self, Compare, Txn, TxnOp};
use crate::node::Node;

async fn get_key(node: Node, key: String, query: ReadQuery) -> Result<Response, ApiError> {
    let consistency = consistency(query)?;
    match node.kv().get(&key, consistency).await? {
        Some(value) => {
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response())
        }
        None => Err(ApiError::not_found(format!("key '{key}' not found"))),
    }
}

async fn put_key(node: Node, key: String, body: Bytes) -> Result<Response, ApiError> {
    Ok(Json(node.kv().put(&key, body.to_vec()).await?).into_response())
}

async fn delete_key(node: Node, key: String) -> Result<Response, ApiError> {
    Ok(Json(node.kv().delete(&key).await?).into_response())
}

#[utoipa::path(
    get,
    path = "/kv/{*key}",
    tag = "kv",
    summary = "A key's raw value",
    params(("key" = String, Path, description = "The key: 1 to 1,024 bytes of UTF-8, may contain /"), ("consistency" = Option<String>, Query, description = "linearizable (default), leader or local")),
    responses((status = 200, description = "The value", body = String, content_type = "application/octet-stream"), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 404, description = "not found", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn get(
    State(node): State<Node>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (Path(key), Query(query)) = (key?, query?);
    get_key(node, key, query).await
}

#[utoipa::path(
    put,
    path = "/kv/{*key}",
    tag = "kv",
    summary = "Write a key; answered once committed and applied",
    params(("key" = String, Path, description = "The key: 1 to 1,024 bytes of UTF-8, may contain /")),
    request_body(content = String, description = "The value's bytes (up to 1 MiB)", content_type = "application/octet-stream"),
    responses((status = 200, description = "Written", body = crate::kv::KvWritten), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 413, description = "too large", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn put(
    State(node): State<Node>,
    key: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(key) = key?;
    put_key(node, key, body?).await
}

#[utoipa::path(
    delete,
    path = "/kv/{*key}",
    tag = "kv",
    summary = "Delete a key",
    params(("key" = String, Path, description = "The key: 1 to 1,024 bytes of UTF-8, may contain /")),
    responses((status = 200, description = "Deleted", body = crate::kv::KvDeleted), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn delete(
    State(node): State<Node>,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(key) = key?;
    delete_key(node, key).await
}

/// `/kv/txn` is a route of its own; these serve the key named `txn` on it.
pub async fn get_txn_key(
    State(node): State<Node>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    get_key(node, "txn".into(), query).await
}

pub async fn put_txn_key(
    State(node): State<Node>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    put_key(node, "txn".into(), body?).await
}

pub async fn delete_txn_key(State(node): State<Node>) -> Result<Response, ApiError> {
    delete_key(node, "txn".into()).await
}

/// Query of `GET /kv`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys that start with it.
    prefix: Option<String>,
    /// Keys per page, 1 to 10,000 (default 100).
    limit: Option<usize>,
    /// Continue after this key (a page's `next_after`).
    after: Option<String>,
    /// `linearizable` (default), `leader` or `local`.
    consistency: Option<String>,
}

/// A page of `GET /kv`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KvPageBody {
    items: Vec<Item>,
    /// Whether more keys follow.
    more: bool,
    /// The key to pass as `after` for the next page, if more follow.
    next_after: Option<String>,
}

/// A key and its value in JSON: `value` when it is UTF-8 text, else `value_base64`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Item {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
}

fn item(key: String, value: Vec<u8>) -> Item {
    match String::from_utf8(value) {
        Ok(s) => Item {
            key,
            value: Some(s),
            value_base64: None,
        },
        Err(e) => Item {
            key,
            value: None,
            value_base64: Some(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
        },
    }
}

/// Default page size of `GET /kv`.
const DEFAULT_LIST_LIMIT: usize = 100;

#[utoipa::path(
    get,
    path = "/kv",
    tag = "kv",
    summary = "Keys in order, a page at a time",
    params(ListQuery),
    responses((status = 200, description = "A page", body = KvPageBody), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn list(
    State(node): State<Node>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit == 0 || limit > kv::MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit: must be between 1 and {}",
            kv::MAX_LIST_LIMIT
        )));
    }
    let consistency = super::parse_consistency(q.consistency)?;
    let prefix = q.prefix.unwrap_or_default();
    let page = node
        .kv()
        .list(&prefix, q.after.as_deref(), limit, consistency)
        .await?;
    Ok(Json(page_json(page)).into_response())
}

/// A page of a listing as `GET /kv` answers it: `items` (each `key` with `value` or
/// `value_base64`), `more`, and `next_after` (the key to continue after, if more follow).
pub fn page_json(page: crate::consensus::state_machine::KvPage) -> serde_json::Value {
    let (items, more) = (page.items, page.more);
    let next_after = if more {
        items.last().map(|(k, _)| k.clone())
    } else {
        None
    };
    let items: Vec<Item> = items.into_iter().map(|(k, v)| item(k, v)).collect();
    serde_json::to_value(KvPageBody {
        items,
        more,
        next_after,
    })
    .unwrap_or_else(|e| json!({"error": e.to_string()}))
}

/// A value in a transaction body: `value` (UTF-8 text) or `value_base64`.
struct JsonValue {
    value: Option<String>,
    value_base64: Option<String>,
}

impl JsonValue {
    fn bytes(self, path: &str) -> Result<Vec<u8>, ApiError> {
        match (self.value, self.value_base64) {
            (Some(v), None) => Ok(v.into_bytes()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| ApiError::bad_request(format!("{path}.value_base64: {e}"))),
            _ => Err(ApiError::bad_request(format!(
                "{path}: give exactly one of value or value_base64"
            ))),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct JsonCompare {
    key: String,
    op: CompareOp,
    value: Option<String>,
    value_base64: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum CompareOp {
    Equals,
    Exists,
    Absent,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct JsonOp {
    op: WriteOp,
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
enum WriteOp {
    Put,
    Delete,
}

/// Body of `POST /kv/txn`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonTxn {
    #[serde(default)]
    compare: Vec<JsonCompare>,
    #[serde(default)]
    success: Vec<JsonOp>,
    #[serde(default)]
    failure: Vec<JsonOp>,
}

fn value_of(
    value: Option<String>,
    value_base64: Option<String>,
    path: &str,
) -> Result<Vec<u8>, ApiError> {
    JsonValue {
        value,
        value_base64,
    }
    .bytes(path)
}

fn no_value(
    value: &Option<String>,
    value_base64: &Option<String>,
    path: &str,
) -> Result<(), ApiError> {
    if value.is_some() || value_base64.is_some() {
        Err(ApiError::bad_request(format!(
            "{path}: this operation takes no value"
        )))
    } else {
        Ok(())
    }
}

fn ops(list: Vec<JsonOp>, branch: &str) -> Result<Vec<TxnOp>, ApiError> {
    list.into_iter()
        .enumerate()
        .map(|(i, op)| {
            let path = format!("{branch}[{i}]");
            Ok(match op.op {
                WriteOp::Put => TxnOp::Put {
                    key: op.key,
                    value: value_of(op.value, op.value_base64, &path)?,
                },
                WriteOp::Delete => {
                    no_value(&op.value, &op.value_base64, &path)?;
                    TxnOp::Delete { key: op.key }
                }
            })
        })
        .collect()
}

impl JsonTxn {
    fn into_txn(self) -> Result<Txn, ApiError> {
        let compare = self
            .compare
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let path = format!("compare[{i}]");
                Ok(match c.op {
                    CompareOp::Equals => Compare::Equals {
                        key: c.key,
                        value: value_of(c.value, c.value_base64, &path)?,
                    },
                    CompareOp::Exists => {
                        no_value(&c.value, &c.value_base64, &path)?;
                        Compare::Exists { key: c.key }
                    }
                    CompareOp::Absent => {
                        no_value(&c.value, &c.value_base64, &path)?;
                        Compare::Absent { key: c.key }
                    }
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(Txn {
            compare,
            success: ops(self.success, "success")?,
            failure: ops(self.failure, "failure")?,
        })
    }
}

/// Parses a transaction in the JSON of `POST /kv/txn` (the C ABI takes the same JSON).
pub fn txn_from_json(body: &str) -> Result<Txn, String> {
    let parsed: JsonTxn =
        serde_json::from_str(body).map_err(|e| format!("malformed transaction JSON: {e}"))?;
    parsed.into_txn().map_err(|e| e.detail().to_string())
}

#[utoipa::path(
    post,
    path = "/kv/txn",
    tag = "kv",
    summary = "Compare and write, all or nothing (as etcd's Txn)",
    request_body = JsonTxn,
    responses((status = 200, description = "Which branch ran", body = crate::kv::TxnOutcome), (status = 400, description = "bad request (the detail names the problem)", body = crate::http::openapi::ErrorBody), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody), (status = 403, description = "the user lacks the route's permission", body = crate::http::openapi::ErrorBody), (status = 413, description = "too large", body = crate::http::openapi::ErrorBody), (status = 415, description = "not JSON", body = crate::http::openapi::ErrorBody), (status = 503, description = "no leader or quorum now; retry (Retry-After)", body = crate::http::openapi::ErrorBody))
)]
pub async fn txn(
    State(node): State<Node>,
    body: Result<Json<JsonTxn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    Ok(Json(node.kv().txn(body.into_txn()?).await?).into_response())
}
