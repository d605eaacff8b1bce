//! The pipeline API over HTTP and the CLI on one in-process node: create, update, pause,
//! resume, delete, and specs rejected with every problem named.

use serde_json::{json, Value};

use crate::support::{error_paths, get_json, http, json, status, Embedded};

const SPEC_YAML: &str = r#"
name: orders
parallelism: 2
sources:
  - {id: events, type: file, config: {path: DIR/events.jsonl}}
transforms:
  - {id: big, type: jq, config: {filter: "select(.amount > 5)"}}
sinks:
  - {id: out, type: file, config: {path: DIR/out/}}
dead_letter: {type: file, config: {path: DIR/dead/}}
"#;

/// The spec with its files under `dir` (the pipeline runs once created).
fn spec_yaml(dir: &std::path::Path) -> String {
    SPEC_YAML.replace("DIR", &dir.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_created_updated_paused_and_deleted() {
    let n = Embedded::start().await;
    let c = http();

    // Create from YAML; a second create of the same name is a conflict.
    let r = c
        .post(n.url("/pipelines"))
        .body(spec_yaml(n.dir.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "orders", "version": 1, "created": true, "changed": true})
    );
    let r = c
        .post(n.url("/pipelines"))
        .body(spec_yaml(n.dir.path()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    // Read it back: spec, version, desired state.
    let rec: Value = get_json(&n.url("/pipelines/orders")).await;
    assert_eq!(rec["version"], 1);
    assert_eq!(rec["desired"], "running");
    assert_eq!(rec["spec"]["parallelism"], 2);
    assert_eq!(
        rec["spec"]["transforms"][0]["config"]["filter"],
        "select(.amount > 5)"
    );

    // A new version through PUT, in JSON this time.
    let mut spec: Value = serde_norway::from_str(&spec_yaml(n.dir.path())).unwrap();
    spec["parallelism"] = json!(4);
    let put = || async { json(c.put(n.url("/pipelines/orders")).json(&spec)).await };
    let body = put().await;
    assert_eq!(body["version"], 2);
    assert_eq!(body["created"], false);
    assert_eq!(body["changed"], true);
    // The same spec again changes nothing: no new version, no restart.
    let body = put().await;
    assert_eq!(
        (body["version"].as_u64(), body["changed"].as_bool()),
        (Some(2), Some(false))
    );

    // Pause and resume change the desired state only.
    let r: Value = json(c.post(n.url("/pipelines/orders/pause"))).await;
    assert_eq!(r["desired"], "paused");
    let rec: Value = get_json(&n.url("/pipelines/orders")).await;
    assert_eq!(
        (rec["desired"].as_str(), rec["version"].as_u64()),
        (Some("paused"), Some(2))
    );
    c.post(n.url("/pipelines/orders/resume"))
        .send()
        .await
        .unwrap();
    let list: Value = get_json(&n.url("/pipelines")).await;
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 1);
    assert_eq!(list["pipelines"][0]["desired"], "running");

    // A path that disagrees with the spec's name is refused.
    let r = c
        .put(n.url("/pipelines/other"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Delete; then it is gone, and deleting again is a 404.
    let r = c.delete(n.url("/pipelines/orders")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(c.get(n.url("/pipelines/orders"))).await, 404);
    assert_eq!(status(c.delete(n.url("/pipelines/orders"))).await, 404);
    assert_eq!(status(c.post(n.url("/pipelines/orders/pause"))).await, 404);

    // The registry is listed as data.
    let reg: Value = get_json(&n.url("/connectors")).await;
    let connectors = reg["connectors"].as_array().unwrap();
    let names: std::collections::BTreeSet<&str> = connectors
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let mut want = std::collections::BTreeSet::from([
        "elasticsearch",
        "file",
        "generator",
        "registered",
        "stdout",
    ]);
    if cfg!(feature = "mongodb") {
        want.insert("mongodb");
    }
    if cfg!(feature = "kafka") {
        want.insert("kafka");
    }
    assert_eq!(
        names, want,
        "the registry lists each compiled-in connector once"
    );
    assert_eq!(connectors.len(), want.len());
    let file = connectors.iter().find(|c| c["name"] == "file").unwrap();
    assert!(file["delivery"].as_str().unwrap().contains("exactly-once"));
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stateful_specs_are_refused_with_their_places() {
    let n = Embedded::start().await;
    let c = http();
    let post = |spec: &'static str| {
        let c = c.clone();
        let url = n.url("/pipelines");
        async move {
            let r = c.post(url).body(spec).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }
    };
    // A window without a key_by before it.
    let (status, body) = post(
        "name: w\nsources: [{type: generator}]\ntransforms: [{type: window, config: {size: 1m, aggregate: {n: count}}}]\nsinks: [{type: stdout}]",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_paths(&body), ["transforms[0].type"], "{body}");
    // An unknown aggregation and a bad duration.
    let (status, body) = post(
        "name: w\nsources: [{type: generator}]\ntransforms: [{type: key_by, config: {key: .k}}, {type: window, config: {size: 1m, aggregate: {n: {median: .a}}}}, {type: dedup, config: {within: soon}}]\nsinks: [{type: stdout}]",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_paths(&body),
        ["transforms[1].config", "transforms[2].config"],
        "{body}"
    );
    assert!(body.to_string().contains("median"), "{body}");
    let (status, body) = post(
        "name: w\nevent_time: {max_delay: 5 minutes}\nsources: [{type: generator}]\ntransforms: [{type: key_by, config: {key: .k}}, {type: window, config: {size: 1m, aggregate: {n: count}}}]\nsinks: [{type: stdout}]",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_paths(&body), ["event_time.max_delay"], "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_refused_with_every_problem_and_changes_nothing() {
    let n = Embedded::start().await;
    let c = http();
    let bad = r#"
name: orders
sources:
  - {id: events, type: mqtt}
transforms:
  - {id: t, type: jq, inputs: [nowhere], config: {filter: .x, extra: 1}}
sinks:
  - {type: file, inputs: [t], config: {}}
"#;
    let r = c.post(n.url("/pipelines")).body(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_spec");
    let paths: Vec<&str> = error_paths(&body);
    assert_eq!(
        paths,
        [
            "sources[0].type",
            "sinks[0].config",
            "transforms[0].config.extra",
            "transforms[0].inputs[0]"
        ],
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().starts_with("4 problems"));
    let r = c
        .post(n.url("/pipelines"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(n.url("/pipelines"))
        .body(vec![0xffu8, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Hostile documents: an alias bomb and deep nesting are refused quickly, not expanded.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let r = c.post(n.url("/pipelines")).body(bomb).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let deep = format!(
        "name: x\nsources: {}{}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let r = c.post(n.url("/pipelines")).body(deep).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let deep = format!(
        r#"{{"name": "x", "sources": {}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    let r = c.post(n.url("/pipelines")).body(deep).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let list: Value = get_json(&n.url("/pipelines")).await;
    assert_eq!(list["pipelines"].as_array().unwrap().len(), 0);
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_applies_specs_from_files() {
    let n = Embedded::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.yaml");
    std::fs::write(&file, spec_yaml(n.dir.path())).unwrap();
    let addr = n.node.http_addr().to_string();
    let wire = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wire"))
            .args(args)
            .args(["--addr", &addr])
            .output()
            .unwrap()
    };
    let o = wire(&["pipeline", "apply", "-f", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Applying the same file again changes nothing; a changed file is a new version.
    let o = wire(&["pipeline", "apply", "-f", file.to_str().unwrap()]);
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (out["version"].as_u64(), out["changed"].as_bool()),
        (Some(1), Some(false))
    );
    std::fs::write(
        &file,
        spec_yaml(n.dir.path()).replace("parallelism: 2", "parallelism: 3"),
    )
    .unwrap();
    let o = wire(&["pipeline", "apply", "-f", file.to_str().unwrap()]);
    let out: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (out["version"].as_u64(), out["changed"].as_bool()),
        (Some(2), Some(true))
    );
    let o = wire(&["pipeline", "status", "orders"]);
    let rec: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rec["spec"]["name"], "orders");
    assert!(wire(&["pipeline", "pause", "orders"]).status.success());
    let o = wire(&["pipeline", "list"]);
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list["pipelines"][0]["desired"], "paused");
    std::fs::write(&file, "name: x\nsources: 3\n").unwrap();
    let o = wire(&["pipeline", "apply", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sources: must be a list"));
    assert!(wire(&["pipeline", "delete", "orders"]).status.success());
    assert!(!wire(&["pipeline", "status", "orders"]).status.success());
    n.node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_by_the_node_itself() {
    let n = Embedded::start().await;
    for (path, kind, has) in [
        ("/ui", "text/html", "Wire console"),
        ("/ui/app.js", "text/javascript", "async function pipeline("),
        ("/ui/app.css", "text/css", "--accent"),
    ] {
        let r = http().get(n.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(r.text().await.unwrap().contains(has), "{path}");
    }
    // The page loads nothing from elsewhere.
    let page = http()
        .get(n.url("/ui"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    assert_eq!(status(http().get(n.url("/ui/nothing.js"))).await, 404);
}
