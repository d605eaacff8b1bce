//! Reads across a leader's crash and restart, on the in-memory cluster ([`super::mem_cluster`])
//! started from crash images: a linearizable read must see every write acknowledged before
//! it began, on a node that just restarted and on a leader elected a moment ago.

use std::time::Duration;

use openraft::{CommittedLeaderId, EntryPayload, Vote};

use super::mem_cluster::{membership_entry, CrashImage, MemNet, MemNode, Message};
use super::writer::Entry;
use super::{Command, LogId};

fn entry(index: u64, payload: EntryPayload<super::TypeConfig>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload,
    }
}

fn put(index: u64, key: &str, value: &str) -> Entry {
    entry(
        index,
        EntryPayload::Normal(Command::KvPut {
            key: key.into(),
            value: value.as_bytes().to_vec(),
        }),
    )
}

/// A read as [`crate::Node::read_barrier`] does it: the leader `via` knows of confirms its
/// leadership with a quorum and names the read index, `via` waits until it has applied that
/// far, then reads its own state. `None` when no read could be made now (no leader known,
/// leadership not confirmed, not caught up in time) — never a wrong answer.
async fn linearizable_read(nodes: &[MemNode], via: &MemNode, key: &str) -> Option<Option<String>> {
    let leader_id = via.raft.metrics().borrow().current_leader?;
    let leader = nodes.iter().find(|n| n.id == leader_id)?;
    let confirmed = tokio::time::timeout(Duration::from_millis(500), leader.raft.get_read_log_id());
    let (read_log_id, _) = confirmed.await.ok()?.ok()?;
    via.raft
        .wait(Some(Duration::from_millis(500)))
        .applied_index_at_least(read_log_id.map(|l| l.index), "read")
        .await
        .ok()?;
    Some(via.local(key))
}

/// Node 1 led term 1 and acknowledged `k = v1` (index 2) and then `k = v2` (index 3), both
/// on every node's disk. It crashed before its committed hint and state machine caught up
/// with the second write; the followers had applied both. It restarts at once, before the
/// followers elect anyone: no read through any node, before or after the next election,
/// may return v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_serves_no_read_older_than_an_acknowledged_write() {
    let root = tempfile::tempdir().expect("temp dir");
    let log = vec![
        membership_entry(&[1, 2, 3]),
        entry(1, EntryPayload::Blank),
        put(2, "k", "v1"),
        put(3, "k", "v2"),
    ];
    let granted = Vote::new_committed(1, 1);
    let crashed_leader = CrashImage {
        log: &log,
        vote: granted,
        committed: Some(log[2].log_id),
        applied: 3,
    };
    let follower = CrashImage {
        log: &log,
        vote: granted,
        committed: Some(log[3].log_id),
        applied: 4,
    };
    let dirs = [
        crashed_leader.write(root.path(), 1).await,
        follower.write(root.path(), 2).await,
        follower.write(root.path(), 3).await,
    ];

    // Phase 1: nothing that could carry or commit log entries gets through — only votes and
    // empty heartbeats that claim no matching log (what a leader sends to confirm itself
    // for a read). No entry can be committed in this phase, so a read that answers must
    // already know v2 is committed.
    let net = MemNet::default();
    net.hold(|_, _, msg| match msg {
        Message::Append(a) => a.entries.is_empty() && a.prev_log_id.is_none(),
        Message::Vote | Message::Snapshot => true,
    });
    let mut nodes = Vec::new();
    for (id, dir) in [2, 3, 1].into_iter().zip([&dirs[1], &dirs[2], &dirs[0]]) {
        nodes.push(net.start(id, dir).await);
    }
    let restarted = nodes.iter().position(|n| n.id == 1).expect("node 1");
    let mut answered = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        for via in [&nodes[restarted], &nodes[0], &nodes[1]] {
            if let Some(value) = linearizable_read(&nodes, via, "k").await {
                answered += 1;
                assert_eq!(
                    value.as_deref(),
                    Some("v2"),
                    "a linearizable read through node {} missed an acknowledged write",
                    via.id
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::info!(answered, "reads answered while replication was held");

    // Phase 2: the network heals. A leader commits its first entry and every node answers
    // v2, then a new write is seen through the restarted node.
    net.deliver_all();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for via in &nodes {
        loop {
            if linearizable_read(&nodes, via, "k").await == Some(Some("v2".into())) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {} never answered after the network healed",
                via.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let leader_id = nodes[restarted]
        .raft
        .metrics()
        .borrow()
        .current_leader
        .expect("a leader");
    let leader = nodes.iter().find(|n| n.id == leader_id).expect("leader");
    leader
        .raft
        .client_write(Command::KvPut {
            key: "k".into(),
            value: b"v3".to_vec(),
        })
        .await
        .expect("write after the election");
    loop {
        match linearizable_read(&nodes, &nodes[restarted], "k").await {
            Some(seen) => {
                assert_eq!(seen.as_deref(), Some("v3"));
                break;
            }
            None => assert!(
                tokio::time::Instant::now() < deadline,
                "no read after the write"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in nodes {
        node.stop().await;
    }
}
