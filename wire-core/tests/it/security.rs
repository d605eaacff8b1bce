//! Users, permissions and the cluster secret on real `wire node` processes: every route
//! family without credentials, with a wrong password, without its permission and with it;
//! a node without the cluster's secret cannot join or send Raft messages.

use std::time::Duration;

use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

const SECRET: &str = "the-cluster-secret-for-tests";

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A users file: one user per permission family (password `pw-<name>`), and an admin with
/// a token.
fn users_file(dir: &std::path::Path, admin_token: &str) -> std::path::PathBuf {
    let mut text = String::new();
    for family in ["read", "write", "pipelines", "join", "remove", "status"] {
        let hash = wire_core::auth::hash_password(&format!("pw-{family}")).expect("hash");
        text.push_str(&format!(
            "[[users]]\nname = \"{family}-user\"\npassword_hash = \"{hash}\"\npermissions = [\"{family}\"]\n\n"
        ));
    }
    text.push_str(&format!(
        "[[users]]\nname = \"admin\"\ntoken_sha256 = \"{}\"\npermissions = [\"all\"]\n",
        wire_core::auth::token_sha256(admin_token)
    ));
    let path = dir.join("users.toml");
    std::fs::write(&path, text).expect("users file");
    path
}

struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    family: &'static str,
}

fn call(method: Method, path: &str, body: Option<Value>, family: &'static str) -> Call {
    Call {
        method,
        path: path.to_string(),
        body,
        family,
    }
}

