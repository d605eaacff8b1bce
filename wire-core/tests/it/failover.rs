//! Pipelines survive a dead node: 3 real `wire node` processes run a pipeline of
//! parallelism 6 (two partitions each) into part files in a directory they all share; a node
//! that owns partitions is killed (`kill -9`), paused past `--failover-after-ms` (SIGSTOP,
//! then SIGCONT), or is the Raft leader. Its partitions move to the live nodes and resume
//! from their checkpoints; the output holds every record exactly once. The keyed variants
//! run one job over all three nodes, records crossing between them by key: each key's
//! records land on the one partition that owns it, through the kill.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::pipelines_run::{committed_lines, lines_by_partition};
use crate::support::{create_pipeline, eventually, get_json, try_json, Cluster};

const FAILOVER_AFTER_MS: &str = "1500";
const RECORDS: u64 = 24_000;

/// Which node is hurt, and how.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `kill -9` of a node that owns partitions and does not lead.
    KillFollower,
    /// `kill -9` of the leader.
    KillLeader,
    /// SIGSTOP of a follower for longer than the failover limit, then SIGCONT.
    Pause,
}

async fn leader_of(cluster: &Cluster) -> u64 {
    cluster.wait_leader(Duration::from_secs(20)).await
}

/// Partition -> node, from any node that answers.
async fn assignments(cluster: &Cluster, skip: u64) -> Option<BTreeMap<u64, u64>> {
    for p in cluster.nodes.iter().filter(|p| p.id != skip) {
        if let Some(s) = try_json(&p.url("/pipelines/moving")).await {
            let parts = s["partitions"].as_array()?;
            return parts
                .iter()
                .map(|p| Some((p["partition"].as_u64()?, p["node"].as_u64()?)))
                .collect();
        }
    }
    None
}

/// Epochs per partition, from any node that answers.
async fn epochs(cluster: &Cluster, skip: u64) -> Option<BTreeMap<u64, u64>> {
    for p in cluster.nodes.iter().filter(|p| p.id != skip) {
        if let Some(s) = try_json(&p.url("/pipelines/moving")).await {
            return s["partitions"]
                .as_array()?
                .iter()
                .map(|p| Some((p["partition"].as_u64()?, p["epoch"].as_u64()?)))
                .collect();
        }
    }
    None
}

/// The sink every test's pipeline writes: part files in a directory the nodes share.
fn shared_files(cluster: &Cluster) -> Value {
    let out = cluster.root.path().join("shared-out");
    json!({"type": "file", "config": {"path": out.display().to_string(), "rotate_bytes": 4096}})
}

/// Keys of the keyed variants: the id modulo this.
const KEYS: u64 = 24;

/// Starts "moving" on `cluster`: RECORDS generated at `rate`, parallelism 6, checkpoints
/// every 300 ms, into `sink` (after a `key_by` of the id modulo [`KEYS`] when `keyed`);
/// returns once every partition has committed two checkpoints.
async fn start_moving(cluster: &Cluster, rate: u64, sink: Value, keyed: bool) {
    let mut transforms = vec![json!({"type": "jq", "config": {"filter": ".id |= tonumber"}})];
    if keyed {
        transforms.push(json!({"type": "key_by", "config": {"key": format!(".id % {KEYS}")}}));
    }
    let spec = json!({
        "name": "moving",
        "parallelism": 6,
        "checkpoint_interval": "300ms",
        "sources": [{"id": "gen", "type": "generator",
                     "config": {"count": RECORDS, "rate": rate, "template": {"id": "{{seq}}"}}}],
        "transforms": transforms,
        "sinks": [sink]
    });
    create_pipeline(&cluster.node(1).url("/pipelines"), &spec).await;
    eventually(
        Duration::from_secs(30),
        "a checkpoint of every partition",
        || async {
            let e = epochs(cluster, 0).await?;
            (e.len() == 6 && e.values().all(|e| *e >= 2)).then_some(())
        },
    )
    .await;
}

