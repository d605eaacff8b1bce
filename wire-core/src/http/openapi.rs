//! The API's contract: an OpenAPI 3.1 document built from the `#[utoipa::path]` of every
//! routed handler and the types they answer with (utoipa; `router` registers the routes and
//! their documentation together, so neither can go without the other). Served at
//! `/openapi.json`.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": code, "detail": text}`, with `errors` listing each
/// problem of an invalid pipeline spec.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error's code: `bad_request`, `invalid_spec`, `not_found`, `conflict`,
    /// `unavailable`, `unauthenticated`, `forbidden`, ...
    pub error: String,
    /// What is wrong, for a person.
    pub detail: String,
    /// Each problem of an invalid spec, with its place (`{"path", "message"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<BTreeMap<String, String>>>,
}

/// A small status answer (`{"status": "ok"}`, `{"status": "ready"}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusWord {
    pub status: String,
}

/// The members, as in `GET /status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Members {
    pub members: Vec<crate::node::MemberInfo>,
}

/// A join done: the node's id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    pub joined: u64,
}

/// A member removed: its id.
#[derive(Debug, Serialize, ToSchema)]
pub struct Removed {
    pub removed: u64,
}

/// A member's draining, and whether the call changed it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Drained {
    pub node: u64,
    pub draining: bool,
    pub changed: bool,
}

/// A pipeline deleted: its name.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// Who the credentials are and what they may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// Whether the node has users (then every other route wants credentials).
    pub auth_required: bool,
    /// The user's name (none without credentials or without users).
    pub user: Option<String>,
    /// The permission families the caller has: `read`, `write`, `pipelines`, `join`,
    /// `remove`, `status`.
    pub permissions: Vec<String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wire",
        description = "The HTTP API of a Wire node: cluster membership, the replicated key-value space and pipelines. With users configured, every route but /health, /ready, /auth/me and /openapi.json wants HTTP basic auth or a bearer token with the route's permission.",
    ),
    modifiers(&Security),
    security(("basic" = []), ("bearer" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "cluster", description = "Status, health and membership"),
        (name = "kv", description = "The replicated key-value space"),
        (name = "pipelines", description = "Stream-processing pipelines"),
        (name = "auth", description = "Who the caller is"),
    )
)]
pub struct ApiDoc;

/// Paths as axum writes them (`{*key}`) as OpenAPI writes them (`{key}`).
pub fn tidy(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
    doc
}