async fn send(node: &Proc, c: &Call, auth: Option<&str>) -> (u16, Value, Option<String>) {
    let mut req = http().request(c.method.clone(), node.url(&c.path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = &c.body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_family_needs_its_permission() {
    let dir = tempfile::tempdir().expect("dir");
    let token = wire_core::auth::new_token();
    let users = users_file(dir.path(), &token);
    let users = users.to_string_lossy().to_string();
    let admin = format!("Bearer {token}");
    let cluster = Cluster::start_as(
        3,
        &["--users-file", &users, "--cluster-secret", SECRET],
        Access {
            auth: Some(admin.clone()),
            tls: None,
        },
    )
    .await;
    cluster.wait_leader(Duration::from_secs(20)).await;
    let node = cluster.node(2);
    let spec = json!({
        "name": "guarded",
        "sources": [{"id": "gen", "type": "generator", "config": {"count": 10}}],
        "sinks": [{"id": "out", "type": "stdout", "inputs": ["gen"]}]
    });
    let calls = [
        call(Method::GET, "/kv/some-key?consistency=local", None, "read"),
        call(Method::GET, "/kv?prefix=a", None, "read"),
        call(Method::PUT, "/kv/some-key", Some(json!("v")), "write"),
        call(
            Method::POST,
            "/kv/txn",
            Some(json!({"success": [{"op": "put", "key": "k", "value": "v"}]})),
            "write",
        ),
        call(Method::POST, "/pipelines", Some(spec), "pipelines"),
        call(Method::POST, "/pipelines/guarded/pause", None, "pipelines"),
        call(Method::GET, "/status", None, "status"),
        call(Method::GET, "/metrics", None, "status"),
        call(Method::GET, "/pipelines", None, "status"),
        call(
            Method::POST,
            "/cluster/join",
            Some(
                json!({"node_id": 3, "http_addr": cluster.node(3).http, "raft_addr": cluster.node(3).raft}),
            ),
            "join",
        ),
        call(Method::DELETE, "/cluster/members/3/drain", None, "remove"),
    ];
    for c in &calls {
        let what = format!("{} {}", c.method, c.path);
        let (status, body, challenge) = send(node, c, None).await;
        assert_eq!(status, 401, "{what} without credentials: {body}");
        assert_eq!(body["error"], "unauthenticated", "{what}: {body}");
        assert!(
            challenge.as_deref().is_some_and(|c| c.starts_with("Basic")),
            "{what}: {challenge:?}"
        );

        let wrong = basic(&format!("{}-user", c.family), "not-the-password");
        let (status, body, _) = send(node, c, Some(&wrong)).await;
        assert_eq!(status, 401, "{what} with a wrong password: {body}");
        assert_eq!(body["error"], "bad_credentials", "{what}: {body}");

        let other = if c.family == "status" {
            "read"
        } else {
            "status"
        };
        let lacking = basic(&format!("{other}-user"), &format!("pw-{other}"));
        let (status, body, _) = send(node, c, Some(&lacking)).await;
        assert_eq!(status, 403, "{what} without the permission: {body}");
        assert_eq!(body["error"], "forbidden", "{what}: {body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&format!("'{}'", c.family)),
            "{what}: the answer names the permission: {detail}"
        );

        let right = basic(&format!("{}-user", c.family), &format!("pw-{}", c.family));
        let (status, body, _) = send(node, c, Some(&right)).await;
        assert!(
            (200..300).contains(&status) || status == 404,
            "{what} with the permission: {status} {body}"
        );
    }

    // The open routes, and who the credentials are.
    for path in ["/health", "/ui"] {
        let (status, _, _) = send(node, &call(Method::GET, path, None, ""), None).await;
        assert_eq!(status, 200, "{path} is open");
    }
    let me = call(Method::GET, "/auth/me", None, "");
    let (_, body, _) = send(node, &me, None).await;
    assert_eq!(body["auth_required"], true);
    assert_eq!(body["user"], Value::Null);
    let (_, body, _) = send(node, &me, Some(&basic("read-user", "pw-read"))).await;
    assert_eq!(body["user"], "read-user");
    assert_eq!(body["permissions"], json!(["read"]));
    let (_, body, _) = send(node, &me, Some(&admin)).await;
    assert_eq!(body["user"], "admin");
    assert_eq!(body["permissions"].as_array().map(Vec::len), Some(6));
    // A script (the console) gets no challenge its browser would answer with a dialog.
    let resp = http()
        .get(node.url("/status"))
        .header("x-requested-with", "XMLHttpRequest")
        .send()
        .await
        .expect("status");
    assert_eq!(resp.status(), 401);
    assert!(resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("Bearer")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_cluster_secret_cannot_join_or_send_raft_messages() {
    let dir = tempfile::tempdir().expect("dir");
    let token = wire_core::auth::new_token();
    let users = users_file(dir.path(), &token);
    let users = users.to_string_lossy().to_string();
    let admin = format!("Bearer {token}");
    let mut cluster = Cluster::start_as(
        2,
        &["--users-file", &users, "--cluster-secret", SECRET],
        Access {
            auth: Some(admin.clone()),
            tls: None,
        },
    )
    .await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;

    // A stranger with its own secret is refused, and says why.
    let first = cluster.node(1).http.clone();
    let root = cluster.root.path().to_path_buf();
    let mut stranger = Proc::start(
        &root,
        3,
        &[
            "--users-file".into(),
            users.clone(),
            "--cluster-secret".into(),
            "another-secret-of-16-chars".into(),
            "--join".into(),
            first,
        ],
    );
    eventually(Duration::from_secs(30), "the stranger gives up", || {
        let running = stranger.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    assert!(
        stranger.log_text().contains("join refused"),
        "{}",
        stranger.log_text()
    );

    // Raft's own endpoints refuse calls without the secret or with another one.
    let raft_url = format!("http://{}/raft/vote", cluster.node(leader).raft);
    for secret in [None, Some("another-secret-of-16-chars")] {
        let mut req = http()
            .post(&raft_url)
            .header(
                wire_core::consensus::PROTOCOL_HEADER,
                wire_core::consensus::PROTOCOL_VERSION.to_string(),
            )
            .body(Vec::new());
        if let Some(s) = secret {
            req = req.header("x-wire-cluster-secret", s);
        }
        let resp = req.send().await.expect("vote");
        assert_eq!(resp.status(), 401, "secret {secret:?}");
    }
    let status = cluster.node(1).status().await.expect("status");
    let members = status["members"].as_array().map(Vec::len);
    assert_eq!(members, Some(2), "{status}");
    // The cluster still works for its users.
    let resp = cluster
        .node_mut(2)
        .put("after", "stranger")
        .await
        .expect("put");
    assert_eq!(resp.status(), 200);
}