async fn survive(fault: Fault, keyed: bool) {
    let mut cluster = Cluster::start(3, &["--failover-after-ms", FAILOVER_AFTER_MS]).await;
    let out = cluster.root.path().join("shared-out");
    start_moving(&cluster, 3000, shared_files(&cluster), keyed).await;
    let placed = assignments(&cluster, 0).await.expect("assignments");
    let nodes: BTreeSet<u64> = placed.values().copied().collect();
    assert_eq!((placed.len(), nodes.len()), (6, 3), "{placed:?}");

    let leader = leader_of(&cluster).await;
    let victim = match fault {
        Fault::KillLeader => leader,
        Fault::KillFollower | Fault::Pause => (1..=3).find(|n| *n != leader).unwrap_or(2),
    };
    let moved: Vec<u64> = placed
        .iter()
        .filter(|(_, n)| **n == victim)
        .map(|(p, _)| *p)
        .collect();
    let before = epochs(&cluster, victim).await.expect("epochs");
    let hit = Instant::now();
    match fault {
        Fault::KillFollower | Fault::KillLeader => cluster.node_mut(victim).kill9(),
        Fault::Pause => cluster.node(victim).signal("STOP"),
    }

    // Its partitions run elsewhere and commit checkpoints again.
    eventually(
        Duration::from_secs(30),
        "the partitions processing elsewhere",
        || async {
            let a = assignments(&cluster, victim).await?;
            let e = epochs(&cluster, victim).await?;
            let elsewhere = moved.iter().all(|p| a.get(p).is_some_and(|n| *n != victim));
            let progressed = moved.iter().all(|p| e.get(p) > before.get(p));
            (elsewhere && progressed).then_some(())
        },
    )
    .await;
    let stopped = hit.elapsed();
    eprintln!(
        "{fault:?}: partitions {moved:?} of node {victim} processing again after {} ms",
        stopped.as_millis()
    );
    if std::env::var("WIRE_DEBUG_LOGS").is_ok() {
        panic!("show logs");
    }

    if fault == Fault::Pause {
        // It wakes after its partitions moved: its stale jobs must commit nothing.
        cluster.node(victim).signal("CONT");
        let members = cluster.node(leader).url("/cluster/members");
        eventually(
            Duration::from_secs(30),
            "the paused node alive again",
            || async {
                let s = try_json(&members).await?;
                let alive = s["members"]
                    .as_array()?
                    .iter()
                    .any(|m| m["id"].as_u64() == Some(victim) && m["alive"] == true);
                alive.then_some(())
            },
        )
        .await;
        // Whatever its stale jobs did after waking (a refused checkpoint, a part file gone
        // from under them), the exactly-once check below proves none of it was committed.
    }

    let any = cluster
        .nodes
        .iter()
        .find(|p| p.id != victim)
        .expect("a live node")
        .url("/pipelines/moving");
    eventually(Duration::from_secs(90), "the pipeline finished", || async {
        let s = try_json(&any).await?;
        (s["state"] == "finished").then_some(())
    })
    .await;

    let lines = committed_lines(&out);
    let mut seen = BTreeSet::new();
    let mut twice = Vec::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).expect("a JSON line");
        let id = v["id"].as_u64().expect("an id");
        if !seen.insert(id) {
            twice.push(id);
        }
    }
    assert!(
        twice.is_empty(),
        "{} ids twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len() as u64, RECORDS, "every record once");
    if keyed {
        // Each key on exactly one partition, the one its hash names, on whichever node.
        let mut homes: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        for (partition, values) in lines_by_partition(&out) {
            for v in values {
                let key = v["id"].as_u64().expect("an id") % KEYS;
                homes.entry(key).or_default().insert(partition);
            }
        }
        assert_eq!(homes.len() as u64, KEYS);
        let split: Vec<_> = homes.iter().filter(|(_, h)| h.len() > 1).collect();
        assert!(split.is_empty(), "keys on several partitions: {split:?}");
        let used: BTreeSet<u32> = homes.values().flatten().copied().collect();
        assert!(used.len() > 3, "keys spread over the partitions: {used:?}");
    }
    if fault == Fault::Pause {
        // The woken node takes work again: a new pipeline is spread over all three.
        let more = json!({
            "name": "after",
            "parallelism": 3,
            "sources": [{"type": "generator", "config": {"count": 30}}],
            "sinks": [{"type": "stdout"}]
        });
        create_pipeline(&cluster.node(1).url("/pipelines"), &more).await;
        let url = cluster.node(1).url("/pipelines/after");
        eventually(
            Duration::from_secs(30),
            "a partition on the woken node",
            || async {
                let s = get_json(&url).await;
                let on = s["partitions"]
                    .as_array()?
                    .iter()
                    .any(|p| p["node"].as_u64() == Some(victim));
                on.then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_its_partitions_and_the_output_is_exactly_once() {
    survive(Fault::KillFollower, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pipeline_across_nodes_survives_a_kill_with_each_key_on_one_partition() {
    survive(Fault::KillFollower, true).await;
}

/// Windows over event time keep their state through a kill -9: the state is checkpointed
/// with the barrier and restored on the node the partition moves to, so the output is what
/// an uninterrupted run gives, each window once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_give_the_same_answer_through_a_kill() {
    let mut cluster = Cluster::start(3, &["--failover-after-ms", FAILOVER_AFTER_MS]).await;
    let out = cluster.root.path().join("shared-out");
    let spec = json!({
        "name": "moving",
        "parallelism": 6,
        "checkpoint_interval": "300ms",
        "event_time": {"field": "(.seq | tonumber) * 10"},
        "sources": [{"id": "gen", "type": "generator",
                     "config": {"count": RECORDS, "rate": 3000, "template": {"seq": "{{seq}}"}}}],
        "transforms": [
            {"type": "jq", "config": {"filter": ".seq |= tonumber"}},
            {"type": "key_by", "config": {"key": ".seq % 6"}},
            {"type": "window", "config": {"size": "1s", "aggregate": {"n": "count", "total": {"sum": ".seq"}}}}
        ],
        "sinks": [shared_files(&cluster)]
    });
    create_pipeline(&cluster.node(1).url("/pipelines"), &spec).await;
    eventually(
        Duration::from_secs(30),
        "two checkpoints of every partition",
        || async {
            let e = epochs(&cluster, 0).await?;
            (e.len() == 6 && e.values().all(|e| *e >= 2)).then_some(())
        },
    )
    .await;
    let leader = leader_of(&cluster).await;
    let victim = (1..=3).find(|n| *n != leader).unwrap_or(2);
    cluster.node_mut(victim).kill9();
    let any = cluster.node(leader).url("/pipelines/moving");
    eventually(Duration::from_secs(90), "the pipeline finished", || async {
        let s = try_json(&any).await?;
        (s["state"] == "finished").then_some(())
    })
    .await;
    let mut expected: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for seq in 0..RECORDS {
        let e = expected
            .entry(((seq % 6).to_string(), (seq as i64 * 10) / 1000 * 1000))
            .or_default();
        e.0 += 1;
        e.1 += seq;
    }
    let mut got: BTreeMap<(String, i64), (u64, u64)> = BTreeMap::new();
    for line in committed_lines(&out) {
        let v: Value = serde_json::from_str(&line).expect("a JSON line");
        let key = (
            v["key"].as_str().expect("key").to_string(),
            v["window_start"].as_i64().expect("start"),
        );
        let value = (
            v["n"].as_u64().expect("n"),
            v["total"].as_u64().expect("total"),
        );
        assert!(got.insert(key, value).is_none(), "a window twice: {line}");
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .collect();
    if !missing.is_empty() && std::env::var("WIRE_KEEP_LOGS").is_ok() {
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(&out)
            .arg("/tmp/klogs/out")
            .status();
    }
    assert!(
        missing.is_empty(),
        "{} of {} windows missing or wrong, e.g. {:?} (got {:?})",
        missing.len(),
        expected.len(),
        &missing[..missing.len().min(8)],
        missing
            .iter()
            .take(8)
            .map(|(k, _)| got.get(*k))
            .collect::<Vec<_>>()
    );
    assert_eq!(got.len(), expected.len(), "every window once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pipeline_across_nodes_fences_a_paused_node() {
    survive(Fault::Pause, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_go_on_when_the_leader_is_killed() {
    survive(Fault::KillLeader, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_is_fenced_when_it_wakes_and_takes_work_again() {
    survive(Fault::Pause, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_show_whether_they_are_alive() {
    let mut cluster = Cluster::start(3, &["--failover-after-ms", FAILOVER_AFTER_MS]).await;
    let leader = leader_of(&cluster).await;
    let victim = (1..=3).find(|n| *n != leader).unwrap_or(2);
    let other = (1..=3).find(|n| *n != leader && *n != victim).unwrap_or(3);
    let alive = |s: &Value, id: u64| -> Option<bool> {
        s["members"]
            .as_array()?
            .iter()
            .find(|m| m["id"].as_u64() == Some(id))?["alive"]
            .as_bool()
    };
    let s = get_json(&cluster.node(other).url("/cluster/members")).await;
    assert!((1..=3).all(|id| alive(&s, id) == Some(true)), "{s}");
    cluster.node_mut(victim).kill9();
    // Seen from a follower (which asks the leader), and in the leader's metrics.
    let url = cluster.node(other).url("/status");
    let s = eventually(
        Duration::from_secs(20),
        "the killed node not alive",
        || async {
            let s = try_json(&url).await?;
            (alive(&s, victim) == Some(false)).then_some(s)
        },
    )
    .await;
    let member = s["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"].as_u64() == Some(victim)).cloned())
        .expect("the member");
    assert!(
        member["last_heard_ms"].as_u64().unwrap_or(0) >= 1500,
        "{member}"
    );
    let metric = format!("wire_member_alive{{node=\"{victim}\"}}");
    let value = cluster.node(leader).metric(&metric).await;
    assert_eq!(value, Some(0.0));
}

/// The moves of the pipeline's partitions: partition -> (node, moving_to, last move).
async fn placement(url: &str) -> Option<Vec<(u64, Option<u64>, Value)>> {
    let s = try_json(url).await?;
    s["partitions"]
        .as_array()?
        .iter()
        .map(|p| {
            Some((
                p["node"].as_u64()?,
                p["moving_to"].as_u64(),
                p["last_move"].clone(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_gets_its_share_and_a_drained_node_leaves_without_a_failover() {
    join_and_drain(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pipeline_takes_a_joining_node_and_leaves_a_drained_one() {
    join_and_drain(true).await;
}

async fn join_and_drain(keyed: bool) {
    let mut cluster = Cluster::start(3, &["--failover-after-ms", FAILOVER_AFTER_MS]).await;
    let out = cluster.root.path().join("shared-out");
    start_moving(&cluster, 2000, shared_files(&cluster), keyed).await;
    let url = cluster.node(1).url("/pipelines/moving");

    // A fourth node joins: partitions are handed to it, each after a final checkpoint.
    let args: Vec<String> = [
        "--failover-after-ms",
        FAILOVER_AFTER_MS,
        "--join",
        &cluster.node(1).http,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let fourth = crate::support::Proc::start(cluster.root.path(), 4, &args);
    cluster.nodes.push(fourth);
    cluster.wait_members(4, Duration::from_secs(30)).await;
    let moved_in = eventually(
        Duration::from_secs(30),
        "partitions on the new node",
        || async {
            let p = placement(&url).await?;
            let on4: Vec<Value> = p
                .iter()
                .filter(|(n, moving, _)| *n == 4 && moving.is_none())
                .map(|(_, _, m)| m.clone())
                .collect();
            (!on4.is_empty()).then_some(on4)
        },
    )
    .await;
    assert!(
        moved_in.iter().all(|m| m["reason"]
            .as_str()
            .is_some_and(|r| r.contains("balancing"))),
        "{moved_in:?}"
    );

    // Node 2 is drained, then removed and stopped: its partitions were handed off, none
    // failed over.
    let r = crate::support::http()
        .post(cluster.node(1).url("/cluster/members/2/drain"))
        .send()
        .await
        .expect("drain");
    assert_eq!(r.status(), 200);
    let after = eventually(Duration::from_secs(30), "node 2 drained", || async {
        let p = placement(&url).await?;
        (!p.iter().any(|(n, _, _)| *n == 2)).then_some(p)
    })
    .await;
    for (_, _, m) in &after {
        if m["from"].as_u64() == Some(2) {
            let reason = m["reason"].as_str().unwrap_or_default();
            assert!(reason.contains("draining"), "{m}");
        }
    }
    let s = get_json(&cluster.node(1).url("/cluster/members")).await;
    let member2 = s["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 2).cloned())
        .expect("member 2");
    assert_eq!(
        (
            member2["draining"].as_bool(),
            member2["partitions"].as_u64()
        ),
        (Some(true), Some(0))
    );
    let r = crate::support::http()
        .delete(cluster.node(1).url("/cluster/members/2"))
        .send()
        .await
        .expect("remove");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    cluster.node_mut(2).terminate();

    eventually(Duration::from_secs(90), "the pipeline finished", || async {
        let s = try_json(&url).await?;
        (s["state"] == "finished").then_some(())
    })
    .await;
    let mut seen = BTreeSet::new();
    for l in committed_lines(&out) {
        let v: Value = serde_json::from_str(&l).expect("a JSON line");
        assert!(seen.insert(v["id"].as_u64().expect("id")), "twice: {l}");
    }
    assert_eq!(seen.len() as u64, RECORDS, "every record once");
    let log =
        cluster.node(1).log_text() + &cluster.node(3).log_text() + &cluster.node(4).log_text();
    assert!(!log.contains("silent for"), "a failover happened:\n{log}");
}

/// Every message of `topic`, read up to the end offsets it has now (its producers are done).
#[cfg(feature = "kafka")]
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Value> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "wire-failover-checker")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut total = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        total += (high - low) as usize;
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < total && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            out.push(serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON"));
        }
    }
    assert_eq!(out.len(), total, "every message up to the end offsets");
    out
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_sink_through_a_kill_is_at_least_once_with_duplicates_from_one_interval() {
    kafka_through_a_kill(false).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_pipeline_into_kafka_through_a_kill_is_at_least_once() {
    kafka_through_a_kill(true).await;
}

#[cfg(feature = "kafka")]
async fn kafka_through_a_kill(keyed: bool) {
    use crate::kafka::{broker, create_topic, topic};
    const RATE: u64 = 3000;
    const INTERVAL_MS: u64 = 300; // start_moving's checkpoint interval
    let name = topic("failover-out");
    create_topic(&name, 3).await;
    let mut cluster = Cluster::start(3, &["--failover-after-ms", FAILOVER_AFTER_MS]).await;
    let sink = json!({"type": "kafka", "config": {"bootstrap_servers": broker(), "topic": name}});
    start_moving(&cluster, RATE, sink, keyed).await;
    let leader = leader_of(&cluster).await;
    let victim = (1..=3).find(|n| *n != leader).unwrap_or(2);
    let moved = assignments(&cluster, 0)
        .await
        .expect("assignments")
        .values()
        .filter(|n| **n == victim)
        .count() as u64;
    // A keyed job is one job over every node: all its partitions go back to the last
    // checkpoint, not only the killed node's.
    let moved = if keyed { 6 } else { moved };
    cluster.node_mut(victim).kill9();
    let any = cluster.node(leader).url("/pipelines/moving");
    eventually(Duration::from_secs(90), "the pipeline finished", || async {
        let s = try_json(&any).await?;
        (s["state"] == "finished").then_some(())
    })
    .await;
    let mut count: BTreeMap<u64, u64> = BTreeMap::new();
    for v in read_topic(broker(), &name) {
        *count.entry(v["id"].as_u64().expect("id")).or_default() += 1;
    }
    assert_eq!(count.len() as u64, RECORDS, "every record at least once");
    let duplicates: u64 = count.values().map(|c| c - 1).sum();
    // What the killed node's partitions read after their last checkpoint: one interval of
    // their share of the rate (times two for the checkpoint's own round trip).
    let bound = moved * (RATE / 6) * INTERVAL_MS * 2 / 1000;
    eprintln!("kafka sink through a kill: {duplicates} duplicates (bound {bound})");
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates, more than {bound}"
    );
}
