//! Authentication and permissions on the public API: which permission each route needs
//! ([`needed`], one table for every route), the middleware that checks it, and `GET /auth/me`.
//!
//! - No credentials where a user is required: 401 `unauthenticated`.
//! - Credentials that are no user's (wrong password, unknown token): 401 `bad_credentials`.
//! - A user without the route's permission: 403 `forbidden`, naming the permission.
//!
//! A 401 carries `WWW-Authenticate: Basic`, except to a script that says so with
//! `X-Requested-With: XMLHttpRequest` (the console), which the browser would otherwise
//! answer with its own login dialog.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use axum::extract::ConnectInfo;

use crate::auth::{Denied, Gate, Permission, Principal, Shown, SECRET_HEADER};
use crate::node::Node;
use crate::tls::Peer;

/// The permission a request to `path` with `method` needs; `None` for the open routes
/// (health and readiness probes, the console's assets, `/auth/me`, the API's contract).
pub fn needed(method: &Method, path: &str) -> Option<Permission> {
    let reads = method == Method::GET || method == Method::HEAD;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["health"] | ["ready"] | ["auth", "me"] | ["openapi.json"] => None,
        ["ui", ..] => None,
        ["status"] | ["metrics"] => Some(Permission::Status),
        ["cluster", "join"] => Some(Permission::Join),
        ["cluster", "members"] => Some(Permission::Status),
        ["cluster", "members", ..] if reads => Some(Permission::Status),
        ["cluster", "members", ..] => Some(Permission::Remove),
        ["pipelines", ..] | ["connectors", ..] if reads => Some(Permission::Status),
        ["pipelines", ..] | ["connectors", ..] => Some(Permission::Pipelines),
        ["kv", ..] if reads => Some(Permission::Read),
        ["kv", ..] => Some(Permission::Write),
        // Routes that do not exist still need a user, so that a stranger learns nothing.
        _ => Some(Permission::Status),
    }
}

fn header_bytes(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<Vec<u8>> {
    headers.get(name).map(|v| v.as_bytes().to_vec())
}

/// Whether the connection showed a certificate the cluster's CA signed.
fn node_certificate(extensions: &axum::http::Extensions) -> bool {
    extensions
        .get::<ConnectInfo<Peer>>()
        .is_some_and(|c| c.0.node_certificate)
}

/// Who a request comes from, checked against what its route needs.
async fn principal(
    gate: &Gate,
    headers: &HeaderMap,
    node_certificate: bool,
    needed: Option<Permission>,
) -> Result<Principal, Denied> {
    let authorization = header_bytes(headers, header::AUTHORIZATION);
    let secret = header_bytes(headers, SECRET_HEADER);
    let shown = Shown {
        authorization: authorization.as_deref(),
        secret: secret.as_deref(),
        node_certificate,
    };
    if let Some(answer) = gate.authorize(&shown, needed) {
        return answer;
    }
    let gate = gate.clone();
    tokio::task::spawn_blocking(move || {
        let shown = Shown {
            authorization: authorization.as_deref(),
            secret: secret.as_deref(),
            node_certificate,
        };
        gate.authorize_slowly(&shown, needed)
    })
    .await
    .unwrap_or_else(|_| {
        Err(Denied::BadCredentials(
            "checking the password failed".into(),
        ))
    })
}

/// The answer to a refused request.
fn refusal(denied: Denied, headers: &HeaderMap) -> Response {
    let detail = denied.to_string();
    let (status, code) = match denied {
        Denied::NoCredentials => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Denied::BadCredentials(_) => (StatusCode::UNAUTHORIZED, "bad_credentials"),
        Denied::Forbidden { .. } => {
            return ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail).into_response()
        }
    };
    let scripted = headers
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"xmlhttprequest"));
    let challenge = if scripted {
        r#"Bearer realm="wire""#
    } else {
        r#"Basic realm="wire", charset="UTF-8""#
    };
    (
        [(header::WWW_AUTHENTICATE, challenge)],
        ApiError::new(status, code, detail),
    )
        .into_response()
}

