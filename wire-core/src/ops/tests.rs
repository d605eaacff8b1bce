//! The services alone, on a one-node Raft over the in-memory network (no listeners, no
//! `Node`): what each operation answers, and that a refused request writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::cluster::ClusterOps;
use super::kv::KvOps;
use super::pipelines::PipelineOps;
use crate::cluster::JoinRequest;
use crate::consensus::client::{ConsensusClient, Consistency};
use crate::consensus::elector::RaftCounters;
use crate::consensus::mem_cluster::{MemNet, MemNode};
use crate::consensus::network::PeerClient;
use crate::consensus::WireNode;
use crate::kv::{Compare, Txn, TxnOp};
use crate::pipeline::runtime::supervisor::Runtime;
use crate::pipeline::{DesiredState, PipelineSpec};
use crate::{ErrorKind, NodeOptions};

struct One {
    _dir: tempfile::TempDir,
    node: MemNode,
    client: ConsensusClient,
}

async fn one_node() -> One {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = MemNet::default().start(1, dir.path()).await;
    node.raft
        .initialize(BTreeMap::from([(1, WireNode::default())]))
        .await
        .expect("initialize");
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .expect("a leader");
    let client = ConsensusClient::new(
        1,
        node.raft.clone(),
        node.state.clone(),
        PeerClient::new(Duration::from_millis(200), None, None).expect("peer client"),
        Duration::from_secs(5),
        Arc::new(RaftCounters::default()),
    );
    One {
        _dir: dir,
        node,
        client,
    }
}

impl One {
    /// Stops the node once every service built on it is dropped.
    async fn stop<S>(self, services: S) {
        drop(services);
        drop(self.client);
        self.node.stop().await;
    }
}

fn spec(name: &str, parallelism: u32) -> PipelineSpec {
    let text = format!(
        r#"{{"name": "{name}", "parallelism": {parallelism},
            "sources": [{{"id": "gen", "type": "generator", "config": {{"count": 10}}}}],
            "sinks": [{{"id": "out", "type": "stdout"}}]}}"#
    );
    PipelineSpec::parse(&text).expect("spec")
}

#[tokio::test]
async fn kv_answers_are_typed_and_bad_keys_write_nothing() {
    let one = one_node().await;
    let kv = KvOps::new(one.client.clone());
    let applied = || {
        one.node
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
    };
    let before = applied();
    let err = kv.put("", b"v".to_vec()).await.expect_err("empty key");
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    assert_eq!(applied(), before, "a refused put wrote an entry");

    let first = kv.put("a", b"1".to_vec()).await.expect("put");
    assert!(!first.existed);
    let second = kv.put("a", b"2".to_vec()).await.expect("put");
    assert!(second.existed && second.index > first.index);
    assert_eq!(
        kv.get("a", Consistency::Linearizable).await.expect("get"),
        Some(b"2".to_vec())
    );

    let cas = |expect: &str| Txn {
        compare: vec![Compare::Equals {
            key: "a".into(),
            value: expect.as_bytes().to_vec(),
        }],
        success: vec![TxnOp::Put {
            key: "b".into(),
            value: b"won".to_vec(),
        }],
        failure: vec![],
    };
    assert!(!kv.txn(cas("1")).await.expect("txn").succeeded);
    assert!(kv.txn(cas("2")).await.expect("txn").succeeded);
    let page = kv
        .list("", None, 10, Consistency::Leader)
        .await
        .expect("list");
    assert_eq!(page.items.len(), 2);

    assert!(kv.delete("a").await.expect("delete").deleted);
    assert!(!kv.delete("a").await.expect("delete").deleted);
    one.stop(kv).await;
}

#[tokio::test]
async fn pipeline_writes_are_atomic_and_typed() {
    let one = one_node().await;
    let ops = PipelineOps::new(one.client.clone(), Arc::new(Runtime::default()));
    let created = ops.create(spec("p", 2)).await.expect("create");
    assert!(created.created && created.changed && created.version == 1);
    let again = ops.create(spec("p", 2)).await.expect_err("exists");
    assert_eq!(again.kind(), ErrorKind::Conflict);

    // The spec it runs: nothing changes. Another spec: a new version.
    let same = ops.update(spec("p", 2), false).await.expect("update");
    assert_eq!((same.changed, same.version), (false, 1));
    let other = ops.update(spec("p", 3), false).await.expect("update");
    assert_eq!((other.changed, other.version), (true, 2));
    let missing = ops.update(spec("q", 1), false).await.expect_err("missing");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let upserted = ops.update(spec("q", 1), true).await.expect("upsert");
    assert!(upserted.created);

    let paused = ops
        .set_state("p", DesiredState::Paused)
        .await
        .expect("pause");
    assert_eq!(paused.desired, DesiredState::Paused);
    let listed = ops.list(Consistency::Linearizable).await.expect("list");
    let names: Vec<_> = listed
        .pipelines
        .iter()
        .map(|r| r.spec.name.as_str())
        .collect();
    assert_eq!(names, ["p", "q"]);

    let mut bad = spec("bad", 1);
    bad.sources[0].kind = "no-such-connector".into();
    let err = ops.create(bad).await.expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err}");
    assert!(ops
        .get("bad", Consistency::Local)
        .await
        .expect("get")
        .is_none());

    ops.delete("p").await.expect("delete");
    let gone = ops.delete("p").await.expect_err("deleted twice");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
    one.stop(ops).await;
}

#[tokio::test]
async fn membership_changes_are_checked_before_raft_sees_them() {
    let one = one_node().await;
    let config = NodeOptions {
        data_dir: Some(one._dir.path().join("cfg")),
        ..NodeOptions::default()
    }
    .validate()
    .expect("config");
    let liveness = crate::consensus::liveness::Liveness::default();
    let cluster = ClusterOps::new(
        one.client.clone(),
        WireNode::default(),
        config,
        liveness,
        None,
    );
    let bad = JoinRequest {
        node_id: 2,
        http_addr: "not an address".into(),
        raft_addr: "127.0.0.1:1".into(),
        learner: false,
        protocol: crate::consensus::PROTOCOL_VERSION,
    };
    let err = cluster.join(bad).await.expect_err("bad address");
    assert_eq!(err.kind(), ErrorKind::BadRequest, "{err}");
    let unknown = cluster.remove(9).await.expect_err("not a member");
    assert_eq!(unknown.kind(), ErrorKind::NotFound);
    let last = cluster.remove(1).await.expect_err("the only voter");
    assert_eq!(last.kind(), ErrorKind::Conflict, "{last}");
    let status = cluster.status().await.expect("status");
    assert_eq!((status.role.as_str(), status.members.len()), ("leader", 1));
    one.stop(cluster).await;
}
