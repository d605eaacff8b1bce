//! Pipelines that run: file → jq → file with contents and counts checked, fan-out, key_by
//! routing, dead letters with positions, the `fail` policy, pause/resume/update/delete, and
//! registered Rust transforms — on one in-process node.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    checkpointed_positions, create_pipeline, eventually, get_json, http, json, Embedded,
};

/// Every line of the committed part files in `dir` (hidden files are in progress).
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(dir.join(n))
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Committed lines per partition (from the part file names).
pub fn lines_by_partition(dir: &Path) -> BTreeMap<u32, Vec<Value>> {
    let mut out: BTreeMap<u32, Vec<Value>> = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("part-") else {
            continue;
        };
        let p: u32 = rest.split('-').next().unwrap().parse().unwrap();
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            out.entry(p)
                .or_default()
                .push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

async fn apply(n: &Embedded, spec: &Value) {
    create_pipeline(&n.url("/pipelines"), spec).await;
}

/// Waits until the pipeline reports `state`, returning its status.
pub async fn wait_state(url: &str, state: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("state {state}"),
        || async {
            let s = get_json(url).await;
            (s["state"] == state).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_to_jq_to_file_with_fan_out_and_dead_letters() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("events.jsonl");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("{{\"id\": {i}, \"amount\": {}}}\n", i % 10));
        if i % 1000 == 7 {
            text.push_str("{not json\n");
        }
    }
    std::fs::write(&input, &text).unwrap();
    let spec = json!({
        "name": "orders",
        "checkpoint_interval": "200ms",
        "sources": [{"id": "events", "type": "file", "config": {"path": input}}],
        "transforms": [
            {"id": "big", "type": "jq", "config": {"filter": "select(.amount > 5) | .cents = .amount * 100"}},
            {"id": "odd", "type": "jq", "inputs": ["events"], "config": {"filter": "select(.id % 2 == 1) | if .id == 9 then error(\"nine\") else {id} end"}}
        ],
        "sinks": [
            {"id": "out", "type": "file", "inputs": ["big"], "config": {"path": root.join("out")}},
            {"id": "odds", "type": "file", "inputs": ["odd"], "config": {"path": root.join("odds"), "format": "csv"}}
        ],
        "dead_letter": {"type": "file", "config": {"path": root.join("dead")}}
    });
    apply(&n, &spec).await;
    let status = wait_state(&n.url("/pipelines/orders"), "finished").await;

    // Contents: every record with amount > 5, in order, with the computed field.
    let out = committed_lines(&root.join("out"));
    let expected: Vec<String> = (0..5000)
        .filter(|i| i % 10 > 5)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"amount\":{},\"cents\":{}}}",
                i % 10,
                (i % 10) * 100
            )
        })
        .collect();
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "first lines: {:?}", &out[..3]);
    // The fan-out branch wrote CSV: a header per part file, then one row per odd id but 9.
    let odds = committed_lines(&root.join("odds"));
    let rows: Vec<&String> = odds.iter().filter(|l| *l != "id").collect();
    assert_eq!(rows.len(), 2499);
    assert_eq!(rows[0], "1");
    assert!(!rows.iter().any(|r| *r == "9"));

    // Dead letters: the 5 bad lines with their byte offsets, and the record step odd failed.
    let dead: Vec<Value> = committed_lines(&root.join("dead"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 6, "{dead:?}");
    let bad: Vec<&Value> = dead.iter().filter(|d| d["step"] == "events").collect();
    assert_eq!(bad.len(), 5);
    assert_eq!(bad[0]["raw"], "{not json");
    assert!(bad[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid JSON"));
    let offset = bad[0]["offset"].as_u64().unwrap() as usize;
    assert!(
        text[..offset].ends_with("{not json\n"),
        "the offset is just after the bad line"
    );
    let nine: Vec<&Value> = dead.iter().filter(|d| d["step"] == "odd").collect();
    assert_eq!(nine.len(), 1);
    assert!(nine[0]["error"].as_str().unwrap().contains("nine"));
    assert_eq!(
        serde_json::from_str::<Value>(nine[0]["raw"].as_str().unwrap()).unwrap()["id"],
        9
    );

    // Counters per step, and the checkpoint at the end of the file.
    assert_eq!(status["steps"]["events"]["records_out"], 5000);
    assert_eq!(status["steps"]["events"]["dead_lettered"], 5);
    assert_eq!(status["steps"]["big"]["records_out"], 2000);
    assert_eq!(status["steps"]["odd"]["dead_lettered"], 1);
    // The status keeps a sample of the most recent ones, newest first, as written.
    let recent = status["dead_letters"].as_array().expect("a sample");
    assert_eq!(recent.len(), 6, "{recent:?}");
    let mut sample: Vec<String> = recent.iter().map(|d| d.to_string()).collect();
    let mut written: Vec<String> = dead.iter().map(|d| d.to_string()).collect();
    sample.sort();
    written.sort();
    assert_eq!(sample, written);
    assert_eq!(status["steps"]["out"]["records_in"], 2000);
    let part = &status["partitions"][0];
    assert_eq!(part["node"], 1);
    let key = input.display().to_string();
    assert_eq!(part["positions"]["events"][&key], text.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_by_sends_equal_keys_to_one_partition() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let spec = json!({
        "name": "keyed",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "sources": [{"type": "generator", "config": {"count": 2000, "template": {"seq": "{{seq}}", "user": "u{{seq}}"}}}],
        "transforms": [
            {"type": "jq", "config": {"filter": ".user = \"user-\" + (.seq % 7 | tostring)"}},
            {"type": "key_by", "config": {"key": ".user"}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/keyed"), "finished").await;
    let by_partition = lines_by_partition(&root.join("out"));
    let mut owner: BTreeMap<String, u32> = BTreeMap::new();
    let mut total = 0;
    for (p, records) in &by_partition {
        for r in records {
            total += 1;
            let user = r["user"].as_str().unwrap().to_string();
            let first = *owner.entry(user.clone()).or_insert(*p);
            assert_eq!(
                first, *p,
                "{user} was written by partitions {first} and {p}"
            );
        }
    }
    assert_eq!(total, 2000);
    assert_eq!(owner.len(), 7);
    assert_eq!(by_partition.len(), 2, "both partitions own some keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redistribute_spreads_one_file_over_every_partition_and_later_steps_run_there() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("one.json");
    let lines: String = (0..3000).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    // One small file is one split: only partition 0 reads; the jq after the redistribute
    // runs on all three, and a record it rejects there reaches the dead-letter sink.
    let spec = json!({
        "name": "spread",
        "parallelism": 3,
        "checkpoint_interval": "200ms",
        "sources": [{"type": "file", "config": {"path": input}}],
        "transforms": [
            {"type": "redistribute"},
            {"type": "jq", "config": {"filter": "if .n == 7 then error(\"seven\") else .n * 2 end"}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}],
        "dead_letter": {"type": "file", "config": {"path": root.join("dead")}}
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/spread"), "finished").await;
    let by_partition = lines_by_partition(&root.join("out"));
    assert_eq!(by_partition.len(), 3, "every partition wrote some");
    let mut got: Vec<u64> = by_partition
        .values()
        .flatten()
        .map(|v| v.as_u64().expect("a number"))
        .collect();
    got.sort_unstable();
    let want: Vec<u64> = (0..3000).filter(|i| *i != 7).map(|i| i * 2).collect();
    assert_eq!(got, want);
    let dead = committed_lines(&root.join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("seven"), "{}", dead[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_count_and_sum_per_key_on_event_time_and_late_records_are_dead_letters() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("events.json");
    // 5000 events 20 ms apart over five users, every 7th 1.5 s behind (within max_delay);
    // then one with a bad time and one far too late.
    let mut lines = String::new();
    let mut expected: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    for i in 0..5000i64 {
        let user = format!("u{}", i % 5);
        let ts = i * 20 - if i % 7 == 0 { 1500 } else { 0 };
        let ts = ts.max(0);
        let amount = i % 13;
        lines.push_str(&format!(
            "{{\"user\": \"{user}\", \"ts\": {ts}, \"amount\": {amount}}}\n"
        ));
        let e = expected.entry((user, ts / 10_000 * 10_000)).or_default();
        e.0 += 1;
        e.1 += amount;
    }
    lines.push_str("{\"user\": \"u1\", \"ts\": \"not a time\", \"amount\": 1}\n");
    lines.push_str("{\"user\": \"u1\", \"ts\": 1000, \"amount\": 1}\n");
    std::fs::write(&input, lines).unwrap();
    let spec = json!({
        "name": "windows",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "event_time": {"field": ".ts", "max_delay": "2s"},
        "sources": [{"type": "file", "config": {"path": input}}],
        "transforms": [
            {"type": "key_by", "config": {"key": ".user"}},
            {"type": "window", "config": {"size": "10s", "aggregate": {"n": "count", "total": {"sum": ".amount"}}}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}],
        "dead_letter": {"type": "file", "config": {"path": root.join("dead")}}
    });
    apply(&n, &spec).await;
    let status = wait_state(&n.url("/pipelines/windows"), "finished").await;
    // Read to the end: every partition's watermark is the largest, no window open.
    for p in status["partitions"].as_array().unwrap() {
        assert_eq!(p["watermark"].as_i64(), Some(i64::MAX), "{p}");
        assert_eq!(p["open_windows"].as_u64(), Some(0), "{p}");
    }
    let metrics = reqwest::get(n.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wire_pipeline_open_windows{pipeline=\"windows\",partition=\"0\"} 0"),
        "{metrics}"
    );
    let mut got: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    for line in committed_lines(&root.join("out")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let start = v["window_start"].as_i64().unwrap();
        assert_eq!(v["window_end"].as_i64().unwrap(), start + 10_000);
        let key = (v["key"].as_str().unwrap().to_string(), start);
        let was = got.insert(
            key,
            (v["n"].as_u64().unwrap(), v["total"].as_i64().unwrap()),
        );
        assert!(was.is_none(), "a window twice: {line}");
    }
    assert_eq!(got, expected);
    let dead = committed_lines(&root.join("dead"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().any(|l| l.contains("event time")), "{dead:?}");
    assert!(
        dead.iter()
            .any(|l| l.contains("late") && l.contains("[0, 10000)")),
        "{dead:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_passes_the_first_of_each_key_within_its_stretch() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("events.json");
    // Each of 300 ids sent three times within a second; id 7 once more a minute later.
    let mut lines = String::new();
    for i in 0..300i64 {
        for copy in 0..3 {
            lines.push_str(&format!(
                "{{\"id\": {i}, \"ts\": {}}}\n",
                i * 10 + copy * 300
            ));
        }
    }
    lines.push_str("{\"id\": 7, \"ts\": 70000}\n");
    std::fs::write(&input, lines).unwrap();
    let spec = json!({
        "name": "dedup",
        "parallelism": 2,
        "event_time": {"field": ".ts"},
        "sources": [{"type": "file", "config": {"path": input}}],
        "transforms": [
            {"type": "key_by", "config": {"key": ".id"}},
            {"type": "dedup", "config": {"within": "10s"}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/dedup"), "finished").await;
    let mut ids: Vec<i64> = committed_lines(&root.join("out"))
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    let mut want: Vec<i64> = (0..300).collect();
    want.push(7);
    want.sort_unstable();
    assert_eq!(ids, want);
}

/// A pseudo-random number in `0..n` from `i` (the same every run).
fn scatter(i: i64, n: i64) -> i64 {
    (i.wrapping_mul(2_654_435_761) >> 7).rem_euclid(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_left_join_pairs_each_order_with_its_payments_within_reach() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("events.json");
    // Orders 50 ms apart over 40 users; a payment for two orders in three, 0-4 s after it.
    // Lines are out of order by up to 1.5 s (inside max_delay); then two records far too
    // late. The reference is a brute-force join over the same events.
    let mut events: Vec<(i64, Value)> = Vec::new();
    for i in 0..3000i64 {
        let user = format!("u{}", i % 40);
        let ts = i * 50;
        events.push((
            ts,
            json!({"kind": "order", "id": i, "user": user, "ts": ts}),
        ));
        if i % 3 != 0 {
            let paid = ts + scatter(i, 5) * 1000;
            events.push((
                paid,
                json!({"kind": "payment", "id": 10_000 + i, "user": user, "ts": paid}),
            ));
        }
    }
    let within = 3_000;
    let mut want: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
    for (_, o) in events.iter().filter(|(_, e)| e["kind"] == "order") {
        let partners: Vec<Option<i64>> = events
            .iter()
            .filter(|(_, p)| {
                p["kind"] == "payment"
                    && p["user"] == o["user"]
                    && (p["ts"].as_i64().unwrap() - o["ts"].as_i64().unwrap()).abs() <= within
            })
            .map(|(_, p)| p["id"].as_i64())
            .collect();
        let id = o["id"].as_i64().unwrap();
        want.insert(
            id,
            if partners.is_empty() {
                vec![None]
            } else {
                partners
            },
        );
    }
    for v in want.values_mut() {
        v.sort();
    }
    let mut order: Vec<(i64, usize)> = events
        .iter()
        .enumerate()
        .map(|(k, (ts, _))| (ts + scatter(k as i64 + 7, 1500), k))
        .collect();
    order.sort();
    let mut lines: String = order
        .iter()
        .map(|(_, k)| format!("{}\n", events[*k].1))
        .collect();
    lines.push_str("{\"kind\": \"order\", \"id\": -1, \"user\": \"u1\", \"ts\": 1000}\n");
    lines.push_str("{\"kind\": \"payment\", \"id\": -2, \"user\": \"u1\", \"ts\": 1000}\n");
    std::fs::write(&input, lines).unwrap();
    let spec = json!({
        "name": "joins",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "event_time": {"field": ".ts", "max_delay": "2s"},
        "sources": [{"id": "events", "type": "file", "config": {"path": input}}],
        "transforms": [
            {"id": "orders", "type": "jq", "inputs": ["events"], "config": {"filter": "select(.kind == \"order\")"}},
            {"id": "payments", "type": "jq", "inputs": ["events"], "config": {"filter": "select(.kind == \"payment\")"}},
            {"id": "orders_by_user", "type": "key_by", "inputs": ["orders"], "config": {"key": ".user"}},
            {"id": "payments_by_user", "type": "key_by", "inputs": ["payments"], "config": {"key": ".user"}},
            {"id": "paid", "type": "join", "inputs": ["orders_by_user", "payments_by_user"],
             "config": {"within": "3s", "how": "left"}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}],
        "dead_letter": {"type": "file", "config": {"path": root.join("dead")}}
    });
    apply(&n, &spec).await;
    let status = wait_state(&n.url("/pipelines/joins"), "finished").await;
    for p in status["partitions"].as_array().unwrap() {
        assert_eq!(
            p["open_windows"].as_u64(),
            Some(0),
            "nothing held at the end: {p}"
        );
    }
    let mut got: BTreeMap<i64, Vec<Option<i64>>> = BTreeMap::new();
    for line in committed_lines(&root.join("out")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["key"], v["left"]["user"], "{line}");
        if !v["right"].is_null() {
            assert_eq!(v["right"]["user"], v["left"]["user"], "{line}");
        }
        got.entry(v["left"]["id"].as_i64().unwrap())
            .or_default()
            .push(v["right"]["id"].as_i64());
    }
    for v in got.values_mut() {
        v.sort();
    }
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the join differs from the reference");
    let dead = committed_lines(&root.join("dead"));
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().all(|l| l.contains("late")), "{dead:?}");

    // A join without two inputs, or not after a key_by, is a 400 naming the place.
    let mut bad = spec.clone();
    bad["name"] = json!("bad-join");
    bad["transforms"][4]["inputs"] = json!(["orders_by_user"]);
    let r = http()
        .post(n.url("/pipelines"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("transforms[4].inputs"));
    bad["transforms"][4]["inputs"] = json!(["orders", "payments_by_user"]);
    let r = http()
        .post(n.url("/pipelines"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("must come after a key_by"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_emits_each_keys_running_values() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("orders.json");
    let mut lines: String = (0..3000)
        .map(|i| format!("{{\"user\": \"u{}\", \"amount\": {}}}\n", i % 11, i % 17))
        .collect();
    lines.push_str("{\"user\": \"u1\", \"amount\": \"lots\"}\n");
    std::fs::write(&input, lines).unwrap();
    let spec = json!({
        "name": "rolling",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "sources": [{"type": "file", "config": {"path": input}}],
        "transforms": [
            {"type": "key_by", "config": {"key": ".user"}},
            {"type": "aggregate", "config": {"aggregate": {"total": {"sum": ".amount"}, "orders": "count"}}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}],
        "dead_letter": {"type": "file", "config": {"path": root.join("dead")}}
    });
    apply(&n, &spec).await;
    let status = wait_state(&n.url("/pipelines/rolling"), "finished").await;
    // The running values are in the last checkpoint (its size shows after the end too).
    for p in status["partitions"].as_array().unwrap() {
        assert!(p["state_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
    }
    // Per key, the counts run 1..n once each and the totals grow to the key's sum.
    let mut per_key: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for (_, values) in lines_by_partition(&root.join("out")) {
        for v in values {
            per_key
                .entry(v["key"].as_str().unwrap().to_string())
                .or_default()
                .push((v["orders"].as_u64().unwrap(), v["total"].as_i64().unwrap()));
        }
    }
    assert_eq!(per_key.len(), 11);
    for (key, mut outs) in per_key {
        outs.sort();
        let k: i64 = key[1..].parse().unwrap();
        let want: Vec<i64> = (0..3000).filter(|i| i % 11 == k).map(|i| i % 17).collect();
        assert_eq!(outs.len(), want.len(), "{key}");
        let mut total = 0;
        for (i, (count, sum)) in outs.iter().enumerate() {
            total += want[i];
            assert_eq!((*count, *sum), (i as u64 + 1, total), "{key}");
        }
    }
    let dead = committed_lines(&root.join("dead"));
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("needs a number"), "{dead:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reduce_keeps_a_running_total_per_key() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let input = root.join("orders.json");
    let lines: String = (0..2000)
        .map(|i| format!("{{\"user\": \"u{}\", \"amount\": {}}}\n", i % 7, i % 10))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let spec = |update: &str, sink: Value| {
        json!({
            "name": "totals",
            "parallelism": 3,
            "checkpoint_interval": "200ms",
            "sources": [{"type": "file", "config": {"path": input}}],
            "transforms": [
                {"type": "key_by", "config": {"key": ".user"}},
                {"type": "reduce", "config": {"init": 0, "update": update}}
            ],
            "sinks": [sink]
        })
    };
    // A program that does not compile is refused with its place.
    let r = http()
        .post(n.url("/pipelines"))
        .json(&spec("{state: (.state + ", json!({"type": "stdout"})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body.to_string().contains("transforms[1].config.update"),
        "{body}"
    );
    let spec = spec(
        "(.state + .record.amount) as $t | {state: $t, emit: {user: .key, total: $t}}",
        json!({"type": "file", "config": {"path": root.join("out")}}),
    );
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/totals"), "finished").await;
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut seen = 0;
    for (_, values) in lines_by_partition(&root.join("out")) {
        // Within a partition's files the totals of a user only grow.
        for v in values {
            seen += 1;
            let user = v["user"].as_str().unwrap().to_string();
            let total = v["total"].as_i64().unwrap();
            let before = last.insert(user, total).unwrap_or(0);
            assert!(total >= before, "{v}");
        }
    }
    assert_eq!(seen, 2000);
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..2000 {
        *want.entry(format!("u{}", i % 7)).or_default() += i % 10;
    }
    assert_eq!(last, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_results_come_before_the_final_one() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let spec = json!({
        "name": "early",
        "checkpoint_interval": "200ms",
        "event_time": {"field": "(.seq | tonumber)"},
        "sources": [{"type": "generator", "config": {"count": 600, "rate": 300, "template": {"seq": "{{seq}}"}}}],
        "transforms": [
            {"type": "key_by", "config": {"key": "\"all\""}},
            {"type": "window", "config": {"size": "1h", "early": "300ms", "aggregate": {"n": "count"}}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/early"), "finished").await;
    let out: Vec<Value> = committed_lines(&root.join("out"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (early, last): (Vec<&Value>, Vec<&Value>) = out.iter().partition(|v| v["early"] == true);
    assert_eq!(last.len(), 1, "one final result: {out:?}");
    assert_eq!(last[0]["n"], 600);
    assert!(!early.is_empty(), "early results while the window was open");
    assert!(early.iter().all(|v| v["n"].as_u64().unwrap() <= 600));
}

/// Window state goes into each checkpoint and comes back: paused and resumed mid-run, the
/// windows are what an uninterrupted run gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_state_survives_a_pause_and_resume() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let spec = json!({
        "name": "paced-windows",
        "parallelism": 2,
        "checkpoint_interval": "200ms",
        "event_time": {"field": "(.seq | tonumber) * 10"},
        "sources": [{"type": "generator", "config": {"count": 6000, "rate": 1000, "template": {"seq": "{{seq}}"}}}],
        "transforms": [
            {"type": "jq", "config": {"filter": ".seq |= tonumber"}},
            {"type": "key_by", "config": {"key": ".seq % 3"}},
            {"type": "window", "config": {"size": "1s", "aggregate": {"n": "count", "total": {"sum": ".seq"}}}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    let url = n.url("/pipelines/paced-windows");
    eventually(Duration::from_secs(20), "some windows out", || async {
        (committed_lines(&root.join("out")).len() >= 6).then_some(())
    })
    .await;
    // Paused with windows open, so their partial counts must be in the pause's checkpoint
    // (a resume that lost them would emit those windows short).
    eventually(Duration::from_secs(20), "windows open", || async {
        let s = get_json(&url).await;
        let open: u64 = s["partitions"]
            .as_array()?
            .iter()
            .filter_map(|p| p["open_windows"].as_u64())
            .sum();
        (open > 0).then_some(())
    })
    .await;
    let c = reqwest::Client::new();
    c.post(n.url("/pipelines/paced-windows/pause"))
        .send()
        .await
        .unwrap();
    // "paused" once the partitions stopped after their final checkpoint ("pausing" before).
    wait_state(&url, "paused").await;
    // The generator's offsets are each partition's next number: 6000 + 6001 at the end.
    let at_pause = checkpointed_positions(&url).await.expect("positions");
    assert!(
        at_pause < 12_000,
        "paused mid-stream, not at the end: {at_pause}"
    );

    c.post(n.url("/pipelines/paced-windows/resume"))
        .send()
        .await
        .unwrap();
    wait_state(&url, "finished").await;
    let mut expected: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for seq in 0..6000u64 {
        let e = expected
            .entry(((seq % 3).to_string(), (seq as i64 * 10) / 1000 * 1000))
            .or_default();
        e.0 += 1;
        e.1 += seq;
    }
    let mut got: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for line in committed_lines(&root.join("out")) {
        let v: Value = serde_json::from_str(&line).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        let value = (v["n"].as_u64().unwrap(), v["total"].as_u64().unwrap());
        assert!(got.insert(key, value).is_none(), "a window twice: {line}");
    }
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} windows wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(got.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_policy_stops_the_pipeline_with_the_reason() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let spec = json!({
        "name": "strict",
        "sources": [{"type": "generator", "config": {"count": 100}}],
        "transforms": [{"type": "jq", "config": {"filter": "if .seq == 42 then error(\"bad seq\") else . end"}}],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    let s = wait_state(&n.url("/pipelines/strict"), "failed").await;
    let errors = s["errors"].to_string();
    assert!(
        errors.contains("bad seq") && errors.contains("policy is fail"),
        "{errors}"
    );
    // Nothing was committed past the failure: no checkpoint covers the failed batch.
    assert!(committed_lines(&root.join("out")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_rust_transforms_run_by_name() {
    use wire_core::pipeline::transform::{PerRecord, Record};
    let n = Embedded::start().await;
    let root = n.dir.path();
    let double = PerRecord(|r: &Record| {
        let text = r.value.to_string();
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let seq = v["seq"].as_u64().ok_or("no seq")?;
        let out = json!({"double": seq * 2}).to_string();
        let value = wire_core::pipeline::jq::parse_json(out.as_bytes())?;
        Ok(vec![Record { value, ..r.clone() }])
    });
    n.node
        .pipelines()
        .register_transform("double", Arc::new(double))
        .unwrap();
    let spec = json!({
        "name": "rusty",
        "sources": [{"type": "generator", "config": {"count": 10}}],
        "transforms": [{"type": "double"}],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/rusty"), "finished").await;
    let out = committed_lines(&root.join("out"));
    assert_eq!(out.len(), 10);
    assert_eq!(out[3], r#"{"double":6}"#);
    // A keyed function from a Rust closure: the largest seq per key so far, emitted when it
    // grows; the step's init is the state of a key seen first.
    use wire_core::pipeline::reduce::{PerKey, Update};
    let largest = PerKey(
        |_key: &[u8], state: Option<&jaq_json::Val>, value: &jaq_json::Val| {
            let seq: i64 = value
                .to_string()
                .parse()
                .map_err(|_| format!("not a number: {value}"))?;
            let before: i64 =
                state.map_or(Ok(-1), |s| s.to_string().parse().map_err(|_| "bad state"))?;
            if seq <= before {
                return Ok((Update::Keep, vec![]));
            }
            let v = wire_core::pipeline::jq::parse_json(seq.to_string().as_bytes())?;
            Ok((Update::Set(v.clone()), vec![v]))
        },
    );
    n.node
        .pipelines()
        .register_keyed("largest", Arc::new(largest))
        .unwrap();
    let spec = json!({
        "name": "largest",
        "sources": [{"type": "generator", "config": {"count": 30, "template": "{{seq}}"}}],
        "transforms": [
            {"type": "jq", "config": {"filter": "tonumber"}},
            {"type": "key_by", "config": {"key": ". % 3"}},
            {"type": "reduce", "config": {"function": "largest", "init": 20}}
        ],
        "sinks": [{"type": "file", "config": {"path": root.join("largest")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/largest"), "finished").await;
    // Counting up, each value above init (20) grows its key's largest: 21..29.
    let mut out: Vec<i64> = committed_lines(&root.join("largest"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    out.sort();
    assert_eq!(out, (21..=29).collect::<Vec<i64>>());
    // An unregistered type is refused up front.
    let bad = json!({"name": "x", "sources": [{"type": "generator"}], "transforms": [{"type": "triple"}], "sinks": [{"type": "stdout"}]});
    let r = json(http().post(n.url("/pipelines")).json(&bad)).await;
    assert_eq!(r["errors"][0]["path"], "transforms[0].type", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_update_and_delete_a_running_pipeline() {
    let n = Embedded::start().await;
    let root = n.dir.path();
    let c = http();
    let mut spec = json!({
        "name": "paced",
        "checkpoint_interval": "200ms",
        "sources": [{"type": "generator", "config": {"rate": 2000}}],
        "sinks": [{"type": "file", "config": {"path": root.join("out")}}]
    });
    apply(&n, &spec).await;
    wait_state(&n.url("/pipelines/paced"), "running").await;
    let out = root.join("out");
    eventually(Duration::from_secs(10), "output", || async {
        (committed_lines(&out).len() > 200).then_some(())
    })
    .await;

    // Pause: the job stops with a final checkpoint; nothing more appears.
    let r = json(c.post(n.url("/pipelines/paced/pause"))).await;
    assert_eq!(r["desired"], "paused");
    wait_state(&n.url("/pipelines/paced"), "paused").await;
    eventually(Duration::from_secs(10), "job stopped", || async {
        n.node.runtime().job("paced").is_none().then_some(())
    })
    .await;
    // The final checkpoint covers exactly what was published: nothing is left to appear.
    let paused_at = committed_lines(&out).len();
    assert_eq!(
        checkpointed_positions(&n.url("/pipelines/paced")).await,
        Some(paused_at as u64),
        "the output at the pause is what its last checkpoint covers"
    );

    // Resume: it goes on from its checkpoint — the sequence continues without a gap or a repeat.
    c.post(n.url("/pipelines/paced/resume"))
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "more output", || async {
        (committed_lines(&out).len() > paused_at + 200).then_some(())
    })
    .await;

    // Update: a new version restarts the partitions from their checkpoints.
    spec["transforms"] = json!([{"type": "jq", "config": {"filter": ".v2 = true"}}]);
    let r = c
        .put(n.url("/pipelines/paced"))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(10), "v2 output", || async {
        committed_lines(&out)
            .iter()
            .any(|l| l.contains("\"v2\":true"))
            .then_some(())
    })
    .await;
    let s = get_json(&n.url("/pipelines/paced")).await;
    assert_eq!(s["version"], 2);

    // Delete: the job stops.
    c.delete(n.url("/pipelines/paced")).send().await.unwrap();
    eventually(Duration::from_secs(10), "job gone", || async {
        n.node.runtime().job("paced").is_none().then_some(())
    })
    .await;
    let seqs: Vec<u64> = committed_lines(&out)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(
        seqs, expected,
        "every sequence number exactly once, in order"
    );
}
