//! TLS on real `wire node` processes: a 3-node cluster over mutual TLS, plain text to a TLS
//! port, a client with the wrong CA, an expired certificate, a stranger with another CA's
//! certificate, and a certificate rotated while a client writes (no write lost).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use reqwest::Method;

use crate::support::*;

/// A test CA.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        Ca { cert, key }
    }

    /// A node certificate for 127.0.0.1 and localhost; `expired` ended yesterday.
    fn issue(&self, name: &str, expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(30);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl Files {
    fn write(dir: &Path, name: &str, ca: &Ca, signer: &Ca, expired: bool) -> Files {
        std::fs::create_dir_all(dir).expect("dir");
        let (cert, key) = signer.issue(name, expired);
        let files = Files {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca: dir.join(format!("{name}-ca.pem")),
        };
        std::fs::write(&files.cert, cert).expect("cert");
        std::fs::write(&files.key, key).expect("key");
        std::fs::write(&files.ca, ca.pem()).expect("ca");
        files
    }

    fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.to_string_lossy().into(),
            "--tls-key".into(),
            self.key.to_string_lossy().into(),
            "--tls-ca".into(),
            self.ca.to_string_lossy().into(),
        ]
    }
}

/// A client that trusts `ca` (and sees the server's certificate in each response).
fn client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
        .tls_info(true)
        .build()
        .expect("client")
}

fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_mutual_tls_keeps_strangers_out() {
    let certs = tempfile::tempdir().expect("dir");
    let ca = Ca::new("Wire test CA");
    let node = Files::write(certs.path(), "node", &ca, &ca, false);
    let flags = node.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let access = Access {
        auth: None,
        tls: Some(client(&ca)),
    };
    let cluster = Cluster::start_as(3, &flags, access.clone()).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;

    // Writes replicate over mutual TLS: a write on one node is read on another.
    let resp = cluster.node(2).put("over-tls", "yes").await.expect("put");
    assert_eq!(resp.status(), 200);
    let read = eventually(Duration::from_secs(10), "the write on node 3", || async {
        cluster.node(3).try_get("over-tls", "local").await
    })
    .await;
    assert_eq!(read, "yes");

    // Plain text to either TLS port is told to use https, and does not hang.
    for addr in [&cluster.node(1).http, &cluster.node(1).raft] {
        let resp = http()
            .get(format!("http://{addr}/status"))
            .send()
            .await
            .expect("plain request answered");
        assert_eq!(resp.status(), 400, "{addr}");
        let body = resp.text().await.unwrap_or_default();
        assert!(body.contains("use https"), "{body}");
    }

    // Without users, anyone who trusts the CA may use the API, but only a node (its
    // certificate) may add or remove members.
    let join =
        serde_json::json!({"node_id": 7, "http_addr": "127.0.0.1:1", "raft_addr": "127.0.0.1:2"});
    let resp = client(&ca)
        .post(cluster.node(1).url("/cluster/join"))
        .json(&join)
        .send()
        .await
        .expect("join");
    assert_eq!(resp.status(), 401, "a join without a node certificate");
    let resp = client(&ca)
        .delete(cluster.node(1).url("/cluster/members/3"))
        .send()
        .await
        .expect("remove");
    assert_eq!(resp.status(), 401, "a removal without a node certificate");

    // A client that trusts another CA does not accept the node.
    let other = Ca::new("Another CA");
    let e = client(&other)
        .get(cluster.node(1).url("/status"))
        .send()
        .await
        .expect_err("the wrong CA");
    assert!(chain(&e).contains("UnknownIssuer"), "{}", chain(&e));

    // The node-to-node listener wants a certificate of the cluster's CA: none, or another
    // CA's, and the connection is refused.
    let raft = format!("https://{}/raft/vote", cluster.node(leader).raft);
    let e = client(&ca)
        .post(&raft)
        .body(Vec::new())
        .send()
        .await
        .expect_err("no client certificate");
    assert!(!e.is_timeout(), "refused, not left waiting: {}", chain(&e));
    let stranger = Files::write(certs.path(), "stranger", &ca, &other, false);
    let mut pem = std::fs::read(&stranger.cert).expect("cert");
    pem.extend(std::fs::read(&stranger.key).expect("key"));
    let with_other_cert = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("ca"))
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client");
    let e = with_other_cert
        .post(&raft)
        .send()
        .await
        .expect_err("another CA's certificate");
    assert!(!e.is_timeout(), "refused, not left waiting: {}", chain(&e));

    // A node whose certificate another CA signed cannot join, though it trusts the cluster.
    let mut args = stranger.flags();
    args.extend([
        "--join".into(),
        cluster.node(1).http.clone(),
        "--join-timeout-secs".into(),
        "3".into(),
    ]);
    let mut outsider = Proc::start(cluster.root.path(), 4, &args);
    eventually(Duration::from_secs(30), "the stranger gives up", || {
        let running = outsider.is_running();
        async move { (!running).then_some(()) }
    })
    .await;
    let status = cluster.node(1).status().await.expect("status");
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(3),
        "{status}"
    );

    // An expired certificate is refused by a client that trusts its CA.
    let expired = Files::write(certs.path(), "expired", &ca, &ca, true);
    let mut old = Proc::start(
        cluster.root.path(),
        9,
        &[expired.flags(), vec!["--bootstrap".into()]].concat(),
    );
    old.access = access.clone();
    let e = eventually(
        Duration::from_secs(20),
        "the expired node to listen",
        || {
            let url = old.url("/health");
            let c = client(&ca);
            async move {
                match c.get(url).send().await {
                    Err(e) if chain(&e).contains("certificate expired") => Some(chain(&e)),
                    _ => None,
                }
            }
        },
    )
    .await;
    assert!(e.contains("certificate expired"), "{e}");
    old.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_while_a_client_writes_loses_no_write() {
    let certs = tempfile::tempdir().expect("dir");
    let ca = Ca::new("Wire test CA");
    let files = Files::write(certs.path(), "node", &ca, &ca, false);
    let flags = files.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cluster = Cluster::start_as(
        1,
        &flags,
        Access {
            auth: None,
            tls: Some(client(&ca)),
        },
    )
    .await;
    let node = cluster.node(1);
    let served_cert = |resp: &reqwest::Response| {
        resp.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
    };
    // A new connection each time, to see the certificate a handshake gets now.
    let fresh = |path: &str| client(&ca).get(node.url(path)).send();
    let before = served_cert(&fresh("/health").await.expect("health")).expect("cert");

    // A client writes until told to stop: before, during and after the rotation.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let url = node.url("/kv/rotation");
        let c = client(&ca);
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            use std::sync::atomic::Ordering;
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let resp = c
                    .put(format!("{url}/{i:06}"))
                    .body(i.to_string())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => acked.store(i + 1, Ordering::Relaxed),
                    Ok(r) => panic!("write {i}: {}", r.status()),
                    Err(e) => panic!("write {i}: {}", chain(&e)),
                }
                i += 1;
            }
            i
        })
    };
    let written = |n: usize| {
        let acked = acked.clone();
        move || {
            let now = acked.load(std::sync::atomic::Ordering::Relaxed);
            async move { (now >= n).then_some(now) }
        }
    };
    eventually(Duration::from_secs(10), "writes before", written(20)).await;
    // Rotate: a new key and certificate from the same CA, written over the old files.
    let (cert, key) = ca.issue("node", false);
    std::fs::write(&files.key, key).expect("key");
    std::fs::write(&files.cert, cert).expect("cert");
    let after = eventually(Duration::from_secs(10), "the new certificate", || async {
        let resp = fresh("/health").await.ok()?;
        served_cert(&resp).filter(|c| *c != before)
    })
    .await;
    assert_ne!(after, before);
    let at_rotation = acked.load(std::sync::atomic::Ordering::Relaxed);
    eventually(
        Duration::from_secs(10),
        "writes after",
        written(at_rotation + 20),
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total = writer.await.expect("writer");
    let resp = node
        .request(Method::GET, "/kv?prefix=rotation/&limit=10000")
        .send()
        .await
        .expect("list");
    let page: serde_json::Value = resp.json().await.expect("page");
    let items = page["items"].as_array().map(Vec::len);
    assert_eq!(items, Some(total), "every acknowledged write is there");

    // The CLI over TLS: --ca makes it https; without it, the plain request is told why.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wire"))
            .args(["kv", "get", "rotation/000007", "--addr", &node.http])
            .args(extra)
            .output()
            .expect("wire")
    };
    let o = cli(&["--ca", &files.ca.to_string_lossy()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "7");
    let o = cli(&[]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("use https"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A stand-in for Elasticsearch's bulk API: it stores the ids of requests that carry
/// `expected` as their authorization and answers 401 to the others.
struct Bulk {
    expected: String,
    ids: std::sync::Mutex<std::collections::BTreeSet<String>>,
    refused: std::sync::atomic::AtomicUsize,
}

async fn bulk(
    axum::extract::State(b): axum::extract::State<std::sync::Arc<Bulk>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != b.expected {
        b.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let refusal = serde_json::json!({"error": {"type": "security_exception"}, "status": 401});
        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(refusal));
    }
    let mut items = Vec::new();
    // Action and document lines alternate.
    for action in body.lines().step_by(2) {
        let action: serde_json::Value = serde_json::from_str(action).expect("action line");
        let id = action["index"]["_id"].as_str().expect("an id").to_string();
        b.ids.lock().expect("ids").insert(id);
        items.push(serde_json::json!({"index": {"status": 201}}));
    }
    let answer = serde_json::json!({"errors": false, "items": items});
    (axum::http::StatusCode::OK, axum::Json(answer))
}

/// Serves [`Bulk`] over TLS with a certificate of `ca`; its https URL.
async fn serve_bulk(files: &Files, bulk_api: std::sync::Arc<Bulk>) -> String {
    let tls = wire_core::tls::Tls::load(&wire_core::tls::TlsFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        ca: files.ca.clone(),
    })
    .expect("tls");
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = tcp.local_addr().expect("addr").port();
    let listener =
        wire_core::tls::TlsListener::new(tcp, tls, wire_core::tls::ClientCerts::Optional)
            .expect("listener");
    let app = axum::Router::new()
        .route("/_bulk", axum::routing::post(bulk))
        .with_state(bulk_api);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("https://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elasticsearch_sink_trusts_its_ca_and_signs_in() {
    use crate::pipelines_run::wait_state;
    use base64::Engine;

    let node = Embedded::start().await;
    let dir = node.dir.path();
    let ca = Ca::new("Search cluster CA");
    let files = Files::write(&dir.join("certs"), "search", &ca, &ca, false);
    // The password comes from the node's environment: PATH is set wherever this runs.
    let password = std::env::var("PATH").expect("PATH");
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("wire:{password}"));
    let api = std::sync::Arc::new(Bulk {
        expected: format!("Basic {pair}"),
        ids: Default::default(),
        refused: Default::default(),
    });
    let url = serve_bulk(&files, api.clone()).await;
    let input = dir.join("docs.jsonl");
    let lines: String = (0..500)
        .map(|i| format!("{{\"key\": \"d{i}\"}}\n"))
        .collect();
    std::fs::write(&input, lines).expect("input");
    let spec = |name: &str, sink: serde_json::Value| {
        serde_json::json!({
            "name": name,
            "sources": [{"type": "file", "config": {"path": input}}],
            "sinks": [{"type": "elasticsearch", "config": sink}]
        })
    };
    let sink = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"url": url, "index": "docs", "id_field": "key"});
        c.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        c
    };

    let good = sink(serde_json::json!({
        "ca": files.ca, "user": "wire", "password": "${PATH}"
    }));
    create_pipeline(&node.url("/pipelines"), &spec("es-tls", good)).await;
    wait_state(&node.url("/pipelines/es-tls"), "finished").await;
    let ids = api.ids.lock().expect("ids").clone();
    assert_eq!(ids.len(), 500);
    assert!(ids.contains("d0") && ids.contains("d499"));
    assert_eq!(api.refused.load(std::sync::atomic::Ordering::Relaxed), 0);

    // Without the CA the certificate is not trusted; with a wrong password the server
    // refuses. Neither is retried: the pipeline stops with the reason.
    let failure = |name: &'static str, config: serde_json::Value| {
        let body = spec(name, config);
        let pipelines = node.url("/pipelines");
        let status = node.url(&format!("/pipelines/{name}"));
        async move {
            create_pipeline(&pipelines, &body).await;
            wait_state(&status, "failed").await["errors"].to_string()
        }
    };
    let untrusted = sink(serde_json::json!({"user": "wire", "password": "${PATH}"}));
    let errors = failure("es-untrusted", untrusted).await;
    assert!(
        errors.contains("certificate") && errors.contains("set ca"),
        "{errors}"
    );
    let wrong = sink(serde_json::json!({"ca": files.ca, "user": "wire", "password": "guess"}));
    let errors = failure("es-wrong", wrong).await;
    assert!(
        errors.contains("refused the sink's credentials (401"),
        "{errors}"
    );
    assert!(api.refused.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    // A variable the node lacks is named where the sink opens.
    let unset = sink(serde_json::json!({"ca": files.ca, "api_key": "${WIRE_NO_SUCH_VARIABLE}"}));
    let errors = failure("es-unset", unset).await;
    assert!(
        errors.contains("api_key: the environment variable WIRE_NO_SUCH_VARIABLE is not set"),
        "{errors}"
    );

    // Half a sign-in, two ways to sign in, credentials in the URL: 400 naming the field.
    let refused = |config: serde_json::Value| {
        let r = http()
            .post(node.url("/pipelines"))
            .json(&spec("es-bad", config));
        async move {
            let r = r.send().await.expect("post");
            assert_eq!(r.status(), 400);
            let body: serde_json::Value = r.json().await.expect("json");
            let mut paths: Vec<String> = error_paths(&body).into_iter().map(String::from).collect();
            paths.sort();
            paths
        }
    };
    let bad = sink(serde_json::json!({"user": "wire", "api_key": "k"}));
    assert_eq!(
        refused(bad).await,
        ["sinks[0].config.api_key", "sinks[0].config.password"]
    );
    let mut in_url = sink(serde_json::json!({}));
    in_url["url"] = serde_json::json!(url.replace("https://", "https://wire:pw@"));
    assert_eq!(refused(in_url).await, ["sinks[0].config.url"]);
}
