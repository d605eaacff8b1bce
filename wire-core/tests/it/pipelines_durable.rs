//! Pipelines on real `wire node` processes: exactly-once file output across `kill -9`, a
//! stalled sink that stops the source with memory flat, partitions spread over a 3-node
//! cluster, `/metrics`, `wire pipeline status --watch` and `wire demo`.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::pipelines_run::committed_lines;
use crate::support::{
    checkpointed_positions, create_pipeline, eventually, get_json, get_text, http, Cluster, Proc,
};

async fn create(p: &Proc, spec: &Value) {
    create_pipeline(&p.url("/pipelines"), spec).await;
}

async fn wait_ready(p: &Proc) {
    eventually(Duration::from_secs(20), "node ready", || async {
        let r = http().get(p.url("/ready")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
}

fn ids(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_output_is_exactly_once_across_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let mut node = Proc::start(root.path(), 1, &["--bootstrap".into()]);
    wait_ready(&node).await;
    let input = root.path().join("in.jsonl");
    let out = root.path().join("out");
    std::fs::write(&input, "").unwrap();
    create(
        &node,
        &json!({
            "name": "copy",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "file", "config": {"path": input, "tail": true}}],
            "transforms": [{"type": "jq", "config": {"filter": ".copied = true"}}],
            "sinks": [{"type": "file", "config": {"path": out, "rotate_bytes": 20000}}]
        }),
    )
    .await;

    // Append ids in chunks while the node runs; kill it mid-stream, keep appending while it
    // is down, restart it.
    const TOTAL: u64 = 20_000;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    let mut next = 0u64;
    let mut append = |n: u64| {
        let mut text = String::new();
        for _ in 0..n {
            text.push_str(&format!(
                "{{\"id\": {next}, \"pad\": \"{}\"}}\n",
                "x".repeat(40)
            ));
            next += 1;
        }
        file.write_all(text.as_bytes()).unwrap();
    };
    for _ in 0..5 {
        append(1000);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    eventually(Duration::from_secs(20), "some committed output", || async {
        (!committed_lines(&out).is_empty()).then_some(())
    })
    .await;
    append(3000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    node.kill9();
    let before = committed_lines(&out).len() as u64;
    eprintln!("killed with {before} of the 8000 ids written so far committed");
    append(TOTAL - 8000);
    node.restart(&[]);
    wait_ready(&node).await;

    // Done when the committed checkpoint covers the whole input and its output is published:
    // output is only ever published for a committed checkpoint, so nothing more can appear.
    let input_len = std::fs::metadata(&input).unwrap().len();
    let status_url = node.url("/pipelines/copy");
    let lines = eventually(
        Duration::from_secs(60),
        "every id committed and the whole input checkpointed",
        || async {
            let covered = checkpointed_positions(&status_url).await? == input_len;
            let lines = committed_lines(&out);
            (covered && lines.len() as u64 >= TOTAL).then_some(lines)
        },
    )
    .await;
    let lines_after = lines;
    let got = ids(&lines_after);
    let unique: BTreeSet<u64> = got.iter().copied().collect();
    assert_eq!(
        got.len() as u64,
        TOTAL,
        "every id exactly once: {} lines",
        got.len()
    );
    assert_eq!(unique.len() as u64, TOTAL);
    assert_eq!(unique.iter().next_back(), Some(&(TOTAL - 1)));
    assert!(lines_after.iter().all(|l| l.contains("\"copied\":true")));
    assert!(
        std::fs::read_dir(&out).unwrap().count() > 3,
        "output was rotated into several part files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_stops_the_source_and_memory_stays_flat() {
    let root = tempfile::tempdir().unwrap();
    let node = Proc::start_stalled_stdout(root.path(), 1, &["--bootstrap".into()]);
    wait_ready(&node).await;
    create(
        &node,
        &json!({
            "name": "stalled",
            "sources": [{"id": "gen", "type": "generator", "config": {"template": {"seq": "{{seq}}", "pad": "padding-padding-padding-padding-padding-padding"}}}],
            "sinks": [{"type": "stdout"}]
        }),
    )
    .await;
    let read = |s: &Value| s["partitions"][0]["read"].as_u64().unwrap_or(0);
    // Nobody reads the node's stdout: the pipe fills, the sink blocks, the channel fills and
    // the source stops reading.
    let url = node.url("/pipelines/stalled");
    eventually(Duration::from_secs(20), "the source to stall", || async {
        let a = read(&get_json(&url).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b = read(&get_json(&url).await);
        (a > 0 && a == b).then_some(())
    })
    .await;
    let rss_stalled = node.rss_kib().unwrap();
    let read_stalled = read(&get_json(&url).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_later = node.rss_kib().unwrap();
    let read_later = read(&get_json(&url).await);
    assert_eq!(
        read_later, read_stalled,
        "no reading while the sink is stalled"
    );
    assert!(
        rss_later < rss_stalled + 8 * 1024,
        "RSS grew from {rss_stalled} KiB to {rss_later} KiB while stalled"
    );
    // What was read is bounded by the channel: a few batches beyond the pipe's 64 KiB.
    assert!(
        read_stalled < 20_000,
        "read {read_stalled} records into a stalled sink"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_spread_over_a_cluster_and_status_comes_from_any_node() {
    let cluster = Cluster::start(3, &[]).await;
    let out = cluster.root.path().join("out");
    create(
        cluster.node(2),
        &json!({
            "name": "spread",
            "parallelism": 3,
            "checkpoint_interval": "200ms",
            "sources": [{"type": "generator", "config": {"count": 3000, "rate": 3000}}],
            "sinks": [{"type": "file", "config": {"path": out}}]
        }),
    )
    .await;
    let status = eventually(Duration::from_secs(30), "finished", || async {
        let s = get_json(&cluster.node(3).url("/pipelines/spread")).await;
        (s["state"] == "finished").then_some(s)
    })
    .await;
    let nodes: BTreeSet<u64> = status["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["node"].as_u64().unwrap())
        .collect();
    assert_eq!(nodes, BTreeSet::from([1, 2, 3]), "{status}");
    assert_eq!(
        status["steps"]["source0"]["records_out"], 3000,
        "counters summed over nodes"
    );
    let seqs: BTreeSet<u64> = committed_lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 3000);

    // Metrics on each node name the partitions it ran.
    let text = get_text(&cluster.node(1).url("/metrics")).await;
    assert!(text.contains("wire_raft_term "), "{text}");
    assert!(
        text.contains("wire_pipeline_records_out_total{pipeline=\"spread\",step=\"source0\"} 1000"),
        "{text}"
    );
    assert!(
        text.contains("wire_pipeline_checkpoint_epoch{pipeline=\"spread\",partition="),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_live_progress() {
    let root = tempfile::tempdir().unwrap();
    let node = Proc::start(root.path(), 1, &["--bootstrap".into()]);
    wait_ready(&node).await;
    create(
        &node,
        &json!({
            "name": "watched",
            "checkpoint_interval": "200ms",
            "sources": [{"type": "generator", "config": {"count": 6000, "rate": 2000}}],
            "sinks": [{"type": "file", "config": {"path": root.path().join("out")}}]
        }),
    )
    .await;
    let o = tokio::task::spawn_blocking({
        let addr = node.http.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_wire"))
                .args(["pipeline", "status", "watched", "--watch", "--addr", &addr])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    assert!(lines.last().unwrap().starts_with("finished"), "{text}");
    assert!(lines.last().unwrap().contains("read      6000"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("running") && l.contains("records/s")),
        "{text}"
    );
}

#[test]
fn the_demo_runs_to_the_end_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let http = format!("127.0.0.1:{}", crate::support::free_port());
    let raft = format!("127.0.0.1:{}", crate::support::free_port());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wire"))
        .args(["demo", "--count", "4000", "--rate", "4000"])
        .args(["--http-addr", &http, "--raft-addr", &raft])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("finished"), "{stderr}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("sample {")),
        "{stdout}"
    );
    // The file branch: every order with an amount over 20, once.
    let lines = committed_lines(&dir.path().join("out"));
    let orders: BTreeSet<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["order"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: BTreeSet<u64> = (0..4000u64)
        .filter(|o| (o * 7919 % 10000) as f64 / 100.0 > 20.0)
        .collect();
    assert_eq!(orders, expected);
    assert_eq!(lines.len(), expected.len());
}
