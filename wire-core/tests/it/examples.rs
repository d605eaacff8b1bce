//! Every spec under `examples/pipelines/` is valid and runs: the file and generator ones on
//! a node to their end with their outputs checked, the Kafka → OpenSearch one against the
//! project's servers (addresses, topics and index pointed at them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::pipelines_run::{committed_lines, wait_state};
use crate::support::{create_pipeline, eventually, Embedded};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/pipelines")
}

/// Every example spec: file name and the spec as JSON.
fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/pipelines") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if !path.is_file() || !["json", "yaml", "yml"].contains(&ext) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read example");
        let value: Value = if ext == "json" {
            serde_json::from_str(&text).expect("JSON example")
        } else {
            serde_norway::from_str(&text).expect("YAML example")
        };
        out.push((name, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 3, "examples found: {out:?}");
    out
}

/// Points every relative `path` of the spec's connectors below `root`.
fn rooted(mut spec: Value, root: &Path) -> Value {
    let mut fix = |step: &mut Value| {
        if let Some(p) = step["config"]["path"].as_str() {
            if !Path::new(p).is_absolute() {
                step["config"]["path"] = Value::String(root.join(p).display().to_string());
            }
        }
    };
    for list in ["sources", "sinks"] {
        if let Some(steps) = spec[list].as_array_mut() {
            steps.iter_mut().for_each(&mut fix);
        }
    }
    if spec["dead_letter"].is_object() {
        fix(&mut spec["dead_letter"]);
    }
    spec
}

