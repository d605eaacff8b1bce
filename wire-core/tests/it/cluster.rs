//! Real `wire node` processes on 127.0.0.1: replication, forwarding, failover after
//! `kill -9`, catch-up through snapshots, membership changes and full restarts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{eventually, free_port, http, Cluster};

fn leader_of(statuses: &[Value]) -> Option<u64> {
    statuses
        .iter()
        .find(|s| s["role"] == "leader")
        .and_then(|s| s["node_id"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_forward_and_survive_leader_kill() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let follower = cluster.nodes.iter().find(|p| p.id != leader).unwrap();

    // A write sent to a follower is forwarded; every node reads it linearizably.
    let r = follower.put("greeting", "hello").await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for p in &cluster.nodes {
        assert_eq!(
            p.get("greeting", "linearizable").await.as_deref(),
            Some("hello")
        );
    }
    let s = cluster.node(1).status().await.unwrap();
    assert_eq!(s["members"].as_array().unwrap().len(), 3);
    assert_eq!(s["leader"]["id"].as_u64(), Some(leader));

    // A client keeps writing through all three nodes while the leader is killed.
    let addrs: Vec<String> = cluster.nodes.iter().map(|p| p.http.clone()).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, refused, stop) = (acked.clone(), refused.clone(), stop.clone());
        tokio::spawn(async move {
            let c = http();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("w-{i}");
                let addr = &addrs[(i as usize) % addrs.len()];
                // A node that is down refuses the connection; one that is up must answer
                // (within the timeout) either 200 or a retryable 503 with Retry-After.
                let resp = c
                    .put(format!("http://{addr}/kv/{key}"))
                    .body(key.clone())
                    .timeout(Duration::from_secs(8))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(key),
                    Ok(r) => {
                        let retry = r.headers().get("retry-after").is_some();
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        refused
                            .lock()
                            .unwrap()
                            .push(format!("{status} retry-after={retry} {body}"));
                    }
                    Err(e) if e.is_timeout() => refused.lock().unwrap().push(format!("hang: {e}")),
                    // Only the killed node may fail to answer (refused, or cut mid-request).
                    Err(e) => refused.lock().unwrap().push(format!("{addr}: {e}")),
                }
                i += 1;
            }
        })
    };
    eventually(Duration::from_secs(20), "50 acked writes", || async {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .await;
    cluster.node_mut(leader).kill9();
    let killed_at = Instant::now();
    let acked_at_kill = acked.lock().unwrap().len();

    // A new leader is elected among the survivors and takes writes again.
    let survivors: Vec<u64> = cluster
        .nodes
        .iter()
        .map(|p| p.id)
        .filter(|id| *id != leader)
        .collect();
    let new_leader = eventually(Duration::from_secs(15), "a new leader", || async {
        let mut statuses = Vec::new();
        for id in &survivors {
            statuses.extend(cluster.node(*id).status().await);
        }
        leader_of(&statuses).filter(|l| *l != leader)
    })
    .await;
    eventually(Duration::from_secs(15), "writes after failover", || async {
        (acked.lock().unwrap().len() >= acked_at_kill + 50).then_some(())
    })
    .await;
    eprintln!(
        "failover: new leader {new_leader} taking writes {:?} after kill -9",
        killed_at.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let killed_addr = cluster.node(leader).http.clone();
    for r in refused.lock().unwrap().iter() {
        assert!(
            r.starts_with("503 retry-after=true") || r.starts_with(&format!("{killed_addr}: ")),
            "a write during failover got: {r}"
        );
    }

    // Every acknowledged write is readable on every survivor.
    let acked = acked.lock().unwrap().clone();
    for id in &survivors {
        let p = cluster.node(*id);
        for key in &acked {
            assert_eq!(
                p.get(key, "linearizable").await.as_deref(),
                Some(key.as_str()),
                "node {id} lost {key}"
            );
        }
    }

    // The killed node restarts from its data dir (no --join) and catches up.
    cluster.node_mut(leader).restart(&[]);
    let last = acked.last().unwrap().clone();
    let p = cluster.node(leader);
    eventually(
        Duration::from_secs(20),
        "the restarted node to catch up",
        || async {
            let s = p.status().await?;
            (s["role"] == "follower").then_some(())?;
            (p.try_get(&last, "local").await.as_deref() == Some(last.as_str())).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_node_rejoins_through_a_snapshot_and_the_log_stays_bounded() {
    let threshold = 100u64;
    let keep = 20u64;
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-threshold",
            &threshold.to_string(),
            "--snapshot-keep-logs",
            &keep.to_string(),
        ],
    )
    .await;

    // Node 3 goes down; remember how far its log went.
    let node3_last = eventually(Duration::from_secs(10), "node 3's log position", || async {
        cluster.node(3).status().await?["last_log_index"].as_u64()
    })
    .await;
    cluster.node_mut(3).kill9();

    // Thousands of writes happen while it is down: first large values (the snapshot then
    // spans several chunks), then small ones from 8 concurrent writers.
    let total = 2000usize;
    let addr = cluster.node(1).http.clone();
    let big = |i: usize| format!("{i}").repeat(1024 * 1024);
    let put_big = |range: std::ops::Range<usize>| {
        let addr = addr.clone();
        async move {
            for i in range {
                let r = http()
                    .put(format!("http://{addr}/kv/big-{i}"))
                    .body(big(i))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    put_big(0..6).await;
    let mut tasks = Vec::new();
    for w in 0..8 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let c = http();
            for i in (w..total).step_by(8) {
                let key = format!("s-{i:05}");
                let r = c
                    .put(format!("http://{addr}/kv/{key}"))
                    .body(key.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Large values after the snapshot: appends to node 3 then exceed a megabyte.
    put_big(6..9).await;

    // The leader snapshotted and purged its log behind the snapshot: past node 3's position,
    // and the live log stays within the snapshot policy's bound.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let s = eventually(Duration::from_secs(10), "a purge past node 3", || async {
        let s = cluster.node(leader).status().await?;
        (s["purged_index"].as_u64()? > node3_last).then_some(s)
    })
    .await;
    let live = s["last_log_index"].as_u64().unwrap() - s["purged_index"].as_u64().unwrap();
    assert!(
        live <= threshold + keep + 50,
        "live log of {live} entries is not bounded: {s}"
    );

    // Node 3 restarts and can only catch up by installing a snapshot.
    cluster.node_mut(3).restart(&[]);
    let p = cluster.node(3);
    let last_key = format!("s-{:05}", total - 1);
    eventually(Duration::from_secs(30), "node 3 to catch up", || async {
        (p.try_get(&last_key, "local").await.as_deref() == Some(last_key.as_str())).then_some(())
    })
    .await;
    let s3 = p.status().await.unwrap();
    let snap = s3["snapshot"]["index"]
        .as_u64()
        .expect("node 3 holds a snapshot");
    assert!(
        snap > node3_last,
        "node 3's snapshot ({snap}) must come from the leader: {s3}"
    );
    let page: Value = http()
        .get(p.url(&format!("/kv?prefix=s-&limit={total}&consistency=local")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_and_whole_cluster_restart() {
    let mut cluster = Cluster::start(3, &[]).await;
    let c = http();
    for i in 0..20 {
        let r = cluster.node(1).put(&format!("m-{i}"), "v").await.unwrap();
        assert_eq!(r.status(), 200);
    }

    // Rejoining with the same id and addresses is idempotent: still three members.
    let join = vec!["--join".to_string(), cluster.node(1).http.clone()];
    cluster.node_mut(2).terminate();
    cluster.node_mut(2).restart(&join);
    eventually(Duration::from_secs(20), "node 2 back", || async {
        let s = cluster.node(2).status().await?;
        (s["role"] == "follower" || s["role"] == "leader").then_some(())
    })
    .await;
    let s = cluster.node(1).status().await.unwrap();
    assert_eq!(s["members"].as_array().unwrap().len(), 3, "{s}");

    // A changed address replaces the old entry.
    cluster.node_mut(2).terminate();
    let new_http = format!("127.0.0.1:{}", free_port());
    cluster.node_mut(2).http = new_http.clone();
    cluster.node_mut(2).restart(&join);
    eventually(Duration::from_secs(20), "node 2's new address", || async {
        let s = cluster.node(1).status().await?;
        let members = s["members"].as_array()?;
        let m2 = members.iter().find(|m| m["id"] == 2)?;
        (members.len() == 3 && m2["http_addr"] == new_http.as_str()).then_some(())
    })
    .await;

    // Removing node 3 (asked on a follower) leaves two voters that keep a quorum.
    let r = c
        .delete(cluster.node(2).url("/cluster/members/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    cluster.wait_members(2, Duration::from_secs(10)).await;
    cluster.node_mut(3).kill9();
    let r = cluster.node(2).put("after-remove", "ok").await.unwrap();
    assert_eq!(r.status(), 200);
    // A pipeline created through a follower is replicated state too.
    let r = c
        .post(cluster.node(2).url("/pipelines"))
        .body(r#"{"name": "kept", "sources": [{"type": "generator"}], "sinks": [{"type": "stdout"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // Stop the whole cluster, start it again from its data dirs: all data is there.
    cluster.node_mut(1).terminate();
    cluster.node_mut(2).terminate();
    cluster.node_mut(1).restart(&[]);
    cluster.node_mut(2).restart(&[]);
    for id in [1, 2] {
        let p = cluster.node(id);
        eventually(
            Duration::from_secs(20),
            "restarted cluster answers",
            || async { p.status().await?["leader"].as_object().map(|_| ()) },
        )
        .await;
        for i in 0..20 {
            assert_eq!(
                p.get(&format!("m-{i}"), "linearizable").await.as_deref(),
                Some("v")
            );
        }
        assert_eq!(
            p.get("after-remove", "linearizable").await.as_deref(),
            Some("ok")
        );
    }
}

/// A follower paused (SIGSTOP) for longer than any election timeout comes back and follows
/// the same leader in the same term (a pre-vote, if it asks, is refused by the voters that
/// hear the leader), instead of campaigning and deposing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_node_does_not_depose_a_healthy_leader() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    let r = cluster.node(leader).put("before", "1").await.unwrap();
    assert_eq!(r.status(), 200);
    let term = cluster.node(leader).status().await.unwrap()["term"].clone();
    let paused = cluster.nodes.iter().find(|p| p.id != leader).unwrap();

    // The pause outlasts the longest election timeout (1 s in the test flags) three times:
    // this is the fault, not a wait for an outcome.
    paused.signal("STOP");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let r = cluster.node(leader).put("during", "2").await.unwrap();
    assert_eq!(r.status(), 200, "the two others keep a quorum");
    paused.signal("CONT");

    // Its timer expired while it was stopped: whichever comes first, the leader's next
    // heartbeat or its own pre-vote round (refused), it catches up with the write made while
    // it slept without raising the term.
    eventually(
        Duration::from_secs(10),
        "the paused node to catch up",
        || async {
            (paused.try_get("during", "local").await.as_deref() == Some("2")).then_some(())
        },
    )
    .await;
    for p in &cluster.nodes {
        let s = p.status().await.unwrap();
        assert_eq!(s["leader"]["id"].as_u64(), Some(leader), "node {}", p.id);
        assert_eq!(s["term"], term, "node {}: the term moved", p.id);
    }
    assert_eq!(
        paused.metric("wire_raft_elections_total").await,
        Some(0.0),
        "the paused node campaigned"
    );
}

/// Found by the API fuzzer: a member removed while its process runs, and a new node joined
/// under the removed one's addresses. The old process must not answer the leader's calls
/// meant for the new member (it refuses them: 421); before, the leader took its answers for
/// the new node's, could not make sense of the log, and its Raft core panicked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_a_reused_address_does_not_answer_for_the_new_member() {
    let cluster = Cluster::start(3, &[]).await;
    let leader = cluster.wait_leader(Duration::from_secs(20)).await;
    let victim = cluster
        .nodes
        .iter()
        .find(|p| p.id != leader)
        .expect("a follower");
    let at = cluster.node(leader);
    let resp = http()
        .delete(at.url(&format!("/cluster/members/{}", victim.id)))
        .send()
        .await
        .expect("remove");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    // A new node id under the removed member's addresses (its process still runs there).
    let resp = http()
        .post(at.url("/cluster/join"))
        .json(&serde_json::json!({
            "node_id": 9, "http_addr": victim.http, "raft_addr": victim.raft, "learner": true
        }))
        .send()
        .await
        .expect("join");
    let joined = resp.status();
    eventually(
        Duration::from_secs(20),
        "the refusal in the old node's log",
        || async {
            victim
                .log_text()
                .contains("refused a call meant for another node")
                .then_some(())
        },
    )
    .await;
    // The cluster still writes, and no node's Raft panicked.
    for i in 0..20 {
        let resp = at.put(&format!("after-reuse/{i}"), "v").await.expect("put");
        assert_eq!(resp.status(), 200, "write {i} after join answered {joined}");
    }
    for p in &cluster.nodes {
        assert!(!p.log_text().contains("panicked"), "node {} panicked", p.id);
    }
}
