//! One error type for every HTTP answer that is not a success: what the caller got wrong is
//! a 4xx naming the problem; a retryable condition is a 503 with `Retry-After`; an internal
//! failure is logged in full and answered with a generic 500.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::{Error, ErrorKind};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// Every problem with its place, for invalid specs.
    errors: Option<Vec<crate::pipeline::SpecError>>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [crate::pipeline::SpecError]>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    /// A rejected pipeline spec, listing every problem.
    pub fn invalid_spec(errors: Vec<crate::pipeline::SpecError>) -> Self {
        let detail = format!(
            "{} problem{} in the spec: {}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        );
        Self {
            errors: Some(errors),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_spec", detail)
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(Body {
            error: self.code,
            detail: &self.detail,
            errors: self.errors.as_deref(),
        });
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            (self.status, [(header::RETRY_AFTER, "1")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let status =
            StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match (kind, e) {
            (ErrorKind::InvalidSpec, Error::InvalidSpec(errors)) => ApiError::invalid_spec(errors),
            (ErrorKind::ShuttingDown, _) => {
                ApiError::new(status, kind.code(), "the node is shutting down")
            }
            (ErrorKind::Storage | ErrorKind::Io | ErrorKind::Internal, e) => {
                tracing::error!(error = %e, "failure answering a request");
                ApiError::new(status, kind.code(), "internal error; see the node's log")
            }
            (_, e) => ApiError::new(status, kind.code(), e.to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body exceeds {} bytes", super::MAX_BODY_BYTES),
            )
        } else {
            ApiError::bad_request(format!("reading the request body: {r}"))
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::BytesRejection(b) => b.into(),
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body with Content-Type: application/json",
            ),
            other => ApiError::bad_request(format!("malformed JSON body: {}", other.body_text())),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(format!("bad query parameters: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request(format!("bad path: {}", r.body_text()))
    }
}