fn kinds(spec: &Value) -> BTreeSet<String> {
    ["sources", "sinks"]
        .iter()
        .flat_map(|l| spec[l].as_array().cloned().unwrap_or_default())
        .chain(spec.get("dead_letter").cloned())
        .filter_map(|s| s["type"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_example_spec_is_valid() {
    for (name, value) in examples() {
        let spec = wire_core::pipeline::PipelineSpec::from_value(&value)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        wire_core::pipeline::validate(&spec, &|_| None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

/// The big orders `orders.yaml` should keep, with their totals, and how many lines it
/// cannot take (not JSON, or a price that is not a number).
fn expected_orders(input: &Path) -> (BTreeMap<i64, i64>, usize) {
    let mut big = BTreeMap::new();
    let mut bad = 0;
    for line in std::fs::read_to_string(input).unwrap().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            bad += 1;
            continue;
        };
        match (v["id"].as_i64(), v["qty"].as_i64(), v["price"].as_i64()) {
            (Some(id), Some(q), Some(p)) if q * p >= 20 => {
                big.insert(id, q * p);
            }
            (Some(_), Some(_), Some(_)) => {}
            _ => bad += 1,
        }
    }
    (big, bad)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_and_generator_examples_run_to_the_end() {
    let node = Embedded::start().await;
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    for data in ["orders.jsonl", "timed-orders.jsonl", "payments.jsonl"] {
        std::fs::copy(
            examples_dir().join("data").join(data),
            root.path().join("data").join(data),
        )
        .unwrap();
    }
    let local: BTreeSet<String> = ["file", "generator", "stdout"].map(String::from).into();
    let mut ran = Vec::new();
    for (name, value) in examples() {
        if !kinds(&value).is_subset(&local) {
            continue;
        }
        let spec = rooted(value, root.path());
        create_pipeline(&node.url("/pipelines"), &spec).await;
        let pipeline = spec["name"].as_str().unwrap().to_string();
        wait_state(&node.url(&format!("/pipelines/{pipeline}")), "finished").await;
        ran.push((name, pipeline));
    }
    let names: Vec<&str> = ran.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "join.yaml",
            "orders.yaml",
            "per-user.json",
            "running.yaml",
            "spread.yaml",
            "windows.yaml"
        ]
    );

    // running.yaml: each user's last output has the count and sum of the user's orders.
    let mut want: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for line in std::fs::read_to_string(root.path().join("data/timed-orders.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let e = want
            .entry(v["user"].as_str().unwrap().to_string())
            .or_default();
        e.0 += 1;
        e.1 += v["amount"].as_i64().unwrap();
    }
    let mut got: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    let out = committed_lines(&root.path().join("out/running"));
    for line in &out {
        let v: Value = serde_json::from_str(line).unwrap();
        let e = got
            .entry(v["key"].as_str().unwrap().to_string())
            .or_default();
        let now = (v["orders"].as_u64().unwrap(), v["spent"].as_i64().unwrap());
        if now.0 > e.0 {
            *e = now;
        }
    }
    assert_eq!(out.len() as u64, want.values().map(|w| w.0).sum::<u64>());
    assert_eq!(got, want);

    // join.yaml: a brute-force left join of the two files (without what was dead-lettered:
    // an order without a time, records behind the watermark) is exactly the output.
    let dead: Vec<Value> = committed_lines(&root.path().join("out/join-dead"))
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            serde_json::from_str(v["raw"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert!(!dead.is_empty() && dead.len() < 20, "{dead:?}");
    let read = |file: &str| -> Vec<Value> {
        std::fs::read_to_string(root.path().join("data").join(file))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| !dead.contains(v))
            .collect()
    };
    let (orders, payments) = (read("timed-orders.jsonl"), read("payments.jsonl"));
    let mut want: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in &orders {
        let mut partners: Vec<String> = payments
            .iter()
            .filter(|p| {
                p["user"] == o["user"]
                    && (p["ts"].as_i64().unwrap() - o["ts"].as_i64().unwrap()).abs() <= 60_000
            })
            .map(|p| p.to_string())
            .collect();
        if partners.is_empty() {
            partners.push("null".into());
        }
        want.entry(o.to_string()).or_default().extend(partners);
    }
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in committed_lines(&root.path().join("out/join")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["key"], v["left"]["user"], "{line}");
        got.entry(v["left"].to_string())
            .or_default()
            .push(v["right"].to_string());
    }
    for v in got.values_mut().chain(want.values_mut()) {
        v.sort();
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the join differs from the reference");

    // orders.yaml: exactly the big orders, each once with its total; the rest dead letters.
    let (want, bad) = expected_orders(&root.path().join("data/orders.jsonl"));
    let got: BTreeMap<i64, i64> = committed_lines(&root.path().join("out/orders"))
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let total = v["total"]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer total: {l}"));
            (v["id"].as_i64().unwrap(), total)
        })
        .collect();
    assert_eq!(got, want);
    let dead = committed_lines(&root.path().join("out/orders-dead"));
    assert_eq!(dead.len(), bad, "{dead:?}");
    assert!(dead.iter().all(|l| l.contains("\"error\"")));

    // per-user.json: every click once, and each user's clicks in one partition's files.
    let out = root.path().join("out/per-user");
    let mut seqs = BTreeSet::new();
    let mut owner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        if !file.starts_with("part-") {
            continue;
        }
        // Part files are named part-<partition>-...: the partition that wrote them.
        let partition = file.split('-').nth(1).unwrap_or_default().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert!(seqs.insert(v["seq"].to_string()), "a click twice: {line}");
            owner
                .entry(v["user"].as_str().unwrap().to_string())
                .or_default()
                .insert(partition.clone());
        }
    }
    assert_eq!(seqs.len(), 3000);
    assert_eq!(owner.len(), 7);
    assert!(
        owner.values().all(|p| p.len() == 1),
        "a user's clicks in several partitions: {owner:?}"
    );

    // spread.yaml: every order with a total once (the rest dead letters), written by all
    // three partitions though one read the file.
    let out = root.path().join("out/spread");
    let by_partition = crate::pipelines_run::lines_by_partition(&out);
    assert_eq!(by_partition.len(), 3, "every partition ran the totals");
    let mut ids = BTreeSet::new();
    for v in by_partition.values().flatten() {
        assert!(v["total"].is_number(), "{v}");
        assert!(ids.insert(v["id"].to_string()), "an order twice: {v}");
    }
    let spread_dead = committed_lines(&root.path().join("out/spread-dead"));
    let lines = std::fs::read_to_string(root.path().join("data/orders.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        ids.len() + spread_dead.len(),
        lines,
        "every line once, out or dead"
    );
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kafka_to_opensearch_example_runs_against_real_servers() {
    use crate::elasticsearch::{documents, opensearch};
    use crate::kafka::{broker, create_topic, produce, topic};

    let (_, mut spec) = examples()
        .into_iter()
        .find(|(n, _)| n == "kafka-to-opensearch.yaml")
        .expect("the example");
    let input = topic("example-orders");
    let dead = topic("example-orders-dead");
    let index = format!("{}-", topic("example-orders"));
    create_topic(&input, 2).await;
    create_topic(&dead, 1).await;
    spec["sources"][0]["config"]["bootstrap_servers"] = broker().into();
    spec["sources"][0]["config"]["topics"] = serde_json::json!([input]);
    spec["sinks"][0]["config"]["url"] = opensearch().into();
    spec["sinks"][0]["config"]["index"] = format!("{index}{{date}}").into();
    spec["dead_letter"]["config"]["bootstrap_servers"] = broker().into();
    spec["dead_letter"]["config"]["topic"] = dead.clone().into();
    let messages: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| {
            let status = if i % 10 == 0 { "test" } else { "paid" };
            let v = serde_json::json!({"id": i, "status": status});
            (format!("k{i}"), v.to_string().into_bytes())
        })
        .collect();
    produce(&input, &messages);
    let node = Embedded::start().await;
    create_pipeline(&node.url("/pipelines"), &spec).await;
    let pattern = format!("{index}*");
    let docs = eventually(
        Duration::from_secs(60),
        "the paid orders indexed",
        || async {
            let docs = documents(&pattern).await;
            (docs.len() >= 180).then_some(docs)
        },
    )
    .await;
    let ids: BTreeSet<i64> = docs.iter().filter_map(|(_, d)| d["id"].as_i64()).collect();
    let want: BTreeSet<i64> = (0..200).filter(|i| i % 10 != 0).collect();
    assert_eq!(docs.len(), 180, "each paid order once");
    assert_eq!(ids, want);
}