/// Lets a request through when its sender may use its route.
pub async fn authorize(State(node): State<Node>, request: Request, next: Next) -> Response {
    let gate = node.gate();
    // Nothing to check (no users, secret or mutual TLS): no cost on the hot path.
    if !gate.checks_anything() {
        return next.run(request).await;
    }
    let family = needed(request.method(), request.uri().path());
    if family.is_none() {
        return next.run(request).await;
    }
    let cert = node_certificate(request.extensions());
    match principal(gate, request.headers(), cert, family).await {
        Ok(_) => next.run(request).await,
        Err(denied) => {
            tracing::debug!(path = %request.uri().path(), %denied, "refused");
            refusal(denied, request.headers())
        }
    }
}

/// `GET /auth/me`: who the request's credentials are and what they may do. Without
/// credentials it answers who anyone is (nobody, when the node has users).
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    summary = "Who the credentials are and what they may do",
    responses((status = 200, description = "The caller", body = crate::http::openapi::Me), (status = 401, description = "no or wrong credentials", body = crate::http::openapi::ErrorBody)),
    security(())
)]
pub async fn me(State(node): State<Node>, request: Request) -> Response {
    let gate = node.gate();
    let headers = request.headers();
    let cert = node_certificate(request.extensions());
    let who = match principal(gate, headers, cert, None).await {
        Ok(who) => Some(who),
        Err(Denied::NoCredentials) => None,
        Err(denied) => return refusal(denied, headers),
    };
    let families = |may: &dyn Fn(Permission) -> bool| -> Vec<&'static str> {
        Permission::EVERY
            .into_iter()
            .filter(|p| *p != Permission::All && may(*p))
            .map(Permission::name)
            .collect()
    };
    let (user, permissions) = match &who {
        None => (None, Vec::new()),
        Some(Principal::User { name, .. }) => (
            Some(name.as_str()),
            families(&|p| who.as_ref().is_some_and(|w| w.may(p))),
        ),
        Some(Principal::Node) => (Some("(cluster node)"), families(&|_| true)),
        Some(Principal::Anyone) => (None, families(&|_| true)),
    };
    Json(serde_json::json!({
        "auth_required": gate.users_required(),
        "user": user,
        "permissions": permissions,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_family_needs_its_permission() {
        let p = |m: Method, path: &str| needed(&m, path);
        use Permission::*;
        assert_eq!(p(Method::GET, "/health"), None);
        assert_eq!(p(Method::GET, "/ready"), None);
        assert_eq!(p(Method::GET, "/ui/app.js"), None);
        assert_eq!(p(Method::GET, "/auth/me"), None);
        assert_eq!(p(Method::GET, "/status"), Some(Status));
        assert_eq!(p(Method::GET, "/metrics"), Some(Status));
        assert_eq!(p(Method::GET, "/cluster/members"), Some(Status));
        assert_eq!(p(Method::POST, "/cluster/join"), Some(Join));
        assert_eq!(p(Method::DELETE, "/cluster/members/3"), Some(Remove));
        assert_eq!(p(Method::POST, "/cluster/members/3/drain"), Some(Remove));
        assert_eq!(p(Method::GET, "/pipelines"), Some(Status));
        assert_eq!(p(Method::GET, "/pipelines/x"), Some(Status));
        assert_eq!(p(Method::GET, "/connectors"), Some(Status));
        assert_eq!(p(Method::POST, "/pipelines"), Some(Pipelines));
        assert_eq!(p(Method::PUT, "/pipelines/x"), Some(Pipelines));
        assert_eq!(p(Method::POST, "/pipelines/x/pause"), Some(Pipelines));
        assert_eq!(p(Method::DELETE, "/pipelines/x"), Some(Pipelines));
        assert_eq!(p(Method::GET, "/kv"), Some(Read));
        assert_eq!(p(Method::GET, "/kv/a/b"), Some(Read));
        assert_eq!(p(Method::GET, "/kv/txn"), Some(Read));
        assert_eq!(p(Method::PUT, "/kv/a"), Some(Write));
        assert_eq!(p(Method::DELETE, "/kv/a"), Some(Write));
        assert_eq!(p(Method::POST, "/kv/txn"), Some(Write));
        assert_eq!(p(Method::GET, "/no/such/route"), Some(Status));
    }
}
