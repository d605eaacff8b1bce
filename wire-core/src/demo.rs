//! `wire demo`, Wire's main job on embedded defaults: a single-node cluster and a pipeline
//! that makes orders, enriches and filters them with jq, and writes them to part files (one
//! branch) and samples to standard output (another), printing progress each second until
//! the generator is done (or Ctrl-C). And `wire pipeline status --watch`, which prints the
//! same progress line for any pipeline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::NodeConfig;
use crate::node::Node;
use crate::pipeline::PipelineSpec;

/// What `wire demo` runs with.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub data_dir: Option<PathBuf>,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// Orders to make; `None`: without end.
    pub count: Option<u64>,
    pub rate: u64,
}

/// The demo pipeline, writing under `out`.
pub fn demo_spec(out: &std::path::Path, count: Option<u64>, rate: u64) -> Value {
    json!({
        "name": "demo",
        "parallelism": 2,
        "checkpoint_interval": "1s",
        "sources": [{
            "id": "orders",
            "type": "generator",
            "config": {
                "count": count,
                "rate": rate,
                "template": {"order": "{{seq}}", "user": "user-{{seq}}", "currency": "EUR"}
            }
        }],
        "transforms": [
            {"id": "price", "type": "jq", "inputs": ["orders"], "config": {
                "filter": ".amount = ((.order * 7919) % 10000) / 100 | .user = \"user-\" + (.order % 50 | tostring)"}},
            {"id": "big", "type": "jq", "inputs": ["price"], "config": {
                "filter": "select(.amount > 20) | .amount_cents = (.amount * 100 | floor)"}},
            {"id": "sample", "type": "jq", "inputs": ["big"], "config": {
                "filter": "select(.order % 1000 == 0) | {order, user, amount}"}}
        ],
        "sinks": [
            {"id": "files", "type": "file", "inputs": ["big"], "config": {"path": out.join("out")}},
            {"id": "console", "type": "stdout", "inputs": ["sample"], "config": {"prefix": "sample "}}
        ],
        "dead_letter": {"type": "file", "config": {"path": out.join("dead")}}
    })
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
}

/// The sum of one counter over the spec's sources or sinks (`list`), each found by its id
/// (or the default id validation gives it: `{prefix}{index}`).
fn step_sum(status: &Value, list: &str, prefix: &str, counter: &str) -> u64 {
    let Some(steps) = status["spec"][list].as_array() else {
        return 0;
    };
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = s["id"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{prefix}{i}"));
            num(&status["steps"], &[id.as_str(), counter])
        })
        .sum()
}

/// One progress line from a pipeline status; `per_second` from the read count since `last`.
fn progress_line(status: &Value, last: &mut Option<(Instant, u64)>) -> String {
    let read = step_sum(status, "sources", "source", "records_out");
    let written = step_sum(status, "sinks", "sink", "records_in");
    let dead: u64 = status["steps"]
        .as_object()
        .map(|steps| steps.values().map(|s| num(s, &["dead_lettered"])).sum())
        .unwrap_or(0);
    let now = Instant::now();
    let rate = match last {
        Some((t, n)) if now > *t => {
            (read.saturating_sub(*n)) as f64 / now.duration_since(*t).as_secs_f64()
        }
        _ => 0.0,
    };
    *last = Some((now, read));
    let epochs: Vec<String> = status["partitions"]
        .as_array()
        .map(|ps| ps.iter().map(|p| num(p, &["epoch"]).to_string()).collect())
        .unwrap_or_default();
    format!(
        "{:<9} read {read:>9}  written {written:>9}  dead-lettered {dead:>6}  {rate:>9.0} records/s  checkpoint epochs [{}]",
        status["state"].as_str().unwrap_or("?"),
        epochs.join(", ")
    )
}

/// `wire pipeline status NAME --watch`: a progress line a second until the pipeline ends.
pub async fn watch(http: &reqwest::Client, url: &str) -> Result<ExitCode, String> {
    let mut last = None;
    loop {
        let resp = http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let code = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !code.is_success() {
            eprintln!("{code}: {body}");
            return Ok(ExitCode::FAILURE);
        }
        println!("{}", progress_line(&body, &mut last));
        match body["state"].as_str() {
            Some("finished") => return Ok(ExitCode::SUCCESS),
            Some("failed") => {
                eprintln!("failed: {}", body["errors"]);
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Runs the demo until the generator is done or Ctrl-C, then stops the node cleanly.
pub async fn run(options: DemoOptions) -> Result<ExitCode, String> {
    crate::logging::init(crate::logging::LogFormat::Human, "warn");
    let dir = options
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("wire-demo-{}", std::process::id())));
    let mut config = NodeConfig::single(dir.join("node"), 1);
    config.http_addr = options.http_addr;
    config.raft_addr = options.raft_addr;
    let node = Node::start(config).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    while !node.is_ready() {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the node did not become leader within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spec = demo_spec(&dir, options.count, options.rate);
    let spec = PipelineSpec::from_value(&spec).map_err(|e| format!("demo spec: {e:?}"))?;
    node.pipelines()
        .update(spec, true)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "wire demo: node 1 on http://{} (data in {}); pipeline 'demo': generator -> jq -> {} and stdout",
        node.http_addr(),
        dir.display(),
        dir.join("out").display()
    );
    eprintln!(
        "  try: curl {}/pipelines/demo    or: wire pipeline status demo --watch --addr {}",
        format_args!("http://{}", node.http_addr()),
        node.http_addr()
    );
    let mut last = None;
    let outcome = loop {
        let status = node
            .pipelines()
            .status("demo", crate::Consistency::Local)
            .await
            .map_err(|e| e.to_string())?;
        let status = serde_json::to_value(&status).map_err(|e| e.to_string())?;
        eprintln!("{}", progress_line(&status, &mut last));
        match status["state"].as_str() {
            Some("finished") => break Ok(ExitCode::SUCCESS),
            Some("failed") => break Err(format!("the demo pipeline failed: {}", status["errors"])),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
        }
    };
    node.shutdown().await.map_err(|e| e.to_string())?;
    eprintln!(
        "wire demo: done; output in {} (committed part files), dead letters in {}",
        dir.join("out").display(),
        dir.join("dead").display()
    );
    outcome
}
